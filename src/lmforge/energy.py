"""The one energy meter: what a block of work drew, always labelled with how it was obtained.

NVML on a GPU, RAPL where `/sys/class/powercap` is readable, else an estimate from CPU time
(labelled *estimated*). At the bottom of lmforge: the store meters every step with it, and
tune, distill, the evaluator and the pipeline take their own readings.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import TracebackType

# Assumed draw of one fully busy CPU core, used only when nothing can be measured: a desktop
# part of ~65-125 W over 8-16 cores, or a laptop's ~15-45 W over 4-8, is 5-10 W per core;
# we take the top of that range so the estimate errs high.
ASSUMED_WATTS_PER_CORE = 10.0
POWERCAP = Path("/sys/class/powercap")


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
