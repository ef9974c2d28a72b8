"""The console's figures on decision-log rows built here (``vlrouter.ui.data``), and ``LogSource`` on a real log."""

from __future__ import annotations

import asyncio

import pytest

from vlrouter.telemetry.decision_log import DecisionLog
from vlrouter.telemetry.record import DecisionRecord
from vlrouter.ui import data
from vlrouter.ui.source import LogSource

PRICES = data.CloudPrices(j_per_input_token=0.8, j_per_output_token=2.2, usd_per_mtok_input=2.5,
                          usd_per_mtok_output=10.0, usd_per_kwh=0.15)


def row(ts, tier="edge", scenario="quality", **kw):
    base = {"request_id": f"req-{ts}", "ts": ts, "status": 200, "tier": tier, "decided_tier": tier,
            "scenario_name": scenario, "error_code": None, "fallback_from": None, "e2e_ms": 100.0, "ttft_ms": 40.0,
            "tpot_ms": 10.0, "prompt_tokens": 10, "completion_tokens": 5, "energy_j": 1.0, "energy_source": "rapl",
            "model_requested": "vlrouter-auto", "policy": "mlp", "threshold": 0.1, "scores": {"margin": -0.2}}
    return {**base, **kw}


def test_live_buckets_rate_and_edge_share_per_scenario():
    now, rows = 1000.0, [row(905, "edge", "fast"), row(906, "cloud", "fast"), row(995, "edge", "quality"),
                         row(996, "edge", "quality"), row(997, None, status=404, error_code="model_not_found")]
    live = data.live(rows, now=now, window_s=100, buckets=10)
    assert live["requests"] == 5 and live["answered"] == 4 and live["edge_share"] == 0.75
    assert live["series"]["t"][0] == 900 and live["bucket_s"] == 10
    rate = live["series"]["rate_per_s"]
    assert rate[0] == pytest.approx(0.2) and rate[9] == pytest.approx(0.3)
    assert live["series"]["edge_share"]["fast"][0] == 0.5 and live["series"]["edge_share"]["fast"][9] is None
    assert live["series"]["edge_share"]["quality"][9] == 1.0
    assert live["errors"] == {"model_not_found": 1}
    assert set(live["by_tier"]) == {"edge", "cloud"}
    edge = live["by_tier"]["edge"]
    assert edge["energy_sources"] == {"rapl": 3} and edge["energy_estimated"] is False


def test_tier_figures_percentiles_and_estimates_are_labelled():
    rows = [row(i, e2e_ms=float(i), energy_j=2.0, energy_source="estimate") for i in range(1, 101)]
    rows.append(row(200, e2e_ms=None, energy_j=None, energy_source=None))
    g = data.tier_figures(rows)
    assert g["e2e_ms_p50"] == pytest.approx(50.5) and g["e2e_ms_p99"] == pytest.approx(99.01)
    assert g["joules_per_request"] == 2.0 and g["energy_rows"] == 100 and g["requests"] == 101
    assert g["energy_estimated"] is True
    assert data.tier_figures([])["e2e_ms_p50"] is None


def test_a_disconnected_client_is_not_an_answer():
    rows = [row(1), row(2, error_code="client_disconnected")]
    assert data.live(rows, now=10, window_s=10)["errors"] == {"client_disconnected": 1}


def test_savings_against_everything_to_the_cloud():
    cloud = row(1, "cloud", energy_j=12.0, energy_source="estimate", ttft_ms=200.0, tpot_ms=20.0, e2e_ms=300.0)
    edge = row(2, "edge", energy_j=1.0, ttft_ms=30.0, e2e_ms=80.0, prompt_tokens=10, completion_tokens=5)
    s = data.savings([cloud, edge], PRICES)
    # the per-token figure of a row is 10*0.8 + 5*2.2 = 19 J; the cloud row logged 12 J: scale 12/19
    scale = 12.0 / 19.0
    assert s["energy_j"]["cloud_scale"] == pytest.approx(scale, rel=1e-5)
    assert s["energy_j"]["actual"] == pytest.approx(13.0)
    assert s["energy_j"]["all_cloud"] == pytest.approx(12.0 + 19.0 * scale, rel=1e-5)
    assert s["energy_j"]["saved"] == pytest.approx(19.0 * scale - 1.0, rel=1e-4)
    assert s["energy_j"]["estimated"] is True
    # latency: the edge row on the cloud = median cloud TTFT 200 + 4 further tokens x 20 ms
    lat = s["latency_ms_mean"]
    assert lat["actual"] == pytest.approx(190.0) and lat["all_cloud"] == pytest.approx((300 + 280) / 2)
    # cost: the cloud row at token prices, the edge row at its energy price
    per_row = (10 * 2.5 + 5 * 10.0) / 1e6
    assert s["cost_usd"]["all_cloud"] == pytest.approx(2 * per_row)
    assert s["cost_usd"]["actual"] == pytest.approx(per_row + 1.0 / 3.6e6 * 0.15)
    assert s["edge_answered"] == 1 and s["cloud_answered"] == 1 and len(s["method"]) >= 4


def test_savings_without_cloud_rows_uses_the_configured_figures_and_says_why_latency_is_missing():
    s = data.savings([row(1, energy_j=1.0)], PRICES)
    assert s["energy_j"]["cloud_scale"] is None and s["energy_j"]["all_cloud"] == pytest.approx(19.0)
    assert s["latency_ms_mean"]["reason"] and "actual" not in s["latency_ms_mean"]
    assert any("as configured" in m for m in s["method"])
    empty = data.savings([], PRICES)
    assert empty["answered"] == 0 and empty["energy_j"]["saved_share"] is None


def test_why_in_words():
    r = row(1, "cloud", scores={"margin": 0.3}, threshold=0.1, min_quality=0.9, explore=0,
            explanation={"quality": {"edge": 0.61, "cloud": 0.83},
                         "top_features": [{"name": "text.len", "effect": 0.12}]})
    reasons = data.why(r)
    assert reasons[0].startswith("The mlp score 0.300 >= threshold 0.100")
    assert any("90%" in x for x in reasons) and any("edge 0.61" in x for x in reasons)
    assert any("text.len (+0.12)" in x for x in reasons)
    fitted = data.why(row(5, explanation={"min_quality": 0.98, "floor_status": "certified", "quality_weight": 0.9,
                                          "blocks": {"image": 0.1, "text": -0.05}}))
    assert any("98%" in x and "certified" in x and "0.90" in x for x in fitted)
    assert any("image +0.10, text -0.05" in x for x in fitted)
    forced = data.why(row(2, model_requested="cloud"))
    assert "not consulted" in forced[0]
    fell = data.why(row(3, fallback_from="edge", tier="cloud", backend="cloud", explore=1, propensity=0.15))
    assert any("random tier" in x for x in fell) and any("edge failed first" in x for x in fell)
    assert data.decision_summary(row(4))["margin"] == -0.2


def test_cache_hit_rate():
    samples = [({"encoder": "text", "result": "hit"}, 3.0), ({"encoder": "text", "result": "miss"}, 1.0),
               ({"encoder": "image", "result": "miss"}, 2.0)]
    c = data.cache_hit_rate(samples)
    assert c["by_encoder"]["text"]["hit_rate"] == 0.75 and c["by_encoder"]["image"]["hit_rate"] == 0.0
    assert c["hit_rate"] == 0.5 and c["lookups"] == 6
    assert data.cache_hit_rate([])["hit_rate"] is None


def test_log_source_reads_windows_with_a_row_cap(tmp_path):
    path = tmp_path / "log.db"
    missing = asyncio.run(LogSource(path, max_rows=100).window(60))
    assert missing.rows == []  # no log yet: no figures, no error
    log = DecisionLog(path)
    for i in range(150):
        log.record(DecisionRecord(request_id=f"r{i}", ts=1000.0 + i, status=200, tier="edge"))
    log.close()

    async def read():
        src = LogSource(path, max_rows=100)
        win = await src.window(100, now=1150.0)  # [1050, 1150)
        again = await src.around(1000.0, 1010.0)
        return win, again

    win, again = asyncio.run(read())
    assert win.truncated is False and len(win.rows) == 100 and win.rows[0]["request_id"] == "r50"
    assert [r["request_id"] for r in again.rows] == [f"r{i}" for i in range(10)]

    async def capped():
        return await LogSource(path, max_rows=100).window(1000, now=1150.0)

    cut = asyncio.run(capped())
    assert cut.truncated is True and len(cut.rows) == 100 and cut.rows[-1]["request_id"] == "r149"


def test_log_source_reads_a_long_window_in_slices_from_its_end(tmp_path):
    path = tmp_path / "log.db"
    log = DecisionLog(path)
    for i in range(150):  # one row a minute, the newest 2.5 h before "now"
        log.record(DecisionRecord(request_id=f"r{i}", ts=1000.0 + 60 * i, status=200, tier="edge"))
    log.close()
    now = 1000.0 + 60 * 150 + 9000

    async def read(cap):
        return await LogSource(path, max_rows=cap).window(7 * 86400, now=now)

    whole = asyncio.run(read(1000))  # slices of 900, 1800, 3600 ... s until the week is covered
    assert [r["request_id"] for r in whole.rows] == [f"r{i}" for i in range(150)] and not whole.truncated
    latest = asyncio.run(read(100))  # stops once 100 rows are in hand: the latest 100, flagged
    assert latest.truncated and [r["request_id"] for r in latest.rows] == [f"r{i}" for i in range(50, 150)]
