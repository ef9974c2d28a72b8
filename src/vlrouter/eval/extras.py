"""Extra query features from dataset fields, for datasets whose images are missing (e.g. MathVista).

When a query has no image, a dataset may still describe it: a ``caption`` and ``ocr`` text of the
image, and metadata (question type, task, context, grade, skills, ...). ``ExtraFeatures`` turns them
into a block appended to the fused vector and declares it in the FeatureSpec (``extras`` names every
column group and the metadata vocabulary, so a checkpoint cannot be paired with other extras):

* ``context``: the pipeline's text encoder over ``caption`` + ``ocr`` (L2-normalised; zeros if both
  are empty);
* ``meta``: one-hot / multi-hot indicators for the categorical fields, over the values seen at least
  ``min_count`` times in the training split;
* ``numeric``: log image width and height, and whether a caption / OCR text exists.

These fields exist only in offline datasets: a gateway cannot compute them for live requests, so a
router trained with extras is for evaluation, and ``MLPRouter.load`` refuses it against the gateway's
pipeline (the specs differ).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any

import numpy as np

from vlrouter.eval.dataset import RoutingDataset
from vlrouter.features import FeaturePipeline
from vlrouter.features.spec import FeatureSpec

CATEGORICAL = ("question_type", "answer_type", "meta.source", "meta.category", "meta.task", "meta.context",
               "meta.grade", "meta.skills", "meta.language")
NUMERIC = ("log_img_width", "log_img_height", "has_caption", "has_ocr")


def _get(extra: dict[str, Any], path: str) -> Any:
    value: Any = extra
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _values(extra: dict[str, Any], path: str) -> list[str]:
    value = _get(extra, path)
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


class ExtraFeatures:
    def __init__(self, vocabulary: list[str], context: bool):
        self.vocabulary = vocabulary  # "path=value"
        self.context = context
        self._index = {v: i for i, v in enumerate(vocabulary)}

    @classmethod
    def fit(cls, ds: RoutingDataset, train_idx: np.ndarray, *, min_count: int = 3) -> ExtraFeatures:
        counts: Counter[str] = Counter()
        for i in train_idx:
            for path in CATEGORICAL:
                counts.update(f"{path}={v}" for v in _values(ds.queries[i].extra, path))
        vocabulary = sorted(k for k, n in counts.items() if n >= min_count)
        context = any(ds.queries[i].extra.get("caption") or ds.queries[i].extra.get("ocr") for i in train_idx)
        return cls(vocabulary, context)

    def spec(self, base: FeatureSpec, text_dim: int) -> FeatureSpec:
        names = (*((f"context:caption+ocr:{base.text_encoder}",) if self.context else ()),
                 *(f"meta:{v}" for v in self.vocabulary), *(f"numeric:{n}" for n in NUMERIC))
        width = (text_dim if self.context else 0) + len(self.vocabulary) + len(NUMERIC)
        return dataclasses.replace(base, extras=names, extras_dim=width)

    def transform(self, ds: RoutingDataset, pipeline: FeaturePipeline, *, batch_size: int = 32,
                  progress: bool = True) -> np.ndarray:
        from tqdm.auto import tqdm

        n = len(ds.queries)
        blocks = []
        if self.context:
            if pipeline.text is None:
                raise ValueError("caption/ocr context needs a text encoder in the feature pipeline")
            texts = ["\n".join(t for t in (q.extra.get("caption") or "", q.extra.get("ocr") or "") if t)
                     for q in ds.queries]
            ctx = np.zeros((n, pipeline.spec.text_dim), np.float32)
            todo = [i for i, t in enumerate(texts) if t]
            for start in tqdm(range(0, len(todo), batch_size), desc="context", disable=not progress, unit="batch"):
                rows = todo[start:start + batch_size]
                ctx[rows] = pipeline.text.encoder.encode([texts[i] for i in rows])
            blocks.append(ctx)
        meta = np.zeros((n, len(self.vocabulary)), np.float32)
        numeric = np.zeros((n, len(NUMERIC)), np.float32)
        for i, q in enumerate(ds.queries):
            for path in CATEGORICAL:
                for v in _values(q.extra, path):
                    j = self._index.get(f"{path}={v}")
                    if j is not None:
                        meta[i, j] = 1.0
            w, h = _get(q.extra, "meta.img_width"), _get(q.extra, "meta.img_height")
            numeric[i] = [math.log1p(float(w or 0)), math.log1p(float(h or 0)), float(bool(q.extra.get("caption"))),
                          float(bool(q.extra.get("ocr")))]
        blocks += [meta, numeric]
        return np.hstack(blocks)
