"""The check of an LLM's sentences against the passages: supported, unsupported (and why), or a refusal.

A sentence ("claim") is checked against the passage it cites or, when it cites none (small
models rarely write markers), against the passage whose best sentences match it best among
those holding its numbers and names (attribution: "Pham Minh Chinh tasked ..." goes to a
passage naming Phạm Minh Chính, not to a closer one saying "the Government leader"). It is
supported by that passage when all of these hold:

- facts: every number (digits or number words) and every capitalised name in the claim
  occurs in the passage (its title and date included);
- counts: a number that counts something in the claim ("380 ships", "a crew of 20") counts
  the same thing next to it in the passage: the claim's counted words are among the words
  that follow the number there (up to the next stop word other than "of"), or precede "of N".
  "Built nearly 380 ships" fails against "repaired over 380 military vessels", and "a batch
  of 23 tasks" against "a batch of nine tasks, out of 23 planned";
- years: an "in <year>" dates the claim's words where the passage dates them: "production
  in 2025" fails against "production in 2024, orientation of key tasks in 2025";
- owners: a possessive owns in the passage what it owns in the claim: "the Commission's
  Resolution 57" fails against "the Politburo's Resolution 57 and resolutions of the
  Commission" (a sentence naming both, tying it to the other);
- roles: each name's own words in the claim (the words right after it, its verb and object,
  or right before it) occur in a passage sentence that speaks of the name (holds it, its
  last word alone, "Chính", or opens with "He" or "She" right after): "Bui Thanh Son chaired
  the meeting" fails where he is listed as attending while another chaired; the name that
  opens the claim does its verb there too, not only comes after it ("To Lam urged the
  military" fails against "the Prime Minister urged the military ... and To Lam"); and a
  doer and its object do not trade places around the verb ("The Ministry asked PM Chính"
  against "PM Chính asked the Ministry");
- match: the claim matches its quote (the passage sentence or sentences that best match it):
  the mean of the share of its words found in the quote and of the embedding cosine between
  the two reaches `VerifierSettings.min_support`.

Words are compared through `rag.text.normalize` (case, accents, spellings, stems). A claim that
cites two passages is supported by them together if they pass as one. The thresholds were
chosen on the tune split of `tests/data/claims.jsonl` (scripts/eval_claims.py).

Not caught: a claim that reuses a passage's words, numbers and names in their places to say
something it does not (a dropped negation, a changed verb with the same object); a doer taken
from a list that a relative clause follows ("a maker and a start-up, which will write
software"); a topic moved between two numbered things in one sentence ("Resolution 57 is the
one on X" where the passage says so of Resolution 08).
"""

from __future__ import annotations

import itertools
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
_OWNER_TOKEN = re.compile(r"['’]s\b|\w[\w./-]*\w|\w|[^\w\s]")
_PRONOUN_OPENING = re.compile(r"(?:He|She)\b")
_PASSIVE = frozenset({"is", "are", "was", "were", "be", "been", "being"})
_AGENT = frozenset({"by", "the", "a", "an"})
_REPORTING = frozenset(map(normalize_word, ["said", "says", "told", "added", "noted", "according"]))
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
RULES = {'r1','r2a','r2b','r3a','r3b','r4','r5','r6','r7'}  # EXPERIMENT
_CALENDAR_TERMS = frozenset(map(normalize_word, _CALENDAR))
_TITLES = frozenset(map(normalize_word, _NOT_NAMES - _CALENDAR))


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
        return self.chunk.text[self.start - self.chunk.start : self.end - self.chunk.start]


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
    if attribute:  # the passage whose quote matches best, in words and meaning, among those holding its facts
        holding = [i for i, passage in enumerate(candidates) if claim_facts <= vocabularies[passage]] if 'r1' in RULES else []
        best = max(holding or range(len(quotes)), key=lambda i: quotes[i].coverage + cosines[i])
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
    """A number counting something else, a year dating something else, a thing with another owner,
    or a name doing something else, in the passage; "" if none."""
    passage = f"{chunk.title}. {chunk.text}"
    passage_counts = [(number, {*words, of} - {None}) for number, words, _, of in
                      _counted(_words(passage), settings.count_words + 2)]
    for number, counted, joined, of in _counted(_words(claim), settings.count_words):
        found = [words for passage_number, words in passage_counts if passage_number == number]
        if (counted or of) and found and not any((not counted or _counts_alike((counted, joined), words))
                                                 and (of is None or of in words) for words in found):
            return f"{number} counts something else in the passage, not {' '.join([*([of] if of else []), *counted])}"
    claim_words = _words(claim)
    elsewhere = ('r6' in RULES and _moved_year(claim_words, _words(passage))) or ('r7' in RULES and _other_owner(claim, passage))
    if elsewhere:
        return elsewhere
    spans = split_sentences(passage)
    sentences = [set(terms(_plain(passage[start:end]))) for start, end in spans]
    lower = {normalize_word(fold(token)) for token in _TOKEN.findall(_plain(passage)) if token[0].islower()}
    pronouns = [bool(_PRONOUN_OPENING.match(passage, start)) for start, _ in spans]
    doers = []
    for name, own in _names_with_own_words(claim_words):
        holding = _naming(name, sentences, pronouns, lower)
        if not (own and holding):
            continue
        if max(len(set(own) & sentences[i]) for i in holding) >= settings.min_role * len(own):
            if 'r4' in RULES: doers.append(_doer_elsewhere(claim_words, name, own[0], [passage[spans[i][0]:spans[i][1]] for i in holding]))
            continue
        # the name's own words may be paraphrased ("awarded" for "presented"): its sentence must then mean the claim
        vectors = embed([claim, *(passage[spans[i][0]:spans[i][1]] for i in holding)])
        if float(np.max(vectors[1:] @ vectors[0])) < settings.min_role_cosine:
            return f"the passage does not say that {' '.join(name)} {' '.join(own)}"
    # a doer and object trading places also leaves the doer after the verb: say the former
    return _reversed_roles(claim, [passage[start:end] for start, end in spans]) or next(filter(None, doers), "")


def _doer_elsewhere(claim_words: list[_Word], name: tuple[str, ...], verb: str, sentences: list[str]) -> str:
    """"To Lam urged the military" where the passage says "the Prime Minister urged the military
    ..., in line with directions of To Lam": the name opening the claim (or its clause) does the
    verb, but every passage sentence speaking of the name that holds the verb names it only
    after the verb, and not as its doer ("urged by To Lam"); "" otherwise. Left out: passive
    claims ("X was founded") and reporting verbs ("said Holm" names the speaker after the verb)."""
    claim_terms = [word.term for word in claim_words]
    if verb in _REPORTING or verb not in claim_terms or name[-1] not in claim_terms:
        return ""
    named, does = claim_terms.index(name[-1]), claim_terms.index(verb)
    if not named < does or _PASSIVE & set(claim_terms[named:does]) or not _opens_clause(claim_words, named):
        return ""
    with_verb = 0
    for sentence in sentences:
        sentence_words = _words(sentence)
        order = [word.term for word in sentence_words]
        if verb not in order:
            continue
        with_verb += 1
        at = order.index(verb)
        if name[-1] not in order or order.index(name[-1]) < at or _agent(sentence_words[at + 1 : order.index(name[-1])]):
            return ""  # named before the verb (or there as "he", "she"), or after it as the doer of a passive
    return f"in the passage someone else {verb} and {' '.join(name)} only comes after" if with_verb else ""


def _agent(between: list[_Word]) -> bool:
    """Whether the words between a passive verb and a name make the name its doer: "opened by
    Minister Huy", "managed by the Institute"."""
    return any(word.term == "by" for word in between) and all(
        word.capital or word.term in _AGENT or word.term in _TITLES for word in between)


def _opens_clause(words: list[_Word], position: int) -> bool:
    """Whether the name at `position` opens the sentence or a clause: only its capitalised
    words, titles and stop words stand between it and the start or a comma ("At the
    ceremony, General Secretary To Lam presented")."""
    while position > 0 and words[position - 1].term and (
            words[position - 1].capital or words[position - 1].stop or words[position - 1].term in _TITLES):
        position -= 1
    return position == 0 or not words[position - 1].term


def _moved_year(claim: list[_Word], passage: list[_Word]) -> str:
    """"Evaluated production in 2025" where the passage says "evaluated production in 2024,
    orientation of tasks in 2025": every "in <year>" of the passage that year goes with other
    words than the claim's, and another year goes with the claim's words; "" otherwise (a year
    the passage also gives unattached, "In 2025, ...", or words merely paraphrased, pass)."""
    passage_years = _years_in(passage)
    for year, dated in _years_in(claim):
        same = [words for passage_year, words in passage_years if passage_year == year]
        if not dated or not same or any(not words or words & dated for words in same):
            continue
        for other, words in passage_years:
            if other != year and words & dated:
                return f"in the passage {' '.join(sorted(words & dated))} goes with {other}, not {year}"
    return ""


def _other_owner(claim: str, passage: str) -> str:
    """"The Commission's Resolution 57" where a passage sentence names the Commission but ties
    Resolution 57 to another owner ("the Politburo's Resolution 57 and resolutions of the
    Commission"), and no sentence ties it to the Commission; "" otherwise, also where the
    passage gives it no owner or another owner in a sentence without the claim's ("Vietnam's
    General Department" against "the Ministry's General Department")."""
    sentences = [_owner_tokens(passage[start:end]) for start, end in split_sentences(passage)]
    tied = [_owners(tokens) for tokens in sentences]
    for owned, owners in _owners(_owner_tokens(claim)).items():
        if any(owners & ties.get(owned, set()) for ties in tied):
            continue
        for tokens, ties in zip(sentences, tied, strict=True):
            if ties.get(owned) and owners & {term for term, _ in tokens}:
                return f"in the passage {owned} is {' or '.join(sorted(ties[owned]))}'s, not {' or '.join(sorted(owners))}'s"
    return ""


def _owners(tokens: list[tuple[str, bool]]) -> dict[str, set[str]]:
    """What each possessive of a text owns, as {owned: owners}: "the Politburo's Resolution 57"
    and "Resolution 57 of the Politburo" both give {"57": {"politburo"}}."""
    owners: dict[str, set[str]] = {}
    for position, (term, _) in enumerate(tokens):
        if term == "'s" and position:
            owned = _owned(tokens[position + 1 :])
            if owned:
                owners.setdefault(owned, set()).add(tokens[position - 1][0])
        elif term == "of" and position and any(char.isdigit() for char in tokens[position - 1][0]):
            after = tokens[position + 1 :]
            after = after[1:] if after and after[0][0] == "the" else after
            run = list(itertools.takewhile(lambda token: token[1], after))
            if run:  # only a numbered thing's: "Department of Defence" names, it does not own
                owners.setdefault(tokens[position - 1][0], set()).add(run[-1][0])
    return owners


def _owned(tokens: list[tuple[str, bool]]) -> str:
    """What a possessive owns, as one term: the first number or code of the capitalised run after
    it ("Resolution No. 57-NQ/TW": 57-nq/tw), else the run's last word; "" if no run follows."""
    run = list(itertools.takewhile(lambda token: token[1] or token[0] == ".", tokens[:5]))
    keys = [term for term, capital in run if capital]
    return next((term for term in keys if any(char.isdigit() for char in term)), keys[-1] if keys else "")


def _owner_tokens(text: str) -> list[tuple[str, bool]]:
    """The words of a text as matching terms, each with whether it is capitalised or a number,
    and the possessive "'s" as a word of its own."""
    tokens = _OWNER_TOKEN.findall(_plain(text))
    return [("'s", False) if token[0] in "'’" else (normalize_word(fold(token)), token[0].isupper() or token[0].isdigit())
            for token in tokens]


def _years_in(words: list[_Word]) -> list[tuple[str, set[str]]]:
    """Each year with the words it dates: with "in <year>" (or "in <month> <year>"), the last
    content words before "in", up to four, back to punctuation or a number; none for a year
    otherwise written ("In 2025, ...", "the 2025 exhibition")."""
    found = []
    for position, word in enumerate(words):
        if not (word.number and _is_year(word.term)):
            continue
        before = position - 1
        while before >= 0 and words[before].term in _CALENDAR_TERMS:
            before -= 1
        bound: set[str] = set()
        if before >= 0 and words[before].term == "in":
            for earlier in reversed(words[:before]):
                if not earlier.term or earlier.number or len(bound) == 4:
                    break
                if not earlier.stop:
                    bound.add(earlier.term)
        found.append((word.term, bound))
    return found


def _naming(name: tuple[str, ...], sentences: list[set[str]], pronouns: list[bool], lower: set[str]) -> list[int]:
    """The passage sentences that speak of a name: those holding all its words; those holding
    its last word alone where the passage never writes that word in lower case (`lower`), a
    short reference ("Chính said" after "Prime Minister Phạm Minh Chính"); and a sentence
    opening with "He" or "She" (`pronouns`) right after one of these, about the same person."""
    naming: list[int] = []
    for i, sentence in enumerate(sentences):
        if set(name) <= sentence or 'r3a' in RULES and name[-1] not in lower and name[-1] in sentence \
                or 'r3b' in RULES and pronouns[i] and naming and naming[-1] == i - 1:
            naming.append(i)
    return naming


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
            sentence_words = _words(sentence)
            order = [word.term for word in sentence_words]
            if verb not in order or name[-1] not in order:
                continue
            at, named = order.index(verb), order.index(name[-1])
            if named > at and any(other in order[:at] for other in others) \
                    and not ('r5' in RULES and _agent(sentence_words[at + 1 : named])):
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
    a claim often sits in an earlier sentence ("he", "it"), but its figures are what to show.
    Facts in the article's title count as held by every sentence (a name given only there does
    not pull the quote away from the sentence that says the rest), and number words as digits."""
    spans = split_sentences(chunk.text)
    sentence_terms = [(_vocabulary if 'r2b' in RULES else lambda t: set(terms(_plain(t))))(chunk.text[start:end]) for start, end in spans]
    in_title = _vocabulary(chunk.title) if 'r2a' in RULES else set()
    runs = []
    for first in range(len(spans)):
        held: set[str] = set(in_title)
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
