"""Energy meters on a fake powercap tree, NVML absence, estimates and attribution."""

from __future__ import annotations

import logging

import pytest

from vlrouter.meters.energy import EnergyMeter, EnergyReading, RaplReader, attribute, cloud_estimate


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


def test_rapl_sums_packages_and_handles_wraparound(tmp_path):
    root = fake_rapl(tmp_path, {"intel-rapl:0": (1_000_000, 10_000_000), "intel-rapl:1": (2_000_000, 10_000_000)})
    rapl = RaplReader(root)
    assert [d.name for d in rapl.domains] == ["intel-rapl:0", "intel-rapl:1"]
    assert rapl.read_joules() == pytest.approx(3.0)
    set_energy(root, "intel-rapl:0", 9_500_000)
    assert rapl.read_joules() == pytest.approx(11.5)
    set_energy(root, "intel-rapl:0", 500_000)  # wrapped past 10 J: +1 J since the last read
    assert rapl.read_joules() == pytest.approx(12.5)


def test_meter_uses_rapl_window(tmp_path):
    root = fake_rapl(tmp_path, {"intel-rapl:0": (1_000_000, 10_000_000)})
    meter = EnergyMeter(powercap_root=root, prefer_gpu=False)
    assert meter.source == "rapl"
    window = meter.start()
    set_energy(root, "intel-rapl:0", 4_000_000)
    reading = meter.stop(window)
    assert reading == EnergyReading(3.0, "rapl") and reading.is_measurement


def test_unreadable_rapl_warns_once_and_estimates(tmp_path, caplog):
    root = fake_rapl(tmp_path, {"intel-rapl:0": (1, 10)})
    (root / "intel-rapl:0" / "energy_uj").unlink()  # unreadable, as for non-root users on Linux >= 5.10
    with caplog.at_level(logging.WARNING):
        meter = EnergyMeter(powercap_root=root, prefer_gpu=False, watts_per_core=10.0)
    assert meter.source == "estimate"
    assert sum("not readable" in r.message for r in caplog.records) == 1
    import time

    start = meter.start()
    deadline = time.monotonic() + 5
    while time.process_time() - start[1] < 0.05 and time.monotonic() < deadline:  # burn >= 50 ms of CPU
        sum(i * i for i in range(20_000))
    reading = meter.stop(start)
    assert reading.source == "estimate" and not reading.is_measurement and reading.joules > 0


def test_nvml_absent_falls_back_with_a_warning(tmp_path, caplog):
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("a GPU driver is present: NVML is not absent here")
    with caplog.at_level(logging.WARNING):
        meter = EnergyMeter(powercap_root=tmp_path, prefer_gpu=True)  # no driver, no powercap tree
    assert meter.source == "estimate"
    assert any("NVML not usable" in r.message for r in caplog.records)


def test_cloud_estimate_is_labelled_estimate():
    reading = cloud_estimate(prompt_tokens=100, completion_tokens=500)
    assert reading.source == "estimate" and reading.joules == pytest.approx(500 * 2.2 + 100 * 0.8)


def test_attribution_by_token_share():
    parts = attribute(EnergyReading(90.0, "rapl"), {"a": 10, "b": 20, "c": 60})
    assert {k: v.joules for k, v in parts.items()} == pytest.approx({"a": 10.0, "b": 20.0, "c": 60.0})
    assert all(v.attribution == "apportioned" and v.source == "rapl" for v in parts.values())
    assert sum(v.joules for v in parts.values()) == pytest.approx(90.0)
    alone = attribute(EnergyReading(5.0, "nvml"), {"only": 7})
    assert alone["only"] == EnergyReading(5.0, "nvml", "exclusive")
