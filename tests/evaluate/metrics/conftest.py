"""Builders for the per-item result records that the metric families read."""

from __future__ import annotations

import math

import pytest


def mc_record(
    item: str,
    correct: bool,
    variant: str = "original",
    task: str = "t",
    pred: int | None = None,
    confidence: float = 0.75,
    latency_s: float = 0.1,
    tokens: int = 10,
) -> dict:
    """A two-choice record whose softmax over `scores` gives `confidence` on the predicted choice."""
    target = 0
    pred = (0 if correct else 1) if pred is None else pred
    scores = [0.0, 0.0]
    scores[pred], scores[1 - pred] = math.log(confidence), math.log(1 - confidence)
    return {
        "task": task,
        "item": item,
        "variant": variant,
        "choices": ["yes", "no"],
        "target": target,
        "scores": scores,
        "scores_norm": [s / 3 for s in scores],
        "pred": pred,
        "pred_norm": pred,
        "correct": pred == target,
        "correct_norm": pred == target,
        "latency_s": latency_s,
        "tokens": tokens,
    }


@pytest.fixture
def mc():
    """The `mc_record` builder."""
    return mc_record
