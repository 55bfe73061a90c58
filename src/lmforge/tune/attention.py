"""Packed attention for training: each packed example attends only within itself.

A dense (B, 1, T, T) mask keeps packed examples apart too, but it sends SDPA down its
masked path, which builds the full T x T scores of every row: for a 512-token row holding
six examples that is six times the attention work, and the probabilities are kept for the
backward pass. Here each example's span runs through SDPA's causal kernel on its own, the
way varlen flash attention does on a GPU. It is registered with `transformers`' attention
interface, so the model's own layers call it; the spans travel as a forward keyword.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

NAME = "lmforge_packed"
_registered = False


def packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
    """(B, T, H, d) attention output of q (B, H, T, d) over k/v, span by span (`segments`)."""
    p = dropout if module.training else 0.0
    segments = kw.get("segments")  # per row, [(start, end), ...] covering 0..T
    if segments is None:  # a caller without spans: plain SDPA, with its 4D mask if it gave one
        out = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attention_mask, dropout_p=p, scale=scaling,
            is_causal=attention_mask is None, enable_gqa=query.shape[1] != key.shape[1],
        )  # fmt: skip
        return out.transpose(1, 2).contiguous(), None
    out = torch.empty_like(query)
    for b, spans in enumerate(segments):
        for s, e in spans:
            out[b : b + 1, :, s:e] = F.scaled_dot_product_attention(
                query[b : b + 1, :, s:e],
                key[b : b + 1, :, s:e],
                value[b : b + 1, :, s:e],
                is_causal=True,
                dropout_p=p,
                scale=scaling,
                enable_gqa=query.shape[1] != key.shape[1],
            )
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register the implementation (once) and return its name."""
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(NAME, packed_attention)
        AttentionMaskInterface.register(NAME, lambda *args, **kwargs: None)  # spans, no mask
        _registered = True
    return NAME


@contextlib.contextmanager
def using_packed_attention(model):
    """Within the block, `model` (a causal LM, or a PeftModel over one) attends by spans."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    configs = {id(m.config): m.config for m in base.modules() if hasattr(m, "config")}
    before = {k: c._attn_implementation for k, c in configs.items()}
    name = register()
    for c in configs.values():
        c._attn_implementation = name
    try:
        yield
    finally:
        for k, c in configs.items():
            c._attn_implementation = before[k]
