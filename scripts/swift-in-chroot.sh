#!/usr/bin/env bash
# Runs CMD inside the Swift chroot (scripts/setup-swift.sh) with cwd DIR, DIR bind-mounted at the
# same absolute path, in a private mount namespace; unmounts all on exit; exits with CMD's status.
# Usage: scripts/swift-in-chroot.sh [-e NAME=VALUE | -e NAME]... DIR -- CMD [ARG...]
#   e.g. scripts/swift-in-chroot.sh -e RUST_LOG=debug "$PWD/bindings/swift" -- swift test
set -euo pipefail
. "$(dirname "$0")/lib.sh"
ROOT="$CACHE/swift-chroot"
orig_args=("$@")
usage() { die "usage: ${0##*/} [-e NAME=VALUE]... DIR -- CMD [ARG...]"; }

envs=()
while [ $# -gt 0 ]; do
  case $1 in
    -e) [ $# -ge 2 ] || usage
        case $2 in *=*) envs+=("$2") ;; *) envs+=("$2=${!2-}") ;; esac   # -e NAME passes the host's value
        shift 2 ;;
    --) usage ;;
    -*) usage ;;
    *) break ;;
  esac
done
[ $# -ge 3 ] && [ "$2" = -- ] || usage
DIR=$(realpath -e "$1") || die "no such directory: $1"
shift 2
[ -d "$DIR" ] && [ "$DIR" != / ] || die "DIR must be a directory other than /: $DIR"
case $DIR/ in "$ROOT"/*) die "DIR must not be inside the chroot: $DIR" ;; esac
[ -f "$ROOT/.robust-api-complete" ] || die "no Swift chroot at $ROOT: run scripts/setup-swift.sh first"

# Run in a private mount namespace: its mounts are invisible outside it and vanish with it even
# on kill -9, so the repository is never left bind-mounted inside ~/.cache (rm -rf would follow it).
if [ "${_ROBUST_API_MOUNT_NS-}" != $$ ]; then
  _ROBUST_API_MOUNT_NS=$$ exec unshare --mount --propagation private "$BASH" "$0" "${orig_args[@]}"
fi
unset _ROBUST_API_MOUNT_NS
trap 'umount_under "$ROOT"' EXIT   # and unmount explicitly all the same
trap 'exit 130' INT; trap 'exit 143' TERM; trap 'exit 129' HUP   # make signals run the EXIT trap

mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"   # swiftc needs /proc/self/exe
mkdir -p "$ROOT$DIR"
mountpoint -q "$ROOT$DIR" || mount --bind "$DIR" "$ROOT$DIR"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"

rc=0
chroot "$ROOT" /usr/bin/env -i -C "$DIR" PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
  TERM="${TERM:-dumb}" "${envs[@]}" "$@" || rc=$?
exit "$rc"
