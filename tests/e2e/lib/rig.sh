# shellcheck shell=bash
# The e2e rig: a "node", an "API host" and "pods" made of real kernel
# objects, all private to this run and torn down by trap, even on failure.
#
#   node   netns mg-<id>-node: mcpgated runs here as if host-networked; the
#          proxy address sits on its lo (this kernel has no dummy links)
#   api    netns mg-<id>-api: the fake API server on 10.96.0.1:443 (ClusterIP),
#          [fd00:96::1]:443 and 10.97.0.10:6443 (EndpointSlice address)
#   pods   netns mg-<id>-<pod> (veth to the node, NO default route: a
#          connection the eBPF does not redirect fails, it never leaves) +
#          cgroup v2 dir <root>/kubepods/<qos>/pod<UID>/<cid> + a mount
#          namespace with /run/secrets/kubernetes.io/serviceaccount
#
# Only loopback and addresses inside these namespaces are ever used.

RIG_CG2=${RIG_CG2:-/sys/fs/cgroup/unified}
[ -d "$RIG_CG2" ] && grep -q "cgroup2 $RIG_CG2 " /proc/mounts || RIG_CG2=/sys/fs/cgroup
RIG_ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
RIG_BUILD=${MG_BUILD:-build}
case "$RIG_BUILD" in /*) ;; *) RIG_BUILD="$RIG_ROOT_DIR/$RIG_BUILD" ;; esac
RIG_PY=/usr/bin/python3

rig_log() { printf '  [rig] %s\n' "$*" >&2; }

# ---- results ----
T_PASS=0
T_FAIL=0
T_FAILED_NAMES=()
pass() { T_PASS=$((T_PASS + 1)); printf '  ok    %s\n' "$*"; }
fail() { T_FAIL=$((T_FAIL + 1)); T_FAILED_NAMES+=("$*"); printf '  FAIL  %s\n' "$*"; }
# check NAME CMD...: passes when CMD succeeds
check() { local n=$1; shift; if "$@"; then pass "$n"; else fail "$n"; fi; }
summary() {
	local f
	for f in "${T_FAILED_NAMES[@]}"; do echo "  failed: $f"; done
	echo "$(basename "$0" .sh): $T_PASS passed, $T_FAIL failed"
	[ "$T_FAIL" = 0 ]
}

# ---- setup / teardown ----
rig_require_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "##################################################################" >&2
		echo "## SKIPPING e2e: not root. These tests attach eBPF programs and  ##" >&2
		echo "## create network namespaces and cgroups; run them as root.      ##" >&2
		echo "##################################################################" >&2
		exit 0
	fi
}

RIG_PIDS=()
RIG_NETNS=()
RIG_CGROUPS=()

rig_init() {
	rig_require_root
	RIG_ID=$(printf '%04x' $(( ($$ + RANDOM) % 65536 )))
	RIG_DIR=$(mktemp -d "/tmp/mg-e2e-$RIG_ID.XXXXXX")
	RIG_CGROOT="$RIG_CG2/mg-e2e-$RIG_ID"
	RIG_KUBEPODS="$RIG_CGROOT/kubepods"
	RIG_PIN="/sys/fs/bpf/mg-e2e-$RIG_ID"
	RIG_NODE="mg-$RIG_ID-node"
	RIG_API="mg-$RIG_ID-api"
	RIG_NODE_NAME=node1
	RIG_ADMIN=127.0.0.1:9940
	trap rig_teardown EXIT
	trap 'exit 130' INT TERM
	mkdir -p "$RIG_KUBEPODS/burstable" "$RIG_KUBEPODS/besteffort"
	# Pins need bpffs; mount it if this machine has not, and undo that after.
	if ! grep -q ' /sys/fs/bpf bpf ' /proc/mounts; then
		mount -t bpf bpf /sys/fs/bpf && RIG_MOUNTED_BPFFS=1
	fi
	RIG_CGROUPS+=("$RIG_CGROOT")

	ip netns add "$RIG_NODE"; RIG_NETNS+=("$RIG_NODE")
	ip netns add "$RIG_API"; RIG_NETNS+=("$RIG_API")
	local n="ip netns exec $RIG_NODE" a="ip netns exec $RIG_API"
	$n ip link set lo up
	$a ip link set lo up
	$n sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	ip link add "mg${RIG_ID}na" netns "$RIG_NODE" type veth peer name "mg${RIG_ID}an" netns "$RIG_API"
	$n ip addr add 10.200.0.1/30 dev "mg${RIG_ID}na"
	$n ip addr add fd00:200::1/64 dev "mg${RIG_ID}na" nodad
	$a ip addr add 10.200.0.2/30 dev "mg${RIG_ID}an"
	$a ip addr add fd00:200::2/64 dev "mg${RIG_ID}an" nodad
	$n ip link set "mg${RIG_ID}na" up
	$a ip link set "mg${RIG_ID}an" up
	$a ip addr add 10.96.0.1/32 dev lo
	$a ip addr add 10.97.0.10/32 dev lo
	$a ip addr add fd00:96::1/128 dev lo nodad
	$n ip route add 10.96.0.0/16 via 10.200.0.2
	$n ip route add 10.97.0.0/16 via 10.200.0.2
	$n ip -6 route add fd00:96::/64 via fd00:200::2
	$a ip route add 10.100.0.0/16 via 10.200.0.1
	$a ip -6 route add fd00:100::/40 via fd00:200::1
	rig_log "rig $RIG_ID: node $RIG_NODE, api $RIG_API, cgroup $RIG_KUBEPODS, dir $RIG_DIR"
}

rig_kill_pid() {
	local p=$1 i
	kill -TERM "$p" 2>/dev/null || return 0
	for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$p" 2>/dev/null
	wait "$p" 2>/dev/null
	return 0
}

# Removes a cgroup subtree depth-first, killing anything still in it.
rig_rm_cgroup() {
	local root=$1 d
	[ -d "$root" ] || return 0
	for d in $(find "$root" -depth -type d 2>/dev/null); do
		if [ -f "$d/cgroup.procs" ]; then
			while read -r p; do kill -KILL "$p" 2>/dev/null; done <"$d/cgroup.procs"
		fi
	done
	sleep 0.2
	for d in $(find "$root" -depth -type d 2>/dev/null); do rmdir "$d" 2>/dev/null || { sleep 0.3; rmdir "$d" 2>/dev/null; }; done
}

rig_teardown() {
	local rc=$? p ns
	set +e
	for p in "${RIG_PIDS[@]}"; do rig_kill_pid "$p"; done
	# Belt and braces: nothing of ours may outlive the run in our namespaces.
	for ns in "${RIG_NETNS[@]}"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
	done
	for p in "${RIG_CGROUPS[@]}"; do rig_rm_cgroup "$p"; done
	if [ -n "${RIG_PIN:-}" ] && [ -e "$RIG_PIN" ]; then
		"$RIG_BUILD/mcpgatectl" uninstall --pin-dir "$RIG_PIN" >/dev/null 2>&1 || rig_log "uninstall failed"
	fi
	for ns in "${RIG_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null; done
	[ -n "${RIG_MOUNTED_BPFFS:-}" ] && umount /sys/fs/bpf 2>/dev/null
	if [ -n "${RIG_DIR:-}" ] && [ -d "$RIG_DIR" ]; then
		if [ "$rc" != 0 ] && [ -n "${MG_KEEP_LOGS:-}" ]; then
			rig_log "logs kept in $RIG_DIR"
		else
			if [ "$rc" != 0 ]; then
				for f in "$RIG_DIR"/*.log; do
					[ -f "$f" ] || continue
					echo "---- tail of $f" >&2; tail -n 25 "$f" >&2
				done
			fi
			rm -rf "$RIG_DIR"
		fi
	fi
	exit "$rc"
}

# ---- pods ----
# rig_pod NAME [selected=1] [qos=burstable|besteffort|guaranteed] [ns=default] [sa=NAME]
# Creates the pod's netns, veth, cgroup and SA files; records POD_<NAME>_*.
RIG_POD_N=0
rig_pod() {
	local name=$1 selected=${2:-1} qos=${3:-burstable} ns=${4:-default} sa=${5:-mcp-agent}
	RIG_POD_N=$((RIG_POD_N + 1))
	local i=$RIG_POD_N uid cid cgdir
	local pns="mg-$RIG_ID-$name" vn="mg${RIG_ID}p${i}"
	uid=$(cat /proc/sys/kernel/random/uuid)
	cid=$(head -c 32 /dev/urandom | sha256sum | cut -c1-64)
	if [ "$qos" = guaranteed ]; then cgdir="$RIG_KUBEPODS/pod$uid"; else cgdir="$RIG_KUBEPODS/$qos/pod$uid"; fi
	mkdir -p "$cgdir/$cid"

	ip netns add "$pns"; RIG_NETNS+=("$pns")
	ip link add "${vn}n" netns "$RIG_NODE" type veth peer name eth0 netns "$pns"
	local n="ip netns exec $RIG_NODE" p="ip netns exec $pns"
	$p ip link set lo up
	$n ip addr add "10.100.$i.1/24" dev "${vn}n"
	$n ip addr add "fd00:100:$i::1/64" dev "${vn}n" nodad
	$p ip addr add "10.100.$i.2/24" dev eth0
	$p ip addr add "fd00:100:$i::2/64" dev eth0 nodad
	$n ip link set "${vn}n" up
	$p ip link set eth0 up
	# Only the proxy's link-local /24 and ULA /64 are routed, via the node:
	# no default route, so an unredirected API connection cannot leave.
	$p ip route add 169.254.77.0/24 via "10.100.$i.1"
	$p ip -6 route add fd00:6d67::/64 via "fd00:100:$i::1"

	local sadir="$RIG_DIR/pods/$name/run/secrets/kubernetes.io/serviceaccount"
	mkdir -p "$sadir" "$RIG_DIR/pods/$name/home"
	printf '%s' "pod-token-$name-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$sadir/token"
	printf '%s' "$ns" >"$sadir/namespace"
	cp "$RIG_DIR/certs/ca.crt" "$sadir/ca.crt" 2>/dev/null || true

	local v=${name//-/_}
	eval "POD_${v}_UID=$uid POD_${v}_CID=$cid POD_${v}_CG='$cgdir' POD_${v}_NS=$ns POD_${v}_SA=$sa POD_${v}_NETNS=$pns POD_${v}_IP=10.100.$i.2 POD_${v}_NODEIP=10.100.$i.1 POD_${v}_SEL=$selected"
	local labels='{"app":"'"$name"'"}'
	[ "$selected" = 1 ] && labels='{"app":"'"$name"'","mcpgate.io/intercept":"true"}'
	printf '{"metadata":{"name":"%s","namespace":"%s","uid":"%s","labels":%s},"spec":{"nodeName":"%s","serviceAccountName":"%s","containers":[{"name":"main","image":"busybox"}]},"status":{"phase":"Running","podIP":"10.100.%s.2"}}\n' \
		"$name" "$ns" "$uid" "$labels" "$RIG_NODE_NAME" "$sa" "$i" >>"$RIG_DIR/pods.jsonl"
}

# pod_var NAME FIELD: prints POD_<NAME>_<FIELD>
pod_var() { local v="POD_${1//-/_}_$2"; printf '%s' "${!v}"; }

# in_pod_bg NAME [--cgroup DIR] CMD...: runs CMD as a process of the pod,
# replacing the calling (sub)shell: joins the container cgroup first, then
# the netns, then a private mount namespace where /run is the pod's own (so
# /var/run/secrets/... is its SA mount). Use it as `in_pod_bg ... &`, so $!
# is the command's own pid and killing it by pid stops the client itself.
in_pod_bg() {
	local name=$1; shift
	local cg pns
	cg="$(pod_var "$name" CG)/$(pod_var "$name" CID)"
	if [ "${1:-}" = --cgroup ]; then cg=$2; shift 2; fi
	pns=$(pod_var "$name" NETNS)
	echo "$BASHPID" >"$cg/cgroup.procs" || exit 125
	exec nsenter --net="/run/netns/$pns" unshare --mount --propagation private \
		/bin/sh -c 'mount --bind "$0" /run && cd / && exec "$@"' "$RIG_DIR/pods/$name/run" \
		env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$RIG_DIR/pods/$name/home" \
		KUBERNETES_SERVICE_HOST=10.96.0.1 KUBERNETES_SERVICE_PORT=443 \
		KUBERNETES_SERVICE_PORT_HTTPS=443 "$@"
}

# in_pod NAME [--cgroup DIR] CMD...: the same in the foreground.
in_pod() { (in_pod_bg "$@"); }

in_node() { nsenter --net="/run/netns/$RIG_NODE" "$@"; }
in_api() { nsenter --net="/run/netns/$RIG_API" "$@"; }

# ---- certificates, fake API, daemon ----
rig_certs() {
	"$RIG_ROOT_DIR/tests/e2e/lib/mkcerts.sh" "$RIG_DIR/certs" >/dev/null
	printf '%s' "daemon-token-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$RIG_DIR/daemon-token"
}

# rig_state: writes the fake API's state from the pods created so far.
rig_state() {
	$RIG_PY - "$RIG_DIR" "$RIG_NODE_NAME" <<'PY'
import json, sys
d, node = sys.argv[1], sys.argv[2]
pods = [json.loads(l) for l in open(d + "/pods.jsonl")] if __import__("os").path.exists(d + "/pods.jsonl") else []
state = {
  "nodeName": node,
  "namespaces": [{"metadata": {"name": n}} for n in ["default", "kube-system", "team-ai"]],
  "pods": pods,
  "services": [{"metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1", "fd00:96::1"], "ipFamilies": ["IPv4", "IPv6"],
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}], "type": "ClusterIP"}}],
  "endpointslices": [{"metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                      "addressType": "IPv4", "endpoints": [{"addresses": ["10.97.0.10"], "conditions": {"ready": True}}],
                      "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}],
  "secrets": [], "configmaps": [], "logs": {},
}
# Objects a test adds (API objects that are not rig pods): lists are
# appended, maps merged.
import os
extra = d + "/extra-state.json"
if os.path.exists(extra):
    for k, v in json.load(open(extra)).items():
        if isinstance(v, list):
            state.setdefault(k, []).extend(v)
        elif isinstance(v, dict):
            state.setdefault(k, {}).update(v)
        else:
            state[k] = v
json.dump(state, open(d + "/state.json", "w"), indent=1)
PY
}

# rig_fakeapi: starts the fake API server in the API netns.
rig_fakeapi() {
	local l args=()
	rig_state
	for l in ${RIG_API_LISTENS:-10.96.0.1:443 [fd00:96::1]:443 10.97.0.10:6443}; do args+=(--listen "$l"); done
	# exec'd in the background job itself, so $! is the server's own pid
	(exec nsenter --net="/run/netns/$RIG_API" "$RIG_PY" "${RIG_FAKEAPI:-$RIG_ROOT_DIR/tests/e2e/run-fakeapi.py}" \
		"${args[@]}" --cert "$RIG_DIR/certs/server.crt" --key "$RIG_DIR/certs/server.key" \
		--state "$RIG_DIR/state.json" --log "$RIG_DIR/api-requests.jsonl" \
		--token "$(cat "$RIG_DIR/daemon-token")=system:serviceaccount:mcpgate:mcpgated" \
		--ready-file "$RIG_DIR/fakeapi.ready" "$@" >"$RIG_DIR/fakeapi.log" 2>&1) &
	RIG_FAKEAPI_PID=$!
	RIG_PIDS+=("$RIG_FAKEAPI_PID")
	rig_wait_file "$RIG_DIR/fakeapi.ready" 15 || { rig_log "fake API did not start"; cat "$RIG_DIR/fakeapi.log" >&2; return 1; }
}

rig_wait_file() { local f=$1 t=${2:-10} i; for i in $(seq 1 $((t * 10))); do [ -e "$f" ] && return 0; sleep 0.1; done; return 1; }

# rig_wait_log FILE PATTERN [SECONDS]: waits for a line matching PATTERN.
rig_wait_log() {
	local f=$1 pat=$2 t=${3:-10} i
	for i in $(seq 1 $((t * 10))); do grep -q -- "$pat" "$f" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}

# rig_daemon [extra flags]: starts mcpgated in the node netns, waits until ready.
# RIG_NO_API_ENDPOINTS=1: no --api-endpoint (every address learnt from the
# API, as in a cluster); RIG_DAEMON_NOWAIT=1: return at once (the test polls).
RIG_DAEMON_N=0
rig_daemon() {
	local eps=(--api-endpoint 10.96.0.1:443 --api-endpoint '[fd00:96::1]:443')
	[ -n "${RIG_NO_API_ENDPOINTS:-}" ] && eps=()
	RIG_DAEMON_N=$((RIG_DAEMON_N + 1))
	RIG_DAEMON_LOG="$RIG_DIR/mcpgated.$RIG_DAEMON_N.log"
	# nsenter directly (not via in_node) so $! is the daemon's own pid.
	# shellcheck disable=SC2086
	(exec nsenter --net="/run/netns/$RIG_NODE" env ${RIG_DAEMON_ENV:-} ASAN_OPTIONS=detect_leaks=0 "$RIG_BUILD/mcpgated" \
		--cgroup-path "$RIG_KUBEPODS" --pin-dir "$RIG_PIN" \
		--node-name "$RIG_NODE_NAME" --api-server "${RIG_API_SERVER:-https://10.96.0.1:443}" \
		--api-ca-file "$RIG_DIR/certs/ca.crt" --api-token-file "$RIG_DIR/daemon-token" \
		${eps[@]+"${eps[@]}"} \
		--ca-cert "$RIG_DIR/mcpgate/ca.crt" --ca-key "$RIG_DIR/mcpgate/ca.key" \
		--admin-listen "$RIG_ADMIN" --endpoints-interval 1 "$@" \
		>"$RIG_DAEMON_LOG" 2>&1) &
	RIG_DAEMON_PID=$!
	RIG_PIDS+=("$RIG_DAEMON_PID")
	[ -n "${RIG_DAEMON_NOWAIT:-}" ] && return 0
	if ! rig_wait_log "$RIG_DAEMON_LOG" '"event":"ready"' 20; then
		rig_log "mcpgated did not become ready"; cat "$RIG_DAEMON_LOG" >&2; return 1
	fi
	rig_wait_ready 20 || return 1
	rig_trust_mcpgate
}

# The pods trust the mcpgate CA at the service-account ca.crt path, as the
# manifests arrange with a projected volume.
rig_trust_mcpgate() {
	local d
	for d in "$RIG_DIR"/pods/*/run/secrets/kubernetes.io/serviceaccount; do
		cp "$RIG_DIR/mcpgate/ca.crt" "$d/ca.crt"
	done
}

rig_admin() { in_node curl -s -m 5 "http://$RIG_ADMIN$1"; }
rig_wait_ready() {
	local t=${1:-10} i
	for i in $(seq 1 $((t * 10))); do
		rig_admin /readyz 2>/dev/null | grep -q 'api endpoints synced: yes' &&
			rig_admin /readyz | grep -q 'pod watch synced: yes' && return 0
		sleep 0.1
	done
	rig_log "mcpgated not ready: $(rig_admin /readyz)"; return 1
}
rig_metric() { rig_admin /metrics | awk -v m="$1" '$1 == m { print $2 }'; }
