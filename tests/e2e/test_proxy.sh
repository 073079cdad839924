#!/usr/bin/env bash
# The proxy: TLS the pod trusts, strict HTTP/1.1, streaming forward of every
# Kubernetes API shape, with real unmodified clients through the real eBPF
# redirect: kubectl 1.33 and 1.27, the Python client, the Node client and
# the mcp-server-kubernetes MCP server.
set -u
. "$(dirname "$0")/lib/rig.sh"
rig_init
rig_certs

SDK=/usr/lib/google-cloud-sdk/bin
REQLOG="$RIG_DIR/api-requests.jsonl"
CLIENTS="$RIG_ROOT_DIR/tests/e2e/clients"
b64() { printf '%s' "$1" | base64 -w0; }

rig_pod agent 1 burstable default mcp-agent
cat >"$RIG_DIR/extra-state.json" <<JSON
{"pods": [
  {"metadata": {"name": "p1", "namespace": "default", "uid": "11111111-2222-3333-4444-555555555555", "labels": {"app": "web"}},
   "spec": {"nodeName": "node2", "serviceAccountName": "default", "containers": [{"name": "main", "image": "nginx"}]},
   "status": {"phase": "Running", "podIP": "10.244.0.7"}},
  {"metadata": {"name": "p2", "namespace": "default", "uid": "11111111-2222-3333-4444-666666666666"},
   "spec": {"nodeName": "node2", "serviceAccountName": "default", "containers": [{"name": "main", "image": "nginx"}]},
   "status": {"phase": "Running", "podIP": "10.244.0.8"}}],
 "secrets": [{"metadata": {"name": "s1", "namespace": "default"}, "type": "Opaque",
   "data": {"username": "$(b64 admin)", "password": "$(b64 hunter2-e2e)"}}],
 "configmaps": [{"metadata": {"name": "cm1", "namespace": "default"}, "data": {"mode": "demo"}}],
 "logs": {"default/p1": ["hello from p1", "second line"]}}
JSON
# Response heads in their own write, bodies a moment later, as the Go API
# server sends a body larger than its write buffer.
rig_fakeapi --split-head-ms 2
rig_daemon || { fail "mcpgated starts"; summary; exit 1; }
TOKEN=$(cat "$RIG_DIR/pods/agent/run/secrets/kubernetes.io/serviceaccount/token")

# ---- kubectl, new and old ----
for v in 1.33 1.27; do
	K="$SDK/kubectl.$v"
	out=$(in_pod agent "$K" get pods 2>&1)
	check "kubectl $v: get pods" grep -q '^p1 ' <<<"$out"
	out=$(in_pod agent "$K" get pods -o json 2>&1)
	check "kubectl $v: get pods -o json" $RIG_PY -c 'import json,sys; d=json.load(sys.stdin); assert any(i["metadata"]["name"]=="p1" for i in d["items"])' <<<"$out"
	out=$(in_pod agent "$K" get secret s1 -o yaml 2>&1)
	check "kubectl $v: get secret s1 -o yaml" grep -q 'name: s1' <<<"$out"

	# watch: an event arrives while the watch is open
	in_pod_bg agent "$K" get pods -w >"$RIG_DIR/watch-$v.out" 2>&1 &
	wpid=$!; RIG_PIDS+=("$wpid")
	rig_wait_log "$RIG_DIR/watch-$v.out" '^p1 ' 10
	in_api curl -s -o /dev/null --cacert "$RIG_DIR/certs/ca.crt" -X POST \
		-H "Authorization: Bearer $(cat "$RIG_DIR/daemon-token")" -H 'Content-Type: application/json' \
		-d "{\"metadata\":{\"name\":\"w-$v\",\"namespace\":\"default\"},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"x\"}]}}" \
		"https://10.96.0.1/api/v1/namespaces/default/pods"
	check "kubectl $v: get pods -w sees a new pod while open" rig_wait_log "$RIG_DIR/watch-$v.out" "^w-$v " 10
	rig_kill_pid "$wpid"

	out=$(in_pod agent "$K" logs p1 2>&1)
	check "kubectl $v: logs" grep -q 'hello from p1' <<<"$out"
	in_pod_bg agent "$K" logs -f p1 >"$RIG_DIR/logsf-$v.out" 2>&1 &
	lpid=$!; RIG_PIDS+=("$lpid")
	if rig_wait_log "$RIG_DIR/logsf-$v.out" 'tick 2' 10 && kill -0 "$lpid" 2>/dev/null; then
		pass "kubectl $v: logs -f lines arrive live"
	else
		fail "kubectl $v: logs -f lines arrive live ($(tail -c 300 "$RIG_DIR/logsf-$v.out"))"
	fi
	rig_kill_pid "$lpid"

	out=$(in_pod agent "$K" exec p1 -- echo hi 2>&1)
	check "kubectl $v: exec echo" test "$out" = hi
	out=$(printf 'hello stdin\n' | in_pod agent "$K" exec -i p1 -- cat 2>&1)
	check "kubectl $v: exec -i with stdin" test "$out" = "hello stdin"
	in_pod agent "$K" exec p1 -- sh -c 'exit 3' >/dev/null 2>&1
	check "kubectl $v: exec exit code propagated" test $? = 3

	in_pod agent "$K" delete pod "w-$v" >"$RIG_DIR/del-$v.out" 2>&1
	check "kubectl $v: delete pod" grep -q "deleted" "$RIG_DIR/del-$v.out"
done

# Impersonation asked for by the pod never reaches the API server (kubectl's
# --as would drop in-cluster config, so the headers are sent by hand).
SA=/var/run/secrets/kubernetes.io/serviceaccount
in_pod agent sh -c "curl -s --cacert $SA/ca.crt -H \"Authorization: Bearer \$(cat $SA/token)\" \
	-H 'Impersonate-User: system:admin' -H 'Impersonate-Group: system:masters' \
	-H 'Impersonate-Extra-scopes: all' 'https://10.96.0.1/api/v1/namespaces/default/pods?labelSelector=marker%3Dimp'" >/dev/null
check "a request with Impersonate-* headers from the pod reached the API" grep -q 'marker%3Dimp"' "$REQLOG"
check "Impersonate-* headers from the pod are stripped" test -z "$(grep -i '"impersonate-' "$REQLOG")"

# ---- the Python client ----
PYC="$CLIENTS/py_client.py"
out=$(in_pod agent /usr/bin/python3 "$PYC" list-pods default 2>&1)
check "python: list pods" grep -q '"p1"' <<<"$out"
out=$(in_pod agent /usr/bin/python3 "$PYC" read-secret default s1 2>&1)
check "python: read a secret (typed)" grep -q '"name": *"s1"' <<<"$out"
in_pod_bg agent /usr/bin/python3 "$PYC" watch-pods default 15 10 >"$RIG_DIR/pywatch.out" 2>&1 &
wpid=$!; RIG_PIDS+=("$wpid")
sleep 1
in_api curl -s -o /dev/null --cacert "$RIG_DIR/certs/ca.crt" -X POST \
	-H "Authorization: Bearer $(cat "$RIG_DIR/daemon-token")" -H 'Content-Type: application/json' \
	-d '{"metadata":{"name":"py-w","namespace":"default"},"spec":{"containers":[{"name":"c","image":"x"}]}}' \
	"https://10.96.0.1/api/v1/namespaces/default/pods"
check "python: a watch streams events" rig_wait_log "$RIG_DIR/pywatch.out" '"py-w"' 10
rig_kill_pid "$wpid"

# ---- the Node client (Connection: close per request) ----
if [ -d "$CLIENTS/node_modules/@kubernetes/client-node" ]; then
	out=$(in_pod agent /usr/bin/node "$CLIENTS/node_list_pods.js" default 2>&1)
	check "node client-node: list pods" grep -q '"p1"' <<<"$out"
	# One connection per request, each `Connection: close`: every one of
	# a loop is answered (not one in two), and reached the API once.
	lists() { grep -c '"path": "/api/v1/namespaces/default/pods"' "$REQLOG"; }
	before=$(lists)
	out=$(in_pod agent /usr/bin/node "$CLIENTS/node_list_pods.js" --repeat 50 default 2>&1)
	sleep 0.3
	check "node client-node: 50 sequential lists, every one answered ($out)" grep -q '"answered":50' <<<"$out"
	check "node client-node: the API received exactly 50 lists ($(( $(lists) - before )))" \
		test "$(( $(lists) - before ))" = 50
else
	fail "node client-node installed (run tests/e2e/clients/install.sh)"
fi

# ---- the MCP server, unmodified, over stdio ----
if [ -d "$CLIENTS/node_modules/mcp-server-kubernetes" ]; then
	out=$(in_pod agent /usr/bin/python3 "$CLIENTS/mcp_drive.py" --server-log "$RIG_DIR/mcp-server.log" \
		--call tools/list \
		--call 'tools/call:{"name":"kubectl_get","arguments":{"resourceType":"pods","namespace":"default"}}' \
		--call 'tools/call:{"name":"kubectl_logs","arguments":{"resourceType":"pod","name":"p1","namespace":"default"}}' \
		--call 'tools/call:{"name":"exec_in_pod","arguments":{"name":"p1","namespace":"default","command":["echo","mcp-exec-ok"]}}' 2>&1)
	echo "$out" >"$RIG_DIR/mcp.out"
	check "mcp: initialize + tools/list" grep -q 'kubectl_get' <<<"$out"
	check "mcp: list pods returns p1" grep -q 'p1' <<<"$(sed -n 2p "$RIG_DIR/mcp.out")"
	check "mcp: logs returns p1's log" grep -q 'hello from p1' <<<"$(sed -n 3p "$RIG_DIR/mcp.out")"
	check "mcp: exec returns output" grep -q 'mcp-exec-ok' <<<"$(sed -n 4p "$RIG_DIR/mcp.out")"
else
	fail "mcp-server-kubernetes installed (run tests/e2e/clients/install.sh)"
fi

# ---- what the API server received ----
check "the API server received requests" test "$(grep -c . "$REQLOG")" -gt 20
check "the pod's token never reached the API server" test -z "$(grep -F "$TOKEN" "$REQLOG")"
check "every request carried the daemon's credential" test -z "$(grep -v '/version\|/healthz' "$REQLOG" | grep -v "$(cat "$RIG_DIR/daemon-token")")"
check "every proxied request carried an Audit-ID from mcpgate" test -z "$(grep -v '/version' "$REQLOG" | grep -v 'mcpgated/' | grep -v 'curl/' | grep -vi '"audit-id"')"
check "the pod's token is in no mcpgated log line" test -z "$(grep -F "$TOKEN" "$RIG_DAEMON_LOG")"

# ---- strict HTTP: each bad shape gets its Status and is never forwarded ----
RAW="/usr/bin/python3 $RIG_ROOT_DIR/tests/e2e/lib/rawhttp.py 10.96.0.1 443 /var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
smuggle() { # NAME STATUS PRINTF-FORMAT (the path holds a marker)
	local name=$1 want=$2 fmt=$3 marker="smuggle-$RANDOM$RANDOM" out st code
	out=$(printf "$fmt" "$marker" | in_pod agent $RAW 2>&1)
	st=$(printf '%s' "$out" | $RIG_PY -c 'import json,sys; print(json.loads(sys.stdin.read())["status"])' 2>/dev/null)
	code=$(printf '%s' "$out" | $RIG_PY -c 'import json,sys; b=json.loads(json.loads(sys.stdin.read())["body"]); print(b["kind"], b["code"])' 2>/dev/null)
	sleep 0.2
	if [ "$st" = "$want" ] && [ "$code" = "Status $want" ] && ! grep -q "$marker" "$REQLOG"; then
		pass "strict HTTP: $name -> $want Status, not forwarded"
	else
		fail "strict HTTP: $name (got '$st' '$code'; forwarded: $(grep -c "$marker" "$REQLOG"); $out)"
	fi
}
H='Host: 10.96.0.1\r\n'
smuggle "CL and TE together" 400 "POST /api/v1/namespaces/%s/pods HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
smuggle "duplicate Content-Length" 400 "POST /api/v1/namespaces/%s/pods HTTP/1.1\r\n${H}Content-Length: 2\r\nContent-Length: 3\r\n\r\nabc"
smuggle "invalid Content-Length" 400 "POST /api/v1/namespaces/%s/pods HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc"
smuggle "bad chunk size" 400 "POST /api/v1/namespaces/%s/pods HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
smuggle "unknown transfer coding" 501 "POST /api/v1/namespaces/%s/pods HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
smuggle "obs-fold" 400 "GET /api/v1/namespaces/%s/pods HTTP/1.1\r\n${H}X-A: a\r\n b\r\n\r\n"
smuggle "bare CR" 400 "GET /api/v1/namespaces/%s/pods HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n"
smuggle "whitespace before colon" 400 "GET /api/v1/namespaces/%s/pods HTTP/1.1\r\n${H}X-A : a\r\n\r\n"
smuggle "absolute-form target" 400 "GET https://10.96.0.1/api/v1/namespaces/%s/pods HTTP/1.1\r\n${H}\r\n"
smuggle "invalid target" 400 "GET /api/v1/namespaces/%s/pods#frag HTTP/1.1\r\n${H}\r\n"
smuggle "URL too long" 414 "GET /api/v1/namespaces/%s/pods?x=$(head -c 9000 /dev/zero | tr '\0' a) HTTP/1.1\r\n${H}\r\n"
smuggle "too many headers" 431 "GET /api/v1/namespaces/%s/pods HTTP/1.1\r\n${H}$(for i in $(seq 1 120); do printf 'X-H%d: v\\r\\n' "$i"; done)\r\n"
smuggle "header bytes too large" 431 "GET /api/v1/namespaces/%s/pods HTTP/1.1\r\n${H}X-Big: $(head -c 70000 /dev/zero | tr '\0' b)\r\n\r\n"
smuggle "missing Host" 400 "GET /api/v1/namespaces/%s/pods HTTP/1.1\r\n\r\n"

# ALPN: kubectl offers h2 and http/1.1 and must get http/1.1
out=$(printf 'GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | in_pod agent $RAW)
check "ALPN selects http/1.1" grep -q '"alpn": "http/1.1"' <<<"$out"

check "metrics: requests by code" grep -q 'mcpgate_requests_total{' <<<"$(rig_admin /metrics)"
check "metrics: latency histogram" grep -q 'mcpgate_request_duration_seconds_bucket' <<<"$(rig_admin /metrics)"
summary
