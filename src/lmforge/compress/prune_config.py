"""`PruneConfig`: every knob of `lmforge prune`, checked before any work starts.

Kept free of torch so that `lmforge --help` can build the flags from it. Two checks:
`validate()` on the values alone, `check_model()` against the model's config.json (read
without its weights), so a pattern that does not divide a layer or a sparsity that would
remove no head (or every head) stops with one line before the weights are loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError, NotFoundError, check_known

UNSTRUCTURED = ("magnitude", "wanda", "nm")  # zeros inside the weights; the shapes stay
STRUCTURED = ("heads", "channels", "layers")  # rows, columns or blocks removed; a smaller config
METHODS = UNSTRUCTURED + STRUCTURED
SCORES = ("magnitude", "wanda")
STRUCTURED_TYPES = ("llama", "mistral", "qwen2", "qwen3")  # q/k/v/o + gate/up/down blocks
DEFAULT_SPARSITY = 0.5
DEFAULT_PATTERN = "2:4"


@dataclass
class PruneConfig:
    """Every knob of a pruning run."""

    method: str = field(
        default="magnitude", metadata={"help": "magnitude|wanda|nm|heads|channels|layers."}
    )
    sparsity: float | None = field(
        default=None,
        metadata={
            "help": "Share to remove, in (0, 1): of block weights (magnitude, wanda), of KV head "
            "groups (heads), MLP channels (channels) or layers (layers); default 0.5, "
            "nm: set by --pattern."
        },
    )
    pattern: str | None = field(
        default=None, metadata={"help": "nm: keep N of every M consecutive inputs (default 2:4)."}
    )
    score: str | None = field(
        default=None, metadata={"help": "nm: rank weights by magnitude|wanda (default magnitude)."}
    )
    calib: str | None = field(
        default=None,
        metadata={"help": "Calibration text: .txt or JSONL data (default: the quickstart manual)."},
    )
    calib_samples: int = field(default=32, metadata={"help": "Calibration rows (at most)."})
    calib_seq_len: int = field(default=128, metadata={"help": "Tokens per calibration row."})
    recover: int = field(
        default=0, metadata={"help": "LoRA recovery steps after pruning (0: none)."}
    )
    recover_data: str = field(
        default="quickstart", metadata={"help": "Recovery data: a tune data file, or quickstart."}
    )
    recover_lr: float | None = field(
        default=None, metadata={"help": "Recovery learning rate (default: tune's LoRA rate)."}
    )
    seed: int = field(default=0, metadata={"help": "Seed of the recovery run."})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PruneConfig:
        """A validated config from a mapping (flags, a recipe); unknown keys are errors."""
        check_known(values, cls, "prune")
        return cls(**values).validate()

    def validate(self) -> PruneConfig:
        """Check kinds and ranges; raises InvalidInputError before any work."""
        if self.method not in METHODS:
            raise InvalidInputError(
                f"unknown pruning method {self.method!r}", f"use one of: {', '.join(METHODS)}"
            )
        if self.method == "nm":
            n, m = self.nm
            if self.sparsity is not None and not math.isclose(self.sparsity, 1 - n / m):
                raise InvalidInputError(
                    f"--sparsity {self.sparsity} contradicts --pattern {n}:{m} "
                    f"(which removes {1 - n / m:g} of the weights)",
                    "drop --sparsity: the pattern sets it",
                )
            if self.score is not None and self.score not in SCORES:
                raise InvalidInputError(
                    f"unknown score {self.score!r}", f"use one of: {', '.join(SCORES)}"
                )
        else:
            for name in ("pattern", "score"):
                if getattr(self, name) is not None:
                    raise InvalidInputError(
                        f"--{name} is for --method nm", f"drop --{name}, or use --method nm"
                    )
            s = self.sparsity
            if s is not None and (
                isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s < 1
            ):
                raise InvalidInputError(
                    f"sparsity must be strictly between 0 and 1, got {s!r}",
                    "pass e.g. --sparsity 0.5 (the share of weights to remove)",
                )
        if self.calib_samples < 1:
            raise InvalidInputError("calib_samples must be >= 1", "pass e.g. --calib-samples 32")
        if self.calib_seq_len < 2:
            raise InvalidInputError("calib_seq_len must be >= 2", "pass e.g. --calib-seq-len 128")
        if self.recover < 0:
            raise InvalidInputError("recover must be >= 0", "pass the number of LoRA steps")
        if self.recover_lr is not None and not self.recover_lr > 0:
            raise InvalidInputError("recover_lr must be positive", "use e.g. 1e-3")
        if self.calib is not None:
            _check_file(self.calib, "calibration")
        if self.recover and self.recover_data != "quickstart":
            _check_file(self.recover_data, "recovery")
        return self

    @property
    def nm(self) -> tuple[int, int]:
        """(N, M) of the pattern: keep N weights in every group of M."""
        text = self.pattern or DEFAULT_PATTERN
        parts = text.split(":")
        try:
            n, m = (int(p) for p in parts)
        except ValueError:
            n = m = 0
        if len(parts) != 2 or not 1 <= n < m:
            raise InvalidInputError(
                f"pattern must be N:M with 1 <= N < M, got {text!r}", "pass e.g. --pattern 2:4"
            )
        return n, m

    @property
    def target_sparsity(self) -> float:
        if self.method == "nm":
            n, m = self.nm
            return 1 - n / m
        return DEFAULT_SPARSITY if self.sparsity is None else float(self.sparsity)

    @property
    def needs_calibration(self) -> bool:
        return self.method != "magnitude" and not (self.method == "nm" and self.score != "wanda")


def _check_file(path: str, what: str) -> None:
    if not Path(path).expanduser().is_file():
        raise NotFoundError(f"{path}: no such {what} file", f"check the path of the {what} data")


def removed_count(sparsity: float, total: int) -> int:
    """How many of `total` units (heads, channels, layers) a sparsity removes: rounded."""
    return int(round(sparsity * total))


def check_model(config: PruneConfig, hf_config) -> None:
    """Stop, before loading any weight, if `config` cannot apply to a model of `hf_config`."""
    c = hf_config
    heads = c.num_attention_heads
    kv = getattr(c, "num_key_value_heads", None) or heads
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // heads
    if config.method == "nm":  # every block linear's input width must split into groups of M
        n, m = config.nm
        widths = {
            "hidden_size": c.hidden_size,
            "attention width (heads x head_dim)": heads * head_dim,
            "intermediate_size": c.intermediate_size,
        }
        for what, width in widths.items():
            if width % m:
                raise InvalidInputError(
                    f"pattern {n}:{m} does not divide the layers: {what} is {width}, "
                    f"not a multiple of {m}",
                    "use an M that divides every layer's width, e.g. --pattern 2:4",
                )
    if config.method not in STRUCTURED:
        return
    if c.model_type not in STRUCTURED_TYPES:
        raise InvalidInputError(
            f"structured pruning supports {', '.join(STRUCTURED_TYPES)} models, not "
            f"{c.model_type!r}",
            "use --method magnitude, wanda or nm",
        )
    unit, total = {
        "heads": ("KV head group", kv),
        "channels": ("MLP channel", c.intermediate_size),
        "layers": ("layer", c.num_hidden_layers),
    }[config.method]
    count = removed_count(config.target_sparsity, total)
    if not 1 <= count < total:
        raise InvalidInputError(
            f"sparsity {config.target_sparsity:g} removes {count} of the {total} {unit}s "
            f"per {'model' if config.method == 'layers' else 'layer'}",
            f"choose a sparsity that removes at least one and keeps at least one "
            f"(steps of {1 / total:.3g})",
        )
