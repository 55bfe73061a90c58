"""Images over the API and in the web chat: a text-only model cannot see (400), unless the
server reads images as text (--image-ocr); only data URLs. A VLM served: test_vlm_serve.py."""

from __future__ import annotations

import base64
import io
import json

import openai
import pytest
from live_server import BODY_LIMIT, Server, attach_png, open_chat

from lmforge.serve import ServeConfig, create_app


def png(text: str = "", size=(160, 60)) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", size, "white")
    if text:
        ImageDraw.Draw(img).text((10, 15), text, fill="black", font=ImageFont.load_default(size=24))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def ask(url: str, text: str = "What does it say?") -> list[dict]:
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]  # fmt: skip


@pytest.fixture(scope="module")
def ocr_server(model):
    server = Server(create_app(model, ServeConfig(max_body_bytes=BODY_LIMIT, image_ocr=True)))
    yield server
    server.stop()


def test_a_text_model_cannot_see(server):
    with pytest.raises(openai.BadRequestError) as err:
        server.client.chat.completions.create(
            model="tiny", messages=ask(data_url(png())), max_tokens=2
        )
    body = err.value.body
    assert body["code"] == "model_cannot_see" and "cannot see images" in body["message"]
    assert "--image-ocr" in body["message"]
    # text parts alone are fine, and the server goes on serving
    reply = server.client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        max_tokens=2,
    )
    assert reply.choices[0].message.content is not None


def test_web_urls_are_never_fetched(server, ocr_server):
    for s in (server, ocr_server):
        status, body = s.raw(
            "POST", "/v1/chat/completions",
            json.dumps({"messages": ask("https://example.com/a.png"), "max_tokens": 2}).encode(),
        )  # fmt: skip
        assert status == 400 and body["error"]["code"] == "invalid_image_url"
        assert "never fetches" in body["error"]["message"]


def test_malformed_image_parts_are_400(server):
    bad = [
        [{"role": "user", "content": [{"type": "image_url", "image_url": "data:x"}]}],
        [{"role": "user", "content": [{"type": "image", "image": "a.png"}]}],
    ]
    for messages in bad:
        status, body = server.raw(
            "POST", "/v1/chat/completions", json.dumps({"messages": messages}).encode()
        )
        assert status == 400 and body["error"]["param"].startswith("messages.0.content")


def test_ocr_reads_the_image_for_a_text_model(ocr_server):
    reply = ocr_server.client.chat.completions.create(
        model="tiny", messages=ask(data_url(png("TOTAL 6.75"))), max_tokens=3
    )
    assert reply.choices[0].message.content is not None
    assert reply.usage.prompt_tokens > 20  # the OCR text and description went into the prompt


def test_ocr_bad_images_are_400(ocr_server):
    cases = {
        "not an image": data_url(b"hello world"),
        "truncated": data_url(png("x")[:60]),
        "not base64": "data:image/png;base64,@@@",
        "not an image type": data_url(b"hello", "text/plain"),
    }
    for why, url in cases.items():
        with pytest.raises(openai.BadRequestError) as err:
            ocr_server.client.chat.completions.create(model="tiny", messages=ask(url), max_tokens=2)
        assert err.value.body["code"] == "invalid_image", why
    assert ocr_server.client.models.list().data  # still serving


def test_webchat_attaches_an_image(server, browser):
    page = open_chat(browser, server.url)
    attach_png(page, "note.png", png("hi"))
    page.fill("#prompt", "What does it say?")
    page.click("#send")
    error = page.wait_for_selector(".msg.error")
    assert "cannot see images" in error.inner_text()
    assert page.locator(".msg.user img.thumb").count() == 1  # the sent image is shown
    assert page.is_hidden("#attachment")  # cleared once sent
    # the conversation goes on in text
    page.fill("#max-tokens", "3")
    page.fill("#prompt", "Hello")
    page.click("#send")
    page.wait_for_selector(".msg.assistant.done >> nth=1")
    page.close()
