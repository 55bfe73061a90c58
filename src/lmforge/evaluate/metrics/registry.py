"""The one registry of metric families: name -> `compute(records, **options) -> dict`."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from lmforge.errors import InvalidInputError

Metric = Callable[..., dict[str, Any]]

METRICS: dict[str, Metric] = {}


def register(name: str) -> Callable[[Metric], Metric]:
    """Decorator that adds a family's `compute` to METRICS under `name`."""

    def add(fn: Metric) -> Metric:
        known = METRICS.get(name)
        # Re-importing the same module is harmless; two different functions under one name are a bug.
        if known is not None and (known.__module__, known.__qualname__) != (
            fn.__module__,
            fn.__qualname__,
        ):
            raise ValueError(f"metric {name!r} is already registered by {known.__module__}")
        METRICS[name] = fn
        return fn

    return add


def get_metric(name: str) -> Metric:
    """The registered `compute` for `name`; an unknown name is a user error."""
    try:
        return METRICS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown metric {name!r}", f"use one of: {', '.join(sorted(METRICS))}"
        ) from None


def compute_all(
    records: list[dict],
    names: Iterable[str],
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, dict]:
    """Run each named metric over `records`, after checking every name and option first."""
    options = dict(options or {})
    fns = {name: get_metric(name) for name in names}
    stray = sorted(set(options) - set(fns))
    if stray:
        raise InvalidInputError(
            f"options given for metric(s) not requested: {', '.join(stray)}",
            f"request them too, or drop their options; requested: {', '.join(fns) or 'none'}",
        )
    for name, fn in fns.items():
        try:
            inspect.signature(fn).bind(records, **options.get(name, {}))
        except TypeError:
            accepted = [p for p in inspect.signature(fn).parameters if p != "records"]
            raise InvalidInputError(
                f"unknown option for metric {name!r}: {', '.join(sorted(options[name]))}",
                f"accepted options: {', '.join(accepted) or 'none'}",
            ) from None
    return {name: fn(records, **options.get(name, {})) for name, fn in fns.items()}
