"""Big ingests on Ray: the same index, bit for bit, whoever encodes it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SEEDS, invoke_cli

from rag import Index, build_index
from rag.ingest.ray_encode import RayEncoder

pytestmark = pytest.mark.model


def vectors(index: Index) -> tuple[np.ndarray, np.ndarray]:
    snapshot = index.snapshot
    sentence_ids = np.unique(snapshot.chunk_sentences[1])
    return (snapshot.chunk_vectors.vectors_of(snapshot.chunk_ids), snapshot.sentence_vectors.vectors_of(sentence_ids))


def test_a_local_ray_build_gives_the_plain_builds_vectors_bit_for_bit(tmp_path: Path, real_index: Path,
                                                                         real_embedder) -> None:  # noqa: ANN001
    with RayEncoder(workers=2) as encoder:
        report = build_index([SEEDS], tmp_path / "ray-index", embedder=real_embedder, encode_batches=encoder)
    assert report.added and not report.failed

    plain, on_ray = Index.open(real_index, embedder=real_embedder), Index.open(tmp_path / "ray-index", embedder=real_embedder)
    assert np.array_equal(plain.snapshot.chunk_ids, on_ray.snapshot.chunk_ids)
    for local, remote in zip(vectors(plain), vectors(on_ray), strict=True):
        assert local.shape == remote.shape and np.array_equal(local, remote)


def test_rag_index_with_ray_reports_as_usual(tmp_path: Path, real_embedder) -> None:  # noqa: ANN001
    result = invoke_cli(["index", "--seeds", str(SEEDS), "--index", str(tmp_path / "index"), "--ray"],
                        embedder=real_embedder)

    assert result.exit_code == 0, result.output
    assert "5 added, 0 updated, 0 removed, 0 unchanged, 0 failed" in result.output


def test_a_folder_after_ray_is_not_taken_for_an_address(tmp_path: Path) -> None:
    result = invoke_cli(["index", "--index", str(tmp_path / "index"), "--ray", "seeds"])

    assert result.exit_code == 2 and "--ray took 'seeds' as a cluster address" in result.output
