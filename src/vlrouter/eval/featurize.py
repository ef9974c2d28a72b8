"""Fused features for a routing dataset, through the gateway's own FeaturePipeline (cached on disk).

``FeaturePipeline.encode_many`` fuses with the same ``features.fusion`` code as the gateway's
``extract``, so a router trained on these rows sees the same vectors when it serves.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from vlrouter.config import ImageLimits
from vlrouter.eval.dataset import RoutingDataset
from vlrouter.features import FeaturePipeline
from vlrouter.media import decode_image_bytes

DEFAULT_CACHE = Path(".cache/vlrouter/features")
# dataset images are trusted files on disk: allow large ones, keep the decoder guards
_LIMITS = ImageLimits(max_image_bytes=64 * 1024 * 1024, max_pixels=200_000_000)


def _cache_key(ds: RoutingDataset, pipeline: FeaturePipeline) -> str:
    h = hashlib.sha256(json.dumps(pipeline.spec.to_dict(), sort_keys=True).encode())
    for q in ds.queries:
        h.update(f"{q.id}\0{q.text}\0{q.image}\n".encode())
        for path in ds.image_paths(q):
            if path.exists():
                st = path.stat()
                h.update(f"{path.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:24]


def featurize(ds: RoutingDataset, pipeline: FeaturePipeline, *, cache_dir: Path | None = DEFAULT_CACHE,
              progress: bool = True, batch_size: int = 32) -> np.ndarray:
    """(queries, spec.dim) fused features; reuses a cached matrix for the same spec and content."""
    if cache_dir is not None:
        path = Path(cache_dir) / f"{_cache_key(ds, pipeline)}.npy"
        if path.is_file():
            return np.load(path)
    texts = [q.text for q in ds.queries]
    images = [[decode_image_bytes(p.read_bytes(), _LIMITS, str(p)) for p in ds.image_paths(q)]
              for q in ds.queries]
    X = pipeline.encode_many(texts, images, batch_size=batch_size, progress=progress, desc="featurise")
    if cache_dir is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, X)
    return X
