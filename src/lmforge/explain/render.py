"""An `Explanation` as a self-contained HTML page, a PNG heatmap, JSON, or terminal colours.

`write_explanation` puts explain.html, heatmap.png and explain.json in a folder, each
written to a temporary file and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import base64
import io
import json
import os
from functools import cache
from pathlib import Path

from lmforge.explain.explainer import Explanation

POSITIVE = (214, 39, 40)  # red: the token pushed the score up
NEGATIVE = (31, 119, 180)  # blue: it pulled the score down


def shown(text: str) -> str:
    """A token's text made visible: newlines and tabs as symbols, other control characters
    escaped, an empty token as ∅."""
    text = text.replace("\n", "↵").replace("\t", "⇥")
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text) or "∅"


def row_scale(values: list[float | None]) -> float:
    """The largest |attribution| of a row (1 when all are zero), to map values to colour."""
    return max((abs(v) for v in values if v is not None), default=0.0) or 1.0


def colour(value: float | None, scale: float) -> tuple[int, int, int]:
    """White blended toward red (positive) or blue (negative) by |value| / scale."""
    if value is None:
        return (238, 238, 238)
    a = min(abs(value) / scale, 1.0)
    r, g, b = POSITIVE if value >= 0 else NEGATIVE
    return tuple(round(255 * (1 - a) + c * a) for c in (r, g, b))


def source_columns(explanation: Explanation) -> list[int]:
    """Indices of the tokens that are a source of at least one row (the heatmap's columns)."""
    n = len(explanation.tokens)
    return [i for i in range(n) if any(r.attributions[i] is not None for r in explanation.rows)]


def heatmap_png(explanation: Explanation) -> bytes:
    """The rows x sources matrix, each row scaled by its largest |value|, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cols = source_columns(explanation)
    matrix = np.array(
        [
            [
                np.nan
                if r.attributions[i] is None
                else r.attributions[i] / row_scale(r.attributions)
                for i in cols
            ]
            for r in explanation.rows
        ],
        dtype=float,
    ).reshape(len(explanation.rows), len(cols))
    width = min(max(4.0, 0.38 * len(cols) + 2.5), 40.0)
    height = min(max(2.2, 0.38 * len(explanation.rows) + 1.8), 30.0)
    fig, ax = plt.subplots(figsize=(width, height))
    cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#eeeeee")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=-1, vmax=1, aspect="auto")
    if len(cols) <= 120:
        ax.set_xticks(range(len(cols)))
        ax.set_xticklabels([shown(explanation.tokens[i]["text"]) for i in cols], rotation=90)
    ax.set_yticks(range(len(explanation.rows)))
    ax.set_yticklabels([r.label for r in explanation.rows])
    ax.set_xlabel("source token")
    ax.set_ylabel("explained")
    ax.set_title(f"{explanation.method} — {explanation.model}")
    fig.colorbar(image, ax=ax, label="attribution / row max |attribution|", shrink=0.8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


@cache
def _template():
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("lmforge.explain", "templates"), autoescape=select_autoescape()
    )
    env.filters["shown"] = shown
    return env.get_template("explain.html")


def render_html(explanation: Explanation, png: bytes | None = None) -> str:
    """The page: token heatmap with hover details, attention per layer and head, logit lens."""
    png = heatmap_png(explanation) if png is None else png
    rows = []
    for r in explanation.rows:
        scale = row_scale(r.attributions)
        rows.append(
            {
                "label": r.label,
                "score": r.score,
                "baseline_score": r.baseline_score,
                "cells": [
                    {"value": v, "rgb": "rgb({},{},{})".format(*colour(v, scale))}
                    for v in r.attributions
                ],
            }
        )
    lens = explanation.logit_lens
    return _template().render(
        e=explanation,
        rows=rows,
        lens=lens,
        lens_rgb=lambda p: "rgb({},{},{})".format(*colour(p, 1.0)),
        png=base64.b64encode(png).decode(),
        data={
            "tokens": [t["text"] for t in explanation.tokens],
            "attention": explanation.attention,
        },
    )


def print_terminal(explanation: Explanation, console=None) -> None:
    """Each explained token and its sources, coloured by attribution (rich)."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    console.print(
        f"[bold]{explanation.method}[/] on [bold]{explanation.model}[/]  "
        "[red]red[/]: raises the score, [blue]blue[/]: lowers it"
    )
    for r in explanation.rows:
        scale = row_scale(r.attributions)
        line = Text(f"{r.label} ({r.score:+.3f}): ", style="bold")
        for token, value in zip(explanation.tokens, r.attributions, strict=True):
            if value is not None:
                line.append(
                    shown(token["text"]),
                    style="black on rgb({},{},{})".format(*colour(value, scale)),
                )
        console.print(line)
    for note in explanation.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)


def _write_atomic(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def write_explanation(explanation: Explanation, out_dir: str | Path) -> dict[str, Path]:
    """explain.html, heatmap.png and explain.json in `out_dir` (created); their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    png = heatmap_png(explanation)
    doc = json.dumps(explanation.to_json(), ensure_ascii=False, allow_nan=False)
    return {
        "json": _write_atomic(out / "explain.json", doc.encode()),
        "png": _write_atomic(out / "heatmap.png", png),
        "html": _write_atomic(out / "explain.html", render_html(explanation, png).encode()),
    }
