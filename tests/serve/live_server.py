"""A real uvicorn server on 127.0.0.1 in a thread, for the server tests.

A module of its own (not conftest.py) so that test modules can import it by a unique name.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import openai

BODY_LIMIT = 64 << 10


class Server:
    """An app served by uvicorn in a thread, on a free port."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="unused", max_retries=0)
        self.scheduler = app.state.scheduler

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def raw(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.url + path, body, {"Content-Type": "application/json"}, method=method
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


def wait_until(condition, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.005)
