#!/usr/bin/env bash
# Runs every tests/e2e/test_*.sh; prints one closing line for all of them.
cd "$(dirname "$0")/../.." || exit 1
if [ "$(id -u)" != 0 ]; then
	echo "##################################################################"
	echo "## e2e SKIPPED: not root. They need BPF, netns and cgroup rights. ##"
	echo "##################################################################"
	exit 0
fi
pass=0 fail=0 failed=()
for t in tests/e2e/test_*.sh; do
	echo "== $t"
	out=$(mktemp)
	bash "$t" 2>&1 | tee "$out"
	rc=${PIPESTATUS[0]}
	line=$(grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed' "$out" | tail -1)
	p=$(sed -E 's/.*: ([0-9]+) passed.*/\1/' <<<"$line"); f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
	pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
	if [ "$rc" != 0 ] || [ -z "$line" ]; then failed+=("$t"); [ "${f:-0}" = 0 ] && fail=$((fail + 1)); fi
	rm -f "$out"
done
for t in "${failed[@]}"; do echo "failed: $t"; done
echo "e2e: $pass passed, $fail failed"
[ "$fail" = 0 ]
