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
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError, LmforgeError
from lmforge.store import Store

FORMATS = ("gguf", "hf")
TYPES = ("f32", "f16", "q8_0", "q4_0")
HF_TYPES = ("f32", "f16")
GGUF_ARCHS = ("llama",)


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
    from lmforge.models.loader import resolve

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
            (write_gguf, _atomic_file) if format == "gguf" else (write_hf, _atomic_folder)
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
def check_gguf_support(folder: Path) -> None:
    """Refuse, from config.json and tokenizer.json alone, what the GGUF writer cannot express."""
    config = json.loads((folder / "config.json").read_text())
    arch = config.get("model_type")
    if arch not in GGUF_ARCHS:
        raise InvalidInputError(
            f"GGUF export supports Llama-architecture models, not model_type {arch!r}",
            "export it with --format hf instead",
        )
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or rope.get("type") or "default"
    if rope_type != "default" or config.get("attention_bias") or config.get("mlp_bias"):
        raise InvalidInputError(
            f"GGUF export supports plain Llama (no biases, default RoPE), not rope_type {rope_type!r}"
            f" with attention_bias={config.get('attention_bias')} mlp_bias={config.get('mlp_bias')}",
            "export it with --format hf instead",
        )
    tok_file = folder / "tokenizer.json"
    tok = json.loads(tok_file.read_text()) if tok_file.is_file() else {}
    if (tok.get("model") or {}).get("type") != "BPE" or _pre_tokenizer(tok) is None:
        raise InvalidInputError(
            "GGUF export supports byte-level BPE tokenizers (GPT-2 / SmolLM style) only",
            "export it with --format hf instead",
        )


def _pre_tokenizer(tok: dict) -> str | None:
    """llama.cpp's `tokenizer.ggml.pre` name for the HF pre-tokenizer, or None if unknown."""
    pre = tok.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"  # the GPT-2 split regex, then bytes -> unicode (llama.cpp spells it so)
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"  # digits one by one, then the GPT-2 regex
    return None


# HF Llama names inside `model.layers.N.` -> llama.cpp names inside `blk.N.`
_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _permute(w, n_head: int):
    """HF's rotate-half RoPE row order -> llama.cpp's interleaved pairs, per head.

    (rows, cols) -> (n_head, 2, head_dim/2, cols) -> swap -> (n_head, head_dim/2, 2, cols).
    """
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def gguf_name(hf_name: str) -> str | None:
    """llama.cpp's name for a HF Llama weight, or None if the Llama layout has no such weight."""
    top = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    if hf_name in top:
        return top[hf_name]
    m = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf_name)
    if m and m.group(2) in _LAYER_NAMES:
        return f"blk.{m.group(1)}.{_LAYER_NAMES[m.group(2)]}"
    return None


def gguf_tensors(model) -> list[tuple[str, Any]]:
    """(llama.cpp name, fp32 numpy array) for every weight of a HF Llama, Q/K rows permuted."""
    cfg = model.config
    sd = model.state_dict()
    if getattr(cfg, "tie_word_embeddings", False):
        sd.pop("lm_head.weight", None)  # llama.cpp reuses token_embd when `output` is absent
    unknown = sorted(k for k in sd if gguf_name(k) is None)
    if unknown:  # a weight we would silently drop: refuse rather than write a wrong model
        raise LmforgeError(
            f"GGUF export does not know the weights {unknown[:3]}", "use --format hf"
        )
    out = []
    for hf_name, tensor in sd.items():
        name, w = gguf_name(hf_name), tensor.detach().float().cpu().numpy()
        if name.endswith("attn_q.weight"):
            w = _permute(w, cfg.num_attention_heads)
        elif name.endswith("attn_k.weight"):
            w = _permute(w, cfg.num_key_value_heads)
        out.append((name, w))
    return out


def fake_quantized(model, type: str, *, every_tensor: bool = False):
    """A copy of `model` whose weights went through the export's quantizer and back.

    This is exactly what a faithful file must reload to: quantization blocks run along rows
    and the Q/K permutation only reorders rows, so the layout does not change the values.
    `every_tensor=True` rounds norms too, as `save_pretrained` in f16 does.
    """
    import copy

    import torch
    from gguf import GGMLQuantizationType, quants

    twin = copy.deepcopy(model)
    with torch.no_grad():
        for hf_name, p in twin.named_parameters():
            qtype = tensor_qtype(gguf_name(hf_name) or hf_name, tuple(p.shape), type)
            if every_tensor:
                qtype = {"f32": GGMLQuantizationType.F32, "f16": GGMLQuantizationType.F16}[type]
            back = quants.dequantize(quants.quantize(p.detach().numpy(), qtype), qtype)
            p.copy_(torch.from_numpy(back.reshape(p.shape)))
    return twin


def tensor_qtype(name: str, shape: tuple[int, ...], type: str):
    """The GGML type for one tensor: norms stay f32; rows that do not fill blocks fall back to f16.

    For q4_0, the token embedding (also the output projection when tied) and `output` get q8_0,
    as llama.cpp's quantizer keeps that tensor wider (the shipped SmolLM2 Q4_1 file does too).
    """
    from gguf import GGML_QUANT_SIZES
    from gguf import GGMLQuantizationType as Q

    want = {"f32": Q.F32, "f16": Q.F16, "q8_0": Q.Q8_0, "q4_0": Q.Q4_0}[type]
    if len(shape) == 1:
        return Q.F32
    if want == Q.Q4_0 and name in ("token_embd.weight", "output.weight"):
        want = Q.Q8_0
    if shape[-1] % GGML_QUANT_SIZES[want][0]:
        return Q.F16
    return want


def write_gguf(model, tokenizer, path: Path, type: str, name: str) -> None:
    """Write `model` and `tokenizer` as a llama.cpp GGUF file at `path`."""
    import gguf

    cfg = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    try:
        n_head = cfg.num_attention_heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_head
        rope = getattr(cfg, "rope_parameters", None) or {}
        writer.add_name(name)
        writer.add_vocab_size(cfg.vocab_size)
        writer.add_context_length(cfg.max_position_embeddings)
        writer.add_embedding_length(cfg.hidden_size)
        writer.add_block_count(cfg.num_hidden_layers)
        writer.add_feed_forward_length(cfg.intermediate_size)
        writer.add_head_count(n_head)
        writer.add_head_count_kv(cfg.num_key_value_heads)
        writer.add_rope_freq_base(
            float(rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
        )
        writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
        writer.add_rope_dimension_count(head_dim)
        if head_dim != cfg.hidden_size // n_head:
            writer.add_key_length(head_dim)
            writer.add_value_length(head_dim)
        file_type = {
            "f32": "ALL_F32",
            "f16": "MOSTLY_F16",
            "q8_0": "MOSTLY_Q8_0",
            "q4_0": "MOSTLY_Q4_0",
        }
        writer.add_file_type(gguf.LlamaFileType[file_type[type]])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        _add_tokenizer(writer, tokenizer, cfg.vocab_size)
        for gg_name, data in gguf_tensors(model):
            qtype = tensor_qtype(gg_name, data.shape, type)
            writer.add_tensor(gg_name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()


def _add_tokenizer(writer, tokenizer, vocab_size: int) -> None:
    """Byte-level BPE as llama.cpp reads it: tokens, types, merges, special ids, chat template."""
    from gguf import TokenType

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    if len(tokenizer) > vocab_size:
        raise LmforgeError(
            f"the tokenizer has {len(tokenizer)} tokens but the model only {vocab_size} embeddings",
            "fix the model's vocab_size",
        )
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder  # {id: AddedToken}
    tokens, types = [], []
    for i in range(vocab_size):  # rows beyond the tokenizer become unused placeholders
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(TokenType.CONTROL if added[i].special else TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(TokenType.NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(spec) or "default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key in ("bos", "eos", "unk", "pad"):
        token_id = getattr(tokenizer, f"{key}_token_id", None)
        if isinstance(token_id, int):
            getattr(writer, f"add_{key}_token_id")(token_id)
    probe = tokenizer("a")["input_ids"]
    writer.add_add_bos_token(bool(probe) and probe[0] == tokenizer.bos_token_id)
    writer.add_add_eos_token(bool(probe) and probe[-1] == tokenizer.eos_token_id)
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, str):
        writer.add_chat_template(template)
        if _is_chatml(template) and "<|im_end|>" in tokenizer.get_vocab():
            writer.add_eot_token_id(tokenizer.convert_tokens_to_ids("<|im_end|>"))


# -- Ollama ---------------------------------------------------------------------------------
# ChatML in Ollama's Go template language, the shape of Ollama's own ChatML model templates.
_OLLAMA_CHATML = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- if and (ne .Role "assistant") $last }}<|im_start|>assistant
{{ end }}
{{- end }}"""


def _is_chatml(template: str) -> bool:
    return "<|im_start|>" in template and "<|im_end|>" in template


def modelfile_text(gguf_name: str, tokenizer) -> str:
    """An Ollama Modelfile for the GGUF: FROM, TEMPLATE (ChatML), SYSTEM default, stops."""
    template = getattr(tokenizer, "chat_template", None) or ""
    lines = [f"FROM ./{gguf_name}"]
    stops = []
    if _is_chatml(template):
        lines.append(f'TEMPLATE """{_OLLAMA_CHATML}"""')
        # A default system prompt written literally in the template (SmolLM2 has one).
        default = re.search(r"<\|im_start\|>system\n([^{}'\"<]+)<\|im_end\|>", template)
        if default:
            lines.append(f'SYSTEM """{default.group(1)}"""')
        stops.append("<|im_end|>")
    else:
        lines.append(
            "# TEMPLATE not translated (not ChatML): Ollama reads the GGUF's chat template"
        )
    eos = getattr(tokenizer, "eos_token", None)
    if eos and eos not in stops:
        stops.append(eos)
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    return "\n".join(lines) + "\n"


def write_modelfile(gguf_path: Path, tokenizer) -> Path:
    path = gguf_path.parent / "Modelfile"
    with _atomic_file(path) as tmp:
        tmp.write_text(modelfile_text(gguf_path.name, tokenizer))
    return path


# -- HF folder ------------------------------------------------------------------------------
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
def _atomic_file(target: Path):
    """Yield a temp path beside `target`; on success rename it over `target`, else delete it."""
    # Same folder, so the rename is atomic; same suffix, for readers that go by the name.
    fd, name = tempfile.mkstemp(
        prefix=f".{target.name}.partial-", suffix=target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _atomic_folder(target: Path):
    """Yield a temp folder beside `target`; on success swap it in for `target`, else delete it."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        yield tmp
        if target.exists():  # overwrite: move the old one aside first, then swap
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
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
