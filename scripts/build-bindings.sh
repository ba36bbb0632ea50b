#!/usr/bin/env bash
# Builds the library (cdylib), the test-fleet binary and uniffi-bindgen, then generates the bindings
# for the given languages (kotlin, swift, python) into target/bindings/<lang>.
# Generated code is a build product: never edited by hand, never committed. One documented
# post-generation step (kotlin_error_messages below) works around a UniFFI gap.
# Everything is built with `--features bindgen` so the library, the fleet and the generator come from
# one cargo invocation (one feature set: no rebuild ping-pong, one librobust_api.so).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --features bindgen --lib --bin uniffi-bindgen --example test-fleet
lib=target/debug/librobust_api.so
[ "$(uname)" = Darwin ] && lib=target/debug/librobust_api.dylib
# UniFFI's Kotlin errors with fields override `message` with a field dump ("status=404, backend=…"),
# even when the Rust `Display` is exported (which only reaches `toString()`): uniffi-rs issue #1077,
# still open in 0.31. Kotlin code reads `e.message`, so inside `sealed class ApiException` each
# variant's `message` getter is pointed at `toString()` — the exported Rust Display text. Fails loudly
# when the generated shape changes (a UniFFI upgrade), so this can never silently stop applying.
kotlin_error_messages() {
  local kt="$1/dev/robustapi/robust_api.kt"
  perl -0pi -e '
    s{(sealed class ApiException\b.*?companion object ErrorHandler)}{
      my $b = $1;
      $n += ($b =~ s/(override val message\n\s*get\(\) = )"[^\n]*"/$1toString()/g);
      $b
    }se;
    END { exit($n > 0 ? 0 : 3) }' "$kt" ||
    { echo "build-bindings.sh: ApiException message getters not found in $kt (UniFFI changed?)" >&2; return 1; }
  if perl -0ne 'exit((/sealed class ApiException\b(.*?)companion object ErrorHandler/s && $1 =~ /get\(\) = "/) ? 0 : 1)' "$kt"; then
    echo "build-bindings.sh: a field-dump message is left in ApiException ($kt)" >&2; return 1
  fi
}

for lang in "$@"; do
  out="target/bindings/$lang"
  rm -rf "$out"
  ./target/debug/uniffi-bindgen generate --library "$lib" \
    --language "$lang" --out-dir "$out" --no-format --config uniffi.toml >/dev/null
  if [ "$lang" = kotlin ]; then kotlin_error_messages "$out"; fi
  echo "generated $lang bindings in $out" >&2
done
