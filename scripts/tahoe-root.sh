#!/usr/bin/env bash
# Makes sure a `tahoe` command exists for the test grid and the demo, and prints how to run it.
#
# Debian bookworm has no tahoe-lafs package; trixie does. When `tahoe` is not on PATH we build a minimal
# trixie root with debootstrap, install tahoe-lafs into it and reuse it across runs (it lives outside the
# repository, in $BLACKMATCH_TAHOE_ROOT, default /var/cache/blackmatch/trixie). Building takes a few minutes
# once; later runs find it ready and return at once.
#
# Output (stdout, one line): "path" when tahoe is on PATH, or "chroot ROOT" when the chroot must be used.
set -euo pipefail

if [ -z "${BLACKMATCH_FORCE_CHROOT:-}" ] && command -v tahoe >/dev/null 2>&1; then
  echo path
  exit 0
fi

root=${BLACKMATCH_TAHOE_ROOT:-/var/cache/blackmatch/trixie}
ready="$root/.blackmatch-ready"

mount_proc() {
  # tahoe (psutil, twisted) reads /proc; the mount does not survive a reboot, so check each time.
  if ! mountpoint -q "$root/proc"; then mount -t proc proc "$root/proc"; fi
}

if [ -f "$ready" ]; then
  mount_proc
  echo "chroot $root"
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "tahoe is not on PATH and building a Debian trixie root for it needs root" >&2
  exit 1
fi

mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock 9
if [ ! -f "$ready" ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update >&2 && apt-get install -y debootstrap >&2
  fi
  # Use the same Debian mirror this machine's apt uses (the only one reachable here).
  mirror=$(grep -hoE '^URIs: *http[^ ]*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1 | sed 's/^URIs: *//' || true)
  if [ -z "$mirror" ]; then
    mirror=$(grep -hoE '^deb +http[^ ]*debian/? ' /etc/apt/sources.list 2>/dev/null | head -n1 | awk '{print $2}' || true)
  fi
  mirror=${mirror:-http://deb.debian.org/debian}
  tmp="$root.building"
  if mountpoint -q "$tmp/proc" 2>/dev/null; then umount "$tmp/proc"; fi
  rm -rf "$tmp"
  echo "building a Debian trixie root with tahoe-lafs in $root (one time, a few minutes)..." >&2
  debootstrap --variant=minbase trixie "$tmp" "$mirror" >&2
  mount -t proc proc "$tmp/proc"
  # trixie's tahoe-lafs declares too few dependencies (see shared REFERENCE.md), so name them.
  chroot "$tmp" apt-get install -y --no-install-recommends tahoe-lafs python3-six python3-cbor2 \
    python3-collections-extended python3-eliot python3-filelock python3-foolscap python3-klein \
    python3-legacy-cgi python3-nacl python3-netifaces python3-psutil python3-pycddl python3-pyutil \
    python3-treq python3-twisted python3-wormhole python3-yaml python3-zfec openssh-client >&2
  chroot "$tmp" apt-get clean >&2
  chroot "$tmp" tahoe --version >&2
  umount "$tmp/proc"
  touch "$tmp/.blackmatch-ready"
  rm -rf "$root"
  mv "$tmp" "$root"
fi
mount_proc
echo "chroot $root"
