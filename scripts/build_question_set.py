"""Assemble tests/data/qa_set.jsonl from the hand-written question files, adding what is derived.

For each hand-written question (tests/data/questions/*.jsonl) this stores `overlap`, the share
of the question's content words (rag.text.normalize terms, less the words that only frame a
question) found in its answering sentence, then adds typo variants of a seeded sample: one
or two character edits (a letter dropped, doubled, swapped with its neighbour, or replaced
by a key next to it) in content words of four letters or more, never the first letter.
A variant has kind "typo", `variant_of` its original, and goes to its original's split
(rag.eval.questions.split_of). The output is deterministic: run it again after editing a
hand-written file.

    .venv/bin/python scripts/build_question_set.py
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from rag.answer.extractive import topic_words
from rag.text.normalize import terms

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
SEED = 20261203
TYPO_SHARE = 0.3  # of the English questions, answerable or not
_NEIGHBOURS = dict(zip("qwertyuiopasdfghjklzxcvbnm", ["wa", "qes", "wrd", "etf", "ryg", "tuh", "yij", "uok", "ipl",
                                                    "ol", "qsz", "awdx", "sefc", "drgv", "fthb", "gyjn", "hukm",
                                                    "jil", "kop", "asx", "zdc", "xfv", "cgb", "vhn", "bjm", "nk"],
                       strict=True))
_WORD = re.compile(r"[A-Za-z]{4,}")


def overlap(question: str, evidence: str) -> float | None:
    """The share of the question's content terms that occur in the evidence sentence."""
    wanted = topic_words(question)
    return round(len(wanted & set(terms(evidence))) / len(wanted), 3) if evidence and wanted else None


def misspell(question: str, rng: random.Random) -> str:
    """The question with one or two edits in content words (stopwords and short words kept)."""
    words = [m for m in _WORD.finditer(question) if topic_words(m.group())]
    if not words:
        return question
    text = question
    for match in sorted(rng.sample(words, min(len(words), rng.choice((1, 1, 2)))), key=lambda m: -m.start()):
        word = match.group()
        position = rng.randrange(1, len(word) - 1)
        edit = rng.choice(("drop", "double", "swap", "neighbour"))
        if edit == "drop":
            word = word[:position] + word[position + 1:]
        elif edit == "double":
            word = word[:position] + word[position] + word[position:]
        elif edit == "swap":
            word = word[:position] + word[position + 1] + word[position] + word[position + 2:]
        else:
            letter = word[position].lower()
            word = word[:position] + rng.choice(_NEIGHBOURS.get(letter, letter)) + word[position + 1:]
        text = text[: match.start()] + word + text[match.end():]
    return text


def main() -> None:
    rows = []
    for path in sorted((DATA / "questions").glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        row["overlap"] = overlap(row["question"], row.get("evidence", ""))
    rng = random.Random(SEED)
    english = [row for row in rows if row["kind"] != "non-english"]
    variants = []
    for row in rng.sample(english, round(TYPO_SHARE * len(english))):
        typed = misspell(row["question"], rng)
        if typed != row["question"]:
            variants.append({**row, "id": f"{row['id']}-typo", "question": typed, "kind": "typo",
                             "variant_of": row["id"], "typo_of_kind": row["kind"]})
    with (DATA / "qa_set.jsonl").open("w", encoding="utf-8") as handle:
        for row in rows + sorted(variants, key=lambda r: r["id"]):
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} questions and {len(variants)} typo variants written to {DATA / 'qa_set.jsonl'}")


if __name__ == "__main__":
    main()
