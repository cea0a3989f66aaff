#!/usr/bin/env bash
# Builds our libfuse 3 binding (native/fuse3) with npm's own node-gyp, only when its sources or the libfuse it
# builds against changed (scripts/libfuse.sh: one with kernel passthrough where it can). Run by `npm run setup`
# and, as the package's install script, by `npm install -g` (from a git checkout or a packed tarball).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
pkg-config --exists fuse3 2>/dev/null || missing+=(libfuse3-dev)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
command -v make >/dev/null 2>&1 || missing+=(make)
if [ ${#missing[@]} -gt 0 ]; then
  echo "blackmatch: building the FUSE binding needs ${missing[*]}: apt-get install ${missing[*]} fuse3, then install again" >&2
  exit 1
fi

native=native/fuse3
PKG_CONFIG_PATH=$(bash scripts/libfuse.sh)
export PKG_CONFIG_PATH
want=$(cat "$native/binding.gyp" "$native"/src/* <(pkg-config --modversion fuse3; pkg-config --variable=libdir fuse3) <(node --version) | sha256sum | cut -d' ' -f1)
if [ ! -f "$native/build/Release/blackmatch_fuse3.node" ] || [ "$(cat "$native/build/.stamp" 2>/dev/null)" != "$want" ]; then
  # npm puts its node-gyp on PATH for scripts; outside npm, fall back to npm exec.
  if command -v node-gyp >/dev/null 2>&1; then (cd "$native" && node-gyp rebuild >&2); else (cd "$native" && npm exec --offline -c 'node-gyp rebuild' >&2); fi
  echo "$want" > "$native/build/.stamp"
fi
