"""Per-variant accuracy and HELM worst-case accuracy on a tiny hand table."""

from __future__ import annotations

import pytest

from lmforge.errors import InvalidInputError
from lmforge.evaluate.metrics.robustness import compute

# item: original, typos, case  (1 = correct)
#   a:     1       1      1    -> worst case correct
#   b:     1       0      1    -> wrong
#   c:     1       1      -    -> correct (no case variant for c)
#   d:     0       1      1    -> wrong
TABLE = {"a": (1, 1, 1), "b": (1, 0, 1), "c": (1, 1, None), "d": (0, 1, 1)}


def table_records(mc) -> list[dict]:
    records = []
    for item, row in TABLE.items():
        for variant, hit in zip(["original", "typos", "case"], row, strict=True):
            if hit is not None:
                records.append(mc(item, bool(hit), variant=variant))
    return records


def test_worst_case_hand_table(mc):
    out = compute(table_records(mc))
    assert out["n"] == 4
    assert out["acc_original"] == 0.75
    assert out["worst_case_acc"] == 0.5
    assert out["drop"] == pytest.approx(0.25)
    assert out["by_variant"] == {
        "original": {"acc": 0.75, "n": 4},
        "case": {"acc": 1.0, "n": 3},
        "typos": {"acc": 0.75, "n": 4},
    }


def test_counterfactuals_are_left_to_fairness_unless_asked(mc):
    records = table_records(mc) + [mc("a", False, variant="names")]
    assert "names" not in compute(records)["by_variant"]
    assert compute(records)["worst_case_acc"] == 0.5
    asked = compute(records, variants=["names"])
    assert set(asked["by_variant"]) == {"original", "names"}
    # Only original + names count now: a wrong (on names), b right, c right, d wrong.
    assert asked["worst_case_acc"] == 0.5
    assert asked["by_variant"]["names"] == {"acc": 0.0, "n": 1}


def test_items_are_keyed_by_task_and_item(mc):
    records = [mc("1", True, task="x"), mc("1", True, task="y"), mc("1", False, "typos", "y")]
    out = compute(records)
    assert out["n"] == 2 and out["worst_case_acc"] == 0.5


def test_norm_reads_correct_norm(mc):
    records = [mc("a", True), mc("a", True, variant="typos")]
    records[1]["correct_norm"] = False
    assert compute(records)["worst_case_acc"] == 1.0
    assert compute(records, norm=True)["worst_case_acc"] == 0.0


def test_missing_variant_and_duplicate_original_are_errors(mc):
    with pytest.raises(InvalidInputError, match="typo") as err:
        compute(table_records(mc), variants=["typo"])
    assert "typos" in err.value.fix
    with pytest.raises(InvalidInputError, match="two 'original'"):
        compute([mc("a", True), mc("a", False)])


def test_no_perturbations_means_no_drop(mc):
    out = compute([mc("a", True), mc("b", False)])
    assert out["worst_case_acc"] == out["acc_original"] == 0.5 and out["drop"] == 0.0
    assert compute([])["worst_case_acc"] is None
