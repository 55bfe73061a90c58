"""Prompt caching: a prompt that opens like an earlier one reuses the keys and values of its
whole prefill chunks, and computes exactly what it computes without the cache (bit-exactness
at every weight type: test_prefix_cache_exact.py)."""

from __future__ import annotations

import pytest
import torch

from lmforge.engine import SamplingParams
from lmforge.engine.lora import LoraAdapter
from lmforge.engine.native import NativeDecoder
from lmforge.engine.prefix import PrefixDecoder
from lmforge.engine.prefix_cache import PrefixCache
from lmforge.engine.scheduler import Scheduler, _SlotRows
from lmforge.store import Store

# a shared opening of 150 tokens, like a system prompt: two whole chunks of 64 and a part
SYSTEM = [(7 * i) % 250 + 5 for i in range(150)]
PROMPTS = [SYSTEM + [40, 41], SYSTEM + [42, 43, 44], SYSTEM[:70] + [8], SYSTEM + [40, 41]]


@pytest.fixture(scope="module")
def decoder(model_factory, tiny_tokenizer):
    return NativeDecoder(model_factory(len(tiny_tokenizer)))


def test_restored_prefix_gives_the_same_logits_and_keys(decoder):
    cached = _SlotRows(decoder, 4, 256, cache_bytes=2**20)
    plain = _SlotRows(decoder, 4, 256)
    with torch.inference_mode():
        hits = []
        for prompt in PROMPTS:
            got, hit = cached.add(prompt, 8)
            want, none = plain.add(prompt, 8)
            assert none == 0
            hits.append(hit)
            assert torch.equal(got, want)
    # the first prompt computes everything and leaves its 128 tokens of whole chunks; the next
    # ones reuse the whole chunks of their common opening (128, then 64 of 70); a prompt seen
    # before reuses the same 128 (its last token is always computed, for its logits)
    assert hits == [0, 128, 64, 128]
    assert cached.cache.lengths[:4] == plain.cache.lengths[:4] == [len(p) for p in PROMPTS]
    for layer in range(len(decoder.layers)):
        for row, prompt in enumerate(PROMPTS):
            n = len(prompt)
            assert torch.equal(cached.cache.k[layer][row, :, :n], plain.cache.k[layer][row, :, :n])
            assert torch.equal(cached.cache.v[layer][row, :, :n], plain.cache.v[layer][row, :, :n])


def test_memory_bound_and_extended_prompts(decoder):
    rows = _SlotRows(decoder, 8, 256)
    per_token = 2 * sum(t[0, :, 0].numel() * t.element_size() for t in rows.cache.k)
    store = PrefixCache(max_bytes=256 * per_token)

    def add(prompt):
        rows.add(prompt, 4)
        store.store(rows.cache, rows.cache.n - 1, prompt)

    def kept():
        return {len(key[1]): key[1] for key in store._entries}

    with torch.inference_mode():
        add(list(range(1, 64)))  # 63 tokens: no whole chunk, nothing stored
        assert len(store) == 0
        first = list(range(1, 65))
        add(first)
        add(first + list(range(100, 166)))  # 130 tokens: its 128 extend the first 64
        add(list(range(200, 270)))  # 70 tokens: 64 kept
        # the first prompt's chunk is a prefix of the second's two: only those are kept
        assert sorted(kept()) == [64, 128] and store.bytes == 192 * per_token
        add([3] * 200)  # 192 tokens of whole chunks: over half the budget, never stored
        assert len(store) == 2
        add([4] * 64)  # 256 tokens in all: the budget exactly
        assert store.bytes == 256 * per_token
        add([5] * 64)  # one chunk more: the oldest entry (128 tokens) leaves
        assert store.bytes <= store.max_bytes
        assert tuple([5] * 64) in {key[1] for key in store._entries}
        assert 128 not in kept()


def test_scheduler_outputs_equal_with_and_without_the_cache(decoder, tiny_tokenizer):
    params = SamplingParams(max_tokens=6)

    def run(mb: float):
        with Scheduler(decoder, tiny_tokenizer, max_batch=4, prompt_cache_mb=mb) as sched:
            # one after another, so that later prompts find the earlier ones cached
            out = [sched.submit(p, params).result().token_ids for p in PROMPTS]
            return out, sched.cached_tokens

    (with_cache, hits), (without, none) = run(1), run(0)
    assert with_cache == without
    assert hits > 0 and none == 0


def test_adapters_never_share_cached_prompts(model_factory, tiny_tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model

    base = model_factory(len(tiny_tokenizer))
    torch.manual_seed(1)
    config = LoraConfig(r=2, init_lora_weights=False, target_modules=["k_proj", "v_proj"])
    store = Store(tmp_path)
    with store.create("a", kind="adapter", step="tune", parent="tiny") as draft:
        get_peft_model(model_factory(len(tiny_tokenizer)), config).save_pretrained(
            draft.path / "adapter"
        )
    dec = NativeDecoder(base)
    adapter = LoraAdapter.read(store.get("a").path / "adapter", dec, "a")
    rows, plain = _SlotRows(dec, 4, 256, cache_bytes=2**20), _SlotRows(dec, 4, 256)
    with torch.inference_mode():
        assert rows.add(PROMPTS[0], 4)[1] == 0  # base
        got, hit = rows.add(PROMPTS[0], 4, adapter)
        assert hit == 0  # the base's keys are not the adapter's
        torch.testing.assert_close(got, plain.add(PROMPTS[0], 4, adapter)[0], atol=1e-5, rtol=0)
        assert rows.add(PROMPTS[1], 4, adapter)[1] == 128


def test_prompt_adapter_prefix_stays_in_front(llama, bpe_tokenizer):
    native = NativeDecoder(llama)
    torch.manual_seed(0)
    shape = (1, native.n_kv_heads, 3, native.head_dim)
    kv = [(torch.randn(shape), torch.randn(shape)) for _ in native.layers]
    decoder = PrefixDecoder(native, kv)
    params = SamplingParams(max_tokens=5)

    def run(mb: float):
        with Scheduler(decoder, bpe_tokenizer, max_batch=2, prompt_cache_mb=mb) as sched:
            return [
                sched.submit(p, params).result().token_ids for p in PROMPTS
            ], sched.cached_tokens

    (with_cache, hits), (without, _) = run(1), run(0)
    assert with_cache == without and hits > 0
