"""`lmforge quantize`: weight-only int8 / int4 artifacts, stored as the engine runs them.

The step quantizes every decoder linear and the LM head with the engine's own
`engine.quant_linear.quantize_weight` and writes the folder described in
`models.quantized` (the format `lmforge.load` reads back, bit-exact).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError
from lmforge.models.quantized import is_quantized, save_quantized
from lmforge.store import Artifact, Store

TYPES = ("int8", "int4")


INT4_GROUPS = (32, 64, 128, 256)  # the group sizes of torch's int4 matmul kernels


@dataclass
class QuantizeConfig:
    """What `lmforge quantize` does; the CLI flags come from these fields."""

    type: str = field(default="int8", metadata={"help": "int8 (per channel) or int4 (grouped)."})
    group_size: int = field(
        default=32,
        metadata={
            "help": "int4: input channels per scale: 32, 64, 128 or 256, dividing every width."
        },
    )

    def validate(self) -> QuantizeConfig:
        if self.type not in TYPES:
            raise InvalidInputError(
                f"unknown quantization type {self.type!r}", f"use one of: {', '.join(TYPES)}"
            )
        if self.type == "int4" and (
            isinstance(self.group_size, bool) or self.group_size not in INT4_GROUPS
        ):
            raise InvalidInputError(
                f"invalid int4 group size {self.group_size!r}",
                f"use one of {', '.join(map(str, INT4_GROUPS))} (what PyTorch's int4 kernels take)",
            )
        return self


def linear_names(model) -> list[str]:
    """The modules the engine runs as quantized linears: every decoder linear and the LM head."""
    import torch

    names = [
        n
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".layers." in f".{n}"
    ]
    return [*names, "lm_head"]


def check_widths(config: dict[str, Any], qc: QuantizeConfig) -> None:
    """int4 needs the group size to divide every input width; say so before loading weights."""
    if qc.type != "int4":
        return
    heads = config.get("num_attention_heads", 1)
    head_dim = config.get("head_dim") or config.get("hidden_size", 0) // max(heads, 1)
    widths = {
        "hidden_size": config.get("hidden_size"),
        "intermediate_size": config.get("intermediate_size"),
        "attention output (heads x head_dim)": heads * head_dim,
    }
    for what, width in widths.items():
        if isinstance(width, int) and width % qc.group_size:
            raise InvalidInputError(
                f"int4 group size {qc.group_size} does not divide the model's {what} ({width})",
                "pick a group size that divides it (e.g. 32 or 64), or use --type int8",
            )


def quantize_model(model, qc: QuantizeConfig) -> dict:
    """{module name: QuantizedWeight} for the engine's linears and (as int8) the embedding."""
    from lmforge.engine.quant_linear import HEAD_DTYPE, QuantizedWeight, quantize_weight

    parts = {}
    for name in linear_names(model):
        kind = HEAD_DTYPE.get(qc.type, qc.type) if name == "lm_head" else qc.type
        parts[name] = quantize_weight(model.get_submodule(name).weight, kind, qc.group_size)
    embed = model.get_input_embeddings().weight
    # The head follows the engine's HEAD_DTYPE (int8 at either type); tied to the
    # embedding, it serves as the embedding too. An untied embedding is stored as int8 rows.
    if embed is not model.get_output_embeddings().weight:
        parts["model.embed_tokens"] = QuantizedWeight.int8(embed)
    return parts


def quantize(
    model: str | Path | None,
    out: str,
    config: QuantizeConfig | None = None,
    *,
    store: Store | None = None,
    overwrite: bool = False,
) -> Artifact:
    """Quantize `model` (name, path, or None = default) into the artifact `out`."""
    from lmforge.models.convert import read_hf
    from lmforge.models.sources import resolve
    from lmforge.store import check_name

    qc = (config or QuantizeConfig()).validate()
    store = store or Store()
    check_name(out)
    if store.exists(out) and not overwrite:
        raise InvalidInputError(
            f"an artifact named {out!r} already exists", "choose another --out, or pass --force"
        )
    folder, name, _ = resolve(model, store)
    if is_quantized(folder):
        raise InvalidInputError(
            f"{name} is already quantized", "quantize its parent (the full-precision model)"
        )
    if folder.is_dir():
        check_widths(json.loads((folder / "config.json").read_text()), qc)
    started = time.perf_counter()
    source, tokenizer = read_hf(folder, "gguf" if folder.is_file() else "hf")
    check_widths(source.config.to_dict(), qc)
    from lmforge.engine.native import supports

    if not supports(source.config):
        raise InvalidInputError(
            f"the native engine does not run model_type {source.config.model_type!r}, "
            "so it has no int8/int4 kernels for it",
            "quantize a Llama, Mistral or Qwen2/3 model",
        )
    parts = quantize_model(source, qc)
    params = sum(p.numel() for p in source.parameters())
    with store.create(
        out, step="quantize", parent=name, config=asdict(qc), overwrite=overwrite
    ) as draft:
        save_quantized(source, tokenizer, parts, qc.type, qc.group_size, draft.model_dir)
        draft.meta["timings"]["quantize_s"] = round(time.perf_counter() - started, 3)
        draft.meta["params"] = params
    return store.get(out)


def print_report(art: Artifact) -> None:
    """A small table: type, size on disk against the parent's, seconds."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"quantized {art.parent} -> {art.name}")
    for col in ("type", "group size", "size", "parent size", "ratio", "seconds"):
        table.add_column(col, justify="right")
    cfg, size = art.meta["config"], art.size_bytes()
    store = Store()
    parent = store.get(art.parent).size_bytes() if art.parent and store.exists(art.parent) else 0
    table.add_row(
        cfg["type"],
        str(cfg["group_size"]) if cfg["type"] == "int4" else "-",
        f"{size / 2**20:.1f} MB",
        f"{parent / 2**20:.1f} MB" if parent else "-",
        f"{parent / size:.2f}x" if parent else "-",
        f"{art.meta['timings'].get('total_s', 0):.1f}",
    )
    Console().print(table)
