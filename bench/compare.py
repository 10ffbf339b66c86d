"""Ours against LlamaIndex and LangChain on SciFact: the ratio ours / theirs for each row.

    .venv/bin/python bench/compare.py          # after bench/suite.py, bench/encoders.py and bench/frameworks

Reads bench/results/encoders-<encoder>-sentences.json (our indexing time of all SciFact and
nDCG@10), the newest bench/results/suite-*.json (search and add-one at the first size, about
SciFact's own 10k chunks; peak memory of its indexing run) and
bench/results/frameworks/<name>.json. A ratio below
1 means ours is faster or smaller; for nDCG@10, higher is better and the values are shown.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RESULTS = Path("bench/results")


def newest(pattern: str) -> dict:
    paths = sorted(RESULTS.glob(pattern))
    if not paths:
        raise SystemExit(f"no {RESULTS / pattern}: run the benchmark that writes it first (see bench/suite.py)")
    return json.loads(paths[-1].read_text())


def main() -> None:
    suite = newest("suite-*.json")
    encoder = os.environ.get("RAG_ENCODER", "onnx-int8")
    whole = newest(f"encoders-{encoder}-sentences.json")["variants"][0]
    quality = whole["runs"]["hybrid"]["ndcg@10"]
    first_size = next(iter(suite["sizes"].values()))
    ours = {
        "full indexing (s)": whole["index_seconds"],
        "add 1 article (s)": first_size["updates"]["add_1_s"],
        "search p50 (ms)": first_size["search"]["p50_ms"],
        "search p95 (ms)": first_size["search"]["p95_ms"],
        "peak memory (MB)": suite["indexing"]["peak_rss_mb"],
    }
    print(f"machine: {suite['machine']}; our indexing: all SciFact (bench/encoders.py); our search and add-one "
          f"at {first_size['chunks']} chunks; our peak memory: indexing {suite['indexing']['articles']} articles")
    print(f"{'row':<22}{'ours':>10}" + "".join(f"{name:>24}" for name in ("llamaindex", "langchain")))
    frameworks = {name: json.loads((RESULTS / "frameworks" / f"{name}.json").read_text())
                  for name in ("llamaindex", "langchain")}
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
