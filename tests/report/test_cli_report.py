"""`lmforge card`, `compliance` and `energy` through the CLI, and one real tiny lineage."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lmforge.cli import main


def test_card_print_and_write(lineage, capsys):
    main(["card", "ft", "--print"])
    out = capsys.readouterr().out
    assert out.startswith("---\n") and "# ft" in out
    assert not (lineage.root / "ft/card.md").exists()  # --print only prints
    main(["card", "ft"])
    assert "wrote" in capsys.readouterr().out and (lineage.root / "ft/card.md").is_file()


def test_compliance_deployer(lineage, capsys):
    main(["compliance", "ft", "--role", "deployer", "--use-case", "hiring", "--print"])
    out = capsys.readouterr().out
    assert "Risk classification questionnaire" in out and "deployer.json" in out
    assert (lineage.root / "ft/compliance/deployer.md").is_file()


def test_energy_json_and_table(lineage, capsys):
    main(["energy", "ft", "--json", "--grid-intensity", "100"])
    ledger = json.loads(capsys.readouterr().out)
    assert ledger["grid_g_per_kwh"] == 100 and ledger["total"]["label"] == "estimated"
    main(["energy", "ft"])
    out = capsys.readouterr().out
    assert "total" in out and "estimated" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["card", "nope"], "no artifact named 'nope'"),
        (["compliance", "nope"], "no artifact named 'nope'"),
        (["energy", "nope"], "no artifact named 'nope'"),
        (["energy", "ft", "--grid-intensity", "-5"], "invalid grid intensity"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(lineage, lmforge_home, args, message):
    env = {**os.environ, "LMFORGE_HOME": str(lmforge_home)}
    out = subprocess.run(
        [sys.executable, "-m", "lmforge.cli", *args], capture_output=True, text=True, env=env
    )
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_unknown_role_exits_2(lineage, lmforge_home):
    env = {**os.environ, "LMFORGE_HOME": str(lmforge_home)}
    out = subprocess.run(
        [sys.executable, "-m", "lmforge.cli", "compliance", "ft", "--role", "auditor"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert out.returncode == 2 and "'auditor' is not one of" in out.stderr
    assert "Traceback" not in out.stderr


def test_real_tiny_tune_and_eval(tiny_model_dir, tmp_path):
    """A tiny model imported, tuned and evaluated: the card carries what those steps wrote."""
    from huggingface_hub import ModelCard

    import lmforge
    from lmforge.evaluate.runner import EvalConfig, evaluate_artifact
    from lmforge.report import energy_ledger, write_card
    from lmforge.tune.trainer import TuneConfig, tune

    data = tmp_path / "chat.jsonl"
    rows = [{"messages": [{"role": "user", "content": "Capital of France?"},
                          {"role": "assistant", "content": "Paris."}]}] * 8  # fmt: skip
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lmforge.import_model(tiny_model_dir, "tiny")
    config = TuneConfig(data=str(data), max_steps=2, micro_batch=4, seq_len=32, eval_fraction=0.0,
                        out="tiny-ft").validate()  # fmt: skip
    tune("tiny", config, quiet=True)
    doc, _ = evaluate_artifact(
        "tiny-ft", config=EvalConfig(suite="core", limit=2, metrics=["accuracy"], decode_tokens=0)
    )
    card = ModelCard(write_card("tiny-ft").read_text())
    assert card.data.base_model == "tiny" and card.data.library_name == "peft"
    assert card.data.datasets[0].startswith("sha256:")
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["acc"] == doc["summary"]["acc"]
    ledger = energy_ledger("tiny-ft")
    steps = [r["step"] for r in ledger["rows"]]
    assert steps == ["import", "tune", "eval core"]
    assert all(r["method"] in ("nvml", "rapl", "estimated") for r in ledger["rows"])
