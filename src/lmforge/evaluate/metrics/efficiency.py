"""Efficiency: throughput and latency percentiles, plus peak memory and labelled energy."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from types import TracebackType

import numpy as np

from lmforge.errors import InvalidInputError
from lmforge.evaluate.metrics.registry import register

# Assumed draw of one fully busy CPU core, used only when nothing can be measured: a desktop
# part of ~65-125 W over 8-16 cores, or a laptop's ~15-45 W over 4-8, is 5-10 W per core;
# we take the top of that range so the estimate errs high.
ASSUMED_WATTS_PER_CORE = 10.0
POWERCAP = Path("/sys/class/powercap")


@register("efficiency")
def compute(records: list[dict], wall_s: float | None = None) -> dict:
    """Items/s and tokens/s (over summed latencies, or over `wall_s`), latency p50/p90/p99."""
    if wall_s is not None and wall_s <= 0:
        raise InvalidInputError(f"wall_s must be positive, got {wall_s}", "pass the run's seconds")
    timed = [r for r in records if "latency_s" in r]
    latency = np.array([r["latency_s"] for r in timed], dtype=float)  # (n,)
    # With a wall clock every record counts (batched runs overlap items); without one, only
    # the records that carry their own latency.
    counted = records if wall_s is not None else timed
    seconds = float(wall_s) if wall_s is not None else float(latency.sum())
    tokens = sum(int(r.get("tokens", 0)) for r in counted)
    p50, p90, p99 = np.percentile(latency, [50, 90, 99]) if len(latency) else (None,) * 3
    return {
        "items_per_s": len(counted) / seconds if seconds > 0 else None,
        "tokens_per_s": tokens / seconds if seconds > 0 else None,
        "latency_p50_s": None if p50 is None else float(p50),
        "latency_p90_s": None if p90 is None else float(p90),
        "latency_p99_s": None if p99 is None else float(p99),
        "seconds": seconds,
        "tokens": tokens,
        "n": len(counted),
    }


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (from getrusage ru_maxrss)."""
    import resource  # Unix only, so imported here

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _rapl_zones(powercap: Path) -> list[tuple[Path, int]]:
    """(energy_uj file, wrap range) of each CPU package zone, skipping sub-zones and psys."""
    zones = []
    for zone in sorted(powercap.glob("intel-rapl:*")):
        # intel-rapl:0:1 (core, uncore, dram) lies inside package intel-rapl:0; psys is the
        # whole platform and contains the packages. Counting either would count twice.
        if not re.fullmatch(r"intel-rapl:\d+", zone.name):
            continue
        try:
            if (zone / "name").read_text().strip() == "psys":
                continue
            zones.append((zone / "energy_uj", int((zone / "max_energy_range_uj").read_text())))
        except (OSError, ValueError):
            continue
    return zones


def _read_rapl(zones: list[tuple[Path, int]]) -> list[int] | None:
    """The energy counter of each zone in µJ, or None if any is unreadable (often root-only)."""
    try:
        return [int(path.read_text()) for path, _ in zones]
    except (OSError, ValueError):
        return None


class _Nvml:
    """Whole-board energy counters of every NVIDIA GPU, through `pynvml`."""

    def __init__(self) -> None:
        import pynvml  # optional: raises ImportError when absent

        self.pynvml = pynvml
        pynvml.nvmlInit()
        try:
            count = pynvml.nvmlDeviceGetCount()
            if count == 0:
                raise RuntimeError("no NVIDIA GPU")
            self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except Exception:
            pynvml.nvmlShutdown()
            raise

    def read_mj(self) -> list[int]:
        """Energy used by each GPU since the driver loaded, in mJ."""
        return [self.pynvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles]

    def close(self) -> None:
        """Release NVML."""
        self.pynvml.nvmlShutdown()


class EnergyMeter:
    """Energy used during a `with` block, always labelled with how it was obtained.

    NVML when `pynvml` imports and a GPU is present (the work then runs on the GPU), else
    RAPL when the CPU package counters are readable, else an estimate from this process's CPU
    time × ASSUMED_WATTS_PER_CORE. After the block, `result` is
    `{"joules": float, "method": "nvml" | "rapl" | "estimated", "note": str}`.
    """

    def __init__(
        self,
        powercap: Path | str = POWERCAP,
        use_nvml: bool = True,
        watts_per_core: float = ASSUMED_WATTS_PER_CORE,
    ) -> None:
        self.powercap = Path(powercap)
        self.use_nvml = use_nvml
        self.watts_per_core = watts_per_core
        self.result: dict | None = None

    def __enter__(self) -> EnergyMeter:
        self.result = None
        self._cpu_start = time.process_time()
        self._nvml: _Nvml | None = None
        self._zones: list[tuple[Path, int]] = []
        self._start: list[int] | None = None
        if self.use_nvml:
            try:
                self._nvml = _Nvml()
                self._start = self._nvml.read_mj()
            # NVML raises its own error types for a missing driver or an unsupported counter
            # (pre-Volta GPUs); any of them means "not measurable here", so fall through.
            except Exception:
                if self._nvml is not None:
                    self._nvml.close()
                self._nvml = None
        if self._nvml is None:
            self._zones = _rapl_zones(self.powercap)
            self._start = _read_rapl(self._zones) if self._zones else None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.result = self._measured() or self._estimated()

    def _measured(self) -> dict | None:
        """The NVML or RAPL reading over the block, or None if neither could be read."""
        if self._start is None:
            return None
        if self._nvml is not None:
            try:
                end = self._nvml.read_mj()
            except Exception:  # see __enter__: any NVML error means no measurement
                return None
            finally:
                self._nvml.close()
            joules = sum(e - s for s, e in zip(self._start, end, strict=True)) / 1e3
            note = (
                f"measured by NVML over {len(end)} GPU(s), whole board (other processes "
                "included); CPU energy not included"
            )
            return {"joules": joules, "method": "nvml", "note": note}
        end = _read_rapl(self._zones)
        if end is None:
            return None
        microjoules = 0
        for (_, wrap), s, e in zip(self._zones, self._start, end, strict=True):
            microjoules += e - s if e >= s else e + wrap - s  # the counter wrapped once
        note = (
            f"measured by RAPL over {len(end)} CPU package(s) (other processes included); "
            "DRAM and GPU not included"
        )
        return {"joules": microjoules / 1e6, "method": "rapl", "note": note}

    def _estimated(self) -> dict:
        """CPU seconds of this process × the assumed watts per busy core."""
        cpu_s = time.process_time() - self._cpu_start
        note = (
            f"estimated, not measured: {cpu_s:.3f} s of process CPU time × "
            f"{self.watts_per_core:g} W per busy core (assumed constant)"
        )
        return {"joules": cpu_s * self.watts_per_core, "method": "estimated", "note": note}


DECODE_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def decode_speed(model, new_tokens: int = 64, repeats: int = 3) -> dict:
    """Single-stream greedy decode speed and energy per token of a loaded `Model`.

    Generates exactly `new_tokens` tokens (EOS ignored) from one fixed prompt `repeats` times
    after a warm-up; tok/s counts the tokens after the first over the time after the first
    (prefill excluded), the median of the runs is the figure.
    """
    import statistics

    from lmforge.engine.generate import generate_batch
    from lmforge.engine.params import SamplingParams

    prompt = [model.encode(DECODE_PROMPT)]
    params = SamplingParams(max_tokens=new_tokens)

    def run():
        return generate_batch(model.decoder, model.tokenizer, prompt, params)[0]

    run()  # warm-up: first-call allocations, lazy tables
    speeds, tokens = [], 0
    with EnergyMeter() as meter:
        for _ in range(repeats):
            done = run()
            tokens += len(done.token_ids)
            if done.decode_s > 0:
                speeds.append((len(done.token_ids) - 1) / done.decode_s)
    energy = meter.result or {}
    return {
        "decode_tok_s": round(statistics.median(speeds), 2) if speeds else None,
        "runs": [round(s, 2) for s in speeds],
        "new_tokens": new_tokens,
        "energy_per_token_j": round(energy.get("joules", 0.0) / tokens, 5) if tokens else None,
        "energy_method": energy.get("method"),
    }
