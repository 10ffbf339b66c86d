"""Extractive answers: the retrieved sentences that answer best, each cited, or an abstention.

Every candidate sentence of the retrieved passages is scored by its cosine to the question
(the sentence vectors are already in the index), by the share of the question's idf-weighted
terms it contains (after `rag.textnorm` folding: accents, spellings, stems), and by the rank of
its passage. The best one to three sentences make the answer, quoted verbatim; a sentence that
another outlet reports too is said once and cites both. When the evidence is weak in
words (the passages lack the question's topic terms), the tool says the articles do not
answer and lists the related passages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.answer_records import Answer, AnswerSentence, Citation, RelatedPassage
from rag.config import Config
from rag.records import Chunk, Hit
from rag.store import Snapshot
from rag.textnorm import normalize_word, terms

NOT_ANSWERED = "The indexed articles do not answer this question."
# Words that frame a question rather than name its topic: an article need not contain them.
_QUESTION_TERMS = frozenset(normalize_word(word) for word in """many much kind kinds sort say said tell
    mention mentioned want wanted according given make made besides happen happened describe name
    list explain mean""".split())
_MAX_SENTENCES = 3
_RELATED = 3


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
        return self.chunk.text[self.start - self.chunk.start : self.end - self.chunk.start]


@dataclass(frozen=True)
class Evidence:
    """How well the retrieved passages answer: the ranked candidate sentences, and the
    largest idf-weighted share of the question's topic terms that one passage (with the
    outlets retelling it) holds."""

    sentences: list[ScoredSentence]
    passage_coverage: float


def topic_terms(question: str) -> list[str]:
    """The question's matching terms minus the words that only frame a question."""
    return sorted(set(terms(question)) - _QUESTION_TERMS)


def gather_evidence(snapshot: Snapshot, hits: list[Hit], query_vector: np.ndarray, question: str,
                    config: Config) -> Evidence:
    question_terms = topic_terms(question)
    idf = snapshot.lexical.idf(question_terms)
    total_idf = float(idf.sum()) or 1.0
    passage_coverage = max((_coverage(hit, question_terms, idf) for hit in hits), default=0.0) / total_idf
    return Evidence(score_sentences(snapshot, hits, query_vector, question_terms, idf, config), passage_coverage)


def _coverage(hit: Hit, question_terms: list[str], idf: np.ndarray) -> float:
    """The idf of the question's terms that the passage or its corroborating retellings hold.
    One passage, not all of them pooled: five passages on the topic pool most of an on-topic
    question's words even when none of them answers it."""
    held = {t for chunk in (hit.chunk, *hit.corroborating) for t in terms(f"{chunk.title} {chunk.text}")}
    return float(sum(w for t, w in zip(question_terms, idf, strict=True) if t in held))


def score_sentences(snapshot: Snapshot, hits: list[Hit], query_vector: np.ndarray, question_terms: list[str],
                    idf: np.ndarray, config: Config) -> list[ScoredSentence]:
    """Every sentence of the hits (and of their corroborating passages), best first.

    Coverage counts only the question terms the index knows (an unknown word cannot be
    matched by any sentence). A question often restates context ("at the Hoa Lac meeting")
    that the answering sentence leaves to those before it ("Also attending were ..."), so a
    term found only in the article's previous sentence counts half, the one before a quarter.
    """
    weights = {t: w for t, w in zip(question_terms, idf.tolist(), strict=True) if snapshot.lexical.knows(t)}
    total_idf = sum(weights.values()) or 1.0
    credits: dict[str, dict[int, dict[str, float]]] = {}
    seen: dict[int, ScoredSentence] = {}
    for hit in hits:
        for chunk in (hit.chunk, *hit.corroborating):
            stored = snapshot.chunks.of(chunk)
            fresh = [(s, span) for s, span in zip(stored.sentence_ids, stored.sentence_spans, strict=True)
                     if s not in seen]
            if not fresh:
                continue
            if chunk.article_id not in credits:
                credits[chunk.article_id] = _term_credits(snapshot.article_sentences(chunk.article_id), weights)
            cosines = snapshot.sentence_vectors.vectors_of(np.array([s for s, _ in fresh])) @ query_vector
            for (sentence_id, (start, end)), cosine in zip(fresh, cosines.tolist(), strict=True):
                credit = credits[chunk.article_id][sentence_id]
                coverage = sum(w * credit.get(t, 0.0) for t, w in weights.items()) / total_idf
                score = cosine + config.answer_coverage_weight * coverage + config.answer_rank_weight / hit.rank
                seen[sentence_id] = ScoredSentence(sentence_id, chunk, start, end, cosine, coverage, hit.rank, score)
    return sorted(seen.values(), key=lambda s: -s.score)


def _term_credits(sentences: list[tuple[int, str]], weights: dict[str, float]) -> dict[int, dict[str, float]]:
    """For each sentence of an article: 1 for each question term it holds, 1/2 for one only in
    the sentence before, 1/4 for one only in the sentence before that."""
    found = [set(terms(text)) & weights.keys() for _, text in sentences]
    credits = {}
    for position, (sentence_id, _) in enumerate(sentences):
        credit: dict[str, float] = {}
        for distance, share in ((2, 0.25), (1, 0.5), (0, 1.0)):
            if position - distance >= 0:
                credit.update(dict.fromkeys(found[position - distance], share))
        credits[sentence_id] = credit
    return credits


def is_weak(evidence: Evidence, config: Config) -> bool:
    """The abstention rule, calibrated by scripts/calibrate_abstention.py: no retrieved
    passage holds enough of the question's topic (a budget, a person, an event they never
    mention). Sentence cosine did not separate the calibration sets: on-topic questions about
    absent facts score as high as answerable ones."""
    return not evidence.sentences or evidence.passage_coverage < config.abstain_passage_coverage


def compose_extractive(question: str, hits: list[Hit], snapshot: Snapshot, query_vector: np.ndarray,
                       config: Config) -> Answer:
    """One to three verbatim sentences with citations, or an abstention with related passages."""
    evidence = gather_evidence(snapshot, hits, query_vector, question, config)
    if is_weak(evidence, config):
        return abstention(question, hits, mode="extractive")
    ranked = evidence.sentences
    vectors = snapshot.sentence_vectors.vectors_of(np.array([s.sentence_id for s in ranked]))
    chosen: list[int] = [0]
    for position in range(1, len(ranked)):
        if len(chosen) == _MAX_SENTENCES or ranked[position].score < config.answer_keep_ratio * ranked[0].score:
            break
        if all(float(vectors[position] @ vectors[i]) < config.duplicate_similarity for i in chosen):
            chosen.append(position)
    chosen.sort(key=lambda i: (ranked[i].passage_rank, ranked[i].chunk.article_id, ranked[i].start))

    citations: list[Citation] = []
    sentences: list[AnswerSentence] = []
    for position in chosen:
        sources = [ranked[position]] + _retellings(ranked, vectors, position, config)
        numbers = tuple(_cite(citations, source) for source in sources)
        sentences.append(AnswerSentence(text=ranked[position].text, citations=numbers))
    text = " ".join(f"{s.text} {''.join(f'[{n}]' for n in s.citations)}" for s in sentences)
    return Answer(question=question, answer=text, abstained=False, mode="extractive",
                  sentences=tuple(sentences), citations=tuple(citations))


def abstention(question: str, hits: list[Hit], mode: str, notice: str | None = None) -> Answer:
    related = tuple(
        RelatedPassage(article_id=h.chunk.article_id, title=h.chunk.title, date=h.chunk.date,
                       chunk_id=h.chunk.chunk_id, text=h.chunk.text, start=h.chunk.start, end=h.chunk.end,
                       score=h.score)
        for h in hits[:_RELATED])
    return Answer(question=question, answer=NOT_ANSWERED, abstained=True, mode=mode,  # type: ignore[arg-type]
                  related=related, notice=notice)


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


def _cite(citations: list[Citation], sentence: ScoredSentence) -> int:
    for citation in citations:
        if (citation.article_id, citation.start) == (sentence.chunk.article_id, sentence.start):
            return citation.n
    chunk = sentence.chunk
    citations.append(Citation(
        n=len(citations) + 1, article_id=chunk.article_id, title=chunk.title, date=chunk.date,
        chunk_id=chunk.chunk_id, quote=sentence.text, start=sentence.start, end=sentence.end,
        passage=chunk.text, passage_start=chunk.start))
    return citations[-1].n
