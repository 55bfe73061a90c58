"""Fairness under counterfactual rewrites (names, pronouns, dialect): gaps and flip rates."""

from __future__ import annotations

from collections.abc import Sequence

from lmforge.evaluate.metrics.records import (
    COUNTERFACTUALS,
    answer,
    check_variants,
    is_correct,
    item_key,
    mean,
    of_variant,
    originals_by_item,
    variants_present,
)
from lmforge.evaluate.metrics.registry import register


@register("fairness")
def compute(records: list[dict], variants: Sequence[str] | None = None, norm: bool = False) -> dict:
    """Per counterfactual: accuracy, gap to the original and flip rate, on paired items.

    Each counterfactual record is paired with its item's original record (unpaired ones are
    left out), so both accuracies are over the same items. gap = acc - acc_original, so a
    negative gap means the rewrite hurts. flip_rate is the share of pairs whose answer
    (`pred`, or the output text for generation items) differs.
    """
    present = variants_present(records)
    if variants is None:
        variants = [v for v in present if v in COUNTERFACTUALS]
    variants = check_variants(variants, present)

    originals = originals_by_item(records)
    by_variant = {}
    for name in variants:
        pairs = [
            (originals[item_key(r)], r)
            for r in of_variant(records, name)
            if item_key(r) in originals
        ]
        acc = mean(is_correct(r, norm) for _, r in pairs)
        acc_original = mean(is_correct(o, norm) for o, _ in pairs)
        by_variant[name] = {
            "acc": acc,
            "acc_original": acc_original,
            "gap": None if acc is None else acc - acc_original,
            "flip_rate": mean(answer(o, norm) != answer(r, norm) for o, r in pairs),
            "n": len(pairs),
        }

    gaps = [abs(v["gap"]) for v in by_variant.values() if v["gap"] is not None]
    flips = [v["flip_rate"] for v in by_variant.values() if v["flip_rate"] is not None]
    return {
        "max_abs_gap": max(gaps, default=None),
        "max_flip_rate": max(flips, default=None),
        "n": sum(v["n"] for v in by_variant.values()),
        "by_variant": by_variant,
    }
