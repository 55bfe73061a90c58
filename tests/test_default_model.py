"""Tests on the real embedded default model (SmolLM2-135M-Instruct). Marked slow; run in CI."""

import os
import subprocess
import sys

import pytest

import lmforge
from lmforge import Store
from lmforge.models import DEFAULT_NAME

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory):
    """One store for the module, so the GGUF is converted once."""
    return tmp_path_factory.mktemp("default-home")


@pytest.fixture
def home(shared_home, monkeypatch):
    monkeypatch.setenv("LMFORGE_HOME", str(shared_home))
    return shared_home


def test_first_load_converts_then_reuses(home):
    model = lmforge.load()
    art = Store().get(DEFAULT_NAME)
    assert art.meta["config"]["source_format"] == "gguf"
    assert art.meta["model"]["parameters"] > 100_000_000
    created = art.meta["created"]
    assert "Paris" in model.chat(QUESTION, max_tokens=24)
    lmforge.load()
    assert Store().get(DEFAULT_NAME).meta["created"] == created  # not converted again


@pytest.mark.parametrize("dtype", ["int8", "bf16"])
def test_quantized_answers_too(home, dtype):
    assert "Paris" in lmforge.load(dtype=dtype).chat(QUESTION, max_tokens=24)


def test_readme_one_shot_command(home):
    env = dict(os.environ, LMFORGE_HOME=str(home))
    out = subprocess.run(
        [sys.executable, "-m", "lmforge.cli", "chat", "--prompt", "What is the capital of France?"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_core_suite_is_well_above_chance(home):
    """The whole bundled core suite (four choices each, so chance is 0.25)."""
    from lmforge.evaluate.runner import EvalConfig, evaluate

    doc = evaluate(lmforge.load(), EvalConfig(suite="core", metrics=["accuracy"]))
    n = sum(t["accuracy"]["n"] for t in doc["tasks"].values())
    assert n > 400
    assert doc["summary"]["acc"] > 0.45, doc["summary"]
