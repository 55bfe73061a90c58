import random

import pytest
import torch

from lmforge.engine import make_decoder
from lmforge.engine.hf_decoder import HFDecoder
from lmforge.evaluate.scorer import Scorer, split_encode

REQUESTS = [
    ("The capital of France is", [" Paris", " Rome", " a big city by the river"]),
    ("Rockets", [" fly", " 🚀 up"]),
    ("", ["hello there"]),
    ("A byte-level tokenizer splits café and", [" 日本語", " bytes."]),
    ("user assistant system: hello, how are you today? ", ["fine", "the lazy dog"]),
]


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer, model_factory):
    return model_factory(len(tiny_tokenizer), seed=3), tiny_tokenizer


def full_forward_logprob(model, tok, context, continuation):
    """The reference: one plain forward pass over context + continuation."""
    ctx, cont = split_encode(tok, context, continuation)
    ctx = ctx or [tok.bos_token_id]
    ids = torch.tensor([ctx + cont])  # (1, T)
    with torch.no_grad():
        logp = model(ids).logits.log_softmax(-1)[0]  # (T, vocab)
    return sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))


@pytest.mark.parametrize("backend", ["native", "hf"])
def test_cached_prefix_scores_equal_full_sequence(tiny, backend):
    model, tok = tiny
    decoder = make_decoder(model) if backend == "native" else HFDecoder(model)
    scores = Scorer(decoder, tok, batch_size=4).score(REQUESTS)
    for (context, conts), got in zip(REQUESTS, scores, strict=True):
        assert len(got) == len(conts)
        for cont, s in zip(conts, got, strict=True):
            assert s.logprob == pytest.approx(
                full_forward_logprob(model, tok, context, cont), abs=1e-4
            )
            assert s.tokens == len(split_encode(tok, context, cont)[1])


def test_results_do_not_depend_on_batch_size_or_order(tiny):
    model, tok = tiny
    decoder = make_decoder(model)
    rng = random.Random(0)
    requests = [(c + " " * rng.randint(0, 1), conts) for c, conts in REQUESTS * 4]
    one = Scorer(decoder, tok, batch_size=1).score(requests)
    sixteen = Scorer(decoder, tok, batch_size=16).score(requests)
    order = list(range(len(requests)))
    rng.shuffle(order)
    shuffled = Scorer(decoder, tok, batch_size=16).score([requests[i] for i in order])
    for i, (a, b) in enumerate(zip(one, sixteen, strict=True)):
        for x, y, z in zip(a, b, shuffled[order.index(i)], strict=True):
            assert abs(x.logprob - y.logprob) < 1e-4 and abs(x.logprob - z.logprob) < 1e-4
        assert max(range(len(a)), key=lambda j: a[j].logprob) == max(
            range(len(b)), key=lambda j: b[j].logprob
        )


def test_greedy_flag_matches_argmax(tiny):
    model, tok = tiny
    decoder = make_decoder(model)
    ctx = tok.encode("The capital of France is", add_special_tokens=False)
    with torch.no_grad():
        nxt = int(model(torch.tensor([ctx])).logits[0, -1].argmax())
    other = (nxt + 1) % len(tok)
    [[greedy, not_greedy]] = Scorer(decoder, tok).score_ids([(ctx, [[nxt], [other]])])
    assert greedy.greedy and not not_greedy.greedy


def test_trailing_space_moves_to_the_continuation(tiny_tokenizer):
    ctx, cont = split_encode(tiny_tokenizer, "The capital of France is ", "Paris")
    assert tiny_tokenizer.decode(ctx) == "The capital of France is"
    assert tiny_tokenizer.decode(cont) == " Paris"


SHARED = [  # contexts that extend each other; choices that extend each other
    ("The capital of France", [" is Paris", " is Par", " is"]),
    ("The capital of France is", [" Paris", " Paris, France", " Rome"]),
    ("The capital of France is", [" Paris"]),
    ("The capital of Spain is", [" Madrid", " Madrid!"]),
]


@pytest.mark.parametrize("max_tokens", [1, 12, 1024])
def test_prefix_tree_scores_equal_full_sequence(tiny, max_tokens):
    """Shared prefixes, duplicate requests and splitting by max_tokens change nothing."""
    model, tok = tiny
    scorer = Scorer(make_decoder(model), tok, batch_size=16, max_tokens=max_tokens)
    for (context, conts), got in zip(SHARED, scorer.score(SHARED), strict=True):
        for cont, s in zip(conts, got, strict=True):
            assert s.logprob == pytest.approx(
                full_forward_logprob(model, tok, context, cont), abs=1e-4
            )


def test_prefix_tree_counts_new_nodes_exactly(tiny_tokenizer):
    from lmforge.evaluate.scorer import _Tree

    tree = _Tree()
    for context, conts in SHARED:
        pairs = [split_encode(tiny_tokenizer, context, c) for c in conts]
        ctx, cs = pairs[0][0], [p[1] for p in pairs]
        expected = tree.new_nodes(ctx, cs)
        before = tree.size
        tree.add(ctx, cs)
        assert tree.size - before == expected
    assert tree.new_nodes(ctx, cs) == 0  # the same request again adds nothing
    mask = tree.mask()[0, 0]
    for n, p in enumerate(tree.parent):  # a node sees exactly its parent's view and itself
        assert mask[n, n] and (p < 0 or (mask[n] & ~mask[p]).sum() == 1)
