"""Did each scenario keep its floor, and the quality-vs-edge-share curves of the router and baselines.

Per scenario (``floor_report``): the floor, the realised retention (mean quality / the all-cloud
model's, the reference of ``evaluate``) with its 95% interval (delta method on the ratio of means),
the edge share, the latency / energy / cost reductions against all-cloud, and a verdict: ``held``
(retention >= floor), ``within noise`` (below, but the interval reaches the floor) or ``missed``;
``status`` is what the calibration said (``router.risk``: certified, all-edge, reference, ...).

Curves (``curves``): retention against edge share when the k queries a policy ranks highest go to
the cloud, for k from all to none. The router ranks by its utility margin under the scenario; kNN,
linear and signals by their predicted quality gain of the tier's best model (q_cloud - q_edge);
lookup by the mean train gain of the query's group; the oracle by the realised gain (an upper
bound); random at matched share is the straight line between all-edge and all-cloud.
"""

from __future__ import annotations

import numpy as np

from vlrouter.router.risk import ratio_interval

POINTS = 41


def verdict(retention: float, high: float, floor: float) -> str:
    if retention >= floor - 1e-12:
        return "held"
    return "within noise" if high >= floor else "missed"


def floor_report(out, idx: np.ndarray, chosen: np.ndarray, ref: int, floor: float, status: str | None,
                 tiers: np.ndarray, has: dict[str, bool]) -> dict:
    q, q_ref = out.quality[idx, chosen], out.quality[idx, ref]
    retention, low, high = ratio_interval(q, q_ref)
    res = {"floor": floor, "status": status, "retention": retention, "retention_ci95": [low, high],
           "edge_share": float((tiers[chosen] == "edge").mean()), "n": len(idx)}
    for key in ("latency", "energy", "cost"):
        matrix = getattr(out, key)
        ref_mean = float(matrix[idx, ref].mean())
        res[f"{key}_reduction"] = (1 - float(matrix[idx, chosen].mean()) / ref_mean
                                   if has[key] and ref_mean > 0 else None)
    res["verdict"] = verdict(retention, high, floor)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in res.items()}


def _curve(gain: np.ndarray, q_cloud: np.ndarray, q_edge: np.ndarray, q_ref_mean: float,
           tiebreak: np.ndarray) -> list[list[float]]:
    """(edge share, retention) when the queries with the highest ``gain`` go to the cloud."""
    n = len(gain)
    order = np.lexsort((tiebreak, -gain))
    kept = np.concatenate([[0.0], np.cumsum((q_cloud - q_edge)[order])]) + q_edge.sum()  # index k: top-k on cloud
    ks = np.unique(np.linspace(0, n, POINTS).round().astype(int))
    return [[round(1 - k / n, 4), round(float(kept[k]) / n / q_ref_mean, 4)] for k in ks[::-1]]


def curves(out, idx: np.ndarray, tiers: np.ndarray, ref: int, best_edge: int, margin: np.ndarray,
           router_choice: tuple[np.ndarray, np.ndarray], predicted: dict[str, np.ndarray],
           lookup_gain: np.ndarray | None = None, seed: int = 0) -> dict[str, list]:
    """Retention-vs-edge-share curves on the queries ``idx`` (see the module docstring).

    ``router_choice`` holds the router's cloud and edge model per query; ``predicted`` maps a
    baseline to its (queries, models) predicted quality; ``lookup_gain`` is the per-query group gain."""
    rows = np.arange(len(idx))
    q = out.quality[idx]
    q_ref_mean = float(q[:, ref].mean())
    if q_ref_mean <= 0:
        return {}
    tiebreak = np.random.default_rng(seed).random(len(idx))
    cloud_m, edge_m = tiers == "cloud", tiers == "edge"
    res = {"mlp": _curve(margin, q[rows, router_choice[0]], q[rows, router_choice[1]], q_ref_mean, tiebreak)}
    for name, q_hat in predicted.items():
        bc = np.where(cloud_m, q_hat, -np.inf).argmax(1)
        be = np.where(edge_m, q_hat, -np.inf).argmax(1)
        res[name] = _curve(q_hat[rows, bc] - q_hat[rows, be], q[rows, bc], q[rows, be], q_ref_mean, tiebreak)
    if lookup_gain is not None:
        res["lookup"] = _curve(lookup_gain, q[:, ref], q[:, best_edge], q_ref_mean, tiebreak)
    res["oracle"] = _curve(q[:, ref] - q[:, best_edge], q[:, ref], q[:, best_edge], q_ref_mean, tiebreak)
    edge_ret = float(q[:, best_edge].mean()) / q_ref_mean
    res["random"] = [[s, round(s * edge_ret + (1 - s), 4)] for s in np.linspace(0, 1, 11).round(2).tolist()]
    return res


def group_gain(ds, out, train_idx: np.ndarray, idx: np.ndarray, path: str, ref: int, best_edge: int,
               key, min_group: int = 5) -> np.ndarray:
    """Per query of ``idx``: the mean train gain q(ref) - q(best edge) of its group (``key(extra, path)``)."""
    gain = out.quality[train_idx, ref] - out.quality[train_idx, best_edge]
    groups: dict[str, list[float]] = {}
    for g, i in zip(gain, train_idx, strict=True):
        groups.setdefault(key(ds.queries[i].extra, path), []).append(float(g))
    overall = float(gain.mean())
    means = {k: float(np.mean(v)) for k, v in groups.items() if len(v) >= min_group}
    return np.array([means.get(key(ds.queries[i].extra, path), overall) for i in idx])


def retention_at(curve: list[list[float]], edge_share: float) -> float:
    """A curve's retention at ``edge_share``, linearly interpolated between its points."""
    xs, ys = zip(*sorted((p[0], p[1]) for p in curve), strict=True)
    return float(np.interp(edge_share, xs, ys))
