"""Ours against LlamaIndex and LangChain on SciFact: the ratio ours / theirs for each row.

    .venv/bin/python bench/compare.py     # after bench/suite.py, `rag eval --beir ... --json` and bench/frameworks

Reads the newest bench/results/suite-*.json runs: the newest that indexed all of SciFact with
the real encoder (its time and peak memory) and the newest that measured 10k chunks, about
SciFact's own (search and add-one there), bench/results/eval-scifact.json (`rag eval --beir ../shared/eval/scifact --json`:
our nDCG@10) and bench/results/frameworks/<name>.json. A ratio below 1 means ours is faster
or smaller; for nDCG@10, higher is better and the values are shown.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path("bench/results")
_COMPARED_SIZE = 10_000  # chunks: about SciFact's own, the corpus the frameworks index


def newest(pattern: str) -> dict:
    paths = sorted(RESULTS.glob(pattern))
    if not paths:
        raise SystemExit(f"no {RESULTS / pattern}: run the benchmark that writes it first (see bench/suite.py)")
    return json.loads(paths[-1].read_text())


def main() -> None:
    frameworks = {name: json.loads((RESULTS / "frameworks" / f"{name}.json").read_text())
                  for name in ("llamaindex", "langchain")}
    corpus = max(data["documents"] for data in frameworks.values())
    runs = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("suite-*.json"), reverse=True)]
    indexing = next((run["indexing"] for run in runs if run["indexing"]["articles"] == corpus), None)
    if indexing is None:
        raise SystemExit(f"no suite run indexed all {corpus} documents: run bench/suite.py without --index-docs")
    suite = next((run for run in runs if str(_COMPARED_SIZE) in run.get("sizes", {})), None)
    if suite is None:
        raise SystemExit(f"no suite run measured {_COMPARED_SIZE} chunks: run bench/suite.py --sizes {_COMPARED_SIZE}")
    quality = newest("eval-scifact.json")["runs"]["hybrid"]["ndcg@10"]
    first_size = suite["sizes"][str(_COMPARED_SIZE)]
    ours = {
        "full indexing (s)": indexing["seconds"],
        "add 1 article (s)": first_size["updates"]["add_1_s"],
        "search p50 (ms)": first_size["search"]["p50_ms"],
        "search p95 (ms)": first_size["search"]["p95_ms"],
        "peak memory (MB)": indexing["peak_rss_mb"],
    }
    print(f"machine: {suite['machine']}; our indexing and peak memory: {indexing['articles']} SciFact "
          f"articles; our search and add-one at {first_size['chunks']} chunks")
    print(f"{'row':<22}{'ours':>10}" + "".join(f"{name:>24}" for name in ("llamaindex", "langchain")))
    theirs = {name: {"full indexing (s)": data["index_build_s"], "add 1 article (s)": data["insert_one_s"],
                     "search p50 (ms)": data["search"]["p50_ms"], "search p95 (ms)": data["search"]["p95_ms"],
                     "peak memory (MB)": data["peak_rss_mb"]} for name, data in frameworks.items()}
    for row, value in ours.items():
        cells = "".join(f"{theirs[name][row]:>12.2f} (x{value / theirs[name][row]:.2f})" for name in frameworks)
        print(f"{row:<22}{value:>10.2f}{cells}")
    cells = "".join(f"{data.get('ndcg_at_10_train') or float('nan'):>24.4f}" for data in frameworks.values())
    print(f"{'SciFact nDCG@10':<22}{quality:>10.4f}{cells}")


if __name__ == "__main__":
    main()
