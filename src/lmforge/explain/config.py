"""`ExplainConfig`: every knob of `lmforge explain`, checked before the model is touched.

Kept free of torch so that `lmforge --help` can build the flags from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from lmforge.errors import InvalidInputError, check_known

# the names of attribution.METHODS, repeated here so that `lmforge --help` needs no torch
METHODS = ("integrated_gradients", "input_x_gradient", "attention", "occlusion")


@dataclass
class ExplainConfig:
    """What to explain and how; the CLI flags come from these fields."""

    prompt: str = field(metadata={"help": "The text the model reads (required)."})
    target: str | None = field(
        default=None,
        metadata={"help": "Continuation to explain [default: the model's greedy answer]."},
    )
    method: str = field(
        default="integrated_gradients",
        metadata={"help": "integrated_gradients|input_x_gradient|attention|occlusion."},
    )
    contrast: str | None = field(
        default=None,
        metadata={"help": "An alternative continuation: explain log p(target) - log p(contrast)."},
    )
    max_new_tokens: int = field(
        default=16, metadata={"help": "Without a target: most tokens to generate and explain."}
    )
    steps: int = field(
        default=64, metadata={"help": "integrated_gradients: points on the path (trapezoid)."}
    )
    keep_first: bool = field(
        default=True,
        metadata={
            "help": "Never remove the first token (most models' attention sink; without it "
            "the integration path jumps). Its gradient attribution is then 0."
        },
    )
    batch_size: int = field(
        default=16, metadata={"help": "Inputs per forward pass (IG path points, occlusions)."}
    )
    top_k: int = field(
        default=5, metadata={"help": "Logit lens: tokens shown per layer and position."}
    )
    max_context: int | None = field(
        default=None,
        metadata={"help": "Most tokens the model sees [default: the model's context]."},
    )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ExplainConfig:
        """A validated config from a mapping (flags, a request body); unknown keys are errors."""
        check_known(values, cls, "explain")
        if values.get("prompt") is None:
            raise InvalidInputError("no prompt given", "pass --prompt TEXT")
        return cls(**values).validate()

    def validate(self) -> ExplainConfig:
        """Check kinds and ranges; raises InvalidInputError before any work."""
        if not isinstance(self.prompt, str | bytes):
            raise InvalidInputError(
                f"prompt must be text, not {type(self.prompt).__name__}", "pass a string"
            )
        if self.method not in METHODS:
            raise InvalidInputError(
                f"unknown attribution method {self.method!r}", f"use one of: {', '.join(METHODS)}"
            )
        for name, low in (("max_new_tokens", 1), ("steps", 2), ("batch_size", 1), ("top_k", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidInputError(
                    f"invalid {name}={value!r}", f"use an integer of at least {low}"
                )
        if self.max_context is not None and (
            not isinstance(self.max_context, int) or self.max_context < 2
        ):
            raise InvalidInputError(
                f"invalid max_context={self.max_context!r}", "use an integer of at least 2"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
