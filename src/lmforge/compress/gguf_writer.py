"""The GGUF writer: llama.cpp's Llama layout, quantization and tokenizer, and a Modelfile.

Follows llama.cpp's `convert_hf_to_gguf.py` for Llama: its tensor names, the Q/K row
permutation, its metadata keys and a byte-level BPE ("gpt2") tokenizer with the chat template.
`export` (the step) writes through this module and verifies what it wrote.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError, LmforgeError

GGUF_ARCHS = ("llama",)


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
    with atomic_file(path) as tmp:
        tmp.write_text(modelfile_text(gguf_path.name, tokenizer))
    return path


# -- HF folder ------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_file(target: Path):
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
