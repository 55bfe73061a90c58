"""The server under abuse: malformed requests of many kinds, a storm of them among valid
ones, requests from other web pages, and one request that poisons its batch. Bad input gets
a 4xx OpenAI-style error, the keep-alive connection stays usable, and no request changes
another's answer."""

from __future__ import annotations

import http.client
import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from live_server import BODY_LIMIT, Server

from lmforge.models.model import Model
from lmforge.serve import ServeConfig, create_app

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
JSON = {"Content-Type": "application/json"}


def chat(content="Hi", **extra) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": content}], **extra}).encode()


def completion(prompt="Hi", **extra) -> bytes:
    return json.dumps({"prompt": prompt, "max_tokens": 4, **extra}).encode()


# (name, method, path, body, extra headers, the status wanted): every kind of bad input
# the storm throws; each must get its 4xx and an OpenAI error body.
MALFORMED = [
    ("invalid json", "POST", CHAT, b"{", {}, 400),
    ("empty body", "POST", CHAT, b"", {}, 400),
    ("a json array", "POST", CHAT, b"[]", {}, 400),
    ("a json string", "POST", CHAT, b'"x"', {}, 400),
    ("nested 30000 deep", "POST", CHAT, b"[" * 30_000 + b"]" * 30_000, {}, 400),
    ("an object nested 40 deep", "POST", CHAT, b'{"a":' * 40 + b"1" + b"}" * 40, {}, 400),
    (
        "a lone surrogate",
        "POST",
        CHAT,
        b'{"messages":[{"role":"user","content":"\\ud800"}]}',
        {},
        400,
    ),
    ("bytes that are not utf-8", "POST", CHAT, b'{"messages":"\xff\xfe"}', {}, 400),
    ("a surrogate in a key", "POST", CHAT, b'{"\\udfff":1}', {}, 400),
    ("no messages", "POST", CHAT, b'{"model":"tiny"}', {}, 400),
    ("empty messages", "POST", CHAT, b'{"messages":[]}', {}, 400),
    ("messages as a string", "POST", CHAT, b'{"messages":"hello"}', {}, 400),
    ("an unknown role", "POST", CHAT, chat().replace(b'"user"', b'"wizard"'), {}, 400),
    ("content as a number", "POST", CHAT, b'{"messages":[{"role":"user","content":1}]}', {}, 400),
    ("negative max_tokens", "POST", CHAT, chat(max_tokens=-1), {}, 400),
    ("a huge max_tokens", "POST", CHAT, chat(max_tokens=10**23), {}, 400),
    ("max_tokens as a string", "POST", CHAT, chat(max_tokens="10"), {}, 400),
    ("temperature out of range", "POST", CHAT, chat(temperature=99), {}, 400),
    ("temperature NaN", "POST", CHAT, chat()[:-1] + b', "temperature": NaN}', {}, 400),
    ("top_p Infinity", "POST", CHAT, chat()[:-1] + b', "top_p": Infinity}', {}, 400),
    ("top_p zero", "POST", CHAT, chat(top_p=0), {}, 400),
    ("n 1000", "POST", CHAT, chat(n=1000), {}, 400),
    ("a seed past 2**64", "POST", COMPLETIONS, completion(seed=2**64), {}, 400),
    ("a negative seed", "POST", COMPLETIONS, completion(seed=-1), {}, 400),
    ("a huge top_k", "POST", COMPLETIONS, completion(top_k=10**30), {}, 400),
    ("100 stop strings", "POST", CHAT, chat(stop=["x"] * 100), {}, 400),
    ("an unknown field", "POST", CHAT, chat(wizardry=True), {}, 400),
    ("stream as a string", "POST", CHAT, chat(stream="yes"), {}, 400),
    ("an unknown model", "POST", CHAT, chat(model="gpt-17"), {}, 404),
    ("an unknown adapter", "POST", CHAT, chat(model="tiny:nope"), {}, 404),
    ("json as text/plain", "POST", CHAT, chat(), {"Content-Type": "text/plain"}, 415),
    ("a form", "POST", CHAT, b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ("no content type", "POST", CHAT, chat(), {"Content-Type": ""}, 415),
    ("a body over the limit", "POST", CHAT, chat("x" * (BODY_LIMIT + 10)), {}, 413),
    ("a prompt over the context", "POST", COMPLETIONS, completion("hi " * 1100), {}, 400),
    ("token ids past the vocabulary", "POST", COMPLETIONS, completion([10**9]), {}, 400),
    ("token ids past 64 bits", "POST", COMPLETIONS, completion([10**30]), {}, 400),
    ("negative token ids", "POST", COMPLETIONS, completion([-1]), {}, 400),
    ("an empty prompt list", "POST", COMPLETIONS, completion([]), {}, 400),
    ("logprobs 100", "POST", COMPLETIONS, completion(logprobs=100), {}, 400),
    ("json_schema output", "POST", CHAT, chat(response_format={"type": "json_schema"}), {}, 400),
    ("top_logprobs alone", "POST", CHAT, chat(top_logprobs=2), {}, 400),
    ("an unknown route", "POST", "/v1/wizard", b"{}", {}, 404),
    ("a wrong method", "PUT", CHAT, chat(), {}, 405),
    (
        "feedback with an unknown field",
        "POST",
        "/ui/messages/1/feedback",
        b'{"message":1}',
        {},
        400,
    ),
    ("feedback named self", "POST", "/ui/messages/1/feedback", b'{"self":1}', {}, 400),
    ("feedback with no body", "POST", "/ui/messages/1/feedback", b"", {}, 400),
    ("feedback that is not json", "POST", "/ui/messages/1/feedback", b"{", {}, 400),
    (
        "a message id of 10**23",
        "POST",
        f"/ui/messages/{10**23}/feedback",
        b'{"rating":"up"}',
        {},
        400,
    ),
    (
        "a profile nested deep",
        "PUT",
        "/ui/profile",
        b'{"user":' + b"[" * 5000 + b"]" * 5000 + b"}",
        {},
        400,
    ),
    (
        "a conversation with a surrogate",
        "POST",
        "/ui/conversations",
        b'{"user":"\\ud800"}',
        {},
        400,
    ),
    ("a conversation without user", "POST", "/ui/conversations", b"{}", {}, 400),
    (
        "an explain with a huge steps",
        "POST",
        "/v1/explain",
        b'{"prompt":"a","steps":1000000}',
        {},
        400,
    ),
    ("an adapter load without name", "POST", "/admin/adapters", b"{}", {}, 400),
    ("an adapter outside the store", "POST", "/admin/adapters", b'{"name":"../../etc"}', {}, 400),
]


@pytest.fixture(scope="module")
def int8_model(model_factory, tiny_tokenizer):
    """At int8 a row's tokens are the same bits alone, in any batch and from the prompt cache."""
    model = Model(
        model_factory(len(tiny_tokenizer), max_position_embeddings=1024),
        tiny_tokenizer,
        dtype="int8",
        name="tiny",
    )
    model.eos_ids = frozenset()
    return model


@pytest.fixture(scope="module")
def server(int8_model, tmp_path_factory):
    app = create_app(int8_model, ServeConfig(max_body_bytes=BODY_LIMIT))
    from lmforge.serve.feedback import FeedbackStore

    app.state.feedback = FeedbackStore(tmp_path_factory.mktemp("abuse") / "serve.db")
    server = Server(app)
    yield server
    server.stop()


def send(connection: http.client.HTTPConnection, method, path, body=b"", headers=None):
    """One request on a kept-alive connection: (status, parsed JSON body)."""
    headers = {**JSON, **(headers or {})}
    headers = {k: v for k, v in headers.items() if v}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, json.loads(response.read() or b"null")


@pytest.mark.parametrize("case", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_bad_input_gets_its_4xx_and_the_connection_stays_usable(server, case):
    name, method, path, body, headers, status = case
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    got, answer = send(connection, method, path, body, headers)
    assert got == status, (name, answer)
    assert set(answer["error"]) >= {"message", "type", "param", "code"}
    assert answer["error"]["message"]
    # the same connection then serves a valid request (a 5xx would have closed it)
    got, answer = send(connection, "POST", COMPLETIONS, completion("Hello", seed=1))
    assert got == 200 and answer["choices"][0]["text"]
    connection.close()


def test_a_poisoned_request_leaves_8_streams_as_they_are_alone(server):
    """The issue's reproduction: a seed past 2**64 beside 8 streams once failed all 8."""
    prompts = [f"Story number {k} begins" for k in range(8)]

    def stream(prompt: str) -> str:
        text = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            body = {"prompt": prompt, "max_tokens": 24, "stream": True, "temperature": 0}
            with client.stream("POST", COMPLETIONS, json=body) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        event = json.loads(line[6:])
                        assert "error" not in event, event
                        text.append(event["choices"][0]["text"])
        return "".join(text)

    alone = [stream(p) for p in prompts]
    with ThreadPoolExecutor(9) as pool:
        streams = [pool.submit(stream, p) for p in prompts]
        poisoned = httpx.post(
            server.url + COMPLETIONS,
            json={"prompt": "x", "max_tokens": 4, "seed": 18446744073709551616},
            timeout=30,
        )
        together = [s.result() for s in streams]
    assert poisoned.status_code == 400 and poisoned.json()["error"]["param"] == "seed"
    assert together == alone


def test_a_storm_of_mixed_requests(server):
    """300 requests at concurrency 32, a fifth of them malformed (every kind in MALFORMED):
    no 5xx, no connection reset, every malformed one its 4xx, and every valid greedy answer
    the same as in a quiet run (from the prompt cache or not, in whatever batch)."""
    rng = random.Random(16)
    prompts = [f"Item {k}: the quick brown fox" for k in range(12)]
    quiet = {}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for p in prompts:
            r = client.post(COMPLETIONS, json={"prompt": p, "max_tokens": 8, "temperature": 0})
            quiet[p] = r.json()["choices"][0]["text"]
    jobs = []
    for k in range(300):
        if k % 5 == 0:
            jobs.append(("bad", MALFORMED[(k // 5) % len(MALFORMED)]))
        else:
            jobs.append(("good", rng.choice(prompts)))
    rng.shuffle(jobs)
    local = threading.local()
    problems: list[str] = []

    def run(job) -> None:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        kind, what = job
        try:
            if kind == "bad":
                name, method, path, body, headers, status = what
                got, answer = send(local.connection, method, path, body, headers)
                if got != status:
                    problems.append(f"{name}: {got} {answer}")
            else:
                body = json.dumps({"prompt": what, "max_tokens": 8, "temperature": 0}).encode()
                got, answer = send(local.connection, "POST", COMPLETIONS, body)
                if got != 200 or answer["choices"][0]["text"] != quiet[what]:
                    problems.append(f"valid {what!r}: {got} {answer}")
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            problems.append(f"{kind} {what[0] if kind == 'bad' else what!r}: {e!r}")
            local.connection.close()
            del local.connection

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(run, jobs))
    assert problems == []
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_requests_from_other_sites_are_refused(server):
    """DNS rebinding (a Host that is not this server's) and cross-site writes (another page's
    Origin, or JSON disguised as text/plain) never reach a keyless local server."""
    body = chat(max_tokens=2)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    status, answer = send(connection, "POST", CHAT, body, {"Host": "evil.example:8000"})
    assert status == 400 and answer["error"]["code"] == "host_not_allowed"
    status, answer = send(connection, "GET", "/v1/models", b"", {"Host": "attacker.test"})
    assert status == 400
    status, answer = send(connection, "POST", CHAT, body, {"Origin": "https://evil.example"})
    assert status == 403 and answer["error"]["code"] == "cross_origin"
    status, answer = send(connection, "POST", CHAT, body, {"Content-Type": "text/plain"})
    assert status == 415
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "localhost"):
        status, _ = send(connection, "POST", CHAT, body, {"Host": host})
        assert status == 200, host
    origin = f"http://127.0.0.1:{server.port}"  # the web chat's own page
    status, _ = send(connection, "POST", CHAT, body, {"Origin": origin})
    assert status == 200


def test_an_allowed_host_and_origin_get_through(int8_model):
    config = ServeConfig(allowed_hosts=("chat.internal",), cors_origins=("https://app.internal",))
    server = Server(create_app(int8_model, config))
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        headers = {"Host": "chat.internal", "Origin": "https://app.internal"}
        status, _ = send(connection, "POST", CHAT, chat(max_tokens=2), headers)
        assert status == 200
        status, _ = send(connection, "POST", CHAT, chat(max_tokens=2), {"Host": "other.internal"})
        assert status == 400
    finally:
        server.stop()


def test_a_chat_without_max_tokens_is_capped(int8_model):
    """No max_tokens: the answer ends at the server's cap, not at the end of the context."""
    server = Server(create_app(int8_model, ServeConfig(max_tokens_limit=12)))
    try:
        answer = server.client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Hi"}]
        )
        assert answer.usage.completion_tokens == 12 and answer.choices[0].finish_reason == "length"
        with pytest.raises(Exception, match="more than this server allows"):
            server.client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=13
            )
    finally:
        server.stop()
    assert ServeConfig().max_tokens_limit == 2048  # the default cap, as --help says
    assert ServeConfig(max_tokens_limit=0).max_tokens_limit is None  # 0: up to the context


def test_the_openapi_document_has_the_real_bodies_and_statuses(server):
    doc = httpx.get(server.url + "/openapi.json").json()
    for path in (CHAT, COMPLETIONS):
        operation = doc["paths"][path]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert "seed" in schema["properties"] and schema["additionalProperties"] is False
        assert {"400", "404", "413", "415", "429"} <= set(operation["responses"])
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (method, path)
