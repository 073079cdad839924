#!/usr/bin/env bash
# Limits that keep one pod from starving the node (issue #8, item 9): per-pod
# and global connection caps answered with a 429 Status and Retry-After
# (never forwarded); a client that stops reading is cut after the write-stall
# timeout and its upstream released; random bearer tokens under
# --token-review from one pod do not stall another pod's requests (bounded
# worker pool, per-pod quotas, fair pick); accept() out of fds pauses the
# listeners instead of spinning the loop. Latency and CPU figures are
# printed, never asserted.
set -u
. "$(dirname "$0")/lib/rig.sh"
rig_init
rig_certs

REQLOG="$RIG_DIR/api-requests.jsonl"
LG="/usr/bin/python3 $RIG_ROOT_DIR/tests/e2e/lib/loadgen.py"
rig_pod hog 1 burstable default hog-sa
rig_pod calm 1 burstable default calm-sa
rig_pod third 1 burstable default third-sa

# A pod with an 8 MB log: the answer a non-reading client never takes.
$RIG_PY - "$RIG_DIR/extra-state.json" <<'PY'
import json, sys
line = "x" * 1000
json.dump({"pods": [{"metadata": {"name": "big", "namespace": "default", "uid": "big-uid"},
                     "spec": {"nodeName": "node2", "serviceAccountName": "default",
                              "containers": [{"name": "main", "image": "busybox"}]},
                     "status": {"phase": "Running"}}],
           "logs": {"default/big": ["%06d %s" % (i, line) for i in range(8000)]}},
          open(sys.argv[1], "w"))
PY
# calm's own token and ten more of its ServiceAccount (each costs one
# TokenReview); unknown tokens take the fake authenticator 1 s to refuse.
tokfile="$RIG_DIR/pods/calm/home/tokens"
tokargs=(--token "$(cat "$RIG_DIR/pods/calm/run/secrets/kubernetes.io/serviceaccount/token")=system:serviceaccount:default:calm-sa")
for i in $(seq 1 10); do
	t="calm-extra-$i-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	echo "$t" >>"$tokfile"
	tokargs+=(--token "$t=system:serviceaccount:default:calm-sa")
done
rig_fakeapi --review-delay 1.0 "${tokargs[@]}"

# seen MARKER: how many requests with labelSelector marker=MARKER reached the API
seen() { grep -c "marker%3D$1\"" "$REQLOG"; }
# seen_sum PREFIX FROM TO: seen PREFIX-FROM .. PREFIX-TO, added up
seen_sum() { local n=0 i; for i in $(seq "$2" "$3"); do n=$((n + $(seen "$1-$i"))); done; echo "$n"; }
# jq-free JSON reads: pyq FILE EXPR (EXPR over d)
pyq() { $RIG_PY -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }
limited() { rig_metric "mcpgate_limited_total{reason=\"$1\"}"; }

# ---- connection caps ----
rig_daemon --max-connections 16 --max-connections-per-pod 8 --write-stall-timeout 2000 ||
	{ fail "mcpgated starts"; summary; exit 1; }

in_pod_bg hog $LG hold --count 12 --marker hog --hold 120 --out "$RIG_DIR/hog.json" &
hog=$!; RIG_PIDS+=("$hog")
rig_wait_file "$RIG_DIR/hog.json" 60 || fail "hog opened its connections"
check "per-pod cap: the first 8 connections of a pod are served" \
	test "$(pyq "$RIG_DIR/hog.json" '[r["status"] for r in d[:8]].count(200)')" = 8
check "per-pod cap: the 9th..12th get 429 Status TooManyRequests with Retry-After" \
	test "$(pyq "$RIG_DIR/hog.json" '[(r["status"], r.get("kind"), r.get("reason"), bool(r.get("retryAfter"))) for r in d[8:]].count((429, "Status", "TooManyRequests", True))')" = 4
sleep 0.5
check "per-pod cap: the API server saw the 8 served requests" \
	test "$(seen_sum hog 0 7)" = 8
check "per-pod cap: the API server never saw the refused ones" \
	test "$(seen_sum hog 8 11)" = 0
check "per-pod cap: counted in /metrics" test "$(limited max_connections_per_pod)" = 4

# another pod, while the first holds its cap: every request answered
in_pod calm $LG seq --count 40 --marker calm --out "$RIG_DIR/calm.json"
check "per-pod cap: another pod's 40 requests all answered 200 while the first holds its cap" \
	test "$(pyq "$RIG_DIR/calm.json" '[r["status"] for r in d["results"]].count(200)')" = 40
check "per-pod cap: ... and all reached the API server" \
	test "$(seen_sum calm 0 39)" = 40
echo "  figure: other pod's latency while one holds its cap (new TLS connection per request):" \
	"p50 $(pyq "$RIG_DIR/calm.json" '"%.1f" % d["p50_ms"]') ms," \
	"p99 $(pyq "$RIG_DIR/calm.json" '"%.1f" % d["p99_ms"]') ms"

# global cap: hog 8 + calm 8 = 16 open; a third pod is refused until one closes
in_pod_bg calm $LG hold --count 8 --marker calmhold --hold 120 --out "$RIG_DIR/calmhold.json" &
calmhold=$!; RIG_PIDS+=("$calmhold")
rig_wait_file "$RIG_DIR/calmhold.json" 60
in_pod third $LG seq --count 1 --marker third-a --out "$RIG_DIR/third-a.json"
check "global cap: a third pod gets 429 TooManyRequests with Retry-After at --max-connections" \
	test "$(pyq "$RIG_DIR/third-a.json" '(lambda r: (r["status"], r.get("reason"), bool(r.get("retryAfter"))))(d["results"][0])')" = "(429, 'TooManyRequests', True)"
check "global cap: not forwarded" test "$(seen third-a-0)" = 0
check "global cap: counted in /metrics" test "$(limited max_connections)" -ge 1
rig_kill_pid "$calmhold"
sleep 0.5
in_pod third $LG seq --count 1 --marker third-b --out "$RIG_DIR/third-b.json"
check "global cap: served again once connections closed" \
	test "$(pyq "$RIG_DIR/third-b.json" 'd["results"][0]["status"]')" = 200
rig_kill_pid "$hog"

# ---- a client that stops reading ----
in_pod_bg calm $LG stall --path /api/v1/namespaces/default/pods/big/log --hold 120 \
	--out "$RIG_DIR/stall.json" &
stall=$!; RIG_PIDS+=("$stall")
if rig_wait_log "$RIG_DAEMON_LOG" '"event":"write_stall"' 20; then
	pass "write stall: a client that reads nothing is cut after --write-stall-timeout"
else
	fail "write stall: a client that reads nothing is cut after --write-stall-timeout"
fi
check "write stall: its upstream connection was closed with it" \
	grep -q '"event":"write_stall".*"upstreamClosed":true' "$RIG_DAEMON_LOG"
check "write stall: counted in /metrics" test "$(limited write_stall)" = 1
check "write stall: the stalled client still holds its socket, the daemon holds nothing" \
	eval 'kill -0 $stall && test "$(rig_metric mcpgate_open_connections)" = 0'
grep '"event":"write_stall"' "$RIG_DAEMON_LOG" | head -1 | $RIG_PY -c 'import json, sys
e = json.loads(sys.stdin.readline())
print("  figure: write stall: cut after %d ms with %d bytes pending" % (e["stalledMs"], e["pendingBytes"]))'
rig_kill_pid "$stall"

# ---- the worker pool under a flood of random tokens ----
rig_kill_pid "$RIG_DAEMON_PID"
rig_daemon --token-review true --worker-threads 2 --worker-jobs-per-pod 4 --worker-queue 64 ||
	{ fail "mcpgated (token review) starts"; summary; exit 1; }
in_pod_bg hog $LG flood --conns 16 --seconds 12 --out "$RIG_DIR/flood.json" &
flood=$!; RIG_PIDS+=("$flood")
sleep 2
in_pod calm $LG seq --count 20 --marker trcalm --tokens "$tokfile" --out "$RIG_DIR/trcalm.json"
check "worker flood: another pod's 20 requests (10 TokenReviews) all answered 200" \
	test "$(pyq "$RIG_DIR/trcalm.json" '[r["status"] for r in d["results"]].count(200)')" = 20
check "worker flood: ... and all reached the API server" \
	test "$(seen_sum trcalm 0 19)" = 20
echo "  figure: other pod's latency during the flood (TokenReview of a new token on half):" \
	"p50 $(pyq "$RIG_DIR/trcalm.json" '"%.1f" % d["p50_ms"]') ms," \
	"p99 $(pyq "$RIG_DIR/trcalm.json" '"%.1f" % d["p99_ms"]') ms"
rig_wait_file "$RIG_DIR/flood.json" 60
check "worker flood: the flooding pod gets 429s with Retry-After" \
	test "$(pyq "$RIG_DIR/flood.json" 'd["counts"].get("429", 0) > 0 and d["retryAfter"] > 0')" = True
echo "  figure: flooding pod's answers: $(pyq "$RIG_DIR/flood.json" 'd["counts"]')"
check "worker flood: none of the flooding pod's requests was forwarded" test "$(seen flood)" = 0
check "worker flood: counted in /metrics" test "$(limited worker_pod_quota)" -gt 0

# ---- accept() out of fds ----
rig_kill_pid "$RIG_DAEMON_PID"
rig_daemon || { fail "mcpgated (defaults) starts"; summary; exit 1; }
pid=$RIG_DAEMON_PID
# new fds take the lowest free numbers: a dozen above the count in use
nofile=$(( $(ls /proc/$pid/fd | wc -l) + 12 ))
prlimit --pid "$pid" --nofile=$nofile:$nofile || fail "prlimit --nofile=$nofile"
in_pod_bg hog $LG tcp --count 60 --hold 120 --out "$RIG_DIR/tcp.json" &
tcp=$!; RIG_PIDS+=("$tcp")
rig_wait_file "$RIG_DIR/tcp.json" 30
rig_wait_log "$RIG_DAEMON_LOG" '"event":"accept_backoff"' 10
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu); sleep 3; c1=$(cpu)
echo "  figure: daemon CPU over 3 s with the listener out of fds: $(( (c1 - c0) * 1000 / $(getconf CLK_TCK) )) ms"
check "EMFILE: the listener backs off (logged)" grep -q '"event":"accept_backoff"' "$RIG_DAEMON_LOG"
check "EMFILE: the loop does not spin (under 0.5 s CPU in 3 s)" test $((c1 - c0)) -lt $(( $(getconf CLK_TCK) / 2 ))
rig_kill_pid "$tcp"
sleep 2
in_pod calm $LG seq --count 1 --marker after-emfile --out "$RIG_DIR/after.json"
check "EMFILE: a normal request is answered after the connections closed" \
	test "$(pyq "$RIG_DIR/after.json" 'd["results"][0]["status"]')" = 200
check "EMFILE: ... and reached the API server" test "$(seen after-emfile-0)" = 1
check "EMFILE: counted in /metrics" test "$(limited accept_backoff)" -gt 0
summary
