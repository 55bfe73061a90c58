"""The CLI through a real subprocess (exit codes, one-line errors) and in-process (flows)."""

import os
import subprocess
import sys

import pytest

from lmforge.cli import main


def run_cli(*args, env_home=None, input_text=None):
    env = dict(os.environ)
    if env_home:
        env["LMFORGE_HOME"] = str(env_home)
    return subprocess.run(
        [sys.executable, "-m", "lmforge.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        input=input_text,
        timeout=300,
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["chat", "--top-p", "1.5", "--prompt", "hi"], "invalid top_p=1.5"),
        (["generate", "--prompt", "hi", "--max-tokens", "-3"], "invalid max_tokens=-3"),
        (["chat", "no-such-model", "--prompt", "hi"], "no artifact or path named 'no-such-model'"),
        (["chat", "./missing/dir", "--prompt", "hi"], "no such file or folder"),
        (["models", "show", "nope"], "no artifact named 'nope'"),
        (["models", "rm", "nope"], "no artifact named 'nope'"),
        # a prompt that holds "--debug" is text, not lmforge's --debug
        (["chat", "no-such-model", "--prompt", "--debug"], "no artifact or path named"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, lmforge_home):
    out = run_cli(*args, env_home=lmforge_home)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_debug_shows_the_traceback(lmforge_home):
    out = run_cli("--debug", "models", "show", "nope", env_home=lmforge_home)
    assert out.returncode != 0 and "Traceback" in out.stderr


def test_corrupt_model_file_exit_2(tmp_path, lmforge_home):
    bad = tmp_path / "m.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 10)
    out = run_cli("generate", str(bad), "--prompt", "hi", env_home=lmforge_home)
    assert out.returncode == 2 and "truncated or corrupt" in out.stderr
    assert "Traceback" not in out.stderr


def test_help_does_not_import_torch():
    code = "import sys; from lmforge.cli import cli; cli.main(['--help'], standalone_mode=False); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().endswith("False")


def test_models_import_list_show_rm(tiny_model_dir, capsys):
    main(["models", "import", str(tiny_model_dir), "--name", "tiny"])
    assert "imported tiny" in capsys.readouterr().out
    main(["models", "list"])
    assert "tiny" in capsys.readouterr().out
    main(["models", "show", "tiny"])
    assert '"step": "import"' in capsys.readouterr().out
    main(["models", "rm", "tiny"])
    main(["models", "list", "--json"])
    assert capsys.readouterr().out.strip().endswith("[]")


def test_generate_and_one_shot_chat(tiny_model_dir, capsys):
    main(["generate", str(tiny_model_dir), "--prompt", "The quick", "--max-tokens", "6"])
    assert capsys.readouterr().out.strip()
    sampled = ["chat", str(tiny_model_dir), "--prompt", "hello", "--max-tokens", "6"]
    sampled += ["--seed", "1", "--temperature", "0.8"]
    main(sampled)
    first = capsys.readouterr().out
    main(sampled)
    assert capsys.readouterr().out == first  # same seed, same answer


def test_interactive_chat_commands(tiny_model_dir):
    script = "hello\n/system be brief\nhow are you\n/reset\n/bogus\n/exit\nnever read\n"
    out = run_cli("chat", str(tiny_model_dir), "--max-tokens", "5", input_text=script)
    assert out.returncode == 0, out.stderr
    assert "(system prompt set; conversation cleared)" in out.stdout
    assert "(conversation cleared)" in out.stdout
    assert "unknown command /bogus" in out.stdout
