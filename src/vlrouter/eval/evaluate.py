"""Evaluation of a router against baselines, per scenario, in the papers' metrics.

Baselines (all choose among the dataset's N models, under the same scenario utility):
  oracle        the model with the highest realised utility for each query (an upper bound)
  always_edge   the edge model with the best train quality; always_cloud: the strongest cloud model
                on train ("all-cloud", the reference for retention and reductions)
  random        models drawn at random with the MLP's own per-model shares (so its edge share matches)
  knn           k=10 nearest train queries (cosine, standardised features): mean quality per model,
                with train-mean latency/energy, then the highest expected utility
  linear        ridge regression of quality per model on all features, then the same argmax
  signals       INAR-VL-style: the same ridge on the complexity signals only
  lookup        (optional) a per-group rule: for each value of a query field (e.g. MathVista's task),
                the model with the best mean train utility; groups with < 5 train queries use the
                overall best
  model:<name>  (optional) every single model on its own

Metrics per scenario and policy: edge share, quality (APSP for 0/1 quality), quality retention vs
all-cloud, latency and energy reduction vs all-cloud (where the dataset has them), mean cost, Rank
Score (VL-RouterBench, beta 0.1, cost bounds = cheapest paid and dearest single model on the split, so
free edge models score as the cheapest paid one), RCS,
and mean realised utility. ``report["paired"]`` compares the router with each baseline query by query:
the mean utility difference (router - baseline, realised and, on synthetic data, expected) with a
95% interval from the paired standard error (for ``random``: against its exact expectation at the
router's shares), so a gap can be told from test-split noise. RCS is our own scenario-weighted score,
w_q * retention + w_s * latency reduction + w_e * energy reduction, since ECVL-Router's exact formula
was not at hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from vlrouter.eval.dataset import RoutingDataset
from vlrouter.eval.floors import curves, floor_report, group_gain
from vlrouter.router.mlp import MLPRouter, Prediction
from vlrouter.router.scenario import PRESETS, scenario_for
from vlrouter.router.utility import Outcomes

BETA = 0.1


def rank_score(quality: float, cost: float, cmin: float, cmax: float, beta: float = BETA) -> float | None:
    if not (math.isfinite(cost) and cmin > 0 and cmax > cmin):
        return None
    c = min(max(cost, cmin), cmax)
    cn = (math.log2(cmax) - math.log2(c)) / (math.log2(cmax) - math.log2(cmin))
    denom = beta * quality + cn
    return (1 + beta) * quality * cn / denom if denom > 0 else 0.0


@dataclass
class Baselines:
    """Fitted predictors of per-model quality used by the knn / linear / signals policies."""

    X_train: np.ndarray
    Q_train: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    signal_slice: slice
    k: int = 10
    ridge: float = 1.0

    def __post_init__(self):
        Z = self._std(self.X_train)
        self._train_unit = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-9)
        self._w_all = self._fit_ridge(Z)
        self._w_sig = self._fit_ridge(Z[:, self.signal_slice])

    def _std(self, X: np.ndarray) -> np.ndarray:
        return (X - self.mean) / self.std

    def _fit_ridge(self, Z: np.ndarray) -> np.ndarray:
        A = np.hstack([Z, np.ones((len(Z), 1))])
        reg = self.ridge * np.eye(A.shape[1])
        reg[-1, -1] = 0
        return np.linalg.solve(A.T @ A + reg, A.T @ self.Q_train)

    def knn_quality(self, X: np.ndarray) -> np.ndarray:
        Z = self._std(X)
        Z = Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-9)
        nearest = np.argsort(-(Z @ self._train_unit.T), axis=1)[:, : self.k]
        return self.Q_train[nearest].mean(axis=1)

    def linear_quality(self, X: np.ndarray, signals_only: bool = False) -> np.ndarray:
        Z = self._std(X)
        if signals_only:
            Z, w = Z[:, self.signal_slice], self._w_sig
        else:
            w = self._w_all
        return np.clip(np.hstack([Z, np.ones((len(Z), 1))]) @ w, 0, 1)


def _argmax_expected(q_hat: np.ndarray, out: Outcomes, train_idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    lat = out.latency[train_idx].mean(0) / out.refs.lat_ref
    energy = out.energy[train_idx].mean(0) / out.refs.energy_ref
    return np.argmax(w[1] * q_hat - w[0] * lat - w[2] * energy, axis=1)


def gap_interval(mean: float, se: float) -> dict:
    """A gap with its standard error and normal 95% interval, as reported under ``paired``."""
    return {"diff": round(mean, 5), "se": round(se, 5),
            "ci95": [round(mean - 1.96 * se, 5), round(mean + 1.96 * se, 5)]}


def paired_gap(u: np.ndarray, mine: np.ndarray, other: np.ndarray) -> dict:
    """Mean of u[i, mine[i]] - other[i] with a normal 95% interval from the paired standard error.

    ``other`` is the baseline's per-query utility (a chosen model's, or an expectation over models)."""
    diff = u[np.arange(len(u)), mine] - other
    se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
    return gap_interval(float(diff.mean()), se)


def _paired(u: np.ndarray, eu: np.ndarray | None, choices: dict[str, np.ndarray], shares: np.ndarray) -> dict:
    rows = np.arange(len(u))
    res = {}
    for name, chosen in choices.items():
        if name in ("mlp", "oracle"):
            continue
        res[name] = {"realised": paired_gap(u, choices["mlp"], u[rows, chosen])}
        if eu is not None:
            res[name]["expected"] = paired_gap(eu, choices["mlp"], eu[rows, chosen])
    res["random"] = {"realised": paired_gap(u, choices["mlp"], u @ shares)}
    if eu is not None:
        res["random"]["expected"] = paired_gap(eu, choices["mlp"], eu @ shares)
    return res


def _metrics(ds: RoutingDataset, out: Outcomes, idx: np.ndarray, chosen: np.ndarray, w: np.ndarray,
             ref_model: int, cmin: float, cmax: float) -> dict:
    got = out.summary(chosen, idx, w, ds.tiers)
    q = got["quality"]
    q_ref = float(out.quality[idx, ref_model].mean())
    res = {"edge_share": got["edge_share"], "quality": q, "quality_retention": q / q_ref if q_ref > 0 else None}
    for key, column in (("latency_reduction", "latency"), ("energy_reduction", "energy")):
        if ds.has(column):
            matrix = getattr(out, column)
            ref = float(matrix[idx, ref_model].mean())
            res[key] = 1 - float(matrix[idx, chosen].mean()) / ref if ref > 0 else None
        else:
            res[key] = None
    res["cost"] = float(out.cost[idx, chosen].mean()) if ds.has("cost") else None
    res["rank_score"] = rank_score(q, res["cost"], cmin, cmax) if res["cost"] is not None else None
    parts = [res["quality_retention"] or 0.0, res["latency_reduction"] or 0.0, res["energy_reduction"] or 0.0]
    res["rcs"] = float(w[1] * parts[0] + w[0] * parts[1] + w[2] * parts[2])
    res["utility"] = got["utility"]
    if ds.has("expected_quality"):  # synthetic data: the same utility with the simulator's P(correct), noise-free
        u = out.utility(w, idx, quality=np.nan_to_num(ds.expected_quality[idx], nan=0.0))
        res["expected_utility"] = float(u[np.arange(len(idx)), chosen].mean())
    res["model_shares"] = {m: float((chosen == j).mean()) for j, m in enumerate(ds.model_names)}
    res["mean_latency"] = got["latency"]  # in the units of refs.lat_source
    res["mean_energy"] = got["energy"]
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in res.items()}


def _group_key(extra: dict, path: str) -> str:
    value = extra
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return str(value)


def lookup_rule(ds: RoutingDataset, out: Outcomes, train_idx: np.ndarray, idx: np.ndarray, w: np.ndarray,
                path: str, min_group: int = 5) -> np.ndarray:
    """Per value of ``path`` in the query fields, the model with the best mean train utility."""
    u = out.utility(w, train_idx)
    overall = int(np.argmax(u.mean(0)))
    groups: dict[str, list[int]] = {}
    for row, i in enumerate(train_idx):
        groups.setdefault(_group_key(ds.queries[i].extra, path), []).append(row)
    best = {g: int(np.argmax(u[rows].mean(0))) for g, rows in groups.items() if len(rows) >= min_group}
    return np.array([best.get(_group_key(ds.queries[i].extra, path), overall) for i in idx])


def _cost_bounds(ds: RoutingDataset, out: Outcomes, idx: np.ndarray) -> tuple[float, float]:
    """Rank Score's cost bounds: the cheapest paid model (free local models score as it) and the dearest."""
    mean_costs = out.cost[idx].mean(0) if ds.has("cost") else np.array([np.nan])
    positive = mean_costs[mean_costs > 0]
    return (float(np.nanmin(positive)) if len(positive) else float("nan")), float(np.nanmax(mean_costs))


def _tier_models(pred: Prediction, tiers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The router's best cloud and best edge model per query (by its expected utility)."""
    u = pred.utility
    return np.where(tiers == "cloud", u, -np.inf).argmax(1), np.where(tiers == "edge", u, -np.inf).argmax(1)


def evaluate(ds: RoutingDataset, X: np.ndarray, router: MLPRouter, *, split: str = "test", seed: int = 0,
             random_draws: int = 20, scenarios: dict[str, tuple] | None = None, lookup: str | None = None,
             single_models: bool = False) -> dict:
    train_idx, idx = ds.split("train"), ds.split(split)
    if len(idx) == 0:
        raise ValueError(f"dataset has no {split!r} queries")
    out = Outcomes.from_dataset(ds, train_idx, refs=router.refs)
    tiers = ds.tiers
    train_q = out.quality[train_idx].mean(0)
    cloud_models = np.where(tiers == "cloud")[0]
    edge_models = np.where(tiers == "edge")[0]
    all_cloud = int(cloud_models[np.argmax(train_q[cloud_models])]) if len(cloud_models) else int(np.argmax(train_q))
    best_edge = int(edge_models[np.argmax(train_q[edge_models])]) if len(edge_models) else all_cloud
    cmin, cmax = _cost_bounds(ds, out, idx)
    base = Baselines(X[train_idx], out.quality[train_idx], router.mean, router.std, router.spec.slices()["signals"])
    predicted = {"knn": base.knn_quality(X[idx]), "linear": base.linear_quality(X[idx]),
                 "signals": base.linear_quality(X[idx], True)}
    rng = np.random.default_rng(seed)
    report = {"split": split, "n": len(idx), "all_cloud_model": ds.model_names[all_cloud],
              "rank_score_cost_bounds": [cmin, cmax], "scenarios": {}, "paired": {}, "floors": {}, "curves": {}}
    has = {k: ds.has(k) for k in ("latency", "energy", "cost")}
    gains = (group_gain(ds, out, train_idx, idx, lookup, all_cloud, best_edge, _group_key) if lookup else None)
    for name, w_tuple in (scenarios or PRESETS).items():
        w = np.array(w_tuple, dtype=float)
        scen = scenario_for(name, w_tuple)
        w_op, tau = router.operating_point(scen)
        pred = router.predict(X[idx], w_op)
        mlp = router.choose(pred, tau)
        fit = router.floor_fit(scen)
        report["floors"][name] = floor_report(out, idx, mlp, all_cloud, router.floor_for(scen),
                                              fit.status if fit else None, tiers, has)
        report["curves"][name] = curves(out, idx, tiers, all_cloud, best_edge, router.margins(pred),
                                        _tier_models(pred, tiers), predicted, gains, seed)
        u = out.utility(w, idx)
        shares = np.bincount(mlp, minlength=len(ds.models)) / len(idx)
        choices = {
            "mlp": mlp,
            "oracle": np.argmax(u - 1e-9 * out.cost[idx], axis=1),
            "always_edge": np.full(len(idx), best_edge),
            "always_cloud": np.full(len(idx), all_cloud),
            **{k: _argmax_expected(q, out, train_idx, w) for k, q in predicted.items()},
        }
        if lookup:
            choices["lookup"] = lookup_rule(ds, out, train_idx, idx, w, lookup)
        if single_models:
            choices.update({f"model:{m}": np.full(len(idx), j) for j, m in enumerate(ds.model_names)})
        scenario = {k: _metrics(ds, out, idx, v, w, all_cloud, cmin, cmax) for k, v in choices.items()}
        draws = [_metrics(ds, out, idx, rng.choice(len(ds.models), size=len(idx), p=shares), w, all_cloud, cmin, cmax)
                 for _ in range(random_draws)]
        scenario["random"] = {k: (round(float(np.mean([d[k] for d in draws])), 5)
                                  if draws[0][k] is not None and not isinstance(draws[0][k], dict) else draws[0][k])
                              for k in draws[0]}
        scenario["random"]["draws"] = random_draws
        report["scenarios"][name] = scenario
        if not out.partial:  # SNIPS values (partial labels) have no per-query pairing
            eu = (out.utility(w, idx, quality=np.nan_to_num(ds.expected_quality[idx], nan=0.0))
                  if ds.has("expected_quality") else None)
            report["paired"][name] = _paired(u, eu, choices, shares)
    return report


def sweep(ds: RoutingDataset, X: np.ndarray, router: MLPRouter, scenario: str = "quality",
          split: str = "test", points: int = 41, weights: tuple | None = None) -> list[dict]:
    """The router's curve over thresholds: one point per tau (``weights`` for an unnamed scenario)."""
    train_idx, idx = ds.split("train"), ds.split(split)
    out = Outcomes.from_dataset(ds, train_idx, refs=router.refs)
    w = np.array(weights if weights is not None else PRESETS[scenario], dtype=float)
    pred = router.predict(X[idx], w)
    margins = router.margins(pred)
    lo, hi = router.threshold_range
    finite = margins[np.isfinite(margins)]
    if router.decision == "utility" and len(finite):  # span every edge share the margins allow
        lo, hi = float(finite.min()) - 1e-6, float(finite.max()) + 1e-6
    return [{"tau": float(tau), **out.summary(router.choose(pred, tau), idx, w, ds.tiers)}
            for tau in np.linspace(lo, hi, points)]
