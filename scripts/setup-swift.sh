#!/usr/bin/env bash
# Builds (once) a Debian trixie chroot with Swift 6 (swiftlang) for the Swift binding tests.
# Debian 12 has no Swift package; trixie's runs in a chroot. Use it via scripts/swift-in-chroot.sh.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
exec >&2   # nothing on stdout
ROOT="$CACHE/swift-chroot"
DONE="$ROOT/.robust-api-complete"   # written last: a chroot without it is half-built
MIRROR=http://deb.debian.org/debian
# Run a command in a private mount namespace: what it mounts vanishes with it, even on kill -9.
ns() { unshare --mount --propagation private "$@"; }

[ -f "$DONE" ] && { log "ok: $ROOT"; exit 0; }
apt_ensure debootstrap
mkdir -p "$CACHE"
exec 9>"$CACHE/swift-chroot.lock" && flock 9   # one builder at a time
[ -f "$DONE" ] && { log "ok: $ROOT (built by another run)"; exit 0; }

if [ -e "$ROOT" ]; then   # an interrupted build: start afresh
  log "removing half-built $ROOT"
  umount_under "$ROOT"    # (leftovers of older scripts; ns() leaves none)
  rm -rf --one-file-system "$ROOT"
fi

log "debootstrap trixie into $ROOT (about 1 min)"
ns debootstrap --variant=minbase trixie "$ROOT" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
  { tail -n 30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }

log "installing swiftlang libc6-dev in the chroot (about 530 MB download)"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
ns --mount-proc="$ROOT/proc" chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive sh -ec '
    apt-get update -qq
    apt-get install -qq -y --no-install-recommends -o Dpkg::Use-Pty=0 swiftlang libc6-dev >/dev/null
    apt-get clean
    swift --version'
touch "$DONE"
log "ok: $ROOT ($(du -sh --one-file-system "$ROOT" | cut -f1))"
