"""FeatureSpec: what a fused feature vector contains, saved with every router checkpoint.

The fused vector is ``[image embedding | text embedding | signals]``: each embedding is
L2-normalised (zeros when the query has no image), the signals are in ``signals`` order and are
standardised by the router's scaler, which is stored in the same checkpoint. A router trained on one
spec refuses to load against a pipeline with another.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SPEC_VERSION = 1


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

    def require_same(self, other: FeatureSpec, *, mine: str = "pipeline", theirs: str = "checkpoint") -> None:
        if self != other:
            raise FeatureSpecMismatch(
                f"feature spec mismatch: {mine} has {self.describe()}, {theirs} has {other.describe()}"
                + ("" if self.signals == other.signals else
                   f"; signals differ: {sorted(set(self.signals) ^ set(other.signals)) or 'order'}"))
