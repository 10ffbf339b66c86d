"""Sentence boundaries as character spans, so every sentence can be cited by its offsets.

A rule-based splitter: news prose is regular enough, and spans (not copies) are what the
chunker and the answer composer need. It does not break after titles ("Lt. Gen. Ho"),
numbered references ("No. 08-NQ/TW"), initials, decimals, or inside closing quotes. Chinese
and Japanese full stops end a sentence with no space after them. A "sentence" longer than
`MAX_SENTENCE_CHARS` (a file with no sentence ends at all) is cut at the last space before
that length, so that no span, chunk or heading grows with the file.
"""

from __future__ import annotations

import re

# Abbreviations after which a full stop never ends a sentence (compared in lower case).
_TITLES = frozenset(
    """mr mrs ms dr prof sr jr st mt ft lt gen col maj capt cmdr adm sgt cpl pvt gov sen rep
    pres supt insp rev hon messrs vs etc approx dept assn bros co corp inc ltd jan feb mar apr
    jun jul aug sep sept oct nov dec e.g i.e a.m p.m""".split()
)
# Abbreviations that take a number after them: "No. 08-NQ/TW", "Art. 5", "p. 12".
_BEFORE_NUMBERS = frozenset("no nos art vol p pp fig ch sec para".split())

_CLOSERS = "\"'”’)]»"
_OPENERS = "\"'“‘([«"
_CANDIDATE = re.compile(r"[.!?…]+[" + re.escape(_CLOSERS) + r"]*(?=\s)|[。！？]+[」』”’）]*")
_CJK_ENDS = frozenset("。！？")
MAX_SENTENCE_CHARS = 1000  # news sentences run to about 500 (the seeds' longest: 69 words)
_BLANK_LINE = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_HARD_WRAP_WIDTH = 100


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Return (start, end) spans of the sentences in `text[start:end]`, whitespace trimmed.

    Blank lines always end a sentence. A single line break does too, unless the text is
    hard-wrapped (every line shorter than 100 characters), where it is just a space.
    """
    end = len(text) if end is None else end
    region = text[start:end]
    lines = region.splitlines()
    line_breaks_split = len(lines) <= 1 or max(len(line) for line in lines) >= _HARD_WRAP_WIDTH
    block_separator = re.compile(r"\n\s*") if line_breaks_split else _BLANK_LINE

    spans: list[tuple[int, int]] = []
    block_start = start
    for separator in block_separator.finditer(text, start, end):
        spans.extend(_split_block(text, block_start, separator.start()))
        block_start = separator.end()
    spans.extend(_split_block(text, block_start, end))
    return [piece for span in spans for piece in _bounded(text, *span)]


def _bounded(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The span cut into pieces of at most MAX_SENTENCE_CHARS, at spaces where there are any."""
    pieces = []
    while end - start > MAX_SENTENCE_CHARS:
        limit = start + MAX_SENTENCE_CHARS
        space = text.rfind(" ", start + 1, limit)
        cut = space if space > start else limit
        pieces.append(_trim(text, start, cut))
        start = _skip_space(text, cut, end)
    pieces.append((start, end))
    return [piece for piece in pieces if piece[1] > piece[0]]


def _split_block(text: str, start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    sentence_start = start
    for match in _CANDIDATE.finditer(text, start, end):
        if _ends_sentence(text, match, end):
            spans.append((sentence_start, match.end()))
            sentence_start = _skip_space(text, match.end(), end)
    spans.append((sentence_start, end))
    return [span for span in (_trim(text, s, e) for s, e in spans) if span[1] > span[0]]


def _ends_sentence(text: str, match: re.Match[str], end: int) -> bool:
    if match.group()[0] in _CJK_ENDS:
        return True
    next_start = _skip_space(text, match.end(), end)
    if next_start >= end:
        return True
    following = text[next_start]
    if following in _OPENERS:
        following = text[next_start + 1] if next_start + 1 < end else ""
    if not (following.isupper() or following.isdigit()):
        return False
    if not match.group().startswith("."):
        return True
    word = _word_before(text, match.start())
    lowered = word.lower()
    if lowered in _TITLES:
        return False
    if lowered in _BEFORE_NUMBERS and following.isdigit():
        return False
    if len(word) == 1 and word.isupper():  # an initial: "H. Smith"
        return False
    if re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", word):  # "U.S", "e.g"
        return False
    return True


def _word_before(text: str, position: int) -> str:
    start = position
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:position].lstrip(_OPENERS)


def _skip_space(text: str, position: int, end: int) -> int:
    while position < end and text[position].isspace():
        position += 1
    return position


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end
