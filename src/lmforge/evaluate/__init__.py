"""Evaluation: tasks, log-likelihood scoring, metric families, bundled suites, result files."""

from lmforge.lazy import lazy_exports as _lazy_exports

_EXPORTS = {
    "EvalConfig": "lmforge.evaluate.runner",
    "Scorer": "lmforge.evaluate.scorer",
    "Task": "lmforge.evaluate.task",
    "evaluate": "lmforge.evaluate.runner",
    "load_task": "lmforge.evaluate.task",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)
