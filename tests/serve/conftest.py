"""Fixtures of the server tests: the tiny model and a real server on 127.0.0.1 (live_server)."""

from __future__ import annotations

import shutil

import pytest
import torch
from live_server import BODY_LIMIT, Server

from lmforge.models.model import Model
from lmforge.serve import ServeConfig, create_app


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from a second thread (and wait on it when a core is busy)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(model_factory, tiny_tokenizer):
    model = Model(
        model_factory(len(tiny_tokenizer), max_position_embeddings=1024),
        tiny_tokenizer,
        name="tiny",
    )
    model.eos_ids = frozenset()  # every request runs to max_tokens: exact counts, long runs
    return model


@pytest.fixture(scope="module")
def server(model):
    server = Server(create_app(model, ServeConfig(max_body_bytes=BODY_LIMIT)))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium (scripts/setup.sh installs it) driven by Playwright; a missing one
    fails loudly (`playwright install` cannot download its own browser here)."""
    from playwright import sync_api

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield browser
        browser.close()
