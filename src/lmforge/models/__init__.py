"""Every on-disk model format lmforge reads: store artifacts, Hugging Face folders, GGUF files,
the embedded default, quantized artifacts, adapters, vision-language models and images."""

from lmforge.lazy import lazy_exports as _lazy_exports

_EXPORTS = {
    "DEFAULT_NAME": "lmforge.models.default",
    "Model": "lmforge.models.model",
    "ensure_default": "lmforge.models.sources",
    "import_model": "lmforge.models.convert",
    "load": "lmforge.models.loader",
    "resolve": "lmforge.models.sources",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
