"""Evaluation results for people: terminal tables, and an HTML page comparing models."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError, NotFoundError

HEADLINES = [
    ("acc", "acc", "{:.3f}"),
    ("acc_norm", "acc_norm", "{:.3f}"),
    ("ece", "ECE", "{:.3f}"),
    ("worst_case_acc", "worst-case acc", "{:.3f}"),
    ("flip_rate", "flip rate", "{:.3f}"),
    ("fairness_gap", "fairness gap", "{:.3f}"),
    ("stereotype_rate", "stereotype rate", "{:.3f}"),
    ("toxic_rate", "toxic rate", "{:.3f}"),
    ("pii_rate", "PII rate", "{:.3f}"),
    ("items_per_s", "items/s", "{:.1f}"),
]


def _fmt(value: Any, pattern: str) -> str:
    return pattern.format(value) if isinstance(value, int | float) else "-"


def print_result(doc: dict[str, Any]) -> None:
    """One row per task with the headline figure of each metric family."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{doc['model']['name']} ({doc['model']['dtype']}) on {doc['suite']}")
    from lmforge.evaluate.runner import HEADLINE_FIGURES

    rows = {
        task: {
            name: families.get(family, {}).get(key)
            for name, (family, key) in HEADLINE_FIGURES.items()
        }
        for task, families in doc["tasks"].items()
    }
    summary = doc.get("summary", {})
    # only the families this suite measured: a toxicity run has no accuracy column
    shown = [
        h
        for h in HEADLINES
        if any(isinstance(r.get(h[0]), int | float) for r in [*rows.values(), summary])
    ]
    table.add_column("task")
    for _, label, _ in shown:
        table.add_column(label, justify="right")
    for task, flat in rows.items():
        table.add_row(task, *(_fmt(flat.get(key), p) for key, _, p in shown))
    table.add_row("[bold]mean[/bold]", *(_fmt(summary.get(key), p) for key, _, p in shown))
    Console().print(table)
    energy = doc.get("energy") or {}
    Console().print(
        f"{doc['wall_s']:.1f} s, peak memory {doc.get('peak_memory_mb', 0):.0f} MB, "
        f"energy {energy.get('joules', 0):.0f} J ({energy.get('method', '?')})"
    )


def load_results(names: tuple[str, ...] | list[str], suite: str) -> list[dict[str, Any]]:
    """Result documents for each model name (its artifact's evals/<suite>.json) or JSON path."""
    from lmforge.store import Store

    if len(names) < 1:
        raise InvalidInputError(
            "nothing to compare", "give model names or result files: eval compare A B"
        )
    docs = []
    for name in names:
        path = Path(name)
        if not (path.suffix == ".json" and path.is_file()):
            path = Store().get(name).path / "evals" / f"{Path(suite).stem}.json"
        if not path.is_file():
            raise NotFoundError(
                f"no {suite} results for {name} ({path})",
                f"run: lmforge eval {name} --suite {suite}",
            )
        doc = json.loads(path.read_text())
        doc["label"] = name
        docs.append(doc)
    return docs


# Cost figures of a result document, shown under the headline figures in a comparison.
COSTS = [
    ("size_mb", "size on disk (MB)", "{:.1f}"),
    ("peak_memory_mb", "peak memory (MB)", "{:.0f}"),
    ("decode_tok_s", "decode tok/s", "{:.1f}"),
    ("energy_per_token_mj", "energy / token (mJ)", "{:.1f}"),
]


def costs(doc: dict[str, Any]) -> dict[str, float | None]:
    decode = doc.get("decode") or {}
    energy = decode.get("energy_per_token_j")
    return {
        "size_mb": doc.get("size_mb") if doc.get("size_mb") is not None else _size_mb(doc),
        "peak_memory_mb": doc.get("peak_memory_mb"),
        "decode_tok_s": decode.get("decode_tok_s"),
        "energy_per_token_mj": None if energy is None else energy * 1e3,
    }


def pareto(docs: list[dict[str, Any]]) -> list[bool]:
    """Which models no other model beats on accuracy, decode speed and size all at once.

    A model is dominated when another is at least as accurate, at least as fast and at most
    as large, and strictly better on one of them. Missing figures are left out of the test.
    """
    points = []
    for d in docs:
        c = costs(d)
        points.append((d.get("summary", {}).get("acc"), c["decode_tok_s"], c["size_mb"]))

    def no_worse(a, b):  # a no worse than b on every figure both have
        pairs = [(a[0], b[0], 1), (a[1], b[1], 1), (a[2], b[2], -1)]
        known = [(x, y, sign) for x, y, sign in pairs if x is not None and y is not None]
        return known, all(sign * (x - y) >= 0 for x, y, sign in known)

    out = []
    for i, p in enumerate(points):
        dominated = False
        for j, q in enumerate(points):
            known, ok = no_worse(q, p)
            if i != j and known and ok and any(x != y for x, y, _ in known):
                dominated = True
                break
        out.append(not dominated)
    return out


def print_compare(docs: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="comparison (* = Pareto-optimal on accuracy, decode tok/s and size)")
    table.add_column("figure")
    for d, best in zip(docs, pareto(docs), strict=True):
        table.add_column(d["label"] + (" *" if best else ""), justify="right")
    for key, label, pattern in HEADLINES:
        values = [d.get("summary", {}).get(key) for d in docs]
        if any(isinstance(v, int | float) for v in values):
            table.add_row(label, *(_fmt(v, pattern) for v in values))
    for key, label, pattern in COSTS:
        table.add_row(label, *(_fmt(costs(d)[key], pattern) for d in docs))
    Console().print(table)


def _size_mb(doc: dict[str, Any]) -> float | None:
    from lmforge.store import Store

    name = doc.get("model", {}).get("artifact")
    if not name:
        return None
    try:
        art = Store().get(name)
    except NotFoundError:
        return None
    return art.size_bytes() / 1e6


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Base64 PNGs: accuracy vs decode tok/s and vs size (Pareto-optimal models as stars),
    and a radar of the families."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    out = {}
    front = pareto(docs)
    for key, xlabel, getter in (
        ("speed", "decode tok/s", lambda d: costs(d)["decode_tok_s"]),
        ("size", "size on disk (MB)", lambda d: costs(d)["size_mb"]),
    ):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for d, best in zip(docs, front, strict=True):
            x, y = getter(d), d.get("summary", {}).get("acc")
            if x is not None and y is not None:
                ax.scatter([x], [y], s=80 if best else 40, marker="*" if best else "o")
                ax.annotate(d["label"], (x, y), textcoords="offset points", xytext=(5, 5))
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.ticklabel_format(axis="x", useOffset=False, style="plain")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        out[key] = _png(fig)
        plt.close(fig)
    # radar: higher is better on every axis, so ECE, flip rate and bias are turned around
    axes = [
        ("accuracy", lambda s: s.get("acc")),
        ("calibration", lambda s: None if s.get("ece") is None else 1 - s["ece"]),
        ("robustness", lambda s: s.get("worst_case_acc")),
        ("fairness", lambda s: None if s.get("flip_rate") is None else 1 - s["flip_rate"]),
        (
            "unbiased",
            lambda s: (
                None
                if s.get("stereotype_rate") is None
                else 1 - 2 * abs(s["stereotype_rate"] - 0.5)
            ),
        ),
    ]
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False).tolist()
    fig = plt.figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot(polar=True)
    for d in docs:
        values = [f(d.get("summary", {})) or 0.0 for _, f in axes]
        ax.plot([*angles, angles[0]], [*values, values[0]], label=d["label"])
        ax.fill([*angles, angles[0]], [*values, values[0]], alpha=0.1)
    ax.set_xticks(angles)
    ax.set_xticklabels([name for name, _ in axes])
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.1), fontsize=8)
    out["radar"] = _png(fig)
    plt.close(fig)
    return out


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>lmforge eval comparison</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5rem; }
th, td { border: 1px solid #ccc; padding: .35rem .7rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.plots img { margin: .5rem; border: 1px solid #eee; }
</style></head><body>
<h1>Model comparison</h1>
<p>Suite <b>{{ suite }}</b>. Figures are means over tasks; see each result file for per-item records.
&#9733; marks the Pareto-optimal models: none other is at least as accurate, as fast to decode and as small, and better on one.</p>
<table>
<tr><th>figure</th>{% for d in docs %}<th>{{ d.label }}{% if front[loop.index0] %} &#9733;{% endif %}</th>{% endfor %}</tr>
{% for key, label, pattern in headlines %}
<tr><td>{{ label }}</td>{% for d in docs %}<td>{{ fmt(d.summary.get(key), pattern) }}</td>{% endfor %}</tr>
{% endfor %}
{% for key, label, pattern in cost_rows %}
<tr><td>{{ label }}</td>{% for d in docs %}<td>{{ fmt(costs(d)[key], pattern) }}</td>{% endfor %}</tr>
{% endfor %}
<tr><td>energy (J)</td>{% for d in docs %}<td>{{ fmt((d.energy or {}).get('joules'), '{:.0f}') }} {{ (d.energy or {}).get('method', '') }}</td>{% endfor %}</tr>
</table>
<div class="plots">
<img alt="accuracy against decode tokens per second" src="data:image/png;base64,{{ plots.speed }}">
<img alt="accuracy against size" src="data:image/png;base64,{{ plots.size }}">
<img alt="radar of the metric families" src="data:image/png;base64,{{ plots.radar }}">
</div>
</body></html>
"""


def write_html(docs: list[dict[str, Any]], path: str | Path) -> Path:
    """The comparison page with its plots embedded; written atomically."""
    import jinja2

    env = jinja2.Environment(autoescape=True)
    html = env.from_string(_PAGE).render(
        docs=docs,
        suite=docs[0].get("suite", ""),
        headlines=HEADLINES,
        cost_rows=COSTS,
        costs=costs,
        front=pareto(docs),
        fmt=_fmt,
        plots=plots(docs),
    )
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(html)
    os.replace(tmp, path)
    return path
