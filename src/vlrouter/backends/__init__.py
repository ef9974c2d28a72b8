"""Backends behind one protocol: in-process transformers VLM and OpenAI-compatible HTTP."""

from __future__ import annotations

from vlrouter.backends.base import Backend
from vlrouter.config import LocalBackendConfig, OpenAIBackendConfig
from vlrouter.meters.energy import EnergyLedger


def build_backend(name: str, config: LocalBackendConfig | OpenAIBackendConfig, *, standin: bool = False,
                  energy: EnergyLedger | None = None) -> Backend:
    """The backend a config describes. ``energy`` meters local backends (None: not metered); remote
    ones ignore it. ``standin`` marks an OpenAI backend that is a local stand-in for the cloud tier."""
    if isinstance(config, LocalBackendConfig):
        from vlrouter.backends.local import LocalVLMBackend

        return LocalVLMBackend(name, config, energy=energy)
    from vlrouter.backends.openai_http import OpenAIBackend

    return OpenAIBackend(name, config, standin=standin)
