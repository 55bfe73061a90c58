"""API keys, the per-key rate limit, the max_tokens cap, body limits and CORS, end to end:
a real server on 127.0.0.1 and the official `openai` client."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

import openai
import pytest
from live_server import BODY_LIMIT, Server

from lmforge.errors import InvalidInputError
from lmforge.serve import ServeConfig, create_app
from lmforge.serve.auth import TokenBucket, hash_key, read_keys

KEYS = ["sk-alpha-4f9d2c", "sk-beta-8e1a7b"]
ORIGIN = "http://good.example"
MESSAGES = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(scope="module")
def locked(model):
    config = ServeConfig(
        api_key_hashes=read_keys(KEYS), rate_limit=3, cors_origins=(ORIGIN,), embeddings=False
    )
    server = Server(create_app(model, config))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def capped(model):
    server = Server(create_app(model, ServeConfig(max_tokens_limit=8, max_body_bytes=BODY_LIMIT)))
    yield server
    server.stop()


def client(server: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def request(server: Server, method: str, path: str, body=None, headers=None):
    """(status, headers, JSON body or None) of a plain HTTP request."""
    req = urllib.request.Request(server.url + path, body, headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            status, head, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        status, head, raw = e.code, e.headers, e.read()
    try:
        return status, head, json.loads(raw)
    except ValueError:
        return status, head, None


def test_no_key_or_a_wrong_key_is_refused_and_the_right_one_works(locked):
    status, head, body = request(locked, "GET", "/v1/models")
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert head["WWW-Authenticate"] == "Bearer"
    no_key = openai.OpenAI(
        base_url=locked.url + "/v1",
        api_key="unused",
        max_retries=0,
        default_headers={"Authorization": "Basic dXNlcjpwYXNz"},  # no Bearer key at all
    )
    for c in (no_key, client(locked, "sk-wrong"), client(locked, KEYS[0] + "x")):
        with pytest.raises(openai.AuthenticationError) as raised:
            c.models.list()
        assert raised.value.body["code"] == "invalid_api_key"
        assert KEYS[0] not in raised.value.body["message"]
    status, _, body = request(locked, "POST", "/ui/conversations", b"{}")  # the chat's routes too
    assert status == 401
    good = client(locked, KEYS[0])
    assert [m.id for m in good.models.list().data] == ["tiny"]
    reply = good.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=3)
    assert reply.usage.completion_tokens == 3
    # the page, health and metrics stay open
    assert request(locked, "GET", "/health")[0] == 200
    assert request(locked, "GET", "/metrics")[0] == 200
    with urllib.request.urlopen(locked.url + "/", timeout=30) as page:
        assert page.status == 200


def test_keys_are_kept_only_as_hashes(locked):
    app = locked.app
    config = app.state.config
    assert set(config.api_key_hashes) == {hash_key(k) for k in KEYS}
    seen = [repr(config), repr(app.state._state), repr(app.user_middleware)]
    layer = app.middleware_stack
    while layer is not None:  # every ASGI layer the app built, down to the router
        seen.append(repr(vars(layer)))
        layer = getattr(layer, "app", None)
    for key in KEYS:
        assert all(key not in text for text in seen)


def test_rate_limit_per_key_and_the_others_go_on(locked):
    limited = client(locked, KEYS[1])
    for _ in range(3):
        limited.models.retrieve("tiny")
    with pytest.raises(openai.RateLimitError) as raised:
        limited.models.list()
    assert raised.value.body["code"] == "rate_limit_exceeded"
    assert int(raised.value.response.headers["Retry-After"]) >= 1
    assert client(locked, KEYS[0]).models.retrieve("tiny").id == "tiny"  # another key: served
    assert request(locked, "GET", "/health")[0] == 200


def test_token_bucket_refills_at_its_rate():
    now = [0.0]
    bucket = TokenBucket(60, clock=lambda: now[0])  # one a second, bursts of 60
    assert all(bucket.take("a") == 0.0 for _ in range(60))
    assert bucket.take("a") == pytest.approx(1.0)
    assert bucket.take("b") == 0.0  # keys count apart
    now[0] = 2.5
    assert bucket.take("a") == 0.0 and bucket.take("a") == 0.0
    assert bucket.take("a") == pytest.approx(0.5)


def test_cors_preflight_answers_the_configured_origin_only(locked, capped):
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    status, head, _ = request(
        locked, "OPTIONS", "/v1/chat/completions", headers={"Origin": ORIGIN, **asked}
    )
    assert status == 200 and head["Access-Control-Allow-Origin"] == ORIGIN  # no key needed
    status, head, _ = request(
        locked,
        "OPTIONS",
        "/v1/chat/completions",
        headers={"Origin": "http://evil.example", **asked},
    )
    assert status == 400 and "Access-Control-Allow-Origin" not in head
    # a refused key still carries the header, so the page can read the 401
    _, head, _ = request(locked, "GET", "/v1/models", headers={"Origin": ORIGIN})
    assert head["Access-Control-Allow-Origin"] == ORIGIN
    # no origins configured: no CORS headers at all
    _, head, _ = request(capped, "GET", "/v1/models", headers={"Origin": ORIGIN})
    assert "Access-Control-Allow-Origin" not in head


def test_max_tokens_cap(capped):
    c = capped.client
    with pytest.raises(openai.BadRequestError) as raised:
        c.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=9)
    assert raised.value.body["param"] == "max_tokens"
    with pytest.raises(openai.BadRequestError):
        c.completions.create(model="tiny", prompt="Hi", max_tokens=100)
    assert c.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8)
    # an absent max_tokens takes the cap (the model here never stops early)
    chat = c.chat.completions.create(model="tiny", messages=MESSAGES)
    assert chat.usage.completion_tokens == 8
    assert c.completions.create(model="tiny", prompt="Hi").usage.completion_tokens == 8


def test_body_limit_on_every_post_route(capped):
    big = json.dumps({"user": "u", "title": "x" * BODY_LIMIT}).encode()
    for method, path in [
        ("POST", "/ui/conversations"),
        ("PUT", "/ui/profile"),
        ("POST", "/ui/messages/1/feedback"),
        ("POST", "/v1/completions"),
    ]:
        status, _, body = request(capped, method, path, big, {"Content-Type": "application/json"})
        assert (status, body["error"]["code"]) == (413, "body_too_large"), (path, body)
    # a chunked body (no Content-Length) is counted as it is read
    for path in ("/ui/conversations", "/v1/chat/completions"):
        connection = http.client.HTTPConnection("127.0.0.1", capped.port, timeout=30)
        chunks = (b"x" * 4096 for _ in range(2 * BODY_LIMIT // 4096))
        connection.request(
            "POST", path, chunks, {"Content-Type": "application/json"}, encode_chunked=True
        )
        response = connection.getresponse()
        assert response.status == 413, path
        assert json.loads(response.read())["error"]["code"] == "body_too_large"
        connection.close()
    assert capped.client.models.list().data[0].id == "tiny"  # and it goes on


def test_keys_file_and_config_checks(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# ours\n{KEYS[0]}\n\nsha256:{hash_key(KEYS[1]).upper()}\n")
    assert read_keys(["extra"], [keys]) == (hash_key("extra"), *(hash_key(k) for k in KEYS))
    with pytest.raises(InvalidInputError):
        ServeConfig(api_key_hashes=("sk-plain-key",))  # a key where a digest belongs
    with pytest.raises(InvalidInputError):
        ServeConfig(rate_limit=10)  # counted per key, and there is none
    with pytest.raises(InvalidInputError):
        ServeConfig(max_tokens_limit=-1)  # 0 is "up to the context"
    with pytest.raises(InvalidInputError):
        read_keys([" "])


@pytest.mark.parametrize("with_client_keys", [True, False])
def test_an_admin_key_alone_manages_adapters(model, with_client_keys):
    config = ServeConfig(
        api_key_hashes=read_keys(KEYS) if with_client_keys else (),
        admin_key_hashes=read_keys(["sk-admin-77"]),
    )
    server = Server(create_app(model, config))
    body = json.dumps({"name": "no-such-adapter"}).encode()

    def admin(key: str | None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        status, _, out = request(server, "POST", "/admin/adapters", body, headers)
        return status, out["error"]

    try:
        assert admin(None)[0] == 401
        assert admin("sk-wrong")[0] == 401
        status, error = admin(KEYS[0])
        if with_client_keys:  # a client's key is known, but may not manage adapters
            assert status == 403 and error["code"] == "permission_denied"
        else:
            assert status == 401
        status, error = admin("sk-admin-77")  # past the key check: the adapter is unknown
        assert status == 404 and error["code"] != "invalid_api_key"
        # the admin key also works as a client key; without client keys, the API is open
        assert client(server, "sk-admin-77").models.list().data
        if with_client_keys:
            with pytest.raises(openai.AuthenticationError):
                client(server, "sk-wrong").models.list()
        else:
            assert client(server, "anything").models.list().data
    finally:
        server.stop()
