"""Telemetry: Prometheus metrics (and, later, the decision log)."""
