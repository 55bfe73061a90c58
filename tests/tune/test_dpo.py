"""Preference tuning (DPO) on tiny models: the loss starts at log 2, falls, and bad data stops."""

from __future__ import annotations

import json
import math

import pytest
import torch

import lmforge
from lmforge import LmforgeError
from lmforge.cli import main
from lmforge.errors import InvalidInputError
from lmforge.store import Store
from lmforge.tune import dpo
from lmforge.tune.trainer import TuneConfig, tune

PAIRS = [
    ("What colour is the sky?", "Blue.", "Green."),
    ("What is the capital of France?", "Paris.", "Rome."),
    ("How many legs has a cat?", "Four.", "Three."),
    ("Who wrote this test?", "The lazy dog.", "The quick fox."),
    ("What is the capital of Italy?", "Rome.", "Paris."),
    ("Which animal jumps over the dog?", "The quick brown fox.", "A cat."),
    ("How are you today?", "Fine, thank you.", "No."),
    ("Say hello.", "Hello!", "Goodbye!"),
]


def write_pairs(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def prefs(tmp_path):
    rows = [{"prompt": q, "chosen": c, "rejected": r} for q, c, r in PAIRS]
    return write_pairs(tmp_path / "prefs.jsonl", rows)


@pytest.fixture
def base(tiny_model_dir):
    lmforge.import_model(tiny_model_dir, "tiny")
    return "tiny"


def run(base, data, **kw):
    opts = dict(
        data=str(data), method="dpo", max_steps=15, micro_batch=4, seq_len=64,
        eval_fraction=0.0, lr=1e-2, dropout=0.0,
    )  # fmt: skip
    opts.update(kw)
    return tune(base, TuneConfig(**opts).validate(), quiet=True)


def test_dpo_learns_the_preferences(base, prefs):
    art = run(base, prefs, out="prefs")
    history = art.meta["history"]
    # a fresh LoRA (B = 0) is the reference: every margin is 0 and the loss is log 2
    assert abs(history[0]["loss"] - math.log(2)) < 1e-5
    assert history[0]["reward_margin"] == pytest.approx(0, abs=1e-6)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"], [h["loss"] for h in history]
    assert history[-1]["reward_accuracy"] > 0.5 and history[-1]["reward_margin"] > 0
    assert art.kind == "adapter" and art.parent == "tiny" and art.step == "tune"
    assert art.meta["config"]["method"] == "dpo" and "adapter_start" not in art.meta["config"]
    assert isinstance(lmforge.load("prefs").generate("Say hello.", max_tokens=3), str)


def test_loss_is_log_2_when_the_policy_is_the_reference(tiny_model_dir, tiny_tokenizer, prefs):
    from lmforge.models.convert import read_hf

    hf, tok = read_hf(tiny_model_dir, "hf")
    pairs, stats = dpo.read_pairs(prefs, tok, 64)
    assert stats.examples == len(PAIRS) and stats.format == "preference"
    model = dpo.wrap(hf, {"rank": 4, "dropout": 0.1})
    dpo.set_reference(model, pairs, tok.pad_token_id, batch_size=3, fresh=True)
    model.train()  # dropout on: it acts on the LoRA branch only, which is 0 while B is 0
    loss_fn = dpo.DPOLoss(model, beta=0.1)
    loss = loss_fn(dpo.collate([[p] for p in pairs], tok.pad_token_id)).detach()
    assert abs(float(loss) / len(pairs) - math.log(2)) < 1e-5
    # the reference was scored in batches of 3, this in one of 8: equal up to rounding
    assert abs(loss_fn.take_metrics()["reward_margin"]) < 1e-5


def test_one_row_per_pair_scores_each_reply_as_if_alone(tiny_model_dir, prefs):
    """prompt | chosen | rejected in one row == two plain forwards of prompt + reply."""
    from lmforge.models.convert import read_hf

    hf, tok = read_hf(tiny_model_dir, "hf")
    pairs, _ = dpo.read_pairs(prefs, tok, 64)
    with torch.no_grad():
        got = dpo.DPOLoss(hf).log_probs(dpo.collate([pairs[:3], pairs[3:5]], tok.pad_token_id))
        for b, pair in enumerate(pairs[:5]):
            p, c = pair.prompt, pair.chosen
            ids = pair.input_ids
            for side, seq in enumerate((ids[: p + c], ids[:p] + ids[p + c :])):
                logits = hf(torch.tensor([seq])).logits[0, p - 1 : -1]  # predicts seq[p:]
                want = logits.log_softmax(-1).gather(1, torch.tensor(seq[p:])[:, None]).sum()
                assert float(got[b, side]) == pytest.approx(float(want), abs=1e-4)


def test_chat_prompt_replies_end_with_the_end_of_turn(tiny_tokenizer, tmp_path):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    path = write_pairs(
        tmp_path / "p.jsonl", [{"prompt": msgs, "chosen": "Hello.", "rejected": "No."}]
    )
    (pair,), _ = dpo.read_pairs(path, tiny_tokenizer, 64)
    ids, p, c = pair.input_ids, pair.prompt, pair.chosen
    assert tiny_tokenizer.decode(ids[:p]).endswith("<|im_start|>assistant\n")
    assert tiny_tokenizer.decode(ids[p : p + c]) == "Hello.<|im_end|>\n"
    assert tiny_tokenizer.decode(ids[p + c :]) == "No.<|im_end|>\n"


def test_plain_prompt_without_a_chat_template(tiny_tokenizer, tmp_path):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    path = write_pairs(
        tmp_path / "p.jsonl", [{"prompt": "The quick", "chosen": " fox", "rejected": " dog"}]
    )
    (pair,), _ = dpo.read_pairs(path, tok, 64)
    ids, p, c = pair.input_ids, pair.prompt, pair.chosen
    assert tok.decode(ids[:p]) + tok.decode(ids[p : p + c]) == "The quick fox<|im_end|>"
    assert ids[p + c - 1] == ids[-1] == tok.eos_token_id
    msgs = {"prompt": [{"role": "user", "content": "x"}], "chosen": "a", "rejected": "b"}
    with pytest.raises(InvalidInputError, match=r"p2\.jsonl:1: .*needs a tokenizer with a chat"):
        dpo.read_pairs(write_pairs(tmp_path / "p2.jsonl", [msgs]), tok, 64)


def test_start_from_an_existing_adapter(base, prefs, tmp_path):
    chat = tmp_path / "chat.jsonl"
    chat.write_text(
        "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": c}]}
            )
            + "\n"
            for q, c, _ in PAIRS
        )
    )
    sft = tune(
        base,
        TuneConfig(
            data=str(chat), out="sft", max_steps=6, micro_batch=4, seq_len=64,
            eval_fraction=0.0, lr=1e-2, dropout=0.0,
        ).validate(),
        quiet=True,
    )  # fmt: skip
    art = run(None, prefs, out="sft-dpo", adapter="sft", max_steps=10)  # base: the adapter's
    history = art.meta["history"]
    # the reference is the starting adapter, so the policy equals it at step 0: loss log 2
    assert abs(history[0]["loss"] - math.log(2)) < 1e-5
    assert history[-1]["loss"] < history[0]["loss"]
    assert art.parent == "tiny" and art.meta["config"]["adapter_start"] == "sft"

    from safetensors.torch import load_file

    start = load_file(str(sft.path / "adapter" / "adapter_model.safetensors"))
    end = load_file(str(art.path / "adapter" / "adapter_model.safetensors"))
    assert start.keys() == end.keys()
    b = [k for k in start if "lora_B" in k]
    assert b and all(start[k].abs().sum() > 0 for k in b)  # SFT left B non-zero ...
    assert any(not torch.equal(start[k], end[k]) for k in b)  # ... and DPO moved on from it


def test_resume_continues_bit_for_bit(base, prefs, monkeypatch):
    from safetensors.torch import load_file

    from lmforge.tune import trainer as trainer_mod

    whole = run(base, prefs, out="whole", max_steps=6, save_every=2)
    original = trainer_mod.Trainer.train_step

    def crash_at_step_5(self):
        if self.state.step == 4:
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(trainer_mod.Trainer, "train_step", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        run(base, prefs, out="halves", max_steps=6, save_every=2)
    monkeypatch.setattr(trainer_mod.Trainer, "train_step", original)
    cfg = TuneConfig(
        data=str(prefs), method="dpo", max_steps=6, micro_batch=4, seq_len=64,
        eval_fraction=0.0, lr=1e-2, dropout=0.0, out="halves", save_every=2,
    )  # fmt: skip
    resumed = tune(base, cfg, resume=True, quiet=True)
    a = load_file(str(whole.path / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(resumed.path / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole.meta["history"] == resumed.meta["history"]


def test_adapter_checks(base, prefs, tmp_path):
    with pytest.raises(LmforgeError, match="for --method dpo"):
        TuneConfig(data=str(prefs), adapter="x").validate()
    with pytest.raises(LmforgeError, match="no artifact named 'nope'"):
        run(base, prefs, out="y", adapter="nope")
    with pytest.raises(LmforgeError, match="tiny is not an adapter"):
        run(base, prefs, out="y", adapter="tiny")


@pytest.mark.parametrize(
    "record, message",
    [
        ({"prompt": "Hi?", "chosen": "Hello."}, "missing key(s) rejected"),
        ({"prompt": "Hi?", "chosen": "Same.", "rejected": "Same."}, "are the same text"),
        ({"prompt": "Hi?", "chosen": 3, "rejected": "No."}, "'chosen' must be a string"),
        (
            {"prompt": [{"role": "bot", "content": "x"}], "chosen": "a", "rejected": "b"},
            "unknown role",
        ),
    ],
)
def test_bad_lines_name_file_and_line(tiny_tokenizer, prefs, record, message):
    lines = prefs.read_text().splitlines()
    lines.insert(2, json.dumps(record))
    prefs.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInputError) as err:
        dpo.read_pairs(prefs, tiny_tokenizer, 64)
    assert f"{prefs}:3: " in str(err.value) and message in str(err.value)


def test_bad_line_through_the_cli_is_one_line(base, prefs, capsys):
    prefs.write_text(prefs.read_text() + json.dumps({"prompt": "x", "chosen": "y"}) + "\n")
    with pytest.raises(SystemExit) as stop:
        main(["tune", "tiny", "--method", "dpo", "--data", str(prefs), "--beta", "0.2"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {prefs}:{len(PAIRS) + 1}: missing key(s) rejected")
    assert not Store().exists("tiny-dpo")
