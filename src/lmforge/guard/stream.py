"""Guarding a streamed answer: text deltas in, safe deltas out.

    stream = guard.output_stream()
    for delta in model_deltas:
        safe = stream.feed(delta)       # may be "" while a possible phone number is held back
        if safe: send(safe)
        if stream.blocked: break        # pii=block or toxicity=block found something
    send(stream.flush())                # the held-back tail, masked; records the decision

With pii=redact or block, only the tail that could still grow into personal data is held
back (a trailing word, a run of digits and separators, an IBAN or name being written; see
`pii.tail_start`), so the masked stream equals `check_output(whole text).text` wherever the
deltas are split. With toxicity=redact or block (and MiniLM installed), text is released a
sentence at a time and each released piece is scored first: a toxic piece becomes `[TOXIC]`
or stops the stream. flag only records: the whole text is checked at `flush()`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lmforge.guard.detectors import embeddings_available
from lmforge.guard.finding import Finding, redact, resolve_overlaps
from lmforge.guard.pii import tail_start
from lmforge.guard.policy import Decision, GuardPolicy, clean_text, decide, run_checks

CONTEXT = 64  # released characters kept as left context ("my name is" before a name)
SENTENCE_END = re.compile(r"[.!?\n][\"')\]]*\s")


class StreamRedactor:
    """Receives text deltas of one answer and returns what may be sent on."""

    def __init__(self, policy: GuardPolicy, on_done: Callable[[Decision], object] | None = None):
        self.policy = policy
        self.blocked = False
        self.findings: list[Finding] = []  # spans in the whole streamed text
        self.decision: Decision | None = None  # set by flush()
        self._hold_pii = policy.pii in ("redact", "block")
        self._gate_toxicity = policy.toxicity in ("redact", "block") and embeddings_available()
        self._on_done = on_done
        self._context = ""  # the last CONTEXT characters released, unmasked
        self._pending = ""  # received, not yet released
        self._released = 0  # characters of the streamed text released (or dropped) so far
        self._parts: list[str] = []  # the whole streamed text

    def feed(self, delta: str | bytes) -> str:
        """Take one delta; return the text that is now safe to send ("" if none)."""
        if self.blocked or self.decision is not None:
            return ""
        delta = clean_text(delta)
        self._parts.append(delta)
        self._pending += delta
        return self._release(final=False)

    def flush(self) -> str:
        """End of the stream: release the held-back tail, record and return the rest."""
        if self.decision is not None:
            return ""
        out = "" if self.blocked else self._release(final=True)
        text = "".join(self._parts)
        # Checks that only flag run once on the whole text; streamed findings are kept.
        later = [c for c in ("pii", "toxicity") if getattr(self.policy, c) == "flag"]
        if self.policy.toxicity in ("redact", "block") and not self._gate_toxicity:
            later.append("toxicity")  # MiniLM missing: run_checks notes it as skipped
        found, skipped = run_checks(self.policy, later, text)
        self.decision = decide(self.policy, "output", text, self.findings + found, skipped)
        if self._on_done is not None:
            self._on_done(self.decision)
        return out

    def _release(self, final: bool) -> str:
        text = self._context + self._pending
        base = len(self._context)  # text[:base] was released before
        findings: list[Finding] = []
        if self._hold_pii:
            findings, _ = run_checks(GuardPolicy(pii="redact"), ["pii"], text)
        hold = len(text)
        if not final:
            if self._hold_pii:
                hold = max(base, tail_start(text))
            if self._gate_toxicity:  # release whole sentences only
                ends = [m.end() for m in SENTENCE_END.finditer(text, base, hold)]
                hold = ends[-1] if ends else base
        # Never cut through something found: hold back from its start instead.
        moved = True
        while moved:
            moved = False
            for f in findings:
                if base <= f.start < hold < f.end:
                    hold, moved = f.start, True
        if hold <= base:
            return ""
        segment = text[base:hold]
        shift = self._released - base  # text position -> position in the whole stream
        kept = [f for f in resolve_overlaps(findings) if f.start >= base and f.end <= hold]
        out = self._screen(segment, kept, base, shift)
        self._context = text[:hold][-CONTEXT:]
        self._pending = text[hold:]
        self._released += len(segment)
        return out

    def _screen(self, segment: str, kept: list[Finding], base: int, shift: int) -> str:
        """The released `segment` as it may be sent, applying toxicity then PII actions."""
        if self._gate_toxicity and segment.strip():
            from lmforge.guard.toxicity import find_toxic

            toxic = find_toxic(segment)
            offset = base + shift
            self.findings += [
                Finding(**{**f.to_dict(), "start": f.start + offset, "end": f.end + offset})
                for f in toxic
            ]
            if toxic and self.policy.toxicity == "block":
                self.blocked = True
                return ""
            if toxic:
                return "[TOXIC]"
        self.findings += [
            Finding(**{**f.to_dict(), "start": f.start + shift, "end": f.end + shift}) for f in kept
        ]
        if kept and self.policy.pii == "block":
            self.blocked = True
            return segment[: kept[0].start - base]
        local = [
            Finding(**{**f.to_dict(), "start": f.start - base, "end": f.end - base}) for f in kept
        ]
        return redact(segment, local)
