"""Precision and recall of "unsupported" on the labelled claim set, thresholds chosen on its tune split.

`tests/data/claims.jsonl` holds 120 sentences as an LLM might write them about the seeds and
the three evaluation articles: correct, paraphrased-correct, swapped numbers, swapped roles
and invented facts, each with its answering evidence. Each claim is checked as a small
model writes it, citing nothing: against the passages retrieved for its question (the
default 8), so it must be attributed to the right one. A claim counts as flagged when the
check does not find it supported; "unsupported" is the positive class.

The split is the question set's (a seeded hash of the id, `rag.eval.questions.split_of`),
fixed before any tuning. Every setting of the grid is scored on tune; the one chosen has
the best recall among those with tune precision at least 0.9 (then the best precision;
among settings equal on tune, the one binding the most counted words, the stricter
reading), and only it is scored on held-out.

`tests/data/claims_fresh.jsonl` (60 claims) is the validation set, for choosing among rules;
the held-out split and `tests/data/claims_test.jsonl` are the final test sets, scored only
by the default `--split all`.

    .venv/bin/python scripts/eval_claims.py                    # final report: tune, held-out, fresh, test
    .venv/bin/python scripts/eval_claims.py --split tune       # tune only, for developing the check
    .venv/bin/python scripts/eval_claims.py --split validation # tune, then validation, for choosing rules
"""

from __future__ import annotations

import argparse
import itertools
from collections import Counter
from pathlib import Path

from rag.answer.verification import CheckedClaim, VerifierSettings
from rag.eval.claims import ClaimChecker, load_claims, unsupported_scores
from rag.eval.questions import qa_index

ROOT = Path(__file__).resolve().parent.parent
CLAIMS = ROOT / "tests" / "data" / "claims.jsonl"
FRESH = ROOT / "tests" / "data" / "claims_fresh.jsonl"
TEST = ROOT / "tests" / "data" / "claims_test.jsonl"
ARTICLES = [ROOT / "seeds", ROOT / "tests" / "data" / "eval_articles"]
GRID = [VerifierSettings(min_support=support, min_role=role, min_role_cosine=role_cosine, count_words=words)
        for support, role, role_cosine, words in itertools.product(
            (0.55, 0.6, 0.664, 0.7), (0.5, 0.67, 1.0), (0.5, 0.6, 0.7, 0.8, 1.0), (1, 3))]


def report(name: str, claims: list[dict], checked: list[CheckedClaim]) -> None:
    figures = unsupported_scores(claims, checked)
    print(f"{name}: precision {figures['precision']:.3f} recall {figures['recall']:.3f} "
          f"({figures['flagged']} flagged of {figures['claims']}; {figures['unsupported']} unsupported)")
    by_kind: Counter[str] = Counter()
    totals: Counter[str] = Counter(claim["kind"] for claim in claims)
    for claim, result in zip(claims, checked, strict=True):
        by_kind[claim["kind"]] += not result.supported
    for kind in sorted(totals):
        print(f"  {kind:<20} flagged {by_kind[kind]:>2} of {totals[kind]:>2}")


def show_errors(claims: list[dict], checked: list[CheckedClaim]) -> None:
    """Each claim the check gets wrong, with its reason (never for a test set)."""
    for claim, result in zip(claims, checked, strict=True):
        if result.supported != claim["supported"]:
            print(f"  {claim['id']} {claim['kind']}: {'flagged' if not result.supported else 'passed'} "
                  f"{result.reason!r}\n    {claim['claim']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show", action="store_true", help="print each tune (and validation) claim the chosen "
                        "setting gets wrong; test claims are never shown")
    parser.add_argument("--split", choices=("all", "tune", "validation"), default="all",
                        help="tune: the tune split only; validation: tune, then the validation file in full; "
                        "neither loads a test set. all: the final report, test sets included")
    parser.add_argument("--fresh", type=Path, default=FRESH,
                        help="the validation file, written after the rules and never tuned on (all of it is scored)")
    args = parser.parse_args()
    tune = load_claims(CLAIMS, "tune")
    checker = ClaimChecker(qa_index(ARTICLES))
    rows = []
    for settings in GRID:
        figures = unsupported_scores(tune, checker.check(tune, settings))
        rows.append((figures["precision"] >= 0.9, figures["recall"], figures["precision"], settings.count_words,
                     settings))
    *_, chosen = max(rows, key=lambda row: row[:4])
    print(f"chosen on tune ({len(tune)} claims): {chosen}")
    tune_checked = checker.check(tune, chosen)
    report("tune", tune, tune_checked)
    if args.show:
        show_errors(tune, tune_checked)
    default = VerifierSettings()
    if default != chosen:
        print(f"note: the shipped default {default} differs from the chosen setting")
    if args.split == "validation":
        fresh = load_claims(args.fresh)
        fresh_checked = checker.check(fresh, chosen)
        report(f"validation ({args.fresh.name})", fresh, fresh_checked)
        if args.show:
            show_errors(fresh, fresh_checked)
    elif args.split == "all":
        heldout = load_claims(CLAIMS, "heldout")
        report("held-out", heldout, checker.check(heldout, chosen))
        fresh = load_claims(args.fresh)
        report(f"validation ({args.fresh.name})", fresh, checker.check(fresh, chosen))
        if TEST.exists():
            test = load_claims(TEST)
            report(f"test ({TEST.name})", test, checker.check(test, chosen))

if __name__ == "__main__":
    main()
