"""Two hosts over network namespaces: an edge and a (40 ms away) cloud, each a real serve-model.

Runs where root, `ip netns` and `tc` are available (as in CI), skipped otherwise. The namespaces
`vlr-edge` and `vlr-cloud` are joined to the test's namespace by veth pairs with addresses the test
assigns (10.203.1.0/30 and 10.203.2.0/30, only ever on these veths) and are always removed.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time

import httpx
import pytest

from tests.conftest import ROOT, ThreadServer
from vlrouter.cli import wait_ready

DELAY_MS = 40
TEST_RANGE = "10.203.0.0/16"  # an `unreachable` route keeps test traffic on this machine if a link goes down
HOSTS = {"edge": ("vlr-edge", "vlr-e0", "vlr-e1", "10.203.1.1", "10.203.1.2"),
         "cloud": ("vlr-cloud", "vlr-c0", "vlr-c1", "10.203.2.1", "10.203.2.2")}


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def netns_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        return False
    probe = sh("ip", "netns", "add", "vlr-probe", check=False)
    sh("ip", "netns", "del", "vlr-probe", check=False)
    return probe.returncode == 0


pytestmark = [pytest.mark.netns,
              pytest.mark.skipif(not netns_available(), reason="needs root, ip netns and tc")]


def teardown_hosts() -> None:
    for ns, host_if, *_ in HOSTS.values():
        sh("ip", "netns", "del", ns, check=False)  # also destroys the veth pair
        sh("ip", "link", "del", host_if, check=False)
    sh("ip", "route", "del", "unreachable", TEST_RANGE, check=False)


@pytest.fixture(scope="module")
def hosts(tiny_vlm, tmp_path_factory):
    teardown_hosts()  # leftovers of an interrupted run
    tmp_path = tmp_path_factory.mktemp("netns")
    procs = []
    try:
        # With a link down its /30 route disappears; this route then makes the kernel refuse the
        # addresses at once instead of sending them out of the default route.
        sh("ip", "route", "add", "unreachable", TEST_RANGE)
        for ns, host_if, peer_if, host_ip, peer_ip in HOSTS.values():
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if)
            sh("ip", "link", "set", peer_if, "netns", ns)
            sh("ip", "addr", "add", f"{host_ip}/30", "dev", host_if)
            sh("ip", "link", "set", host_if, "up")
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{peer_ip}/30", "dev", peer_if)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", peer_if, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        netem = sh("tc", "qdisc", "add", "dev", HOSTS["cloud"][1], "root", "netem", "delay", f"{DELAY_MS}ms",
                   check=False)
        for name, (ns, _, _, _, peer_ip) in HOSTS.items():
            log = open(tmp_path / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
            procs.append((subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, "-m", "vlrouter", "serve-model", "--model", str(tiny_vlm),
                 "--name", name, "--host", peer_ip, "--port", "8001", "--threads", "1", "--log-level", "warning"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log))
        for (proc, _), (_, _, _, _, peer_ip) in zip(procs, HOSTS.values(), strict=True):
            wait_ready(f"http://{peer_ip}:8001/readyz", proc, timeout_s=120)
        urls = {name: f"http://{h[4]}:8001/v1" for name, h in HOSTS.items()}
        yield {**urls, "netem": netem.returncode == 0, "netem_error": netem.stderr.strip()}
    finally:
        for proc, log in procs:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        teardown_hosts()


def ttft(client: httpx.Client, model: str) -> float:
    body = {"model": model, "stream": True, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    started = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        for line in resp.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                return time.perf_counter() - started
    raise AssertionError("no content in stream")


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


def test_cloud_ttft_exceeds_edge_by_the_injected_delay(hosts, gateway_over_netns):
    if not hosts["netem"]:
        pytest.skip(f"tc netem is not available in this kernel ({hosts['netem_error']})")
    client = gateway_over_netns
    for model in ("edge", "cloud"):  # warm connections and models
        ttft(client, model)
    edge = statistics.median(ttft(client, "edge") for _ in range(5))
    cloud = statistics.median(ttft(client, "cloud") for _ in range(5))
    assert DELAY_MS * 0.75 <= (cloud - edge) * 1000 <= DELAY_MS * 6, (edge, cloud)


def test_fallback_to_edge_when_the_cloud_link_goes_down(gateway_over_netns, photo_data_url):
    client = gateway_over_netns
    before = _requests_total(client)
    body = {"model": "vlrouter-auto", "max_tokens": 2, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": photo_data_url}},
        {"type": "text", "text": "Explain step by step why"}]}]}
    assert client.post("/v1/chat/completions", json=body).headers["x-vlrouter-tier"] == "cloud"
    sh("ip", "link", "set", HOSTS["cloud"][1], "down")  # the cloud link goes down mid-run
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


def _requests_total(client: httpx.Client) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in client.get("/metrics").text.splitlines()
               if line.startswith("vlrouter_requests_total{"))
