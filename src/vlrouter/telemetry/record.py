"""The decision record: one typed row per request to a logged route, and the log's schema.

Built in one place: the decision-log middleware opens it when a request arrives, the ``Recorder``
(``telemetry.recorder``) fills in the plan and the outcome, the middleware closes it with the status
and end-to-end time once the response has been sent, and ``DecisionLog`` writes it. ``COLUMNS``
(the SQLite schema) is derived from the fields, so the row and the table cannot drift apart.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field, fields
from typing import Any

_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif", "image/bmp": ".bmp"}


def image_name(sha256: str, mime: str) -> str:
    """File name of a logged image: its content hash plus the extension of its type."""
    return sha256 + _EXT.get(mime, ".img")


@dataclass
class DecisionRecord:
    """Everything logged about one request; ``None`` where it does not apply or was not reached."""

    request_id: str | None = None
    ts: float | None = None  # Unix time the row was closed
    endpoint: str | None = None  # chat | infer
    model_requested: str | None = None
    scenario_name: str | None = None
    w_speed: float | None = None
    w_quality: float | None = None
    w_energy: float | None = None
    feature_spec_version: int | None = None
    policy: str | None = None
    decided_tier: str | None = None
    decided_model: str | None = None
    tier: str | None = None  # the tier that answered (differs from decided_tier after a fallback)
    backend: str | None = None
    scores: dict[str, float] | None = None
    threshold: float | None = None
    min_quality: float | None = None  # the scenario's quality floor (share of the strongest tier's quality)
    explanation: dict[str, Any] | None = None  # why this tier: predicted quality per tier, top features
    fallback_from: str | None = None
    explore: int | None = None
    propensity: float | None = None
    queue_ms: float | None = None
    route_ms: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    tokens_per_s: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    energy_j: float | None = None
    energy_source: str | None = None
    energy_attribution: str | None = None
    stream: int | None = None
    status: int | None = None
    error_code: str | None = None
    content: dict[str, Any] | None = None  # prompt text and image names, with log.log_content only
    images: dict[str, bytes] = field(default_factory=dict, repr=False)  # file name -> bytes; not a column

    def values(self) -> tuple:
        """The column values in ``COLUMNS`` order (dicts as JSON)."""
        return tuple(json.dumps(v) if isinstance(v, dict) else v for v in (getattr(self, c) for c in COLUMNS))


def _sql_type(annotation: Any) -> str:
    base = next(a for a in typing.get_args(annotation) if a is not type(None))
    return {int: "INTEGER", float: "REAL"}.get(base, "TEXT")


_HINTS = typing.get_type_hints(DecisionRecord)
COLUMNS: dict[str, str] = {f.name: _sql_type(_HINTS[f.name]) for f in fields(DecisionRecord) if f.name != "images"}
JSON_COLUMNS = tuple(name for name in COLUMNS if typing.get_origin(_HINTS[name].__args__[0]) is dict)
