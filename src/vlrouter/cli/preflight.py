"""Before a command loads anything: do the local models and the router checkpoint the settings name exist?"""

from __future__ import annotations

from pathlib import Path

from vlrouter.config import ConfigError, LocalBackendConfig, OpenAIBackendConfig, Settings

_BUILD_DEMO = "(build the demo models: python scripts/make_demo_models.py)"


def check_model_paths(settings: Settings, *, backends: bool = True) -> None:
    """Raise ``ConfigError`` naming every local model folder (and router checkpoint) that is missing.

    With ``backends=False`` only the feature encoders are checked (the offline commands call no backend).
    """
    problems = []
    for name, b in settings.backends.items() if backends else ():
        path = b.model_path if isinstance(b, LocalBackendConfig) else (
            b.standin_model if isinstance(b, OpenAIBackendConfig) and not b.base_url else None)
        if path is not None and not (Path(path) / "config.json").is_file():
            field = "model_path" if isinstance(b, LocalBackendConfig) else "standin_model"
            problems.append(f"  backends.{name}.{field}: no model at {path} {_BUILD_DEMO}")
    if settings.features.enabled:
        for field in ("image_encoder", "text_encoder"):
            enc = getattr(settings.features, field)
            if enc is not None and not Path(enc.path).exists():
                problems.append(f"  features.{field}.path: no model at {enc.path} {_BUILD_DEMO}")
    ckpt = settings.routing.checkpoint
    if backends and ckpt is not None and not (Path(ckpt) / "router.json").is_file():
        problems.append(f"  routing.checkpoint: no router at {ckpt} (scripts/serve builds models/router-demo; or "
                        "train one: vlrouter train --data DIR --out PATH; or set routing.policy: complexity-rule)")
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(problems))
