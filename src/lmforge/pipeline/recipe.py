"""Reading a recipe: YAML parsed with the line of every step and key, checked before any run.

Every problem found (an unknown step type or key, a missing required key, a value of the
wrong kind, a reference to a step that is not there, a cycle, an artifact that does not
exist, a part of lmforge that is not installed) is reported with its line, all at once.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.errors import InvalidInputError, LmforgeError
from lmforge.pipeline.registry import STEPS, StepType, is_artifact, required

REF = re.compile(r"\$\{([^}]*)\}")
STEP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$")
TOP_KEYS = ("name", "description", "steps")


class RecipeError(InvalidInputError):
    """A recipe that cannot run; `problems` holds (line, message) pairs, lines from 1."""

    def __init__(self, path: Path | str, problems: list[tuple[int, str]]):
        self.path, self.problems = Path(path), sorted(problems)
        lines = [f"{self.path}:{line}: {message}" for line, message in self.problems]
        super().__init__("\n".join(lines))


@dataclass
class Step:
    """One step of a recipe, as written; `values` are its keys but `step`."""

    id: str
    type: str
    values: dict[str, Any]
    line: int
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def refs(self) -> list[str]:
        """The step ids this step reads, in the order they appear."""
        found: list[str] = []
        for value in self.values.values():
            for ref in refs_in(value):
                if ref not in found:
                    found.append(ref)
        return found

    @property
    def kind(self) -> StepType:
        return STEPS[self.type]


@dataclass
class Recipe:
    name: str
    path: Path
    steps: list[Step]  # in run order: every step after the steps it reads
    description: str = ""

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise InvalidInputError(
            f"{self.path} has no step {step_id!r}",
            f"use one of: {', '.join(s.id for s in self.steps)}",
        )


def refs_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return REF.findall(value)
    if isinstance(value, list):
        return [r for v in value for r in refs_in(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in refs_in(v)]
    return []


def substitute(value: Any, outputs: dict[str, str]) -> Any:
    """`value` with every `${id}` replaced by `outputs[id]` (lists and mappings too)."""
    if isinstance(value, str):
        return REF.sub(lambda m: str(outputs[m.group(1)]), value)
    if isinstance(value, list):
        return [substitute(v, outputs) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, outputs) for k, v in value.items()}
    return value


def load_recipe(
    path: str | Path, *, skip: tuple[str, ...] = (), check_store: bool = True
) -> Recipe:
    """Parse and check the recipe at `path`; raises RecipeError listing every problem.

    `skip`: step ids to leave out (a step that reads one of them is an error).
    `check_store`: also check that the artifacts the recipe names literally exist.
    """
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise InvalidInputError(f"cannot read recipe {path}: {e}", "check the path") from e
    try:
        _refuse_aliases(text, path)  # before any node is built, so nothing can expand
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise RecipeError(path, [(line, f"not valid YAML: {getattr(e, 'problem', e)}")]) from e
    except RecursionError:  # thousands of nested [ or {: the parser's recursion runs out
        raise RecipeError(path, [(1, "nested too deeply to be a recipe")]) from None
    problems: list[tuple[int, str]] = []
    if not isinstance(root, yaml.MappingNode):
        raise RecipeError(path, [(1, "a recipe is a mapping with `name:` and `steps:`")])
    name, description, steps_node = path.stem, "", None
    for key, value in _pairs(root, problems, "recipe key"):
        line = key.start_mark.line + 1
        if key.value == "steps":
            steps_node = value
        elif key.value in ("name", "description"):
            text_value = _construct(value)
            if not isinstance(text_value, str):
                problems.append((line, f"`{key.value}` must be text"))
            elif key.value == "name":
                name = text_value
            else:
                description = text_value
        else:
            problems.append((line, f"unknown recipe key {key.value!r}; use {', '.join(TOP_KEYS)}"))
    if not STEP_ID.match(name):
        problems.append((1, f"recipe name {name!r}: use letters, digits, '_' or '-'"))
    if not isinstance(steps_node, yaml.MappingNode) or not steps_node.value:
        line = steps_node.start_mark.line + 1 if steps_node is not None else 1
        problems.append((line, "`steps:` must map step ids to steps (id: {step: TYPE, ...})"))
        raise RecipeError(path, problems)
    steps = [s for s in _read_steps(steps_node, problems) if s.id not in skip]
    for step_id in skip:
        if step_id not in {s.id for s in _read_steps(steps_node, [])}:
            problems.append((1, f"--skip {step_id}: there is no such step"))
    recipe = Recipe(name, path, steps, description)
    check(recipe, problems, check_store=check_store, skipped=skip)
    if problems:
        raise RecipeError(path, problems)
    recipe.steps = _order(recipe.steps, problems)
    if problems:
        raise RecipeError(path, problems)
    return recipe


def _refuse_aliases(text: str, path: Path) -> None:
    """Raise a one-line RecipeError at the first YAML alias (else anchor) in `text`.

    A recipe needs neither, and aliases of aliases expand exponentially when a value is built
    ("billion laughs": nine levels of nine take gigabytes), so the parser's events are read
    without building anything and the first one found is the only problem reported.
    """
    import yaml

    loader = yaml.SafeLoader(text)
    anchor = None
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1
                raise RecipeError(path, [(line, f"YAML alias *{event.anchor}: {_NO_ALIASES}")])
            if anchor is None and getattr(event, "anchor", None) is not None:
                anchor = event
    finally:
        loader.dispose()
    if anchor is not None:
        line = anchor.start_mark.line + 1
        raise RecipeError(path, [(line, f"YAML anchor &{anchor.anchor}: {_NO_ALIASES}")])


_NO_ALIASES = (
    "a recipe takes no YAML anchors (&) or aliases (*); write each value out where it is used"
)


def _construct(node):
    import yaml

    return yaml.SafeLoader("").construct_object(node, deep=True)


def _pairs(node, problems, what: str):
    """A mapping node's (key, value) nodes; a repeated key is a problem."""
    seen: set[str] = set()
    for key, value in node.value:
        if key.value in seen:
            problems.append((key.start_mark.line + 1, f"{what} {key.value!r} appears twice"))
            continue
        seen.add(key.value)
        yield key, value


def _read_steps(node, problems) -> list[Step]:
    import yaml

    steps = []
    for key, value in _pairs(node, problems, "step"):
        line, step_id = key.start_mark.line + 1, str(key.value)
        if not STEP_ID.match(step_id):
            problems.append((line, f"step id {step_id!r}: use letters, digits, '_' or '-'"))
            continue
        if not isinstance(value, yaml.MappingNode):
            problems.append((line, f"step {step_id!r} must be a mapping (step: TYPE, keys ...)"))
            continue
        values, lines = {}, {}
        for k, v in _pairs(value, problems, f"step {step_id!r}: key"):
            values[str(k.value)], lines[str(k.value)] = _construct(v), k.start_mark.line + 1
        step_type = values.pop("step", step_id if step_id in STEPS else None)
        if step_type not in STEPS:
            what = f"unknown step type {step_type!r}" if step_type else "no `step:` type"
            problems.append(
                (
                    lines.get("step", line),
                    f"step {step_id!r}: {what}; use {', '.join(sorted(STEPS))}",
                )
            )
            continue
        steps.append(Step(step_id, step_type, values, line, lines))
    return steps


def check(
    recipe: Recipe,
    problems: list[tuple[int, str]],
    *,
    check_store: bool = True,
    skipped: tuple[str, ...] = (),
) -> None:
    """Add every problem of `recipe`'s steps to `problems` (keys, kinds, references, store)."""
    ids = {s.id: s for s in recipe.steps}
    outputs = {s.values.get("out") or f"{recipe.name}-{s.id}": s.id for s in recipe.steps}
    for i, step in enumerate(recipe.steps):
        kind = step.kind
        where = f"step {step.id!r} ({step.type})"
        missing = kind.missing_module()
        if missing:
            problems.append(
                (step.line, f"{where}: needs {missing}, which this lmforge does not have yet; "
                 f"leave the step out (lmforge run --skip {step.id})")
            )  # fmt: skip
            continue
        schema = kind.schema()
        for key, value in step.values.items():
            line = step.lines.get(key, step.line)
            if key not in schema:
                problems.append(
                    (line, f"{where}: unknown key {key!r}; use any of: {', '.join(sorted(schema))}")
                )
                continue
            for ref in refs_in(value):
                if ref in skipped:
                    problems.append((line, f"{where}: reads ${{{ref}}}, which --skip leaves out"))
                elif ref not in ids:
                    problems.append((line, f"{where}: ${{{ref}}} names no step of this recipe"))
                elif ids[ref].type == "serve":
                    problems.append((line, f"{where}: a serve step gives nothing to read"))
            kind_problem = _kind_problem(value, schema[key], _hints(kind, key))
            if kind_problem:
                problems.append((line, f"{where}: {key} {kind_problem}"))
            elif check_store and is_artifact(schema[key]):
                for name in value if isinstance(value, list) else [value]:
                    problem = _artifact_problem(name, outputs)
                    if problem:
                        problems.append((line, f"{where}: {problem}"))
        for key, f in schema.items():
            if required(f) and key not in step.values:
                problems.append((step.line, f"{where}: missing required key {key!r} ({_help(f)})"))
        if step.type == "serve" and i != len(recipe.steps) - 1:
            problems.append((step.line, f"{where}: serve runs until stopped, so it comes last"))
        if not any(line == step.line or line in step.lines.values() for line, _ in problems):
            _check_values(step, problems)


def _help(f) -> str:
    return f.metadata.get("help", "").rstrip(".") or "required"


def _hints(kind: StepType, key: str):
    for cls in (kind.args, kind.config_class()):
        if cls is not None and key in cls.__dataclass_fields__:
            return typing.get_type_hints(cls)[key]
    return Any


def _kind_problem(value: Any, f, hint) -> str | None:
    """Why `value` does not fit the field's annotation (None when it does)."""
    if _fits(value, hint):
        return None
    return f"must be {_describe(hint)}, not {type(value).__name__} {value!r}"


def _fits(value: Any, hint) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, __import__("types").UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, list) and all(_fits(v, args[0] if args else Any) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, __import__("types").UnionType):
        return " or ".join(_describe(a) for a in args)
    if hint is type(None):
        return "null"
    if origin in (list, tuple):
        return f"a list of {_describe(args[0])}" if args else "a list"
    return getattr(hint, "__name__", str(hint))


def _artifact_problem(name: Any, outputs: dict[str, str]) -> str | None:
    """Why the artifact a step names literally cannot be read (None when it can)."""
    if name is None or refs_in(name) or name == "default":
        return None
    from lmforge.models.default import DEFAULT_NAME
    from lmforge.store import Store, check_name

    text = str(name)
    if "/" in text or text.startswith(("~", ".")) or text.endswith(".gguf"):
        return None if Path(text).expanduser().exists() else f"no model at path {text!r}"
    if text in outputs:
        return f"{text!r} is what step {outputs[text]!r} writes: read it as ${{{outputs[text]}}}"
    try:
        check_name(text)
    except LmforgeError as e:
        return str(e)
    if text == DEFAULT_NAME or Store().exists(text):
        return None
    return f"no artifact named {text!r} (see `lmforge models list`)"


def _check_values(step: Step, problems) -> None:
    """Build and validate the step's dataclasses now, unless a value waits for a reference."""
    kind = step.kind
    for cls in (kind.args, kind.config_class()):
        if cls is None:
            continue
        values = {k: v for k, v in step.values.items() if k in cls.__dataclass_fields__}
        if any(refs_in(v) for v in values.values()):
            continue  # the value is known at run time; the step checks it then
        try:
            build(cls, values)
        except LmforgeError as e:
            problems.append((step.line, f"step {step.id!r} ({step.type}): {e}"))
        except (TypeError, ValueError) as e:
            problems.append((step.line, f"step {step.id!r} ({step.type}): {e}"))


def build(cls: type, values: dict[str, Any]):
    """An instance of dataclass `cls` from `values`, validated when it has `validate()`."""
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    return validate() or obj if callable(validate) else obj


def _order(steps: list[Step], problems) -> list[Step]:
    """Steps in run order: the recipe's order, moved only as the references require."""
    by_id = {s.id: s for s in steps}
    done: list[Step] = []
    placed: set[str] = set()
    remaining = list(steps)
    while remaining:
        ready = next((s for s in remaining if set(s.refs) <= placed), None)
        if ready is None:
            cycle = _cycle(remaining, by_id)
            path = " -> ".join(f"{s} (line {by_id[s].line})" for s in cycle)
            problems.append((by_id[cycle[0]].line, f"the steps read each other in a cycle: {path}"))
            return steps
        done.append(ready)
        placed.add(ready.id)
        remaining.remove(ready)
    return done


def _cycle(remaining: list[Step], by_id: dict[str, Step]) -> list[str]:
    """One cycle among `remaining` (each of which reads another of them), first id repeated."""
    left = {s.id for s in remaining}
    at, seen = remaining[0].id, []
    while at not in seen:
        seen.append(at)
        at = next(r for r in by_id[at].refs if r in left)
    return [*seen[seen.index(at) :], at]
