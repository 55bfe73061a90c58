"""Loading models: store artifacts, Hugging Face folders, GGUF files, the embedded default."""

from lmforge.lazy import lazy_exports as _lazy_exports

_EXPORTS = {
    "DEFAULT_NAME": "lmforge.models.default",
    "Model": "lmforge.models.model",
    "ensure_default": "lmforge.models.loader",
    "import_model": "lmforge.models.convert",
    "load": "lmforge.models.loader",
    "resolve": "lmforge.models.loader",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
