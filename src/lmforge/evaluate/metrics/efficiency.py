"""Efficiency: throughput and latency percentiles, plus peak memory and labelled energy."""

from __future__ import annotations

import sys

import numpy as np

from lmforge.energy import EnergyMeter
from lmforge.errors import InvalidInputError
from lmforge.evaluate.metrics.registry import register


@register("efficiency")
def compute(records: list[dict], wall_s: float | None = None) -> dict:
    """Items/s and tokens/s (over summed latencies, or over `wall_s`), latency p50/p90/p99."""
    if wall_s is not None and wall_s <= 0:
        raise InvalidInputError(f"wall_s must be positive, got {wall_s}", "pass the run's seconds")
    timed = [r for r in records if "latency_s" in r]
    latency = np.array([r["latency_s"] for r in timed], dtype=float)  # (n,)
    # With a wall clock every record counts (batched runs overlap items); without one, only
    # the records that carry their own latency.
    counted = records if wall_s is not None else timed
    seconds = float(wall_s) if wall_s is not None else float(latency.sum())
    tokens = sum(int(r.get("tokens", 0)) for r in counted)
    p50, p90, p99 = np.percentile(latency, [50, 90, 99]) if len(latency) else (None,) * 3
    return {
        "items_per_s": len(counted) / seconds if seconds > 0 else None,
        "tokens_per_s": tokens / seconds if seconds > 0 else None,
        "latency_p50_s": None if p50 is None else float(p50),
        "latency_p90_s": None if p90 is None else float(p90),
        "latency_p99_s": None if p99 is None else float(p99),
        "seconds": seconds,
        "tokens": tokens,
        "n": len(counted),
    }


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (from getrusage ru_maxrss)."""
    import resource  # Unix only, so imported here

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


DECODE_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def decode_speed(model, new_tokens: int = 64, repeats: int = 3) -> dict:
    """Single-stream greedy decode speed and energy per token of a loaded `Model`.

    Generates exactly `new_tokens` tokens (EOS ignored) from one fixed prompt `repeats` times
    after a warm-up; tok/s counts the tokens after the first over the time after the first
    (prefill excluded), the median of the runs is the figure.
    """
    import statistics

    from lmforge.engine.generate import generate_batch
    from lmforge.engine.params import SamplingParams

    prompt = [model.encode(DECODE_PROMPT)]
    params = SamplingParams(max_tokens=new_tokens)

    def run():
        return generate_batch(model.decoder, model.tokenizer, prompt, params)[0]

    run()  # warm-up: first-call allocations, lazy tables
    speeds, tokens = [], 0
    with EnergyMeter() as meter:
        for _ in range(repeats):
            done = run()
            tokens += len(done.token_ids)
            if done.decode_s > 0:
                speeds.append((len(done.token_ids) - 1) / done.decode_s)
    energy = meter.result or {}
    return {
        "decode_tok_s": round(statistics.median(speeds), 2) if speeds else None,
        "runs": [round(s, 2) for s in speeds],
        "new_tokens": new_tokens,
        "energy_per_token_j": round(energy.get("joules", 0.0) / tokens, 5) if tokens else None,
        "energy_method": energy.get("method"),
    }
