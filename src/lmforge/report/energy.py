"""The energy ledger: what each step of a model's lineage, and each evaluation, used.

Steps and evaluations record `energy` = {"joules", "method", "note"}, where the method is
"nvml" or "rapl" (measured) or "estimated" (from CPU time). A step that records no energy
(import, quantize, prune and merge do not) is estimated here from its recorded wall time,
and labelled so. A total is "measured" only when every row is; otherwise "estimated".
"""

from __future__ import annotations

import math
from typing import Any

from lmforge.energy import ASSUMED_WATTS_PER_CORE
from lmforge.errors import InvalidInputError
from lmforge.store import Store

# World-average carbon intensity of electricity generation: 475 g CO2/kWh, IEA, "Global
# Energy & CO2 Status Report 2019" (figure for 2018). The same world average is codecarbon's
# fallback. Pass your grid's figure with --grid-intensity: it varies from ~20 (hydro, nuclear)
# to ~800 (coal) g/kWh.
WORLD_AVERAGE_G_PER_KWH = 475.0
MEASURED = ("nvml", "rapl")
JOULES_PER_KWH = 3.6e6


def energy_ledger(
    name: str, store: Store | None = None, grid_g_per_kwh: float = WORLD_AVERAGE_G_PER_KWH
) -> dict[str, Any]:
    """Energy per step of `name`'s lineage (root first) and per evaluation, with emissions.

    Returns {"model", "grid_g_per_kwh", "grid_source", "rows": [...], "total": {...}}; each
    row has artifact, step, joules, kwh, g_co2e, method, measured, note and source.
    """
    from lmforge.report.facts import evaluations, lineage

    if not isinstance(grid_g_per_kwh, int | float) or not (
        math.isfinite(grid_g_per_kwh) and grid_g_per_kwh >= 0
    ):
        raise InvalidInputError(
            f"invalid grid intensity {grid_g_per_kwh!r}",
            "give grams of CO2e per kWh, a number >= 0 (world average: 475)",
        )
    store = store or Store()
    chain, _ = lineage(name, store)
    rows = []
    for art in reversed(chain):
        source = f"{art.name}/artifact.json"
        energy = art.meta.get("energy")
        if _valid(energy):
            rows.append(_row(art.name, art.step or "?", energy, f"{source}#energy"))
        else:
            rows.append(
                _unrecorded(art.name, art.step or "?", art.meta.get("timings") or {}, source)
            )
        for ev in evaluations(art, store)[0]:
            energy = ev.doc.get("energy")
            if _valid(energy):
                rows.append(_row(art.name, f"eval {ev.suite}", energy, f"{ev.source}#energy"))
            else:
                wall = {"total_s": ev.doc["wall_s"]} if ev.doc.get("wall_s") else {}
                rows.append(_unrecorded(art.name, f"eval {ev.suite}", wall, ev.source))
    for r in rows:
        r["kwh"] = None if r["joules"] is None else r["joules"] / JOULES_PER_KWH
        r["g_co2e"] = None if r["kwh"] is None else r["kwh"] * grid_g_per_kwh
    known = [r for r in rows if r["joules"] is not None]
    joules = sum(r["joules"] for r in known) if known else None
    missing = len(rows) - len(known)
    all_measured = bool(rows) and all(r["measured"] for r in rows)
    label = "measured" if all_measured else "estimated"
    if missing:
        label += f" (incomplete: {missing} step(s) recorded no energy or time)"
    return {
        "model": name,
        "grid_g_per_kwh": grid_g_per_kwh,
        "grid_source": (
            "IEA world average 2018 (Global Energy & CO2 Status Report 2019)"
            if grid_g_per_kwh == WORLD_AVERAGE_G_PER_KWH
            else "given by the user"
        ),
        "rows": rows,
        "total": {
            "joules": joules,
            "kwh": None if joules is None else joules / JOULES_PER_KWH,
            "g_co2e": None if joules is None else joules / JOULES_PER_KWH * grid_g_per_kwh,
            "measured": all_measured,
            "label": label,
            "missing": missing,
        },
    }


def _valid(energy: Any) -> bool:
    return isinstance(energy, dict) and isinstance(energy.get("joules"), int | float)


def _row(artifact: str, step: str, energy: dict, source: str) -> dict[str, Any]:
    method = str(energy.get("method") or "unknown")
    return {
        "artifact": artifact,
        "step": step,
        "joules": float(energy["joules"]),
        "method": method,
        "measured": method in MEASURED,
        "note": energy.get("note") or ("measured" if method in MEASURED else "estimated"),
        "source": source,
    }


def _unrecorded(artifact: str, step: str, timings: dict, source: str) -> dict[str, Any]:
    """A step that recorded no energy: estimated from its wall time, if it recorded that."""
    seconds = timings.get("total_s")
    if not isinstance(seconds, int | float):
        return {
            "artifact": artifact,
            "step": step,
            "joules": None,
            "method": "missing",
            "measured": False,
            "note": f"the {step} step recorded neither energy nor time",
            "source": source,
        }
    return {
        "artifact": artifact,
        "step": step,
        "joules": seconds * ASSUMED_WATTS_PER_CORE,
        "method": "estimated",
        "measured": False,
        "note": (
            f"estimated, not measured: the {step} step recorded no energy; {seconds:.3f} s of "
            f"wall time × {ASSUMED_WATTS_PER_CORE:g} W (one busy core assumed)"
        ),
        "source": f"{source}#timings.total_s"
        if source.endswith("artifact.json")
        else f"{source}#wall_s",
    }


def print_ledger(ledger: dict[str, Any]) -> None:
    """The ledger as a rich table, one row per step and evaluation, then the total."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"energy of {ledger['model']} and its lineage "
        f"(grid {ledger['grid_g_per_kwh']:g} g CO2e/kWh: {ledger['grid_source']})"
    )
    for col, justify in (
        ("artifact", "left"), ("step", "left"), ("joules", "right"), ("kWh", "right"),
        ("g CO2e", "right"), ("method", "left"), ("note", "left"),
    ):  # fmt: skip
        table.add_column(col, justify=justify)

    def fmt(value, pattern):
        return "-" if value is None else pattern.format(value)

    for r in ledger["rows"]:
        table.add_row(
            r["artifact"], r["step"], fmt(r["joules"], "{:.0f}"), fmt(r["kwh"], "{:.6f}"),
            fmt(r["g_co2e"], "{:.3f}"), r["method"], r["note"],
        )  # fmt: skip
    total = ledger["total"]
    table.add_row(
        "[bold]total[/bold]", "", fmt(total["joules"], "{:.0f}"), fmt(total["kwh"], "{:.6f}"),
        fmt(total["g_co2e"], "{:.3f}"), total["label"], "",
    )  # fmt: skip
    Console().print(table)
