"""Tuning methods: each a `peft` config (or full fine-tuning) with defaults that suit it.

Adapters are `peft`'s; this module only picks their settings. Target modules come from the
model itself: every linear layer inside the decoder blocks (attention and MLP projections),
named by the last part of its module path, so Llama, Qwen or any other architecture gets
the right names without a table of architectures.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.errors import InvalidInputError

METHODS = ("lora", "dora", "ia3", "prompt", "prefix", "full", "dpo")
PRECISIONS = ("auto", "fp32", "bf16")
# Methods whose base stays frozen and whose adapter weights peft keeps in fp32 over a bf16
# base. (Prompt/prefix tuning feed their fp32 virtual tokens into the embeddings: fp32 only.)
BF16_METHODS = ("lora", "dora", "ia3", "dpo")


@dataclass(frozen=True)
class MethodDefaults:
    lr: float
    packing: bool  # prompt and prefix tuning prepend virtual tokens: rows cannot be packed


DEFAULTS = {
    "lora": MethodDefaults(lr=2e-4, packing=True),
    "dora": MethodDefaults(lr=2e-4, packing=True),
    "ia3": MethodDefaults(lr=3e-3, packing=True),
    "prompt": MethodDefaults(lr=3e-2, packing=False),
    "prefix": MethodDefaults(lr=1e-2, packing=False),
    "full": MethodDefaults(lr=2e-5, packing=True),
    # DPO trains a LoRA on preference pairs (one pair per row, no packing). A quarter of the
    # SFT LoRA rate: on the default model, 2e-4 already pushed the chosen replies' log-prob
    # below the reference within 36 steps, 5e-5 raised it (docs/tune.md, "Preference tuning").
    "dpo": MethodDefaults(lr=5e-5, packing=False),
}


def check_method(method: str) -> str:
    if method not in METHODS:
        raise InvalidInputError(f"unknown method {method!r}", f"use one of: {', '.join(METHODS)}")
    return method


def linear_names(model) -> list[str]:
    """Last names of the linear layers inside the decoder blocks (q_proj, up_proj, ...)."""
    import torch

    names = set()
    for path, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and ".layers." in f".{path}":
            names.add(path.rsplit(".", 1)[-1])
    return sorted(names)


def target_modules(model, method: str, requested: list[str] | None = None) -> list[str]:
    """The modules an adapter wraps: `requested` (checked against the model) or the default."""
    available = linear_names(model)
    if requested:
        unknown = sorted(set(requested) - set(available))
        if unknown:
            raise InvalidInputError(
                f"target module(s) {', '.join(unknown)} do not exist in this model",
                f"choose from: {', '.join(available)}",
            )
        return list(requested)
    if method == "ia3":  # IA3 scales keys, values and the MLP's input to its down projection
        return [n for n in available if n in ("k_proj", "v_proj", "down_proj")] or available
    return available


def peft_config(model, method: str, options: dict):
    """The `peft` config for `method`, or None for full fine-tuning."""
    check_method(method)
    if method == "full":
        return None
    from peft import (
        IA3Config,
        LoraConfig,
        PrefixTuningConfig,
        PromptTuningConfig,
        TaskType,
    )

    if method in ("lora", "dora", "dpo"):  # dpo: a LoRA trained on preferences
        return LoraConfig(
            task_type=TaskType.CAUSAL_LM,
            r=options.get("rank", 16),
            lora_alpha=options.get("alpha", 32),
            lora_dropout=options.get("dropout", 0.05),
            target_modules=target_modules(model, method, options.get("target_modules")),
            use_dora=method == "dora",
        )
    if method == "ia3":
        targets = target_modules(model, method, options.get("target_modules"))
        return IA3Config(
            task_type=TaskType.CAUSAL_LM,
            target_modules=targets,
            feedforward_modules=[n for n in targets if n in ("down_proj", "fc2", "w2")],
        )
    virtual = options.get("num_virtual_tokens", 20)
    if method == "prompt":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=virtual)
    return PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=virtual)


def wrap(model, method: str, options: dict):
    """The model ready to train: a `PeftModel`, or the model itself with every weight trainable."""
    config = peft_config(model, method, options)
    if config is None:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    import warnings

    from peft import get_peft_model

    with warnings.catch_warnings():  # peft reads a property transformers 5 renamed
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, config)


def resolve_precision(method: str, precision: str) -> str:
    """ "fp32" or "bf16" for a run; "auto" is bf16 for a frozen-base method on hardware that
    multiplies bf16 natively (measured on 2 EPYC cores with AVX512-BF16: a 2048x576 by
    576x1536 product takes 35 ms in bf16 against 123 ms in fp32)."""
    if precision != "auto":
        return precision
    if method not in BF16_METHODS:
        return "fp32"
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
