"""`lmforge card`: a Hugging Face model card written from an artifact's recorded facts.

The YAML metadata is built with `huggingface_hub.ModelCardData` (license, base_model,
library_name, tags, datasets by sha256, model-index with the evaluation results), so the
Hub's parser reads it. Every figure comes from `artifact.json` or `evals/<suite>.json`
(through `facts.gather`); what nothing records is listed as a gap, never filled in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.io import write_text_atomic
from lmforge.report.facts import Evaluation, Facts, gather
from lmforge.report.render import num, render
from lmforge.store import Store

# How the Hub names the relation of a model to its base_model, by lmforge step
RELATION = {"tune": "finetune", "merge": "finetune", "quantize": "quantized"}
# The families a person looks at for bias and fairness, with the suite that measures each
FINDINGS = {
    "fairness": "core (counterfactual rewrites of names, pronouns, dialect)",
    "bias": "bias (stereotype preference on paired sentences)",
    "toxicity": "toxicity (toxic continuations, by prompt category)",
}


def render_card(name: str, store: Store | None = None) -> str:
    """The model card of artifact `name` as Markdown with YAML front matter."""
    facts = gather(name, store)
    data = card_data(facts)
    body = render("card.md.j2", **_context(facts))
    return f"---\n{data.to_yaml()}\n---\n{body}"


def write_card(name: str, store: Store | None = None) -> Path:
    """Write `card.md` into the artifact's folder (atomically) and return its path."""
    store = store or Store()
    text = render_card(name, store)
    return write_text_atomic(store.get(name).path / "card.md", text)


def card_data(facts: Facts):
    """The card's YAML metadata as `huggingface_hub.ModelCardData`."""
    from huggingface_hub import EvalResult, ModelCardData

    from lmforge.evaluate.report import HEADLINES

    results = []
    for ev in facts.own_evals:
        summary = ev.doc.get("summary") or {}
        for key, label, _ in HEADLINES:
            if isinstance(summary.get(key), int | float):
                results.append(
                    EvalResult(
                        task_type="text-generation",
                        dataset_type=f"lmforge/{ev.suite}",
                        dataset_name=ev.suite,
                        metric_type=key,
                        metric_name=label,
                        metric_value=summary[key],
                    )
                )
    art = facts.artifact
    license_ = facts.value("license")
    tags = ["lmforge", art.kind]
    for a in reversed(facts.lineage):
        if a.step and a.step not in tags:
            tags.append(a.step)
    method = art.meta.get("config", {}).get("method")
    if isinstance(method, str) and method not in tags:
        tags.append(method)
    extra: dict[str, Any] = {"pipeline_tag": "text-generation"}
    if art.parent and art.step in RELATION:
        extra["base_model_relation"] = "adapter" if art.kind == "adapter" else RELATION[art.step]
    if license_ == "other":
        extra["license_name"] = "mixed"
    return ModelCardData(
        model_name=facts.name,
        license=license_,
        base_model=art.parent,
        library_name=facts.value("library"),
        tags=tags,
        datasets=[f"sha256:{d['sha256'].value}" for d in facts.datasets if "sha256" in d] or None,
        eval_results=results or None,
        **extra,
    )


# What only a person can say; each is a gap until `answers.yaml` says it
QUESTIONS = {
    "intended_use": "what is this model for, and who will use it?",
    "out_of_scope_use": "which uses must this model not be put to?",
    "limitations": "which limitations have you seen in use?",
}


def _context(facts: Facts) -> dict[str, Any]:
    from lmforge.evaluate.runner import FAMILIES

    for key, question in QUESTIONS.items():
        facts.gap(key, question)

    measured = {
        family for ev in facts.own_evals for fams in ev.doc["tasks"].values() for family in fams
    }
    return {
        "f": facts,
        "art": facts.artifact,
        "evals": [eval_table(ev) for ev in facts.own_evals],
        "comparisons": comparisons(facts),
        "findings": findings(facts),
        "finding_suites": FINDINGS,
        "unmeasured": [f for f in FAMILIES if f not in measured],
        "intervals": intervals(facts),
        "ledger": facts.energy,
    }


def eval_table(ev: Evaluation) -> dict[str, Any]:
    """One suite: a headline row per task and the mean (as `lmforge eval` prints them), then
    every scalar figure of every family, each with its key in the result file."""
    from lmforge.evaluate.report import HEADLINES
    from lmforge.evaluate.runner import HEADLINE_FIGURES

    tasks = ev.doc.get("tasks") or {}
    summary = ev.doc.get("summary") or {}
    rows = {
        task: {
            key: families.get(family, {}).get(fkey)
            for key, (family, fkey) in HEADLINE_FIGURES.items()
        }
        for task, families in tasks.items()
    }
    shown = [
        (key, label)
        for key, label, _ in HEADLINES
        if any(isinstance(r.get(key), int | float) for r in [*rows.values(), summary])
    ]
    figures = []
    for task, families in tasks.items():
        for family, result in families.items():
            if isinstance(result, dict):
                scalars = {
                    k: v for k, v in result.items() if isinstance(v, int | float) or v is None
                }
                figures.append((task, family, scalars))
    config = ev.doc.get("config") or {}
    return {
        "suite": ev.suite,
        "source": ev.source,
        "created": ev.doc.get("created"),
        "settings": {
            k: config.get(k) for k in ("limit", "chat_template", "seed", "dtype") if k in config
        },
        "columns": shown,
        "rows": [(task, [num(r.get(key)) for key, _ in shown]) for task, r in rows.items()],
        "mean": [num(summary.get(key)) for key, _ in shown],
        "figures": figures,
        "energy": ev.doc.get("energy"),
        "wall_s": ev.doc.get("wall_s"),
    }


def comparisons(facts: Facts) -> list[dict[str, Any]]:
    """This model's summary beside each ancestor's on the same suite (the figures of
    `lmforge eval compare`)."""
    from lmforge.evaluate.report import HEADLINES

    out = []
    for ev in facts.own_evals:
        others = [
            other
            for a in facts.lineage[1:]
            for other in facts.evals.get(a.name, [])
            if other.suite == ev.suite
        ]
        if not others:
            continue
        docs = [ev, *others]
        rows = []
        for key, label, _ in HEADLINES:
            values = [(d.doc.get("summary") or {}).get(key) for d in docs]
            if any(isinstance(v, int | float) for v in values):
                rows.append((label, [num(v) for v in values]))
        out.append({"suite": ev.suite, "models": [d.artifact for d in docs],
                    "sources": [d.source for d in docs], "rows": rows})  # fmt: skip
    return out


def findings(facts: Facts) -> list[dict[str, Any]]:
    """Fairness, bias and toxicity results of this model, with their breakdowns."""
    out = []
    for ev in facts.own_evals:
        for task, families in (ev.doc.get("tasks") or {}).items():
            for family in FINDINGS:
                result = families.get(family)
                if not isinstance(result, dict):
                    continue
                scalars = {
                    k: v for k, v in result.items() if isinstance(v, int | float) or v is None
                }
                breakdown = []
                for part in ("by_category", "by_variant"):
                    for group, value in (result.get(part) or {}).items():
                        cells = value if isinstance(value, dict) else {family: value}
                        breakdown.append((part.removeprefix("by_"), group, cells))
                out.append({"family": family, "task": task, "source": ev.source,
                            "key": f"tasks.{task}.{family}", "figures": scalars,
                            "breakdown": breakdown})  # fmt: skip
    return out


def intervals(facts: Facts) -> list[dict[str, Any]]:
    """Accuracy with its bootstrap interval per task: how far each figure can be trusted."""
    out = []
    for ev in facts.own_evals:
        for task, families in (ev.doc.get("tasks") or {}).items():
            acc = families.get("accuracy") or {}
            if isinstance(acc.get("acc"), int | float):
                out.append({"task": task, "source": ev.source, "acc": acc["acc"],
                            "low": acc.get("acc_low"), "high": acc.get("acc_high"),
                            "n": acc.get("n")})  # fmt: skip
    return out
