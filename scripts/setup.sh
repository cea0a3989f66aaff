#!/usr/bin/env bash
# Idempotent setup: system packages (when missing), npm dependencies, the patched FUSE binding, the build.
# Safe to run again and again; `npm test` and `npm run demo` run it first.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v fusermount >/dev/null 2>&1 || need+=(fuse)
pkg-config --exists fuse 2>/dev/null || need+=(libfuse-dev)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing system packages: ${need[*]} (run as root, or install them with apt-get)" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}" >&2
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi

# /dev/fuse is where the kernel talks to us; containers sometimes lack the node even with the module present.
if [ ! -e /dev/fuse ] && [ "$(id -u)" = 0 ]; then mknod -m 666 /dev/fuse c 10 229 || true; fi

# Reinstall only when the lockfile or the patches changed since the last install (npm ci wipes node_modules).
stamp=node_modules/.blackmatch-installed
want=$(cat package-lock.json patches/*.patch | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund >&2
  # patches/ fixes the FUSE binding (utimens lost mtime; timestamps had millisecond precision): apply, rebuild.
  npx patch-package >&2
  rm -rf node_modules/@cocalc/fuse-native/build
  npm_config_build_from_source=true npm rebuild @cocalc/fuse-native >&2
  echo "$want" > "$stamp"
fi

npx tsc -p . >&2
