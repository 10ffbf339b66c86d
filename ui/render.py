"""HTML for the page, from the `rag` records. Pure functions: every value is escaped here.

Markers link to their source inside the same turn (`#turn-3-source-2`), so a click scrolls
the quoted sentence into view without any script. Sources are compact cards: the article's
title, date and id, the quoted sentences, and the whole passage folded in a <details>.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag import (
        Answer,
        AnswerSentence,
        ArticleInfo,
        Citation,
        IntakeResult,
        RelatedPassage,
        UpdateReport,
    )

SNIPPET_CHARS = 240
"""The longest sentence shown of a related passage before its card is opened."""


def date_label(date: dt.date | None) -> str:
    return date.isoformat() if date else "date unknown"


def source_anchor(turn: int, n: int) -> str:
    """The element id of citation `n` of conversation turn `turn`."""
    return f"turn-{turn}-source-{n}"


def render_turn(answer: Answer, turn: int) -> str:
    """One question with its answer, the [n] markers linked to the sources listed below it."""
    parts = [f"<article class='turn' id='turn-{turn}'>",
             f"<p class='question'><span class='label'>Question</span> {_escape(answer.question)}</p>"]
    if answer.searched_for:
        parts.append(f"<p class='corrections'>Searched for: {_escape(answer.searched_for)}</p>")
    if answer.corrections:
        searched = ", ".join(f"<b>{_escape(' or '.join(read_as))}</b> (for “{_escape(typed)}”)"
                             for typed, read_as in answer.corrections.items())
        parts.append(f"<p class='corrections'>Searched for {searched}</p>")
    if answer.notice:
        parts.append(f"<p class='notice'>{_escape(answer.notice)}</p>")
    if answer.abstained:
        parts.append(f"<p class='abstention'>{_escape(answer.answer)}</p>")
        parts.append(_related(answer.related))
    else:
        parts.append(f"<div class='answer {answer.outcome}'>{_answer_text(answer, turn)}</div>")
        parts.append(_sources(answer.citations, turn))
    parts.append(_rejected_draft(answer))
    parts.append(f"<p class='meta'>{_meta(answer)}</p></article>")
    return "".join(parts)


def _answer_text(answer: Answer, turn: int) -> str:
    return " ".join(_sentence(sentence, turn) for sentence in answer.sentences)


def _sentence(sentence: AnswerSentence, turn: int) -> str:
    """The sentence as written (a "[2]" in an article's own text stays text), then its markers."""
    text = _escape(sentence.text) + "".join(" " + _marker(turn, n) for n in sentence.citations)
    if sentence.supported:
        return f"<span class='sentence'>{text}</span>"
    why = _escape(sentence.reason or "no passage supports it")
    return (f"<span class='sentence unsupported' title='{why}'>{text} "
            f"<span class='flag'>not found in the articles</span></span>")


def _rejected_draft(answer: Answer) -> str:
    """An LLM draft that was not used (unverified or failed), shown folded and greyed: the
    reader may see what the model said, never as the answer."""
    draft = answer.draft
    if draft is None or draft.status not in ("unverified", "failed") or not draft.text.strip():
        return ""
    sentences = "".join(f"<li class='sentence unsupported'>{_escape(s.text)} <span class='flag'>"
                        f"{_escape(s.reason or 'not found in the articles')}</span></li>" for s in draft.sentences)
    body = f"<ul>{sentences}</ul>" if sentences else f"<p class='sentence unsupported'>{_escape(draft.text)}</p>"
    return f"<details class='draft'><summary>The draft of {_escape(draft.model)}, not used</summary>{body}</details>"


def _marker(turn: int, n: int) -> str:
    return f"<a class='marker' href='#{source_anchor(turn, n)}'>[{n}]</a>"


def _sources(citations: Sequence[Citation], turn: int) -> str:
    """One compact card per cited article: its title, date and id, then the quoted sentences,
    each in a <mark> that carries its marker's anchor; the whole passage opens on demand."""
    if not citations:
        return ""
    articles: dict[str, dict[str, list[Citation]]] = {}
    for citation in citations:
        articles.setdefault(citation.article_id, {}).setdefault(citation.chunk_id, []).append(citation)
    items = []
    for passages in articles.values():
        first = next(iter(passages.values()))[0]
        numbers = " ".join(f"[{c.n}]" for cited in passages.values() for c in cited)
        items.append(
            f"<li class='source card' data-article-id='{_escape(first.article_id)}'>"
            + _article_head(first.article_id, first.title, first.date, numbers)
            + "".join(_quotes(cited, turn) for cited in passages.values())
            + _more(passages.values())
            + _open_in_library(first)
            + "</li>"
        )
    return f"<section class='sources'><h4>Sources</h4><ul>{''.join(items)}</ul></section>"


def _open_in_library(citation: Citation) -> str:
    """A link that opens the whole article in the library, the quote highlighted (the page's
    conversation turns a click on it into an event; ui.app)."""
    return (f"<a class='open-article' href='#library' data-article-id='{_escape(citation.article_id)}' "
            f"data-start='{citation.start}' data-end='{citation.end}'>Read the whole article</a>")


def _article_head(article_id: str, title: str, date: dt.date | None, numbers: str = "") -> str:
    numbers = f"<span class='numbers'>{numbers}</span> " if numbers else ""
    return (f"<p class='source-head'>{numbers}<b class='title'>{_escape(title)}</b> "
            f"<span class='about'><span class='date'>{date_label(date)}</span> "
            f"<code class='article-id' title='article file'>{_escape(article_id)}</code></span></p>")


def _quotes(citations: list[Citation], turn: int) -> str:
    """The quoted sentences of one passage, in article order, each marked with the anchor its
    marker links to; a quote inside one already shown gets its anchor right after that one."""
    out: list[str] = []
    shown_until = None
    for citation in sorted(citations, key=lambda c: (c.start, c.end)):
        anchor = source_anchor(turn, citation.n)
        if shown_until is not None and citation.start < shown_until:
            out.append(f"<span id='{anchor}'></span>")
            continue
        if shown_until is not None:
            gap = citation.passage[shown_until - citation.passage_start:citation.start - citation.passage_start]
            out.append(" " if not gap.strip() else " … ")
        out.append(_mark(citation, anchor))
        shown_until = citation.end
    return f"<p class='quote'>{''.join(out)}</p>"


def _more(passages: Iterable[list[Citation]]) -> str:
    """The cited passages in full, folded: each quote highlighted where it stands."""
    blocks = [_passage(cited) for cited in passages]
    label = "Full passage" if len(blocks) == 1 else f"Full passages ({len(blocks)})"
    return f"<details class='more'><summary>{label}</summary>{''.join(blocks)}</details>"


def _mark(citation: Citation, anchor: str | None = None) -> str:
    """The quote in a <mark> with its number and its offsets in the article file."""
    anchor_id = f"id='{anchor}' " if anchor else ""
    text = citation.passage[citation.start - citation.passage_start:citation.end - citation.passage_start]
    return (f"<mark {anchor_id}data-n='{citation.n}' data-start='{citation.start}' data-end='{citation.end}'>"
            f"{_escape(text)}</mark>")


def _passage(citations: list[Citation]) -> str:
    """The passage with each citation's quote in a <mark> (the anchors are on the quotes shown
    above it, which stay visible when the passage is folded)."""
    passage, offset = citations[0].passage, citations[0].passage_start
    out, position = [], 0
    for citation in sorted(citations, key=lambda c: (c.start, c.end)):
        start, end = citation.start - offset, citation.end - offset
        if start < position:  # inside the quote just marked
            continue
        out.append(_escape(passage[position:start]))
        out.append(_mark(citation))
        position = end
    out.append(_escape(passage[position:]))
    return f"<blockquote class='passage'>{''.join(out)}</blockquote>"


def _related(related: Sequence[RelatedPassage]) -> str:
    """Related passages as compact cards, one per article: the sentence of each passage closest
    to the question, the whole passage folded under it."""
    if not related:
        return ""
    articles: dict[str, list[RelatedPassage]] = {}
    for passage in related:
        articles.setdefault(passage.article_id, []).append(passage)
    items = []
    for passages in articles.values():
        first = passages[0]
        snippets = "".join(f"<p class='quote'>{_escape(_shortened(p.snippet))}</p>" for p in passages)
        label = "Full passage" if len(passages) == 1 else f"Full passages ({len(passages)})"
        blocks = "".join(f"<blockquote class='passage'>{_escape(p.text)}</blockquote>" for p in passages)
        items.append(f"<li class='card' data-article-id='{_escape(first.article_id)}'>"
                     f"{_article_head(first.article_id, first.title, first.date)}{snippets}"
                     f"<details class='more'><summary>{label}</summary>{blocks}</details></li>")
    return ("<section class='related'><h4>Related passages</h4>"
            "<p class='hint'>Closest passages found; they do not answer the question.</p>"
            f"<ul>{''.join(items)}</ul></section>")


def _shortened(sentence: str) -> str:
    """A sentence cut to SNIPPET_CHARS at a space."""
    if len(sentence) <= SNIPPET_CHARS:
        return sentence
    cut = sentence.rfind(" ", 0, SNIPPET_CHARS)
    return sentence[:cut if cut > 0 else SNIPPET_CHARS].rstrip() + "…"


def _meta(answer: Answer) -> str:
    timings = " · ".join(f"{name.removesuffix('_ms')} {ms:.0f} ms"
                         for name, ms in answer.timings.items())
    return _escape(" · ".join(part for part in (f"{answer.mode} answer", timings) if part))


def render_conversation(turns: Sequence[str]) -> str:
    """The session's turns, newest first."""
    if not turns:
        return ("<p class='empty'>Ask a question about the indexed articles; "
                "answers cite their sources.</p>")
    return "".join(reversed(turns))


def render_draft(question: str, draft: str) -> str:
    """The model's words as they arrive, marked as a draft being checked, not yet an answer."""
    return (f"<article class='turn pending'><p class='question'><span class='label'>Question</span> "
            f"{_escape(question)}</p><p class='draft-stream'>{_escape(draft)}</p>"
            "<p class='meta'>A draft by the model, being checked against the articles…</p></article>")


def render_error(message: str) -> str:
    return f"<p class='error' role='alert'>{_escape(message)}</p>"


def render_index(info: dict[str, Any], articles: Sequence[ArticleInfo]) -> str:
    """What the index holds: each article with its title, date and chunks; the model; last update."""
    rows = "".join(
        f"<tr><td>{_escape(article.title)}<br><code>{_escape(article.id)}</code></td>"
        f"<td>{date_label(article.date)}</td><td class='num'>{article.chunks}</td></tr>"
        for article in articles
    )
    counts = info["counts"]
    return (
        f"<p class='index-summary'>{counts['articles']} articles, {counts['chunks']} passages · "
        f"model <code>{_escape(info['model'])}</code> · updated {_escape(_when(info['updated_at']))}</p>"
        "<div class='table-wrap'><table class='articles'><thead><tr><th>Article</th><th>Date</th>"
        f"<th class='num'>Chunks</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def render_update(intake: Sequence[IntakeResult], report: UpdateReport | None, switched: str | None) -> str:
    """The outcome of adding files and rebuilding, one line per file and problem."""
    lines = [f"<li class='{result.status}'>{_escape(result.message)}</li>" for result in intake]
    if report is not None:
        lines.extend(f"<li class='refused'>{_escape(message)}</li>" for message in report.failed)
        lines.extend(f"<li class='same-text'>{_escape(copy)} has the same text as {_escape(original)}: answers "
                     "cite it beside the original as a retelling</li>" for copy, original in report.same_text.items())
    summary = f"<p class='switched'>{_escape(switched)}</p>" if switched else ""
    return summary + (f"<ul class='intake'>{''.join(lines)}</ul>" if lines else "")


def _when(timestamp: str) -> str:
    """An ISO timestamp in UTC shown as 'YYYY-MM-DD HH:MM UTC'."""
    moment = dt.datetime.fromisoformat(timestamp).astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _escape(text: str) -> str:
    return html.escape(text, quote=True)
