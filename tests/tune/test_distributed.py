"""Two CPU processes under torchrun (gloo) follow the same loss curve as one process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from lmforge.store import Store

FACTS = [("Blue or red?", "Blue."), ("Cats have how many legs?", "Four."), ("Hi?", "Hello.")]


@pytest.mark.slow  # two torchrun workers import torch and transformers: ~20 s
def test_two_processes_match_one_with_the_same_global_batch(tiny_model_dir, tmp_path):
    data = tmp_path / "chat.jsonl"
    with data.open("w") as f:
        for _ in range(6):
            for q, a in FACTS:
                msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                f.write(json.dumps({"messages": msgs}) + "\n")
    common = [
        "tune", str(tiny_model_dir), "--data", str(data), "--max-steps", "4", "--micro-batch",
        "1", "--seq-len", "32", "--eval-fraction", "0", "--dropout", "0", "--lr", "1e-2",
    ]  # fmt: skip
    cli = [sys.executable, "-m", "lmforge.cli"]
    subprocess.run([*cli, *common, "--grad-accum", "2", "--out", "one"], check=True)
    subprocess.run([*cli, *common, "--nproc", "2", "--out", "two"], check=True, timeout=300)
    one, two = Store().get("one"), Store().get("two")
    assert two.meta["metrics"]["world_size"] == 2 and one.meta["metrics"]["world_size"] == 1
    a = [h["loss"] for h in one.meta["history"]]
    b = [h["loss"] for h in two.meta["history"]]
    assert len(a) == len(b) == 4 and a[0] > a[-1]
    assert b == pytest.approx(a, abs=1e-4)
