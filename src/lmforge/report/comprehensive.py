"""`lmforge report`: the comprehensive report over a pipeline run or a set of artifacts.

Markdown (`report.md`, charts in `charts/`) and a self-contained HTML page (`report.html`,
charts as data URLs, the lineage graph as inline SVG, no outside CSS/JS/fonts); a PDF
printed from the HTML when chromium (or weasyprint) is installed. Sections: overview,
performance, efficiency and energy, adaptation, compression frontier, robustness, fairness
and bias, interpretability, guard results, regulatory status, lineage.

Every number is read from a stored result (`sections.py`) and rendered with a numbered
source (`file#key`); what nothing records is listed as a gap with the command that fills it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError, NotFoundError
from lmforge.io import write_text_atomic
from lmforge.report import lineage as lineage_graph
from lmforge.report import plots, sections
from lmforge.report.facts import Fact, gather
from lmforge.report.render import TEMPLATES, show
from lmforge.report.sections import Evidence
from lmforge.store import Store, home

GUARD_FILE = "guard/eval.json"  # under $LMFORGE_HOME: the stored guard evaluation


def resolve(targets: list[str] | tuple[str, ...], store: Store | None = None):
    """(artifact names, run name or None) for `lmforge report RUN_OR_MODELS...`.

    One target that is a folder of `$LMFORGE_HOME/runs/` and not an artifact is a run: its
    artifacts are the ones its finished steps produced.
    """
    store = store or Store()
    targets = list(targets)
    if not targets:
        raise InvalidInputError("nothing to report on", "give a run name or artifact names")
    run_dir = home() / "runs" / targets[0]
    if len(targets) == 1 and not store.exists(targets[0]) and run_dir.is_dir():
        run = sections.read_run(targets[0])
        names = sections.run_artifacts(run, store)
        if not names:
            raise NotFoundError(
                f"run {targets[0]!r} produced no artifact that is in the store",
                f"run `lmforge run RECIPE` to finish it ({run['path']})",
            )
        return names, targets[0]
    for name in targets:
        if not store.exists(name):
            raise NotFoundError(
                f"no artifact or run named {name!r}",
                f"see `lmforge models list`, or the runs in {home() / 'runs'}",
            )
    return list(dict.fromkeys(targets)), None


def default_out(names: list[str], run: str | None) -> Path:
    """`$LMFORGE_HOME/reports/<run or names>/`."""
    return home() / "reports" / (run or "+".join(names))


def write_report(
    names: list[str],
    out: Path,
    *,
    run: str | None = None,
    explain_prompt: str | None = None,
    pdf: bool | None = None,
    guard: bool = True,
    store: Store | None = None,
) -> dict[str, Path]:
    """Write report.md, report.html (and report.pdf) about artifacts `names` into `out`.

    run: a pipeline run whose per-step table goes in too. explain_prompt: explain the last
    model's answer to it (input × gradient, a few tokens). pdf: None makes one when a
    converter is installed. guard: measure the guard's detectors when no stored evaluation
    matches the shipped held-out set (else the report says none is recorded).
    Returns {"markdown", "html"[, "pdf"]} paths.
    """
    store = store or Store()
    out = Path(out)
    if not names:
        raise InvalidInputError("nothing to report on", "give at least one artifact name")
    ev = Evidence(list(dict.fromkeys(names)), {n: gather(n, store) for n in names}, store)
    if run:
        ev.run = sections.read_run(run)
    explained = []
    if explain_prompt:
        explained.append(_explain(ev.names[-1], explain_prompt, out / "explain"))
    if ev.run:
        explained += [
            Path(f)
            for s in ev.run["steps"]
            if s["type"] == "explain" and s["status"] == "done"
            for f in s["files"]
            if Path(f).name == "explain.json" and Path(f).is_file()
        ]
    converter = _converter() if pdf is not False else None
    context = _context(ev, explained, guard, converter, pdf)
    charts = _charts(context, ev)
    for chart in charts.values():
        if "png" in chart:
            _write_bytes(out / chart["file"], chart["png"])
    write_text_atomic(out / "charts" / "lineage.svg", context["lineage_svg"])
    context["charts"] = charts
    paths = {
        "markdown": write_text_atomic(out / "report.md", _render("report.md.j2", context, False)),
        "html": write_text_atomic(out / "report.html", _render("report.html.j2", context, True)),
    }
    if converter:
        made = _print_pdf(paths["html"], out / "report.pdf", converter)
        if made:
            paths["pdf"] = made
    return paths


# -- gathering ---------------------------------------------------------------------------------


def _context(ev: Evidence, explained, guard: bool, converter, pdf) -> dict[str, Any]:
    g = lineage_graph.graph(ev.facts)
    context = {
        "names": ev.names,
        "run": ev.run,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "store": str(ev.store.root),
        "overview": sections.overview(ev),
        "performance": sections.performance(ev),
        "energy": sections.energy(ev),
        "adaptation": sections.lineage_steps(ev, sections.ADAPT_STEPS),
        "frontier": sections.frontier(ev),
        "compression": sections.lineage_steps(ev, sections.COMPRESS_STEPS),
        "robustness": sections.family(ev, "robustness", "robustness"),
        "fairness": [
            sections.family(ev, f, "fairness") for f in ("fairness", "bias", "toxicity", "privacy")
        ],
        "explanations": sections.explanations(explained, ev),
        "guard": _guard(ev, measure=guard),
        "regulatory": sections.regulatory(ev),
        "lineage": g,
        "lineage_svg": lineage_graph.svg(g),
        "pdf": (
            f"report.pdf, printed from the HTML by {Path(converter).name}"
            if converter
            else "not asked for"
            if pdf is False
            else "no PDF: no converter installed (install chromium, or pip install weasyprint)"
        ),
    }
    for x in context["explanations"]:
        x["heatmap_b64"] = (
            base64.b64encode(x["heatmap"].read_bytes()).decode() if x["heatmap"] else None
        )
    if not ev.run:
        context["run_note"] = "artifacts named on the command line (no pipeline run)"
    if not context["adaptation"]:
        ev.gap("adaptation", "no adaptation step (tune, merge) in the lineage",
               f"lmforge tune {ev.names[0]} --data FILE")  # fmt: skip
    context["gaps"] = ev.gaps
    return context


def guard_key() -> dict[str, Any]:
    """What a stored guard evaluation must have been made on to be reused: this held-out
    set (its sha256), this lmforge, and the same embedding packages present or absent."""
    from lmforge import __version__
    from lmforge.guard.detectors import embeddings_available
    from lmforge.guard.labelled import EVAL

    return {
        "dataset_sha256": hashlib.sha256(EVAL.read_bytes()).hexdigest(),
        "lmforge": __version__,
        "embeddings": embeddings_available(),
    }


def _guard(ev: Evidence, measure: bool) -> dict[str, Any]:
    """The guard's detectors on the shipped held-out set: read from the stored evaluation
    (`$LMFORGE_HOME/guard/eval.json`) when its `guard_key` matches, else measured now (a few
    seconds) and stored for the next report."""
    path, key = home() / GUARD_FILE, guard_key()
    stored = None
    if path.is_file():
        try:
            stored = json.loads(path.read_text())
        except ValueError:
            stored = None
    if stored and stored.get("key") == key:
        how = f"read from the stored evaluation {path} (measured {stored.get('created')})"
    elif measure:
        from lmforge.guard.evaluation import evaluate

        started = datetime.now(UTC)
        result = evaluate()
        seconds = (datetime.now(UTC) - started).total_seconds()
        stored = {"key": key, "created": started.isoformat(timespec="seconds"), **result}
        write_text_atomic(path, json.dumps(stored, indent=2) + "\n")
        how = f"measured now ({seconds:.1f} s) and stored in {path}"
    else:
        ev.gap("guard", "no guard evaluation stored for this held-out set (--no-guard "
               "measures none)", f"lmforge report {' '.join(ev.names)}")  # fmt: skip
        return {"how": None, "rows": [], "skipped": []}
    rows = []
    for i, r in enumerate(stored.get("detectors") or []):
        src = f"{path}#detectors.{i}"
        rows.append(
            {
                "check": r.get("check"),
                "detector": r.get("detector"),
                "default": r.get("default"),
                "note": r.get("note"),
                "cells": [
                    sections.cited(r, k, src)
                    for k in (
                        "recall",
                        "false_positive_rate",
                        "precision",
                        "positives",
                        "negatives",
                    )
                ],
            }
        )
    for line in stored.get("skipped") or []:
        ev.gap("guard", line)
    return {"how": how, "dataset": stored.get("dataset"), "rows": rows,
            "skipped": stored.get("skipped") or []}  # fmt: skip


def _explain(name: str, prompt: str, folder: Path) -> Path:
    """Explain `name`'s answer to `prompt` (input × gradient, 12 tokens) into `folder`.

    A chat model is asked as it is used: the prompt is its user turn, under its template.
    """
    from lmforge.explain import ExplainConfig, explain, write_explanation
    from lmforge.models.loader import load

    model = load(name)
    if getattr(model.tokenizer, "chat_template", None):
        prompt = model.tokenizer.decode(model.chat_prompt([{"role": "user", "content": prompt}]))
    config = ExplainConfig(prompt=prompt, method="input_x_gradient", max_new_tokens=12)
    return write_explanation(explain(model, config=config.validate()), folder)["json"]


def _charts(context: dict[str, Any], ev: Evidence) -> dict[str, dict[str, Any]]:
    """key -> {"file", "alt", "png", "b64"} for every chart that has data to show."""
    made: dict[str, tuple[bytes | None, str]] = {
        "accuracy": (plots.accuracy_chart(context["performance"]), "mean accuracy per model and suite"),
        "energy": (
            plots.energy_chart(
                [(f"{r['artifact']} · {r['step']}", r["joules"], r["measured"])
                 for r in context["energy"]["rows"]],
                "energy per step of the lineages and per evaluation (ledger)",
            ),
            "energy per step and evaluation",
        ),
    }  # fmt: skip
    if ev.run:
        rows = [
            (f"{s['id']} ({s['type']})", s["joules"].value, s["method"] in ("nvml", "rapl"))
            for s in ev.run["steps"]
            if s["joules"] is not None
        ]
        made["run_energy"] = (
            plots.energy_chart(rows, f"energy per step of the run {ev.run['name']}"),
            f"energy per step of the run {ev.run['name']}",
        )
    for table in context["frontier"]:
        suite = table["suite"]
        for key, png in plots.frontier_charts(table["docs"]).items():
            what = {"speed": "accuracy against decode tokens per second",
                    "size": "accuracy against size on disk"}[key]  # fmt: skip
            made[f"frontier_{_slug(suite)}_{key}"] = (png, f"{suite}: {what}")
            table.setdefault("charts", []).append(f"frontier_{_slug(suite)}_{key}")
    charts = {}
    for key, (png, alt) in made.items():
        if png:
            charts[key] = {"file": f"charts/{key}.png", "alt": alt, "png": png,
                           "b64": base64.b64encode(png).decode()}  # fmt: skip
    return charts


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in Path(text).stem)


# -- rendering ---------------------------------------------------------------------------------


class Citations:
    """Numbers each distinct source once; renders a value with its footnote number."""

    def __init__(self, html: bool):
        self.html = html
        self.index: dict[str, int] = {}

    def __call__(self, fact: Fact | None) -> str:
        from markupsafe import Markup, escape

        if fact is None:
            return Markup('<span class="none">–</span>') if self.html else "–"
        n = self.index.setdefault(fact.source, len(self.index) + 1)
        text = show(fact.value)
        if not self.html:
            return f"{text.replace('|', '/')}[^{n}]"
        return Markup(
            f'<span class="v" title="{escape(fact.source)}">{escape(text)}</span>'
            f'<sup class="ref"><a href="#src-{n}">{n}</a></sup>'
        )

    def sources(self) -> list[tuple[int, str]]:
        return [(n, s) for s, n in self.index.items()]


def _render(template: str, context: dict[str, Any], html: bool) -> str:
    import jinja2

    from lmforge.report.render import num

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=html,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = num
    env.filters["show"] = show
    cite = Citations(html)
    return env.get_template(template).render(**context, cite=cite)


def _write_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _converter() -> str | None:
    """chromium (or chrome) on PATH, else "weasyprint" when importable, else None."""
    for exe in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(exe)
        if found:
            return found
    import importlib.util

    return "weasyprint" if importlib.util.find_spec("weasyprint") else None


def _print_pdf(html: Path, pdf: Path, converter: str) -> Path | None:
    """Print `html` to `pdf` (atomically); on failure say why on stderr and return None."""
    tmp = pdf.with_name(f".{pdf.name}.tmp-{os.getpid()}")
    try:
        if converter == "weasyprint":
            import weasyprint

            weasyprint.HTML(filename=str(html)).write_pdf(str(tmp))
        else:
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run(
                    [converter, "--headless", "--no-sandbox", "--disable-gpu",
                     f"--user-data-dir={profile}", "--no-pdf-header-footer",
                     f"--print-to-pdf={tmp}", html.resolve().as_uri()],
                    capture_output=True, timeout=120, check=False,
                )  # fmt: skip
        if not tmp.is_file() or tmp.read_bytes()[:4] != b"%PDF":
            raise OSError(f"{Path(converter).name} wrote no PDF")
    except (OSError, subprocess.SubprocessError) as e:
        tmp.unlink(missing_ok=True)
        print(f"note: no PDF made ({e}); the HTML report is complete", file=sys.stderr)
        return None
    os.replace(tmp, pdf)
    return pdf
