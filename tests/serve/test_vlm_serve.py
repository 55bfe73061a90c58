"""A vision-language model served: a tiny random LLaVA behind a real server on 127.0.0.1,
asked with images as OpenAI data URLs by the real `openai` client and by the web chat."""

from __future__ import annotations

import base64
import io
import json
import threading

import openai
import pytest
from live_server import BODY_LIMIT, ServeProcess, Server, attach_png, open_chat, wait_until

import lmforge
from lmforge.errors import InvalidInputError
from lmforge.serve import ServeConfig, create_app


def png(colour: tuple[int, int, int], size=(40, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


RED, BLUE = data_url(png((220, 20, 20))), data_url(png((20, 20, 220)))


def ask(url: str, text: str = "What colour is this?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]  # fmt: skip


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory, tiny_tokenizer, vlm_factory):
    return vlm_factory(tmp_path_factory.mktemp("llava"), tiny_tokenizer)


@pytest.fixture(scope="module")
def vlm(vlm_dir):
    vlm = lmforge.load(str(vlm_dir))
    vlm.eos_ids = frozenset()  # answers run to max_tokens: exact counts, a long one to cancel
    return vlm


@pytest.fixture(scope="module")
def vlm_server(vlm):
    config = ServeConfig(max_body_bytes=BODY_LIMIT, max_queue=8, model_name="vlm")
    server = Server(create_app(vlm, config))
    yield server
    server.stop()


def answer(server, messages, **extra):
    return server.client.chat.completions.create(
        model="vlm",
        messages=messages,
        max_tokens=6,
        temperature=0,
        **extra,
    )


def test_an_image_over_the_api_is_seen(vlm, vlm_server):
    """The served answer is the model's own greedy answer to the same image and question."""
    for url in (RED, BLUE):
        reply = answer(vlm_server, ask(url))
        text = reply.choices[0].message.content
        assert text.strip() == vlm.chat(ask(url), max_tokens=6)
        assert reply.usage.completion_tokens == 6
        inputs = vlm.inputs([ask(url)])
        assert reply.usage.prompt_tokens == inputs["input_ids"].shape[1]  # image tokens counted
    red, blue = (answer(vlm_server, ask(u)).choices[0].message.content for u in (RED, BLUE))
    assert red != blue  # the image changed the answer: the pixels reached the model


def test_streamed_equals_whole_and_text_only_turns_work(vlm_server):
    whole = answer(vlm_server, ask(RED)).choices[0].message.content
    chunks = answer(vlm_server, ask(RED), stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole
    text = answer(vlm_server, [{"role": "user", "content": "Hello"}]).choices[0].message.content
    assert isinstance(text, str) and text
    done = vlm_server.client.completions.create(
        model="vlm", prompt="Once upon", max_tokens=3, temperature=0
    )
    assert done.usage.completion_tokens == 3


def test_concurrent_requests_queue_and_match_alone(vlm_server):
    alone = {u: answer(vlm_server, ask(u)).choices[0].message.content for u in (RED, BLUE)}
    got: dict[str, list[str]] = {RED: [], BLUE: []}

    def one(url):
        got[url].append(answer(vlm_server, ask(url)).choices[0].message.content)

    threads = [threading.Thread(target=one, args=(u,)) for u in (RED, BLUE) * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert got == {u: [alone[u]] * 3 for u in (RED, BLUE)}


def test_a_dropped_stream_is_cancelled(vlm_server):
    stream = vlm_server.client.chat.completions.create(
        model="vlm", messages=ask(RED), max_tokens=150, stream=True
    )
    next(iter(stream))
    stream.close()
    wait_until(lambda: vlm_server.scheduler.running == 0 and vlm_server.scheduler.waiting == 0)
    assert vlm_server.scheduler.cancelled >= 1


def test_bad_requests_are_400_and_the_server_goes_on(vlm_server):
    cases = [
        ({"messages": ask("https://example.com/cat.png")}, "invalid_image_url"),
        ({"messages": ask(data_url(b"not an image"))}, "invalid_image"),
        ({"messages": ask(data_url(png((1, 2, 3))[:50]))}, "invalid_image"),
    ]
    for body, code in cases:
        status, out = vlm_server.raw("POST", "/v1/chat/completions", json.dumps(body).encode())
        assert status == 400 and out["error"]["code"] == code, out
    status, out = vlm_server.raw(
        "POST",
        "/v1/completions",
        json.dumps({"prompt": "Hi", "echo": True, "logprobs": 1, "max_tokens": 0}).encode(),
    )
    assert status == 400 and "chat only" in out["error"]["message"]
    status, out = vlm_server.raw(
        "POST", "/v1/explain", json.dumps({"prompt": "Hi", "target": " there"}).encode()
    )
    assert status == 400 and "vision-language" in out["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="context"):
        answer(vlm_server, ask(RED, "word " * 400))
    assert answer(vlm_server, ask(BLUE)).choices[0].message.content  # still serving


def test_lmforge_serve_a_vlm_folder(vlm_dir, vlm, lmforge_home):
    """`lmforge serve VLM_DIR` in its own process answers an image until Ctrl-C."""
    served = ServeProcess([str(vlm_dir)], lmforge_home)
    try:
        reply = served.client.chat.completions.create(
            model=served.name, messages=ask(BLUE), max_tokens=4, temperature=0
        )
        assert reply.choices[0].message.content.strip() == vlm.chat(ask(BLUE), max_tokens=4)
    finally:
        code, log = served.stop()
    assert code == 0, log


def test_adapters_are_refused_for_a_vlm(vlm):
    with pytest.raises(InvalidInputError, match="merge the adapter"):
        create_app(vlm, adapters=["some-adapter"])


def test_the_web_chat_sends_an_image_to_a_vlm(vlm_server, browser):
    page = open_chat(browser, vlm_server.url)
    attach_png(page, "red.png", png((220, 20, 20)))
    page.fill("#max-tokens", "6")
    page.fill("#temperature", "0")
    page.fill("#prompt", "What colour is this?")
    page.click("#send")
    page.wait_for_selector(".msg.assistant.done")
    assert page.locator(".msg.error").count() == 0
    assert page.locator(".msg.user img.thumb").count() == 1
    shown = page.locator(".msg.assistant .text").first.inner_text()
    served = answer(vlm_server, ask(RED)).choices[0].message.content
    assert shown.strip() == served.strip()
    page.close()


def test_the_queue_is_bounded(vlm):
    from lmforge.engine.params import SamplingParams
    from lmforge.engine.scheduler import QueueFullError
    from lmforge.serve.images import text_prompt
    from lmforge.vision.scheduler import VisionScheduler

    scheduler = VisionScheduler(vlm, max_queue=1)  # never started: nothing is answered
    prompt = text_prompt(vlm.encode("Hi"))
    scheduler.submit_many([(prompt, SamplingParams(max_tokens=2))] * 2)  # its row + 1 queued
    with pytest.raises(QueueFullError):
        scheduler.submit_many([(prompt, SamplingParams(max_tokens=2))])
    assert scheduler.waiting == 2
    scheduler.close()
    assert scheduler.waiting == 0
