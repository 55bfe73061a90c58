"""Perplexity family: token, word and byte perplexity and bits per byte of scored texts."""

from __future__ import annotations

import math

from lmforge.evaluate.metrics.registry import register


@register("perplexity")
def compute(records: list[dict]) -> dict:
    """Pooled over records with `logprob`, `tokens`, `bytes` and `words` (as lm-eval does)."""
    rows = [r for r in records if "logprob" in r and r.get("tokens")]
    if not rows:
        return {
            "token_perplexity": None,
            "word_perplexity": None,
            "byte_perplexity": None,
            "bits_per_byte": None,
            "n": 0,
        }
    nll = -sum(r["logprob"] for r in rows)
    tokens = sum(r["tokens"] for r in rows)
    n_bytes = sum(r.get("bytes", 0) for r in rows) or 1
    words = sum(r.get("words", 0) for r in rows) or 1
    return {
        "token_perplexity": math.exp(nll / tokens),
        "word_perplexity": math.exp(nll / words),
        "byte_perplexity": math.exp(nll / n_bytes),
        "bits_per_byte": nll / n_bytes / math.log(2),
        "n": len(rows),
    }
