"""Prompt caching: a prompt that opens like an earlier one reuses its keys and values, and
computes exactly what it computes without the cache."""

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

SYSTEM = [5, 9, 30, 7, 11, 3, 12, 13]  # a shared opening, like a system prompt
PROMPTS = [SYSTEM + [40, 41], SYSTEM + [42, 43, 44], SYSTEM[:5] + [8], SYSTEM + [40, 41]]


@pytest.fixture(scope="module")
def decoder(model_factory, tiny_tokenizer):
    return NativeDecoder(model_factory(len(tiny_tokenizer)))


def test_restored_prefix_gives_the_same_logits_and_keys(decoder):
    cached = _SlotRows(decoder, 4, 64, cache_bytes=2**20)
    plain = _SlotRows(decoder, 4, 64)
    with torch.inference_mode():
        hits = []
        for prompt in PROMPTS:
            got, hit = cached.add(prompt, 8)
            want, none = plain.add(prompt, 8)
            assert none == 0
            hits.append(hit)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    # the first prompt computes everything; the next ones reuse the common opening; a prompt
    # seen before reuses all but its last token (its logits must be computed)
    assert hits == [0, len(SYSTEM), 5, len(PROMPTS[3]) - 1]
    assert cached.cache.lengths[:4] == plain.cache.lengths[:4] == [len(p) for p in PROMPTS]
    for layer in range(len(decoder.layers)):
        for row, prompt in enumerate(PROMPTS):
            n = len(prompt)
            torch.testing.assert_close(
                cached.cache.k[layer][row, :, :n], plain.cache.k[layer][row, :, :n], atol=1e-5,
                rtol=0,
            )  # fmt: skip


def test_memory_bound_and_extended_prompts(decoder):
    rows = _SlotRows(decoder, 8, 64)
    per_token = 2 * sum(t[0, :, 0].numel() * t.element_size() for t in rows.cache.k)
    store = PrefixCache(max_bytes=30 * per_token)
    with torch.inference_mode():
        for prompt in ([1, 2, 3, 4], [1, 2, 3, 4, 5, 6], [20, 21, 22, 23, 24, 25, 26, 27, 28]):
            rows.add(prompt, 4)
            store.store(rows.cache, rows.cache.n - 1, prompt)
        # [1, 2, 3, 4] is a prefix of the second prompt: only the longer one is kept
        assert len(store) == 2 and store.bytes == 15 * per_token
        long = list(range(30, 46))  # 16 tokens: over half the budget, never stored
        rows.add(long, 4)
        store.store(rows.cache, rows.cache.n - 1, long)
        assert len(store) == 2
        for start in (50, 60):  # 9 + 9 more tokens: the oldest entries leave
            prompt = list(range(start, start + 9))
            rows.add(prompt, 4)
            store.store(rows.cache, rows.cache.n - 1, prompt)
        assert store.bytes <= store.max_bytes
        assert (tuple(range(50, 59)) in {k[1] for k in store._entries}) is True
        assert (tuple([1, 2, 3, 4, 5, 6]) in {k[1] for k in store._entries}) is False


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
    rows, plain = _SlotRows(dec, 4, 64, cache_bytes=2**20), _SlotRows(dec, 4, 64)
    with torch.inference_mode():
        assert rows.add(PROMPTS[0], 4)[1] == 0  # base
        got, hit = rows.add(PROMPTS[0], 4, adapter)
        assert hit == 0  # the base's keys are not the adapter's
        torch.testing.assert_close(got, plain.add(PROMPTS[0], 4, adapter)[0], atol=1e-5, rtol=0)
        assert rows.add(PROMPTS[1], 4, adapter)[1] == len(SYSTEM)


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
