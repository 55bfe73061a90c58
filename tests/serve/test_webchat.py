"""The web chat in a real browser: Debian's Chromium driven by Playwright, against a real
uvicorn server on 127.0.0.1 with a tiny model (`playwright install` is never needed)."""

from __future__ import annotations

import json
import urllib.request

import pytest
import torch
from live_server import Server, wait_until

from lmforge.cli import main
from lmforge.explain.render import shown
from lmforge.models.model import Model
from lmforge.serve import ServeConfig, create_app
from lmforge.serve.feedback import FeedbackStore


@pytest.fixture(scope="module")
def chat_model(model_factory, tiny_tokenizer):
    model = Model(
        model_factory(len(tiny_tokenizer), max_position_embeddings=4096),
        tiny_tokenizer,
        name="tiny",
    )
    model.eos_ids = frozenset()  # answers run to max_tokens: a long one is there to stop
    return model


@pytest.fixture(scope="module")
def server(chat_model, tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    app = create_app(chat_model, ServeConfig(max_batch=2, max_queue=4))
    app.state.feedback = FeedbackStore(tmp_path_factory.mktemp("webchat") / "serve.db")
    server = Server(app)
    yield server
    server.stop()
    torch.set_num_threads(before)


def post(server, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        server.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_chat_stream_stop_feedback_reload_export(server, browser, tmp_path):
    page = browser.new_page()
    page.set_default_timeout(20_000)
    outside = []  # nothing may be fetched from anywhere but the server
    page.on("request", lambda r: None if r.url.startswith(server.url) else outside.append(r.url))
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator("#model option").all_inner_texts() == ["tiny"]

    # 1. a message streams in: the reply's text grows over several updates
    page.evaluate(
        """() => { window.lengths = [];
        new MutationObserver(() => {
          const t = document.querySelector('.msg.assistant .text');
          if (t) window.lengths.push(t.textContent.length);
        }).observe(document.getElementById('messages'), {subtree: true, childList: true,
                                                         characterData: true}); }"""
    )
    page.click("#system-box summary")
    page.fill("#system", "You are terse.")
    page.fill("#max-tokens", "200")
    page.fill("#prompt", "Hello there")
    page.click("#send")
    page.wait_for_selector(".msg.assistant.done")
    grown = sorted(set(page.evaluate("window.lengths")) - {0})
    assert len(grown) >= 3, grown  # arrived piece by piece, not at once
    first = page.locator(".msg.assistant").nth(0)
    first_text = first.locator(".text").inner_text()
    assert first_text

    # 2. stop a long one (no max_tokens: it would run to the end of the 4096-token context)
    page.fill("#max-tokens", "")
    page.fill("#prompt", "Tell me a long story")
    page.click("#send")
    page.wait_for_function(
        "() => { const m = document.querySelectorAll('.msg.assistant')[1];"
        " return m && m.classList.contains('streaming') && m.textContent.length > 20; }"
    )
    assert page.is_enabled("#stop")
    page.click("#stop")
    page.wait_for_selector(".msg.assistant.done >> nth=1")
    second = page.locator(".msg.assistant").nth(1)
    assert "stopped" in second.locator(".note").inner_text()
    wait_until(lambda: server.scheduler.running == 0)  # the server freed its row
    stopped_text = second.locator(".text").inner_text()

    # 3. thumbs up the first, edit the second
    first.locator(".rate-up").click()
    page.wait_for_selector(".msg.assistant >> nth=0 >> .rate-up.on")
    second.locator(".edit").click()
    second.locator(".editor textarea").fill("Once upon a time, the end.")
    second.locator(".save-edit").click()
    page.wait_for_function(
        "() => document.querySelectorAll('.msg.assistant')[1].querySelector('.text')"
        ".textContent === 'Once upon a time, the end.'"
    )

    # 4. reload: the conversation is listed and comes back with its feedback
    page.reload()
    page.wait_for_selector("body[data-ready='1']")
    assert page.locator(".msg").count() == 0
    page.locator("#conversations button", has_text="Hello there").click()
    page.wait_for_selector(".msg.assistant >> nth=1")
    assert page.locator(".msg").count() == 4
    assert page.input_value("#system") == "You are terse."
    again = page.locator(".msg.assistant")
    assert again.nth(0).locator(".text").inner_text() == first_text
    assert "on" in again.nth(0).locator(".rate-up").get_attribute("class")
    assert again.nth(1).locator(".text").inner_text() == "Once upon a time, the end."
    assert again.nth(1).locator(".note").inner_text() == "stopped, edited"
    assert outside == []
    page.close()

    # 5. the export holds it: the thumbs-up reply (sft) and the edit (dpo and sft)
    db = str(server.app.state.feedback.path)
    sft, dpo = tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl"
    main(["feedback", "export", "--format", "sft", "--out", str(sft), "--db", db])
    main(["feedback", "export", "--format", "dpo", "--out", str(dpo), "--db", db])
    records = [json.loads(line) for line in sft.read_text().splitlines()]
    assert [r["messages"][-1]["content"] for r in records] == [
        first_text,
        "Once upon a time, the end.",
    ]
    assert records[0]["messages"][:2] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello there"},
    ]
    (pair,) = [json.loads(line) for line in dpo.read_text().splitlines()]
    assert pair["chosen"] == "Once upon a time, the end."
    assert pair["rejected"] == stopped_text
    assert pair["prompt"][-1] == {"role": "user", "content": "Tell me a long story"}


def test_profile_joins_the_system_prompt_server_side(server, browser):
    page = browser.new_page()
    page.set_default_timeout(20_000)
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    user = page.evaluate("localStorage.getItem('lmforge-user')")
    page.click("#profile summary")
    page.fill("#profile-facts", "Lives in Lyon\nHas a cat")
    page.fill("#profile-preferences", "Short answers")
    page.click("#profile-save")
    page.wait_for_selector("#profile-status:text('saved')")
    page.close()
    profile = server.app.state.feedback.profile(user)
    assert profile["facts"] == ["Lives in Lyon", "Has a cat"]

    def answer(messages: list[dict], **extra) -> str:
        body = {"messages": messages, "max_tokens": 12, "temperature": 0, **extra}
        return post(server, "/v1/chat/completions", body)["choices"][0]["message"]["content"]

    ask = {"role": "user", "content": "Where do I live?"}
    spelled_out = server.app.state.feedback.profile_prompt(user)
    assert "Lives in Lyon" in spelled_out and "Short answers" in spelled_out
    # with `user`, the answer is the one the profile in the system prompt gives ...
    assert answer([ask], user=user) == answer([{"role": "system", "content": spelled_out}, ask])
    system = {"role": "system", "content": "Be kind."}
    joined = {"role": "system", "content": "Be kind.\n\n" + spelled_out}
    assert answer([system, ask], user=user) == answer([joined, ask])
    # ... and a user without a profile gets the request as sent
    assert answer([ask], user="nobody") == answer([ask])


def test_the_page_sends_the_key_a_locked_server_asks_for(chat_model, browser, tmp_path):
    """With keys, the page sends its key on every request, and what it keeps (conversation,
    rating, profile) is that key's: another key in the same browser sees none of it."""
    from lmforge.serve.auth import hash_key, read_keys

    keys = read_keys(["page-key", "other-key"])
    app = create_app(chat_model, ServeConfig(api_key_hashes=keys, max_batch=2))
    store = app.state.feedback = FeedbackStore(tmp_path / "locked.db")
    locked = Server(app)
    try:
        page = browser.new_page()
        page.set_default_timeout(20_000)
        page.goto(locked.url + "/")
        page.wait_for_selector(".msg.error")  # no key yet: the server says 401, the page shows it
        page.fill("#api-key", "page-key")
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("body[data-ready='1']")
        page.fill("#max-tokens", "4")
        page.fill("#prompt", "Hello")
        page.click("#send")
        page.wait_for_selector(".msg.assistant.done")
        assert page.locator(".msg.assistant .text").first.inner_text()
        page.locator(".msg.assistant .rate-up").first.click()
        page.wait_for_selector(".msg.assistant .rate-up.on")
        page.click("#profile summary")
        page.fill("#profile-facts", "Lives in Lyon")
        page.click("#profile-save")
        page.wait_for_selector("#profile-status:text('saved')")

        user = page.evaluate("localStorage.getItem('lmforge-user')")
        owner = hash_key("page-key")
        (kept,) = store.conversations(user, owner=owner)
        assert [m["rating"] for m in store.conversation(kept["id"], owner=owner)["messages"]] == [
            None,
            "up",
        ]
        assert store.profile(user, owner=owner)["facts"] == ["Lives in Lyon"]
        assert store.conversations(user) == [] and store.profile(user)["facts"] == []

        # another key in the same browser: the page starts afresh and lists nothing
        page.evaluate("document.body.dataset.ready = ''")
        page.fill("#api-key", "other-key")
        page.dispatch_event("#api-key", "change")
        page.wait_for_selector("body[data-ready='1']")
        assert page.locator(".msg").count() == 0
        assert page.locator("#conversations button").count() == 0
        assert page.input_value("#profile-facts") == ""
        page.fill("#prompt", "Hi")
        page.click("#send")
        page.wait_for_selector(".msg.assistant.done")
        assert len(store.conversations(user, owner=hash_key("other-key"))) == 1
        assert len(store.conversations(user, owner=owner)) == 1  # the first key's is untouched
        page.close()
    finally:
        locked.stop()


def test_explain_a_reply_shows_its_heatmap(server, chat_model, browser):
    page = browser.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='1']")
    page.fill("#max-tokens", "4")
    # greedy: a sampled reply of the random model may hold a control character, which
    # /v1/explain rightly refuses as a target
    page.fill("#temperature", "0")
    page.fill("#prompt", "Paris is")
    page.click("#send")
    page.wait_for_selector(".msg.assistant.done")
    reply = page.locator(".msg.assistant").nth(0)
    answer = reply.locator(".text").inner_text()
    reply.locator(".explain").click()
    page.wait_for_selector("#explain-box[open]")
    frame = page.frame_locator("#explain-frame")
    tokens = frame.locator(".heat.on .tok")
    tokens.first.wait_for()
    # the heatmap runs over the chat prompt the model read, then the reply (byte pieces of
    # the tiny model's answer may show as U+FFFD, so only the prompt is compared as text)
    prompt = chat_model.chat_prompt([{"role": "user", "content": "Paris is"}])
    texts = tokens.all_inner_texts()
    assert len(texts) > len(prompt)
    assert "".join(texts[: len(prompt)]) == shown(chat_model.tokenizer.decode(prompt))
    assert answer
    page.click("#explain-close")
    page.wait_for_function("!document.getElementById('explain-box').open")
    page.close()
