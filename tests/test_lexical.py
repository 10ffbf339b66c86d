"""BM25 in segments: scores equal the bm25s library's, whatever the updates and compactions."""

import bm25s
import numpy as np
import pytest
from conftest import SEEDS

from rag import HashingEmbedder
from rag.config import Config
from rag.search.typos import TYPO_WEIGHT, correct_typos
from rag.storage.lexical import LexicalIndex, lexical_text
from rag.text.articles import load_articles
from rag.text.chunking import split_article
from rag.text.normalize import terms

QUERIES = [terms("defence industry"), terms("08-NQ/TW"), terms("Phạm Minh Chính semiconductor"),
           terms("ships ships 140"), terms("xylophone"), []]


@pytest.fixture(scope="module")
def chunks():
    embedder, config = HashingEmbedder(), Config()
    articles = load_articles([SEEDS], config).articles
    return [chunk for article in articles
            for chunk in split_article(article, embedder.count_tokens, embedder.max_tokens, config).chunks]


def reference_scores(chunks, query):
    """What bm25s, the library this formula is checked against, gives."""
    model = bm25s.BM25(**LexicalIndex.PARAMS)
    vocab: dict[str, int] = {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in terms(lexical_text(chunk))] for chunk in chunks]
    model.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
    known = [t for t in query if t in vocab]
    return np.asarray(model.get_scores(known), dtype=np.float32) if known else np.zeros(len(chunks), dtype=np.float32)


@pytest.mark.parametrize("query", QUERIES)
def test_scores_equal_the_bm25s_library(chunks, query):
    ours = LexicalIndex.build(chunks).scores(query)
    np.testing.assert_allclose(ours, reference_scores(chunks, query), rtol=1e-5, atol=1e-6)
    assert len(ours) == len(chunks)


@pytest.mark.parametrize("query", QUERIES)
def test_appended_segments_and_removals_score_like_a_fresh_build(chunks, query):
    first, second, third = chunks[:10], chunks[10:18], chunks[18:]
    index = LexicalIndex.build(first).appended(np.array([], dtype=np.int64), second)
    index = index.appended(np.array([2, 11]), third)  # positions count through every segment
    live = [c for position, c in enumerate(chunks) if position not in (2, 11)]
    assert index.size == len(live) and len(index.segments) == 3
    expected = reference_scores(live, query)
    np.testing.assert_allclose(index.scores(query), expected, rtol=1e-5, atol=1e-6)
    compacted = index.compacted()
    assert len(compacted.segments) == 1 and compacted.size == len(live)
    np.testing.assert_allclose(compacted.scores(query), expected, rtol=1e-5, atol=1e-6)


def test_a_term_only_removed_chunks_held_is_unknown(chunks):
    new = chunks[0].__class__(**{**chunks[0].__dict__, "text": "The xylophone factory opened.", "heading": "X"})
    index = LexicalIndex.build(chunks).appended(np.array([], dtype=np.int64), [new])
    assert index.knows("xylophon")
    index = index.appended(np.array([len(chunks)]), [])
    assert not index.knows("xylophon") and index.scores(["xylophon"]).max() == 0
    assert index.idf(["xylophon"])[0] == index.idf(["never-seen"])[0]


def test_a_mask_zeroes_the_chunks_it_leaves_out(chunks):
    index = LexicalIndex.build(chunks)
    mask = np.zeros(len(chunks), dtype=bool)
    mask[:5] = True
    scores = index.scores(terms("defence"), mask=mask)
    assert scores[5:].max() == 0 and scores[:5].max() > 0


def test_a_word_the_index_does_not_know_is_read_as_the_known_terms_nearest_in_edits(chunks):
    index = LexicalIndex.build(chunks)
    query = correct_typos(terms("Who chaird the meting at Hoa Lack manufacturng"), index)
    assert query.corrections == {"chaird": ("chair",), "mete": ("meet",), "lack": ("lac",),
                                 "manufacturng": ("manufactur",)}
    assert query.weights[-4:] == (TYPO_WEIGHT,) * 4 and set(query.weights[:-4]) == {1.0}


@pytest.mark.parametrize("text", ["defence industry", "zzzz qqqq", "xyz", "ships 140", "Phạm Minh Chính"])
def test_known_words_short_words_and_words_far_from_any_term_are_left_alone(chunks, text):
    query = correct_typos(terms(text), LexicalIndex.build(chunks))
    assert query.corrections == {} and query.terms == tuple(terms(text))


def test_a_misspelt_query_scores_the_passages_its_correction_holds_at_the_typo_weight(chunks):
    index = LexicalIndex.build(chunks)
    query = correct_typos(terms("shipps"), index)
    misspelt, right = index.scores(query.terms, query.weights), index.scores(terms("ships"))
    assert right.max() > 0
    np.testing.assert_allclose(misspelt, TYPO_WEIGHT * right, rtol=1e-5)
