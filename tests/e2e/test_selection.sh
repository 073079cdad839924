#!/usr/bin/env bash
# Selection (#8 item 5): sticky per pod until deleted, pending while a pod's
# metadata is unknown, open connections cut when a pod becomes selected; and
# the ServiceAccount check (#8 item 8, control side).
set -u
. "$(dirname "$0")/lib/rig.sh"
rig_init
rig_certs

PROBE="$RIG_PY $RIG_ROOT_DIR/tests/e2e/lib/probe.py"
CTL="ctl-$RANDOM$RANDOM"
json_get() { $RIG_PY -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(d.get(sys.argv[1], ""))' "$1"; }
le64() { $RIG_PY -c 'import struct,sys; print(" ".join("%02x" % b for b in struct.pack("<Q", int(sys.argv[1]))))' "$1"; }
# map_state CGROUP-DIR: the intercept entry's state (0 pass, 1 selected, 2 pending) or "none"
map_state() {
	bpftool -j map lookup pinned "$RIG_PIN/intercept" key hex $(le64 "$(stat -c %i "$1")") 2>/dev/null |
		$RIG_PY -c 'import json,sys
try: print(int(json.load(sys.stdin)["value"][0], 16))
except Exception: print("none")'
}
wait_state() { local i; for i in $(seq 1 100); do [ "$(map_state "$1")" = "$2" ] && return 0; sleep 0.1; done; return 1; }
api() { # METHOD PATH [BODY] [CONTENT-TYPE]: as the daemon, from the API netns
	in_api curl -s -o /dev/null -w '%{http_code}' --cacert "$RIG_DIR/certs/ca.crt" -X "$1" \
		-H "Authorization: Bearer $(cat "$RIG_DIR/daemon-token")" \
		-H "Content-Type: ${4:-application/merge-patch+json}" ${3:+--data-binary "$3"} "https://10.96.0.1$2"
}
fake() { # PATH BODY: the fake API's control endpoint
	in_api curl -s -o /dev/null -w '%{http_code}' --cacert "$RIG_DIR/certs/ca.crt" -X POST \
		-H "Authorization: Bearer $CTL" --data-binary "$2" "https://10.96.0.1$1"
}
# direct_route POD: lets the pod reach the API server without mcpgate (as a
# real pod network does), so a connection that is not redirected goes direct.
direct_route() {
	ip netns exec "$(pod_var "$1" NETNS)" ip route add 10.96.0.0/16 via "$(pod_var "$1" NODEIP)"
}
# from_pod_ip POD: the fake API logged a request straight from the pod's address
from_pod_ip() { grep -q "\"remote\": *\"$(pod_var "$1" IP)" "$RIG_DIR/api-requests.jsonl"; }
not() { ! "$@"; }
pod_token_seen() { grep -qF "$(cat "$RIG_DIR/pods/$1/run/secrets/kubernetes.io/serviceaccount/token")" "$RIG_DIR/api-requests.jsonl"; }

# What each ServiceAccount may do, as the fake API answers SubjectAccessReviews:
# "leaky" may get Secrets in its namespace; "quiet" nothing.
cat >"$RIG_DIR/extra-state.json" <<'EOF'
{"subjectAccessRules": [{"user": "system:serviceaccount:default:leaky", "verbs": ["get"],
                         "resources": ["secrets"], "namespaces": ["default"]}]}
EOF
rig_pod sel 1 burstable default leaky
rig_pod quiet 1 burstable default quiet
rig_pod unsel 0 burstable default other
rig_fakeapi --control-token "$CTL" || { fail "fake API starts"; summary; exit 1; }
rig_pod late 0 burstable default late # after the fake API loaded its state: unknown to it
rig_daemon || { fail "mcpgated starts"; summary; exit 1; }
direct_route sel
direct_route unsel

# ---- ServiceAccount check (item 8) ----
gauge() { rig_metric "mcpgate_pod_serviceaccount_excess_rights{namespace=\"default\",pod=\"$1\",serviceaccount=\"$2\"}"; }
for i in $(seq 1 100); do [ -n "$(gauge sel leaky)" ] && [ -n "$(gauge quiet quiet)" ] && break; sleep 0.1; done
check "sa_check: a selected pod whose ServiceAccount may get secrets: gauge 1" test "$(gauge sel leaky)" = 1
check "sa_check: a selected pod whose ServiceAccount may do nothing: gauge 0" test "$(gauge quiet quiet)" = 0
check "sa_check: an unselected pod is not checked" test -z "$(gauge unsel other)"
check "sa_check: warning logged naming the pod and the right" \
	grep -q '"event":"pod_serviceaccount_rights","namespace":"default","pod":"sel",.*"allowed":\["get secrets"\]' "$RIG_DAEMON_LOG"
check "sa_check: no warning for the pod that can do nothing" \
	bash -c '! grep "\"event\":\"pod_serviceaccount_rights\"" "$1" | grep -q "\"pod\":\"quiet\""' _ "$RIG_DAEMON_LOG"
check "sa_check: the fake API received SubjectAccessReviews for both ServiceAccounts as the daemon" \
	$RIG_PY - "$RIG_DIR/api-requests.jsonl" <<'PY'
import json, sys
users = set()
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["method"] == "POST" and r["path"].startswith("/apis/authorization.k8s.io/v1/subjectaccessreviews"):
        assert r["user"] == "system:serviceaccount:mcpgate:mcpgated", r["user"]
        users.add(json.loads(r["body"])["spec"]["user"])
sys.exit(0 if {"system:serviceaccount:default:leaky", "system:serviceaccount:default:quiet"} <= users else 1)
PY

# ---- sticky selection (item 5) ----
sel_cg=$(pod_var sel CG)
check "sticky: the selected pod's entry is selected" test "$(map_state "$sel_cg")" = 1
# The pod's own identity may patch pods (through mcpgate, with whatever
# mcpgate sends upstream): it removes its own label.
out=$(in_pod sel kubectl label pod sel mcpgate.io/intercept- 2>&1)
check "sticky: the pod removed its own label ($out)" grep -q 'unlabeled' <<<"$out"
check "sticky: the fake API has the pod without the label" \
	bash -c '! grep -q "mcpgate.io/intercept" <<<"$1"' _ \
	"$(in_api curl -s --cacert "$RIG_DIR/certs/ca.crt" -H "Authorization: Bearer $(cat "$RIG_DIR/daemon-token")" https://10.96.0.1/api/v1/namespaces/default/pods/sel)"
rig_wait_log "$RIG_DAEMON_LOG" '"event":"selection_sticky","namespace":"default","name":"sel"' 10
check "sticky: the label change was seen and the selection kept (logged)" \
	grep -q '"event":"selection_sticky","namespace":"default","name":"sel"' "$RIG_DAEMON_LOG"
check "sticky: the entry is still selected" test "$(map_state "$sel_cg")" = 1
# Skipping verification, as an attacker would (curl -k with the pod's own
# token): a direct connection would carry that token to the API server.
out=$(in_pod sel sh -c 'curl -sk -m 5 -H "Authorization: Bearer $(cat /run/secrets/kubernetes.io/serviceaccount/token)" https://10.96.0.1/version' 2>&1)
check "sticky: the pod's next request still goes through mcpgate" grep -q gitVersion <<<"$out"
check "sticky: nothing came straight from the pod's address" not from_pod_ip sel
check "sticky: the pod's own token never reached the API" not pod_token_seen sel

# Deleted, then re-created under the same name with a new UID, unlabelled.
code=$(api DELETE /api/v1/namespaces/default/pods/sel)
check "recreate: pod deleted (HTTP $code)" test "$code" = 200
check "recreate: the deleted pod's cgroup is pending (its API connects refused)" wait_state "$sel_cg" 2
out=$(in_pod sel $PROBE 10.96.0.1 443 --timeout 2)
check "recreate: a leftover process of the deleted pod is refused" test "$(printf '%s' "$out" | json_get errno)" = EPERM
new_uid=$(cat /proc/sys/kernel/random/uuid)
new_cg="$RIG_KUBEPODS/burstable/pod$new_uid"
mkdir -p "$new_cg/$(pod_var sel CID)"
code=$(fake /_fake/pods "{\"metadata\":{\"name\":\"sel\",\"namespace\":\"default\",\"uid\":\"$new_uid\",\"labels\":{\"app\":\"sel\"}},\"spec\":{\"nodeName\":\"$RIG_NODE_NAME\",\"serviceAccountName\":\"leaky\",\"containers\":[{\"name\":\"main\",\"image\":\"busybox\"}]}}")
check "recreate: same name, new UID created (HTTP $code)" test "$code" = 201
check "recreate: the new pod (no label) is pass, not selected" wait_state "$new_cg" 0
out=$(in_pod sel --cgroup "$new_cg/$(pod_var sel CID)" $PROBE 10.96.0.1 443 --timeout 3 --send "")
check "recreate: the new pod's API connect is not redirected (goes direct)" \
	test "$(printf '%s' "$out" | json_get ok)" = True
check "recreate: ... and the proxy never saw it" not grep -q "\"event\":\"connect\",.*\"pod_cgroup_id\":$(stat -c %i "$new_cg")," "$RIG_DAEMON_LOG"

# ---- pending: a pod cgroup the API does not list yet (item 5) ----
late_cg=$(pod_var late CG)
check "pending: a pod cgroup unknown to the API is pending" wait_state "$late_cg" 2
ru0=$(rig_metric 'mcpgate_bpf_events_total{event="refused_unknown"}')
out=$(in_pod late $PROBE 10.96.0.1 443 --timeout 2)
check "pending: its API connect is refused (EPERM)" test "$(printf '%s' "$out" | json_get errno)" = EPERM
check "pending: counted" test "$(rig_metric 'mcpgate_bpf_events_total{event="refused_unknown"}')" -gt "$ru0"
code=$(fake /_fake/pods "$(grep "\"uid\":\"$(pod_var late UID)\"" "$RIG_DIR/pods.jsonl" | sed 's/"labels":{"app":"late"}/"labels":{"app":"late","mcpgate.io\/intercept":"true"}/')")
check "pending: the pod appears in the API, labelled (HTTP $code)" test "$code" = 201
check "pending -> selected" wait_state "$late_cg" 1
out=$(in_pod late $PROBE 10.96.0.1 443 --hold 0.3)
check "pending -> selected: redirected" test "$(printf '%s' "$out" | json_get peer)" = "10.96.0.1:443"
check "pending -> selected: the proxy knows the pod" \
	rig_wait_log "$RIG_DAEMON_LOG" "\"event\":\"connect\",.*\"name\":\"late\".*\"pid\":$(printf '%s' "$out" | json_get pid)," 5

# ---- an open connection is cut when its pod becomes selected (item 5) ----
unsel_cg=$(pod_var unsel CG)
check "cut: the unselected pod is pass" test "$(map_state "$unsel_cg")" = 0
(in_pod_bg unsel $RIG_PY -c '
import errno, json, socket, sys
s = socket.create_connection(("10.96.0.1", 443), timeout=5)
open(sys.argv[1], "w").write("%d" % s.getsockname()[1])
s.settimeout(30)
try:
    d = s.recv(1)
    r = "eof" if not d else "data"
except OSError as e:
    r = errno.errorcode.get(e.errno, "timeout") if e.errno else "timeout"
open(sys.argv[2], "w").write(json.dumps({"result": r}))' "$RIG_DIR/hold.port" "$RIG_DIR/hold.out" 2>"$RIG_DIR/hold.err") &
HOLD_PID=$!; RIG_PIDS+=("$HOLD_PID")
rig_wait_file "$RIG_DIR/hold.port" 5
check "cut: the unselected pod holds a direct connection to the API server" test -s "$RIG_DIR/hold.port"
code=$(api PATCH /api/v1/namespaces/default/pods/unsel '{"metadata":{"labels":{"mcpgate.io/intercept":"true"}}}')
check "cut: the pod is labelled (HTTP $code)" test "$code" = 200
check "cut: pass -> selected" wait_state "$unsel_cg" 1
rig_wait_file "$RIG_DIR/hold.out" 15
res=$(cat "$RIG_DIR/hold.out" 2>/dev/null)
check "cut: the long-lived direct connection was cut ($res)" grep -qE '"result": "(ECONNABORTED|ECONNRESET)"' <<<"$res"
check "cut: logged with the pod and the count" \
	grep -q '"event":"pod_sockets_cut","pod_cgroup_id":'"$(stat -c %i "$unsel_cg")"',"namespace":"default","name":"unsel".*"sockets":[1-9]' "$RIG_DAEMON_LOG"
check "cut: counted" test "$(rig_metric mcpgate_pod_sockets_cut_total)" -ge 1
before=$(grep -c . "$RIG_DIR/api-requests.jsonl")
out=$(in_pod unsel kubectl get --raw /version 2>&1)
check "cut: the pod's next request goes through mcpgate" grep -q gitVersion <<<"$out"
check "cut: ... and reached the API from the node, as the daemon" \
	bash -c 'tail -n +$(($1 + 1)) "$2" | grep "\"path\": *\"/version" | grep -q "\"remote\": *\"10.200.0.1"' _ "$before" "$RIG_DIR/api-requests.jsonl"

# ---- deselecting is an admin act: the selector's generation ----
quiet_cg=$(pod_var quiet CG)
code=$(api PATCH /api/v1/namespaces/default/pods/quiet '{"metadata":{"labels":{"mcpgate.io/intercept":null}}}')
check "generation: quiet's label removed (HTTP $code)" test "$code" = 200
rig_wait_log "$RIG_DAEMON_LOG" '"event":"selection_sticky","namespace":"default","name":"quiet"' 10
rig_kill_pid "$RIG_DAEMON_PID"
rig_daemon || fail "mcpgated restarts with the same selector"
check "generation: a restart with the same selector keeps the selection sticky" test "$(map_state "$quiet_cg")" = 1
check "generation: ... and says so" grep -q '"event":"selection_sticky","namespace":"default","name":"quiet"' "$RIG_DAEMON_LOG"

# ---- --unknown-pods refuse (the default) while the daemon is down ----
check "refuse is the default" grep -q '"unknown pods: refuse"\|unknown pods: refuse' <("$RIG_BUILD/mcpgatectl" status --pin-dir "$RIG_PIN")
rig_kill_pid "$RIG_DAEMON_PID"
down_cg="$RIG_KUBEPODS/burstable/pod$(cat /proc/sys/kernel/random/uuid)/$(pod_var late CID)"
mkdir -p "$down_cg"
out=$(in_pod late --cgroup "$down_cg" $PROBE 10.96.0.1 443 --timeout 2)
check "daemon down: a pod cgroup created meanwhile (no entry) is refused" \
	test "$(printf '%s' "$out" | json_get errno)" = EPERM
out=$(in_pod sel --cgroup "$new_cg/$(pod_var sel CID)" $PROBE 10.96.0.1 443 --timeout 3 --send "")
check "daemon down: a known unselected pod keeps its pass entry (direct)" test "$(printf '%s' "$out" | json_get ok)" = True
out=$(in_pod quiet $PROBE 10.96.0.1 443 --timeout 2)
check "daemon down: a selected pod is refused, never direct" test "$(printf '%s' "$out" | json_get errno)" = ECONNREFUSED
# Restarted by the admin with another selector (the same label, now limited
# to one namespace): every selection is judged again by its labels.
rig_daemon --select-labels 'mcpgate.io/intercept==true' --select-namespaces default || fail "mcpgated restarts with another selector"
check "restart: the pod created while down is classified (pending: unknown to the API)" wait_state "$(dirname "$down_cg")" 2
check "generation: another selector deselects the pod whose label is gone" wait_state "$quiet_cg" 0
check "generation: ... logged for that pod" \
	grep -q '"event":"pod_state".*"from":"selected","state":"pass","why":"deselected: the selector changed","namespace":"default","name":"quiet"' "$RIG_DAEMON_LOG"
check "generation: a pod that still matches stays selected" test "$(map_state "$unsel_cg")" = 1
check "generation: ... and its open connections are not cut again" not grep -q '"event":"pod_sockets_cut"' "$RIG_DAEMON_LOG"

# ---- SIGHUP: the admin reloads the selector from the --config file ----
printf '{"select-labels": "mcpgate.io/intercept=true", "select-namespaces": "default"}\n' >"$RIG_DIR/sel.json"
rig_kill_pid "$RIG_DAEMON_PID"
rig_daemon --config "$RIG_DIR/sel.json" || fail "mcpgated restarts with --config"
check "reload: the same selector from a file keeps the selections" test "$(map_state "$unsel_cg")" = 1
printf '{"select-labels": "mcpgate.io/intercept=true", "select-namespaces": "team-ai"}\n' >"$RIG_DIR/sel.json"
kill -HUP "$RIG_DAEMON_PID"
check "reload: SIGHUP with another selector deselects pods it no longer matches" wait_state "$unsel_cg" 0
check "reload: ... logged per pod" \
	grep -q '"event":"pod_state".*"why":"deselected: the selector changed","namespace":"default","name":"unsel"' "$RIG_DAEMON_LOG"
check "reload: ... and the new selector logged" grep -q '"event":"selector".*"namespaces":"team-ai".*"changed":true' "$RIG_DAEMON_LOG"
printf '{"select-labels": "a=b=c"}\n' >"$RIG_DIR/sel.json"
kill -HUP "$RIG_DAEMON_PID"
check "reload: a bad selector is refused in one log line, nothing changes" \
	rig_wait_log "$RIG_DAEMON_LOG" '"event":"reload_failed","error":"bad label selector requirement: a=b=c"' 5
check "reload: ... the daemon still runs" kill -0 "$RIG_DAEMON_PID"

summary
