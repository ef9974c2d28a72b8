"""The Router panel's record: the loaded policy, its checkpoint, FeatureSpec, thresholds and curve.

Read from the router object the gateway serves with (``router.meta`` for a trained one) and, for
the keys ``MLPRouter.load`` does not keep, from the checkpoint's ``router.json`` as it was when the
gateway first showed it. A key neither holds is ``None``: the page says "not recorded".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlrouter.protocol import ChatCompletionRequest
from vlrouter.router import scenario as scenario_module
from vlrouter.router.scenario import PRESETS, parse_scenario

CHECKPOINT_KEYS = ("training", "hyperparameters", "dev_metrics", "calibration", "cascade", "floors", "curve")


def checkpoint_meta(path: Path | None) -> dict[str, Any]:
    """The recorded keys of a checkpoint's ``router.json`` ({} without a readable one)."""
    if path is None:
        return {}
    try:
        meta = json.loads((Path(path) / "router.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: meta[k] for k in CHECKPOINT_KEYS if k in meta}


def preset_floors(router, meta: dict[str, Any]) -> dict[str, float] | None:
    """Preset -> quality floor: the router's own (``router.floors``), else the checkpoint's record of
    them (``floors`` as a mapping, or its ``presets``); None where neither holds numbers."""
    floors = getattr(router, "floors", None)
    if not isinstance(floors, dict):
        floors = meta.get("floors")
        if isinstance(floors, dict) and isinstance(floors.get("presets"), dict):
            floors = floors["presets"]
    ok = isinstance(floors, dict) and floors and all(isinstance(v, int | float) for v in floors.values())
    return dict(floors) if ok else None


def preset_view(router, floors: dict[str, float] | None, pinned: dict) -> dict[str, dict[str, Any]]:
    """Per preset: its weights, the weights and threshold the router decides with, its floor."""
    out = {}
    for name, w in PRESETS.items():
        scenario = parse_scenario(name)
        view: dict[str, Any] = {"weights": dict(zip(("speed", "quality", "energy"), w, strict=True))}
        if hasattr(router, "operating_point"):  # a floor fit may raise the quality weight (router.risk)
            w_op, tau = router.operating_point(scenario)
            view["operating_weights"] = [round(float(v), 4) for v in w_op]
        else:
            tau = router.threshold(scenario)
        view["threshold"] = round(float(tau), 4)
        if floors and name in floors:
            view["min_quality"] = floors[name]
        if name in pinned:
            view["pinned"] = pinned[name]
        out[name] = view
    return out


def router_record(gw, file_meta: dict[str, Any]) -> dict[str, Any]:
    """Everything the Router panel shows, as plain JSON."""
    router, routing = gw.router, gw.settings.routing
    meta = {**file_meta, **(getattr(router, "meta", None) or {})}
    spec = getattr(router, "spec", None) or (gw.features.spec if gw.features is not None else None)
    floors = preset_floors(router, meta)
    pinned = getattr(router, "pinned", None) or {}
    return {
        "policy": router.name, "describe": router.describe(),
        "checkpoint": None if routing.checkpoint is None else str(routing.checkpoint),
        "decision": getattr(router, "decision", None),
        "models": getattr(router, "models", None),
        "feature_spec": None if spec is None else {**spec.to_dict(), "describe": spec.describe()},
        "thresholds": dict(getattr(router, "thresholds", None) or {}) or None,
        "corner_taus": None if hasattr(router, "thresholds") else list(router.taus),
        "presets": preset_view(router, floors, pinned), "floors": floors, "cascade_band": gw.cascade_band,
        "training": meta.get("training"), "hyperparameters": meta.get("hyperparameters"),
        "dev_metrics": meta.get("dev_metrics"), "calibration": meta.get("calibration"),
        "curve": meta.get("curve"),
        "accepts_min_quality": "min_quality" in ChatCompletionRequest.model_fields,
        "scenario_floors": hasattr(scenario_module, "FLOOR_KEY"),  # {"name": "fast", "min_quality": 0.9}
        "default_scenario": routing.default_scenario, "explore": routing.explore,
        "backends": [{"name": n, "tier": b.tier, "kind": b.kind, "model": b.model, "standin": n in gw.standins}
                     for n, b in gw.backends.items()],
        "features": None if gw.features is None else gw.features.spec.describe(),
        "log_enabled": gw.recorder.log is not None,
    }
