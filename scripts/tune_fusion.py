"""Choose the fusion defaults on SciFact train and seeds_dev.jsonl, never on anything else.

For each fusion method and weight, prints SciFact train nDCG@10 / Recall@100 / MRR@10 of the
hybrid run and seeds_dev recall@1/3 and MRR. The default is the setting with the best SciFact
nDCG@10 among those that keep seeds_dev recall@3 at 1.0.

    .venv/bin/python scripts/tune_fusion.py ../shared/eval/scifact tests/data/seeds_dev.jsonl
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from rag import Config, Index
from rag.beir import cached_index, load_qrels, load_queries, run_queries, score_run
from rag.embedders import default_embedder
from rag.evaluation import evaluate_qa, load_questions


def main(scifact: Path, dev_file: Path, seeds_index: Path = Path("index")) -> None:
    embedder = default_embedder()
    qrels = load_qrels(scifact, "train")
    queries = load_queries(scifact, qrels)
    beir_index = cached_index(scifact, Path(".cache/beir"), embedder, Config())
    seeds_index_opened = Index.open(seeds_index, embedder=embedder)
    for index in (beir_index, seeds_index_opened):  # encode each query once across all settings
        index.embed_query = functools.lru_cache(maxsize=None)(index.embed_query)
    dev = load_questions(dev_file)
    settings = [Config(lexical_weight=lw, sentence_weight=sw) for lw in (0.4, 0.5) for sw in (0.5, 0.6, 0.7)]
    settings += [Config(fusion="rrf", sentence_weight=0.5)]
    rows = []
    for config in settings:
        beir_index.config = seeds_index_opened.config = config
        run, _ = run_queries(beir_index, queries, "hybrid")
        scifact_scores = score_run(qrels, queries, run)
        dev_scores = evaluate_qa(seeds_index_opened, dev, "hybrid")
        rows.append((config, scifact_scores, dev_scores))
        print(f"{config.fusion:>6} lexical {config.lexical_weight:.1f} sentence {config.sentence_weight:.1f} | "
              f"scifact ndcg@10 {scifact_scores['ndcg@10']:.4f} recall@100 {scifact_scores['recall@100']:.4f} "
              f"mrr@10 {scifact_scores['mrr@10']:.4f} | seeds recall@1 {dev_scores['recall@1']:.3f} "
              f"recall@3 {dev_scores['recall@3']:.3f} mrr {dev_scores['mrr']:.3f}", flush=True)
    eligible = [row for row in rows if row[2]["recall@3"] == 1.0]
    best = max(eligible, key=lambda row: row[1]["ndcg@10"])
    print(f"default: fusion={best[0].fusion} lexical_weight={best[0].lexical_weight} "
          f"sentence_weight={best[0].sentence_weight}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
