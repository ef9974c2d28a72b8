"""An in-process transformers VLM: AutoProcessor + AutoModelForImageTextToText from a local path.

Generation runs on one dedicated worker thread (requests queue there rather than fighting over the
cores); tokens come back through a ``TextIteratorStreamer`` subclass that hands each finalised piece
of text to the event loop. TTFT is measured when the first text arrives, which lags the first token
by about one token because the streamer releases whole words. ``generate`` is the stream collected,
so both paths share stop handling, timeouts and cancellation. Given an energy ledger, each
generation is measured over its own window on the worker (queue time is not charged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vlrouter._torch_compat import import_torch
from vlrouter.backends.base import (
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    Generation,
    GenerationRequest,
    StopTrimmer,
    StreamDelta,
    collect,
)
from vlrouter.config import LocalBackendConfig
from vlrouter.meters.energy import EnergyLedger

log = logging.getLogger(__name__)
_END = object()
GREEDY_BELOW = 1e-5  # temperatures under this sample as greedy decoding


class ModelLoadError(RuntimeError):
    """``model_path`` holds no loadable model (raised by ``start``)."""


def _make_streamer(tokenizer, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
    """A ``TextIteratorStreamer`` that puts each finalised piece of text on ``queue`` from the worker thread."""
    from transformers import TextIteratorStreamer

    class _LoopStreamer(TextIteratorStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False):
            if text:
                loop.call_soon_threadsafe(queue.put_nowait, text)

    return _LoopStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


class LocalVLMBackend:
    """A local transformers VLM behind the ``Backend`` protocol; ``energy`` is this process' meter
    (None: generations are not metered)."""

    kind = "local"

    def __init__(self, name: str, config: LocalBackendConfig, *, energy: EnergyLedger | None = None):
        self.name = name
        self.tier = config.tier
        self.config = config
        self.model = config.served_name or name
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vlm-{name}")
        self._model: Any = None
        self._processor: Any = None
        self._device = "cpu"
        self._max_positions: int | None = None
        self._max_token_chars: int | None = None  # the longest vocabulary entry, in characters
        self._special: list[str] = []  # control-token strings client text may not spell out
        self._energy = energy

    @property
    def energy(self) -> EnergyLedger | None:
        """The ledger given at construction (read-only: a backend is metered from the start or never)."""
        return self._energy

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        path = Path(self.config.model_path)
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"backends.{self.name}.model_path: no model at {path} (config.json missing); "
                "build the demo models with `python scripts/make_demo_models.py` or point it at a local folder"
            )
        torch = import_torch()
        from transformers import AutoModelForImageTextToText, AutoProcessor
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        device = self.config.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self.config.dtype
        if dtype == "auto":
            dtype = "float16" if device == "cuda" else "float32"
        started = time.perf_counter()
        self._processor = AutoProcessor.from_pretrained(path, local_files_only=True)
        self._model = AutoModelForImageTextToText.from_pretrained(
            path, local_files_only=True, dtype=getattr(torch, dtype)
        ).to(device).eval()
        self._device = device
        text_cfg = getattr(self._model.config, "text_config", self._model.config)
        self._max_positions = getattr(text_cfg, "max_position_embeddings", None)
        tokenizer = self._processor.tokenizer
        special = set(tokenizer.all_special_tokens) | set(getattr(tokenizer, "additional_special_tokens", []) or [])
        special |= {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
        image_token = getattr(self._processor, "image_token", None)
        self._special = sorted({str(t) for t in special | ({image_token} if image_token else set()) if len(str(t)) > 1},
                               key=len, reverse=True)
        vocab = tokenizer.get_vocab()
        self._max_token_chars = max((len(t) for t in vocab), default=0) or None
        log.info("backend %s: loaded %s (%s, %s) in %.2fs", self.name, path, device, dtype,
                 time.perf_counter() - started)

    async def health(self) -> bool:
        return self._model is not None

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ generation
    def _inputs(self, request: GenerationRequest):
        """The processor's tensors for the chat (``developer`` becomes ``system``), on the model's device."""
        chat, images = [], []
        for message in request.messages:
            content = []
            for part in message.parts:
                if isinstance(part, str):
                    content.append({"type": "text", "text": self._defang(part)})
                else:
                    content.append({"type": "image"})
                    images.append(part.image)
            chat.append({"role": "system" if message.role == "developer" else message.role, "content": content})
        prompt = self._processor.apply_chat_template(chat, add_generation_prompt=True)
        inputs = self._processor(text=prompt, images=[images] if images else None, return_tensors="pt")
        return inputs.to(self._device)

    def _defang(self, text: str) -> str:
        """Client text with the model's control tokens broken up (a word joiner after their first
        character): a literal ``<image>`` would otherwise be taken for an image placeholder, and
        ``<|im_start|>`` or ``<end_of_utterance>`` would forge conversation turns."""
        for token in self._special:
            if token in text:
                text = text.replace(token, token[0] + "\u2060" + token[1:])
        return text

    def _run(self, request: GenerationRequest, streamer, cancel: threading.Event, out: dict) -> None:
        """One generation on the worker thread; token counts and finish reason go into ``out``."""
        torch = import_torch()
        from transformers import StoppingCriteria, StoppingCriteriaList

        class _Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return cancel.is_set()

        try:
            inputs = self._inputs(request)
        except (ValueError, TypeError, UnicodeError) as exc:  # the request's own content (e.g. a literal <image>)
            raise BackendRejected(f"backend {self.name} cannot take this prompt: {exc}", backend=self.name,
                                  status=400) from exc
        n_prompt = int(inputs["input_ids"].shape[1])
        out["prompt_tokens"] = n_prompt
        if self._max_positions and n_prompt + request.max_tokens > self._max_positions:
            raise BackendRejected(
                f"prompt ({n_prompt} tokens) + max_tokens ({request.max_tokens}) exceeds the model's "
                f"context of {self._max_positions} tokens", backend=self.name, status=400)
        if "pixel_values" in inputs and self._model.dtype != torch.float32:
            inputs["pixel_values"] = inputs["pixel_values"].to(self._model.dtype)
        kwargs: dict[str, Any] = dict(
            inputs, max_new_tokens=request.max_tokens, streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_Cancelled()]),
        )
        tokenizer = self._processor.tokenizer
        if request.stop:
            kwargs.update(stop_strings=request.stop, tokenizer=tokenizer)
        if request.temperature >= GREEDY_BELOW:  # below it sampling underflows: treat it as greedy (as vLLM does)
            kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p)
            if request.seed is not None:
                torch.manual_seed(request.seed)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            sequences = self._model.generate(**kwargs)
        new = sequences[0, n_prompt:].tolist()
        eos = self._model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = tokenizer.pad_token_id
        while new and new[-1] == pad and pad not in eos_ids:
            new.pop()
        out["completion_tokens"] = len(new)
        hit_eos = bool(new) and new[-1] in eos_ids
        out["finish_reason"] = "length" if len(new) >= request.max_tokens and not hit_eos else "stop"

    def _submit(self, request: GenerationRequest, queue: asyncio.Queue,
                cancel: threading.Event) -> tuple[asyncio.Future, dict[str, Any]]:
        """Queue one generation on the worker: its text, any exception and then ``_END`` arrive on
        ``queue``; the returned dict gets its counts, queue time and energy reading."""
        loop = asyncio.get_running_loop()
        streamer = _make_streamer(self._processor.tokenizer, loop, queue)
        result: dict[str, Any] = {}
        submitted = time.perf_counter()
        ledger = self._energy

        def job() -> None:
            result["queue_s"] = time.perf_counter() - submitted
            window = ledger.measure() if ledger is not None else contextlib.nullcontext()
            try:
                with window:  # the generation's energy window: queue time is not charged
                    self._run(request, streamer, cancel, result)
            except BaseException as exc:  # handed to the consumer, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                result["energy"] = getattr(window, "reading", None)
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        return loop.run_in_executor(self._executor, job), result

    def _check_size(self, request: GenerationRequest) -> None:
        """Refuse, in O(1) and before the worker queue, a prompt that cannot fit the context.

        No token is longer than the longest vocabulary entry, so ``chars / longest`` tokens is a lower
        bound of the prompt's length: a text over ``context * longest`` characters is certain to be too
        long, and is refused without tokenising it (a 5 MB text took 10-16 s to tokenise on the
        worker, stalling every request behind it). Anything shorter is checked exactly after tokenising."""
        if not (self._max_positions and self._max_token_chars):
            return
        chars = sum(len(p) for m in request.messages for p in m.parts if isinstance(p, str))
        if chars > self._max_positions * self._max_token_chars:
            raise BackendRejected(
                f"prompt ({chars} characters, at least {chars // self._max_token_chars} tokens) exceeds the "
                f"model's context of {self._max_positions} tokens", backend=self.name, status=400)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Text as the worker produces it, cut at stop sequences; the last delta carries the counts."""
        if self._model is None:
            raise BackendUnavailable(f"backend {self.name} is not loaded", backend=self.name)
        self._check_size(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        timeouts = self.config.timeouts
        deadline = loop.time() + timeouts.total_s
        future, result = self._submit(request, queue, cancel)
        trimmer = StopTrimmer(request.stop)
        first = True
        try:
            while True:
                budget = deadline - loop.time()
                if first:
                    budget = min(budget, timeouts.first_token_s)
                try:
                    item = await asyncio.wait_for(queue.get(), max(budget, 0.001))
                except TimeoutError:
                    phase = "first token" if first else "total"
                    raise BackendTimeout(f"backend {self.name}: {phase} timeout", backend=self.name) from None
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    if isinstance(item, BackendRejected):
                        raise item
                    raise BackendUnavailable(f"backend {self.name} failed: {item!r}", backend=self.name) from item
                text = trimmer.feed(item)
                if text:
                    first = False
                    yield StreamDelta(text=text)
                if trimmer.stopped:
                    cancel.set()
            tail = trimmer.flush()
            if tail:
                yield StreamDelta(text=tail)
            await future
            yield StreamDelta(
                finish_reason="stop" if trimmer.stopped else result.get("finish_reason", "stop"),
                prompt_tokens=result.get("prompt_tokens", 0),
                completion_tokens=result.get("completion_tokens", 0),
                queue_s=result.get("queue_s"), energy=result.get("energy"),
            )
        finally:
            cancel.set()  # client went away, timeout or done: stop generating

    async def generate(self, request: GenerationRequest) -> Generation:
        return await collect(self.stream(request))
