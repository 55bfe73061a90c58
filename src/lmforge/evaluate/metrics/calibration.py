"""Calibration of the multiple-choice softmax: equal-mass ECE and selective accuracy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lmforge.errors import InvalidInputError
from lmforge.evaluate.metrics.records import ORIGINAL, of_variant
from lmforge.evaluate.metrics.registry import register


def softmax(scores: Sequence[float]) -> np.ndarray:
    """Probabilities over the choices from their summed log-likelihoods."""
    x = np.asarray(scores, dtype=float)  # (choices,)
    e = np.exp(x - x.max())  # shift by the max so the largest term is exp(0)
    return e / e.sum()


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, bins: int = 10
) -> float:
    """ECE with equal-mass bins: sort by confidence, split into `bins` runs of equal count."""
    n = len(confidence)
    order = np.argsort(confidence, kind="stable")
    # array_split makes sizes differ by at most one when n is not a multiple of bins.
    chunks = np.array_split(order, min(bins, n))
    return float(sum(len(c) / n * abs(correct[c].mean() - confidence[c].mean()) for c in chunks))


def selective_accuracy(confidence: np.ndarray, correct: np.ndarray, coverage: float = 0.5) -> float:
    """Accuracy on the most confident `coverage` share of the items (at least one item)."""
    k = max(1, math.ceil(coverage * len(confidence)))
    top = np.argsort(-confidence, kind="stable")[:k]
    return float(correct[top].mean())


@register("calibration")
def compute(records: list[dict], bins: int = 10, coverage: float = 0.5) -> dict:
    """ECE, selective accuracy at `coverage`, mean confidence, accuracy and n of the argmax."""
    if bins < 1:
        raise InvalidInputError(f"bins must be at least 1, got {bins}", "use e.g. 10")
    if not 0 < coverage <= 1:
        raise InvalidInputError(f"coverage must be in (0, 1], got {coverage}", "use e.g. 0.5")
    selective_key = f"selective_acc_{round(coverage * 100)}"
    rows = [r for r in of_variant(records, ORIGINAL) if r.get("scores")]
    if not rows:
        return {"ece": None, selective_key: None, "mean_confidence": None, "acc": None, "n": 0}
    confidence = np.empty(len(rows))  # (n,) max softmax probability
    correct = np.empty(len(rows), dtype=bool)  # (n,) argmax == target
    for i, r in enumerate(rows):
        p = softmax(r["scores"])
        best = int(np.argmax(p))
        confidence[i], correct[i] = p[best], best == r["target"]
    return {
        "ece": expected_calibration_error(confidence, correct, bins),
        selective_key: selective_accuracy(confidence, correct, coverage),
        "mean_confidence": float(confidence.mean()),
        "acc": float(correct.mean()),
        "n": len(rows),
    }
