"""Metric families: pure functions over per-item result records, registered by name.

Each family is a module with one `compute(records, **options) -> dict` marked
`@register("name")`; importing the module is what registers it.
"""

from lmforge.evaluate.metrics import (  # noqa: F401  (imported to register each family)
    accuracy,
    bias,
    calibration,
    efficiency,
    fairness,
    perplexity,
    privacy,
    robustness,
    toxicity,
)
from lmforge.evaluate.metrics.registry import METRICS, compute_all, get_metric, register

__all__ = ["METRICS", "compute_all", "get_metric", "register"]
