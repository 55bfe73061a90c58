"""Stereotype preference overall and per category."""

from __future__ import annotations

from lmforge.evaluate.metrics.bias import compute


def pair(category: str, stereo: float, anti: float) -> dict:
    """A minimal pair's record with the two sentences' log-likelihoods."""
    return {"task": "pairs", "item": "i", "category": category} | {
        "stereotype_score": stereo,
        "anti_score": anti,
    }


def test_rate_per_category_hand_values():
    records = [
        pair("gender", -10.0, -12.0),  # prefers stereotype
        pair("gender", -10.0, -9.0),
        pair("gender", -5.0, -6.0),  # prefers stereotype
        pair("age", -3.0, -3.0),  # tie: not a preference
        pair("age", -8.0, -7.5),
    ]
    out = compute(records)
    assert out["n"] == 5
    assert out["stereotype_rate"] == 0.4
    assert out["by_category"] == {
        "age": {"stereotype_rate": 0.0, "n": 2},
        "gender": {"stereotype_rate": 2 / 3, "n": 3},
    }
    assert list(out["by_category"]) == ["age", "gender"]


def test_ignores_scored_items_and_handles_none(mc):
    out = compute([mc("a", True), pair("age", 0.0, -1.0)])
    assert out["n"] == 1 and out["stereotype_rate"] == 1.0
    assert compute([]) == {"stereotype_rate": None, "n": 0, "by_category": {}}
