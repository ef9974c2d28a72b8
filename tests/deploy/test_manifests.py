"""Deployment files: docker-compose config (both profiles) and Kubernetes schema validation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def compose_dir(tmp_path) -> Path:
    """A copy of docker/ as a fresh clone has it: no .env (it is git-ignored)."""
    target = tmp_path / "repo" / "docker"
    shutil.copytree(ROOT / "docker", target, ignore=shutil.ignore_patterns(".env"))
    return target


def compose_config(compose_dir: Path, profile: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLROUTER_", "POSTGRES_", "EDGE_MODEL"))}
    result = subprocess.run(["docker-compose", "-f", "docker-compose.yml", "--profile", profile, "config"],
                            cwd=compose_dir, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert "is not set" not in result.stderr, result.stderr  # every variable has a default
    config = yaml.safe_load(result.stdout)
    return {name: svc for name, svc in config["services"].items() if profile in svc.get("profiles", [profile])}


needs_compose = pytest.mark.skipif(shutil.which("docker-compose") is None, reason=(
    "docker-compose not installed (scripts/test installs Debian's package when root)"))


@needs_compose
@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_compose_starts_without_an_env_file(compose_dir, profile):
    assert not (compose_dir / ".env").exists()
    services = compose_config(compose_dir, profile)
    assert set(services) == {f"gateway-{profile}", f"balancer-{profile}", f"edge-{profile}", "postgres",
                             "cloud-standin"}
    gateway = services[f"gateway-{profile}"]
    env = gateway["environment"]
    assert env["VLROUTER_CLOUD_BASE_URL"] == "http://cloud-standin:8002/v1"  # the stand-in without a cloud key
    assert env["VLROUTER_LOG__URL"].startswith("postgresql://") and env["VLROUTER_LOG__URL"].endswith(
        "@postgres:5432/vlrouter")
    assert gateway["deploy"]["replicas"] == 2 and "ports" not in gateway  # replicas behind the balancer
    assert gateway["networks"]["default"]["aliases"] == ["gateway"]
    assert {d: c["condition"] for d, c in gateway["depends_on"].items()} == {
        f"edge-{profile}": "service_healthy", "cloud-standin": "service_healthy", "postgres": "service_healthy"}
    balancer = services[f"balancer-{profile}"]
    assert str(balancer["ports"][0]["published"]) == "8000" and balancer["ports"][0]["target"] == 8000
    assert "server gateway:8000" in (compose_dir / "nginx.conf").read_text()
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    edge = services[f"edge-{profile}"]
    if profile == "gpu":
        assert edge["image"].startswith("vllm/") and edge["deploy"]["resources"]["reservations"]["devices"][0][
            "capabilities"] == ["gpu"]


@needs_compose
def test_compose_env_file_sets_a_real_cloud(compose_dir):
    (compose_dir / ".env").write_text((compose_dir / ".env.example").read_text()
                                      + "VLROUTER_CLOUD_BASE_URL=https://api.example.com/v1\nPOSTGRES_PASSWORD=s3cret\n")
    env = compose_config(compose_dir, "cpu")["gateway-cpu"]["environment"]
    assert env["VLROUTER_CLOUD_BASE_URL"] == "https://api.example.com/v1"
    assert env["VLROUTER_LOG__URL"] == "postgresql://vlrouter:s3cret@postgres:5432/vlrouter"


def validate(*paths: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("kubernetes-validate")
    return subprocess.run([str(exe), "--strict", *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_k8s_manifests_validate():
    manifests = sorted((ROOT / "docker" / "k8s").glob("*.yaml"))
    assert {p.name for p in manifests} >= {"gateway.yaml", "edge-vllm.yaml"}
    result = validate(*manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout + result.stderr
    gateway = next(d for d in yaml.safe_load_all((ROOT / "docker/k8s/gateway.yaml").read_text())
                   if d["kind"] == "Deployment")
    assert gateway["spec"]["replicas"] >= 2
    (env,) = [e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]
              if e["name"] == "VLROUTER_LOG__URL"]
    assert env["valueFrom"]["secretKeyRef"] == {"name": "vlrouter-log", "key": "url"}
    for kind in ("secret/vlrouter-log", "deployment/vlrouter-gateway", "service/vlrouter",
                 "horizontalpodautoscaler/vlrouter-gateway", "poddisruptionbudget/vlrouter-gateway",
                 "deployment/vlrouter-edge"):
        assert kind in text


def test_validator_rejects_a_broken_manifest(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "docker/k8s/gateway.yaml").read_text().replace("containerPort: 8000",
                                                                          "containerPort: eight-thousand"))
    assert validate(bad).returncode != 0


def test_docker_config_loads():
    from vlrouter.config import load_settings

    settings = load_settings(ROOT / "configs/docker.yaml")
    assert settings.server.host == "0.0.0.0" and settings.backends["edge"].kind == "openai"
