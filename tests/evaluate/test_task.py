import json

import pytest

from lmforge import LmforgeError
from lmforge.evaluate.task import Task, build_items, load_task

ROWS = [
    {
        "id": "a",
        "question": "What is the capital of France?",
        "choices": ["Paris", "Rome"],
        "answer": 0,
    },
    {
        "id": "b",
        "question": "What is the capital of Italy?",
        "choices": ["Paris", "Rome"],
        "answer": "Rome",
    },
    {"id": "c", "question": "What is 2 + 2?", "choices": ["3", "4"], "answer": 1},
]


def write_task(tmp_path, body: str, rows=ROWS, name="t.yaml"):
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / name).write_text(body)
    return tmp_path / name


GOOD = """\
name: capitals
kind: multiple_choice
data: {path: data.jsonl}
prompt: "Question: {{ question }}\\nAnswer:"
choices: choices
target: answer
"""


def test_yaml_task_renders_items(tmp_path):
    items = build_items(load_task(write_task(tmp_path, GOOD)))
    assert [i.id for i in items] == ["a", "b", "c"]
    assert items[0].context == "Question: What is the capital of France?\nAnswer:"
    assert [i.target for i in items] == [0, 1, 1]  # an index, a choice's text, an index


def test_fewshot_never_uses_the_item_itself(tmp_path):
    items = build_items(load_task(write_task(tmp_path, GOOD + "fewshot: 2\n")))
    for item in items:
        shots, question = item.context.rsplit("\n\n", 1)[0], item.doc["question"]
        assert question not in shots and shots.count("Answer:") == 2
        assert item.context.endswith(f"Question: {question}\nAnswer:")
    assert build_items(load_task(tmp_path / "t.yaml"))[0].context == items[0].context  # seeded


@pytest.mark.parametrize(
    "body, rows, message",
    [
        (GOOD.replace("kind: multiple_choice", "kind: essay"), ROWS, "unknown kind 'essay'"),
        (GOOD + "colour: red\n", ROWS, "t.yaml:7: unknown key 'colour'"),
        (GOOD.replace("name: capitals\n", ""), ROWS, "missing key 'name'"),
        (GOOD.replace("{{ question }}", "{{ question }"), ROWS, "key 'prompt': template error"),
        (GOOD, [*ROWS, {"id": "d", "question": "q?", "choices": ["x", "y"]}], "row 4: no target"),
        (
            GOOD,
            [*ROWS, {"id": "d", "question": "q?", "choices": ["x", "y"], "answer": 5}],
            "row 4: target index 5 is out of range",
        ),
        (
            GOOD,
            [*ROWS, {"id": "d", "choices": ["x", "y"], "answer": 0}],
            "row 4: 'question' is undefined",
        ),
        (
            GOOD,
            [*ROWS, {"id": "d", "question": "q", "choices": ["x"], "answer": "z"}],
            "not one of the choices",
        ),
        (GOOD + "metrics: [accuracy]\nfewshot: -1\n", ROWS, "fewshot must be an integer >= 0"),
        ("- just\n- a list\n", ROWS, "must be a mapping"),
    ],
)
def test_bad_tasks_name_the_file_and_the_fix(tmp_path, body, rows, message):
    with pytest.raises(LmforgeError, match="t.yaml") as err:
        build_items(load_task(write_task(tmp_path, body, rows)))
    assert message in str(err.value)


def test_lm_eval_yaml_with_local_files(tmp_path):
    rows = [{"q": "Is fire hot?", "label": 0}, {"q": "Is ice hot?", "label": 1}]
    body = """\
task: yesno
dataset_path: json
dataset_kwargs:
  data_files:
    test: data.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{q}}\\nAnswer:"
doc_to_choice: ["yes", "no"]
doc_to_target: label
num_fewshot: 0
metric_list:
  - metric: acc
"""
    task = load_task(write_task(tmp_path, body, rows))
    assert task.name == "yesno" and task.kind == "multiple_choice" and task.metrics == ["accuracy"]
    items = build_items(task)
    assert (
        items[1].context == "Is ice hot?\nAnswer:"
        and items[1].choices == ["yes", "no"]
        and items[1].target == 1
    )


def test_lm_eval_hub_dataset_and_python_hooks_are_refused(tmp_path):
    with pytest.raises(LmforgeError, match="fetched from a hub"):
        load_task(
            write_task(
                tmp_path,
                "task: x\ndataset_path: some/hub-set\noutput_type: multiple_choice\ndoc_to_text: q\n",
            )
        )
    with pytest.raises(LmforgeError, match="!function"):
        load_task(
            write_task(tmp_path, "task: x\ndataset_path: json\ndoc_to_text: !function utils.f\n")
        )


def test_inline_task():
    task = Task(
        name="t",
        kind="multiple_choice",
        prompt="{{ q }}",
        choices="c",
        target="t",
        docs=[{"q": "x", "c": ["a", "b"], "t": 1}],
    )
    assert build_items(task)[0].target == 1


def test_open_ended_generate_task_needs_no_target_unless_scored_for_accuracy():
    from lmforge.evaluate.task import Task, build_items

    rows = [{"prompt": "Once upon a time"}]
    with pytest.raises(LmforgeError, match="needs 'target'"):
        Task(name="t", kind="generate", prompt="{{ prompt }}", docs=rows)
    task = Task(name="t", kind="generate", prompt="{{ prompt }}", docs=rows, metrics=["toxicity"])
    [item] = build_items(task)
    assert item.target is None and item.context == "Once upon a time"
