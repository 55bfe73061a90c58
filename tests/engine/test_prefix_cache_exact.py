"""A prompt whose opening comes from the prompt cache computes the same bits as the whole prompt
afresh: the same logits, keys and values, and the same greedy continuation, at every weight
type, alone and through the scheduler.

Prefill runs in chunks that end at multiples of PREFILL_CHUNK positions and the cache keeps
whole chunks only, so a hit leaves exactly the chunks a fresh prefill computes. Before, a hit
prefilled the rest of the prompt as one block, whose attention (SDPA) rounds by the number and
offset of its queries (~2e-7); at int8 that changed the greedy answers of SmolLM2-135M. A tiny
model turns such a rounding into another bf16 value only now and then (measured: a few prompts
in a hundred at 2 layers), hence a deeper model and several prompts and openings per test.
"""

from __future__ import annotations

import pytest
import torch

from lmforge.engine import SamplingParams
from lmforge.engine.native import PREFILL_CHUNK, NativeDecoder
from lmforge.engine.scheduler import Scheduler, _SlotRows

DTYPES = ["int8", "int4", "fp32", "bf16"]
# tokens shared with a stored prompt: under, at and over one chunk, over two, none a multiple
# of it but one; then all but the last token, and the whole prompt (a prompt sent again)
OPENINGS = [20, PREFILL_CHUNK - 1, PREFILL_CHUNK, PREFILL_CHUNK + 1, 100, 2 * PREFILL_CHUNK + 3]
LENGTH = 150  # the prompt
STEPS = 6  # greedy tokens after the prompt


@pytest.fixture(scope="module")
def model(model_factory, tiny_tokenizer):
    # 16 layers of width 128 (2 heads of 64, as SmolLM2's): more places where a rounding
    # difference can show. Measured with the old token-exact cache: 5 in 10 prompts (int8)
    # and 8 in 10 (int4) got other bits after sharing 20 tokens, 3 and 7 in 10 when sent again
    return model_factory(
        len(tiny_tokenizer), num_hidden_layers=16, hidden_size=128, intermediate_size=256,
        num_attention_heads=2, num_key_value_heads=1, head_dim=64,
    )  # fmt: skip


@pytest.fixture(scope="module")
def decoders(model):
    return {dtype: NativeDecoder(model, dtype) for dtype in DTYPES}


def random_prompt(seed: int, length: int, vocab: int) -> list[int]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (length,), generator=gen).tolist()


def prefill_and_decode(rows: _SlotRows, prompt: list[int]) -> tuple[int, list[torch.Tensor]]:
    """Add `prompt` as the only row, then greedy steps: the tokens taken from the cache, and the
    logits (1, vocab) of the prompt's last token and of every step."""
    logits, hit = rows.add(prompt, STEPS)
    out = [logits]
    for _ in range(STEPS):
        logits, failed = rows.step(logits.argmax(-1), [None])
        assert not failed
        out.append(logits)
    return hit, out


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_cache_hit_gives_the_same_bits_as_a_fresh_prefill(decoders, dtype):
    dec = decoders[dtype]
    with torch.inference_mode():
        # fp32 layers pass on every rounding difference (the old cache failed at each of 5
        # prompts there), the bf16 casts of the others only some (bf16: 2 of 5; its CPU
        # layers are also the slowest here)
        for seed in range({"fp32": 1, "bf16": 2}.get(dtype, 3)):
            prompt = random_prompt(seed, LENGTH, dec.vocab_size)
            fresh = _SlotRows(dec, 2, 256)
            _, want = prefill_and_decode(fresh, prompt)
            for shared in [*OPENINGS, LENGTH - 1, LENGTH]:
                # a stored prompt that opens like this one for `shared` tokens, then goes on
                # otherwise (tokens 1 and 2 never occur in `prompt`)
                stored = prompt[:shared] + [1 + (shared % 2)] * 40
                cached = _SlotRows(dec, 2, 256, cache_bytes=2**22)
                cached.add(stored, STEPS)
                cached.remove(0)
                hit, got = prefill_and_decode(cached, prompt)
                # the whole chunks of the common opening, the prompt's last token left out
                assert hit == min(shared, LENGTH - 1) // PREFILL_CHUNK * PREFILL_CHUNK
                for step, (a, b) in enumerate(zip(got, want, strict=True)):
                    assert torch.equal(a, b), (seed, shared, step)
                for a, b in zip(cached.cache.k + cached.cache.v, fresh.cache.k + fresh.cache.v,
                                strict=True):  # fmt: skip
                    assert torch.equal(a[0, :, : LENGTH + STEPS], b[0, :, : LENGTH + STEPS])


def run_scheduler(dec, tokenizer, prompts, mb: float) -> tuple[list, int]:
    """Each prompt in turn (so that later ones find earlier ones cached), greedy with the top 3
    log-probabilities of every token: [(token, logprob, top)] per prompt, and the cached tokens."""
    params = SamplingParams(max_tokens=STEPS)
    out = []
    with Scheduler(dec, tokenizer, max_batch=2, prompt_cache_mb=mb) as sched:
        for prompt in prompts:
            [request] = sched.submit_many([(prompt, params)], logprobs=3)
            out.append([(d.token_id, d.logprob, d.top_logprobs) for d in request])
        return out, sched.cached_tokens


@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_scheduler_answers_are_the_same_bits_with_the_cache(decoders, tiny_tokenizer, dtype):
    dec = decoders[dtype]
    system = random_prompt(10, 140, dec.vocab_size)  # a shared opening: 2 chunks and a part
    prompts = [system + random_prompt(seed, 5 + 7 * seed, dec.vocab_size) for seed in range(4)]
    prompts += [system[:100] + [1, 2, 3], system[:70], system[:100] + [1, 2, 3]]
    prompts += prompts[:1] * 2  # the same prompt sent 3 times
    with_cache, hits = run_scheduler(dec, tiny_tokenizer, prompts, 16)
    without, none = run_scheduler(dec, tiny_tokenizer, prompts, 0)
    assert with_cache == without  # tokens, and log-probabilities to the last bit
    assert hits >= 7 * PREFILL_CHUNK and none == 0, hits


@pytest.mark.slow
def test_the_same_greedy_chat_thrice_on_the_default_model():
    """The issue's check on SmolLM2-135M at int8: a chat with a long system prompt, sent three
    times with the prompt cache, answers as it does without the cache; so do two chats that
    share the system prompt."""
    import lmforge

    model = lmforge.load(dtype="int8")
    system = (
        "You are the help desk of Lumen, a fictional lamp maker. Lumen sells three lamps: the "
        "Pico (a desk lamp, 4 watts, USB-C, 39 euros), the Arc (a floor lamp, 12 watts, a "
        "dimmer with five steps, 129 euros) and the Halo (a ceiling lamp, 18 watts, a remote, "
        "199 euros). Every lamp has a warranty of two years; the Halo's remote has one year. "
        "Returns are free within 30 days, in the original box. Answer in at most three "
        "sentences, politely, and never invent a product that is not in this list."
    )
    questions = ["Which lamp should I buy for my desk?", "How long is the warranty on the Halo?"]
    prompts = [
        model.chat_prompt([{"role": "system", "content": system}, {"role": "user", "content": q}])
        for q in questions
    ]
    assert min(len(p) for p in prompts) > 2 * PREFILL_CHUNK
    params = SamplingParams(max_tokens=40)

    def answers(mb: float, times: int) -> tuple[list[list[str]], int]:
        with Scheduler.for_model(model, prompt_cache_mb=mb) as sched:
            texts = [[sched.submit(p, params).result().text for _ in range(times)] for p in prompts]
            return texts, sched.cached_tokens

    cached, hits = answers(64, 3)
    plain, _ = answers(0, 1)
    assert hits > 0
    for got, [want] in zip(cached, plain, strict=True):
        assert got == [want] * 3
