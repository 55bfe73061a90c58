"""Prompt- and prefix-tuned adapters run in the engine exactly as `peft` runs them."""

from __future__ import annotations

import json

import pytest
import torch

import lmforge
from lmforge.engine.prefix import PrefixDecoder
from lmforge.evaluate.scorer import Scorer
from lmforge.models.adapters import apply_adapter
from lmforge.store import Store
from lmforge.tune.trainer import TuneConfig, tune

PROMPTS = ["What colour is the sky?", "Paris is", "A cat has four"]


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    """A prompt-tuned and a prefix-tuned adapter on the tiny model, in one module-wide store."""
    home = tmp_path_factory.mktemp("prefix-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("LMFORGE_HOME", str(home))
    data = home / "chat.jsonl"
    with data.open("w") as f:
        for q in PROMPTS * 4:
            msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": "Blue."}]
            f.write(json.dumps({"messages": msgs}) + "\n")
    lmforge.import_model(tiny_model_dir, "tiny")
    for method, lr in (("prompt", 3e-1), ("prefix", 2e-1)):
        opts = dict(data=str(data), max_steps=4, micro_batch=4, seq_len=64, eval_fraction=0.0)
        tune("tiny", TuneConfig(method=method, out=f"t-{method}", lr=lr, **opts), quiet=True)
    yield home
    mp.undo()


@pytest.fixture(autouse=True)
def lmforge_home(adapters, monkeypatch):  # overrides the per-test empty store
    monkeypatch.setenv("LMFORGE_HOME", str(adapters))
    return adapters


def reference(name):
    peft_model, tok = apply_adapter(Store().get(name), Store())
    return peft_model.float().eval(), tok


@pytest.mark.parametrize("method", ["prompt", "prefix"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_next_token_logits_match_peft(method, dtype):
    model = lmforge.load(f"t-{method}", dtype=dtype)
    assert isinstance(model.decoder, PrefixDecoder) and model.decoder.prefix_len > 0
    peft_model, tok = reference(f"t-{method}")
    for text in PROMPTS:
        ids = tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            want = peft_model(input_ids=ids).logits[0, -1]
            with peft_model.disable_adapter():
                plain = peft_model.get_base_model()(input_ids=ids).logits[0, -1]
        got = model.decoder.forward(ids, model.decoder.new_cache(1, ids.shape[1]))[0]
        # the adapter really changes the model: the base alone gives other logits
        assert (plain - want).abs().max() > 1e-2
        if dtype == "fp32":
            assert torch.allclose(got, want, atol=1e-4), (got - want).abs().max()
        else:  # bf16 weights: rounding noise only (the prefix logic is checked at fp32)
            assert (got - want).norm() / want.norm() < 0.06


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_greedy_generation_matches_the_peft_forward_also_when_batched(method):
    """Each generated token is the argmax of peft's own forward over prompt + tokens so far.

    (peft's forward is what training optimised; its `generate` for prefix tuning numbers
    positions differently between the prompt and later steps, so it is not the reference.)
    """
    model = lmforge.load(f"t-{method}")
    peft_model, tok = reference(f"t-{method}")
    prompts = [tok(t).input_ids for t in PROMPTS]
    batched = model.complete(prompts, max_tokens=8)  # left-padded: rows of three lengths
    for ids, done in zip(prompts, batched, strict=True):
        assert model.complete([ids], max_tokens=8)[0].token_ids == done.token_ids
        seq = torch.tensor([ids + done.token_ids])
        with torch.no_grad():
            logits = peft_model(input_ids=seq).logits[0, -seq.shape[1] :]  # drop virtual rows
        want = logits[len(ids) - 1 : -1].argmax(-1).tolist()
        assert done.token_ids == want[: len(done.token_ids)] and done.token_ids


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_scorer_loglikelihoods_match_a_peft_forward(method):
    model = lmforge.load(f"t-{method}")
    peft_model, tok = reference(f"t-{method}")
    ctx, conts = tok("Paris is").input_ids, [tok(" blue").input_ids, tok(" a cat").input_ids]
    got = Scorer(model.decoder, model.tokenizer).score_ids([(ctx, conts)])[0]
    for cont, score in zip(conts, got, strict=True):
        ids = torch.tensor([ctx + cont])
        with torch.no_grad():
            logp = peft_model(input_ids=ids).logits[0, -ids.shape[1] :].log_softmax(-1)
        want = sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont))
        assert abs(score.logprob - want) < 1e-3, (score.logprob, want)
