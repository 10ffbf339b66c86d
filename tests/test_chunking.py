import pytest
from conftest import SEEDS, with_heading

from rag import Config, HashingEmbedder, TransformerEmbedder, load_articles
from rag.text.chunking import split_article
from rag.text.sentences import split_sentences

ARTICLES = load_articles([SEEDS], Config()).articles


def chunk_article(*args):
    return split_article(*args).chunks


@pytest.fixture(scope="module")
def tokenizer_embedder():
    return TransformerEmbedder()  # only its tokenizer is used here: no model load


@pytest.mark.parametrize("article", ARTICLES, ids=lambda a: a.id)
@pytest.mark.parametrize("config", [Config(), Config(chunk_tokens=48, overlap_sentences=0), Config(chunk_tokens=64, overlap_sentences=2)])
def test_chunks_slice_the_file_and_cover_every_sentence(article, config, tokenizer_embedder):
    chunks = chunk_article(article, tokenizer_embedder.count_tokens, tokenizer_embedder.max_tokens, config)
    assert chunks
    for chunk in chunks:
        assert article.text[chunk.start : chunk.end] == chunk.text
        assert chunk.article_id == article.id and chunk.title == article.title and chunk.date == article.date
        assert chunk.start >= article.body_start
    covered = [False] * len(article.text)
    for chunk in chunks:
        covered[chunk.start : chunk.end] = [True] * (chunk.end - chunk.start)
    for start, end in split_sentences(article.text, article.body_start):
        # a sentence over the budget is cut at words: the spaces between its pieces may fall outside
        assert all(covered[i] for i in range(start, end) if not article.text[i].isspace())


@pytest.mark.parametrize("article", ARTICLES, ids=lambda a: a.id)
def test_no_chunk_exceeds_what_the_model_reads(article, tokenizer_embedder):
    config = Config(chunk_tokens=4096)  # ask for more than the model can take
    chunks = chunk_article(article, tokenizer_embedder.count_tokens, tokenizer_embedder.max_tokens, config)
    for chunk in chunks:
        assert tokenizer_embedder.count_tokens([with_heading(chunk)])[0] + 2 <= tokenizer_embedder.max_tokens


def test_chunks_respect_the_target_and_overlap_by_whole_sentences(tokenizer_embedder):
    article = ARTICLES[4]
    chunks = chunk_article(article, tokenizer_embedder.count_tokens, 256, Config(chunk_tokens=120, overlap_sentences=1))
    assert len(chunks) > 3
    assert all(tokenizer_embedder.count_tokens([c.text])[0] <= 120 for c in chunks)
    sentence_spans = split_sentences(article.text, article.body_start)
    starts = {s for s, _ in sentence_spans}
    ends = {e for _, e in sentence_spans}
    for previous, chunk in zip(chunks, chunks[1:], strict=False):
        assert chunk.start in starts and chunk.end in ends
        assert chunk.start < previous.end  # one shared sentence
        assert article.text[chunk.start : previous.end] in previous.text


def test_a_sentence_longer_than_the_budget_is_cut_at_words(tmp_path):
    embedder = HashingEmbedder(max_tokens=40)
    (tmp_path / "long.txt").write_text("Short title\n" + " ".join(f"word{i}" for i in range(200)) + ".")
    article = load_articles([tmp_path], Config()).articles[0]
    chunks = chunk_article(article, embedder.count_tokens, embedder.max_tokens, Config(overlap_sentences=0))
    assert len(chunks) > 5
    assert all(embedder.count_tokens([with_heading(c)])[0] + 2 <= 40 for c in chunks)
    assert " ".join(c.text for c in chunks) == article.body


def test_chunk_ids_are_stable_and_distinct(tokenizer_embedder):
    first = chunk_article(ARTICLES[0], tokenizer_embedder.count_tokens, 256, Config())
    again = chunk_article(ARTICLES[0], tokenizer_embedder.count_tokens, 256, Config())
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    assert len({c.chunk_id for c in first}) == len(first)


def test_each_sentence_is_listed_once_and_chunks_are_made_of_them(tokenizer_embedder):
    article = ARTICLES[2]
    split = split_article(article, tokenizer_embedder.count_tokens, 256, Config(chunk_tokens=100, overlap_sentences=1))
    assert len(set(split.sentences)) == len(split.sentences)
    for chunk, members in zip(split.chunks, split.chunk_sentences, strict=True):
        assert split.sentences[members[0]][0] == chunk.start and split.sentences[members[-1]][1] == chunk.end
