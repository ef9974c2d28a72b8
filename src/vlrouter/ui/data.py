"""The console's figures, computed from decision-log rows (``read_rows`` dicts) and nothing else.

Pure functions, so that they are tested on rows a test builds: ``live`` (rate, edge share per
scenario over time, latency and energy per tier, fallbacks and errors), ``savings`` (against sending
everything to the cloud), ``decision_summary`` (one line of the Decisions table) and ``why`` (the
reasons behind one decision, in words). A figure that the rows do not hold is ``None``, never a
guess; energy figures carry their ``energy_source`` so that estimates are shown as estimates.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

Row = dict[str, Any]


def answered(row: Row) -> bool:
    """Answered by a backend: status 200, a tier, no error (a client that left mid-stream is not)."""
    return row.get("status") == 200 and bool(row.get("tier")) and not row.get("error_code")


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if values else None


def _col(rows: list[Row], key: str) -> list[float]:
    return [r[key] for r in rows if r.get(key) is not None]


def is_estimate(source: str | None) -> bool:
    """Whether an energy figure is a model (per-token or CPU-time estimate) rather than a meter reading
    (``EnergyReading.is_measurement``'s rule)."""
    return source is None or source == "estimate"


def tier_figures(rows: list[Row]) -> dict[str, Any]:
    """Latency percentiles and joules per request of answered rows, with where the joules came from."""
    energy = _col(rows, "energy_j")
    sources = Counter(r["energy_source"] for r in rows if r.get("energy_source"))
    ttft, e2e = _col(rows, "ttft_ms"), _col(rows, "e2e_ms")
    return {"requests": len(rows), "ttft_ms_p50": _pct(ttft, 50), "ttft_ms_p99": _pct(ttft, 99),
            "e2e_ms_p50": _pct(e2e, 50), "e2e_ms_p99": _pct(e2e, 99),
            "joules_per_request": round(float(np.mean(energy)), 4) if energy else None,
            "energy_rows": len(energy), "energy_sources": dict(sources),
            "energy_estimated": any(is_estimate(s) for s in sources) if sources else None}


def live(rows: list[Row], *, now: float, window_s: float, buckets: int = 30) -> dict[str, Any]:
    """The Live panel over [now - window_s, now): per-bucket series and per-tier figures."""
    start, step = now - window_s, window_s / buckets
    t = [round(start + i * step, 3) for i in range(buckets)]
    counts = [0] * buckets
    edge, seen = defaultdict(lambda: [0] * buckets), defaultdict(lambda: [0] * buckets)
    done = [r for r in rows if answered(r)]
    for r in rows:
        i = min(buckets - 1, max(0, int((r["ts"] - start) // step)))
        counts[i] += 1
        if answered(r):
            name = r.get("scenario_name") or "?"
            seen[name][i] += 1
            edge[name][i] += r["tier"] == "edge"
    share = {name: [round(edge[name][i] / n, 4) if n else None for i, n in enumerate(seen[name])]
             for name in sorted(seen)}
    by_tier = defaultdict(list)
    for r in done:
        by_tier[r["tier"]].append(r)
    n_edge = sum(r["tier"] == "edge" for r in done)
    return {"window_s": window_s, "now": now, "bucket_s": step,
            "series": {"t": t, "rate_per_s": [round(c / step, 4) for c in counts], "edge_share": share},
            "requests": len(rows), "answered": len(done),
            "edge_share": round(n_edge / len(done), 4) if done else None,
            "by_tier": {k: tier_figures(v) for k, v in sorted(by_tier.items())},
            "fallbacks": sum(bool(r.get("fallback_from")) for r in done),
            "fallbacks_by_backend": dict(Counter(r["fallback_from"] for r in done if r.get("fallback_from"))),
            "errors": dict(Counter(r.get("error_code") or f"http_{r.get('status')}"
                                   for r in rows if not answered(r)))}


@dataclass(frozen=True)
class CloudPrices:
    """What a request costs on the cloud tier: energy per token (the gateway's estimate figures) and
    money per token; edge energy is priced at ``usd_per_kwh``."""

    j_per_input_token: float
    j_per_output_token: float
    usd_per_mtok_input: float
    usd_per_mtok_output: float
    usd_per_kwh: float

    def cloud_joules(self, row: Row) -> float:
        return (row.get("prompt_tokens") or 0) * self.j_per_input_token + \
            (row.get("completion_tokens") or 0) * self.j_per_output_token

    def cloud_usd(self, row: Row) -> float:
        return ((row.get("prompt_tokens") or 0) * self.usd_per_mtok_input +
                (row.get("completion_tokens") or 0) * self.usd_per_mtok_output) / 1e6


def _cloud_latency_model(cloud: list[Row]) -> tuple[float, float] | None:
    """(median TTFT ms, median ms per further token) of the cloud rows; None without cloud TTFTs."""
    ttft = _col(cloud, "ttft_ms")
    if not ttft:
        return None
    tpot = _col(cloud, "tpot_ms")
    return float(np.median(ttft)), float(np.median(tpot)) if tpot else 0.0


def _cloud_energy_scale(cloud: list[Row], prices: CloudPrices) -> float | None:
    """The factor that turns the per-token cloud figures into what the cloud rows of the window logged
    (sum of logged joules / sum of per-token figures); None without a cloud row with energy."""
    metered = [r for r in cloud if r.get("energy_j") is not None]
    base = sum(prices.cloud_joules(r) for r in metered)
    return sum(r["energy_j"] for r in metered) / base if metered and base > 0 else None


def _saved(actual: float, all_cloud: float, digits: int = 6) -> dict[str, float | None]:
    return {"actual": round(actual, digits), "all_cloud": round(all_cloud, digits),
            "saved": round(all_cloud - actual, digits),
            "saved_share": round(1 - actual / all_cloud, 4) if all_cloud > 0 else None}


def savings(rows: list[Row], prices: CloudPrices) -> dict[str, Any]:
    """Energy, latency and cost of the answered rows against "everything to the cloud" (see ``method``)."""
    done = [r for r in rows if answered(r)]
    edge = [r for r in done if r["tier"] == "edge"]
    cloud = [r for r in done if r["tier"] != "edge"]
    metered = [r for r in done if r.get("energy_j") is not None]
    scale = _cloud_energy_scale(cloud, prices)
    energy = _saved(sum(r["energy_j"] for r in metered),
                    sum(r["energy_j"] if r["tier"] != "edge" else (scale or 1.0) * prices.cloud_joules(r)
                        for r in metered))
    sources = Counter(r.get("energy_source") or "?" for r in metered)
    energy.update(rows=len(metered), unmetered=len(done) - len(metered), sources=dict(sources),
                  estimated=any(is_estimate(s) for s in sources) or bool(edge),
                  cloud_scale=None if scale is None else round(scale, 6))
    money = _saved(sum(prices.cloud_usd(r) if r["tier"] != "edge" else
                       (r.get("energy_j") or 0.0) / 3.6e6 * prices.usd_per_kwh for r in done),
                   sum(prices.cloud_usd(r) for r in done), digits=10)
    model = _cloud_latency_model(cloud)
    latency: dict[str, Any] = {"rows": 0, "reason": "no cloud-answered request in the window to model cloud "
                               "latency on" if model is None else None}
    timed = [r for r in done if r.get("e2e_ms") is not None]
    if model is not None and timed:
        ttft, tpot = model
        cf = [r["e2e_ms"] if r["tier"] != "edge" else ttft + max(0, (r.get("completion_tokens") or 1) - 1) * tpot
              for r in timed]
        latency = {**_saved(float(np.mean(_col(timed, "e2e_ms"))), float(np.mean(cf))), "rows": len(timed),
                   "cloud_ttft_ms_p50": round(ttft, 3), "cloud_tpot_ms_p50": round(tpot, 3), "reason": None}
    return {"requests": len(rows), "answered": len(done), "edge_answered": len(edge), "cloud_answered": len(cloud),
            "energy_j": energy, "latency_ms_mean": latency, "cost_usd": money, "method": method(prices, scale)}


def method(prices: CloudPrices, scale: float | None = None) -> list[str]:
    """How ``savings`` is computed, in words, with the figures it uses."""
    per_token = (f"{prices.j_per_input_token:g} J per prompt token + {prices.j_per_output_token:g} J per completion "
                 "token (energy.cloud_j_per_*_token)")
    fitted = (f"scaled by the window's cloud-answered rows to what they logged (x{scale:.3g})"
              if scale is not None else "as configured (no cloud-answered row with energy in the window)")
    return [
        "Counterfactual: every answered request of the window sent to the cloud tier instead; requests the "
        "cloud answered count as logged, only the edge-answered ones are re-priced.",
        f"Energy: logged joules against the cloud at {per_token}, {fitted}: an estimate. Rows without an energy "
        "figure are left out of both sides.",
        "Latency: the mean logged end-to-end time against the cloud's median TTFT in the window plus its median "
        "time per output token times each edge answer's further tokens.",
        f"Cost: cloud tokens at ${prices.usd_per_mtok_input:g} / ${prices.usd_per_mtok_output:g} per million "
        f"prompt / completion tokens (console.cloud_usd_per_mtok_*); edge answers at their logged energy times "
        f"${prices.usd_per_kwh:g} per kWh (console.usd_per_kwh).",
        "Token counts come from the tier that answered; the cloud's tokenizer may count a prompt differently.",
    ]


def margin_of(row: Row) -> float | None:
    """The score the router compared with its threshold (utility margin, cloud benefit or p_cloud)."""
    scores = row.get("scores") or {}
    for key in ("margin", "cloud_benefit", "p_cloud"):
        if scores.get(key) is not None:
            return scores[key]
    return None


SUMMARY_KEYS = ("request_id", "ts", "endpoint", "scenario_name", "model_requested", "decided_tier", "tier",
                "backend", "policy", "threshold", "min_quality", "fallback_from", "explore", "e2e_ms", "ttft_ms",
                "energy_j", "energy_source", "status", "error_code", "feedback_score", "stream")


def decision_summary(row: Row) -> Row:
    """One line of the Decisions table (the full row is fetched when one is opened)."""
    return {**{k: row.get(k) for k in SUMMARY_KEYS}, "margin": margin_of(row)}


def why(row: Row) -> list[str]:
    """The reasons behind one logged decision, in words, from what the row holds."""
    out, expl = [], row.get("explanation") or {}
    requested, decided = row.get("model_requested"), row.get("decided_tier")
    if requested and requested != "vlrouter-auto":
        out.append(f"The client asked for {requested!r}: the router was not consulted.")
    elif decided:
        m, tau = margin_of(row), row.get("threshold")
        if m is not None and tau is not None:
            sign = ">=" if decided == "cloud" else "<"
            out.append(f"The {row.get('policy') or 'router'} score {m:.3f} {sign} threshold {tau:.3f} under "
                       f"scenario {row.get('scenario_name') or '?'}: {decided} tier.")
        else:
            out.append(f"The {row.get('policy') or 'router'} chose the {decided} tier.")
    floor = row.get("min_quality") if row.get("min_quality") is not None else expl.get("min_quality")
    if isinstance(floor, int | float):
        status = f" ({expl['floor_status']})" if expl.get("floor_status") else ""
        raised = (f"; the router decided with the quality weight at {expl['quality_weight']:.2f}"
                  if isinstance(expl.get("quality_weight"), int | float) else "")
        out.append(f"Quality floor: {floor:.0%} of the strongest model's expected quality{status}{raised}.")
    if isinstance(expl.get("quality"), dict):
        out.append("Predicted quality: " + ", ".join(f"{k} {v:.2f}" for k, v in expl["quality"].items()) + ".")
    feats = [f for f in expl.get("top_features") or [] if isinstance(f, dict) and "name" in f]
    if feats:
        out.append("Features that moved it most: " + ", ".join(
            f"{f['name']} ({f.get('effect', 0):+.2f})" for f in feats[:5]) + " (positive: towards the cloud).")
    if isinstance(expl.get("blocks"), dict) and expl["blocks"]:
        out.append("Effect by feature block: " + ", ".join(f"{k} {v:+.2f}" for k, v in expl["blocks"].items()) + ".")
    if row.get("explore"):
        out.append(f"Exploration: this request went to a random tier (propensity {row.get('propensity')}).")
    if row.get("fallback_from"):
        out.append(f"{row['fallback_from']} failed first; {row.get('backend')} answered ({row.get('tier')}).")
    if row.get("error_code"):
        out.append(f"It ended in an error: {row['error_code']} (HTTP {row.get('status')}).")
    return out


def cache_hit_rate(samples: list[tuple[dict[str, str], float]]) -> dict[str, Any]:
    """Feature-cache hit rate per encoder from ``vlrouter_feature_cache_total`` samples (labels, value)."""
    hits, total = Counter(), Counter()
    for labels, value in samples:
        enc = labels.get("encoder", "?")
        total[enc] += value
        if labels.get("result") == "hit":
            hits[enc] += value
    per = {enc: {"lookups": int(n), "hit_rate": round(hits[enc] / n, 4) if n else None} for enc, n in total.items()}
    n = sum(total.values())
    return {"by_encoder": per, "lookups": int(n), "hit_rate": round(sum(hits.values()) / n, 4) if n else None}
