"""The web page's Python side, in process: article intake, HTML rendering, handlers, login rules, API.

Indexes are built with the hashing fake; the browser tests in tests/e2e drive the real page.
"""

from __future__ import annotations

import datetime as dt
import gc
import html
import logging
import re
import socket
import threading
import time
from pathlib import Path

import faiss
import gradio as gr
import pytest
from gradio_client import Client, handle_file

from rag import (
    Answer,
    AnswerSentence,
    ArticleError,
    Citation,
    Config,
    Draft,
    Index,
    QueryError,
    RagError,
    RelatedPassage,
    build_index,
    intake_articles,
    read_article,
    safe_article_name,
)
from ui.app import Handlers, build_app, serve
from ui.login import is_loopback, login_for
from ui.render import render_index, render_turn, source_anchor
from ui.workspace import Workspace, parse_date

NEW_ARTICLE = (
    " date 2026-04-02 HÀ NỘI — The Lotus Orchestra said on Thursday that its new concert hall in "
    "Đà Nẵng will open on June 1 with 1,250 seats.\n\n"
    "The orchestra's director, Nguyễn Thị Mai, said the hall was designed by the architect "
    "Trần Văn Bảo.\n"
)


def write(folder: Path, name: str, content: str | bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# --- intake ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "safe"), [
    ("report.txt", "report.txt"),
    ("../../etc/cron.d/evil.txt", "evil.txt"),
    ("..\\..\\evil.TXT", "evil.txt"),
    (".hidden.md", "hidden.md"),
    ("-rf.txt", "rf.txt"),
    ("my report (final).md", "my_report_final.md"),
    ("Bài báo.txt", "Bài_báo.txt"),
])
def test_safe_article_name_stays_in_the_folder_and_visible(name: str, safe: str) -> None:
    assert safe_article_name(name) == safe


@pytest.mark.parametrize(("name", "message"), [
    ("notes.pdf", "notes.pdf: only .txt and .md files can be added as articles"),
    ("article.txt.exe", "article.txt.exe: only .txt and .md files can be added as articles"),
    ("README", "README: only .txt and .md files can be added as articles"),
    ("....txt", "....txt: the file name has no usable characters; rename the file"),
])
def test_safe_article_name_refuses_with_a_message(name: str, message: str) -> None:
    with pytest.raises(ArticleError) as error:
        safe_article_name(name)
    assert str(error.value) == message


def test_intake_saves_a_valid_article_under_its_safe_name(tmp_path: Path) -> None:
    upload = write(tmp_path / "upload", "Concert hall.txt", NEW_ARTICLE)
    seeds = tmp_path / "seeds"

    [result] = intake_articles([upload], seeds)

    assert result.status == "added" and result.added
    assert result.saved_as == seeds / "Concert_hall.txt"
    assert result.saved_as.read_bytes() == upload.read_bytes()
    assert result.message.startswith(f"Concert hall.txt: added as {seeds / 'Concert_hall.txt'} (")
    assert "2026-04-02" in result.message
    assert sorted(path.name for path in seeds.iterdir()) == ["Concert_hall.txt"]  # no temporary left


def test_intake_of_identical_content_is_a_no_op(tmp_path: Path) -> None:
    upload = write(tmp_path / "upload", "hall.txt", NEW_ARTICLE)
    seeds = tmp_path / "seeds"
    intake_articles([upload], seeds)
    modified = (seeds / "hall.txt").stat().st_mtime_ns

    [result] = intake_articles([upload], seeds)

    assert result.status == "unchanged"
    assert result.message == f"hall.txt: {seeds / 'hall.txt'} already holds this file"
    assert (seeds / "hall.txt").stat().st_mtime_ns == modified


def test_intake_never_overwrites_a_different_file(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    existing = write(seeds, "hall.txt", "An older article about something else entirely.\n")
    upload = write(tmp_path / "upload", "hall.txt", NEW_ARTICLE)

    [result] = intake_articles([upload], seeds)

    assert result.status == "refused"
    assert result.message == (
        f"hall.txt: {existing} already exists with different content; rename the file to add it "
        "as a new article, or replace the file in the folder yourself"
    )
    assert existing.read_text() == "An older article about something else entirely.\n"


def test_intake_refuses_a_second_file_for_the_same_article_id(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    existing = write(seeds, "hall.txt", "An older article about something else entirely.\n")
    upload = write(tmp_path / "upload", "hall.md", NEW_ARTICLE)

    [result] = intake_articles([upload], seeds)

    assert result.status == "refused"
    assert result.message == f"hall.md: article id 'hall' is already used by {existing}; rename the file"
    assert not (seeds / "hall.md").exists()


@pytest.mark.parametrize("content", [b"", b"   \n\t", b"caf\xe9 au lait\n", b"PK\x03\x04\x00\x00binary"])
def test_intake_gives_the_messages_of_rag_index_with_the_uploaded_name(tmp_path: Path,
                                                                       content: bytes) -> None:
    upload = write(tmp_path / "upload", "bad.txt", content)
    with pytest.raises(ArticleError) as expected:
        read_article(upload, Config())

    [result] = intake_articles([upload], tmp_path / "seeds")

    assert result.status == "refused"
    assert result.message == str(expected.value).replace(str(upload), "bad.txt")
    assert list((tmp_path / "seeds").iterdir()) == []


def test_intake_of_an_oversized_file_names_the_limit(tmp_path: Path) -> None:
    upload = write(tmp_path / "upload", "big.txt", "A sentence of the article. " * 100)

    [result] = intake_articles([upload], tmp_path / "seeds", Config(max_file_bytes=1000))

    assert result.status == "refused"
    assert result.message.startswith("big.txt: file is 0.0 MB, over the 0.0 MB limit")


def test_one_bad_file_does_not_stop_the_others(tmp_path: Path) -> None:
    good = write(tmp_path / "a", "good.md", NEW_ARTICLE)
    bad = write(tmp_path / "b", "bad.txt", b"")
    wrong = write(tmp_path / "c", "slides.pdf", b"%PDF")

    results = intake_articles([bad, wrong, good], tmp_path / "seeds")

    assert [result.status for result in results] == ["refused", "refused", "added"]
    assert [path.name for path in (tmp_path / "seeds").iterdir()] == ["good.md"]


# --- rendering ---------------------------------------------------------------------------------

PASSAGE = "The hall opens on June 1. It has 1,250 seats <and> a new organ. Tickets go on sale in May."
PASSAGE_START = 100


def citation(n: int, quote: str, passage: str = PASSAGE, chunk_id: str = "c1", article_id: str = "hall",
             date: dt.date | None = dt.date(2026, 4, 2)) -> Citation:
    start = PASSAGE_START + passage.index(quote)
    return Citation(n=n, article_id=article_id, title="Lotus <Orchestra> hall", date=date,
                    chunk_id=chunk_id, quote=quote, start=start, end=start + len(quote), passage=passage,
                    passage_start=PASSAGE_START)


def marks(page: str) -> dict[str, str]:
    """Anchor id -> highlighted text, unescaped."""
    return {anchor: html.unescape(text)
            for anchor, text in re.findall(r"<mark id='([^']+)'[^>]*>(.*?)</mark>", page)}


def test_answer_markers_link_to_highlighted_quotes_in_their_passage() -> None:
    first, second = "It has 1,250 seats <and> a new organ.", "The hall opens on June 1."
    answer = Answer(
        question="How many seats <b>?", answer=f"{first} [1] {second} [2]", outcome="answered",
        mode="extractive",
        sentences=(AnswerSentence(first, (1,)), AnswerSentence(second, (2,))),
        citations=(citation(1, first), citation(2, second)),
        timings={"retrieval_ms": 12.4, "answer_ms": 3.2},
    )

    page = render_turn(answer, turn=3)

    links = re.findall(r"<a class='marker' href='#([^']+)'>\[(\d)\]</a>", page)
    assert links == [(source_anchor(3, 1), "1"), (source_anchor(3, 2), "2")]
    assert marks(page) == {source_anchor(3, 1): first, source_anchor(3, 2): second}
    assert page.count("<blockquote") == 1  # both quotes come from one passage, shown once
    assert "How many seats &lt;b&gt;?" in page and "<b>?" not in page
    assert "Lotus &lt;Orchestra&gt; hall" in page and "2026-04-02" in page and ">hall</code>" in page
    assert "retrieval 12 ms · answer 3 ms" in page


def test_quote_offsets_select_the_mark_inside_the_passage() -> None:
    quote = "Tickets go on sale in May."
    answer = Answer(question="When?", answer=f"{quote} [1]", outcome="answered", mode="extractive",
                    sentences=(AnswerSentence(quote, (1,)),), citations=(citation(1, quote),))

    page = render_turn(answer, turn=1)

    passage_html = re.search(r"<blockquote class='passage'>(.*?)</blockquote>", page).group(1)
    before, marked = re.match(r"(.*)<mark[^>]*>(.*)</mark>$", passage_html).groups()
    assert html.unescape(before) == PASSAGE[: PASSAGE.index(quote)]
    assert html.unescape(marked) == quote


def test_overlapping_quotes_keep_an_anchor_for_each_marker() -> None:
    whole, part = "It has 1,250 seats <and> a new organ.", "1,250 seats"
    answer = Answer(question="Seats?", answer=f"{whole} [1] {part} [2]", outcome="answered", mode="llm",
                    sentences=(AnswerSentence(whole, (1,)), AnswerSentence(part, (2,))),
                    citations=(citation(1, whole), citation(2, part)))

    page = render_turn(answer, turn=1)

    assert marks(page) == {source_anchor(1, 1): whole}
    assert f"</mark><span id='{source_anchor(1, 2)}'></span>" in page


def test_bracketed_numbers_in_an_article_are_not_taken_for_markers() -> None:
    quote = "The hall opens on June 1."
    answer = Answer(question="When?", answer="Seats [3] are sold out. [1]", outcome="answered",
                    mode="extractive", sentences=(AnswerSentence("Seats [3] are sold out.", (1,)),),
                    citations=(citation(1, quote),))

    page = render_turn(answer, turn=1)

    assert "Seats [3] are sold out. <a class='marker' href='#turn-1-source-1'>[1]</a>" in page
    assert page.count("class='marker'") == 1


def test_unknown_date_and_unsupported_sentences_are_shown_as_such() -> None:
    quote = "The hall opens on June 1."
    answer = Answer(
        question="When?", answer=f"{quote} [1] It was built in 1990. [1]", outcome="answered", mode="llm",
        sentences=(AnswerSentence(quote, (1,)),
                   AnswerSentence("It was built in 1990.", (1,), supported=False,
                                  reason="the passage does not hold 1990")),
        citations=(citation(1, quote, date=None),), notice="1 sentence was not supported by its source.",
    )

    page = render_turn(answer, turn=1)

    assert "date unknown" in page
    assert re.search(r"<span class='sentence unsupported' title='the passage does not hold 1990'>It was built in "
                     r"1990\. <a class='marker'[^>]*>\[1\]</a> <span class='flag'>not found in the articles</span>", page)
    assert page.count("unsupported") == 1
    assert "<p class='notice'>1 sentence was not supported by its source.</p>" in page


def test_a_draft_that_was_not_used_is_shown_folded_with_why() -> None:
    extractive = Answer(question="When?", answer="The hall opens on June 1. [1]", outcome="answered",
                        mode="extractive", sentences=(AnswerSentence("The hall opens on June 1.", (1,)),),
                        citations=(citation(1, "The hall opens on June 1.", date=None),),
                        draft=Draft(model="tiny", text="It opened in 1990.", status="unverified",
                                    sentences=(AnswerSentence("It opened in 1990.", (), supported=False,
                                                              reason="the passage does not hold 1990"),)))

    page = render_turn(extractive, turn=1)

    assert "<details class='draft'><summary>The draft of tiny, not used</summary>" in page
    assert "It opened in 1990. <span class='flag'>the passage does not hold 1990</span>" in page
    assert page.index("The hall opens on June 1.") < page.index("The draft of tiny")


def test_abstention_lists_related_passages_as_related_not_as_sources() -> None:
    answer = Answer(
        question="Who won the 2022 FIFA World Cup?",
        answer="The indexed articles do not answer this question.",
        outcome="not_found", mode="extractive",
        related=(RelatedPassage("hall", "Lotus hall", None, "c1", PASSAGE, 100, 100 + len(PASSAGE), 0.2,
                                100, 100 + len(PASSAGE)),),
    )

    page = render_turn(answer, turn=2)

    assert "<p class='abstention'>The indexed articles do not answer this question.</p>" in page
    assert "<h4>Related passages</h4>" in page and "they do not answer the question" in page
    assert "Sources" not in page and "<mark" not in page and "class='marker'" not in page
    assert html.escape(PASSAGE) in page


def test_index_panel_lists_articles_model_and_update_time(fake_index: Path, embedder) -> None:
    index = Index.open(fake_index, embedder=embedder)

    page = render_index(index.info(), index.articles())

    assert f"{len(index.articles())} articles" in page
    assert f"model <code>{embedder.name}</code>" in page
    assert re.search(r"updated \d{4}-\d\d-\d\d \d\d:\d\d UTC", page)
    for article in index.articles():
        assert f"<code>{article.id}</code>" in page
        assert html.escape(article.title) in page
    assert page.count("date unknown") == sum(article.date is None for article in index.articles())


# --- handlers and workspace over a fake index --------------------------------------------------


@pytest.fixture
def workspace(fake_index: Path, seeds_copy: Path, embedder) -> Workspace:
    return Workspace(Index.open(fake_index, embedder=embedder), seeds_copy)


def ask(handlers: Handlers, question: str, turns: list[str], **filters) -> tuple:
    values = {"date_from": None, "date_to": None, "include_undated": False, "articles": [], "k": 5.0,
              "mode": "extractive", **filters}
    *_, last = handlers.ask(question, values["date_from"], values["date_to"], values["include_undated"],
                            values["articles"], values["k"], values["mode"], turns)
    return last


def test_each_question_adds_a_turn_on_top_of_the_conversation(workspace: Workspace) -> None:
    handlers = Handlers(workspace)

    page, turns, box = ask(handlers, "How many ships has the Defence Industry built?", [])
    page, turns, box = ask(handlers, "Who won the 2022 FIFA World Cup?", turns)

    assert len(turns) == 2 and box == ""
    assert page.index("id='turn-2'") < page.index("id='turn-1'")
    assert "FIFA" in page and "ships" in page


@pytest.mark.parametrize(("question", "filters", "message"), [
    ("   ", {}, "the question is empty: type a question about the articles"),
    ("ships", {"date_from": "15/03/2025"},
     "the start date must be a date (YYYY-MM-DD), a month (March 2025) or a year (2025), got '15/03/2025'"),
    ("ships", {"date_from": "2026-01-01", "date_to": "2025-01-01"},
     "the date range is empty: 2026-01-01 is after 2025-01-01"),
    ("ships", {"mode": "llm"}, ("LLM answers are not configured: set RAG_LLM_URL and RAG_LLM_MODEL (an OpenAI-"
                                "compatible endpoint) or RAG_LLM_GGUF (a local model file), or use mode 'extractive'")),
    ("ships", {"mode": "poem"}, "mode must be 'extractive' or 'llm', got 'poem'"),
])
def test_a_user_error_is_one_line_above_the_earlier_turns(workspace: Workspace, question: str,
                                                          filters: dict, message: str) -> None:
    handlers = Handlers(workspace)
    _, turns, _ = ask(handlers, "ships built", [])

    page, new_turns, box = ask(handlers, question, turns, **filters)

    assert page.startswith(f"<p class='error' role='alert'>{html.escape(message)}</p>")
    assert "id='turn-1'" in page
    assert new_turns == gr.skip() and box == gr.skip()  # the turns and the question are left as they were
    assert "Traceback" not in page


def test_filters_reach_the_search(workspace: Workspace) -> None:
    dated = [article for article in workspace.index.articles() if article.date]
    chosen = dated[0]

    hits = workspace.search("defence industry", k=10, articles=[chosen.id])
    in_range = workspace.search("defence industry", k=10, date_from=chosen.date.isoformat(),
                                date_to=chosen.date.isoformat())

    assert hits and {hit.chunk.article_id for hit in hits} == {chosen.id}
    assert in_range and {hit.chunk.date for hit in in_range} == {chosen.date}


def test_parse_date_accepts_empty_and_iso() -> None:
    assert parse_date(None, "the start date") is None
    assert parse_date("  ", "the start date") is None
    assert parse_date("2025-03-15", "the start date") == dt.date(2025, 3, 15)
    with pytest.raises(QueryError, match=r"the end date must be a date \(YYYY-MM-DD\), a month \(March 2025\) or a year \(2025\), got 'March'"):
        parse_date("March", "the end date")


def test_adding_an_article_rebuilds_and_answers_from_it(workspace: Workspace, tmp_path: Path) -> None:
    upload = write(tmp_path / "upload", "concert-hall.txt", NEW_ARTICLE)
    steps: list[tuple[int, int]] = []

    outcome = workspace.add_files([upload], progress=lambda done, total: steps.append((done, total)))

    assert outcome.error is None and outcome.report is not None
    assert outcome.report.added == ["concert-hall"]
    assert outcome.message.startswith("Rebuilt at ")
    assert "Questions are now answered from the new index (6 articles)." in outcome.message
    assert steps and steps[-1][0] == steps[-1][1] > 0
    assert "concert-hall" in {article.id for article in workspace.index.articles()}
    hits = workspace.search("concert hall seats orchestra", k=1)
    assert hits[0].chunk.article_id == "concert-hall"


def test_adding_nothing_new_does_not_rebuild(workspace: Workspace, tmp_path: Path) -> None:
    before = workspace.version()
    upload = write(tmp_path / "upload", "empty.txt", b"")

    outcome = workspace.add_files([upload])

    assert outcome.report is None and outcome.error is None
    assert outcome.message == "No new article to index."
    assert outcome.intake[0].message == "empty.txt: file is empty"
    assert workspace.version() == before


def test_a_failed_rebuild_says_why_and_keeps_the_previous_index(workspace: Workspace, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The update runs for real and fails where a full disk would make it fail: writing vectors."""
    def full_disk(index, path):
        raise OSError(28, "No space left on device", str(path))

    before = workspace.version()
    answered_before = workspace.index.search("Lotus Orchestra", k=3)
    monkeypatch.setattr(faiss, "write_index", full_disk)

    outcome = workspace.add_files([write(tmp_path / "upload", "hall.txt", NEW_ARTICLE)])

    assert outcome.intake[0].added
    assert outcome.message.startswith("Rebuild failed at ")
    assert "No space left on device" in outcome.message
    assert outcome.message.endswith("Questions are still answered from the previous index; press Rebuild to try again.")
    monkeypatch.undo()
    assert workspace.version() == before
    assert Index.open(workspace.index.path, embedder=workspace.index.embedder).version == before  # on disk too
    assert workspace.index.search("Lotus Orchestra", k=3) == answered_before
    assert "hall" not in {article.id for article in workspace.index.articles()}


def test_rebuild_picks_up_files_dropped_into_the_folder(workspace: Workspace) -> None:
    write(workspace.seeds_dir, "dropped.md", NEW_ARTICLE)
    handlers = Handlers(workspace)
    seen = workspace.version()

    status, panel = handlers.rebuild(progress=lambda *args, **kwargs: None)
    refreshed_choices, now_seen = handlers.refresh(seen)

    assert "1 added" in status and "<code>dropped</code>" in panel
    assert now_seen == workspace.version() != seen
    assert any("Lotus Orchestra" in label for label, _ in refreshed_choices.choices)


def test_another_session_is_told_when_the_index_changed(workspace: Workspace) -> None:
    handlers = Handlers(workspace)
    seen = workspace.version()
    assert handlers.poll(seen) == (gr.skip(),) * 4

    workspace.add_files([write(workspace.seeds_dir.parent / "upload", "hall.txt", NEW_ARTICLE)])
    notice, panel, _, now_seen = handlers.poll(seen)

    assert "The index was updated: questions are now answered from 6 articles." in notice
    assert "<code>hall</code>" in panel and now_seen == workspace.version()


def test_the_page_is_told_of_an_update_another_process_made(workspace: Workspace, embedder) -> None:
    """`rag index` run from a shell while the page serves: the next poll, question or search
    serves the new snapshot."""
    handlers = Handlers(workspace)
    seen = workspace.version()
    write(workspace.seeds_dir, "hall.txt", NEW_ARTICLE)
    build_index([workspace.seeds_dir], workspace.index.path, embedder=embedder)  # not through the workspace

    notice, panel, _, now_seen = handlers.poll(seen)

    assert "questions are now answered from 6 articles" in notice and "<code>hall</code>" in panel
    assert now_seen != seen and workspace.search("concert hall seats orchestra", k=1)[0].chunk.article_id == "hall"


# --- serving -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.53", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("192.168.1.10", False), ("::", False), ("example.org", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_loopback_needs_no_login() -> None:
    assert login_for("127.0.0.1", insecure=False, environ={}) is None


def test_other_addresses_need_a_login_or_insecure(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(RagError) as error:
        login_for("0.0.0.0", insecure=False, environ={})
    assert str(error.value) == (
        "serving on 0.0.0.0 makes the page reachable from other machines: set RAG_UI_USER and "
        "RAG_UI_PASSWORD to require a login, or pass --insecure to serve without one"
    )
    with caplog.at_level(logging.WARNING, logger="ui.app"):
        assert login_for("0.0.0.0", insecure=True, environ={}) is None
    assert "serving on 0.0.0.0 without a login (--insecure)" in caplog.text


def test_serve_refuses_an_open_address_before_listening(workspace: Workspace,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAG_UI_USER", raising=False)
    monkeypatch.delenv("RAG_UI_PASSWORD", raising=False)
    with pytest.raises(RagError, match="serving on 0.0.0.0 makes the page reachable"):
        serve(workspace.index, workspace.seeds_dir, host="0.0.0.0", port=free_port())


def test_serve_freezes_what_it_loaded_before_listening(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    frozen_at_launch = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **options: frozen_at_launch.append(gc.get_freeze_count()))
    try:
        serve(workspace.index, workspace.seeds_dir, port=free_port())
    finally:
        gc.unfreeze()
    assert frozen_at_launch and frozen_at_launch[0] > 0


@pytest.mark.parametrize("available", [False, True])
def test_llm_mode_is_offered_only_when_configured(workspace: Workspace, available: bool) -> None:
    workspace.index.llm_available = available

    app = build_app(workspace.index, workspace.seeds_dir)

    [mode] = [block for block in app.blocks.values() if isinstance(block, gr.Radio) and block.label == "Answer mode"]
    assert mode.visible is available
    assert [value for _, value in mode.choices] == ["extractive", "llm"]


def test_login_comes_from_the_environment() -> None:
    environ = {"RAG_UI_USER": "editor", "RAG_UI_PASSWORD": "s3cret"}
    assert login_for("0.0.0.0", insecure=False, environ=environ) == ("editor", "s3cret")
    assert login_for("127.0.0.1", insecure=False, environ=environ) == ("editor", "s3cret")
    with pytest.raises(RagError, match="set both RAG_UI_USER and RAG_UI_PASSWORD"):
        login_for("0.0.0.0", insecure=True, environ={"RAG_UI_USER": "editor"})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")  # pandas deprecations inside Gradio
def test_named_endpoints_work_with_gradio_client(workspace: Workspace, tmp_path: Path) -> None:
    app = build_app(workspace.index, workspace.seeds_dir)
    port = free_port()
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
        assert {"/ask", "/search", "/index_status", "/add_articles"} <= set(endpoints)
        for name in ("/ask", "/search", "/add_articles"):
            parameters = endpoints[name]["parameters"]
            assert not parameters[0]["parameter_has_default"]
            assert all(parameter["parameter_has_default"] for parameter in parameters[1:])

        answer = client.predict("How many ships has the General Department of Defence Industry built?",
                                api_name="/ask")
        assert set(answer) >= {"question", "answer", "abstained", "mode", "citations", "related", "timings"}
        hits = client.predict("defence industry", api_name="/search")
        assert hits and hits[0]["rank"] == 1
        status = client.predict(api_name="/index_status")
        assert status["counts"]["articles"] == 5 and status["llm_available"] is False

        added = client.predict([handle_file(write(tmp_path / "upload", "hall.txt", NEW_ARTICLE))],
                               api_name="/add_articles")
        assert [file["status"] for file in added["files"]] == ["added"]
        assert added["update"]["added"] == ["hall"] and added["error"] is None
        assert client.predict(api_name="/index_status")["counts"]["articles"] == 6

        with pytest.raises(Exception, match="the question is empty"):
            client.predict("  ", api_name="/ask")
        with pytest.raises(Exception, match="add_articles takes uploaded files"):
            client.predict([{"path": str(workspace.seeds_dir / "hall.txt")}], api_name="/add_articles")
    finally:
        app.close()


class SlowModel:
    """A generator that writes one word every 50 ms and records whether it was stopped."""

    name = "slow model"

    def __init__(self, words: list[str]) -> None:
        self.words, self.written, self.stopped = words, 0, threading.Event()

    def stream(self, messages):  # noqa: ANN001, ANN201 - the Generator protocol
        try:
            for word in self.words:
                time.sleep(0.05)
                self.written += 1
                yield word + " "
        finally:
            self.stopped.set()


def test_an_llm_draft_shows_as_it_arrives_then_the_checked_answer(workspace: Workspace) -> None:
    model = SlowModel("The General Department has built nearly 140 ships .".split())
    workspace.index.generator = model
    updates = list(Handlers(workspace).ask("How many ships were built?", None, None, False, [], 5.0, "llm", []))

    drafts = [page for page, *_ in updates[:-1]]
    assert len(drafts) >= 3 and all("A draft by the model, being checked" in page for page in drafts)
    assert "<p class='draft-stream'>The </p>" in drafts[0] and "140 ships" in drafts[-1]  # word by word
    final_page, turns, _ = updates[-1]
    assert len(turns) == 1 and "being checked" not in final_page


def test_closing_the_page_stops_the_model(workspace: Workspace) -> None:
    model = SlowModel(["word"] * 200)  # ten seconds of words
    workspace.index.generator = model
    updates = Handlers(workspace).ask("How many ships were built?", None, None, False, [], 5.0, "llm", [])

    next(updates)  # the first words are on the page
    updates.close()  # what Gradio does when the page goes away
    assert model.stopped.wait(2.0)
    assert model.written < 60


def test_conversations_are_kept_switched_and_deleted_in_the_browsers_state(workspace: Workspace) -> None:
    handlers = Handlers(workspace)
    page, turns, threads_list, saved = handlers.restore(None)  # a first visit: one empty thread
    assert turns == [] and len(saved["threads"]) == 1
    first = saved["current"]

    _, turns, _ = ask(handlers, "How many ships has the Defence Industry built?", turns)
    saved, choices = handlers.keep(turns, saved)
    assert [label for label, _ in choices.choices] == ["How many ships has the Defence Industry built?"]

    page, turns, _, saved = handlers.restore(saved)  # a reload: the same thread, its turns shown
    assert len(turns) == 1 and "How many ships" in page

    _, turns, _, saved = handlers.new_thread(saved)
    assert turns == [] and saved["current"] != first and len(saved["threads"]) == 2
    page, turns, _, saved = handlers.switch_thread(first, saved)
    assert saved["current"] == first and len(turns) == 1

    _, turns, choices, saved = handlers.delete_thread(saved)
    assert first not in saved["threads"] and turns == [] and len(choices.choices) == 1


def test_the_browser_keeps_the_last_turns_and_the_newest_threads(workspace: Workspace) -> None:
    """Each turn's page sits in the browser's local storage: what is kept is bounded."""
    from ui.app import KEPT_THREADS, KEPT_TURNS

    handlers = Handlers(workspace)
    saved = {"current": "now", "threads": {f"t{i}": {"title": f"old {i}", "created": float(i), "turns": []}
                                           for i in range(KEPT_THREADS + 5)}}
    saved["threads"]["now"] = {"title": "", "created": 0.5, "turns": []}  # the current one, oldest but kept
    turns = [{"html": f"<p class='question'><span class='label'>Question</span> q{i}</p>", "question": f"q{i}",
              "answer": "a"} for i in range(KEPT_TURNS + 10)]
    saved, _ = handlers.keep(turns, saved)
    assert len(saved["threads"]) == KEPT_THREADS and "now" in saved["threads"]
    assert "t0" not in saved["threads"] and f"t{KEPT_THREADS + 4}" in saved["threads"]
    kept = saved["threads"]["now"]
    assert kept["turns"] == turns[-KEPT_TURNS:] and kept["title"] == "q0"  # titled by its first question


def test_a_turn_after_the_kept_ones_gets_a_number_no_kept_turn_has(workspace: Workspace) -> None:
    """Turn numbers anchor the [n] links of each answer: after the oldest turns were let go, the
    next one continues from the last number, not from the count of turns kept."""
    handlers = Handlers(workspace)
    _, turns, _ = ask(handlers, "How many ships has the Defence Industry built?", [])
    kept = [{**turn, "number": 70} for turn in turns]  # as a reload gives a long conversation's last turns
    _, turns, _ = ask(handlers, "Who chaired the meeting at Hoa Lac?", kept)
    assert [turn["number"] for turn in turns] == [70, 71] and "id='turn-71'" in turns[-1]["html"]


@pytest.mark.parametrize("stored", [None, "junk", {"current": "x", "threads": {"x": "not a thread"}}, {"threads": []},
                                    {"current": "x", "threads": {"x": {"turns": [], "created": "soon", "title": 3},
                                                                 "y": {"turns": []}}},
                                    {"current": "x", "threads": {"x": {"turns": [{"html": 1}, "junk", {}]}}}])
def test_whatever_the_browser_stored_the_page_starts_cleanly(workspace: Workspace, stored: object) -> None:
    page, turns, _, saved = Handlers(workspace).restore(stored)  # type: ignore[arg-type]
    assert turns == [] and saved["current"] in saved["threads"]
