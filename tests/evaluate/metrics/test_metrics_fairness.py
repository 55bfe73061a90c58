"""Counterfactual accuracy gaps and flip rates."""

from __future__ import annotations

import pytest

from lmforge.evaluate.metrics.fairness import compute


def test_gap_and_flip_rate_hand_values(mc):
    records = [
        # originals: a, b, c right; d wrong
        mc("a", True),
        mc("b", True),
        mc("c", True),
        mc("d", False),
        # names: a same, b flips to wrong, d flips to right, c unchanged
        mc("a", True, variant="names"),
        mc("b", False, variant="names"),
        mc("c", True, variant="names"),
        mc("d", True, variant="names"),
        # pronouns on a and b only: b flips
        mc("a", True, variant="pronouns"),
        mc("b", False, variant="pronouns"),
        # a perturbation, not a counterfactual
        mc("a", False, variant="typos"),
    ]
    out = compute(records)
    names, pronouns = out["by_variant"]["names"], out["by_variant"]["pronouns"]
    assert set(out["by_variant"]) == {"names", "pronouns"}
    assert names == {"acc": 0.75, "acc_original": 0.75, "gap": 0.0, "flip_rate": 0.5, "n": 4}
    # paired on a, b only: original 1.0, counterfactual 0.5
    assert pronouns == {"acc": 0.5, "acc_original": 1.0, "gap": -0.5, "flip_rate": 0.5, "n": 2}
    assert out["max_abs_gap"] == 0.5 and out["max_flip_rate"] == 0.5 and out["n"] == 6


def test_flip_counts_a_changed_wrong_answer(mc):
    # Both wrong, but a 3-way item can be wrong in two different ways: that is a flip.
    orig, cf = mc("a", False), mc("a", False, variant="dialect")
    orig["pred"], cf["pred"] = 1, 2  # target 0 of choices 0, 1, 2
    out = compute([orig, cf])["by_variant"]["dialect"]
    assert out["gap"] == 0.0 and out["flip_rate"] == 1.0


def test_generation_items_flip_on_output_text():
    def gen(variant: str, output: str) -> dict:
        return {"task": "g", "item": "x", "variant": variant, "output": output, "correct": True}

    out = compute([gen("original", "Paris"), gen("names", "paris")])
    assert out["by_variant"]["names"]["flip_rate"] == 1.0


def test_unpaired_counterfactuals_are_left_out(mc):
    out = compute([mc("a", True), mc("z", False, variant="names")])
    assert out["by_variant"]["names"] == {
        "acc": None,
        "acc_original": None,
        "gap": None,
        "flip_rate": None,
        "n": 0,
    }
    assert out["max_abs_gap"] is None


def test_explicit_variants(mc):
    records = [mc("a", True), mc("a", False, variant="race")]
    assert compute(records)["by_variant"] == {}
    assert compute(records, variants=["race"])["by_variant"]["race"]["gap"] == pytest.approx(-1.0)
