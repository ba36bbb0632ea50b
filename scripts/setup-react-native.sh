#!/usr/bin/env bash
# Installs what the React Native binding needs (idempotent; everything cached under
# $CACHE/react-native) and writes $CACHE/react-native.env:
#   - the uniffi-bindgen-react-native CLI (`ubrn`): the npm package ships its Rust source, which is
#     compiled once here (7 to 12 minutes on 2 cores) with a committed Cargo.lock and
#     CARGO_TARGET_DIR in the cache; the binary is kept as $CACHE/react-native/bin/ubrn-<version>;
#   - the package's node_modules (`npm ci` of bindings/react-native/package-lock.json, ignoring
#     install scripts), once per lock file, linked as bindings/react-native/node_modules.
# Usage: scripts/setup-react-native.sh && . ~/.cache/robust-api/react-native.env
# `scripts/setup-react-native.sh ubrn` installs only the CLI.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
exec >&2   # nothing on stdout
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PKG="$ROOT/bindings/react-native"
UBRN_VERSION=0.31.0-5
RN="$CACHE/react-native"
mkdir -p "$RN" "$CACHE/downloads"

command -v cargo >/dev/null || die "cargo not found: install Rust (rustup, stable >= 1.85) first"
command -v npm >/dev/null || apt_ensure nodejs npm
command -v g++ >/dev/null || apt_ensure g++   # the C++ compile check in run-tests.sh
node -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' \
  || die "node >= 18 needed (have $(node --version))"

# One setup at a time (two suites or a developer and CI on the same cache; no flock on macOS).
if command -v flock >/dev/null; then
  exec 9>"$RN/.lock"
  flock 9
fi
sha256() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }

# --- ubrn ------------------------------------------------------------------------------------------
# Its npm package is unpacked into $RN/ubrn-<version>/package (the source, the C++ runtime headers the
# generated code includes, the TypeScript runtime). The stamp is the version plus the lock's hash.
UBRN_SRC="$RN/ubrn-$UBRN_VERSION/package"
UBRN_BIN="$RN/bin/ubrn-$UBRN_VERSION"
lock="$PKG/ubrn-cli.Cargo.lock"
stamp="$UBRN_VERSION $(sha256 "$lock" | cut -d' ' -f1)"
if [ ! -f "$UBRN_SRC/package.json" ]; then
  tgz="$CACHE/downloads/uniffi-bindgen-react-native-$UBRN_VERSION.tgz"
  if [ ! -f "$tgz" ]; then
    log "npm pack uniffi-bindgen-react-native@$UBRN_VERSION"
    tmp=$(mktemp -d "$CACHE/downloads/tmp.XXXXXX")
    (cd "$tmp" && npm pack --silent --cache "$CACHE/npm" "uniffi-bindgen-react-native@$UBRN_VERSION" >/dev/null)
    mv "$tmp/uniffi-bindgen-react-native-$UBRN_VERSION.tgz" "$tgz" && rm -rf "$tmp"
  fi
  rm -rf "$RN/ubrn-$UBRN_VERSION.tmp" && mkdir -p "$RN/ubrn-$UBRN_VERSION.tmp"
  tar -xzf "$tgz" -C "$RN/ubrn-$UBRN_VERSION.tmp"
  rm -rf "$RN/ubrn-$UBRN_VERSION" && mv "$RN/ubrn-$UBRN_VERSION.tmp" "$RN/ubrn-$UBRN_VERSION"
fi
if [ "$(cat "$UBRN_BIN.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -x "$UBRN_BIN" ]; then
  log "compiling the ubrn CLI $UBRN_VERSION (first time only; 7 to 12 minutes on 2 cores)"
  cp "$lock" "$UBRN_SRC/Cargo.lock"
  t0=$SECONDS
  # No debug info, no incremental state: a one-off build, about a fifth faster and 1 GB smaller.
  CARGO_TARGET_DIR="$RN/ubrn-target" CARGO_PROFILE_DEV_DEBUG=0 CARGO_INCREMENTAL=0 \
    cargo build --quiet --locked \
    --manifest-path "$UBRN_SRC/crates/ubrn_cli/Cargo.toml" --bin uniffi-bindgen-react-native
  mkdir -p "$RN/bin"
  cp "$RN/ubrn-target/debug/uniffi-bindgen-react-native" "$UBRN_BIN.tmp" && mv "$UBRN_BIN.tmp" "$UBRN_BIN"
  echo "$stamp" > "$UBRN_BIN.stamp"
  log "ubrn compiled in $((SECONDS - t0)) s"
fi
"$UBRN_BIN" --help >/dev/null || die "$UBRN_BIN does not run"
[ "${1:-}" = ubrn ] && { log "ok: $UBRN_BIN"; exit 0; }

# --- node_modules ----------------------------------------------------------------------------------
# `npm ci` of the committed lock file into $RN/npm/<hash of the lock>, once; then
# bindings/react-native/node_modules is a symlink to it (a real directory there, e.g. from a
# developer's own `npm install`, is left alone and used as it is).
deps_hash="$(sha256 "$PKG/package-lock.json" | cut -c1-16)"
DEPS="$RN/npm/$deps_hash"
if [ ! -f "$DEPS/.complete" ]; then
  log "npm ci (react-native, @ubjs/node, typescript, tsx) into $DEPS"
  rm -rf "$DEPS" && mkdir -p "$DEPS"
  cp "$PKG/package.json" "$PKG/package-lock.json" "$DEPS/"
  (cd "$DEPS" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error --cache "$CACHE/npm" >&2)
  touch "$DEPS/.complete"
  # Older installs (a previous lock file) are dropped.
  find "$RN/npm" -mindepth 1 -maxdepth 1 -type d ! -name "$deps_hash" -exec rm -rf {} +
fi
if [ -d "$PKG/node_modules" ] && [ ! -L "$PKG/node_modules" ]; then
  log "using the existing $PKG/node_modules (not a link to the cache)"
  NODE_MODULES="$PKG/node_modules"
else
  ln -sfn "$DEPS/node_modules" "$PKG/node_modules"
  NODE_MODULES="$DEPS/node_modules"
fi
for f in typescript/bin/tsc tsx/dist/cli.mjs react-native/ReactCommon/jsi/jsi/jsi.h \
         uniffi-bindgen-react-native/cpp/includes/UniffiCallInvoker.h @ubjs/node/package.json; do
  [ -e "$NODE_MODULES/$f" ] || die "missing $NODE_MODULES/$f"
done

# --- env file --------------------------------------------------------------------------------------
out="$CACHE/react-native.env"
{
  echo "# Written by scripts/setup-react-native.sh. Source it: . $out"
  printf 'export UBRN=%q\n' "$UBRN_BIN"
  printf 'export UBRN_VERSION=%q\n' "$UBRN_VERSION"
  printf 'export RN_NODE_MODULES=%q\n' "$NODE_MODULES"
} > "$out.tmp"
mv "$out.tmp" "$out"
log "ok: ubrn $UBRN_VERSION ($UBRN_BIN), node_modules in $NODE_MODULES; env in $out"
