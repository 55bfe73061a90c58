"""lmforge: take an open language model through its whole life on the hardware you have.

    >>> import lmforge
    >>> model = lmforge.load()            # the embedded SmolLM2-135M-Instruct
    >>> model.chat([{"role": "user", "content": "What is the capital of France?"}])

Heavy modules (torch, transformers) load on first use, not on import.
"""

from lmforge.lazy import lazy_exports as _lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "Artifact": "lmforge.store",
    "Completion": "lmforge.engine.generate",
    "DistillConfig": "lmforge.compress.distill",
    "ExplainConfig": "lmforge.explain.config",
    "PruneConfig": "lmforge.compress.prune_config",
    "QuantizeConfig": "lmforge.compress.quantize",
    "TuneConfig": "lmforge.tune.config",
    "distill": "lmforge.compress.distill",
    "export": "lmforge.compress.export",
    "merge": "lmforge.tune.merge",
    "prune": "lmforge.compress.prune",
    "quantize": "lmforge.compress.quantize",
    "LmforgeError": "lmforge.errors",
    "Model": "lmforge.models.model",
    "SamplingParams": "lmforge.engine.params",
    "Store": "lmforge.store",
    "import_model": "lmforge.models.convert",
    "load": "lmforge.models.loader",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
