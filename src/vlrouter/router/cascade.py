"""The routing cascade: decide on the cheap features first, embed the image only when it is close.

The image encoder is most of the routing cost (SigLIP ViT-B/16: ~200 ms a 224 px image on two CPU
cores, against ~15 ms for the text encoder and ~2 ms for the signals). So for a query with images
the gateway first routes on text + signals with the image block *unknown* (set to the training
mean, which is how group dropout blanked it in training); if that decision's margin is at least
``band`` away from the threshold it stands, otherwise the image is embedded and the query routed
again on the full vector.

``band`` is calibrated per checkpoint at training time on dev: the smallest band at which, in every
preset, the one-sided 95% Wilson lower bound of the agreement between the cascade's decisions and
the full-feature decisions on the dev queries with images is at least ``target`` (98%). A bound
rather than the point estimate because dev splits are small: on 200 dev queries it asks for full
agreement there. ``routing.cascade_band`` overrides it (0 turns the cascade off).
"""

from __future__ import annotations

import numpy as np

from vlrouter.router.base import Decision
from vlrouter.router.scenario import PRESETS

TARGET_AGREEMENT = 0.98
Z_95 = 1.6449  # one-sided 95%


def wilson_lower(successes: float, n: int, z: float = Z_95) -> float:
    """The Wilson score lower bound of a binomial proportion."""
    if n == 0:
        return 0.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float((centre - spread) / (1 + z * z / n))


def settled(decision: Decision, band: float) -> bool:
    """Whether a first-stage decision stands: its margin is at least ``band`` from the threshold."""
    margin = decision.scores.get("margin")
    return band > 0 and margin is not None and abs(margin - decision.threshold) >= band


def cascade_margins(router, X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(full-feature margins, first-stage margins with the image block unknown) for rows ``X``."""
    sl = router.spec.slices()["image"]
    cheap = np.array(X, np.float32, copy=True)
    cheap[:, sl] = router.mean[sl]
    return router.margins(router.predict(X, w)), router.margins(router.predict(cheap, w))


def calibrate_band(router, X: np.ndarray, *, target: float = TARGET_AGREEMENT,
                   scenarios: dict[str, tuple[float, float, float]] | None = None) -> dict:
    """The smallest band whose cascade agrees with the full router, by the Wilson lower bound, on
    >= ``target`` of the rows of ``X`` that have an image, in every scenario; with the point agreement and
    the share of those rows that needed the image encoder."""
    scenarios = scenarios or PRESETS
    sl = router.spec.slices()["image"]
    has_image = np.abs(X[:, sl]).sum(axis=1) > 0
    if sl.stop == sl.start or not has_image.any():
        return {"band": 0.0, "n": 0, "reason": "no image features in this data: the cascade has nothing to skip"}
    Xi = X[has_image]
    stages = {}
    for name, w in scenarios.items():
        w_op, tau = router.operating_point_for(name, np.array(w))
        full, cheap = cascade_margins(router, Xi, np.asarray(w_op, np.float32))
        stages[name] = (full >= tau, cheap >= tau, np.abs(cheap - tau))
    gaps = np.unique(np.concatenate([d for _, _, d in stages.values()]))
    # each candidate lies just past one query's distance; the last escalates every query (agreement 1)
    for band in np.concatenate([[0.0], gaps + 1e-6]):
        agree = {n: float(np.mean(np.where(d >= band, c, f) == f)) for n, (f, c, d) in stages.items()}
        if min(wilson_lower(a * len(Xi), len(Xi)) for a in agree.values()) >= target:
            break
    image_share = {n: float(np.mean(d < band)) for n, (_, _, d) in stages.items()}
    return {"band": round(float(band), 6), "target": target, "rule": "wilson-lower-95", "n": len(Xi),
            "agreement": {n: round(v, 4) for n, v in agree.items()},
            "image_encoder_share": {n: round(v, 4) for n, v in image_share.items()}}
