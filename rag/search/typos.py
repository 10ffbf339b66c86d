"""Typo tolerance: a typed word the index does not know is read as the known terms nearest it.

Nearest in edits, a transposition counting one (optimal string alignment, by rapidfuzz): one
edit for a word of 4-7 letters, two past that; up to 3 stand-ins, the most frequent first.
A stand-in counts `TYPO_WEIGHT` of a matched term in BM25 and in answer selection, a guess
being weaker evidence than a match. The page and the CLI show what was searched for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import OSA

from rag.storage.reader import Lexicon

TYPO_WEIGHT = 0.7
"""What a stand-in for a typed word counts, relative to a term typed right: set by judgement
(a guess is weaker evidence than a match, but a typo's intended word is usually among the
stand-ins), not tuned."""

MAX_CORRECTED_WORDS = 8
"""At most this many unknown words of a query are corrected (the longest): each is compared
with the known terms of about its length, which takes milliseconds on a large vocabulary."""


@dataclass(frozen=True)
class QueryTerms:
    """A query's terms with their weights: 1 for each typed term, `TYPO_WEIGHT` for a known
    term standing in for a typed one the index does not know (`corrections` maps the typed
    term to its stand-ins)."""

    terms: tuple[str, ...]
    weights: tuple[float, ...]
    corrections: dict[str, tuple[str, ...]]

    @classmethod
    def plain(cls, query_terms: Sequence[str]) -> QueryTerms:
        return cls(tuple(query_terms), (1.0,) * len(query_terms), {})


def correct_typos(query_terms: Sequence[str], lexical: Lexicon) -> QueryTerms:
    """The query's terms plus, for each word of letters the index does not know (the longest
    MAX_CORRECTED_WORDS), the known terms at the least edit distance a typo allows, up to 3,
    the most frequent first; none for a word under 4 letters."""
    unknown = [t for t in dict.fromkeys(query_terms) if len(t) >= 4 and t.isalpha() and not lexical.knows(t)]
    corrections: dict[str, tuple[str, ...]] = {}
    for term in sorted(unknown, key=len, reverse=True)[:MAX_CORRECTED_WORDS]:
        edits = 1 if len(term) <= 7 else 2
        choices = [t for size in range(len(term) - edits, len(term) + edits + 1)
                   for t in lexical.terms_by_length.get(size, ())]
        found = process.extract(term, choices, scorer=OSA.distance, score_cutoff=edits, limit=None)
        if found:
            nearest = min(distance for _, distance, _ in found)
            closest = [t for t, distance, _ in found if distance == nearest]
            corrections[term] = tuple(sorted(closest, key=lambda t: -lexical.document_frequency(t))[:3])
    extra = [t for replacements in corrections.values() for t in replacements]
    return QueryTerms(tuple(query_terms) + tuple(extra),
                      (1.0,) * len(query_terms) + (TYPO_WEIGHT,) * len(extra), corrections)
