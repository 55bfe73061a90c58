"""`lmforge run`: recipes checked with their lines, steps cached by content hash, resumed."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from lmforge.errors import LmforgeError
from lmforge.pipeline import (
    STEPS,
    Output,
    RecipeError,
    StepFailed,
    load_recipe,
    plan,
    read_state,
    register_step,
    run,
    unregister_step,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


# -- a cheap step type, registered for these tests through the public registry --------------


@dataclass
class NoteArgs:
    text: str = ""
    reads: list[str] | None = None  # files of earlier steps (${id}), folded into the note


CALLS: list[str] = []
FAIL: set[str] = set()
RESUMED: list[str] = []  # steps told to continue where they stopped (tune: --resume)


@pytest.fixture(autouse=True)
def note_step():
    @register_step("note", args=NoteArgs, produces="files")
    def note(call):
        """Write call.args.text and the notes it reads into a file."""
        CALLS.append(call.id)
        if call.resume:
            RESUMED.append(call.id)
        if call.id in FAIL:
            raise LmforgeError(f"{call.id} broke", "mend it")
        call.folder.mkdir(parents=True, exist_ok=True)
        path = call.folder / "note.txt"
        text = call.args.text + "".join(Path(p).read_text() for p in call.args.reads or [])
        path.write_text(text)
        return Output(files=[path])

    CALLS.clear()
    FAIL.clear()
    RESUMED.clear()
    yield
    unregister_step("note")


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


THREE = """\
name: three
steps:
  a:
    step: note
    text: A{a}
  b:
    step: note
    text: B{b}
    reads:
      - ${{a}}
  c:
    step: note
    text: C{c}
    reads:
      - ${{b}}
"""


def three(tmp_path, a="", b="", c=""):
    return load_recipe(write(tmp_path, THREE.format(a=a, b=b, c=c)))


def quiet_run(recipe, **kw):
    from rich.console import Console

    return run(recipe, console=Console(quiet=True), **kw)


# -- the cache -------------------------------------------------------------------------------


def test_a_rerun_skips_every_done_step(tmp_path):
    steps = quiet_run(three(tmp_path))
    assert CALLS == ["a", "b", "c"]
    assert Path(steps["c"]["files"][0]).read_text() == "CBA"
    assert {s["status"] for s in steps.values()} == {"done"}
    CALLS.clear()
    quiet_run(three(tmp_path))
    assert CALLS == []
    assert [d.action for d in plan(three(tmp_path))] == ["cached"] * 3


def test_a_changed_step_reruns_with_what_follows_only(tmp_path):
    quiet_run(three(tmp_path))
    CALLS.clear()
    decisions = plan(three(tmp_path, b="2"))
    assert [(d.action, d.reason) for d in decisions] == [
        ("cached", "unchanged"),
        ("run", "its config or inputs changed"),
        ("run", "after b, which runs first"),
    ]
    steps = quiet_run(three(tmp_path, b="2"))
    assert CALLS == ["b", "c"]
    assert Path(steps["c"]["files"][0]).read_text() == "CB2A"


def test_a_changed_last_step_reruns_alone(tmp_path):
    quiet_run(three(tmp_path))
    CALLS.clear()
    quiet_run(three(tmp_path, c="3"))
    assert CALLS == ["c"]


def test_every_reference_in_a_list_counts(tmp_path):
    text = (
        "name: two\nsteps:\n  a:\n    step: note\n    text: {a}\n  b:\n    step: note\n"
        "  c:\n    step: note\n    reads:\n      - ${{a}}\n      - ${{b}}\n"
    )
    quiet_run(load_recipe(write(tmp_path, text.format(a="one"))))
    CALLS.clear()
    quiet_run(load_recipe(write(tmp_path, text.format(a="two"))))
    assert CALLS == ["a", "c"]


def test_an_output_removed_by_hand_is_written_again(tmp_path):
    steps = quiet_run(three(tmp_path))
    Path(steps["b"]["files"][0]).unlink()
    CALLS.clear()
    quiet_run(three(tmp_path))
    # b runs again; its note is the same bytes, so c (which reads it) stays cached
    assert CALLS == ["b"]


def test_force_and_from(tmp_path):
    quiet_run(three(tmp_path))
    CALLS.clear()
    quiet_run(three(tmp_path), force=("a",))
    assert CALLS == ["a"]  # same output: b and c stay cached
    CALLS.clear()
    quiet_run(three(tmp_path), start="b")
    assert CALLS == ["b", "c"]
    with pytest.raises(LmforgeError, match="no step 'zz'"):
        quiet_run(three(tmp_path), force=("zz",))


def test_a_failed_step_keeps_earlier_results_and_the_rerun_resumes(tmp_path):
    FAIL.add("b")
    with pytest.raises(StepFailed, match=r"step 'b' \(note, line 6\) failed: b broke"):
        quiet_run(three(tmp_path))
    state = read_state(three(tmp_path))["steps"]
    assert state["a"]["status"] == "done" and state["b"]["status"] == "failed"
    assert "c" not in state
    assert Path(state["a"]["files"][0]).is_file()
    FAIL.clear()  # fixed
    CALLS.clear()
    assert [d.reason for d in plan(three(tmp_path))][:2] == ["unchanged", "failed last time"]
    quiet_run(three(tmp_path))
    assert CALLS == ["b", "c"]  # a is skipped
    assert RESUMED == ["b"]  # same key as the failed run: b may continue from a checkpoint


def test_state_is_json_with_key_status_time_and_energy(tmp_path, lmforge_home):
    quiet_run(three(tmp_path))
    state = json.loads((lmforge_home / "runs" / "three" / "state.json").read_text())
    a = state["steps"]["a"]
    assert len(a["key"]) == 64 and a["status"] == "done"
    assert a["seconds"] >= 0 and a["energy"]["method"] in ("nvml", "rapl", "estimated")
    assert not list((lmforge_home / "runs" / "three").glob("*.tmp"))


def test_a_file_named_in_the_config_is_hashed_by_content(tmp_path):
    data = tmp_path / "data.txt"
    data.write_text("one")
    text = f"name: files\nsteps:\n  a:\n    step: note\n    reads:\n      - {data}\n"
    recipe = load_recipe(write(tmp_path, text))
    quiet_run(recipe)
    assert [d.action for d in plan(recipe)] == ["cached"]
    data.write_text("two")
    assert [d.reason for d in plan(recipe)] == ["its config or inputs changed"]


# -- bad recipes: one error per problem, each with its line -------------------------------


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(RecipeError) as info:
        load_recipe(write(tmp_path, text))
    assert str(info.value).startswith(str(tmp_path / "r.yaml") + ":")
    return [f"{line}: {message}" for line, message in info.value.problems]


def test_unknown_step_type_has_its_line(tmp_path):
    text = "name: x\nsteps:\n  a:\n    step: note\n  b:\n    step: tunee\n"
    [p] = problems(tmp_path, text)
    assert p.startswith("6: step 'b': unknown step type 'tunee'; use ")
    assert "quantize" in p


def test_unknown_key_has_its_line_and_the_known_keys(tmp_path):
    text = "name: x\nsteps:\n  q:\n    step: quantize\n    type: int8\n    grup_size: 32\n"
    [p] = problems(tmp_path, text)
    assert p.startswith("6: step 'q' (quantize): unknown key 'grup_size'; use any of: ")
    assert "group_size" in p and "model" in p and "out" in p


def test_missing_required_key_has_the_step_line(tmp_path):
    text = "name: x\nsteps:\n  base:\n    step: load\n  t:\n    step: tune\n    model: ${base}\n"
    [p] = problems(tmp_path, text)
    assert p.startswith("5: step 't' (tune): missing required key 'data'")


def test_wrong_kind_and_bad_value(tmp_path):
    text = (
        "name: x\nsteps:\n  t:\n    step: tune\n    data: quickstart\n    max_steps: ten\n"
        "  q:\n    step: quantize\n    type: int3\n"
    )
    found = problems(tmp_path, text)
    assert found[0] == "6: step 't' (tune): max_steps must be int or null, not str 'ten'"
    assert found[1].startswith("7: step 'q' (quantize): unknown quantization type 'int3'")


def test_cycle_names_its_steps_and_lines(tmp_path):
    text = (
        "name: x\nsteps:\n  a:\n    step: note\n    reads: ['${c}']\n"
        "  b:\n    step: note\n    reads: ['${a}']\n  c:\n    step: note\n    reads: ['${b}']\n"
    )
    [p] = problems(tmp_path, text)
    assert (
        p
        == "3: the steps read each other in a cycle: a (line 3) -> c (line 9) -> b (line 6) -> a (line 3)"
    )


def test_unknown_reference_and_missing_artifact(tmp_path):
    text = (
        "name: x\nsteps:\n  e:\n    step: evaluate\n    model: ${tunned}\n"
        "  f:\n    step: evaluate\n    model: nowhere\n  g:\n    step: evaluate\n"
        "    model: x-e\n"
    )
    found = problems(tmp_path, text)
    assert found[0] == "5: step 'e' (evaluate): ${tunned} names no step of this recipe"
    assert found[1].startswith("8: step 'f' (evaluate): no artifact named 'nowhere'")
    assert found[2] == "11: step 'g' (evaluate): 'x-e' is what step 'e' writes: read it as ${e}"


def test_duplicates_serve_not_last_yaml_errors_and_top_keys(tmp_path):
    text = (
        "name: x\nstep:\n  a: 1\nsteps:\n  s:\n    step: serve\n  a:\n    step: note\n"
        "    text: one\n    text: two\n"
    )
    found = problems(tmp_path, text)
    assert found[0].startswith("2: unknown recipe key 'step'")
    assert found[1] == "5: step 's' (serve): serve runs until stopped, so it comes last"
    assert found[2] == "10: step 'a': key 'text' appears twice"
    assert problems(tmp_path, "name: x\nsteps:\n  a: {step: note\n")[0].startswith(
        "4: not valid YAML"
    )


def bomb(row: str) -> str:
    """Nine anchors, each a list of nine aliases of the one before: 9**9 strings once built.

    `row` places each anchor: "{name}: " as a top-level key, "  - " as a list item.
    """
    rows = [row.format(name="a") + "&a [x, x, x, x, x, x, x, x, x]"]
    for before, name in zip("abcdefgh", "bcdefghi", strict=True):
        rows.append(row.format(name=name) + f"&{name} [{', '.join([f'*{before}'] * 9)}]")
    return "\n".join(rows) + "\n"


STEP = "steps:\n  e:\n    step: evaluate\n    model: {model}\n"
BOMBS = {
    # under a key, and read by a step: building either value took gigabytes
    "nested": "name: bomb\ndescription:\n" + bomb("  - ") + STEP.format(model="*i"),
    # at the top level, read by a step, or by nothing (it was one line per unknown key)
    "top": bomb("{name}: ") + "name: bomb\n" + STEP.format(model="*i"),
    "top-unread": bomb("{name}: ") + "name: bomb\n" + STEP.format(model="nowhere"),
}


def run_limited(*args: str):
    """`lmforge ARGS` in a process held to 2 GB of address space and 120 s: a bomb that
    expands fails the test instead of eating the machine."""
    import resource
    import subprocess
    import sys

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return subprocess.run(
        [sys.executable, "-m", "lmforge.cli", *args],
        capture_output=True, text=True, preexec_fn=limit, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("shape, line", [("nested", 4), ("top", 2), ("top-unread", 2)])
def test_an_alias_bomb_is_one_line_at_once_through_the_cli(tmp_path, shape, line):
    path = write(tmp_path, BOMBS[shape])
    done = run_limited("run", "--dry-run", str(path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"error: {path}:{line}: YAML alias *a: a recipe takes no YAML anchors (&) or aliases (*); "
        "write each value out where it is used"
    ]


def test_an_anchor_alone_is_refused_too(tmp_path):
    text = "name: x\nsteps:\n  a:\n    step: note\n    text: &t hi\n"
    assert problems(tmp_path, text) == [
        "5: YAML anchor &t: a recipe takes no YAML anchors (&) or aliases (*); "
        "write each value out where it is used"
    ]


def test_a_recipe_nested_a_thousand_deep_is_one_line(tmp_path):
    text = "name: x\nsteps: " + "[" * 1200 + "]" * 1200 + "\n"
    assert problems(tmp_path, text) == ["1: nested too deeply to be a recipe"]


def test_a_step_needing_a_missing_module_says_how_to_leave_it_out(tmp_path, monkeypatch):
    from dataclasses import replace

    monkeypatch.setitem(STEPS, "note", replace(STEPS["note"], needs="lmforge.nonexistent"))
    text = "name: x\nsteps:\n  a:\n    step: note\n  b:\n    step: note\n"
    found = problems(tmp_path, text)
    assert found[0] == (
        "3: step 'a' (note): needs lmforge.nonexistent, which this lmforge does not have yet; "
        "leave the step out (lmforge run --skip a)"
    )
    monkeypatch.setitem(STEPS, "note", replace(STEPS["note"], needs=None))
    assert [s.id for s in load_recipe(tmp_path / "r.yaml", skip=("a",)).steps] == ["b"]
    write(
        tmp_path,
        "name: x\nsteps:\n  a:\n    step: note\n  b:\n    step: note\n    reads: ['${a}']\n",
    )
    with pytest.raises(RecipeError) as info:
        load_recipe(tmp_path / "r.yaml", skip=("a",))
    assert info.value.problems == [(7, "step 'b' (note): reads ${a}, which --skip leaves out")]


def test_cli_prints_the_line_and_exits_2(tmp_path, capsys):
    from lmforge.cli import main

    path = write(tmp_path, "name: x\nsteps:\n  a:\n    step: note\n    txt: hi\n")
    with pytest.raises(SystemExit) as info:
        main(["run", str(path)])
    assert info.value.code == 2
    assert f"{path}:5: step 'a' (note): unknown key 'txt'" in capsys.readouterr().err


def test_cli_dry_run_then_run(tmp_path, capsys):
    from lmforge.cli import main

    path = write(tmp_path, THREE.format(a="", b="", c=""))
    main(["run", str(path), "--dry-run"])
    out = capsys.readouterr().out
    assert "not run before" in out and not CALLS
    main(["run", str(path)])
    assert CALLS == ["a", "b", "c"]
    main(["run", str(path), "--dry-run"])
    assert capsys.readouterr().out.count("unchanged") == 3


# -- every shipped recipe is valid -----------------------------------------------------------


def shipped_skips(path: Path) -> tuple[str, ...]:
    """Steps whose part of lmforge is still to come (the comprehensive report)."""
    steps = yaml.safe_load(path.read_text())["steps"]
    return tuple(
        sid for sid, s in steps.items() if STEPS[s.get("step", sid)].missing_module() is not None
    )


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_is_valid(path):
    from lmforge.store import Store

    with Store().create("quickstart-tuned", kind="adapter", step="tune", parent="base"):
        pass  # feedback.yaml improves the adapter that quickstart.yaml writes
    assert path.read_text().startswith(f"# lmforge run recipes/{path.name}\n")
    recipe = load_recipe(path, skip=shipped_skips(path))
    assert recipe.name == path.stem
    for step in recipe.steps:
        kind = STEPS[step.type]
        assert set(step.values) <= set(kind.schema())


def test_the_quickstart_plan(tmp_path):
    path = RECIPES / "quickstart.yaml"
    recipe = load_recipe(path, skip=shipped_skips(path))
    ids = [s.id for s in recipe.steps]
    assert ids.index("tuned") < ids.index("merged") < ids.index("quantized") < ids.index("serve")
    assert ids[-1] == "serve"
    assert [d.action for d in plan(recipe)] == ["run"] * len(ids)


# -- real steps on a tiny model: load, quantize, evaluate, gate, swap -------------------------


class Admin(BaseHTTPRequestHandler):
    seen: list = []

    def _record(self, body=None):
        self.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"model": "tiny:x"}).encode())

    def do_POST(self):
        self._record(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    def do_DELETE(self):
        self._record()

    def log_message(self, *args):
        pass


@pytest.fixture
def admin_server():
    server = HTTPServer(("127.0.0.1", 0), Admin)
    Admin.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Admin.seen
    server.shutdown()


TINY = """\
name: tiny
steps:
  base:
    step: load
    model: {model}
  q8:
    step: quantize
    model: ${{base}}
    type: int8
  eval-base:
    step: evaluate
    model: ${{base}}
    suite: quickstart
    limit: 4
    metrics: [accuracy]
    decode_tokens: 0
  eval-q8:
    step: evaluate
    model: ${{q8}}
    suite: quickstart
    limit: 4
    metrics: [accuracy]
    decode_tokens: 0
  check:
    step: gate
    candidate: ${{eval-q8}}
    baseline: ${{eval-base}}
    tolerance: {tolerance}
  swap:
    step: swap
    url: {url}
    adapter: ${{q8}}
    unload: old
    gate: ${{check}}
"""


def test_real_steps_on_a_tiny_model(tmp_path, tiny_model_dir, admin_server, monkeypatch):
    from lmforge.store import Store

    url, seen = admin_server
    monkeypatch.setenv("LMFORGE_API_KEY", "sekrit")
    text = TINY.format(model=tiny_model_dir, url=url, tolerance=1.0)
    steps = quiet_run(load_recipe(write(tmp_path, text)))
    assert Store().get("tiny-q8").parent == "tiny-base"
    result = json.loads(Path(steps["eval-q8"]["files"][0]).read_text())
    assert result["model"]["artifact"] == "tiny-q8"
    assert steps["check"]["passed"] is True
    assert seen == [
        ("POST", "/admin/adapters", "Bearer sekrit", {"name": "tiny-q8"}),
        ("DELETE", "/admin/adapters/old", "Bearer sekrit", None),
    ]
    # the re-run: everything cached but the swap, which acts outside lmforge
    seen.clear()
    steps = quiet_run(load_recipe(write(tmp_path, text)))
    assert {k: s["status"] for k, s in steps.items()}["swap"] == "done"
    assert len(seen) == 2
    decisions = plan(load_recipe(write(tmp_path, text)))
    assert [d.action for d in decisions] == ["cached"] * 5 + ["run"]
    # the quantized model changes when its config does; the base stays cached
    text2 = text.replace("type: int8", "type: int4\n    group_size: 32")
    reasons = {d.step.id: d.reason for d in plan(load_recipe(write(tmp_path, text2)))}
    assert reasons["base"] == "unchanged" and reasons["eval-base"] == "unchanged"
    assert reasons["q8"] == "its config or inputs changed"
    assert reasons["eval-q8"] == "after q8, which runs first"


def test_a_closed_gate_skips_the_swap(tmp_path, admin_server, lmforge_home):
    url, seen = admin_server
    for name, acc in (("cand", 0.5), ("base", 0.6)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"summary": {"acc": acc}}))
    text = (
        f"name: g\nsteps:\n  check:\n    step: gate\n    candidate: {tmp_path / 'cand.json'}\n"
        f"    baseline: {tmp_path / 'base.json'}\n    tolerance: 0.05\n"
        f"  swap:\n    step: swap\n    url: {url}\n    adapter: ${{check}}\n    gate: ${{check}}\n"
    )
    # adapter: a literal would be checked against the store; the gate's path stands in here
    steps = quiet_run(load_recipe(write(tmp_path, text)))
    assert steps["check"]["passed"] is False
    assert steps["swap"]["status"] == "skipped" and seen == []
    decision = json.loads((lmforge_home / "runs" / "g" / "check" / "gate.json").read_text())
    assert decision["candidate_value"] == 0.5 and decision["passed"] is False
    # the gate is cached with its decision: the swap stays skipped on a re-run
    assert [d.action for d in plan(load_recipe(tmp_path / "r.yaml"))] == ["cached", "skip"]


def test_swap_says_when_the_server_is_not_there(tmp_path):
    text = "name: s\nsteps:\n  a:\n    step: note\n  swap:\n    step: swap\n    url: http://127.0.0.1:9\n    adapter: ${a}\n"
    with pytest.raises(StepFailed, match="cannot reach the server at http://127.0.0.1:9"):
        quiet_run(load_recipe(write(tmp_path, text)))


# -- the quickstart, shortened, on the real default model -------------------------------------


@pytest.mark.slow
def test_quickstart_end_to_end_shortened(tmp_path, lmforge_home, capsys):
    path = RECIPES / "quickstart.yaml"
    doc = yaml.safe_load(path.read_text())
    steps = doc["steps"]
    for sid in ("eval-base", "eval-tuned", "eval-quantized"):
        steps[sid].update(limit=8, decode_tokens=8)
    steps["tuned"].update(epochs=1, max_steps=3, seq_len=128)
    short = write(tmp_path, yaml.safe_dump(doc, sort_keys=False), "quickstart.yaml")
    skip = shipped_skips(path)
    assert skip == ()  # every step of the quickstart runs
    recipe = load_recipe(short, skip=skip)
    state = run(recipe)
    out = capsys.readouterr().out
    assert all(s["status"] == "done" for s in state.values())
    assert "lmforge serve quickstart-quantized" in out
    from lmforge.store import Store

    store = Store()
    assert store.get("quickstart-tuned").kind == "adapter"
    assert store.get("quickstart-quantized").parent == "quickstart-merged"
    assert (store.get("quickstart-quantized").path / "evals" / "quickstart.json").is_file()
    assert (store.get("quickstart-tuned").path / "card.md").is_file()
    assert {Path(f).name for f in state["compliance"]["files"]} == {"provider.md", "provider.json"}
    report = Path(state["report"]["files"][0]).with_name("report.md").read_text()
    assert "### Steps of the run `quickstart`" in report  # the run's own table is in it
    assert "| eval-base | evaluate | done |" in report
    section = report.split("## 8. Interpretability examples")[1].split("## 9.")[0]
    assert "How full can the kettle be filled?" in section
    # a re-run does nothing but print the serve command
    assert [d.action for d in plan(recipe)] == ["cached"] * (len(recipe.steps) - 1) + ["run"]
    assert os.environ["LMFORGE_HOME"] == str(lmforge_home)


def test_the_feedback_recipe_on_a_tiny_model(tmp_path, tiny_model_dir, tiny_tokenizer):
    """recipes/feedback.yaml, shortened, against a real `lmforge serve` app: web-chat edits ->
    dpo -> eval both -> gate -> hot-swap the candidate in under the served adapter's name."""
    import sys

    import lmforge
    from lmforge.serve import ServeConfig, create_app
    from lmforge.serve.feedback import FeedbackStore
    from lmforge.store import Store
    from lmforge.tune.trainer import TuneConfig, tune

    sys.path.insert(0, str(Path(__file__).parent / "serve"))
    from live_server import Server

    lmforge.import_model(tiny_model_dir, "tiny")
    chat = tmp_path / "chat.jsonl"
    msgs = [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    chat.write_text(json.dumps({"messages": msgs}) + "\n")
    served = dict(data=str(chat), max_steps=1, seq_len=64, eval_fraction=0.0, lr=0.05)
    tune("tiny", TuneConfig(out="quickstart-tuned", **served).validate(), quiet=True)
    db = FeedbackStore()
    for question, reply, better in [("Kettle volume?", "A lot.", "1.7 litres.")] * 2:
        conversation = db.create_conversation("ann")["id"]
        db.add_message(conversation, "user", question)
        db.set_feedback(db.add_message(conversation, "assistant", reply)["id"], edited=better)

    server = Server(create_app(lmforge.load("tiny"), ServeConfig(), ["quickstart-tuned"]))
    ask = [{"role": "user", "content": "Kettle volume?"}]

    def answer(model: str) -> str:
        reply = server.client.chat.completions.create(
            model=model, messages=ask, max_tokens=8, temperature=0
        )
        return reply.choices[0].message.content

    try:
        before = answer("tiny:quickstart-tuned")
        path = RECIPES / "feedback.yaml"
        doc = yaml.safe_load(path.read_text())
        steps = doc["steps"]
        steps["candidate"].update(epochs=1, max_steps=2, seq_len=64, micro_batch=2, lr=0.05)
        for sid in ("eval-current", "eval-candidate"):
            steps[sid].update(limit=4, decode_tokens=0)
        steps["check"]["tolerance"] = 1.0  # a random tiny model: any result passes
        steps["swap"]["url"] = server.url
        short = write(tmp_path, yaml.safe_dump(doc, sort_keys=False), "feedback.yaml")
        state = quiet_run(load_recipe(short, skip=shipped_skips(path)))
        assert {s["status"] for s in state.values()} == {"done"}
        candidate = Store().get("feedback-candidate")
        assert candidate.meta["config"]["adapter_start"] == "quickstart-tuned"
        # clients keep their model name and now get the candidate's answers
        assert [m.id for m in server.client.models.list().data] == ["tiny", "tiny:quickstart-tuned"]
        after = answer("tiny:quickstart-tuned")
        assert server.raw("POST", "/admin/adapters", b'{"name": "feedback-candidate"}')[0] == 200
        assert after == answer("tiny:feedback-candidate") != before
    finally:
        server.stop()
    # new feedback changes the pairs: the export and everything after it run again
    conversation = db.create_conversation("bob")["id"]
    db.add_message(conversation, "user", "Colour?")
    db.set_feedback(db.add_message(conversation, "assistant", "Red.")["id"], edited="Teal.")
    reasons = {d.step.id: d.reason for d in plan(load_recipe(short, skip=shipped_skips(path)))}
    assert reasons["current"] == "unchanged" and reasons["eval-current"] == "unchanged"
    assert reasons["pairs"] == "its config or inputs changed"
    assert reasons["candidate"] == "after pairs, which runs first"


def test_the_module_docstring_example_is_a_valid_recipe(tmp_path):
    import textwrap

    import lmforge.pipeline

    doc = lmforge.pipeline.__doc__
    start = doc.index("    # lmforge run")
    example = textwrap.dedent(doc[start : doc.index("\n\n", start)])
    recipe = load_recipe(write(tmp_path, example))
    assert [s.id for s in recipe.steps] == ["base", "tuned", "eval-tuned"]
