#!/usr/bin/env bash
# Builds the Rust library (debug), the test fleet and the Swift bindings, then copies the generated
# RobustApi.swift and RobustApiFFI.h into this SwiftPM package (both gitignored; never edit them).
# Afterwards `swift build` / `swift test` work in bindings/swift (system-library route).
# Linux: uses scripts/build-bindings.sh. macOS: the same steps against librobust_api.dylib.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
GEN="$ROOT/target/bindings/swift"

if [ "$(uname -s)" = Darwin ]; then
  # scripts/build-bindings.sh names librobust_api.so; on macOS the cdylib is a .dylib.
  (cd "$ROOT" &&
    cargo build --quiet --features bindgen --lib --bin uniffi-bindgen --example test-fleet &&
    rm -rf "$GEN" &&
    ./target/debug/uniffi-bindgen generate --library target/debug/librobust_api.dylib \
      --language swift --out-dir "$GEN" --no-format --config uniffi.toml >/dev/null)
else
  "$ROOT/scripts/build-bindings.sh" swift
fi

# Copy only when changed, so SwiftPM does not recompile the bindings on every run.
put() {
  if ! cmp -s "$1" "$2"; then
    cp "$1" "$2"
    echo "prepare.sh: updated ${2#"$ROOT"/}" >&2
  fi
}
put "$GEN/RobustApi.swift" "$HERE/Sources/RobustApi/RobustApi.swift"
put "$GEN/RobustApiFFI.h" "$HERE/Sources/RobustApiFFI/RobustApiFFI.h"
