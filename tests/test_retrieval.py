"""Hybrid search on the hashing fake: filters, retrievers, fusion, the lexical index."""

import datetime as dt
import json

import numpy as np
import pytest

from rag import Config, HashingEmbedder, Index, QueryError, build_index
from rag.search.fusion import robust_zscore
from rag.storage.layout import current_snapshot_dir

UNDATED = {"003_62729c1e8f798b4f", "004_0ad313e58527b596"}


def open_index(path, **config):
    return Index.open(path, embedder=HashingEmbedder(), config=Config(**config))


def test_article_filter_applies_before_the_cut(fake_index):
    index = open_index(fake_index)
    total = next(a.chunks for a in index.articles() if a.id == "003_62729c1e8f798b4f")
    hits = index.search("defence industry", k=total, articles=["003_62729c1e8f798b4f"])
    assert len(hits) == total and {h.chunk.article_id for h in hits} == {"003_62729c1e8f798b4f"}


@pytest.mark.parametrize("retriever", ["hybrid", "dense", "bm25"])
def test_date_filter_excludes_undated_articles_unless_asked(fake_index, retriever):
    index = open_index(fake_index)
    since = dt.date(2025, 6, 1)
    hits = index.search("defence industry", k=50, date_from=since, retriever=retriever)
    assert hits and all(h.chunk.date and h.chunk.date >= since for h in hits)
    with_undated = index.search("defence industry", k=50, date_from=since, include_undated=True, retriever=retriever)
    assert UNDATED <= {h.chunk.article_id for h in with_undated}
    assert all(h.chunk.date is None or h.chunk.date >= since for h in with_undated)


def test_date_range_bounds_are_inclusive(fake_index):
    day = dt.date(2025, 3, 15)
    hits = open_index(fake_index).search("meeting", k=50, date_from=day, date_to=day)
    assert {h.chunk.article_id for h in hits} == {"002_2158886989b67df7"}


def test_filters_are_checked(fake_index):
    index = open_index(fake_index)
    with pytest.raises(QueryError, match="unknown article id\\(s\\) nope: `rag info` lists the indexed ones"):
        index.search("ships", articles=["nope"])
    with pytest.raises(QueryError, match="the date range is empty: 2026-01-01 is after 2025-01-01"):
        index.search("ships", date_from=dt.date(2026, 1, 1), date_to=dt.date(2025, 1, 1))
    with pytest.raises(QueryError, match="retriever must be one of hybrid, dense, bm25"):
        index.search("ships", retriever="magic")


def test_filter_that_admits_nothing_returns_nothing(fake_index):
    assert open_index(fake_index).search("ships", date_to=dt.date(2000, 1, 1)) == []


def test_bm25_finds_exact_codes_and_folded_names(fake_index):
    index = open_index(fake_index)
    assert index.search("08-NQ/TW", k=1, retriever="bm25")[0].chunk.article_id == "002_2158886989b67df7"
    hits = index.search("Phạm Minh Chính", k=20, retriever="bm25")
    assert {"001_b4864911fd882270", "003_62729c1e8f798b4f"} <= {h.chunk.article_id for h in hits}
    assert index.search("semiconductor chip", k=1, retriever="bm25")[0].chunk.article_id == "003_62729c1e8f798b4f"


def test_bm25_scores_nothing_for_unknown_words(fake_index):
    assert open_index(fake_index).search("zzzz qqqq", k=5, retriever="bm25") == []


def test_hybrid_is_a_fusion_of_both_retrievers(fake_index):
    hits = open_index(fake_index).search("Viettel leaders meet", k=5)
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))
    only_lexical = open_index(fake_index, lexical_weight=1.0).search("08-NQ/TW", k=3)
    bm25 = open_index(fake_index).search("08-NQ/TW", k=3, retriever="bm25")
    assert [h.chunk.chunk_id for h in only_lexical] == [h.chunk.chunk_id for h in bm25]


def test_robust_zscores_keep_a_lone_outlier_far_out_even_when_most_scores_tie():
    everything = np.ones(6, dtype=bool)
    values = np.array([1.0, 1.1, 0.9, 1.0, 1.05, 5.0])
    spread_out = robust_zscore(values, everything)
    plain = (values - values.mean()) / values.std()
    assert spread_out[-1] > 20 and plain[-1] < 2.3  # the outlier widens the plain spread itself
    ties = robust_zscore(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 2.0]), everything)  # MAD 0: mean deviation
    assert ties[-1] > 0 and ties[0] == 0
    assert not robust_zscore(np.zeros(6), everything).any()


def test_manifest_lists_the_lexical_index(fake_index):
    manifest = json.loads((current_snapshot_dir(fake_index) / "manifest.json").read_text())
    assert manifest["lexical"]["formula"] == "BM25 (Lucene)" and manifest["lexical"]["k1"] == 0.9
    assert manifest["counts"]["sentences"] > manifest["counts"]["chunks"]


def test_lexical_index_follows_incremental_updates(fake_index, seeds_copy):
    index = open_index(fake_index)
    (seeds_copy / "005_new.txt").write_text("The xylophone factory in Nghe An opened. It makes xylophones.")
    index.update([seeds_copy])
    assert index.search("xylophone", k=1, retriever="bm25")[0].chunk.article_id == "005_new"
    (seeds_copy / "005_new.txt").unlink()
    index.update([seeds_copy])
    assert index.search("xylophone", k=1, retriever="bm25") == []


def test_a_deeper_search_ranks_its_top_the_same(fake_index):
    index = open_index(fake_index, candidates=10)
    for query in ("defence industry ships", "Hoa Lac meeting", "semiconductor chips Resolution 57"):
        shallow = [hit.chunk.chunk_id for hit in index.search(query, k=2)]
        deep = [hit.chunk.chunk_id for hit in index.search(query, k=20)]
        assert deep[:2] == shallow


def test_retellings_past_the_head_of_the_ranking_all_collapse_into_the_first(tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    story = "Viettel unveiled a new radar system at the defence exhibition in Hanoi this week."
    for number in range(30):  # thirty outlets print the same wire story
        (folder / f"wire-{number:02d}.txt").write_text(f"Radar news {number}\n\n{story}\n", encoding="utf-8")
    for name, text in [("ships", "The shipyard in Hai Phong launched two patrol vessels for the navy."),
                       ("drones", "A factory near Hanoi began building reconnaissance drones for the army.")]:
        (folder / f"{name}.txt").write_text(f"{name.title()} news\n\n{text}\n", encoding="utf-8")
    build_index([folder], tmp_path / "index", embedder=HashingEmbedder())
    hits = open_index(tmp_path / "index").search("Viettel radar system defence exhibition Hanoi", k=3)
    assert len(hits) == 3
    assert hits[0].chunk.article_id.startswith("wire-") and len(hits[0].corroborating) == 29
    assert not any(hit.chunk.article_id.startswith("wire-") for hit in hits[1:])
