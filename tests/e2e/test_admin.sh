#!/usr/bin/env bash
# The admin listener and /metrics: request paths holding quotes, braces,
# spaces, pipes (and the refused backslash and line feed) never break a
# scrape, every line of which a strict parser accepts; a scraper that never
# reads its answer does not freeze the proxy, and is cut.
set -u
. "$(dirname "$0")/lib/rig.sh"
rig_init
rig_certs

REQLOG="$RIG_DIR/api-requests.jsonl"
SA=/var/run/secrets/kubernetes.io/serviceaccount
API=https://10.96.0.1/api/v1/namespaces/default
PARSE="$RIG_PY $RIG_ROOT_DIR/tests/e2e/lib/promparse.py"

rig_pod agent 1 burstable default mcp-agent
# Small send buffers on the node (a sysctl an admin may set; the kernel's
# autotuning would otherwise queue a whole scrape for a client that never
# reads), so the admin listener meets EAGAIN as it would under load.
in_node sysctl -qw net.ipv4.tcp_wmem="4096 4096 4096"
rig_fakeapi
rig_daemon || { fail "mcpgated starts"; summary; exit 1; }

# pod_gets URL...: one keep-alive curl from the pod, one status per line.
pod_gets() {
	local u a=()
	for u; do a+=(-o /dev/null "$u"); done
	in_pod agent sh -c 'curl -g --path-as-is -s -m 5 -w "%{http_code}\n" \
		--cacert '"$SA"'/ca.crt -H "Authorization: Bearer $(cat '"$SA"'/token)" "$@"' sh "${a[@]}"
}
# scrape FILE: /metrics into FILE; then the strict parser's verdict into FILE.json
scrape() { rig_admin /metrics >"$1"; $PARSE "$1" >"$1.json"; }
# has_resource FILE.json VALUE: a mcpgate_requests_total sample whose resource label,
# unescaped, is exactly VALUE
has_resource() {
	$RIG_PY -c 'import json,sys; d=json.load(open(sys.argv[1]))
sys.exit(0 if any(s[0] == "mcpgate_requests_total" and s[1].get("resource") == sys.argv[2]
	for s in d["samples"]) else 1)' "$1" "$2"
}

# ---- label values a pod chooses ----
# path (as sent) -> the resource label it must come out as; "" = refused (400)
declare -A want=(
	['pods"x']=''
	['a%22%7B%7D%20b']='a"{} b'
	['{x}']=''
	['%7Bx%7D']='{x}'
	['p%7Cq%7C200%7Callow']='p|q|200|allow'
	['q%3D%22v%22%2Cz%3D%22w%22%7D%201']='q="v",z="w"} 1'
	['pods/n/%22%7D']='pods/"}'
	['back%5Cslash']=''
	['new%0Aline%22%7D%201']=''
	['caf%C3%A9']=''
)
urls=()
for p in "${!want[@]}"; do urls+=("$API/$p"); done
out=$(pod_gets "${urls[@]}")
check "paths with quotes, braces, spaces, pipes were answered (${#urls[@]}: $(sort <<<"$out" | uniq -c | tr '\n' ' '))" \
	test "$(grep -c '^[1-5][0-9][0-9]$' <<<"$out")" = "${#urls[@]}"
scrape "$RIG_DIR/m1"
check "the scrape parses strictly, every line ($(cut -c1-300 "$RIG_DIR/m1.json"))" grep -q '"ok": true' "$RIG_DIR/m1.json"
for p in "${!want[@]}"; do
	[ -n "${want[$p]}" ] || continue
	check "resource label round-trips: $p -> ${want[$p]}" has_resource "$RIG_DIR/m1.json" "${want[$p]}"
done
check "a refused path (raw quote or brace, backslash, line feed, non-ASCII) leaves no label with its text" \
	test -z "$(grep -E 'pods\\"x|slash|line|caf|\{x\}"' "$RIG_DIR/m1" | grep -v 'resource="{x}"')"

# Many distinct long labels, so that the scrape is larger than what the
# socket buffers take from a client that never reads.
pad=$(printf '%%22%%7B%%7D%%20%.0s' $(seq 1 20))
urls=()
for i in $(seq 1 400); do urls+=("$API/r$i$pad"); done
out=$(pod_gets "${urls[@]}")
check "400 more distinct resources answered" test "$(grep -c '^[1-5][0-9][0-9]$' <<<"$out")" = 400
scrape "$RIG_DIR/m2"
size=$(stat -c %s "$RIG_DIR/m2")
check "the large scrape ($size bytes) parses strictly" grep -q '"ok": true' "$RIG_DIR/m2.json"

# ---- a scraper that never reads ----
in_node "$RIG_PY" "$RIG_ROOT_DIR/tests/e2e/lib/slowscraper.py" "${RIG_ADMIN%:*}" "${RIG_ADMIN#*:}" /metrics 12 \
	>"$RIG_DIR/slow.out" 2>&1 &
spid=$!; RIG_PIDS+=("$spid")
rig_wait_log "$RIG_DIR/slow.out" '"sent"' 5
sleep 0.5
before=$(grep -c '"x-loop", "while-stuck"' "$REQLOG")
args=()
for i in $(seq 1 100); do args+=(-o /dev/null "$API/pods"); done
out=$(in_pod agent timeout 40 sh -c 'curl -s -m 5 -w "%{http_code}\n" --cacert '"$SA"'/ca.crt \
	-H "X-Loop: while-stuck" "$@"' sh "${args[@]}")
sleep 0.3
got=$(( $(grep -c '"x-loop", "while-stuck"' "$REQLOG") - before ))
check "while a scraper does not read, the pod's 100 requests are answered ($(grep -c '^200$' <<<"$out") x 200, API got $got)" \
	test "$(grep -c '^200$' <<<"$out")" = 100 -a "$got" = 100
scrape "$RIG_DIR/m3"
check "while a scraper does not read, another scrape is answered and parses" grep -q '"ok": true' "$RIG_DIR/m3.json"
check "the admin listener cuts the scraper that never reads" rig_wait_log "$RIG_DAEMON_LOG" '"event":"admin_timeout"' 15
wait "$spid" 2>/dev/null
check "the cut scraper saw a reset ($(tail -1 "$RIG_DIR/slow.out"))" grep -q '"reset": true' "$RIG_DIR/slow.out"

# ---- an admin client that never finishes its request is cut too ----
in_node "$RIG_PY" -c 'import socket,sys,time
s=socket.create_connection(("'"${RIG_ADMIN%:*}"'",'"${RIG_ADMIN#*:}"')); s.sendall(b"GET /metrics HTTP/1.1\r\n"); time.sleep(10)' &
ipid=$!; RIG_PIDS+=("$ipid")
n0=$(grep -c '"event":"admin_timeout"' "$RIG_DAEMON_LOG")
for i in $(seq 1 150); do
	[ "$(grep -c '"stage":"reading"' "$RIG_DAEMON_LOG")" -ge 1 ] && break
	sleep 0.1
done
check "an admin client that never ends its request is cut" test "$(grep -c '"stage":"reading"' "$RIG_DAEMON_LOG")" -ge 1
rig_kill_pid "$ipid"
check "/healthz still answers" test "$(rig_admin /healthz)" = ok
summary
