"""`export`: a model -> a GGUF file (llama.cpp, Ollama) or a plain Hugging Face folder, verified.

The GGUF follows llama.cpp's `convert_hf_to_gguf.py` for Llama: its tensor names, the Q/K row
permutation, its metadata keys and a byte-level BPE ("gpt2") tokenizer with the chat template.
Every export is written to a temporary file or folder beside the target and read back by an
independent reader (`transformers`, which parses the GGUF metadata and dequantizes itself).
It must reload to exactly the weights meant (the source rounded in memory by the same
quantizer), and its next-token distributions on fixed prompts must stay within the type's
measured tolerance of the source's; only then is it renamed into place. A failure at any
point leaves nothing at the target."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmforge.compress.gguf_writer import (
    atomic_file,
    check_gguf_support,
    fake_quantized,
    write_gguf,
    write_modelfile,
)
from lmforge.errors import InvalidInputError, LmforgeError
from lmforge.store import Store, swap_in

FORMATS = ("gguf", "hf")
TYPES = ("f32", "f16", "q8_0", "q4_0")
HF_TYPES = ("f32", "f16")


@dataclass(frozen=True)
class Tolerance:
    """How far a type's rounding may move the source's next-token distributions."""

    mean_kl: float
    """Most mean KL(source || export) over the check prompts' positions, in nats."""
    top1: float
    """Least fraction of positions where both pick the same most likely token."""


# Measured on the default model (SmolLM2-135M-Instruct), 99 positions of the prompts below:
#   type  max|dlogit|  mean KL  top-1
#   f32   0            0        1.00
#   f16   0.041        2.9e-6   1.00
#   q8_0  1.3          2.4e-3   0.95   the 5 flips are near-ties (top two within 0.03)
#   q4_0  25           0.58     0.69   a 135M model loses much at 4 bits
# Each bound sits 2-30x beyond its measurement: it stops a type that wrecks a model, while
# the exact file check (FILE_TOLERANCE) is what catches a wrong export.
TOLERANCES = {
    "f32": Tolerance(mean_kl=1e-6, top1=1.0),
    "f16": Tolerance(mean_kl=1e-4, top1=0.97),
    "q8_0": Tolerance(mean_kl=0.02, top1=0.85),
    "q4_0": Tolerance(mean_kl=1.5, top1=0.45),
}
FILE_TOLERANCE = 1e-3
"""Most |logit diff| between the reloaded file and the source rounded in memory (float error)."""

# Check prompts, written for lmforge: prose, code, digits, a story, Q&A; plus a chat turn.
PROMPTS = (
    "The capital of France is",
    "def add(a, b):\n    return",
    "Water boils at 100 degrees Celsius, and ice melts at",
    "Once upon a time, a small robot named Pip wanted to see the sea. Every morning it",
    "Q: What is 12 plus 30?\nA:",
)
CHAT_CHECK = [{"role": "user", "content": "Name three colours of the rainbow."}]


def export(
    model: str | Path | None,
    out: str | Path,
    format: str = "gguf",
    type: str | None = None,
    *,
    overwrite: bool = False,
    verify: bool = True,
    store: Store | None = None,
) -> dict[str, Any]:
    """Write `model` (store name, HF folder, .gguf, or None = default) to `out`; return a report.

    `format="gguf"`: one GGUF file (type f32, f16, q8_0 or q4_0; default f16) and an Ollama
    `Modelfile` beside it. `format="hf"`: a safetensors folder (f32 or f16; default f32).
    A GGUF `out` not ending in `.gguf` is a folder, which receives `<model>.<type>.gguf`.
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lmforge.models import formats
    from lmforge.models.convert import read_hf
    from lmforge.models.sources import resolve

    started = time.perf_counter()
    type = _check_options(format, type)
    folder, name, _ = resolve(model, store)
    formats.detect(folder)  # a clear error for a folder that holds no model
    out = Path(out).expanduser()
    if format == "gguf" and out.suffix != ".gguf":  # a folder: name the file for the model
        out = out / f"{name}.{type}.gguf"
    if out.exists() and not overwrite:
        raise InvalidInputError(f"{out} already exists", "choose another --out, or pass --force")
    if format == "gguf":
        check_gguf_support(folder)  # before any weights load or any byte is written
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(f"loading {name}")
        source, tokenizer = read_hf(folder, "hf")
        out.parent.mkdir(parents=True, exist_ok=True)
        progress.update(task, description=f"writing {format} {type}")
        write, atomic = (
            (write_gguf, atomic_file) if format == "gguf" else (write_hf, _atomic_folder)
        )
        with atomic(out) as tmp:
            write(source, tokenizer, tmp, type, name)
            progress.update(task, description="reloading it and comparing with the source")
            figures = check_export(source, tokenizer, tmp, format, type) if verify else {}
        modelfile = write_modelfile(out, tokenizer) if format == "gguf" else None
    size = out.stat().st_size if out.is_file() else sum(p.stat().st_size for p in out.rglob("*"))
    return {
        "source": name,
        "format": format,
        "type": type,
        "path": str(out),
        "bytes": size,
        "modelfile": str(modelfile) if modelfile else None,
        **figures,
        "seconds": round(time.perf_counter() - started, 2),
    }


def _check_options(format: str, type: str | None) -> str:
    if format not in FORMATS:
        raise InvalidInputError(
            f"unknown export format {format!r}", f"use one of: {', '.join(FORMATS)}"
        )
    allowed = TYPES if format == "gguf" else HF_TYPES
    type = type or ("f16" if format == "gguf" else "f32")
    if type not in allowed:
        raise InvalidInputError(
            f"--type {type} is not available for --format {format}",
            f"use one of: {', '.join(allowed)}",
        )
    return type


# -- GGUF -----------------------------------------------------------------------------------
def write_hf(model, tokenizer, folder: Path, type: str, name: str = "") -> None:
    """save_pretrained of model (safetensors, in `type`) and tokenizer."""
    import copy

    import torch

    dtype = {"f32": torch.float32, "f16": torch.float16}[type]
    if dtype != model.dtype:  # a converted copy: the source stays as it is for the check
        model = copy.deepcopy(model).to(dtype)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


# -- verification ---------------------------------------------------------------------------
def check_export(source, tokenizer, path: Path, format: str, type: str) -> dict[str, Any]:
    """Reload `path` and check it twice against `source`; raise a one-line error on failure.

    1. The file holds what was meant: the reloaded model matches the source with its weights
       rounded in memory by the same quantizer (`fake_quantized`), to float error. This catches
       a wrong layout, permutation, metadata key or tokenizer whatever the type.
    2. The rounding costs what it should: next-token distributions against the source itself,
       within the type's measured `TOLERANCES`.
    """
    from lmforge.models.convert import read_hf

    reloaded, reloaded_tok = read_hf(path, format)
    prompts = [tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS]
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(CHAT_CHECK, tokenize=False, add_generation_prompt=True)
        prompts.append(tokenizer.encode(text, add_special_tokens=False))
    for ids in prompts:
        if reloaded_tok.encode(tokenizer.decode(ids), add_special_tokens=False) != ids:
            raise LmforgeError(
                f"export check failed: the written tokenizer splits {tokenizer.decode(ids)!r}"
                " differently from the source; nothing was written",
                "report this with the model; --format hf keeps the tokenizer as it is",
            )
    expected = fake_quantized(source, type, every_tensor=format == "hf")
    written = compare_logits(expected, reloaded, prompts)["max_logit_diff"]
    if written > FILE_TOLERANCE:
        raise LmforgeError(
            f"export check failed: the {format} file does not reload to the weights written "
            f"(max |logit diff| {written:.3g} > {FILE_TOLERANCE}); nothing was written",
            "this is a bug in lmforge's exporter: report it with the model",
        )
    figures = compare_logits(source, reloaded, prompts)
    tol = TOLERANCES[type]
    over = []
    if figures["mean_kl"] > tol.mean_kl:
        over.append(f"mean KL {figures['mean_kl']:.3g} > {tol.mean_kl}")
    if figures["top1_agreement"] < tol.top1:
        over.append(f"top-1 agreement {figures['top1_agreement']:.2f} < {tol.top1}")
    if over:
        raise LmforgeError(
            f"export check failed: {type} moves this model's predictions too far from the source"
            f" ({'; '.join(over)}); nothing was written",
            "choose a wider --type (q8_0, f16), or pass --no-verify to write it anyway",
        )
    return {**figures, "file_max_logit_diff": written, "tolerance": asdict(tol)}


def compare_logits(a, b, prompts: list[list[int]]) -> dict[str, Any]:
    """Max |logit diff|, mean KL(a || b) and top-1 agreement over every position of `prompts`."""
    import torch

    diffs, kls, agree, n = [], [], 0, 0
    with torch.inference_mode():
        for ids in prompts:
            x = torch.tensor([ids])
            la, lb = a(x).logits[0].float(), b(x).logits[0].float()  # (T, vocab)
            diffs.append((la - lb).abs().max().item())
            pa, pb = la.log_softmax(-1), lb.log_softmax(-1)
            kls.append((pa.exp() * (pa - pb)).sum(-1))  # (T,)
            agree += (la.argmax(-1) == lb.argmax(-1)).sum().item()
            n += len(ids)
    return {
        "positions": n,
        "max_logit_diff": max(diffs),
        "mean_kl": max(torch.cat(kls).mean().item(), 0.0),
        "top1_agreement": agree / n,
    }


# -- atomic writes --------------------------------------------------------------------------
@contextlib.contextmanager
def _atomic_folder(target: Path):
    """Yield a temp folder beside `target`; on success swap it in for `target`, else delete it."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
        swap_in(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- presentation ---------------------------------------------------------------------------
def print_report(report: dict[str, Any]) -> None:
    """The report as a short rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"exported {report['source']}", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # paths are for copying: wrap them, never cut them
    rows = [
        ("file", report["path"]),
        ("format / type", f"{report['format']} / {report['type']}"),
        ("size", f"{report['bytes'] / 1e6:.1f} MB"),
    ]
    if report.get("modelfile"):
        rows.append(("Ollama", f"ollama create NAME -f {report['modelfile']}"))
    if "max_logit_diff" in report:
        rows += [
            (
                "reloaded",
                f"holds the weights written (max |logit diff| {report['file_max_logit_diff']:.2g})",
            ),
            ("vs source", f"{report['positions']} positions of fixed prompts"),
            ("max |logit diff|", f"{report['max_logit_diff']:.3g}"),
            ("mean KL", f"{report['mean_kl']:.2e}"),
            ("top-1 agreement", f"{report['top1_agreement']:.1%}"),
        ]
    else:
        rows.append(("checked", "no (--no-verify)"))
    rows.append(("time", f"{report['seconds']:.1f} s"))
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)
