"""The energy ledger: per-step rows labelled measured or estimated, totals and emissions."""

from __future__ import annotations

import pytest

from lmforge.errors import InvalidInputError
from lmforge.report import energy_ledger
from lmforge.report.energy import WORLD_AVERAGE_G_PER_KWH


def test_rows_totals_and_labels(lineage):
    ledger = energy_ledger("ft")
    rows = {(r["artifact"], r["step"]): r for r in ledger["rows"]}
    assert list(rows) == [("base", "import"), ("ft", "tune"), ("ft", "eval core")]
    imp = rows["base", "import"]  # import records no energy: estimated from its wall time
    assert imp["joules"] == pytest.approx(125.0) and imp["method"] == "estimated"
    assert (
        "recorded no energy" in imp["note"]
        and imp["source"] == "base/artifact.json#timings.total_s"
    )
    assert (
        rows["ft", "tune"]["joules"] == 300.0
        and rows["ft", "tune"]["source"] == "ft/artifact.json#energy"
    )
    total = ledger["total"]
    assert total["joules"] == pytest.approx(445.0)
    assert total["kwh"] == pytest.approx(445.0 / 3.6e6)
    assert total["g_co2e"] == pytest.approx(445.0 / 3.6e6 * WORLD_AVERAGE_G_PER_KWH)
    assert total["label"] == "estimated" and not total["measured"]
    assert all(not r["measured"] for r in ledger["rows"])


def test_grid_intensity_scales_emissions(lineage):
    low = energy_ledger("ft", grid_g_per_kwh=50)
    assert low["total"]["g_co2e"] == pytest.approx(445.0 / 3.6e6 * 50)
    assert low["grid_source"] == "given by the user"


def test_all_measured_is_measured_and_one_estimate_makes_it_estimated(lineage, make_core_doc):
    lineage.artifact("m", kind="model", step="import", timings={"total_s": 1.0},
                     energy={"joules": 10.0, "method": "rapl", "note": "measured by RAPL"})  # fmt: skip
    lineage.eval("m", "core", make_core_doc(0.5, 0.0, joules=5.0, method="nvml"))
    ledger = energy_ledger("m")
    assert ledger["total"]["label"] == "measured" and ledger["total"]["joules"] == 15.0
    lineage.eval("m", "bias", make_core_doc(0.5, 0.0, joules=5.0, method="estimated"))
    assert energy_ledger("m")["total"]["label"] == "estimated"


def test_a_step_with_neither_energy_nor_time_makes_the_total_incomplete(lineage):
    lineage.artifact("bare", kind="model", step="quantize", parent="base")
    ledger = energy_ledger("bare")
    row = ledger["rows"][-1]
    assert row["joules"] is None and row["method"] == "missing"
    assert "incomplete" in ledger["total"]["label"] and ledger["total"]["missing"] == 1


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf")])
def test_bad_grid_intensity(lineage, bad):
    with pytest.raises(InvalidInputError, match="invalid grid intensity"):
        energy_ledger("ft", grid_g_per_kwh=bad)
