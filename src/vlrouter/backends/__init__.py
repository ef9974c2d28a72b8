"""Backends behind one protocol: in-process transformers VLM and OpenAI-compatible HTTP."""

from __future__ import annotations

from vlrouter.backends.base import Backend
from vlrouter.config import LocalBackendConfig, OpenAIBackendConfig


def build_backend(name: str, config: LocalBackendConfig | OpenAIBackendConfig, *, standin: bool = False) -> Backend:
    if isinstance(config, LocalBackendConfig):
        from vlrouter.backends.local import LocalVLMBackend

        return LocalVLMBackend(name, config)
    from vlrouter.backends.openai_http import OpenAIBackend

    return OpenAIBackend(name, config, standin=standin)
