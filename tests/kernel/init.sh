#!/bin/sh
# PID 1 of the test VM that tests/kernel/run.sh boots (busybox sh). Runs the
# kernel-path smoke in three phases and powers off; every check prints
# "ok - ..." or "not ok - ...: why" on the serial console for run.sh to count.
#   1. smoke loader: the daemon's loader module attaches, redirects, records
#      origins, fails closed (tests/kernel/smoke.c)
#   2. mcpgated reuses the pinned attachment; a selected pod's connects reach
#      its proxy, which logs them; mcpgatectl status reports it installed
#   3. mcpgatectl uninstall; smoke clean: nothing attached, nothing pinned
export PATH=/bin:/sbin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# /sys/fs/bpf is left unmounted on purpose: the loader mounts bpffs itself.

# A hung phase must not hang the host: run.sh has its own timeout too.
(sleep "${MG_VM_WATCHDOG:-150}"; echo "not ok - VM watchdog: the smoke did not finish"; poweroff -f) &

ok() { echo "ok - $1"; }
notok() { echo "not ok - $1: $2"; }

echo "# kernel $(uname -r), $(nproc) cpus"
for m in dummy inet_diag tcp_diag; do
	insmod "/lib/modules/$m.ko" 2>/dev/null || echo "# insmod $m failed"
done
ip link set lo up
ip addr add 10.96.0.1/32 dev lo
ip addr add fd00:96::1/128 dev lo
ip addr add 169.254.77.1/32 dev lo
ip addr add fd00:6d67::1/128 dev lo

CG=/sys/fs/cgroup/kubepods
PIN=/sys/fs/bpf/mcpgate
export ASAN_OPTIONS=detect_leaks=0

echo "# phase 1: the loader module"
/bin/smoke loader "$CG" "$PIN"

echo "# phase 2: mcpgated"
# The proxy addresses go to the daemon (its own dummy link).
ip addr del 169.254.77.1/32 dev lo
ip addr del fd00:6d67::1/128 dev lo
mkdir -p /run/mg
: >/run/mg/token
LOG=/run/mg/daemon.log
# No API server in here: the pod watch and the endpoint fetches fail and
# retry, the configured endpoints and the pods the previous run left in
# `intercept` stay (a restarted daemon keeps them until its first pod list).
/bin/mcpgated --cgroup-path "$CG" --pin-dir "$PIN" --node-name vm \
	--api-server https://127.0.0.1:1 --api-token-file /run/mg/token \
	--ca-cert /run/mg/ca.crt --ca-key /run/mg/ca.key --api-ca-file /run/mg/ca.crt \
	--api-endpoint 10.96.0.1:443 --api-endpoint '[fd00:96::1]:443' \
	--admin-listen 127.0.0.1:9940 --unknown-pods refuse >"$LOG" 2>&1 &
DPID=$!
i=0
while [ $i -lt 100 ] && ! grep -q '"event":"ready"' "$LOG"; do
	kill -0 $DPID 2>/dev/null || break
	sleep 0.1
	i=$((i + 1))
done
if grep -q '"event":"ready"' "$LOG"; then
	ok "mcpgated starts on this kernel"
else
	notok "mcpgated starts on this kernel" "$(tail -n 3 "$LOG" | tr '\n' ' ')"
fi
if grep -q '"event":"attached".*"reused":true' "$LOG"; then
	ok "mcpgated reuses the pinned attachment"
else
	notok "mcpgated reuses the pinned attachment" "$(grep attached "$LOG")"
fi
/bin/smoke daemon "$CG" "$LOG"
st=$(/bin/mcpgatectl status --pin-dir "$PIN")
red=$(echo "$st" | awk '$1 == "redirected" {print $2}')
if echo "$st" | grep -q '^installed' && [ "${red:-0}" -ge 3 ] &&
	echo "$st" | grep -q '^unknown pods: refuse'; then
	ok "mcpgatectl status: installed, redirected $red, unknown pods: refuse (the daemon's setting)"
else
	notok "mcpgatectl status" "$(echo "$st" | tr '\n' ' ')"
fi
echo "$st" | sed 's/^/# /'
POD=$CG/burstable/pod5e1ec7ed-0000-4000-8000-000000000002
out=$(/bin/mcpgatectl sockets cut --pod-cgroup "$POD" --pin-dir "$PIN" --method kfunc 2>&1)
rc=$?
if [ $rc = 1 ] && [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q kfunc; then
	ok "mcpgatectl sockets cut --method kfunc: one line, exit 1 (no bpf_sock_destroy on $(uname -r | cut -d- -f1))"
else
	notok "mcpgatectl sockets cut --method kfunc" "exit $rc: $out"
fi
echo "# $out"
out=$(/bin/mcpgatectl sockets cut --pod-cgroup "$POD" --pin-dir "$PIN" 2>&1)
rc=$?
# The pod has no task left: nothing to cut is a success, whichever way
# would have been used.
if [ $rc = 0 ] && echo "$out" | grep -q '^cut 0 '; then
	ok "mcpgatectl sockets cut (auto), a pod with no running task: exit 0, nothing cut"
else
	notok "mcpgatectl sockets cut (auto), a pod with no running task" "exit $rc: $out"
fi
echo "# $out"
kill $DPID
wait $DPID
rc=$?
if [ $rc = 0 ]; then ok "mcpgated stops cleanly on SIGTERM"; else notok "mcpgated stops cleanly on SIGTERM" "exit $rc"; fi

echo "# phase 3: uninstall"
out=$(/bin/mcpgatectl uninstall --pin-dir "$PIN" 2>&1)
rc=$?
if [ $rc = 0 ]; then ok "mcpgatectl uninstall"; else notok "mcpgatectl uninstall" "exit $rc: $out"; fi
/bin/smoke clean "$CG" "$PIN"

if grep -q '"level":"error"' "$LOG"; then
	echo "# daemon log errors:"
	grep '"level":"error"' "$LOG" | sed 's/^/# /'
fi
echo "# smoke-end"
poweroff -f
