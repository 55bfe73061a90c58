"""Scoring generated text against a target: exact, contains, token F1, regex."""

from __future__ import annotations

import re
import string
from collections import Counter

_PUNCT = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    """Lowercase, drop punctuation and articles, squeeze spaces (SQuAD-style)."""
    text = text.lower().translate(_PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1(prediction: str, target: str) -> float:
    """Token-overlap F1 between normalised prediction and target."""
    pred, gold = normalise(prediction).split(), normalise(target).split()
    if not pred or not gold:
        return float(pred == gold)
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def match(kind: str, prediction: str, target: str) -> float:
    """1.0 / 0.0 for exact, contains and regex; the F1 value for f1."""
    if kind == "exact":
        return float(normalise(prediction) == normalise(target))
    if kind == "contains":
        return float(normalise(target) in normalise(prediction))
    if kind == "regex":
        return float(re.search(target, prediction) is not None)
    if kind == "f1":
        return f1(prediction, target)
    raise ValueError(f"unknown match kind {kind!r}")
