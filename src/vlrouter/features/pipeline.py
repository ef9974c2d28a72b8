"""The feature pipeline: signals + cached, micro-batched encoders -> one fused vector per query.

``FeaturePipeline.extract`` is what the gateway calls for every routed request; ``encode_many`` is
the same computation for datasets (training, evaluation), batched straight on the encoders, with a
progress bar. Both hand the parts to ``fusion.fuse`` / ``fusion.fuse_into``, the one place that
averages, normalises and concatenates. In ``extract`` each encoder has its own worker thread, LRU
cache and micro-batcher; the signals run in the default executor, and the three run concurrently.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from vlrouter._torch_compat import import_torch
from vlrouter.config import FeaturesConfig
from vlrouter.features.batching import MicroBatcher
from vlrouter.features.cache import EmbeddingCache
from vlrouter.features.encoders import Encoder, build_encoder, resolve_device
from vlrouter.features.fusion import fuse, fuse_into
from vlrouter.features.signals import SIGNALS, query_signals
from vlrouter.features.spec import FeatureSpec
from vlrouter.media import DecodedImage
from vlrouter.telemetry.tracing import NULL_SPAN


@dataclass
class QueryFeatures:
    """One query's fused ``vector`` (spec.dim), its raw ``signals``, per-part timings and cache results."""

    vector: np.ndarray
    signals: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    cache: dict[str, str] = field(default_factory=dict)  # modality -> hit | miss | none | skipped


class _EncoderLane:
    """One encoder with its executor, cache and batcher."""

    def __init__(self, encoder: Encoder, config: FeaturesConfig, metrics=None):
        self.encoder = encoder
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"enc-{encoder.modality}")
        self.cache = EmbeddingCache(config.cache_entries)
        b = config.batching
        self.batcher = MicroBatcher(encoder.encode, self.executor, max_batch=b.max_batch,
                                    max_wait_ms=b.max_wait_ms, enabled=b.enabled)
        self.metrics = metrics

    async def embed(self, key: str, item) -> tuple[np.ndarray, bool]:
        """(row, cache hit) for one item: from the LRU cache, else through the micro-batcher."""
        cached = self.cache.get(key)
        if self.metrics is not None:
            self.metrics.feature_cache.labels(encoder=self.encoder.modality,
                                              result="hit" if cached is not None else "miss").inc()
        if cached is not None:
            return cached, True
        row = await self.batcher.submit(item)
        self.cache.put(key, row)
        return row, False


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FeaturePipeline:
    """The configured encoders, their caches and batchers, and the FeatureSpec of the vectors they make."""

    def __init__(self, config: FeaturesConfig, metrics=None):
        torch = import_torch()
        if config.threads:
            torch.set_num_threads(config.threads)
        device, dtype = resolve_device(config.device, config.dtype)
        self.config = config
        self.image = _EncoderLane(build_encoder(config.image_encoder, device, dtype), config, metrics) \
            if config.image_encoder else None
        self.text = _EncoderLane(build_encoder(config.text_encoder, device, dtype), config, metrics) \
            if config.text_encoder else None
        self.spec = FeatureSpec(
            image_encoder=self.image.encoder.name if self.image else None,
            image_dim=self.image.encoder.dim if self.image else 0,
            text_encoder=self.text.encoder.name if self.text else None,
            text_dim=self.text.encoder.dim if self.text else 0,
            signals=SIGNALS,
        )
        self.tracing = None  # telemetry.tracing.Tracing when traces are on: a span per encoder

    async def _image_part(self, images: Sequence[DecodedImage]) -> tuple[np.ndarray | None, str, float]:
        """The (k, d) embeddings of the query's images (None without images or image encoder)."""
        started = time.perf_counter()
        if self.image is None or not images:
            return None, "none", 0.0
        with NULL_SPAN if self.tracing is None else self.tracing.span(
                "features image_encoder", **{"vlrouter.encoder": self.image.encoder.name}):
            results = await asyncio.gather(*(self.image.embed(img.sha256, img.image) for img in images))
        rows = np.stack([row for row, _ in results])
        hit = "hit" if all(h for _, h in results) else "miss"
        return rows, hit, (time.perf_counter() - started) * 1000

    async def _text_part(self, text: str) -> tuple[np.ndarray | None, str, float]:
        started = time.perf_counter()
        if self.text is None:
            return None, "none", 0.0
        with NULL_SPAN if self.tracing is None else self.tracing.span(
                "features text_encoder", **{"vlrouter.encoder": self.text.encoder.name}):
            row, hit = await self.text.embed(_sha(text.encode()), text)
        return row, "hit" if hit else "miss", (time.perf_counter() - started) * 1000

    async def _signals(self, text: str, images: Sequence[DecodedImage]) -> tuple[np.ndarray, float]:
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        with NULL_SPAN if self.tracing is None else self.tracing.span("features signals"):
            values = await loop.run_in_executor(None, query_signals, text, [(i.image, len(i.data)) for i in images])
        return values, (time.perf_counter() - started) * 1000

    async def extract(self, text: str, images: Sequence[DecodedImage] = (), *, image: bool = True) -> QueryFeatures:
        """A live request's features: the three parts concurrently (cached, micro-batched), then fused.

        ``image=False`` leaves the image encoder out (the routing cascade's first stage): the image
        block is zeros and ``cache["image"]`` is ``"skipped"``; ``add_images`` completes it later."""
        started = time.perf_counter()
        skip = not image and bool(images) and self.image is not None
        (img, img_hit, img_ms), (txt, txt_hit, txt_ms), (signals, sig_ms) = await asyncio.gather(
            self._image_part(() if skip else images), self._text_part(text), self._signals(text, images))
        vector = fuse(self.spec, img, txt, signals)
        return QueryFeatures(
            vector=vector, signals=signals,
            timings_ms={"signals": sig_ms, "image_encoder": img_ms, "text_encoder": txt_ms,
                        "features_total": (time.perf_counter() - started) * 1000},
            cache={"image": "skipped" if skip else img_hit, "text": txt_hit},
        )

    async def add_images(self, partial: QueryFeatures, images: Sequence[DecodedImage]) -> QueryFeatures:
        """``partial`` (from ``extract(..., image=False)``) with its image block computed and fused in."""
        started = time.perf_counter()
        img, img_hit, img_ms = await self._image_part(images)
        text = partial.vector[self.spec.slices()["text"]] if self.text is not None else None
        timings = {**partial.timings_ms, "image_encoder": img_ms}
        timings["features_total"] += (time.perf_counter() - started) * 1000
        return QueryFeatures(vector=fuse(self.spec, img, text, partial.signals), signals=partial.signals,
                             timings_ms=timings, cache={**partial.cache, "image": img_hit})

    def encode_many(self, texts: Sequence[str], images: Sequence[Sequence[DecodedImage]], *,
                    batch_size: int = 32, progress: bool = True, desc: str = "features") -> np.ndarray:
        """(n, spec.dim) fused vectors for a dataset: the same parts and fusion as ``extract``, batched
        straight on the encoders (``batch_size`` texts at a time; no event loop, cache or batcher)."""
        from tqdm.auto import tqdm

        n = len(texts)
        out = np.zeros((n, self.spec.dim), np.float32)
        with tqdm(total=n, desc=desc, disable=not progress, unit="q") as bar:
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                text_rows = self.text.encoder.encode(list(texts[start:stop])) if self.text is not None else None
                for i in range(start, stop):
                    imgs = images[i]
                    image_rows = self.image.encoder.encode([im.image for im in imgs]) \
                        if self.image is not None and imgs else None
                    signals = query_signals(texts[i], [(im.image, len(im.data)) for im in imgs])
                    fuse_into(out[i], self.spec, image_rows,
                              text_rows[i - start] if text_rows is not None else None, signals)
                bar.update(stop - start)
        return out

    async def aclose(self) -> None:
        """Stop the batchers' workers and the encoders' threads."""
        for lane in (self.image, self.text):
            if lane is not None:
                await lane.batcher.aclose()
                lane.executor.shutdown(wait=False, cancel_futures=True)
