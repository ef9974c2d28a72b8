"""One way to build a router: a plain name -> constructor registry (as RouteLLM's ``ROUTER_CLS``).

The gateway and ``vlrouter route | calibrate | eval`` all call ``build_router`` (the scripts train
routers in-process and load none); the check that a trained router was fitted on the features the
caller computes lives here, once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from vlrouter.config import ConfigError, RoutingConfig
from vlrouter.router.base import Router
from vlrouter.router.rules import ComplexityRuleRouter

if TYPE_CHECKING:  # features/ imports torch; the rule router must not need it
    from vlrouter.features.spec import FeatureSpec


def _complexity_rule(checkpoint: Path | None, spec: FeatureSpec | None) -> Router:
    return ComplexityRuleRouter()


def _mlp(checkpoint: Path | None, spec: FeatureSpec | None) -> Router:
    from vlrouter.router.mlp import MLPRouter  # imports torch: only when a trained router is asked for

    if checkpoint is None:
        raise ConfigError("policy mlp needs a checkpoint: a directory written by `vlrouter train`")
    if spec is None:
        raise ConfigError("the mlp router scores fused query features: set features.enabled: true")
    return MLPRouter.load(checkpoint, expected_spec=spec)


# policy name -> constructor(checkpoint, feature spec of the caller's pipeline)
ROUTERS: dict[str, Callable[[Path | None, FeatureSpec | None], Router]] = {
    "complexity-rule": _complexity_rule,
    "mlp": _mlp,
}


def build_router(policy: str, *, checkpoint: str | Path | None = None, spec: FeatureSpec | None = None,
                 where: str = "routing.checkpoint") -> Router:
    """The router named ``policy``; a trained one is loaded from ``checkpoint`` and must match ``spec``.

    Every failure is a ``ConfigError`` whose message starts with ``where`` (the setting or flag that
    named the checkpoint).
    """
    try:
        make = ROUTERS[policy]
    except KeyError:
        raise ConfigError(f"unknown routing policy {policy!r}; known: {sorted(ROUTERS)}") from None
    try:
        return make(None if checkpoint is None else Path(checkpoint), spec)
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:  # a missing or foreign checkpoint, FeatureSpecMismatch
        raise ConfigError(f"{where} {checkpoint}: {exc}") from exc


def router_from_settings(routing: RoutingConfig, spec: FeatureSpec | None) -> Router:
    """The router of a ``routing:`` config section, for a caller whose features have ``spec``."""
    return build_router(routing.policy, checkpoint=routing.checkpoint, spec=spec)
