"""Throughput and latency percentiles, and peak memory (the energy meter: tests/test_energy_meter.py)."""

from __future__ import annotations

import pytest

from lmforge.errors import InvalidInputError
from lmforge.evaluate.metrics.efficiency import compute, peak_memory_mb


def test_throughput_and_percentiles_hand_values(mc):
    # latencies 0, 1, ..., 10 s: sum 55; linear-interpolated p50 = 5, p90 = 9, p99 = 9.9
    records = [mc(str(i), True, latency_s=float(i), tokens=11) for i in range(11)]
    out = compute(records)
    assert out["seconds"] == 55.0 and out["n"] == 11 and out["tokens"] == 121
    assert out["items_per_s"] == pytest.approx(11 / 55)
    assert out["tokens_per_s"] == pytest.approx(121 / 55)
    assert out["latency_p50_s"] == pytest.approx(5.0)
    assert out["latency_p90_s"] == pytest.approx(9.0)
    assert out["latency_p99_s"] == pytest.approx(9.9)


def test_wall_clock_option_counts_every_record(mc):
    records = [mc("a", True, latency_s=2.0, tokens=30), mc("b", True, latency_s=2.0, tokens=10)]
    untimed = {"task": "g", "item": "x", "variant": "original", "output": "", "correct": True}
    records.append(untimed | {"tokens": 20})
    out = compute(records, wall_s=2.0)
    assert out["items_per_s"] == 1.5 and out["tokens_per_s"] == 30.0
    assert out["latency_p50_s"] == 2.0  # percentiles still come from the recorded latencies
    with pytest.raises(InvalidInputError, match="wall_s"):
        compute(records, wall_s=0)


def test_empty_gives_nulls():
    out = compute([])
    assert out["items_per_s"] is None and out["latency_p99_s"] is None and out["n"] == 0


def test_peak_memory_is_plausible():
    mb = peak_memory_mb()
    assert 1 < mb < 1e6
