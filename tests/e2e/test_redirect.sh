#!/usr/bin/env bash
# Kernel path: the eBPF redirect of selected pods' API connections, pod
# identity from the kernel, fail-closed pinning, uninstall, bad environments;
# pod states (pending, pass, refuse-unknown), stale origins, the ABI check
# on reuse, the daemon as a pod under the attach point.
set -u
. "$(dirname "$0")/lib/rig.sh"
rig_init
rig_certs

PROBE="$RIG_PY $RIG_ROOT_DIR/tests/e2e/lib/probe.py"
json_get() { $RIG_PY -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(d.get(sys.argv[1], ""))' "$1"; }
connects() { grep -c '"event":"connect"' "$RIG_DAEMON_LOG"; }
api_conns() { grep -c . "$RIG_DIR/api-requests.jsonl" 2>/dev/null || echo 0; }
# logged_pid PID: the daemon logged a connect for this pid
logged_pid() { rig_wait_log "$RIG_DAEMON_LOG" "\"pid\":$1," 5; }
cgtree() { bpftool cgroup tree "$RIG_CGROOT" 2>/dev/null; }

# ---- bad environments: exit 2, one line, nothing attached or pinned ----
bad_env() { # NAME WANT-IN-MESSAGE ARGS...
	local name=$1 want=$2 out rc; shift 2
	out=$("$@" 2>&1 >/dev/null); rc=$?
	if [ "$rc" = 2 ] && [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] && printf '%s' "$out" | grep -qi -- "$want" &&
		[ ! -e "$RIG_PIN" ] && [ -z "$(cgtree | grep -E 'connect|sock_ops|getpeername|egress')" ]; then
		pass "bad environment: $name -> exit 2: $out"
	else
		fail "bad environment: $name (rc=$rc, out=$out)"
	fi
}
D="$RIG_BUILD/mcpgated --pin-dir $RIG_PIN --api-server https://10.96.0.1 --admin-listen 127.0.0.1:19940 --manage-address false"
bad_env "no BTF" "BTF" $D --cgroup-path "$RIG_KUBEPODS" --btf-path /nonexistent/vmlinux
bad_env "attach path missing" "attach path" $D --cgroup-path "$RIG_KUBEPODS/nope"
bad_env "not cgroup v2" "cgroup v2" $D --cgroup-path "$RIG_DIR"
bad_env "no BPF rights" "BPF rights" setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all $D --cgroup-path "$RIG_KUBEPODS"
bad_env "bad config" "proxy-port" $D --cgroup-path "$RIG_KUBEPODS" --proxy-port 70000
bad_env "unknown option" "unknown" $D --cgroup-path "$RIG_KUBEPODS" --no-such-flag 1

# ---- the node: three pods, the fake API, the daemon ----
rig_pod sel 1 burstable default mcp-agent
rig_pod unsel 0 burstable default other-sa
rig_pod guar 1 guaranteed team-ai mcp-guar
rig_fakeapi
rig_daemon --unknown-pods pass || { fail "mcpgated starts"; summary; exit 1; }
pass "mcpgated starts, attaches, syncs pods and endpoints"

check "both selected pods are in intercept" test "$(rig_metric mcpgate_intercepted_pods)" = 2

# IPv4 ClusterIP
out=$(in_pod sel $PROBE 10.96.0.1 443 --hold 0.3)
pid=$(printf '%s' "$out" | json_get pid)
check "IPv4: selected pod reaches the proxy" test "$(printf '%s' "$out" | json_get ok)" = True
check "IPv4: getpeername shows 10.96.0.1:443" test "$(printf '%s' "$out" | json_get peer)" = "10.96.0.1:443"
if logged_pid "$pid"; then
	line=$(grep "\"pid\":$pid," "$RIG_DAEMON_LOG" | head -1)
	check "IPv4: identity logged (ns/name/uid/sa)" \
		grep -q "\"namespace\":\"default\",\"name\":\"sel\",\"uid\":\"$(pod_var sel UID)\",\"serviceAccount\":\"mcp-agent\"" <<<"$line"
	check "IPv4: container id logged" grep -q "\"container\":\"$(pod_var sel CID)\"" <<<"$line"
	check "IPv4: original destination logged" grep -q '"orig_dst":"10.96.0.1:443"' <<<"$line"
else
	fail "IPv4: connect with pid $pid logged"
fi

# IPv6 ClusterIP
out=$(in_pod sel $PROBE fd00:96::1 443 --hold 0.3)
pid=$(printf '%s' "$out" | json_get pid)
check "IPv6: getpeername shows [fd00:96::1]:443" test "$(printf '%s' "$out" | json_get peer)" = "[fd00:96::1]:443"
check "IPv6: connect logged with pid" logged_pid "$pid"

# IPv4-mapped IPv6
out=$(in_pod sel $PROBE ::ffff:10.96.0.1 443 --family 6 --hold 0.3)
pid=$(printf '%s' "$out" | json_get pid)
check "v4-mapped: getpeername shows [::ffff:10.96.0.1]:443" test "$(printf '%s' "$out" | json_get peer)" = "[::ffff:10.96.0.1]:443"
check "v4-mapped: connect logged with pid" logged_pid "$pid"

# EndpointSlice address: learnt from the API, not configured
out=$(in_pod sel $PROBE 10.97.0.10 6443 --hold 0.3)
pid=$(printf '%s' "$out" | json_get pid)
check "EndpointSlice address: redirected" test "$(printf '%s' "$out" | json_get peer)" = "10.97.0.10:6443"
check "EndpointSlice address: logged" logged_pid "$pid"

# Guaranteed-QoS pod in another namespace
out=$(in_pod guar $PROBE 10.96.0.1 443 --hold 0.3)
pid=$(printf '%s' "$out" | json_get pid)
if logged_pid "$pid"; then
	check "guaranteed pod: identity logged" grep -q "\"pid\":$pid,.*" <(grep "\"namespace\":\"team-ai\",\"name\":\"guar\"" "$RIG_DAEMON_LOG")
else
	fail "guaranteed pod: connect logged"
fi

# A real client through the (TCP) relay: kubectl's in-cluster config
out=$(in_pod sel kubectl get --raw /version 2>&1)
check "kubectl in the pod reaches the API through the proxy" grep -q gitVersion <<<"$out"
check "the fake API saw the request come from the node, not the pod" \
	grep -q '"remote": *"10.200.0.1' "$RIG_DIR/api-requests.jsonl"

# Unselected pod: not redirected, so it has no route to the API address
before=$(connects)
out=$(in_pod unsel $PROBE 10.96.0.1 443 --timeout 2)
check "unselected pod: not redirected (no route, fails)" test "$(printf '%s' "$out" | json_get ok)" = False
check "unselected pod: nothing logged by mcpgated" test "$(connects)" = "$before"

# Selected pod, another address: untouched
nsenter --net="/run/netns/$RIG_NODE" $RIG_PY -c '
import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("10.100.1.1", 8080)); s.listen(8)
open(sys.argv[1],"w").write("ready")
c,a=s.accept(); c.sendall(b"direct\n"); c.close()' "$RIG_DIR/direct.ready" >/dev/null 2>&1 &
RIG_PIDS+=($!)
rig_wait_file "$RIG_DIR/direct.ready" 5
passed_before=$(rig_metric 'mcpgate_bpf_events_total{event="passed"}')
before=$(connects)
out=$(in_pod sel $PROBE 10.100.1.1 8080 --send "")
check "selected pod, other address: direct connection" test "$(printf '%s' "$out" | json_get received)" = "direct"
check "selected pod, other address: not logged by mcpgated" test "$(connects)" = "$before"
check "selected pod, other address: counted as passed" test "$(rig_metric 'mcpgate_bpf_events_total{event="passed"}')" -gt "$passed_before"

# A new container cgroup in a selected pod: covered with no map update
map_before=$(bpftool map dump pinned "$RIG_PIN/intercept" 2>&1)
newcid=$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)
mkdir "$(pod_var sel CG)/$newcid"
RIG_CGROUPS+=("$(pod_var sel CG)/$newcid")
out=$(in_pod sel --cgroup "$(pod_var sel CG)/$newcid" $PROBE 10.96.0.1 443 --hold 0.3)
pid=$(printf '%s' "$out" | json_get pid)
check "new container: intercepted" test "$(printf '%s' "$out" | json_get peer)" = "10.96.0.1:443"
if logged_pid "$pid"; then
	check "new container: its container id logged" grep -q "\"pid\":$pid,.*" <(grep "\"container\":\"$newcid\"" "$RIG_DAEMON_LOG")
else
	fail "new container: logged"
fi
check "new container: intercept map unchanged" test "$(bpftool map dump pinned "$RIG_PIN/intercept" 2>&1)" = "$map_before"

# The proxy port from outside any selected pod: closed and counted
rej_before=$(rig_metric 'mcpgate_connections_total{result="rejected_no_origin"}')
out=$(in_node $PROBE 169.254.77.1 6443 --send "GET / HTTP/1.1\r\n\r\n")
check "proxy port from the node: nothing served" test -z "$(printf '%s' "$out" | json_get received)"
check "proxy port from the node: rejected and counted" \
	test "$(rig_metric 'mcpgate_connections_total{result="rejected_no_origin"}')" -gt "$rej_before"
om_before=$(rig_metric 'mcpgate_bpf_events_total{event="origin_missing"}')
out=$(in_pod sel $PROBE 169.254.77.1 6443 --send "x")
check "proxy port dialled directly from a pod: counted by the kernel as origin_missing" \
	test "$(rig_metric 'mcpgate_bpf_events_total{event="origin_missing"}')" -gt "$om_before"

# ---- stale origins (issue 8 item 6) ----
# A selected pod's redirected connection is reset while it waits in the
# proxy's accept queue (daemon stopped); then an unselected process in the
# same network namespace (hostNetwork: two cgroups, one netns) binds the same
# source port and dials the proxy address directly. It must be turned away as
# having no origin, never served as the selected pod.
STALE="$RIG_PY $RIG_ROOT_DIR/tests/e2e/lib/stale_origin.py"
unsel_cg="$(pod_var unsel CG)/$(pod_var unsel CID)"
stale_case() { # NAME SRC PORT API-ADDR API-PORT PROXY-ADDR
	local name=$1 src=$2 port=$3 api=$4 aport=$5 proxy=$6 marker out rej om
	marker="stale-origin-$name-$RANDOM"
	rej=$(rig_metric 'mcpgate_connections_total{result="rejected_no_origin"}')
	om=$(rig_metric 'mcpgate_bpf_events_total{event="origin_missing"}')
	kill -STOP "$RIG_DAEMON_PID"
	out=$(in_pod sel $STALE reset "$src" "$port" "$api" "$aport")
	if ! grep -q '"connected": true' <<<"$out"; then
		kill -CONT "$RIG_DAEMON_PID"; fail "stale origin ($name): first connect ($out)"; return
	fi
	(in_pod_bg sel --cgroup "$unsel_cg" $STALE reuse "$src" "$port" "$proxy" 6443 \
		"/api/v1/namespaces/default/pods/$marker" >"$RIG_DIR/stale-$name.out" 2>&1) &
	local cpid=$! i
	# resume the daemon once the reuse connection waits in the accept queue
	for i in $(seq 1 50); do
		ip netns exec "$(pod_var sel NETNS)" ss -Htn state established "( sport = :$port )" | grep -q . && break
		sleep 0.1
	done
	kill -CONT "$RIG_DAEMON_PID"
	wait "$cpid"
	out=$(cat "$RIG_DIR/stale-$name.out")
	check "stale origin ($name): a reused 4-tuple from another cgroup is not served as the first pod" \
		grep -q '"served": false' <<<"$out"
	check "stale origin ($name): nothing reached the API server" \
		test -z "$(grep -- "$marker" "$RIG_DIR/api-requests.jsonl")"
	check "stale origin ($name): rejected as having no origin" \
		test "$(rig_metric 'mcpgate_connections_total{result="rejected_no_origin"}')" -gt "$rej"
	check "stale origin ($name): counted by the kernel as origin_missing" \
		test "$(rig_metric 'mcpgate_bpf_events_total{event="origin_missing"}')" -gt "$om"
}
stale_case ipv4 "$(pod_var sel IP)" 40123 10.96.0.1 443 169.254.77.1
stale_case ipv6 fd00:100:1::2 40124 fd00:96::1 443 fd00:6d67::1
stale_case v4-mapped ::ffff:"$(pod_var sel IP)" 40125 ::ffff:10.96.0.1 443 ::ffff:169.254.77.1
# The fix must not eat the origins of connections the proxy serves.
out=$(in_pod sel $PROBE 10.96.0.1 443 --hold 0.3)
check "stale origin: redirect still served afterwards" test "$(printf '%s' "$out" | json_get peer)" = "10.96.0.1:443"

# ---- pods the daemon has not classified (issue 8 item 5, kernel side) ----
# "ghost": a pod cgroup the API does not know (created after the fake API's
# state); "stray": a cgroup under the attach point that is not a pod's.
rig_pod ghost 0
ghost_cg=$(pod_var ghost CG)
stray_cg="$RIG_KUBEPODS/stray-$RIG_ID"
mkdir -p "$stray_cg"; RIG_CGROUPS+=("$stray_cg")
le64() { $RIG_PY -c 'import struct,sys; print(" ".join("%02x" % b for b in struct.pack("<Q", int(sys.argv[1]))))' "$1"; }
set_state() { # CGROUP-DIR STATE|del
	local key; key=$(le64 "$(stat -c %i "$1")")
	if [ "$2" = del ]; then bpftool map delete pinned "$RIG_PIN/intercept" key hex $key
	else bpftool map update pinned "$RIG_PIN/intercept" key hex $key value hex "0$2" 00 00 00 00 00 00 00; fi
}
ru() { rig_metric 'mcpgate_bpf_events_total{event="refused_unknown"}'; }
# A pod port on the node with nothing listening: a connect that passes the
# hook gets ECONNREFUSED (RST), one refused by the hook EPERM.
node_ip=$(pod_var ghost NODEIP)

ru0=$(ru)
out=$(in_pod ghost --cgroup "$stray_cg" $PROBE 10.96.0.1 443 --timeout 2)
check "unknown cgroup, --unknown-pods pass: API connect passes (no route here)" \
	test "$(printf '%s' "$out" | json_get errno)" = ENETUNREACH
check "unknown cgroup, --unknown-pods pass: not counted" test "$(ru)" = "$ru0"

# The states are set by hand on the stray cgroup: the daemon manages the
# entries of pod cgroups (ghost is pending to it) and would race a hand-made
# state there, but leaves a cgroup that is no pod's alone.
set_state "$stray_cg" 2
for dst in "10.96.0.1 443" "fd00:96::1 443" "::ffff:10.96.0.1 443 --family 6" "10.97.0.10 6443"; do
	ru0=$(ru)
	# shellcheck disable=SC2086
	out=$(in_pod ghost --cgroup "$stray_cg" $PROBE $dst --timeout 2)
	pid=$(printf '%s' "$out" | json_get pid)
	check "pending pod: API connect to ${dst%% --*} refused (EPERM)" test "$(printf '%s' "$out" | json_get errno)" = EPERM
	check "pending pod: ${dst%% --*} counted as refused_unknown" test "$(ru)" -gt "$ru0"
	check "pending pod: ${dst%% --*} logged by the daemon with pid and pod cgroup" \
		rig_wait_log "$RIG_DAEMON_LOG" "\"event\":\"refused_unknown\",\"pod_cgroup_id\":$(stat -c %i "$stray_cg"),.*\"pid\":$pid[,}]" 5
done
out=$(in_pod ghost --cgroup "$stray_cg" $PROBE "$node_ip" 9 --timeout 2)
check "pending pod: a non-API connect passes" test "$(printf '%s' "$out" | json_get errno)" = ECONNREFUSED
set_state "$stray_cg" 0
out=$(in_pod ghost --cgroup "$stray_cg" $PROBE 10.96.0.1 443 --timeout 2)
check "pass state: API connect untouched (no route here)" test "$(printf '%s' "$out" | json_get errno)" = ENETUNREACH
set_state "$stray_cg" 1
# The proxy resets this connection at once (no pod has this cgroup), maybe
# before connect() even returns (ECONNRESET): the proof of the redirect is a
# connect that reached a listener where there is no route, counted by the
# kernel as redirected.
rd0=$(rig_metric 'mcpgate_bpf_events_total{event="redirected"}')
out=$(in_pod ghost --cgroup "$stray_cg" $PROBE 10.96.0.1 443 --timeout 2)
check "selected state: API connect redirected (connected, or reset by the proxy)" \
	grep -Eq '"ok": true|"errno": "ECONNRESET"' <<<"$out"
check "selected state: counted as redirected" \
	test "$(rig_metric 'mcpgate_bpf_events_total{event="redirected"}')" -gt "$rd0"
set_state "$stray_cg" del

# --unknown-pods refuse, written into the pinned settings by a restarted
# daemon that reuses the links.
rig_kill_pid "$RIG_DAEMON_PID"
rig_daemon --unknown-pods refuse || fail "mcpgated restarts with --unknown-pods refuse"
check "refuse-unknown: pinned links reused" grep -q '"reused":true' "$RIG_DAEMON_LOG"
ru0=$(ru)
out=$(in_pod ghost --cgroup "$stray_cg" $PROBE 10.96.0.1 443 --timeout 2)
pid=$(printf '%s' "$out" | json_get pid)
check "refuse-unknown: API connect of a cgroup with no entry refused (EPERM)" \
	test "$(printf '%s' "$out" | json_get errno)" = EPERM
check "refuse-unknown: counted" test "$(ru)" -gt "$ru0"
check "refuse-unknown: logged with pid" rig_wait_log "$RIG_DAEMON_LOG" "\"event\":\"refused_unknown\",.*\"pid\":$pid[,}]" 5
out=$(in_pod ghost --cgroup "$stray_cg" $PROBE "$node_ip" 9 --timeout 2)
check "refuse-unknown: a non-API connect passes" test "$(printf '%s' "$out" | json_get errno)" = ECONNREFUSED
set_state "$stray_cg" 0
out=$(in_pod ghost --cgroup "$stray_cg" $PROBE 10.96.0.1 443 --timeout 2)
check "refuse-unknown: a cgroup with a pass entry is untouched" test "$(printf '%s' "$out" | json_get errno)" = ENETUNREACH
set_state "$stray_cg" del
out=$(in_pod sel $PROBE 10.96.0.1 443 --hold 0.3)
check "refuse-unknown: selected pod still redirected" test "$(printf '%s' "$out" | json_get peer)" = "10.96.0.1:443"
st=$("$RIG_BUILD/mcpgatectl" status --pin-dir "$RIG_PIN")
check "mcpgatectl status: shows refuse-unknown, the ABI and the new counters" \
	grep -q 'unknown pods: refuse' <<<"$st" && grep -q "abi: v" <<<"$st" &&
	grep -q 'refused_unknown' <<<"$st" && grep -q 'egress_dropped' <<<"$st"
rig_kill_pid "$RIG_DAEMON_PID"
rig_daemon --unknown-pods pass || fail "mcpgated restarts with --unknown-pods pass"
out=$(in_pod ghost --cgroup "$stray_cg" $PROBE 10.96.0.1 443 --timeout 2)
check "back to pass: the flag is rewritten on reuse" test "$(printf '%s' "$out" | json_get errno)" = ENETUNREACH

# ---- ABI check on reuse ----
# A pinned install of another ABI (settings.abi_version) is refused in one line.
bpftool map update pinned "$RIG_PIN/settings" key hex 00 00 00 00 value hex \
	$(bpftool -j map lookup pinned "$RIG_PIN/settings" key hex 00 00 00 00 | $RIG_PY -c '
import json,sys
v=[int(x,16) for x in json.load(sys.stdin)["value"]]
v[40:44]=[1,0,0,0]
print(" ".join("%02x"%b for b in v))')
rig_kill_pid "$RIG_DAEMON_PID"
out=$(nsenter --net="/run/netns/$RIG_NODE" "$RIG_BUILD/mcpgated" --cgroup-path "$RIG_KUBEPODS" --pin-dir "$RIG_PIN" \
	--api-server https://10.96.0.1 --admin-listen 127.0.0.1:19941 --manage-address false 2>&1 >/dev/null); rc=$?
check "ABI mismatch on reuse: exit 2 with one line naming both versions ($out)" \
	test "$rc" = 2 -a "$(printf '%s\n' "$out" | wc -l)" = 1 && grep -q 'pinned mcpgate programs are ABI v1, this is v2: run mcpgatectl uninstall' <<<"$out"
bpftool map update pinned "$RIG_PIN/settings" key hex 00 00 00 00 value hex \
	$(bpftool -j map lookup pinned "$RIG_PIN/settings" key hex 00 00 00 00 | $RIG_PY -c '
import json,sys
v=[int(x,16) for x in json.load(sys.stdin)["value"]]
v[40:44]=[2,0,0,0]
print(" ".join("%02x"%b for b in v))')
# The right version but a map of another layout (a change that forgot the
# version bump): refused as well, naming the map.
cid=$(bpftool -j map show pinned "$RIG_PIN/counters" | $RIG_PY -c 'import json,sys; print(json.load(sys.stdin)["id"])')
rm "$RIG_PIN/counters"
bpftool map create "$RIG_PIN/counters" type percpu_array key 4 value 4 entries 7 name counters
out=$(nsenter --net="/run/netns/$RIG_NODE" "$RIG_BUILD/mcpgated" --cgroup-path "$RIG_KUBEPODS" --pin-dir "$RIG_PIN" \
	--api-server https://10.96.0.1 --admin-listen 127.0.0.1:19941 --manage-address false 2>&1 >/dev/null); rc=$?
check "map layout mismatch on reuse: exit 2, one line naming the map ($out)" \
	test "$rc" = 2 -a "$(printf '%s\n' "$out" | wc -l)" = 1 && grep -q 'ABI v2, this is v2 (map counters: .*value 4.*): run mcpgatectl uninstall' <<<"$out"
rm "$RIG_PIN/counters"
bpftool map pin id "$cid" "$RIG_PIN/counters"
rig_daemon || fail "mcpgated restarts after the ABI check"

# SIGKILL: interception stays, connections are refused, never direct
kill -KILL "$RIG_DAEMON_PID"; wait "$RIG_DAEMON_PID" 2>/dev/null
api_before=$(api_conns)
out=$(in_pod sel $PROBE 10.96.0.1 443 --timeout 2)
check "daemon killed: selected pod's connect is refused" test "$(printf '%s' "$out" | json_get errno)" = ECONNREFUSED
check "daemon killed: nothing reached the API" test "$(api_conns)" = "$api_before"
rig_daemon || fail "mcpgated restarts"
check "restart: pinned links reused" grep -q '"reused":true' "$RIG_DAEMON_LOG"
out=$(in_pod sel $PROBE 10.96.0.1 443 --hold 0.3)
check "restart: redirect works again" test "$(printf '%s' "$out" | json_get peer)" = "10.96.0.1:443"
for t in cgroup_inet4_connect cgroup_inet6_connect cgroup_sock_ops cgroup_inet4_getpeername cgroup_inet6_getpeername cgroup_inet_egress; do
	check "restart: one $t attachment" test "$(cgtree | awk -v t="$t" '$2 == t' | wc -l)" = 1
done

# Pod deleted in the API: its cgroup leaves intercept
in_api curl -s -o /dev/null --cacert "$RIG_DIR/certs/ca.crt" -X DELETE \
	-H "Authorization: Bearer $(cat "$RIG_DIR/daemon-token")" \
	"https://10.96.0.1/api/v1/namespaces/team-ai/pods/guar"
for i in $(seq 1 50); do [ "$(rig_metric mcpgate_intercepted_pods)" = 1 ] && break; sleep 0.1; done
check "pod deleted: released from intercept" test "$(rig_metric mcpgate_intercepted_pods)" = 1

# The daemon as a pod under the attach point (as in a cluster), with
# --unknown-pods refuse: its own API calls (the pod list that classifies
# every pod) must not be refused. The test shell joins a pod cgroup while it
# starts the daemon, so the daemon is born there.
rig_kill_pid "$RIG_DAEMON_PID"
self_cg="$RIG_KUBEPODS/besteffort/pod$(cat /proc/sys/kernel/random/uuid)/$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)"
mkdir -p "$self_cg"; RIG_CGROUPS+=("$(dirname "$self_cg")")
orig_cg="$RIG_CG2$(sed -n 's/^0:://p' /proc/self/cgroup)"
echo $$ >"$self_cg/cgroup.procs"
rig_daemon --unknown-pods refuse; rc=$?
echo $$ >"$orig_cg/cgroup.procs"
check "daemon as a pod under the attach point, --unknown-pods refuse: becomes ready" test "$rc" = 0
check "daemon as a pod: its own cgroup has a pass entry" \
	grep -q "$(stat -c %i "$self_cg")" <(bpftool -j map dump pinned "$RIG_PIN/intercept" | $RIG_PY -c '
import json,sys
for e in json.load(sys.stdin):
    k = int.from_bytes(bytes(int(x,16) for x in e["key"]), "little"); v = [int(x,16) for x in e["value"]]
    if v[0] == 0: print(k)')
check "daemon as a pod: refuse-unknown is on (its own calls got through anyway)" \
	grep -q 'unknown pods: refuse' <("$RIG_BUILD/mcpgatectl" status --pin-dir "$RIG_PIN")

# Uninstall: nothing attached, nothing pinned, no more redirect
rig_kill_pid "$RIG_DAEMON_PID"
check "mcpgatectl uninstall succeeds" "$RIG_BUILD/mcpgatectl" uninstall --pin-dir "$RIG_PIN"
check "uninstall: no program attached" test -z "$(cgtree | grep -E 'connect|sock_ops|getpeername|egress')"
check "uninstall: nothing pinned" test ! -e "$RIG_PIN"
out=$(in_pod sel $PROBE 10.96.0.1 443 --timeout 2)
check "uninstall: selected pod no longer redirected" test "$(printf '%s' "$out" | json_get errno)" = ENETUNREACH

summary
