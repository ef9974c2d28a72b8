"""Prometheus metrics, one registry per app (so several apps can live in one process).

Names follow Prometheus' rules: base units (seconds), ``_total`` on counters (added by the client
library), no request ids or other high-cardinality labels.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_ROUTE = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("vlrouter_requests", "Requests by the tier and backend that answered, and HTTP status",
                                ["tier", "backend", "status"], registry=r)
        self.route_seconds = Histogram("vlrouter_route_seconds", "Time to decide a route (features + router)",
                                       buckets=_ROUTE, registry=r)
        self.ttft_seconds = Histogram("vlrouter_ttft_seconds", "Time to first token, measured at the gateway",
                                      ["tier"], buckets=_LATENCY, registry=r)
        self.e2e_seconds = Histogram("vlrouter_e2e_seconds", "End-to-end request latency at the gateway",
                                     ["tier"], buckets=_LATENCY, registry=r)
        self.tpot_seconds = Histogram("vlrouter_tpot_seconds", "Time per output token after the first (vLLM TPOT)",
                                      ["tier"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
                                      registry=r)
        self.energy_joules = Counter("vlrouter_energy_joules", "Energy attributed to answered requests; "
                                     "source=estimate marks figures that are not measurements",
                                     ["tier", "source"], registry=r)
        self.tokens = Counter("vlrouter_tokens", "Tokens processed", ["tier", "direction"], registry=r)
        self.fallbacks = Counter("vlrouter_fallbacks", "Requests answered by a fallback backend",
                                 ["from_backend", "to_backend"], registry=r)

        self.busy = Counter("vlrouter_backend_busy", "Requests a backend turned away because its in-flight limit "
                            "and queue were full (backends.*.admission)", ["backend"], registry=r)
        self.cascade = Counter("vlrouter_routing_cascade", "Routed queries with images by the stage that decided: "
                               "text (image encoder skipped) or image", ["stage"], registry=r)
        self.feature_cache = Counter("vlrouter_feature_cache", "Embedding cache lookups by encoder and result",
                                     ["encoder", "result"], registry=r)

    def render(self) -> bytes:
        """The exposition text; under ``vlrouter serve --workers N`` (PROMETHEUS_MULTIPROC_DIR set),
        the sum over every worker process."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
