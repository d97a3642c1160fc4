#!/usr/bin/env bash
# Installs the consumer programs of __test__/consumers (ORMs at pinned versions, `pg` = this
# package through a `file:../..` link) into .cache/consumers, where `../..` is the repo root too.
# npm ci runs only when package.json or the lockfile changed; the programs are copied every time
# and the Prisma client is generated when its schema changed. Offline: no install scripts (Prisma's
# would download engines), and `prisma generate` is pointed at a placeholder schema engine.
set -euo pipefail
cd "$(dirname "$0")/.."

src=__test__/consumers
dst=.cache/consumers
mkdir -p "$dst"

stamp() { cat "$@" | sha256sum | cut -d' ' -f1; }

deps=$(stamp "$src/package.json" "$src/package-lock.json")
if [ ! -d "$dst/node_modules" ] || [ "$(cat "$dst/.installed" 2>/dev/null)" != "$deps" ]; then
  rm -f "$dst/.installed" "$dst/.generated"
  cp "$src/package.json" "$src/package-lock.json" "$dst/"
  (cd "$dst" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  echo "$deps" > "$dst/.installed"
fi

find "$src" -maxdepth 1 -type f \( -name '*.cjs' -o -name '*.mjs' -o -name '*.mts' \) -exec cp {} "$dst/" \;
mkdir -p "$dst/prisma"
cp "$src/prisma/schema.prisma" "$dst/prisma/"

schema=$(stamp "$src/prisma/schema.prisma" "$dst/.installed")
if [ ! -f "$dst/generated/prisma/client.ts" ] || [ "$(cat "$dst/.generated" 2>/dev/null)" != "$schema" ]; then
  : > "$dst/.no-schema-engine"
  (cd "$dst" && CHECKPOINT_DISABLE=1 PRISMA_HIDE_UPDATE_MESSAGE=1 PRISMA_SCHEMA_ENGINE_BINARY="$PWD/.no-schema-engine" \
    node node_modules/prisma/build/index.js generate --schema prisma/schema.prisma >/dev/null)
  echo "$schema" > "$dst/.generated"
fi
