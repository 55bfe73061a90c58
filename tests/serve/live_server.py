"""A real uvicorn server on 127.0.0.1 in a thread, for the server tests.

A module of its own (not conftest.py) so that test modules can import it by a unique name.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
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


class ServeProcess:
    """`lmforge serve ARGS` in a process of its own on a free port; `stop()` sends Ctrl-C
    and returns the exit code and everything it printed."""

    def __init__(self, args: list[str], home, timeout: float = 60.0):
        with socket.socket() as probe:  # a port that was free a moment ago
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        env = {**os.environ, "LMFORGE_HOME": str(home), "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "lmforge.cli", "serve", *args, "--port", str(port)]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0
        )

        def up() -> bool:
            assert self.process.poll() is None, self.process.stdout.read().decode()
            try:
                return bool(self.client.models.list().data)
            except openai.APIConnectionError:
                return False

        try:
            wait_until(up, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        self.name = self.client.models.list().data[0].id

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=30)
        return code, self.process.stdout.read().decode()


def open_chat(browser, url: str, timeout_ms: int = 20_000):
    """A new page of the web chat at `url`, loaded and ready."""
    page = browser.new_page()
    page.set_default_timeout(timeout_ms)
    page.goto(url + "/")
    page.wait_for_selector("body[data-ready='1']")
    return page


def attach_png(page, name: str, data: bytes) -> None:
    """Pick a PNG with the web chat's Image button and wait for its thumbnail."""
    page.set_input_files("#attach-file", {"name": name, "mimeType": "image/png", "buffer": data})
    page.wait_for_selector("#attachment:not([hidden]) #thumb[src^='data:image/png']")
