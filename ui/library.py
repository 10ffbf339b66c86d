"""The article library on the page: one article to read, with what the index holds about it."""

from __future__ import annotations

import html

from rag import ArticleInfo


def render_article(info: ArticleInfo, text: str, source: str) -> str:
    """An article's metadata, then its text as in its file (paragraphs kept)."""
    date = info.date.isoformat() if info.date else "date unknown"
    paragraphs = "".join(f"<p>{html.escape(part)}</p>" for part in text.split("\n\n") if part.strip())
    return (f"<article class='library-article' id='library-{html.escape(info.id, quote=True)}'>"
            f"<h3>{html.escape(info.title)}</h3>"
            f"<p class='meta'><span class='date'>{date}</span> · <code>{html.escape(info.id)}</code> · "
            f"file {html.escape(source)} · {info.chunks} passages</p>"
            f"<div class='library-text'>{paragraphs}</div></article>")
