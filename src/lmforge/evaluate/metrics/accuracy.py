"""Accuracy (acc, acc_norm) on the original items, with a bootstrap 95% interval."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lmforge.errors import InvalidInputError
from lmforge.evaluate.metrics.records import ORIGINAL, of_variant
from lmforge.evaluate.metrics.registry import register


def bootstrap_interval(
    correct: Sequence[bool], resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of 0/1 outcomes; deterministic under `seed`."""
    if resamples < 1:
        raise InvalidInputError(f"resamples must be at least 1, got {resamples}", "use e.g. 1000")
    if not 0 < level < 1:
        raise InvalidInputError(f"level must be in (0, 1), got {level}", "use e.g. 0.95")
    n = len(correct)
    if n == 0:
        raise InvalidInputError("no outcomes to bootstrap", "score at least one item")
    # Resampling n outcomes with replacement and counting the correct ones is exactly a
    # Binomial(n, p̂) draw, so draw that instead of materialising (resamples, n) indices.
    p = float(np.mean(np.asarray(correct, dtype=float)))
    rng = np.random.default_rng(seed)
    means = rng.binomial(n, p, size=resamples) / n  # (resamples,)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


@register("accuracy")
def compute(records: list[dict], resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """acc and acc_norm over the original records, each with a bootstrap interval, and n."""
    originals = of_variant(records, ORIGINAL)
    outcomes = {
        "acc": [bool(r["correct"]) for r in originals],
        # Generation items have no length-normalised score; acc_norm covers the others.
        "acc_norm": [bool(r["correct_norm"]) for r in originals if "correct_norm" in r],
    }
    out: dict = {"n": len(outcomes["acc"]), "n_norm": len(outcomes["acc_norm"])}
    for name, correct in outcomes.items():
        if correct:
            low, high = bootstrap_interval(correct, resamples, seed, level)
            out.update(
                {name: sum(correct) / len(correct), f"{name}_low": low, f"{name}_high": high}
            )
        else:
            out.update({name: None, f"{name}_low": None, f"{name}_high": None})
    return out
