"""Feature fusion: per-query parts -> the fused vector of a FeatureSpec, the only copy of this rule.

``FeaturePipeline.extract`` (serving) and ``FeaturePipeline.encode_many`` (datasets: training and
evaluation) both call it, so a router sees the same vector offline and online. The rule:

* image block: the mean of the query's image embeddings, L2-normalised (zeros with no image, or no
  image encoder);
* text block: the text embedding as the encoder returned it (already L2-normalised);
* signals block: the complexity signals in ``spec.signals`` order;

laid out by ``spec.slices()``, float32. Offline ``extras`` are appended by ``eval/extras.py``, not here.
"""

from __future__ import annotations

import numpy as np

from vlrouter.features.spec import FeatureSpec

EPS = 1e-12  # as torch.nn.functional.normalize, which the encoders use on their own rows


def image_block(rows: np.ndarray | None, dim: int) -> np.ndarray:
    """(dim,) float32: the L2-normalised mean of ``rows`` (k, dim); zeros when k == 0 or rows is None."""
    if rows is None or len(rows) == 0:
        return np.zeros(dim, np.float32)
    rows = np.asarray(rows, np.float32)
    if rows.ndim != 2 or rows.shape[1] != dim:
        raise ValueError(f"image rows have shape {rows.shape}, the spec wants (k, {dim})")
    mean = rows.mean(axis=0, dtype=np.float64)
    return (mean / max(float(np.linalg.norm(mean)), EPS)).astype(np.float32)


def _block(name: str, values: np.ndarray | None, width: int) -> np.ndarray:
    if values is None and width == 0:
        return np.zeros(0, np.float32)
    block = np.asarray(values, np.float32)
    if block.shape != (width,):
        raise ValueError(f"{name} block has shape {block.shape}, the spec wants ({width},)")
    return block


def fuse_into(out: np.ndarray, spec: FeatureSpec, image_rows: np.ndarray | None, text_row: np.ndarray | None,
              signals: np.ndarray) -> np.ndarray:
    """Write one query's fused vector into ``out`` (a (spec.dim,) float32 row, e.g. of a dataset matrix)."""
    if spec.extras_dim:
        raise ValueError("a spec with extras: the pipeline fuses image | text | signals; see eval/extras.py")
    if out.shape != (spec.dim,):
        raise ValueError(f"output row has shape {out.shape}, the spec wants ({spec.dim},)")
    sl = spec.slices()
    out[sl["image"]] = image_block(image_rows, spec.image_dim)
    out[sl["text"]] = _block("text", text_row, spec.text_dim)
    out[sl["signals"]] = _block("signals", signals, len(spec.signals))
    return out


def fuse(spec: FeatureSpec, image_rows: np.ndarray | None, text_row: np.ndarray | None,
         signals: np.ndarray) -> np.ndarray:
    """One query's fused (spec.dim,) float32 vector from its image rows (k, d), text row and signals."""
    return fuse_into(np.empty(spec.dim, np.float32), spec, image_rows, text_row, signals)
