"""Continuous batching (`Scheduler`): every request gets what it would get alone."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from lmforge.engine import SamplingParams, generate_batch
from lmforge.engine.hf_decoder import HFDecoder
from lmforge.engine.native import NativeDecoder
from lmforge.engine.prefix import PrefixDecoder
from lmforge.engine.scheduler import QueueFullError, Scheduler, SchedulerClosed
from lmforge.errors import InvalidInputError
from lmforge.models.model import Model

TEXTS = [
    "The",
    "A small model can still say odd things",
    "Emoji take four bytes each: 🙂",
    "Stop strings end the answer; the stop string itself is never returned.",
    "日本語のテキスト",
    "The engine reads one token at a time and writes its keys into the cache.",
    "café",
    "A small model can still say odd things: café, naïve, résumé, déjà vu. Emoji 🚀",
]


@pytest.fixture(scope="module")
def model(llama, bpe_tokenizer):
    return Model(llama, bpe_tokenizer)


@pytest.fixture(scope="module")
def prompts(bpe_tokenizer):
    ids = [bpe_tokenizer.encode(t) for t in TEXTS]
    assert len({len(p) for p in ids}) == len(ids)  # all different lengths
    return ids


def wait_until(condition, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)


def staggered(scheduler: Scheduler, prompts, params_of) -> list:
    """Submit the prompts one at a time, each after the one before has produced two deltas,
    so requests join a batch that is already running; return the finished requests."""
    requests, readers = [], []
    for k, prompt in enumerate(prompts):
        requests.append(scheduler.submit(prompt, params_of(k)))
        readers.append(iter(requests[-1]))  # keep the reader: dropping it would cancel
        for _ in range(2):
            next(readers[-1], None)
    for reader in readers:
        for _ in reader:
            pass
    return requests


@pytest.mark.parametrize("max_batch", [3, 16])
def test_greedy_equals_model_complete_alone(model, prompts, max_batch):
    """8 prompts of different lengths arrive at different times; max_batch=3 makes them
    queue and reuse rows, and different max_tokens make them leave at different times."""
    alone = [model.complete([p], max_tokens=6 + 3 * k)[0] for k, p in enumerate(prompts)]
    with Scheduler.for_model(model, max_batch=max_batch) as scheduler:
        requests = staggered(scheduler, prompts, lambda k: SamplingParams(max_tokens=6 + 3 * k))
        assert scheduler.running == 0 and scheduler.waiting == 0
    for request, want in zip(requests, alone, strict=True):
        assert request.token_ids == want.token_ids
        assert request.finish_reason == want.finish_reason


def test_text_and_stop_strings_equal_alone(model, prompts):
    free = [model.complete([p], max_tokens=12)[0] for p in prompts]
    stops = [[c.text[3:6]] if len(c.text) > 6 else [] for c in free]  # a stop inside each
    assert sum(bool(s) for s in stops) >= 4
    alone = [
        model.complete([p], max_tokens=12, stop=s)[0] for p, s in zip(prompts, stops, strict=True)
    ]
    with Scheduler.for_model(model, max_batch=4) as scheduler:
        requests = scheduler.submit_many(
            [
                (p, SamplingParams(max_tokens=12, stop=s))
                for p, s in zip(prompts, stops, strict=True)
            ]
        )
        got = [r.result() for r in requests]
    for g, want in zip(got, alone, strict=True):
        assert (g.text, g.token_ids, g.finish_reason) == (
            want.text,
            want.token_ids,
            want.finish_reason,
        )


def test_transformers_fallback_decoder(llama, bpe_tokenizer, prompts):
    decoder = HFDecoder(llama, "fp32")
    params = SamplingParams(max_tokens=8)
    alone = [generate_batch(decoder, bpe_tokenizer, [p], params)[0] for p in prompts[:4]]
    with Scheduler(decoder, bpe_tokenizer, max_batch=3) as scheduler:
        requests = staggered(scheduler, prompts[:4], lambda k: params)
    assert [r.token_ids for r in requests] == [a.token_ids for a in alone]


def test_prompt_or_prefix_adapter_prefix(llama, bpe_tokenizer, prompts):
    native = NativeDecoder(llama, "fp32")
    torch.manual_seed(1)
    kv = [(torch.randn(1, 2, 3, 16), torch.randn(1, 2, 3, 16)) for _ in native.layers]
    decoder = PrefixDecoder(native, kv)
    params = SamplingParams(max_tokens=8)
    alone = [generate_batch(decoder, bpe_tokenizer, [p], params)[0] for p in prompts[:4]]
    plain = generate_batch(native, bpe_tokenizer, [prompts[1]], params)[0]
    assert plain.token_ids != alone[1].token_ids  # the prefix matters
    with Scheduler(decoder, bpe_tokenizer, max_batch=3) as scheduler:
        requests = staggered(scheduler, prompts[:4], lambda k: params)
    assert [r.token_ids for r in requests] == [a.token_ids for a in alone]


def test_per_request_seeds_are_reproducible(model, prompts):
    sampled = dict(max_tokens=10, temperature=1.2, top_p=0.95)
    alone = model.complete([prompts[2]], seed=7, **sampled)[0]
    with Scheduler.for_model(model, max_batch=8) as scheduler:
        mine = scheduler.submit(prompts[2], SamplingParams(seed=7, **sampled))
        twin = scheduler.submit(prompts[2], SamplingParams(seed=7, **sampled))
        others = [
            scheduler.submit(p, SamplingParams(seed=k, **sampled)) for k, p in enumerate(prompts)
        ]
        greedy = scheduler.submit(prompts[0], SamplingParams(max_tokens=10))
        got = [r.result() for r in (mine, twin, *others, greedy)]
    assert got[0].token_ids == alone.token_ids  # whatever ran beside it
    assert got[1].token_ids == alone.token_ids
    assert got[2 + 2].token_ids != alone.token_ids  # same prompt, seed 2: other tokens
    assert got[-1].token_ids == model.complete([prompts[0]], max_tokens=10)[0].token_ids


@pytest.fixture(scope="module")
def long_model(build_model, bpe_tokenizer):
    """A tiny model with a long context, for requests that would run for seconds."""
    return Model(build_model("llama", max_position_embeddings=4096), bpe_tokenizer)


def test_cancel_frees_the_row_at_once(long_model, prompts):
    with Scheduler(long_model.decoder, long_model.tokenizer, max_batch=1) as scheduler:
        long = scheduler.submit(prompts[1], SamplingParams(max_tokens=4000))
        short = scheduler.submit(prompts[0], SamplingParams(max_tokens=4))
        queued = scheduler.submit(prompts[2], SamplingParams(max_tokens=4))
        reader = iter(long)
        next(reader)  # long is running; short and queued wait for its row
        assert scheduler.waiting == 2
        queued.cancel()  # waiting: gone at once
        assert [d.finish_reason for d in queued] == ["cancelled"]
        assert scheduler.waiting == 1
        long.cancel()
        assert short.result().completion_tokens == 4  # got the row
        assert long.finish_reason == "cancelled" and long.completion_tokens < 100
        assert scheduler.cancelled == 2
        wait_until(lambda: scheduler.running == 0)


def test_leaving_the_iteration_cancels(long_model, prompts):
    async def read_two(request):
        async for delta in request:
            if delta.token_id is not None and request.completion_tokens >= 2:
                break

    with Scheduler(long_model.decoder, long_model.tokenizer, max_batch=2) as scheduler:
        sync_request = scheduler.submit(prompts[1], SamplingParams(max_tokens=4000))
        reader = iter(sync_request)
        next(reader), next(reader)
        reader.close()  # as a `break` out of a for loop does
        async_request = scheduler.submit(prompts[3], SamplingParams(max_tokens=4000))
        asyncio.run(read_two(async_request))
        wait_until(lambda: scheduler.running == 0)
        assert sync_request.finish_reason == async_request.finish_reason == "cancelled"


def test_async_iteration_equals_sync(model, prompts):
    async def collect(scheduler):
        requests = [scheduler.submit(p, SamplingParams(max_tokens=8)) for p in prompts]

        async def text(request):
            return "".join([d.text async for d in request])

        return await asyncio.gather(*(text(r) for r in requests))

    with Scheduler.for_model(model, max_batch=4) as scheduler:
        texts = asyncio.run(collect(scheduler))
    assert texts == [model.complete([p], max_tokens=8)[0].text for p in prompts]


def test_full_queue_raises_and_submit_many_is_all_or_none(model, prompts):
    scheduler = Scheduler.for_model(model, max_batch=1, max_queue=1)  # not started: all wait
    first, second = (scheduler.submit(p) for p in prompts[:2])  # one per free row + queue
    with pytest.raises(QueueFullError) as err:
        scheduler.submit(prompts[2])
    assert err.value.retry_after >= 1 and "busy" in str(err.value)
    scheduler.close()
    assert scheduler.waiting == 0
    with pytest.raises(SchedulerClosed):
        first.result()

    scheduler = Scheduler.for_model(model, max_batch=1, max_queue=1)
    with pytest.raises(QueueFullError):
        scheduler.submit_many([(p, SamplingParams()) for p in prompts[:3]])
    assert scheduler.waiting == 0
    scheduler.close()


def test_bad_requests_raise_before_queueing(model):
    scheduler = Scheduler.for_model(model, context=16)
    with pytest.raises(InvalidInputError, match="empty prompt"):
        scheduler.submit([])
    with pytest.raises(InvalidInputError, match="does not fit the context of 16"):
        scheduler.submit(list(range(1, 17)))
    params = SamplingParams()
    params.top_p = 1.5  # changed after its own check
    with pytest.raises(InvalidInputError, match="invalid top_p"):
        scheduler.submit([1, 2], params)
    assert scheduler.waiting == 0
    scheduler.close()


def test_failures_fail_their_requests_and_the_scheduler_goes_on(llama, bpe_tokenizer, prompts):
    decoder = NativeDecoder(llama, "fp32")
    forward, fail = decoder.forward, {"prefill": False, "decode": False}

    def flaky(ids, *args, **kwargs):
        if fail["prefill" if ids.shape[1] > 1 else "decode"]:
            raise RuntimeError("boom")
        return forward(ids, *args, **kwargs)

    decoder.forward = flaky
    params = SamplingParams(max_tokens=40)
    [want] = generate_batch(decoder, bpe_tokenizer, [prompts[1]], params)
    with Scheduler(decoder, bpe_tokenizer) as scheduler:
        running = scheduler.submit(prompts[1], params)
        reader = iter(running)
        next(reader)
        fail["prefill"] = True  # a prompt that fails fails alone
        with pytest.raises(RuntimeError, match="boom"):
            scheduler.submit(prompts[3]).result()
        fail["prefill"] = False
        assert "".join(d.text for d in reader) and running.token_ids == want.token_ids
        fail["decode"] = True  # a failed decode step fails the rows in it
        with pytest.raises(RuntimeError, match="boom"):
            scheduler.submit(prompts[1], params).result()
        fail["decode"] = False
        assert scheduler.submit(prompts[1], params).result().token_ids == want.token_ids


def test_rows_stay_exact_while_the_cache_grows_and_shrinks(long_model, prompts):
    """A row running past the first 256 positions grows every row's buffers, beside a row
    that joins later; when it leaves, they shrink back. Both answers equal their own alone."""
    decoder, tokenizer = long_model.decoder, long_model.tokenizer
    scheduler = Scheduler(decoder, tokenizer, max_batch=2)  # no EOS: both run to max_tokens
    long_params, short_params = SamplingParams(max_tokens=300), SamplingParams(max_tokens=40)
    with scheduler:
        long = scheduler.submit(prompts[7], long_params)
        reader = iter(long)
        for _ in range(200):
            next(reader)
        short = scheduler.submit(prompts[1], short_params)
        got_short = short.result()
        cache = scheduler._rows.cache
        assert cache.capacity >= 512  # grew past 256 while both rows were in it
        got_long = long.result()
        wait_until(lambda: scheduler.running == 0)
        assert cache.capacity == cache.min_capacity == 256
    [want_long] = generate_batch(decoder, tokenizer, [prompts[7]], long_params)
    [want_short] = generate_batch(decoder, tokenizer, [prompts[1]], short_params)
    assert got_long.token_ids == want_long.token_ids and len(want_long.token_ids) == 300
    assert got_short.token_ids == want_short.token_ids


def _solo(model, prompts, params_of) -> list[list[int]]:
    """Each prompt's greedy tokens, run alone."""
    with Scheduler.for_model(model) as scheduler:
        return [scheduler.submit(p, params_of(k)).result().token_ids for k, p in enumerate(prompts)]


def test_a_poisoned_request_fails_alone_and_its_neighbours_keep_their_tokens(model, prompts):
    """A request whose sampler cannot be built (a seed past what torch.Generator takes, set
    after its check, as an unchecked API field once did), one whose stop strings cannot be
    matched, and one whose adapter breaks the model's forward, among 8 streams: each fails
    alone, with its own error, and the 8 get the tokens they get alone."""
    params_of = lambda k: SamplingParams(max_tokens=12 + k)  # noqa: E731
    want = _solo(model, prompts, params_of)
    from lmforge.engine.lora import LoraAdapter

    broken = LoraAdapter("broken", [{"qkv": (torch.ones(2, 3), torch.ones(5, 2))}] * 2)
    scheduler = Scheduler.for_model(model, max_batch=16)
    good = [scheduler.submit(p, params_of(k)) for k, p in enumerate(prompts)]
    seeded = SamplingParams(max_tokens=8, seed=1, temperature=0.9)
    stops = SamplingParams(max_tokens=8)
    poisoned = [
        scheduler.submit(prompts[0], seeded),
        scheduler.submit(prompts[1], stops),
        scheduler.submit_many([(prompts[2], SamplingParams(max_tokens=8))], adapter=broken)[0],
    ]
    seeded.seed = 2**64  # past its check: the scheduler builds its generator later
    stops.stop = [7]  # not a string: matching it fails on the first token
    with scheduler:
        for request in poisoned:
            with pytest.raises(Exception) as failure:
                request.result()
            assert not isinstance(failure.value, SchedulerClosed)
        assert [r.result().token_ids for r in good] == want


def test_a_row_whose_decode_step_fails_fails_alone(llama, bpe_tokenizer, prompts):
    """The batched step fails for one row's sake (its adapter, say): every row then runs alone,
    the failing one fails, and the others go on with the tokens they get alone."""
    decoder = NativeDecoder(llama, "fp32")
    forward = decoder.forward
    from lmforge.engine.lora import LoraAdapter

    bad = LoraAdapter("bad", [{} for _ in range(len(llama.model.layers))])

    def failing_with_bad(ids, *args, adapters=None, **kwargs):
        if ids.shape[1] == 1 and adapters is not None and any(a is bad for a in adapters):
            raise RuntimeError("this adapter breaks decoding")
        return forward(ids, *args, adapters=adapters, **kwargs)

    decoder.forward = failing_with_bad
    params = SamplingParams(max_tokens=20)
    want = generate_batch(decoder, bpe_tokenizer, prompts[:4], params)
    with Scheduler(decoder, bpe_tokenizer, max_batch=8) as scheduler:
        good = [scheduler.submit(p, params) for p in prompts[:4]]
        doomed = scheduler.submit_many([(prompts[5], params)], adapter=bad)[0]
        with pytest.raises(RuntimeError, match="breaks decoding"):
            doomed.result()
        assert [r.result().token_ids for r in good] == [w.token_ids for w in want]
