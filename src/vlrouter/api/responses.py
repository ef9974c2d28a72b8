"""Wire formats of answers: the OpenAI chat completion, the /infer body and the routing headers."""

from __future__ import annotations

import json
import math
import time

from vlrouter.api.pipeline import Answer, Routed
from vlrouter.backends.base import Backend
from vlrouter.backends.fallback import Attempts
from vlrouter.meters.energy import EnergyReading
from vlrouter.protocol import FallbackInfo, InferResponse, TokenCounts


def routing_headers(routed: Routed, backend: Backend, attempts: Attempts) -> dict[str, str]:
    """``x-vlrouter-*``: who answered, how long routing took, the policy, threshold and scenario."""
    d = routed.plan.decision
    headers = {
        "x-vlrouter-tier": backend.tier,
        "x-vlrouter-backend": backend.name,
        "x-vlrouter-route-ms": f"{routed.route_s * 1000:.3f}",
        "x-vlrouter-policy": d.policy,
        "x-vlrouter-threshold": "" if math.isnan(d.threshold) else f"{d.threshold:.4f}",
        "x-vlrouter-scenario": str(routed.query.scenario),
    }
    if d.explanation:
        headers.update(why_headers(d.explanation))
    if attempts.fell_back:
        headers["x-vlrouter-fallback-from"] = ",".join(name for name, _ in attempts.failed)
    return headers


def why_headers(why: dict) -> dict[str, str]:
    """The decision's explanation (router.explain) as ``x-vlrouter-*`` headers: quality per tier, margin,
    floor and its calibration status, and the three features that moved it most."""
    out = {"x-vlrouter-quality": ",".join(f"{t}={q:.4f}" for t, q in why["quality"].items()),
           "x-vlrouter-min-quality": f"{why['min_quality']:.4g}",
           "x-vlrouter-floor-status": why["floor_status"]}
    if why.get("margin") is not None:
        out["x-vlrouter-margin"] = f"{why['margin']:.4f}"
    if why.get("top_features"):
        out["x-vlrouter-top-features"] = ",".join(f"{f['name']}={f['effect']:+.4f}" for f in why["top_features"])
    return out


def finish_reason(reason: str | None) -> str:
    """OpenAI's finish reasons: ``stop`` or ``length``."""
    return reason if reason in ("stop", "length") else "stop"


def usage_dict(prompt: int, completion: int, energy: EnergyReading | None) -> dict:
    """``usage`` as a plain dict: the same fields as ``usage`` (the protocol model), built unvalidated."""
    out = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    if energy is not None:
        out.update(energy_j=round(energy.joules, 6), energy_source=energy.source,
                   energy_attribution=energy.attribution)
    return out


def chat_completion(answer: Answer) -> dict:
    """The ``chat.completion`` body (protocol.ChatCompletion's shape; built as a dict: every value is
    already known to be valid, so the hot path skips a second validation)."""
    r = answer.result
    return {"id": f"chatcmpl-{answer.routed.query.request_id}", "object": "chat.completion",
            "created": int(time.time()), "model": answer.backend.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": r.text},
                         "finish_reason": finish_reason(r.finish_reason)}],
            "usage": usage_dict(r.prompt_tokens, r.completion_tokens, answer.energy)}


def infer_response(answer: Answer) -> dict:
    r, lat, energy, backend = answer.result, answer.latency, answer.energy, answer.backend
    plan, query = answer.routed.plan, answer.routed.query
    failed = answer.attempts.failed
    body = InferResponse(
        answer=r.text, tier=backend.tier, backend=backend.name, model=backend.model,
        scenario=query.scenario.as_dict(), policy=plan.decision.policy, scores=plan.decision.scores,
        threshold=plan.decision.threshold, min_quality=plan.decision.floor, why=plan.decision.explanation,
        explore=plan.explore,
        latency_ms=round(lat.e2e_s * 1000, 3), **lat.as_ms(),
        tokens=TokenCounts(prompt=r.prompt_tokens, completion=r.completion_tokens),
        energy_j=None if energy is None else round(energy.joules, 6),
        energy_source=None if energy is None else energy.source,
        energy_attribution=None if energy is None else energy.attribution,
        finish_reason=r.finish_reason, request_id=query.request_id,
        fallback=FallbackInfo(from_backend=failed[0][0], error=failed[0][1]) if failed else None)
    return json.loads(body.model_dump_json())  # a forced request's NaN threshold becomes null
