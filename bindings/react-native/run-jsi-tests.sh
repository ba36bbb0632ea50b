#!/usr/bin/env bash
# The React Native module executed for real: the ubrn-generated JSI host object (C++) and the Rust
# library, loaded into a Hermes runtime on Linux, running the TypeScript tests — what runs in an
# app, minus the phone. Called by run-tests.sh (after generate.sh wrote cpp/generated and
# src/generated); runnable alone once those exist.
#   1. Hermes (release: libhermes, libjsi, bin/hermes), built once into
#      $CACHE/hermes-<commit>/build from, in order: $ROBUST_API_HERMES (a Hermes source or build
#      dir), the snapshot in ../shared/vendor/hermes/ next to the repository, or a git clone of
#      facebook/hermes at the pinned commit. A warm run costs nothing.
#   2. ubrn's test-runner (cpp/test-harness of the uniffi-bindgen-react-native npm package): loads
#      shared libraries exposing registerNatives(jsi::Runtime&, CallInvoker) and runs a JS file in
#      Hermes with an event loop and a CallInvoker (what React Native gives a TurboModule).
#   3. the extension librn-robust_api.so: the generated cpp/generated/robust_api.cpp plus an
#      Entrypoint.cpp, linked against target/debug/librobust_api.so by ubrn's
#      cpp/hermes-rust-extension; and jsi/TestHost.cpp, the test fixtures Hermes lacks (spawn the
#      fleet, temporary dirs, files, /proc/self counts) — a separate library the module never uses.
#   4. each test file bundled for Hermes (jsi/bundle.mjs: esbuild, then ES5) and run in
#      test-runner. test/*.test.ts are the N-API suite's files, unchanged (their Node imports
#      resolve to jsi/shims); test/jsi/*.test.ts run only here (HermesInternal, ...).
# Each suite prints `react-native-jsi: N passed, M failed (<suite>)`; the script ends with the
# total line and exits non-zero if anything failed. Arguments: test files to run instead of all.
# Env: JSI_TEST_NAME_PATTERN (a regexp over test names), ROBUST_API_HERMES.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$ROOT/scripts/lib.sh"
if [ -z "${RN_NODE_MODULES:-}" ] || [ -z "${UBRN_VERSION:-}" ]; then
  "$ROOT/scripts/setup-react-native.sh"
  . "$CACHE/react-native.env"
fi
NM="$RN_NODE_MODULES"
UBRN_PKG="$NM/uniffi-bindgen-react-native"
OUT="$ROOT/target/react-native/jsi"
mkdir -p "$OUT"

HERMES_COMMIT=d4f25d534ab744866448b36ca3bf3d97c08e638c
HERMES_BRANCH=rn/0.77-stable
HERMES_SNAPSHOT="$ROOT/../shared/vendor/hermes/hermes-rn-0.77-stable-${HERMES_COMMIT:0:7}.tar.xz"
HERMES_SNAPSHOT_SHA256=f561d473ea4e336aecc3263db95b3ca3f02c368705ad0aa24193efc2e1c4f695
HERMES_TARGETS=(API/hermes/libhermes.so jsi/libjsi.so bin/hermes)

passed=0 failed=0
failures=()
t_start=$SECONDS

# --- 1. Hermes ---------------------------------------------------------------------------------------
# Sets HERMES_SRC and HERMES_BUILD.
hermes_built() { local t; for t in "${HERMES_TARGETS[@]}"; do [ -e "$1/$t" ] || return 1; done; }
build_hermes() {  # SRC BUILD
  if hermes_built "$2"; then return 0; fi
  command -v cmake >/dev/null && command -v ninja >/dev/null || apt_ensure cmake ninja-build
  apt_ensure libicu-dev libreadline-dev
  mkdir -p "$2"
  exec 8>"$2.lock"
  flock 8   # one build at a time in this dir
  # A build someone started by hand in the same dir (ninja has no lock of its own): wait for it.
  while pgrep -f "ninja -C $2( |\$)" >/dev/null; do
    log "waiting for the Hermes build already running in $2 ($(wc -l < "$2/.ninja_log" 2>/dev/null || echo 0) steps done)"
    sleep 30
  done
  if ! hermes_built "$2"; then
    log "building Hermes (release; ${HERMES_TARGETS[*]}) in $2: once, about 20-25 min on 2 cores"
    local t0=$SECONDS
    [ -f "$2/build.ninja" ] || cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DHERMES_ENABLE_TEST_SUITE=OFF -DHERMES_BUILD_APPLE_FRAMEWORK=OFF >&2
    nice -n 10 ninja -C "$2" -j"$(nproc)" "${HERMES_TARGETS[@]}" >&2
    log "Hermes built in $((SECONDS - t0)) s"
  fi
  exec 8>&-
}
if [ -n "${ROBUST_API_HERMES:-}" ]; then
  if [ -f "$ROBUST_API_HERMES/API/jsi/jsi/jsi.h" ]; then          # a source tree: build it (cached)
    HERMES_SRC="$(cd "$ROBUST_API_HERMES" && pwd)"
    key="$(git -C "$HERMES_SRC" rev-parse --short=7 HEAD 2>/dev/null || printf '%s' "$HERMES_SRC" | sha256sum | cut -c1-12)"
    HERMES_BUILD="$CACHE/hermes-$key/build-$(printf '%s' "$HERMES_SRC" | sha256sum | cut -c1-8)"
    build_hermes "$HERMES_SRC" "$HERMES_BUILD"
  elif [ -f "$ROBUST_API_HERMES/CMakeCache.txt" ]; then          # a build tree: use it as it is
    HERMES_BUILD="$(cd "$ROBUST_API_HERMES" && pwd)"
    HERMES_SRC="$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$HERMES_BUILD/CMakeCache.txt")"
    hermes_built "$HERMES_BUILD" || die "ROBUST_API_HERMES=$HERMES_BUILD lacks ${HERMES_TARGETS[*]}"
  else
    die "ROBUST_API_HERMES=$ROBUST_API_HERMES is neither a Hermes source dir (API/jsi/jsi/jsi.h) nor a build dir (CMakeCache.txt)"
  fi
else
  HERMES_SRC="$CACHE/hermes-${HERMES_COMMIT:0:7}/src"
  HERMES_BUILD="$CACHE/hermes-${HERMES_COMMIT:0:7}/build"
  if [ ! -f "$HERMES_SRC/API/jsi/jsi/jsi.h" ] && ! hermes_built "$HERMES_BUILD"; then
    rm -rf "$HERMES_SRC.tmp" && mkdir -p "$HERMES_SRC.tmp"
    if [ -f "$HERMES_SNAPSHOT" ]; then
      log "Hermes ${HERMES_COMMIT:0:7} from the snapshot $HERMES_SNAPSHOT"
      echo "$HERMES_SNAPSHOT_SHA256  $HERMES_SNAPSHOT" | sha256sum -c --quiet - >&2 \
        || die "$HERMES_SNAPSHOT: sha256 mismatch"
      tar -xJf "$HERMES_SNAPSHOT" -C "$HERMES_SRC.tmp"
    else
      log "Hermes ${HERMES_COMMIT:0:7}: git clone --branch $HERMES_BRANCH https://github.com/facebook/hermes"
      command -v git >/dev/null || apt_ensure git
      git clone --quiet --branch "$HERMES_BRANCH" https://github.com/facebook/hermes "$HERMES_SRC.tmp" >&2
      git -C "$HERMES_SRC.tmp" checkout --quiet "$HERMES_COMMIT"
    fi
    rm -rf "$HERMES_SRC" && mv "$HERMES_SRC.tmp" "$HERMES_SRC"
  fi
  build_hermes "$HERMES_SRC" "$HERMES_BUILD"
fi
log "Hermes: source $HERMES_SRC, build $HERMES_BUILD"

# --- 2. ubrn's test-runner -----------------------------------------------------------------------------
TR="$OUT/test-runner-build"
if [ ! -x "$TR/test-runner" ] || [ "$(cat "$TR/.key" 2>/dev/null)" != "$UBRN_VERSION $HERMES_BUILD" ]; then
  rm -rf "$TR"
  cmake -S "$UBRN_PKG/cpp/test-harness" -B "$TR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DHERMES_SRC_DIR="$HERMES_SRC" -DHERMES_BUILD_DIR="$HERMES_BUILD" >&2
  ninja -C "$TR" >&2
  echo "$UBRN_VERSION $HERMES_BUILD" > "$TR/.key"
fi

# --- 3. the module under test, and the test host -------------------------------------------------------
GEN="$HERE/cpp/generated"
[ -f "$GEN/robust_api.cpp" ] && [ -f "$HERE/src/generated/robust_api.ts" ] || die "run generate.sh first"
EXT_SRC="$OUT/ext-src" EXT="$OUT/ext-build"
mkdir -p "$EXT_SRC"
# What ubrn's own JSI tests generate (ubrn_fixture_testing::jsi::generate_entrypoint).
entry="#include \"registerNatives.h\"
#include \"robust_api.hpp\"

extern \"C\" void registerNatives(jsi::Runtime &rt, std::shared_ptr<react::CallInvoker> callInvoker) {
    NativeRobustApi::registerModule(rt, callInvoker);
}"
[ "$(cat "$EXT_SRC/Entrypoint.cpp" 2>/dev/null)" = "$entry" ] || printf '%s\n' "$entry" > "$EXT_SRC/Entrypoint.cpp"
# generate.sh rewrites cpp/generated on every run: copied only when the content changed, so a warm
# run does not recompile the (large) generated host object.
mkdir -p "$EXT_SRC/generated"
for f in "$GEN"/*; do
  cmp -s "$f" "$EXT_SRC/generated/${f##*/}" || cp "$f" "$EXT_SRC/generated/"
done
ext_key="2 $UBRN_VERSION $HERMES_BUILD"
if [ ! -f "$EXT/build.ninja" ] || [ "$(cat "$EXT/.key" 2>/dev/null)" != "$ext_key" ]; then
  rm -rf "$EXT"
  cmake -S "$UBRN_PKG/cpp/hermes-rust-extension" -B "$EXT" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DHERMES_SRC_DIR="$HERMES_SRC" -DHERMES_BUILD_DIR="$HERMES_BUILD" \
    -DHERMES_EXTENSION_NAME=rn-robust_api -DRUST_LIB_NAME=robust_api -DRUST_TARGET_DIR="$ROOT/target/debug" \
    "-DHERMES_EXTENSION_CPP=$EXT_SRC/Entrypoint.cpp;$EXT_SRC/generated/robust_api.cpp" \
    "-DCMAKE_CXX_FLAGS=-I$EXT_SRC/generated" >&2
  echo "$ext_key" > "$EXT/.key"
fi
t0=$SECONDS
ninja -C "$EXT" >&2   # -Wall -Werror (ubrn's flags); rebuilds when the generated C++ changed
# (the Rust library itself is loaded at run time, from target/debug via LD_LIBRARY_PATH)
HOST_SO="$OUT/libjsi-test-host.so"
if [ ! -f "$HOST_SO" ] || [ "$HERE/jsi/TestHost.cpp" -nt "$HOST_SO" ]; then
  g++ -std=c++17 -O1 -Wall -Werror -shared -fPIC -I "$HERMES_SRC/API" -I "$HERMES_SRC/API/jsi" \
    -I "$UBRN_PKG/cpp/stubs" "$HERE/jsi/TestHost.cpp" -L "$HERMES_BUILD/jsi" -ljsi -o "$HOST_SO"
fi
log "extensions built in $((SECONDS - t0)) s"

# --- 4. the tests --------------------------------------------------------------------------------------
if [ $# -gt 0 ]; then
  TESTS=("$@")
else
  TESTS=("$HERE"/test/jsi/*.test.ts "$HERE"/test/*.test.ts)
fi
t0=$SECONDS
BUNDLES="$OUT/bundles"
rm -rf "$BUNDLES"
CANARY="$HERE/test/jsi/canary.broken.ts"
node "$HERE/jsi/bundle.mjs" "$BUNDLES" "$NM" "$CANARY" "${TESTS[@]}"
log "bundled ${#TESTS[@]} test files for Hermes in $((SECONDS - t0)) s"

export LD_LIBRARY_PATH="$HERMES_BUILD/API/hermes:$HERMES_BUILD/jsi:$ROOT/target/debug${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ROBUST_API_REPO="$ROOT"
export ROBUST_API_TEST_FLEET="${ROBUST_API_TEST_FLEET:-$ROOT/target/debug/examples/test-fleet}"
# Tests that start the official tus server (through ./tus, jsi/shims/tus.ts): it is installed once
# (cached) by scripts/setup-tus-server.sh and run with this node, spawned by the test host.
if grep -lq "from '\./tus'" "${TESTS[@]}"; then
  ROBUST_API_TUS_SERVER="$("$ROOT/scripts/setup-tus-server.sh")" || die "scripts/setup-tus-server.sh failed"
  ROBUST_API_NODE="$(command -v node)" || die "node not found (the tus server runs in Node)"
  export ROBUST_API_TUS_SERVER ROBUST_API_NODE
fi
logs="$OUT/logs" && rm -rf "$logs" && mkdir -p "$logs"
run_bundle() {  # NAME: runs BUNDLES/NAME.js in Hermes, output to logs/NAME.log (then stderr); sets rc
  set +e
  timeout -k 10 600 "$TR/test-runner" "$BUNDLES/$1.js" "$EXT/librn-robust_api.so" "$HOST_SO" \
    >"$logs/$1.log" 2>&1
  rc=$?
  set -e
  cat "$logs/$1.log" >&2
}

# The canary first: one deliberately broken expectation must make a suite fail (exit != 0 and
# `1 passed, 1 failed`); otherwise nothing this route reports can be trusted.
log "the canary (test/jsi/canary.broken.ts): its second test fails on purpose"
run_bundle canary.broken
if [ "$rc" -ne 0 ] && grep -aq '^react-native-jsi: 1 passed, 1 failed' "$logs/canary.broken.log"; then
  passed=$((passed + 1)); log "ok: the canary's broken expectation failed its suite (exit $rc)"
else
  failed=$((failed + 1)); failures+=("canary (exit $rc: a broken expectation did not fail the suite)")
  log "FAILED: the canary's deliberately broken expectation did not fail its suite (exit $rc)"
fi
for t in "${TESTS[@]}"; do
  name="$(basename "$t")" && name="${name%.test.ts}" && name="${name%.ts}"
  t0=$SECONDS
  run_bundle "$name"
  line="$(grep -a '^react-native-jsi: [0-9]* passed, [0-9]* failed' "$logs/$name.log" | head -1 || true)"
  if [ -z "$line" ]; then
    failed=$((failed + 1)); failures+=("$name (exit $rc, no summary)")
    log "FAILED: $name: test-runner exited $rc without a summary"
    continue
  fi
  np="$(sed 's/^react-native-jsi: \([0-9]*\) passed.*/\1/' <<<"$line")"
  nf="$(sed 's/^react-native-jsi: [0-9]* passed, \([0-9]*\) failed.*/\1/' <<<"$line")"
  passed=$((passed + np)); failed=$((failed + nf))
  [ "$nf" -eq 0 ] || failures+=("$name: $nf")
  if [ "$rc" -ne 0 ] && [ "$nf" -eq 0 ]; then failed=$((failed + 1)); failures+=("$name (exit $rc)"); fi
  log "$name: $np passed, $nf failed ($((SECONDS - t0)) s)"
done
[ ${#failures[@]} -eq 0 ] || log "FAILED: ${failures[*]}"
log "JSI route: $((SECONDS - t_start)) s"
echo "react-native-jsi: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
