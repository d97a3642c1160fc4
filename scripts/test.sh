#!/usr/bin/env bash
# The whole test suite, set-up included: dependencies, Rust checks and unit tests, the addon,
# typings drift, type tests, and the Node behaviour tests against a local DSQL-like stack.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }
need() { command -v "$1" >/dev/null 2>&1; }

# Tests run AWS's credential chain: never let it reach for instance metadata off this machine.
export AWS_EC2_METADATA_DISABLED=true
# Package installs below must never wait for an answer (CI has no stdin).
export DEBIAN_FRONTEND=noninteractive

step "tools"
need cargo || { echo "cargo not found: install Rust with rustup" >&2; exit 1; }
need node || { echo "node not found: install Node.js 20 or newer" >&2; exit 1; }
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
if ! need openssl; then
  if [ "$(id -u)" = 0 ] && need apt-get; then apt-get update -qq && apt-get install -y -qq openssl >/dev/null
  else echo "openssl not found: the test fixture makes its certificates with it" >&2; exit 1; fi
fi
if ! need nm; then
  if [ "$(id -u)" = 0 ] && need apt-get; then apt-get update -qq && apt-get install -y -qq binutils >/dev/null
  else echo "nm not found: install binutils (the package spec reads the addon's Node-API imports with it)" >&2; exit 1; fi
fi
# Clients the proxy spec runs through the proxy: Python's psycopg (over libpq) and PostgreSQL's JDBC driver.
if ! python3 -c 'import psycopg' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check 'psycopg==3.3.9'
fi
if [ ! -f /usr/share/java/postgresql.jar ]; then
  if [ "$(id -u)" = 0 ] && need apt-get; then apt-get update -qq && apt-get install -y -qq libpostgresql-jdbc-java >/dev/null
  else echo "/usr/share/java/postgresql.jar not found: install libpostgresql-jdbc-java (the proxy spec runs a JDBC program)" >&2; exit 1; fi
fi
# The SSH tunnel spec runs a real OpenSSH server on loopback in front of the gate.
if [ ! -x /usr/sbin/sshd ] || ! need ssh-agent; then
  if [ "$(id -u)" = 0 ] && need apt-get; then apt-get update -qq && apt-get install -y -qq openssh-server openssh-client >/dev/null
  else echo "/usr/sbin/sshd not found: install openssh-server (the ssh spec runs an sshd on 127.0.0.1)" >&2; exit 1; fi
fi
need java || { echo "java not found: install a JDK (the proxy spec runs a JDBC program)" >&2; exit 1; }
PG_BIN=${DSQL_TUNNEL_PG_BIN:-/usr/lib/postgresql/15/bin}
[ -x "$PG_BIN/postgres" ] || { echo "PostgreSQL server binaries not found in $PG_BIN (set DSQL_TUNNEL_PG_BIN)" >&2; exit 1; }
node --version; cargo --version

step "npm dependencies"
if [ -n "${CI:-}" ] || [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

step "cargo test"
cargo test --quiet

step "build the addon (debug) and check the generated typings for drift"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp binding.d.ts binding.js "$tmp/"
npx napi build --platform --js binding.js --dts binding.d.ts >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; exit 1; }
for f in binding.d.ts binding.js; do
  if ! cmp -s "$f" "$tmp/$f"; then
    diff -u "$tmp/$f" "$f" | head -40
    echo "$f changed when rebuilt: commit the regenerated file" >&2
    exit 1
  fi
done

step "tsc --noEmit (typings and tests)"
npx tsc --noEmit -p .

step "test fixture self-test (psql through the tunnel and gate)"
node --import tsx __test__/fixture/selftest.ts >"$tmp/selftest.log" 2>&1 || { cat "$tmp/selftest.log"; exit 1; }
tail -n 1 "$tmp/selftest.log"

step "behaviour tests"
node --import tsx --test __test__/*.spec.ts

step "behaviour tests on the other supported Node versions (20, 22, 24; fetched once into .cache/node)"
# The driver's behaviour, packaging and integrations; the CLI and fault suites run on the main Node only.
bash scripts/node-versions.sh __test__/{tls,types,query,errors,pool,stream,lifecycle,token,package,kysely,lambda,pg}.spec.ts
