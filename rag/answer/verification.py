"""The check of an LLM's sentences against the passages: supported, unsupported (and why), or a refusal.

A sentence ("claim") is checked against the passage it cites or, when it cites none (small
models rarely write markers), against the passage whose best sentences match it best
(attribution). It is supported by that passage when all of these hold:

- facts: every number (digits or number words) and every capitalised name in the claim
  occurs in the passage (its title and date included);
- counts: a number that counts something in the claim ("380 ships", "a crew of 20") counts
  the same thing next to it in the passage: the claim's counted words are among the words
  that follow the number there (up to the next stop word other than "of"), or precede "of N".
  "Built nearly 380 ships" fails against "repaired over 380 military vessels", and "a batch
  of 23 tasks" against "a batch of nine tasks, out of 23 planned";
- roles: each name's own words in the claim (the words right after it, its verb and object,
  or right before it) occur in a passage sentence that holds the name: "Bui Thanh Son chaired
  the meeting" fails where he is listed as attending while another chaired; and a doer and
  its object do not trade places around the verb ("The Ministry asked PM Chính" against "PM
  Chính asked the Ministry");
- match: the claim matches its quote (the passage sentence or sentences that best match it):
  the mean of the share of its words found in the quote and of the embedding cosine between
  the two reaches `VerifierSettings.min_support`.

Words are compared through `rag.text.normalize` (case, accents, spellings, stems). A claim that
cites two passages is supported by them together if they pass as one. The thresholds were
chosen on the tune split of `tests/data/claims.jsonl` (scripts/eval_claims.py).

Not caught: a claim that reuses a passage's words, numbers and names in their places to say
something it does not (a dropped negation, a changed verb with the same object).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.answer.prompt import Claim, passage_header
from rag.errors import ConfigError
from rag.records import Chunk
from rag.text.normalize import STOPWORDS, fold, normalize_word, terms
from rag.text.sentences import split_sentences

Embed = Callable[[Sequence[str]], np.ndarray]

_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_PER_CENT = re.compile(r"\bper\s+cent\b", re.IGNORECASE)
_TOKEN = re.compile(r"\w[\w'’./-]*\w|\w|[^\w\s]")
_SEPARATED = re.compile(r"[-/.']")
_REFUSAL = re.compile(
    r"\b(?:do|does|did|can|could)\s*(?:not|n't)\s+(?:\w+\s+){0,2}?(?:contain|mention|say|state|provide|include|"
    r"specify|answer|report|give|know|find|determine|address|cover)"
    r"|\bno (?:information|mention|details?|data)\b"
    r"|\bnot (?:mentioned|stated|specified|provided|reported|given|included|available)\b"
    r"|\bunable to (?:answer|find|determine)\b")
# Number words that state a figure ("one" is left out: it is mostly a pronoun, "one of the").
_NUMBER_WORDS = dict(zip("two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
                         "sixteen seventeen eighteen nineteen twenty".split(), map(str, range(2, 21)), strict=True))
_NUMBER_WORDS |= {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
                  "ninety": "90"}
_MAGNITUDES = frozenset("hundred thousand million billion trillion percent".split())
_COUNT_JOINERS = frozenset({"of"})  # "140 types of weaponry": the counted words go on past "of"
# Capitalised words that are not names: titles (a passage may say "PM" for "Prime Minister"),
# days and months. They are neither facts to find nor names to bind.
_CALENDAR = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march april may june july august "
    "september october november december".split())
_NOT_NAMES = _CALENDAR | frozenset(
    "pm prime minister deputy president general gen lt colonel senior director chairman secretary chief head "
    "commander mr ms mrs dr vice lieutenant major admiral captain".split())


@dataclass(frozen=True)
class VerifierSettings:
    """Thresholds of the check (see the module docstring), chosen on the claim set's tune split.

    `min_support`: the least mean of word coverage and cosine between a claim and its quote.
    `min_role`: the least share of a name's own words in a passage sentence holding the name;
    short of it, `min_role_cosine`: the least cosine between the claim and such a sentence.
    `count_words`: how many counted words after a number are compared.
    `max_quote_sentences`: how many consecutive passage sentences a quote may span.
    """

    min_support: float = 0.55
    min_role: float = 0.67
    min_role_cosine: float = 0.7
    count_words: int = 3
    max_quote_sentences: int = 3

    def __post_init__(self) -> None:
        if not 0.0 < self.min_support <= 1.0:
            raise ConfigError(f"min_support must be above 0 and at most 1, got {self.min_support!r}")
        if not 0.0 <= self.min_role_cosine <= 1.0:
            raise ConfigError(f"min_role_cosine must be between 0 and 1, got {self.min_role_cosine!r}")
        if not 0.0 <= self.min_role <= 1.0:
            raise ConfigError(f"min_role must be between 0 and 1, got {self.min_role!r}")
        if not 1 <= self.count_words <= 5:
            raise ConfigError(f"count_words must be between 1 and 5, got {self.count_words!r}")
        if not 1 <= self.max_quote_sentences <= 10:
            raise ConfigError(f"max_quote_sentences must be between 1 and 10, got {self.max_quote_sentences!r}")


@dataclass(frozen=True)
class Quote:
    """The passage sentences quoted for a claim, by offsets in the article file, and the share
    of the claim's terms they hold."""

    chunk: Chunk
    start: int
    end: int
    coverage: float

    @property
    def text(self) -> str:
        return self.chunk.span(self.start, self.end)


@dataclass(frozen=True)
class CheckedClaim:
    """A claim after the check: the quotes that back it (or that it was checked against, if
    unsupported), whether it was attributed (it cited no passage), and why it is unsupported."""

    claim: Claim
    supported: bool
    refusal: bool
    quotes: tuple[Quote, ...]
    attributed: bool = False
    reason: str = ""


@dataclass(frozen=True)
class _Word:
    """One token of a text: its matching term ("" for punctuation), and whether it is a number
    or starts with a capital."""

    term: str
    number: bool
    capital: bool
    stop: bool


def check_claims(question: str, claims: Sequence[Claim], passages: Sequence[Chunk], embed: Embed,
                 settings: VerifierSettings = VerifierSettings()) -> list[CheckedClaim]:
    """Decide for each claim whether the passages support it, with which quotes, and if not, why."""
    vocabularies = [_vocabulary(f"{passage_header(chunk)} {chunk.text}") for chunk in passages]
    asked = set(terms(_plain(question)))
    checked = []
    for claim in claims:
        cited = [n - 1 for n in claim.cited if 1 <= n <= len(passages)]
        claim_facts = facts(claim.text)
        if not cited and _REFUSAL.search(fold(claim.text)) and claim_facts <= asked:
            # "The passages do not say X" is not a claim, unless it slips in facts the question lacks
            checked.append(CheckedClaim(claim, supported=False, refusal=True, quotes=()))
            continue
        checked.append(_check(claim, claim_facts, cited or list(range(len(passages))), not cited, passages,
                              vocabularies, embed, settings))
    return checked


def _check(claim: Claim, claim_facts: set[str], candidates: list[int], attribute: bool, passages: Sequence[Chunk],
           vocabularies: list[set[str]], embed: Embed, settings: VerifierSettings) -> CheckedClaim:
    """Check one claim against the passages it cites or, when `attribute`, the one it fits best."""
    if not candidates:
        return CheckedClaim(claim, supported=False, refusal=False, quotes=(), attributed=attribute,
                            reason="there is no passage to check it against")
    wanted = set(terms(_plain(claim.text)))
    quotes = [best_quote(wanted, claim_facts, passages[i], settings.max_quote_sentences) for i in candidates]
    joined = " ".join(quote.text for quote in quotes)  # for a sentence that combines cited passages
    vectors = embed([claim.text, *(quote.text for quote in quotes), *([joined] if not attribute else [])])
    cosines = (vectors[1:] @ vectors[0]).tolist()
    if attribute:  # the passage whose quote matches best, in words and meaning
        best = max(range(len(quotes)), key=lambda i: quotes[i].coverage + cosines[i])
        candidates, quotes, cosines = [candidates[best]], [quotes[best]], [cosines[best]]
    reasons = [_problem(claim, claim_facts, passages[i], vocabularies[i], quote, cosine, embed, settings)
               for i, quote, cosine in zip(candidates, quotes, cosines, strict=False)]
    backing = tuple(quote for quote, reason in zip(quotes, reasons, strict=True) if not reason)
    if not backing and len(quotes) > 1:
        in_passages = set().union(*(vocabularies[i] for i in candidates))
        together = _coverage(wanted, set(terms(_plain(joined))))
        if claim_facts <= in_passages and (together + cosines[-1]) / 2 >= settings.min_support \
                and not any(_binding_problem(claim.text, passages[i], embed, settings) for i in candidates):
            backing = tuple(quote for quote in quotes if quote.coverage > 0)
    reason = "" if backing else reasons[0]
    return CheckedClaim(claim, supported=bool(backing), refusal=False, quotes=backing or tuple(quotes),
                        attributed=attribute, reason=reason)


def _problem(claim: Claim, claim_facts: set[str], chunk: Chunk, vocabulary: set[str], quote: Quote, cosine: float,
             embed: Embed, settings: VerifierSettings) -> str:
    """Why the passage does not back the claim, or "" if it does."""
    missing = claim_facts - vocabulary
    if missing:
        return f"the passage does not hold {', '.join(sorted(missing))}"
    binding = _binding_problem(claim.text, chunk, embed, settings)
    if binding:
        return binding
    support = (quote.coverage + cosine) / 2
    if support < settings.min_support:
        return f"the passage does not say this (match {support:.2f}, needs {settings.min_support:.2f})"
    return ""


def _binding_problem(claim: str, chunk: Chunk, embed: Embed, settings: VerifierSettings) -> str:
    """A number counting something else, or a name doing something else, in the passage; "" if none."""
    passage = f"{chunk.title}. {chunk.text}"
    passage_counts = [(number, {*words, of} - {None}) for number, words, _, of in
                      _counted(_words(passage), settings.count_words + 2)]
    for number, counted, joined, of in _counted(_words(claim), settings.count_words):
        found = [words for passage_number, words in passage_counts if passage_number == number]
        if (counted or of) and found and not any((not counted or _counts_alike((counted, joined), words))
                                                 and (of is None or of in words) for words in found):
            return f"{number} counts something else in the passage, not {' '.join([*([of] if of else []), *counted])}"
    spans = split_sentences(passage)
    sentences = [set(terms(_plain(passage[start:end]))) for start, end in spans]
    for name, own in _names_with_own_words(_words(claim)):
        holding = [i for i, sentence in enumerate(sentences) if set(name) <= sentence]
        if not (own and holding) or max(len(set(own) & sentences[i]) for i in holding) >= settings.min_role * len(own):
            continue
        # the name's own words may be paraphrased ("awarded" for "presented"): its sentence must then mean the claim
        vectors = embed([claim, *(passage[spans[i][0]:spans[i][1]] for i in holding)])
        if float(np.max(vectors[1:] @ vectors[0])) < settings.min_role_cosine:
            return f"the passage does not say that {' '.join(name)} {' '.join(own)}"
    return _reversed_roles(claim, [passage[start:end] for start, end in spans])


def _reversed_roles(claim: str, sentences: list[str]) -> str:
    """"The Ministry asked PM Chính" where the passage says "PM Chính asked the Ministry": the
    claim's doer, its verb and the name after the verb all stand in one passage sentence, in the
    opposite order around the verb; "" if no sentence says so."""
    words = _words(claim)
    for name, own in _names_with_own_words(words):
        if not own:
            continue
        verb = own[0]
        after_verb = [i for i, word in enumerate(words) if word.term == verb]
        others = {word.term for word in words[after_verb[0] + 1:] if word.capital} - set(name) if after_verb else set()
        for sentence in sentences:
            order = [word.term for word in _words(sentence)]
            if verb not in order or name[-1] not in order:
                continue
            at = order.index(verb)
            if order.index(name[-1]) > at and any(other in order[:at] for other in others):
                before = next(other for other in order[:at] if other in others)
                return f"in the passage {before} {verb} {' '.join(name)}, not the other way round"
    return ""


def _counts_alike(claimed: tuple[tuple[str, ...], bool], passage: set[str]) -> bool:
    """Whether a number counts in the passage what it counts in the claim: both words of "types
    of ships"; otherwise any one ("a 4.2-metre wingspan" for "a wingspan of 4.2 metres", "five
    key areas" for "five areas"), a paraphrase changing the adjectives."""
    words, joined = claimed
    return set(words) <= passage if joined else bool(set(words) & passage)


def _words(text: str) -> list[_Word]:
    """The tokens of a text with number words as digits, thousands separators dropped and
    "per cent" as "percent", so that figures compare whatever way they are written."""
    words = []
    for token in _TOKEN.findall(_plain(text)):
        if not token[0].isalnum():
            words.append(_Word("", number=False, capital=False, stop=True))
            continue
        folded = fold(token)
        if folded in _NUMBER_WORDS or token[0].isdigit():
            number, _, unit = folded.partition("-") if re.fullmatch(r"[\d.]+-[a-z]+", folded) else (folded, "", "")
            words.append(_Word(_NUMBER_WORDS.get(number, number.rstrip(".")), number=True, capital=False, stop=False))
            if unit:  # "a 120-metre hull": the number counts metres
                words.append(_Word(normalize_word(unit), number=False, capital=False, stop=unit in STOPWORDS))
            continue
        words.append(_Word(normalize_word(folded), number=False, capital=token[0].isupper() and folded not in _NOT_NAMES,
                           stop=folded in STOPWORDS or folded in _CALENDAR))  # "19 November" counts nothing
    return words


def _counted(words: list[_Word], most: int) -> list[tuple[str, tuple[str, ...], bool, str | None]]:
    """Each number with the words it counts: the content words right after it (up to `most`,
    past "of", stopping at punctuation, another number or a stop word; with "of", the last
    word before it and the last after: "140 types of weaponry" counts types and weaponry);
    whether "of" joined them; and the word of "X of N" before it ("a crew of 28", "a batch
    of nine tasks"), which counts it too."""
    found = []
    for position, word in enumerate(words):
        if not word.number or _is_year(word.term):  # "in 2023, Viettel ...": a year counts nothing
            continue
        counted: list[str] = []
        joined_at = 0
        for following in words[position + 1:]:
            if following.term in _COUNT_JOINERS and counted and not joined_at:
                joined_at = len(counted)
                continue
            if following.capital:
                continue  # "training for 60 Vietnamese engineers" counts engineers
            if following.number or following.stop or len(counted) == most:
                break
            counted.append(following.term)
        joined = 0 < joined_at < len(counted)
        if joined:
            counted = [counted[joined_at - 1], counted[-1]]  # "types of weaponry": both
        of = None
        if position >= 2 and words[position - 1].term in _COUNT_JOINERS:
            before = words[position - 2]
            if before.term and not (before.stop or before.number or before.capital):
                of = before.term
        found.append((word.term, tuple(counted), joined, of))
    return found


def _is_year(term: str) -> bool:
    return len(term) == 4 and term.isdigit() and 1900 <= int(term) <= 2100


def _names_with_own_words(words: list[_Word]) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """Each name (a run of two or more capitalised words: a person's or a body's full name, not
    a lone capitalised word such as "Department") with its own words: the first two content
    words after it, past an apposition; or, with none after it, the content word before it."""
    found = []
    position = 0
    while position < len(words):
        if not words[position].capital:
            position += 1
            continue
        end = position
        while end < len(words) and words[end].capital:
            end += 1
        if end - position > 1:
            name = tuple(word.term for word in words[position:end] if not word.stop)[-2:]
            own: list[str] = []
            rest = words[end:]
            if rest and rest[0].term == "":  # "Anders Holm, Asia sales director of ..., said": past the apposition
                closing = next((i for i in range(1, min(len(rest), 16)) if rest[i].term == ""), 0)
                rest = rest[closing + 1:] if closing else rest[1:]
            for following in rest:
                if following.term == "" and own or following.number or len(own) == 2:
                    break
                if following.term and not (following.stop or following.capital):
                    own.append(following.term)
            if not own and position > 0 and words[position - 1].term and not words[position - 1].stop:
                own.append(words[position - 1].term)
            if name:
                found.append((name, tuple(own)))
        position = end
    return found


def facts(text: str) -> set[str]:
    """The numbers and names a passage must contain to back `text`, as matching terms.

    Numbers are their parts ("2021-2025" needs 2021 and 2025); number words count as digits
    ("two" = 2) and magnitudes as words (8 billion needs "billion"). A name is a capitalised
    word other than the sentence's first.
    """
    found: set[str] = set()
    for position, match in enumerate(re.finditer(r"\w[\w'’./-]*\w|\w", _plain(text))):
        word = match.group()
        folded = fold(word)
        if any(char.isdigit() for char in word):
            found.update(term for term in terms(word) if not _SEPARATED.search(term))
        elif folded in _NUMBER_WORDS:
            found.add(_NUMBER_WORDS[folded])
        elif folded in _MAGNITUDES:
            found.add(normalize_word(folded))
        elif position > 0 and word[0].isupper() and folded not in STOPWORDS and folded not in _NOT_NAMES:
            found.update(terms(word))
    return found


def best_quote(wanted: set[str], claim_facts: set[str], chunk: Chunk, max_sentences: int) -> Quote:
    """The passage sentence that best matches the wanted terms, widened to up to `max_sentences`
    consecutive sentences only where that brings in more of the claim's facts: the subject of
    a claim often sits in an earlier sentence ("he", "it"), but its figures are what to show."""
    spans = split_sentences(chunk.text)
    sentence_terms = [set(terms(_plain(chunk.text[start:end]))) for start, end in spans]
    runs = []
    for first in range(len(spans)):
        held: set[str] = set()
        for last in range(first, min(first + max_sentences, len(spans))):
            held |= sentence_terms[last]
            runs.append((-len(claim_facts & held), last - first, -len(wanted & held), first, last))
    *_, first, last = min(runs)  # most facts, then fewest sentences, then most terms
    held = set().union(*sentence_terms[first : last + 1])
    return Quote(chunk, chunk.start + spans[first][0], chunk.start + spans[last][1], _coverage(wanted, held))


def _vocabulary(text: str) -> set[str]:
    """The matching terms of a text, with number words also as digits ("two decades" holds 2)."""
    return set(terms(_plain(text))) | {word.term for word in _words(text) if word.number}


def _coverage(wanted: set[str], held: set[str]) -> float:
    return len(wanted & held) / len(wanted) if wanted else 0.0


def _plain(text: str) -> str:
    """Thousands separators dropped and "per cent" as one word, so "1,250" and "1250", "62 per
    cent" and "62 percent" match."""
    return _PER_CENT.sub("percent", _THOUSANDS.sub("", text))
