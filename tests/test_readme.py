"""The README's quick tour, run as written: its commands and its Python come from the README
text itself, so editing the tour changes what is tested here."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from lmforge.cli import cli, main

README = Path(__file__).resolve().parent.parent / "README.md"
TOUR_HEADING = "## Quick tour"
# What a command must print, keyed by a piece of the command; others only have to succeed.
EXPECT = {"capital of France": "Paris", "Ignore all previous instructions": "block"}
# Commands that run until stopped are parsed but not run (tests/serve starts the server).
RUNS_UNTIL_STOPPED = {"serve"}


def tour_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block under the README's quick-tour heading."""
    text = README.read_text(encoding="utf-8")
    assert TOUR_HEADING in text, f"README.md has no {TOUR_HEADING!r} section"
    section = text.split(TOUR_HEADING, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(\w*)\n(.*?)^```", section, re.S | re.M)


def tour_commands() -> list[list[str]]:
    """Each `lmforge ...` line of the tour's bash blocks, split as the shell would."""
    commands = []
    for lang, code in tour_blocks():
        if lang in ("bash", "sh", "console"):
            commands += [argv for line in code.splitlines() if (argv := shlex.split(line, True))]
    return commands


def tour_python() -> list[str]:
    return [code for lang, code in tour_blocks() if lang == "python"]


def parse(argv: list[str]) -> click.Context:
    """Parse a command line as `lmforge` would, without running it (UsageError if wrong)."""
    assert argv[0] == "lmforge", f"a tour command should start with lmforge: {shlex.join(argv)}"
    command, ctx, name, args = cli, None, "lmforge", argv[1:]
    while isinstance(command, click.Group):
        ctx = click.Context(command, info_name=name, parent=ctx)
        name, args = args[0], args[1:]
        command = command.get_command(ctx, name)
        assert command is not None, f"no command {name!r} in: {shlex.join(argv)}"
    return command.make_context(name, args, parent=ctx)


def test_tour_has_commands_and_python():
    runnable = [argv for argv in tour_commands() if argv[1] not in RUNS_UNTIL_STOPPED]
    assert len(runnable) >= 3 and tour_python(), "the quick tour lost its commands or its Python"


@pytest.mark.parametrize("argv", tour_commands(), ids=shlex.join)
def test_tour_command_parses(argv):
    """Every flag and argument in the tour exists (fast: nothing runs, torch is not imported)."""
    parse(argv)


@pytest.mark.parametrize("code", tour_python())
def test_tour_python_compiles(code):
    compile(code, "README.md (quick tour)", "exec")


@pytest.fixture(scope="module")
def tour_home(tmp_path_factory):
    """One store for the whole tour: later commands read what earlier ones wrote."""
    return tmp_path_factory.mktemp("tour-home")


@pytest.fixture
def home(tour_home, monkeypatch):
    monkeypatch.setenv("LMFORGE_HOME", str(tour_home))
    return tour_home


def check_output(what: str, printed: str) -> None:
    for piece, expected in EXPECT.items():
        if piece in what:
            assert expected in printed, f"{what}: no {expected!r} in\n{printed}"


@pytest.mark.slow
def test_tour_commands_run(home, capsys):
    """The tour's commands, in order, on the real default model, through the `lmforge` entry
    point itself (in this process, so torch and transformers are imported once)."""
    for argv in tour_commands():
        if argv[1] in RUNS_UNTIL_STOPPED:
            continue
        try:
            main(argv[1:])
            code = 0
        except SystemExit as e:
            code = e.code
        out = capsys.readouterr()
        line = shlex.join(argv)
        assert code in (0, None), f"{line} exited with {code}\n{out.err}"
        check_output(line, out.out)


@pytest.mark.slow
@pytest.mark.parametrize("code", tour_python())
def test_tour_python_runs(home, capsys, code):
    exec(compile(code, "README.md (quick tour)", "exec"), {"__name__": "__main__"})
    check_output(code, capsys.readouterr().out)
