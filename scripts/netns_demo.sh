#!/usr/bin/env bash
# Two-host demo over network namespaces (root only): an edge host and a cloud host 40 ms away,
# each running `vlrouter serve-model`, and a gateway in this namespace routing between them.
# The 40 ms: `tc netem` on the cloud link where the kernel has it, otherwise the TCP proxy
# tests/deploy/delay_proxy.py inside the cloud namespace (20 ms each way, in front of a serve-model
# on that namespace's loopback); either way the round trip to the cloud grows by 40 ms.
# Prints TTFT per tier, then takes the cloud link down and shows the fallback to the edge.
# Everything it creates (namespaces, veths, routes, processes) is removed on exit, even on error.
#
# Usage: sudo scripts/netns_demo.sh [MODEL_DIR]   (default: models/demo-vlm)
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/demo-vlm}
PY=.venv/bin/python
RANGE=10.203.0.0/16
[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)"; exit 1; }
[ -f "$MODEL/config.json" ] || { echo "no model at $MODEL: run scripts/serve or scripts/make_demo_models.py first"; exit 1; }

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for ns in vlr-edge vlr-cloud; do ip netns del "$ns" 2>/dev/null || true; done
  ip link del vlr-e0 2>/dev/null || true; ip link del vlr-c0 2>/dev/null || true
  ip route del unreachable "$RANGE" 2>/dev/null || true
  echo "cleaned up"
}
trap cleanup EXIT
cleanup >/dev/null

# keep test traffic on this machine even when a link is down
ip route add unreachable "$RANGE"
setup_host() {  # ns host_if peer_if host_ip peer_ip
  ip netns add "$1"
  ip link add "$2" type veth peer name "$3"
  ip link set "$3" netns "$1"
  ip addr add "$4/30" dev "$2"; ip link set "$2" up
  ip netns exec "$1" ip addr add "$5/30" dev "$3"
  ip netns exec "$1" ip link set "$3" up
  ip netns exec "$1" ip link set lo up
}
setup_host vlr-edge vlr-e0 vlr-e1 10.203.1.1 10.203.1.2
setup_host vlr-cloud vlr-c0 vlr-c1 10.203.2.1 10.203.2.2
CLOUD_BIND=10.203.2.2
if command -v tc >/dev/null && tc qdisc add dev vlr-c0 root netem delay 40ms 2>/dev/null; then
  echo "cloud link: +40 ms by tc netem (host to cloud)"
else
  # no netem qdisc: the cloud's serve-model listens on its loopback, behind a delaying proxy
  CLOUD_BIND=127.0.0.1
  ip netns exec vlr-cloud "$PY" -m tests.deploy.delay_proxy --listen 10.203.2.2:8001 --to 127.0.0.1:8001 \
    --delay-ms 20 &
  PIDS+=($!)
  echo "cloud link: +40 ms round trip by tests/deploy/delay_proxy.py, 20 ms each way (no tc netem in this kernel)"
fi

# one torch thread each (as in the test): the two "hosts" share this machine's cores, and their
# fight for them would blur the 40 ms
for host in edge:10.203.1.2:vlr-edge "cloud:$CLOUD_BIND:vlr-cloud"; do
  IFS=: read -r name ip ns <<<"$host"
  ip netns exec "$ns" "$PY" -m vlrouter serve-model --model "$MODEL" --name "$name" --host "$ip" --port 8001 \
    --threads 1 --log-level warning &
  PIDS+=($!)
done

cfg=$(mktemp --suffix .yaml)
cat >"$cfg" <<YAML
backends:
  edge: {kind: openai, tier: edge, base_url: "http://10.203.1.2:8001/v1", model: edge, max_retries: 0}
  cloud: {kind: openai, tier: cloud, base_url: "http://10.203.2.2:8001/v1", model: cloud, max_retries: 1,
          timeouts: {connect_s: 1, first_token_s: 5, total_s: 60}}
YAML
"$PY" -m vlrouter serve --config "$cfg" --port 8765 --log-level warning &
PIDS+=($!)
for _ in $(seq 1 180); do curl -sf localhost:8765/readyz >/dev/null && break; sleep 1; done
curl -sf localhost:8765/readyz >/dev/null || { echo "gateway not ready"; exit 1; }

"$PY" - <<'PYEOF'
import statistics, time, httpx
c = httpx.Client(base_url="http://127.0.0.1:8765", timeout=60)
def ttft(model):
    body = {"model": model, "stream": True, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}
    t = time.perf_counter()
    with c.stream("POST", "/v1/chat/completions", json=body) as r:
        for line in r.iter_lines():
            if '"content":"' in line and '"content":""' not in line:
                return (time.perf_counter() - t) * 1000
for m in ("edge", "cloud"):
    ttft(m)
pairs = [(ttft("edge"), ttft("cloud")) for _ in range(7)]  # interleaved, so load drifts hit both tiers
for i, m in enumerate(("edge", "cloud")):
    print(f"TTFT {m:5s}: median {statistics.median(p[i] for p in pairs):7.1f} ms over 7 requests")
print(f"cloud - edge: median {statistics.median(c - e for e, c in pairs):7.1f} ms over 7 pairs (the link adds ~40)")
PYEOF

echo "taking the cloud link down ..."
ip link set vlr-c0 down
"$PY" - <<'PYEOF'
import httpx
# a reasoning cue and a long prompt: the complexity rule sends it to the cloud under "quality"
text = "Explain step by step why the sky is blue. " + "Consider every detail carefully. " * 40
body = {"model": "vlrouter-auto", "max_tokens": 2, "scenario": "quality",
        "messages": [{"role": "user", "content": text}]}
for i in range(1, 4):
    r = httpx.post("http://127.0.0.1:8765/v1/chat/completions", json=body, timeout=60)
    print(f"request {i}: HTTP {r.status_code} answered by {r.headers.get('x-vlrouter-tier')}"
          f" (fallback from: {r.headers.get('x-vlrouter-fallback-from', '-')})")
PYEOF
curl -s localhost:8765/metrics | grep -E "^vlrouter_(requests|fallbacks)_total"
