"""The scenario-conditioned MLP router and its checkpoint (safetensors + JSON).

Network: a trunk over the standardised fused features with three heads per model:
  quality   P(correct) / expected quality (sigmoid), fitted with BCE;
  costs     normalised latency lat/lat_ref and energy E/E_ref (where the data has no latency or
            energy, its cost stands in, as in ``utility.py``) as a per-query factor on each model's
            training mean: c(m | x) = mean(m) * exp(head), fitted with squared error relative to
            mean(m). Multiplicative because costs are positive and scale with the query (longer
            prompts cost every model more), and so a free model (a local edge model with cost 0)
            is predicted to cost exactly 0: an additive head gave free models small positive costs
            that, on MathVista, outweighed real quality differences between edge models;
  policy    after FiLM conditioning on the scenario vector w (h' = h * (1 + gamma(w)) + beta(w)),
            a softmax over models fitted to the soft scenario labels of ``train.py``.
FiLM rather than concatenation: w has 3 dimensions next to hundreds of feature dimensions;
concatenated at the input it is one more standardised column, while FiLM lets the scenario rescale
every hidden unit, so one trunk serves all scenarios and the scenario can reorder models.

A checkpoint holds an ensemble of such nets (the main run plus the cross-fitting runs that
calibration trains anyway); their outputs are averaged, which lowers the variance of the
estimates on small routing datasets.

Decision (``decision="utility"``, the default): the expected scenario utility of each model,
U(m) = w_q * q(m) - w_s * lat(m) - w_e * E(m) from the heads, and the margin
    margin = max over cloud models U(m) - max over edge models U(m);
the query goes to the cloud tier when margin >= tau, then to that tier's best-U model. tau comes
from the scenario's quality floor (``router.risk``): fitted under risk control on the held-out
predictions the checkpoint keeps, for any weights and floor a request asks for. ``vlrouter
calibrate --target-edge-share | --energy-budget`` can pin a preset's tau instead. Checkpoints
without held-out predictions interpolate the per-preset taus linearly in w. ``decision="policy"``
is ECVL-Router's rule on the policy head: cloud when p_cloud = sum of softmax(z) over cloud models
>= tau, tau in [0, 1] (fixed per preset: the policy head reads w, so floors cannot be refitted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlrouter._torch_compat import import_torch
from vlrouter.features.spec import FeatureSpec
from vlrouter.router.base import Decision, Router, RoutingInput
from vlrouter.router.calibration import corner_taus
from vlrouter.router.explain import Attributor, why
from vlrouter.router.risk import CalibrationSet, FloorFit
from vlrouter.router.scenario import FLOORS, PRESETS, Scenario, parse_scenario, scenario_for
from vlrouter.router.utility import UtilityRefs

FORMAT = "vlrouter-mlp-router/3"  # /3 checkpoints without held-out predictions load with fixed taus
DECISIONS = ("utility", "policy")
torch = import_torch()
nn = torch.nn


class RouterNet(nn.Module):
    def __init__(self, in_dim: int, n_models: int, hidden: tuple[int, int] = (256, 128), dropout: float = 0.1,
                 cost_scale: np.ndarray | None = None):
        super().__init__()
        h1, h2 = hidden
        self.trunk = nn.Sequential(nn.Linear(in_dim, h1), nn.ReLU(), nn.Dropout(dropout),
                                   nn.Linear(h1, h2), nn.ReLU(), nn.Dropout(dropout))
        self.film = nn.Linear(3, 2 * h2)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)  # starts as the identity modulation
        self.policy = nn.Linear(h2, n_models)
        self.quality = nn.Linear(h2, n_models)
        self.costs = nn.Linear(h2, 2 * n_models)  # log factors on cost_scale: normalised latency, then energy
        nn.init.zeros_(self.costs.weight)
        nn.init.zeros_(self.costs.bias)  # starts at each model's training mean
        scale = np.ones((2, n_models)) if cost_scale is None else np.asarray(cost_scale)
        self.register_buffer("cost_scale", torch.as_tensor(scale, dtype=torch.float32).reshape(2, n_models))
        self.n_models = n_models

    def forward(self, x, w):
        """(policy logits, quality logits, costs (n, 2, models)) for standardised ``x`` and weights ``w``."""
        h = self.trunk(x)
        gamma, beta = self.film(w).chunk(2, dim=-1)
        costs = self.cost_scale * torch.exp(self.costs(h).view(-1, 2, self.n_models).clamp(-6.0, 6.0))
        return self.policy(torch.relu(h * (1 + gamma) + beta)), self.quality(h), costs


@dataclass
class Prediction:
    """What the router expects of each model for each query (arrays of shape (queries, models))."""

    probs: np.ndarray    # policy head: softmax over models under w
    quality: np.ndarray  # expected quality (P(correct) for 0/1 quality)
    latency: np.ndarray  # expected latency / lat_ref (cost / cost_ref where the data has no latency)
    energy: np.ndarray   # expected energy / energy_ref (likewise)
    # (queries, 3) scenario weights (speed, quality, energy), or (queries, 3 + models): then followed by a
    # per-model utility offset (router.risk's "every query to the reference model" sets one)
    w: np.ndarray

    @property
    def utility(self) -> np.ndarray:
        ws, wq, we = self.w[:, 0:1], self.w[:, 1:2], self.w[:, 2:3]
        u = wq * self.quality - ws * self.latency - we * self.energy
        return u + self.w[:, 3:] if self.w.shape[1] > 3 else u


class MLPRouter(Router):
    """The trained scenario-conditioned router (see the module docstring); ``load`` reads a checkpoint."""

    name = "mlp"
    accepts_unknown = True  # trained with group dropout: a blanked block reads as "no information"

    def __init__(self, nets: RouterNet | list[RouterNet], *, spec: FeatureSpec, models: list[dict],
                 mean: np.ndarray, std: np.ndarray, refs: UtilityRefs, thresholds: dict[str, float] | None = None,
                 decision: str = "utility", meta: dict[str, Any] | None = None,
                 calibration: CalibrationSet | None = None):
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
        self.nets = [n.eval() for n in (nets if isinstance(nets, list | tuple) else [nets])]
        self.attributor = Attributor(self.nets)  # why this tier (router.explain)
        self.spec = spec
        self.models = models
        self.tiers = np.array([m["tier"] for m in models])
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.refs = refs
        self.decision = decision
        self.thresholds = dict(thresholds or {name: self.default_threshold for name in PRESETS})
        self.meta = meta or {}
        self.calibration = calibration if decision == "utility" else None
        self.source: str | None = None  # the checkpoint directory it was loaded from
        self._corner = corner_taus(self.thresholds)

    @property
    def floors(self) -> dict[str, float]:
        """Preset -> quality floor: the checkpoint's (``vlrouter calibrate --min-quality``), else the defaults."""
        return {**FLOORS, **(self.meta.get("floors") or {}).get("presets", {})}

    @property
    def pinned(self) -> dict[str, float]:
        """Presets whose tau was pinned by an edge-share target or an energy budget."""
        return (self.meta.get("floors") or {}).get("pinned", {})

    def describe(self) -> str:
        taus = "/".join(f"{self.thresholds[k]:.2f}" for k in ("fast", "quality", "energy"))
        floors = "/".join(f"{self.floors[k]:.0%}" for k in ("fast", "quality", "energy"))
        trained = self.meta.get("training", {}).get("data")
        if trained and self.meta["training"].get("synthetic"):
            trained += " (SYNTHETIC outcomes)"
        how = "risk-controlled" if self.calibration is not None else "fixed"
        return (f"{self.name} ({len(self.models)} models, ensemble of {len(self.nets)}, decision {self.decision}, "
                f"floors fast/quality/energy = {floors}, {how} tau = {taus}"
                f"{f', trained on {trained}' if trained else ''})")

    @property
    def cascade_band(self) -> float:
        """The first-stage band calibrated at training time (router.cascade); 0 for older checkpoints."""
        return float((self.meta.get("cascade") or {}).get("band") or 0.0)

    @property
    def default_threshold(self) -> float:
        return 0.0 if self.decision == "utility" else 0.5

    @property
    def threshold_range(self) -> tuple[float, float]:
        return (-5.0, 5.0) if self.decision == "utility" else (0.0, 1.0)

    # ------------------------------------------------------------------ scoring
    def predict(self, features: np.ndarray, w: np.ndarray) -> Prediction:
        """Ensemble-mean predictions for raw fused ``features`` under scenario weights ``w`` ((3,) or (n, 3);
        an operating point may append per-model utility offsets, see ``Prediction.w``)."""
        x = (np.atleast_2d(features).astype(np.float32) - self.mean) / self.std
        w = np.asarray(w, np.float32)
        w = np.tile(w, (x.shape[0], 1)) if w.ndim == 1 else np.array(w)
        xt, wt = torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(w[:, :3]))
        with torch.inference_mode():
            probs = quality = costs = 0.0
            for net in self.nets:
                z, q, c = net(xt, wt)
                probs = probs + torch.softmax(z, -1)
                quality = quality + torch.sigmoid(q)
                costs = costs + c
            k = len(self.nets)
            costs = (costs / k).numpy()
            return Prediction((probs / k).numpy(), (quality / k).numpy(), costs[:, 0], costs[:, 1], w)

    def margins(self, pred: Prediction) -> np.ndarray:
        """Per query, the score compared with tau: the cloud-vs-edge utility margin, or p_cloud."""
        cloud = self.tiers == "cloud"
        if self.decision == "policy":
            return pred.probs[:, cloud].sum(axis=1)
        if not cloud.any() or cloud.all():
            return np.full(len(pred.w), np.inf if cloud.all() else -np.inf)
        u = pred.utility
        return u[:, cloud].max(axis=1) - u[:, ~cloud].max(axis=1)

    def floor_for(self, scenario: Scenario) -> float:
        """The floor in force: the request's, else the checkpoint's for a preset, else the default rule."""
        if scenario.min_quality is None and scenario.name in PRESETS:
            return self.floors[scenario.name]
        return scenario.floor

    def floor_fit(self, scenario: Scenario) -> FloorFit | None:
        """The risk-controlled fit behind ``operating_point`` (None: fixed or pinned taus)."""
        if self.calibration is None or (scenario.min_quality is None and scenario.name in self.pinned):
            return None
        return self.calibration.fit(scenario.as_tuple(), self.floor_for(scenario))

    def _operating(self, scenario: Scenario) -> tuple[np.ndarray, float, FloorFit | None]:
        fit = self.floor_fit(scenario)
        if fit is not None:
            return np.array(fit.weights), 0.0, fit
        if scenario.name in self.thresholds and scenario.min_quality is None:  # a pinned or fixed preset tau
            return np.array(scenario.as_tuple()), self.thresholds[scenario.name], None
        tau = float(np.clip(np.dot(scenario.as_tuple(), self._corner), *self.threshold_range))
        return np.array(scenario.as_tuple()), tau, None

    def operating_point(self, scenario: Scenario) -> tuple[np.ndarray, float]:
        """The weights the router scores with and the margin threshold: the floor's (``router.risk``:
        quality weight raised, threshold 0), or the scenario's weights with a pinned / fixed tau."""
        w, tau, _ = self._operating(scenario)
        return w, tau

    def operating_point_for(self, name: str, w=None) -> tuple[np.ndarray, float]:
        """``operating_point`` of a preset by name, or of the weights ``w`` of another named scenario."""
        return self.operating_point(scenario_for(name, w))

    def threshold(self, scenario: Scenario) -> float:
        """The margin threshold (0 under a floor fit: its weights carry the decision)."""
        return self._operating(scenario)[1]

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        self.thresholds = dict(thresholds)
        self._corner = corner_taus(self.thresholds)

    def choose(self, pred: Prediction, tau: float | np.ndarray) -> np.ndarray:
        """Model index per query: the cloud tier when margin >= tau, then the tier's best model."""
        cloud = self.tiers == "cloud"
        score = pred.probs if self.decision == "policy" else pred.utility
        best_cloud = np.where(cloud, score, -np.inf).argmax(1)
        best_edge = np.where(~cloud, score, -np.inf).argmax(1)
        if not cloud.any() or cloud.all():
            return best_cloud if cloud.all() else best_edge
        return np.where(self.margins(pred) >= tau, best_cloud, best_edge)

    def cloud_benefit(self, query: RoutingInput) -> tuple[float, dict[str, float]]:
        w, _ = self.operating_point(query.scenario)
        return float(self.margins(self.predict(self._features(query), w))[0]), {}

    def _features(self, query: RoutingInput) -> np.ndarray:
        """The raw fused vector; an unknown block is set to the training mean, i.e. standardised 0,
        which is how group dropout blanked it in training."""
        if query.features is None:
            raise ValueError("the mlp router needs query features (features.enabled: true)")
        x = np.asarray(query.features)
        if query.unknown:
            x = x.astype(np.float32, copy=True)
            slices = self.spec.slices()
            for block in query.unknown:
                x[slices[block]] = self.mean[slices[block]]
        return x

    def route(self, query: RoutingInput) -> Decision:
        x = self._features(query)
        w, tau, fit = self._operating(query.scenario)
        pred = self.predict(x, w)
        idx = int(self.choose(pred, tau)[0])
        margin = float(self.margins(pred)[0])
        tier = self.models[idx]["tier"]
        why = self._why(query, x, pred, margin, tau, fit)
        p_cloud = float(pred.probs[0, self.tiers == "cloud"].sum())
        scores = {"p_cloud": round(p_cloud, 4)}
        if np.isfinite(margin):  # a single-tier router has no margin
            scores["margin"] = round(margin, 4)
        utility = pred.utility
        for j, m in enumerate(self.models):
            name = m["name"]
            scores[f"q:{name}"] = round(float(pred.quality[0, j]), 4)
            scores[f"u:{name}"] = round(float(utility[0, j]), 4)
            scores[f"p:{name}"] = round(float(pred.probs[0, j]), 4)
        what = "p_cloud" if self.decision == "policy" else "utility margin (cloud - edge)"
        reason = (f"{what} {margin:.3f} {'>=' if tier == 'cloud' else '<'} tau {tau:.3f} ({query.scenario}); "
                  f"model {self.models[idx]['name']}")
        return Decision(tier=tier, policy=self.name, threshold=round(tau, 4), scores=scores, reason=reason,
                        model=self.models[idx]["name"], floor=why["min_quality"], explanation=why)

    def _why(self, query: RoutingInput, x: np.ndarray, pred: Prediction, margin: float, tau: float,
             fit: FloorFit | None) -> dict:
        status = fit.status if fit is not None else ("pinned" if query.scenario.name in self.pinned else "fixed")
        return why(self, x, pred, margin=margin, tau=tau, floor=self.floor_for(query.scenario), status=status)

    def card(self) -> dict[str, Any]:
        """What /v1/models says of the router: checkpoint, training data, floors and thresholds."""
        training = self.meta.get("training", {})
        return {"policy": self.name, "checkpoint": self.source, "training_data": training.get("data"),
                "synthetic": training.get("synthetic", False), "models": [m["name"] for m in self.models],
                "feature_spec": self.spec.describe(), "floors": self.floors, "thresholds": self.thresholds,
                "floor_calibration": (self.meta.get("floors") or {}).get("calibration"),
                "calibrated": (training.get("calibration") or {}).get("by_preset")}

    # ------------------------------------------------------------------ checkpoint
    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"net{i}.{k}": v.contiguous()
                   for i, net in enumerate(self.nets) for k, v in net.state_dict().items()}
        tensors["scaler.mean"] = torch.from_numpy(self.mean)
        tensors["scaler.std"] = torch.from_numpy(self.std)
        extra = {"floors": {**(self.meta.get("floors") or {}), "presets": self.floors}}
        if self.calibration is not None:
            tensors.update({k: torch.from_numpy(v) for k, v in self.calibration.tensors().items()})
            extra["floors"]["calibration"] = self.calibration.meta()
        save_file(tensors, str(path / "router.safetensors"))
        meta = {
            "format": FORMAT, "policy": self.name, "feature_spec": self.spec.to_dict(), "models": self.models,
            "utility_refs": self.refs.to_dict(), "decision": self.decision, "ensemble": len(self.nets),
            "thresholds": self.thresholds, "scaler": {"kind": "standard", "tensors": ["scaler.mean", "scaler.std"]},
            **self.meta, **extra,
        }
        (path / "router.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, expected_spec: FeatureSpec | None = None) -> MLPRouter:
        from safetensors.torch import load_file

        path = Path(path)
        if not (path / "router.json").is_file() or not (path / "router.safetensors").is_file():
            raise FileNotFoundError(f"{path}: not a router checkpoint (router.json + router.safetensors)")
        meta = json.loads((path / "router.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{path}: checkpoint format {meta.get('format')!r}, expected {FORMAT!r} "
                             "(retrain it with `vlrouter train`)")
        spec = FeatureSpec.from_dict(meta["feature_spec"])
        if expected_spec is not None:
            expected_spec.require_same(spec, mine="gateway features", theirs=f"router checkpoint {path}")
        tensors = load_file(str(path / "router.safetensors"))
        hp = meta.get("hyperparameters", {})
        nets = []
        for i in range(int(meta.get("ensemble", 1))):
            net = RouterNet(spec.dim, len(meta["models"]), tuple(hp.get("hidden", (256, 128))), hp.get("dropout", 0.1))
            prefix = f"net{i}."
            net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            nets.append(net)
        kept = ("hyperparameters", "dev_metrics", "training", "calibration", "cascade", "floors", "curve")
        extra = {k: v for k, v in meta.items() if k in kept}
        cal_meta = (meta.get("floors") or {}).get("calibration")
        calibration = (CalibrationSet.from_tensors({k: v.numpy() for k, v in tensors.items()}, cal_meta,
                                                   [m["tier"] for m in meta["models"]]) if cal_meta else None)
        router = cls(nets, spec=spec, models=meta["models"], mean=tensors["scaler.mean"].numpy(),
                     std=tensors["scaler.std"].numpy(), refs=UtilityRefs(**meta["utility_refs"]),
                     thresholds=meta["thresholds"], decision=meta.get("decision", "utility"), meta=extra,
                     calibration=calibration)
        router.source = str(path)
        for name in PRESETS:  # the presets' floor walks, before the first request needs them
            router.floor_fit(parse_scenario(name))
        return router
