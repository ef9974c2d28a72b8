"""Settings: one pydantic-settings object, built once at start-up and passed down.

Sources, highest priority first: explicit overrides (CLI flags), environment variables
``VLROUTER_*`` (nested fields with ``__``, e.g. ``VLROUTER_SERVER__PORT=9000``), then the YAML file
(``configs/default.yaml`` unless ``--config PATH``). Relative model paths are resolved against the
current working directory. ``load_settings`` turns a validation failure into ``ConfigError`` whose
message names every bad field; ``cli.preflight.check_model_paths`` checks that the local models it names exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from vlrouter.errors import VLRouterError
from vlrouter.ui.settings import ConsoleConfig

DEFAULT_CONFIG = Path("configs/default.yaml")
TIERS = ("edge", "cloud")


class ConfigError(VLRouterError, ValueError):
    """The configuration (or a command's arguments) is invalid; the message names the offending fields."""

    code = "invalid_config"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RateLimitConfig(_Strict):
    """Per API key (bearer token; ``anonymous`` without one) on /v1/chat/completions and /infer."""

    requests_per_minute: int | None = Field(None, ge=1, description="unset: no request limit")
    tokens_per_minute: int | None = Field(None, ge=1, description="prompt + completion tokens; unset: no limit")


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: list[SecretStr] = Field(default_factory=list, description="empty: no auth")
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    graceful_shutdown_s: float = Field(30.0, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    rate_limits: RateLimitConfig = Field(default_factory=RateLimitConfig)
    access_log: bool = Field(False, description="uvicorn's line per request (the decision log holds each request)")
    workers: int = Field(1, ge=1, le=64, description=(
        "gateway processes on one port (uvicorn workers); each loads its own local backends and encoders"))


class ImageLimits(_Strict):
    max_images: int = Field(8, ge=0)
    max_image_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(36_000_000, ge=1, description="decoded pixels per image (bomb guard)")
    allow_remote: bool = False
    allowed_hosts: list[str] = Field(default_factory=list)
    allow_private: bool = Field(False, description=(
        "let allow-listed hosts resolve to private or loopback addresses (an intranet image store)"))
    fetch_timeout_s: float = Field(5.0, gt=0)


class GenerationConfig(_Strict):
    default_max_tokens: int = Field(256, ge=1)
    max_tokens_limit: int = Field(2048, ge=1)
    max_prompt_chars: int = Field(1_000_000, ge=1, description=(
        "characters of text per request; more is refused before any tokenising or routing (413). "
        "1M characters is ~250k tokens, above a 128k-token context"))

    @model_validator(mode="after")
    def _default_within_limit(self) -> GenerationConfig:
        if self.default_max_tokens > self.max_tokens_limit:
            raise ValueError("default_max_tokens must not exceed max_tokens_limit")
        return self


class Timeouts(_Strict):
    """One field per phase, as in httpx."""

    connect_s: float = Field(3.0, gt=0)
    first_token_s: float = Field(60.0, gt=0, description="until the first byte/token")
    total_s: float = Field(300.0, gt=0)


class CircuitConfig(_Strict):
    failures: int = Field(3, ge=1, description="consecutive failures that open the circuit")
    cooldown_s: float = Field(15.0, ge=0)


class AdmissionConfig(_Strict):
    """Backpressure per backend: requests past ``max_in_flight`` wait in a queue of ``max_queue``;
    beyond that the backend is busy (the other tier is tried, else 429 with Retry-After)."""

    max_in_flight: int = Field(ge=1)
    max_queue: int = Field(ge=0)
    retry_after_s: int = Field(1, ge=1, description="the Retry-After of a 429 when every backend is busy")


class _BackendBase(_Strict):
    tier: Literal["edge", "cloud"]
    timeouts: Timeouts = Field(default_factory=Timeouts)
    circuit: CircuitConfig = Field(default_factory=CircuitConfig)


class LocalBackendConfig(_BackendBase):
    kind: Literal["local"]
    model_path: Path
    served_name: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; None = torch default")
    # one generation at a time on the worker: a few may wait there, a bounded queue in front of it
    admission: AdmissionConfig = Field(default_factory=lambda: AdmissionConfig(max_in_flight=4, max_queue=64))


class OpenAIBackendConfig(_BackendBase):
    kind: Literal["openai"]
    base_url: str | None = Field(None, description="e.g. https://api.openai.com/v1")
    model: str
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(None, description="name of an env var holding the key")
    max_retries: int = Field(2, ge=0, le=10)
    admission: AdmissionConfig = Field(default_factory=lambda: AdmissionConfig(max_in_flight=256, max_queue=1024))
    backoff_s: float = Field(0.25, ge=0)
    standin_model: Path | None = Field(
        None, description="with no base_url, `vlrouter serve` starts `serve-model` on this model as a stand-in"
    )


BackendConfig = Annotated[LocalBackendConfig | OpenAIBackendConfig, Field(discriminator="kind")]


class EncoderConfig(_Strict):
    """One encoder, loaded from a local path only.

    kinds: ``open_clip`` (a folder with open_clip_config.json + weights, or a weights file plus
    ``arch`` such as ViT-B-16-SigLIP), ``hf_siglip`` (a transformers SiglipModel folder) and
    ``hf_text`` (a transformers encoder folder: BGE / BERT / XLM-R).
    """

    kind: Literal["open_clip", "hf_siglip", "hf_text"]
    path: Path
    arch: str | None = None
    pooling: Literal["auto", "cls", "mean"] = "auto"  # hf_text; auto: the folder's pooling config, else CLS
    max_length: int = Field(256, ge=8, le=8192)
    # How this encoder computes (features/encoders.py). fp32: as trained; bf16: weights and activations
    # in bfloat16; int8: dynamic int8 Linear layers (CPU only). auto: an explicit features.dtype if one
    # is set, else fp16 on CUDA, int8 on an x86 CPU with VNNI, fp32 elsewhere. Rows stay float32 unit vectors.
    precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"


class BatchingConfig(_Strict):
    enabled: bool = True
    max_batch: int = Field(16, ge=1, le=1024)
    max_wait_ms: float = Field(4.0, ge=0, le=1000)


class FeaturesConfig(_Strict):
    enabled: bool = True
    image_encoder: EncoderConfig | None = None
    text_encoder: EncoderConfig | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # The float dtype of both encoders, read only by an encoder whose ``precision`` is auto (an explicit
    # precision wins); auto: each encoder's precision rule decides.
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch CPU threads for the encoders")
    cache_entries: int = Field(4096, ge=0, description="LRU entries per encoder; 0 disables the cache")
    batching: BatchingConfig = Field(default_factory=BatchingConfig)

    @model_validator(mode="after")
    def _int8_on_cpu(self) -> FeaturesConfig:
        for field in ("image_encoder", "text_encoder"):
            enc = getattr(self, field)
            if self.device == "cuda" and enc is not None and enc.precision == "int8":
                raise ValueError(f"{field}.precision int8 is CPU-only (dynamic quantisation); on CUDA use auto, "
                                 "fp32 or bf16")
        return self


class LogConfig(_Strict):
    enabled: bool = True
    url: SecretStr | None = Field(None, description="sqlite:///PATH or postgresql://user:pw@host/db; unset: path")
    path: Path = Path("data/decisions.db")  # the SQLite file; with PostgreSQL, its -images folder holds images
    log_content: bool = Field(False, description="store prompt text so rows can become training data")
    max_pending: int = Field(50_000, ge=1, description="rows buffered while the database is down; then dropped")


class TelemetryConfig(_Strict):
    otlp_endpoint: str | None = Field(None, description="OTLP/HTTP collector (spans to its /v1/traces); unset: off")
    service_name: str = "vlrouter"


class EnergyConfig(_Strict):
    """Energy metering (see ``vlrouter.meters.energy``); figures that are not measured say ``estimate``."""

    enabled: bool = True
    prefer_gpu: bool = Field(True, description="try NVML (and Jetson INA3221 rails) before RAPL")
    powercap_root: Path = Path("/sys/class/powercap")
    i2c_root: Path = Path("/sys/bus/i2c/drivers")
    sample_interval_s: float = Field(0.1, gt=0, le=5, description="power sampling period where there is no counter")
    # codecarbon's figure for an unknown CPU: 4 W per thread (codecarbon's methodology documentation).
    watts_per_core: float = Field(4.0, gt=0, description="CPU-time estimate when no counter is readable")
    # Cloud: Epoch AI (Feb 2025) puts a ~500-output-token GPT-4o query at ~0.3 Wh (1080 J, GPU only, no
    # PUE); 2.2 J per output token + 0.8 J per input token is our split of their figures.
    cloud_j_per_output_token: float = Field(2.2, ge=0)
    cloud_j_per_input_token: float = Field(0.8, ge=0)
    # Remote edge servers that report no energy (e.g. vLLM): a Jetson-Orin-class module at ~15 W
    # decoding ~30 tokens/s is ~0.5 J per output token; prefill is far cheaper per token. Our
    # assumption, not a published figure: put your device's measured figure here.
    edge_j_per_output_token: float = Field(0.5, ge=0)
    edge_j_per_input_token: float = Field(0.05, ge=0)


class RoutingConfig(_Strict):
    policy: str = "complexity-rule"
    default_scenario: str | dict[str, float] = "quality"
    min_quality: dict[Literal["fast", "quality", "energy"], Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=dict, description=(
        "quality floor per preset (share of the strongest model's quality to keep), overriding the "
        "checkpoint's: e.g. {fast: 0.85}; a request's own min_quality wins"))
    fallback: bool = True
    explore: float = Field(0.0, ge=0.0, le=0.5, description=(
        "share of auto-routed requests sent to a uniformly random tier (logged with their propensity) "
        "so the log holds outcomes of the tier the router would not have picked"))
    explore_seed: int | None = None
    checkpoint: Path | None = Field(None, description="trained router directory (router.json + .safetensors)")
    cascade_band: float | None = Field(None, ge=0, description=(
        "route on text + signals first and embed images only when that margin is within this band of "
        "the threshold (router.cascade); unset: the band the checkpoint calibrated on dev; 0: always embed"))

    @model_validator(mode="after")
    def _checkpoint_policy(self) -> RoutingConfig:
        if self.policy == "mlp" and self.checkpoint is None:
            raise ValueError("policy mlp needs checkpoint: a directory written by `vlrouter train`")
        if self.checkpoint is not None and self.policy != "mlp":
            raise ValueError(f"checkpoint is set but policy is {self.policy!r}; use policy: mlp")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VLROUTER_", env_nested_delimiter="__", extra="forbid", yaml_file=None
    )

    server: ServerConfig = Field(default_factory=ServerConfig)
    images: ImageLimits = Field(default_factory=ImageLimits)
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    features: FeaturesConfig = Field(default_factory=lambda: FeaturesConfig(enabled=False))
    log: LogConfig = Field(default_factory=LogConfig)
    energy: EnergyConfig = Field(default_factory=EnergyConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    backends: dict[str, BackendConfig] = Field(default_factory=dict)
    # Shortcuts for the common case of one cloud API (applied to the first `openai` cloud backend).
    cloud_base_url: str | None = None
    cloud_model: str | None = None
    cloud_api_key: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not self.backends:
            raise ValueError("backends: at least one backend must be configured")
        cloud = next(
            (b for b in self.backends.values() if b.tier == "cloud" and isinstance(b, OpenAIBackendConfig)),
            None,
        )
        if cloud is not None:
            if self.cloud_base_url:
                cloud.base_url = self.cloud_base_url
            if self.cloud_model:
                cloud.model = self.cloud_model
            if self.cloud_api_key:
                cloud.api_key = self.cloud_api_key
        for name, b in self.backends.items():
            if isinstance(b, OpenAIBackendConfig) and not b.base_url and not b.standin_model:
                raise ValueError(f"backends.{name}.base_url: required (or set standin_model)")
        return self

    def backend_names(self, tier: str) -> list[str]:
        return [name for name, b in self.backends.items() if b.tier == tier]


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-after"))
        # discriminated unions put the tag in the path (backends.edge.local.model_path): drop it
        loc = loc.replace(".local.", ".").replace(".openai.", ".")
        lines.append(f"  {loc or '<root>'}: {err['msg']}")
    return "\n".join(lines)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read YAML (default ``configs/default.yaml`` when it exists), then env, then ``overrides``."""
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    if path is not None and not Path(path).is_file():
        raise ConfigError(f"config file not found: {path}")

    class _FileSettings(Settings):
        model_config = SettingsConfigDict(yaml_file=path)

    try:
        return _FileSettings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(path) if path else "environment")) from exc
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
