#!/usr/bin/env bash
# Idempotent setup: system packages (when missing), npm dependencies, our libfuse 3 binding, the build.
# Safe to run again and again; `npm test` and `npm run demo` run it first.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists fuse3 2>/dev/null || need+=(libfuse3-dev)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v getfattr >/dev/null 2>&1 || need+=(attr)
command -v curl >/dev/null 2>&1 || need+=(curl)
# Programs the tests change files in place with.
command -v sqlite3 >/dev/null 2>&1 || need+=(sqlite3)
# The systemd unit's test: systemd-escape and systemd-analyze (nothing of systemd needs to run).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
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

# Reinstall only when the lockfile changed since the last install (npm ci wipes node_modules).
stamp=node_modules/.blackmatch-installed
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --no-audit --no-fund >&2
  echo "$want" > "$stamp"
fi

# Our libfuse 3 binding (native/fuse3), rebuilt when its sources or libfuse change.
bash scripts/build-native.sh

npx tsc -p . >&2

# The command on PATH: npm install -g . links this checkout (npm link does the same).
if ! command -v blackmatch >/dev/null 2>&1; then
  echo "setup: done. blackmatch is not on PATH: run npm install -g . (it links this checkout into $(npm prefix -g)/bin), or run node dist/src/cli/main.js" >&2
fi
