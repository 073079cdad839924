#!/bin/sh
# install.sh: install the e2e tests' npm clients (mcp-server-kubernetes, @kubernetes/client-node)
# into tests/e2e/clients/node_modules, exactly as package-lock.json pins them. Idempotent: does
# nothing when node_modules is at least as new as the lock file. Quiet unless something fails.
set -eu
cd "$(dirname "$0")"
for tool in node npm; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "install.sh: '$tool' not found on PATH (install Node.js 20 and npm)" >&2
		exit 1
	fi
done
# npm ci rewrites node_modules/.package-lock.json on every install, so its age against the
# committed lock file tells whether the tree matches it.
stamp=node_modules/.package-lock.json
entry=node_modules/mcp-server-kubernetes/dist/index.js
if [ -f "$stamp" ] && [ -f "$entry" ] && [ -z "$(find package-lock.json -newer "$stamp")" ]; then
	exit 0
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
	cat "$log" >&2
	echo "install.sh: npm ci failed in $(pwd)" >&2
	exit 1
fi
if [ ! -f "$entry" ]; then
	echo "install.sh: npm ci succeeded but $entry is missing" >&2
	exit 1
fi
