#!/usr/bin/env bash
# Brings a checkout to a runnable state, installing only what is missing: system packages (Debian,
# as root or with sudo), npm dependencies (npm ci, which also builds the addons and the TypeScript),
# then an incremental rebuild of the native addons and the TypeScript. Used by `npm test` and `npm run demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1; then
  bash scripts/setup-system.sh
else
  echo "mmesid: not a Debian-like system; install libtorch, OpenBLAS, ninja and ccache yourself" >&2
fi

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "mmesid: installing npm dependencies (npm ci)" >&2
  npm ci --no-audit --no-fund
else
  node scripts/build-native.js
  npx tsc -p tsconfig.build.json
fi
