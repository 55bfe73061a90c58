import json
import os
import socket
import subprocess
import sys
import time

import pytest

import lmforge
from lmforge import LmforgeError
from lmforge.evaluate.matching import f1, match, normalise
from lmforge.evaluate.runner import EvalConfig, evaluate


def test_matching():
    assert normalise("The  Paris!") == "paris"
    assert (
        match("exact", "the paris.", "Paris") == 1.0
        and match("exact", "Paris, France", "Paris") == 0.0
    )
    assert match("contains", "It is Paris, France", "paris") == 1.0
    assert (
        match("regex", "answer: 42", r"\b42\b") == 1.0 and match("regex", "421", r"\b42\b") == 0.0
    )
    assert f1("the red fox", "red fox") == 1.0 and f1("red", "red fox") == pytest.approx(2 / 3)
    assert f1("", "x") == 0.0


def write_generate_task(folder, rows, match_kind="contains"):
    (folder / "g.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "g.yaml").write_text(
        f"name: gen\nkind: generate\ndata: {{path: g.jsonl}}\nprompt: '{{{{ q }}}}'\ntarget: a\n"
        f"match: {match_kind}\nmax_tokens: 6\nstop: ['\\n']\nmetrics: [accuracy, efficiency]\n"
    )
    return folder / "g.yaml"


def test_generate_task_on_the_native_engine(tiny_model_dir, tmp_path):
    model = lmforge.load(str(tiny_model_dir))
    rows = [{"q": "The quick brown", "a": "fox"}, {"q": "Paris is the", "a": "capital"}]
    task = write_generate_task(tmp_path, rows)
    doc = evaluate(model, EvalConfig(suite=str(task), batch_size=2))
    records = doc["records"]
    assert [r["item"] for r in records] == ["0", "1"]
    for r, row in zip(records, rows, strict=True):
        expected = model.generate(row["q"], max_tokens=6, stop=["\n"])
        assert r["output"] == expected  # batched generation equals one-by-one
        assert r["correct"] == (match("contains", r["output"].strip(), row["a"]) == 1.0)
    assert doc["tasks"]["gen"]["accuracy"]["n"] == 2


def test_endpoint_cannot_score_multiple_choice():
    with pytest.raises(LmforgeError, match="needs log-likelihoods"):
        evaluate(None, EvalConfig(suite="core", limit=1, endpoint="http://127.0.0.1:9/v1"))


def test_unreachable_endpoint_is_a_clear_error(tmp_path):
    task = write_generate_task(tmp_path, [{"q": "hi", "a": "x"}])
    with pytest.raises(LmforgeError, match="cannot reach endpoint"):
        evaluate(None, EvalConfig(suite=str(task), endpoint="http://127.0.0.1:9/v1"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_generate_task_through_a_real_llama_cpp_server(tmp_path):
    """A real OpenAI-compatible server (llama.cpp's) on loopback, serving the default GGUF."""
    pytest.importorskip(
        "llama_cpp.server.app", reason="needs llama-cpp-python[server] (the dev extra)"
    )
    from lmforge.models.default import default_gguf_path

    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(default_gguf_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "512",
            "--model_alias",
            "smollm2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        rows = [{"q": "The capital of France is", "a": "Paris"}]
        task = write_generate_task(tmp_path, rows)
        doc = evaluate(
            None,
            EvalConfig(
                suite=str(task), endpoint=f"http://127.0.0.1:{port}/v1", endpoint_model="smollm2"
            ),
        )
        [record] = doc["records"]
        assert record["output"].strip() and record["correct"], record["output"]
        assert doc["model"]["endpoint"].endswith("/v1")
    finally:
        server.terminate()
        server.wait(timeout=30)
