"""Per-request LoRA: each row's delta equals peft's adapter on the base; mixed batches equal
each request alone."""

from __future__ import annotations

import pytest
import torch

from lmforge.engine.lora import LoraAdapter
from lmforge.engine.native import NativeDecoder
from lmforge.engine.params import SamplingParams
from lmforge.engine.scheduler import Scheduler
from lmforge.errors import InvalidInputError
from lmforge.store import Store

# adapter "a" on every module; "b" on a few, with another rank and rsLoRA scaling
ADAPTERS = {
    "a": dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                  "gate_proj", "up_proj", "down_proj"]),
    "b": dict(r=2, lora_alpha=4, use_rslora=True, target_modules=["q_proj", "v_proj", "down_proj"]),
}  # fmt: skip
PROMPTS = [[5, 9, 30, 7], [11, 3], [40, 41, 42, 43, 44, 45], [8, 8, 9]]


def peft_model(make, vocab: int, seed: int, **lora):
    """The tiny base with a random (non-zero) LoRA on it, as peft builds it."""
    from peft import LoraConfig, get_peft_model

    base = make(vocab)  # seeds itself
    torch.manual_seed(seed)
    config = LoraConfig(init_lora_weights=False, lora_dropout=0.0, **lora)
    return get_peft_model(base, config).eval()


@pytest.fixture(scope="module")
def adapters(model_factory, tiny_tokenizer, tmp_path_factory):
    """name -> (peft model, folder of the saved adapter artifact)."""
    store = Store(tmp_path_factory.mktemp("store"))
    out = {}
    for seed, (name, lora) in enumerate(ADAPTERS.items()):
        model = peft_model(model_factory, len(tiny_tokenizer), seed + 1, **lora)
        with store.create(name, kind="adapter", step="tune", parent="tiny") as draft:
            model.save_pretrained(draft.path / "adapter", safe_serialization=True)
        out[name] = (model, store.get(name).path / "adapter")
    return out


@pytest.fixture(scope="module")
def base(model_factory, tiny_tokenizer):
    return model_factory(len(tiny_tokenizer))


def test_per_row_delta_equals_peft(base, adapters):
    dec = NativeDecoder(base)
    loaded = {n: LoraAdapter.read(folder, dec, n) for n, (_, folder) in adapters.items()}
    ids = torch.tensor([[5, 9, 30, 7, 1], [11, 3, 12, 13, 14], [40, 41, 42, 43, 44]])
    rows = [None, loaded["a"], loaded["b"]]
    logits = dec.forward(ids, dec.new_cache(3, 8), all_logits=True, adapters=rows)  # (3, T, V)
    with torch.no_grad():
        want_base = base(ids[:1]).logits[0]
        want_a = adapters["a"][0](input_ids=ids[1:2]).logits[0]
        want_b = adapters["b"][0](input_ids=ids[2:3]).logits[0]
    torch.testing.assert_close(logits[0], want_base, atol=1e-4, rtol=0)
    torch.testing.assert_close(logits[1], want_a, atol=1e-4, rtol=0)
    torch.testing.assert_close(logits[2], want_b, atol=1e-4, rtol=0)
    # the adapters do change the output (the test would pass vacuously otherwise)
    assert (want_a - base(ids[1:2]).logits[0]).abs().max() > 1e-2


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_mixed_batch_equals_each_alone(base, adapters, tiny_tokenizer, dtype):
    dec = NativeDecoder(base, dtype)
    loaded = {n: LoraAdapter.read(folder, dec, n) for n, (_, folder) in adapters.items()}
    jobs = [(p, which) for p in PROMPTS for which in (None, "a", "b")]
    params = SamplingParams(max_tokens=8)

    def run(batch):
        with Scheduler(dec, tiny_tokenizer, max_batch=16) as sched:
            handles = [
                sched.submit_many([(p, params)], adapter=which and loaded[which])[0]
                for p, which in batch
            ]
            return [h.result().token_ids for h in handles]

    together = run(jobs)
    alone = [run([job])[0] for job in jobs]
    assert together == alone
    by_adapter = {
        which: [t for t, (_, w) in zip(together, jobs, strict=True) if w == which] for which in "ab"
    }
    assert by_adapter["a"] != by_adapter["b"]  # the adapters act


@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_a_row_gets_the_same_logits_bits_alone_and_in_any_batch(base, adapters, dtype):
    """Quantized layers, the int8 head, per-row adapter deltas and windowed decode attention
    round a row the same way whatever shares its batch: the logits are equal bit for bit, for
    rows of the base and of two adapters, on either side of an attention window edge."""
    dec = NativeDecoder(base, dtype)
    loaded = {n: LoraAdapter.read(folder, dec, n) for n, (_, folder) in adapters.items()}
    gen = torch.Generator().manual_seed(0)
    lengths = [3, 62, 63, 64, 65, 100, 2, 130, 9]  # 63 + 1 fills a window of 64 exactly
    rows = [None if k % 3 == 0 else loaded["ab"[k % 3 - 1]] for k in range(len(lengths))]
    cache = dec.new_slot_cache(len(lengths), 256)
    for length, adapter in zip(lengths, rows, strict=True):
        row = cache.add()
        cache.reserve(length)
        ids = torch.randint(0, base.config.vocab_size, (1, length), generator=gen)
        dec.forward(ids, cache.row(row), adapters=[adapter])
    for _ in range(3):
        tokens = torch.randint(0, base.config.vocab_size, (len(lengths),), generator=gen)
        alone = []
        for r, adapter in enumerate(rows):  # row r copied into a cache of its own
            own, n = dec.new_slot_cache(1, 256), cache.lengths[r]
            own.add()
            own.reserve(n + 1)
            for layer in range(len(own.k)):
                own.k[layer][0, :, :n] = cache.k[layer][r, :, :n]
                own.v[layer][0, :, :n] = cache.v[layer][r, :, :n]
            own.lengths[0] = n
            alone.append(dec.forward(tokens[r].view(1, 1), own.row(0), adapters=[adapter]))
        cache.reserve(cache.pos + 1)
        together = dec.forward(
            tokens[:, None], cache, cache.positions(1), attn_mask=cache.attention_mask(1),
            adapters=rows,
        )  # fmt: skip
        assert torch.equal(together, torch.cat(alone))


@pytest.mark.parametrize("kind", ["dora", "ia3", "prompt"])
def test_refuses_adapters_without_a_per_row_delta(base, model_factory, tiny_tokenizer, tmp_path,
                                                   kind):  # fmt: skip
    from peft import IA3Config, LoraConfig, PromptTuningConfig, TaskType, get_peft_model

    config = {
        "dora": LoraConfig(r=2, target_modules=["q_proj"], use_dora=True),
        "ia3": IA3Config(target_modules=["k_proj"], feedforward_modules=[]),
        "prompt": PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=2),
    }[kind]
    get_peft_model(model_factory(len(tiny_tokenizer)), config).save_pretrained(tmp_path)
    with pytest.raises(InvalidInputError, match=kind if kind != "prompt" else "prompt_tuning"):
        LoraAdapter.read(tmp_path, NativeDecoder(base))
