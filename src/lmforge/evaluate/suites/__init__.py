"""Evaluation suites that ship with lmforge, written by the project from facts or by code."""

from __future__ import annotations

from collections.abc import Callable

from lmforge.errors import InvalidInputError
from lmforge.evaluate.suites import bias, core, privacy, toxicity
from lmforge.quickstart import build_eval


def _quickstart() -> list[dict]:
    """Held-out questions about the fictional product of `lmforge tune --data quickstart`."""
    return [{**row, "task": "quickstart", "format": "qa"} for row in build_eval()]


SUITES: dict[str, Callable[[], list]] = {
    "core": core.build,
    "bias": bias.build,
    "toxicity": toxicity.build,
    "privacy": privacy.build,
    "quickstart": _quickstart,
}


def load_suite(name: str) -> list[dict]:
    """The items of the bundled suite called `name` (see SUITES)."""
    if name not in SUITES:
        raise InvalidInputError(f"unknown suite {name!r}", f"use one of: {', '.join(SUITES)}")
    return SUITES[name]()
