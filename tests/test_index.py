import gc
import json
import re
import shutil
import threading
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import SEEDS, CountingEmbedder, with_heading
from filelock import FileLock

from rag import (
    Config,
    HashingEmbedder,
    Index,
    IndexBusyError,
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    IndexWriteError,
    QueryError,
    RagError,
    build_index,
)
from rag.ingest.update import index_articles
from rag.storage.layout import FORMAT_VERSION, current_snapshot_dir

NEW_ARTICLE = (
    " date 2026-05-01 HÀ NỘI — The shipyard at Hai Phong launched a new patrol vessel on Friday.\n\n"
    "The vessel was designed by the Hai Phong naval engineering institute. It carries a crew of 40.\n"
)


def open_index(path: Path, embedder=None) -> Index:
    return Index.open(path, embedder=embedder or HashingEmbedder())


def hit_keys(hits):
    return [(h.chunk.chunk_id, round(h.score, 5)) for h in hits]


def test_build_reports_and_indexes_every_seed(fake_index, embedder):
    index = open_index(fake_index)
    assert [a.id for a in index.articles()] == sorted(p.stem for p in SEEDS.glob("*.txt"))
    counts = index.snapshot.manifest["counts"]
    # each sentence and title is encoded once; chunk vectors are pooled from them
    assert len(embedder.embedded) == counts["sentences"] + counts["articles"]
    assert all(a.chunks > 0 for a in index.articles())


def test_each_sentence_gets_its_own_words_vector(tmp_path, seeds_copy):
    """With the hashing fake, a sentence's vector is that of its words, and a chunk's vector
    is that of its title and words."""
    config = Config()
    build_index([seeds_copy], tmp_path / "index", embedder=HashingEmbedder(), config=config)
    snapshot = Index.open(tmp_path / "index", embedder=HashingEmbedder(), config=config).snapshot
    embedder = HashingEmbedder()
    for chunk_id, stored in list(snapshot.chunks.items())[:8]:
        for sentence_id, span in zip(stored.sentence_ids, stored.sentence_spans, strict=True):
            expected = embedder.embed([sentence_text(stored, span)])[0]
            assert np.allclose(snapshot.sentence_vectors.vectors_of([sentence_id])[0], expected, atol=1e-6)
        expected = embedder.embed([with_heading(stored.chunk)])[0]
        assert np.allclose(snapshot.chunk_vectors.vectors_of([chunk_id])[0], expected, atol=1e-6)


def test_an_update_serves_in_memory_what_a_fresh_load_reads_from_disk(fake_index, seeds_copy):
    """The served index after an update is the snapshot built in memory; opening the index
    anew reads what was written. Both must search alike, scores included."""
    served = open_index(fake_index)
    (seeds_copy / "005_new.txt").write_text(
        "Viettel opens a radar plant\n\nViettel opened a radar plant in Hoa Lac on Monday. "
        "The plant will build coastal radars for the navy.", encoding="utf-8")
    served.update([seeds_copy])
    loaded = open_index(fake_index)
    assert served.version == loaded.version
    for query in ["defence industry ships", "Hoa Lac meeting", "Resolution 57", "radar plant"]:
        in_memory, from_disk = served.search(query, k=10), loaded.search(query, k=10)
        assert hit_keys(in_memory) == hit_keys(from_disk)
        assert [h.score for h in in_memory] == pytest.approx([h.score for h in from_disk], abs=1e-6)
    assert "005_new" in {h.chunk.article_id for h in loaded.search("radar plant", k=3)}


def brute_force(index: Index, query: str, sentence_weight: float, article_weight: float) -> tuple[list[str], np.ndarray]:
    """Dense scores of every chunk computed with numpy alone."""
    embedder = HashingEmbedder()
    stored = [index.snapshot.chunks[i] for i in sorted(index.snapshot.chunks)]
    query_vector = embedder.embed([query])[0]
    chunk_vectors = embedder.embed([with_heading(s.chunk) for s in stored])
    sentences = [[sentence_text(s, span) for span in s.sentence_spans] for s in stored]
    sentence_scores = [embedder.embed(texts) @ query_vector for texts in sentences]
    articles = [s.chunk.article_id for s in stored]
    article_vectors = {a: chunk_vectors[[i for i, b in enumerate(articles) if b == a]].mean(axis=0) for a in articles}
    article_scores = np.array([article_vectors[a] @ query_vector / np.linalg.norm(article_vectors[a]) for a in articles])
    scores = ((1 - sentence_weight - article_weight) * (chunk_vectors @ query_vector)
              + sentence_weight * np.array([s.max() for s in sentence_scores]) + article_weight * article_scores)
    return [s.chunk.chunk_id for s in stored], scores


def sentence_text(stored, span):
    start, end = span
    return stored.chunk.text[start - stored.chunk.start : end - stored.chunk.start]


@pytest.mark.parametrize(("sentence_weight", "article_weight"), [(0.0, 0.0), (0.5, 0.0), (1.0, 0.0), (0.4, 0.2), (0.0, 1.0)])
def test_dense_search_agrees_with_brute_force_numpy(fake_index, sentence_weight, article_weight):
    config = Config(sentence_weight=sentence_weight, article_weight=article_weight, duplicate_similarity=1.0)
    index = Index.open(fake_index, embedder=HashingEmbedder(), config=config)
    for query in ["General Department of Defence Industry ships", "Viettel leaders", "cyberspace sovereignty"]:
        chunk_ids, scores = brute_force(index, query, sentence_weight, article_weight)
        order = np.argsort(-scores, kind="stable")[:8]
        hits = index.search(query, k=8, retriever="dense")
        np.testing.assert_allclose([h.score for h in hits], scores[order], rtol=1e-5, atol=1e-5)
        assert hits[0].chunk.chunk_id == chunk_ids[order[0]]


def test_hits_carry_rank_and_offsets_into_the_file(fake_index, seeds_copy):
    for hit in open_index(fake_index).search("bicycle parts and oil stoves", k=5):
        text = (seeds_copy / f"{hit.chunk.article_id}.txt").read_bytes().decode("utf-8")
        assert text[hit.chunk.start : hit.chunk.end] == hit.chunk.text
    assert [h.rank for h in open_index(fake_index).search("ships", k=4)] == [1, 2, 3, 4]


def test_adding_an_article_embeds_only_its_chunks(fake_index, seeds_copy, embedder):
    embedder.embedded.clear()
    (seeds_copy / "005_new.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    report = build_index([seeds_copy], fake_index, embedder=embedder)
    assert report.added == ["005_new"] and len(report.unchanged) == 5
    assert len(embedder.embedded) == 1 + report.sentences_embedded == 1 + 3  # its title and sentences
    assert all(text in NEW_ARTICLE for text in embedder.embedded)
    assert open_index(fake_index).search("patrol vessel Hai Phong", k=1)[0].chunk.article_id == "005_new"


def test_adding_one_article_to_thousands_embeds_only_it(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(2000):
        (folder / f"a{number:04d}.txt").write_text(f"Report number {number} on topic {number % 37}. It ends here.")
    embedder = CountingEmbedder()
    build_index([folder], tmp_path / "index", embedder=embedder)
    assert len(embedder.embedded) == 2000 * 3  # a title and two sentences each
    embedder.embedded.clear()
    (folder / "new.txt").write_text(NEW_ARTICLE)
    report = build_index([folder], tmp_path / "index", embedder=embedder)
    assert report.added == ["new"] and len(report.unchanged) == 2000
    assert len(embedder.embedded) == 1 + report.sentences_embedded == 1 + 3


def test_changed_article_is_replaced_and_removed_article_deleted(fake_index, seeds_copy, embedder):
    changed = seeds_copy / "003_62729c1e8f798b4f.txt"
    changed.write_text(changed.read_text(encoding="utf-8") + "\nA lighthouse keeper in Quang Ninh joined late.\n",
                       encoding="utf-8")
    (seeds_copy / "004_0ad313e58527b596.txt").unlink()
    embedder.embedded.clear()
    report = build_index([seeds_copy], fake_index, embedder=embedder)
    assert report.updated == ["003_62729c1e8f798b4f"]
    assert report.removed == ["004_0ad313e58527b596"]
    assert sorted(report.unchanged) == ["000_74a00811c9a9f887", "001_b4864911fd882270", "002_2158886989b67df7"]
    updated_text = changed.read_text(encoding="utf-8")
    title = open_index(fake_index).snapshot.manifest["articles"]["003_62729c1e8f798b4f"]["title"]
    assert all(text in updated_text or text == title for text in embedder.embedded)
    index = open_index(fake_index)
    article_ids = {s.chunk.article_id for s in index.snapshot.chunks.values()}
    assert "004_0ad313e58527b596" not in article_ids
    assert index.snapshot.chunk_vectors.ntotal == index.stats().chunks
    assert index.snapshot.sentence_vectors.ntotal == index.stats().sentences
    assert index.search("lighthouse keeper Quang Ninh", k=1)[0].chunk.article_id == "003_62729c1e8f798b4f"


def test_an_unreadable_source_folder_removes_nothing(fake_index, seeds_copy, embedder):
    """A missing or unmounted folder is not the deletion of its articles: the update keeps
    them, says why, and a rebuild from it refuses before writing anything."""
    before = current_snapshot_dir(fake_index)
    moved = seeds_copy.rename(seeds_copy.parent / "elsewhere")
    report = build_index([seeds_copy], fake_index, embedder=embedder)
    assert report.removed == [] and len(report.failed) == 1 and "no such file or folder" in report.failed[0]
    assert current_snapshot_dir(fake_index) == before
    with pytest.raises(RagError, match=r"cannot rebuild the index: .*no such file or folder\. The index is unchanged"):
        build_index([seeds_copy], fake_index, embedder=embedder, rebuild=True)
    assert current_snapshot_dir(fake_index) == before and open_index(fake_index).stats().articles == 5
    moved.rename(seeds_copy)
    assert len(build_index([seeds_copy], fake_index, embedder=embedder).unchanged) == 5


def test_a_file_that_cannot_be_looked_at_is_kept_not_removed(fake_index, seeds_copy, embedder, monkeypatch):
    """A file the update cannot stat (an I/O error, a folder without search permission) failed;
    its indexed article stays."""
    import errno

    original = Path.stat

    def stat(self, *args, **kwargs):
        if self.name == "004_0ad313e58527b596.txt":
            raise PermissionError(errno.EACCES, "Permission denied")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    report = build_index([seeds_copy], fake_index, embedder=embedder)
    assert report.removed == [] and any("004_0ad313e58527b596.txt: cannot be read" in m for m in report.failed)


def test_unchanged_sources_write_nothing(fake_index, seeds_copy, embedder):
    before = current_snapshot_dir(fake_index)
    report = build_index([seeds_copy], fake_index, embedder=embedder)
    assert not report.changed and current_snapshot_dir(fake_index) == before


def test_indexing_one_file_keeps_the_other_articles(fake_index, tmp_path, embedder):
    extra = tmp_path / "extra.txt"
    extra.write_text(NEW_ARTICLE)
    report = build_index([extra], fake_index, embedder=embedder)
    assert report.added == ["extra"] and report.removed == []
    assert len(open_index(fake_index).articles()) == 6


def test_a_file_that_turns_bad_keeps_its_indexed_version(fake_index, seeds_copy, embedder):
    (seeds_copy / "001_b4864911fd882270.txt").write_bytes(b"\x00\x01binary")
    report = build_index([seeds_copy], fake_index, embedder=embedder)
    assert len(report.failed) == 1 and "looks like a binary file" in report.failed[0]
    assert report.removed == []
    assert "001_b4864911fd882270" in [a.id for a in open_index(fake_index).articles()]


def test_rebuild_starts_from_scratch(fake_index, seeds_copy, embedder):
    embedder.embedded.clear()
    report = build_index([seeds_copy], fake_index, embedder=embedder, rebuild=True)
    counts = open_index(fake_index).snapshot.manifest["counts"]
    assert len(report.added) == 5 and len(embedder.embedded) == counts["sentences"] + counts["articles"]


class ExplodingEmbedder(HashingEmbedder):
    """Fails on the n-th batch it encodes, as a crash in the middle of a rebuild."""

    def __init__(self, fail_on_call: int, error: BaseException) -> None:
        super().__init__()
        self.calls, self.fail_on_call, self.error = 0, fail_on_call, error

    def embed_pooled(self, texts, groups):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise self.error
        return super().embed_pooled(texts, groups)


@pytest.mark.parametrize("error", [RuntimeError("encoder crashed"), KeyboardInterrupt()])
def test_a_rebuild_that_fails_halfway_leaves_the_old_index_answering(fake_index, seeds_copy, error):
    before = hit_keys(open_index(fake_index).search("defence industry", k=5))
    for number in range(3):
        (seeds_copy / f"10{number}.txt").write_text(NEW_ARTICLE.replace("40", str(number)) * 100)
    with pytest.raises(type(error)):
        build_index([seeds_copy], fake_index, embedder=ExplodingEmbedder(2, error), rebuild=True)
    index = open_index(fake_index)
    assert len(index.articles()) == 5
    assert hit_keys(index.search("defence industry", k=5)) == before


def test_a_crash_while_writing_leaves_the_old_index(fake_index, seeds_copy, embedder, monkeypatch):
    (seeds_copy / "005_new.txt").write_text(NEW_ARTICLE)

    def write_then_fail(*args):
        Path(args[1]).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", write_then_fail)
    with pytest.raises(IndexWriteError, match=r"cannot write the index at .* \(disk full\); the previous index is unchanged"):
        build_index([seeds_copy], fake_index, embedder=embedder)
    monkeypatch.undo()
    assert len(open_index(fake_index).articles()) == 5
    assert not list((fake_index / "versions").glob(".staging-*"))
    assert build_index([seeds_copy], fake_index, embedder=embedder).added == ["005_new"]


def test_a_second_rebuild_waits_then_fails_with_a_message(fake_index, seeds_copy):
    with FileLock(str(fake_index / "write.lock")):
        with pytest.raises(IndexBusyError, match="another process is updating the index at .*wait for it"):
            build_index([seeds_copy], fake_index, embedder=HashingEmbedder(), lock_timeout=0.2)


def test_two_concurrent_rebuilds_both_complete_one_after_the_other(fake_index, seeds_copy):
    (seeds_copy / "005_new.txt").write_text(NEW_ARTICLE)
    reports, errors = [], []

    def run():
        try:
            reports.append(build_index([seeds_copy], fake_index, embedder=HashingEmbedder(), rebuild=True))
        except Exception as error:  # noqa: BLE001 - collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(reports) == 2
    assert len(open_index(fake_index).articles()) == 6


class BlockingEmbedder(HashingEmbedder):
    """Embeds only after `release` is set, so a test can act while a rebuild is running."""

    def __init__(self) -> None:
        super().__init__()
        self.started, self.release = threading.Event(), threading.Event()

    def embed_pooled(self, texts, groups):
        self.started.set()
        assert self.release.wait(10)
        return super().embed_pooled(texts, groups)


def test_readers_keep_working_while_a_rebuild_runs(fake_index, seeds_copy):
    reader = open_index(fake_index)
    before = hit_keys(reader.search("defence", k=3))
    (seeds_copy / "005_new.txt").write_text(NEW_ARTICLE)
    slow = BlockingEmbedder()
    thread = threading.Thread(target=build_index, args=([seeds_copy], fake_index), kwargs={"embedder": slow})
    thread.start()
    assert slow.started.wait(10)
    assert hit_keys(reader.search("defence", k=3)) == before
    assert len(open_index(fake_index).articles()) == 5  # a new reader sees the old snapshot
    slow.release.set()
    thread.join()
    assert hit_keys(reader.search("defence", k=3)) == before  # opened readers keep their snapshot
    assert len(open_index(fake_index).articles()) == 6


def test_update_swaps_the_new_snapshot_in(fake_index, seeds_copy):
    index = open_index(fake_index)
    (seeds_copy / "005_new.txt").write_text(NEW_ARTICLE)
    report = index.update([seeds_copy])
    assert report.added == ["005_new"]
    assert index.search("patrol vessel Hai Phong", k=1)[0].chunk.article_id == "005_new"


def test_missing_index_says_how_to_build_it(tmp_path):
    with pytest.raises(IndexNotFoundError, match=r"no index at .*: build it with `rag index --index"):
        open_index(tmp_path / "nowhere")


def test_other_model_is_refused_with_the_fix(fake_index):
    with pytest.raises(IndexMismatchError) as caught:
        open_index(fake_index, embedder=HashingEmbedder(dim=32))
    message = str(caught.value)
    assert "built with model hashing-fake-64 (64 dims); this configuration uses hashing-fake-32 (32 dims)" in message
    assert "rag index --rebuild" in message


def test_other_chunker_settings_are_refused(fake_index):
    with pytest.raises(IndexMismatchError, match=r"chunker settings .*'chunk_tokens': 160.*'chunk_tokens': 100.*--rebuild"):
        Index.open(fake_index, embedder=HashingEmbedder(), config=Config(chunk_tokens=100))


def test_incremental_update_refuses_another_model_but_rebuild_accepts_it(fake_index, seeds_copy):
    with pytest.raises(IndexMismatchError):
        build_index([seeds_copy], fake_index, embedder=HashingEmbedder(dim=32))
    assert build_index([seeds_copy], fake_index, embedder=HashingEmbedder(dim=32), rebuild=True).added


def test_unknown_format_version_is_refused_with_the_rebuild_that_keeps_its_articles(fake_index, seeds_copy):
    """`rag index --rebuild` alone reads seeds/ only: the message names the folders the
    index's articles came from, and that command rebuilds them all."""
    manifest_path = current_snapshot_dir(fake_index) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format_version"] = 99
    manifest_path.write_text(json.dumps(manifest))
    expected = f"`rag index --rebuild --index {fake_index} {seeds_copy.resolve()}`"
    with pytest.raises(IndexCorruptError, match=rf"format version 99; this version of rag reads format "
                                                 rf"{FORMAT_VERSION}: rebuild it from the folders its articles came "
                                                 rf"from: {re.escape(expected)}"):
        open_index(fake_index)
    assert len(build_index([seeds_copy.resolve()], fake_index, embedder=CountingEmbedder(), rebuild=True).added) == 5


def _count_one_chunk_more(version: Path) -> None:
    manifest = json.loads((version / "manifest.json").read_text())
    manifest["counts"]["chunks"] += 1
    (version / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda v, s: (s / "chunks.faiss").unlink(), r"vector file .*chunks.faiss is missing or damaged"),
        (lambda v, s: (s / "chunks.faiss").write_bytes(b"garbage"), r"vector file .*chunks.faiss is missing or damaged"),
        (lambda v, s: (s / "chunks.jsonl").write_text("{not json"), r"chunk records in .* are missing or damaged .*chunks.jsonl holds 0 chunks"),
        (lambda v, s: (s / "chunks.npz").unlink(), r"chunk records in .* are missing or damaged .*chunks.npz"),
        (lambda v, s: (v / "manifest.json").unlink(), r"index manifest .*manifest.json is missing or damaged"),
        (lambda v, s: _count_one_chunk_more(v), r"is inconsistent: .*failed: chunk count = manifest"),
        (lambda v, s: (s / "sentences.faiss").unlink(), r"vector file .*sentences.faiss is missing or damaged"),
        (lambda v, s: shutil.rmtree(s / "bm25"), r"BM25 index .*bm25 is missing or damaged"),
        (lambda v, s: (s / "articles.npy").write_bytes(b"x"), r"article vectors .*articles.npy missing or damaged"),
        (lambda v, s: (v / "removed.npy").unlink(), r"removed-chunk list .*removed.npy missing or damaged"),
        (lambda v, s: shutil.rmtree(v), r"points to a missing snapshot"),
    ],
)
def test_damaged_files_give_a_clear_error(fake_index, damage, message):
    version = current_snapshot_dir(fake_index)
    segment = fake_index / "segments" / json.loads((version / "manifest.json").read_text())["segments"][0]["name"]
    damage(version, segment)
    with pytest.raises(IndexCorruptError, match=message):
        open_index(fake_index)


def test_a_damaged_chunk_line_is_reported_when_read(fake_index):
    """A chunk's text is parsed when first asked for, so damage to it shows then, as damage."""
    version = current_snapshot_dir(fake_index)
    segment = fake_index / "segments" / json.loads((version / "manifest.json").read_text())["segments"][0]["name"]
    lines = (segment / "chunks.jsonl").read_bytes().splitlines()
    (segment / "chunks.jsonl").write_bytes(b"\n".join([b"{not json", *lines[1:]]) + b"\n")
    index = open_index(fake_index)
    with pytest.raises(IndexCorruptError, match=r"the record of chunk 0 is damaged .*rag index --rebuild"):
        [index.snapshot.chunks[chunk_id] for chunk_id in index.snapshot.chunk_ids.tolist()]


@pytest.mark.parametrize(
    ("query", "message"),
    [("", "the question is empty"), ("   \n", "the question is empty"),
     ("x" * 10_000, "the question is 10000 characters long; the limit is 2000")],
)
def test_bad_queries_are_refused(fake_index, query, message):
    with pytest.raises(QueryError, match=message):
        open_index(fake_index).search(query)


def test_k_out_of_range_is_refused(fake_index):
    with pytest.raises(QueryError, match="k \\(passages\\) must be a whole number from 1 to 1000, got 0"):
        open_index(fake_index).search("ships", k=0)


def test_old_snapshots_are_pruned(fake_index, seeds_copy):
    for number in range(5):
        (seeds_copy / f"x{number}.txt").write_text(f"Article {number} about things.")
        build_index([seeds_copy], fake_index, embedder=HashingEmbedder())
    assert len([p for p in (fake_index / "versions").iterdir()]) == 3


def test_same_article_id_from_another_folder_is_refused_not_replaced(fake_index, tmp_path, embedder):
    other = tmp_path / "other"
    other.mkdir()
    (other / "004_0ad313e58527b596.txt").write_text(NEW_ARTICLE)
    report = build_index([other], fake_index, embedder=embedder)
    assert report.updated == [] and len(report.failed) == 1
    assert "article id '004_0ad313e58527b596' is already indexed from" in report.failed[0]
    title = {a.id: a.title for a in open_index(fake_index).articles()}["004_0ad313e58527b596"]
    assert title.startswith("Party chief requests")


def test_a_moved_article_keeps_its_vectors_and_records_its_new_place(fake_index, seeds_copy, tmp_path, embedder):
    moved = tmp_path / "moved"
    seeds_copy.rename(moved)
    embedder.embedded.clear()
    report = build_index([moved], fake_index, embedder=embedder)
    assert len(report.unchanged) == 5 and not embedder.embedded
    sources = {a.source for a in open_index(fake_index).articles()}
    assert all(source.startswith(str(moved.resolve())) for source in sources)


def test_an_index_updated_elsewhere_is_picked_up_by_update(fake_index, seeds_copy):
    served = open_index(fake_index)
    (seeds_copy / "005_new.txt").write_text(NEW_ARTICLE)
    build_index([seeds_copy], fake_index, embedder=HashingEmbedder())  # another process, say
    report = served.update([seeds_copy])
    assert not report.changed
    assert len(served.articles()) == 6 and served.version == current_snapshot_dir(fake_index).name


def test_index_articles_removes_the_articles_it_is_told_to(fake_index, embedder):
    report = index_articles([], fake_index, embedder, remove=["004_0ad313e58527b596"])
    assert report.removed == ["004_0ad313e58527b596"] and not report.added
    index = open_index(fake_index)
    assert "004_0ad313e58527b596" not in {a.id for a in index.articles()}
    assert all(h.chunk.article_id != "004_0ad313e58527b596" for h in index.search("nearly 140 ships", k=20))


def test_a_large_index_turns_approximate_and_still_updates(tmp_path, monkeypatch):
    monkeypatch.setattr("rag.storage.vectors.EXACT_UP_TO", 300)
    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(400):
        (folder / f"a{number:03d}.txt").write_text(f"Report {number} on topic {number % 37}. It ends here.")
    build_index([folder], tmp_path / "index", embedder=HashingEmbedder())
    index = open_index(tmp_path / "index")
    assert index.stats().vector_search["chunks"].startswith("hnsw")
    assert index.stats().vector_search["sentences"].startswith("hnsw")
    (folder / "new.txt").write_text(NEW_ARTICLE)
    (folder / "a000.txt").unlink()
    report = build_index([folder], tmp_path / "index", embedder=HashingEmbedder())
    assert report.added == ["new"] and report.removed == ["a000"]
    index = open_index(tmp_path / "index")  # loading checks that ids, chunks and vectors agree
    assert index.search("patrol vessel Hai Phong", k=1)[0].chunk.article_id == "new"
    assert all(hit.chunk.article_id != "a000" for hit in index.search("Report 0 on topic 0", k=20))
    assert [h.chunk.article_id for h in index.search("Report 5 topic", k=3, articles=["a005"])] == ["a005"]


def segment_names(index_dir: Path) -> list[str]:
    manifest = json.loads((current_snapshot_dir(index_dir) / "manifest.json").read_text())
    return [entry["name"] for entry in manifest["segments"]]


def many_articles(folder: Path, count: int) -> Path:
    folder.mkdir()
    for number in range(count):
        (folder / f"a{number:03d}.txt").write_text(f"Report {number} on topic {number % 37}. It ends here.")
    return folder


def test_an_update_writes_a_segment_of_its_own_chunks_and_leaves_the_rest(tmp_path):
    folder = many_articles(tmp_path / "many", 100)
    build_index([folder], tmp_path / "index", embedder=HashingEmbedder())
    [base] = segment_names(tmp_path / "index")
    base_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "index" / "segments" / base).rglob("*")}
    (folder / "new.txt").write_text(NEW_ARTICLE)
    build_index([folder], tmp_path / "index", embedder=HashingEmbedder())
    first, added = segment_names(tmp_path / "index")
    assert first == base and base_files == {p: p.stat().st_mtime_ns for p in base_files}
    rows = (tmp_path / "index" / "segments" / added / "chunks.jsonl").read_text().splitlines()
    assert {json.loads(row)["article_id"] for row in rows} == {"new"}
    index = open_index(tmp_path / "index")
    assert index.search("patrol vessel Hai Phong", k=1)[0].chunk.article_id == "new"


def test_removals_are_recorded_then_compacted_away(tmp_path):
    folder = many_articles(tmp_path / "many", 100)
    index_dir = tmp_path / "index"
    build_index([folder], index_dir, embedder=HashingEmbedder())
    [base] = segment_names(index_dir)
    (folder / "a005.txt").unlink()
    build_index([folder], index_dir, embedder=HashingEmbedder())
    assert segment_names(index_dir) == [base]  # nothing new to hold: the version lists the removal
    assert np.load(current_snapshot_dir(index_dir) / "removed.npy").size == 1
    assert all(h.chunk.article_id != "a005" for h in open_index(index_dir).search("Report 5 on topic 5", k=20))
    for number in range(30):  # more than a quarter of the index changes: one base again
        (folder / f"a{number + 10:03d}.txt").unlink()
    build_index([folder], index_dir, embedder=HashingEmbedder())
    [compacted] = segment_names(index_dir)
    assert compacted != base and np.load(current_snapshot_dir(index_dir) / "removed.npy").size == 0
    for _ in range(3):  # once no kept version lists the old base, its files go
        (folder / "new.txt").write_text(NEW_ARTICLE + str(_))
        build_index([folder], index_dir, embedder=HashingEmbedder())
    assert not (index_dir / "segments" / base).exists()
    index = open_index(index_dir)
    assert len(index.articles()) == 100 - 31 + 1
    assert index.search("patrol vessel Hai Phong", k=1)[0].chunk.article_id == "new"


def test_many_small_updates_match_one_build_of_the_same_articles(tmp_path):
    folder = many_articles(tmp_path / "many", 60)
    build_index([folder], tmp_path / "grown", embedder=HashingEmbedder())
    for number in range(12):
        (folder / f"late{number:02d}.txt").write_text(f"Late report {number} about ships and {number % 5} ports.")
        if number % 4 == 0:
            (folder / f"a{number:03d}.txt").unlink()
        build_index([folder], tmp_path / "grown", embedder=HashingEmbedder())
    build_index([folder], tmp_path / "fresh", embedder=HashingEmbedder())
    grown, fresh = open_index(tmp_path / "grown"), open_index(tmp_path / "fresh")
    assert len(segment_names(tmp_path / "grown")) > 1
    for query in ["late report ships", "Report 7 on topic 7", "ports"]:
        for retriever in ("hybrid", "bm25"):
            got = [(h.chunk.chunk_id, round(h.score, 4)) for h in grown.search(query, k=10, retriever=retriever)]
            assert got == [(h.chunk.chunk_id, round(h.score, 4)) for h in fresh.search(query, k=10, retriever=retriever)]


def test_a_serving_index_updates_from_memory_without_reading_itself_back(fake_index, seeds_copy, monkeypatch):
    index = open_index(fake_index)
    (seeds_copy / "005_new.txt").write_text(NEW_ARTICLE)
    monkeypatch.setattr("rag.ingest.update.load_snapshot", lambda path: pytest.fail("read the served index back"))
    monkeypatch.setattr("rag.index.load_snapshot", lambda path: pytest.fail("read the written index back"))
    assert index.update([seeds_copy]).added == ["005_new"]
    assert index.version == current_snapshot_dir(fake_index).name
    assert index.search("patrol vessel Hai Phong", k=1)[0].chunk.article_id == "005_new"
    monkeypatch.undo()
    assert hit_keys(open_index(fake_index).search("patrol vessel", k=5)) == hit_keys(index.search("patrol vessel", k=5))


def test_an_index_emptied_of_every_article_can_grow_again(tmp_path):
    folder = many_articles(tmp_path / "many", 3)
    build_index([folder], tmp_path / "index", embedder=HashingEmbedder())
    for path in folder.glob("*.txt"):
        path.unlink()
    assert len(build_index([folder], tmp_path / "index", embedder=HashingEmbedder()).removed) == 3
    assert open_index(tmp_path / "index").search("Report 1", k=5) == []
    (folder / "new.txt").write_text(NEW_ARTICLE)
    build_index([folder], tmp_path / "index", embedder=HashingEmbedder())
    assert [h.chunk.article_id for h in open_index(tmp_path / "index").search("patrol vessel", k=5)] == ["new"]


def test_a_segment_of_overlapping_chunks_reads_back_consistent(fake_index, seeds_copy):
    long_article = " ".join(f"Sentence {n} tells of the shipyard's hull number {n} and its crew." for n in range(60))
    (seeds_copy / "005_long.txt").write_text(long_article)
    index = open_index(fake_index)
    index.update([seeds_copy])
    assert len(segment_names(fake_index)) == 2  # the new article went to a segment of its own
    assert index.snapshot.manifest["articles"]["005_long"]["chunks"] >= 3  # so chunks overlap by a sentence
    reopened = open_index(fake_index)  # loading checks the sentence count against the manifest
    assert reopened.snapshot.manifest["counts"] == index.snapshot.manifest["counts"]
    assert hit_keys(reopened.search("hull number 42", k=3)) == hit_keys(index.search("hull number 42", k=3))


def test_a_serving_index_that_removes_then_adds_stays_readable(tmp_path):
    folder = many_articles(tmp_path / "many", 20)
    build_index([folder], tmp_path / "index", embedder=HashingEmbedder())
    index = open_index(tmp_path / "index")
    (folder / "a003.txt").unlink()
    assert index.update([folder]).removed == ["a003"]  # removes only: no segment of its own
    (folder / "new.txt").write_text(NEW_ARTICLE)
    assert index.update([folder]).added == ["new"]
    reopened = open_index(tmp_path / "index")
    for retriever in ("hybrid", "bm25"):
        assert hit_keys(reopened.search("patrol vessel Hai Phong", k=3, retriever=retriever)) == \
            hit_keys(index.search("patrol vessel Hai Phong", k=3, retriever=retriever))
    assert reopened.search("patrol vessel Hai Phong", k=1, retriever="bm25")[0].chunk.article_id == "new"


def test_a_missing_segment_is_reported_not_rewritten(tmp_path):
    folder = many_articles(tmp_path / "many", 20)
    build_index([folder], tmp_path / "index", embedder=HashingEmbedder())
    [base] = segment_names(tmp_path / "index")
    shutil.rmtree(tmp_path / "index" / "segments" / base)
    (folder / "new.txt").write_text(NEW_ARTICLE)
    with pytest.raises(IndexCorruptError, match="rebuild"):
        build_index([folder], tmp_path / "index", embedder=HashingEmbedder())
    assert build_index([folder], tmp_path / "index", embedder=HashingEmbedder(), rebuild=True).added


def test_a_graph_keeps_its_tail_and_removals_through_compaction_until_they_pass_a_quarter(tmp_path, monkeypatch):
    monkeypatch.setattr("rag.storage.vectors.EXACT_UP_TO", 300)
    folder, index_dir = many_articles(tmp_path / "many", 400), tmp_path / "index"
    build_index([folder], index_dir, embedder=HashingEmbedder())
    (folder / "a007.txt").unlink()
    for number in range(16):  # the 16th update makes 17 segments: compaction, but the graph's changes are small
        (folder / f"late{number:02d}.txt").write_text(f"Late report {number} about ships and {number % 5} ports.")
        build_index([folder], index_dir, embedder=HashingEmbedder())
    [base] = segment_names(index_dir)
    manifest = open_index(index_dir).snapshot.manifest
    assert manifest["vector_search"]["chunks"].endswith(", 400 in the graph")
    assert {"chunks.tail.faiss", "chunks.removed.npy"} <= {p.name for p in (index_dir / "segments" / base).iterdir()}
    index = open_index(index_dir)
    assert index.search("Late report 15 about ships", k=1)[0].chunk.article_id == "late15"
    assert all(hit.chunk.article_id != "a007" for hit in index.search("Report 7 on topic 7", k=20))
    for number in range(100, 200):  # now more than a quarter of the graph changed: a new graph
        (folder / f"a{number:03d}.txt").unlink()
    build_index([folder], index_dir, embedder=HashingEmbedder())
    index = open_index(index_dir)
    assert index.stats().vector_search["chunks"].endswith(f", {400 - 101 + 16} in the graph")
    [rebuilt] = segment_names(index_dir)
    assert not list((index_dir / "segments" / rebuilt).glob("*.tail.faiss"))
    assert index.search("Late report 3 about ships", k=1)[0].chunk.article_id == "late03"


def test_updates_and_searches_leave_no_cyclic_garbage(fake_index, seeds_copy):
    """The web page freezes what it loaded out of the collector's scans (ui/app.py::serve),
    which keeps nothing alive only while a replaced snapshot is freed by reference counts."""
    index = open_index(fake_index)
    index.ask("How many ships has the defence industry built?")
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds unreachable is kept in gc.garbage
    try:
        for number in range(2):
            (seeds_copy / f"new{number}.txt").write_text(NEW_ARTICLE.replace("40", str(40 + number)))
            assert index.update([seeds_copy]).added == [f"new{number}"]
            index.search("patrol vessel Hai Phong", k=5)
            index.ask("Which shipyard launched a patrol vessel?")
        (seeds_copy / "new0.txt").unlink()
        assert index.update([seeds_copy]).removed == ["new0"]
        gc.collect()
        garbage = [type(thing).__name__ for thing in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert garbage == []


def test_a_long_article_reports_progress_as_it_is_read_and_gets_the_same_vectors(tmp_path: Path) -> None:
    """Encoded in slices of whole chunks (the heading and a shared sentence repeated), an
    article's vectors are those of encoding it in one call; progress moves slice by slice."""
    from rag.ingest.encode import embed_articles
    from rag.text.articles import parse_article
    from rag.text.chunking import split_article

    body = " ".join(f"The yard delivered patrol ship number {n} to the navy in spring." for n in range(400))
    article = parse_article("Shipyard deliveries\n\n" + body, "long", tmp_path / "long.txt", "hash")
    embedder, config = HashingEmbedder(), Config()
    split = split_article(article, embedder.count_tokens, embedder.max_tokens, config)
    seen: list[tuple[int, int]] = []

    chunk_vectors, sentence_vectors = embed_articles([article], [split], embedder,
                                                     lambda done, total: seen.append((done, total)))

    texts = [article.heading] + [article.text[start:end] for start, end in split.sentences]
    whole, pooled = embedder.embed_pooled(texts, [[0, *(1 + i for i in members)] for members in split.chunk_sentences])
    assert np.allclose(chunk_vectors, pooled) and np.allclose(sentence_vectors, whole[1:])
    assert len({done for done, _ in seen}) >= 5 and seen[-1][0] == seen[-1][1]
