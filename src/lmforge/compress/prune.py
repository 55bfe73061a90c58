"""`lmforge prune`: zero or remove the parts of a model that matter least, then write it.

Methods (`METHODS`, one function each, same signature):

- magnitude: zero the `sparsity` share of each block linear's weights with the smallest |W|
  (one comparison group per layer);
- wanda: score |W_ij| * ||X_j|| (X: the layer's inputs over the calibration text) and zero
  the lowest scores of each output row (per-row groups, as in the Wanda paper);
- nm: in every group of M consecutive inputs of a row keep the N best (magnitude or wanda
  scores): the 2:4 layout that sparse tensor cores run;
- heads / channels / layers: remove the least important KV head groups, MLP channels or
  decoder layers (measured on the calibration text) and write a smaller config.

Only the linears inside the decoder blocks are pruned, never the embeddings or lm_head.
Unstructured methods keep the dense layout (zeros stored as zeros): the file is as large
as before, and no faster (no sparse kernels here). Structured methods really remove
compute: fewer parameters, a smaller file, fewer multiply-adds per token.

`recover > 0` then trains a LoRA on the pruned model for that many steps through `tune`,
folds it in, and multiplies the mask back in, so every pruned weight stays exactly zero
(a merged LoRA is dense). The adapter is a temporary artifact, removed after the merge:
its base was the unsaved pruned model; its figures are kept in this artifact's metadata.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from lmforge.compress.prune_calib import Calibration, block_linears
from lmforge.compress.prune_config import STRUCTURED, PruneConfig, check_model, removed_count
from lmforge.compress.prune_structured import drop_channels, drop_heads, drop_layers
from lmforge.errors import InvalidInputError
from lmforge.store import Artifact, Store, check_name

__all__ = ["METHODS", "PruneConfig", "Pruned", "print_report", "prune"]


@dataclass
class Pruned:
    """A method's result: the model, the keep-masks it applied, and what it removed."""

    model: torch.nn.Module
    masks: dict[str, torch.Tensor] = field(default_factory=dict)  # linear path -> bool (out, in)
    removed: dict = field(default_factory=dict)  # structured: the units removed


# -- masks: True = keep ------------------------------------------------------------------------


def keep_largest(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Drop the round(sparsity * numel) lowest scores of the whole tensor."""
    mask = torch.ones(scores.numel(), dtype=torch.bool)
    k = removed_count(sparsity, scores.numel())
    mask[torch.topk(scores.flatten(), k, largest=False).indices] = False
    return mask.view_as(scores)


def keep_largest_per_row(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Drop the round(sparsity * in) lowest scores of each row of (out, in)."""
    k = removed_count(sparsity, scores.shape[1])
    low = torch.topk(scores, k, dim=1, largest=False).indices  # (out, k)
    return torch.ones_like(scores, dtype=torch.bool).scatter_(1, low, False)


def keep_n_of_m(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the N highest scores in every group of M consecutive inputs of each row."""
    out, width = scores.shape
    groups = scores.reshape(out, width // m, m)  # (out, groups, M)
    low = torch.topk(groups, m - n, dim=-1, largest=False).indices  # (out, groups, M - N)
    keep = torch.ones_like(groups, dtype=torch.bool).scatter_(-1, low, False)
    return keep.view(out, width)


def wanda_scores(weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """|W_ij| * ||X_j||: (out, in) from weight (out, in) and input norms (in,)."""
    return weight.detach().abs().float() * input_norm[None, :]


@torch.no_grad()
def apply_masks(model, masks: dict[str, torch.Tensor]) -> None:
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        modules[name].weight.mul_(mask.to(modules[name].weight.dtype))


# -- methods: (model, config, calibration) -> Pruned --------------------------------------------


def _masked(model, masks: dict[str, torch.Tensor]) -> Pruned:
    apply_masks(model, masks)
    return Pruned(model, masks)


def magnitude(model, config: PruneConfig, calib: Calibration) -> Pruned:
    s = config.target_sparsity
    linears = block_linears(model)
    return _masked(model, {n: keep_largest(m.weight.detach().abs(), s) for n, m in linears.items()})


def wanda(model, config: PruneConfig, calib: Calibration) -> Pruned:
    linears = block_linears(model)
    norms = calib.input_norms(model, list(linears))
    s = config.target_sparsity
    masks = {
        n: keep_largest_per_row(wanda_scores(m.weight, norms[n]), s) for n, m in linears.items()
    }
    return _masked(model, masks)


def nm(model, config: PruneConfig, calib: Calibration) -> Pruned:
    n, m = config.nm
    linears = block_linears(model)
    if config.score == "wanda":
        norms = calib.input_norms(model, list(linears))
        scores = {k: wanda_scores(lin.weight, norms[k]) for k, lin in linears.items()}
    else:
        scores = {k: lin.weight.detach().abs() for k, lin in linears.items()}
    return _masked(model, {k: keep_n_of_m(s, n, m) for k, s in scores.items()})


def _lowest(importance: torch.Tensor, count: int) -> list[int]:
    """Indices of the `count` least important units (sorted)."""
    return sorted(torch.topk(importance, count, largest=False).indices.tolist())


def heads(model, config: PruneConfig, calib: Calibration) -> Pruned:
    cfg = model.config
    kv = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    per_head = calib.head_importance(model)  # (layers, heads)
    per_group = per_head.view(per_head.shape[0], kv, -1).sum(-1)  # (layers, kv groups)
    count = removed_count(config.target_sparsity, kv)
    drop = [_lowest(row, count) for row in per_group]
    keep = [[g for g in range(kv) if g not in d] for d in drop]
    return Pruned(drop_heads(model, keep), removed={"kv_groups": drop})


def channels(model, config: PruneConfig, calib: Calibration) -> Pruned:
    """Channel j of a layer's MLP scores ||a_j|| * ||W_down[:, j]|| (a: down_proj's input)."""
    layers = model.model.layers
    names = [f"model.layers.{i}.mlp.down_proj" for i in range(len(layers))]
    norms = calib.input_norms(model, names)
    count = removed_count(config.target_sparsity, model.config.intermediate_size)
    keep = []
    for name, layer in zip(names, layers, strict=True):
        importance = norms[name] * layer.mlp.down_proj.weight.detach().float().norm(dim=0)
        low = set(_lowest(importance, count))
        keep.append(torch.tensor([j for j in range(len(importance)) if j not in low]))
    return Pruned(drop_channels(model, keep), removed={"channels_per_layer": count})


def layers(model, config: PruneConfig, calib: Calibration) -> Pruned:
    influence = calib.layer_importance(model)  # (layers,) 1 - cos(in, out)
    drop = _lowest(influence, removed_count(config.target_sparsity, len(influence)))
    keep = [i for i in range(len(influence)) if i not in drop]
    return Pruned(drop_layers(model, keep), removed={"layers": drop})


Method = Callable[[torch.nn.Module, PruneConfig, Calibration], Pruned]
METHODS: dict[str, Method] = {
    "magnitude": magnitude,
    "wanda": wanda,
    "nm": nm,
    "heads": heads,
    "channels": channels,
    "layers": layers,
}


# -- measuring -----------------------------------------------------------------------------------


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def count_nonzero(model) -> int:
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def block_sparsity(model) -> float:
    """Share of zeros among the weights of the decoder blocks' linears."""
    weights = [m.weight for m in block_linears(model).values()]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / max(sum(w.numel() for w in weights), 1)


def _structure(cfg) -> dict:
    return {
        "layers": cfg.num_hidden_layers,
        "kv_groups": getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads,
        "channels": cfg.intermediate_size,
    }


def _measure(config: PruneConfig, before_cfg, before_params: int, model) -> dict:
    out = {
        "target_sparsity": round(config.target_sparsity, 6),
        "params_before": before_params,
        "params_after": count_params(model),
        "nonzero_params_after": count_nonzero(model),
    }
    if config.method in STRUCTURED:
        unit = {"heads": "kv_groups", "channels": "channels", "layers": "layers"}[config.method]
        old, new = _structure(before_cfg)[unit], _structure(model.config)[unit]
        out["actual_sparsity"] = round(1 - new / old, 6)  # share of the units removed
        out["structure_before"], out["structure_after"] = (
            _structure(before_cfg),
            _structure(model.config),
        )
    else:
        out["actual_sparsity"] = round(block_sparsity(model), 6)  # zeros in the block linears
    return out


# -- the step ------------------------------------------------------------------------------------


def prune(
    model: str | Path | None,
    out: str,
    config: PruneConfig,
    store: Store | None = None,
    *,
    quiet: bool = False,
) -> Artifact:
    """Prune `model` (a store name, a path, or None for the default) into the artifact `out`."""
    from transformers import AutoConfig

    from lmforge.models.convert import read_hf
    from lmforge.models.sources import resolve

    store = store or Store()
    config.validate()
    check_name(out)
    if store.exists(out):
        raise InvalidInputError(
            f"an artifact named {out!r} already exists", "choose another --out, or remove it"
        )
    if config.recover and Store().exists(_recover_name(out)):
        raise InvalidInputError(
            f"the recovery run needs the name {_recover_name(out)!r}, which is taken",
            "remove that artifact, or choose another --out",
        )
    folder, source, artifact = resolve(model, store)
    if artifact is not None and artifact.kind == "adapter":
        raise InvalidInputError(
            f"{source} is an adapter; prune a full model",
            f"run `lmforge merge {source} --out NAME`, then prune NAME",
        )
    check_model(config, AutoConfig.from_pretrained(str(folder)))  # before loading any weight

    timings: dict[str, float] = {}
    started = t = time.perf_counter()
    hf, tok = read_hf(folder, "hf")
    before_cfg, before_params = hf.config, count_params(hf)
    if config.method not in STRUCTURED and not block_linears(hf):
        raise InvalidInputError(
            f"{source} has no torch Linear layers inside `.layers.` blocks to prune",
            "prune a Llama-family model (Llama, Mistral, Qwen2/3, SmolLM2)",
        )
    with _progress(quiet) as bar:
        task = bar.add_task(f"pruning ({config.method})", total=None)
        calib = Calibration(
            tok,
            config.calib,
            config.calib_samples,
            config.calib_seq_len,
            tick=lambda: bar.advance(task),
        )
        if config.needs_calibration:
            bar.update(task, total=calib.batches)
        pruned = METHODS[config.method](hf, config, calib)
    calib.tick = lambda: None
    timings["prune_s"] = round(time.perf_counter() - t, 3)
    settings = {**asdict(config), "source": str(folder)}
    parent = artifact.name if artifact is not None else None
    with store.create(out, step="prune", parent=parent, config=settings) as draft:
        if config.recover:  # tune reads the pruned model from a folder inside the draft
            t = time.perf_counter()
            before_recovery = draft.path / out
            pruned.model.save_pretrained(before_recovery, safe_serialization=True)
            tok.save_pretrained(before_recovery)
            draft.meta["recovery"] = recover(pruned, before_recovery, out, config, calib, quiet)
            shutil.rmtree(before_recovery)
            timings["recover_s"] = round(time.perf_counter() - t, 3)
        pruned.model.save_pretrained(draft.model_dir, safe_serialization=True)
        tok.save_pretrained(draft.model_dir)
        draft.meta["config"].update(_measure(config, before_cfg, before_params, pruned.model))
        draft.meta["removed"] = pruned.removed
        draft.meta["model"] = {
            "model_type": pruned.model.config.model_type,
            "parameters": count_params(pruned.model),
            "layers": pruned.model.config.num_hidden_layers,
            "context": getattr(pruned.model.config, "max_position_embeddings", None),
        }
        timings["total_s"] = round(time.perf_counter() - started, 3)
        draft.meta["timings"].update(timings)
    return store.get(out)


def _recover_name(out: str) -> str:
    return f"{out[:85]}-recover-tmp"


def recover(pruned: Pruned, folder: Path, out: str, config: PruneConfig, calib, quiet) -> dict:
    """LoRA on the pruned model saved in `folder`; fold it into `pruned.model`, re-mask it."""
    import warnings

    from peft import PeftModel

    from lmforge.tune.checkpoint import run_dir
    from lmforge.tune.config import TuneConfig
    from lmforge.tune.trainer import tune

    name = _recover_name(out)
    tune_config = TuneConfig(
        data=config.recover_data,
        method="lora",
        out=name,
        max_steps=config.recover,
        lr=config.recover_lr,
        seed=config.seed,
        eval_fraction=0.0,
    ).validate()
    loss_before = calib.loss(pruned.model)
    store = Store()  # where `tune` writes
    try:
        adapter = tune(str(folder.resolve()), tune_config, quiet=quiet)
        with warnings.catch_warnings():  # peft reads a property transformers 5 renamed
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            model = PeftModel.from_pretrained(pruned.model, str(adapter.path / "adapter"))
        pruned.model = model.merge_and_unload().eval()
        apply_masks(pruned.model, pruned.masks)  # the merged LoRA is dense: zeros back to zero
        metrics = adapter.meta.get("metrics", {})
    finally:
        if store.exists(name):
            store.remove(name)
        shutil.rmtree(run_dir(name), ignore_errors=True)
    return {
        "steps": metrics.get("steps"),
        "lr": tune_config.peak_lr,
        "data": config.recover_data,
        "train_loss": metrics.get("train_loss"),
        "calib_loss_before": round(loss_before, 5),
        "calib_loss_after": round(calib.loss(pruned.model), 5),
    }


def _progress(quiet: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(quiet=quiet, stderr=True),
        transient=True,
    )


def print_report(art: Artifact) -> None:
    """The result of a prune as a small rich table."""
    from rich.console import Console
    from rich.table import Table

    c, rec = art.meta["config"], art.meta.get("recovery")
    title = f"pruned {art.parent or c['source']} -> {art.name} ({c['method']})"
    table = Table(title=title, show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    before, after = c["params_before"], c["params_after"]
    rows = [
        ("sparsity", f"{c['actual_sparsity']:.1%} (asked {c['target_sparsity']:.1%})"),
        ("parameters", f"{before:,} -> {after:,} ({after / before:.1%})"),
        ("non-zero parameters", f"{c['nonzero_params_after']:,}"),
        ("size on disk", f"{art.size_bytes() / 1e6:.1f} MB"),
    ]
    if "structure_after" in c:
        b, a = c["structure_before"], c["structure_after"]
        rows.append(("structure", ", ".join(f"{k} {b[k]} -> {a[k]}" for k in b if b[k] != a[k])))
    if rec:
        rows.append(
            (
                "recovery",
                f"{rec['steps']} LoRA steps: calibration loss "
                f"{rec['calib_loss_before']:.3f} -> {rec['calib_loss_after']:.3f}",
            )
        )
    rows.append(("time", f"{art.meta['timings'].get('total_s', 0):.1f} s"))
    for key, value in rows:
        table.add_row(key, value)
    Console().print(table)
