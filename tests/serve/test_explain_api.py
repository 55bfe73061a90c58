"""`POST /v1/explain` on a real server: the library's explanation, over HTTP."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from live_server import Server

from lmforge.explain import ExplainConfig, explain
from lmforge.serve import ServeConfig, create_app


def post(server, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        server.url + "/v1/explain", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_explain_equals_the_library(server, model):
    status, got = post(
        server, {"prompt": "Paris is", "target": " the", "method": "occlusion", "format": "html"}
    )
    assert status == 200
    want = explain(
        model, config=ExplainConfig(prompt="Paris is", target=" the", method="occlusion")
    )
    assert [t["text"] for t in got["tokens"]] == [t["text"] for t in want.to_json()["tokens"]]
    assert got["rows"][0]["attributions"] == pytest.approx(
        want.to_json()["rows"][0]["attributions"]
    )
    assert got["html"].startswith("<!DOCTYPE html>") or got["html"].lstrip().startswith("<")


def test_messages_go_through_the_chat_template(server, model):
    messages = [{"role": "user", "content": "Paris is"}]
    status, got = post(server, {"messages": messages, "target": " the", "method": "attention"})
    assert status == 200
    prompt_tokens = [t for t in got["tokens"] if t["role"] == "prompt"]
    assert len(prompt_tokens) == len(model.chat_prompt(messages))


@pytest.mark.parametrize(
    "body, says",
    [
        ({"target": "x"}, "either prompt or messages"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "either prompt or"),
        ({"prompt": "a", "method": "magic"}, "unknown attribution method"),
        ({"prompt": "", "target": "x"}, "empty"),
        ({"prompt": "a", "model": "tiny:nope"}, "not served here"),
        ({"prompt": "a", "colour": "red"}, "colour"),
    ],
)
def test_bad_requests_are_4xx_and_the_server_keeps_serving(server, body, says):
    status, got = post(server, body)
    assert 400 <= status < 500
    assert says in got["error"]["message"]
    assert server.client.models.list().data  # still serving


def test_an_output_guard_needs_a_target(model):
    server = Server(create_app(model, ServeConfig(guard="pii=redact")))
    try:
        status, got = post(server, {"prompt": "Paris is"})
        assert status == 400 and "needs a target" in got["error"]["message"]
        assert (
            post(server, {"prompt": "Paris is", "target": " the", "method": "attention"})[0] == 200
        )
    finally:
        server.stop()
