#!/usr/bin/env bash
# One command on a fresh clone: dependencies, the addon, then the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
ls dsql-tunnel.*.node >/dev/null 2>&1 || npx napi build --platform --release --js binding.js --dts binding.d.ts
node --import tsx scripts/demo.ts
