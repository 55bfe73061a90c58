"""`GET /metrics`: Prometheus text that counts requests, their tokens and their timings."""

from __future__ import annotations

import urllib.request

import openai
import pytest
from live_server import Server

from lmforge.serve import create_app

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


def scrape(server: Server) -> dict[str, float]:
    """The samples of /metrics: {'name{labels}': value}."""
    with urllib.request.urlopen(server.url + "/metrics", timeout=30) as response:
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_count_a_request_and_its_tokens(model):
    server = Server(create_app(model))  # its own app: counts start at zero
    try:
        before = scrape(server)
        assert before["lmforge_generated_tokens_total"] == 0
        assert before["lmforge_queue_depth"] == 0 and before["lmforge_running_requests"] == 0
        server.client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=5, temperature=0
        )
        with pytest.raises(openai.NotFoundError):
            server.client.chat.completions.create(model="nope", messages=MESSAGES)
        after = scrape(server)
        chat = 'lmforge_requests_total{route="/v1/chat/completions",status="%s"}'
        assert after[chat % 200] == 1 and after[chat % 404] == 1
        assert after['lmforge_requests_total{route="/metrics",status="200"}'] == 1
        server.raw("POST", "/v1/explain", b"{}")  # 400: no prompt; counted under its route
        server.raw("GET", "/ui/conversations?user=u")
        again = scrape(server)
        assert again['lmforge_requests_total{route="/v1/explain",status="400"}'] == 1
        assert again['lmforge_requests_total{route="/ui",status="200"}'] == 1
        assert after["lmforge_generated_tokens_total"] == 5
        assert after["lmforge_time_to_first_token_seconds_count"] == 1
        assert after["lmforge_inter_token_latency_seconds_count"] == 4
        assert after['lmforge_inter_token_latency_seconds_bucket{le="+Inf"}'] == 4
        assert after["lmforge_time_to_first_token_seconds_sum"] > 0
        assert after["lmforge_prompt_cached_tokens_total"] == 0
    finally:
        server.stop()


def test_a_repeated_prompt_comes_from_the_prompt_cache(model):
    from lmforge.engine.native import PREFILL_CHUNK

    # over two prefill chunks: the cache keeps and serves whole chunks only
    long = [{"role": "user", "content": "What is the capital of France? " * 12}]
    server = Server(create_app(model))
    try:
        first, again = (
            server.client.chat.completions.create(
                model="tiny", messages=long, max_tokens=4, temperature=0
            )
            for _ in range(2)
        )
        assert first.usage.prompt_tokens_details.cached_tokens == 0
        # the whole chunks before the last token, whose logits must be computed
        cached = again.usage.prompt_tokens_details.cached_tokens
        assert cached == (again.usage.prompt_tokens - 1) // PREFILL_CHUNK * PREFILL_CHUNK > 0
        assert again.choices[0].message.content == first.choices[0].message.content
        assert scrape(server)["lmforge_prompt_cached_tokens_total"] == cached
    finally:
        server.stop()
