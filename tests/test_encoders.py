"""The encoders on the packaged model: the same vectors as sentence-transformers, batch-proof."""

import numpy as np
import onnx
import pytest
from conftest import SEEDS
from sentence_transformers import SentenceTransformer

from rag import ConfigError
from rag.encoders.minilm import TransformerEmbedder, default_model_path
from rag.encoders.onnx_export import exported_model

pytestmark = pytest.mark.model

TEXTS = [
    "Hoa Lac High-Tech Park",
    "The General Department of Defence Industry has built nearly 140 ships.",
    (SEEDS / "003_62729c1e8f798b4f.txt").read_text(encoding="utf-8")[:1500],
]


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    model = SentenceTransformer(str(default_model_path()), device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True)


@pytest.mark.parametrize(("backend", "least_cosine"), [("torch", 0.99999), ("onnx", 0.99999), ("onnx-int8", 0.98)])
def test_each_backend_gives_the_models_vectors(reference, backend, least_cosine):
    vectors = TransformerEmbedder(backend=backend).embed(TEXTS)
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert (vectors * reference).sum(axis=1).min() >= least_cosine


def test_int8_gives_a_text_the_same_vector_whatever_it_is_encoded_with():
    embedder = TransformerEmbedder(backend="onnx-int8", batch_size=None)
    alone = np.array([embedder.embed([text])[0] for text in TEXTS])
    together = embedder.embed(TEXTS[::-1])[::-1]
    assert np.array_equal(alone, together)


def test_pooled_chunk_vectors_are_the_mean_of_their_sentences_tokens():
    embedder = TransformerEmbedder(backend="onnx")
    texts = ["Defence industry", "It built ships.", "It repaired vessels."]
    vectors, pooled = embedder.embed_pooled(texts, [[0, 1], [0, 1, 2]])
    assert np.allclose(vectors, embedder.embed(texts), atol=1e-6)
    from sentence_transformers import (
        SentenceTransformer,  # the reference: the model as sentence-transformers runs it
    )

    reference = SentenceTransformer(str(embedder.model_path), device="cpu")
    regular_tokens = {i: tokens.numpy()[1:-1]  # without [CLS] and [SEP]
                      for i, tokens in enumerate(reference.encode(texts, output_value="token_embeddings"))}
    for group, vector in zip([[0, 1], [0, 1, 2]], pooled, strict=True):
        mean = np.concatenate([regular_tokens[i] for i in group]).mean(axis=0)
        assert np.allclose(vector, mean / np.linalg.norm(mean), atol=1e-5)


def test_an_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="onnx-int8, onnx, torch"):
        TransformerEmbedder(backend="cuda")


def test_the_int8_model_runs_one_fused_node_per_attention_and_embedding():
    operators = [node.op_type for node in onnx.load(str(exported_model(default_model_path(), quantised=True))).graph.node]
    assert operators.count("QAttention") == 6 and operators.count("EmbedLayerNormalization") == 1
    assert len(operators) < 200  # the unfused export has about 800
