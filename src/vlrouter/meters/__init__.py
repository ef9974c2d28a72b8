"""Latency and energy meters, each figure labelled with its source."""
