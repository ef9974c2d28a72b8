"""The scenario-conditioned MLP router and its checkpoint (safetensors + JSON).

Network: a trunk over the standardised fused features, then FiLM conditioning on the scenario
vector w (h' = h * (1 + gamma(w)) + beta(w)) and a per-model head. FiLM rather than concatenation
is used because w has 3 dimensions next to hundreds of feature dimensions: concatenated at the input
it is one more standardised column, while FiLM lets the scenario rescale every hidden unit, so one
trunk serves all scenarios and the scenario can reorder models. A second head, before FiLM,
predicts each model's expected quality.

The policy head is trained on soft labels t(m) ∝ exp(beta * U(m | w)) (see ``train.py``), so
softmax(z) concentrates on the models with the highest expected scenario utility: taking its
argmax is the documented equivalent of maximising U. Tier decision (ECVL-Router's tau): the
cloud share p_cloud = sum of softmax(z) over cloud models; the query goes to the cloud tier when
p_cloud >= tau(w), and then to the best model of that tier. tau is calibrated per preset on dev and
interpolated linearly in w for custom scenarios.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vlrouter._torch_compat import import_torch
from vlrouter.features.spec import FeatureSpec
from vlrouter.router.base import Decision, Router, RoutingInput, register
from vlrouter.router.scenario import PRESETS, Scenario
from vlrouter.router.utility import UtilityRefs

FORMAT = "vlrouter-mlp-router/1"
torch = import_torch()
nn = torch.nn


class RouterNet(nn.Module):
    def __init__(self, in_dim: int, n_models: int, hidden: tuple[int, int] = (256, 128), dropout: float = 0.1):
        super().__init__()
        h1, h2 = hidden
        self.trunk = nn.Sequential(nn.Linear(in_dim, h1), nn.ReLU(), nn.Dropout(dropout),
                                   nn.Linear(h1, h2), nn.ReLU(), nn.Dropout(dropout))
        self.film = nn.Linear(3, 2 * h2)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)  # starts as the identity modulation
        self.policy = nn.Linear(h2, n_models)
        self.quality = nn.Linear(h2, n_models)

    def forward(self, x, w):
        h = self.trunk(x)
        gamma, beta = self.film(w).chunk(2, dim=-1)
        return self.policy(torch.relu(h * (1 + gamma) + beta)), self.quality(h)


def preset_matrix() -> np.ndarray:
    return np.array([PRESETS[name] for name in ("fast", "quality", "energy")])


def corner_taus(preset_taus: dict[str, float]) -> np.ndarray:
    """Per-corner taus t such that w_preset . t = tau_preset for the three presets."""
    target = np.array([preset_taus[name] for name in ("fast", "quality", "energy")])
    return np.linalg.solve(preset_matrix(), target)


@register
class MLPRouter(Router):
    name = "mlp"

    def __init__(self, net: RouterNet, *, spec: FeatureSpec, models: list[dict], mean: np.ndarray,
                 std: np.ndarray, refs: UtilityRefs, thresholds: dict[str, float] | None = None,
                 meta: dict[str, Any] | None = None):
        self.net = net.eval()
        self.spec = spec
        self.models = models
        self.tiers = np.array([m["tier"] for m in models])
        self.mean, self.std = mean.astype(np.float32), std.astype(np.float32)
        self.refs = refs
        self.thresholds = dict(thresholds or {name: 0.5 for name in PRESETS})
        self.meta = meta or {}
        self._corner = corner_taus(self.thresholds)

    # ------------------------------------------------------------------ scoring
    def predict(self, features: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(policy probabilities, predicted quality), each (n, models), for raw fused features."""
        x = (np.atleast_2d(features).astype(np.float32) - self.mean) / self.std
        w = np.asarray(w, np.float32)
        w = np.tile(w, (x.shape[0], 1)) if w.ndim == 1 else np.array(w)
        with torch.inference_mode():
            z, q = self.net(torch.from_numpy(x), torch.from_numpy(w))
            return torch.softmax(z, -1).numpy(), torch.sigmoid(q).numpy()

    def threshold(self, scenario: Scenario) -> float:
        return float(np.clip(np.dot(scenario.as_tuple(), self._corner), 0.0, 1.0))

    def threshold_for(self, preset: str, w: np.ndarray | None = None) -> float:
        """The calibrated tau of a named scenario; unnamed weights ``w`` get the interpolated one."""
        if preset in self.thresholds or w is None:
            return self.thresholds[preset]
        return float(np.clip(np.dot(np.asarray(w, float), self._corner), 0.0, 1.0))

    def set_thresholds(self, thresholds: dict[str, float]) -> None:
        self.thresholds = dict(thresholds)
        self._corner = corner_taus(self.thresholds)

    def choose(self, probs: np.ndarray, tau: float | np.ndarray) -> np.ndarray:
        """Model index per query: cloud tier when p_cloud >= tau, then the tier's most probable model."""
        cloud = self.tiers == "cloud"
        best_cloud = np.where(cloud, probs, -1.0).argmax(1)
        best_edge = np.where(~cloud, probs, -1.0).argmax(1)
        if not cloud.any() or cloud.all():
            return best_cloud if cloud.all() else best_edge
        return np.where(probs[:, cloud].sum(axis=1) >= tau, best_cloud, best_edge)

    def cloud_benefit(self, query: RoutingInput) -> tuple[float, dict[str, float]]:
        probs, _ = self.predict(self._features(query), np.array(query.scenario.as_tuple()))
        return float(probs[0, self.tiers == "cloud"].sum()), {}

    def _features(self, query: RoutingInput) -> np.ndarray:
        if query.features is None:
            raise ValueError("the mlp router needs query features (features.enabled: true)")
        return np.asarray(query.features)

    def route(self, query: RoutingInput) -> Decision:
        probs, quality = self.predict(self._features(query), np.array(query.scenario.as_tuple()))
        tau = self.threshold(query.scenario)
        idx = int(self.choose(probs, tau)[0])
        p_cloud = float(probs[0, self.tiers == "cloud"].sum())
        tier = self.models[idx]["tier"]
        scores = {"p_cloud": round(p_cloud, 4)}
        for m, p, q in zip(self.models, probs[0], quality[0], strict=True):
            scores[f"p:{m['name']}"] = round(float(p), 4)
            scores[f"q:{m['name']}"] = round(float(q), 4)
        reason = (f"p_cloud {p_cloud:.3f} {'>=' if tier == 'cloud' else '<'} tau {tau:.3f} ({query.scenario}); "
                  f"model {self.models[idx]['name']}")
        return Decision(tier=tier, policy=self.name, threshold=round(tau, 4), scores=scores, reason=reason,
                        model=self.models[idx]["name"])

    # ------------------------------------------------------------------ checkpoint
    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"net.{k}": v.contiguous() for k, v in self.net.state_dict().items()}
        tensors["scaler.mean"] = torch.from_numpy(self.mean)
        tensors["scaler.std"] = torch.from_numpy(self.std)
        save_file(tensors, str(path / "router.safetensors"))
        meta = {
            "format": FORMAT, "policy": self.name, "feature_spec": self.spec.to_dict(), "models": self.models,
            "utility_refs": self.refs.to_dict(), "thresholds": self.thresholds,
            "scaler": {"kind": "standard", "tensors": ["scaler.mean", "scaler.std"]}, **self.meta,
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
            raise ValueError(f"{path}: checkpoint format {meta.get('format')!r}, expected {FORMAT!r}")
        spec = FeatureSpec.from_dict(meta["feature_spec"])
        if expected_spec is not None:
            expected_spec.require_same(spec, mine="gateway features", theirs=f"router checkpoint {path}")
        tensors = load_file(str(path / "router.safetensors"))
        hp = meta.get("hyperparameters", {})
        net = RouterNet(spec.dim, len(meta["models"]), tuple(hp.get("hidden", (256, 128))), hp.get("dropout", 0.1))
        net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
        extra = {k: v for k, v in meta.items() if k in ("hyperparameters", "dev_metrics", "training")}
        return cls(net, spec=spec, models=meta["models"], mean=tensors["scaler.mean"].numpy(),
                   std=tensors["scaler.std"].numpy(), refs=UtilityRefs(**meta["utility_refs"]),
                   thresholds=meta["thresholds"], meta=extra)
