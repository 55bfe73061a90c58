"""JSON mode: the automaton accepts exactly the prefixes of JSON objects; outputs parse."""

from __future__ import annotations

import json
import random

import pytest
import torch

from lmforge.engine.json_mode import JsonPrefix, JsonSampler, token_texts
from lmforge.engine.params import SamplingParams
from lmforge.engine.sampling import Sampler

OBJECTS = [
    {},
    {"a": 1},
    {"name": "Ada", "age": 36, "tags": ["x", "y"], "ok": True, "none": None},
    {"nested": {"list": [1, -2.5, 3e10, 0, -0.0, {"deep": [[], {}]}]}, "esc": 'q"\\/\n\tu\u00e9'},
    {"n": [1.25e-3, 10, 0.5], "t": [True, False, None]},
]


def states(text: str):
    state = JsonPrefix()
    for ch in text:
        state = state.feed(ch)
        yield state


@pytest.mark.parametrize("obj", OBJECTS)
@pytest.mark.parametrize("indent", [None, 2])
def test_every_prefix_of_a_json_object_is_accepted_and_only_the_whole_is_complete(obj, indent):
    text = json.dumps(obj, indent=indent, ensure_ascii=False)
    seen = list(states(" \n" + text + " "))
    assert all(s is not None for s in seen), text
    assert seen[-1].complete and not any(s.complete for s in seen[: len(text) + 1])


@pytest.mark.parametrize(
    "bad",
    [
        "[1, 2]",  # JSON mode: the top level is an object
        '"text"',
        "{'a': 1}",
        '{"a" 1}',
        '{"a": 1,}',
        '{"a": 01}',
        '{"a": 1.}',
        '{"a": tru }',
        '{"a": "x\\q"}',
        '{"a": "\\u12G4"}',
        '{"a": [1 2]}',
        '{"a": 1}}',
        '{"a": 1} x',
        '{"a": "line\nbreak"}',
        '{"a": -}',
        '{"a": 1e}',
        "{,}",
    ],
)
def test_invalid_text_is_refused_where_it_goes_wrong(bad):
    state = JsonPrefix().feed(bad)
    assert state is None or not state.complete


def test_random_strings_agree_with_json_loads():
    rng = random.Random(0)
    alphabet = '{}[]:,"\\ 0123456789-+.eEtrufalsn'
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        state = JsonPrefix().feed(text)
        try:
            ok = isinstance(json.loads(text), dict)
        except json.JSONDecodeError:
            ok = False
        if ok:  # every object json accepts, the automaton accepts and calls complete
            assert state is not None and state.complete, text
        elif state is not None and state.complete:
            pytest.fail(f"accepted {text!r}, which json.loads refuses")


def test_sampler_outputs_parse_for_a_random_model(tiny_tokenizer):
    """With random logits (a model with no idea of JSON), every finished output parses."""
    vocab = len(tiny_tokenizer)
    texts = token_texts(tiny_tokenizer, vocab)
    eos = frozenset({tiny_tokenizer.eos_token_id})
    finished = 0
    for seed in range(5):
        sampler = JsonSampler(
            Sampler(SamplingParams(temperature=1.0, seed=seed), 1, vocab), texts, eos
        )
        gen = torch.Generator().manual_seed(seed)
        out = []
        for _ in range(400):
            logits = torch.randn(1, vocab, generator=gen)
            logits[0, list(eos)] += 2.0  # the model wants to stop early and often
            tok = int(sampler(logits)[0])
            if tok in eos:
                break
            out.append(texts[tok])
        text = "".join(out)
        if sampler.state.complete:
            assert isinstance(json.loads(text), dict), text
            finished += 1
        else:  # ran out of tokens: still a valid prefix
            assert JsonPrefix().feed(text) is not None
    assert finished >= 1  # EOS is allowed, and taken, once an object is closed
