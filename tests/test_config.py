"""Settings: YAML, env overrides, cloud shortcuts, and start-up errors that name the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vlrouter.config import ConfigError, LocalBackendConfig, OpenAIBackendConfig, load_settings

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_default_config_loads():
    settings = load_settings(ROOT / "configs/default.yaml")
    assert isinstance(settings.backends["edge"], LocalBackendConfig)
    assert isinstance(settings.backends["cloud"], OpenAIBackendConfig)
    assert settings.routing.default_scenario == "quality"


def test_env_overrides_yaml(monkeypatch):
    monkeypatch.setenv("VLROUTER_SERVER__PORT", "9123")
    monkeypatch.setenv("VLROUTER_CLOUD_BASE_URL", "https://cloud.example/v1")
    monkeypatch.setenv("VLROUTER_CLOUD_MODEL", "big-vlm")
    monkeypatch.setenv("VLROUTER_BACKENDS__EDGE__MODEL_PATH", "models/other")
    settings = load_settings(ROOT / "configs/default.yaml")
    assert settings.server.port == 9123
    assert settings.backends["cloud"].base_url == "https://cloud.example/v1"
    assert settings.backends["cloud"].model == "big-vlm"
    assert settings.backends["edge"].model_path == Path("models/other")
    assert settings.backends["edge"].tier == "edge"  # the rest of the YAML entry is kept


def test_explicit_overrides_win(monkeypatch):
    monkeypatch.setenv("VLROUTER_SERVER__PORT", "9123")
    assert load_settings(ROOT / "configs/default.yaml", server={"port": 7000}).server.port == 7000


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("server: {port: 70000}", "server.port"),
        ("backends: {edge: {kind: local, tier: edge}}", "backends.edge.model_path"),
        ("backends: {edge: {kind: local, tier: moon, model_path: x}}", "backends.edge.tier"),
        ("backends: {c: {kind: openai, tier: cloud, model: m}}", "backends.c.base_url"),
        ("backends: {e: {kind: local, tier: edge, model_path: x}}\nrouting: {colour: blue}", "routing.colour"),
        ("backends: {e: {kind: local, tier: edge, model_path: x}}\ngeneration: {default_max_tokens: 0}",
         "generation.default_max_tokens"),
        ("backends: {}", "backends"),
    ],
)
def test_invalid_config_names_the_field(tmp_path, yaml_text, field):
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, yaml_text))
    assert field in str(info.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError):
        load_settings(write(tmp_path, "server: [unclosed"))


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vlrouter", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_serve_exits_2_with_field_name_on_bad_config(tmp_path):
    result = run_cli("serve", "--config", str(write(tmp_path, "server: {port: -1}")))
    assert result.returncode == 2
    assert "server.port" in result.stderr


def test_serve_exits_2_when_model_folder_is_missing(tmp_path):
    cfg = write(tmp_path, f"backends: {{edge: {{kind: local, tier: edge, model_path: {tmp_path}/none}}}}")
    result = run_cli("serve", "--config", str(cfg))
    assert result.returncode == 2
    assert "backends.edge.model_path" in result.stderr and "no model at" in result.stderr


def test_serve_exits_2_when_fd_is_not_a_socket(tmp_path):
    for command in (["serve"], ["serve-model", "--model", str(tmp_path)]):
        result = run_cli(*command, "--fd", "987")  # nothing open under that number
        assert result.returncode == 2 and "vlrouter: --fd 987: Bad file descriptor" in result.stderr, result.stderr
    result = subprocess.run([sys.executable, "-m", "vlrouter", "serve", "--fd", "0"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120, cwd=ROOT)  # open, but /dev/null
    assert result.returncode == 2 and "--fd 0 is not a socket" in result.stderr


def test_help_explains_commands():
    result = run_cli("--help")
    assert result.returncode == 0 and "serve-model" in result.stdout
    assert "VLROUTER_" in run_cli("serve", "--help").stdout
