"""Reading article files: decoding, validation, and the header conventions of the seeds.

An article file is UTF-8 text, or UTF-16 with a byte order mark (as Windows editors may save
it). It may start with a ` date YYYY-MM-DD ` prefix, then site boilerplate lines ("Politics &
Law"), a headline and a dateline ("March 15, 2025 - 21:20") before the body. The prefix,
boilerplate, headline and dateline are metadata: the title, heading and date come from them,
and the body (what is chunked and cited) starts after them. The text itself is kept exactly as
decoded so that offsets point into it.
"""

from __future__ import annotations

import codecs
import datetime as dt
import errno
import hashlib
import json
import logging
import os
import re
import stat
from dataclasses import dataclass, field, replace
from pathlib import Path

from rag.config import Config
from rag.errors import ArticleError
from rag.records import Article
from rag.text.sentences import split_sentences

log = logging.getLogger(__name__)

ARTICLE_SUFFIXES = frozenset({".txt", ".md"})
META_FILE = "articles.meta.json"
"""Beside the articles: dates set from the page for articles whose text gives none (or a wrong one)."""

_BYTE_ORDER_MARKS = (  # UTF-32 first: its little-endian mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)

_DATE_PREFIX = re.compile(r"\A\ufeff?\s*date\s+(\S+)[ \t]*")
_MONTHS = "january february march april may june july august september october november december"
_MONTH_NUMBER = {name: number for number, name in enumerate(_MONTHS.split(), start=1)}
_DATELINE = re.compile(
    r"(?P<month>[A-Za-z]+)\.? (?P<day>\d{1,2}), (?P<year>\d{4})(?:\s*[-–—,]\s*\d{1,2}:\d{2})?"
)
_PLACE_DATELINE = re.compile(r"\A[A-ZÀ-Ỹ][A-ZÀ-ỸĐ .,'’]*\s+[—–-]\s+")  # "HÀ NỘI — "
_TERMINAL = tuple(".!?…\"”’")
_MAX_HEADLINE_WORDS = 20
_TITLE_CHARS = 100
# The heading is matched with every chunk of its article (rag.storage.lexical counts it twice): a
# first line or sentence longer than this is cut at a word, so it cannot grow with the file.
_HEADING_CHARS = 400
_DANGLING_WORDS = frozenset("a an and as at by for from in of on or the to with".split())


@dataclass
class LoadReport:
    """What reading a set of paths gave: the articles, one message per file that failed, and
    one per entry of a folder passed over (its extension, a subfolder, a broken link...)."""

    articles: list[Article] = field(default_factory=list)
    failures: dict[Path, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def load_articles(paths: list[Path], config: Config, follow_links: bool = False) -> LoadReport:
    """Read every article file under `paths` (files or folders); one bad file never stops the rest.

    A link in a folder is read only if it resolves inside that folder, unless `follow_links`:
    otherwise a link to /etc/passwd dropped into the folder would become searchable. A
    folder's `articles.meta.json` gives dates to its articles (`set_article_date`).
    """
    report = LoadReport()
    seen: dict[str, Path] = {}
    dates: dict[Path, dict[str, dt.date]] = {}
    for path in _article_files(paths, report, follow_links):
        if path.parent not in dates:
            try:
                dates[path.parent] = article_dates(path.parent)
            except ArticleError as error:  # the articles keep the dates their text gives
                report.failures[path.parent / META_FILE] = str(error)
                dates[path.parent] = {}
        try:
            article = read_article(path, config)
        except ArticleError as error:
            report.failures[path] = str(error)
            continue
        if article.id in dates[path.parent]:
            article = replace(article, date=dates[path.parent][article.id])
        if article.id in seen:
            report.failures[path] = (
                f"{path}: article id {article.id!r} is also used by {seen[article.id]}; "
                "rename one of the files"
            )
            continue
        seen[article.id] = path
        report.articles.append(article)
    return report


def article_dates(folder: Path) -> dict[str, dt.date]:
    """The dates set for a folder's articles in its META_FILE (none if there is none)."""
    path = folder / META_FILE
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise ArticleError(f"{_as_text(path)} is not readable JSON ({error}): fix or delete it") from error
    try:
        return {article_id: dt.date.fromisoformat(entry["date"]) for article_id, entry in entries.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ArticleError(f'{_as_text(path)} must map article ids to {{"date": "YYYY-MM-DD"}} ({error})') from error


def set_article_date(folder: Path, article_id: str, date: dt.date | None) -> None:
    """Give an article a date (None: forget it) in the folder's META_FILE, never by rewriting
    the article's text; the next update picks it up. Written whole and renamed into place."""
    dates = article_dates(folder)
    if date is None:
        dates.pop(article_id, None)
    else:
        dates[article_id] = date
    pending = folder / f".{META_FILE}.{os.getpid()}"
    try:
        pending.write_text(json.dumps({key: {"date": value.isoformat()} for key, value in sorted(dates.items())},
                                      indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(pending, folder / META_FILE)
    except OSError as error:
        pending.unlink(missing_ok=True)
        raise ArticleError(f"cannot write the dates file {_as_text(folder / META_FILE)} ({error.strerror or error}); "
                           "no date was changed: fix the folder's permissions") from error


def _article_files(paths: list[Path], report: LoadReport, follow_links: bool) -> list[Path]:
    """The article files among `paths` and in the folders among them (not in their subfolders)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            try:
                names = sorted(path.iterdir())
            except OSError as error:
                report.failures[path] = f"{_as_text(path)}: cannot be read ({error.strerror or error})"
                continue
            folder = path.resolve()
            # Hidden files are editors' and uploads' temporary files, unless named as articles.
            entries = [(entry, folder) for entry in names
                       if not entry.name.startswith(".") or entry.suffix.lower() in ARTICLE_SUFFIXES]
        elif path.exists():
            entries = [(path, None)]
        else:
            report.failures[path] = f"{_as_text(path)}: no such file or folder"
            continue
        for entry, within in entries:
            if within and entry.name == META_FILE:
                continue  # the folder's article dates, read with its articles
            try:
                reason = _skip_reason(entry, within, follow_links)
            except ArticleError as error:  # a file that is there but cannot be read: failed, not gone
                report.failures[entry] = str(error)
                continue
            if reason:
                report.skipped.append(f"{_as_text(entry)}: skipped, {reason}")
            else:
                files.append(entry)
    return files


def _skip_reason(entry: Path, folder: Path | None, follow_links: bool) -> str | None:
    """Why `entry` is not read as an article, or None if it is. A link found in `folder`
    (resolved; None for a path given by name) must resolve inside it unless `follow_links`.
    Raises ArticleError for an entry that is there but cannot be looked at (an I/O error, a
    folder without search permission): it failed, and its indexed article must be kept."""
    try:
        mode = entry.stat().st_mode
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "a symbolic link loop"
        if error.errno == errno.ENOENT and entry.is_symlink():
            return "a symbolic link to nothing (its target is gone)"
        raise ArticleError(f"{_as_text(entry)}: cannot be read ({error.strerror or error})") from error
    if stat.S_ISDIR(mode):
        return "subfolders are not read (name the subfolder to index it too)"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    if entry.suffix.lower() not in ARTICLE_SUFFIXES:
        return "only .txt and .md files are read"
    if folder and entry.name.startswith("."):
        return "a hidden file (rename it without the leading dot to index it)"
    if folder and not follow_links and entry.is_symlink() and not entry.resolve().is_relative_to(folder):
        return f"a symbolic link to {_as_text(entry.resolve())}, outside the folder; links out of it are not followed"
    return None


def read_article(path: Path, config: Config) -> Article:
    """Read and parse one article file, or raise ArticleError naming the file and the problem."""
    if _as_text(path) != str(path):  # its id and source are stored as text
        raise ArticleError(f"{_as_text(path)}: the path is not valid UTF-8; rename the file or its folder")
    raw = _read_bytes(path, config.max_file_bytes)
    text = decode_article_bytes(raw, path)
    return parse_article(text, article_id=path.stem, source=path, content_hash=content_hash(raw))


def content_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _read_bytes(path: Path, limit: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > limit:
            raise ArticleError(
                f"{path}: file is {size / 1e6:.1f} MB, over the {limit / 1e6:.1f} MB limit "
                "for an article (raise the limit with --max-file-mb)"
            )
        return path.read_bytes()
    except OSError as error:
        raise ArticleError(f"{path}: cannot be read ({error.strerror or error})") from error


def decode_article_bytes(raw: bytes, path: Path) -> str:
    """Decode UTF-8, or UTF-16 or UTF-32 after a byte order mark (the mark is dropped), refusing
    empty, binary and mis-encoded files with a precise message."""
    if not raw:
        raise ArticleError(f"{path}: file is empty")
    encoding = next((name for mark, name in _BYTE_ORDER_MARKS if raw.startswith(mark)), "UTF-8")
    nul = raw.find(b"\x00") if encoding == "UTF-8" else -1  # UTF-16 and UTF-32 are full of NUL bytes
    if nul != -1:
        raise ArticleError(
            f"{path}: looks like a binary file (NUL byte at offset {nul}); "
            "articles must be plain UTF-8 text"
        )
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].decode(encoding, errors="replace").count("\n") + 1
        raise ArticleError(
            f"{path}: not valid {encoding} at byte {error.start} (line {line}); "
            "re-save the file as UTF-8"
        ) from error
    if "\x00" in text:
        raise ArticleError(
            f"{path}: looks like a binary file (NUL character at position {text.index(chr(0))} "
            f"of its {encoding} text); articles must be plain text"
        )
    if not text.strip().lstrip("\ufeff").strip():
        raise ArticleError(f"{path}: file holds only whitespace")
    return text


def _bounded(text: str, limit: int) -> str:
    """The text cut at the last space before `limit` characters (at `limit` if it has none)."""
    if len(text) <= limit:
        return text
    space = text.rfind(" ", 0, limit)
    return text[: space if space > 0 else limit].rstrip()


def _as_text(path: Path) -> str:
    """The path as printable text: the bytes of a name that is not UTF-8, which Python holds as
    lone surrogates (unprintable, unstorable), written as \\xff escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def parse_article(text: str, article_id: str, source: Path, content_hash: str) -> Article:
    """Split decoded file text into metadata (date, title) and the body's start offset."""
    date, position = _date_prefix(text, source)
    if position == 0 and text.startswith("\ufeff"):  # a UTF-8 byte order mark: kept in the text, not the title
        position = 1
    boilerplate_end, headline, dateline_date = _header(text, position)
    body_start = _skip_whitespace(text, boilerplate_end)
    if body_start >= len(text):  # a lone short line is the article, not its headline
        headline, body_start = None, _skip_whitespace(text, position)
    if body_start >= len(text):
        raise ArticleError(f"{source}: file holds only a date prefix, no article text")
    if date and dateline_date and date != dateline_date:
        log.warning("%s: date prefix %s disagrees with dateline %s; using the prefix",
                    source, date, dateline_date)
    heading = _bounded(headline or _first_sentence(text, body_start), _HEADING_CHARS)
    return Article(
        id=article_id,
        title=headline or shorten_title(heading),
        heading=heading,
        date=date or dateline_date,
        text=text,
        body_start=body_start,
        source=source,
        content_hash=content_hash,
    )


def _date_prefix(text: str, source: Path) -> tuple[dt.date | None, int]:
    match = _DATE_PREFIX.match(text)
    if not match:
        return None, 0
    try:
        return dt.date.fromisoformat(match.group(1)), match.end()
    except ValueError:
        raise ArticleError(
            f"{source}: date prefix {match.group(1)!r} is not a date; write it as YYYY-MM-DD"
        ) from None


def _header(text: str, position: int) -> tuple[int, str | None, dt.date | None]:
    """Scan the short unpunctuated lines at the top: boilerplate, then headline, then dateline.

    Returns where the body may start, the headline (the last such line that is not a
    dateline; the ones before it are site navigation), and the dateline's date.
    """
    headline: str | None = None
    dateline_date: dt.date | None = None
    header_end = position
    for line_match in re.finditer(r"[^\n]*(?:\n|\Z)", text[position:]):
        line = line_match.group().strip()
        if not line:
            if line_match.end() == line_match.start():
                break
            header_end = position + line_match.end()
            continue
        date = _parse_dateline(line)
        if date:
            dateline_date = date
        elif line.endswith(_TERMINAL) or len(line.split()) > _MAX_HEADLINE_WORDS:
            break
        else:
            headline = line
        header_end = position + line_match.end()
    if headline is None:
        return position, None, dateline_date
    return header_end, headline, dateline_date


def _parse_dateline(line: str) -> dt.date | None:
    match = _DATELINE.fullmatch(line)
    if not match or match.group("month").lower() not in _MONTH_NUMBER:
        return None
    try:
        return dt.date(int(match.group("year")), _MONTH_NUMBER[match.group("month").lower()],
                       int(match.group("day")))
    except ValueError:
        return None


def _first_sentence(text: str, body_start: int) -> str:
    spans = split_sentences(text, body_start)
    first = text[spans[0][0] : spans[0][1]] if spans else text[body_start:]
    return " ".join(_PLACE_DATELINE.sub("", first.strip()).split())


def shorten_title(sentence: str, limit: int = _TITLE_CHARS) -> str:
    """Cut a sentence to a title: at a clause boundary if one falls late enough, else at a word."""
    sentence = " ".join(sentence.split()).rstrip(".")
    if len(sentence) <= limit:
        return sentence
    clause_ends = [m.start() for m in re.finditer(r"[,;:]\s", sentence[: limit + 1])]
    late_clauses = [end for end in clause_ends if end >= limit // 2]
    if late_clauses:
        return sentence[: late_clauses[-1]] + "…"
    words = sentence[:limit].rsplit(" ", 1)[0].split()
    while len(words) > 1 and words[-1].lower() in _DANGLING_WORDS:
        words.pop()
    return " ".join(words).rstrip(",;:") + "…"


def _skip_whitespace(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position
