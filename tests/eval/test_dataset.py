from __future__ import annotations

import json

import numpy as np
import pytest

from vlrouter.eval.dataset import DatasetError, import_matrix_release, load_dataset, save_dataset


def write_small(root, splits=True):
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.json").write_text(json.dumps([{"name": "e", "tier": "edge"}, {"name": "c", "tier": "cloud"}]))
    with open(root / "queries.jsonl", "w") as f:
        for i in range(20):
            row = {"id": f"q{i}", "text": f"question {i}", "image": None, "caption": f"cap {i}"}
            if splits:
                row["split"] = "train" if i < 14 else "dev" if i < 16 else "test"
            f.write(json.dumps(row) + "\n")
    with open(root / "outcomes.jsonl", "w") as f:
        for i in range(20):
            f.write(json.dumps({"id": f"q{i}", "model": "e", "quality": i % 2, "cost_usd": 0.001}) + "\n")
            cloud = {"id": f"q{i}", "model": "c", "quality": 1.0, "cost_usd": 0.01, "latency_s": 1.5, "p_correct": 0.9}
            f.write(json.dumps(cloud) + "\n")
    return root


def test_round_trip(tmp_path):
    ds = load_dataset(write_small(tmp_path / "a"))
    assert ds.model_names == ["e", "c"] and list(ds.tiers) == ["edge", "cloud"]
    assert ds.queries[0].extra == {"caption": "cap 0"}
    assert np.isnan(ds.latency[0, 0]) and ds.latency[0, 1] == 1.5 and not ds.has("energy")
    assert ds.expected_quality[0, 1] == 0.9 and np.isnan(ds.expected_quality[0, 0])  # a simulator's P(correct)
    again = load_dataset(save_dataset(ds, tmp_path / "b"))
    for column in ("quality", "cost", "latency", "energy", "expected_quality"):
        np.testing.assert_array_equal(getattr(ds, column), getattr(again, column))
    assert [q.split for q in again.queries] == [q.split for q in ds.queries]
    assert again.queries[3].extra == ds.queries[3].extra


def test_seeded_split_when_absent(tmp_path):
    ds = load_dataset(write_small(tmp_path / "a", splits=False), seed=3)
    assert (len(ds.split("train")), len(ds.split("dev")), len(ds.split("test"))) == (14, 2, 4)
    same = load_dataset(tmp_path / "a", seed=3)
    assert [q.split for q in same.queries] == [q.split for q in ds.queries]


def test_matrix_release_import(tmp_path):
    root = tmp_path / "rb"
    root.mkdir()
    (root / "Y.csv").write_text("id,small,gpt\ns1,1,1\ns2,0,1\ns3,0,\n")
    (root / "C.csv").write_text("id,small,gpt\ns1,0.0001,0.01\ns2,0.0001,0.02\ns3,0.0001,\n")
    (root / "samples.jsonl").write_text('{"id": "s1", "question": "q1?", "split": "train"}\n')
    (root / "models.json").write_text(json.dumps([{"name": "small", "tier": "edge"}]))
    ds = import_matrix_release(root)
    assert ds.model_names == ["small", "gpt"] and list(ds.tiers) == ["edge", "cloud"]
    assert ds.queries[0].text == "q1?" and ds.queries[0].split == "train"
    assert np.isnan(ds.quality[2, 1]) and ds.cost[1, 1] == 0.02
    back = load_dataset(save_dataset(ds, tmp_path / "out"))
    np.testing.assert_array_equal(back.quality, ds.quality)


def test_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"missing models\.json"):
        load_dataset(tmp_path)
    root = write_small(tmp_path / "bad")
    (root / "models.json").write_text(json.dumps([{"name": "e", "tier": "moon"}, {"name": "c", "tier": "cloud"}]))
    with pytest.raises(DatasetError, match="tier"):
        load_dataset(root)
