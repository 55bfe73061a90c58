"""Input and output checks: prompt injection and jailbreaks, personal data, toxicity.

    from lmforge.guard import Guard, GuardPolicy
    guard = Guard(GuardPolicy.parse("injection=block,pii=redact,toxicity=flag"))
    guard.check_input(prompt)   # -> Decision(action, findings, text, skipped)

`lmforge guard check TEXT` prints a decision; `lmforge guard eval` measures every detector on
the project's held-out labelled set.
"""

from lmforge.guard.detectors import DETECTORS, Detector, detectors, register
from lmforge.guard.finding import Finding, redact
from lmforge.guard.policy import (
    RECOMMENDED,
    Decision,
    Guard,
    GuardPolicy,
    check_input,
    check_output,
)
from lmforge.guard.stream import StreamRedactor

__all__ = [
    "DETECTORS",
    "RECOMMENDED",
    "Decision",
    "Detector",
    "Finding",
    "Guard",
    "GuardPolicy",
    "StreamRedactor",
    "check_input",
    "check_output",
    "detectors",
    "redact",
    "register",
]
