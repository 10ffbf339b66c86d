"""What the page and its API act on: one opened index and the article folder it is built from.

Shared by the page's event handlers and the named API endpoints, so both answer, search and
add articles the same way. Rebuilds run `Index.update`, which swaps the new snapshot in only
at the end: questions asked meanwhile are answered from the previous one.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag import (
    Article,
    ArticleInfo,
    Index,
    IntakeResult,
    QueryError,
    RagError,
    UpdateReport,
    intake_articles,
    read_article,
    remove_article,
    set_article_date,
)

if TYPE_CHECKING:
    from rag import Answer, Hit

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RebuildOutcome:
    """Files taken in, what the rebuild did, or why it failed (the previous index stays in use)."""

    intake: tuple[IntakeResult, ...]
    report: UpdateReport | None
    error: str | None
    finished_at: dt.datetime
    articles: int
    note: str = ""  # what was done to the articles folder first (an article moved out, say)

    @property
    def message(self) -> str:
        """One line for the page: did the index switch, and to what."""
        return " ".join(filter(None, (self.note, self._result())))

    def _result(self) -> str:
        when = self.finished_at.strftime("%H:%M:%S")
        if self.error is not None:
            return (f"Rebuild failed at {when}: {self.error}. Questions are still answered from "
                    "the previous index; press Rebuild to try again.")
        if self.report is None:
            return "No new article to index."
        if not self.report.changed:
            return f"Checked at {when}: the index is up to date ({self.articles} articles)."
        return (f"Rebuilt at {when}: {self.report.summary()}. Questions are now answered from the "
                f"new index ({self.articles} articles).")

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [result.to_json() for result in self.intake],
            "update": self.report.to_json() if self.report else None,
            "error": self.error,
            "message": self.message,
        }


class Workspace:
    """An opened index and its seeds folder, with the actions the page offers on them."""

    def __init__(self, index: Index, seeds_dir: Path) -> None:
        self.index = index
        self.seeds_dir = Path(seeds_dir)

    @property
    def llm_available(self) -> bool:
        return self.index.llm_available

    def ask(self, question: str, k: int | None = None, date_from: str | None = None, date_to: str | None = None,
            articles: Sequence[str] | None = None, mode: str = "extractive",
            include_undated: bool = False, on_token: Callable[[str], None] | None = None,
            history: Sequence[Answer | tuple[str, str] | Mapping[str, Any]] = ()) -> Answer:
        self.index.refresh()
        return self.index.ask(question, k=k, mode=mode, on_token=on_token, history=history,  # type: ignore[arg-type]
                              **_filters(date_from, date_to, articles, include_undated))

    def search(self, query: str, k: int = 5, date_from: str | None = None, date_to: str | None = None,
               articles: Sequence[str] | None = None, include_undated: bool = False) -> list[Hit]:
        self.index.refresh()
        return self.index.search(query, k=k, **_filters(date_from, date_to, articles, include_undated))

    def version(self) -> str:
        """Changes whenever an update, from this process or another (`rag index`), writes a new snapshot."""
        self.index.refresh()
        return self.index.version

    def status(self) -> dict[str, Any]:
        """`Index.info` for anyone who can reach the page, so without the server's paths: the
        index and the articles folder by name, each article's file relative to that folder
        (by name alone if it lies elsewhere)."""
        info = self.index.info()
        seeds = self.seeds_dir.resolve()
        articles = [{**article, "source": _relative_source(Path(article["source"]), seeds)}
                    for article in info["articles"]]
        return {**info, "index": _store_name(self.index.path), "articles": articles,
                "seeds": seeds.name, "llm_available": self.llm_available}

    def add_files(self, files: Sequence[str | Path], progress: Progress | None = None) -> RebuildOutcome:
        """Take the files into the seeds folder, then rebuild if any was new."""
        intake = tuple(intake_articles(files, self.seeds_dir, self.index.config))
        if not any(result.added for result in intake):
            return self._outcome(intake, None, None)
        return self._rebuild(intake, progress)

    def rebuild(self, progress: Progress | None = None) -> RebuildOutcome:
        """Index what changed in the seeds folder, e.g. files copied there by other means."""
        return self._rebuild((), progress)

    def article(self, article_id: str) -> tuple[ArticleInfo, Article]:
        """An indexed article's record and its file as it is now (its `content_hash` differs
        from the record's when the file changed since it was indexed), to read on the page."""
        found = {article.id: article for article in self.index.articles()}.get(article_id)
        if found is None:
            raise QueryError(f"no article {article_id!r} in the index: pick one from the library")
        return found, read_article(Path(found.source), self.index.config)

    def shown_source(self, info: ArticleInfo) -> str:
        """An article's file as the page shows it: relative to the articles folder, no server path."""
        return _relative_source(Path(info.source), self.seeds_dir.resolve())

    def remove_article(self, article_id: str) -> RebuildOutcome:
        """Move the article's file to removed/ beside the articles folder, then update the index."""
        info, _ = self.article(article_id)
        moved = remove_article(info.source, self.seeds_dir)
        outcome = self._rebuild((), None)
        return replace(outcome, note=f"{info.title} was moved to {moved.parent.name}/{moved.name}.")

    def set_date(self, article_id: str, date: str | None) -> RebuildOutcome:
        """Date an article (or clear the date set) in the folder's articles.meta.json, then update."""
        info, _ = self.article(article_id)
        if Path(info.source).parent.resolve() != self.seeds_dir.resolve():
            raise QueryError(f"{info.title} is not in the articles folder; only its articles can be dated here")
        set_article_date(self.seeds_dir, article_id, parse_date(date, "the article's date"))
        return self._rebuild((), None)

    def _rebuild(self, intake: tuple[IntakeResult, ...], progress: Progress | None) -> RebuildOutcome:
        try:
            report = self.index.update([self.seeds_dir], progress=progress)
        except RagError as error:
            return self._outcome(intake, None, str(error))
        except Exception as error:  # the page must say why, whatever failed
            log.exception("rebuild of %s from %s failed", self.index.path, self.seeds_dir)
            return self._outcome(intake, None, f"{type(error).__name__}: {error}")
        return self._outcome(intake, report, None)

    def _outcome(self, intake: tuple[IntakeResult, ...], report: UpdateReport | None,
                 error: str | None) -> RebuildOutcome:
        return RebuildOutcome(intake, report, error, dt.datetime.now(),
                              self.index.stats().articles)


def _store_name(store: Path | str) -> str:
    """The index as the page names it, without the server's paths or addresses: a folder's or
    milvus-lite file's name, or "Milvus" for a cluster."""
    if isinstance(store, Path):
        return store.resolve().name
    return f"Milvus ({Path(store.split(':', 1)[1]).name})" if store.startswith("milvus-lite:") else "Milvus"


def _relative_source(source: Path, seeds: Path) -> str:
    """An article's file relative to the (resolved) articles folder, or its name alone."""
    return str(source.relative_to(seeds)) if source.is_relative_to(seeds) else source.name


_MONTHS = {name: number for number in range(1, 13)
           for name in (dt.date(2000, number, 1).strftime("%B").lower(), dt.date(2000, number, 1).strftime("%b").lower())}
_MONTHS["sept"] = 9
_YEAR = re.compile(r"(\d{4})")
_MONTH_YEAR = re.compile(r"([a-z]+)\.?\s+(\d{4})|(\d{4})-(\d{1,2})")


def parse_date(value: str | None, name: str, end: bool = False) -> dt.date | None:
    """A date bound from a form field or an API call; empty means no bound. Besides YYYY-MM-DD
    a month ("March 2025", "2025-03") or a year ("2025") is read as its first day, or with
    `end` its last, so "March 2025" to "March 2025" is the whole month."""
    if value is None or not value.strip():
        return None
    text = " ".join(value.strip().lower().split())
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        pass
    month = _MONTH_YEAR.fullmatch(text)
    year = _YEAR.fullmatch(text)
    try:
        if month and (month.group(3) or month.group(1) in _MONTHS):
            number = int(month.group(4)) if month.group(3) else _MONTHS[month.group(1)]
            first_year = int(month.group(3) or month.group(2))
            if 1 <= number <= 12:
                first = dt.date(first_year, number, 1)
                return first.replace(day=calendar.monthrange(first_year, number)[1]) if end else first
        elif year:
            return dt.date(int(year.group(1)), 12, 31) if end else dt.date(int(year.group(1)), 1, 1)
    except ValueError:  # year 0, or a year past 9999
        pass
    raise QueryError(f"{name} must be a date (YYYY-MM-DD), a month (March 2025) or a year (2025), got {value!r}")


def _filters(date_from: str | None, date_to: str | None, articles: Sequence[str] | None,
             include_undated: bool) -> dict[str, Any]:
    return {
        "date_from": parse_date(date_from, "the start date"),
        "date_to": parse_date(date_to, "the end date", end=True),
        "articles": list(articles) if articles else None,
        "include_undated": include_undated,
    }
