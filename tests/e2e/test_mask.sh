#!/usr/bin/env bash
# Response masking end to end: planted secret values never reach a client,
# whichever way it asks (kubectl in every form, the Python client, the MCP
# server's tools), and the fields that are not secret arrive intact.
set -u
. "$(dirname "$0")/lib/rig.sh"
rig_init
rig_certs
K=/usr/lib/google-cloud-sdk/bin/kubectl.1.33
CLIENTS="$RIG_ROOT_DIR/tests/e2e/clients"
b64() { printf '%s' "$1" | base64 -w0; }

# The planted values (each unique, so a scan is unambiguous)
PW=planted-pw-$RANDOM$RANDOM
APIKEY=planted-apikey-$RANDOM$RANDOM
AKID=AKIAQ7PLANTED$((RANDOM % 10))ZZQXWY	# AKIA + 16: a well-formed key id
GHTOKEN=ghp_planted$(head -c 64 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c 30)
# s2's last-applied as kubectl writes it (sorted keys: data before kind),
# under a data key no detector knows
LAPW=planted-la-$RANDOM$RANDOM
# cut one character short of a classic GitHub token's 36 (its tail is a checksum)
GHCUT=$(head -c 96 /dev/urandom | base64 -w0 | tr -dc 'A-Za-z0-9' | head -c 35)
PLANTED=("$PW" "$APIKEY" "$AKID" "$GHTOKEN" "$LAPW" "$GHCUT")
LASTAPPLIED=$($RIG_PY -c 'import json,sys; print(json.dumps(json.dumps({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s1","namespace":"default"},"stringData":{"password":sys.argv[1]}})))' "$PW")
LASTAPPLIED2=$($RIG_PY -c 'import base64,json,sys; print(json.dumps(json.dumps({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s2","namespace":"default"},"data":{"conf":base64.b64encode(sys.argv[1].encode()).decode()},"type":"Opaque"},sort_keys=True)))' "$LAPW")

rig_pod agent 1 burstable default mcp-agent
cat >"$RIG_DIR/extra-state.json" <<JSON
{"secrets": [{"metadata": {"name": "s1", "namespace": "default", "labels": {"app": "db"},
   "annotations": {"kubectl.kubernetes.io/last-applied-configuration": $LASTAPPLIED}},
   "type": "Opaque", "data": {"password": "$(b64 "$PW")", "api-key": "$(b64 "$APIKEY")"}},
  {"metadata": {"name": "s2", "namespace": "default",
   "annotations": {"kubectl.kubernetes.io/last-applied-configuration": $LASTAPPLIED2}},
   "type": "Opaque", "data": {"conf": "$(b64 "$LAPW")"}}],
 "configmaps": [{"metadata": {"name": "cm1", "namespace": "default"},
   "data": {"mode": "demo", "aws": "aws_access_key_id=$AKID"}}],
 "pods": [{"metadata": {"name": "p1", "namespace": "default", "uid": "11111111-2222-3333-4444-777777777777"},
   "spec": {"nodeName": "node2", "containers": [{"name": "main", "image": "x", "env": [{"name": "GITHUB_TOKEN", "value": "$GHTOKEN"}]}]},
   "status": {"phase": "Running"}},
  {"metadata": {"name": "p2", "namespace": "default", "uid": "11111111-2222-3333-4444-777777777778"},
   "spec": {"nodeName": "node2", "containers": [{"name": "main", "image": "x"}]},
   "status": {"phase": "Running"}}],
 "logs": {"default/p1": ["starting", "token=$GHTOKEN", "using key $AKID", "ready"],
          "default/p2": ["cut ghp_$GHCUT", "never sent"]},
 "exec": {"pods": {"default/p2": {"/cut": "tail ghp_$GHCUT"}}}}
JSON
rig_fakeapi
rig_daemon || { fail "mcpgated starts"; summary; exit 1; }

# leaks FILE: prints the planted values (plain or base64) found in FILE
leaks() {
	local v f=$1
	for v in "${PLANTED[@]}"; do
		grep -qF -- "$v" "$f" && echo "$v"
		grep -qF -- "$(b64 "$v")" "$f" && echo "b64($v)"
	done
	return 0
}
# scan NAME FILE WANT...: no planted value in FILE, and each WANT string present
scan() {
	local name=$1 f=$2 l w missing=""; shift 2
	l=$(leaks "$f")
	for w in "$@"; do grep -qF -- "$w" "$f" || missing="$missing '$w'"; done
	if [ -z "$l" ] && [ -z "$missing" ] && [ -s "$f" ]; then
		pass "masked: $name"
	else
		fail "masked: $name (leaked: ${l:-none}; missing:${missing:- none}; $(head -c 300 "$f"))"
	fi
}
out() { echo "$RIG_DIR/out-$1"; }

in_pod agent "$K" get secret s1 -o yaml >"$(out 1)" 2>&1
scan "kubectl get secret -o yaml" "$(out 1)" "name: s1" "password:" "api-key:"
in_pod agent "$K" get secret s1 -o json >"$(out 2)" 2>&1
scan "kubectl get secret -o json" "$(out 2)" '"name": "s1"' '"app": "db"'
in_pod agent "$K" get secrets -o json >"$(out 3)" 2>&1
scan "kubectl get secrets -o json (list)" "$(out 3)" '"name": "s1"'
in_pod agent "$K" get secrets -o wide >"$(out 4)" 2>&1
scan "kubectl get secrets -o wide (Table)" "$(out 4)" "s1" "Opaque"
in_pod agent "$K" describe secret s1 >"$(out 5)" 2>&1
scan "kubectl describe secret" "$(out 5)" "s1" "password"
in_pod agent "$K" get --raw /api/v1/namespaces/default/secrets >"$(out 6)" 2>&1
scan "kubectl get --raw secrets" "$(out 6)" '"SecretList"'
# watches: run for a few seconds, then stop the client by its pid
watch_for() { # OUTFILE CMD...
	local f=$1 pid; shift
	in_pod_bg agent "$@" >"$f" 2>&1 &
	pid=$!; RIG_PIDS+=("$pid")
	rig_wait_log "$f" '"s1"' 8
	sleep 0.5
	rig_kill_pid "$pid"
}
watch_for "$(out 7)" "$K" get secrets -w -o json
scan "kubectl get secrets -w -o json (watch)" "$(out 7)" '"name": "s1"'
watch_for "$(out 8)" "$K" get --raw /api/v1/watch/namespaces/default/secrets
scan "kubectl get --raw watch (legacy path)" "$(out 8)" '"ADDED"'
in_pod agent "$K" get configmap cm1 -o yaml >"$(out 9)" 2>&1
scan "configmap: detector hit masked, other data intact" "$(out 9)" "mode: demo" "aws_access_key_id="
in_pod agent "$K" get pod p1 -o json >"$(out 10)" 2>&1
scan "pod env: token value masked" "$(out 10)" "GITHUB_TOKEN"
in_pod agent "$K" logs p1 >"$(out 11)" 2>&1
scan "kubectl logs: planted keys masked" "$(out 11)" "starting" "ready"
in_pod agent /usr/bin/python3 "$CLIENTS/py_client.py" read-secret default s1 >"$(out 12)" 2>&1
scan "python typed read_namespaced_secret decodes" "$(out 12)" '"decoded"' '***MASKED***'

# exec output, over WebSocket (kubectl 1.33) and SPDY (kubectl 1.27)
for v in 1.33 1.27; do
	in_pod agent /usr/lib/google-cloud-sdk/bin/kubectl.$v exec p1 -- echo "key=$AKID" "tok:$GHTOKEN" done >"$(out exec-$v)" 2>&1
	scan "kubectl $v exec output" "$(out exec-$v)" "key=" "done"
	printf 'in %s out\n' "$GHTOKEN" | in_pod agent /usr/lib/google-cloud-sdk/bin/kubectl.$v exec -i p1 -- cat >"$(out execi-$v)" 2>&1
	scan "kubectl $v exec -i echoing a planted token" "$(out execi-$v)" "in " " out"
done
check "exec tunnels counted their masked hits" grep -q '"maskedHits":[1-9]' "$RIG_DAEMON_LOG"

# the MCP server, unmodified, with its own masking off (so we see ours)
mcp() { in_pod agent env MASK_SECRETS=false /usr/bin/python3 "$CLIENTS/mcp_drive.py" --server-log "$RIG_DIR/mcp-server.log" "$@"; }
mcp --call 'tools/call:{"name":"kubectl_get","arguments":{"resourceType":"secrets","name":"s1","namespace":"default"}}' >"$(out 13)" 2>&1
scan "mcp kubectl_get secrets/s1" "$(out 13)" "s1"
mcp --call 'tools/call:{"name":"kubectl_get","arguments":{"resourceType":"secret/s1","namespace":"default","output":"yaml"}}' >"$(out 14)" 2>&1
scan "mcp kubectl_get secret/s1 yaml" "$(out 14)" "s1"
mcp --call 'tools/call:{"name":"kubectl_get","arguments":{"resourceType":"secrets","namespace":"default","output":"yaml"}}' >"$(out 15)" 2>&1
scan "mcp kubectl_get secrets (list, yaml)" "$(out 15)" "items:"
mcp --call 'tools/call:{"name":"kubectl_get","arguments":{"resourceType":"secrets","namespace":"default","labelSelector":"app=db","output":"yaml"}}' >"$(out 16)" 2>&1
scan "mcp kubectl_get secrets by label" "$(out 16)" "s1"
mcp --call 'tools/call:{"name":"kubectl_generic","arguments":{"command":"get","resourceType":"secret","name":"s1","namespace":"default","outputFormat":"json"}}' >"$(out 17)" 2>&1
scan "mcp kubectl_generic get secret -o json" "$(out 17)" "s1"
mcp --call 'tools/call:{"name":"kubectl_describe","arguments":{"resourceType":"pod","name":"p1","namespace":"default"}}' >"$(out 18)" 2>&1
scan "mcp kubectl_describe pod (env)" "$(out 18)" "GITHUB_TOKEN"
mcp --call 'tools/call:{"name":"kubectl_logs","arguments":{"resourceType":"pod","name":"p1","namespace":"default"}}' >"$(out 19)" 2>&1
scan "mcp kubectl_logs" "$(out 19)" "starting"
mcp --read 'k8s://default/pods' >"$(out 20)" 2>&1
scan "mcp resource k8s://default/pods" "$(out 20)" "p1"
mcp --call "tools/call:{\"name\":\"exec_in_pod\",\"arguments\":{\"name\":\"p1\",\"namespace\":\"default\",\"command\":[\"echo\",\"$AKID\",\"mcp-ok\"]}}" >"$(out 22)" 2>&1
scan "mcp exec_in_pod" "$(out 22)" "mcp-ok"

# ---- last-applied on a PartialObjectMetadata (issue #8, item 3) ----
# The shapes that carry s2's annotation but not s2 itself as a Secret: Table
# rows (includeObject=Metadata is kubectl get's default), the metadata-only
# forms, a metadata watch. Each as the API server answered it (the request
# log shows what was asked), and nothing of s2's last-applied data arrives.
SA=/var/run/secrets/kubernetes.io/serviceaccount
TBL='application/json;as=Table;v=v1;g=meta.k8s.io'
POM='application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io'
POML='application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io'
raw_get() { # OUTFILE ACCEPT PATH
	in_pod agent sh -c "curl -s -m 10 --cacert $SA/ca.crt -H \"Authorization: Bearer \$(cat $SA/token)\" \
		-H 'Accept: $2' 'https://10.96.0.1$3'" >"$1" 2>&1
}
S=/api/v1/namespaces/default/secrets
for c in "table-metadata|$TBL|$S" "table-metadata-one|$TBL|$S/s2" "table-object|$TBL|$S?includeObject=Object" \
	"table-none|$TBL|$S?includeObject=None" "pom|$POM|$S/s2" "poml|$POML|$S" \
	"pom-watch|$POM|$S?watch=1&timeoutSeconds=2" "table-watch|$TBL|$S?watch=1&timeoutSeconds=2"; do
	IFS='|' read -r name accept path <<<"$c"
	raw_get "$(out "la-$name")" "$accept" "$path"
	scan "last-applied via $name ($path)" "$(out "la-$name")" '"s2"'
done
check "the metadata shapes reached the API server as asked" \
	grep -q 'as=PartialObjectMetadataList' "$RIG_DIR/api-requests.jsonl"
# kubectl get secrets itself, with its log (-v=9) of the response body it got
in_pod agent "$K" get secrets -v=9 >"$(out la-kubectl)" 2>&1
scan "kubectl get secrets (Table, includeObject=Metadata; body as received)" "$(out la-kubectl)" \
	"s2" '"Response Body"' '{"kind":"Table"' "last-applied-configuration"

# ---- a token cut short by the end of a stream (issue #8, item 4) ----
# limitBytes stops the log one character short of the token's minimum
LIM=$(( ${#GHCUT} + 8 ))
in_pod agent "$K" logs p2 --limit-bytes=$LIM >"$(out cut-log)" 2>&1
scan "logs --limit-bytes cutting a token short" "$(out cut-log)" "cut ghp_" "***MASKED:github-token***"
check "the API server was asked for limitBytes=$LIM" grep -q "limitBytes=$LIM" "$RIG_DIR/api-requests.jsonl"
# an exec whose output ends mid-token (WebSocket close / SPDY FIN after it);
# the file is planted, so the token is not in the request's own command line
for v in 1.33 1.27; do
	in_pod agent /usr/lib/google-cloud-sdk/bin/kubectl.$v exec p2 -- cat /cut >"$(out cut-exec-$v)" 2>&1
	scan "kubectl $v exec output ending mid-token" "$(out cut-exec-$v)" "tail ghp_" "***MASKED:github-token***"
done

# what mcpgated recorded: counts, never values
check "the request log counts masked secret fields" grep -q '"secretFields":[1-9]' "$RIG_DAEMON_LOG"
check "no planted value in mcpgated's log" test -z "$(leaks "$RIG_DAEMON_LOG")"

# logs -f stays live through the text masker
in_pod_bg agent "$K" logs -f p1 >"$(out 21)" 2>&1 &
lpid=$!; RIG_PIDS+=("$lpid")
if rig_wait_log "$(out 21)" 'tick 2' 10 && kill -0 "$lpid" 2>/dev/null; then
	pass "masked logs -f still streams live"
else
	fail "masked logs -f still streams live"
fi
rig_kill_pid "$lpid"
scan "logs -f: planted keys masked" "$(out 21)" "starting"
summary
