"""The page's named API endpoints: JSON out, the question (or files) first, defaults for the rest.

    from gradio_client import Client, handle_file
    client = Client("http://127.0.0.1:7860/")
    answer = client.predict("Who is the Director of the General Department of Defence Industry?",
                            api_name="/ask")
    print(answer["answer"], [c["article_id"] for c in answer["citations"]])
    client.predict([handle_file("new-article.txt")], api_name="/add_articles")

No `from __future__ import annotations` in this module: Gradio reads the endpoints' type hints
at run time to describe them, and postponed (string) annotations would hide the types.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.data_classes import FileData

from rag import RagError
from ui.workspace import Workspace

ASK_CONCURRENCY = 4
"""Questions answered at once, across the page and the API. More than the 2 cores: a question
spends much of its time outside the encoder (ranking, composing, rendering, the network), so
a few in flight keep both cores busy, while a queue beyond that keeps each answer's latency
near a lone one's instead of slicing the cores ever thinner."""


def register_api(workspace: Workspace) -> None:
    """Add the `ask`, `search`, `index_status` and `add_articles` endpoints to the Blocks being built."""

    def ask(question: str, k: int | None = None, date_from: str | None = None, date_to: str | None = None,
            articles: list[str] | None = None, mode: str = "extractive",
            include_undated: bool = False, history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Answer from the indexed articles with cited quotes, or abstain; the `rag ask --json` record.
        Dates are YYYY-MM-DD; `articles` limits the search to those article ids; `history` lists
        the conversation's earlier answers (the records this returned, or {"question", "answer"}),
        oldest first, so that a follow-up is searched with the topic it continues (`searched_for`
        in the record)."""
        with _user_errors():
            return workspace.ask(question, k=k, date_from=date_from, date_to=date_to, articles=articles,
                                 mode=mode, include_undated=include_undated, history=history or ()).to_json()

    def search(query: str, k: int = 5, date_from: str | None = None, date_to: str | None = None,
               articles: list[str] | None = None, include_undated: bool = False) -> list[dict[str, Any]]:
        """The passages closest to the query, best first, with their offsets in the article files."""
        with _user_errors():
            hits = workspace.search(query, k=k, date_from=date_from, date_to=date_to, articles=articles,
                                    include_undated=include_undated)
            return [hit.to_json() for hit in hits]

    def index_status() -> dict[str, Any]:
        """What the index holds: articles with title, date and chunk count, the model, the last update."""
        return workspace.status()

    def add_articles(files: list[FileData]) -> dict[str, Any]:
        """Validate uploaded .txt/.md files, save the good ones into the seeds folder and rebuild.
        Each file gets a status (added, unchanged, refused) and a message."""
        return workspace.add_files(_uploaded_paths(files)).to_json()

    gr.api(ask, api_name="ask", concurrency_id="ask", concurrency_limit=ASK_CONCURRENCY)
    gr.api(search, api_name="search", concurrency_id="ask", concurrency_limit=ASK_CONCURRENCY)
    gr.api(index_status, api_name="index_status", concurrency_limit=None)
    gr.api(add_articles, api_name="add_articles", concurrency_id="rebuild", concurrency_limit=1)


@contextmanager
def _user_errors() -> Iterator[None]:
    """Send a user error to the client as its one-line message, without a traceback."""
    try:
        yield
    except RagError as error:
        raise gr.Error(str(error), print_exception=False) from None


def _uploaded_paths(files: list[Any]) -> list[Path]:
    """Paths of files uploaded to this server. Gradio has checked that a file marked as
    FileData lies in its upload folder; anything else could name any file on the machine."""
    paths = []
    for file in files:
        if not (isinstance(file, dict) and file.get("meta", {}).get("_type") == "gradio.FileData"):
            raise gr.Error("add_articles takes uploaded files: pass handle_file(path) for each one",
                           print_exception=False)
        paths.append(Path(file["path"]))
    return paths
