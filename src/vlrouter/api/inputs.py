"""Request decoding: an OpenAI chat request or an /infer form / JSON body into one ``Query``.

Images are decoded here (data URLs, uploads, allow-listed remote URLs) through ``media``'s guards;
every problem is a ``RequestError``, ``MediaError`` or ``ScenarioError`` naming the offending ``param``.
(Text that is not Unicode, such as a lone surrogate escape, never gets here: pydantic-core's JSON
parser refuses it as invalid JSON.)
Checks run in a fixed order, so a request with several problems reports the first: messages (or the
/infer body and its images), then the scenario, then ``max_tokens``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import Request
from pydantic import BaseModel, ValidationError

from vlrouter.api.errors import validation_error
from vlrouter.backends.base import GenerationRequest, Message
from vlrouter.config import Settings
from vlrouter.errors import RequestError
from vlrouter.media import DecodedImage, MediaError, decode_base64_image, decode_image_bytes, fetch_remote_image
from vlrouter.protocol import ChatCompletionRequest, ChatMessage, InferJSONRequest
from vlrouter.router import Scenario, parse_scenario
from vlrouter.router.scenario import with_floor


@dataclass
class Query:
    """One request as the pipeline sees it, whichever endpoint it came from."""

    request_id: str
    model: str
    scenario: Scenario
    generation: GenerationRequest  # messages, sampling parameters
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage
    started: float = field(default_factory=time.perf_counter)

    @property
    def messages(self) -> list[Message]:
        return self.generation.messages


class InputDecoder:
    """Turns wire requests into ``Query`` objects under the configured image and generation limits."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient, default_scenario: Scenario):
        self.settings = settings
        self.http = http  # for allow-listed remote image URLs
        self.default_scenario = default_scenario

    async def chat(self, body: ChatCompletionRequest, request: Request) -> Query:
        if (field := body.unsupported()) is not None:
            raise RequestError(400, f"{field} is not supported: vlrouter's tiers answer with plain text "
                               "(no tools, structured output, logprobs or audio); remove it",
                               code="unsupported_parameter", param=field)
        rid = request.state.request_id
        messages = await self._messages(body.messages)
        scenario = self._scenario(body.scenario, request, body.min_quality)
        generation = GenerationRequest(
            messages=messages, max_tokens=self._max_tokens(body.max_completion_tokens or body.max_tokens),
            temperature=body.temperature if body.temperature is not None else 0.0,
            top_p=body.top_p if body.top_p is not None else 1.0,
            stop=body.stop or [], seed=body.seed, request_id=rid)
        return Query(request_id=rid, model=body.model, scenario=scenario, generation=generation, stream=body.stream,
                     include_usage=bool(body.stream_options and body.stream_options.include_usage))

    async def infer(self, request: Request) -> Query:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            body, images = await self._infer_form(request)
        elif ctype in ("application/json", ""):
            body, images = await self._infer_json(request)
        else:
            raise RequestError(415, "use multipart/form-data, a urlencoded form or application/json",
                               code="unsupported_media_type")
        rid = request.state.request_id
        scenario = self._scenario(body.scenario, request, body.min_quality)
        generation = GenerationRequest(messages=[Message("user", [*images, body.text])],
                                       max_tokens=self._max_tokens(body.max_tokens),
                                       temperature=body.temperature or 0.0, request_id=rid)
        return Query(request_id=rid, model=body.model, scenario=scenario, generation=generation)

    # ------------------------------------------------------------------ chat parts
    async def _image(self, url: str, param: str) -> DecodedImage:
        limits = self.settings.images
        if url.startswith("data:"):
            return decode_base64_image(url, limits, param)
        if url.startswith(("http://", "https://")):
            return await fetch_remote_image(url, limits, self.http, param)
        raise MediaError("image_url must be a data URL or an http(s) URL", code="invalid_image_url", param=param)

    async def _messages(self, messages: list[ChatMessage]) -> list[Message]:
        self._check_text([len(m.content) if isinstance(m.content, str) else
                          sum(len(p.text) for p in m.content if p.type == "text") for m in messages if m.content],
                         "messages")
        out, n_images, limit = [], 0, self.settings.images.max_images
        for i, m in enumerate(messages):
            role = "system" if m.role == "developer" else m.role
            if m.content is None or m.content == "" or m.content == []:
                raise RequestError(400, f"messages[{i}].content must not be empty", param=f"messages.{i}.content")
            if isinstance(m.content, str):
                out.append(Message(role, [m.content]))
                continue
            parts: list[str | DecodedImage] = []
            for j, part in enumerate(m.content):
                if part.type == "text":
                    parts.append(part.text)
                    continue
                n_images += 1
                where = f"messages.{i}.content.{j}"
                if n_images > limit:
                    raise RequestError(400, f"at most {limit} images per request", code="too_many_images", param=where)
                if role != "user":
                    raise RequestError(400, "images are accepted in user messages only", param=where)
                parts.append(await self._image(part.image_url.url, f"{where}.image_url"))
            out.append(Message(role, parts))
        if not any(m.role == "user" for m in out):
            raise RequestError(400, "messages must contain at least one user message", param="messages")
        return out

    def _check_text(self, lengths: list[int], param: str) -> None:
        """O(1) per part: refuse text past ``generation.max_prompt_chars`` before anything reads it."""
        limit = self.settings.generation.max_prompt_chars
        if (total := sum(lengths)) > limit:
            raise RequestError(413, f"the request has {total} characters of text; the limit is {limit} "
                               "(generation.max_prompt_chars)", code="prompt_too_large", param=param)

    def _scenario(self, body_value: Any, request: Request, min_quality: Any = None) -> Scenario:
        """The body's scenario, else the header's, else the default; then the body's ``min_quality``, else
        the configured floor of a preset (``routing.min_quality``), else the scenario's own."""
        if body_value is not None:
            scenario = parse_scenario(body_value)
        else:
            header = request.headers.get("x-vlrouter-scenario")
            scenario = parse_scenario(header) if header else self.default_scenario
        if min_quality is None and scenario.min_quality is None:
            min_quality = self.settings.routing.min_quality.get(scenario.name)
        return with_floor(scenario, min_quality)

    def _max_tokens(self, value: int | None) -> int:
        gen = self.settings.generation
        if value is None:
            return gen.default_max_tokens
        if value > gen.max_tokens_limit:
            raise RequestError(400, f"max_tokens must be <= {gen.max_tokens_limit}", param="max_tokens")
        return value

    # ------------------------------------------------------------------ /infer bodies
    async def _infer_form(self, request: Request) -> tuple[InferJSONRequest, list[DecodedImage]]:
        limits = self.settings.images
        async with request.form(max_files=limits.max_images, max_fields=32) as form:
            fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
            uploads = []
            for upload in form.getlist("image"):
                if isinstance(upload, str):
                    raise RequestError(400, "image must be a file part", code="invalid_image", param="image")
                uploads.append(await upload.read(limits.max_image_bytes + 1))
        for key, kind in (("max_tokens", int), ("temperature", float), ("min_quality", float)):
            if key in fields:
                try:
                    fields[key] = kind(fields[key])
                except ValueError:
                    raise RequestError(400, f"{key} must be a number", param=key) from None
        body = validated(InferJSONRequest, fields)
        self._check_text([len(body.text)], "text")
        return body, [decode_image_bytes(data, limits, f"image.{i}") for i, data in enumerate(uploads)]

    async def _infer_json(self, request: Request) -> tuple[InferJSONRequest, list[DecodedImage]]:
        limits = self.settings.images
        try:
            obj = json.loads(await request.body())
        except ValueError as exc:
            raise RequestError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
        body = validated(InferJSONRequest, obj)
        self._check_text([len(body.text)], "text")
        encoded = ([body.image] if body.image else []) + body.images
        if len(encoded) > limits.max_images:
            raise RequestError(400, f"at most {limits.max_images} images per request", code="too_many_images",
                               param="images")
        return body, [decode_base64_image(v, limits, f"images.{i}") for i, v in enumerate(encoded)]


def validated_json(model: type[BaseModel], raw: bytes):
    """``model`` parsed and validated from raw JSON bytes by pydantic-core, in one pass."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_error(list(exc.errors())) from None


def validated(model: type[BaseModel], obj: Any):
    """``model`` validated from a decoded body; the first problem becomes a 400 naming its field."""
    if not isinstance(obj, dict):
        raise RequestError(400, "request body must be a JSON object")
    try:
        return model.model_validate(obj)
    except ValidationError as exc:
        raise validation_error(list(exc.errors())) from None
