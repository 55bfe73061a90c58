"""Checkpoints of a tuning run: trainable weights, optimizer, RNG states and loop position.

Written atomically (a temporary folder renamed over the old one); read without unpickling
code (`torch.load(weights_only=True)`, safetensors, JSON). Under FSDP the tensors are
gathered whole before writing and cut into each rank's shard after reading, so a sharded
run writes the same files as an unsharded one (see `tune.distributed`).
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


def trainable_state(model, keep: bool = True) -> dict[str, torch.Tensor]:
    """The trainable weights, whole (under FSDP every rank must call this: see `full_state`)."""
    from lmforge.tune.distributed import full_state

    return full_state(model, trainable=True, keep=keep)


def optimizer_state(optimizer, keep: bool = True) -> dict | None:
    """`optimizer.state_dict()` with whole moments (gathered under FSDP, as `trainable_state`)."""
    from lmforge.tune.distributed import full_tensor

    sd = optimizer.state_dict()
    moments = {i: {k: full_tensor(v) for k, v in s.items()} for i, s in sd["state"].items()}
    return {**sd, "state": moments} if keep else None


def save_checkpoint(folder: Path, model, optimizer, state: dict, write: bool = True) -> None:
    """Write a checkpoint atomically: a temporary folder, then a rename over the old one.

    Under FSDP every rank calls this, to gather the shards; only the one with `write` writes.
    """
    from safetensors.torch import save_file

    weights = trainable_state(model, keep=write)
    moments = optimizer_state(optimizer, keep=write)
    if not write:
        return
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in weights.items()}, str(tmp / "trainable.safetensors"))
    torch.save({"optimizer": moments, "torch_rng": torch.get_rng_state()}, tmp / "optimizer.pt")
    state = {**state, "python_rng": _jsonable(random.getstate())}
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    swap_in(tmp, folder)


def load_checkpoint(folder: Path, model, optimizer) -> dict:
    """Restore weights, optimizer and RNGs from `folder`; return the loop state.

    Under FSDP every rank reads the whole tensors and keeps its own shard of each.
    """
    from safetensors.torch import load_file

    from lmforge.tune.distributed import shard_like

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
            params[name].copy_(shard_like(value, params[name]))
    blob = torch.load(folder / "optimizer.pt", weights_only=True)  # no pickled code runs
    saved = blob["optimizer"]
    order = [p for group in optimizer.param_groups for p in group["params"]]  # the saved ids
    saved["state"] = {
        i: {k: shard_like(v, order[i]) for k, v in s.items()} for i, s in saved["state"].items()
    }
    optimizer.load_state_dict(saved)
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
    # fsdp changes how the run is laid out, not what it computes: either kind resumes the other
    skip = ("max_steps", "patience", "fsdp")
    keep = {k: v for k, v in asdict(config).items() if k not in skip}
    blob = json.dumps({"config": keep, "base": base, "data": data_digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
