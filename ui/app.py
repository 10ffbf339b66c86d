"""The web page: a question box over `Index.search`. Imports only the public API of `rag`."""

from __future__ import annotations

import html
import os

import gradio as gr

from rag import Index, RagError


def render_hits(index: Index, question: str) -> str:
    """Search and render the ranked passages as HTML, or the error as one short line."""
    try:
        hits = index.search(question, k=5)
    except RagError as error:
        return f"<p class='error'>{html.escape(str(error))}</p>"
    if not hits:
        return "<p>The index holds no passages.</p>"
    rows = []
    for hit in hits:
        chunk = hit.chunk
        date = chunk.date.isoformat() if chunk.date else "date unknown"
        rows.append(
            f"<li><b>[{hit.rank}] {html.escape(chunk.title)}</b> ({date}, {chunk.article_id})"
            f"<br>{html.escape(chunk.text)}</li>"
        )
    return "<ol>" + "".join(rows) + "</ol>"


def build_app(index: Index) -> gr.Blocks:
    with gr.Blocks(title="News Q&A", analytics_enabled=False) as app:
        gr.Markdown("# Ask the articles")
        question = gr.Textbox(label="Question", placeholder="Ask about the indexed articles")
        ask = gr.Button("Ask", variant="primary")
        answer = gr.HTML()
        question.submit(lambda q: render_hits(index, q), question, answer, api_name="search")
        ask.click(lambda q: render_hits(index, q), question, answer, api_visibility="private")
    return app


def serve(index: Index, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the page until interrupted."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    build_app(index).launch(server_name=host, server_port=port, show_error=False)
