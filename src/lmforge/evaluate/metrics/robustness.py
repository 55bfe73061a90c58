"""Robustness to surface perturbations: accuracy per variant and HELM's worst case."""

from __future__ import annotations

from collections.abc import Sequence

from lmforge.evaluate.metrics.records import (
    COUNTERFACTUALS,
    ORIGINAL,
    check_variants,
    is_correct,
    item_key,
    mean,
    of_variant,
    originals_by_item,
    variants_present,
)
from lmforge.evaluate.metrics.registry import register


@register("robustness")
def compute(records: list[dict], variants: Sequence[str] | None = None, norm: bool = False) -> dict:
    """Accuracy per variant, worst-case accuracy over original + perturbations, and the drop.

    `variants` defaults to every non-original variant present except the counterfactuals
    (those belong to fairness). An item is worst-case correct only if its original and every
    perturbed record of it are correct; items with no original record are left out.
    """
    present = variants_present(records)
    if variants is None:
        variants = [v for v in present if v not in COUNTERFACTUALS]
    variants = check_variants(variants, present)

    originals = originals_by_item(records)
    worst = {key: is_correct(r, norm) for key, r in originals.items()}  # (task, item) -> bool
    by_variant = {}
    for name in [ORIGINAL, *variants]:
        rows = of_variant(records, name)
        by_variant[name] = {"acc": mean(is_correct(r, norm) for r in rows), "n": len(rows)}
        for r in rows:
            key = item_key(r)
            if key in worst:
                worst[key] = worst[key] and is_correct(r, norm)

    acc_original = by_variant[ORIGINAL]["acc"]
    worst_case = mean(worst.values())
    drop = None if worst_case is None else acc_original - worst_case
    return {
        "acc_original": acc_original,
        "worst_case_acc": worst_case,
        "drop": drop,
        "n": len(worst),
        "by_variant": by_variant,
    }
