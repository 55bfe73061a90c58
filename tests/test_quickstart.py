"""The quickstart domain: sizes, held-out eval phrasings, choice sanity, files and task YAML."""

from __future__ import annotations

import json
from collections import Counter

from lmforge import quickstart
from lmforge.evaluate.task import build_items, load_task

TRAIN = quickstart.build_train()
EVAL = quickstart.build_eval()


def _user_turns(examples: list[dict]) -> list[str]:
    return [m["content"] for ex in examples for m in ex["messages"] if m["role"] == "user"]


def test_table_is_a_few_dozen_distinct_facts() -> None:
    keys = [f.key for f in quickstart.FACTS]
    assert 40 <= len(keys) <= 60
    assert len(set(keys)) == len(keys)
    for fact in quickstart.FACTS:
        assert fact.answer in quickstart.POOLS[fact.pool], fact.key


def test_train_set_is_a_few_hundred_chat_examples() -> None:
    assert 200 <= len(TRAIN) <= 600
    for ex in TRAIN:
        roles = [m["role"] for m in ex["messages"]]
        assert roles == ["user", "assistant"]
        assert all(m["content"].strip() for m in ex["messages"])
    # Every fact gets 4 to 6 distinct phrasings, all with the same answer.
    for fact in quickstart.FACTS:
        rows = [ex for ex in TRAIN if ex["messages"][1]["content"] == quickstart.sentence(fact)]
        questions = {ex["messages"][0]["content"] for ex in rows}
        assert 4 <= len(questions) == len(rows) <= 6, fact.key
        assert fact.answer in quickstart.sentence(fact)


def test_system_prompt_is_optional() -> None:
    with_system = quickstart.build_train(system="You help Steamwren owners.")
    assert len(with_system) == len(TRAIN)
    assert with_system[0]["messages"][0] == {
        "role": "system",
        "content": "You help Steamwren owners.",
    }


def test_build_is_deterministic() -> None:
    assert quickstart.build_train() == TRAIN
    assert quickstart.build_eval() == EVAL


def test_eval_questions_are_held_out() -> None:
    seen = {q.strip().lower() for q in _user_turns(TRAIN)}
    for item in EVAL:
        assert item["question"].strip().lower() not in seen, item["id"]


def test_eval_items_are_well_formed() -> None:
    answers = {f.key: f.answer for f in quickstart.FACTS}
    assert len({item["id"] for item in EVAL}) == len(EVAL)
    for item in EVAL:
        choices, target = item["choices"], item["target"]
        assert len(choices) == quickstart.N_CHOICES
        assert len(set(choices)) == len(choices), item["id"]
        assert 0 <= target < len(choices)
        assert choices[target] == answers[item["fact"]]
    # The right answer sits in every slot about equally often.
    counts = Counter(item["target"] for item in EVAL)
    assert set(counts) == set(range(quickstart.N_CHOICES))
    assert max(counts.values()) - min(counts.values()) <= 1


def test_every_fact_is_in_both_sets() -> None:
    replies = {ex["messages"][-1]["content"] for ex in TRAIN}
    evaluated = {item["fact"] for item in EVAL}
    for fact in quickstart.FACTS:
        assert quickstart.sentence(fact) in replies, fact.key
        assert fact.key in evaluated, fact.key


def test_write_round_trips(tmp_path) -> None:
    train_path, eval_path = quickstart.write(tmp_path / "qs")
    assert (train_path.name, eval_path.name) == ("train.jsonl", "eval.jsonl")
    for path, rows in ((train_path, TRAIN), (eval_path, EVAL)):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == rows
    assert not list((tmp_path / "qs").glob("*.tmp"))


def test_eval_task_loads(tmp_path) -> None:
    quickstart.write(tmp_path)
    task = load_task(quickstart.eval_task(tmp_path))
    assert task.kind == "multiple_choice"
    items = build_items(task)
    assert len(items) == len(EVAL)
    first = items[0]
    assert first.context == f"Question: {EVAL[0]['question']}\nAnswer:"
    assert first.choices == EVAL[0]["choices"]
    assert first.target == EVAL[0]["target"]
