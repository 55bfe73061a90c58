"""Two CPU processes under torchrun (gloo) follow the same loss curve as one process, with the
model replicated (DDP) or sharded (FSDP), and write the same adapter and checkpoint files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import lmforge
from lmforge.errors import InvalidInputError
from lmforge.store import Store
from lmforge.tune.checkpoint import run_dir
from lmforge.tune.config import TuneConfig

FACTS = [("Blue or red?", "Blue."), ("Cats have how many legs?", "Four."), ("Hi?", "Hello.")]


def _same_tensors(a: dict, b: dict) -> bool:
    # 2e-4 on weights of ~0.1: an AVX2 CPU's kernels sum in another order than AVX512's and
    # two ranks differ from one by up to 8e-5 after 4 Adam steps; a wrong shard is off by 1e-2
    return a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=2e-4) for k in a)


@pytest.mark.slow  # two torchrun workers import torch and transformers: ~20 s
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_processes_match_one_with_the_same_global_batch(tiny_model_dir, tmp_path, fsdp):
    from safetensors.torch import load_file

    data = tmp_path / "chat.jsonl"
    with data.open("w") as f:
        for _ in range(6):
            for q, a in FACTS:
                msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                f.write(json.dumps({"messages": msgs}) + "\n")
    lmforge.import_model(tiny_model_dir, "tiny")  # a store base, so the adapter loads by name
    common = [
        "tune", "tiny", "--data", str(data), "--max-steps", "4", "--micro-batch",
        "1", "--seq-len", "32", "--eval-fraction", "0", "--dropout", "0", "--lr", "1e-2",
    ]  # fmt: skip
    cli = [sys.executable, "-m", "lmforge.cli"]
    two_procs = ["--nproc", "2", *(["--fsdp"] if fsdp else [])]
    subprocess.run([*cli, *common, "--grad-accum", "2", "--out", "one"], check=True)
    subprocess.run([*cli, *common, *two_procs, "--out", "two"], check=True, timeout=300)
    one, two = Store().get("one"), Store().get("two")
    assert two.meta["metrics"]["world_size"] == 2 and one.meta["metrics"]["world_size"] == 1
    assert two.meta["metrics"]["fsdp"] is fsdp
    a = [h["loss"] for h in one.meta["history"]]
    b = [h["loss"] for h in two.meta["history"]]
    assert len(a) == len(b) == 4 and a[0] > a[-1]
    assert b == pytest.approx(a, abs=1e-4)
    # the adapter and the checkpoint hold whole tensors, in the files of a one-process run
    adapter = "adapter/adapter_model.safetensors"
    assert _same_tensors(load_file(one.path / adapter), load_file(two.path / adapter))
    ckpt_one, ckpt_two = run_dir("one") / "checkpoint", run_dir("two") / "checkpoint"
    weights = "trainable.safetensors"
    assert _same_tensors(load_file(ckpt_one / weights), load_file(ckpt_two / weights))
    opt_one, opt_two = (
        torch.load(c / "optimizer.pt", weights_only=True)["optimizer"] for c in (ckpt_one, ckpt_two)
    )
    assert opt_one["param_groups"] == opt_two["param_groups"]
    for i, moments in opt_one["state"].items():
        assert _same_tensors(moments, opt_two["state"][i])
    assert isinstance(lmforge.load("two").generate("Hi?", max_tokens=2), str)


@pytest.mark.parametrize("method", ["prompt", "prefix"])
def test_fsdp_refuses_prompt_and_prefix_tuning(method):
    # peft saves their virtual tokens by running the prompt encoder, which a shard cannot do
    with pytest.raises(InvalidInputError, match="--fsdp"):
        TuneConfig(data="x.jsonl", method=method, fsdp=True).validate()
