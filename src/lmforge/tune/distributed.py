"""Scale-out: DDP through `torchrun` (gloo on CPU, NCCL on GPU), one process per rank.

`lmforge tune --nproc N` re-runs the same command under `torch.distributed.run`; each rank
then joins the process group from the environment torchrun sets. Every rank knows the whole
data order and takes every `size`-th micro-batch of a step.
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

    @classmethod
    def current(cls) -> World:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module)

    def no_sync(self, module, last: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        if self.size == 1 or last:
            return contextlib.nullcontext()
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
