#!/usr/bin/env bash
# node-postgres's own integration tests against this package (aliased as `pg`) and against real
# pg, both over verified TLS through the fixture's tunnel and gate (a fresh stack for each run).
# Writes .tmp/pg-suite.txt and prints it.
#
#   scripts/pg-suite.sh [--only REGEX] [--skip-real] [--budget SECONDS]
#     --only REGEX   run only the test files (paths under test/integration) matching REGEX
#     --skip-real    reuse the last real-pg run instead of running it again
#     --budget S     time for one run's test files (default 280); each file gets 40 s at most
#
# Environment: PG_SUITE_MIRROR (node-postgres git dir), PG_SUITE_TAG (default: the newest
# pg@8.x tag not newer than the installed pg).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=$ROOT/.cache/pg-suite
MIRROR=${PG_SUITE_MIRROR:-/work/.mirror/brianc+node-postgres/repo}
ONLY=
SKIP_REAL=0
BUDGET=280
while [ $# -gt 0 ]; do
  case $1 in
    --only) ONLY=$2; shift 2 ;;
    --skip-real) SKIP_REAL=1; shift ;;
    --budget) BUDGET=$2; shift 2 ;;
    *) echo "usage: $0 [--only REGEX] [--skip-real] [--budget SECONDS]" >&2; exit 2 ;;
  esac
done

REAL_PG=$ROOT/node_modules/pg
PG_VERSION=$(node -p "require('$REAL_PG/package.json').version")
if [ -z "${PG_SUITE_TAG:-}" ]; then
  PG_SUITE_TAG=$( (git -C "$MIRROR" tag -l 'pg@8.*'; echo "pg@$PG_VERSION") | sort -V | sed -n "/^pg@$PG_VERSION\$/q;p" | tail -1)
  git -C "$MIRROR" rev-parse -q --verify "refs/tags/pg@$PG_VERSION" >/dev/null && PG_SUITE_TAG=pg@$PG_VERSION
fi
mkdir -p "$CACHE" "$ROOT/.tmp"

prepare() {
  # 1. The tests, as node-postgres tagged them.
  if [ "$(cat "$CACHE/src/TAG" 2>/dev/null)" != "$PG_SUITE_TAG" ]; then
    rm -rf "$CACHE/src"
    mkdir -p "$CACHE/src"
    git -C "$MIRROR" archive "$PG_SUITE_TAG" packages/pg/test packages/pg/package.json | tar -x -C "$CACHE/src"
    echo "$PG_SUITE_TAG" > "$CACHE/src/TAG"
  fi

  # 2. What the test files require besides pg: pinned as node-postgres's devDependencies pin them
  #    (pg-copy-streams is left out with the COPY test).
  WANT=$(node -e '
    const d = require(process.argv[1]).devDependencies
    console.log(["async", "bluebird", "co"].map((n) => `${n}@${d[n]}`).join(" "))' "$CACHE/src/packages/pg/package.json")
  if [ "$(cat "$CACHE/deps" 2>/dev/null)" != "$WANT" ]; then
    echo '{ "private": true, "description": "test-runner dependencies for scripts/pg-suite.sh" }' > "$CACHE/package.json"
    # shellcheck disable=SC2086
    timeout 300 npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error $WANT
    echo "$WANT" > "$CACHE/deps"
  fi

  # 3. Two trees: the same tests and lib/ shims, node_modules/pg this package or real pg.
  make_tree() { # name pg-target
    local t=$CACHE/$1
    rm -rf "$t"
    mkdir -p "$t/node_modules"
    cp -r "$CACHE/src/packages/pg/test" "$t/test"
    cp -r "$ROOT/scripts/pg-suite/lib" "$t/lib"
    ln -s "$2" "$t/node_modules/pg"
  }
  make_tree ours "$ROOT"
  make_tree real "$REAL_PG"
}

# 4. The runs happen in a network namespace of their own with nothing but loopback: whatever
#    either library or a test tries to reach (a DNS server included) cannot leave the machine.
if [ "${PG_SUITE_INNER:-}" != 1 ]; then
  prepare
  if ! unshare --net true 2>/dev/null; then
    echo "pg-suite: needs 'unshare --net' (root or CAP_SYS_ADMIN) to keep all traffic on loopback" >&2
    exit 1
  fi
  exec unshare --net -- bash -c 'ip link set lo up && PG_SUITE_INNER=1 exec bash "$0" "$@"' "$0" ${ONLY:+--only "$ONLY"} \
    $([ "$SKIP_REAL" = 1 ] && echo --skip-real) --budget "$BUDGET"
fi

# 5. One fresh fixture stack per run.
STACK_PID=
stop_stack() {
  [ -n "$STACK_PID" ] || return 0
  kill -INT "$STACK_PID" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$STACK_PID" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$STACK_PID" 2>/dev/null || true
  wait "$STACK_PID" 2>/dev/null || true
  STACK_PID=
  rm -f "$CACHE/stack.env"
}
trap stop_stack EXIT
trap "exit 130" INT TERM
start_stack() {
  rm -f "$CACHE/stack.env"
  (umask 077; : > "$CACHE/stack.env")
  node --import tsx __test__/fixture/stack.ts --print-env > "$CACHE/stack.env" 2> "$CACHE/stack.err" &
  STACK_PID=$!
  for _ in $(seq 1 120); do
    grep -q '^export PGPASSWORD=' "$CACHE/stack.env" && grep -q '^# CA:' "$CACHE/stack.env" && return 0
    kill -0 "$STACK_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "pg-suite: the fixture stack did not come up:" >&2
  cat "$CACHE/stack.err" >&2
  exit 1
}

run() { # name
  start_stack
  timeout $((BUDGET + 60)) node scripts/pg-suite/run.js --tree "$CACHE/$1" --label "$1" --env-file "$CACHE/stack.env" \
    --out "$CACHE/results-$1.json" --budget "$BUDGET" ${ONLY:+--only "$ONLY"}
  stop_stack
}

if [ "$SKIP_REAL" = 0 ] || [ ! -f "$CACHE/results-real.json" ]; then run real; fi
run ours

{
  echo "node-postgres integration tests ($PG_SUITE_TAG, packages/pg/test/integration), one process per file"
  echo "real pg: $PG_VERSION ($REAL_PG), run $(node -p "require('$CACHE/results-real.json').when")"
  echo "ours:    dsql-tunnel $(git log -1 --format='%h %s' | cut -c1-80)$([ -z "$(git status --porcelain -- src lib index.js binding.js package.json)" ] || echo ' + uncommitted changes'), run $(node -p "require('$CACHE/results-ours.json').when")"
  echo "both: PGHOST=127.0.0.1 PGPORT=<tunnel> PGUSER=admin (superuser); scripts/pg-suite/preload.js gives every client"
  echo "      bound for the tunnel ssl: { servername: <cluster name>, ca: <fixture CA> } (servername only when the test"
  echo "      set ssl itself); TLS is verified, the gate requires SNI; no other PG* variable is set. psql (gh-issues/130)"
  echo "      gets host=<cluster name> hostaddr=127.0.0.1 sslmode=verify-full. All in a network namespace with only loopback."
  if [ -n "$ONLY" ]; then echo "files matching: $ONLY"; fi
} > "$CACHE/header.txt"
node scripts/pg-suite/summary.js "$CACHE/results-real.json" "$CACHE/results-ours.json" "$CACHE/header.txt" > .tmp/pg-suite.txt
cat .tmp/pg-suite.txt
