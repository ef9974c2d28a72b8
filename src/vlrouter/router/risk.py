"""Quality floors under risk control: a scenario's operating point from held-out outcomes.

A scenario is an objective (the weights w, see ``scenario.py``) plus a quality floor f: the share
of the strongest model's expected quality to keep over the traffic (``min_quality``). "Minimise
the scenario's costs subject to the floor" has a Lagrangian form: pick for each query the model
with the highest U_lambda(m) = lambda * q(m) - w_speed * lat(m) - w_energy * E(m) (the router's
heads), with the quality multiplier lambda raised above the scenario's own w_quality until the floor
holds. The router then routes with the normalised weights (w_speed, lambda, w_energy) / sum and a
zero margin threshold, so each query goes where quality gained per unit of cost is worth it.

**Risk control.** On held-out queries (dev plus the out-of-fold training queries, see
``train.py``) with their realised quality, a fixed grid of lambdas is tested in order from
"quality only" (lambda = 1e4 w-units: the strongest predicted model for every query) down to the
scenario's own w_quality (its unconstrained expected-utility decision). For each, H0: "retention
< f" is tested with the one-sided delta-method bound of the ratio retention = mean q(chosen) /
mean q(reference) (a CLT test); the walk stops at the first lambda whose bound falls below f, and
the last one passed is used. This is Learn-then-Test with fixed-sequence testing (Angelopoulos,
Bates, Candes, Jordan & Lei, 2021, "Learn then Test: Calibrating Predictive Algorithms to Achieve
Risk Control", section 4.2; CLT p-values as in its appendix): with probability >= 1 - delta (0.95)
over the held-out sample, every lambda passed keeps the floor on new queries from the same
distribution, asymptotically. The grid and its order are fixed before the outcomes are seen, and
the bounds do not depend on f, so one walk per w serves every floor: a higher floor stops earlier,
at a larger lambda, which is how a per-request ``min_quality`` moves decisions monotonically.

Within the reference's tier only the reference answers (``tier_offsets``): a floor is kept by
trading the reference against the other tier, not by guessing per query which of several near-equal
models of its own tier is right. The walk starts one step earlier, at "every query to the reference
model", whose retention is 1 by definition: where per-query predictions are too noisy for even
"quality only" to be certified, the router sends everything to the reference model rather than
gamble (on MathVista's 11 near-equal models, picking the predicted best model per query kept 93% of
the best single model, with a lower bound of 86%).

Statuses: ``certified``; ``all-edge`` (certified, and the data lets the edge keep the floor for
every query); ``reference`` (only "every query to the reference model" is certified);
``uncertified`` (partial labels from a decision log: unobserved outcomes are the quality head's
guesses, so the floor is a plug-in estimate). The quality and cost heads do not read w, so the
checkpoint keeps the held-out predictions and a walk is run for any weights a request asks for (a
few milliseconds, then cached).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

DELTA = 0.05
LAMBDA_MAX = 1e4  # "quality only": costs break ties between equally good models
GRID = 160
REFERENCE_OFFSET = 1e3  # a utility offset no cost term reaches: the reference model wins every query
METHOD = ("Learn-then-Test: fixed-sequence tests of the quality multiplier from quality-only down to the "
          "scenario's own weight; one-sided delta-method (CLT) bound of the retention at delta {delta}")
_FIELDS = ("q_pred", "lat_pred", "e_pred", "quality", "latency", "energy")


@dataclass(frozen=True)
class FloorFit:
    """The operating point for one (weights, floor) and what it did on the held-out queries."""

    # what the router routes with (threshold 0): (speed, quality, energy) with the quality weight raised, or,
    # for "every query to the reference model", those followed by a per-model utility offset
    weights: tuple[float, ...]
    floor: float
    status: str         # "certified" | "all-edge" | "reference" | "uncertified" (see above)
    edge_share: float
    retention: float    # mean quality kept / the reference model's, on the held-out queries
    retention_low: float  # its one-sided 95% lower bound
    latency_reduction: float  # vs the reference model for every query (normalised latency, or cost)
    energy_reduction: float
    n: int

    def as_dict(self) -> dict:
        def rounded(v):
            if isinstance(v, tuple | list):
                return [rounded(x) for x in v]
            return round(v, 5) if isinstance(v, float) and math.isfinite(v) else v

        return {k: rounded(v) for k, v in asdict(self).items()}


@dataclass
class CalibrationSet:
    """Held-out predictions (quality, normalised latency and energy per model) and realised outcomes.

    ``certified`` is False for partial labels (a decision log): unobserved outcomes are the quality
    head's guesses, so the floor is a plug-in estimate there, not a risk-controlled one."""

    q_pred: np.ndarray    # (n, models)
    lat_pred: np.ndarray
    e_pred: np.ndarray
    quality: np.ndarray   # realised quality (filled where a dataset lacks an outcome)
    latency: np.ndarray   # realised, normalised by the utility references
    energy: np.ndarray
    tiers: np.ndarray     # (models,) "edge" | "cloud"
    ref: int              # the strongest model (highest mean held-out quality): retention's denominator
    certified: bool = True
    delta: float = DELTA

    def __post_init__(self):
        if len(self.quality) < 2:
            raise ValueError("a calibration set needs at least 2 held-out queries")
        self._walks: OrderedDict[tuple, dict] = OrderedDict()  # rounded w -> its walk (floors are free)
        self._fits: dict[tuple, FloorFit] = {}  # (rounded w, floor) -> the fit: the request path's lookup

    @classmethod
    def build(cls, pred, quality, latency, energy, tiers, *, certified: bool = True) -> CalibrationSet:
        """From a ``Prediction`` of the held-out queries and their realised (normalised) outcomes."""
        ref = int(np.argmax(quality.mean(0)))
        return cls(pred.quality, pred.latency, pred.energy, quality, latency, energy, np.asarray(tiers), ref,
                   certified)

    def tensors(self) -> dict[str, np.ndarray]:
        return {f"calibration.{k}": np.ascontiguousarray(getattr(self, k), np.float32) for k in _FIELDS}

    def meta(self) -> dict:
        return {"n": len(self.quality), "reference": self.ref, "certified": self.certified, "delta": self.delta,
                "method": METHOD.format(delta=self.delta)}

    @classmethod
    def from_tensors(cls, tensors: dict, meta: dict, tiers) -> CalibrationSet:
        arrays = {k: np.asarray(tensors[f"calibration.{k}"], np.float64) for k in _FIELDS}
        return cls(**arrays, tiers=np.asarray(tiers), ref=int(meta["reference"]),
                   certified=bool(meta.get("certified", True)), delta=float(meta.get("delta", DELTA)))

    # ------------------------------------------------------------------ fitting
    def lambdas(self, w_quality: float) -> np.ndarray:
        """The fixed test order: quality multipliers from 1e4 down to the scenario's own ``w_quality``."""
        low = max(float(w_quality), 1e-3)
        return np.geomspace(LAMBDA_MAX, low, GRID) if low < LAMBDA_MAX else np.array([low])

    def _walk(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Along ``lambdas``: the retention, its lower bound and the edge share on the held-out queries."""
        cost = w[0] * self.lat_pred + w[2] * self.e_pred
        rows, q_ref = np.arange(len(cost)), self.quality[:, self.ref]
        lams = self.lambdas(w[1])
        z = NormalDist().inv_cdf(1 - self.delta)
        # every lambda at once: (lambdas, queries) model choices
        chosen = (lams[:, None, None] * self.q_pred[None] - cost[None] + self.tier_offsets()).argmax(2)
        q = self.quality[rows, chosen]  # (lambdas, queries)
        n, mu = len(rows), max(float(q_ref.mean()), 1e-12)
        retention = q.mean(1) / mu
        se = (q - retention[:, None] * q_ref).std(1, ddof=1) / math.sqrt(n) / mu
        low = np.nan_to_num(retention - z * se, nan=-np.inf)

        def reduction(matrix: np.ndarray) -> np.ndarray:
            ref = float(matrix[:, self.ref].mean())
            return 1 - matrix[rows, chosen].mean(1) / ref if ref > 0 else np.full(len(lams), np.nan)

        return {"lam": lams, "retention": retention, "low": low, "edge": (self.tiers[chosen] == "edge").mean(1),
                "lat": reduction(self.latency), "energy": reduction(self.energy)}

    def fit(self, w, floor: float) -> FloorFit:
        """The risk-controlled operating point for weights ``w`` (speed, quality, energy) and ``floor``."""
        w = np.asarray(w, np.float64)
        key = tuple(round(float(v), 4) for v in w)
        hit = self._fits.get((key, floor))
        if hit is not None:
            return hit
        walk = self._walks.get(key)
        if walk is None:
            walk = self._walk(w)
            self._walks[key] = walk
            if len(self._walks) > 1024:
                self._walks.popitem(last=False)
        else:
            self._walks.move_to_end(key)
        fails = np.flatnonzero(walk["low"] < floor)
        j = int(fails[0]) - 1 if len(fails) else len(walk["lam"]) - 1  # the last lambda passed
        fit = self._reference(w, floor) if j < 0 else self._at(w, floor, walk, j)
        if len(self._fits) >= 4096:
            self._fits.clear()
        self._fits[(key, floor)] = fit
        return fit


    def tier_offsets(self) -> np.ndarray:
        """Under a floor the reference's tier answers with the reference alone: its other models (e.g. the
        cheaper cloud models) get an offset that no utility overcomes. Choosing among several near-equal
        models of one tier per query is where the predictions are noisiest (MathVista's four cloud models)."""
        same = (self.tiers == self.tiers[self.ref]) & (np.arange(len(self.tiers)) != self.ref)
        return np.where(same, -REFERENCE_OFFSET, 0.0)

    def _at(self, w: np.ndarray, floor: float, walk: dict, j: int) -> FloorFit:
        status = "all-edge" if walk["edge"][j] >= 1.0 else "certified"
        lam = float(walk["lam"][j])
        total = w[0] + lam + w[2]
        offsets = self.tier_offsets()
        weights = (float(w[0] / total), lam / total, float(w[2] / total),
                   *(offsets.tolist() if offsets.any() else ()))
        return FloorFit(weights=weights, floor=float(floor),
                        status=status if self.certified else "uncertified", edge_share=float(walk["edge"][j]),
                        retention=float(walk["retention"][j]), retention_low=float(walk["low"][j]),
                        latency_reduction=float(walk["lat"][j]), energy_reduction=float(walk["energy"][j]),
                        n=len(self.quality))

    def _reference(self, w: np.ndarray, floor: float) -> FloorFit:
        """The first hypothesis of the walk: every query to the reference model keeps retention 1 exactly."""
        offsets = np.where(np.arange(len(self.tiers)) == self.ref, REFERENCE_OFFSET, 0.0)
        return FloorFit(weights=(*(float(v) for v in w / w.sum()), *offsets.tolist()), floor=float(floor),
                        status="reference", edge_share=float(self.tiers[self.ref] == "edge"), retention=1.0,
                        retention_low=1.0, latency_reduction=0.0, energy_reduction=0.0, n=len(self.quality))


def ratio_se(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """mean(num) / mean(den) and its delta-method standard error (nan where undefined)."""
    n, mu = len(num), float(den.mean()) if len(den) else 0.0
    if n < 2 or mu <= 0:
        return float("nan"), float("nan")
    r = float(num.mean()) / mu
    return r, float((num - r * den).std(ddof=1) / math.sqrt(n) / mu)


def ratio_interval(num: np.ndarray, den: np.ndarray) -> tuple[float, float, float]:
    """mean(num) / mean(den) with its two-sided 95% delta-method interval."""
    r, se = ratio_se(num, den)
    return r, r - 1.96 * se, r + 1.96 * se
