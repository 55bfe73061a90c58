"""`lmforge guard eval`: every detector on the held-out labelled set, side by side.

Injection detectors are measured on the set's injection lines (attacks vs benign prompts,
hard benign ones included); each PII recogniser on the lines containing its kind (found =
a finding of that kind covers the value) against the PII-free lines; the toxicity scorer by
its own stored held-out scores. `injection (policy)` and `pii (policy)` are the checks as the
policy runs them: every detector that runs by default, together.
"""

from __future__ import annotations

from lmforge.guard.detectors import EMBEDDINGS_FIX, detectors, embeddings_available
from lmforge.guard.finding import Finding
from lmforge.guard.labelled import EVAL, Item, load, rates
from lmforge.guard.policy import GuardPolicy, run_checks


def _covers(findings: list[Finding], text: str, kind: str, value: str) -> bool:
    start = text.index(value)
    end = start + len(value)
    return any(f.kind == kind and f.start <= start and f.end >= end for f in findings)


def _row(check: str, detector: str, default: bool, predicted, labels, note: str = "") -> dict:
    return {"check": check, "detector": detector, "default": default, "note": note} | rates(
        predicted, labels
    ).to_dict()


def evaluate(items: list[Item] | None = None) -> dict:
    """Recall, false-positive rate and precision of each detector on `items` (default: the
    shipped held-out set)."""
    items = load(EVAL) if items is None else items
    injection = [i for i in items if i.check == "injection"]
    pii = [i for i in items if i.check == "pii"]
    rows, skipped = [], []
    have_embeddings = embeddings_available()

    labels = [i.label for i in injection]
    for d in detectors("injection", defaults_only=False):
        if d.needs_embeddings and not have_embeddings:
            skipped.append(f"{d.name} skipped: {EMBEDDINGS_FIX}")
            continue
        rows.append(
            _row(
                "injection", d.name, d.default(), [bool(d.find(i.text)) for i in injection], labels
            )
        )
    policy = GuardPolicy(injection="flag")
    found = [bool(run_checks(policy, ["injection"], i.text)[0]) for i in injection]
    rows.append(
        _row(
            "injection", "injection (policy)", True, found, labels, "the default detectors together"
        )
    )

    negatives = [i for i in pii if i.label == 0]
    for d in detectors("pii", defaults_only=False):
        kind = d.name.removeprefix("pii-")
        positives = [(i, v) for i in pii if i.label == 1 for k, v in i.pii if k == kind]
        predicted = [_covers(d.find(i.text), i.text, kind, v) for i, v in positives]
        predicted += [bool(d.find(i.text)) for i in negatives]
        rows.append(
            _row("pii", d.name, d.default(), predicted, [1] * len(positives) + [0] * len(negatives))
        )
    policy = GuardPolicy(pii="flag")
    predicted, pii_labels = [], []
    for i in pii:
        findings = run_checks(policy, ["pii"], i.text)[0]
        if i.label == 1:  # one positive per value in the line
            predicted += [_covers(findings, i.text, k, v) for k, v in i.pii]
            pii_labels += [1] * len(i.pii)
        else:
            predicted.append(bool(findings))
            pii_labels.append(0)
    rows.append(_row("pii", "pii (policy)", True, predicted, pii_labels, "one positive per value"))

    if have_embeddings:
        from lmforge.guard.toxicity import THRESHOLD
        from lmforge.guard.toxicity_classifier import load_head

        head = load_head()
        flagged = [s >= THRESHOLD for s in head.heldout_scores]
        note = "its own held-out set (guard/data/toxicity_labelled.jsonl)"
        rows.append(_row("toxicity", "toxicity", True, flagged, head.heldout_labels, note))
    else:
        skipped.append(f"toxicity skipped: {EMBEDDINGS_FIX}")
    return {"dataset": str(EVAL), "detectors": rows, "skipped": skipped}


def print_report(result: dict) -> None:
    """A rich table of `evaluate()`'s result."""
    from rich.console import Console
    from rich.table import Table

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}%"

    table = Table(title=f"guard detectors on {result['dataset']}")
    for col in ("check", "detector", "runs", "recall", "FPR", "precision", "pos", "neg"):
        table.add_column(
            col,
            justify="right" if col in ("recall", "FPR", "precision", "pos", "neg") else "left",
            no_wrap=True,
        )
    for r in result["detectors"]:
        table.add_row(
            r["check"],
            r["detector"],
            "yes" if r["default"] else "no",
            pct(r["recall"]),
            pct(r["false_positive_rate"]),
            pct(r["precision"]),
            str(r["positives"]),
            str(r["negatives"]),
        )
    console = Console()
    console.print(table)
    for r in result["detectors"]:
        if r["note"]:
            console.print(f"{r['detector']}: {r['note']}")
    for line in result["skipped"]:
        console.print(f"[yellow]{line}[/yellow]")
