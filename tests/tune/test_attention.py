"""Span-by-span packed attention gives the dense block-diagonal mask's loss and gradients."""

from __future__ import annotations

import torch

from lmforge.tune.attention import using_packed_attention
from lmforge.tune.data import Example, collate
from lmforge.tune.loss import CausalLMLoss


def test_packed_attention_equals_the_dense_mask(tiny_tokenizer, model_factory):
    model = model_factory(len(tiny_tokenizer), seed=5)
    rows = [
        [Example([5, 6, 7, 8], [-100, 6, 7, 8]), Example([9, 10, 11], [-100, 10, 11])],
        [Example([12, 13], [-100, 13])],  # a shorter row: padding after it
    ]
    batch = collate(rows, pad_id=0)
    dense = CausalLMLoss(model)(batch)
    dense.backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with using_packed_attention(model):
        packed = CausalLMLoss(model, packed=True)(batch)
        packed.backward()
    torch.testing.assert_close(packed, dense, atol=1e-4, rtol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[n], atol=1e-4, rtol=1e-4)
    assert model.config._attn_implementation != "lmforge_packed"  # restored on exit
