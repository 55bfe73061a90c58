"""A store with hand-written artifacts: a base model, a tuned adapter, and their evals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.store import Store

SHA = "ab" * 32


class Lineage:
    """Writes artifact.json and evals/*.json straight into a temporary store."""

    def __init__(self, home: Path):
        self.store = Store()
        self.root = self.store.root
        self.upstream = home / "upstream"  # the folder the base was "imported" from
        self.upstream.mkdir(parents=True, exist_ok=True)

    def artifact(self, name: str, **meta) -> Path:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "artifact.json").write_text(json.dumps({"name": name, **meta}))
        return folder

    def eval(self, name: str, suite: str, doc: dict) -> Path:
        path = self.root / name / "evals" / f"{suite}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"suite": suite, **doc}))
        return path

    def set_license(self, license: str | None) -> None:
        readme = self.upstream / "README.md"
        readme.write_text(f"---\nlicense: {license}\n---\n# upstream\n" if license else "# none\n")

    def standard(self) -> None:
        """base (import, no energy) -> ft (tune, estimated energy) with a core eval."""
        self.set_license("mit")
        self.artifact(
            "base", kind="model", step="import", parent=None, created="2026-01-01T00:00:00+00:00",
            config={"source": str(self.upstream), "source_format": "hf", "dtype": "fp32"},
            model={"model_type": "llama", "parameters": 123456, "layers": 2, "context": 256},
            hashes={"model/model.safetensors": "11" * 32, "model/tokenizer.json": "22" * 32},
            timings={"total_s": 12.5}, versions={"python": "3.11", "torch": "2.0"},
        )  # fmt: skip
        self.artifact(
            "ft", kind="adapter", step="tune", parent="base", created="2026-01-02T00:00:00+00:00",
            config={"method": "lora", "rank": 8, "lr": 0.001, "plan": {"trainable": 4096}},
            data={"path": "/data/train.jsonl", "sha256": SHA, "format": "chat", "examples": 40,
                  "tokens": 900},
            metrics={"train_loss": 0.5, "seconds": 30.0, "tokens": 1800},
            energy={"joules": 300.0, "method": "estimated", "note": "estimated, not measured: cpu"},
            hashes={"adapter/adapter_model.safetensors": "33" * 32,
                    "adapter/chat_template.jinja": "44" * 32},
            timings={"train_s": 30.0, "total_s": 0.1}, versions={"python": "3.11"},
        )  # fmt: skip
        self.eval("ft", "core", core_doc(acc=0.6123, gap=0.0417))


def core_doc(acc: float, gap: float, joules: float = 20.0, method: str = "estimated") -> dict:
    return {
        "model": {"name": "ft", "artifact": "ft", "dtype": "fp32"},
        "config": {"suite": "core", "limit": 5, "chat_template": False, "seed": 0},
        "created": "2026-01-03T00:00:00+00:00",
        "wall_s": 2.0,
        "energy": {"joules": joules, "method": method, "note": f"{method} for the test"},
        "tasks": {
            "capitals": {
                "accuracy": {"acc": acc, "acc_low": 0.5, "acc_high": 0.7, "n": 5},
                "calibration": {"ece": 0.0871, "n": 5},
                "fairness": {
                    "max_abs_gap": gap,
                    "max_flip_rate": 0.125,
                    "n": 8,
                    "by_variant": {"names": {"acc": 0.5, "gap": -gap, "flip_rate": 0.125, "n": 8}},
                },
            }
        },
        "summary": {"acc": acc, "ece": 0.0871, "flip_rate": 0.125, "fairness_gap": gap},
        "records": [],
    }


@pytest.fixture
def lineage(lmforge_home) -> Lineage:
    built = Lineage(lmforge_home)
    built.standard()
    return built


@pytest.fixture
def make_core_doc():
    """`core_doc` as a fixture (conftest modules cannot be imported by name)."""
    return core_doc
