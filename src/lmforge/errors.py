"""Errors a user can act on: each carries one line saying what is wrong and what to do."""

from __future__ import annotations


class LmforgeError(Exception):
    """A user-facing error. The CLI prints `str(err)` as one line and exits with code 2."""

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} — {fix}" if fix else problem)


class NotFoundError(LmforgeError):
    """A named artifact or a path does not exist."""


class InvalidInputError(LmforgeError):
    """A value is out of range or of the wrong kind."""


class ModelLoadError(LmforgeError):
    """A file or folder is not a model lmforge can read (corrupt, truncated, wrong format)."""


def check_known(values, config_class, what: str) -> None:
    """Reject keys of `values` that are not fields of the dataclass `config_class`."""
    from dataclasses import fields

    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInputError(
            f"unknown {what} option(s): {', '.join(unknown)}",
            f"use any of: {', '.join(sorted(known))}",
        )
