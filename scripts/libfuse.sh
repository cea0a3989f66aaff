#!/usr/bin/env bash
# libfuse for our binding: the system's when it has kernel passthrough (3.16 and later); otherwise Debian's
# libfuse 3.17 source, built once into native/fuse3/libfuse (a shared library the addon finds by its rpath).
# Prints the PKG_CONFIG_PATH to build with (empty: the system's libfuse). Anything missing or failing here
# falls back to the system's libfuse 3.14: blackmatch works the same, without passthrough.
set -uo pipefail
cd "$(dirname "$0")/.."

version=3.17.2
sha256=3d932431ad94e86179e5265cddde1d67aa3bb2fb09a5bd35c641f86f2b5ed06f
prefix=$PWD/native/fuse3/libfuse
pc_dir() { find "$prefix" -name fuse3.pc -printf '%h\n' 2>/dev/null | head -n1; }

if pkg-config --atleast-version=3.16 fuse3 2>/dev/null; then exit 0; fi
if [ -n "$(pc_dir)" ]; then pc_dir; exit 0; fi
if [ "${BLACKMATCH_SYSTEM_LIBFUSE:-}" = 1 ]; then exit 0; fi

fail() { echo "setup: $1: building against the system's libfuse $(pkg-config --modversion fuse3) (no passthrough)" >&2; exit 0; }
need=()
command -v meson >/dev/null 2>&1 || need+=(meson)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || fail "meson and ninja are missing"
  apt-get install -y -qq "${need[@]}" >&2 || { apt-get update -qq >&2 && apt-get install -y -qq "${need[@]}" >&2; } || fail "cannot install ${need[*]}"
fi
mirror=$(grep -hoE '^URIs: *http[^ ]*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | sed 's/^URIs: *//' || true)
mirror=${mirror:-http://deb.debian.org/debian}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
curl -fsS --max-time 120 -o "$work/src.tar.gz" "${mirror%/}/pool/main/f/fuse3/fuse3_${version}.orig.tar.gz" || fail "cannot fetch libfuse $version from $mirror"
echo "$sha256  $work/src.tar.gz" | sha256sum -c --quiet - >&2 || fail "libfuse $version source has an unexpected checksum"
tar -xzf "$work/src.tar.gz" -C "$work" || fail "cannot unpack libfuse $version"
(cd "$work/fuse-$version" &&
  meson setup build --prefix="$prefix" -Ddefault_library=shared -Dexamples=false -Dutils=false -Dtests=false \
    -Dudevrulesdir="$work/udev" -Duseroot=false >&2 &&
  ninja -C build install >&2) || { rm -rf "$prefix"; fail "building libfuse $version failed"; }
pc_dir
