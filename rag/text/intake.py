"""Adding article files to the seeds folder, e.g. from an upload on the web page.

Each file is checked with the rules `rag index` applies (`read_article`), then saved under a
safe name. Nothing in the folder is ever overwritten: a file with the same name and other
content, or another file that would give the same article id, is refused with a message.

>>> results = intake_articles(["/tmp/upload/report.txt"], "seeds")  # doctest: +SKIP
>>> [(result.status, result.message) for result in results]        # doctest: +SKIP
[('added', 'report.txt: added as seeds/report.txt (Title of the report, 2025-03-15)')]
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rag.config import Config
from rag.errors import ArticleError
from rag.records import Article
from rag.text.articles import ARTICLE_SUFFIXES, read_article

REMOVED_DIR = "removed"
"""Beside the articles folder: where articles removed from the page are moved."""

IntakeStatus = Literal["added", "unchanged", "refused"]

_UNSAFE_CHARACTERS = re.compile(r"[^\w.-]+")
_MAX_NAME_CHARS = 120


@dataclass(frozen=True)
class IntakeResult:
    """What happened to one file: added to the folder, already there, or refused (and why)."""

    name: str
    status: IntakeStatus
    message: str
    saved_as: Path | None = None

    @property
    def added(self) -> bool:
        return self.status == "added"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "message": self.message,
            "saved_as": str(self.saved_as) if self.saved_as else None,
        }


def safe_article_name(name: str) -> str:
    """A file name that stays inside the folder, is not hidden, and ends in .txt or .md.

    Folders (either slash) are dropped, characters other than letters, digits, `.`, `_` and
    `-` become `_`, and dots, dashes and underscores around the stem are removed (no hidden
    files). Raises ArticleError when nothing usable is left or the extension is not one
    `rag index` reads.
    """
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    stem, dot, suffix = base.rpartition(".")
    suffix = f".{suffix.lower()}" if dot else ""
    if suffix not in ARTICLE_SUFFIXES:
        raise ArticleError(f"{name}: only .txt and .md files can be added as articles")
    stem = _UNSAFE_CHARACTERS.sub("_", stem).strip(".-_")[: _MAX_NAME_CHARS - len(suffix)]
    if not stem:
        raise ArticleError(f"{name}: the file name has no usable characters; rename the file")
    return stem + suffix


def intake_articles(files: Sequence[str | Path], seeds_dir: str | Path,
                    config: Config | None = None) -> list[IntakeResult]:
    """Validate each file and copy the good ones into `seeds_dir`; one bad file never stops the rest.

    A file's name is its base name (what the user uploaded). The index is not touched: run an
    update over `seeds_dir` afterwards when any result is `added`.
    """
    seeds_dir = Path(seeds_dir)
    config = config or Config()
    try:
        seeds_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ArticleError(f"cannot create the articles folder {seeds_dir} ({error.strerror or error}): "
                           "fix its permissions") from error
    return [_intake_one(Path(file), seeds_dir, config) for file in files]


def _intake_one(file: Path, seeds_dir: Path, config: Config) -> IntakeResult:
    name = file.name
    try:
        safe_name = safe_article_name(name)
        article = _validated(file, name, config)
        raw = file.read_bytes()
    except ArticleError as error:
        return IntakeResult(name, "refused", str(error))
    except OSError as error:
        return IntakeResult(name, "refused", f"{name}: cannot be read ({error.strerror or error})")

    target = seeds_dir / safe_name
    if target.is_symlink() or target.exists():
        if _holds(target, raw):
            return IntakeResult(name, "unchanged", f"{name}: {target} already holds this file", target)
        return IntakeResult(
            name, "refused",
            f"{name}: {target} already exists with different content; rename the file to add "
            "it as a new article, or replace the file in the folder yourself",
        )
    clash = _same_article_id(seeds_dir, target)
    if clash is not None:
        return IntakeResult(
            name, "refused",
            f"{name}: article id {target.stem!r} is already used by {clash}; rename the file",
        )
    try:
        written = _write_new(target, raw)
    except OSError as error:
        return IntakeResult(name, "refused",
                            f"{name}: cannot be saved as {target} ({error.strerror or error})")
    if not written:
        return IntakeResult(name, "refused", f"{name}: {target} appeared while saving; try again")
    date = article.date.isoformat() if article.date else "date unknown"
    return IntakeResult(name, "added", f"{name}: added as {target} ({article.title}, {date})", target)


def _validated(file: Path, name: str, config: Config) -> Article:
    """`read_article`, with the upload's own name in the message instead of its temporary path."""
    try:
        return read_article(file, config)
    except ArticleError as error:
        message = str(error).removeprefix(f"{file}: ")
        raise ArticleError(f"{name}: {message}") from error


def _holds(target: Path, raw: bytes) -> bool:
    """Whether `target` is a file holding `raw`. A link is never read through: comparing would
    tell the uploader what a file outside the folder holds."""
    try:
        return not target.is_symlink() and target.is_file() and target.read_bytes() == raw
    except OSError:
        return False


def _same_article_id(seeds_dir: Path, target: Path) -> Path | None:
    """Another article file whose stem, the article id, equals the target's."""
    for candidate in sorted(target.parent.glob(glob.escape(target.stem) + ".*")):
        if candidate.stem == target.stem and candidate.suffix.lower() in ARTICLE_SUFFIXES:
            return candidate
    return None


def _write_new(target: Path, raw: bytes) -> bool:
    """Write through a hidden temporary file and link it into place, so that a rebuild never
    reads half a file and a file created meanwhile is not replaced. False if one was."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(raw)
            stream.flush()
            os.fsync(stream.fileno())
        os.link(temporary, target)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    return True


def remove_article(source: str | Path, seeds_dir: str | Path) -> Path:
    """Move an article file out of the articles folder into `removed/` beside it (never
    deleted: a removal is undone by moving the file back); return where it went. The next
    update drops the article from the index."""
    source, seeds_dir = Path(source), Path(seeds_dir)
    if source.parent.resolve() != seeds_dir.resolve() or not source.is_file():
        raise ArticleError(f"{source.name} is not a file of the articles folder {seeds_dir}; "
                           "only articles added there can be removed from the page")
    removed = seeds_dir.parent / REMOVED_DIR
    target: Path | None = None
    try:
        removed.mkdir(exist_ok=True)
        target, number = removed / source.name, 1
        while target.exists():  # an article removed before under the same name is kept too
            number += 1
            target = removed / f"{source.stem}.{number}{source.suffix}"
        shutil.move(source, target)  # a copy and a delete when the articles folder is a mount of its own
    except OSError as error:
        if target is not None and source.exists():  # copied but not deleted: no second copy is left behind
            with contextlib.suppress(OSError):
                target.unlink(missing_ok=True)
        raise ArticleError(f"cannot move {source.name} into {removed} ({error.strerror or error}); the article "
                           "is still indexed: fix the folders' permissions or move the file out by hand") from error
    return target
