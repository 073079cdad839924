#!/usr/bin/env bash
# Paths around the proxy (issue 8 item 8, kernel side): the cgroup_skb/egress
# program drops every packet from a selected (or pending, or unknown with
# refuse-unknown) pod to an API endpoint address:port that did not go
# through the proxy, counts it and has the daemon log the pod. Raw-socket
# SYNs never meet a connect hook, so they are the test. Asserted on what
# arrives in the API's network namespace (a sniffer there), not on what the
# sender saw.
set -u
. "$(dirname "$0")/lib/rig.sh"
rig_init
rig_certs

PROBE="$RIG_PY $RIG_ROOT_DIR/tests/e2e/lib/probe.py"
RAW="$RIG_PY $RIG_ROOT_DIR/tests/e2e/lib/rawsyn.py"
json_get() { $RIG_PY -c 'import json,sys; d=json.loads(sys.stdin.readline()); print(d.get(sys.argv[1], ""))' "$1"; }

rig_pod sel 1
rig_pod unsel 0
rig_fakeapi
# "ghost": a pod cgroup the API does not know (made after the fake API's
# state was written); the test marks it pending by hand.
rig_pod ghost 0
rig_daemon --unknown-pods pass || { fail "mcpgated starts"; summary; exit 1; }

# A cluster pod has a default route; the rig's have none (so that an
# unredirected connect fails). Give these pods routes to the API prefixes
# via the node, as they would have, for this test only.
for p in sel unsel ghost; do
	i=$(pod_var "$p" NODEIP); i6=$(sed 's/\.1$//; s/^10\.100\./fd00:100:/' <<<"$i")::1
	ip netns exec "$(pod_var "$p" NETNS)" ip route add 10.96.0.0/16 via "$i"
	ip netns exec "$(pod_var "$p" NETNS)" ip route add 10.97.0.0/16 via "$i"
	ip netns exec "$(pod_var "$p" NETNS)" ip -6 route add fd00:96::/64 via "$i6"
done

SNIFF="$RIG_DIR/sniffed.jsonl"
(exec nsenter --net="/run/netns/$RIG_API" $RIG_PY "$RIG_ROOT_DIR/tests/e2e/lib/rawsyn.py" sniff \
	"mg${RIG_ID}an" "$SNIFF" "$RIG_DIR/sniff.ready" >"$RIG_DIR/sniff.log" 2>&1) &
RIG_PIDS+=($!)
rig_wait_file "$RIG_DIR/sniff.ready" 5 || fail "sniffer starts"

dropped() { rig_metric 'mcpgate_bpf_events_total{event="egress_dropped"}'; }
# arrived DST DPORT SPORT: packets seen in the API netns from that source port
arrived() { grep -c "\"dst\": \"$1\", \"dport\": $2, \"sport\": $3," "$SNIFF" 2>/dev/null; }
# settle: send a marker SYN to a port that is no API endpoint (never
# dropped) and wait for it, so everything sent before it had its chance to
# arrive (no timed assertion)
MARK=50000
settle() {
	local a
	MARK=$((MARK + 1))
	for a in 10.96.0.1 fd00:96::1; do
		in_pod sel $RAW send $a 444 "$MARK" 1 >/dev/null
		in_pod unsel $RAW send $a 444 "$MARK" 1 >/dev/null
	done
	for _ in $(seq 1 50); do
		[ "$(arrived 10.96.0.1 444 "$MARK")" -ge 2 ] && [ "$(arrived fd00:96::1 444 "$MARK")" -ge 2 ] && return 0
		sleep 0.1
	done
	return 1
}

N=3
sport=41000
for ep in "10.96.0.1 443" "fd00:96::1 443" "10.97.0.10 6443"; do
	set -- $ep
	sport=$((sport + 1))
	d0=$(dropped)
	in_pod sel $RAW send "$1" "$2" "$sport" $N >/dev/null
	sport=$((sport + 1))
	in_pod unsel $RAW send "$1" "$2" "$sport" $N >/dev/null
	settle || fail "marker packet arrived"
	check "selected pod: raw SYNs to $1:$2 never arrive" test "$(arrived "$1" "$2" $((sport - 1)))" = 0
	check "selected pod: raw SYNs to $1:$2 counted exactly ($N)" test "$(( $(dropped) - d0 ))" = $N
	check "unselected pod: raw SYNs to $1:$2 still arrive" test "$(arrived "$1" "$2" "$sport")" = $N
done

# The transport header behind an IPv6 extension header is found too.
sport=$((sport + 1)); d0=$(dropped)
in_pod sel $RAW send fd00:96::1 443 "$sport" 1 --dstopts >/dev/null
sport=$((sport + 1))
in_pod unsel $RAW send fd00:96::1 443 "$sport" 1 --dstopts >/dev/null
settle
check "selected pod: SYN behind a destination-options header never arrives" test "$(arrived fd00:96::1 443 $((sport - 1)))" = 0
check "selected pod: SYN behind a destination-options header counted" test "$(( $(dropped) - d0 ))" = 1
check "unselected pod: SYN behind a destination-options header arrives" test "$(arrived fd00:96::1 443 "$sport")" = 1

# UDP to the API port (no connect hook for UDP sends) is dropped as well.
sport=$((sport + 1)); d0=$(dropped)
in_pod sel $RAW send 10.96.0.1 443 "$sport" 2 --udp >/dev/null
settle
check "selected pod: UDP to 10.96.0.1:443 never arrives" test "$(arrived 10.96.0.1 443 $((sport - 1)))" = 0
check "selected pod: UDP to 10.96.0.1:443 counted" test "$(( $(dropped) - d0 ))" = 2

# A first fragment too short to hold the destination port cannot be matched
# by port: from a pod whose API packets are dropped, it is dropped too.
d0=$(dropped)
in_pod sel $RAW send 10.96.0.1 443 "$((sport + 1))" 1 --tinyfrag >/dev/null
check "selected pod: a first fragment with no destination port is dropped and counted" \
	test "$(( $(dropped) - d0 ))" = 1
d0=$(dropped)
in_pod unsel $RAW send 10.96.0.1 443 "$((sport + 1))" 1 --tinyfrag >/dev/null
check "unselected pod: the same fragment is not dropped" test "$(dropped)" = "$d0"

# Other ports of an API address and other addresses are not touched.
sport=$((sport + 1)); d0=$(dropped)
in_pod sel $RAW send 10.96.0.1 444 "$sport" 1 >/dev/null
settle
check "selected pod: a SYN to another port of the API address arrives" test "$(arrived 10.96.0.1 444 "$sport")" = 1
check "selected pod: ... and is not counted" test "$(dropped)" = "$d0"

# The redirected path still works with the egress program attached.
out=$(in_pod sel kubectl get --raw /version 2>&1)
check "selected pod: kubectl through the proxy still works" grep -q gitVersion <<<"$out"

# The daemon logged the drops with the pod's identity.
check "daemon logs egress_dropped with the pod's namespace/name/uid" \
	rig_wait_log "$RIG_DAEMON_LOG" "\"event\":\"egress_dropped\".*\"pod\":{\"namespace\":\"default\",\"name\":\"sel\",\"uid\":\"$(pod_var sel UID)\"" 5
check "daemon logs the dropped destination" rig_wait_log "$RIG_DAEMON_LOG" '"event":"egress_dropped".*"dst":"\[fd00:96::1\]:443"' 5

# A pending pod (cgroup known, metadata not yet) is dropped as well.
le64() { $RIG_PY -c 'import struct,sys; print(" ".join("%02x" % b for b in struct.pack("<Q", int(sys.argv[1]))))' "$1"; }
bpftool map update pinned "$RIG_PIN/intercept" key hex $(le64 "$(stat -c %i "$(pod_var ghost CG)")") \
	value hex 02 00 00 00 00 00 00 00
sport=$((sport + 1)); d0=$(dropped)
in_pod ghost $RAW send 10.96.0.1 443 "$sport" 2 >/dev/null
settle
check "pending pod: raw SYNs to 10.96.0.1:443 never arrive" test "$(arrived 10.96.0.1 443 "$sport")" = 0
check "pending pod: counted" test "$(( $(dropped) - d0 ))" = 2
check "pending pod: logged with its pod cgroup id" rig_wait_log "$RIG_DAEMON_LOG" \
	"\"event\":\"egress_dropped\",\"pod_cgroup_id\":$(stat -c %i "$(pod_var ghost CG)")," 5

# Refuse-unknown: a cgroup with no entry is dropped too, and only then.
stray="$RIG_KUBEPODS/stray-$RIG_ID"; mkdir -p "$stray"; RIG_CGROUPS+=("$stray")
sport=$((sport + 1))
in_pod unsel --cgroup "$stray" $RAW send 10.96.0.1 443 "$sport" 1 >/dev/null
settle
check "unknown cgroup, --unknown-pods pass: its SYN arrives" test "$(arrived 10.96.0.1 443 "$sport")" = 1
rig_kill_pid "$RIG_DAEMON_PID"
rig_daemon --unknown-pods refuse || fail "mcpgated restarts with --unknown-pods refuse"
sport=$((sport + 1)); d0=$(dropped)
in_pod unsel --cgroup "$stray" $RAW send 10.96.0.1 443 "$sport" 1 >/dev/null
settle
check "unknown cgroup, --unknown-pods refuse: its SYN never arrives" test "$(arrived 10.96.0.1 443 "$sport")" = 0
check "unknown cgroup, --unknown-pods refuse: counted" test "$(( $(dropped) - d0 ))" = 1

summary
