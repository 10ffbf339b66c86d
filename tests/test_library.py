"""The article library: reading an article, dating one from a sidecar file, removing one safely."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from rag import ArticleError, Config, Index, QueryError, build_index, load_articles
from rag.text.articles import META_FILE, set_article_date
from ui.app import Handlers
from ui.workspace import Workspace

HOA_LAC = "003_62729c1e8f798b4f"  # an undated seed


@pytest.fixture
def workspace(fake_index: Path, seeds_copy: Path, embedder) -> Workspace:
    return Workspace(Index.open(fake_index, embedder=embedder), seeds_copy)


def test_a_date_set_beside_the_articles_dates_the_article_without_touching_its_text(seeds_copy: Path) -> None:
    before = (seeds_copy / f"{HOA_LAC}.txt").read_bytes()
    set_article_date(seeds_copy, HOA_LAC, dt.date(2025, 3, 15))

    [article] = [a for a in load_articles([seeds_copy], Config()).articles if a.id == HOA_LAC]
    assert article.date == dt.date(2025, 3, 15)
    assert (seeds_copy / f"{HOA_LAC}.txt").read_bytes() == before
    assert json.loads((seeds_copy / META_FILE).read_text()) == {HOA_LAC: {"date": "2025-03-15"}}
    report = load_articles([seeds_copy], Config())
    assert not report.failures and not any(META_FILE in message for message in report.skipped)


def test_a_damaged_date_file_is_reported_once_and_the_articles_still_load(seeds_copy: Path) -> None:
    (seeds_copy / META_FILE).write_text("{not json", encoding="utf-8")
    report = load_articles([seeds_copy], Config())

    assert len(report.articles) == 5
    [(path, message)] = report.failures.items()
    assert path.name == META_FILE and "is not readable JSON" in message


def test_dating_an_article_from_the_page_updates_the_index_and_its_filters(workspace: Workspace) -> None:
    assert HOA_LAC in workspace.index.undated_articles()
    outcome = workspace.set_date(HOA_LAC, "2025-03-15")

    assert outcome.error is None and outcome.report.updated == [HOA_LAC]
    assert HOA_LAC not in workspace.index.undated_articles()
    hits = workspace.index.search("Hoa Lac meeting", k=3, date_from=dt.date(2025, 3, 1), date_to=dt.date(2025, 3, 31))
    assert HOA_LAC in {hit.chunk.article_id for hit in hits}
    with pytest.raises(QueryError, match="the article's date must be a date"):
        workspace.set_date(HOA_LAC, "the ides of March")


def test_removing_an_article_moves_its_file_out_and_drops_it_from_the_index(workspace: Workspace) -> None:
    source = workspace.seeds_dir / f"{HOA_LAC}.txt"
    text = source.read_text(encoding="utf-8")
    outcome = workspace.remove_article(HOA_LAC)

    moved = workspace.seeds_dir.parent / "removed" / source.name
    assert not source.exists() and moved.read_text(encoding="utf-8") == text  # moved, not deleted
    assert outcome.report.removed == [HOA_LAC] and outcome.message.startswith(f"{moved.parent.name}/") is False
    assert "was moved to removed/" in outcome.message
    assert HOA_LAC not in {article.id for article in workspace.index.articles()}


def test_the_library_opens_an_article_and_asks_before_removing_one(workspace: Workspace) -> None:
    handlers = Handlers(workspace)
    view = handlers.open_article(HOA_LAC)
    assert "date unknown" in view and HOA_LAC in view and "Hoa Lac High-Tech Park" in view

    status, *_ = handlers.remove_article(HOA_LAC, confirmed=False)
    assert "Tick “Yes, remove it”" in status and (workspace.seeds_dir / f"{HOA_LAC}.txt").exists()
    status, _, view, _, confirmed = handlers.remove_article(HOA_LAC, confirmed=True)
    assert "was moved to removed/" in status and view == "" and confirmed is False
    assert not (workspace.seeds_dir / f"{HOA_LAC}.txt").exists()


def test_an_article_outside_the_articles_folder_is_not_removed(tmp_path: Path, seeds_copy: Path, embedder) -> None:
    build_index([seeds_copy], tmp_path / "index", embedder=embedder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    workspace = Workspace(Index.open(tmp_path / "index", embedder=embedder), elsewhere)

    with pytest.raises(Exception, match="is not a file of the articles folder"):
        workspace.remove_article(HOA_LAC)
    assert (seeds_copy / f"{HOA_LAC}.txt").exists()


def test_a_folder_that_cannot_be_written_gives_one_line_and_changes_nothing(workspace: Workspace, monkeypatch) -> None:
    """Removing or dating an article where the folders refuse the write (a read-only mount, a
    full disk) says so in one line; the article stays where it was, indexed and undated."""
    import errno
    import os
    import shutil

    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(shutil, "move", refuse)
    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ArticleError, match=r"cannot move .*Read-only file system.*still indexed"):
        workspace.remove_article(HOA_LAC)
    with pytest.raises(ArticleError, match=r"cannot write the dates file .*no date was changed"):
        set_article_date(workspace.seeds_dir, HOA_LAC, dt.date(2025, 3, 15))
    assert (workspace.seeds_dir / f"{HOA_LAC}.txt").exists() and not (workspace.seeds_dir / META_FILE).exists()
    assert HOA_LAC in workspace.index.undated_articles()


def test_a_removal_that_copied_but_could_not_delete_leaves_no_copy(workspace: Workspace, monkeypatch) -> None:
    """Across mounts a move is a copy and a delete: when the delete fails, the copy goes too,
    so retries do not pile up copies in removed/."""
    import errno
    import shutil

    def copy_then_fail(source, target):
        shutil.copy2(source, target)
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(shutil, "move", copy_then_fail)
    for _ in range(2):
        with pytest.raises(ArticleError, match="cannot move"):
            workspace.remove_article(HOA_LAC)
    removed = workspace.seeds_dir.parent / "removed"
    assert (workspace.seeds_dir / f"{HOA_LAC}.txt").exists() and not any(removed.iterdir())


def test_a_quote_is_marked_in_the_article_unless_its_file_changed_since_indexing(workspace: Workspace) -> None:
    handlers = Handlers(workspace)
    source = workspace.seeds_dir / f"{HOA_LAC}.txt"
    text = source.read_text(encoding="utf-8")
    start = text.index("Hoa Lac High-Tech Park")
    span = (start, start + len("Hoa Lac High-Tech Park"))
    view = handlers.open_article(HOA_LAC, span)
    assert "<mark id='library-mark'>Hoa Lac High-Tech Park</mark>" in view

    source.write_text("Breaking: an edit at the top.\n" + text, encoding="utf-8")  # offsets now point elsewhere
    view = handlers.open_article(HOA_LAC, span)
    assert "<mark" not in view and "changed since it was indexed" in view and "Breaking: an edit" in view
