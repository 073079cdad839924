#!/usr/bin/env bash
# API endpoints learnt from the API (no --api-endpoint, as in a cluster):
# ready only once the certificate names them (#8 item 2), and only the API
# server's own EndpointSlices are believed, with the last good set kept when
# a fetch overflows or loses the slice (#8 item 7).
set -u
. "$(dirname "$0")/lib/rig.sh"
rig_init
rig_certs

# Slices that claim the kubernetes Service without being the API server's:
# a hand-made one, and one dressed as the endpointslice controller's (the
# managed-by label and an owner reference to the Service).
cat >"$RIG_DIR/extra-state.json" <<'EOF'
{"endpointslices": [
 {"metadata": {"name": "kubernetes-evil", "namespace": "default",
               "labels": {"kubernetes.io/service-name": "kubernetes"}},
  "addressType": "IPv4", "endpoints": [{"addresses": ["10.66.6.6"], "conditions": {"ready": true}}],
  "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
 {"metadata": {"name": "kubernetes-x7k2p", "namespace": "default",
               "labels": {"kubernetes.io/service-name": "kubernetes",
                          "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
               "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": "kubernetes",
                                    "uid": "00000000-0000-0000-0000-000000000001",
                                    "controller": true, "blockOwnerDeletion": true}]},
  "addressType": "IPv4", "endpoints": [{"addresses": ["10.66.6.7"], "conditions": {"ready": true}}],
  "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}
]}
EOF

rig_pod sel 1 burstable default mcp-agent
rig_fakeapi || { fail "fake API starts"; summary; exit 1; }
export RIG_NO_API_ENDPOINTS=1

# api_endpoints as "addr:port" lines, from the pinned map itself.
map_endpoints() {
	bpftool -j map dump pinned "$RIG_PIN/api_endpoints" 2>/dev/null | $RIG_PY -c '
import ipaddress, json, sys
for e in json.load(sys.stdin):
    k = bytes(int(b, 16) for b in e["key"])
    ip = ipaddress.IPv6Address(k[:16])
    ip = ip.ipv4_mapped or ip
    port = int.from_bytes(k[16:18], "big")
    print(("[%s]:%d" if ip.version == 6 else "%s:%d") % (ip, port))' | sort
}
api_get() { # PATH: GET as the daemon, from the API netns
	in_api curl -s --cacert "$RIG_DIR/certs/ca.crt" -H "Authorization: Bearer $(cat "$RIG_DIR/daemon-token")" "https://10.96.0.1$1"
}
api_send() { # METHOD PATH [BODY] [CONTENT-TYPE]
	in_api curl -s -o /dev/null -w '%{http_code}' --cacert "$RIG_DIR/certs/ca.crt" -X "$1" \
		-H "Authorization: Bearer $(cat "$RIG_DIR/daemon-token")" \
		-H "Content-Type: ${4:-application/merge-patch+json}" ${3:+--data-binary "$3"} "https://10.96.0.1$2"
}
readyz_code() { in_node curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$RIG_ADMIN/readyz"; }
version_requests() { local n; n=$(grep -c '"path": *"/version' "$RIG_DIR/api-requests.jsonl" 2>/dev/null); echo "${n:-0}"; }

# ---- item 2: a selected pod connecting the moment /readyz says 200 ----
# Each round starts from nothing pinned, so the map is empty and the leaf
# names no IP until the first fetch; a real client (kubectl, in-cluster
# config: https://10.96.0.1:443, verifying the IP SAN) dials at once.
ROUNDS=5 ok_rounds=0 errs=""
for round in $(seq 1 $ROUNDS); do
	"$RIG_BUILD/mcpgatectl" uninstall --pin-dir "$RIG_PIN" >/dev/null 2>&1
	before=$(version_requests)
	RIG_DAEMON_NOWAIT=1 rig_daemon
	rig_wait_file "$RIG_DIR/mcpgate/ca.crt" 20 && rig_trust_mcpgate
	for i in $(seq 1 400); do [ "$(readyz_code)" = 200 ] && break; sleep 0.02; done
	out=$(in_pod sel kubectl get --raw /version 2>&1)
	if grep -q gitVersion <<<"$out" && [ "$(version_requests)" -gt "$before" ]; then
		ok_rounds=$((ok_rounds + 1))
	else
		errs+="round $round: $(head -c 200 <<<"$out" | tr '\n' ' ')"$'\n'
	fi
	[ "$round" = $ROUNDS ] || rig_kill_pid "$RIG_DAEMON_PID"
done
[ -n "$errs" ] && printf '%s' "$errs" >&2
check "ready_before_leaf: kubectl from a selected pod at the first /readyz 200 succeeds ($ok_rounds/$ROUNDS rounds, each reached the API)" \
	test "$ok_rounds" = $ROUNDS
check "ready_before_leaf: the leaf was reissued before the endpoints reached the map" \
	$RIG_PY - "$RIG_DAEMON_LOG" <<'PY'
import json, sys
ev = [json.loads(l).get("event") for l in open(sys.argv[1]) if l.startswith("{")]
sys.exit(0 if "tls_leaf_reissued" in ev and ev.index("tls_leaf_reissued") < ev.index("api_endpoints") else 1)
PY

# A restart keeps the pinned map, so pods are redirected from the first
# moment: the first leaf must already name what the map holds, before any
# API answer (a pod dials as soon as the proxy listens).
ok_rounds=0 errs=""
for round in 1 2 3; do
	rig_kill_pid "$RIG_DAEMON_PID"
	before=$(version_requests)
	RIG_DAEMON_NOWAIT=1 rig_daemon
	rig_wait_log "$RIG_DAEMON_LOG" '"event":"ready"' 20
	out=$(in_pod sel kubectl get --raw /version 2>&1)
	if grep -q gitVersion <<<"$out" && [ "$(version_requests)" -gt "$before" ]; then
		ok_rounds=$((ok_rounds + 1))
	else
		errs+="restart round $round: $(head -c 200 <<<"$out" | tr '\n' ' ')"$'\n'
	fi
done
[ -n "$errs" ] && printf '%s' "$errs" >&2
check "restart_leaf: kubectl the moment a restarted daemon listens succeeds ($ok_rounds/3 rounds)" test "$ok_rounds" = 3
rig_wait_ready 20

# ---- item 7: only the API server's own EndpointSlice is believed ----
eps=$(map_endpoints)
check "slice_trust: the API server's slice address is in api_endpoints" grep -qx '10.97.0.10:6443' <<<"$eps"
check "slice_trust: the Service ClusterIPs are in api_endpoints" \
	bash -c 'grep -qx "10.96.0.1:443" <<<"$1" && grep -qx "\[fd00:96::1\]:443" <<<"$1"' _ "$eps"
check "slice_trust: a hand-made slice's address never enters api_endpoints" bash -c '! grep -q "10.66.6.6" <<<"$1"' _ "$eps"
check "slice_trust: a slice dressed as the endpointslice controller's (managed-by + owner) never enters" \
	bash -c '! grep -q "10.66.6.7" <<<"$1"' _ "$eps"
check "slice_trust: the fake API served both forged slices to the daemon" \
	bash -c 'api_out=$1; grep -q kubernetes-evil <<<"$api_out" && grep -q kubernetes-x7k2p <<<"$api_out"' _ \
	"$(api_get '/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes')"
check "slice_trust: rejected slices counted in /metrics" test "$(rig_metric mcpgate_endpointslices_rejected_total)" -ge 2
check "slice_trust: rejected slices logged by name" \
	bash -c 'grep "\"event\":\"endpointslice_rejected\"" "$1" | grep -q kubernetes-evil' _ "$RIG_DAEMON_LOG"

# Overflow: the API server's slice grows past MG_ENDPOINTS_MAX (256): the
# set is kept whole, not cut.
addrs=$($RIG_PY -c 'import json; print(json.dumps(["10.97.0.10"] + ["10.98.%d.%d" % (i // 200, i % 200 + 1) for i in range(300)]))')
code=$(api_send PATCH /apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes \
	"{\"endpoints\":[{\"addresses\":$addrs,\"conditions\":{\"ready\":true}}]}")
check "overflow: the slice was patched to 301 addresses (HTTP $code)" test "$code" = 200
for i in $(seq 1 50); do [ "$(rig_metric 'mcpgate_endpoints_fetches_kept_total{reason="overflow"}')" -ge 1 ] 2>/dev/null && break; sleep 0.1; done
check "overflow: counted in /metrics" test "$(rig_metric 'mcpgate_endpoints_fetches_kept_total{reason="overflow"}')" -ge 1
check "overflow: api_endpoints kept the last good set exactly (not cut at 256)" test "$(map_endpoints)" = "$eps"
check "overflow: logged as kept" grep -q '"event":"api_endpoints_kept","reason":"more addresses' "$RIG_DAEMON_LOG"

# The API server's slice disappears (or only forged ones remain): kept.
code=$(api_send DELETE /apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes)
check "no trusted slice: the slice was deleted (HTTP $code)" test "$code" = 200
for i in $(seq 1 50); do [ "$(rig_metric 'mcpgate_endpoints_fetches_kept_total{reason="no_slice"}')" -ge 1 ] 2>/dev/null && break; sleep 0.1; done
check "no trusted slice: counted in /metrics" test "$(rig_metric 'mcpgate_endpoints_fetches_kept_total{reason="no_slice"}')" -ge 1
check "no trusted slice: logged" grep -q '"event":"api_endpoints_slices","state":"no address in a believed EndpointSlice' "$RIG_DAEMON_LOG"
check "no trusted slice: api_endpoints kept the last good set" test "$(map_endpoints)" = "$eps"
out=$(in_pod sel kubectl get --raw /version 2>&1)
check "no trusted slice: the selected pod still reaches the API through the proxy" grep -q gitVersion <<<"$out"

summary
