"""Extractive answers: the retrieved sentences that answer best, each cited, or an abstention.

Every candidate sentence of the retrieved passages is scored by its cosine to the question
(the sentence vectors are already in the index), by the share of the question's idf-weighted
terms it contains (after `rag.text.normalize` folding: accents, spellings, stems; a typed word the
index does not know counts through the known terms nearest it, weighted down), and by the
rank of its passage. The best one to three sentences make the answer, quoted verbatim; one
that opens on a pronoun or connective brings the sentence before it, which names what it
refers to; a sentence that another outlet reports too is said once and cites both. Whether
the evidence answers at all is decided by `rag.answer.answerability` from the evidence's signals:
an answer, the closest evidence given as such, or "not in the articles" with related passages.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rag.answer.answerability import AnswerabilityModel
from rag.answer.question_types import asked_type, holds_type
from rag.answer.schema import Answer, AnswerSentence, Citation, RelatedPassage, cite
from rag.config import Config
from rag.records import Chunk, Hit
from rag.search.typos import QueryTerms
from rag.storage.reader import IndexReader
from rag.text.normalize import normalize_word, terms
from rag.text.sentences import split_sentences

NOT_ANSWERED = "The indexed articles do not answer this question."
HEDGED = "Closest evidence: the articles may not answer this directly."
# Words that frame a question rather than name its topic: an article need not contain them.
_QUESTION_TERMS = frozenset(normalize_word(word) for word in """many much kind kinds sort say said tell
    mention mentioned want wanted according given make made besides happen happened describe name
    list explain mean""".split())
# A sentence opening on one of these leans on the one before it for what it is about.
_LEANS_BACK = re.compile(r"^[\"'“‘(]?(he|she|it|its|they|their|this|these|that|those|also|however|meanwhile|"
                         r"moreover|besides|additionally|in addition|accordingly|therefore|thus|there)\b",
                         re.IGNORECASE)
_MAX_SENTENCES = 3
_RELATED = 3
_MARGIN_RANK = 5  # cosine_margin: the best sentence's cosine above that of the fifth best
_ALIGNED = 3  # token signals: the best of the top three sentences
_WORD = re.compile(r"\w+")
TokenEmbed = Callable[[Sequence[str]], list[tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class ScoredSentence:
    """A candidate sentence: where it is, and how well it answers."""

    sentence_id: int
    chunk: Chunk
    start: int
    end: int
    cosine: float
    coverage: float
    passage_rank: int
    score: float

    @property
    def text(self) -> str:
        return self.chunk.span(self.start, self.end)


@dataclass(frozen=True)
class TopicTerm:
    """A term of the question's topic: its idf weight, and the index terms that match it with
    the credit each gives (1 for itself; `TYPO_WEIGHT` for a known term read for a typo).
    No matches: the index does not know it in any form."""

    weight: float
    matches: dict[str, float]


@dataclass(frozen=True)
class Evidence:
    """How well the retrieved passages answer: the ranked candidate sentences, and the
    signals `rag.answer.answerability` decides on."""

    sentences: list[ScoredSentence]
    signals: dict[str, float]


def topic_words(question: str) -> set[str]:
    """The question's matching terms minus the words that only frame a question."""
    return set(terms(question)) - _QUESTION_TERMS


def topic_terms(question: str, query: QueryTerms, reader: IndexReader) -> list[TopicTerm]:
    """The question's topic words, each weighted by idf, with what in the index matches it."""
    typed = sorted(topic_words(question))
    idf = reader.lexicon.idf(typed).tolist()
    found = []
    for term, weight in zip(typed, idf, strict=True):
        if reader.lexicon.knows(term):
            found.append(TopicTerm(weight, {term: 1.0}))
        elif stand_ins := query.corrections.get(term):  # a typo weighs what the words read for it weigh
            found.append(TopicTerm(float(reader.lexicon.idf(list(stand_ins)).max()),
                                   dict.fromkeys(stand_ins, _typo_credit(query, stand_ins))))
        else:  # unknown in any form: weighted as the rarest term, matched by nothing
            found.append(TopicTerm(weight, {}))
    return found


def _typo_credit(query: QueryTerms, stand_ins: tuple[str, ...]) -> float:
    return min((w for t, w in zip(query.terms, query.weights, strict=True) if t in stand_ins), default=0.0)


def _held(topic: list[TopicTerm], held: dict[str, float]) -> float:
    """The idf share of the topic that `held` (term -> credit) holds."""
    total = sum(t.weight for t in topic) or 1.0
    return sum(t.weight * max((credit * held.get(term, 0.0) for term, credit in t.matches.items()), default=0.0)
               for t in topic) / total


def gather_evidence(reader: IndexReader, hits: list[Hit], query_vector: np.ndarray, question: str,
                    query: QueryTerms, embed_tokens: TokenEmbed, config: Config) -> Evidence:
    """The candidate sentences of the hits, best first, and the signals of the evidence."""
    topic = topic_terms(question, query, reader)
    passage_coverage = max((_held(topic, dict.fromkeys(_passage_terms(hit), 1.0)) for hit in hits), default=0.0)
    sentences = score_sentences(reader, hits, query_vector, question, topic, config)
    total = sum(t.weight for t in topic) or 1.0
    cosines = sorted((s.cosine for s in sentences), reverse=True)
    best = sentences[0] if sentences else None
    signals = {
        "passage_coverage": passage_coverage,
        "sentence_coverage": best.coverage if best else 0.0,
        "sentence_cosine": cosines[0] if cosines else 0.0,
        "unknown_share": sum(t.weight for t in topic if not t.matches) / total,
        "cosine_margin": (cosines[0] - cosines[min(_MARGIN_RANK, len(cosines)) - 1]) if cosines else 0.0,
        **token_alignment(reader, question, [s.text for s in sentences[:_ALIGNED]], embed_tokens),
    }
    return Evidence(sentences, signals)


def token_alignment(reader: IndexReader, question: str, sentences: list[str], embed_tokens: TokenEmbed,
                    ) -> dict[str, float]:
    """How well the best of `sentences` holds each topic word of the question in meaning, not
    spelling (BERTScore-style MaxSim over MiniLM's contextual token vectors: "boats" finds
    "ships"; a budget the articles never give finds nothing near "budget").

    token_match: the idf-weighted mean, over the question's topic words, of each word's best
    cosine to a token of the sentence; token_gap: the worst-held word's best cosine."""
    words = [(match.span(), sorted(topic_words(match.group()))) for match in _WORD.finditer(question)]
    words = [(span, found) for span, found in words if found]
    if not words or not sentences:
        return {"token_match": 0.0, "token_gap": 0.0}
    (question_tokens, offsets), *sentence_tokens = embed_tokens([question, *sentences])
    vectors, weights = [], []
    for (start, end), word_terms in words:
        inside = (offsets[:, 0] >= start) & (offsets[:, 1] <= end)
        if inside.any():
            mean = question_tokens[inside].mean(axis=0)
            vectors.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            weights.append(float(reader.lexicon.idf(word_terms).max()))
    if not vectors:
        return {"token_match": 0.0, "token_gap": 0.0}
    word_vectors, word_weights = np.array(vectors), np.array(weights)
    best = max((np.max(word_vectors @ tokens.T, axis=1) for tokens, _ in sentence_tokens if len(tokens)),
               key=lambda held: float(held @ word_weights), default=np.zeros(len(vectors)))
    return {"token_match": float(best @ word_weights / word_weights.sum()), "token_gap": float(best.min())}


def _passage_terms(hit: Hit) -> set[str]:
    """The terms of a passage and of the retellings corroborating it. One passage, not all of
    them pooled: five passages on the topic pool most of an on-topic question's words even
    when none of them answers it."""
    return {t for chunk in (hit.chunk, *hit.corroborating) for t in terms(f"{chunk.title} {chunk.text}")}


def score_sentences(reader: IndexReader, hits: list[Hit], query_vector: np.ndarray, question: str,
                    topic: list[TopicTerm], config: Config) -> list[ScoredSentence]:
    """Every sentence of the hits (and of their corroborating passages), best first.

    Coverage counts only the topic terms the index knows in some form (an unknown word cannot
    be matched by any sentence). A question often restates context ("at the Hoa Lac meeting")
    that the answering sentence leaves to those before it ("Also attending were ..."), so a
    term found only in the article's previous sentence counts half, the one before a quarter.
    A sentence holding the type of answer the question asks for (a number for "how many")
    gains `answer_type_weight`.
    """
    matchable = [t for t in topic if t.matches]
    wanted = {term for t in matchable for term in t.matches}
    wanted_type = asked_type(question)
    credits: dict[str, dict[int, dict[str, float]]] = {}
    seen: dict[int, ScoredSentence] = {}
    for hit in hits:
        for chunk in (hit.chunk, *hit.corroborating):
            stored = reader.stored_of(chunk)
            fresh = [(s, span) for s, span in zip(stored.sentence_ids, stored.sentence_spans, strict=True)
                     if s not in seen]
            if not fresh:
                continue
            if chunk.article_id not in credits:
                credits[chunk.article_id] = _term_credits(reader.article_sentences(chunk.article_id), wanted)
            cosines = reader.sentence_vectors_of(np.array([s for s, _ in fresh])) @ query_vector
            for (sentence_id, (start, end)), cosine in zip(fresh, cosines.tolist(), strict=True):
                coverage = _held(matchable, credits[chunk.article_id][sentence_id])
                text = chunk.span(start, end)
                score = (cosine + config.answer_coverage_weight * coverage + config.answer_rank_weight / hit.rank
                         + config.answer_type_weight * holds_type(text, wanted_type))
                seen[sentence_id] = ScoredSentence(sentence_id, chunk, start, end, cosine, coverage, hit.rank, score)
    return sorted(seen.values(), key=lambda s: -s.score)


def _term_credits(sentences: list[tuple[int, str]], wanted: set[str]) -> dict[int, dict[str, float]]:
    """For each sentence of an article: 1 for each wanted term it holds, 1/2 for one only in
    the sentence before, 1/4 for one only in the sentence before that. News sentences lean on
    the ones before ("He said the plant..."), so a term named just before is half present; the
    halving per sentence is a fixed decay, not a tuned weight."""
    found = [set(terms(text)) & wanted for _, text in sentences]
    credits = {}
    for position, (sentence_id, _) in enumerate(sentences):
        credit: dict[str, float] = {}
        for distance, share in ((2, 0.25), (1, 0.5), (0, 1.0)):
            if position - distance >= 0:
                credit.update(dict.fromkeys(found[position - distance], share))
        credits[sentence_id] = credit
    return credits


def compose_extractive(question: str, hits: list[Hit], reader: IndexReader, query_vector: np.ndarray,
                       query: QueryTerms, embed_tokens: TokenEmbed, answerability: AnswerabilityModel,
                       config: Config) -> Answer:
    """One to three verbatim sentences with citations, hedged when the evidence may not answer,
    or an abstention with related passages."""
    evidence = gather_evidence(reader, hits, query_vector, question, query, embed_tokens, config)
    scores = answerability.scores(evidence.signals)
    signals = {**evidence.signals, **scores}
    outcome = answerability.outcome(scores) if evidence.sentences else "not_found"
    if outcome == "not_found":
        return abstention(question, hits, mode="extractive", signals=signals)
    ranked = evidence.sentences
    vectors = reader.sentence_vectors_of(np.array([s.sentence_id for s in ranked]))
    chosen: list[int] = [0]
    for position in range(1, len(ranked)):
        if len(chosen) == _MAX_SENTENCES or ranked[position].score < config.answer_keep_ratio * ranked[0].score:
            break
        if all(float(vectors[position] @ vectors[i]) < config.duplicate_similarity for i in chosen):
            chosen.append(position)
    chosen.sort(key=lambda i: (ranked[i].passage_rank, ranked[i].chunk.article_id, ranked[i].start))

    citations: list[Citation] = []
    sentences: list[AnswerSentence] = []
    quoted: set[tuple[str, int]] = set()
    for position in chosen:
        sentence = ranked[position]
        before = _referent(reader, sentence)
        if before is not None and (before.chunk.article_id, before.start) not in quoted:
            sentences.append(AnswerSentence(text=before.text, citations=(cite(citations, before.chunk, before.start, before.end),)))
            quoted.add((before.chunk.article_id, before.start))
        if (sentence.chunk.article_id, sentence.start) in quoted:
            continue
        sources = [sentence] + _retellings(ranked, vectors, position, config)
        numbers = tuple(cite(citations, source.chunk, source.start, source.end) for source in sources)
        sentences.append(AnswerSentence(text=sentence.text, citations=numbers))
        quoted.add((sentence.chunk.article_id, sentence.start))
    text = " ".join(f"{s.text} {''.join(f'[{n}]' for n in s.citations)}" for s in sentences)
    return Answer(question=question, answer=text, outcome=outcome, mode="extractive",
                  sentences=tuple(sentences), citations=tuple(citations),
                  notice=HEDGED if outcome == "hedged" else None, signals=signals)


def _referent(reader: IndexReader, sentence: ScoredSentence) -> ScoredSentence | None:
    """The sentence before one that opens on a pronoun or connective ("He", "It", "Also"),
    when it is in the same passage: it names what the chosen sentence refers to."""
    if not _LEANS_BACK.match(sentence.text):
        return None
    stored = reader.stored_of(sentence.chunk)
    position = stored.sentence_ids.index(sentence.sentence_id)
    if position == 0:
        return None
    start, end = stored.sentence_spans[position - 1]
    return ScoredSentence(stored.sentence_ids[position - 1], sentence.chunk, start, end, 0.0, 0.0,
                          sentence.passage_rank, 0.0)


def abstention(question: str, hits: list[Hit], mode: str, signals: dict[str, float] | None = None) -> Answer:
    """"Not in the articles", with the best passages as related reading, each with the sentence
    of it that shares the most of the question's terms."""
    wanted = set(terms(question))
    related = tuple(
        RelatedPassage(article_id=h.chunk.article_id, title=h.chunk.title, date=h.chunk.date,
                       chunk_id=h.chunk.chunk_id, text=h.chunk.text, start=h.chunk.start, end=h.chunk.end,
                       score=h.score, **_closest_sentence(h.chunk, wanted))
        for h in hits[:_RELATED])
    return Answer(question=question, answer=NOT_ANSWERED, outcome="not_found", mode=mode,  # type: ignore[arg-type]
                  related=related, signals=signals or {})


def _closest_sentence(chunk: Chunk, wanted: set[str]) -> dict[str, int]:
    """The offsets of the chunk's sentence sharing the most terms with `wanted` (the first on a tie)."""
    spans = split_sentences(chunk.text) or [(0, len(chunk.text))]
    start, end = max(spans, key=lambda span: len(wanted.intersection(terms(chunk.text[span[0]:span[1]]))))
    return {"snippet_start": chunk.start + start, "snippet_end": chunk.start + end}


def _retellings(ranked: list[ScoredSentence], vectors: np.ndarray, position: int,
                config: Config) -> list[ScoredSentence]:
    """The same statement in other articles: one sentence per other article, the closest."""
    found: dict[str, tuple[float, ScoredSentence]] = {}
    own = ranked[position].chunk.article_id
    similarities = vectors @ vectors[position]
    for other, similarity in enumerate(similarities.tolist()):
        article = ranked[other].chunk.article_id
        if article != own and similarity >= config.duplicate_similarity:
            if article not in found or similarity > found[article][0]:
                found[article] = (similarity, ranked[other])
    return [sentence for _, sentence in sorted(found.values(), key=lambda pair: -pair[0])]
