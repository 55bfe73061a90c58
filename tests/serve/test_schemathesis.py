"""schemathesis over the served OpenAPI document: every route, with bodies generated from
its published schema (valid ones and invalid ones), answers no 5xx and no status that the
document does not list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from live_server import BODY_LIMIT, Server

from lmforge.serve import ServeConfig, create_app
from lmforge.serve.feedback import FeedbackStore


@pytest.fixture(scope="module")
def fuzzed(model, tmp_path_factory):
    # short answers keep the run quick; every other limit is the server's default
    app = create_app(model, ServeConfig(max_body_bytes=BODY_LIMIT, max_tokens_limit=32))
    app.state.feedback = FeedbackStore(tmp_path_factory.mktemp("fuzz") / "serve.db")
    server = Server(app)
    yield server
    server.stop()


def test_no_server_error_and_no_undocumented_status(fuzzed, tmp_path):
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{fuzzed.url}/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance",
        "--max-examples",
        "6",
        "--seed",
        "16",
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--no-shrink",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-6000:]
    assert "generated" in report and "failures" not in report.split("SUMMARY")[-1].lower()
