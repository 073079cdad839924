#!/usr/bin/env bash
# selfcheck.sh: the real clients (kubectl, node_list_pods.js, py_client.py, mcp_drive.py with
# mcp-server-kubernetes) against the fake API server (tests/e2e/fakeapi/) on 127.0.0.1, directly: no pods, no eBPF,
# no mcpgate. In-cluster config is emulated in a private mount namespace per client run, where
# the service-account files sit at /var/run/secrets/kubernetes.io/serviceaccount (/var/run is
# /run here) and KUBERNETES_SERVICE_HOST=127.0.0.1. Needs root (unshare --mount).
# Prints one line per check and "selfcheck: N passed, N failed"; exit 0 only when all passed.
# KEEP=1 keeps the work directory (logs, state, request log).
set -u
here=$(cd "$(dirname "$0")" && pwd)
FAKEAPI=${FAKEAPI:-$here/../run-fakeapi.py}
PY=/usr/bin/python3

if [ "$(id -u)" != 0 ]; then
	echo "selfcheck.sh: needs root (it bind-mounts /run in a private mount namespace)" >&2
	exit 1
fi
[ -f "$FAKEAPI" ] || { echo "selfcheck.sh: $FAKEAPI not found" >&2; exit 1; }
"$here/install.sh" || exit 1

W=$(mktemp -d /tmp/mg-clients-selfcheck.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	if [ "${KEEP:-0}" = 1 ]; then echo "selfcheck: kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

T_PASS=0 T_FAIL=0
pass() { T_PASS=$((T_PASS + 1)); printf '  ok    %s\n' "$*"; }
fail() { T_FAIL=$((T_FAIL + 1)); printf '  FAIL  %s\n' "$*"; }
# check NAME CMD...: passes when CMD succeeds
check() { local n=$1; shift; if "$@"; then pass "$n"; else fail "$n"; fi; }
# pyassert NAME FILE EXPR [SHOW]: EXPR over d (the JSON in FILE, when it is one object) or lines
# (its JSON lines) holds; on failure the note shows SHOW (default: the file's tail)
pyassert() {
	local why
	if why=$($PY "$W/assert.py" "$2" "$3" "${4:-"text[-300:]"}" 2>&1); then
		pass "$1"
	else
		fail "$1 (${why:0:400})"
	fi
}
b64() { printf '%s' "$1" | base64 -w0; }

cat >"$W/assert.py" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
lines = [json.loads(l) for l in text.splitlines() if l.startswith("{")]
d = lines[0] if len(lines) == 1 else None
try:
    ok = eval(sys.argv[2])
except Exception as e:  # noqa: BLE001
    ok, err = False, "%s: %s; " % (type(e).__name__, e)
else:
    err = ""
if not ok:
    try:
        shown = eval(sys.argv[3])
    except Exception:  # noqa: BLE001
        shown = text[-300:]
    print(err + " ".join(str(shown).split()))
    sys.exit(1)
PY

# ---- the fake cluster ----
"$here/../lib/mkcerts.sh" "$W/certs" >/dev/null || exit 1
sa="$W/run/secrets/kubernetes.io/serviceaccount"
mkdir -p "$sa" "$W/home"
TOKEN="selfcheck-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
printf '%s' "$TOKEN" >"$sa/token"
printf 'default' >"$sa/namespace"
cp "$W/certs/ca.crt" "$sa/ca.crt"

cat >"$W/state.json" <<JSON
{"nodeName": "node1",
 "namespaces": [{"metadata": {"name": "default"}}, {"metadata": {"name": "kube-system"}}],
 "pods": [
  {"metadata": {"name": "p1", "namespace": "default", "uid": "11111111-2222-3333-4444-555555555555", "labels": {"app": "web"}},
   "spec": {"nodeName": "node1", "serviceAccountName": "default", "containers": [{"name": "main", "image": "nginx"}]},
   "status": {"phase": "Running", "podIP": "10.244.0.7"}},
  {"metadata": {"name": "p2", "namespace": "default", "uid": "11111111-2222-3333-4444-666666666666"},
   "spec": {"nodeName": "node1", "serviceAccountName": "default", "containers": [{"name": "main", "image": "nginx"}]},
   "status": {"phase": "Running", "podIP": "10.244.0.8"}}],
 "services": [], "endpointslices": [], "configmaps": [],
 "secrets": [{"metadata": {"name": "s1", "namespace": "default"}, "type": "Opaque",
   "data": {"username": "$(b64 admin)", "password": "$(b64 hunter2-selfcheck)"}}],
 "logs": {"default/p1": ["hello from p1", "second line"]}}
JSON

PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$PY "$FAKEAPI" --listen "127.0.0.1:$PORT" --cert "$W/certs/server.crt" --key "$W/certs/server.key" \
	--state "$W/state.json" --log "$W/requests.jsonl" \
	--token "$TOKEN=system:serviceaccount:default:default" \
	--ready-file "$W/ready" >"$W/fakeapi.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 150); do
	[ -e "$W/ready" ] || ! kill -0 "${PIDS[0]}" 2>/dev/null && break
	sleep 0.1
done
if [ ! -e "$W/ready" ]; then
	echo "selfcheck: the fake API did not start:" >&2
	cat "$W/fakeapi.log" >&2
	exit 1
fi

# in_pod CMD...: CMD with in-cluster config and nothing else (env -i), like in a pod
in_pod() {
	# shellcheck disable=SC2016 # $0 and $@ are the inner shell's
	unshare --mount --propagation private /bin/sh -c 'mount --bind "$0" /run && cd / && exec "$@"' \
		"$W/run" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$W/home" \
		KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$PORT" \
		KUBERNETES_SERVICE_PORT_HTTPS="$PORT" "$@"
}

# ---- kubectl (what the MCP server's tools run) ----
in_pod kubectl get pods -o name >"$W/kubectl.out" 2>&1
check "kubectl: in-cluster get pods" grep -qx 'pod/p1' "$W/kubectl.out"

# ---- @kubernetes/client-node ----
in_pod /usr/bin/node "$here/node_list_pods.js" default >"$W/node.out" 2>"$W/node.err"
check "node: exits 0" test $? = 0
pyassert "node: lists p1 and p2" "$W/node.out" 'd["pods"] == ["p1", "p2"]'
in_pod /usr/bin/node "$here/node_list_pods.js" no-such-ns >"$W/node2.out" 2>"$W/node2.err"
rc=$?
check "node: an empty namespace lists nothing" $PY -c 'import json,sys; assert json.load(open(sys.argv[1]))["pods"] == []' "$W/node2.out"
check "node: exit 0 on an empty list (rc=$rc)" test "$rc" = 0

# ---- python3-kubernetes ----
in_pod $PY "$here/py_client.py" list-pods default >"$W/py-list.out" 2>&1
pyassert "python: list-pods" "$W/py-list.out" 'd["pods"] == ["p1", "p2"]'
in_pod $PY "$here/py_client.py" read-secret default s1 >"$W/py-secret.out" 2>&1
pyassert "python: read-secret data is the base64 as sent" "$W/py-secret.out" \
	'd["name"] == "s1" and d["data"]["password"] == "'"$(b64 hunter2-selfcheck)"'"'
pyassert "python: read-secret decodes" "$W/py-secret.out" \
	'd["decoded"] == {"username": "admin", "password": "hunter2-selfcheck"} and d["undecodable"] == []'
in_pod $PY "$here/py_client.py" read-secret default nope >"$W/py-nope.out" 2>"$W/py-nope.err"
check "python: a missing secret exits 1 with the status" test $? = 1 -a -s "$W/py-nope.err"
check "python: ... and the 404 on stderr" grep -q 'HTTP 404' "$W/py-nope.err"

start=$(date +%s)
in_pod $PY "$here/py_client.py" watch-pods default 6 10 >"$W/py-watch.out" 2>"$W/py-watch.err" &
wpid=$!
PIDS+=("$wpid")
sleep 2
curl -s -o "$W/post.out" -w '%{http_code}' --cacert "$W/certs/ca.crt" -X POST \
	-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
	-d '{"metadata":{"name":"w1","namespace":"default"},"spec":{"containers":[{"name":"c","image":"x"}]}}' \
	"https://127.0.0.1:$PORT/api/v1/namespaces/default/pods" >"$W/post.code"
wait "$wpid"
rc=$?
took=$(($(date +%s) - start))
check "python: watch exits 0 (rc=$rc)" test "$rc" = 0
check "python: watch ends after SECONDS (took ${took}s)" test "$took" -ge 5 -a "$took" -le 12
pyassert "python: watch streams the initial pods and a pod created while open" "$W/py-watch.out" \
	'[(l["type"], l["name"]) for l in lines] == [("ADDED", "p1"), ("ADDED", "p2"), ("ADDED", "w1")]'
start=$(date +%s)
in_pod $PY "$here/py_client.py" watch-pods default 20 2 >"$W/py-watch2.out" 2>"$W/py-watch2.err"
took=$(($(date +%s) - start))
pyassert "python: watch stops after MAX_EVENTS" "$W/py-watch2.out" 'len(lines) == 2'
check "python: ... at once (took ${took}s)" test "$took" -le 5

# ---- mcp-server-kubernetes through mcp_drive.py ----
DRIVE=(in_pod "$PY" "$here/mcp_drive.py" --server-log "$W/mcp-server.log" --timeout 30)
"${DRIVE[@]}" --env MASK_SECRETS=false --print-init --call tools/list \
	--tool 'kubectl_get:{"resourceType":"pods","namespace":"default"}' \
	--tool 'kubectl_get:{"resourceType":"secrets","name":"s1","namespace":"default"}' \
	--tool 'kubectl_logs:{"resourceType":"pod","name":"p1","namespace":"default"}' \
	--tool 'kubectl_describe:{"resourceType":"pods","name":"p1","namespace":"default"}' \
	--tool 'exec_in_pod:{"name":"p1","namespace":"default","command":["echo","mcp-exec-ok"]}' \
	--tool 'kubectl_generic:{"command":"get","resourceType":"secret","name":"s1","namespace":"default","outputFormat":"json"}' \
	--call resources/list --read k8s://default/pods \
	>"$W/mcp.out" 2>"$W/mcp.err"
check "mcp: every request answered (rc=$?)" test -z "$(grep -v '"ok": true' "$W/mcp.out")"
step() { # N NAME EXPR: EXPR over r, the answer to step N
	local r="[l for l in lines if l['step'] == $1][0]"
	pyassert "mcp: $2" "$W/mcp.out" "(lambda r: $3)($r)" "(lambda r: r.get('text') or r)($r)"
}
step 0 "initialize: protocol 2025-06-18, server kubernetes 4.1.7" \
	'r["result"]["protocolVersion"] == "2025-06-18" and r["result"]["serverInfo"] == {"name": "kubernetes", "version": "4.1.7"}'
step 1 "tools/list has the tools the tests use" \
	'{"kubectl_get", "kubectl_logs", "kubectl_describe", "exec_in_pod", "kubectl_generic"} <= {t["name"] for t in r["result"]["tools"]}'
step 2 "kubectl_get pods" '{"p1", "p2"} <= {i["name"] for i in json.loads(r["text"])["items"]}'
step 3 "kubectl_get secret with MASK_SECRETS=false is raw" \
	'json.loads(r["text"])["data"]["password"] == "'"$(b64 hunter2-selfcheck)"'"'
step 4 "kubectl_logs" 'json.loads(r["text"])["logs"].startswith("hello from p1\nsecond line") and not r["result"].get("isError")'
step 5 "kubectl_describe" '"p1" in r["text"] and "nginx" in r["text"] and not r["result"].get("isError")'
step 6 "exec_in_pod" 'r["text"].strip() == "mcp-exec-ok"'
step 7 "kubectl_generic get secret -o json is raw" \
	'json.loads(r["text"])["data"]["username"] == "'"$(b64 admin)"'"'
step 8 "resources/list" '"k8s://default/pods" in [x["uri"] for x in r["result"]["resources"]]'
step 9 "resources/read k8s://default/pods" \
	'{"p1", "p2"} <= {p["metadata"]["name"] for p in json.loads(r["result"]["contents"][0]["text"])}'
"${DRIVE[@]}" --tool 'kubectl_get:{"resourceType":"secrets","name":"s1","namespace":"default"}' \
	>"$W/mcp-masked.out" 2>>"$W/mcp.err"
pyassert "mcp: by default the server masks kubectl_get secrets itself" "$W/mcp-masked.out" \
	'set(json.loads(d["text"])["data"].values()) == {"***"}'
"${DRIVE[@]}" --timeout 0.001 --call tools/list >"$W/mcp-timeout.out" 2>>"$W/mcp.err"
rc=$?
check "mcp_drive: a timeout is reported (rc=$rc)" test "$rc" = 3
pyassert "mcp_drive: ... as a timeout line" "$W/mcp-timeout.out" 'd["timeout"] is True and d["ok"] is False'
check "mcp: the server never said it sends telemetry" grep -q 'Telemetry: Disabled' "$W/mcp-server.log"

# ---- what the fake API saw ----
check "the fake API logged the requests" test "$(grep -c . "$W/requests.jsonl")" -gt 20
# Every client really used the in-cluster credential: the fake knows only that token.
pyassert "every request carried the service-account token" "$W/requests.jsonl" \
	'all(l["user"] == "system:serviceaccount:default:default" for l in lines)'
pyassert "kubectl, python, node (Connection: close) all reached it" "$W/requests.jsonl" \
	'{"kubectl", "OpenAPI-Generator", "node-fetch close"} <= {(lambda h: h.get("user-agent", "").split("/")[0] + (" close" if h.get("connection") == "close" else ""))(dict(l["headers"])) for l in lines}'

echo "selfcheck: $T_PASS passed, $T_FAIL failed"
[ "$T_FAIL" = 0 ]
