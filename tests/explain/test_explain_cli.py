"""`lmforge explain` end to end on a tiny model folder: in-process, and bad input through a
real subprocess (one line, exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lmforge.cli import main


def test_explain_writes_page_png_and_json(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "why"
    main(
        [
            "explain",
            str(tiny_model_dir),
            "--prompt",
            "The quick brown",
            "--max-new-tokens",
            "2",
            "--steps",
            "8",
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "integrated_gradients" in printed and f"wrote {out / 'explain.html'}" in printed
    doc = json.loads((out / "explain.json").read_text())
    assert doc["generated"] and 1 <= len(doc["rows"]) <= 2
    assert (out / "heatmap.png").stat().st_size > 1000


def test_terminal_format_with_contrast_writes_nothing(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    main(
        [
            "explain",
            str(tiny_model_dir),
            "--prompt",
            "Paris is the capital of",
            "--target",
            " France",
            "--contrast",
            " Italy",
            "--method",
            "occlusion",
            "--format",
            "terminal",
        ]
    )
    printed = capsys.readouterr().out
    assert "' France' − ' Italy'" in printed and "wrote" not in printed
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_one_line_and_exit_2(tiny_model_dir, capsys):
    for args, message in [
        (["--prompt", ""], "prompt is empty"),
        (["--prompt", "hi", "--method", "lime"], "unknown attribution method 'lime'"),
    ]:
        with pytest.raises(SystemExit) as done:
            main(["explain", str(tiny_model_dir), *args])
        err = capsys.readouterr().err.strip().splitlines()
        assert done.value.code == 2 and len(err) == 1 and message in err[0], err


def test_undecodable_argument_bytes_through_a_real_process(tiny_model_dir, lmforge_home):
    """Invalid UTF-8 in argv reaches Python as lone surrogates: one line, no traceback."""
    env = dict(os.environ, LMFORGE_HOME=str(lmforge_home))
    cmd = [sys.executable.encode(), b"-m", b"lmforge.cli", b"explain", bytes(tiny_model_dir)]
    out = subprocess.run(
        [*cmd, b"--prompt", b"caf\xe9 \xff"], capture_output=True, env=env, timeout=120
    )
    err = out.stderr.decode(errors="replace").strip().splitlines()
    assert out.returncode == 2 and len(err) == 1 and "not valid UTF-8" in err[0], out.stderr
