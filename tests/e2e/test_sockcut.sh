#!/usr/bin/env bash
# Cutting a pod's open API connections (issue 8 item 5, the mechanism): when
# a pod becomes selected, the connections it opened before go straight to
# the API server; `mcpgatectl sockets cut` (mg_loader_destroy_pod_sockets in
# the daemon) resets them, with the bpf_sock_destroy kfunc or netlink
# SOCK_DESTROY. Only that pod's connections to API endpoints go: another
# pod's (in its own netns, and in the same netns as hostNetwork pods share
# one) and the pod's other connections stay.
set -u
. "$(dirname "$0")/lib/rig.sh"
rig_init
rig_certs

HOLD="$RIG_PY $RIG_ROOT_DIR/tests/e2e/lib/holder.py"
rig_pod one 0
rig_pod two 0
rig_fakeapi
rig_daemon || { fail "mcpgated starts"; summary; exit 1; }
CTL="$RIG_BUILD/mcpgatectl"

# Routes to the API prefixes via the node, as cluster pods have (the rig's
# pods have no default route).
for p in one two; do
	i=$(pod_var "$p" NODEIP); i6=$(sed 's/\.1$//; s/^10\.100\./fd00:100:/' <<<"$i")::1
	ip netns exec "$(pod_var "$p" NETNS)" ip route add 10.96.0.0/16 via "$i"
	ip netns exec "$(pod_var "$p" NETNS)" ip route add 10.97.0.0/16 via "$i"
	ip netns exec "$(pod_var "$p" NETNS)" ip -6 route add fd00:96::/64 via "$i6"
done
# A non-API server on the node that keeps what it accepts open.
(exec nsenter --net="/run/netns/$RIG_NODE" $RIG_PY -c '
import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 8080)); s.listen(64)
open(sys.argv[1],"w").write("ready"); keep=[]
while True: keep.append(s.accept()[0])' "$RIG_DIR/hold.ready" >/dev/null 2>&1) &
RIG_PIDS+=($!)
rig_wait_file "$RIG_DIR/hold.ready" 5 || fail "node server starts"

# state FILE NAME: the holder's view of one connection
state() { $RIG_PY -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], "missing"))' "$1" "$2" 2>/dev/null; }
wait_state() { # FILE NAME WANT-REGEX
	for _ in $(seq 1 50); do state "$1" "$2" | grep -qE "$3" && return 0; sleep 0.1; done
	return 1
}
# established NETNS DST: connections to DST in state ESTAB in that netns
established() { ip netns exec "$1" ss -Htn state established dst "$2" | wc -l; }

one_cg="$(pod_var one CG)/$(pod_var one CID)"
two_cg="$(pod_var two CG)/$(pod_var two CID)"
round=0
cut_round() { # METHOD
	local m=$1 f1 f2 f3 out n
	round=$((round + 1))
	f1="$RIG_DIR/hold-one-$round.json"; f2="$RIG_DIR/hold-two-$round.json"; f3="$RIG_DIR/hold-host-$round.json"
	(in_pod_bg one $HOLD "$f1" v4=10.96.0.1:443 v6=[fd00:96::1]:443 mapped=[::ffff:10.96.0.1]:443 \
		slice=10.97.0.10:6443 other=$(pod_var one NODEIP):8080) &
	RIG_PIDS+=($!)
	(in_pod_bg two $HOLD "$f2" v4=10.96.0.1:443) &
	RIG_PIDS+=($!)
	# pod two's cgroup, pod one's netns: a hostNetwork neighbour
	(in_pod_bg one --cgroup "$two_cg" $HOLD "$f3" v4=10.96.0.1:443) &
	RIG_PIDS+=($!)
	for f in "$f1" "$f2" "$f3"; do rig_wait_file "$f" 5 || fail "$m: holder $f starts"; done
	check "$m: pod one holds its connections" test "$(state "$f1" v4)/$(state "$f1" v6)/$(state "$f1" mapped)/$(state "$f1" slice)/$(state "$f1" other)" = open/open/open/open/open

	local t0; t0=$(date +%s%N)
	out=$("$CTL" sockets cut --pod-cgroup "$(pod_var one CG)" --method "$m" --pin-dir "$RIG_PIN" 2>&1)
	rig_log "$m: mcpgatectl sockets cut took $(( ($(date +%s%N) - t0) / 1000000 )) ms (figure, not asserted)"
	n=$(sed -n 's/^cut \([0-9]*\) connection.*/\1/p' <<<"$out")
	check "$m: mcpgatectl sockets cut reports the 4 API connections of pod one ($out)" test "$n" = 4
	for c in v4 v6 mapped slice; do
		check "$m: pod one's $c API connection is reset (the client sees it)" \
			wait_state "$f1" "$c" 'ECONNABORTED|ECONNRESET'
	done
	# what is left in pod one's netns: the neighbour's connection only
	check "$m: pod one's netns has one API connection left, the neighbour's" \
		test "$(ip netns exec "$(pod_var one NETNS)" ss -Htn state established \
			'( dport = :443 or dport = :6443 )' | wc -l)" = 1
	check "$m: pod one's non-API connection survives" test "$(state "$f1" other)" = open
	check "$m: pod two's API connection (own netns) survives" test "$(state "$f2" v4)" = open
	check "$m: pod two's API connection in pod one's netns (hostNetwork) survives" test "$(state "$f3" v4)" = open
	check "$m: ... and is still established" test "$(established "$(pod_var two NETNS)" 10.96.0.1)" = 1
	rig_kill_pid "${RIG_PIDS[-1]}"; rig_kill_pid "${RIG_PIDS[-2]}"; rig_kill_pid "${RIG_PIDS[-3]}"
}
cut_round kfunc
cut_round netlink
cut_round auto

out=$("$CTL" sockets cut --pod-cgroup "$RIG_DIR/nope" --pin-dir "$RIG_PIN" 2>&1); rc=$?
check "sockets cut: a missing pod cgroup is one line, exit 1 ($out)" test "$rc" = 1 -a "$(wc -l <<<"$out")" = 1
out=$("$CTL" sockets cut --pod-cgroup "$(pod_var one CG)" --method bogus 2>&1); rc=$?
check "sockets cut: a bad method is exit 2 ($out)" test "$rc" = 2

summary
