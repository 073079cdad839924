#!/usr/bin/env bash
# make bench: added latency and throughput through mcpgate, against a direct
# connection and against nginx as a plain TLS reverse proxy, in one run, on
# the e2e rig (real eBPF redirect). Upstream is nginx serving a fixed JSON
# body, so the figures measure the proxies, not a slow fake API. Also: idle
# memory per connection, and the masking throughput benchmark if present.
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
cat >"$RIG_DIR/nginx/upstream.conf" <<CONF
worker_processes 1; daemon off; pid $RIG_DIR/nginx/up.pid; error_log $RIG_DIR/nginx/up.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 10.96.0.1:443 ssl; ssl_certificate $RIG_DIR/certs/server.crt; ssl_certificate_key $RIG_DIR/certs/server.key;
    location / { default_type application/json; return 200 '$BODY'; } } }
CONF
cat >"$RIG_DIR/nginx/proxy.conf" <<CONF
worker_processes 1; daemon off; pid $RIG_DIR/nginx/px.pid; error_log $RIG_DIR/nginx/px.err warn;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream api { server 10.96.0.1:443; keepalive 64; }
  server { listen 10.200.0.1:8443 ssl; ssl_certificate $RIG_DIR/certs/server.crt; ssl_certificate_key $RIG_DIR/certs/server.key;
    location / { proxy_pass https://api; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_ssl_trusted_certificate $RIG_DIR/certs/ca.crt; proxy_ssl_verify on; proxy_ssl_name 10.96.0.1;
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
RIG_API_SERVER=https://10.97.0.10:6443 rig_daemon >/dev/null || { echo "mcpgated did not start"; exit 1; }

url=/api/v1/namespaces/default/pods
run_wrk() { # POD URL CONNS
	in_pod "$1" wrk -t1 -c"$3" -d"${DUR}s" --latency "$2$url" 2>&1
}
summ() { # LABEL OUTPUT
	awk -v l="$1" '/Requests\/sec/ {rps=$2} / 50%/ {p50=$2} / 90%/ {p90=$2} / 99%/ {p99=$2}
		END {printf "  %-34s %10s req/s   p50 %-9s p90 %-9s p99 %s\n", l, rps, p50, p90, p99}' <<<"$2"
}
echo
echo "== HTTPS GET $url, keep-alive, ${DUR}s each (wrk), $(nproc) cores"
for c in 1 16; do
	d=$(run_wrk direct https://10.96.0.1 $c)
	n=$(run_wrk direct https://10.200.0.1:8443 $c)
	m=$(run_wrk bench https://10.96.0.1 $c)
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
in_pod bench /usr/bin/python3 - "$N" "$RIG_DIR/conns.ready" <<'PY' &
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
rig_kill_pid "$hold"

if [ -x "$RIG_BUILD/bench_mask" ]; then
	echo
	echo "== masking throughput"
	"$RIG_BUILD/bench_mask"
fi
