"""The scenario utility shared by training, routing, baselines and evaluation.

    U(m) = w_quality * q(m) - w_speed * lat(m) / lat_ref - w_energy * E(m) / E_ref

``lat_ref`` and ``E_ref`` are the mean latency and energy over all models on the training split,
so each penalty is about 1 for an average model. Where a dataset has no latency (or energy) column,
cost stands in for it (``cost / cost_ref``): on a cost-only dataset such as MathVista, "fast" and
"energy" then mean "cheap". A missing outcome for one (query, model) is filled with the model's
training mean.

Partial labels (a decision log: only the served model's outcome is known per query) are flagged by
``observed``. Training then imputes the unknown qualities from the network's own quality head, and
policy values are self-normalised importance-sampling (SNIPS) estimates: a query counts only where
the policy picks the model that was served, weighted by 1 / the serving propensity.
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
    observed: np.ndarray | None = None  # (queries, models) bool; None: everything known (or filled)
    propensity: np.ndarray | None = None  # (queries,) probability that the observed model was served

    @property
    def partial(self) -> bool:
        return self.observed is not None and not bool(self.observed.all())

    def row_weights(self, clip: float = 20.0) -> np.ndarray:
        """Importance weights 1 / propensity (clipped at ``clip``), 1 where there is no propensity."""
        if self.propensity is None:
            return np.ones(len(self.quality))
        return np.minimum(1.0 / np.clip(self.propensity, 1e-6, 1.0), clip)

    @classmethod
    def from_dataset(cls, ds, train_idx: np.ndarray, refs: UtilityRefs | None = None) -> Outcomes:
        def col_means(m: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                means = np.nanmean(m[train_idx], axis=0)
            return np.nan_to_num(means, nan=0.0)

        cost = _fill(ds.cost, col_means(ds.cost)) if ds.has("cost") else np.zeros_like(ds.quality)
        lat = _fill(ds.latency, col_means(ds.latency)) if ds.has("latency") else cost
        energy = _fill(ds.energy, col_means(ds.energy)) if ds.has("energy") else cost
        observed = np.isfinite(ds.quality)
        quality = _fill(ds.quality, col_means(ds.quality))
        if refs is None:
            refs = UtilityRefs(
                lat_ref=float(np.mean(lat[train_idx])) or 1.0,
                energy_ref=float(np.mean(energy[train_idx])) or 1.0,
                lat_source="latency" if ds.has("latency") else "cost",
                energy_source="energy" if ds.has("energy") else "cost",
            )
        return cls(quality, lat, energy, cost, refs, observed, getattr(ds, "propensity", None))

    def utility(self, w: np.ndarray, idx: np.ndarray | None = None, quality: np.ndarray | None = None) -> np.ndarray:
        """U for every (query, model); ``w`` is (3,) or per-query (n, 3) in (speed, quality, energy).

        ``quality`` replaces the stored quality of the rows ``idx`` (imputation during training)."""
        q, lat, e = (self.quality, self.latency, self.energy) if idx is None else (
            self.quality[idx], self.latency[idx], self.energy[idx])
        if quality is not None:
            q = quality
        w = np.asarray(w, dtype=np.float64)
        ws, wq, we = (w[..., 0:1], w[..., 1:2], w[..., 2:3]) if w.ndim == 2 else (w[0], w[1], w[2])
        return wq * q - ws * lat / self.refs.lat_ref - we * e / self.refs.energy_ref

    def _mean(self, values: np.ndarray, chosen: np.ndarray, idx: np.ndarray) -> float:
        """Mean of per-query ``values`` of the chosen models: plain, or SNIPS with partial labels."""
        if not self.partial:
            return float(values.mean())
        weight = self.observed[idx, chosen] * self.row_weights()[idx]
        return float((weight * values).sum() / weight.sum()) if weight.sum() > 0 else float("nan")

    def value(self, chosen: np.ndarray, idx: np.ndarray, w: np.ndarray) -> float:
        """Mean realised utility of choosing ``chosen[i]`` for query ``idx[i]`` (SNIPS with partial labels)."""
        rows = np.arange(len(idx))
        return self._mean(self.utility(w, idx)[rows, chosen], chosen, idx)

    def summary(self, chosen: np.ndarray, idx: np.ndarray, w: np.ndarray, tiers: np.ndarray) -> dict[str, float]:
        """What choosing model ``chosen[i]`` for query ``idx[i]`` yields, on average."""
        return {
            "edge_share": float((tiers[chosen] == "edge").mean()),
            "quality": self._mean(self.quality[idx, chosen], chosen, idx),
            "utility": self.value(chosen, idx, w),
            "latency": self._mean(self.latency[idx, chosen], chosen, idx),  # in the units of refs.lat_source
            "energy": self._mean(self.energy[idx, chosen], chosen, idx),
            "cost": self._mean(self.cost[idx, chosen], chosen, idx),
        }
