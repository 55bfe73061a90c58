"""Log-probabilities over the API, through the official `openai` client: each equals a plain
`transformers` forward's log_softmax (the raw distribution, before temperature), and echoed
prompt scores equal lmforge's own Scorer."""

from __future__ import annotations

import openai
import pytest
import torch

from lmforge.evaluate.scorer import Scorer

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
TOL = 1e-4


def reference(model, ids: list[int]) -> torch.Tensor:
    """log_softmax of a plain forward over ids: (T, vocab), row t predicts token t + 1."""
    with torch.no_grad():
        logits = model.hf_model(torch.tensor([ids])).logits[0].float()
    return logits.log_softmax(-1)


def check_generated(model, prompt: list[int], tokens: list[int], logprobs, tops, k: int):
    """`logprobs[j]` and `tops[j]` ((ids, values), most likely first) of generated token j."""
    want = reference(model, prompt + tokens)[len(prompt) - 1 : -1]  # (len(tokens), vocab)
    assert len(logprobs) == len(tokens)
    for j, tok in enumerate(tokens):
        assert abs(logprobs[j] - float(want[j, tok])) < TOL
        values = want[j].topk(k).values.tolist()
        assert [round(v, 4) for v in tops[j]] == pytest.approx(values, abs=TOL)


def test_chat_logprobs_plain_and_streamed(server, model):
    prompt = model.chat_prompt(MESSAGES)
    tokens = model.complete([prompt], max_tokens=6)[0].token_ids  # greedy
    reply = server.client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=6, temperature=0, logprobs=True, top_logprobs=3
    )
    content = reply.choices[0].logprobs.content
    assert [c.token for c in content] == [model.tokenizer.decode([t]) for t in tokens]
    assert content[0].bytes == list(content[0].token.encode())
    check_generated(
        model,
        prompt,
        tokens,
        [c.logprob for c in content],
        [[t.logprob for t in c.top_logprobs] for c in content],
        3,
    )
    assert content[0].top_logprobs[0].token == content[0].token  # greedy: the most likely

    stream = server.client.chat.completions.create(
        model="tiny",
        messages=MESSAGES,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        stream=True,
    )
    streamed = [
        entry
        for chunk in stream
        if chunk.choices and chunk.choices[0].logprobs
        for entry in chunk.choices[0].logprobs.content or []
    ]
    # the same tokens; the values within float rounding (the repeated prompt now comes from
    # the prompt cache, so its last token is computed in a step of its own)
    assert [(e.token, e.bytes) for e in streamed] == [(e.token, e.bytes) for e in content]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in content], abs=1e-5)
    for s, c in zip(streamed, content, strict=True):
        assert [t.token for t in s.top_logprobs] == [t.token for t in c.top_logprobs]
        assert [t.logprob for t in s.top_logprobs] == pytest.approx(
            [t.logprob for t in c.top_logprobs], abs=1e-5
        )

    plain = server.client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=2)
    assert plain.choices[0].logprobs is None


@pytest.mark.parametrize("stream", [False, True])
def test_completion_logprobs_are_before_temperature(server, model, stream):
    text = "The quick brown fox"
    prompt = model.encode(text)
    reply = server.client.completions.create(
        model="tiny",
        prompt=text,
        max_tokens=8,
        temperature=1.5,
        seed=3,
        logprobs=2,
        stream=stream,
    )
    chunks = list(reply) if stream else [reply]
    tokens, token_logprobs, tops, offsets = [], [], [], []
    for chunk in chunks:
        lp = chunk.choices[0].logprobs
        if lp is None:
            continue
        tokens += lp.tokens
        token_logprobs += lp.token_logprobs
        tops += lp.top_logprobs
        offsets += lp.text_offset
    ids = model.complete([prompt], max_tokens=8, temperature=1.5, seed=3)[0].token_ids
    assert tokens == [model.tokenizer.decode([t]) for t in ids]
    want = reference(model, prompt + ids)[len(prompt) - 1 : -1]  # (len(ids), vocab)
    strings = [model.tokenizer.decode([t]) for t in range(want.shape[-1])]
    for j, tok in enumerate(ids):
        assert abs(token_logprobs[j] - float(want[j, tok])) < TOL
        # the 2 most likely and the chosen token, keyed by text (the likeliest of equal texts)
        best = {}
        for t in [*want[j].topk(2).indices.tolist(), tok]:
            best.setdefault(strings[t], float(want[j, t]))
        assert tops[j] == pytest.approx(best, abs=TOL)
    assert offsets == [sum(len(t) for t in tokens[:j]) for j in range(len(tokens))]


def test_echo_scores_the_prompt_like_the_scorer(server, model):
    text = "Paris is the capital of France."
    ids = model.encode(text)
    reply = server.client.completions.create(
        model="tiny", prompt=text, max_tokens=0, echo=True, logprobs=1, temperature=0
    )
    choice = reply.choices[0]
    assert choice.text == text and reply.usage.completion_tokens == 0
    lp = choice.logprobs
    assert lp.tokens == [model.tokenizer.decode([t]) for t in ids]
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    want = reference(model, ids)
    for t in range(1, len(ids)):
        assert abs(lp.token_logprobs[t] - float(want[t - 1, ids[t]])) < TOL
    scorer = Scorer(model.decoder, model.tokenizer)
    score = scorer.score_ids([(ids[:1], [ids[1:]])])[0][0].logprob
    assert abs(sum(lp.token_logprobs[1:]) - score) < TOL

    # as lm-evaluation-harness's local-completions asks: echo, one more token, logprobs=1
    harness = server.client.completions.create(
        model="tiny", prompt=ids, max_tokens=1, echo=True, logprobs=1, temperature=0
    )
    got = harness.choices[0].logprobs
    assert got.token_logprobs[: len(ids)] == pytest.approx(lp.token_logprobs, abs=TOL)
    assert len(got.tokens) == len(ids) + 1
    streamed = server.client.completions.create(
        model="tiny", prompt=text, max_tokens=0, echo=True, logprobs=1, stream=True
    )
    chunks = [c for c in streamed if c.choices and c.choices[0].logprobs]
    assert "".join(c.choices[0].text for c in chunks) == text
    assert chunks[0].choices[0].logprobs.token_logprobs == lp.token_logprobs


@pytest.mark.parametrize(
    "change, param",
    [
        (dict(top_logprobs=2), "top_logprobs"),  # without logprobs: true
        (dict(logprobs=True, top_logprobs=21), "top_logprobs"),
        (dict(response_format={"type": "json_schema", "json_schema": {}}), "response_format"),
    ],
)
def test_refused_logprob_requests(server, change, param):
    with pytest.raises(openai.BadRequestError) as raised:
        server.client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=2, **change
        )
    assert raised.value.body["param"] == param, raised.value.body


@pytest.mark.parametrize("stream", [False, True])
def test_json_mode_keeps_every_answer_a_json_object(server, stream):
    """response_format json_object: whatever the (random) model wants, the text is a JSON
    object or, cut by max_tokens, a prefix of one (engine tests check the closing and EOS)."""
    from lmforge.engine.json_mode import JsonPrefix

    for seed in range(3):
        kwargs = dict(
            model="tiny",
            messages=MESSAGES,
            max_tokens=40,
            temperature=1.0,
            seed=seed,
            response_format={"type": "json_object"},
        )
        if stream:
            chunks = server.client.chat.completions.create(stream=True, **kwargs)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            text = server.client.chat.completions.create(**kwargs).choices[0].message.content
        assert text.lstrip().startswith("{"), text
        assert JsonPrefix().feed(text) is not None, text
