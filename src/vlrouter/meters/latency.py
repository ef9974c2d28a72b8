"""Per-request latency, in the sense of vLLM's ``vllm bench serve`` (and GenAI-Perf where it differs).

All times are measured at the gateway from the moment the request arrived (the client-facing view;
vLLM's own server-side histograms leave out network and front-end time):

* ``queue_s``: waiting for a local backend's generation worker (None for remote backends, whose
  queueing is inside their TTFT);
* ``route_s``: features + router decision;
* ``ttft_s``: arrival -> first token of the answer (for non-streamed remote answers the first token
  arrives with the last one);
* ``tpot_s``: (e2e - ttft) / (output_tokens - 1), vLLM's TPOT (GenAI-Perf calls this "ITL"); None
  with one output token or fewer;
* ``e2e_s``: arrival -> last token;
* ``output_tokens_per_s``: output tokens / e2e for this request.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequestLatency:
    route_s: float
    e2e_s: float
    ttft_s: float | None = None
    tpot_s: float | None = None
    queue_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def output_tokens_per_s(self) -> float | None:
        return self.completion_tokens / self.e2e_s if self.e2e_s > 0 and self.completion_tokens else None

    def as_ms(self) -> dict[str, float | None]:
        """The decision-log / response fields, in milliseconds (tokens per second as is)."""
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 3)

        tps = self.output_tokens_per_s
        return {"queue_ms": ms(self.queue_s), "route_ms": ms(self.route_s), "ttft_ms": ms(self.ttft_s),
                "tpot_ms": ms(self.tpot_s), "e2e_ms": ms(self.e2e_s),
                "tokens_per_s": None if tps is None else round(tps, 3)}


def measure(*, started: float, route_s: float, ended: float, first_token_at: float | None = None,
            queue_s: float | None = None, prompt_tokens: int = 0, completion_tokens: int = 0) -> RequestLatency:
    """Build a ``RequestLatency`` from ``time.perf_counter()`` stamps."""
    e2e = max(ended - started, 0.0)
    ttft = None if first_token_at is None else max(first_token_at - started, 0.0)
    tpot = None
    if ttft is not None and completion_tokens > 1:
        tpot = max(e2e - ttft, 0.0) / (completion_tokens - 1)
    return RequestLatency(route_s=route_s, e2e_s=e2e, ttft_s=ttft, tpot_s=tpot, queue_s=queue_s,
                          prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
