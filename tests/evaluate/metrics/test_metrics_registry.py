"""The registry: names, errors for unknown names and options, and every family's output shape."""

from __future__ import annotations

import json

import pytest

from lmforge.errors import InvalidInputError
from lmforge.evaluate.metrics import METRICS, compute_all, get_metric, register

FAMILIES = sorted(
    ["accuracy", "bias", "calibration", "efficiency", "fairness", "perplexity", "privacy"]
    + ["robustness"]
    + (["toxicity"] if "toxicity" in METRICS else [])
)


def mixed_records(mc) -> list[dict]:
    """A little of everything a suite produces: MC items, variants, generation items, bias pairs."""
    return [
        mc("a", True),
        mc("b", False),
        mc("a", False, variant="typos"),
        mc("a", True, variant="names"),
        {"task": "g", "item": "x", "variant": "original", "output": "Paris", "correct": True},
        {"task": "b", "item": "p", "category": "age", "stereotype_score": -3.0, "anti_score": -4.0},
    ]


def test_all_families_registered():
    assert sorted(METRICS) == FAMILIES


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("kind", ["mixed", "empty"])
def test_every_family_returns_strict_json(name, kind, mc):
    records = mixed_records(mc) if kind == "mixed" else []
    out = compute_all(records, [name])[name]
    assert isinstance(out, dict) and out
    json.dumps(out, allow_nan=False)  # no NaN/inf, no numpy scalars


def test_compute_all_runs_each_name_with_its_options(mc):
    records = mixed_records(mc)
    out = compute_all(records, ["accuracy", "bias"], {"accuracy": {"seed": 3}})
    assert set(out) == {"accuracy", "bias"}
    assert out["accuracy"] == METRICS["accuracy"](records, seed=3)


def test_unknown_metric_lists_known_names():
    with pytest.raises(InvalidInputError) as err:
        compute_all([], ["accuracy", "bleu"])
    assert "bleu" in err.value.problem
    assert all(name in err.value.fix for name in FAMILIES)
    with pytest.raises(InvalidInputError):
        get_metric("nope")


def test_unknown_option_and_stray_options_are_errors():
    with pytest.raises(InvalidInputError, match="resamplez") as err:
        compute_all([], ["accuracy"], {"accuracy": {"resamplez": 10}})
    assert "resamples" in err.value.fix
    with pytest.raises(InvalidInputError, match="bias"):
        compute_all([], ["accuracy"], {"bias": {}})


def test_register_refuses_a_second_function_under_a_taken_name():
    with pytest.raises(ValueError, match="accuracy"):

        @register("accuracy")
        def compute(records: list[dict]) -> dict:
            return {}

    assert METRICS["accuracy"].__module__.endswith(".accuracy")
