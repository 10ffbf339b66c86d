"""Big ingests on Ray: the encoder calls of an update spread over a cluster's cores.

`rag index --ray [ADDRESS]` connects to a Ray cluster (or, without an address, starts one on
this machine) and runs one actor per CPU, each holding the packaged encoder; the batches an
update encodes (rag.ingest.encode) go to whichever actor is free, and come back in order.
Each text is still encoded alone by the same int8 model, so the vectors are bit-identical to
a local build. A worker that dies is restarted and its batch retried (twice); if it still
fails, the update stops with one line and the index is left as it was. The index itself is
written here, by the process that holds its lock.

    .venv/bin/rag index --ray                      # a local Ray on this machine's cores
    .venv/bin/rag index --ray ray://head:10001     # an existing cluster
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from rag.errors import ConfigError, RagError
from rag.ingest.encode import Batch

RETRIES = 2
"""Restarts of a dead worker, and retries of the batch it held."""


class RayEncoder:
    """An `EncodeBatches` that runs the batches on Ray actors; a context manager that shuts
    down the Ray it started (not a cluster it joined)."""

    def __init__(self, address: str | None = None, backend: str | None = None, workers: int | None = None) -> None:
        try:
            import ray
            from ray.util import ActorPool
        except ImportError:
            raise ConfigError("embedding on Ray needs the optional ray package: pip install 'rag[ray]'") from None
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            except Exception as error:  # Ray's connection errors have no common type
                raise RagError(f"cannot start or reach Ray{f' at {address}' if address else ''}: {error}") from error
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor = ray.remote(num_cpus=1, max_restarts=RETRIES, max_task_retries=RETRIES)(_EncoderActor)
        self._pool = ActorPool([actor.remote(backend) for _ in range(count)])
        self.workers = count

    def __call__(self, batches: Iterable[Batch]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        try:
            yield from self._pool.map(lambda worker, batch: worker.embed_pooled.remote(*batch), batches)
        except self._ray.exceptions.RayError as error:
            raise RagError(f"embedding on Ray failed after {RETRIES} retries ({type(error).__name__}: "
                           f"{str(error).splitlines()[0] if str(error) else 'no message'}); the index is unchanged"
                           ) from error

    def __enter__(self) -> RayEncoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._started:
            self._ray.shutdown()


class _EncoderActor:
    """One Ray worker: the packaged encoder, loaded once, encoding the batches it is given."""

    def __init__(self, backend: str | None) -> None:
        from rag.encoders.minilm import default_embedder

        self.encoder = default_embedder(backend)

    def embed_pooled(self, texts: list[str], groups: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        return self.encoder.embed_pooled(texts, groups)
