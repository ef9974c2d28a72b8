"""The scenario utility shared by training, routing, baselines and evaluation.

    U(m) = w_quality * q(m) - w_speed * lat(m) / lat_ref - w_energy * E(m) / E_ref

``lat_ref`` and ``E_ref`` are the mean latency and energy over all models on the training split,
so each penalty is about 1 for an average model. Where a dataset has no latency (or energy) column,
cost stands in for it (``cost / cost_ref``): on a cost-only dataset such as MathVista, "fast" and
"energy" then mean "cheap". A missing outcome for one (query, model) is filled with the model's
training mean.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class UtilityRefs:
    lat_ref: float
    energy_ref: float
    lat_source: str  # "latency" | "cost"
    energy_source: str  # "energy" | "cost"

    def to_dict(self) -> dict:
        return asdict(self)


def _fill(matrix: np.ndarray, fill: np.ndarray) -> np.ndarray:
    out = matrix.copy()
    rows, cols = np.where(~np.isfinite(out))
    out[rows, cols] = fill[cols]
    return out


@dataclass
class Outcomes:
    """Per-query, per-model outcome matrices with missing values filled (see module docstring)."""

    quality: np.ndarray
    latency: np.ndarray  # in the units of ``refs.lat_source``
    energy: np.ndarray
    cost: np.ndarray
    refs: UtilityRefs

    @classmethod
    def from_dataset(cls, ds, train_idx: np.ndarray, refs: UtilityRefs | None = None) -> Outcomes:
        def col_means(m: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                means = np.nanmean(m[train_idx], axis=0)
            return np.nan_to_num(means, nan=0.0)

        cost = _fill(ds.cost, col_means(ds.cost)) if ds.has("cost") else np.zeros_like(ds.quality)
        lat = _fill(ds.latency, col_means(ds.latency)) if ds.has("latency") else cost
        energy = _fill(ds.energy, col_means(ds.energy)) if ds.has("energy") else cost
        quality = _fill(ds.quality, col_means(ds.quality))
        if refs is None:
            refs = UtilityRefs(
                lat_ref=float(np.mean(lat[train_idx])) or 1.0,
                energy_ref=float(np.mean(energy[train_idx])) or 1.0,
                lat_source="latency" if ds.has("latency") else "cost",
                energy_source="energy" if ds.has("energy") else "cost",
            )
        return cls(quality, lat, energy, cost, refs)

    def utility(self, w: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        """U for every (query, model); ``w`` is (3,) or per-query (n, 3) in (speed, quality, energy)."""
        q, lat, e = (self.quality, self.latency, self.energy) if idx is None else (
            self.quality[idx], self.latency[idx], self.energy[idx])
        w = np.asarray(w, dtype=np.float64)
        ws, wq, we = (w[..., 0:1], w[..., 1:2], w[..., 2:3]) if w.ndim == 2 else (w[0], w[1], w[2])
        return wq * q - ws * lat / self.refs.lat_ref - we * e / self.refs.energy_ref

    def summary(self, chosen: np.ndarray, idx: np.ndarray, w: np.ndarray, tiers: np.ndarray) -> dict[str, float]:
        """What choosing model ``chosen[i]`` for query ``idx[i]`` yields, on average."""
        rows = np.arange(len(idx))
        return {
            "edge_share": float((tiers[chosen] == "edge").mean()),
            "quality": float(self.quality[idx, chosen].mean()),
            "utility": float(self.utility(w, idx)[rows, chosen].mean()),
            "latency": float(self.latency[idx, chosen].mean()),  # in the units of refs.lat_source
            "energy": float(self.energy[idx, chosen].mean()),
        }
