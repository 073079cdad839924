#!/bin/sh
# Installs the Debian packages mcpgate's build, tests and demo need, if any
# is missing. Quiet when everything is there. Needs root to install.
#
#   scripts/install-deps.sh [PROFILE...]
#
# With no profile: the build, unit and e2e tests, the demo (make deps, make
# test). Profiles add what one more target needs:
#   bench    make bench: wrk (load generator), nginx-light (upstream and the
#            reference TLS proxy)
#   kernel   make test-kernel: qemu-system-x86 (the VM), busybox-static (its
#            userland), apt + dpkg-deb fetch and unpack the kernel package
#   fmt      make fmt: clang-format
set -eu
PKGS="make gcc clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libssl-dev openssl
libjansson-dev libcurl4-openssl-dev libcmocka-dev iproute2 util-linux curl procps
python3 python3-kubernetes ca-certificates"
for profile in "$@"; do
	case "$profile" in
	bench) PKGS="$PKGS wrk nginx-light" ;;
	kernel) PKGS="$PKGS qemu-system-x86 busybox-static" ;;
	fmt) PKGS="$PKGS clang-format" ;;
	*) echo "install-deps: unknown profile $profile (bench, kernel, fmt)" >&2; exit 2 ;;
	esac
done
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# kubectl (the tests' and the demo's unmodified client) comes from the
# machine's google-cloud-cli packages when present; Debian's own is kubernetes-client.
command -v kubectl >/dev/null 2>&1 || missing="$missing kubernetes-client"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing (run as root, or apt-get install them)" >&2
	exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
