"""Energy meters. Every reading carries its ``source`` and is in joules; an estimate is never a measurement.

Sources, best first (``build_ledger`` picks the first that works and logs why it skipped the others):

* ``nvml``: the GPUs' total-energy counter (mJ since driver load; Volta or newer), read at window
  boundaries. It updates every 20-100 ms, so very short windows may read 0.
* ``nvml-power``: GPUs without that counter: board power (mW) sampled by a background thread and
  integrated with the trapezoid rule (Zeus' ``PowerMonitor``).
* ``jetson-ina``: Jetson modules (no NVML): the INA3221 ``VDD_IN`` rail (module input) from hwmon
  sysfs, sampled and integrated the same way. Rails overlap, so only the total rail is used.
* ``rapl``: ``/sys/class/powercap/intel-rapl:*/energy_uj`` package domains (AMD exposes the same
  names), wraparound handled with ``max_energy_range_uj``. Root-only since Linux 5.10: when not
  readable one warning is logged and the next source is used.
* ``estimate``: CPU time of this process (psutil) x ``watts_per_core`` (codecarbon uses 4 W per
  thread for an unknown CPU). Remote backends that do not report energy: joules per token, from
  Epoch AI's 2025 estimate of a GPT-4o query for the cloud tier (see ``EnergyConfig``).

Every source is turned into a cumulative joule counter, and an ``EnergyLedger`` turns the counter
into per-request readings. Requests that overlap share the device, so the ledger splits the energy
of every interval between two window events (a request opening or closing) equally among the
requests open during it: a time share of the device. Summed over requests it equals what the
counter measured while any request was open. A reading that shared an interval is labelled
``attribution="apportioned"``, one that had the device to itself ``"exclusive"``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

SOURCES = ("nvml", "nvml-power", "jetson-ina", "rapl", "estimate")


@dataclass(frozen=True)
class EnergyReading:
    joules: float
    source: str  # one of SOURCES
    attribution: str = "exclusive"  # exclusive | apportioned

    @property
    def is_measurement(self) -> bool:
        return self.source != "estimate"


def _readable(read: Callable[[], float]) -> bool:
    """Whether a sysfs sensor can be read (root-only files and vanished devices cannot)."""
    try:
        read()
        return True
    except (OSError, ValueError):
        return False


# ------------------------------------------------------------------ counters (cumulative joules)
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
        return bool(self.domains) and _readable(self.read_joules)

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
    """The visible NVIDIA GPUs: energy counter (J) and board power (W)."""

    def __init__(self):
        import pynvml  # nvidia-ml-py

        self._nvml = pynvml
        pynvml.nvmlInit()
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        if not self.handles:
            raise RuntimeError("no NVIDIA GPU")

    def read_joules(self) -> float:
        """Raises NVMLError_NotSupported on pre-Volta GPUs."""
        return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles) / 1000.0

    def read_watts(self) -> float:
        return sum(self._nvml.nvmlDeviceGetPowerUsage(h) for h in self.handles) / 1000.0


class JetsonPowerReader:
    """Module input power (W) from the INA3221 hwmon rails of a Jetson (kernel ``ina3221`` driver).

    Reads ``power*_input`` (mW) where the driver has it, else ``in*_input`` (mV) x ``curr*_input``
    (mA). The rail labelled ``VDD_IN`` (``in*_label``) is the module total; without it the rails are
    summed and a warning says the figure may double-count.
    """

    def __init__(self, root: str | Path = "/sys/bus/i2c/drivers"):
        self.channels: list[tuple[Path, str]] = []  # (hwmon dir, channel number)
        labelled = []
        for hwmon in sorted(Path(root).glob("ina3221*/*/hwmon/hwmon*")):
            for label_file in sorted(hwmon.glob("in*_label")):
                channel = label_file.name[2:-6]
                label = label_file.read_text().strip()
                entry = (hwmon, channel)
                self.channels.append(entry)
                if label.upper().startswith("VDD_IN"):
                    labelled.append(entry)
        if labelled:
            self.channels = labelled
        elif self.channels:
            log.warning("energy: no VDD_IN rail among the INA3221 channels; summing %d rails (may double-count)",
                        len(self.channels))

    def available(self) -> bool:
        return bool(self.channels) and _readable(self.read_watts)

    def read_watts(self) -> float:
        total_mw = 0.0
        for hwmon, ch in self.channels:
            power = hwmon / f"power{ch}_input"
            if power.exists():
                total_mw += float(power.read_text())
            else:
                total_mw += float((hwmon / f"in{ch}_input").read_text()) * float(
                    (hwmon / f"curr{ch}_input").read_text()) / 1000.0
        return total_mw / 1000.0


class PowerIntegrator:
    """A cumulative joule counter from sampled power: a daemon thread integrates with the trapezoid rule."""

    def __init__(self, read_watts: Callable[[], float], interval_s: float = 0.1,
                 clock: Callable[[], float] = time.monotonic):
        self._read, self.interval_s, self._clock = read_watts, interval_s, clock
        self._lock = threading.Lock()
        self._t, self._w = clock(), read_watts()
        self._joules = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="energy-sampler", daemon=True)
        self._thread.start()

    def sample(self) -> float:
        watts, now = self._read(), self._clock()
        with self._lock:
            self._joules += (now - self._t) * (watts + self._w) / 2.0
            self._t, self._w = now, watts
            return self._joules

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except Exception:  # a sensor that goes away: keep the last value, say so once
                log.exception("energy: power sampling failed; stopping the sampler")
                return

    def read_joules(self) -> float:
        return self.sample()

    def close(self) -> None:
        self._stop.set()


class CpuTimeEstimate:
    """Joules *estimated* as this process' CPU seconds x ``watts_per_core``."""

    def __init__(self, watts_per_core: float):
        self.watts_per_core = watts_per_core
        self._process = psutil.Process()

    def read_joules(self) -> float:
        cpu = self._process.cpu_times()
        return (cpu.user + cpu.system) * self.watts_per_core


# ------------------------------------------------------------------ per-request attribution
class EnergyLedger:
    """Per-request energy from one cumulative counter, time-shared among overlapping requests."""

    def __init__(self, read_joules: Callable[[], float], source: str):
        if source not in SOURCES:
            raise ValueError(f"unknown energy source {source!r}")
        self._read, self.source = read_joules, source
        self._lock = threading.Lock()
        self._open: dict[object, list] = {}  # key -> [joules so far, shared?]
        self._last = 0.0

    def _advance(self) -> None:
        now = self._read()
        delta = max(now - self._last, 0.0)
        self._last = now
        if self._open:
            share = delta / len(self._open)
            shared = len(self._open) > 1
            for acc in self._open.values():
                acc[0] += share
                acc[1] = acc[1] or shared

    def open(self, key: object) -> None:
        with self._lock:
            self._advance()
            self._open[key] = [0.0, False]

    def close(self, key: object) -> EnergyReading:
        with self._lock:
            self._advance()
            joules, shared = self._open.pop(key)
        return EnergyReading(joules, self.source, "apportioned" if shared else "exclusive")

    def measure(self):
        """Context manager: ``with ledger.measure() as result: ...``; ``result.reading`` afterwards."""
        return _Window(self)


class _Window:
    def __init__(self, ledger: EnergyLedger):
        self.ledger, self.reading = ledger, None

    def __enter__(self):
        self.ledger.open(self)
        return self

    def __exit__(self, *exc):
        self.reading = self.ledger.close(self)
        return False


def build_ledger(*, prefer_gpu: bool = True, powercap_root: str | Path = "/sys/class/powercap",
                 i2c_root: str | Path = "/sys/bus/i2c/drivers", watts_per_core: float = 4.0,
                 sample_interval_s: float = 0.1) -> EnergyLedger:
    """The best available source on this machine: nvml, nvml-power, jetson-ina, rapl, then estimate."""
    if prefer_gpu:
        try:
            nvml = NvmlReader()
        except Exception as exc:  # ImportError, NVMLError (no driver, no GPU)
            log.warning("energy: NVML not usable (%s); trying Jetson rails, RAPL, then estimates", exc)
        else:
            try:
                nvml.read_joules()
                return EnergyLedger(nvml.read_joules, "nvml")
            except Exception as exc:  # NVMLError_NotSupported: pre-Volta
                log.warning("energy: NVML energy counter not supported (%s); integrating sampled power", exc)
                return EnergyLedger(PowerIntegrator(nvml.read_watts, sample_interval_s).read_joules, "nvml-power")
        jetson = JetsonPowerReader(i2c_root)
        if jetson.available():
            return EnergyLedger(PowerIntegrator(jetson.read_watts, sample_interval_s).read_joules, "jetson-ina")
    rapl = RaplReader(powercap_root)
    if rapl.available():
        return EnergyLedger(rapl.read_joules, "rapl")
    if rapl.domains:
        log.warning("energy: RAPL counters under %s are not readable (root-only since Linux 5.10); "
                    "reporting estimates labelled 'estimate'", powercap_root)
    else:
        log.warning("energy: no NVML, Jetson or RAPL counters on this machine; reporting CPU-time estimates "
                    "(%.1f W per busy core) labelled 'estimate'", watts_per_core)
    return EnergyLedger(CpuTimeEstimate(watts_per_core).read_joules, "estimate")


def token_estimate(prompt_tokens: int, completion_tokens: int, *, j_per_input_token: float,
                   j_per_output_token: float) -> EnergyReading:
    """Energy of a remote call that reported none: a per-token estimate, labelled as such."""
    return EnergyReading(completion_tokens * j_per_output_token + prompt_tokens * j_per_input_token, "estimate")
