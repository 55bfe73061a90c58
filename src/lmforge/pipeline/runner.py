"""Running a recipe: steps in order, each skipped when its content-hash key is unchanged.

A step's key is the sha256 of its type, its values with every `${id}` resolved, the digests
of what it reads (a store artifact's file hashes from `artifact.json`, a file's content), and
the lmforge version. `$LMFORGE_HOME/runs/RECIPE/state.json` (rewritten atomically after every
step) holds per step its key, output, digest, status, seconds and energy. A step whose key
matches and whose output is still there unchanged is skipped; otherwise it runs, and the
steps that read it follow when its output changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lmforge.energy import EnergyMeter
from lmforge.errors import LmforgeError
from lmforge.pipeline.recipe import Recipe, Step, build, refs_in, substitute
from lmforge.pipeline.registry import STEPS, Output, StepCall, is_artifact


def run_dir(recipe: Recipe) -> Path:
    from lmforge.store import home

    return home() / "runs" / recipe.name


def read_state(recipe: Recipe) -> dict[str, Any]:
    path = run_dir(recipe) / "state.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = {}
    state.setdefault("steps", {})
    return state


def write_state(recipe: Recipe, state: dict[str, Any]) -> Path:
    path = run_dir(recipe) / "state.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    with tmp.open("w") as f:
        json.dump(state, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


# -- digests ---------------------------------------------------------------------------------


def _sha(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def artifact_digest(name: str) -> str:
    """The digest of an artifact's weights: its `artifact.json` hashes of model/ or adapter/.

    Results and documents added later (evals/, card.md) leave it unchanged.
    """
    from lmforge.store import Store

    meta = Store().get(name).meta
    hashes = {
        k: v for k, v in (meta.get("hashes") or {}).items() if k.startswith(("model/", "adapter/"))
    }
    return _sha(hashes or {"created": meta.get("created")})


def files_digest(paths: list[Path]) -> str:
    from lmforge.store import hash_files

    out = {}
    for p in paths:
        if p.is_dir():
            out[str(p)] = hash_files(p)
        else:
            digest = hashlib.sha256()
            with p.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            out[str(p)] = digest.hexdigest()
    return _sha(out)


def output_digest(output: dict[str, Any]) -> str | None:
    """The digest of a recorded output as it is now; None when it is gone."""
    from lmforge.store import Store

    if output.get("artifact"):
        if not Store().exists(output["artifact"]):
            return None
        return artifact_digest(output["artifact"])
    files = [Path(f) for f in output.get("files", [])]
    if not all(f.exists() for f in files):
        return None
    return files_digest(files) if files else ""


def _default_digest() -> str:
    """The embedded model, named by the file it ships as (not by its converted artifact)."""
    from lmforge.models.default import default_gguf_path

    path = default_gguf_path()
    return _sha({"default": str(path), "bytes": path.stat().st_size})


def _input_digest(key: str, value: Any, artifact_field: bool) -> Any:
    """What a literal value the step reads stands for: an artifact's or a file's digest."""
    from lmforge.models.default import DEFAULT_NAME
    from lmforge.store import Store, check_name

    if isinstance(value, list):
        return [_input_digest(key, v, artifact_field) for v in value]
    if not isinstance(value, str) or key == "out":
        return None
    if artifact_field and value in ("default", DEFAULT_NAME):
        return _default_digest()
    try:
        named = check_name(value) and Store().exists(value)
    except LmforgeError:
        named = False
    if named and (artifact_field or "/" not in value):
        return artifact_digest(value)
    path = Path(value).expanduser()
    if path.exists() and (artifact_field or path.is_file() or "/" in value):
        return files_digest([path])
    return None


# -- the plan --------------------------------------------------------------------------------


@dataclass
class Decision:
    step: Step
    action: str  # "cached" | "run" | "skip"
    reason: str
    key: str | None = None
    values: dict[str, Any] = field(default_factory=dict)  # with references resolved


def decide(
    step: Step,
    recipe: Recipe,
    state: dict[str, Any],
    outputs: dict[str, dict[str, Any]],
    forced: bool,
) -> Decision:
    """Whether `step` runs, given the outputs of the steps before it (`outputs[id]`)."""
    kind = STEPS[step.type]
    for ref in step.refs:
        out = outputs.get(ref)
        if out is None:
            return Decision(step, "run", f"after {ref}, which runs first")
        if out.get("closed") or out.get("passed") is False:
            return Decision(step, "skip", f"{ref} is closed")
    values = substitute(step.values, {r: outputs[r]["value"] for r in step.refs})
    schema = kind.schema()
    inputs = {f"${{{r}}}": outputs[r]["digest"] for r in step.refs} | {
        k: _input_digest(k, v, is_artifact(schema[k]))
        for k, v in step.values.items()
        if not refs_in(v)
    }
    if kind.fingerprint is not None:
        try:
            args = {k: v for k, v in values.items() if k in kind.args.__dataclass_fields__}
            inputs["fingerprint"] = kind.fingerprint(build(kind.args, args))
        except LmforgeError:
            inputs["fingerprint"] = None  # the step says what is wrong when it runs
    key = _sha({"step": kind.name, "values": values, "inputs": inputs, "version": _version()})
    prev = state["steps"].get(step.id)
    if forced:
        return Decision(step, "run", "forced", key, values)
    if not kind.cache:
        return Decision(step, "run", "acts outside lmforge: never cached", key, values)
    if prev is None:
        return Decision(step, "run", "not run before", key, values)
    if prev.get("status") != "done":
        status = {"running": "killed"}.get(prev.get("status"), prev.get("status"))
        return Decision(step, "run", f"{status} last time", key, values)
    if prev.get("key") != key:
        return Decision(step, "run", "its config or inputs changed", key, values)
    if output_digest(prev) != prev.get("digest"):
        return Decision(step, "run", "its output is gone or changed", key, values)
    return Decision(step, "cached", "unchanged", key, values)


def _version() -> str:
    from lmforge.store import versions

    return versions().get("lmforge", "")


def _forced(recipe: Recipe, force: tuple[str, ...], start: str | None) -> set[str]:
    for step_id in (*force, *([start] if start else [])):
        recipe.step(step_id)  # a clear error for an unknown id
    ids = [s.id for s in recipe.steps]
    after = set(ids[ids.index(start) :]) if start else set()
    return set(force) | after


def plan(
    recipe: Recipe, *, force: tuple[str, ...] = (), start: str | None = None
) -> list[Decision]:
    """What `run` would do now, step by step, and why (runs nothing)."""
    state, forced = read_state(recipe), _forced(recipe, force, start)
    outputs: dict[str, dict[str, Any]] = {}
    decisions = []
    for step in recipe.steps:
        d = decide(step, recipe, state, outputs, step.id in forced)
        decisions.append(d)
        if d.action == "cached":
            outputs[step.id] = state["steps"][step.id]
        elif d.action == "skip":
            outputs[step.id] = {"closed": True}
    return decisions


# -- running ---------------------------------------------------------------------------------


def run(
    recipe: Recipe,
    *,
    force: tuple[str, ...] = (),
    start: str | None = None,
    serve: bool = False,
    console=None,
) -> dict[str, dict[str, Any]]:
    """Run `recipe`; returns each step's record (as in state.json).

    A failing step is recorded as failed, the steps before it keep their results, and the
    error propagates; the next run starts again at that step.
    """
    from rich.console import Console

    console = console or Console()
    state, forced = read_state(recipe), _forced(recipe, force, start)
    state.update(recipe=str(recipe.path), name=recipe.name)
    outputs: dict[str, dict[str, Any]] = {}
    console.print(f"[bold]lmforge run {recipe.path}[/bold] ({len(recipe.steps)} steps)")
    for step in recipe.steps:
        d = decide(step, recipe, state, outputs, step.id in forced)
        label = f"{step.id} ({step.type})"
        if d.action == "cached":
            outputs[step.id] = state["steps"][step.id]
            console.print(f"[dim]  cached   {label}[/dim]")
            continue
        if d.action == "skip":
            outputs[step.id] = {"closed": True}
            state["steps"][step.id] = {"type": step.type, "status": "skipped", "why": d.reason}
            write_state(recipe, state)
            console.print(f"[yellow]  skipped  {label}: {d.reason}[/yellow]")
            continue
        if step.type == "serve":  # the last step: say where everything is before serving
            _summary(recipe, state, console)
        console.rule(f"{label}: {d.reason}", align="left")
        record = _run_step(recipe, step, d, state, serve)
        outputs[step.id] = record
        closed = "  (gate closed)" if record.get("passed") is False else ""
        console.print(f"[green]  done     {label}  {record['seconds']:.1f} s{closed}[/green]")
    if not recipe.steps or recipe.steps[-1].type != "serve":
        _summary(recipe, state, console)
    return state["steps"]


def _run_step(
    recipe: Recipe, step: Step, d: Decision, state: dict[str, Any], serve: bool
) -> dict[str, Any]:
    from lmforge.store import Store

    kind = STEPS[step.type]
    config_class = kind.config_class()
    args_values = {k: v for k, v in d.values.items() if k in kind.args.__dataclass_fields__}
    out_name = d.values.get("out") or f"{recipe.name}-{step.id}"
    prev = state["steps"].get(step.id) or {}
    record: dict[str, Any] = {
        "type": step.type,
        "key": d.key,
        "status": "running",
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    state["steps"][step.id] = record
    write_state(recipe, state)
    started = time.perf_counter()
    try:
        args = build(kind.args, args_values)
        config = None
        if config_class is not None:
            cfg = {k: v for k, v in d.values.items() if k in config_class.__dataclass_fields__}
            config = build(config_class, cfg)
        # the output of an earlier run of this step is stale: the step writes it anew
        stale = kind.produces == "artifact" and prev.get("artifact") == out_name
        if stale and Store().exists(out_name):
            Store().remove(out_name)
        folder = run_dir(recipe) / step.id
        resume = prev.get("status") in ("failed", "interrupted") and prev.get("key") == d.key
        call = StepCall(step.id, args, config, out_name, folder, serve, resume)
        with EnergyMeter() as energy:
            output: Output = kind.run(call)
    except BaseException as e:
        interrupted = isinstance(e, KeyboardInterrupt)
        record.update(
            status="interrupted" if interrupted else "failed",
            error=str(e) or type(e).__name__,
            seconds=round(time.perf_counter() - started, 3),
        )
        write_state(recipe, state)
        if isinstance(e, LmforgeError):
            raise StepFailed(step, e) from e
        raise
    record.update(
        status="done",
        artifact=output.artifact,
        files=[str(f) for f in output.files],
        value=output.value,
        seconds=round(time.perf_counter() - started, 3),
        energy=energy.result,
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if output.passed is not None:
        record["passed"] = output.passed
    record["digest"] = output_digest(record)
    write_state(recipe, state)
    return record


class StepFailed(LmforgeError):
    """A step's own error, with the step and its recipe line."""

    def __init__(self, step: Step, error: LmforgeError):
        self.step, self.error = step, error
        super().__init__(
            f"step {step.id!r} ({step.type}, line {step.line}) failed: {error.problem}",
            (f"{error.fix}; then " if error.fix else "fix it, then ")
            + "run again: the finished steps are kept and skipped",
        )


def _summary(recipe: Recipe, state: dict[str, Any], console) -> None:
    """Where everything is: a table of the steps, their outputs, seconds and energy."""
    from rich.table import Table

    table = Table(title=f"{recipe.name}: {run_dir(recipe) / 'state.json'}")
    for col in ("step", "type", "status", "output", "seconds", "energy"):
        table.add_column(col)
    for step in recipe.steps:
        r = state["steps"].get(step.id, {})
        out = r.get("artifact") or ", ".join(r.get("files", [])) or r.get("why", "")
        energy = r.get("energy") or {}
        joules = energy.get("joules")
        where = f"{joules:.0f} J ({energy.get('method')})" if joules is not None else ""
        seconds = r.get("seconds")
        table.add_row(
            step.id,
            step.type,
            r.get("status", "-"),
            out,
            f"{seconds:.1f}" if seconds is not None else "",
            where,
        )
    console.print(table)
    console.print(f"artifacts are in {_store_root()} (`lmforge models list`)")


def _store_root() -> Path:
    from lmforge.store import Store

    return Store().root


def print_plan(decisions: list[Decision], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="plan")
    for col in ("step", "type", "line", "action", "why"):
        table.add_column(col)
    styles = {"cached": "dim", "run": "bold", "skip": "yellow"}
    for d in decisions:
        table.add_row(
            d.step.id, d.step.type, str(d.step.line), d.action, d.reason, style=styles[d.action]
        )
    console.print(table)
