"""The public index: open it, search it, ask it, update it.

>>> from rag import Index, build_index
>>> report = build_index(["seeds"], "index")        # embeds only new or changed articles
>>> index = Index.open("index")
>>> [hit.chunk.article_id for hit in index.search("ships built", k=3)]  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rag.answer.answerability import AnswerabilityModel, load_model
from rag.answer.extractive import compose_extractive
from rag.answer.generated import compose_llm
from rag.answer.generators import Generator, generator_from_env
from rag.answer.schema import Answer, AnswerMode
from rag.config import Config
from rag.encoders.base import Embedder
from rag.encoders.minilm import default_embedder
from rag.errors import ConfigError, QueryError, RagError
from rag.ingest.milvus_update import update_milvus
from rag.ingest.plan import UpdateReport
from rag.ingest.update import DEFAULT_INDEX_DIR, ProgressCallback, update_index
from rag.records import Hit, SearchFilter, iso_date
from rag.search.followups import Turn, standalone_question
from rag.search.retrieval import RETRIEVERS, Retriever, rank_chunks
from rag.search.typos import QueryTerms, correct_typos
from rag.storage.layout import current_snapshot_dir
from rag.storage.milvus import MilvusReader, MilvusSettings, MilvusStore, is_milvus_uri
from rag.storage.reader import IndexReader
from rag.storage.snapshot import check_compatible, load_snapshot, read_manifest
from rag.text.language import foreign_language, language_notice
from rag.text.normalize import terms

log = logging.getLogger(__name__)
_MAX_K = 1000


@dataclass(frozen=True)
class IndexStats:
    """How big an index is and how it was built (from its manifest)."""

    path: str
    version: str
    model: str
    dim: int
    articles: int
    chunks: int
    sentences: int
    segments: int
    updated_at: str
    chunker: dict[str, Any]
    vector_search: dict[str, str]


@dataclass(frozen=True)
class ArticleInfo:
    """What the index holds about one article."""

    id: str
    title: str
    date: dt.date | None
    chunks: int
    source: str
    content_hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "date": iso_date(self.date),
            "chunks": self.chunks,
            "source": self.source,
        }


class Index:
    """An opened index: an immutable snapshot in memory, searched with the encoder that built it.

    `update()` writes a new snapshot and then swaps it in with one assignment, so searches
    running meanwhile finish on the snapshot they started with.
    """

    def __init__(self, path: Path | str, snapshot: IndexReader, embedder: Embedder, config: Config) -> None:
        self.path = path
        self.embedder = embedder
        self.config = config
        self._snapshot = snapshot
        self._swap_lock = threading.Lock()
        # Decides between an answer, a hedged answer and "not in the articles" (rag.answer.answerability).
        self.answerability: AnswerabilityModel = load_model()
        if not callable(getattr(embedder, "embed_tokens", None)):
            raise ConfigError(f"the encoder {embedder.name!r} has no embed_tokens(texts) method, which answers "
                              "need (rag.encoders.base.Embedder lists what an encoder provides)")

    @classmethod
    def open(cls, path: str | Path = DEFAULT_INDEX_DIR, embedder: Embedder | None = None,
             config: Config | None = None) -> Index:
        """Open the index in a folder (the embedded store) or on Milvus (`milvus-lite:PATH`,
        `http(s)://host:19530`, rag.storage.milvus); refuse one built with another encoder or chunker."""
        embedder = embedder or default_embedder()
        config = config or Config()
        if not is_milvus_uri(path):
            reader = load_snapshot(current_snapshot_dir(Path(path)), read_ahead=True)
            check_compatible(reader.manifest, embedder, config, Path(path))
            return cls(Path(path), reader, embedder, config)
        store = MilvusStore.connect(MilvusSettings.from_uri(str(path)))
        try:
            milvus = MilvusReader.open(store)
            check_compatible(milvus.manifest, embedder, config, str(path))
        except RagError:
            store.close()
            raise
        return cls(str(path), milvus, embedder, config)

    @property
    def snapshot(self) -> IndexReader:
        """The immutable version of the index being served: what a tool that ranks without
        encoding a query (a benchmark, say) passes to rag.search.retrieval.rank_chunks. Take
        it once per use: an update swaps in a new one."""
        return self._snapshot

    def close(self) -> None:
        """Let go of the store: for milvus-lite, its server, so another process may open the file."""
        if isinstance(self._snapshot, MilvusReader):
            self._snapshot.store.close()

    def stats(self) -> IndexStats:
        """Counts and build settings of the snapshot being served."""
        manifest = self._snapshot.manifest
        return IndexStats(
            path=str(self.path), version=self._snapshot.name, model=manifest["embedder"]["name"],
            dim=manifest["embedder"]["dim"], articles=len(manifest["articles"]), chunks=manifest["counts"]["chunks"],
            sentences=manifest["counts"]["sentences"], segments=len(manifest["segments"]),
            updated_at=manifest["updated_at"], chunker=dict(manifest["chunker"]),
            vector_search=dict(manifest.get("vector_search", {})))

    @cached_property
    def generator(self) -> Generator | None:
        """The LLM for mode="llm" when `ask` is given none: the one the RAG_LLM_* environment
        variables configure (README), made on first use; None if they configure none."""
        return generator_from_env()

    @cached_property
    def llm_available(self) -> bool:
        """Whether mode="llm" works without passing a generator; a misconfiguration is logged."""
        try:
            return self.generator is not None
        except RagError as error:
            log.warning("LLM answers are unavailable: %s", error)
            return False

    def update(self, sources: Sequence[str | Path], rebuild: bool = False,
               progress: ProgressCallback | None = None, lock_timeout: float = 60.0) -> UpdateReport:
        """Bring the index in line with `sources` on disk, then serve the new snapshot."""
        if isinstance(self._snapshot, MilvusReader):
            store = self._snapshot.store
            report = update_milvus(sources, store.settings, self.embedder, self.config, rebuild=rebuild,
                                   progress=progress, lock_timeout=lock_timeout, store=store)
            with self._swap_lock:
                self._snapshot = MilvusReader.open(store)
            return report
        report, written = update_index(sources, self.path, self.embedder, self.config, rebuild=rebuild,
                                       progress=progress, lock_timeout=lock_timeout, served=self._snapshot)
        with self._swap_lock:  # serve the live snapshot, whoever wrote it, never an older one
            live = current_snapshot_dir(self.path)
            if written is not None and written.name == live.name:
                self._snapshot = written
            elif live.name != self._snapshot.name:
                self._snapshot = load_snapshot(live, read_ahead=True)
        return report

    def refresh(self) -> bool:
        """Serve the index as it is now if another process (`rag index`, another server) has
        updated it since this one last looked; True if it did. Cheap when nothing changed: one
        small file read (a folder) or one row (Milvus). A server calls it before each question,
        or it would answer from a snapshot that is gone (Milvus deletes a replaced article's rows)."""
        with self._swap_lock:
            served = self._snapshot
            if isinstance(served, MilvusReader):
                meta = served.store.meta()
                if meta is None or _commit_state(meta) == _commit_state(served.meta):
                    return False
                check_compatible(meta, self.embedder, self.config, str(self.path))
                self._snapshot = MilvusReader.open(served.store)
                return True
            live = current_snapshot_dir(Path(self.path))
            if live.name == served.name:
                return False
            check_compatible(read_manifest(live), self.embedder, self.config, Path(self.path))
            self._snapshot = load_snapshot(live, read_ahead=True)
            return True

    @property
    def version(self) -> str:
        """Names the snapshot being served; it changes with every update that writes one."""
        return self._snapshot.name

    def articles(self) -> list[ArticleInfo]:
        return [_article_info(article_id, entry)
                for article_id, entry in sorted(self._snapshot.manifest["articles"].items())]

    def info(self) -> dict[str, Any]:
        """What `rag info --json` prints: the stats and every article."""
        stats = self.stats()
        return {
            "index": stats.path,
            "model": stats.model,
            "dim": stats.dim,
            "articles": [article.to_json() for article in self.articles()],
            "counts": {"articles": stats.articles, "chunks": stats.chunks, "sentences": stats.sentences},
            "updated_at": stats.updated_at,
            "chunker": stats.chunker,
        }

    def search(self, query: str, k: int = 5, *, date_from: dt.date | None = None,
               date_to: dt.date | None = None, articles: Iterable[str] | None = None,
               include_undated: bool = False, retriever: Retriever = "hybrid") -> list[Hit]:
        """The k best passages for the query, best first.

        Filters apply inside the retrievers, before the top-k cut. A date bound excludes
        articles of unknown date unless `include_undated` is true.
        """
        query = validate_query(query, self.config)
        _check_count(k, _MAX_K)
        if retriever not in RETRIEVERS:
            raise QueryError(f"retriever must be one of {', '.join(RETRIEVERS)}, got {retriever!r}")
        snapshot = self._snapshot
        search_filter = _make_filter(snapshot, date_from, date_to, articles, include_undated)
        if not snapshot.chunk_count:
            return []
        query_vector = None if retriever == "bm25" else self.embed_query(query)
        query_terms = QueryTerms.plain(terms(query)) if retriever == "dense" else correct_typos(terms(query), snapshot.lexicon)
        return rank_chunks(snapshot, query_vector, query_terms, k, search_filter, self.config, retriever)

    def ask(self, question: str, k: int | None = None, *, date_from: dt.date | None = None,
            date_to: dt.date | None = None, articles: Iterable[str] | None = None,
            include_undated: bool = False, mode: AnswerMode = "extractive", generator: Generator | None = None,
            on_token: Callable[[str], None] | None = None,
            history: Sequence[Answer | Turn | tuple[str, str] | Mapping[str, str]] = ()) -> Answer:
        """Answer from the articles with cited verbatim sentences, or say they do not answer.

        mode="llm" has `generator` (else `self.generator`) write the answer from the passages,
        streaming its text to `on_token`; the answer returned is verified (rag.answer.verification).
        `history`, the conversation's earlier answers oldest first (or their JSON records), makes a
        follow-up ("Who else attended it?") searched with the topic it continues
        (`Answer.searched_for` says how).
        A date range says which undated articles it left out (`Answer.excluded_undated`).
        """
        started = time.perf_counter()
        question = validate_query(question, self.config)
        searched_for = standalone_question(question, _turns(history))
        k = self.config.answer_passages if k is None else k
        _check_count(k, 50)
        if mode not in ("extractive", "llm"):
            raise QueryError(f"mode must be 'extractive' or 'llm', got {mode!r}")
        llm = None
        if mode == "llm":
            llm = generator or self.generator
            if llm is None:
                raise QueryError("LLM answers are not configured: set RAG_LLM_URL and RAG_LLM_MODEL (an OpenAI-"
                                 "compatible endpoint) or RAG_LLM_GGUF (a local model file), or use mode 'extractive'")
        snapshot = self._snapshot
        search_filter = _make_filter(snapshot, date_from, date_to, articles, include_undated)
        query_vector = self.embed_query(searched_for or question)
        query_terms = correct_typos(terms(searched_for or question), snapshot.lexicon)
        hits = rank_chunks(snapshot, query_vector, query_terms, k, search_filter, self.config) if snapshot.chunk_count else []
        retrieved = time.perf_counter()
        if llm is None:
            answer = compose_extractive(searched_for or question, hits, snapshot, query_vector, query_terms,
                                        self.embedder.embed_tokens, self.answerability, self.config)
        else:
            answer = compose_llm(
                searched_for or question, hits, llm, self.embedder.embed, on_token=on_token,
                extractive=lambda: compose_extractive(searched_for or question, hits, snapshot, query_vector, query_terms,
                                        self.embedder.embed_tokens, self.answerability, self.config))
        excluded, empty_range = _date_range_effects(snapshot, search_filter)
        notices = [language_notice(language) if (language := foreign_language(question)) else None,
                   empty_range, _undated_notice(excluded), answer.notice]
        answer = replace(answer, question=question, searched_for=searched_for, excluded_undated=excluded,
                         corrections=_typed_corrections(question, query_terms),
                         notice=" ".join(filter(None, notices)) or None)
        finished = time.perf_counter()
        return replace(answer, timings={**answer.timings, "retrieval_ms": (retrieved - started) * 1000,
                                        "answer_ms": (finished - retrieved) * 1000,
                                        "total_ms": (finished - started) * 1000})

    def corrections(self, query: str) -> dict[str, tuple[str, ...]]:
        """The typed words the index does not know, each with the known terms it is searched
        for instead ("meting" -> ("meet",)): what "searched for meet (for 'meting')" says."""
        return _typed_corrections(query, correct_typos(terms(query), self._snapshot.lexicon))

    def embed_query(self, query: str) -> np.ndarray:
        return self.embedder.embed([query])[0]

    def undated_articles(self) -> list[str]:
        return sorted(article_id for article_id, entry in self._snapshot.manifest["articles"].items()
                      if not entry["date"])


def _turns(history: Sequence[Answer | Turn | tuple[str, str] | Mapping[str, str]]) -> list[Turn]:
    """The conversation's turns from earlier Answers or their JSON records (the web API's), Turn
    records or (question, answer) pairs, checked. An answer's turn is the question as it was
    searched, so that a chain of follow-ups keeps its topic."""
    turns = []
    for turn in history:
        if isinstance(turn, Turn):
            turns.append(turn)
        elif isinstance(turn, Answer):
            turns.append(Turn(turn.searched_for or turn.question, turn.answer))
        elif isinstance(turn, Mapping) and isinstance(turn.get("question"), str) and isinstance(turn.get("answer"), str):
            searched = turn.get("searched_for")
            turns.append(Turn(searched if isinstance(searched, str) and searched else turn["question"], turn["answer"]))
        elif isinstance(turn, tuple) and len(turn) == 2 and all(isinstance(part, str) for part in turn):
            turns.append(Turn(*turn))
        else:
            raise QueryError(f"history must list earlier turns as (question, answer) or "
                             f'{{"question": ..., "answer": ...}}, got {turn!r:.80}')
    return turns


def _commit_state(meta: Mapping[str, Any]) -> tuple[Any, ...]:
    """What a Milvus reader's view depends on: the build (a rebuild starts the generations
    again), the committed generation and the articles an update in progress hides."""
    return meta.get("build"), meta["generation"], meta.get("state"), tuple(meta.get("pending", ()))


def _date_range_effects(snapshot: IndexReader, search_filter: SearchFilter) -> tuple[tuple[str, ...], str | None]:
    """What a date range does, read in one pass over the articles: the undated articles it
    leaves out (of those the article filter admits), and a notice when it admits no article
    at all (said instead of "the articles do not answer")."""
    if not search_filter.has_date_bound:
        return (), None
    undated, any_dated = [], False
    for article_id, entry in snapshot.manifest["articles"].items():
        if not entry["date"]:
            if search_filter.articles is None or article_id in search_filter.articles:
                undated.append(article_id)
        elif not any_dated:
            any_dated = search_filter.admits(article_id, dt.date.fromisoformat(entry["date"]))
    excluded = () if search_filter.include_undated else tuple(sorted(undated))
    if any_dated or (search_filter.include_undated and undated):  # something was searched
        return excluded, None
    bounds = f"from {search_filter.date_from or 'the first'} to {search_filter.date_to or 'the last'}"
    return excluded, f"No article is dated in this range ({bounds}): widen the dates or clear them."


def _undated_notice(excluded: Sequence[str]) -> str | None:
    if not excluded:
        return None
    return (f"{len(excluded)} article(s) of unknown date ({', '.join(excluded)}) were not searched under the "
            "date range; include undated articles to search them.")


def _typed_corrections(query: str, query_terms: QueryTerms) -> dict[str, tuple[str, ...]]:
    """Corrections keyed by the word as typed, not by its normalised term."""
    return {word: query_terms.corrections[term] for word in re.findall(r"\w+", query) for term in terms(word)
            if term in query_terms.corrections}


def _check_count(k: object, most: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= most:
        raise QueryError(f"k (passages) must be a whole number from 1 to {most}, got {k!r}")


def _make_filter(snapshot: IndexReader, date_from: dt.date | None, date_to: dt.date | None,
                 articles: Iterable[str] | None, include_undated: bool) -> SearchFilter:
    """Check filter values against the snapshot searched, saying what is wrong with them."""
    for name, value in (("date_from", date_from), ("date_to", date_to)):
        if value is not None and (not isinstance(value, dt.date) or isinstance(value, dt.datetime)):
            raise QueryError(f"{name} must be a datetime.date, got {type(value).__name__} {value!r}: "
                             "pass datetime.date.fromisoformat('YYYY-MM-DD')")
    if isinstance(articles, str | bytes):
        raise QueryError(f"articles must be a list of article ids, not one string: articles=[{articles!r}]")
    if articles is not None:
        articles = list(articles)
        if not all(isinstance(article, str) for article in articles):
            raise QueryError(f"articles must be article ids (text), got {articles!r}: `rag info` lists them")
    if date_from and date_to and date_from > date_to:
        raise QueryError(f"the date range is empty: {date_from} is after {date_to}")
    chosen = None
    if articles is not None:
        chosen = frozenset(articles)
        unknown = sorted(chosen - set(snapshot.manifest["articles"]))
        if unknown:
            raise QueryError(f"unknown article id(s) {', '.join(unknown)}: `rag info` lists the indexed ones")
    return SearchFilter(date_from=date_from, date_to=date_to, articles=chosen, include_undated=include_undated)


def validate_query(query: str, config: Config) -> str:
    """Strip a query and refuse an empty or over-long one with a message that says what to do."""
    if not isinstance(query, str):
        raise QueryError(f"the question must be text, got {type(query).__name__}")
    query = query.strip()
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as error:
        raise QueryError(f"the question holds a character that is not text (U+{ord(query[error.start]):04X} at "
                         f"position {error.start}, half of a pair): retype or paste it again") from None
    if not query:
        raise QueryError("the question is empty: type a question about the articles")
    if len(query) > config.max_query_chars:
        raise QueryError(
            f"the question is {len(query)} characters long; the limit is {config.max_query_chars}: "
            "ask a shorter question"
        )
    return query


def _article_info(article_id: str, entry: dict[str, Any]) -> ArticleInfo:
    return ArticleInfo(
        id=article_id,
        title=entry["title"],
        date=dt.date.fromisoformat(entry["date"]) if entry["date"] else None,
        chunks=entry["chunks"],
        source=entry["source"],
        content_hash=entry["content_hash"],
    )
