"""Per-request LoRA adapters on a real server, through the official `openai` client."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import torch
from live_server import Server

from lmforge.models.model import Model
from lmforge.serve import ServeConfig, create_app
from lmforge.store import Store

LORA = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])


def save_adapter(store, make, vocab, name, seed, parent="tiny", **extra):
    """A random (non-zero) LoRA on the tiny base, saved as an adapter artifact."""
    from peft import LoraConfig, get_peft_model

    base = make(vocab)  # seeds itself
    torch.manual_seed(seed)
    config = LoraConfig(init_lora_weights=False, **{**LORA, **extra})
    model = get_peft_model(base, config)
    with store.create(name, kind="adapter", step="tune", parent=parent) as draft:
        model.save_pretrained(draft.path / "adapter", safe_serialization=True)


@pytest.fixture(scope="module")
def served(model_factory, tiny_tokenizer, tmp_path_factory):
    """A server of "tiny" with adapters a and b loaded at start; c, d (DoRA) and e (of
    another base) only in the store."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMFORGE_HOME", str(tmp_path_factory.mktemp("home")))
        store, vocab = Store(), len(tiny_tokenizer)
        for seed, name in enumerate("abc", start=1):
            save_adapter(store, model_factory, vocab, name, seed)
        save_adapter(store, model_factory, vocab, "d", 4, use_dora=True)
        save_adapter(store, model_factory, vocab, "e", 5, parent="other")
        model = Model(model_factory(vocab), tiny_tokenizer, name="tiny")
        model.eos_ids = frozenset()  # every request runs to max_tokens
        server = Server(create_app(model, ServeConfig(), adapters=["a", "b"]))
        yield server
        server.stop()


def stream_text(server, model: str, max_tokens: int = 12) -> str:
    chunks = server.client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hello, how are you today?"}],
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
    )
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_models_lists_base_and_loaded_adapters(served):
    assert [m.id for m in served.client.models.list()] == ["tiny", "tiny:a", "tiny:b"]
    assert served.client.models.retrieve("tiny:a").id == "tiny:a"


def test_concurrent_mixed_adapters_equal_each_alone(served):
    names = ["tiny", "tiny:a", "tiny:b"] * 3
    alone = {name: stream_text(served, name, max_tokens=24) for name in set(names)}
    mixed, done = [0], threading.Event()

    def watch() -> None:  # the most distinct adapters (None: the base) seen in one batch
        while not done.is_set():
            rows = list(served.scheduler._running)
            mixed[0] = max(mixed[0], len({id(r.request.adapter) for r in rows}))
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(len(names)) as pool:
        together = list(pool.map(lambda n: stream_text(served, n, max_tokens=24), names))
    done.set()
    watcher.join()
    assert together == [alone[n] for n in names]
    assert mixed[0] > 1  # rows of different adapters really shared a batch
    assert len(set(alone.values())) == 3  # each adapter changes the answer


def test_completions_name_the_adapter(served):
    out = served.client.completions.create(
        model="tiny:b", prompt="The quick", max_tokens=4, temperature=0
    )
    assert out.model == "tiny:b" and out.usage.completion_tokens == 4


@pytest.mark.parametrize("model", ["tiny:zzz", "other:a", "tiny:", "a"])
def test_unknown_model_or_adapter_is_not_found(served, model):
    with pytest.raises(openai.NotFoundError) as err:
        stream_text(served, model)
    assert err.value.body["code"] == "model_not_found"


def test_admin_load_and_unload(served):
    with pytest.raises(openai.NotFoundError):
        stream_text(served, "tiny:c")
    status, body = served.raw("POST", "/admin/adapters", b'{"name": "c"}')
    assert status == 200 and body["model"] == "tiny:c"
    assert "tiny:c" in [m.id for m in served.client.models.list()]
    text = stream_text(served, "tiny:c")
    assert text and text != stream_text(served, "tiny")
    assert served.raw("DELETE", "/admin/adapters/c")[0] == 200
    with pytest.raises(openai.NotFoundError):
        stream_text(served, "tiny:c")
    assert served.raw("DELETE", "/admin/adapters/c")[0] == 404
    assert served.raw("POST", "/admin/adapters", b'{"name": "nope"}')[0] == 404


def test_hot_swap_serves_a_new_adapter_under_the_old_name(served):
    assert served.raw("POST", "/admin/adapters", b'{"name": "c"}')[0] == 200
    want_c = stream_text(served, "tiny:c")
    status, body = served.raw("POST", "/admin/adapters", b'{"name": "a", "as": "c"}')
    assert status == 200 and body["model"] == "tiny:c"
    assert stream_text(served, "tiny:c") == stream_text(served, "tiny:a") != want_c
    assert served.raw("POST", "/admin/adapters", b'{"name": "a", "as": "../x"}')[0] == 400
    assert served.raw("DELETE", "/admin/adapters/c")[0] == 200


def test_a_request_in_flight_finishes_on_an_unloaded_adapter(served):
    assert served.raw("POST", "/admin/adapters", b'{"name": "c"}')[0] == 200
    whole = stream_text(served, "tiny:c", max_tokens=40)
    chunks = served.client.completions.create(
        model="tiny:c", prompt="hello", max_tokens=40, stream=True
    )
    stream = iter(chunks)
    first = next(stream)
    assert served.raw("DELETE", "/admin/adapters/c")[0] == 200
    rest = list(stream)
    assert [c.choices[0].finish_reason for c in rest if c.choices][-1] == "length"
    assert first.model == "tiny:c" and whole  # it ran to the end with the adapter


@pytest.mark.parametrize(
    "name", ["../a", "a/../../b", "/etc/passwd", ".hidden", "a b", "", "x" * 101]
)
def test_path_like_names_are_refused(served, name):
    body = json.dumps({"name": name}).encode()
    status, answer = served.raw("POST", "/admin/adapters", body)
    assert status == 400, answer


def test_adapters_that_do_not_fit_are_refused(served):
    status, body = served.raw("POST", "/admin/adapters", b'{"name": "d"}')  # DoRA
    assert status == 400 and "dora" in body["error"]["message"]
    status, body = served.raw("POST", "/admin/adapters", b'{"name": "e"}')  # another base
    assert status == 400 and "other" in body["error"]["message"]
    assert served.raw("DELETE", "/admin/adapters/..")[0] in (400, 404)
