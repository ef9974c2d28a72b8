"""FeatureSpec: what a fused feature vector contains, saved with every router checkpoint.

The fused vector is ``[image embedding | text embedding | signals]``: each embedding is
L2-normalised (zeros when the query has no image), the signals are in ``signals`` order and are
standardised by the router's scaler, which is stored in the same checkpoint. A router trained on one
spec refuses to load against a pipeline with another.

Precision: an encoder name carries the precision that produced its embeddings when that is not fp32
(``open_clip:siglip-vit-b16@int8``; see ``features/encoders.py``), so specs, checkpoints and
feature caches tell fp32 features from int8 ones. ``require_same`` still lets a checkpoint serve
features of another precision of the same encoders: the layout and the meaning of every dimension are
the same, and int8/bf16 rows agree with fp32 to a cosine of about 0.997 or more (README, "Feature
benchmark"), far below the differences a router separates. It logs the difference;
``strict_precision=True`` refuses it instead.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

SPEC_VERSION = 1
PRECISION_SEP = "@"
log = logging.getLogger(__name__)


def split_precision(encoder: str | None) -> tuple[str | None, str | None]:
    """``("open_clip:x", "int8")`` for ``"open_clip:x@int8"``; fp32 for a name without a tag."""
    if encoder is None:
        return None, None
    base, _, precision = encoder.partition(PRECISION_SEP)
    return base, precision or "fp32"


class FeatureSpecMismatch(ValueError):
    pass


@dataclass(frozen=True)
class FeatureSpec:
    image_encoder: str | None
    image_dim: int
    text_encoder: str | None
    text_dim: int
    signals: tuple[str, ...]
    version: int = SPEC_VERSION
    # Offline extras appended after the signals (e.g. caption/OCR embeddings and metadata of a dataset
    # without images, see ``eval/extras.py``): their names, vocabulary included, and total width.
    extras: tuple[str, ...] = ()
    extras_dim: int = 0

    @property
    def dim(self) -> int:
        return self.image_dim + self.text_dim + len(self.signals) + self.extras_dim

    def slices(self) -> dict[str, slice]:
        a, b = self.image_dim, self.image_dim + self.text_dim
        c = b + len(self.signals)
        return {"image": slice(0, a), "text": slice(a, b), "signals": slice(b, c), "extras": slice(c, self.dim)}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["signals"] = list(self.signals)
        d["extras"] = list(self.extras)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        return cls(**{**d, "signals": tuple(d["signals"]), "extras": tuple(d.get("extras", ()))})

    def describe(self) -> str:
        return (f"v{self.version} image={self.image_encoder}({self.image_dim}) text={self.text_encoder}"
                f"({self.text_dim}) signals={len(self.signals)}"
                + (f" extras={self.extras_dim} ({len(self.extras)} named)" if self.extras_dim else ""))

    @property
    def precisions(self) -> dict[str, str | None]:
        """The precision of each encoder's embeddings (None where there is no encoder)."""
        return {"image": split_precision(self.image_encoder)[1], "text": split_precision(self.text_encoder)[1]}

    def without_precision(self) -> FeatureSpec:
        """This spec with the encoders' precision tags removed: what the features mean, not how exactly."""
        return replace(self, image_encoder=split_precision(self.image_encoder)[0],
                       text_encoder=split_precision(self.text_encoder)[0])

    def require_same(self, other: FeatureSpec, *, mine: str = "pipeline", theirs: str = "checkpoint",
                     strict_precision: bool = False) -> None:
        """Raise ``FeatureSpecMismatch`` unless ``other`` describes the same features. Specs that differ
        only in the encoders' precision pass (logged) unless ``strict_precision``."""
        if self == other:
            return
        if not strict_precision and self.without_precision() == other.without_precision():
            log.info("feature precision differs: %s has %s, %s has %s (same encoders and layout: accepted)",
                     mine, self.precisions, theirs, other.precisions)
            return
        raise FeatureSpecMismatch(
            f"feature spec mismatch: {mine} has {self.describe()}, {theirs} has {other.describe()}"
            + ("" if self.signals == other.signals else
               f"; signals differ: {sorted(set(self.signals) ^ set(other.signals)) or 'order'}"))
