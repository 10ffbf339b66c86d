"""The one text normalisation for matching words: BM25, answer selection, evaluation.

It never changes what is shown, only what is compared. Case and diacritics are folded
(Chính = Chinh, đ = d), curly quotes and dashes made plain, British spellings mapped to
American before Snowball stemming (defence = defense, modernisation = modernization), and
numbers and codes kept whole ("57-NQ/TW", "2021–2025", "140") as well as split into parts.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

import Stemmer

_PLAIN = str.maketrans({
    "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "“": '"', "”": '"', "„": '"', "″": '"',
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-",
    "đ": "d", "Đ": "D", "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss", "æ": "ae", "œ": "oe",
})
_TOKEN = re.compile(r"[a-z0-9]+(?:[-/.'][a-z0-9]+)*")
_SEPARATOR = re.compile(r"[-/.']")
_POSSESSIVE = re.compile(r"'s\b")

STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be been before being below between
    both but by can could did do does doing down during each few for from further had has have having
    he her here hers herself him himself his how i if in into is it its itself just me more most my
    myself no nor not now of off on once only or other our ours ourselves out over own same she should
    so some such than that the their theirs them themselves then there these they this those through
    to too under until up very was we were what when where which while who whom why will with would
    you your yours yourself yourselves""".split()
)

# British -> American spellings the stemmer does not merge on its own; both sides of a
# comparison pass through here, so any consistent mapping is safe.
_SPELLING_RULES = [
    (re.compile(r"(?<=\w{3})is(e|es|ed|ing|ation|ations|er|ers)$"), r"iz\1"),  # modernise
    (re.compile(r"(?<=\w{2})ys(e|es|ed|ing)$"), r"yz\1"),  # analyse
    (re.compile(r"(?<=\w{3})ence(s)?$"), r"ense\1"),  # defence, licence
    (re.compile(r"(?<=\w{2})our(s|ed|ing|ite|ites|able)?$"), r"or\1"),  # labour, honour
    (re.compile(r"(?<=\w{2})tre(s)?$"), r"ter\1"),  # centre, metre
]
_SPELLING_WORDS = {"programme": "program", "programmes": "programs", "catalogue": "catalog",
                   "dialogue": "dialog", "analogue": "analog", "grey": "gray", "tyre": "tire",
                   "tyres": "tires", "cheque": "check", "cheques": "checks", "plough": "plow"}
_NOT_BRITISH = frozenset("hour hours four your yours pour tour tours sour flour dour".split())
_STEMMERS = threading.local()  # PyStemmer's stemmers must not be shared between threads


_NON_ASCII = re.compile(r"([^\x00-\x7f]+)")


def fold(text: str) -> str:
    """Case-fold and strip diacritics, quotes and dashes: the form in which texts are compared.

    Only runs of non-ASCII characters need decomposing; they are few and repeat (names,
    quotes, dashes), so each distinct run is folded once (folding every character of every
    text took most of the time of answering a question)."""
    parts = _NON_ASCII.split(text)  # ASCII, then non-ASCII, alternately
    parts[::2] = [part.lower() for part in parts[::2]]
    parts[1::2] = [_fold_non_ascii(part) for part in parts[1::2]]
    return "".join(parts)


@lru_cache(maxsize=65_536)
def _fold_non_ascii(run: str) -> str:
    # casefold again after NFKD: compatibility forms ("㎒") decompose to capitals, "ǣ" to "æ"
    run = unicodedata.normalize("NFKD", run.casefold()).casefold().translate(_PLAIN)
    return "".join(char for char in run if not unicodedata.combining(char))


def terms(text: str) -> list[str]:
    """Matching terms of a text, in order: folded, spelling-normalised, stemmed, stopwords dropped.

    A token with separators ("57-NQ/TW", "2021–2025", "high-tech") is kept whole and also
    contributes its parts, so "Resolution 57" finds "57-NQ/TW".
    """
    result: list[str] = []
    for token in _TOKEN.findall(_POSSESSIVE.sub("", fold(text))):
        result.extend(_token_terms(token))
    return result


@lru_cache(maxsize=200_000)
def _token_terms(token: str) -> tuple[str, ...]:
    """The terms of one folded token (tokens repeat: each is worked out once)."""
    parts = _SEPARATOR.split(token)
    whole = (token,) if len(parts) > 1 else ()
    return whole + tuple(normalize_word(part) for part in parts if part not in STOPWORDS)


@lru_cache(maxsize=200_000)
def normalize_word(word: str) -> str:
    """Spelling-normalise and stem one folded word; numbers pass through unchanged."""
    if word.isdigit():
        return word
    if word not in _NOT_BRITISH:
        word = _SPELLING_WORDS.get(word, word)
        for pattern, replacement in _SPELLING_RULES:
            word = pattern.sub(replacement, word)
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = Stemmer.Stemmer("english")
    return stemmer.stemWord(word)
