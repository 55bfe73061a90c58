"""The guard on the API (`lmforge serve --guard POLICY`): prompts are checked before the model
sees them, answers before the client does, streamed ones delta by delta.

A blocked prompt is a 400 (`code: "guard_blocked"`, the reason in the message); a redacted
one reaches the model masked. A blocked answer ends with `finish_reason: "content_filter"`,
as OpenAI's filter does, and its text is withheld; a redacted one is masked. Which messages
are checked: the user's and tools' (the system prompt is the operator's own). Token
log-probabilities would show the unmasked answer, so they are refused while an output check
is on. The decisions are counted in /metrics (`lmforge_guard_decisions_total`).
"""

from __future__ import annotations

from fastapi.concurrency import run_in_threadpool

from lmforge.guard import Guard
from lmforge.serve.errors import APIError

CHECKED_ROLES = ("user", "tool", "function")


def output_checked(guard: Guard | None) -> bool:
    """Whether answers go through the guard (pii or toxicity on)."""
    return guard is not None and (guard.policy.pii != "off" or guard.policy.toxicity != "off")


async def check_prompt(guard: Guard | None, text: str, param: str) -> str:
    """`text` as the model may see it; a 400 if the policy blocks it."""
    if guard is None or not guard.policy.active:
        return text
    decision = await run_in_threadpool(guard.check_input, text)
    if decision.blocked:
        raise APIError(
            400, f"the guard refused the {param}: {decision.reason}", param, "guard_blocked"
        )
    return decision.text


async def check_messages(guard: Guard | None, messages: list[dict]) -> list[dict]:
    """Chat messages ({role, content}) with the user's and tools' texts checked."""
    out = []
    for i, message in enumerate(messages):
        if message["role"] in CHECKED_ROLES:
            text = await check_prompt(guard, message["content"], f"messages[{i}]")
            message = {**message, "content": text}
        out.append(message)
    return out


def refuse_logprobs(guard: Guard | None, logprobs, echo: bool = False) -> None:
    """Log-probabilities and echo show raw tokens, which the output guard may have to mask."""
    if output_checked(guard) and (logprobs is not None or echo):
        raise APIError(
            400,
            "logprobs and echo are not available while the server checks answers (--guard)",
            "logprobs",
        )


class AnswerGuard:
    """One choice's answer through the guard: `feed` each delta, `finish` at its end."""

    def __init__(self, guard: Guard | None):
        self.stream = guard.output_stream() if output_checked(guard) else None

    @property
    def blocked(self) -> bool:
        return self.stream is not None and self.stream.blocked

    def feed(self, text: str) -> str:
        return text if self.stream is None else self.stream.feed(text)

    def finish(self, reason: str | None) -> tuple[str, str | None]:
        """The held-back tail and the finish reason ("content_filter" if it was blocked)."""
        if self.stream is None:
            return "", reason
        tail = self.stream.flush()
        return ("", "content_filter") if self.stream.blocked else (tail, reason)
