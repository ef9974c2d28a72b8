"""Energy meters. Every reading carries its ``source`` and is in joules; an estimate is never a measurement.

Sources, best first:

* ``nvml``: the GPU's total-energy counter (mJ since driver load; Volta or newer), read at the start
  and end of a window. It updates every 20-100 ms, so very short windows may read 0.
* ``rapl``: ``/sys/class/powercap/intel-rapl:*/energy_uj`` package domains (AMD exposes the same
  names), wraparound handled with ``max_energy_range_uj``. Root-only since Linux 5.10: when not
  readable a single warning is logged and the next source is used.
* ``estimate``: CPU time of this process (psutil) x ``watts_per_core`` (codecarbon's constant
  mode uses 0.5 x TDP; we take a configured per-core share). Cloud calls: joules per output token
  and per input token from Epoch AI's 2025 estimate of a GPT-4o query (see ``CLOUD_J_PER_TOKEN``).

Concurrent requests share one device: ``attribute`` splits a window's joules across the requests
that overlapped it by their share of tokens, and the result is labelled ``apportioned``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

# ~0.3 Wh (1080 J) per ~500-output-token GPT-4o query (Epoch AI, Feb 2025, GPU only, no PUE);
# split as ~2.2 J per output token + ~0.8 J per input token (our arithmetic from Epoch's figures).
CLOUD_J_PER_TOKEN = {"output": 2.2, "input": 0.8, "source": "epoch_ai_2025"}


@dataclass(frozen=True)
class EnergyReading:
    joules: float
    source: str  # nvml | nvml-power | jetson-ina | rapl | estimate
    attribution: str = "exclusive"  # exclusive | apportioned

    @property
    def is_measurement(self) -> bool:
        return self.source != "estimate"


class RaplReader:
    """Cumulative package energy (J) from powercap, with wraparound tracking per domain."""

    def __init__(self, root: str | Path = "/sys/class/powercap"):
        self.root = Path(root)
        self.domains = sorted(p for p in self.root.glob("intel-rapl:*") if p.name.count(":") == 1)
        self._last: dict[Path, int] = {}
        self._wraps: dict[Path, int] = {}
        self._max: dict[Path, int] = {}
        for d in self.domains:
            try:
                self._max[d] = int((d / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                self._max[d] = 0

    def available(self) -> bool:
        if not self.domains:
            return False
        try:
            self.read_joules()
            return True
        except (OSError, ValueError):
            return False

    def read_joules(self) -> float:
        total = 0.0
        for d in self.domains:
            raw = int((d / "energy_uj").read_text())
            last = self._last.get(d)
            if last is not None and raw < last:  # the counter wrapped since the last read
                self._wraps[d] = self._wraps.get(d, 0) + 1
            self._last[d] = raw
            total += (raw + self._wraps.get(d, 0) * self._max[d]) / 1e6
        return total


class NvmlReader:
    """Total energy of the visible GPUs in J, from NVML's mJ counter."""

    def __init__(self):
        import pynvml  # nvidia-ml-py

        self._nvml = pynvml
        pynvml.nvmlInit()
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        if not self.handles:
            raise RuntimeError("no NVIDIA GPU")
        self.read_joules()  # raises NVMLError_NotSupported on pre-Volta GPUs

    def read_joules(self) -> float:
        return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles) / 1000.0


class EnergyMeter:
    """Windows of energy for one device class, from the best available source."""

    def __init__(self, *, powercap_root: str | Path = "/sys/class/powercap", prefer_gpu: bool = True,
                 watts_per_core: float = 4.0, clock: Callable[[], float] = time.perf_counter):
        self.watts_per_core = watts_per_core
        self.clock = clock
        self._reader: Callable[[], float] | None = None
        self.source = "estimate"
        if prefer_gpu:
            try:
                self._reader, self.source = NvmlReader().read_joules, "nvml"
            except Exception as exc:  # ImportError, NVMLError (no driver, no GPU, not supported)
                log.warning("energy: NVML not usable (%s); trying RAPL, then estimates", exc)
        if self._reader is None:
            rapl = RaplReader(powercap_root)
            if rapl.available():
                self._reader, self.source = rapl.read_joules, "rapl"
            elif rapl.domains:
                log.warning("energy: RAPL counters under %s are not readable (root-only since Linux 5.10); "
                            "reporting estimates labelled 'estimate'", powercap_root)
        self._process = psutil.Process()

    def start(self) -> tuple[float, float]:
        cpu = self._process.cpu_times()
        return (self._reader() if self._reader else 0.0), cpu.user + cpu.system

    def stop(self, start: tuple[float, float]) -> EnergyReading:
        if self._reader is not None:
            return EnergyReading(max(self._reader() - start[0], 0.0), self.source)
        cpu = self._process.cpu_times()
        return EnergyReading((cpu.user + cpu.system - start[1]) * self.watts_per_core, "estimate")


def cloud_estimate(prompt_tokens: int, completion_tokens: int) -> EnergyReading:
    joules = completion_tokens * CLOUD_J_PER_TOKEN["output"] + prompt_tokens * CLOUD_J_PER_TOKEN["input"]
    return EnergyReading(joules, "estimate")


def attribute(window: EnergyReading, tokens: dict[str, int]) -> dict[str, EnergyReading]:
    """Split one shared window's joules across requests by their share of tokens."""
    total = sum(tokens.values())
    if len(tokens) <= 1 or total <= 0:
        share = 1.0 / max(len(tokens), 1)
        return {k: EnergyReading(window.joules * share, window.source,
                                 "exclusive" if len(tokens) == 1 else "apportioned") for k in tokens}
    return {k: EnergyReading(window.joules * n / total, window.source, "apportioned") for k, n in tokens.items()}
