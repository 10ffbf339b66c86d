"""The contract every store keeps: the same test functions against an index folder and Milvus.

Milvus runs as milvus-lite here; the tests assert ids, ranks, offsets and messages, never raw
BM25 scores or their sign, so that they hold on a cluster too (RAG_TEST_MILVUS_URI points
them at one). Each Milvus store is let go in teardown, as milvus-lite lets one process open a file.
"""

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA, SEEDS, coverage_answerability, invoke_cli

from rag import Config, HashingEmbedder, Index, build_index
from rag.errors import IndexBusyError, IndexMismatchError, IndexNotFoundError, RagError
from rag.eval.beir import load_corpus, load_qrels, load_queries, score_run
from rag.ingest.export import export_index
from rag.ingest.update import index_articles
from rag.records import SearchFilter
from rag.storage.milvus import MilvusSettings, MilvusStore

BACKENDS = ("folder", "milvus")


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's index lives: a folder, or a fresh Milvus store."""
    if request.param == "folder":
        return str(tmp_path / "index")
    cluster = os.environ.get("RAG_TEST_MILVUS_URI")
    if cluster:  # a cluster: a collection prefix of the test's own, dropped afterwards
        os.environ["RAG_MILVUS_PREFIX"] = f"t{abs(hash(request.node.nodeid)) % 10**8}"
        request.addfinalizer(lambda: _drop(cluster))
        return cluster
    return f"milvus-lite:{tmp_path / 'milvus.db'}"


def _drop(uri: str) -> None:
    connected = MilvusStore.connect(MilvusSettings.from_uri(uri))
    connected.drop()
    connected.close()
    os.environ.pop("RAG_MILVUS_PREFIX", None)


def _open(store: str, embedder=None) -> Index:
    index = Index.open(store, embedder=embedder or HashingEmbedder())
    index.answerability = coverage_answerability()
    return index


class _Opened:
    """An index opened for one test and let go at its end."""

    def __init__(self) -> None:
        self.indexes: list[Index] = []

    def __call__(self, store: str, embedder=None) -> Index:
        self.indexes.append(_open(store, embedder))
        return self.indexes[-1]


@pytest.fixture
def opened():
    keeper = _Opened()
    yield keeper
    for index in keeper.indexes:
        index.close()


def _ids(hits) -> list[tuple[str, int]]:
    return [(hit.chunk.article_id, hit.chunk.start) for hit in hits]


def test_an_index_is_built_searched_and_answered_with_exact_offsets(store, seeds_copy, opened):
    report = build_index([seeds_copy], store, embedder=HashingEmbedder())
    assert len(report.added) == 5 and not report.failed
    index = opened(store)
    assert index.stats().articles == 5 and index.stats().chunks == report.chunks_embedded
    hits = index.search("How many ships has the defence industry built?", k=5)
    assert len(hits) == 5 and [hit.rank for hit in hits] == [1, 2, 3, 4, 5]
    answer = index.ask("Who chaired the meeting at Hoa Lac High-Tech Park?")
    assert answer.outcome != "not_found" and answer.citations
    for citation in answer.citations:
        text = (seeds_copy / f"{citation.article_id}.txt").read_text(encoding="utf-8")
        assert text[citation.start:citation.end] == citation.quote


def test_both_stores_rank_and_answer_alike(tmp_path, seeds_copy, opened):
    """The same articles give the same hits, answers and citations whichever store holds them."""
    folder, milvus = str(tmp_path / "index"), f"milvus-lite:{tmp_path / 'm.db'}"
    for store in (folder, milvus):
        build_index([seeds_copy], store, embedder=HashingEmbedder())
    local, remote = opened(folder), opened(milvus)
    questions = [json.loads(line)["question"] for line in (DATA / "qa_set.jsonl").read_text().splitlines()[:40]]
    for question in questions:
        assert _ids(local.search(question, k=10)) == _ids(remote.search(question, k=10)), question
        mine, theirs = local.ask(question), remote.ask(question)
        assert (mine.outcome, mine.answer, mine.citations) == (theirs.outcome, theirs.answer, theirs.citations)


def test_filters_apply_inside_the_search(store, seeds_copy, opened):
    build_index([seeds_copy], store, embedder=HashingEmbedder())
    index = opened(store)
    query = "defence industry ships"
    only = index.search(query, k=10, articles=["002_2158886989b67df7"])
    assert only and {hit.chunk.article_id for hit in only} == {"002_2158886989b67df7"}
    dated = index.search(query, k=30, date_from=dt.date(2025, 1, 1), date_to=dt.date(2025, 12, 31))
    assert dated and all(hit.chunk.date and hit.chunk.date.year == 2025 for hit in dated)
    with_undated = index.search(query, k=30, date_from=dt.date(2025, 1, 1), date_to=dt.date(2025, 12, 31),
                                include_undated=True)
    assert any(hit.chunk.date is None for hit in with_undated)
    assert index.search(query, k=5, date_from=dt.date(1990, 1, 1), date_to=dt.date(1990, 12, 31)) == []


def test_updates_embed_only_what_changed_and_remove_what_is_gone(store, seeds_copy, opened):
    build_index([seeds_copy], store, embedder=HashingEmbedder())
    again = build_index([seeds_copy], store, embedder=HashingEmbedder())
    assert len(again.unchanged) == 5 and again.chunks_embedded == 0

    new = seeds_copy / "100_patrol_boats.txt"
    new.write_text("Shipyard delivers patrol boats\n\nThe Z189 shipyard handed over four patrol boats to the "
                   "fisheries surveillance force in Hai Phong.\n", encoding="utf-8")
    added = build_index([seeds_copy], store, embedder=HashingEmbedder())
    assert added.added == ["100_patrol_boats"] and len(added.unchanged) == 5

    changed = seeds_copy / "003_62729c1e8f798b4f.txt"
    changed.write_text(changed.read_text(encoding="utf-8") + "\nThe meeting ended at six o'clock.\n", encoding="utf-8")
    (seeds_copy / "001_b4864911fd882270.txt").unlink()
    report = build_index([seeds_copy], store, embedder=HashingEmbedder())
    assert (report.updated, report.removed, len(report.unchanged)) == (
        ["003_62729c1e8f798b4f"], ["001_b4864911fd882270"], 4)

    index = opened(store)
    assert {article.id for article in index.articles()} == {
        "000_74a00811c9a9f887", "002_2158886989b67df7", "003_62729c1e8f798b4f", "004_0ad313e58527b596",
        "100_patrol_boats"}
    assert index.search("patrol boats handed over to the fisheries surveillance force", k=1)[0].chunk.article_id \
        == "100_patrol_boats"
    assert all(hit.chunk.article_id != "001_b4864911fd882270" for hit in index.search("working session", k=30))
    assert any("six o'clock" in hit.chunk.text for hit in index.search("When did the meeting end?", k=30))
    assert index.stats().chunks == sum(article.chunks for article in index.articles())


def test_an_index_built_with_another_model_is_refused(store, seeds_copy):
    build_index([seeds_copy], store, embedder=HashingEmbedder())

    narrower = HashingEmbedder(dim=32)
    with pytest.raises(IndexMismatchError, match="was built with model hashing-fake-64"):
        Index.open(store, embedder=narrower)
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        build_index([seeds_copy], store, embedder=narrower)


def test_a_second_writer_waits_then_gets_a_clear_error(store, seeds_copy, opened):
    build_index([seeds_copy], store, embedder=HashingEmbedder())
    if store.startswith("milvus-lite:"):  # one process per file: the lock row is what a cluster's writers meet
        index = opened(store)
        connected = index.snapshot.store
        with connected.write_lock(1.0), pytest.raises(IndexBusyError, match="another process is updating the index"):
            with connected.write_lock(0.5):
                pass
        return
    from rag.ingest.update import write_lock

    with write_lock(Path(store), 1.0), pytest.raises(IndexBusyError, match="another process is updating the index"):
        build_index([seeds_copy], store, embedder=HashingEmbedder(), lock_timeout=0.5)


@pytest.mark.model  # the other process loads the packaged model before it opens the store
def test_a_milvus_lite_file_open_in_another_process_is_refused_clearly(tmp_path, seeds_copy, opened):
    store = f"milvus-lite:{tmp_path / 'm.db'}"
    build_index([seeds_copy], store, embedder=HashingEmbedder())
    opened(store)
    other = subprocess.run([sys.executable, "-m", "rag.cli", "info", "--store", store], capture_output=True, text=True,
                           timeout=120, check=False)
    assert other.returncode == 1
    assert "is open in another process" in other.stderr and "Traceback" not in other.stderr


def test_a_rebuild_starts_over_even_for_another_model(store, seeds_copy, opened):
    build_index([seeds_copy], store, embedder=HashingEmbedder())
    narrower = HashingEmbedder(dim=32)
    report = build_index([seeds_copy], store, embedder=narrower, rebuild=True)
    assert len(report.added) == 5
    index = opened(store, narrower)
    assert index.stats().dim == 32 and index.stats().articles == 5
    assert index.search("defence industry ships", k=3)


def test_a_served_index_sees_updates_another_writer_made(store, seeds_copy, opened):
    """A server holds its index open while `rag index` runs elsewhere: refresh() serves what
    the other writer committed, including the new rows of a changed article."""
    build_index([seeds_copy], store, embedder=HashingEmbedder())
    served = opened(store)
    assert served.refresh() is False
    (seeds_copy / "100_patrol_boats.txt").write_text(
        "Shipyard delivers patrol boats\n\nThe Z189 shipyard handed over four patrol boats to the fisheries "
        "surveillance force in Hai Phong.\n", encoding="utf-8")
    changed = seeds_copy / "003_62729c1e8f798b4f.txt"
    changed.write_text(changed.read_text(encoding="utf-8") + "\nThe meeting ended at six o'clock.\n", encoding="utf-8")
    if store.startswith("milvus-lite:"):  # one process per file: the other writer shares the connection
        from rag.ingest.milvus_update import update_milvus

        update_milvus([seeds_copy], served.snapshot.store.settings, HashingEmbedder(), Config(),
                      store=served.snapshot.store)
    else:
        build_index([seeds_copy], store, embedder=HashingEmbedder())
    assert served.refresh() is True and served.refresh() is False
    assert served.stats().articles == 6
    assert served.search("patrol boats for the fisheries surveillance force", k=1)[0].chunk.article_id == \
        "100_patrol_boats"
    assert any("six o'clock" in hit.chunk.text for hit in served.search("When did the meeting end?", k=30))



def test_a_served_index_sees_a_rebuild_another_writer_made(store, seeds_copy, opened):
    """A rebuild starts Milvus's generations again, so it may commit the very generation a
    server holds: the server still sees that the index changed."""
    build_index([seeds_copy], store, embedder=HashingEmbedder())
    served = opened(store)
    (seeds_copy / "001_b4864911fd882270.txt").unlink()
    if store.startswith("milvus-lite:"):  # one process per file: the other writer shares the connection
        from rag.ingest.milvus_update import update_milvus

        update_milvus([seeds_copy], served.snapshot.store.settings, HashingEmbedder(), Config(), rebuild=True,
                      store=served.snapshot.store)
    else:
        build_index([seeds_copy], store, embedder=HashingEmbedder(), rebuild=True)
    assert served.refresh() is True and served.stats().articles == 4
    assert all(hit.chunk.article_id != "001_b4864911fd882270" for hit in served.search("working session", k=30))
    assert served.ask("Who chaired the meeting at Hoa Lac?").citations


def test_a_missing_source_folder_removes_nothing_and_stops_a_rebuild(store, seeds_copy, tmp_path, opened):
    build_index([seeds_copy], store, embedder=HashingEmbedder())
    missing = tmp_path / "unmounted"
    report = build_index([seeds_copy, missing], store, embedder=HashingEmbedder())
    assert report.removed == [] and len(report.unchanged) == 5 and "no such file or folder" in report.failed[0]
    seeds_copy.rename(tmp_path / "moved")
    assert build_index([seeds_copy], store, embedder=HashingEmbedder()).removed == []
    with pytest.raises(RagError, match="cannot rebuild the index: .*The index is unchanged"):
        build_index([seeds_copy], store, embedder=HashingEmbedder(), rebuild=True)
    assert opened(store).stats().articles == 5


def test_milvus_reads_more_rows_than_its_cache_holds(tmp_path, seeds_copy, opened, monkeypatch):
    """A deep search needs more sentence vectors than the bounded cache keeps: the rows fetched
    for one call are all returned, not evicted by each other before they are read."""
    store = f"milvus-lite:{tmp_path / 'm.db'}"
    build_index([seeds_copy], store, embedder=HashingEmbedder())
    reader = opened(store).snapshot
    for cache in (reader._sentences, reader._chunks, reader._articles):
        cache.size = 2
    sentence_ids = np.array([s for s, _ in reader.article_sentences("003_62729c1e8f798b4f")])
    chunk_ids = reader.dense_chunks(np.ones(reader.dim, dtype=np.float32) / reader.dim ** 0.5, 10, SearchFilter())
    assert reader.sentence_vectors_of(sentence_ids).shape == (len(sentence_ids), reader.dim) and len(sentence_ids) > 2
    assert len(reader.article_vectors_of(chunk_ids)) == len(chunk_ids) > 2
    assert len(reader._sentences) == 2


@pytest.mark.parametrize("location, message", [
    ("milvus-lite:", "names no file"),
    ("http://127.0.0.1:9", "cannot reach Milvus at http://127.0.0.1:9"),
])
def test_a_bad_store_is_refused_clearly(location, message):
    with pytest.raises(RagError, match=message):
        Index.open(location, embedder=HashingEmbedder())


def test_a_missing_index_says_how_to_build_it(store):
    with pytest.raises(IndexNotFoundError, match="rag index"):
        Index.open(store, embedder=HashingEmbedder())


def test_the_cli_takes_a_store_uri(tmp_path, seeds_copy):
    store = f"milvus-lite:{tmp_path / 'cli.db'}"
    built = invoke_cli(["index", str(seeds_copy), "--store", store])
    assert built.exit_code == 0, built.output
    asked = invoke_cli(["ask", "How many ships has the defence industry built?", "--store", store, "--json"])
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.output)["citations"]
    checked = invoke_cli(["check", "--store", store])
    assert checked.exit_code == 0 and "sound" in checked.output


def test_a_half_finished_milvus_update_is_hidden_then_finished(tmp_path, seeds_copy, opened):
    """An update that stopped after deleting an article's old rows: readers leave that article
    out rather than serve it half gone, and the next run re-embeds it and commits."""
    store = f"milvus-lite:{tmp_path / 'm.db'}"
    build_index([seeds_copy], store, embedder=HashingEmbedder())
    index = opened(store)
    connected = index.snapshot.store
    meta = connected.meta()
    meta.update(state="writing", pending=["002_2158886989b67df7"])
    connected.put_meta("index", meta)
    connected.client.delete(connected.name("chunks"), filter='article_id == "002_2158886989b67df7" and id < 12')
    connected.flush()
    index.close()

    reader = opened(store)
    assert "002_2158886989b67df7" not in {article.id for article in reader.articles()}
    assert all(hit.chunk.article_id != "002_2158886989b67df7" for hit in reader.search("defence industry", k=30))
    checked = invoke_cli(["check", "--store", store])
    assert checked.exit_code == 1 and "stopped half-way" in checked.output
    reader.close()
    opened.indexes.clear()

    report = build_index([seeds_copy], store, embedder=HashingEmbedder())
    assert report.added == ["002_2158886989b67df7"]
    finished = opened(store)
    assert len(finished.articles()) == 5
    assert invoke_cli(["check", "--store", store]).exit_code == 0


def test_export_copies_an_index_both_ways_without_encoding(tmp_path, seeds_copy, opened):
    folder, milvus, back = tmp_path / "index", f"milvus-lite:{tmp_path / 'm.db'}", tmp_path / "back"
    build_index([seeds_copy], folder, embedder=HashingEmbedder())
    assert export_index(folder, milvus).chunks == _open(folder).stats().chunks
    with pytest.raises(RagError, match="already holds an index: pass --replace"):
        export_index(folder, milvus)
    export_index(milvus, back)
    original, copy = _open(folder), _open(back)
    assert original.snapshot.chunk_ids.tolist() == copy.snapshot.chunk_ids.tolist()
    assert np.array_equal(original.snapshot.chunk_vectors.vectors_of(original.snapshot.chunk_ids),
                          copy.snapshot.chunk_vectors.vectors_of(copy.snapshot.chunk_ids))
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(RagError, match="cannot create the index folder .*a-file/index"):
        export_index(milvus, tmp_path / "a-file" / "index")
    served = opened(milvus)
    for question in ("Who chaired the meeting?", "dual-use products", "How many ships were built?"):
        assert _ids(original.search(question, k=10)) == _ids(copy.search(question, k=10)) \
            == _ids(served.search(question, k=10))


@pytest.mark.model
def test_milvus_matches_the_folder_on_the_scifact_slice(tmp_path, real_embedder, opened, monkeypatch):
    """Parity: the Milvus store's hybrid top 10 equals the folder's for at least 95% of the
    slice's queries, and nDCG@10 differs by at most 0.005 (same vectors, via export). The
    folder searches exactly below 10k vectors, so Milvus does too here (FLAT); what HNSW's
    approximation changes is measured by bench/stores.py."""
    monkeypatch.setenv("RAG_MILVUS_INDEX", "FLAT")
    dataset = DATA / "scifact_slice"
    folder, milvus = tmp_path / "index", f"milvus-lite:{tmp_path / 'm.db'}"
    index_articles(load_corpus(dataset / "corpus.jsonl"), folder, real_embedder, Config())
    export_index(folder, milvus)
    qrels = load_qrels(dataset, "train")
    queries = load_queries(dataset, qrels)
    local, remote = opened(str(folder), real_embedder), opened(milvus, real_embedder)
    runs = {name: {} for name in ("folder", "milvus")}
    same = 0
    for query_id, text in queries.items():
        found = {name: index.search(text, k=10) for name, index in (("folder", local), ("milvus", remote))}
        same += _ids(found["folder"]) == _ids(found["milvus"])
        for name, hits in found.items():
            runs[name][query_id] = {hit.chunk.article_id: 1.0 / hit.rank for hit in hits}
    assert same / len(queries) >= 0.95
    ndcg = {name: score_run(qrels, queries, run)["ndcg@10"] for name, run in runs.items()}
    assert abs(ndcg["folder"] - ndcg["milvus"]) <= 0.005


def test_a_seed_index_folder_can_move_to_milvus_and_serve(tmp_path, opened):
    folder = tmp_path / "seeds-index"
    shutil.copytree(SEEDS, tmp_path / "seeds")
    build_index([tmp_path / "seeds"], folder, embedder=HashingEmbedder())
    store = f"milvus-lite:{tmp_path / 'served.db'}"
    result = invoke_cli(["export", "--store", str(folder), "--to", store])
    assert result.exit_code == 0 and "5 articles" in result.output
    assert opened(store).stats().articles == 5


def test_the_page_adds_and_removes_articles_on_either_store(store, seeds_copy, tmp_path, opened):
    """The web page's actions (upload, remove) update whichever store serves it."""
    from ui.workspace import Workspace

    build_index([seeds_copy], store, embedder=HashingEmbedder())
    workspace = Workspace(opened(store), seeds_copy)
    upload = tmp_path / "upload.txt"
    upload.write_text("Shipyard delivers patrol boats\n\nThe Z189 shipyard handed over four patrol boats to the "
                      "fisheries surveillance force.\n", encoding="utf-8")
    added = workspace.add_files([upload])
    assert added.error is None and added.report.added == ["upload"] and workspace.status()["counts"]["articles"] == 6
    assert workspace.index.search("patrol boats fisheries surveillance", k=1)[0].chunk.article_id == "upload"
    removed = workspace.remove_article("upload")
    assert removed.error is None and removed.report.removed == ["upload"]
    assert "upload" not in {article["id"] for article in workspace.status()["articles"]}


@pytest.mark.parametrize("environ, message", [
    ({"RAG_MILVUS_INDEX": "DISKANN"}, "RAG_MILVUS_INDEX must be HNSW, IVF_FLAT or FLAT"),
    ({"RAG_MILVUS_EF": "deep"}, "RAG_MILVUS_EF must be a whole number"),
    ({"RAG_MILVUS_NPROBE": "0"}, "RAG_MILVUS_NPROBE must be at least 1"),
    ({"RAG_MILVUS_PREFIX": ""}, "RAG_MILVUS_PREFIX must be letters"),
    ({"RAG_MILVUS_PREFIX": "rag-test"}, "RAG_MILVUS_PREFIX must be letters"),
    ({"RAG_MILVUS_TOKENIZER": "english"}, "RAG_MILVUS_TOKENIZER must be standard or whitespace"),
])
def test_milvus_settings_refuse_bad_values_with_the_fix(environ, message):
    with pytest.raises(RagError, match=message):
        MilvusSettings.from_uri("http://milvus:19530", environ)


def test_milvus_settings_come_from_the_environment():
    cluster = MilvusSettings.from_uri("https://milvus:19530", {"RAG_MILVUS_TOKEN": "u:p", "RAG_MILVUS_EF": "256",
                                                               "RAG_MILVUS_INDEX": "ivf_flat"})
    assert (cluster.token, cluster.ef, cluster.index_type, cluster.tokenizer, cluster.lite) == (
        "u:p", 256, "IVF_FLAT", "whitespace", False)
    assert cluster.search_params(500)["params"] == {"nprobe": 32}
    lite = MilvusSettings.from_uri("milvus-lite:relative.db", {})
    assert lite.lite and lite.tokenizer == "standard" and Path(lite.uri).is_absolute()
    assert lite.shown == f"milvus-lite:{lite.uri}"
