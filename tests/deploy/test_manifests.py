"""Deployment files: docker-compose config (both profiles) and Kubernetes schema validation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def compose_dir(tmp_path) -> Path:
    """A copy of docker/ with .env made from .env.example (the real .env is git-ignored)."""
    target = tmp_path / "repo" / "docker"
    shutil.copytree(ROOT / "docker", target)
    shutil.copy(target / ".env.example", target / ".env")
    return target


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose not installed (scripts/test installs Debian's package when root)")
@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_compose_config(compose_dir, profile):
    result = subprocess.run(["docker-compose", "-f", "docker-compose.yml", "--profile", profile, "config"],
                            cwd=compose_dir, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    services = result.stdout.split("\nservices:\n", 1)[-1]
    assert f"gateway-{profile}:" in services and f"edge-{profile}:" in services
    assert "condition: service_healthy" in result.stdout
    if profile == "gpu":
        assert "capabilities:" in result.stdout and "nvidia" in result.stdout


def validate(*paths: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("kubernetes-validate")
    return subprocess.run([str(exe), "--strict", *map(str, paths)], capture_output=True, text=True, timeout=120)


def test_k8s_manifests_validate():
    manifests = sorted((ROOT / "docker" / "k8s").glob("*.yaml"))
    assert {p.name for p in manifests} >= {"gateway.yaml", "edge-vllm.yaml"}
    result = validate(*manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    text = result.stdout + result.stderr
    for kind in ("deployment/vlrouter-gateway", "service/vlrouter", "horizontalpodautoscaler/vlrouter-gateway",
                 "poddisruptionbudget/vlrouter-gateway", "deployment/vlrouter-edge"):
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
