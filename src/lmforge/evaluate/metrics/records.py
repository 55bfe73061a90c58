"""Selecting and pairing the per-item result records the metric families read."""

from __future__ import annotations

from collections.abc import Iterable

from lmforge.errors import InvalidInputError

ORIGINAL = "original"
# Variants that rewrite who or how (fairness); every other non-original variant is a
# perturbation of the surface text (robustness).
COUNTERFACTUALS = ("names", "pronouns", "dialect")

ItemKey = tuple[str, str]


def item_key(record: dict) -> ItemKey:
    """(task, item): item ids are only unique within a task."""
    return (record["task"], record["item"])


def is_correct(record: dict, norm: bool = False) -> bool:
    """The record's correctness; `norm` reads `correct_norm` where the record has one."""
    if norm and "correct_norm" in record:
        return bool(record["correct_norm"])
    return bool(record["correct"])


def answer(record: dict, norm: bool = False) -> object:
    """What the model answered: the chosen index, or the text for generation items."""
    key = "pred_norm" if norm and "pred_norm" in record else "pred"
    return record[key] if key in record else record.get("output")


def scored(records: Iterable[dict]) -> list[dict]:
    """Records of task items (they have a variant), leaving out bias pairs."""
    return [r for r in records if "variant" in r and "correct" in r]


def of_variant(records: Iterable[dict], variant: str) -> list[dict]:
    """Scored records of one variant."""
    return [r for r in scored(records) if r["variant"] == variant]


def variants_present(records: Iterable[dict]) -> list[str]:
    """Sorted names of the non-original variants among the scored records."""
    return sorted({r["variant"] for r in scored(records)} - {ORIGINAL})


def originals_by_item(records: Iterable[dict]) -> dict[ItemKey, dict]:
    """The original record of each item; an item scored twice as original is an error."""
    out: dict[ItemKey, dict] = {}
    for r in of_variant(records, ORIGINAL):
        key = item_key(r)
        if key in out:
            raise InvalidInputError(
                f"item {key[1]!r} of task {key[0]!r} has two 'original' records",
                "score each item once per variant",
            )
        out[key] = r
    return out


def mean(values: Iterable[float]) -> float | None:
    """The mean as a float, or None (JSON null) when there are no values."""
    values = list(values)
    return float(sum(values) / len(values)) if values else None


def check_variants(requested: Iterable[str], present: Iterable[str]) -> list[str]:
    """The requested variant names, each of which must be present in the records."""
    requested, present = list(requested), list(present)
    missing = [v for v in requested if v not in present]
    if missing:
        raise InvalidInputError(
            f"no records for variant(s): {', '.join(missing)}",
            f"use variants present in the results: {', '.join(present) or 'none'}",
        )
    return requested
