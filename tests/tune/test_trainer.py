"""The tuning loop on tiny models: every method learns, resumes bit for bit, merges exactly."""

from __future__ import annotations

import json

import pytest
import torch

import lmforge
from lmforge import LmforgeError
from lmforge.store import Store
from lmforge.tune import trainer as trainer_mod
from lmforge.tune.trainer import TuneConfig, load_config, tune

FACTS = [
    ("What colour is the sky?", "Blue."),
    ("What is the capital of France?", "Paris."),
    ("How many legs has a cat?", "Four."),
    ("Who wrote this test?", "The lazy dog."),
]


@pytest.fixture
def chat_file(tmp_path):
    path = tmp_path / "chat.jsonl"
    with path.open("w") as f:
        for _ in range(4):
            for q, a in FACTS:
                msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
                f.write(json.dumps({"messages": msgs}) + "\n")
    return path


@pytest.fixture
def base(tiny_model_dir):
    lmforge.import_model(tiny_model_dir, "tiny")
    return "tiny"


def run(base, chat_file, **kw):
    opts = dict(data=str(chat_file), max_steps=12, micro_batch=4, seq_len=64, eval_fraction=0.0)
    opts.update(kw)
    return tune(base, TuneConfig(**opts).validate(), quiet=True)


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "prompt", "prefix", "full"])
def test_each_method_learns_and_saves(base, chat_file, method):
    lr = {"lora": 1e-2, "dora": 1e-2, "ia3": 5e-2, "prompt": 3e-1, "prefix": 2e-1, "full": 3e-3}[
        method
    ]
    art = run(base, chat_file, method=method, out=f"t-{method}", lr=lr)
    losses = [h["loss"] for h in art.meta["history"]]
    assert losses[-1] < losses[0] * 0.8, losses
    assert art.parent == "tiny" and art.meta["config"]["method"] == method
    if method in ("lora", "dora", "ia3"):  # loads like any model and runs in the engine
        model = lmforge.load(f"t-{method}")
        assert isinstance(model.generate("What colour is the sky?", max_tokens=3), str)
        assert art.kind == "adapter"
    elif method == "full":
        assert art.kind == "model" and lmforge.load(art.name)


def test_resume_after_interruption_equals_uninterrupted_run(base, chat_file, monkeypatch):
    whole = run(base, chat_file, out="whole", save_every=3, dropout=0.1)
    calls = {"n": 0}
    original = trainer_mod.Trainer.train_step

    def crash_at_step_8(self):
        if self.state.step == 7:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", crash_at_step_8)
    with pytest.raises(KeyboardInterrupt):
        run(base, chat_file, out="halves", save_every=3, dropout=0.1)
    monkeypatch.setattr(trainer_mod.Trainer, "train_step", original)
    cfg = TuneConfig(
        data=str(chat_file), max_steps=12, micro_batch=4, seq_len=64, eval_fraction=0.0,
        out="halves", save_every=3, dropout=0.1,
    )  # fmt: skip
    resumed = tune(base, cfg, resume=True, quiet=True)
    assert resumed.meta["history"][5]["step"] == 6  # steps 1-6 came from the checkpoint
    from safetensors.torch import load_file

    a = load_file(str(whole.path / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(resumed.path / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in whole.meta["history"]] == [
        h["loss"] for h in resumed.meta["history"]
    ]
    del calls


def test_merge_gives_the_adapter_on_base_logits(base, chat_file):
    from lmforge.models.adapters import apply_adapter
    from lmforge.tune.merge import merge

    run(base, chat_file, out="ad", method="lora")
    store = Store()
    peft_model, tok = apply_adapter(store.get("ad"), store, merge=False)
    merged = merge("ad", "ad-merged")
    assert merged.kind == "model" and merged.parent == "ad"
    plain = lmforge.load("ad-merged").hf_model
    ids = torch.tensor([tok.encode("What colour is the sky?")])
    with torch.no_grad():
        torch.testing.assert_close(
            plain(ids).logits, peft_model(input_ids=ids).logits, atol=1e-4, rtol=0
        )


def test_nan_loss_stops_and_keeps_the_last_checkpoint(base, chat_file, monkeypatch):
    from lmforge.tune.loss import CausalLMLoss

    original = CausalLMLoss.forward
    seen = {"n": 0}

    def nan_after_a_while(self, batch):
        seen["n"] += 1
        loss = original(self, batch)
        return loss * float("nan") if seen["n"] > 8 else loss

    monkeypatch.setattr(CausalLMLoss, "forward", nan_after_a_while)
    with pytest.raises(LmforgeError, match="last good checkpoint"):
        run(base, chat_file, out="nan", save_every=2)
    assert not Store().exists("nan")


def test_bad_config_fails_before_work(tmp_path, chat_file, base):
    bad = tmp_path / "c.yaml"
    bad.write_text("method: lora\nranks: 4\n")
    with pytest.raises(LmforgeError, match="unknown key"):
        load_config(bad, data=str(chat_file))
    with pytest.raises(LmforgeError, match="unknown method"):
        load_config(None, data=str(chat_file), method="qlora")
    with pytest.raises(LmforgeError, match="do not exist"):
        run(base, chat_file, out="x", target_modules=["attn_qkv"])


def test_bf16_base_trains_an_fp32_adapter_that_tracks_the_fp32_run(base, chat_file):
    runs = {
        p: run(base, chat_file, method="lora", out=f"p-{p}", lr=1e-2, precision=p)
        for p in ("fp32", "bf16")
    }
    assert runs["bf16"].meta["config"]["precision"] == "bf16"
    fp32, bf16 = ([h["loss"] for h in runs[p].meta["history"]] for p in ("fp32", "bf16"))
    assert bf16[-1] < bf16[0] * 0.8
    # bf16 rounding of the frozen base moves the curve a little, never off course
    assert max(abs(a - b) for a, b in zip(fp32, bf16, strict=True)) < 0.05 * fp32[0]
    from safetensors.torch import load_file

    weights = load_file(str(runs["bf16"].path / "adapter" / "adapter_model.safetensors"))
    assert weights and all(t.dtype == torch.float32 for t in weights.values())


def test_bf16_is_refused_where_the_weights_themselves_train():
    with pytest.raises(LmforgeError, match="precision bf16 is for adapters"):
        TuneConfig(data="x.jsonl", method="full", precision="bf16").validate()
    with pytest.raises(LmforgeError, match="unknown precision"):
        TuneConfig(data="x.jsonl", precision="fp8").validate()
    # auto never picks bf16 for methods that train fp32 weights or virtual tokens
    from lmforge.tune.methods import resolve_precision

    assert resolve_precision("full", "auto") == resolve_precision("prompt", "auto") == "fp32"
