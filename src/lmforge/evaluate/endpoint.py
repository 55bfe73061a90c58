"""Generation through any OpenAI-compatible endpoint (lmforge serve, llama.cpp, vLLM, Ollama)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from lmforge.errors import InvalidInputError


class EndpointGenerator:
    """POSTs `/v1/completions` (raw prompts) to `base_url`; the model name is sent as given."""

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        api_key: str | None = None,
        timeout: float = 120.0,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise InvalidInputError(
                f"invalid endpoint {base_url!r}", "give a URL such as http://127.0.0.1:8000/v1"
            )
        base = base_url.rstrip("/")
        self.url = base + ("/completions" if base.endswith("/v1") else "/v1/completions")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def complete(self, prompt: str, max_tokens: int, stop: list[str]) -> tuple[str, float, int]:
        """(text, seconds, completion tokens) for one greedy completion."""
        body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0}
        if stop:
            body["stop"] = stop[:4]  # the OpenAI API takes at most four
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.url, json.dumps(body).encode(), headers, method="POST"
        )
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = json.loads(response.read())
        except urllib.error.HTTPError as e:
            detail = e.read()[:200].decode(errors="replace")
            raise InvalidInputError(
                f"endpoint {self.url} answered {e.code}: {detail}", "check the URL and model name"
            ) from e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            raise InvalidInputError(
                f"cannot reach endpoint {self.url} ({e})", "start the server or fix --endpoint"
            ) from e
        took = time.perf_counter() - start
        try:
            text = data["choices"][0]["text"]
        except (KeyError, IndexError, TypeError) as e:
            raise InvalidInputError(
                f"endpoint {self.url} sent no choices[0].text", "is it OpenAI-compatible?"
            ) from e
        tokens = int((data.get("usage") or {}).get("completion_tokens") or 0)
        return text, took, tokens
