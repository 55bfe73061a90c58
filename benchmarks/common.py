"""Pieces every benchmark shares: run summaries and the atomic JSON write."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path


def summary(values: list[float]) -> dict:
    """Median, min, max and the runs, rounded for the result file."""
    r = [round(v, 2) for v in values]
    return {"median": round(statistics.median(values), 2), "min": min(r), "max": max(r), "runs": r}


def write_json(path: Path, data: dict) -> None:
    """Write `data` to `path` atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def machine_info(**versions: str | None) -> dict:
    """CPU, cores, threads and library versions (plus the anchor's, passed in `versions`)."""
    import torch
    import transformers

    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        **versions,
    }
