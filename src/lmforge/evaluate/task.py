"""Tasks: a YAML file (or a bundled definition) that says what to score and how.

    name: capitals
    kind: multiple_choice            # multiple_choice | generate | loglikelihood | perplexity
    data: {path: capitals.jsonl}     # JSONL or CSV, relative to the YAML file
    prompt: "Question: {{ question }}\\nAnswer:"
    choices: choices                 # a field holding a list, or a template giving one
    target: answer                   # a field or template: an index, or the right choice's text
    fewshot: 2                       # examples taken from the data (never the item itself)
    metrics: [accuracy, calibration]

Every mistake is reported with the file and the key, line or data row, and the fix.
"""

from __future__ import annotations

import ast
import csv
import json
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError

KINDS = ("multiple_choice", "generate", "loglikelihood", "perplexity")


@dataclass
class Task:
    """One evaluation task; the YAML keys are exactly these fields."""

    name: str = field(metadata={"help": "Task name, used in results."})
    kind: str = field(metadata={"help": "multiple_choice | generate | loglikelihood | perplexity."})
    prompt: str = field(default="{{ text }}", metadata={"help": "Jinja2 template of the context."})
    data: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "{path, format: jsonl|csv, limit}."}
    )
    choices: str | None = field(
        default=None, metadata={"help": "Field or template giving the choices."}
    )
    target: str | None = field(
        default=None, metadata={"help": "Field or template: index or right text."}
    )
    fewshot: int = field(
        default=0, metadata={"help": "Number of solved examples before each item."}
    )
    fewshot_seed: int = field(
        default=1234, metadata={"help": "Seed for picking few-shot examples."}
    )
    fewshot_separator: str = field(default="\n\n", metadata={"help": "Text between examples."})
    target_delimiter: str = field(
        default=" ", metadata={"help": "Text between context and answer."}
    )
    metrics: list[str] = field(
        default_factory=lambda: ["accuracy"], metadata={"help": "Metric families."}
    )
    stop: list[str] = field(
        default_factory=lambda: ["\n\n"], metadata={"help": "generate: stop strings."}
    )
    max_tokens: int = field(default=32, metadata={"help": "generate: most new tokens."})
    match: str = field(
        default="exact", metadata={"help": "generate: exact | contains | f1 | regex."}
    )
    docs: list[dict] | None = field(
        default=None, metadata={"help": "Inline items (bundled suites)."}
    )
    source: str = field(
        default="<inline>", metadata={"help": "Where the task came from (for errors)."}
    )

    def __post_init__(self) -> None:
        where = self.source
        if self.kind not in KINDS:
            raise InvalidInputError(
                f"{where}: unknown kind {self.kind!r}", f"use one of: {', '.join(KINDS)}"
            )
        if self.kind == "multiple_choice" and (not self.choices or not self.target):
            raise InvalidInputError(
                f"{where}: a multiple_choice task needs 'choices' and 'target'", "add both keys"
            )
        if self.kind == "loglikelihood" and not self.target:
            raise InvalidInputError(f"{where}: a loglikelihood task needs 'target'", "add one")
        if self.kind == "generate" and not self.target and "accuracy" in self.metrics:
            raise InvalidInputError(
                f"{where}: a generate task scored for accuracy needs 'target'",
                "add a target field, or list only metrics that need none (toxicity, efficiency)",
            )
        if not isinstance(self.fewshot, int) or self.fewshot < 0:
            raise InvalidInputError(
                f"{where}: fewshot must be an integer >= 0", "fix the fewshot key"
            )
        if self.match not in ("exact", "contains", "f1", "regex"):
            raise InvalidInputError(
                f"{where}: unknown match {self.match!r}", "use exact, contains, f1 or regex"
            )
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        for key in ("prompt", "choices", "target"):
            value = getattr(self, key)
            if value is not None:
                _compile(value, f"{where}: key '{key}'")


# -- loading ------------------------------------------------------------------------------


def load_task(path: str | Path) -> Task:
    """Read and validate a task YAML (ours, or an lm-evaluation-harness one)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"no task file {path}", "check the path")
    text = path.read_text()
    if "!function" in text:
        raise InvalidInputError(
            f"{path}: '!function' hooks run Python from the YAML",
            "lmforge does not run them; use templates",
        )
    try:
        node = yaml.compose(text)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InvalidInputError(
            f"{path}: not valid YAML ({e})".replace("\n", " "), "fix the syntax"
        ) from e
    if not isinstance(raw, dict):
        raise InvalidInputError(
            f"{path}: a task file must be a mapping of keys",
            "see the task format in docs/evaluate.md",
        )
    lines = {k.value: k.start_mark.line + 1 for k, _ in node.value} if node is not None else {}
    if "output_type" in raw or "doc_to_text" in raw:
        from lmforge.evaluate.lm_eval_yaml import from_lm_eval

        return from_lm_eval(raw, path)
    known = {f.name for f in fields(Task)} - {"docs", "source"}
    for key in raw:
        if key not in known:
            raise InvalidInputError(
                f"{path}:{lines.get(key, '?')}: unknown key {key!r}",
                f"use only: {', '.join(sorted(known))}",
            )
    for key in ("name", "kind"):
        if key not in raw:
            raise InvalidInputError(f"{path}: missing key {key!r}", f"add '{key}:' to the file")
    data = raw.get("data") or {}
    if not isinstance(data, dict) or "path" not in data:
        raise InvalidInputError(
            f"{path}:{lines.get('data', '?')}: 'data' needs a 'path'", "add data: {path: FILE}"
        )
    data = {**data, "path": str((path.parent / data["path"]).resolve())}
    return Task(**{**raw, "data": data, "source": str(path)})


def read_rows(task: Task) -> list[dict]:
    """The task's items: inline docs, or the rows of its JSONL/CSV file."""
    if task.docs is not None:
        rows = task.docs
    else:
        file = Path(task.data["path"])
        if not file.is_file():
            raise InvalidInputError(f"{task.source}: data file {file} not found", "fix data.path")
        fmt = task.data.get("format") or ("csv" if file.suffix == ".csv" else "jsonl")
        rows = []
        if fmt == "csv":
            with file.open(newline="") as f:
                rows = list(csv.DictReader(f))
        elif fmt in ("jsonl", "json"):
            for n, line in enumerate(file.read_text().splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise InvalidInputError(
                            f"{file}:{n}: not valid JSON ({e.msg})", "fix that line"
                        ) from e
        else:
            raise InvalidInputError(
                f"{task.source}: unknown data format {fmt!r}", "use jsonl or csv"
            )
    limit = task.data.get("limit")
    return rows[:limit] if limit else rows


# -- rendering ----------------------------------------------------------------------------


def _env():
    import jinja2

    return jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _compile(template: str, where: str):
    import jinja2

    try:
        return _env().from_string(template)
    except jinja2.TemplateSyntaxError as e:
        raise InvalidInputError(
            f"{where}: template error at line {e.lineno}: {e.message}", "fix the template"
        ) from e


def render(template: str, row: dict, where: str) -> str:
    """A field's value if `template` names one, else the rendered Jinja2 template."""
    import jinja2

    if template in row:
        return str(row[template])
    try:
        return _compile(template, where).render(**row)
    except jinja2.UndefinedError as e:
        raise InvalidInputError(
            f"{where}: {e.message}", "add the field to the data or fix the template"
        ) from e


def _as_list(value: str, where: str) -> list[str]:
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError) as e:
        raise InvalidInputError(
            f"{where}: choices are not a list ({value[:60]!r})", "give a list of strings"
        ) from e
    if not isinstance(parsed, list | tuple) or not parsed:
        raise InvalidInputError(
            f"{where}: choices are not a non-empty list", "give a list of strings"
        )
    return [str(c) for c in parsed]


@dataclass
class Item:
    """One rendered item: the exact context, the continuations, and the right answer."""

    id: str
    context: str
    choices: list[str] = field(default_factory=list)
    target: int | str | None = 0  # None: an open-ended generate item (no reference)
    doc: dict = field(default_factory=dict)


def _choices_and_target(task: Task, row: dict, where: str) -> tuple[list[str], int | str | None]:
    if task.kind == "perplexity":
        return [], ""
    if task.kind == "generate" and not task.target:
        return [], None
    choices = []
    if task.choices:
        if task.choices.isidentifier() and task.choices not in row:
            raise InvalidInputError(
                f"{where}: field {task.choices!r} (the choices) is missing", "add it to every row"
            )
        raw = row.get(task.choices) if task.choices in row else render(task.choices, row, where)
        choices = (
            [str(c) for c in raw] if isinstance(raw, list | tuple) else _as_list(str(raw), where)
        )
    if task.target in row:
        target = row[task.target]
    elif task.target and task.target.isidentifier():
        raise InvalidInputError(
            f"{where}: no target (field {task.target!r} is missing)", "give every row its answer"
        )
    else:
        target = render(task.target, row, where) if task.target else ""
    if target is None or target == "":
        raise InvalidInputError(f"{where}: no target", "give every row its answer")
    if task.kind != "multiple_choice":
        return choices, str(target)
    if isinstance(target, int) or (
        isinstance(target, str) and target.strip().lstrip("-").isdigit()
    ):
        index = int(target)
        if not 0 <= index < len(choices):
            raise InvalidInputError(
                f"{where}: target index {index} is out of range for {len(choices)} choices",
                "fix the target",
            )
        return choices, index
    if str(target) not in choices:
        raise InvalidInputError(
            f"{where}: target {target!r} is not one of the choices", "fix the target"
        )
    return choices, choices.index(str(target))


def build_items(task: Task, rows: list[dict] | None = None) -> list[Item]:
    """Render every row into an Item, few-shot examples included (never the item itself)."""
    rows = read_rows(task) if rows is None else rows
    if not rows:
        raise InvalidInputError(f"{task.source}: the task has no items", "check the data file")
    solved = []
    for n, row in enumerate(rows, 1):
        where = f"{task.source}: row {n}"
        if not isinstance(row, dict):
            raise InvalidInputError(
                f"{where}: not an object", "each row must be a mapping of fields"
            )
        context = render(task.prompt, row, where)
        choices, target = _choices_and_target(task, row, where)
        answer = choices[target] if isinstance(target, int) else (target or "")
        solved.append((row, context, choices, target, answer))
    items = []
    for n, (row, context, choices, target, _) in enumerate(solved):
        if task.fewshot:
            rng = random.Random(f"{task.fewshot_seed}-{n}")
            pool = [i for i in range(len(solved)) if i != n]
            shots = rng.sample(pool, min(task.fewshot, len(pool)))
            examples = [solved[i][1] + task.target_delimiter + solved[i][4] for i in shots]
            context = task.fewshot_separator.join([*examples, context])
        item_id = str(row.get("id", n))
        items.append(Item(item_id, context, choices, target, row))
    return items
