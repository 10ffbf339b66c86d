"""Sentence-aware chunks sized in the embedding model's own tokens.

A chunk is a run of whole sentences, overlapping its neighbour by `overlap_sentences`. The
article's heading is embedded with every chunk, so the budget for the chunk text is what the
model reads minus its special tokens and the heading. A sentence longer than the budget is
cut at word boundaries: silently truncated text could never be found.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rag.config import Config
from rag.records import Article, Chunk
from rag.text.sentences import split_sentences

TokenCounter = Callable[[Sequence[str]], list[int]]

_SPECIAL_TOKENS = 2  # [CLS] and [SEP]


@dataclass(frozen=True)
class ChunkedArticle:
    """An article's chunks and its sentences (over-long ones cut into pieces) as spans;
    `chunk_sentences[i]` lists the indices of the sentences chunk i is made of."""

    chunks: list[Chunk]
    sentences: list[tuple[int, int]]
    chunk_sentences: list[list[int]]


def split_article(article: Article, count_tokens: TokenCounter, max_tokens: int, config: Config) -> ChunkedArticle:
    """Cut an article's body into chunks of whole sentences; every body sentence lies in at
    least one chunk, and is listed once however many chunks hold it."""
    heading_tokens = count_tokens([article.heading + "\n"])[0]
    budget = min(config.chunk_tokens, max_tokens - _SPECIAL_TOKENS - heading_tokens)
    if budget < 8:
        budget = max_tokens - _SPECIAL_TOKENS - 8  # a pathological heading is cut by the model instead
    pieces = _pieces(article.text, split_sentences(article.text, article.body_start), count_tokens, budget)
    groups = _group(pieces, budget, config.overlap_sentences)
    chunks = []
    for group in groups:
        start, end = pieces[group[0]][0], pieces[group[-1]][1]
        chunks.append(
            Chunk(
                chunk_id=_chunk_id(article.content_hash, start, end),
                article_id=article.id,
                start=start,
                end=end,
                text=article.text[start:end],
                title=article.title,
                heading=article.heading,
                date=article.date,
            )
        )
    return ChunkedArticle(chunks=chunks, sentences=[(start, end) for start, end, _ in pieces],
                          chunk_sentences=groups)


def _pieces(
    text: str, spans: list[tuple[int, int]], count_tokens: TokenCounter, budget: int
) -> list[tuple[int, int, int]]:
    """(start, end, tokens) for each sentence; over-long sentences become several pieces."""
    counts = count_tokens([text[start:end] for start, end in spans])
    pieces = []
    for (start, end), tokens in zip(spans, counts, strict=True):
        if tokens <= budget:
            pieces.append((start, end, tokens))
        else:
            pieces.extend(_split_long(text, start, end, count_tokens, budget))
    return pieces


def _split_long(
    text: str, start: int, end: int, count_tokens: TokenCounter, budget: int
) -> list[tuple[int, int, int]]:
    """Cut a sentence at word boundaries (a word over the budget, at every `budget` characters:
    a word piece covers at least one character)."""
    words = []
    for match in re.finditer(r"\S+", text[start:end]):
        for offset in range(match.start(), match.end(), budget):
            words.append((start + offset, start + min(offset + budget, match.end())))
    word_tokens = count_tokens([text[s:e] for s, e in words])
    pieces: list[tuple[int, int, int]] = []
    for (word_start, word_end), tokens in zip(words, word_tokens, strict=True):
        if pieces and pieces[-1][2] + tokens <= budget:
            pieces[-1] = (pieces[-1][0], word_end, pieces[-1][2] + tokens)
        else:
            pieces.append((word_start, word_end, tokens))
    return pieces


def _group(pieces: list[tuple[int, int, int]], budget: int, overlap: int) -> list[list[int]]:
    """Greedily pack consecutive pieces up to the budget; each group repeats up to `overlap`
    trailing pieces of the previous one when they fit."""
    groups: list[list[int]] = []
    index = 0
    while index < len(pieces):
        group: list[int] = []
        tokens = 0
        if groups:
            carried = groups[-1][-overlap:] if overlap else []
            carried = [i for i in carried if i < index]
            # keep as many carried pieces as fit beside the next new piece
            while carried and sum(pieces[i][2] for i in carried) + pieces[index][2] > budget:
                carried = carried[1:]
            group = list(carried)
            tokens = sum(pieces[i][2] for i in carried)
        while index < len(pieces) and (not group or tokens + pieces[index][2] <= budget):
            group.append(index)
            tokens += pieces[index][2]
            index += 1
        groups.append(group)
    return groups


def _chunk_id(content_hash: str, start: int, end: int) -> str:
    return hashlib.sha256(f"{content_hash}:{start}:{end}".encode()).hexdigest()[:16]
