"""The guard policy (what to do per check) and the decisions it makes on a text.

    guard = Guard(GuardPolicy.parse("injection=block,pii=redact,toxicity=flag"))
    decision = guard.check_input(prompt)      # before the model sees the prompt
    if decision.action == "block": ...        # answer 400 with decision.reason
    prompt = decision.text                    # redacted where the policy says so
    decision = guard.check_output(answer)     # before the client sees the answer
    stream = guard.output_stream()            # or, for a stream: stream.feed(delta) ... stream.flush()

Checks: `injection` (input), `pii` (input and output), `toxicity` (output). Actions, mildest
first: off (not run), flag (allow, record the findings), redact (mask the findings' spans),
block. A decision takes the most severe action of the checks that found something. Every
decision is logged (logger `lmforge.guard`) and counted in `Guard.counts`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field, fields

from lmforge.errors import InvalidInputError
from lmforge.guard.detectors import CHECKS, EMBEDDINGS_FIX, detectors, embeddings_available
from lmforge.guard.finding import Finding, redact

log = logging.getLogger("lmforge.guard")
ACTIONS = ("off", "flag", "redact", "block")  # mildest first
DIRECTIONS = {"input": ("injection", "pii"), "output": ("pii", "toxicity")}
RECOMMENDED = "injection=block,pii=redact,toxicity=flag"


@dataclass(frozen=True)
class GuardPolicy:
    """What the guard does when a check finds something: off | flag | redact | block."""

    injection: str = "off"  # prompt injection and jailbreaks, in the prompt
    pii: str = "off"  # personal data, in the prompt and in the answer
    toxicity: str = "off"  # toxic language, in the answer

    def __post_init__(self):
        for check in CHECKS:
            if getattr(self, check) not in ACTIONS:
                raise InvalidInputError(
                    f"invalid guard action {check}={getattr(self, check)!r}",
                    f"use one of: {', '.join(ACTIONS)}",
                )

    @classmethod
    def parse(cls, spec: str) -> GuardPolicy:
        """From `--guard`: one action for all checks ("block"), per check
        ("injection=block,pii=redact"), or both ("flag,pii=redact": pii redacts, the rest flag).
        Checks not named are off unless a bare action is given."""
        usage = f"write e.g. --guard block or --guard {RECOMMENDED}"
        if not isinstance(spec, str) or not spec.strip():
            raise InvalidInputError("empty --guard policy", usage)
        default, per_check = None, {}
        for part in (p.strip() for p in spec.split(",")):
            check, sep, action = (s.strip().lower() for s in part.partition("="))
            if not sep:
                check, action = None, check
            if action not in ACTIONS:
                raise InvalidInputError(
                    f"invalid guard action {action!r} in {spec!r}",
                    f"use one of: {', '.join(ACTIONS)}",
                )
            if check is None:
                if default is not None:
                    raise InvalidInputError(f"two actions for all checks in {spec!r}", usage)
                default = action
            elif check not in CHECKS:
                raise InvalidInputError(
                    f"unknown guard check {check!r} in {spec!r}", f"use any of: {', '.join(CHECKS)}"
                )
            elif check in per_check:
                raise InvalidInputError(f"guard check {check!r} given twice in {spec!r}", usage)
            else:
                per_check[check] = action
        return cls(**{c: per_check.get(c, default or "off") for c in CHECKS})

    def __str__(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

    @property
    def active(self) -> bool:
        return any(getattr(self, c) != "off" for c in CHECKS)


@dataclass
class Decision:
    """What the guard decided about one text."""

    direction: str  # "input" or "output"
    action: str  # allow | flag | redact | block
    findings: list[Finding]  # what the checks that ran found, in text order
    text: str  # the text to pass on: masked where the policy redacts (the original if blocked)
    skipped: list[str] = field(default_factory=list)  # detectors that could not run, and the fix

    @property
    def blocked(self) -> bool:
        return self.action == "block"

    @property
    def reason(self) -> str:
        """One line for a log or an error message."""
        if not self.findings:
            return "nothing found"
        return "; ".join(sorted({f"{f.check}: {f.reason}" for f in self.findings}))

    def to_dict(self) -> dict:
        return {
            "direction": self.direction,
            "action": self.action,
            "reason": self.reason,
            "findings": [f.to_dict() for f in self.findings],
            "text": self.text,
            "skipped": self.skipped,
        }


def clean_text(text: str | bytes) -> str:
    """Text any detector can take: bytes decoded as UTF-8 (bad bytes replaced), lone
    surrogates replaced by '?' one for one, so that spans stay where they were."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise InvalidInputError(
            f"the guard checks text, got {type(text).__name__}", "pass a str (or UTF-8 bytes)"
        )
    return text.encode("utf-8", errors="replace").decode("utf-8")


def run_checks(policy: GuardPolicy, checks, text: str) -> tuple[list[Finding], list[str]]:
    """Findings of every default detector of the `checks` the policy has on, and the notes of
    those skipped because the MiniLM model is not installed."""
    findings, skipped = [], []
    for check in checks:
        if getattr(policy, check) == "off":
            continue
        for detector in detectors(check):
            if detector.needs_embeddings and not embeddings_available():
                skipped.append(f"{detector.name} skipped: {EMBEDDINGS_FIX}")
                continue
            findings.extend(detector.find(text))
    return sorted(findings, key=lambda f: (f.start, f.end, f.detector)), skipped


def decide(policy: GuardPolicy, direction: str, text: str, findings, skipped) -> Decision:
    """The decision the policy makes on `text` given what its checks found."""
    actions = {getattr(policy, f.check) for f in findings}
    action = max(actions, key=ACTIONS.index) if actions else "allow"
    masked = [f for f in findings if getattr(policy, f.check) == "redact"]
    out = redact(text, masked) if masked and action != "block" else text
    return Decision(direction, action, list(findings), out, list(skipped))


class Guard:
    """A policy with its counters: what the server holds and calls."""

    def __init__(self, policy: GuardPolicy | str = "off"):
        self.policy = policy if isinstance(policy, GuardPolicy) else GuardPolicy.parse(policy)
        # (direction, action) -> decisions; (direction, check, kind) -> findings
        self.counts: Counter[tuple[str, str]] = Counter()
        self.finding_counts: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def check_input(self, text: str | bytes) -> Decision:
        """Check a prompt before the model sees it."""
        return self._check("input", text)

    def check_output(self, text: str | bytes) -> Decision:
        """Check an answer before the client sees it."""
        return self._check("output", text)

    def output_stream(self):
        """A `StreamRedactor` for one streamed answer; its `flush()` records the decision."""
        from lmforge.guard.stream import StreamRedactor

        return StreamRedactor(self.policy, on_done=self.record)

    def _check(self, direction: str, text: str | bytes) -> Decision:
        text = clean_text(text)
        findings, skipped = run_checks(self.policy, DIRECTIONS[direction], text)
        return self.record(decide(self.policy, direction, text, findings, skipped))

    def record(self, decision: Decision) -> Decision:
        """Count and log a decision (every one: allow at DEBUG, the others at INFO)."""
        with self._lock:
            self.counts[decision.direction, decision.action] += 1
            for f in decision.findings:
                self.finding_counts[decision.direction, f.check, f.kind] += 1
        level = logging.DEBUG if decision.action == "allow" else logging.INFO
        log.log(level, "guard %s %s: %s", decision.direction, decision.action, decision.reason)
        return decision


def check_input(text: str | bytes, policy: GuardPolicy | str = RECOMMENDED) -> Decision:
    """Check a prompt under `policy` (default: the recommended one), without counters."""
    return Guard(policy).check_input(text)


def check_output(text: str | bytes, policy: GuardPolicy | str = RECOMMENDED) -> Decision:
    """Check an answer under `policy` (default: the recommended one), without counters."""
    return Guard(policy).check_output(text)
