"""The output toxicity check: the MiniLM toxicity scorer (`toxicity_classifier`) as a detector."""

from __future__ import annotations

from lmforge.guard.detectors import register
from lmforge.guard.finding import Finding
from lmforge.guard.toxicity_classifier import score

THRESHOLD = 0.5  # the threshold the scorer's held-out precision and recall are quoted at


@register("toxicity", "toxicity", needs_embeddings=True)
def find_toxic(text: str) -> list[Finding]:
    """Toxic language (`lmforge.guard.toxicity_classifier`, P(toxic) >= 0.5)."""
    if not text.strip():
        return []
    [p] = score([text])
    if p < THRESHOLD:
        return []
    return [
        Finding("toxicity", "toxicity", "toxic", 0, len(text), round(p, 4), f"toxic (P={p:.2f})")
    ]
