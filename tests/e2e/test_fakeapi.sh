#!/usr/bin/env bash
# test_fakeapi.sh: a self-check of the fake API server (the tests/e2e/fakeapi package) on 127.0.0.1
# with real clients and nothing of mcpgate: kubectl 1.33 (WebSocket exec, aggregated discovery)
# and 1.27 (SPDY exec, legacy discovery) run directly, the google-cloud-cli kubectl
# dispatcher, and the wire-level checks plus the Python client in fakeapi/check.py.
# Needs no root, no namespaces. Prints "test_fakeapi: N passed, N failed".
# KEEP=1 keeps the work directory.
set -u
here=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
SDK=/usr/lib/google-cloud-sdk/bin
W=$(mktemp -d /tmp/mg-fakeapi-test.XXXXXX)
FAKE_PID=
BG=()
cleanup() {
	local p
	for p in "${BG[@]}"; do kill "$p" 2>/dev/null; done
	if [ -n "$FAKE_PID" ]; then kill "$FAKE_PID" 2>/dev/null; wait "$FAKE_PID" 2>/dev/null; fi
	if [ "${KEEP:-0}" = 1 ]; then echo "test_fakeapi: kept $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

T_PASS=0 T_FAIL=0
pass() { T_PASS=$((T_PASS + 1)); printf '  ok    %s\n' "$*"; }
fail() { T_FAIL=$((T_FAIL + 1)); printf '  FAIL  %s\n' "$*"; }
check() { local n=$1; shift; if "$@"; then pass "$n"; else fail "$n"; fi; }
# wait_for FILE PATTERN SECONDS
wait_for() {
	local i
	for i in $(seq 1 $(($3 * 10))); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}
started=$(date +%s.%N)

"$here/lib/mkcerts.sh" "$W/certs" >/dev/null || { echo "mkcerts failed"; exit 1; }
TOKEN="tok-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
CTL="ctl-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$W/state.json" <<'JSON'
{"nodeName": "node1",
 "namespaces": [{"metadata": {"name": "default"}}, {"metadata": {"name": "kube-system"}}],
 "pods": [
  {"metadata": {"name": "p1", "namespace": "default", "uid": "11111111-2222-3333-4444-555555555555", "labels": {"app": "web"}},
   "spec": {"nodeName": "node1", "serviceAccountName": "default", "containers": [{"name": "main", "image": "nginx", "env": [{"name": "GREETING", "value": "hello-env"}]}]},
   "status": {"phase": "Running", "podIP": "10.244.0.7"}},
  {"metadata": {"name": "p2", "namespace": "default", "uid": "11111111-2222-3333-4444-666666666666"},
   "spec": {"nodeName": "node2", "serviceAccountName": "default", "containers": [{"name": "main", "image": "nginx"}]},
   "status": {"phase": "Running", "podIP": "10.244.0.8"}}],
 "secrets": [{"metadata": {"name": "s1", "namespace": "default"}, "type": "Opaque",
   "data": {"username": "YWRtaW4=", "password": "aHVudGVyMi1mYWtl"}}],
 "services": [{"metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
   "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}],
 "endpointslices": [{"metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
   "addressType": "IPv4", "endpoints": [{"addresses": ["10.97.0.10"], "conditions": {"ready": true}}],
   "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}],
 "configmaps": [{"metadata": {"name": "cm1", "namespace": "default"}, "data": {"mode": "demo"}}],
 "logs": {"default/p1": ["hello from p1", "second line"]},
 "exec": {"files": {"/etc/motd": "welcome\n"}}}
JSON

PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$PY "$here/run-fakeapi.py" --listen "127.0.0.1:$PORT" --cert "$W/certs/server.crt" \
	--key "$W/certs/server.key" --state "$W/state.json" --log "$W/requests.jsonl" \
	--token "$TOKEN=admin" --control-token "$CTL" --bookmark-interval 1 \
	--ready-file "$W/ready" >"$W/fakeapi.log" 2>&1 &
FAKE_PID=$!
for _ in $(seq 1 100); do [ -e "$W/ready" ] && break; sleep 0.1; done
if [ ! -e "$W/ready" ]; then
	echo "test_fakeapi: the fake API did not start:"; cat "$W/fakeapi.log"; exit 1
fi
pass "fakeapi starts and writes --ready-file"

cat >"$W/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: fake
  cluster: {server: "https://127.0.0.1:$PORT", certificate-authority: "$W/certs/ca.crt"}
users:
- name: u
  user: {token: "$TOKEN"}
contexts:
- name: fake
  context: {cluster: fake, user: u, namespace: default}
current-context: fake
EOF
export KUBECONFIG="$W/kubeconfig"
api_post() { # PATH JSON
	curl -s -o /dev/null -w '%{http_code}' --cacert "$W/certs/ca.crt" -X POST \
		-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$2" \
		"https://127.0.0.1:$PORT$1"
}

for v in 1.33 1.27; do
	K="$SDK/kubectl.$v"
	# A fresh HOME per version: its own discovery cache, so each does its own discovery.
	export HOME="$W/home-$v"
	mkdir -p "$HOME"
	out=$("$K" get pods 2>&1)
	check "kubectl $v: get pods prints the Table columns" \
		grep -Eq '^NAME +READY +STATUS +RESTARTS +AGE$' <<<"$(head -1 <<<"$out")"
	check "kubectl $v: get pods: p1 1/1 Running 0" grep -Eq '^p1 +1/1 +Running +0 ' <<<"$out"
	out=$("$K" get pods -o json 2>&1)
	check "kubectl $v: get pods -o json" $PY -c 'import json,sys; d=json.load(sys.stdin); assert d["kind"] == "List" and [i["metadata"]["name"] for i in d["items"]][:2] == ["p1", "p2"]' <<<"$out"
	out=$("$K" get secret s1 -o yaml 2>&1)
	check "kubectl $v: get secret -o yaml" grep -q 'password: aHVudGVyMi1mYWtl' <<<"$out"
	out=$("$K" get pods -A -o wide --field-selector spec.nodeName=node2 2>&1)
	check "kubectl $v: get pods -A -o wide --field-selector" \
		grep -Eq '^default +p2 .* 10\.244\.0\.8 +node2 ' <<<"$out"

	"$K" get pods -w --request-timeout=20s >"$W/watch-$v.out" 2>&1 &
	wpid=$!; BG+=("$wpid")
	wait_for "$W/watch-$v.out" '^p1 ' 10
	code=$(api_post /api/v1/namespaces/default/pods "{\"metadata\":{\"name\":\"w-$v\"},\"spec\":{\"containers\":[{\"name\":\"c\",\"image\":\"x\"}]}}")
	check "kubectl $v: get pods -w sees a pod created while open (POST $code)" \
		wait_for "$W/watch-$v.out" "^w-$v " 10
	kill "$wpid" 2>/dev/null

	out=$("$K" logs p1 2>&1)
	check "kubectl $v: logs" test "$out" = $'hello from p1\nsecond line'
	"$K" logs -f p1 >"$W/logsf-$v.out" 2>&1 &
	lpid=$!; BG+=("$lpid")
	if wait_for "$W/logsf-$v.out" 'tick 2' 10 && kill -0 "$lpid" 2>/dev/null; then
		pass "kubectl $v: logs -f: lines arrive live"
	else
		fail "kubectl $v: logs -f: lines arrive live ($(tail -c 200 "$W/logsf-$v.out"))"
	fi
	kill "$lpid" 2>/dev/null

	out=$("$K" delete pod "w-$v" 2>&1)
	check "kubectl $v: delete pod" grep -q "pod \"w-$v\" deleted" <<<"$out"
	out=$("$K" get pod "w-$v" 2>&1)
	check "kubectl $v: ... and it is gone" grep -q 'NotFound' <<<"$out"

	# apply/create -f validate through OpenAPI (v3 for 1.3x, v2 protobuf for 1.27); kubectl
	# 1.33's typed clients send protobuf bodies (create secret, create token, auth can-i).
	printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ap-%s}\ndata: {a: "1"}\n' "${v/./-}" >"$W/cm-$v.yaml"
	out=$("$K" apply -f "$W/cm-$v.yaml" 2>&1)
	sed -i 's/a: "1"/a: "2"/' "$W/cm-$v.yaml"
	out="$out $("$K" apply -f "$W/cm-$v.yaml" 2>&1) $("$K" get cm "ap-${v/./-}" -o jsonpath='{.data.a}' 2>&1)"
	check "kubectl $v: apply -f, twice (client-side, strategic merge patch)" \
		test "$out" = "configmap/ap-${v/./-} created configmap/ap-${v/./-} configured 2"
	out=$("$K" delete -f "$W/cm-$v.yaml" 2>&1; "$K" create -f "$W/cm-$v.yaml" 2>&1; "$K" apply --server-side -f "$W/cm-$v.yaml" 2>&1)
	check "kubectl $v: delete -f, create -f, apply --server-side" \
		test "$out" = "configmap \"ap-${v/./-}\" deleted"$'\n'"configmap/ap-${v/./-} created"$'\n'"configmap/ap-${v/./-} serverside-applied"
	out=$("$K" create secret generic "cs-${v/./-}" --from-literal=pw=s3cret -o jsonpath='{.data.pw}' 2>&1)
	check "kubectl $v: create secret generic" test "$out" = "$(printf s3cret | base64)"
	tok=$("$K" create token default --duration=15m 2>&1)
	check "kubectl $v: create token (TokenRequest), and the token works" \
		test "$(curl -s -o /dev/null -w '%{http_code}' --cacert "$W/certs/ca.crt" -H "Authorization: Bearer $tok" "https://127.0.0.1:$PORT/api/v1/namespaces/default/pods")" = 200
	out=$("$K" auth can-i delete pods 2>&1)
	check "kubectl $v: auth can-i" test "$out" = yes

	out=$("$K" create deployment "d-${v/./-}" --image=nginx:1.27 --replicas=2 2>&1 &&
		"$K" scale deployment "d-${v/./-}" --replicas=3 2>&1 &&
		timeout 10 "$K" rollout status deployment "d-${v/./-}" 2>&1 &&
		"$K" get deployment "d-${v/./-}" -o jsonpath='{.spec.template.spec.containers[0].image} {.status.readyReplicas}' 2>&1)
	check "kubectl $v: create deployment, scale, rollout status" \
		test "$(grep -c 'successfully rolled out' <<<"$out") $(tail -1 <<<"$out")" = "1 nginx:1.27 3"

	out=$("$K" exec p1 -- echo hi 2>&1)
	check "kubectl $v: exec -- echo hi" test "$out" = hi
	out=$(printf 'hello stdin\nline two\n' | "$K" exec -i p1 -- cat 2>&1)
	check "kubectl $v: exec -i: stdin through cat" test "$out" = $'hello stdin\nline two'
	"$K" exec p1 -- false >/dev/null 2>&1
	check "kubectl $v: exec false exits 1" test $? = 1
	"$K" exec p1 -- sh -c 'exit 3' >/dev/null 2>&1
	check "kubectl $v: exec sh -c 'exit 3' exits 3" test $? = 3
	out=$("$K" exec p1 -- sh -c 'printenv GREETING; cat /etc/motd; no-such-cmd' 2>"$W/err-$v")
	rc=$?
	check "kubectl $v: exec: env, files, an unknown command (127, stderr)" \
		test "$out|$rc|$(head -1 "$W/err-$v")" = "hello-env"$'\n'"welcome|127|sh: 1: no-such-cmd: not found"
done

ua() { $PY -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    h = dict(r["headers"])
    if sys.argv[2] in h.get("user-agent", "") and sys.argv[3] in r["path"]:
        print(r["status"], r["method"], h.get("upgrade", "-"), r["path"])' "$W/requests.jsonl" "$1" "$2"; }
pb=$($PY -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    h = dict(r["headers"])
    if h.get("content-type") == "application/vnd.kubernetes.protobuf":
        print(h.get("user-agent", "").split("/")[0], r["status"], r["path"].split("?")[0].rsplit("/", 1)[-1])' "$W/requests.jsonl" | sort | tr '\n' ' ')
check "the request log keeps protobuf bodies exactly (body_base64)" $PY -c 'import base64,json,sys
sys.path.insert(0, sys.argv[2])
from fakeapi import proto as fakeapi_proto
for l in open(sys.argv[1]):
    r = json.loads(l)
    if "cs-1-33" in r.get("body", "") and "body_base64" in r:
        o = fakeapi_proto.decode(base64.b64decode(r["body_base64"]))
        assert o["kind"] == "Secret" and o["data"] == {"pw": "czNjcmV0"}, o
        sys.exit(0)
sys.exit(1)' "$W/requests.jsonl" "$here"
check "kubectl 1.33 sent protobuf bodies, and they were understood" \
	test "$pb" = "kubectl.1.33 201 deployments kubectl.1.33 201 secrets kubectl.1.33 201 selfsubjectaccessreviews kubectl.1.33 201 token "
check "kubectl 1.33 used aggregated discovery v2 and WebSocket exec" \
	test "$(ua kubectl.1.33 /exec? | grep -c ' GET websocket ')-$(ua kubectl.1.33 '' | grep -c ' /api/v1?')" = "5-0"
check "kubectl 1.27 used aggregated discovery v2beta1 and SPDY exec" \
	test "$(ua kubectl.1.27 /exec? | grep -c ' POST SPDY/3.1 ')-$(ua kubectl.1.27 '' | grep -c ' /api/v1?')" = "5-0"

# The google-cloud-cli dispatcher picks the bundled kubectl by the server's /version.
export HOME="$W/home-dispatch"
mkdir -p "$HOME"
out=$(/usr/bin/kubectl get pods 2>&1)
check "the kubectl dispatcher works against the fake" grep -Eq '^p1 +1/1 +Running' <<<"$out"
check "... and picked kubectl 1.33 for a 1.33 server" test -n "$(ua kubectl/v1.33. /pods?limit)"

# A second fake that claims 1.27 and serves only legacy discovery.
PORT2=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
$PY "$here/run-fakeapi.py" --listen "127.0.0.1:$PORT2" --cert "$W/certs/server.crt" \
	--key "$W/certs/server.key" --state "$W/state.json" --log "$W/requests2.jsonl" \
	--token "$TOKEN=admin" --version 1.27 --discovery legacy --ready-file "$W/ready2" \
	>"$W/fakeapi2.log" 2>&1 &
BG+=($!)
for _ in $(seq 1 100); do [ -e "$W/ready2" ] && break; sleep 0.1; done
sed "s/:$PORT\"/:$PORT2\"/" "$W/kubeconfig" >"$W/kubeconfig2"
export HOME="$W/home-legacy"
mkdir -p "$HOME"
out=$(KUBECONFIG="$W/kubeconfig2" /usr/bin/kubectl get pods 2>&1)
check "legacy discovery: kubectl get pods" grep -Eq '^p1 +1/1 +Running' <<<"$out"
out=$(KUBECONFIG="$W/kubeconfig2" /usr/bin/kubectl exec p1 -- echo legacy 2>&1)
check "legacy discovery: kubectl exec" test "$out" = legacy
legacy=$($PY -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    print(r["path"].split("?")[0], dict(r["headers"]).get("user-agent", "").split(" ")[0])' "$W/requests2.jsonl")
check "legacy discovery: the dispatcher picked kubectl 1.27 for a 1.27 server" grep -q '/api/v1/namespaces/default/pods kubectl/v1.27.' <<<"$legacy"
check "legacy discovery: /api/v1 and /apis/apps/v1 were fetched" test "$(grep -c '^/api/v1 \|^/apis/apps/v1 ' <<<"$legacy")" = 2

PYTHONPATH="$here" $PY -m fakeapi.check 127.0.0.1 "$PORT" "$W/certs/ca.crt" "$TOKEN" "$CTL" \
	"$W/requests.jsonl" >"$W/checks.out" 2>&1
cat "$W/checks.out"
line=$(grep -E '^checks: [0-9]+ passed, [0-9]+ failed' "$W/checks.out" | tail -1)
if [ -n "$line" ]; then
	T_PASS=$((T_PASS + $(sed -E 's/checks: ([0-9]+) passed.*/\1/' <<<"$line")))
	T_FAIL=$((T_FAIL + $(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$line")))
else
	fail "fakeapi.check ran to the end"
fi

check "the server is still alive" kill -0 "$FAKE_PID"
check "no handler crashed (no traceback on stderr)" test -z "$(grep -l Traceback "$W/fakeapi.log")"
[ "$T_FAIL" = 0 ] || { echo "---- fakeapi.log"; tail -n 40 "$W/fakeapi.log"; }
echo "  took $($PY -c "import sys; print('%.1f s' % (float(sys.argv[2]) - float(sys.argv[1])))" "$started" "$(date +%s.%N)")"
echo "test_fakeapi: $T_PASS passed, $T_FAIL failed"
[ "$T_FAIL" = 0 ]
