"""`TuneConfig`: every knob of a tuning run, from flags or a YAML file with the same keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError
from lmforge.tune.methods import BF16_METHODS, DEFAULTS, PRECISIONS, check_method


@dataclass
class TuneConfig:
    """Every knob of a tuning run; a YAML config holds the same keys."""

    data: str = field(
        metadata={"help": "Training data: chat/instruction JSONL, text, or quickstart."}
    )
    method: str = field(default="lora", metadata={"help": "lora|dora|ia3|prompt|prefix|full|dpo."})
    out: str | None = field(default=None, metadata={"help": "Name of the new artifact."})
    format: str = field(default="auto", metadata={"help": "chat|instruction|text|auto."})
    seq_len: int = field(default=512, metadata={"help": "Tokens per packed row."})
    micro_batch: int = field(default=4, metadata={"help": "Rows per forward pass."})
    grad_accum: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    epochs: int = field(default=1, metadata={"help": "Passes over the data."})
    max_steps: int | None = field(default=None, metadata={"help": "Stop after this many steps."})
    lr: float | None = field(default=None, metadata={"help": "Peak learning rate."})
    warmup: float = field(default=0.05, metadata={"help": "Warmup, as a share of the steps."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm."})
    eval_fraction: float = field(default=0.1, metadata={"help": "Share of data held out."})
    eval_every: int = field(default=0, metadata={"help": "Steps between evals (0: ~10)."})
    patience: int = field(default=0, metadata={"help": "Stop after N evals w/o gain (0: off)."})
    save_every: int = field(default=0, metadata={"help": "Steps between checkpoints (0: evals)."})
    seed: int = field(default=0, metadata={"help": "Seed of data order, init and dropout."})
    packing: bool | None = field(default=None, metadata={"help": "Pack short examples."})
    rank: int = field(default=16, metadata={"help": "LoRA/DoRA rank."})
    alpha: int = field(default=32, metadata={"help": "LoRA/DoRA alpha."})
    dropout: float = field(default=0.05, metadata={"help": "LoRA/DoRA dropout."})
    target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules to adapt (default: every block linear)."}
    )
    num_virtual_tokens: int = field(default=20, metadata={"help": "Prompt/prefix length."})
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Recompute activations (default: when needed)."}
    )
    beta: float = field(default=0.1, metadata={"help": "dpo: weight of the pull to the reference."})
    adapter: str | None = field(
        default=None, metadata={"help": "dpo: start from this LoRA artifact (default: fresh)."}
    )
    fsdp: bool = field(
        default=False, metadata={"help": "With --nproc N: shard the model over the N processes."}
    )
    precision: str = field(
        default="auto",
        metadata={
            "help": "fp32|bf16|auto. bf16 holds the frozen base in bf16 (adapters, gradients "
            "and optimizer stay fp32); auto picks it for lora/dora/ia3/dpo where the "
            "hardware multiplies bf16 natively (CPUs with AVX512-BF16/AMX, recent GPUs)."
        },
    )

    def validate(self) -> TuneConfig:
        check_method(self.method)
        for name in ("seq_len", "micro_batch", "grad_accum", "epochs"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1", f"pass a positive --{name}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InvalidInputError("max_steps must be >= 1", "pass a positive --max-steps")
        if not 0 <= self.eval_fraction < 1:
            raise InvalidInputError("eval_fraction must be in [0, 1)", "use e.g. 0.1")
        if self.lr is not None and not self.lr > 0:
            raise InvalidInputError("lr must be positive", "use e.g. 2e-4")
        if not self.beta > 0:
            raise InvalidInputError("beta must be positive", "use e.g. 0.1")
        if self.adapter and self.method != "dpo":
            raise InvalidInputError("--adapter is for --method dpo", "drop --adapter")
        if self.method == "dpo" and self.packing:
            raise InvalidInputError("dpo lays out one pair per row", "drop --packing")
        if self.fsdp and self.method in ("prompt", "prefix"):  # peft saves these by a forward
            raise InvalidInputError(  # pass of the prompt encoder, which a shard cannot run
                f"--fsdp does not support --method {self.method}",
                "drop --fsdp (--nproc alone replicates the model), or use lora",
            )
        if self.precision not in PRECISIONS:
            raise InvalidInputError(
                f"unknown precision {self.precision!r}", f"use one of: {', '.join(PRECISIONS)}"
            )
        if self.precision == "bf16" and self.method not in BF16_METHODS:
            raise InvalidInputError(
                f"--precision bf16 is for adapters, not --method {self.method}",
                f"use it with {', '.join(BF16_METHODS)}, or drop it",
            )
        return self

    @property
    def peak_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULTS[self.method].lr

    @property
    def packs(self) -> bool:
        return DEFAULTS[self.method].packing if self.packing is None else self.packing

    def adapter_options(self) -> dict[str, Any]:
        keys = ("rank", "alpha", "dropout", "target_modules", "num_virtual_tokens")
        return {k: getattr(self, k) for k in keys}


def load_config(path: str | Path | None, **overrides: Any) -> TuneConfig:
    """A config from YAML (optional) with `overrides` (flags given) on top."""
    values: dict[str, Any] = {}
    if path:
        import yaml

        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise InvalidInputError(f"cannot read config {path}: {e}", "fix the YAML file") from e
        if not isinstance(values, dict):
            raise InvalidInputError(f"{path}: not a mapping of keys", "write key: value lines")
    known = set(TuneConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidInputError(
            f"{path}: unknown key(s) {', '.join(unknown)}",
            f"use any of: {', '.join(sorted(known))}",
        )
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "data" not in values:
        raise InvalidInputError("no training data given", "pass --data FILE")
    return TuneConfig(**values).validate()
