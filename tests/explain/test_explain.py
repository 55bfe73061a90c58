"""`explain()` on tiny random models: shapes for every method, integrated gradients'
completeness, the contrast as a difference, the logit lens against the model's logits,
and bad input."""

from __future__ import annotations

import pytest
import torch

from lmforge.errors import InvalidInputError
from lmforge.explain import ExplainConfig, explain
from lmforge.explain import config as config_module
from lmforge.explain.attribution import METHODS


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(model_factory, tiny_tokenizer):
    """A tiny Llama whose norm weights are not all 1, so a norm applied twice would show."""
    m = model_factory(len(tiny_tokenizer), seed=1, initializer_range=0.1)
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 1:
                p.add_(0.2 * torch.randn_like(p))
    return m


def logprob(model, ids: list[int], continuation: list[int]) -> float:
    """log p(continuation | ids) by a plain forward pass over token ids (the reference)."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids + continuation])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    return sum(float(logp[len(ids) - 1 + k, t]) for k, t in enumerate(continuation))


def test_the_config_names_every_registered_method():
    assert set(config_module.METHODS) == set(METHODS)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_one_score_per_source(model, tiny_tokenizer, method):
    e = explain(
        model,
        tiny_tokenizer,
        ExplainConfig(prompt="The quick brown fox", method=method, max_new_tokens=3, steps=8),
    )
    n_prompt = sum(t["role"] == "prompt" for t in e.tokens)
    assert e.generated and 1 <= len(e.rows) <= 3
    assert len(e.tokens) == n_prompt + len(e.rows)
    for j, row in enumerate(e.rows):
        seen = [a for a in row.attributions if a is not None]
        assert len(row.attributions) == len(e.tokens) and len(seen) == n_prompt + j
        assert all(a is None for a in row.attributions[n_prompt + j :])
        assert all(isinstance(a, float) and a == a for a in seen)  # finite, not NaN
        # each row's score is the log-probability of the token it explains
        ids = [t["id"] for t in e.tokens]
        assert row.score == pytest.approx(
            logprob(model, ids[: n_prompt + j], [ids[n_prompt + j]]), abs=1e-4
        )
    layers = model.config.num_hidden_layers
    assert len(e.attention) == layers and len(e.attention[0]) == model.config.num_attention_heads
    assert len(e.attention[0][0]) == len(e.tokens) == len(e.attention[0][0][0])
    if method == "attention":  # softmax rows, averaged: they sum to 1
        assert all(
            sum(a for a in r.attributions if a is not None) == pytest.approx(1, abs=1e-4)
            for r in e.rows
        )


def test_integrated_gradients_is_complete(model, tiny_tokenizer):
    """sum of attributions = score(input) - score(baseline) within 1% relative (+1e-3
    absolute), with the default 64 midpoint steps; measured error here is below 0.2%."""
    config = ExplainConfig(prompt="Paris is the capital of", target=" France. Rome")
    e = explain(model, tiny_tokenizer, config)
    assert len(e.rows) >= 2
    for row in e.rows:
        total = sum(a for a in row.attributions if a is not None)
        moved = row.score - row.baseline_score
        assert abs(moved) > 1e-2
        assert total == pytest.approx(moved, rel=0.01, abs=1e-3), row.label
    assert not [n for n in e.notes if "integrated gradients" in n]


def test_too_few_steps_are_reported(model_factory, tiny_tokenizer):
    rough = model_factory(len(tiny_tokenizer), seed=0)  # initializer_range 0.3: far from linear
    e = explain(
        rough,
        tiny_tokenizer,
        ExplainConfig(prompt="Paris is the capital of", target=" France. Rome", steps=2),
    )
    assert any("raise --steps" in n for n in e.notes)


def test_contrast_explains_the_difference(model, tiny_tokenizer):
    tok = tiny_tokenizer
    prompt, target, contrast = "Paris is the capital of", " France.", " Italy."
    e = explain(
        model,
        tok,
        ExplainConfig(prompt=prompt, target=target, contrast=contrast, steps=128, batch_size=64),
    )
    (row,) = e.rows
    ids = tok.encode(prompt)
    want = logprob(model, ids, tok.encode(prompt + target)[len(ids) :]) - logprob(
        model, ids, tok.encode(prompt + contrast)[len(ids) :]
    )
    assert row.score == pytest.approx(want, abs=1e-4)
    # the prompt tokens are the sources; completeness holds for the difference too
    assert [a is not None for a in row.attributions] == [t["role"] == "prompt" for t in e.tokens]
    total = sum(a for a in row.attributions if a is not None)
    assert total == pytest.approx(row.score - row.baseline_score, rel=0.02, abs=1e-3)
    assert e.contrast == contrast and not e.generated and e.baseline == "<|endoftext|>"


def test_logit_lens_last_layer_is_the_models_own_prediction(model, tiny_tokenizer):
    e = explain(
        model,
        tiny_tokenizer,
        ExplainConfig(
            prompt="The quick brown fox jumps", target=" over", method="attention", top_k=4
        ),
    )
    lens = e.logit_lens
    assert lens["layers"] == ["embeddings", "layer 1", "layer 2"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([[t["id"] for t in e.tokens]])).logits[0]
    top = torch.softmax(logits, -1).topk(4)
    want = [[tiny_tokenizer.decode([i]) for i in pos] for pos in top.indices.tolist()]
    assert lens["tokens"][-1] == want
    for got, want_probs in zip(lens["probs"][-1], top.values.tolist(), strict=True):
        assert got == pytest.approx(want_probs, abs=1e-4)
    # the middle layer differs (the lens reads a different depth), shapes match
    assert len(lens["tokens"]) == 3 and all(len(layer) == len(e.tokens) for layer in lens["tokens"])


def test_a_target_that_merges_with_the_prompt_is_split_jointly_and_said(model, tiny_tokenizer):
    # "capital" is one token of this tokenizer: the prompt "... the cap" + target "ital" is
    # not "cap" + "ital" once tokenized together
    e = explain(
        model,
        tiny_tokenizer,
        ExplainConfig(prompt="Paris is the cap", target="ital of France", method="occlusion"),
    )
    joint = tiny_tokenizer.encode("Paris is the capital of France")
    assert [t["id"] for t in e.tokens] == joint
    assert any("tokenize together" in n and "' cap'" in n for n in e.notes), e.notes


def test_a_long_prompt_is_cut_from_the_left_and_said(model, tiny_tokenizer):
    prompt = "The quick brown fox jumps over the lazy dog. " * 6
    e = explain(
        model,
        tiny_tokenizer,
        ExplainConfig(prompt=prompt, target=" Paris", max_context=12, method="occlusion"),
    )
    assert len(e.tokens) == 12
    (note,) = [n for n in e.notes if "cut from the left" in n]
    assert "12 tokens" in note and "The quick" in note
    assert [t["id"] for t in e.tokens[-3:]] == tiny_tokenizer.encode(prompt + " Paris")[-3:]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"prompt": ""}, "prompt is empty"),
        ({"prompt": "   \n"}, "prompt is empty"),
        ({"prompt": "hi", "target": ""}, "target is empty"),
        ({"prompt": b"caf\xe9 au lait"}, "prompt is not UTF-8 text (byte 0xe9 at offset 3)"),
        ({"prompt": "ok \udcff then"}, "prompt is not valid UTF-8"),
        ({"prompt": "PK\x03\x04\x00\x00binary"}, "prompt looks like binary data"),
        ({"prompt": "hi", "target": " there", "contrast": " there"}, "same tokens as the target"),
        ({"prompt": "hi", "method": "shap"}, "unknown attribution method 'shap'"),
        ({"prompt": "hi", "steps": 0}, "invalid steps=0"),
        ({"prompt": "hi", "colour": "red"}, "unknown explain option(s): colour"),
        ({"target": "x"}, "no prompt given"),
        ({"prompt": "The quick", "target": " brown fox jumps", "max_context": 3}, "leaves no room"),
    ],
)
def test_bad_input_is_one_clear_error(model, tiny_tokenizer, options, message):
    with pytest.raises(InvalidInputError) as err:
        explain(model, tiny_tokenizer, **options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_mixed_encoding_bytes_are_refused_but_replacement_characters_noted(model, tiny_tokenizer):
    mixed = "naïve ".encode() + "café".encode("latin-1")  # UTF-8 and Latin-1 in one text
    with pytest.raises(InvalidInputError, match="not UTF-8"):
        explain(model, tiny_tokenizer, prompt=mixed)
    e = explain(model, tiny_tokenizer, prompt="caf\ufffd ok", target=" hi", method="attention")
    assert any("U+FFFD" in n for n in e.notes)


def test_the_model_is_left_as_it_was(model, tiny_tokenizer):
    before = model.config._attn_implementation
    explain(model, tiny_tokenizer, prompt="hello", max_new_tokens=2, method="attention")
    assert model.config._attn_implementation == before and not model.training
    assert all(p.grad is None for p in model.parameters())
