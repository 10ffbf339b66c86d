"""The BEIR harness end to end on a 300-document SciFact slice (the full set is run by hand)."""

import gzip
import json
import math
import shutil

import pytest
from conftest import DATA

from rag import Config, HashingEmbedder, RagError
from rag.eval.beir import cached_index, evaluate_beir, load_corpus

SLICE = DATA / "scifact_slice"


def test_corpus_documents_become_articles_with_title_and_body():
    articles = load_corpus(SLICE / "corpus.jsonl")
    assert len(articles) == 300
    first = json.loads((SLICE / "corpus.jsonl").read_text().splitlines()[0])
    article = next(a for a in articles if a.id == first["_id"])
    assert article.title == " ".join(first["title"].split())
    assert article.body == first["text"].strip()


def test_gzipped_corpus_reads_the_same(tmp_path):
    dataset = tmp_path / "gz"
    shutil.copytree(SLICE, dataset)
    corpus = dataset / "corpus.jsonl"
    with gzip.open(dataset / "corpus.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.write(corpus.read_text())
    corpus.unlink()
    assert [a.id for a in load_corpus(dataset / "corpus.jsonl.gz")] == [a.id for a in load_corpus(SLICE / "corpus.jsonl")]


def test_index_is_built_once_and_reused(tmp_path):
    embedder = HashingEmbedder()
    first = cached_index(SLICE, tmp_path, embedder, config=Config())
    folders = list(tmp_path.iterdir())
    second = cached_index(SLICE, tmp_path, embedder, config=Config())
    assert list(tmp_path.iterdir()) == folders and len(folders) == 1
    assert first.stats().updated_at == second.stats().updated_at


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(RagError, match="no relevance judgements at .*qrels/test.tsv"):
        evaluate_beir(SLICE, "test", tmp_path, HashingEmbedder())


@pytest.mark.model
def test_scifact_slice_figures(tmp_path, real_embedder):
    results = evaluate_beir(SLICE, "train", tmp_path, real_embedder)
    assert results["queries"] == 60 and set(results["runs"]) == {"bm25", "dense", "hybrid"}
    for run in results["runs"].values():
        assert set(run) == {"ndcg@10", "recall@100", "mrr@10", "p50_ms", "p95_ms"}
        assert 0.0 <= run["ndcg@10"] <= 1.0 and run["p95_ms"] >= run["p50_ms"] > 0
    runs = results["runs"]
    assert runs["hybrid"]["ndcg@10"] > 0.6
    assert runs["hybrid"]["ndcg@10"] >= max(runs["bm25"]["ndcg@10"], runs["dense"]["ndcg@10"]) - 0.02


def test_scores_agree_with_a_hand_computed_example():
    from rag.eval.beir import score_run

    qrels = {"q1": {"d1": 1, "d2": 1}, "q2": {"d9": 1}}
    run = {"q1": {"d3": 3.0, "d1": 2.0, "d2": 1.0}, "q2": {}}
    scores = score_run(qrels, {"q1": "first", "q2": "second"}, run)
    ideal = 1 + 1 / math.log2(3)
    assert scores["ndcg@10"] == pytest.approx(((1 / math.log2(3) + 1 / math.log2(4)) / ideal) / 2)
    assert scores["recall@100"] == pytest.approx(0.5)  # q2 retrieved nothing and counts as 0
    assert scores["mrr@10"] == pytest.approx(0.25)


def _write_dataset(folder, documents, queries, judgements, header=True):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n"
                                                 for i, t in documents.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries.items()))
    lines = ["query-id\tcorpus-id\tscore"] if header else []
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines + [f"{q}\t{d}\t1" for q, d in judgements]) + "\n")


def test_benchmark_queries_are_scored_as_beir_scores_them(tmp_path):
    """A query longer than a typed question may be, an empty one, and a query that is itself a
    document of the corpus (as in ArguAna): the run finishes, the query's own document is not
    retrieved for it, and the empty query counts as 0."""
    documents = {
        "a1": "Nuclear power is a clean source of energy and lowers emissions.",
        "a2": "Nuclear power plants produce waste that stays dangerous for thousands of years.",
        "a3": "School uniforms reduce bullying among pupils.",
    }
    long_query = "Nuclear power plants produce waste. " + "Storage of spent fuel is costly and risky. " * 80
    assert len(long_query) > Config().max_query_chars
    queries = {"a1": documents["a1"], "long": long_query, "empty": " "}
    _write_dataset(tmp_path / "set", documents, queries, [("a1", "a2"), ("long", "a2"), ("empty", "a3")])
    results = evaluate_beir(tmp_path / "set", "test", tmp_path / "cache", HashingEmbedder())
    assert results["queries"] == 3
    for run in results["runs"].values():
        assert 0.0 < run["ndcg@10"] <= 2 / 3  # the empty query scores 0 and pulls the mean down

    from rag.eval.beir import cached_index, run_queries
    index = cached_index(tmp_path / "set", tmp_path / "cache", HashingEmbedder(), Config())
    run, _ = run_queries(index, {"a1": documents["a1"], "empty": ""}, "hybrid")
    assert "a1" not in run["a1"] and next(iter(run["a1"])) == "a2"
    assert run["empty"] == {}


def test_judgements_without_a_header_line_are_all_read(tmp_path):
    from rag.eval.beir import load_qrels

    _write_dataset(tmp_path / "set", {"d1": "text"}, {"q1": "text", "q2": "more"}, [("q1", "d1"), ("q2", "d1")],
                   header=False)
    assert load_qrels(tmp_path / "set", "test") == {"q1": {"d1": 1}, "q2": {"d1": 1}}
