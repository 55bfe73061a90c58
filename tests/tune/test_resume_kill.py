"""`lmforge tune` killed with kill -9 resumes with --resume to the uninterrupted run's weights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import lmforge
from lmforge.store import Store, home

FACTS = [
    ("What colour is the sky?", "Blue."),
    ("What is the capital of France?", "Paris."),
    ("How many legs has a cat?", "Four."),
    ("Who wrote this test?", "The lazy dog."),
]
STEPS = 40


@pytest.fixture
def chat_file(tmp_path):
    path = tmp_path / "chat.jsonl"
    with path.open("w") as f:
        for _ in range(4):
            for q, a in FACTS:
                msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                f.write(json.dumps({"messages": msgs}) + "\n")
    return path


def tune_args(chat_file, out: str) -> list[str]:
    # dropout makes the RNG state part of what a resumed run must restore exactly
    return [
        "tune", "tiny", "--data", str(chat_file), "--out", out, "--max-steps", str(STEPS),
        "--save-every", "1", "--micro-batch", "4", "--seq-len", "64", "--eval-fraction", "0",
        "--dropout", "0.1", "--lr", "0.01",
    ]  # fmt: skip


def lmforge_cli(*args: str, **kw) -> subprocess.Popen:
    # One thread for every run: the three runs then add up their floats in the same order.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lmforge.cli", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, **kw,
    )  # fmt: skip


def finish(proc: subprocess.Popen) -> None:
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out


def checkpoint_step(out: str) -> int:
    try:
        return json.loads((home() / "runs" / out / "checkpoint" / "state.json").read_text())["step"]
    except (OSError, ValueError, KeyError):  # not written yet, or mid-swap
        return 0


def test_tune_killed_after_a_checkpoint_resumes_to_the_same_adapter(
    tiny_model_dir, chat_file, lmforge_home
):
    lmforge.import_model(tiny_model_dir, "tiny")
    finish(lmforge_cli(*tune_args(chat_file, "whole")))

    proc = lmforge_cli(*tune_args(chat_file, "halves"))
    deadline = time.monotonic() + 300
    killed_at = 0
    try:
        while killed_at < 3 and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint in 300 s"
            time.sleep(0.005)
            if checkpoint_step("halves") >= 3:
                os.kill(proc.pid, signal.SIGSTOP)  # frozen: what is on disk now is what it leaves
                killed_at = checkpoint_step("halves")  # 0 if stopped mid-swap: let it go on
                if killed_at < 3:
                    os.kill(proc.pid, signal.SIGCONT)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert 3 <= killed_at < STEPS, killed_at  # killed mid-run, with a checkpoint to go on from
    assert not Store().exists("halves")

    again = lmforge_cli(*tune_args(chat_file, "halves"), "--resume")
    log = again.communicate(timeout=600)[0]
    assert again.returncode == 0, log
    assert f"resuming halves at step {killed_at}" in log  # not a fresh start that ends the same
    whole, resumed = Store().get("whole"), Store().get("halves")
    # the resumed run's first steps come from the checkpoint, not from training again
    assert [h["step"] for h in resumed.meta["history"]] == list(range(1, STEPS + 1))
    a = load_file(str(whole.path / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(resumed.path / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in whole.meta["history"]] == [
        h["loss"] for h in resumed.meta["history"]
    ]
