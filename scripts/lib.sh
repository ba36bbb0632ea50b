# Shared helpers for scripts/*.sh. Sourced, not executed.
# All caches live under $ROBUST_API_CACHE (default ~/.cache/robust-api).
CACHE="${ROBUST_API_CACHE:-$HOME/.cache/robust-api}"
export DEBIAN_FRONTEND=noninteractive

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# apt_ensure PKG...: install the packages that are missing (running apt-get update first).
apt_ensure() {
  local p missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  apt-get update -qq >&2
  apt-get install -qq -y --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >&2
}

# mounts_under DIR: mount points at or below DIR, deepest first.
mounts_under() {
  awk -v d="$1" '{ p = $5; gsub(/\\040/, " ", p); if (p == d || index(p, d "/") == 1) print p }' \
    /proc/self/mountinfo | sort -r
}
# umount_under DIR: unmount them all; dies if any is left (callers then must not rm -rf DIR).
umount_under() {
  local m
  while IFS= read -r m; do
    log "umount $m"
    umount "$m" 2>/dev/null || umount -l "$m"
  done < <(mounts_under "$1")
  [ -z "$(mounts_under "$1")" ] || die "still mounted under $1"
}
