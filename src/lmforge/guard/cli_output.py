"""How `lmforge guard check` prints a decision."""

from __future__ import annotations

import json

from lmforge.guard.policy import Decision, GuardPolicy

STYLE = {"allow": "green", "flag": "yellow", "redact": "cyan", "block": "red"}


def print_decision(decision: Decision, policy: GuardPolicy, as_json: bool) -> None:
    """The decision as JSON, or as a few readable lines (the skipped checks on stderr)."""
    from rich.console import Console
    from rich.markup import escape

    if as_json:
        print(
            json.dumps({"policy": str(policy)} | decision.to_dict(), indent=2, ensure_ascii=False)
        )
        return
    console = Console(highlight=False)
    style = STYLE[decision.action]
    console.print(f"[bold {style}]{decision.action}[/] ({decision.direction}; policy {policy})")
    for f in decision.findings:
        console.print(
            f"  {f.check:9} {f.kind:9} [{f.start}:{f.end}] score {f.score:.2f}  {escape(f.reason)}"
            f"  ({f.detector}, {getattr(policy, f.check)})"
        )
    if decision.action == "redact":
        console.print(f"text: {escape(decision.text)}")
    for note in decision.skipped:
        Console(stderr=True, highlight=False).print(f"[yellow]{escape(note)}[/]")
