#!/usr/bin/env bash
# make bench: added latency and throughput through mcpgate, against a direct
# connection and against nginx as a plain TLS reverse proxy, in one run, on
# the e2e rig (real eBPF redirect). Upstream is nginx serving a fixed JSON
# body, so the figures measure the proxies, not a slow fake API. Also: idle
# memory per connection, RSS before / at the peak of / after a burst of
# 3000 connections, and the masking throughput benchmark if present.
# Prints figures; asserts nothing.
set -u
. "$(cd "$(dirname "$0")/../e2e" && pwd)/lib/rig.sh"
DUR=${BENCH_SECONDS:-5}
# Run directly or through make bench: either way the load generator and the
# reference proxy get installed (a fresh machine has neither).
"$RIG_ROOT_DIR/scripts/install-deps.sh" bench || exit 1
for t in wrk nginx; do command -v $t >/dev/null || { echo "bench needs $t (scripts/install-deps.sh bench)"; exit 1; }; done
rig_init
rig_certs
rig_pod bench 1
rig_pod direct 0
# The unselected pod may reach the upstream and the nginx proxy directly.
nsenter --net="/run/netns/$(pod_var direct NETNS)" ip route add 10.96.0.0/16 via "$(pod_var direct NODEIP)"
nsenter --net="/run/netns/$(pod_var direct NETNS)" ip route add 10.200.0.0/30 via "$(pod_var direct NODEIP)"

BODY='{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}'
mkdir -p "$RIG_DIR/nginx"
# user root: the worker reads big.json in the run's private (0700) directory
cat >"$RIG_DIR/nginx/upstream.conf" <<CONF
user root; worker_processes 1; daemon off; pid $RIG_DIR/nginx/up.pid; error_log $RIG_DIR/nginx/up.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 10.96.0.1:443 ssl; ssl_certificate $RIG_DIR/certs/server.crt; ssl_certificate_key $RIG_DIR/certs/server.key;
    location / { default_type application/json; return 200 '$BODY'; }
    location = /api/v1/pods { default_type application/json; alias $RIG_DIR/nginx/big.json; } } }
CONF
# An 8 MB PodList: the answer the slow readers below never take.
$RIG_PY -c 'import json, sys
items = [{"metadata": {"name": "pod-%06d" % i, "namespace": "default", "annotations": {"a": "x" * 700}}}
         for i in range(10000)]
json.dump({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}, open(sys.argv[1], "w"))' \
	"$RIG_DIR/nginx/big.json"
cat >"$RIG_DIR/nginx/proxy.conf" <<CONF
worker_processes 1; daemon off; pid $RIG_DIR/nginx/px.pid; error_log $RIG_DIR/nginx/px.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream api { server 10.96.0.1:443; keepalive 64; }
  server { listen 10.200.0.1:8443 ssl; ssl_certificate $RIG_DIR/certs/server.crt; ssl_certificate_key $RIG_DIR/certs/server.key;
    location / { proxy_pass https://api; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_trusted_certificate $RIG_DIR/certs/ca.crt; proxy_ssl_verify on; proxy_ssl_name kubernetes.default.svc;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on; } } }
CONF
nsenter --net="/run/netns/$RIG_API" nginx -c "$RIG_DIR/nginx/upstream.conf" -e "$RIG_DIR/nginx/up.err" &
RIG_PIDS+=($!)
nsenter --net="/run/netns/$RIG_NODE" nginx -c "$RIG_DIR/nginx/proxy.conf" -e "$RIG_DIR/nginx/px.err" &
RIG_PIDS+=($!)
# The daemon's own API (pod watch, endpoints) is the fake, on the
# EndpointSlice address; the pods' traffic goes to nginx on the ClusterIP.
RIG_API_LISTENS="10.97.0.10:6443" rig_fakeapi
sleep 0.5
# Caps above the burst below: the bench measures memory, not refusals.
RIG_API_SERVER=https://10.97.0.10:6443 rig_daemon --max-connections 4096 --max-connections-per-pod 4096 \
	>/dev/null || { echo "mcpgated did not start"; exit 1; }

url=/api/v1/namespaces/default/pods
# A baseline that errors is not a baseline: any non-2xx answer or socket
# error in any setup ends the bench with a non-zero exit naming the setup.
# (nginx checks proxy_ssl_name as a host name, so it names a DNS SAN of the
# upstream's certificate: with the ClusterIP there every request was a 502.)
run_wrk() { # POD URL CONNS
	local out
	out=$(in_pod "$1" wrk -t1 -c"$3" -d"${DUR}s" --latency "$2$url" 2>&1)
	printf '%s\n' "$out"
	if grep -Eq 'Non-2xx or 3xx responses|Socket errors' <<<"$out" ||
		! grep -q 'Requests/sec' <<<"$out"; then
		echo "bench: INVALID run: $2 with $3 connections had errors:" >&2
		grep -E 'Non-2xx|Socket errors' <<<"$out" >&2
		return 1
	fi
}
summ() { # LABEL OUTPUT
	awk -v l="$1" '/Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 90%/ {p90=$2} / 99%/ {p99=$2}
		END {printf "  %-34s %10s req/s   p50 %-9s p90 %-9s p99 %s\n", l, rps, p50, p90, p99}' <<<"$2"
}
echo
echo "== HTTPS GET $url, keep-alive, ${DUR}s each (wrk), $(nproc) cores"
for c in 1 16; do
	d=$(run_wrk direct https://10.96.0.1 $c) || exit 1
	n=$(run_wrk direct https://10.200.0.1:8443 $c) || exit 1
	m=$(run_wrk bench https://10.96.0.1 $c) || exit 1
	summ "direct to the API, $c conn" "$d"
	summ "through nginx (TLS proxy), $c conn" "$n"
	summ "through mcpgate (eBPF+TLS), $c conn" "$m"
	if [ "$c" = 1 ]; then
		$RIG_PY - "$d" "$n" "$m" <<'PY'
import re, sys
def p50(s):
    m = re.search(r"50%\s+([\d.]+)(us|ms|s)", s)
    if not m: return None
    v, u = float(m.group(1)), m.group(2)
    return v * {"us": 1, "ms": 1000, "s": 1e6}[u]
d, n, m = (p50(x) for x in sys.argv[1:])
if None not in (d, n, m):
    print("  added p50 latency: mcpgate %+.0f us, nginx %+.0f us (vs direct)" % (m - d, n - d))
PY
	fi
done

echo
echo "== idle memory per client connection (TLS handshake done, no request)"
pid=$RIG_DAEMON_PID
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
before=$(rss)
N=${BENCH_CONNS:-500}
in_pod_bg bench /usr/bin/python3 - "$N" "$RIG_DIR/conns.ready" <<'PY' &
import socket, ssl, sys, time
n, ready = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
socks = []
for i in range(n):
    s = ctx.wrap_socket(socket.create_connection(("10.96.0.1", 443)), server_hostname="10.96.0.1")
    socks.append(s)
open(ready, "w").write("ok")
time.sleep(30)
PY
hold=$!; RIG_PIDS+=("$hold")
rig_wait_file "$RIG_DIR/conns.ready" 60
sleep 1
after=$(rss)
echo "  mcpgated RSS: ${before} KiB -> ${after} KiB with $N connections: $(( (after - before) * 1024 / N )) bytes per connection"
rig_kill_pid "$hold" # (in_pod_bg: $! is the client itself, so its connections close)
sleep 2

echo
STALL=${BENCH_STALLED:-50}
echo "== memory per connection at its worst: $STALL clients that stop reading an 8 MB list (buffers full)"
before=$(rss)
in_pod_bg bench /usr/bin/python3 - "$STALL" "$RIG_DIR/stalled" <<'PY' &
import socket, ssl, sys, time
n, ready = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
socks = []
for i in range(n):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("10.96.0.1", 443))
    s = ctx.wrap_socket(raw, server_hostname="10.96.0.1")
    s.sendall(b"GET /api/v1/pods HTTP/1.1\r\nHost: 10.96.0.1\r\n\r\n")
    socks.append(s)
time.sleep(3)
open(ready, "w").write("ok")
time.sleep(60)
PY
stalled=$!; RIG_PIDS+=("$stalled")
rig_wait_file "$RIG_DIR/stalled" 60
peak=$(rss)
echo "  mcpgated RSS: ${before} KiB -> ${peak} KiB with $STALL stalled: $(( (peak - before) / STALL )) KiB per connection" \
	"(the README's budget: 1024 KiB)"
rig_kill_pid "$stalled"
sleep 2

echo
BURST=${BENCH_BURST:-3000}
echo "== memory given back after a burst of $BURST connections (TLS + one GET each, all open at once, then all closed)"
before=$(rss)
in_pod_bg bench /usr/bin/python3 - "$BURST" "$RIG_DIR/burst" <<'PY' &
import resource, socket, ssl, sys, time
n, base = int(sys.argv[1]), sys.argv[2]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
ctx = ssl.create_default_context(cafile="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
req = b"GET /api/v1/namespaces/default/pods HTTP/1.1\r\nHost: 10.96.0.1\r\n\r\n"
socks, ok = [], 0
for i in range(n):
    s = ctx.wrap_socket(socket.create_connection(("10.96.0.1", 443)), server_hostname="10.96.0.1")
    s.sendall(req)
    if s.recv(65536).startswith(b"HTTP/1.1 200"):
        ok += 1
    socks.append(s)
open(base + ".open", "w").write(str(ok))
while True:
    try:
        open(base + ".close").close()
        break
    except OSError:
        time.sleep(0.1)
for s in socks:
    s.close()
open(base + ".closed", "w").write("ok")
PY
burst=$!; RIG_PIDS+=("$burst")
rig_wait_file "$RIG_DIR/burst.open" 300
peak=$(rss)
touch "$RIG_DIR/burst.close"
rig_wait_file "$RIG_DIR/burst.closed" 60
sleep 3 # the once-a-second sweep hands freed memory back
after=$(rss)
echo "  mcpgated RSS: before $((before / 1024)) MiB, with $BURST open $((peak / 1024)) MiB" \
	"($(cat "$RIG_DIR/burst.open") answered 200), 3 s after they closed $((after / 1024)) MiB"
wait "$burst" 2>/dev/null

if [ -x "$RIG_BUILD/bench_mask" ]; then
	echo
	echo "== masking throughput"
	"$RIG_BUILD/bench_mask"
fi
