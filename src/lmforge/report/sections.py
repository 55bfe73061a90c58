"""The sections of the comprehensive report, each built from stored results only.

Every number is a `Fact` (value, `file#key`), read from `artifact.json`, `evals/*.json`, a
run's `state.json`, a stored guard evaluation or a stored explanation. What no file records
becomes a `Gap` with the command that records it; nothing is filled in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.energy import ASSUMED_WATTS_PER_CORE
from lmforge.errors import NotFoundError
from lmforge.report.facts import Evaluation, Fact, Facts
from lmforge.store import Store, home

ADAPT_STEPS = ("tune", "merge")
COMPRESS_STEPS = ("quantize", "prune", "distill")


@dataclass
class Gap:
    """Something the report would show but no stored result records, and how to record it."""

    section: str
    what: str
    command: str | None = None


@dataclass
class Evidence:
    """Everything the report reads: the facts of each model, the run, and the gaps found."""

    names: list[str]
    facts: dict[str, Facts]
    store: Store
    run: dict[str, Any] | None = None
    gaps: list[Gap] = field(default_factory=list)

    def gap(self, section: str, what: str, command: str | None = None) -> None:
        self.gaps.append(Gap(section, what, command))

    def evals(self, name: str) -> list[Evaluation]:
        return self.facts[name].own_evals


def _get(doc: dict, path: str) -> Any:
    """`doc[a][b]...` for the dotted `path`, or None."""
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def cited(doc: dict, path: str, source: str, scale: float = 1.0) -> Fact | None:
    """The number at dotted `path` of `doc` (read from `source`) as a Fact, or None."""
    value = _get(doc, path)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    sep = "." if "#" in source else "#"  # a source may already point inside its file
    if scale == 1.0:
        return Fact(value, f"{source}{sep}{path}")
    return Fact(value * scale, f"{source}{sep}{path} (×{scale:g})")


# -- run ---------------------------------------------------------------------------------------


def read_run(name: str) -> dict[str, Any]:
    """A pipeline run's steps from `$LMFORGE_HOME/runs/NAME/state.json`, in the order they ran."""
    path = home() / "runs" / name / "state.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise NotFoundError(
            f"run {name!r} has no readable state ({path})", "run `lmforge run RECIPE` first"
        ) from e
    steps = []
    records = state.get("steps") or {}
    for sid, r in sorted(records.items(), key=lambda kv: (kv[1].get("started") or "~", kv[0])):
        src = f"{path}#steps.{sid}"
        energy = r.get("energy") or {}
        output = r.get("artifact") or ", ".join(Path(f).name for f in r.get("files") or [])
        steps.append(
            {
                "id": sid,
                "type": r.get("type", "?"),
                "status": r.get("status", "?"),
                "output": output or r.get("why") or r.get("error") or "",
                "artifact": r.get("artifact"),
                "files": r.get("files") or [],
                "seconds": cited(r, "seconds", src),
                "joules": cited(energy, "joules", f"{src}.energy"),
                "method": energy.get("method"),
            }
        )
    return {"name": name, "path": str(path), "recipe": state.get("recipe"), "steps": steps}


def run_artifacts(run: dict[str, Any], store: Store) -> list[str]:
    """The artifacts a run's finished steps produced that are still in the store."""
    names = []
    for s in run["steps"]:
        name = s["artifact"]
        if s["status"] == "done" and name and name not in names and store.exists(name):
            names.append(name)
    return names


# -- overview ----------------------------------------------------------------------------------

OVERVIEW = (
    ("kind", "kind"), ("step", "made by step"), ("parent", "parent"), ("base", "base model"),
    ("model.model_type", "architecture"), ("model.parameters", "parameters"),
    ("adapter.trainable", "trainable parameters"), ("license", "license"), ("created", "created"),
)  # fmt: skip


def overview(ev: Evidence) -> list[dict[str, Any]]:
    """One row per model: label -> Fact (None where nothing records it)."""
    rows = []
    for name in ev.names:
        f = ev.facts[name]
        rows.append({"name": name, "cells": [(label, f.fact(key)) for key, label in OVERVIEW]})
        if f.fact("license") is None:
            question = f.gaps.get("license", "no license recorded")
            ev.gap("overview", f"{name}: {question} (a person answers it as `license: ...` "
                   f"in {name}/answers.yaml)")  # fmt: skip
    return rows


# -- performance and the frontier --------------------------------------------------------------

COST_SOURCES = (  # figure -> (dotted key in the result file, scale, label)
    ("size_mb", "size_mb", 1.0, "size on disk (MB)"),
    ("peak_memory_mb", "peak_memory_mb", 1.0, "peak memory (MB)"),
    ("decode_tok_s", "decode.decode_tok_s", 1.0, "decode tok/s"),
    ("energy_per_token_mj", "decode.energy_per_token_j", 1e3, "energy / token (mJ)"),
    ("eval_joules", "energy.joules", 1.0, "energy of the eval (J)"),
    ("wall_s", "wall_s", 1.0, "eval wall time (s)"),
)


def suites(ev: Evidence) -> dict[str, dict[str, Evaluation]]:
    """suite -> model -> its result, for the report's models."""
    out: dict[str, dict[str, Evaluation]] = {}
    for name in ev.names:
        for e in ev.evals(name):
            out.setdefault(e.suite, {})[name] = e
    return dict(sorted(out.items()))


def performance(ev: Evidence) -> list[dict[str, Any]]:
    """Per suite: the headline figures and costs of each model that ran it."""
    from lmforge.evaluate.report import HEADLINES

    tables = []
    for suite, by_model in suites(ev).items():
        models = list(by_model)
        rows = []
        for key, label, _ in HEADLINES:
            cells = [cited(e.doc, f"summary.{key}", e.source) for e in by_model.values()]
            if any(cells):
                rows.append({"label": label, "cells": cells})
        for _, path, scale, label in COST_SOURCES:
            cells = [cited(e.doc, path, e.source, scale) for e in by_model.values()]
            if any(cells):
                rows.append({"label": label, "cells": cells})
        methods = [(e.doc.get("energy") or {}).get("method") or "-" for e in by_model.values()]
        tables.append({"suite": suite, "models": models, "rows": rows, "energy_methods": methods})
    for name in ev.names:
        if not ev.evals(name):
            ev.gap("performance", f"{name}: no evaluation results", f"lmforge eval {name}")
    return tables


def frontier(ev: Evidence) -> list[dict[str, Any]]:
    """Per suite with accuracy: accuracy, decode speed and size of each model, and which are
    Pareto-optimal (`evaluate.report.pareto`), plus the compression steps of the lineages."""
    from lmforge.evaluate.report import pareto

    out = []
    for suite, by_model in suites(ev).items():
        if not any(cited(e.doc, "summary.acc", e.source) for e in by_model.values()):
            continue
        docs = [{**e.doc, "label": name} for name, e in by_model.items()]
        rows = []
        for (name, e), best in zip(by_model.items(), pareto(docs), strict=True):
            size = cited(e.doc, "size_mb", e.source)
            if size is None:  # older results: the artifact's size on disk now
                art = ev.store.get(name)
                size = Fact(round(art.size_bytes() / 1e6, 3), f"{name}/ (its size on disk now)")
            rows.append(
                {
                    "model": name,
                    "acc": cited(e.doc, "summary.acc", e.source),
                    "tok_s": cited(e.doc, "decode.decode_tok_s", e.source),
                    "size": size,
                    "pareto": best,
                }
            )
            if rows[-1]["tok_s"] is None:
                ev.gap("frontier", f"{name} on {suite}: no decode speed recorded",
                       f"lmforge eval {name} --suite {suite}")  # fmt: skip
        out.append({"suite": suite, "rows": rows, "docs": docs})
    if len(ev.names) < 2:
        ev.gap("frontier", "one model only: a frontier compares models evaluated on the same "
               "suite (e.g. this one and a quantized copy)",
               f"lmforge report {ev.names[0]} OTHER-MODEL")  # fmt: skip
    return out


def lineage_steps(ev: Evidence, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """The steps of the given kinds anywhere in the models' lineages (root first, once each),
    with their settings and results as Facts (from `facts.gather`'s training entries)."""
    seen, out = set(), []
    for name in ev.names:
        f = ev.facts[name]
        data = {d["artifact"].value: d for d in f.datasets}
        for entry in f.value("training") or []:
            if entry["step"] not in kinds or entry["artifact"] in seen:
                continue
            seen.add(entry["artifact"])
            out.append({**entry, "data": data.get(entry["artifact"])})
    return out


# -- families ----------------------------------------------------------------------------------

FAMILIES = {  # family -> (figures shown, breakdown key, the breakdown's figure)
    "robustness": (
        (("acc_original", "accuracy, original"), ("worst_case_acc", "worst-case accuracy"),
         ("drop", "drop"), ("n", "items")), "by_variant", "acc"),
    "fairness": (
        (("max_abs_gap", "largest accuracy gap"), ("max_flip_rate", "largest flip rate"),
         ("n", "rewrites")), "by_variant", "gap"),
    "bias": ((("stereotype_rate", "stereotype rate"), ("n", "pairs")), "by_category",
             "stereotype_rate"),
    "toxicity": ((("toxic_rate", "toxic rate"), ("mean_score", "mean score"), ("n", "outputs")),
                 "by_category", None),
    "privacy": ((("pii_rate", "share of outputs with personal data"), ("n", "outputs")),
                "by_category", None),
}  # fmt: skip
FILL = {  # family -> the command that measures it (MODEL is replaced)
    "robustness": "lmforge eval MODEL --suite core",  # the core suite measures both
    "fairness": "lmforge eval MODEL --suite core",
    "bias": "lmforge eval MODEL --suite bias",
    "toxicity": "lmforge eval MODEL --suite toxicity",
    "privacy": "lmforge eval MODEL --suite privacy",
}


def family(ev: Evidence, name: str, section: str) -> dict[str, Any]:
    """Rows (model, suite, task) of metric family `name`, with its breakdown cited."""
    shown, breakdown_key, breakdown_figure = FAMILIES[name]
    rows = []
    for model in ev.names:
        found = False
        for e in ev.evals(model):
            for task, families in (e.doc.get("tasks") or {}).items():
                result = families.get(name) if isinstance(families, dict) else None
                if not isinstance(result, dict):
                    continue
                found = True
                base = f"tasks.{task}.{name}"
                parts = []
                for part, value in (result.get(breakdown_key) or {}).items():
                    path = f"{base}.{breakdown_key}.{part}"
                    if breakdown_figure and isinstance(value, dict):
                        path += f".{breakdown_figure}"
                    fact = cited(e.doc, path, e.source)
                    if fact is not None:
                        parts.append((part, fact))
                rows.append(
                    {
                        "model": model,
                        "suite": e.suite,
                        "task": task,
                        "cells": [cited(e.doc, f"{base}.{k}", e.source) for k, _ in shown],
                        "breakdown": parts,
                    }
                )
        if not found:
            ev.gap(section, f"{model}: no {name} results", FILL[name].replace("MODEL", model))
    return {"family": name, "labels": [label for _, label in shown], "rows": rows}


# -- energy ------------------------------------------------------------------------------------


def energy(ev: Evidence) -> dict[str, Any]:
    """The energy ledger rows of every lineage (each step and eval once), and each model's total."""
    rows, seen, totals = [], set(), []
    for name in ev.names:
        ledger = ev.facts[name].energy
        for r in ledger["rows"]:
            if r["source"] in seen:
                continue
            seen.add(r["source"])
            joules = grams = None
            if r["joules"] is None:
                ev.gap("energy", f"{r['artifact']}: {r['note']}")
            else:
                joules = Fact(r["joules"], _joules_source(r))
                grid = ledger["grid_g_per_kwh"]
                grams = Fact(r["g_co2e"], f"{joules.source} (J → g CO2e at {grid:g} g/kWh)")
            rows.append({**r, "joules_fact": joules, "g_fact": grams})
        total = ledger["total"]
        sources = "; ".join(r["source"] for r in ledger["rows"])
        totals.append(
            {
                "model": name,
                "joules": None if total["joules"] is None else Fact(total["joules"], sources),
                "g_co2e": None if total["g_co2e"] is None else Fact(total["g_co2e"], sources),
                "label": total["label"],
                "grid": ledger["grid_g_per_kwh"],
                "grid_source": ledger["grid_source"],
            }
        )
    return {"rows": rows, "totals": totals}


def _joules_source(row: dict[str, Any]) -> str:
    """Where a ledger row's joules come from: the step's own record, or its wall time times
    the assumed power (`energy.py` estimates steps that recorded no energy)."""
    if row["source"].endswith("#energy"):
        return f"{row['source']}.joules"
    return f"{row['source']} (×{ASSUMED_WATTS_PER_CORE:g} W: estimated)"


# -- interpretability --------------------------------------------------------------------------


def explanations(paths: list[Path], ev: Evidence) -> list[dict[str, Any]]:
    """Stored explanations (`explain.json`): per explained row, its score and top sources."""
    out = []
    for path in paths:
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            ev.gap("interpretability", f"{path} is not readable", "run `lmforge explain` again")
            continue
        tokens = [t.get("text", "") for t in doc.get("tokens") or []]
        rows = []
        for i, row in enumerate((doc.get("rows") or [])[:8]):
            scores = [(j, a) for j, a in enumerate(row.get("attributions") or []) if a is not None]
            top = sorted(scores, key=lambda ja: -abs(ja[1]))[:3]
            rows.append(
                {
                    "label": row.get("label", ""),
                    "score": cited(row, "score", f"{path}#rows.{i}"),
                    "top": [
                        (tokens[j] if j < len(tokens) else "?",
                         Fact(a, f"{path}#rows.{i}.attributions.{j}"))
                        for j, a in top
                    ],
                }
            )  # fmt: skip
        heatmap = path.with_name("heatmap.png")
        out.append(
            {
                "source": str(path),
                "model": doc.get("model"),
                "method": doc.get("method"),
                "prompt": doc.get("prompt"),
                "target": doc.get("target"),
                "rows": rows,
                "heatmap": heatmap if heatmap.is_file() else None,
                "html": path.with_name("explain.html"),
            }
        )
    if not out:
        ev.gap("interpretability", "no interpretability example recorded",
               f"lmforge report {' '.join(ev.names)} --explain 'PROMPT'")  # fmt: skip
    return out


# -- regulatory status -------------------------------------------------------------------------


def regulatory(ev: Evidence) -> list[dict[str, Any]]:
    """Per model: its card and its stored compliance documents' counts; its open questions
    (`facts.gather`'s gaps) go to the gaps."""
    out = []
    for name in ev.names:
        f, folder = ev.facts[name], ev.store.get(name).path
        docs = []
        for role in ("provider", "deployer"):
            path = folder / "compliance" / f"{role}.json"
            if not path.is_file():
                continue
            src = f"{name}/compliance/{role}.json"
            try:
                doc = json.loads(path.read_text())
            except ValueError:
                ev.gap("regulatory", f"{src} is not readable", f"lmforge compliance {name}")
                continue
            docs.append(
                {
                    "role": role,
                    "source": src,
                    "created": doc.get("created"),
                    "counts": {k: cited(doc, f"counts.{k}", src) for k in ("filled", "partial", "gap")},
                    "use_case": doc.get("use_case"),
                }
            )  # fmt: skip
        if not docs:
            ev.gap("regulatory", f"{name}: no EU AI Act documentation",
                   f"lmforge compliance {name}")  # fmt: skip
        card = folder / "card.md"
        if not card.is_file():
            ev.gap("regulatory", f"{name}: no model card", f"lmforge card {name}")
        for key, question in f.gaps.items():
            if key not in ("evals", "license"):  # those two are listed already
                ev.gap("regulatory", f"{name}: {question} (a person answers it as "
                       f"`{key}: ...` in {name}/answers.yaml)")  # fmt: skip
        out.append(
            {
                "model": name,
                "card": f"{name}/card.md" if card.is_file() else None,
                "documents": docs,
            }
        )
    return out
