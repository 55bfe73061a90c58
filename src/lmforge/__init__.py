"""lmforge: take an open language model through its whole life on the hardware you have.

    >>> import lmforge
    >>> model = lmforge.load()            # the embedded SmolLM2-135M-Instruct
    >>> model.chat([{"role": "user", "content": "What is the capital of France?"}])

Heavy modules (torch, transformers) load on first use, not on import.
"""

import importlib as _importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Artifact": "lmforge.store",
    "Completion": "lmforge.engine.generate",
    "LmforgeError": "lmforge.errors",
    "Model": "lmforge.models.model",
    "SamplingParams": "lmforge.engine.params",
    "Store": "lmforge.store",
    "import_model": "lmforge.models.convert",
    "load": "lmforge.models.loader",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        return getattr(_importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lmforge' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
