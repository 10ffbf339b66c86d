"""Choose the fusion defaults on SciFact train and seeds_dev.jsonl, never on anything else.

For each fusion method (plain or robust z-scores, or reciprocal ranks) and weight (BM25's
share; the sentence's and the article's share of the dense score), prints SciFact train nDCG@10 / Recall@100 / MRR@10 of the hybrid run and
seeds_dev recall@1/3 and MRR. The default is the setting with the best SciFact nDCG@10 among
those that keep seeds_dev recall@3 at 1.0. Settings are scored in parallel, one process per
core (a search runs on one core).

    .venv/bin/python scripts/tune_fusion.py ../shared/eval/scifact tests/data/seeds_dev.jsonl [--fusion robust]

`--fusion` scores only the settings of the methods named (each setting takes about a minute
of a core).
"""

from __future__ import annotations

import argparse
import functools
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from rag import Config, Index
from rag.beir import cached_index, load_qrels, load_queries, run_queries, score_run
from rag.config import FUSIONS
from rag.embedders import default_embedder
from rag.evaluation import evaluate_qa, load_questions

SETTINGS = [Config(fusion="zscore", lexical_weight=lw, sentence_weight=sw, article_weight=aw)
            for aw in (0.0, 0.2, 0.3) for lw in (0.35, 0.4, 0.5) for sw in (0.3, 0.4, 0.5)]
SETTINGS += [Config(fusion="robust", lexical_weight=lw, sentence_weight=sw, article_weight=0.2)
             for lw in (0.4, 0.45, 0.5) for sw in (0.3, 0.4, 0.5)]
SETTINGS += [Config(fusion="robust", lexical_weight=lw, sentence_weight=0.4, article_weight=0.3)
             for lw in (0.4, 0.45, 0.5)]
SETTINGS += [Config(fusion="rrf", sentence_weight=0.4, article_weight=0.2)]

_worker: dict[str, Any] = {}


def _open(scifact: Path, dev_file: Path, seeds_index: Path) -> None:
    """Per worker: both indexes, each query encoded once across all the settings it scores."""
    embedder = default_embedder()
    qrels = load_qrels(scifact, "train")
    beir_index = cached_index(scifact, Path(".cache/beir"), embedder, Config())
    seeds = Index.open(seeds_index, embedder=embedder)
    for index in (beir_index, seeds):
        index.embed_query = functools.lru_cache(maxsize=None)(index.embed_query)
    _worker.update(qrels=qrels, queries=load_queries(scifact, qrels), beir=beir_index, seeds=seeds,
                   dev=load_questions(dev_file))


def _score(config: Config) -> tuple[Config, dict[str, float], dict[str, float]]:
    _worker["beir"].config = _worker["seeds"].config = config
    run, _ = run_queries(_worker["beir"], _worker["queries"], "hybrid")
    return config, score_run(_worker["qrels"], _worker["queries"], run), evaluate_qa(_worker["seeds"], _worker["dev"], "hybrid")


def main(scifact: Path, dev_file: Path, fusions: list[str], seeds_index: Path = Path("index")) -> None:
    cached_index(scifact, Path(".cache/beir"), default_embedder(), Config())  # build once, before the workers
    rows = []
    with ProcessPoolExecutor(max_workers=os.cpu_count(), initializer=_open,
                             initargs=(scifact, dev_file, seeds_index)) as pool:
        for config, scifact_scores, dev_scores in pool.map(_score, [s for s in SETTINGS if s.fusion in fusions]):
            rows.append((config, scifact_scores, dev_scores))
            print(f"{config.fusion:>6} lexical {config.lexical_weight:.2f} sentence {config.sentence_weight:.1f} "
                  f"article {config.article_weight:.1f} | scifact ndcg@10 {scifact_scores['ndcg@10']:.4f} "
                  f"recall@100 {scifact_scores['recall@100']:.4f} mrr@10 {scifact_scores['mrr@10']:.4f} | "
                  f"seeds recall@1 {dev_scores['recall@1']:.3f} recall@3 {dev_scores['recall@3']:.3f} "
                  f"mrr {dev_scores['mrr']:.3f}", flush=True)
    eligible = [row for row in rows if row[2]["recall@3"] == 1.0]
    best = max(eligible, key=lambda row: row[1]["ndcg@10"])
    print(f"default: fusion={best[0].fusion} lexical_weight={best[0].lexical_weight} "
          f"sentence_weight={best[0].sentence_weight} article_weight={best[0].article_weight}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scifact", type=Path)
    parser.add_argument("dev_file", type=Path)
    parser.add_argument("--fusion", nargs="+", choices=FUSIONS, default=list(FUSIONS))
    arguments = parser.parse_args()
    main(arguments.scifact, arguments.dev_file, arguments.fusion)
