#!/usr/bin/env bash
# make demo: a whole mcpgate node on this machine, no cluster needed.
# A fake API server, mcpgated with its eBPF programs attached, and a demo
# pod (network namespace + cgroup + service-account mount) running an
# unmodified kubectl; then what mcpgate saw. Without a terminal it runs the
# scenario and exits 0; with one it keeps running until Ctrl-C. Either way
# everything it made is removed.
set -u
. "$(dirname "$0")/lib/rig.sh"
if [ "$(id -u)" != 0 ]; then
	echo "make demo needs root (eBPF, network namespaces, cgroups): run it with sudo" >&2
	exit 1
fi
rig_init
rig_certs
b64() { printf '%s' "$1" | base64 -w0; }
bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
step() { echo; bold "\$ $*"; }

rig_pod demo-agent 1 burstable default mcp-agent
cat >"$RIG_DIR/extra-state.json" <<JSON
{"pods": [{"metadata": {"name": "web-1", "namespace": "default", "uid": "0b5e1a52-8d5c-4a4e-9c1e-3f0c2d9a7b61", "labels": {"app": "web"}},
   "spec": {"nodeName": "node2", "serviceAccountName": "default", "containers": [{"name": "nginx", "image": "nginx:1.27"}]},
   "status": {"phase": "Running", "podIP": "10.244.1.7"}}],
 "secrets": [{"metadata": {"name": "db-credentials", "namespace": "default"}, "type": "Opaque",
   "data": {"username": "$(b64 app)", "password": "$(b64 correct-horse-battery-staple)"}}],
 "logs": {"default/web-1": ["GET /healthz 200", "GET /api/orders 200", "POST /api/orders 201"]}}
JSON
bold "mcpgate demo: fake API server on 10.96.0.1:443 (its own network namespace),"
bold "mcpgated on the 'node', one selected pod default/demo-agent. Starting..."
rig_fakeapi || exit 1
rig_daemon || { echo "mcpgated did not start; its log:"; cat "$RIG_DAEMON_LOG"; exit 1; }
echo "  eBPF programs attached at $RIG_KUBEPODS:"
bpftool cgroup tree "$RIG_CGROOT" 2>/dev/null | awk 'NR>2 && NF>=4 {printf "    %-28s %s\n", $2, $4}'

K=/usr/lib/google-cloud-sdk/bin/kubectl.1.33
[ -x "$K" ] || K=kubectl
bold ""
bold "Inside the pod: an unmodified kubectl, in-cluster config, dialling 10.96.0.1:443."
bold "The kernel sends the connection to mcpgated; the pod does not notice."
for cmd in "get pods" "get secret db-credentials -o yaml" "logs web-1" "exec web-1 -- echo hello from exec"; do
	step "kubectl $cmd"
	# shellcheck disable=SC2086
	in_pod demo-agent "$K" $cmd 2>&1 | sed 's/^/  /'
done

echo
bold "What mcpgate saw (its JSON log, summarized):"
$RIG_PY - "$RIG_DAEMON_LOG" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    ev = e.get("event")
    if ev == "connect":
        p = e["pod"]
        print("  connect  pod %s/%s (uid %s, sa %s) pid %s -> %s" % (p["namespace"], p["name"], p["uid"][:8], p["serviceAccount"], e["pid"], e["orig_dst"]))
    elif ev == "request":
        r = e.get("request", {})
        print("  request  %-6s %-55.55s %s %6.2f ms  %s %s" % (e["method"], e["path"], e["status"], e["latencyMs"], r.get("verb", ""), r.get("resource", "")))
        m = e.get("masked") or {}
        if m.get("secretFields") or m.get("detectors"):
            print("           masked: %d secret value(s) in %d Secret(s); detector hits %s" % (m.get("secretFields", 0), m.get("secrets", 0), m.get("detectors") or {}))
    elif ev in ("pod_state", "api_endpoints", "attached"):
        print("  %-8s %s" % (ev, {k: v for k, v in e.items() if k not in ("ts", "level", "event")}))
PY
echo
bold "What the API server received:"
tok=$(cat "$RIG_DIR/pods/demo-agent/run/secrets/kubernetes.io/serviceaccount/token")
n=$(grep -c . "$RIG_DIR/api-requests.jsonl")
leak=$(grep -cF "$tok" "$RIG_DIR/api-requests.jsonl")
echo "  $n requests; the pod's own token appeared in $leak of them (mcpgate strips it"
echo "  and sends the daemon's credential with a fresh Audit-ID instead)."
echo
bold "Metrics (http://$RIG_ADMIN/metrics in the node namespace), excerpt:"
rig_admin /metrics | grep -E '^mcpgate_(bpf_events_total|connections_total|requests_total|intercepted_pods|pods)' | sed 's/^/  /'

if [ -t 0 ] && [ -t 1 ]; then
	echo
	bold "Running. Try: sudo nsenter --net=/run/netns/$RIG_NODE curl -s http://$RIG_ADMIN/metrics"
	bold "Logs: $RIG_DAEMON_LOG   Ctrl-C stops and removes everything."
	while kill -0 "$RIG_DAEMON_PID" 2>/dev/null; do sleep 1; done
fi
echo
bold "Cleaning up (namespaces, cgroups, eBPF programs, pins)."
exit 0
