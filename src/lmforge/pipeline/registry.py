"""The step registry: every step type a recipe may name, registered in one call.

A step type is a function `run(call) -> Output` with two dataclasses as its schema: `args`,
the step's own arguments (the model it reads, the name it writes, ...), and optionally
`config`, the library's config dataclass (TuneConfig, QuantizeConfig, ...). A recipe step's
keys are exactly the fields of the two; nothing else is accepted.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

PRODUCES = ("artifact", "files", "nothing")


@dataclass
class Output:
    """What a step produced. `value` is what `${id}` stands for in later steps."""

    artifact: str | None = None  # a store artifact's name
    files: list[Path] = field(default_factory=list)  # files written outside the store
    value: str | None = None  # default: the artifact's name, else the first file
    passed: bool | None = None  # a gate's decision; False skips the steps that read it

    def __post_init__(self) -> None:
        self.files = [Path(f) for f in self.files]
        if self.value is None:
            self.value = self.artifact or (str(self.files[0]) if self.files else None)


@dataclass
class StepCall:
    """Everything a step function gets: its checked arguments and where to write."""

    id: str
    args: Any  # an instance of the step type's `args` dataclass
    config: Any  # an instance of its `config` dataclass, or None
    out_name: str  # the artifact name to write (the recipe's `out`, else RECIPE-ID)
    folder: Path  # $LMFORGE_HOME/runs/RECIPE/ID: for files a step writes
    serve: bool = False  # `lmforge run --serve`: run a serve step in the foreground
    resume: bool = False  # the same step failed or was stopped last time: continue it


@dataclass(frozen=True)
class StepType:
    name: str
    run: Callable[[StepCall], Output]
    args: type  # dataclass: the step's own arguments
    config: str | type | None = None  # the library's config dataclass, or "module:Class"
    produces: str = "artifact"
    cache: bool = True  # False: runs every time (its effect is outside lmforge: swap, serve)
    needs: str | None = None  # a module that must be importable (a part still to come)
    help: str = ""
    fingerprint: Callable[[Any], Any] | None = None  # args -> what it reads beyond files

    def config_class(self) -> type | None:
        """The config dataclass, imported on first use (the library modules load torch)."""
        if self.config is None or isinstance(self.config, type):
            return self.config
        module, _, name = self.config.partition(":")
        return getattr(importlib.import_module(module), name)

    def schema(self) -> dict[str, Any]:
        """{key: dataclass field} of every key a recipe step of this type may hold."""
        out = {f.name: f for f in fields(self.args)}
        config = self.config_class()
        if config is not None:
            out.update({f.name: f for f in fields(config)})
        return out

    def missing_module(self) -> str | None:
        """The module named by `needs` when it is not there (None when it is)."""
        if self.needs is None:
            return None
        try:
            found = importlib.util.find_spec(self.needs) is not None
        except ModuleNotFoundError:
            found = False
        return None if found else self.needs


STEPS: dict[str, StepType] = {}


def register_step(
    name: str,
    *,
    args: type,
    config: str | type | None = None,
    produces: str = "artifact",
    cache: bool = True,
    needs: str | None = None,
    fingerprint: Callable[[Any], Any] | None = None,
) -> Callable:
    """Decorator: register `run(call) -> Output` as the step type `name` (replacing any).

    `fingerprint(args)`: what the step reads that its values and files do not show (e.g.
    the records of a database); it joins the cache key.
    """
    if produces not in PRODUCES:
        raise ValueError(f"produces must be one of {PRODUCES}")

    def add(run: Callable[[StepCall], Output]) -> Callable[[StepCall], Output]:
        doc = (run.__doc__ or "").strip().splitlines()
        STEPS[name] = StepType(
            name, run, args, config, produces, cache, needs, doc[0] if doc else "", fingerprint
        )
        return run

    return add


def unregister_step(name: str) -> None:
    STEPS.pop(name, None)


def required(f) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def is_artifact(f) -> bool:
    """A field naming a store artifact (or a model path) that the step reads."""
    return bool(f.metadata.get("artifact"))
