"""The deletion test: on a model that must use one token, the attributions find it.

A tiny Llama is trained (a few seconds, fixed seed) on a lookup task: somewhere in a row
of filler tokens sits one key; from the key on, every position must predict the key's
value, before it a NONE token. The answer at the end depends on the key and nothing
else, so a faithful attribution ranks the key first, and removing the top-ranked sources
lowers p(answer) far more than removing random ones. A method that ranked at random, or
with the wrong sign, fails this test.
"""

from __future__ import annotations

import random

import pytest
import torch

from lmforge.explain.attribution import METHODS
from lmforge.explain.config import ExplainConfig
from lmforge.explain.explainer import next_token_objective
from lmforge.explain.faithfulness import deletion_curve, ranked

VOCAB, LENGTH = 64, 8
NONE, BASELINE = 1, 0
FILLERS = list(range(8, 40))
KEYS = list(range(40, 48))
VALUE = {k: 48 + i for i, k in enumerate(KEYS)}


def sample(rng: random.Random) -> tuple[list[int], list[int]]:
    """(tokens, next-token labels): the key sits in places 1 .. LENGTH - 2 (not first: the
    methods keep the first token in place)."""
    ids = [rng.choice(FILLERS) for _ in range(LENGTH)]
    where = rng.randrange(1, LENGTH - 1)
    ids[where] = rng.choice(KEYS)
    labels = [VALUE[ids[where]] if i >= where else NONE for i in range(LENGTH)]
    return ids, labels


@pytest.fixture(scope="module")
def lookup_model(model_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = model_factory(VOCAB, seed=0, initializer_range=0.05, tie_word_embeddings=False)
    rng = random.Random(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(300):
        batch = [sample(rng) for _ in range(32)]
        ids = torch.tensor([b[0] for b in batch])
        labels = torch.tensor([b[1] for b in batch])
        logits = model(input_ids=ids).logits  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), labels.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    yield model
    torch.set_num_threads(before)


def held_out(n: int = 12):
    rng = random.Random(1234)
    return [sample(rng) for _ in range(n)]


def test_the_model_learned_the_task(lookup_model):
    right = 0
    for ids, labels in held_out():
        with torch.no_grad():
            right += (
                int(lookup_model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
                == labels[-1]
            )
    assert right == len(held_out())


# input_x_gradient is left out because it does not hold: this model is sure of its answer
# (p ~ 1), the gradient at the input is saturated and it ranks the key first in 1 case of
# 12 -- the weakness of a first-order method that integrated gradients was made to fix.
@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion", "attention"])
def test_removing_top_attributed_tokens_hurts_more_than_random(lookup_model, method):
    config = ExplainConfig(prompt="-", method=method, steps=32, batch_size=33)
    rng = random.Random(7)
    top_drop, random_drop, key_first = [], [], 0
    for ids, labels in held_out():
        answer, key_at = labels[-1], ids.index(next(t for t in ids if t in VALUE))
        goal = next_token_objective(lookup_model, ids, answer, BASELINE)
        order = ranked(METHODS[method](goal, config).tolist())
        key_first += order[0] == key_at
        curve = deletion_curve(lookup_model, ids, answer, order, k_max=2)
        top_drop.append(curve[0] - sum(curve[1:]) / 2)
        for _ in range(4):  # the same curve for random orders
            shuffled = rng.sample(range(len(ids)), len(ids))
            curve = deletion_curve(lookup_model, ids, answer, shuffled, k_max=2)
            random_drop.append(curve[0] - sum(curve[1:]) / 2)
    mean_top = sum(top_drop) / len(top_drop)
    mean_random = sum(random_drop) / len(random_drop)
    assert key_first >= 0.8 * len(top_drop), (method, key_first)
    # removing the top 1-2 sources takes most of p(answer); random ones take a little
    assert mean_top > 0.5 and mean_top > mean_random + 0.3, (method, mean_top, mean_random)


def test_a_random_ranking_fails_the_same_check(lookup_model):
    """The check can fail: a ranking that ignores the model does not pass it."""
    rng = random.Random(3)
    top_drop = []
    for ids, labels in held_out():
        order = rng.sample(range(len(ids)), len(ids))
        curve = deletion_curve(lookup_model, ids, labels[-1], order, k_max=2)
        top_drop.append(curve[0] - sum(curve[1:]) / 2)
    assert sum(top_drop) / len(top_drop) < 0.5
