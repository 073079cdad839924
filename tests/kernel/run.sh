#!/usr/bin/env bash
# make test-kernel: boots Debian's own 6.1 cloud kernel (what EKS AL2023
# nodes run) under qemu TCG with a busybox initramfs holding mcpgated,
# mcpgatectl, the smoke binary and their shared libraries, and runs the
# kernel-path smoke inside (tests/kernel/init.sh, tests/kernel/smoke.c).
# The kernel package is downloaded with apt-get download and unpacked with
# dpkg-deb -x into build/kernel/ (a cache), never installed.
#
# Environment: MG_BUILD (binaries, default build), MG_KERNEL_PKG (a
# linux-image package name to use instead of the one the
# linux-image-cloud-amd64 metapackage depends on), MG_VM_TIMEOUT (seconds,
# default 240).
set -u
cd "$(dirname "$0")/../.." || exit 1
BUILD=${MG_BUILD:-build}
CACHE=build/kernel
TIMEOUT=${MG_VM_TIMEOUT:-240}

bail() { # WHY: the VM cannot run; counted as one failure
	echo "test_kernel: $1"
	echo "test_kernel: 0 passed, 1 failed"
	exit 1
}

for b in mcpgated mcpgatectl tests/smoke; do
	[ -x "$BUILD/$b" ] || bail "missing $BUILD/$b (make test-kernel builds it)"
done
for t in qemu-system-x86_64 busybox dpkg-deb apt-get ldd gzip; do
	command -v $t >/dev/null || bail "needs $t (scripts/install-deps.sh kernel)"
done
# busybox-static's binary: the initramfs has no libc for a dynamic one.
BUSYBOX=$(command -v busybox)
ldd "$BUSYBOX" >/dev/null 2>&1 && BUSYBOX=/bin/busybox
ldd "$BUSYBOX" >/dev/null 2>&1 && bail "$BUSYBOX is not static (apt-get install busybox-static)"

TMP=$(mktemp -d /tmp/mg-kernel.XXXXXX)
QPID=
cleanup() {
	[ -n "$QPID" ] && kill "$QPID" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the kernel package ----
pkg=${MG_KERNEL_PKG:-}
if [ -z "$pkg" ]; then
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
	[ -n "$pkg" ] || { apt-get update -qq >/dev/null 2>&1; pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ {print $2; exit}'); }
fi
case "$pkg" in
linux-image-6.1.*-cloud-amd64) ;;
"") bail "apt knows no linux-image-cloud-amd64 (add Debian bookworm to the apt sources)" ;;
*) bail "linux-image-cloud-amd64 depends on $pkg, not a 6.1 kernel: this check wants Debian bookworm's 6.1 (set MG_KERNEL_PKG to override)" ;;
esac
kdir=$CACHE/$pkg
if [ ! -d "$kdir/boot" ]; then
	mkdir -p "$CACHE/dl"
	rm -f "$CACHE"/dl/*.deb
	(cd "$CACHE/dl" && apt-get download "$pkg" >/dev/null 2>&1) ||
		(apt-get update -qq >/dev/null 2>&1 && cd "$CACHE/dl" && apt-get download "$pkg" >/dev/null 2>&1) ||
		bail "apt-get download $pkg failed"
	rm -rf "$kdir.tmp"
	dpkg-deb -x "$CACHE"/dl/"$pkg"_*.deb "$kdir.tmp" || bail "dpkg-deb -x failed"
	mv "$kdir.tmp" "$kdir"
	rm -f "$CACHE"/dl/*.deb
	# A newer Debian point release replaces the cached one.
	for old in "$CACHE"/linux-image-*; do
		[ "$old" = "$kdir" ] || rm -rf "$old"
	done
fi
vmlinuz=$(ls "$kdir"/boot/vmlinuz-* 2>/dev/null | head -1)
config=$(ls "$kdir"/boot/config-* 2>/dev/null | head -1)
[ -n "$vmlinuz" ] && [ -n "$config" ] || bail "$kdir has no vmlinuz/config"
kver=${vmlinuz##*/vmlinuz-}
echo "== $pkg ($kver)"

# What the kernel half needs, from the package's own config. Modules (=m)
# are loaded by init from the unpacked /lib/modules.
need="CONFIG_BPF_SYSCALL=y CONFIG_CGROUP_BPF=y CONFIG_DEBUG_INFO_BTF=y CONFIG_CGROUPS=y
CONFIG_IPV6=y CONFIG_BLK_DEV_INITRD=y CONFIG_DEVTMPFS=y CONFIG_SERIAL_8250_CONSOLE=y"
for c in $need; do
	grep -qx "$c" "$config" || bail "$config lacks $c"
done
echo "   config: $(grep -E '^CONFIG_(DUMMY|INET_DIAG|INET_TCP_DIAG|INET_DIAG_DESTROY)=' "$config" | tr '\n' ' ')"

# ---- the initramfs ----
root=$TMP/root
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,run,lib/modules,etc}
cp "$BUSYBOX" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp tests/kernel/init.sh "$root/init"
chmod 755 "$root/init"
for b in mcpgated mcpgatectl tests/smoke; do
	cp "$BUILD/$b" "$root/bin/"
done
# Every shared library ldd lists, at the same path, and the loader.
for b in "$root"/bin/mcpgated "$root"/bin/mcpgatectl "$root"/bin/smoke; do
	ldd "$b" | awk '/=> \// {print $3} /^\t\/.*ld-linux/ {print $1}'
done | sort -u | while read -r lib; do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
for m in dummy inet_diag tcp_diag; do
	f=$(find "$kdir/lib/modules/$kver" -name "$m.ko" | head -1)
	[ -n "$f" ] && cp "$f" "$root/lib/modules/"
done
(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null) | gzip -1 >"$TMP/initrd.gz" ||
	bail "building the initramfs failed"
echo "   initramfs: $(du -h "$TMP/initrd.gz" | cut -f1) ($(find "$root" -type f | wc -l) files)"

# ---- boot ----
# loglevel=1: kernel messages (emergencies aside) stay off the serial line,
# so they cannot split a result line; a panic still shows.
start=$(date +%s.%N)
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -m 768 -smp 2 -nographic -no-reboot \
	-kernel "$vmlinuz" -initrd "$TMP/initrd.gz" \
	-append "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init" \
	</dev/null >"$TMP/console" 2>&1 &
QPID=$!
wait "$QPID"
qrc=$?
QPID=
end=$(date +%s.%N)
tr -d '\r' <"$TMP/console" >"$TMP/out"

grep -E '^(ok|not ok) - |^# ' "$TMP/out"
pass=$(grep -c '^ok - ' "$TMP/out")
fail=$(grep -c '^not ok - ' "$TMP/out")
if ! grep -q '^# smoke-end' "$TMP/out"; then
	echo "test_kernel: the VM did not finish the smoke (qemu exit $qrc); console tail:"
	tail -n 30 "$TMP/out" | sed 's/^/   | /'
	fail=$((fail + 1))
fi
if [ "$pass" = 0 ]; then
	fail=$((fail + 1))
fi
awk -v s="$start" -v e="$end" 'BEGIN {printf "   VM wall time %.1f s (boot to poweroff, TCG)\n", e - s}'
echo "test_kernel: $pass passed, $fail failed"
[ "$fail" = 0 ]
