#!/usr/bin/env bash
# Real clients' connection shapes through the real redirect: every request
# of a long sequential loop is answered, for `Connection: close`, HTTP/1.0
# and keep-alive clients, on fresh and on pooled upstream connections; and
# a connection whose origin names a pod the daemon does not know is refused.
set -u
. "$(dirname "$0")/lib/rig.sh"
rig_init
rig_certs

REQLOG="$RIG_DIR/api-requests.jsonl"
N=${MG_LOOP_N:-200}
SA=/var/run/secrets/kubernetes.io/serviceaccount
URL=https://10.96.0.1/api/v1/namespaces/default/pods

rig_pod agent 1 burstable default mcp-agent
# "ghost": a pod cgroup on this node whose pod the API does not list (deleted,
# or not listed yet); "notapod": a cgroup under kubepods that is no pod at all.
rig_pod ghost 1 burstable default mcp-agent
sed -i '/"name":"ghost"/d' "$RIG_DIR/pods.jsonl"
NOTAPOD="$RIG_KUBEPODS/burstable/notapod"
mkdir -p "$NOTAPOD/c1"
rig_fakeapi --split-head-ms 5
rig_daemon || { fail "mcpgated starts"; summary; exit 1; }

# api_count MARK: requests the fake API received carrying X-Loop: MARK
api_count() { grep -c "\"x-loop\", \"$1\"" "$REQLOG"; }

# loop NAME MARK CURL-ARGS...: N sequential GETs of a masked list (a PodList:
# its response head is held until the masker emits), one curl per request
# (a new client connection each), inside the selected pod. Every status must
# be 200 and the API must have received exactly N of them.
loop() {
	local name=$1 mark=$2 out bad; shift 2
	out=$(in_pod agent sh -c 'n=$1; shift; i=0; while [ $i -lt $n ]; do
		curl -s -o /dev/null -m 10 -w "%{http_code}\n" --cacert '"$SA"'/ca.crt \
			-H "Authorization: Bearer $(cat '"$SA"'/token)" "$@"; i=$((i + 1)); done' \
		sh "$N" -H "X-Loop: $mark" "$@" "$URL")
	sleep 0.3
	bad=$(grep -vc '^200$' <<<"$out")
	if [ "$(grep -c '^200$' <<<"$out")" = "$N" ] && [ "$(api_count "$mark")" = "$N" ]; then
		pass "$name: $N of $N answered 200, API received $N"
	else
		fail "$name: $((N - bad)) of $N answered 200 (others: $(grep -v '^200$' <<<"$out" | sort | uniq -c | tr '\n' ' ')), API received $(api_count "$mark")"
	fi
}

# keepalive NAME MARK: N GETs on one client connection (curl reuses it).
keepalive() {
	local name=$1 mark=$2 out args=() i
	for i in $(seq 1 "$N"); do args+=("$URL"); done
	out=$(in_pod agent sh -c 'curl -s --http1.1 -o /dev/null -m 60 -w "%{http_code} %{num_connects}\n" --cacert '"$SA"'/ca.crt \
		-H "Authorization: Bearer $(cat '"$SA"'/token)" "$@"' sh -H "X-Loop: $mark" "${args[@]}")
	sleep 0.3
	if [ "$(grep -c '^200 ' <<<"$out")" = "$N" ] && [ "$(awk '{s += $2} END {print s}' <<<"$out")" = 1 ] &&
		[ "$(api_count "$mark")" = "$N" ]; then
		pass "$name: $N of $N answered 200 on one connection, API received $N"
	else
		fail "$name: $(grep -c '^200 ' <<<"$out") of $N answered 200, connects $(awk '{s += $2} END {print s}' <<<"$out"), API received $(api_count "$mark")"
	fi
}

# ---- pooled upstream connections (the API keeps them open) ----
loop "Connection: close, pooled upstream" close-pooled --http1.1 -H 'Connection: close'
loop "HTTP/1.0, pooled upstream" http10-pooled --http1.0
keepalive "keep-alive, pooled upstream" ka-pooled
pooled=$(grep -c '"pooled":true' "$RIG_DAEMON_LOG")
check "those requests really went over pooled upstream connections ($pooled)" test "$pooled" -ge $((N * 2))

# restart_api ARGS...: the fake API again, with other connection habits.
restart_api() {
	rig_kill_pid "$RIG_FAKEAPI_PID"
	rm -f "$RIG_DIR/fakeapi.ready"
	rig_fakeapi --split-head-ms 5 "$@"
}

# ---- a fresh upstream connection per request (the API closes each) ----
restart_api --max-requests-per-conn 1
before=$(grep -c '"pooled":true' "$RIG_DAEMON_LOG")
loop "Connection: close, fresh upstream" close-fresh --http1.1 -H 'Connection: close'
loop "HTTP/1.0, fresh upstream" http10-fresh --http1.0
keepalive "keep-alive, fresh upstream" ka-fresh
check "those requests went over fresh upstream connections" \
	test "$(grep -c '"pooled":true' "$RIG_DAEMON_LOG")" = "$before"

# ---- the API closes a reused connection as a request arrives on it ----
# (its idle timeout racing the proxy's reuse): a GET is sent again on a new
# connection, and the client never sees the race.
restart_api --drop-request-every 3
loop "Connection: close, API closes reused upstream unanswered" close-drop --http1.1 -H 'Connection: close'
loop "HTTP/1.0, API closes reused upstream unanswered" http10-drop --http1.0
keepalive "keep-alive, API closes reused upstream unanswered" ka-drop
resent=$(grep -c '"event":"upstream_resend"' "$RIG_DAEMON_LOG")
check "those races happened and were resent ($resent)" test "$resent" -ge "$N"

# ---- a connection whose origin names a pod the daemon does not know ----
# The cgroup is put in the intercept map by hand (a stale entry, a pod deleted
# since, a pod the watch has not delivered yet): the kernel redirects, and the
# proxy must reset the connection instead of serving it with the daemon's
# credential (no --creds-provider here). Logged once per cgroup, counted always.
# intercept_add DIR: puts DIR's cgroup id in the intercept map as selected.
intercept_add() {
	local key
	key=$($RIG_PY -c 'import os,struct,sys; print(" ".join("%02x" % b for b in struct.pack("<Q", os.stat(sys.argv[1]).st_ino)))' "$1")
	# shellcheck disable=SC2086
	bpftool map update pinned "$RIG_PIN/intercept" key hex $key value hex 01 00 00 00 00 00 00 00
}
# refused NAME MARK CGROUP [in_pod args...]: three GETs, each just after
# CGROUP is (re)put in the intercept map (the daemon's own reconciling may
# rewrite an entry it did not make): none answered, none reached the API.
refused() {
	local name=$1 mark=$2 cg=$3 out="" i; shift 3
	for i in 1 2 3; do
		intercept_add "$cg"
		out+=$(in_pod "$@" curl -s -o /dev/null -m 5 -w "%{http_code} %{exitcode}" \
			--cacert "$SA/ca.crt" -H "X-Loop: $mark" "$URL")$'\n'
	done
	sleep 0.3
	if [ "$(grep -c '^000 ' <<<"$out")" = 3 ] && [ "$(api_count "$mark")" = 0 ]; then
		pass "$name: 3 connections refused, none reached the API"
	else
		fail "$name: $(tr '\n' ' ' <<<"$out"), API received $(api_count "$mark")"
	fi
}
before=$(rig_metric 'mcpgate_connections_total{result="rejected_unknown_pod"}'); before=${before:-0}
refused "a pod cgroup whose pod the API does not list" ghost-unknown "$(pod_var ghost CG)" ghost
refused "a cgroup under kubepods that is no pod" notapod-unknown "$NOTAPOD" ghost --cgroup "$NOTAPOD/c1"
after=$(rig_metric 'mcpgate_connections_total{result="rejected_unknown_pod"}')
check "refusals counted under rejected_unknown_pod ($before -> $after)" test "$((after - before))" = 6
for d in "$(pod_var ghost CG)" "$NOTAPOD"; do
	id=$(stat -c %i "$d")
	check "refusal logged once for cgroup $id" \
		test "$(grep '"reason":"unknown pod"' "$RIG_DAEMON_LOG" | grep -c "\"pod_cgroup_id\":$id,")" = 1
done
check "no request from an unknown pod was logged as served" \
	test -z "$(grep '"event":"request"' "$RIG_DAEMON_LOG" | grep '"pod":{"namespace":""')"
# and a known pod on the same node is still served
N=20 loop "a known pod is still served" known-after --http1.1
summary
