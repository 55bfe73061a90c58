"""The output toxicity check: the evaluation's MiniLM toxicity scorer, reused as a detector."""

from __future__ import annotations

from lmforge.guard.detectors import register
from lmforge.guard.finding import Finding

THRESHOLD = 0.5  # the threshold the scorer's held-out precision and recall are quoted at


@register("toxicity", "toxicity", needs_embeddings=True)
def find_toxic(text: str) -> list[Finding]:
    """Toxic language (`lmforge.evaluate.toxicity_classifier`, P(toxic) >= 0.5)."""
    from lmforge.evaluate.toxicity_classifier import score

    if not text.strip():
        return []
    [p] = score([text])
    if p < THRESHOLD:
        return []
    return [
        Finding("toxicity", "toxicity", "toxic", 0, len(text), round(p, 4), f"toxic (P={p:.2f})")
    ]
