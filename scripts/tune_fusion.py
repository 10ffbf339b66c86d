"""Choose the fusion defaults by 5-fold cross-validation over SciFact train's queries.

For each weight of the robust z-score fusion (BM25's share; the sentence's and the article's
share of the dense score), every SciFact train
query is scored once (nDCG@10). Cross-validation then asks what choosing pays on queries
the choice did not see: for each of 5 folds the setting best on the other four is scored on
it, and the mean of those held-out folds is printed beside the full-train figure of the
setting chosen. The default is the setting best across folds: the highest mean rank over
the five folds, not the highest single number. Settings are scored in parallel, one process
per core. (Plain z-scores and reciprocal-rank fusion were in the grid of the run logged in
bench/results/tune-fusion-cv.log; they lost there and were removed from the code.)

    .venv/bin/python scripts/tune_fusion.py ../shared/eval/scifact   # about 35 min
"""

from __future__ import annotations

import argparse
import functools
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.model_selection import KFold

from rag import Config
from rag.encoders.minilm import default_embedder
from rag.eval.beir import (
    cached_index,
    load_qrels,
    load_queries,
    run_queries,
    score_queries,
)

FOLDS = 5
SEED = 20261203

SETTINGS = [Config(lexical_weight=lw, sentence_weight=sw, article_weight=aw)
            for aw in (0.1, 0.2, 0.3) for lw in (0.3, 0.4, 0.45, 0.5, 0.6) for sw in (0.3, 0.4, 0.5)]

_worker: dict[str, Any] = {}


def _open(scifact: Path) -> None:
    """Per worker: the index, each query encoded once across all the settings it scores."""
    qrels = load_qrels(scifact, "train")
    index = cached_index(scifact, Path(".cache/beir"), default_embedder(), Config())
    index.embed_query = functools.lru_cache(maxsize=None)(index.embed_query)  # type: ignore[method-assign]
    _worker.update(qrels=qrels, queries=load_queries(scifact, qrels), index=index)


def _score(config: Config) -> tuple[Config, np.ndarray]:
    _worker["index"].config = config
    run, _ = run_queries(_worker["index"], _worker["queries"], "hybrid")
    return config, score_queries(_worker["qrels"], _worker["queries"], run)["ndcg@10"]


def _name(config: Config) -> str:
    return (f"lexical {config.lexical_weight:.2f} sentence {config.sentence_weight:.1f} "
            f"article {config.article_weight:.1f}")


def main(scifact: Path) -> None:
    cached_index(scifact, Path(".cache/beir"), default_embedder(), Config())  # build once, before the workers
    with ProcessPoolExecutor(max_workers=os.cpu_count(), initializer=_open, initargs=(scifact,)) as pool:
        rows = list(pool.map(_score, SETTINGS))
    scores = np.array([per_query for _, per_query in rows])  # settings x queries
    folds = list(KFold(FOLDS, shuffle=True, random_state=SEED).split(scores.T))
    fold_means = np.array([[scores[i, test].mean() for _, test in folds] for i in range(len(rows))])
    held_out = [scores[int(np.argmax(scores[:, train].mean(axis=1))), test].mean() for train, test in folds]
    mean_rank = np.mean([rankdata(-fold_means[:, f]) for f in range(FOLDS)], axis=0)
    for i in np.argsort(mean_rank)[:15]:
        print(f"{_name(rows[i][0])} | train ndcg@10 {scores[i].mean():.4f} | folds "
              + " ".join(f"{m:.3f}" for m in fold_means[i]) + f" | mean rank {mean_rank[i]:.1f}")
    chosen = int(np.argmin(mean_rank))
    print(f"cross-validated nDCG@10 (chosen on 4 folds, scored on the 5th): mean {np.mean(held_out):.4f} "
          f"(folds {' '.join(f'{h:.3f}' for h in held_out)})")
    print(f"default (best mean rank across folds): {_name(rows[chosen][0])}, full-train nDCG@10 "
          f"{scores[chosen].mean():.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scifact", type=Path)
    main(parser.parse_args().scifact)
