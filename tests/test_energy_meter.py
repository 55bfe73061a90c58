"""The labelled energy meter: RAPL packages and wrap-around, NVML, and the estimate."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from lmforge.energy import ASSUMED_WATTS_PER_CORE, EnergyMeter


def make_zone(root: Path, name: str, label: str, energy: int, wrap: int) -> Path:
    zone = root / name
    zone.mkdir()
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{wrap}\n")
    return zone / "energy_uj"


def test_rapl_sums_packages_handles_wraparound_and_skips_subzones(tmp_path):
    pkg0 = make_zone(tmp_path, "intel-rapl:0", "package-0", 900_000, 1_000_000)
    pkg1 = make_zone(tmp_path, "intel-rapl:1", "package-1", 5_000_000, 10_000_000)
    core = make_zone(tmp_path, "intel-rapl:0:0", "core", 100, 1_000_000)
    psys = make_zone(tmp_path, "intel-rapl:2", "psys", 100, 1_000_000)
    with EnergyMeter(powercap=tmp_path, use_nvml=False) as meter:
        pkg0.write_text("400000\n")  # wrapped: 100_000 to the top, then 400_000 -> 0.5 J
        pkg1.write_text("7000000\n")  # +2 J
        core.write_text("999999\n")
        psys.write_text("999999\n")
    assert meter.result["method"] == "rapl"
    assert meter.result["joules"] == pytest.approx(2.5)
    assert "2 CPU package(s)" in meter.result["note"]


def test_unreadable_rapl_falls_back_to_labelled_estimate(tmp_path):
    energy = make_zone(tmp_path, "intel-rapl:0", "package-0", 1, 10)
    # Stands in for a root-only counter (recent kernels): reading it raises OSError, even as root.
    energy.unlink()
    energy.mkdir()
    with EnergyMeter(powercap=tmp_path, use_nvml=False, watts_per_core=4.0) as meter:
        sum(i * i for i in range(200_000))
    result = meter.result
    assert result["method"] == "estimated"
    assert result["joules"] >= 0
    assert "4 W per busy core" in result["note"] and "estimated" in result["note"]


def test_no_sources_gives_estimate_with_the_default_constant(tmp_path):
    with EnergyMeter(powercap=tmp_path / "absent", use_nvml=False) as meter:
        pass
    assert meter.result["method"] == "estimated"
    assert f"{ASSUMED_WATTS_PER_CORE:g} W per busy core" in meter.result["note"]
    assert set(meter.result) == {"joules", "method", "note"}


def fake_pynvml(readings: list[list[int]], count: int = 2) -> types.ModuleType:
    """A stand-in for pynvml whose energy counters step through `readings` (mJ per GPU)."""
    module = types.ModuleType("pynvml")
    calls = {"read": 0, "shutdown": 0}

    def energy(handle: int) -> int:
        value = readings[calls["read"] // count][handle]
        calls["read"] += 1
        return value

    module.nvmlInit = lambda: None
    module.nvmlShutdown = lambda: calls.__setitem__("shutdown", calls["shutdown"] + 1)
    module.nvmlDeviceGetCount = lambda: count
    module.nvmlDeviceGetHandleByIndex = lambda i: i
    module.nvmlDeviceGetTotalEnergyConsumption = energy
    module.calls = calls
    return module


def test_nvml_preferred_when_a_gpu_is_present(tmp_path, monkeypatch):
    fake = fake_pynvml([[1_000, 50_000], [4_000, 51_500]])  # +3 J and +1.5 J
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    make_zone(tmp_path, "intel-rapl:0", "package-0", 0, 10)
    with EnergyMeter(powercap=tmp_path) as meter:
        pass
    assert meter.result["method"] == "nvml"
    assert meter.result["joules"] == pytest.approx(4.5)
    assert fake.calls["shutdown"] == 1


def test_nvml_without_gpu_falls_back(tmp_path, monkeypatch):
    fake = fake_pynvml([], count=0)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with EnergyMeter(powercap=tmp_path) as meter:
        pass
    assert meter.result["method"] == "estimated"
    assert fake.calls["shutdown"] == 1


def test_block_errors_propagate_and_still_measure(tmp_path):
    meter = EnergyMeter(powercap=tmp_path, use_nvml=False)
    with pytest.raises(RuntimeError), meter:
        raise RuntimeError("boom")
    assert meter.result["method"] == "estimated"
