"""Properties of the text layer, over generated text: spans slice the input, chunks cover
every sentence, normalisation is stable. Derandomized: every run tries the same examples."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag import Config, HashingEmbedder
from rag.text.articles import parse_article
from rag.text.chunking import split_article
from rag.text.normalize import fold, terms
from rag.text.sentences import split_sentences

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

PIECES = st.sampled_from(["Lt. Gen. Ho", "No. 08-NQ/TW", "3.5 per cent", "U.S.", "“Yes,” he said.", "!", "?",
                          "。", "\n", "\n\n", "  ", ". ", "Phạm Minh Chính", "the ship", "Hà Nội", "…", "\t"])
PROSE = st.lists(st.one_of(PIECES, st.text(alphabet="abc XYZ.,!?\n", max_size=30),
                           st.characters(exclude_categories=["Cs"])), max_size=80).map("".join)


@PROPERTY
@given(text=PROSE, start=st.integers(min_value=0, max_value=40))
def test_sentence_spans_slice_the_text_in_order_and_cover_every_word(text: str, start: int) -> None:
    start = min(start, len(text))
    spans = split_sentences(text, start)
    previous_end = start
    for span_start, span_end in spans:
        assert previous_end <= span_start < span_end <= len(text)
        assert text[span_start:span_end] == text[span_start:span_end].strip()  # trimmed, never empty
        assert not text[previous_end:span_start].strip()  # only whitespace falls between sentences
        previous_end = span_end
    assert not text[previous_end:].strip()


@PROPERTY
@given(body=PROSE.filter(lambda text: text.strip()), chunk_tokens=st.integers(min_value=16, max_value=64),
       overlap=st.integers(min_value=0, max_value=2))
def test_chunks_slice_the_article_and_hold_every_sentence(body: str, chunk_tokens: int, overlap: int) -> None:
    article = parse_article("Ships and plants\n\n" + body, "a", Path("a.txt"), "hash")
    embedder = HashingEmbedder(max_tokens=128)
    split = split_article(article, embedder.count_tokens, embedder.max_tokens,
                          Config(chunk_tokens=chunk_tokens, overlap_sentences=overlap))
    for chunk, members in zip(split.chunks, split.chunk_sentences, strict=True):
        assert article.text[chunk.start:chunk.end] == chunk.text
        assert (chunk.start, chunk.end) == (split.sentences[members[0]][0], split.sentences[members[-1]][1])
        assert members == list(range(members[0], members[-1] + 1))
    held = sorted({member for members in split.chunk_sentences for member in members})
    assert held == list(range(len(split.sentences)))
    for sentence_start, sentence_end in split.sentences:
        assert article.body_start <= sentence_start < sentence_end <= len(article.text)


@PROPERTY
@given(text=PROSE)
def test_folding_is_idempotent_and_terms_do_not_depend_on_case_or_accents(text: str) -> None:
    assert fold(fold(text)) == fold(text)
    assert terms(fold(text)) == terms(text)
