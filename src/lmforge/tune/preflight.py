"""Preflight: predict a run's peak memory and time before it starts, and make it fit.

The prediction is measured, not guessed: one forward and backward pass on the largest
micro-batch of the run, with the process's peak resident memory reset just before
(`/proc/self/clear_refs`) and read just after (`VmHWM`). The optimizer's state (two fp32
moments per trainable weight) is added on top, since it is allocated only at the first
step. If the peak does not fit in the memory available, the plan turns on gradient
checkpointing, then halves the micro-batch (doubling accumulation, so the global batch
stays), and refuses with a clear message when even one row does not fit.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from lmforge.errors import LmforgeError

HEADROOM = 0.85  # share of the available memory a plan may use


@dataclass
class Plan:
    micro_batch: int
    grad_accum: int
    gradient_checkpointing: bool
    peak_mb: float  # predicted peak resident memory of the run
    available_mb: float
    step_s: float  # predicted seconds per optimizer step
    total_s: float
    steps: int
    params: int
    trainable: int
    measured: bool  # False where /proc could not be read: the memory figure is an estimate

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def proc_status_mb(key: str) -> float | None:
    """A field of /proc/self/status in MiB (VmRSS, VmHWM), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def available_mb() -> float:
    """Memory a new allocation can get: MemAvailable, plus what this process already holds."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024 + (proc_status_mb("VmRSS") or 0.0)
    except OSError:
        pass
    return 8 * 1024.0  # unknown platform: assume a modest laptop


def reset_peak_memory() -> bool:
    """Set this process's peak resident memory (VmHWM) back to its current size (Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_step(loss_fn, batch, set_checkpointing) -> tuple[float, float | None]:
    """(seconds, peak MiB) of one forward + backward on `batch`; gradients are cleared after."""
    rng = torch.get_rng_state()
    measured = reset_peak_memory()
    start = time.perf_counter()
    loss = loss_fn(batch)
    loss.backward()
    took = time.perf_counter() - start
    peak = proc_status_mb("VmHWM") if measured else None
    for p in loss_fn.parameters():
        p.grad = None
    torch.set_rng_state(rng)  # the run's dropout draws stay those of an unmeasured run
    return took, peak


def plan_run(
    model,
    loss_fn,
    groups: list,
    collate,
    micro_batch: int,
    grad_accum: int,
    steps: int,
    checkpointing: bool | None,
    budget_mb: float | None = None,
    shards: int = 1,
) -> Plan:
    """Measure the largest micro-batch and choose settings that fit `budget_mb` (or the machine).

    `shards`: processes the optimizer state is split over (FSDP), 1 when each holds it all.
    """
    available = budget_mb if budget_mb is not None else available_mb() * HEADROOM
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer_mb = trainable * 4 * 3 / 2**20 / shards  # gradient + two Adam moments, fp32
    largest = sorted(groups, key=lambda g: -sum(len(e.input_ids) for e in g))
    tries = [checkpointing] if checkpointing is not None else [False, True]
    mb = micro_batch
    while True:
        for ckpt in tries:
            _set_checkpointing(model, ckpt)
            batch = collate(largest[:mb])
            took, peak = measure_step(loss_fn, batch, ckpt)
            measured = peak is not None
            if peak is None:  # estimate: weights + activations ~ 40 floats/token/layer/hidden
                cfg = model.config
                act = batch.tokens * cfg.num_hidden_layers * cfg.hidden_size * 40 * 4 / 2**20
                peak = params * 4 / 2**20 + act
            peak += optimizer_mb
            if peak <= available:
                took, _ = measure_step(loss_fn, batch, ckpt)  # the first pass pays warm-up
                accum = grad_accum * micro_batch // mb
                step_s = took * accum
                return Plan(
                    mb, accum, ckpt, peak, available, step_s, step_s * steps, steps,
                    params, trainable, measured,
                )  # fmt: skip
        if mb == 1:
            raise LmforgeError(
                f"this run needs about {peak:.0f} MB at one row per step, more than the "
                f"{available:.0f} MB available",
                "use a shorter --seq-len, a parameter-efficient --method, or a smaller model",
            )
        mb = max(mb // 2, 1)


def _set_checkpointing(model, on: bool) -> None:
    """Turn activation (gradient) checkpointing on or off, by whichever name this version uses."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(base, "supports_gradient_checkpointing", False):
        return
    new = hasattr(base, "activation_checkpointing_enable")  # transformers >= 5.x
    is_on = base.is_activation_checkpointing if new else base.is_gradient_checkpointing
    if on and not is_on:
        if new:
            base.activation_checkpointing_enable({"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
    elif is_on and not on:
        (base.activation_checkpointing_disable if new else base.gradient_checkpointing_disable)()
