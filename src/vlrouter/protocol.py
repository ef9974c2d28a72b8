"""Wire models: OpenAI chat completions (text + image_url parts), /infer, models and errors.

Validation only; no I/O and no routing logic. Unknown request fields are ignored (as OpenAI-
compatible servers do) so that any OpenAI SDK version works; fields whose value would change the
semantics in a way we do not support (``n > 1``) are rejected.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_STOP_CHARS = 64  # a stop string is matched on every generated token: long ones stall a local worker


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------- chat completions: request
class ImageURL(_Model):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(_Model):
    type: Literal["text"]
    text: str


class ImagePart(_Model):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = TextPart | ImagePart


class ChatMessage(_Model):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class StreamOptions(_Model):
    include_usage: bool = False


class ChatCompletionRequest(_Model):
    model: str = "vlrouter-auto"
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1, description="only one choice is supported")
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)  # int64, as OpenAI
    # OpenAI fields no tier here honours: accepted by the schema so that they can be refused by name
    # (400 unsupported_parameter) instead of being silently ignored; their no-op values pass.
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, Any] | None = None
    audio: Any = None

    def unsupported(self) -> str | None:
        """The first field set to a value that would change the answer in a way no tier supports."""
        noop = {"tool_choice": ("none",), "response_format": ({"type": "text"},), "logprobs": (False,),
                "parallel_tool_calls": (True, False), "tools": ([],), "functions": ([],), "logit_bias": ({},),
                "function_call": ("none",)}
        for name in ("tools", "tool_choice", "functions", "function_call", "parallel_tool_calls",
                     "response_format", "logprobs", "top_logprobs", "logit_bias", "audio"):
            value = getattr(self, name)
            if value is not None and value not in noop.get(name, ()):
                return name
        return None
    user: str | None = None
    # vlrouter extensions: preset name or {"speed", "quality", "energy"[, "min_quality"]} weights, and the
    # quality floor (share of the strongest model's quality to keep; overrides the scenario's)
    scenario: str | dict[str, Any] | None = None
    min_quality: Any = None  # checked by router.scenario.check_floor (400 invalid_scenario, param min_quality)

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: str | list[str] | None) -> list[str] | None:
        if v is None:
            return None
        stops = [v] if isinstance(v, str) else v
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty")
        if any(len(s) > MAX_STOP_CHARS for s in stops):
            raise ValueError(f"stop sequences must be at most {MAX_STOP_CHARS} characters")
        return stops


# ---------------------------------------------------------------- chat completions: response
class Usage(_Model):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    # vlrouter extensions (omitted when unknown): joules for this request and how they were obtained
    energy_j: float | None = None
    energy_source: str | None = None
    energy_attribution: str | None = None


class AssistantMessage(_Model):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(_Model):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] | None


class ChatCompletion(_Model):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(_Model):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(_Model):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(_Model):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


# ---------------------------------------------------------------- /infer
class InferJSONRequest(_Model):
    text: str = Field(min_length=1)
    image: str | None = Field(None, description="base64 or data URL")
    images: list[str] = Field(default_factory=list)
    scenario: str | dict[str, Any] | None = None
    min_quality: Any = None  # the quality floor, as in the chat body
    model: str = "vlrouter-auto"
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)


class TokenCounts(_Model):
    prompt: int
    completion: int


class FallbackInfo(_Model):
    from_backend: str
    error: str


class InferResponse(_Model):
    answer: str
    tier: str
    backend: str
    model: str
    scenario: dict[str, Any]
    policy: str
    scores: dict[str, float]
    threshold: float
    min_quality: float | None = Field(None, description="the quality floor the decision was made for")
    why: dict[str, Any] | None = Field(None, description=(
        "what the decision rested on: predicted quality per tier, margin and threshold, the floor and its "
        "calibration status, and the features that moved it most (gradient x input)"))
    explore: bool = False
    route_ms: float
    latency_ms: float
    queue_ms: float | None = None
    ttft_ms: float | None
    tpot_ms: float | None = None
    e2e_ms: float
    tokens_per_s: float | None = None
    tokens: TokenCounts
    energy_j: float | None = Field(None, description="joules for this request (see energy_source)")
    energy_source: str | None = Field(None, description="nvml | nvml-power | jetson-ina | rapl | estimate")
    energy_attribution: str | None = Field(None, description="exclusive | apportioned (shared window)")
    finish_reason: str | None
    fallback: FallbackInfo | None = None
    request_id: str


# ---------------------------------------------------------------- feedback
class FeedbackRequest(_Model):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200,
                            description="x-request-id of the answer (or its chat completion id, chatcmpl-...)")
    score: float = Field(ge=0.0, le=1.0, description="quality of the answer, 0 (wrong) .. 1 (right)")
    comment: str | None = Field(None, max_length=2000)


class FeedbackResponse(_Model):
    object: Literal["feedback"] = "feedback"
    request_id: str
    score: float
    recorded: bool = True


# ---------------------------------------------------------------- models, errors
class ModelCard(_Model):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str
    tier: str | None = None
    kind: str | None = None
    standin: bool = False
    router: dict[str, Any] | None = None  # on vlrouter-auto: the policy, its checkpoint, training data and floors


class ModelList(_Model):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(_Model):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(_Model):
    error: ErrorDetail
