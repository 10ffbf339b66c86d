"""The article library on the page: one article to read, with what the index holds about it."""

from __future__ import annotations

import html

from rag import ArticleInfo


def render_article(info: ArticleInfo, text: str, source: str, highlight: tuple[int, int] | None = None) -> str:
    """An article's metadata, then its text as in its file (line breaks kept), the characters
    `highlight` spans (a citation's quote) marked."""
    date = info.date.isoformat() if info.date else "date unknown"
    if highlight and 0 <= highlight[0] < highlight[1] <= len(text):
        start, end = highlight
        body = (html.escape(text[:start]) + f"<mark id='library-mark'>{html.escape(text[start:end])}</mark>"
                + html.escape(text[end:]))
    else:
        body = html.escape(text)
    return (f"<article class='library-article' id='library-{html.escape(info.id, quote=True)}'>"
            f"<h3>{html.escape(info.title)}</h3>"
            f"<p class='meta'><span class='date'>{date}</span> · <code>{html.escape(info.id)}</code> · "
            f"file {html.escape(source)} · {info.chunks} passages</p>"
            f"<div class='library-text'>{body}</div></article>")
