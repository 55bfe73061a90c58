"""The report's charts as PNG bytes (matplotlib, Agg): accuracy per model, energy per step.

The frontier charts (accuracy against decode speed and against size) are
`lmforge.evaluate.report.plots`, the same ones `lmforge eval compare --html` draws.
Every bar is a value of the report's tables, so a chart shows nothing the tables do not.
"""

from __future__ import annotations

import base64
import io
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buf.getvalue()


def accuracy_chart(tables: list[dict[str, Any]]) -> bytes | None:
    """Grouped bars: the mean accuracy of each model on each suite; None when none has one."""
    bars = []  # (suite, model, acc)
    for table in tables:
        row = next((r for r in table["rows"] if r["label"] == "acc"), None)
        if row is None:
            continue
        for model, fact in zip(table["models"], row["cells"], strict=True):
            if fact is not None:
                bars.append((table["suite"], model, float(fact.value)))
    if not bars:
        return None
    plt = _pyplot()
    models = list(dict.fromkeys(m for _, m, _ in bars))
    suites = list(dict.fromkeys(s for s, _, _ in bars))
    width = 0.8 / len(suites)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(models) + 2), 3.2))
    for i, suite in enumerate(suites):
        xs, ys = [], []
        for j, model in enumerate(models):
            for s, m, acc in bars:
                if s == suite and m == model:
                    xs.append(j + (i - (len(suites) - 1) / 2) * width)
                    ys.append(acc)
        drawn = ax.bar(xs, ys, width=width, label=suite)
        ax.bar_label(drawn, fmt="%.4g", fontsize=7)
    ax.set_xticks(range(len(models)), models, rotation=15, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.08)
    ax.legend(title="suite", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def energy_chart(rows: list[tuple[str, float, bool]], title: str) -> bytes | None:
    """Horizontal bars of joules per step: (label, joules, measured); estimated ones hatched."""
    rows = [r for r in rows if r[1] is not None]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 0.38 * len(rows) + 1.2))
    labels = [label for label, _, _ in rows]
    for i, (_, joules, measured) in enumerate(rows):
        ax.barh(
            i,
            joules,
            color="#3b7dd8" if measured else "#f0a04b",
            hatch="" if measured else "//",
            edgecolor="#555",
        )
        ax.annotate(f"{joules:.4g} J", (joules, i), xytext=(3, -3), textcoords="offset points",
                    fontsize=7)  # fmt: skip
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("energy (J)")
    ax.set_title(title, fontsize=9)
    from matplotlib.patches import Patch

    ax.legend(
        handles=[
            Patch(facecolor="#3b7dd8", edgecolor="#555", label="measured (NVML/RAPL)"),
            Patch(facecolor="#f0a04b", edgecolor="#555", hatch="//", label="estimated"),
        ],
        fontsize=7,
        loc="lower right",
    )
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def frontier_charts(docs: list[dict[str, Any]]) -> dict[str, bytes]:
    """Accuracy vs decode tok/s and vs size, from `eval compare`. Its radar is left out: it
    draws a family a model was not measured on as 0, and the report shows no invented value."""
    from lmforge.evaluate.report import costs, plots

    out = {}
    for key, b64 in plots(docs).items():
        if key == "radar":
            continue
        if key == "speed" and not any(costs(d)["decode_tok_s"] is not None for d in docs):
            continue  # an empty chart would look like a result
        out[key] = base64.b64decode(b64)
    return out
