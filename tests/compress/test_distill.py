"""`lmforge distill` on tiny random Llamas: the student's cut, the KL it loses, bad input."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F

import lmforge
from lmforge.cli import main
from lmforge.compress.distill import DistillConfig, distill
from lmforge.compress.student import make_student, spaced_layers
from lmforge.errors import InvalidInputError, LmforgeError
from lmforge.models.convert import read_hf
from lmforge.store import Store
from lmforge.tune.checkpoint import run_dir

TEXT = [  # written for these tests
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France. Rome is the capital of Italy.",
    "user assistant system: hello, how are you today?",
    "A byte-level tokenizer splits words into bytes.",
]


@pytest.fixture
def teacher(tmp_path, tiny_tokenizer, model_factory):
    """A 4-layer tiny Llama in the store as `teacher`; returns its folder."""
    folder = tmp_path / "teacher"
    model_factory(len(tiny_tokenizer), num_hidden_layers=4).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    lmforge.import_model(folder, "teacher")
    return folder


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "toy.txt"
    path.write_text("\n\n".join(TEXT * 3))
    return path


def test_spaced_layers_keep_first_and_last():
    assert spaced_layers(4, 2) == [0, 3]
    assert spaced_layers(6, 3) == [0, 3, 5]
    half = spaced_layers(30, 15)
    assert half[0] == 0 and half[-1] == 29 and half == sorted(set(half)) and len(half) == 15


def test_student_is_a_copy_of_the_chosen_teacher_layers(tiny_tokenizer, model_factory):
    teacher = model_factory(len(tiny_tokenizer), num_hidden_layers=6)
    student = make_student(teacher, [0, 3, 5])
    assert type(student) is type(teacher) and len(student.model.layers) == 3
    assert student.config.num_hidden_layers == 3 and teacher.config.num_hidden_layers == 6
    t, s = teacher.state_dict(), student.state_dict()
    for j, i in enumerate([0, 3, 5]):
        for name, value in teacher.model.layers[i].state_dict().items():
            assert torch.equal(s[f"model.layers.{j}.{name}"], value), name
    for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"):
        assert torch.equal(s[name], t[name])
        assert s[name].data_ptr() != t[name].data_ptr()  # copied, not shared
    # every layer kept: the same function as the teacher (nothing missed in the copy)
    ids = torch.tensor([[5, 9, 40, 7, 100, 3]])
    whole = make_student(teacher, list(range(6)))
    torch.testing.assert_close(whole(ids).logits, teacher(ids).logits)


def _kl(teacher, student, tok) -> float:
    """Mean KL(teacher || student) per next-token position over TEXT, by plain forward passes."""
    total, n = 0.0, 0
    with torch.no_grad():
        for line in TEXT:
            ids = torch.tensor([tok.encode(line)])
            p = F.log_softmax(teacher(ids).logits[0, :-1], -1)
            q = F.log_softmax(student(ids).logits[0, :-1], -1)
            total += float((p.exp() * (p - q)).sum())
            n += ids.shape[1] - 1
    return total / n


def test_distillation_lowers_kl_and_the_student_runs_in_the_engine(teacher, text_file):
    config = DistillConfig(
        student_layers=2, data=str(text_file), steps=30, lr=3e-3, alpha=1.0, temperature=1.0,
        seq_len=64, eval_fraction=0.0,
    )  # fmt: skip
    art = distill("teacher", "student", config, quiet=True)

    assert art.kind == "model" and art.step == "distill" and art.parent == "teacher"
    assert art.meta["config"]["layers"] == [0, 3] and art.meta["config"]["student_layers"] == 2
    m = art.meta["metrics"]
    assert m["student_layers"] == 2 and m["steps"] == 30 and m["tokens"] > 0
    assert m["kl_after"] < 0.5 * m["kl_before"], m
    assert art.meta["energy"]["joules"] >= 0 and art.meta["model"]["layers"] == 2

    # the same claim by an independent measure: full forward passes, before vs after
    hf_teacher, tok = read_hf(teacher, "hf")
    seeded = make_student(hf_teacher, [0, 3]).eval()
    model = lmforge.load("student")
    assert model.hf_model.config.num_hidden_layers == 2
    before, after = _kl(hf_teacher, seeded, tok), _kl(hf_teacher, model.hf_model, tok)
    assert after < 0.5 * before, (before, after)

    assert type(model.decoder).__name__ == "NativeDecoder"
    assert isinstance(model.generate("The quick brown", max_tokens=4), str)


@pytest.mark.parametrize("chat", [False, True])
def test_prompts_are_answered_by_the_teacher_and_trained_on(teacher, tmp_path, chat):
    questions = ["The quick brown", "Paris is the", "hello, how are"]
    if chat:
        prompts = tmp_path / "prompts.jsonl"
        lines = [json.dumps({"messages": [{"role": "user", "content": q}]}) for q in questions]
        prompts.write_text("\n".join(lines))
    else:
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("\n\n".join(questions))
    config = DistillConfig(
        student_layers=1, prompts=str(prompts), max_new_tokens=6, steps=2, seq_len=64,
        eval_fraction=0.0,
    )  # fmt: skip
    art = distill("teacher", "p-student", config, quiet=True)

    ref = lmforge.load("teacher")  # greedy answers, through the same engine
    want = [
        ref.chat([{"role": "user", "content": q}], max_tokens=6)
        if chat
        else ref.generate(q, max_tokens=6)
        for q in questions
    ]
    records = [json.loads(x) for x in (run_dir("p-student") / "generated.jsonl").open()]
    got = [r["messages"][-1]["content"] if chat else r["completion"] for r in records]
    assert got == [w for w in want if w.strip()] and got
    data = art.meta["data"]
    assert data["generated"] == len(records) and data["format"] == (
        "chat" if chat else "instruction"
    )
    assert art.meta["metrics"]["steps"] == 2 and art.meta["metrics"]["tokens"] > 0


def _student_folder(tmp_path, tokenizer, model_factory):
    folder = tmp_path / "student"
    model_factory(len(tokenizer), num_hidden_layers=1).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("change", ["vocab", "eos"])
def test_tokenizer_mismatch_stops_before_any_work(
    teacher, text_file, tmp_path, tiny_tokenizer, model_factory, monkeypatch, change
):
    other = copy.deepcopy(tiny_tokenizer)
    if change == "vocab":
        other.add_tokens(["<extra-token>"])
    else:
        other.eos_token = "<|endoftext|>"
    folder = _student_folder(tmp_path, other, model_factory)

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded before the check")

    monkeypatch.setattr("lmforge.models.convert.read_hf", no_weights)
    config = DistillConfig(student=str(folder), data=str(text_file), steps=1)
    with pytest.raises(InvalidInputError, match="the student's tokenizer is not the teacher's"):
        distill("teacher", "mismatch", config, quiet=True)
    store = Store()
    assert [a.name for a in store.list()] == ["teacher"]
    assert not [p for p in store.root.iterdir() if p.name.startswith(".")]
    assert not run_dir("mismatch").exists()


@pytest.mark.parametrize("given", ["folder", "config"])
def test_a_given_student_with_the_teachers_tokenizer_trains(
    teacher, text_file, tmp_path, tiny_tokenizer, model_factory, given
):
    folder = _student_folder(tmp_path, tiny_tokenizer, model_factory)
    spec = folder if given == "folder" else folder / "config.json"  # weights, or a fresh init
    config = DistillConfig(student=str(spec), data=str(text_file), steps=2, seq_len=64)
    art = distill("teacher", "given", config, quiet=True)
    assert art.meta["metrics"]["student_layers"] == 1
    assert lmforge.load("given").hf_model.config.num_hidden_layers == 1


@pytest.mark.parametrize(
    "options, message",
    [
        ({"student_layers": 0}, "student_layers must be an integer >= 1"),
        ({"student_layers": 4}, "the teacher has 4 layers, so a student needs 1 to 3, not 4"),
        ({"student_layers": 9}, "the teacher has 4 layers"),
        ({"student_layers": 2, "layers": "0,9"}, "are not distinct increasing indices"),
        ({"student_layers": 2, "layers": "0"}, "--layers names 1 layers for a 2-layer student"),
        ({}, "exactly one"),
        ({"student_layers": 2, "prompts": "p.txt"}, "exactly one"),
        ({"student_layers": 2, "alpha": 1.5}, "invalid alpha=1.5"),
        ({"student_layers": 2, "temperature": 0.0}, "temperature must be positive"),
        ({"student_layers": 2, "data": "missing.jsonl"}, "missing.jsonl: no such file"),
    ],
)
def test_bad_input_is_a_clear_error_before_work(teacher, text_file, options, message):
    values = {"data": str(text_file), **options}
    with pytest.raises(LmforgeError, match=message):
        distill("teacher", "bad", DistillConfig(**values), quiet=True)
    assert not Store().exists("bad")


def test_unknown_option_is_an_error():
    with pytest.raises(InvalidInputError, match="unknown distill option"):
        DistillConfig.from_dict({"student_layers": 2, "data": "x", "temprature": 2.0})


def test_cli_runs_and_fails_with_one_line(teacher, text_file, capsys):
    with pytest.raises(SystemExit) as bad:
        main(["distill", "--teacher", "teacher", "--student-layers", "4", "--out", "x",
              "--data", str(text_file)])  # fmt: skip
    assert bad.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: the teacher has 4 layers")
    main(["distill", "--teacher", "teacher", "--student-layers", "2", "--out", "cli-student",
          "--data", str(text_file), "--steps", "2", "--seq-len", "64"])  # fmt: skip
    shown = capsys.readouterr().out
    assert "4 -> 2" in shown and "size on disk" in shown
