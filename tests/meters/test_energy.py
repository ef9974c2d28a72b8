"""Energy meters on fake sysfs trees (RAPL, Jetson INA3221), NVML absence, estimates and attribution."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from vlrouter.meters.energy import (
    EnergyLedger,
    EnergyReading,
    JetsonPowerReader,
    PowerIntegrator,
    RaplReader,
    build_ledger,
    token_estimate,
)


def fake_rapl(root, domains: dict[str, tuple[int, int]]):
    """domains: name -> (energy_uj, max_energy_range_uj); subzones (core, dram) are ignored."""
    for name, (energy, maximum) in domains.items():
        d = root / name
        d.mkdir(parents=True)
        (d / "energy_uj").write_text(str(energy))
        (d / "max_energy_range_uj").write_text(str(maximum))
    (root / "intel-rapl:0:0").mkdir()
    (root / "intel-rapl:0:0" / "energy_uj").write_text("999999999")
    return root


def set_energy(root, name: str, value: int) -> None:
    (root / name / "energy_uj").write_text(str(value))


def fake_jetson(root, rails: dict[str, tuple[float, float]]):
    """rails: label -> (mV, mA) on one INA3221 hwmon device, channels numbered from 1."""
    hwmon = root / "ina3221" / "1-0040" / "hwmon" / "hwmon3"
    hwmon.mkdir(parents=True)
    for ch, (label, (mv, ma)) in enumerate(rails.items(), 1):
        (hwmon / f"in{ch}_label").write_text(label + "\n")
        (hwmon / f"in{ch}_input").write_text(str(mv))
        (hwmon / f"curr{ch}_input").write_text(str(ma))
    return root


def test_rapl_sums_packages_and_handles_wraparound(tmp_path):
    root = fake_rapl(tmp_path, {"intel-rapl:0": (1_000_000, 10_000_000), "intel-rapl:1": (2_000_000, 10_000_000)})
    rapl = RaplReader(root)
    assert [d.name for d in rapl.domains] == ["intel-rapl:0", "intel-rapl:1"]
    assert rapl.read_joules() == pytest.approx(3.0)
    set_energy(root, "intel-rapl:0", 9_500_000)
    assert rapl.read_joules() == pytest.approx(11.5)
    set_energy(root, "intel-rapl:0", 500_000)  # wrapped past 10 J: +1 J since the last read
    assert rapl.read_joules() == pytest.approx(12.5)


def test_ledger_uses_rapl_window_across_a_wrap(tmp_path):
    root = fake_rapl(tmp_path, {"intel-rapl:0": (8_000_000, 10_000_000)})
    ledger = build_ledger(powercap_root=root, prefer_gpu=False)
    assert ledger.source == "rapl"
    with ledger.measure() as window:
        set_energy(root, "intel-rapl:0", 1_000_000)  # 8 J -> 10 J (wrap) -> 1 J: 3 J used
    assert window.reading == EnergyReading(3.0, "rapl", "exclusive") and window.reading.is_measurement


def test_unreadable_rapl_warns_once_and_estimates(tmp_path, caplog):
    root = fake_rapl(tmp_path, {"intel-rapl:0": (1, 10)})
    (root / "intel-rapl:0" / "energy_uj").unlink()  # unreadable, as for non-root users on Linux >= 5.10
    with caplog.at_level(logging.WARNING):
        ledger = build_ledger(powercap_root=root, prefer_gpu=False, watts_per_core=10.0)
    assert ledger.source == "estimate"
    assert sum("not readable" in r.message for r in caplog.records) == 1
    with ledger.measure() as window:
        start, deadline = time.process_time(), time.monotonic() + 5
        while time.process_time() - start < 0.05 and time.monotonic() < deadline:  # burn >= 50 ms of CPU
            sum(i * i for i in range(20_000))
    assert window.reading.source == "estimate" and not window.reading.is_measurement
    assert window.reading.joules >= 0.05 * 10.0 * 0.9


def test_nvml_absent_falls_back_with_a_warning(tmp_path, caplog):
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU driver is present: NVML is not absent here")
    with caplog.at_level(logging.WARNING):
        ledger = build_ledger(powercap_root=tmp_path, i2c_root=tmp_path, prefer_gpu=True)
    assert ledger.source == "estimate"
    assert any("NVML not usable" in r.message for r in caplog.records)


def test_jetson_rails_use_vdd_in_only(tmp_path):
    root = fake_jetson(tmp_path, {"VDD_IN": (5000, 1200), "VDD_CPU_GPU_CV": (5000, 600), "VDD_SOC": (5000, 300)})
    reader = JetsonPowerReader(root)
    assert reader.available()
    assert reader.read_watts() == pytest.approx(6.0)  # 5 V x 1.2 A; the sub-rails are inside VDD_IN


def test_jetson_ledger_integrates_sampled_power(tmp_path):
    root = fake_jetson(tmp_path, {"VDD_IN": (5000, 2000)})  # 10 W
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("NVML would be chosen first on this machine")
    ledger = build_ledger(prefer_gpu=True, powercap_root=tmp_path / "none", i2c_root=root, sample_interval_s=0.01)
    assert ledger.source == "jetson-ina"
    with ledger.measure() as window:
        time.sleep(0.3)
    assert window.reading.joules == pytest.approx(3.0, rel=0.35)


def test_power_integrator_trapezoid():
    now = [0.0]
    watts = [10.0]
    meter = PowerIntegrator(lambda: watts[0], interval_s=3600, clock=lambda: now[0])  # the thread stays idle
    now[0], watts[0] = 2.0, 30.0
    assert meter.read_joules() == pytest.approx(40.0)  # (10 + 30) / 2 x 2 s
    now[0] = 3.0
    assert meter.read_joules() == pytest.approx(70.0)
    meter.close()


def test_token_estimate_is_labelled_estimate():
    reading = token_estimate(100, 500, j_per_input_token=0.8, j_per_output_token=2.2)
    assert reading.source == "estimate" and not reading.is_measurement
    assert reading.joules == pytest.approx(500 * 2.2 + 100 * 0.8)


class Counter:
    def __init__(self):
        self.joules = 0.0

    def __call__(self) -> float:
        return self.joules


def test_ledger_time_shares_overlapping_windows():
    c = Counter()
    ledger = EnergyLedger(c, "nvml")
    ledger.open("a")
    c.joules += 10  # a alone
    ledger.open("b")
    c.joules += 6  # a and b
    a = ledger.close("a")
    c.joules += 4  # b alone
    b = ledger.close("b")
    c.joules += 100  # nobody open: not attributed
    assert a == EnergyReading(13.0, "nvml", "apportioned")
    assert b == EnergyReading(7.0, "nvml", "apportioned")
    ledger.open("c")
    c.joules += 5
    assert ledger.close("c") == EnergyReading(5.0, "nvml", "exclusive")


def test_ledger_attribution_conserves_energy_under_concurrency():
    """Many threads opening and closing windows: the parts add up to what the counter measured."""
    c = Counter()
    lock = threading.Lock()
    ledger = EnergyLedger(lambda: c(), "rapl")
    readings = []

    def worker(k: int):
        for _ in range(50):
            with ledger.measure() as w, lock:
                c.joules += 1.0 + k
            readings.append(w.reading)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(readings) == 400
    assert sum(r.joules for r in readings) == pytest.approx(c.joules)
    assert {r.source for r in readings} == {"rapl"}
