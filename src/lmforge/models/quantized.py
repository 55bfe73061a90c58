"""The quantized artifact format: what `lmforge quantize` writes and `lmforge.load` reads.

A quantized artifact's `model/` folder holds `config.json`, the tokenizer, and
`model.safetensors` with, for every linear layer of the decoder and the LM head, the
integers and scales of `engine.quant_linear.QuantizedWeight` (`<module>.q`, `.scale`, and
`.zero` for int4, whose 4-bit values are packed two to a byte), the embedding as int8 rows
(or nothing, when it is tied to the LM head, which is int8 at either type), and norms and biases in fp32.
`quantization.json` says what is there. Loading gives the engine those very integers
(bit-exact: nothing is re-quantized), and `transformers` a model with the dequantized
weights, so that every other step (eval, tune, export) works on what the kernels compute.

torch, safetensors, transformers and the engine load inside the functions that use them:
`lmforge --help` reads `QuantizeConfig`, whose module imports this one.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmforge.errors import ModelLoadError

MANIFEST = "quantization.json"


def is_quantized(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def _pack_nibbles(q):  # (out, in) values 0..15 -> (out, in / 2) uint8
    return (q[:, 0::2] | (q[:, 1::2] << 4)).contiguous()


def _unpack_nibbles(packed):
    import torch

    out = torch.empty(packed.shape[0], packed.shape[1] * 2, dtype=torch.uint8)
    out[:, 0::2], out[:, 1::2] = packed & 0x0F, packed >> 4
    return out


def save_quantized(
    model, tokenizer, parts: dict, qtype: str, group_size: int, folder: Path
) -> None:
    """Write the quantized folder described at the top of this module.

    `parts`: {module name: QuantizedWeight}; `qtype` (int8, int4) and `group_size` (int4's)
    go into the manifest.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, qw in parts.items():
        tensors[f"{name}.q"] = _pack_nibbles(qw.q) if qw.kind == "int4" else qw.q
        tensors[f"{name}.scale"] = qw.scale.contiguous()
        if qw.zero is not None:
            tensors[f"{name}.zero"] = qw.zero.contiguous()
    quantized = {f"{n}.weight" for n in parts} | {"model.embed_tokens.weight", "lm_head.weight"}
    for key, value in model.state_dict().items():
        if key not in quantized:
            tensors[key] = value.detach().float().contiguous()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "lmforge-quant"})
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    manifest = {
        "type": qtype,
        "group_size": group_size if qtype == "int4" else None,
        "modules": {n: {"kind": qw.kind, "group_size": qw.group_size} for n, qw in parts.items()},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def read_quantized(folder: Path):
    """(transformers model with dequantized weights, tokenizer, {name: QuantizedWeight}, type)."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from lmforge.engine.quant_linear import QuantizedWeight

    manifest = json.loads((folder / MANIFEST).read_text())
    tensors = load_file(str(folder / "model.safetensors"))
    parts = {}
    for name, info in manifest["modules"].items():
        q = tensors.pop(f"{name}.q")
        parts[name] = QuantizedWeight(
            info["kind"],
            _unpack_nibbles(q) if info["kind"] == "int4" else q,
            tensors.pop(f"{name}.scale"),
            tensors.pop(f"{name}.zero", None),
            info["group_size"],
        )
    config = AutoConfig.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = dict(tensors)
    for name, qw in parts.items():
        state[f"{name}.weight"] = qw.dequantize()
    if "model.embed_tokens" not in parts:  # tied to the int8 LM head
        state["model.embed_tokens.weight"] = state["lm_head.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ModelLoadError(
            f"{folder} does not match its config (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]})",
            "re-run lmforge quantize",
        )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    return model.eval(), tokenizer, parts, manifest["type"]
