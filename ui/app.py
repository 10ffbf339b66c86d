"""The web page: ask the articles, read the cited sources, add articles and rebuild.

A thin shell over the public API of `rag`. `serve()` is what `rag serve` calls.
"""

from __future__ import annotations

import gc
import html
import json
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from rag import Index, RagError
from ui.api import ASK_CONCURRENCY, register_api
from ui.library import render_article
from ui.login import login_for, login_options
from ui.render import (
    render_conversation,
    render_draft,
    render_error,
    render_index,
    render_turn,
    render_update,
)
from ui.workspace import Progress, Workspace

log = logging.getLogger(__name__)

STYLE = Path(__file__).with_name("style.css")
KEPT_TURNS = 50
KEPT_THREADS = 30
"""What a browser keeps of its conversations (each turn's page, passages included, sits in its
local storage, a few MB per site): the last turns of a thread, the newest threads."""
POLL_SECONDS = 5.0
"""How often an open page checks whether the index was updated (by another page, an API client or `rag index`)."""

OPEN_CITED_JS = """element.addEventListener('click', (event) => {
  const link = event.target.closest('a.open-article');
  if (!link) return;
  event.preventDefault();
  trigger('select', {article: link.dataset.articleId, start: link.dataset.start, end: link.dataset.end});
});"""
"""Turns a click on a source's "Read the whole article" into the conversation's select event."""
SCROLL_TO_MARK = "() => { document.getElementById('library-mark')?.scrollIntoView({block: 'center'}); }"
SCROLL_TO_NEWEST = ("() => { const top = document.querySelector('#conversation .error, #conversation .turn');"
                    " if (top && top.getBoundingClientRect().top > window.innerHeight * 0.6)"
                    " top.scrollIntoView({block: 'start', behavior: 'smooth'}); }")
"""After an answer: bring the newest turn into view when it landed low on the screen (an open Filters panel)."""

EXAMPLES_FILE = Path(__file__).with_name("examples.json")
"""Example questions by the id of the article that answers them (the seeds'), each shown only
when the index holds its article: data beside the page, not code."""

class Handlers:
    """The page's event handlers: form values in, HTML and component updates out."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace

    def ask(self, question: str, date_from: str | None, date_to: str | None, include_undated: bool,
            articles: list[str] | None, k: float, mode: str,
            turns: list[dict[str, str]]) -> Iterator[tuple[str, Any, Any]]:
        """Answer and put the new turn on top; a user error shows above the earlier turns.

        `turns` holds each earlier turn's HTML and, for follow-ups, its question as searched and
        its answer's text: "Who else attended it?" is searched with the topic it continues.

        An LLM's words show as they arrive, marked as a draft. The answer runs on a worker
        thread; when the page goes away, Gradio closes this generator and the next word the
        model writes stops it (`_PageClosed`), freeing the model for the next question."""
        arrived: queue.Queue[Any] = queue.Queue()
        closed = threading.Event()
        done = object()

        def on_token(piece: str) -> None:
            if closed.is_set():
                raise _PageClosed
            arrived.put(piece)

        def answer() -> None:
            try:
                history = [(turn["question"], turn["answer"]) for turn in turns]
                arrived.put(self.workspace.ask(question, k=int(k), date_from=date_from, date_to=date_to,
                                               articles=articles, mode=mode, include_undated=include_undated,
                                               on_token=on_token if mode == "llm" else None, history=history))
            except RagError as error:
                arrived.put(error)
            except _PageClosed:
                pass
            except Exception as error:  # a bug: one plain line on the page, the traceback in the log
                log.exception("answering %r failed", question)
                arrived.put(RagError(f"answering failed unexpectedly ({type(error).__name__}); the server log has "
                                     "the details, and other questions still work"))
            finally:
                arrived.put(done)

        threading.Thread(target=answer, name="rag-ask", daemon=True).start()
        draft, earlier = "", render_conversation([turn["html"] for turn in turns])
        try:
            while (item := arrived.get()) is not done:
                if isinstance(item, str):
                    draft += item
                    yield render_draft(question, draft) + earlier, gr.skip(), gr.skip()
                elif isinstance(item, Exception):
                    yield render_error(str(item)) + earlier, gr.skip(), gr.skip()
                else:
                    number = _next_turn_number(turns)
                    turns = [*turns, {"html": render_turn(item, turn=number), "number": number,
                                      "question": item.searched_for or item.question, "answer": item.answer}]
                    yield render_conversation([turn["html"] for turn in turns]), turns, ""
        finally:
            closed.set()

    def add_files(self, files: list[str] | None,
                  progress: gr.Progress = gr.Progress()) -> tuple[str, str, None]:
        outcome = self.workspace.add_files(files or [], _embedding_progress(progress))
        return render_update(outcome.intake, outcome.report, outcome.message), self.index_html(), None

    def rebuild(self, progress: gr.Progress = gr.Progress()) -> tuple[str, str]:
        outcome = self.workspace.rebuild(_embedding_progress(progress))
        return render_update(outcome.intake, outcome.report, outcome.message), self.index_html()

    def load(self) -> tuple[str, Any, str]:
        """A page opened now shows the index as it is now, not as it was at start-up."""
        return self.index_html(), gr.Dropdown(choices=self.article_choices()), self.workspace.version()

    def refresh(self, seen: str) -> tuple[Any, Any]:
        """After this page's rebuild: the article choices, and the version now shown."""
        current = self.workspace.version()
        if current == seen:
            return gr.skip(), gr.skip()
        return gr.Dropdown(choices=self.article_choices()), current

    def poll(self, seen: str) -> tuple[Any, Any, Any, Any]:
        """When another page or an API client rebuilt the index: refresh, and say so."""
        current = self.workspace.version()
        if current == seen:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        count = self.workspace.index.stats().articles
        notice = render_update((), None, f"The index was updated: questions are now answered from "
                                         f"{count} articles.")
        return notice, self.index_html(), gr.Dropdown(choices=self.article_choices()), current

    def article_choices(self) -> list[tuple[str, str]]:
        return [(f"{article.title} ({article.id})", article.id)
                for article in self.workspace.index.articles()]

    def examples(self) -> list[str]:
        held = {article.id for article in self.workspace.index.articles()}
        examples = json.loads(EXAMPLES_FILE.read_text(encoding="utf-8"))
        return [question for article_id, question in examples.items() if article_id in held]

    def index_html(self) -> str:
        return render_index(self.workspace.index.info(), self.workspace.index.articles())

    def open_article(self, article_id: str | None, highlight: tuple[int, int] | None = None) -> str:
        """The library's article view: metadata and the file's text, a quote highlighted."""
        if not article_id:
            return ""
        try:
            info, article = self.workspace.article(article_id)
        except RagError as error:
            return render_error(str(error))
        changed = article.content_hash != info.content_hash  # the quote's offsets are of the indexed text
        page = render_article(info, article.text, self.workspace.shown_source(info), None if changed else highlight)
        if highlight and changed:
            page = render_error("This file changed since it was indexed, so the quote cannot be marked in it: "
                                "Rebuild to index the new text.") + page
        return page

    def open_cited(self, event: gr.EventData) -> tuple[str, Any, Any]:
        """"Read the whole article" under a source: the library opens on it, the quote highlighted."""
        article_id = getattr(event, "article", None)
        try:
            start, end = int(getattr(event, "start", "")), int(getattr(event, "end", ""))
        except (TypeError, ValueError):
            return gr.skip(), gr.skip(), gr.skip()
        return (self.open_article(article_id, (start, end)), gr.Accordion(open=True),
                gr.Dropdown(value=article_id))

    def set_date(self, article_id: str | None, date: str | None) -> tuple[str, str, str, Any]:
        """Date the chosen article from the page (stored beside the articles, not in its text)."""
        if not article_id:
            return render_error("Choose an article in the library first."), gr.skip(), gr.skip(), gr.skip()
        try:
            outcome = self.workspace.set_date(article_id, date)
        except RagError as error:
            return render_error(str(error)), gr.skip(), gr.skip(), gr.skip()
        return (render_update(outcome.intake, outcome.report, outcome.message), self.index_html(),
                self.open_article(article_id), gr.Dropdown(choices=self.article_choices()))

    def remove_article(self, article_id: str | None, confirmed: bool) -> tuple[str, str, str, Any, bool]:
        """Remove the chosen article, once confirmed: its file moves to removed/, the index updates."""
        if not article_id:
            return render_error("Choose an article in the library first."), gr.skip(), gr.skip(), gr.skip(), False
        if not confirmed:
            return (render_error("Tick “Yes, remove it” to confirm the removal."), gr.skip(), gr.skip(), gr.skip(),
                    False)
        try:
            outcome = self.workspace.remove_article(article_id)
        except RagError as error:
            return render_error(str(error)), gr.skip(), gr.skip(), gr.skip(), False
        return (render_update(outcome.intake, outcome.report, outcome.message), self.index_html(), "",
                gr.Dropdown(choices=self.article_choices(), value=None), False)

    # Conversations ("threads") live in the reader's browser (gr.BrowserState), none on the server:
    # {"current": id, "threads": {id: {"title": first question, "created": time, "turns": [...]}}}.

    def restore(self, saved: dict[str, Any] | None) -> tuple[str, list[dict[str, str]], Any, dict[str, Any]]:
        """On load: the current thread of this browser as it was, or a new one."""
        saved = _threads_or_new(saved)
        turns = saved["threads"][saved["current"]]["turns"]
        return render_conversation([t["html"] for t in turns]), turns, _thread_choices(saved), saved

    def keep(self, turns: list[dict[str, str]], saved: dict[str, Any] | None) -> tuple[dict[str, Any], Any]:
        """After an answer: the current thread holds the conversation, titled by its first question."""
        saved = _threads_or_new(saved)
        thread = saved["threads"][saved["current"]]
        if turns and not thread["title"]:
            thread["title"] = _plain_question(turns[0]["html"]) or "Conversation"
        thread["turns"] = turns[-KEPT_TURNS:]
        others = sorted((i for i in saved["threads"] if i != saved["current"]), key=lambda i: saved["threads"][i]["created"])
        for oldest in others[:max(0, len(saved["threads"]) - KEPT_THREADS)]:
            del saved["threads"][oldest]
        return saved, _thread_choices(saved)

    def new_thread(self, saved: dict[str, Any] | None) -> tuple[str, list[dict[str, str]], Any, dict[str, Any]]:
        saved = _threads_or_new(saved)
        if saved["threads"][saved["current"]]["turns"]:  # an empty current thread is reused
            saved["current"] = _new_thread(saved)
        return render_conversation([]), [], _thread_choices(saved), saved

    def switch_thread(self, thread_id: str | None,
                      saved: dict[str, Any] | None) -> tuple[str, list[dict[str, str]], Any, dict[str, Any]]:
        saved = _threads_or_new(saved)
        if thread_id in saved["threads"]:
            saved["current"] = thread_id
        turns = saved["threads"][saved["current"]]["turns"]
        return render_conversation([t["html"] for t in turns]), turns, _thread_choices(saved), saved

    def delete_thread(self, saved: dict[str, Any] | None) -> tuple[str, list[dict[str, str]], Any, dict[str, Any]]:
        """Forget the current thread; the newest other one (or a new one) becomes current."""
        saved = _threads_or_new(saved)
        del saved["threads"][saved["current"]]
        remaining = sorted(saved["threads"], key=lambda i: saved["threads"][i]["created"])
        saved["current"] = remaining[-1] if remaining else _new_thread(saved)
        return self.switch_thread(saved["current"], saved)


def _threads_or_new(saved: dict[str, Any] | None) -> dict[str, Any]:
    """The browser's threads, checked (it may hold anything), with a current one."""
    threads = saved.get("threads") if isinstance(saved, dict) else None
    threads = {key: _thread(value) for key, value in threads.items()
               if isinstance(value, dict) and isinstance(value.get("turns"), list)} if isinstance(threads, dict) else {}
    saved = {"current": saved.get("current") if isinstance(saved, dict) else None, "threads": threads}
    if saved["current"] not in threads:
        saved["current"] = _new_thread(saved)
    return saved


def _thread(stored: dict[str, Any]) -> dict[str, Any]:
    """A thread as the browser stored it, with what the page reads checked: a title, a time,
    and the turns that hold their page, question and answer as text."""
    title, created = stored.get("title"), stored.get("created")
    turns = [turn for turn in stored["turns"]
             if isinstance(turn, dict) and all(isinstance(turn.get(key), str) for key in ("html", "question", "answer"))]
    return {"title": title if isinstance(title, str) else "",
            "created": created if isinstance(created, (int, float)) else 0.0, "turns": turns}


def _next_turn_number(turns: list[dict[str, Any]]) -> int:
    """The number of the next turn: one past the last one's, which is not the count of turns
    once a long conversation's oldest ones were let go (KEPT_TURNS); numbers are anchors."""
    last = turns[-1].get("number") if turns else 0
    return (last if isinstance(last, int) else len(turns)) + 1


def _new_thread(saved: dict[str, Any]) -> str:
    thread_id = uuid.uuid4().hex[:12]
    saved["threads"][thread_id] = {"title": "", "created": time.time(), "turns": []}
    return thread_id


def _thread_choices(saved: dict[str, Any]) -> Any:
    ordered = sorted(saved["threads"], key=lambda i: -saved["threads"][i]["created"])
    return gr.Radio(choices=[(saved["threads"][i]["title"] or "New conversation", i) for i in ordered],
                    value=saved["current"])


def _plain_question(turn_html: str) -> str:
    """The question of a rendered turn, as text, shortened for a list."""
    found = re.search(r"<p class='question'><span class='label'>Question</span> (.*?)</p>", turn_html)
    text = html.unescape(found.group(1)) if found else ""
    return text if len(text) <= 60 else text[:57].rstrip() + "…"


class _PageClosed(Exception):
    """Raised in the model's stream when the page that asked is gone, to stop the model."""


def build_app(index: Index, seeds_dir: Path) -> gr.Blocks:
    """The page over `index`, adding uploaded articles to `seeds_dir`."""
    workspace = Workspace(index, seeds_dir)
    handlers = Handlers(workspace)
    with gr.Blocks(title="Ask the articles", analytics_enabled=False) as app:
        register_api(workspace)  # first, so that the page's private events do not take its names
        turns = gr.State([])
        saved_threads = gr.BrowserState({}, storage_key="rag-conversations")
        seen_version = gr.State("")
        gr.Markdown("# Ask the articles\nAnswers quote the indexed news articles and cite them; "
                    "click a marker such as [1] to see its source.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=300):
                with gr.Row(equal_height=True, elem_id="ask-row"):
                    question = gr.Textbox(label="Question", show_label=False, container=False,
                                          placeholder="Ask a question about the indexed articles",
                                          lines=1, max_lines=4, scale=5, min_width=200,
                                          elem_id="question")
                    ask_button = gr.Button("Ask", variant="primary", scale=0, min_width=80, elem_id="ask")
                examples = handlers.examples()
                with gr.Row(elem_id="examples"):
                    example_buttons = [gr.Button(text, size="sm", variant="secondary", min_width=160)
                                       for text in examples]
                with gr.Accordion("Filters", open=False, elem_id="filters"):
                    with gr.Row():
                        # Text, not a date picker: "March 2025" or "2025" is read as a range bound
                        # (ui.workspace.parse_date), and a date it cannot read is refused in words.
                        date_from = gr.Textbox(label="From", placeholder="2025-03-15, March 2025 or 2025",
                                               max_lines=1, min_width=140, elem_id="date-from")
                        date_to = gr.Textbox(label="To", placeholder="2025-03-31, March 2025 or 2025",
                                             max_lines=1, min_width=140, elem_id="date-to")
                    include_undated = gr.Checkbox(label="With a date range, also search undated articles")
                    articles = gr.Dropdown(choices=[], value=[], multiselect=True,
                                           label="Search only these articles (all when empty)",
                                           elem_id="article-filter")
                    # No "passages to retrieve" control: answers read the configured number
                    # (Config.answer_passages) and a reader saw no difference moving it.
                    k = gr.State(index.config.answer_passages)
                    mode = gr.Radio([("Extractive: quotes from the articles", "extractive"),
                                     ("LLM: written by a model, checked against the sources", "llm")],
                                    value="extractive", label="Answer mode",
                                    info="LLM answers are slower; every sentence is checked against the articles.",
                                    visible=workspace.llm_available)
                conversation = gr.HTML(render_conversation([]), elem_id="conversation", js_on_load=OPEN_CITED_JS)
            with gr.Column(scale=2, min_width=300, elem_id="index-column"):
                # first in the column: what an upload, rebuild, dating or removal did is seen
                # without scrolling, on a 900 px screen too
                rebuild_status = gr.HTML(elem_id="rebuild-status")
                with gr.Accordion("Conversations", open=True, elem_id="threads"):
                    thread_list = gr.Radio(choices=[], label="Kept in this browser", elem_id="thread-list")
                    with gr.Row():
                        new_thread = gr.Button("New conversation", size="sm", elem_id="new-thread")
                        delete_thread = gr.Button("Delete this conversation", size="sm", variant="stop",
                                                  elem_id="delete-thread")
                gr.Markdown("## Index")
                index_panel = gr.HTML(elem_id="index-panel")
                with gr.Accordion("Library: read, date or remove an article", open=False,
                                  elem_id="library") as library:
                    library_choice = gr.Dropdown(choices=[], value=None, label="Article (type to search titles and ids)",
                                                 filterable=True, elem_id="library-choice")
                    library_view = gr.HTML(elem_id="library-view")
                    with gr.Row():
                        article_date = gr.Textbox(label="Date (YYYY-MM-DD, empty to clear)", min_width=160,
                                                  elem_id="article-date")
                        set_date_button = gr.Button("Set date", size="sm", elem_id="set-date")
                    with gr.Row():
                        confirm_removal = gr.Checkbox(label="Yes, remove it", elem_id="confirm-removal")
                        remove_button = gr.Button("Remove article", size="sm", variant="stop", elem_id="remove-article")
                files = gr.File(label="Add articles (.txt or .md)", file_count="multiple",
                                file_types=[".txt", ".md"], elem_id="upload")
                rebuild_button = gr.Button("Rebuild from the articles folder", elem_id="rebuild")
        timer = gr.Timer(POLL_SECONDS)

        ask_inputs = [question, date_from, date_to, include_undated, articles, k, mode, turns]
        ask_outputs = [conversation, turns, question]
        ask_options: dict[str, Any] = dict(api_visibility="private", concurrency_id="ask",
                                           concurrency_limit=ASK_CONCURRENCY, show_progress="minimal")
        thread_options: dict[str, Any] = dict(api_visibility="private", show_progress="hidden", queue=False)
        gr.on([question.submit, ask_button.click], handlers.ask, ask_inputs, ask_outputs, **ask_options).then(
            handlers.keep, [turns, saved_threads], [saved_threads, thread_list], **thread_options).then(
            None, js=SCROLL_TO_NEWEST)
        for button, text in zip(example_buttons, examples, strict=True):
            button.click(lambda text=text: text, None, question, api_visibility="private", queue=False).then(
                handlers.ask, ask_inputs, ask_outputs, **ask_options).then(
                handlers.keep, [turns, saved_threads], [saved_threads, thread_list], **thread_options).then(
                None, js=SCROLL_TO_NEWEST)
        thread_outputs = [conversation, turns, thread_list, saved_threads]
        new_thread.click(handlers.new_thread, saved_threads, thread_outputs, **thread_options)
        delete_thread.click(handlers.delete_thread, saved_threads, thread_outputs, **thread_options)
        thread_list.input(handlers.switch_thread, [thread_list, saved_threads], thread_outputs, **thread_options)
        app.load(handlers.restore, saved_threads, thread_outputs, **thread_options)

        rebuild_options: dict[str, Any] = dict(api_visibility="private", concurrency_id="rebuild",
                                               concurrency_limit=1, show_progress_on=files)
        refresh_options: dict[str, Any] = dict(api_visibility="private", show_progress="hidden",
                                               concurrency_limit=None)
        files.upload(handlers.add_files, files, [rebuild_status, index_panel, files],
                     **rebuild_options).then(handlers.refresh, seen_version, [articles, seen_version],
                                             **refresh_options)
        rebuild_button.click(handlers.rebuild, None, [rebuild_status, index_panel],
                             **rebuild_options).then(handlers.refresh, seen_version, [articles, seen_version],
                                                     **refresh_options)
        timer.tick(handlers.poll, seen_version, [rebuild_status, index_panel, articles, seen_version],
                   **refresh_options)
        app.load(handlers.load, None, [index_panel, articles, seen_version], **refresh_options).then(
            lambda: gr.Dropdown(choices=handlers.article_choices()), None, library_choice, **refresh_options)
        library_choice.input(handlers.open_article, library_choice, library_view, **refresh_options)
        conversation.select(handlers.open_cited, None, [library_view, library, library_choice],
                            **refresh_options).then(None, js=SCROLL_TO_MARK)
        set_date_button.click(handlers.set_date, [library_choice, article_date],
                              [rebuild_status, index_panel, library_view, articles], **rebuild_options)
        remove_button.click(handlers.remove_article, [library_choice, confirm_removal],
                            [rebuild_status, index_panel, library_view, library_choice, confirm_removal],
                            **rebuild_options).then(
            lambda: gr.Dropdown(choices=handlers.article_choices()), None, articles, **refresh_options)
    return app


def serve(index: Index, seeds_dir: Path, host: str = "127.0.0.1", port: int = 7860,
          insecure: bool = False) -> None:
    """Serve the page until interrupted. Off loopback, a login is required unless `insecure`."""
    auth = login_for(host, insecure, os.environ)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    app = build_app(index, seeds_dir).queue()
    # What is loaded by now (modules, the index) lives as long as the server. Frozen, the
    # collector stops rescanning it: a full collection otherwise held one search in about 300
    # for 90-120 ms at 100k chunks (measured in an earlier run: git log -p docs/performance.md). Updates leave no cyclic garbage
    # (tests/test_index.py), so nothing frozen outlives its use.
    gc.freeze()
    app.launch(
        server_name=host, server_port=port, share=False, show_error=False,
        footer_links=["api"], run_history=False, enable_monitoring=False, mcp_server=False,
        ssr_mode=False, max_file_size=index.config.max_file_bytes, css_paths=STYLE, **login_options(auth),
    )


def _embedding_progress(progress: gr.Progress) -> Progress:
    def report(done: int, total: int) -> None:
        progress((done, total), desc="Rebuilding: embedding the new text", unit="texts")

    return report
