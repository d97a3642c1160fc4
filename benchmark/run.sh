#!/usr/bin/env bash
# `npm run bench`: every set-up step on a fresh clone, then the harness (benchmark/main.ts).
# Arguments go to the harness: --quick, --soak=N, --soak-drivers=a,b, --only=1,2, --out=FILE, --help.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null 2>&1; }

# Nothing here may reach for instance metadata: credentials come from the fixture only.
export AWS_EC2_METADATA_DISABLED=true

step "tools"
need node || { echo "node not found: install Node.js 20 or newer" >&2; exit 1; }
need cargo || { echo "cargo not found: install Rust with rustup (the addon is built from source)" >&2; exit 1; }
PG_BIN=${DSQL_TUNNEL_PG_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$PG_BIN/postgres" ] || { echo "PostgreSQL server binaries not found in $PG_BIN (set DSQL_TUNNEL_PG_BIN)" >&2; exit 1; }
apt_install() {
  if [ "$(id -u)" = 0 ] && need apt-get; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "missing: $* (install it with your package manager)" >&2; exit 1
  fi
}
need openssl || apt_install openssl
# pg-native's libpq binding compiles against libpq's headers (found through pg_config).
if ! need pg_config || [ ! -f "$(pg_config --includedir)/libpq-fe.h" ]; then
  step "libpq-dev (for pg-native)"
  apt_install libpq-dev
fi
# Workload 12 runs an OpenSSH sshd on 127.0.0.1, and ssh -L to it.
if [ ! -x /usr/sbin/sshd ] || [ ! -x /usr/bin/ssh ]; then
  step "openssh-server and openssh-client (for workload 12)"
  apt_install openssh-server openssh-client
fi
node --version

step "npm dependencies (root)"
if [ ! -d node_modules ]; then npm ci --no-audit --no-fund --loglevel=error; fi

step "npm dependencies (benchmark/: pg, postgres.js, pg-native, the AWS signer and connector)"
if [ ! -d benchmark/node_modules ] || [ benchmark/package-lock.json -nt benchmark/node_modules/.package-lock.json ]; then
  (cd benchmark && npm ci --no-audit --no-fund --loglevel=error)
fi
# pg-native's C++ addon; npm ci builds it, unless install scripts were skipped.
if [ ! -f benchmark/node_modules/libpq/build/Release/addon.node ]; then
  (cd benchmark && npm rebuild libpq --foreground-scripts)
fi

step "dsql-tunnel release build (benchmark/.build/)"
# Apart from the root's addon, which the test loop rebuilds in debug mode: the benchmark always
# measures a release build, and loads it with NAPI_RS_NATIVE_LIBRARY_PATH.
addon=benchmark/.build/dsql-tunnel.linux-x64-gnu.node
if [ ! -f "$addon" ] || [ -n "$(find src Cargo.toml Cargo.lock build.rs -newer "$addon" -print -quit)" ]; then
  npx napi build --platform --release --output-dir benchmark/.build --js binding.js --dts binding.d.ts
else
  echo "up to date: $addon"
fi

step "benchmark"
exec node --import tsx benchmark/main.ts "$@"
