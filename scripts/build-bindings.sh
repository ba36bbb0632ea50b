#!/usr/bin/env bash
# Builds the library (cdylib), the test-fleet binary and uniffi-bindgen, then generates the bindings
# for the given languages (kotlin, swift, python) into target/bindings/<lang>.
# Generated code is a build product: never edited, never committed.
# Everything is built with `--features bindgen` so the library, the fleet and the generator come from
# one cargo invocation (one feature set: no rebuild ping-pong, one librobust_api.so).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --features bindgen --lib --bin uniffi-bindgen --example test-fleet
lib=target/debug/librobust_api.so
[ "$(uname)" = Darwin ] && lib=target/debug/librobust_api.dylib
for lang in "$@"; do
  out="target/bindings/$lang"
  rm -rf "$out"
  ./target/debug/uniffi-bindgen generate --library "$lib" \
    --language "$lang" --out-dir "$out" --no-format --config uniffi.toml >/dev/null
  echo "generated $lang bindings in $out" >&2
done
