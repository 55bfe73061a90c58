"""A chat conversation over a `Model`: the history, slash commands and the terminal loop."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

HELP = "commands: /reset (new conversation), /system TEXT (set system prompt), /exit"


class ChatSession:
    """Keeps the messages of one conversation and streams each reply."""

    def __init__(self, model, system: str | None = None, sampling: dict | None = None):
        self.model = model
        self.system = system
        self.sampling = sampling or {}
        self.messages: list[dict[str, str]] = []

    def reset(self) -> None:
        self.messages = []

    def history(self) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.messages

    def send(self, text: str) -> Iterator[str]:
        """Stream the reply to `text`; the full reply joins the history when it ends."""
        self.messages.append({"role": "user", "content": text})
        try:
            deltas = self.model.chat(self.history(), stream=True, **self.sampling)
        except Exception:
            self.messages.pop()
            raise
        return self._record(deltas)

    def _record(self, deltas: Iterator[str]) -> Iterator[str]:
        parts = []
        for d in deltas:
            parts.append(d)
            yield d
        self.messages.append({"role": "assistant", "content": "".join(parts).strip()})

    def command(self, line: str) -> str | None:
        """Handle a /command; return a line to show, or None to quit."""
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "/exit" or cmd == "/quit":
            return None
        if cmd == "/reset":
            self.reset()
            return "(conversation cleared)"
        if cmd == "/system":
            self.system = arg.strip() or None
            self.reset()
            return f"(system prompt {'set' if self.system else 'cleared'}; conversation cleared)"
        return f"(unknown command {cmd}; {HELP})"

    def repl(self, stdin=None, stdout=None, show_stats: bool = False) -> None:
        """Read lines until /exit or end of input; stream each reply."""
        stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
        interactive = stdin.isatty()
        if interactive:
            stdout.write(f"lmforge chat with {self.model.name} ({HELP})\n")
        while True:
            if interactive:
                stdout.write("\n> ")
                stdout.flush()
            line = stdin.readline()
            if not line:
                break
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.startswith("/"):
                shown = self.command(line)
                if shown is None:
                    break
                stdout.write(shown + "\n")
                continue
            start, first, n = time.perf_counter(), None, 0
            for delta in self.send(line):
                first = first or time.perf_counter()
                n += 1
                stdout.write(delta)
                stdout.flush()
            stdout.write("\n")
            if show_stats and first:
                sys.stderr.write(f"[ttft {1e3 * (first - start):.0f} ms, {n} chunks]\n")
            stdout.flush()
