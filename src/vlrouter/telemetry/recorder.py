"""The one place that accounts for a request: Prometheus metrics and its decision record together.

The serving pipeline calls ``planned`` once the route is known, ``answered`` when a backend has
finished (or a stream has ended) and ``failed`` when the request ends in an error before any
backend answered; the decision-log middleware calls ``open`` and ``close`` around the request.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from vlrouter.backends.base import Backend, Generation, Message
from vlrouter.backends.fallback import Attempts
from vlrouter.meters.energy import EnergyReading
from vlrouter.meters.latency import RequestLatency
from vlrouter.router.planner import Plan
from vlrouter.router.scenario import Scenario
from vlrouter.telemetry.decision_log import DecisionLog
from vlrouter.telemetry.metrics import Metrics
from vlrouter.telemetry.record import DecisionRecord, image_name


@dataclass
class Recorder:
    """Writes each request's figures to ``metrics`` and (when the log is enabled) its decision record."""

    metrics: Metrics
    log: DecisionLog | None = None
    feature_spec_version: int | None = None
    _children: dict[tuple, Any] = field(default_factory=dict, repr=False)

    def _child(self, metric, *labels: str):
        """``metric.labels(*labels)``, memoised (label sets are few: tiers x backends x statuses)."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def open(self, endpoint: str, request_id: str | None) -> DecisionRecord | None:
        """A fresh record for a request to a logged route; None while the decision log is disabled."""
        return None if self.log is None else DecisionRecord(endpoint=endpoint, request_id=request_id)

    def close(self, rec: DecisionRecord, *, status: int, e2e_ms: float, error_code: str | None) -> None:
        """Stamp how the request ended and queue the record (exactly once per request)."""
        rec.status, rec.e2e_ms = status, e2e_ms
        if rec.error_code is None:
            rec.error_code = error_code
        if self.log is not None:
            self.log.record(rec)

    def planned(self, rec: DecisionRecord | None, *, model: str, scenario: Scenario, plan: Plan, route_s: float,
                stream: bool, messages: list[Message]) -> None:
        self.metrics.route_seconds.observe(route_s)
        if rec is None:
            return
        d = plan.decision
        rec.model_requested, rec.scenario_name = model, scenario.name
        rec.w_speed, rec.w_quality, rec.w_energy = scenario.as_tuple()
        rec.policy, rec.decided_tier, rec.decided_model, rec.scores = d.policy, d.tier, d.model, dict(d.scores)
        rec.threshold = None if math.isnan(d.threshold) else d.threshold
        rec.min_quality, rec.explanation = d.floor, d.explanation
        rec.route_ms, rec.stream = round(route_s * 1000, 3), int(stream)
        rec.explore, rec.propensity = int(plan.explore), round(plan.propensity, 6)
        rec.feature_spec_version = self.feature_spec_version
        if self.log is not None and self.log.log_content:
            rec.images = {image_name(i.sha256, i.mime): i.data for m in messages for i in m.images}
            rec.content = {"messages": [{"role": m.role, "text": m.text,
                                         "images": [image_name(i.sha256, i.mime) for i in m.images]}
                                        for m in messages]}

    def answered(self, rec: DecisionRecord | None, *, backend: Backend, status: int, result: Generation,
                 latency: RequestLatency, energy: EnergyReading | None, attempts: Attempts | None) -> None:
        m, tier, c = self.metrics, backend.tier, self._child  # label order as declared in Metrics
        c(m.requests, tier, backend.name, str(status)).inc()
        c(m.e2e_seconds, tier).observe(latency.e2e_s)
        if latency.ttft_s is not None:
            c(m.ttft_seconds, tier).observe(latency.ttft_s)
        if latency.tpot_s is not None:
            c(m.tpot_seconds, tier).observe(latency.tpot_s)
        c(m.tokens, tier, "input").inc(result.prompt_tokens)
        c(m.tokens, tier, "output").inc(result.completion_tokens)
        if energy is not None:
            c(m.energy_joules, tier, energy.source).inc(energy.joules)
        if attempts and attempts.fell_back:
            c(m.fallbacks, attempts.failed[0][0], backend.name).inc()
        self.turned_away(attempts)
        if rec is None:
            return
        rec.tier, rec.backend = tier, backend.name
        rec.fallback_from = ",".join(n for n, _ in attempts.failed) if attempts and attempts.failed else None
        rec.prompt_tokens, rec.completion_tokens = result.prompt_tokens, result.completion_tokens
        timings = latency.as_ms()
        rec.queue_ms, rec.ttft_ms, rec.tpot_ms = timings["queue_ms"], timings["ttft_ms"], timings["tpot_ms"]
        rec.tokens_per_s = timings["tokens_per_s"]  # e2e_ms is stamped by close(), after the last byte
        if energy is not None:
            rec.energy_j, rec.energy_source = round(energy.joules, 6), energy.source
            rec.energy_attribution = energy.attribution

    def cascade(self, stage: str) -> None:
        """A query with images was decided at ``stage``: "text" (image encoder skipped) or "image"."""
        self._child(self.metrics.cascade, stage).inc()

    def turned_away(self, attempts: Attempts | None) -> None:
        """Count the backends that were skipped as busy on the way down the chain."""
        for name in attempts.busy if attempts else ():
            self._child(self.metrics.busy, name).inc()

    def failed(self, status: int, attempts: Attempts | None = None) -> None:
        """A request that no backend answered (bad input, unknown model, every backend down or busy)."""
        self._child(self.metrics.requests, "none", "none", str(status)).inc()
        self.turned_away(attempts)
