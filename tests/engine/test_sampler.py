"""`SamplingParams` validation and the `Sampler`, on hand-made logits and through the loop."""

from __future__ import annotations

import pytest
import torch

from lmforge.engine import Sampler, SamplingParams, generate_batch, make_decoder
from lmforge.errors import InvalidInputError

PROMPT = "A small model can still say"


def run(model, tokenizer, **options) -> list[int]:
    params = SamplingParams(max_tokens=16, **options)
    [completion] = generate_batch(
        make_decoder(model), tokenizer, [tokenizer.encode(PROMPT)], params
    )
    return completion.token_ids


# -- through the decode loop ----------------------------------------------------------------


def test_same_seed_gives_the_same_tokens(llama, bpe_tokenizer):
    first = run(llama, bpe_tokenizer, temperature=1.0, seed=7)
    assert run(llama, bpe_tokenizer, temperature=1.0, seed=7) == first


def test_different_seeds_give_different_tokens(llama, bpe_tokenizer):
    runs = {tuple(run(llama, bpe_tokenizer, temperature=1.0, seed=s)) for s in range(4)}
    assert len(runs) > 1


def test_sampling_differs_from_greedy(llama, bpe_tokenizer):
    greedy = run(llama, bpe_tokenizer)
    sampled = [run(llama, bpe_tokenizer, temperature=1.0, seed=s) for s in range(4)]
    assert any(s != greedy for s in sampled)


@pytest.mark.parametrize("option", [{"top_k": 1}, {"top_p": 1e-6}])
def test_narrowest_filter_equals_greedy(llama, bpe_tokenizer, option):
    greedy = run(llama, bpe_tokenizer)
    for seed in range(3):
        assert run(llama, bpe_tokenizer, temperature=1.0, seed=seed, **option) == greedy


def test_repetition_penalty_changes_the_output_from_the_first_repeat(llama, bpe_tokenizer):
    seen = bpe_tokenizer.encode(PROMPT)
    greedy = run(llama, bpe_tokenizer)
    k = next(i for i, t in enumerate(greedy) if t in seen + greedy[:i])  # first repeated token
    penalised = run(llama, bpe_tokenizer, repetition_penalty=2.0)
    # Before step k the argmax is unseen, and a penalty only lowers seen tokens: no change.
    assert penalised[:k] == greedy[:k]
    assert penalised[k] != greedy[k]


# -- the Sampler on hand-made logits ---------------------------------------------------------


def sampler(batch: int = 1, vocab: int = 4, **options) -> Sampler:
    return Sampler(SamplingParams(**options), batch=batch, vocab=vocab)


def draws(s: Sampler, logits: list[float], n: int = 400) -> set[int]:
    """The set of tokens sampled in n draws from one row of logits."""
    batch = torch.tensor([logits]).expand(n, -1)  # (n, vocab): n independent rows
    return set(s(batch).tolist())


def test_greedy_is_argmax_per_row():
    logits = torch.tensor([[0.0, 3.0, 1.0], [5.0, -1.0, 4.9]])  # (B=2, vocab=3)
    assert sampler(batch=2, vocab=3)(logits).tolist() == [1, 0]


@pytest.mark.parametrize(
    ("logits", "seen", "winner"),
    [
        ([3.0, 2.9, 0.0, -1.0], 0, 1),  # a positive logit is divided: 3.0 / 1.2 = 2.5 < 2.9
        ([-1.0, -1.1, -5.0, -6.0], 0, 1),  # a negative one multiplied: -1.0 * 1.2 = -1.2 < -1.1
        ([3.0, 2.9, 0.0, -1.0], 1, 0),  # penalising the runner-up leaves the winner
    ],
)
def test_repetition_penalty_demotes_seen_tokens(logits, seen, winner):
    s = sampler(repetition_penalty=1.2)
    assert s(torch.tensor([logits])).item() == logits.index(max(logits))  # nothing seen yet
    s.observe(torch.tensor([[seen]]))
    assert s(torch.tensor([logits])).item() == winner


def test_repetition_penalty_is_per_row():
    s = sampler(batch=2, repetition_penalty=1.2)
    s.observe(torch.tensor([[0], [2]]))  # (B, T=1): row 0 saw token 0, row 1 saw token 2
    logits = torch.tensor([[3.0, 2.9, 0.0, -1.0]]).expand(2, -1)  # (B, vocab)
    assert s(logits).tolist() == [1, 0]


def test_top_k_keeps_only_the_k_most_likely():
    s = sampler(temperature=1.0, top_k=2, seed=0)
    assert draws(s, [2.0, 1.9, 1.8, 1.7]) == {0, 1}


def test_top_p_keeps_the_smallest_set_reaching_p():
    # probabilities 0.5, 0.3, 0.15, 0.05: 0.5 alone < 0.7, 0.5 + 0.3 >= 0.7
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().tolist()
    assert draws(sampler(temperature=1.0, top_p=0.7, seed=0), logits) == {0, 1}
    assert draws(sampler(temperature=1.0, top_p=0.85, seed=0), logits) == {0, 1, 2}
    assert draws(sampler(temperature=1.0, seed=0), logits) == {0, 1, 2, 3}


def test_low_temperature_concentrates_on_the_argmax():
    logits = [1.0, 0.5, 0.0, -0.5]
    assert draws(sampler(temperature=0.01, seed=0), logits) == {0}
    assert len(draws(sampler(temperature=1.0, seed=0), logits)) == 4


# -- SamplingParams --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"top_p": 1.5},
        {"top_p": 0.0},
        {"max_tokens": -1},
        {"max_tokens": 0},
        {"max_tokens": True},
        {"max_tokens": 2.5},
        {"temperature": -1},
        {"temperature": 6.0},
        {"temperature": "hot"},
        {"top_k": -1},
        {"repetition_penalty": 0.0},
        {"seed": -1},
        {"unknown_option": 1},
    ],
)
def test_from_kwargs_rejects_bad_options(bad):
    with pytest.raises(InvalidInputError):
        SamplingParams.from_kwargs(**bad)


def test_unknown_options_are_named_in_the_error():
    with pytest.raises(InvalidInputError, match="max_new_tokens") as err:
        SamplingParams.from_kwargs(max_new_tokens=5, temperature=0.5)
    assert "max_tokens" in err.value.fix  # the fix lists the valid names


def test_from_kwargs_keeps_defaults_for_none_and_normalises_stop():
    params = SamplingParams.from_kwargs(max_tokens=None, temperature=0.7, stop="END")
    assert params.max_tokens == SamplingParams().max_tokens
    assert params.temperature == 0.7 and not params.greedy
    assert params.stop == ["END"]
    assert SamplingParams(stop=["", "x"]).stop == ["x"]
    assert SamplingParams().greedy
