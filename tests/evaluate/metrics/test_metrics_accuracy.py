"""acc / acc_norm with a bootstrap interval."""

from __future__ import annotations

import pytest

from lmforge.errors import InvalidInputError
from lmforge.evaluate.metrics.accuracy import bootstrap_interval, compute


def test_acc_counts_only_original_records(mc):
    records = [mc(str(i), i < 3) for i in range(4)] + [mc("0", False, variant="typos")]
    records[3]["correct_norm"] = True  # norm rescues the last item
    out = compute(records)
    assert out["n"] == 4 and out["n_norm"] == 4
    assert out["acc"] == 0.75
    assert out["acc_norm"] == 1.0
    assert out["acc_norm_low"] == out["acc_norm_high"] == 1.0  # no variance to resample


def test_interval_contains_estimate_and_is_deterministic_under_seed(mc):
    records = [mc(str(i), i % 3 != 0) for i in range(60)]  # 40 of 60 correct
    out = compute(records, seed=7)
    assert out["acc"] == pytest.approx(2 / 3)
    assert out["acc_low"] < out["acc"] < out["acc_high"]
    # A 95% interval of a proportion near 2/3 over 60 items is about ±0.12 wide.
    assert 0.08 < out["acc"] - out["acc_low"] < 0.16
    assert compute(records, seed=7) == out


def test_generation_items_count_for_acc_not_acc_norm(mc):
    gen = {"task": "g", "item": "x", "variant": "original", "output": "4", "correct": False}
    out = compute([mc("a", True), gen])
    assert out["acc"] == 0.5 and out["n"] == 2
    assert out["acc_norm"] == 1.0 and out["n_norm"] == 1


def test_no_records_gives_nulls():
    out = compute([])
    assert out["n"] == 0 and out["acc"] is None and out["acc_high"] is None


def test_bad_interval_options():
    with pytest.raises(InvalidInputError):
        bootstrap_interval([True], resamples=0)
    with pytest.raises(InvalidInputError):
        bootstrap_interval([True], level=1.0)
