"""Routing datasets: vlrouter's directory format, and an importer for Y/C matrix releases.

vlrouter format (a directory):

* ``models.json``: ``[{"name": ..., "tier": "edge" | "cloud"}, ...]`` (two or more models)
* ``queries.jsonl``: ``{"id", "text", "image": relative path or null, "split": "train" | "dev" | "test"}``;
  with no ``split`` a seeded 70/10/20 split is drawn; any other field is kept in ``extra``
* ``outcomes.jsonl``: one row per (query, model): ``{"id", "model", "quality": 0..1, "cost_usd",
  "latency_s", "energy_j"}``; cost, latency and energy may be missing

In memory every outcome column is a ``(queries, models)`` float matrix with NaN where unknown.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "dev", "test")
COLUMNS = {"quality": "quality", "cost": "cost_usd", "latency": "latency_s", "energy": "energy_j",
           "expected_quality": "p_correct"}  # p_correct: a simulator's true probability (synthetic data only)


class DatasetError(ValueError):
    pass


@dataclass
class ModelInfo:
    name: str
    tier: str


@dataclass
class Query:
    id: str
    text: str
    image: str | None
    split: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RoutingDataset:
    models: list[ModelInfo]
    queries: list[Query]
    quality: np.ndarray
    cost: np.ndarray
    latency: np.ndarray
    energy: np.ndarray
    root: Path | None = None
    # the true expected quality behind each 0/1 outcome, where a simulator knows it (synthetic bench)
    expected_quality: np.ndarray | None = None

    def __post_init__(self):
        if self.expected_quality is None:
            self.expected_quality = np.full(self.quality.shape, np.nan)

    @property
    def model_names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def model_dicts(self) -> list[dict[str, str]]:
        """The models as ``models.json`` and router checkpoints list them: [{"name", "tier"}, ...]."""
        return [{"name": m.name, "tier": m.tier} for m in self.models]

    @property
    def tiers(self) -> np.ndarray:
        return np.array([m.tier for m in self.models])

    def split(self, name: str) -> np.ndarray:
        return np.array([i for i, q in enumerate(self.queries) if q.split == name], dtype=int)

    def has(self, column: str) -> bool:
        return bool(np.isfinite(getattr(self, column)).any())

    def image_paths(self, query: Query) -> list[Path]:
        """All images of a query: ``extra["images"]`` (several, e.g. from the decision log) or ``image``."""
        names = query.extra.get("images") or ([query.image] if query.image else [])
        if names and self.root is None:
            raise DatasetError("dataset has no root directory to resolve image paths against")
        return [self.root / name for name in names]

    @property
    def propensity(self) -> np.ndarray | None:
        """Per-query probability that the logged model was the one served (decision-log datasets), else None."""
        values = [q.extra.get("propensity") for q in self.queries]
        if all(v is None for v in values):
            return None
        return np.array([1.0 if v is None else float(v) for v in values])

    def select_models(self, names: list[str]) -> RoutingDataset:
        """The same queries with only the named models (in that order), e.g. a two-tier pair out of N."""
        unknown = [n for n in names if n not in self.model_names]
        if unknown:
            raise DatasetError(f"unknown models {unknown}; the dataset has {self.model_names}")
        cols = [self.model_names.index(n) for n in names]
        return RoutingDataset([self.models[j] for j in cols], self.queries, self.quality[:, cols], self.cost[:, cols],
                              self.latency[:, cols], self.energy[:, cols], self.root, self.expected_quality[:, cols])

    def subset(self, idx: np.ndarray) -> RoutingDataset:
        return RoutingDataset(self.models, [self.queries[i] for i in idx], self.quality[idx], self.cost[idx],
                              self.latency[idx], self.energy[idx], self.root, self.expected_quality[idx])


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{n}: invalid JSON: {exc.msg}") from exc
    return rows


def _assign_splits(queries: list[Query], seed: int) -> None:
    missing = [q for q in queries if not q.split]
    if not missing:
        return
    order = np.random.default_rng(seed).permutation(len(missing))
    n_train, n_dev = int(0.7 * len(missing)), int(0.1 * len(missing))
    for rank, i in enumerate(order):
        missing[i].split = "train" if rank < n_train else "dev" if rank < n_train + n_dev else "test"


def load_dataset(root: str | Path, *, seed: int = 0) -> RoutingDataset:
    root = Path(root)
    for name in ("models.json", "queries.jsonl", "outcomes.jsonl"):
        if not (root / name).is_file():
            raise DatasetError(f"{root}: missing {name} (see README: routing dataset format)")
    models = [ModelInfo(m["name"], m["tier"]) for m in json.loads((root / "models.json").read_text())]
    if len(models) < 2:
        raise DatasetError(f"{root}/models.json: need two or more models")
    for m in models:
        if m.tier not in ("edge", "cloud"):
            raise DatasetError(f"{root}/models.json: model {m.name!r} has tier {m.tier!r}; use edge or cloud")
    queries = []
    for row in _read_jsonl(root / "queries.jsonl"):
        split = row.get("split") or ""
        if split and split not in SPLITS:
            raise DatasetError(f"query {row.get('id')!r}: split {split!r} is not one of {SPLITS}")
        extra = {k: v for k, v in row.items() if k not in ("id", "text", "image", "split")}
        queries.append(Query(str(row["id"]), row.get("text") or "", row.get("image"), split, extra))
    _assign_splits(queries, seed)
    q_index = {q.id: i for i, q in enumerate(queries)}
    m_index = {m.name: j for j, m in enumerate(models)}
    mats = {k: np.full((len(queries), len(models)), np.nan) for k in COLUMNS}
    for row in _read_jsonl(root / "outcomes.jsonl"):
        i, j = q_index.get(str(row["id"])), m_index.get(row["model"])
        if i is None or j is None:
            continue  # outcomes for queries or models not listed are ignored
        for key, col in COLUMNS.items():
            value = row.get(col)
            if value is not None:
                mats[key][i, j] = float(value)
    if np.isnan(mats["quality"]).all():
        raise DatasetError(f"{root}/outcomes.jsonl: no quality values for the listed queries and models")
    return RoutingDataset(models, queries, mats["quality"], mats["cost"], mats["latency"], mats["energy"], root,
                          mats["expected_quality"])


def save_dataset(ds: RoutingDataset, root: str | Path) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.json").write_text(json.dumps(ds.model_dicts, indent=1))
    with open(root / "queries.jsonl", "w", encoding="utf-8") as f:
        for q in ds.queries:
            f.write(json.dumps({"id": q.id, "text": q.text, "image": q.image, "split": q.split, **q.extra}) + "\n")
    with open(root / "outcomes.jsonl", "w", encoding="utf-8") as f:
        for i, q in enumerate(ds.queries):
            for j, m in enumerate(ds.models):
                if np.isnan(ds.quality[i, j]):
                    continue
                row: dict[str, Any] = {"id": q.id, "model": m.name}
                for key, col in COLUMNS.items():
                    value = getattr(ds, key)[i, j]
                    if np.isfinite(value):
                        row[col] = float(value)
                f.write(json.dumps(row) + "\n")
    return root


def import_decision_log(path: str | Path, *, seed: int = 0, min_rows: int = 1) -> RoutingDataset:
    """The gateway's decision log as a routing dataset (partial labels: one model per query).

    A row becomes a query when it was answered (status 200, no error), its content was logged
    (``log.log_content: true``) and it got feedback (``POST /v1/feedback``): quality is the latest
    feedback score of the backend that answered, latency its end-to-end time, energy its joules.
    The other models' outcomes for that query are unknown (NaN). ``extra`` keeps the serving
    ``propensity`` (below 1 only under ``routing.explore``) for importance weighting, the scenario and
    all image files (stored beside the log). Models are the gateway's backends, named as in its config.
    """
    from vlrouter.telemetry.decision_log import images_dir, read_rows

    rows = [r for r in read_rows(path) if r["status"] == 200 and not r["error_code"] and r["tier"]
            and r["content"] and r["feedback_score"] is not None]
    if len(rows) < min_rows:
        raise DatasetError(f"{path}: {len(rows)} usable rows (answered, content logged with log.log_content: true, "
                           f"and scored with POST /v1/feedback); need at least {min_rows}")
    backends: dict[str, str] = {}
    for r in rows:
        backends.setdefault(r["backend"], r["tier"])
    models = [ModelInfo(name, tier) for name, tier in sorted(backends.items(), key=lambda kv: (kv[1], kv[0]))]
    col = {m.name: j for j, m in enumerate(models)}
    queries = []
    mats = {k: np.full((len(rows), len(models)), np.nan) for k in COLUMNS}
    for i, r in enumerate(rows):
        messages = r["content"]["messages"]
        text = "\n".join(m["text"] for m in messages if m["text"])
        images = [name for m in messages for name in m.get("images", [])]
        extra = {"images": images, "propensity": r["propensity"] if r["propensity"] is not None else 1.0,
                 "explore": bool(r["explore"]), "scenario": [r["w_speed"], r["w_quality"], r["w_energy"]],
                 "ts": r["ts"]}
        queries.append(Query(r["request_id"], text, images[0] if images else None, "", extra))
        j = col[r["backend"]]
        mats["quality"][i, j] = float(r["feedback_score"])
        if r["e2e_ms"] is not None:
            mats["latency"][i, j] = r["e2e_ms"] / 1000.0
        if r["energy_j"] is not None:
            mats["energy"][i, j] = float(r["energy_j"])
    _assign_splits(queries, seed)
    return RoutingDataset(models, queries, mats["quality"], mats["cost"], mats["latency"], mats["energy"],
                          images_dir(path))


def _read_matrix(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    ids = [r[0] for r in body]
    values = np.array([[float(v) if v not in ("", "nan", "NaN") else np.nan for v in r[1:]] for r in body])
    return header[1:], ids, values


def import_matrix_release(root: str | Path, *, tiers: dict[str, str] | None = None, seed: int = 0) -> RoutingDataset:
    """Import a VL-RouterBench-style release: quality matrix Y, cost matrix C and sample metadata.

    Expected files (CSV, first column the sample id, one column per model):
    ``Y.csv`` (quality 0..1), ``C.csv`` (cost in USD, optional) and ``samples.jsonl``
    (``{"id", "text"/"question", "image", "split"}``, optional). Model tiers come from ``tiers``,
    or ``models.json`` beside the matrices; models not named there count as cloud.
    """
    root = Path(root)
    if not (root / "Y.csv").is_file():
        raise DatasetError(f"{root}: missing Y.csv (quality matrix)")
    names, ids, quality = _read_matrix(root / "Y.csv")
    cost = np.full_like(quality, np.nan)
    if (root / "C.csv").is_file():
        c_names, c_ids, c_values = _read_matrix(root / "C.csv")
        if c_names != names or c_ids != ids:
            raise DatasetError(f"{root}: C.csv rows/columns do not match Y.csv")
        cost = c_values
    if tiers is None and (root / "models.json").is_file():
        tiers = {m["name"]: m["tier"] for m in json.loads((root / "models.json").read_text())}
    tiers = tiers or {}
    meta = {str(r["id"]): r for r in _read_jsonl(root / "samples.jsonl")} if (root / "samples.jsonl").is_file() else {}
    queries = []
    for sid in ids:
        row = meta.get(sid, {})
        extra = {k: v for k, v in row.items() if k not in ("id", "text", "question", "image", "split")}
        queries.append(Query(sid, row.get("text") or row.get("question") or "", row.get("image"),
                             row.get("split") or "", extra))
    _assign_splits(queries, seed)
    models = [ModelInfo(n, tiers.get(n, "cloud")) for n in names]
    nan = np.full_like(quality, np.nan)
    return RoutingDataset(models, queries, quality, cost, nan.copy(), nan.copy(), root)
