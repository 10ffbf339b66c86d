"""LLM answers: ask the model, check every sentence it wrote, and give the reader only what holds.

Supported sentences make the answer, each cited; unsupported ones stay in `Answer.draft`
with the reason, shown greyed as "not found in the articles", never as the answer. When no
sentence is supported, or the model fails or times out, the reader gets the extractive
answer with a notice that says which of those happened. A reply saying the passages do not
answer becomes an abstention.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from rag.answer.extractive import abstention
from rag.answer.generators import Generator
from rag.answer.prompt import build_messages, parse_claims
from rag.answer.schema import Answer, AnswerSentence, Citation, Draft, DraftStatus, cite
from rag.answer.verification import (
    CheckedClaim,
    Embed,
    VerifierSettings,
    check_claims,
)
from rag.errors import GeneratorError
from rag.records import Hit

log = logging.getLogger(__name__)


def compose_llm(question: str, hits: Sequence[Hit], generator: Generator, embed: Embed,
                extractive: Callable[[], Answer], on_token: Callable[[str], None] | None = None,
                settings: VerifierSettings = VerifierSettings()) -> Answer:
    """Ask the model, stream its reply to `on_token`, and return the verified answer."""
    if not hits:
        return abstention(question, list(hits), mode="llm")
    passages = [hit.chunk for hit in hits]
    started = time.perf_counter()
    pieces: list[str] = []
    try:
        for piece in generator.stream(build_messages(question, passages)):
            pieces.append(piece)
            if on_token and piece:
                on_token(piece)
    except GeneratorError as error:
        log.warning("LLM answer failed, answering extractively: %s", error)
        reason = str(error).rstrip(".")
        draft = Draft(model=generator.name, text="".join(pieces), status="failed", error=reason)
        return replace(_noted(extractive(), f"The LLM gave no usable answer ({reason}). This is the extractive "
                                            "answer."),
                       draft=draft, timings={"generation_ms": (time.perf_counter() - started) * 1000})
    generated = time.perf_counter()
    reply = "".join(pieces)
    checked = check_claims(question, parse_claims(reply), passages, embed, settings)
    timings = {"generation_ms": (generated - started) * 1000,
               "verification_ms": (time.perf_counter() - generated) * 1000}
    if any(c.supported for c in checked):
        answer, sentences = _answer(question, checked, generator.name)
        status: DraftStatus = "verified" if all(c.supported or c.refusal for c in checked) else "partly_verified"
        return replace(answer, timings=timings, draft=Draft(generator.name, reply, status, sentences))
    citations: list[Citation] = []
    draft = Draft(generator.name, reply, "refused" if any(c.refusal for c in checked) else "unverified",
                  tuple(_sentence(c, citations) for c in checked))
    if draft.status == "refused":
        return replace(abstention(question, list(hits), mode="llm"), timings=timings, draft=draft)
    if not checked:
        why = "it wrote nothing to check"
    elif all(c.attributed for c in checked):
        why = "it cited no passage, and none of its sentences matches one"
    else:
        why = "none of its sentences is backed by the passage it cites"
    return replace(_noted(extractive(), f"The answer of {generator.name} could not be verified: {why}. This is "
                                        "the extractive answer."), timings=timings, draft=draft)


def _noted(answer: Answer, notice: str) -> Answer:
    """The answer with a notice added before its own (a hedged extractive answer keeps its hedge)."""
    return replace(answer, notice=" ".join(filter(None, (notice, answer.notice))))


def _answer(question: str, checked: Sequence[CheckedClaim], model: str) -> tuple[Answer, tuple[AnswerSentence, ...]]:
    """The record: supported sentences (and refusals, which need no source) make the text;
    unsupported ones are listed after them, flagged with their reasons (the page greys them),
    their citations numbered after the answer's."""
    citations: list[Citation] = []
    backed_first = sorted(range(len(checked)), key=lambda i: not (checked[i].supported or checked[i].refusal))
    made = {i: _sentence(checked[i], citations) for i in backed_first}  # the answer's citations numbered first
    sentences = tuple(made[i] for i in range(len(checked)))
    kept = tuple(s for s in sentences if s.supported)
    text = " ".join(f"{s.text} {''.join(f'[{n}]' for n in s.citations)}".rstrip() for s in kept)
    notices = []
    unsupported = len(sentences) - len(kept)
    if unsupported:
        notices.append(f"{unsupported} of {len(sentences)} sentences of {model}'s answer were not found in the articles: "
                       "they are shown apart and left out of the answer text.")
    if any(c.attributed and c.supported for c in checked):
        notices.append(f"{model} did not cite its sources; each sentence was matched to the passage that backs it.")
    answer = Answer(question=question, answer=text, outcome="answered", mode="llm", sentences=sentences,
                    citations=tuple(citations), notice=" ".join(notices) or None)
    return answer, sentences


def _sentence(checked: CheckedClaim, citations: list[Citation]) -> AnswerSentence:
    numbers = () if checked.refusal else tuple(cite(citations, quote.chunk, quote.start, quote.end) for quote in checked.quotes)
    return AnswerSentence(text=checked.claim.text, citations=numbers, supported=checked.supported or checked.refusal,
                          reason=checked.reason, attributed=checked.attributed)
