"""The decode loop (`generate_batch`, `stream_batch`) against `transformers.generate` and itself."""

from __future__ import annotations

import pytest
import torch

from lmforge.engine import SamplingParams, generate_batch, make_decoder, stream_batch
from lmforge.engine.hf_decoder import HFDecoder
from lmforge.engine.native import NativeDecoder
from lmforge.errors import InvalidInputError

PROMPTS = [
    "The",  # one token
    "A small model can still say",
    "Stop strings end the answer; the stop string itself is never returned. 日本語 🙂",
]
GREEDY = SamplingParams(max_tokens=16)


def decoder_of(kind: str, model):
    return NativeDecoder(model, "fp32") if kind == "native" else HFDecoder(model, "fp32")


def first_new_token_step(tokens: list[int], start: int = 3) -> int:
    """The first step >= start whose token has not appeared before (usable as an EOS)."""
    return next(i for i in range(start, len(tokens)) if tokens[i] not in tokens[:i])


def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    """The reference: `transformers.generate`, greedy, exactly n new tokens."""
    ids = torch.tensor([prompt])  # (1, T)
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            min_new_tokens=n,
            max_new_tokens=n,
        )  # (1, T + n)
    return out[0, len(prompt) :].tolist()


@pytest.mark.parametrize("kind", ["native", "hf"])
@pytest.mark.parametrize("text", PROMPTS)
def test_greedy_equals_transformers_generate(llama, bpe_tokenizer, kind, text):
    prompt = bpe_tokenizer.encode(text)
    [ours] = generate_batch(decoder_of(kind, llama), bpe_tokenizer, [prompt], GREEDY)
    expected = hf_greedy(llama, prompt, GREEDY.max_tokens)
    assert len(set(expected)) > GREEDY.max_tokens // 2  # varied output, not one repeated token
    assert ours.token_ids == expected


@pytest.mark.parametrize("kind", ["native", "hf"])
def test_batched_equals_unbatched(llama, bpe_tokenizer, kind):
    decoder = decoder_of(kind, llama)
    prompts = [bpe_tokenizer.encode(t) for t in PROMPTS]
    assert len({len(p) for p in prompts}) == 3  # different lengths: rows are left-padded
    batched = generate_batch(decoder, bpe_tokenizer, prompts, GREEDY)
    for prompt, row in zip(prompts, batched, strict=True):
        [alone] = generate_batch(decoder, bpe_tokenizer, [prompt], GREEDY)
        assert row.token_ids == alone.token_ids
        assert row.text == alone.text
        assert row.prompt_tokens == len(prompt)


def test_batched_equals_unbatched_with_repetition_penalty(llama, bpe_tokenizer):
    decoder = make_decoder(llama)
    params = SamplingParams(max_tokens=3, repetition_penalty=10.0)
    short = bpe_tokenizer.encode("The")
    [alone] = generate_batch(decoder, bpe_tokenizer, [short], params)
    # Row 0 ends with the token that `short` generates first; row 1 is left-padded.
    long = [*bpe_tokenizer.encode("A small model"), alone.token_ids[0]]
    batched = generate_batch(decoder, bpe_tokenizer, [long, short], params)
    assert batched[1].token_ids == alone.token_ids


def test_max_tokens_is_exact_and_finishes_with_length(llama, bpe_tokenizer):
    prompts = [bpe_tokenizer.encode(t) for t in PROMPTS]
    for completion in generate_batch(
        make_decoder(llama), bpe_tokenizer, prompts, SamplingParams(max_tokens=5)
    ):
        assert completion.finish_reason == "length"
        assert completion.completion_tokens == 5


def test_generation_stops_at_the_context_length(llama, bpe_tokenizer):
    decoder = make_decoder(llama)
    prompt = [5] * (decoder.max_positions - 3)
    [completion] = generate_batch(decoder, bpe_tokenizer, [prompt], SamplingParams(max_tokens=50))
    assert completion.finish_reason == "length"
    assert completion.completion_tokens == 3


@pytest.mark.parametrize("prompts", [[], [[]], [[5] * 256]])
def test_empty_or_too_long_prompt_is_rejected(llama, bpe_tokenizer, prompts):
    with pytest.raises(InvalidInputError):
        generate_batch(make_decoder(llama), bpe_tokenizer, prompts, GREEDY)


def test_eos_stops_generation(llama, bpe_tokenizer):
    decoder = make_decoder(llama)
    prompt = bpe_tokenizer.encode(PROMPTS[1])
    [free] = generate_batch(decoder, bpe_tokenizer, [prompt], GREEDY)
    tokens = free.token_ids
    k = first_new_token_step(tokens)  # its token becomes the EOS

    [stopped] = generate_batch(decoder, bpe_tokenizer, [prompt], GREEDY, eos_ids={tokens[k]})
    assert stopped.finish_reason == "stop"
    assert stopped.token_ids == tokens[:k]  # the EOS itself is not returned
    assert stopped.text == bpe_tokenizer.decode(tokens[:k], skip_special_tokens=True)


def test_finished_rows_yield_nothing_more(llama, bpe_tokenizer):
    decoder = make_decoder(llama)
    prompts = [bpe_tokenizer.encode(t) for t in PROMPTS]
    [free, *_] = generate_batch(decoder, bpe_tokenizer, prompts, GREEDY)
    eos = free.token_ids[2]  # row 0 stops at its third step (or earlier)
    finished_at: dict[int, int] = {}
    for step, deltas in enumerate(stream_batch(decoder, bpe_tokenizer, prompts, GREEDY, {eos})):
        for d in deltas:
            assert d.index not in finished_at, "a finished row produced another delta"
            if d.finish_reason:
                finished_at[d.index] = step
    assert finished_at[0] <= 2
    assert set(finished_at) == {0, 1, 2}


def _stop_across_a_boundary(deltas: list[str]) -> tuple[str, int]:
    """A 2-char printable-ASCII stop string made of the end of one delta and the start of the
    next (so it spans two tokens), and where it first occurs in the full text."""
    full = "".join(deltas)
    end = 0
    for left, right in zip(deltas, deltas[1:], strict=False):
        end += len(left)
        stop = left[-1:] + right[:1]
        usable = len(stop) == 2 and stop.isascii() and stop.isprintable()
        if usable and full.find(stop) == end - 1 > 0:  # first occurrence, some text before it
            return stop, end - 1
    raise AssertionError(f"no usable stop string in {full!r}")


@pytest.mark.parametrize("text", PROMPTS[1:])
def test_stop_string_ends_generation_and_is_not_returned(llama, bpe_tokenizer, text):
    decoder = make_decoder(llama)
    prompt = bpe_tokenizer.encode(text)
    free = [d.text for [d] in stream_batch(decoder, bpe_tokenizer, [prompt], GREEDY)]
    stop, at = _stop_across_a_boundary(free)
    params = SamplingParams(max_tokens=16, stop=["not in the output at all", stop])

    streamed = [d for [d] in stream_batch(decoder, bpe_tokenizer, [prompt], params)]
    assert all(stop not in d.text for d in streamed)
    assert streamed[-1].finish_reason == "stop"
    assert "".join(d.text for d in streamed) == "".join(free)[:at]
    [completion] = generate_batch(decoder, bpe_tokenizer, [prompt], params)
    assert completion.finish_reason == "stop"
    assert completion.text == "".join(free)[:at]
    assert completion.completion_tokens < GREEDY.max_tokens


@pytest.mark.parametrize("ending", ["length", "eos"])
def test_a_held_back_stop_prefix_is_released_at_the_end(llama, bpe_tokenizer, ending):
    decoder = make_decoder(llama)
    prompt = bpe_tokenizer.encode(PROMPTS[1])
    [free] = generate_batch(decoder, bpe_tokenizer, [prompt], GREEDY)
    n = len(free.token_ids) if ending == "length" else first_new_token_step(free.token_ids)
    eos_ids = {free.token_ids[n]} if ending == "eos" else frozenset()
    expected = bpe_tokenizer.decode(free.token_ids[:n])
    # a stop string that the last character begins but that never completes
    params = SamplingParams(max_tokens=GREEDY.max_tokens, stop=[expected[-1] + "<never>"])
    [completion] = generate_batch(decoder, bpe_tokenizer, [prompt], params, eos_ids)
    assert completion.text == expected
    assert completion.finish_reason == ("length" if ending == "length" else "stop")


@pytest.mark.parametrize("kind", ["native", "hf"])
def test_streamed_deltas_equal_the_completion_and_the_tokenizer_decode(llama, bpe_tokenizer, kind):
    decoder = decoder_of(kind, llama)
    prompts = [bpe_tokenizer.encode(t) for t in PROMPTS]
    params = SamplingParams(max_tokens=24, temperature=1.0, seed=0)
    texts = ["", "", ""]
    ids: list[list[int]] = [[], [], []]
    for deltas in stream_batch(decoder, bpe_tokenizer, prompts, params):
        for d in deltas:
            texts[d.index] += d.text
            ids[d.index].append(d.token_id)
    completions = generate_batch(decoder, bpe_tokenizer, prompts, params)
    for row, completion in enumerate(completions):
        assert completion.token_ids == ids[row]  # same seed, same tokens
        assert texts[row] == completion.text
        assert texts[row] == bpe_tokenizer.decode(ids[row], skip_special_tokens=True)
    assert any(ord(ch) > 127 for text in texts for ch in text)  # some multi-byte output
