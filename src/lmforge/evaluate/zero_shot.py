"""Zero-shot image classification accuracy of a CLIP-style model on a JSONL task.

Each line is `{"image": "cats/1.png", "label": "cat"}` (the path relative to the JSONL file),
optionally with its own `"labels": [...]`; without them every item chooses among all the
labels of the file. The result document has the shape of `lmforge eval`'s (tasks -> metric
families, summary, records) and is written with `evaluate.runner.write_result`.

It is a command of its own (`lmforge clip eval`) rather than a task kind of the evaluator,
because the evaluator is built around a language model's log-likelihoods and generations
(its scorer, prompt variants, decode speed); a CLIP model offers none of them. The model is
passed in (anything with `classify` and `name`, such as `vision.clip.ClipModel`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from lmforge.errors import InvalidInputError, NotFoundError
from lmforge.evaluate.metrics import compute_all
from lmforge.io import read_jsonl
from lmforge.store import versions


def read_task(path: str | Path) -> list[dict]:
    """The items of a zero-shot JSONL task: {image (absolute), label, labels}."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise NotFoundError(f"no task file {path}", "pass a JSONL file of {image, label} lines")
    items = []
    for n, row in read_jsonl(path, '{"image": "a.png", "label": "cat"} a line'):
        if not isinstance(row.get("image"), str) or not isinstance(row.get("label"), str):
            raise InvalidInputError(
                f"{path}:{n} needs a string image and label", '{"image": "a.png", "label": "cat"}'
            )
        labels = row.get("labels")
        if labels is not None and (not isinstance(labels, list) or row["label"] not in labels):
            raise InvalidInputError(
                f"{path}:{n}: labels must be a list holding the label", "fix it"
            )
        items.append({"image": str(path.parent / row["image"]), "label": row["label"],
                      "labels": labels, "line": n})  # fmt: skip
    if not items:
        raise InvalidInputError(f"{path} holds no items", "add {image, label} lines")
    every = sorted({it["label"] for it in items})
    for it in items:
        it["labels"] = it["labels"] or every
        if len(it["labels"]) < 2:
            raise InvalidInputError(f"{path}: only one label in the task", "add another label")
    return items


def evaluate_zero_shot(clip, task: str | Path, template: str = "a photo of a {}.") -> dict:
    """Score `clip` (a `ClipModel`) on `task`; the result document, as `lmforge eval` writes."""
    items = read_task(task)
    name = Path(task).stem
    started = time.perf_counter()
    records = []
    for i, it in enumerate(items):
        probs = clip.classify(it["image"], it["labels"], template=template)
        chosen = max(probs, key=probs.get)
        records.append({
            "task": name, "item": str(i), "variant": "original",
            "answer": it["labels"].index(chosen), "target": it["labels"].index(it["label"]),
            "correct": chosen == it["label"], "prob": round(probs[it["label"]], 6),
            "image": it["image"],
        })  # fmt: skip
    wall = time.perf_counter() - started
    results = {name: compute_all(records, ["accuracy"], {"accuracy": {"seed": 0}})}
    results[name]["efficiency"] = {"wall_s": round(wall, 3), "items_per_s": len(items) / wall}
    return {
        "suite": str(task),
        "kind": "zero_shot_image",
        "model": {"name": clip.name, "dtype": "fp32", "artifact": None, "endpoint": None},
        "config": {"template": template, "task": str(task)},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(),
        "wall_s": round(wall, 3),
        "tasks": results,
        "summary": {"acc": results[name]["accuracy"]["acc"]},
        "records": records,
    }
