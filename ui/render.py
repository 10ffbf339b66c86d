"""HTML for the page, from the `rag` records. Pure functions: every value is escaped here.

Markers link to their source inside the same turn (`#turn-3-source-2`), so a click scrolls
the cited passage into view without any script.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag import (Answer, AnswerSentence, ArticleInfo, Citation, IntakeResult, RelatedPassage,
                     UpdateReport)

ABSTENTION = "The indexed articles do not answer this."


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
        parts.append(f"<p class='abstention'>{ABSTENTION}</p>")
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
    """Citations grouped by article, then by passage, each quote highlighted in its passage."""
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
            f"<li class='source' data-article-id='{_escape(first.article_id)}'>"
            + _article_head(first.article_id, first.title, first.date, numbers)
            + "".join(_passage(cited, turn) for cited in passages.values())
            + "</li>"
        )
    return f"<section class='sources'><h4>Sources</h4><ul>{''.join(items)}</ul></section>"


def _article_head(article_id: str, title: str, date: dt.date | None, numbers: str = "") -> str:
    numbers = f"<span class='numbers'>{numbers}</span> " if numbers else ""
    return (f"<p class='source-head'>{numbers}<b class='title'>{_escape(title)}</b> "
            f"<span class='date'>{date_label(date)}</span> "
            f"<code class='article-id'>{_escape(article_id)}</code></p>")


def _passage(citations: list[Citation], turn: int) -> str:
    """The passage with each citation's quote in a <mark> that carries the marker's anchor and the
    quote's offsets in the article file."""
    passage, offset = citations[0].passage, citations[0].passage_start
    out, position = [], 0
    for citation in sorted(citations, key=lambda c: (c.start, c.end)):
        start, end = citation.start - offset, citation.end - offset
        if start < position:  # overlaps the quote just marked: anchor it right after that one
            out.append(f"<span id='{source_anchor(turn, citation.n)}'></span>")
            continue
        out.append(_escape(passage[position:start]))
        out.append(f"<mark id='{source_anchor(turn, citation.n)}' data-n='{citation.n}' "
                   f"data-start='{citation.start}' data-end='{citation.end}'>"
                   f"{_escape(passage[start:end])}</mark>")
        position = end
    out.append(_escape(passage[position:]))
    return f"<blockquote class='passage'>{''.join(out)}</blockquote>"


def _related(related: Sequence[RelatedPassage]) -> str:
    if not related:
        return ""
    items = "".join(
        f"<li data-article-id='{_escape(passage.article_id)}'>"
        f"{_article_head(passage.article_id, passage.title, passage.date)}"
        f"<blockquote class='passage'>{_escape(passage.text)}</blockquote></li>"
        for passage in related
    )
    return ("<section class='related'><h4>Related passages</h4>"
            "<p class='hint'>Closest passages found; they do not answer the question.</p>"
            f"<ul>{items}</ul></section>")


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
