#!/usr/bin/env bash
# Installs the official tus 1.0 Node server for the resumable-upload tests (tests/tus.rs):
# `npm ci` of scripts/tus-server/package-lock.json (@tus/server and @tus/file-store, pinned) into
# $CACHE/tus-server/<hash of the lock>, once, ignoring install scripts, with server.mjs next to it.
# Prints that directory. Like scripts/setup-react-native.sh: cached under ~/.cache/robust-api.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PKG="$HERE/tus-server"
CACHE="${ROBUST_API_CACHE:-$HOME/.cache/robust-api}"
command -v npm >/dev/null || { echo "setup-tus-server.sh: npm is needed (apt-get install nodejs npm)" >&2; exit 1; }
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }
hash="$(cat "$PKG/package-lock.json" "$PKG/server.mjs" | sha256 | cut -c1-16)"
DEST="$CACHE/tus-server/$hash"
mkdir -p "$CACHE/tus-server"
if command -v flock >/dev/null; then
  exec 9>"$CACHE/tus-server/.lock"
  flock 9
fi
if [ ! -f "$DEST/.done" ]; then
  echo "setup-tus-server.sh: npm ci (@tus/server, @tus/file-store) into $DEST" >&2
  rm -rf "$DEST" && mkdir -p "$DEST"
  cp "$PKG/package.json" "$PKG/package-lock.json" "$PKG/server.mjs" "$DEST/"
  (cd "$DEST" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error --cache "$CACHE/npm" >&2)
  touch "$DEST/.done"
  find "$CACHE/tus-server" -mindepth 1 -maxdepth 1 -type d ! -name "$hash" -exec rm -rf {} +
fi
echo "$DEST"
