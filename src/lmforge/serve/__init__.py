"""`lmforge serve`: an OpenAI-compatible HTTP server over the engine's continuous batching.

`create_app(model, ServeConfig(...))` builds the FastAPI app for a loaded `lmforge.Model`;
`serve(model, config)` runs it with uvicorn. FastAPI loads only when these are used.
"""

from lmforge.lazy import lazy_exports as _lazy_exports

_EXPORTS = {
    "ServeConfig": "lmforge.serve.config",
    "create_app": "lmforge.serve.app",
    "serve": "lmforge.serve.app",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
