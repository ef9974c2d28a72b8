"""Why this tier: which features moved a decision, by gradient x input on the quality heads.

The tier decision rests on the predicted quality gain of the cloud, dq = q(best cloud model) -
q(best edge model) (the cost heads mostly shift every query alike). For one query its gradient with
respect to the standardised features, times those features, attributes dq to each input dimension
relative to the training mean (standardised 0, which is also how group dropout blanks a block):
"gradient x input" (Shrikumar et al., 2016; Ancona et al., 2018, "Towards better understanding of
gradient-based attribution methods"). A positive effect pushed the query towards the cloud. The
three largest effects are named (``image[17]``, ``text[203]``, a signal's name, ``extras[4]``), and
the effects are also summed per block, which is the more readable figure for embedding blocks
whose single dimensions mean little. About a millisecond for the default ensemble on a CPU.
"""

from __future__ import annotations

import numpy as np

from vlrouter._torch_compat import import_torch
from vlrouter.features.spec import FeatureSpec

torch = import_torch()


def feature_names(spec: FeatureSpec) -> list[str]:
    """One name per fused dimension, in FeatureSpec order."""
    return ([f"image[{i}]" for i in range(spec.image_dim)] + [f"text[{i}]" for i in range(spec.text_dim)]
            + [f"signal:{name}" for name in spec.signals] + [f"extras[{i}]" for i in range(spec.extras_dim)])


def attribution(nets, x_std: np.ndarray, cloud: int, edge: int) -> np.ndarray:
    """Gradient x input of the ensemble-mean dq = q[cloud] - q[edge] at one standardised query (dim,)."""
    x = torch.from_numpy(np.asarray(x_std, np.float32).reshape(1, -1)).requires_grad_(True)
    w = torch.zeros((1, 3))  # the quality heads do not read the scenario
    dq = 0.0
    for net in nets:
        q = torch.sigmoid(net(x, w)[1])[0]
        dq = dq + (q[cloud] - q[edge])
    (dq / len(nets)).backward()
    return (x.grad[0] * x.detach()[0]).numpy()


def explain(nets, spec: FeatureSpec, x_std: np.ndarray, cloud: int, edge: int, top: int = 3) -> dict:
    """The ``top`` features by |effect| on dq, and the effect per block (rounded for headers and logs)."""
    effect = attribution(nets, x_std, cloud, edge)
    names = feature_names(spec)
    order = np.argsort(-np.abs(effect), kind="stable")[:top]
    blocks = {name: round(float(effect[s].sum()), 4) for name, s in spec.slices().items() if s.stop > s.start}
    return {"top_features": [{"name": names[i], "effect": round(float(effect[i]), 4)} for i in order],
            "blocks": blocks}


def why(router, x: np.ndarray, pred, *, margin: float, tau: float, floor: float, status: str) -> dict:
    """What an ``MLPRouter`` decision rested on: predicted quality of each tier's best model, the margin
    and threshold, the floor and its calibration status (``router.risk``), the quality weight the floor
    led to, and the features that moved it most."""
    u, tiers = pred.utility[0], router.tiers
    best = {t: int(np.where(tiers == t, u, -np.inf).argmax()) for t in ("edge", "cloud") if (tiers == t).any()}
    out = {"quality": {t: round(float(pred.quality[0, j]), 4) for t, j in best.items()},
           "models": {t: router.models[j]["name"] for t, j in best.items()},
           "margin": round(margin, 4) if np.isfinite(margin) else None, "threshold": round(tau, 4),
           "min_quality": floor, "floor_status": status, "quality_weight": round(float(pred.w[0, 1]), 4)}
    if len(best) == 2:
        x_std = (np.asarray(x, np.float32) - router.mean) / router.std
        out.update(explain(router.nets, router.spec, x_std, best["cloud"], best["edge"]))
    return out
