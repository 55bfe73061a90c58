"""Checkpoints of a tuning run: trainable weights, optimizer, RNG states and loop position.

Written atomically (a temporary folder renamed over the old one); read without unpickling
code (`torch.load(weights_only=True)`, safetensors, JSON).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from lmforge.errors import InvalidInputError
from lmforge.store import swap_in
from lmforge.tune.config import TuneConfig


def trainable_state(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(folder: Path, model, optimizer, state: dict) -> None:
    """Write a checkpoint atomically: a temporary folder, then a rename over the old one."""
    from safetensors.torch import save_file

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
    torch.save(
        {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()},
        tmp / "optimizer.pt",
    )
    state = {**state, "python_rng": _jsonable(random.getstate())}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    swap_in(tmp, folder)


def load_checkpoint(folder: Path, model, optimizer) -> dict:
    """Restore weights, optimizer and RNGs from `folder`; return the loop state."""
    from safetensors.torch import load_file

    weights = load_file(str(folder / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = set(weights) ^ {n for n, p in params.items() if p.requires_grad}
    if missing:
        raise InvalidInputError(
            f"the checkpoint in {folder} does not match this model and method",
            "resume with the same model and --method, or start a new --out",
        )
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    blob = torch.load(folder / "optimizer.pt", weights_only=True)  # no pickled code runs
    optimizer.load_state_dict(blob["optimizer"])
    torch.set_rng_state(blob["torch_rng"])
    state = json.loads((folder / "state.json").read_text())
    random.setstate(_python_state(state.pop("python_rng")))
    return state


def _jsonable(rng_state: tuple) -> list:
    version, internal, gauss = rng_state
    return [version, list(internal), gauss]


def _python_state(data: list) -> tuple:
    return (data[0], tuple(data[1]), data[2])


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def run_dir(out: str) -> Path:
    from lmforge.store import check_name, home

    return home() / "runs" / check_name(out)


def fingerprint(config: TuneConfig, base: str, data_digest: str) -> str:
    """What must not change between a run and its resumption."""
    keep = {k: v for k, v in asdict(config).items() if k not in ("max_steps", "patience")}
    blob = json.dumps({"config": keep, "base": base, "data": data_digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
