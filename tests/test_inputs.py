"""Odd inputs: each is read correctly or refused with one line, and nothing leaks or crashes.

Article files (date-only files, links, UTF-16, names that are not UTF-8), what the CLI prints
(control characters, odd queries), and the page (wrong logins, server paths).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import socket
from pathlib import Path

import httpx
import pytest
from click.testing import Result
from conftest import invoke_cli

from rag import (
    Config,
    HashingEmbedder,
    Index,
    build_index,
    intake_articles,
    load_articles,
)
from ui.app import build_app
from ui.login import login_delay, login_options
from ui.workspace import Workspace

CONFIG = Config()
BODY = "The harbour authority said on Monday that the new pier will open in May. It cost 12 million dollars.\n"


def run(*args: str) -> Result:
    return invoke_cli(args)


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# --- article files -----------------------------------------------------------------------------


@pytest.mark.parametrize("content", [" date 2025-01-01 ", " date 2025-01-01 \n\n  \n", "\ufeffdate 2025-01-01"])
def test_a_file_of_only_a_date_prefix_is_refused_like_an_empty_one(tmp_path: Path, content: str) -> None:
    write(tmp_path / "dated.txt", content)
    report = load_articles([tmp_path], CONFIG)
    assert report.articles == []
    assert list(report.failures.values()) == [f"{tmp_path / 'dated.txt'}: file holds only a date prefix, no article text"]


def test_rag_index_reports_a_date_only_file_as_failed(tmp_path: Path, seeds_copy: Path) -> None:
    write(seeds_copy / "dated.txt", " date 2025-01-01 ")
    result = run("index", "--seeds", str(seeds_copy), "--index", str(tmp_path / "index"))
    assert result.exit_code == 1
    assert "dated.txt: file holds only a date prefix, no article text\n" in result.output
    assert "5 added, 0 updated, 0 removed, 0 unchanged, 1 failed" in result.output
    assert "dated" not in [article["id"] for article in Index.open(tmp_path / "index", embedder=HashingEmbedder()).info()["articles"]]


def test_an_upload_of_only_a_date_prefix_is_refused(tmp_path: Path) -> None:
    upload = write(tmp_path / "upload" / "dated.txt", " date 2025-01-01 ")
    [result] = intake_articles([upload], tmp_path / "seeds")
    assert (result.status, result.message) == ("refused", "dated.txt: file holds only a date prefix, no article text")


def test_a_link_out_of_the_folder_is_skipped_unless_links_are_followed(tmp_path: Path) -> None:
    secret = write(tmp_path / "private" / "passwd.txt", "root:x:0:0:root:/root:/bin/bash\n")
    folder = tmp_path / "seeds"
    write(folder / "pier.txt", BODY)
    (folder / "leak.txt").symlink_to(secret)
    (folder / "copy.txt").symlink_to(folder / "pier.txt")  # inside the folder: read

    report = load_articles([folder], CONFIG)
    assert sorted(article.id for article in report.articles) == ["copy", "pier"]
    assert report.skipped == [(f"{folder / 'leak.txt'}: skipped, a symbolic link to {secret}, outside the "
                               "folder; links out of it are not followed")]
    assert report.failures == {}

    followed = load_articles([folder], CONFIG, follow_links=True)
    assert sorted(article.id for article in followed.articles) == ["copy", "leak", "pier"]
    assert followed.skipped == []


def test_a_link_out_of_the_folder_is_not_searchable(tmp_path: Path) -> None:
    secret = write(tmp_path / "private" / "passwd.txt", "root:x:0:0:root:/root:/bin/bash\n")
    folder = tmp_path / "seeds"
    write(folder / "pier.txt", BODY)
    (folder / "leak.txt").symlink_to(secret)
    report = build_index([folder], tmp_path / "index", embedder=HashingEmbedder())
    assert report.added == ["pier"] and report.failed == []
    index = Index.open(tmp_path / "index", embedder=HashingEmbedder())
    assert all("root:x" not in hit.chunk.text for hit in index.search("root bin bash", k=5))


def test_loops_dangling_links_subfolders_and_devices_are_reported_as_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "seeds"
    write(folder / "pier.txt", BODY)
    (folder / "loop.txt").symlink_to(folder / "loop.txt")
    (folder / "gone.txt").symlink_to(folder / "deleted.txt")
    (folder / "2024").mkdir()
    os.mkfifo(folder / "pipe.txt")  # reading it would wait forever

    report = load_articles([folder], CONFIG)
    assert [article.id for article in report.articles] == ["pier"]
    assert report.skipped == [
        f"{folder / '2024'}: skipped, subfolders are not read (name the subfolder to index it too)",
        f"{folder / 'gone.txt'}: skipped, a symbolic link to nothing (its target is gone)",
        f"{folder / 'loop.txt'}: skipped, a symbolic link loop",
        f"{folder / 'pipe.txt'}: skipped, not a regular file",
    ]
    assert report.failures == {}


def test_rag_index_prints_each_skipped_entry_on_one_line(tmp_path: Path, seeds_copy: Path) -> None:
    (seeds_copy / "loop.txt").symlink_to(seeds_copy / "loop.txt")
    (seeds_copy / "older").mkdir()
    result = run("index", "--seeds", str(seeds_copy), "--index", str(tmp_path / "index"))
    assert result.exit_code == 0, result.output
    assert f"{seeds_copy / 'loop.txt'}: skipped, a symbolic link loop\n" in result.output
    assert f"{seeds_copy / 'older'}: skipped, subfolders are not read" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("bom, codec", [(codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")])
def test_utf16_with_a_byte_order_mark_is_decoded(tmp_path: Path, bom: bytes, codec: str) -> None:
    text = " date 2025-05-02 Hà Nội harbour news\n\n" + BODY
    write(tmp_path / "seeds" / "pier.txt", bom + text.encode(codec))
    [article] = load_articles([tmp_path / "seeds"], CONFIG).articles
    assert article.text == text  # the decoded text, without the mark: every offset points into it
    assert article.title == "Hà Nội harbour news" and article.date.isoformat() == "2025-05-02"

    build_index([tmp_path / "seeds"], tmp_path / "index", embedder=HashingEmbedder())
    [hit] = Index.open(tmp_path / "index", embedder=HashingEmbedder()).search("new pier cost", k=1)
    assert hit.chunk.text == article.text[hit.chunk.start:hit.chunk.end]
    assert "12 million dollars" in hit.chunk.text


def test_an_upload_in_utf16_is_added(tmp_path: Path) -> None:
    upload = write(tmp_path / "upload" / "pier.txt", codecs.BOM_UTF16_LE + BODY.encode("utf-16-le"))
    [result] = intake_articles([upload], tmp_path / "seeds")
    assert result.status == "added", result.message


@pytest.mark.parametrize("data, message", [
    (codecs.BOM_UTF16_LE + "ab\nc".encode("utf-16-le") + b"\x00\xd8",
     "bad.txt: not valid UTF-16 at byte 10 (line 2); re-save the file as UTF-8"),
    (codecs.BOM_UTF16_LE + "ab".encode("utf-16-le") + b"\x00",
     "bad.txt: not valid UTF-16 at byte 6 (line 1); re-save the file as UTF-8"),
    (codecs.BOM_UTF16_LE + "ab\x00c".encode("utf-16-le"),
     "bad.txt: looks like a binary file (NUL character at position 2 of its UTF-16 text); articles must be plain text"),
])
def test_broken_utf16_is_refused_with_where(tmp_path: Path, data: bytes, message: str) -> None:
    write(tmp_path / "bad.txt", data)
    report = load_articles([tmp_path], CONFIG)
    assert list(report.failures.values()) == [f"{tmp_path}/{message}"]


def test_a_file_name_that_is_not_utf8_is_refused_not_a_crash(tmp_path: Path, seeds_copy: Path) -> None:
    write(Path(os.fsdecode(bytes(seeds_copy) + b"/caf\xe9.txt")), BODY)  # Latin-1 "café"
    report = build_index([seeds_copy], tmp_path / "index", embedder=HashingEmbedder())
    assert report.failed == [f"{seeds_copy}/caf\\xe9.txt: the path is not valid UTF-8; rename the file or its folder"]
    assert len(report.added) == 5


def test_an_upload_never_compares_through_a_link_in_the_folder(tmp_path: Path) -> None:
    secret = write(tmp_path / "private" / "pier.txt", BODY)
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "pier.txt").symlink_to(secret)
    [result] = intake_articles([write(tmp_path / "upload" / "pier.txt", BODY)], seeds)
    assert result.status == "refused"  # "unchanged" would tell the uploader what the secret file holds
    assert "already exists" in result.message


# --- what the CLI prints -----------------------------------------------------------------------


ESCAPES = "\x1b[2J\x1b]0;owned\x07\x9b31m\r"


@pytest.fixture
def hostile_index(tmp_path: Path) -> Path:
    """An index whose article has terminal escapes in its file name, headline and body."""
    seeds = tmp_path / "seeds"
    write(seeds / "pier\x1b[5m.txt", f" date 2025-05-02 Harbour {ESCAPES}news\n\nThe new pier {ESCAPES}opens in May. "
                                   "It cost 12 million dollars.\n")
    build_index([seeds], tmp_path / "index", embedder=HashingEmbedder())
    return tmp_path / "index"


@pytest.mark.parametrize("command", [["info"], ["search", "new pier"], ["ask", "When does the new pier open?"]])
def test_the_cli_prints_no_control_characters(hostile_index: Path, command: list[str]) -> None:
    result = run(*command, "--index", str(hostile_index))
    assert result.exit_code == 0, result.output
    assert "Harbour [2J]0;owned31mnews" in result.output or "The new pier [2J]0;owned31mopens" in result.output
    assert not any(character in result.output for character in "\x1b\x07\x9b\r")


def test_the_stored_text_keeps_its_control_characters(hostile_index: Path) -> None:
    [article] = Index.open(hostile_index, embedder=HashingEmbedder()).articles()
    assert article.id == "pier\x1b[5m" and article.title == f"Harbour {ESCAPES}news"
    info = run("info", "--json", "--index", str(hostile_index))
    assert "\x1b" not in info.output and "\x9b" not in info.output  # escaped: the same data
    assert json.loads(info.output)["articles"][0]["title"] == f"Harbour {ESCAPES}news"


@pytest.mark.parametrize("query, message", [
    ("\ud800", "error: the question holds a character that is not text (U+D800 at position 0, half of a pair)"),
    ("ships \udcff", "error: the question holds a character that is not text (U+DCFF at position 6, half of a pair)"),
    ("", "error: the question is empty"),
    (" \t\n ", "error: the question is empty"),
    ("x" * 5000, "error: the question is 5000 characters long; the limit is 2000"),
])
@pytest.mark.parametrize("command", ["ask", "search"])
@pytest.mark.parametrize("as_json", [[], ["--json"]])
def test_an_unusable_query_is_one_line_on_stderr(fake_index: Path, command: str, query: str, message: str,
                                                 as_json: list[str]) -> None:
    """One line on stderr; under --json, the record {"error": ...} instead."""
    result = run(command, query, "--index", str(fake_index), *as_json)
    assert result.exit_code == 1
    if as_json:
        assert f"error: {json.loads(result.output)['error']}".startswith(message)
    else:
        assert result.output.startswith(message) and result.output.count("\n") == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("query", ["\x00", "\x1b[2J ships", "\u202eships\u202c", "🚢🚢 ships?", "艦艇 ships",
                                   "\ufeff", "?!.,", "\u200b"])
@pytest.mark.parametrize("command", ["ask", "search"])
def test_an_odd_query_is_answered_without_a_traceback(fake_index: Path, command: str, query: str) -> None:
    result = run(command, query, "--index", str(fake_index))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code in (0, 1)
    assert "\x1b" not in result.output
    if result.exit_code == 1:
        assert result.output.startswith("error: ") and result.output.count("\n") == 1


# --- the page ------------------------------------------------------------------------------------


def test_login_delay_doubles_from_half_a_second_up_to_eight() -> None:
    assert [login_delay(wrong) for wrong in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert login_delay(10_000) == 8.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_wrong_logins_are_slowed_per_client_and_a_right_one_resets(fake_index: Path, seeds_copy: Path) -> None:
    waits: list[tuple[str, float]] = []
    client = ["?"]

    async def sleep(seconds: float) -> None:  # records instead of waiting
        waits.append((client[0], seconds))

    app = build_app(Index.open(fake_index, embedder=HashingEmbedder()), seeds_copy)
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                       **login_options(("editor", "s3cret"), sleep=sleep))
    try:
        def login(password: str, address: str) -> int:
            client[0] = address
            # uvicorn trusts X-Forwarded-For from this machine: a proxy's way of naming the client
            response = httpx.post(f"http://127.0.0.1:{port}/login", headers={"X-Forwarded-For": address},
                                  data={"username": "editor", "password": password})
            return response.status_code

        assert [login("guess", "10.0.0.1") for _ in range(30)] == [400] * 30
        assert [seconds for _, seconds in waits] == [0.5, 1.0, 2.0, 4.0] + [8.0] * 26
        waits.clear()
        assert login("guess", "10.0.0.2") == 400  # another client starts afresh
        assert login("s3cret", "10.0.0.1") == 200  # the right password is not held
        assert login("guess", "10.0.0.1") == 400
        assert waits == [("10.0.0.2", 0.5), ("10.0.0.1", 0.5)]
    finally:
        app.close()


def test_login_check_is_awaited_by_gradio() -> None:
    """Gradio calls a plain callable without awaiting it: a coroutine object would be truthy."""
    check = login_options(("editor", "s3cret"))["auth"]
    assert asyncio.iscoroutinefunction(check)
    assert asyncio.run(check("editor", "s3cret")) is True


def test_index_status_shows_no_server_paths(tmp_path: Path, seeds_copy: Path) -> None:
    extra = write(tmp_path / "elsewhere" / "pier.txt", BODY)
    build_index([seeds_copy, extra], tmp_path / "index", embedder=HashingEmbedder())
    workspace = Workspace(Index.open(tmp_path / "index", embedder=HashingEmbedder()), seeds_copy)

    status = workspace.status()
    assert status["index"] == "index" and status["seeds"] == "seeds"
    sources = {article["id"]: article["source"] for article in status["articles"]}
    assert sources["000_74a00811c9a9f887"] == "000_74a00811c9a9f887.txt"
    assert sources["pier"] == "pier.txt"
    assert str(tmp_path) not in json.dumps(status)
