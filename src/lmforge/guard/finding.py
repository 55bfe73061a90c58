"""What a detector reports (a `Finding`), and masking a text's findings out of it."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Finding:
    """One thing a detector found in a text."""

    check: str  # the policy check it belongs to: "injection" | "pii" | "toxicity"
    detector: str  # the registered detector that found it, e.g. "pii-phone"
    kind: str  # what it is: "phone", "email", ..., "injection", "toxic"
    start: int  # span in the checked text, [start, end)
    end: int
    score: float  # 1.0 for a validated pattern; a similarity or probability otherwise
    reason: str  # one line a person can read

    @property
    def span(self) -> tuple[int, int]:
        return self.start, self.end

    @property
    def mask(self) -> str:
        """What replaces the span when it is redacted: `[PHONE]`, `[EMAIL]`, ..."""
        return f"[{self.kind.upper()}]"

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_overlaps(findings: list[Finding]) -> list[Finding]:
    """Non-overlapping findings, in text order: of two that overlap, the longer one (then the
    higher score, then the earlier one) wins. A deterministic, local rule, so a streamed text
    and the same text in one piece resolve alike."""
    ranked = sorted(findings, key=lambda f: (-(f.end - f.start), -f.score, f.start, f.kind))
    kept: list[Finding] = []
    for f in ranked:
        if all(f.end <= k.start or f.start >= k.end for k in kept):
            kept.append(f)
    return sorted(kept, key=lambda f: f.start)


def redact(text: str, findings: list[Finding]) -> str:
    """`text` with each finding's span replaced by its mask (overlaps resolved first)."""
    out, at = [], 0
    for f in resolve_overlaps(findings):
        out.append(text[at : f.start])
        out.append(f.mask)
        at = f.end
    out.append(text[at:])
    return "".join(out)
