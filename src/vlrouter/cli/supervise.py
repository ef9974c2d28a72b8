"""The gateway process and its children: logging set-up, local cloud stand-ins, signals and uvicorn.

A stand-in is ``vlrouter serve-model`` in a child process; on Linux the kernel SIGTERMs it when the
gateway dies (PR_SET_PDEATHSIG), and SIGTERM ends the gateway as ``SystemExit(0)`` so cleanup runs.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

from vlrouter.config import ConfigError, OpenAIBackendConfig, Settings

log = logging.getLogger("vlrouter")


def setup_logging(level: str) -> None:
    """Configure the root logger for a command at ``level`` (httpx kept at warnings)."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health probe is noise


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago (another process may take it before it is
    bound again: to hand a port to a child, pass it ``bound_socket()`` instead)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def bound_socket(host: str = "127.0.0.1") -> socket.socket:
    """A TCP socket bound to a port the kernel picked on ``host``, for a child to serve on (``--fd``)."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


def check_fd(fd: int | None) -> None:
    """``--fd N`` must be an open socket: said before anything is loaded."""
    if fd is None:
        return
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ConfigError(f"--fd {fd}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"--fd {fd} is not a socket")


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout_s: float = 180.0) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` exits, or after ``timeout_s``."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process serving {url} exited with code {proc.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s")


def start_standins(settings: Settings) -> tuple[list[subprocess.Popen], frozenset[str]]:
    """For each OpenAI backend without a base URL, serve its stand-in model on a loopback port."""
    procs, names = [], set()
    for name, b in settings.backends.items():
        if not isinstance(b, OpenAIBackendConfig) or b.base_url:
            continue
        sock = bound_socket()  # the child serves on this socket: no window in which the port can be taken
        port = sock.getsockname()[1]
        cmd = [sys.executable, "-m", "vlrouter", "serve-model", "--model", str(b.standin_model),
               "--name", b.model, "--fd", str(sock.fileno()), "--log-level", settings.server.log_level]
        log.warning("backend %s (tier %s): no base_url set (VLROUTER_CLOUD_BASE_URL); starting a LOCAL STAND-IN, "
                    "serve-model %s on 127.0.0.1:%d. Its answers do not come from a cloud model.",
                    name, b.tier, b.standin_model, port)
        with sock:
            proc = subprocess.Popen(cmd, preexec_fn=die_with_parent, pass_fds=(sock.fileno(),))
        procs.append(proc)
        try:
            wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        except (RuntimeError, TimeoutError):
            stop_processes(procs)
            raise
        b.base_url = f"http://127.0.0.1:{port}/v1"
        names.add(name)
    return procs, frozenset(names)


def stop_processes(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process still running, then wait up to 15 s each before SIGKILL."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL("libc.so.6", use_errno=True).prctl


_PRCTL = _prctl()  # bound at import: the child runs no import between fork and exec


def die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """A ``preexec_fn``: on Linux the kernel SIGTERMs the child when its parent dies, even by SIGKILL."""
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _exit_cleanly(signum, frame) -> None:
    raise SystemExit(0)


def run_uvicorn(app, settings: Settings, fd: int | None = None, **options) -> None:
    """Serve ``app`` with uvicorn on ``settings.server`` (or on the inherited, bound socket ``fd``);
    SIGTERM drains requests, then exits 0. ``options``: more ``uvicorn.Config`` arguments."""
    import uvicorn

    # uvicorn drains in-flight requests on SIGTERM, restores the previous handler and re-raises the
    # signal; with this handler that ends as SystemExit(0), so callers' `finally` blocks still run.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    server = settings.server
    options.update(log_level=server.log_level, access_log=server.access_log,  # uvloop + httptools when installed
                   timeout_graceful_shutdown=int(server.graceful_shutdown_s))
    if fd is None:
        uvicorn.run(app, host=server.host, port=server.port, **options)
        return
    # The socket object is built on the inherited descriptor itself: uvicorn's own ``fd=`` serves on a
    # duplicate and leaves the original open, so the port would go on accepting after shutdown began.
    sock = socket.socket(fileno=fd)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(app, host=host, port=port, **options)
    if config.workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()
        return
    one = uvicorn.Server(config)
    one.run(sockets=[sock])
    if not one.started:
        sys.exit(3)  # uvicorn's exit code for a failed start-up


WORKER_ENV = "_VLROUTER_WORKER"  # how `serve --workers N` hands its settings to each worker process


def run_workers(settings: Settings, config: Path | None, overrides: dict, standins: frozenset[str],
                fd: int | None = None) -> None:
    """Serve with ``server.workers`` uvicorn worker processes on one port.

    Each worker rebuilds the settings from the same file, environment and flags (so secrets never
    travel through a serialised copy) plus the stand-ins' loopback URLs, in ``api.app.worker_app``.
    Prometheus runs in multiprocess mode in a fresh directory, removed at exit.
    """
    import shutil
    import tempfile

    metrics_dir = tempfile.mkdtemp(prefix="vlrouter-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[WORKER_ENV] = json.dumps({
        "config": None if config is None else str(config), "overrides": overrides,
        "standins": {name: settings.backends[name].base_url for name in standins}})
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        run_uvicorn("vlrouter.api.app:worker_app", settings, fd, factory=True, workers=settings.server.workers)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
