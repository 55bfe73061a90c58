"""Equal-mass ECE and selective accuracy, on hand-built probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.evaluate.metrics.calibration import (
    compute,
    expected_calibration_error,
    softmax,
)


def test_softmax_is_stable_and_sums_to_one():
    p = softmax([-1000.0, -1000.0 + np.log(3)])
    assert p == pytest.approx([0.25, 0.75])


def test_perfectly_calibrated_is_zero(mc):
    # 100 items in blocks of 10 at one confidence each, with exactly 10 * confidence right;
    # sorting by confidence keeps each block together, so every equal-mass bin is one block.
    records = []
    for block, conf in enumerate([0.6] * 3 + [0.7] * 2 + [0.8] * 3 + [0.9] * 2):
        hits = round(10 * conf)
        records += [mc(f"{block}-{i}", i < hits, confidence=conf) for i in range(10)]
    out = compute(records)
    assert out["n"] == 100
    assert out["ece"] == pytest.approx(0.0, abs=1e-12)
    assert out["mean_confidence"] == pytest.approx(out["acc"]) == pytest.approx(0.74)


def test_overconfident_hand_value(mc):
    # Confidence 0.9 on every item, half of them right: ECE = |0.5 - 0.9| = 0.4.
    records = [mc(str(i), i % 2 == 0, confidence=0.9) for i in range(20)]
    out = compute(records)
    assert out["ece"] == pytest.approx(0.4)
    assert out["mean_confidence"] == pytest.approx(0.9)
    assert out["acc"] == 0.5


def test_equal_mass_not_equal_width(mc):
    # Sorted: 0.55 wrong, 0.6 right | 0.9 right, 0.95 right.
    # Equal-mass (2 bins of 2): 0.5*|0.5-0.575| + 0.5*|1.0-0.925| = 0.075.
    # Equal-width bins would put all four in [0.5, 1.0] and give |0.75 - 0.75| = 0.
    records = [
        mc("a", True, confidence=0.9),
        mc("b", False, confidence=0.55),
        mc("c", True, confidence=0.95),
        mc("d", True, confidence=0.6),
    ]
    out = compute(records, bins=2)
    assert out["ece"] == pytest.approx(0.075)
    assert out["selective_acc_50"] == 1.0  # the two most confident are both right
    assert out["acc"] == 0.75


def test_selective_accuracy_ranks_by_confidence(mc):
    records = [
        mc("a", False, confidence=0.99),
        mc("b", True, confidence=0.7),
        mc("c", True, confidence=0.6),
        mc("d", True, confidence=0.55),
    ]
    assert compute(records)["selective_acc_50"] == 0.5  # {0.99 wrong, 0.7 right}
    assert compute(records, coverage=0.25)["selective_acc_25"] == 0.0


def test_more_bins_than_items_and_uneven_split():
    conf = np.array([0.6, 0.7, 0.8])
    correct = np.array([True, False, True])
    # min(10, 3) = 3 bins of one item each: (0.4 + 0.7 + 0.2) / 3
    assert expected_calibration_error(conf, correct) == pytest.approx(1.3 / 3)
    # 2 bins of sizes 2 and 1: (2/3)*|0.5-0.65| + (1/3)*|1-0.8|
    assert expected_calibration_error(conf, correct, 2) == pytest.approx(0.1 + 0.2 / 3)


def test_only_original_records_with_scores(mc):
    records = [mc("a", True, confidence=0.9), mc("a", False, variant="typos")]
    records.append({"task": "g", "item": "x", "variant": "original", "output": "", "correct": 1})
    assert compute(records)["n"] == 1
    assert compute([])["ece"] is None
