"""Scale-out: DDP or FSDP through `torchrun` (gloo on CPU, NCCL on GPU), one process per rank.

`lmforge tune --nproc N` re-runs the same command under `torch.distributed.run`; each rank
then joins the process group from the environment torchrun sets. Every rank knows the whole
data order and takes every `size`-th micro-batch of a step.

With `--fsdp` the model is sharded (FSDP2, `fully_shard`) instead of replicated: each
decoder block is one unit and the loss module, holding the rest (embeddings, final norm and
head), is the root. Every weight, gradient and optimizer moment is then a `DTensor` holding
1/N of the rows; a block's whole weights exist only while it runs. What leaves the run
(checkpoints, the artifact) is gathered back into whole tensors first (`full_tensor`,
`full_state`) and read back by cutting each rank's part (`shard_like`), so the files are
the same as those of an unsharded run and either kind resumes the other (same --nproc).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


def init_from_env() -> None:
    """Join the process group torchrun described, once; nothing when not launched by it."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


@dataclass
class World:
    rank: int = 0
    size: int = 1
    shard: bool = False  # FSDP: weights, gradients and optimizer state split over the ranks

    @classmethod
    def current(cls, shard: bool = False) -> World:
        """This process's place; `shard` (--fsdp) takes effect only with 2 or more ranks."""
        if dist.is_available() and dist.is_initialized():
            size = dist.get_world_size()
            return cls(dist.get_rank(), size, shard and size > 1)
        return cls()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` (the loss, holding the model) replicated by DDP or sharded by FSDP, once."""
        if self.size == 1:
            return module
        if not self.shard:
            from torch.nn.parallel import DistributedDataParallel

            return DistributedDataParallel(module)
        from torch.distributed.fsdp import fully_shard

        for block in decoder_blocks(module):
            fully_shard(block)
        # The root would keep its weights whole after forward; resharding them too means that
        # between steps (and after an eval) every weight is a shard, the state saving expects.
        fully_shard(module, reshard_after_forward=True)
        return module

    def no_sync(self, module, last: bool):
        """Skip the gradient all-reduce (DDP) or reduce-scatter (FSDP) on all but the last
        micro-batch of a step; the gradients accumulate unreduced until then."""
        if self.size == 1 or last:
            return contextlib.nullcontext()
        if self.shard:
            return _gradient_sync_off(module)
        return module.no_sync()

    def sum(self, value: float) -> float:
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t)

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


@contextlib.contextmanager
def _gradient_sync_off(module):
    module.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        module.set_requires_gradient_sync(True)


def decoder_blocks(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The repeated blocks inside `module`: the classes its HF model lists in `_no_split_modules`
    (LlamaDecoderLayer, ...), the unit `accelerate` wraps for FSDP too."""
    names: set[str] = set()
    for m in module.modules():
        names.update(getattr(m, "_no_split_modules", None) or ())
    return [m for m in module.modules() if type(m).__name__ in names]


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """The whole of `t`: gathered from every rank if it is an FSDP shard (then every rank must
    call this, in the same order), else `t` itself."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def shard_like(full: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """This rank's part of the whole tensor `full`, laid out as `like` (an FSDP shard of the
    same shape); `full` itself when `like` is not sharded."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if not isinstance(like, DTensor) or full.shape != like.shape:
        return full
    # every rank read the same whole tensor from the checkpoint: each cuts out its own rows,
    # with no communication
    full = full.to(like.to_local().device, like.dtype)
    return distribute_tensor(full, like.device_mesh, like.placements, src_data_rank=None)


def full_state(model, trainable: bool = False, keep: bool = True) -> dict[str, torch.Tensor]:
    """`model.state_dict()`, or only its trainable weights, as whole tensors, tied weights as
    one tensor. Under FSDP every rank must call this, since it gathers the shards; a rank
    without `keep` takes part and gets {}. The gathered tensors go to the CPU, and unsharded
    tensors are the model's own (no copy)."""
    if trainable:
        items = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    else:
        items = list(model.state_dict(keep_vars=True).items())
    whole: dict[int, torch.Tensor] = {}
    for _, t in items:
        if id(t) in whole:  # a tied weight: gathered once, on every rank alike
            continue
        local = t.detach()
        w = full_tensor(local)  # a collective when `t` is a shard
        whole[id(t)] = (w if w is local else w.cpu()) if keep else local
    return {name: whole[id(t)] for name, t in items} if keep else {}


def launch(nproc: int, argv: list[str]) -> int:
    """Run `lmforge <argv>` on `nproc` local ranks through torchrun; its exit code."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "lmforge.cli",
        *argv,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.call(cmd, env=env)
