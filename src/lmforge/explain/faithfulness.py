"""Does an explanation mean something? The deletion curve: remove the sources an
attribution ranks highest and watch the explained token's probability fall.

A faithful attribution makes it fall faster than removing sources in random order does.
Removing means taking the token out of the sequence, so the model never sees it.
"""

from __future__ import annotations

import torch


@torch.no_grad()
def deletion_curve(hf, source_ids: list[int], token: int, order: list[int], k_max: int):
    """p(token | sources without order[:k]) for k = 0..k_max; `order`: source positions."""
    probs = []
    for k in range(k_max + 1):
        gone = set(order[:k])
        kept = [t for i, t in enumerate(source_ids) if i not in gone]
        logits = hf(input_ids=torch.tensor([kept]), logits_to_keep=1).logits[0, -1]
        probs.append(float(torch.softmax(logits.float(), dim=-1)[token]))
    return probs


def ranked(attributions: list[float | None]) -> list[int]:
    """Source positions, highest attribution first (None: not a source, left out)."""
    scored = [(v, i) for i, v in enumerate(attributions) if v is not None]
    return [i for _, i in sorted(scored, key=lambda p: -p[0])]
