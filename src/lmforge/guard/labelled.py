"""The guard's project-written data sets and the rates it is measured by.

- `injection_exemplars.jsonl`: attacks only, the references of the similarity detector;
- `injection_train.jsonl`: attacks (1) and benign prompts (0) to fit the similarity threshold
  and the classifier head on;
- `guard_eval.jsonl`: the held-out set `lmforge guard eval` measures every detector on, kept
  apart from both (a test checks that no text is shared).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.errors import InvalidInputError

DATA_DIR = Path(__file__).parent / "data"
EXEMPLARS = DATA_DIR / "injection_exemplars.jsonl"
TRAIN = DATA_DIR / "injection_train.jsonl"
EVAL = DATA_DIR / "guard_eval.jsonl"
PII_KINDS = ("email", "phone", "card", "iban", "ip", "name")


@dataclass(frozen=True)
class Item:
    """One labelled line: `check` is "injection" or "pii"; label 1 = should be found.
    `pii` lists the (kind, value) pairs a PII positive contains."""

    check: str
    text: str
    label: int
    pii: tuple[tuple[str, str], ...] = field(default=())


def load(path: Path, check: str = "injection") -> list[Item]:
    """The items of a JSONL file of {"text", "label", ["check"], ["pii": [{"kind", "value"}]]}."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        row_check = row.get("check", check)
        pii = tuple((p["kind"], p["value"]) for p in row.get("pii", []))
        ok = isinstance(row.get("text"), str) and row.get("label", 1) in (0, 1)
        ok = ok and row_check in ("injection", "pii")
        ok = ok and all(k in PII_KINDS and v in row["text"] for k, v in pii)
        if not ok:
            raise InvalidInputError(
                f"{path}:{number} is not a labelled guard example",
                'write {"check": "injection"|"pii", "text": "...", "label": 0|1, '
                '"pii": [{"kind": ..., "value": <a substring of text>}]}',
            )
        items.append(Item(row_check, row["text"], row.get("label", 1), pii))
    return items


@dataclass
class Rates:
    """Detection figures of one detector on one labelled set."""

    positives: int
    negatives: int
    true_positives: int
    false_positives: int

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.positives if self.positives else None

    @property
    def false_positive_rate(self) -> float | None:
        return self.false_positives / self.negatives if self.negatives else None

    @property
    def precision(self) -> float | None:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p and r else 0.0

    def to_dict(self) -> dict:
        def r4(x):
            return None if x is None else round(x, 4)

        return {
            "recall": r4(self.recall),
            "false_positive_rate": r4(self.false_positive_rate),
            "precision": r4(self.precision),
            "f1": r4(self.f1),
            "positives": self.positives,
            "negatives": self.negatives,
            "true_positives": self.true_positives,
            "false_positives": self.false_positives,
        }


def rates(predicted: list[bool], labels: list[int]) -> Rates:
    """Counts of `predicted` against `labels` (1 = should be found)."""
    pairs = list(zip(predicted, labels, strict=True))
    return Rates(
        positives=sum(y == 1 for _, y in pairs),
        negatives=sum(y == 0 for _, y in pairs),
        true_positives=sum(p and y == 1 for p, y in pairs),
        false_positives=sum(p and y == 0 for p, y in pairs),
    )
