"""Loading models: store artifacts, Hugging Face folders, GGUF files, the embedded default."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_NAME": "lmforge.models.default",
    "Model": "lmforge.models.model",
    "ensure_default": "lmforge.models.loader",
    "import_model": "lmforge.models.convert",
    "load": "lmforge.models.loader",
    "resolve": "lmforge.models.loader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lmforge.models' has no attribute {name!r}")
