"""Two hosts over network namespaces: an edge and a (40 ms away) cloud, each a real serve-model.

Runs where root and `ip netns` are available (as in CI), skipped otherwise with the reason. Nothing
happens at import: a module fixture creates namespaces `vlr-edge-<pid>` and `vlr-cloud-<pid>`,
joined to the test's namespace by veth pairs (`vlr-e0-<pid>`, `vlr-c0-<pid>`; at most 14 characters)
on two /30s of 10.203.0.0/16 that no other interface uses. Teardown removes them, the route and
the processes, also on failure. Leftovers of a killed run (its pid no longer alive), processes
included, are removed first.

The cloud link's 40 ms: `tc netem` on the host side of the cloud veth (one way, so the round trip
grows by 40 ms) where the kernel has the netem qdisc; otherwise `tests/deploy/delay_proxy.py`
inside the cloud namespace, in front of a serve-model bound to that namespace's loopback, delaying
each direction by 20 ms (the round trip again grows by 40 ms). The delay test prints which one ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT, ThreadServer
from tests.deploy import delay_proxy
from vlrouter.cli import wait_ready

DELAY_MS = 40  # added to the cloud link's round trip
TEST_RANGE = ipaddress.ip_network("10.203.0.0/16")  # an `unreachable` route keeps test traffic here if a link is down
PORT = 8001
STALE = re.compile(r"^vlr-(?:edge|cloud|e0|c0)-(\d+)$")


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def _why_no_netns() -> str | None:
    """A reason to skip, from checks that change nothing (the fixture tries the real thing)."""
    if os.geteuid() != 0:
        return f"needs root for ip netns (running as uid {os.geteuid()})"
    if not shutil.which("ip"):
        return "needs ip (iproute2) for ip netns"
    return None


NO_NETNS = _why_no_netns()
needs_netns = pytest.mark.skipif(NO_NETNS is not None, reason=NO_NETNS or "")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale() -> None:
    """Remove namespaces, links and routes of earlier runs whose process is gone (killed mid-run)."""
    names = [line.split()[0] for line in sh("ip", "netns", "list", check=False).stdout.splitlines() if line.strip()]
    names += [line.split(":")[1].strip().split("@")[0] for line in sh("ip", "-o", "link", "show", check=False)
              .stdout.splitlines()]
    for name in names:
        if (m := STALE.match(name)) and not _alive(int(m.group(1))):
            for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():  # its orphaned servers
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", name, check=False)
            sh("ip", "link", "del", name, check=False)
    for line in sh("ip", "route", "show", "type", "unreachable", str(TEST_RANGE), check=False).stdout.splitlines():
        if (m := re.search(r"\bmetric (\d+)", line)) and int(m.group(1)) > 1 and not _alive(int(m.group(1))):
            sh("ip", "route", "del", "unreachable", str(TEST_RANGE), "metric", m.group(1), check=False)


def _free_subnets(pid: int) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """Two /30s of TEST_RANGE (a /29 picked from the pid) that no interface of this namespace uses."""
    blocks = list(TEST_RANGE.subnets(new_prefix=29))[1:]  # skip 10.203.0.0/29
    for i in range(len(blocks)):
        block = blocks[(pid + i) % len(blocks)]
        if not sh("ip", "-4", "-o", "addr", "show", "to", str(block), check=False).stdout.strip():
            edge, cloud = block.subnets(new_prefix=30)
            return edge, cloud
    raise RuntimeError(f"no free /29 in {TEST_RANGE}")


def _stop(procs: list) -> None:
    for proc, log in procs:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def hosts(tiny_vlm, tmp_path_factory):
    pid = os.getpid()
    _remove_stale()
    tmp_path = tmp_path_factory.mktemp("netns")
    edge_net, cloud_net = _free_subnets(pid)
    hosts = {name: {"ns": f"vlr-{name}-{pid}", "host_if": f"vlr-{name[0]}0-{pid}", "peer_if": f"vlr-{name[0]}1-{pid}",
                    "host_ip": str(net[1]), "peer_ip": str(net[2]), "net": net}
             for name, net in (("edge", edge_net), ("cloud", cloud_net))}
    metric = str(pid)  # one unreachable route per run: concurrent runs do not collide on it
    procs: list = []
    try:
        probe = sh("ip", "netns", "add", hosts["edge"]["ns"], check=False)
        if probe.returncode:
            pytest.skip(f"ip netns add failed: {probe.stderr.strip()}")
        sh("ip", "netns", "add", hosts["cloud"]["ns"])
        # With a link down its /30 route disappears; this route then makes the kernel refuse the
        # addresses at once instead of sending them out of the default route.
        sh("ip", "route", "add", "unreachable", str(TEST_RANGE), "metric", metric)
        for h in hosts.values():
            sh("ip", "link", "add", h["host_if"], "type", "veth", "peer", "name", h["peer_if"])
            sh("ip", "link", "set", h["peer_if"], "netns", h["ns"])
            sh("ip", "addr", "add", f"{h['host_ip']}/30", "dev", h["host_if"])
            sh("ip", "link", "set", h["host_if"], "up")
            sh("ip", "netns", "exec", h["ns"], "ip", "addr", "add", f"{h['peer_ip']}/30", "dev", h["peer_if"])
            sh("ip", "netns", "exec", h["ns"], "ip", "link", "set", h["peer_if"], "up")
            sh("ip", "netns", "exec", h["ns"], "ip", "link", "set", "lo", "up")
        cloud = hosts["cloud"]
        netem = sh("tc", "qdisc", "add", "dev", cloud["host_if"], "root", "netem", "delay", f"{DELAY_MS}ms",
                   check=False) if shutil.which("tc") else None
        if netem is not None and netem.returncode == 0:
            delay = f"tc netem: +{DELAY_MS} ms on {cloud['host_if']} (host to cloud)"
            bind = {"edge": hosts["edge"]["peer_ip"], "cloud": cloud["peer_ip"]}
        else:
            why = netem.stderr.strip() if netem is not None else "tc not installed"
            delay = (f"delay proxy: +{DELAY_MS / 2:g} ms each way in {cloud['ns']} "
                     f"(tc netem unavailable: {why})")
            bind = {"edge": hosts["edge"]["peer_ip"], "cloud": "127.0.0.1"}  # the proxy takes peer_ip:PORT
            log = open(tmp_path / "delay_proxy.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append((subprocess.Popen(
                ["ip", "netns", "exec", cloud["ns"], sys.executable, "-m", "tests.deploy.delay_proxy",
                 "--listen", f"{cloud['peer_ip']}:{PORT}", "--to", f"127.0.0.1:{PORT}",
                 "--delay-ms", str(DELAY_MS / 2)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log))
        servers = {}
        for name, h in hosts.items():
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            servers[name] = subprocess.Popen(
                ["ip", "netns", "exec", h["ns"], sys.executable, "-m", "vlrouter", "serve-model", "--model",
                 str(tiny_vlm), "--name", name, "--host", bind[name], "--port", str(PORT), "--threads", "1",
                 "--log-level", "warning"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            procs.append((servers[name], log))
        for name, h in hosts.items():  # the cloud's readyz goes through the proxy when there is one
            wait_ready(f"http://{h['peer_ip']}:{PORT}/readyz", servers[name], timeout_s=120)
        if exited := [p.args for p, _ in procs if p.poll() is not None]:
            raise RuntimeError(f"exited early (logs in {tmp_path}): {exited}")
        yield {**{name: f"http://{h['peer_ip']}:{PORT}/v1" for name, h in hosts.items()},
               "hosts": hosts, "delay": delay}
    finally:
        _stop(procs)
        for h in hosts.values():
            sh("ip", "netns", "del", h["ns"], check=False)  # also destroys the veth pair
            sh("ip", "link", "del", h["host_if"], check=False)
        sh("ip", "route", "del", "unreachable", str(TEST_RANGE), "metric", metric, check=False)


def ttft(client: httpx.Client, model: str) -> float:
    body = {"model": model, "stream": True, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    started, first = time.perf_counter(), None
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        for line in resp.iter_lines():  # read to the end: a stream left early is accounted for later
            if first is None and line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                first = time.perf_counter() - started
    if first is None:
        raise AssertionError("no content in stream")
    return first


@pytest.fixture(scope="module")
def gateway_over_netns(hosts, tiny_vlm, tmp_path_factory):
    from tests.conftest import gateway_settings
    from vlrouter.api.app import build_app

    db = tmp_path_factory.mktemp("log") / "decisions.db"
    settings = gateway_settings(tiny_vlm, hosts["cloud"], log={"enabled": True, "path": str(db)})
    settings.backends["edge"] = type(settings.backends["cloud"])(
        kind="openai", tier="edge", base_url=hosts["edge"], model="edge", max_retries=0,
        timeouts={"connect_s": 1, "first_token_s": 10, "total_s": 30})
    settings.backends["cloud"].model = "cloud"
    settings.backends["cloud"].timeouts.first_token_s = 2
    with ThreadServer(build_app(settings)) as gw, httpx.Client(base_url=gw.url, timeout=30) as client:
        client.decision_db = db
        yield client


@pytest.mark.netns
@needs_netns
def test_cloud_ttft_exceeds_edge_by_the_injected_delay(hosts, gateway_over_netns, capsys):
    client = gateway_over_netns
    for model in ("edge", "cloud"):  # warm connections and models
        ttft(client, model)
    pairs = [(ttft(client, "edge"), ttft(client, "cloud")) for _ in range(7)]  # interleaved: load drifts hit both
    edge = statistics.median(e for e, _ in pairs)
    cloud = statistics.median(c for _, c in pairs)
    added_ms = statistics.median(c - e for e, c in pairs) * 1000
    with capsys.disabled():
        print(f"\n[netns] cloud link delay by {hosts['delay']}\n[netns] TTFT median edge {edge * 1000:.1f} ms, "
              f"cloud {cloud * 1000:.1f} ms; added by the link {added_ms:.1f} ms (median of 7 pairs, "
              f"expected ~{DELAY_MS})")
    # Generous: the edge and cloud servers share this machine's CPUs, so either TTFT jitters by ~10 ms.
    assert DELAY_MS * 0.6 <= added_ms <= DELAY_MS * 6, (pairs, hosts["delay"])


@pytest.mark.netns
@needs_netns
def test_fallback_to_edge_when_the_cloud_link_goes_down(hosts, gateway_over_netns, photo_data_url):
    client = gateway_over_netns
    before = _requests_total(client, settle_s=0.3)
    body = {"model": "vlrouter-auto", "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": photo_data_url}},
        {"type": "text", "text": "Explain step by step why"}]}]}
    assert client.post("/v1/chat/completions", json=body).headers["x-vlrouter-tier"] == "cloud"
    sh("ip", "link", "set", hosts["hosts"]["cloud"]["host_if"], "down")  # the cloud link goes down mid-run
    responses = [client.post("/v1/chat/completions", json=body) for _ in range(4)]
    assert [r.status_code for r in responses] == [200] * 4
    assert [r.headers["x-vlrouter-tier"] for r in responses] == ["edge"] * 4
    metrics = client.get("/metrics").text
    assert _requests_total(client) - before == 5  # every request accounted for exactly once
    assert 'vlrouter_fallbacks_total{from_backend="cloud",to_backend="edge"}' in metrics
    import sqlite3

    deadline = time.monotonic() + 5
    while True:  # rows are written by the log's thread; give it a moment
        logged = sqlite3.connect(client.decision_db).execute(
            "SELECT tier, fallback_from FROM decisions WHERE endpoint = 'chat'").fetchall()
        if len(logged) >= _requests_total(client) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(logged) == _requests_total(client)  # one log row per request
    assert logged[-4:] == [("edge", "cloud")] * 4


def _requests_total(client: httpx.Client, settle_s: float = 0.0) -> float:
    """The gateway's request count; with ``settle_s``, once it has not moved for that long (a stream
    is accounted for when the gateway closes it, just after the client has read its end)."""
    def read() -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in client.get("/metrics").text.splitlines()
                   if line.startswith("vlrouter_requests_total{"))

    value = read()
    while settle_s:
        time.sleep(settle_s)
        value, previous = read(), value
        if value == previous:
            break
    return value


def test_delay_proxy_delays_each_direction_in_order():
    """The proxy itself, on loopback (no root needed): bytes intact and in order, a half-close
    forwarded, and a round trip at least 2 x the one-way delay."""
    delay_ms = 30

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(4096):
            w.write(data)
            await w.drain()
        w.write(b"<eof>")  # answers the forwarded half-close, then closes
        await w.drain()
        w.close()

    async def scenario() -> tuple[float, bytes]:
        upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
        to = upstream.sockets[0].getsockname()[:2]
        proxy = await delay_proxy.start(("127.0.0.1", 0), to, delay_ms)
        r, w = await asyncio.open_connection(*proxy.sockets[0].getsockname()[:2])
        started = time.perf_counter()
        w.write(b"ping")
        await w.drain()
        assert await r.readexactly(4) == b"ping"
        rtt = time.perf_counter() - started
        sent = b"".join(b"%05d," % i for i in range(2000))
        for i in range(0, len(sent), 997):  # many small writes: order must survive
            w.write(sent[i:i + 997])
            await w.drain()
        w.write_eof()
        rest = await asyncio.wait_for(r.read(), timeout=10)
        assert rest == sent + b"<eof>"
        w.close()
        await w.wait_closed()
        for server in (proxy, upstream):
            server.close()
            await server.wait_closed()
        return rtt, rest

    rtt, _ = asyncio.run(scenario())
    assert 2 * delay_ms - 5 <= rtt * 1000 <= 2 * delay_ms + 1000, rtt
