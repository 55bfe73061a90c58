"""Our native forward pass and KV cache against `transformers`' own forward pass."""

from __future__ import annotations

import pytest
import torch
import transformers

from lmforge.engine import make_decoder
from lmforge.engine.hf_decoder import HFDecoder
from lmforge.engine.kv_cache import KVCache
from lmforge.engine.native import NativeDecoder, supports

TEXT = "The engine reads one token at a time: café, 日本語 🙂"


def reference_logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits  # (B, T, vocab)


@pytest.mark.parametrize("model_type", ["llama", "qwen2", "qwen3"])
def test_prefill_then_decode_equals_transformers(build_model, bpe_tokenizer, model_type):
    model = build_model(model_type)
    assert supports(model.config)
    ids = torch.tensor([bpe_tokenizer.encode(TEXT)])  # (1, T)
    T = ids.shape[1]
    ref = reference_logits(model, ids)  # (1, T, vocab)

    decoder = NativeDecoder(model, "fp32")
    cache = decoder.new_cache(1, T)
    split = T // 2
    steps = [decoder.forward(ids[:, :split], cache, all_logits=True)]  # (1, split, vocab)
    steps += [decoder.forward(ids[:, t : t + 1], cache, all_logits=True) for t in range(split, T)]

    assert cache.pos == T
    torch.testing.assert_close(torch.cat(steps, dim=1), ref, atol=1e-4, rtol=0)


def test_forward_returns_last_position_logits_by_default(llama, bpe_tokenizer):
    ids = torch.tensor([bpe_tokenizer.encode(TEXT)])  # (1, T)
    decoder = NativeDecoder(llama, "fp32")
    logits = decoder.forward(ids, decoder.new_cache(1, ids.shape[1]))  # (1, vocab)
    torch.testing.assert_close(logits, reference_logits(llama, ids)[:, -1], atol=1e-4, rtol=0)


def test_architecture_specific_weights_are_present(build_model):
    """Guards the parity test above: qwen2 must really carry qkv biases, qwen3 q/k norms."""
    qwen2 = build_model("qwen2").model.layers[0].self_attn
    assert qwen2.q_proj.bias is not None and qwen2.q_proj.bias.abs().sum() > 0
    qwen3 = build_model("qwen3").model.layers[0].self_attn
    assert qwen3.q_norm is not None and not torch.allclose(
        qwen3.q_norm.weight, torch.ones_like(qwen3.q_norm.weight)
    )


@pytest.mark.parametrize(
    ("config", "native"),
    [
        (transformers.LlamaConfig(), True),
        (transformers.Qwen2Config(), True),
        (transformers.Qwen3Config(), True),
        (transformers.LlamaConfig(hidden_act="gelu"), False),
        (transformers.MistralConfig(sliding_window=None), True),
        (transformers.MistralConfig(sliding_window=4096), False),
        (transformers.Qwen2Config(use_sliding_window=True, sliding_window=128), False),
        (transformers.GPT2Config(), False),
    ],
)
def test_supports(config, native):
    assert supports(config) is native


def test_make_decoder_falls_back_to_transformers_for_other_architectures():
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(vocab_size=50, n_embd=32, n_layer=1, n_head=2, n_positions=64)
    ).eval()
    assert isinstance(make_decoder(gpt2), HFDecoder)
    with pytest.raises(ValueError, match="gpt2"):
        NativeDecoder(gpt2)


def test_make_decoder_picks_native_for_llama(llama):
    assert isinstance(make_decoder(llama), NativeDecoder)


def test_kv_cache_write_past_max_len_raises():
    cache = KVCache(n_layers=1, batch=1, n_kv_heads=2, max_len=4, head_dim=8, dtype=torch.float32)
    kv = torch.zeros(1, 2, 3, 8)  # (B, n_kv, T=3, hd)
    keys, values = cache.write(0, kv + 1, kv + 2)
    assert keys.shape == (1, 2, 3, 8) and bool((values == 2).all())
    cache.advance(3)
    with pytest.raises(RuntimeError, match="KV cache full"):
        cache.write(0, kv, kv)  # 3 + 3 > 4


def test_decoder_forward_past_cache_end_raises(llama):
    decoder = NativeDecoder(llama, "fp32")
    cache = decoder.new_cache(1, 4)
    decoder.forward(torch.tensor([[5, 6, 7, 8]]), cache)  # fills all 4 positions
    with pytest.raises(RuntimeError, match="KV cache full"):
        decoder.forward(torch.tensor([[9]]), cache)
