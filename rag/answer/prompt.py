"""What an LLM is asked, and how its reply is read back: the passages numbered [1]..[k], the
rules, and the reply split into sentences with the passage numbers each cites."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from rag.answer.generators import ChatMessage
from rag.records import Chunk
from rag.text.sentences import split_sentences

NO_ANSWER_REPLY = "The passages do not contain the answer."
SYSTEM_PROMPT = f"""You answer questions about news articles using only the numbered passages you are given.
- Use only what the passages state, never your own knowledge.
- End every sentence with the number of the passage it comes from in square brackets, like [1] or [2][3].
- Copy numbers, dates and names exactly as the passages give them.
- Answer in one to three short sentences.
- If the passages do not contain the answer, reply only: {NO_ANSWER_REPLY}"""

_MARKER = re.compile(r"\[\s*(?:passages?\s*)?(\d+(?:\s*[,;]\s*(?:passages?\s*)?\d+)*)\s*\]", re.IGNORECASE)
_LEADING_MARKERS = re.compile(rf"^(?:\s*{_MARKER.pattern})+", re.IGNORECASE)
_THINKING = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
_MARKUP = re.compile(r"\*\*|__|`")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,;:!?])")


@dataclass(frozen=True)
class Claim:
    """One sentence of the model's reply, without its markers, and the passage numbers it cites."""

    text: str
    cited: tuple[int, ...]


def build_messages(question: str, passages: Sequence[Chunk]) -> list[ChatMessage]:
    """The chat request: the rules, then the passages numbered from 1, then the question."""
    numbered = "\n\n".join(f"[{n}] {passage_header(chunk)}\n{chunk.text}" for n, chunk in enumerate(passages, 1))
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": f"Passages:\n\n{numbered}\n\nQuestion: {question}"}]


def parse_claims(reply: str) -> list[Claim]:
    """Split a reply into sentences with the passage numbers each cites.

    Every line break ends a sentence (models do not hard-wrap; list items have no full stop),
    and markers written after the full stop ("... ships. [1]") belong to the sentence before.
    """
    text = _MARKUP.sub("", _THINKING.sub("", reply))
    claims: list[Claim] = []
    for line in text.splitlines():
        line = _BULLET.sub("", line)
        for start, end in split_sentences(line):
            sentence = line[start:end]
            leading = _LEADING_MARKERS.match(sentence)
            if leading and claims:
                claims[-1] = replace(claims[-1], cited=_unique(claims[-1].cited + _numbers(leading.group())))
                sentence = sentence[leading.end():]
            words = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(_MARKER.sub(" ", sentence).split()))
            if any(char.isalnum() for char in words):
                claims.append(Claim(words, _numbers(sentence)))
    return claims


def passage_header(chunk: Chunk) -> str:
    """The line above a passage's text: its article's title and date, which the model may cite too."""
    return f"{chunk.title} ({_date_words(chunk.date)})"


def _date_words(date: dt.date | None) -> str:
    return f"{date.day} {date:%B %Y}" if date else "date unknown"


def _numbers(text: str) -> tuple[int, ...]:
    return _unique(tuple(int(n) for group in _MARKER.findall(text) for n in re.findall(r"\d+", group)))


def _unique(numbers: Iterable[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(numbers))
