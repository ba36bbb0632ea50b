#!/usr/bin/env bash
# React Native binding tests (what runs here, with no phone, emulator, NDK or Xcode):
#   0. scripts/setup-react-native.sh: the ubrn CLI (compiled once, cached) and node_modules (cached);
#      generate.sh: the library and test fleet (scripts/build-bindings.sh), then the TurboModule
#      bindings and glue regenerated from the current library;
#   1. node: the generated TypeScript API executed for real in Node, through ubrn's N-API target
#      (`ubrn generate napi bindings` into target/react-native/node, run by @ubjs/node), against the
#      local test fleet: test/*.test.ts with `node --test`;
#   1b. jsi: the same test files (plus test/jsi/) executed in Hermes through the generated JSI host
#      object and ubrn's test-runner (run-jsi-tests.sh; Hermes built once and cached, keyed by its
#      commit), against the same fleet;
#   2. tsc: `tsc --noEmit` with strict settings over src/ (hand-written + generated JSI TypeScript and
#      Codegen spec), the tests and the N-API bindings;
#   3. package: `tsc -p tsconfig.build.json` (what `npm pack` runs) emits package.json's main/types;
#   4. contract: React Native's Codegen parses the generated TurboModule spec, and the module name
#      and JNI symbols agree across the spec and the Android/iOS glue (test/turbo-module-contract.cjs);
#   5. c++: the generated C++ (JSI host object, turbo-module installer) compiled with
#      g++ -std=c++20 and -std=c++17, -Wall -Werror -fsyntax-only, against the JSI/CallInvoker
#      headers of the npm react-native package and ubrn's C++ runtime headers.
# Ends with one line `react-native: N passed, M failed[, K skipped]`, whatever happens. Works from
# any cwd; exits non-zero if anything failed.
# Extra arguments go to `node --test` (e.g. --test-name-pattern=queue).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$ROOT/scripts/lib.sh"
passed=0 failed=0 skipped=0 summarized=0
failures=()
summary() {
  summarized=1
  [ ${#failures[@]} -eq 0 ] || log "FAILED: ${failures[*]}"
  echo "react-native: $passed passed, $failed failed$([ "$skipped" -eq 0 ] || echo ", $skipped skipped")"
}
ok() { passed=$((passed + ${2:-1})); log "ok: $1"; }
fail() { failed=$((failed + ${2:-1})); failures+=("$1"); log "FAILED: $1"; }
tmp="$(mktemp -d)"
# Whatever stops the script, the summary line is printed (an unexpected stop counts as a failure).
trap 'rc=$?; rm -rf "$tmp"; if [ "$summarized" = 0 ]; then fail "run-tests.sh stopped (exit $rc)"; summary; fi' EXIT

if ! "$ROOT/scripts/setup-react-native.sh"; then
  fail "scripts/setup-react-native.sh"
  summary
  exit 1
fi
. "$CACHE/react-native.env"
NM="$RN_NODE_MODULES"
LIB="$ROOT/target/debug/librobust_api.so"
[ "$(uname)" = Darwin ] && LIB="$ROOT/target/debug/librobust_api.dylib"
NODE_OUT="$ROOT/target/react-native/node"

if ! "$HERE/generate.sh"; then
  fail "generate.sh (library build or ubrn generate jsi)"
  summary
  exit 1
fi

# --- 1. the generated TypeScript API in Node (N-API) -----------------------------------------------
# The N-API flavour of the bindings (the same public API as the app's JSI flavour; the FFI module
# differs), with the library's absolute path baked in, plus a verbatim copy of src/helpers.ts.
# test/api.ts re-exports both.
rm -rf "$NODE_OUT" && mkdir -p "$NODE_OUT"
ln -s "$NM" "$NODE_OUT/node_modules"   # @ubjs/node, @ubjs/core for the generated code
t0=$SECONDS
if (cd "$ROOT" && "$UBRN" generate napi bindings --library "$LIB" --lib-absolute --no-format \
      --ts-dir "$NODE_OUT/generated" >&2) &&
    "$HERE/error-messages.sh" "$NODE_OUT/generated/robust_api.ts"; then
  cp "$HERE/src/helpers.ts" "$HERE/src/robustApiService.ts" "$NODE_OUT/"
  tap="$tmp/node-test.tap"
  # One test file at a time (each starts its own fleets and clients; some assert timings).
  concurrency=()
  node --test-concurrency=1 -e 0 2>/dev/null && concurrency=(--test-concurrency=1)   # Node >= 20.10
  set +e
  (cd "$HERE" && timeout -k 10 300 node --import tsx --test "${concurrency[@]}" \
      --test-reporter=spec --test-reporter-destination=stderr \
      --test-reporter=tap --test-reporter-destination="$tap" "$@" test/*.test.ts)
  rc=$?
  set -e
  np=$(sed -n 's/^# pass \([0-9]*\)$/\1/p' "$tap" | tail -1)
  nf=$(sed -n 's/^# fail \([0-9]*\)$/\1/p' "$tap" | tail -1)
  # Skipped tests and todo tests (a known upstream bug, see README.md "Known issues").
  ns=$(sed -n 's/^# \(skipped\|todo\) \([0-9]*\)$/\2/p' "$tap" | awk '{ n += $1 } END { print n + 0 }')
  [ "$ns" -eq 0 ] || { skipped=$((skipped + ns)); log "SKIPPED: node --test: $ns skipped or todo"; }
  if [ -z "$np" ] || [ -z "$nf" ]; then
    fail "node --test (exit $rc, no summary)"
  else
    [ "$np" -eq 0 ] || ok "node --test: $np tests ($((SECONDS - t0)) s)" "$np"
    [ "$nf" -eq 0 ] || fail "node --test: $nf tests" "$nf"
    [ "$rc" -eq 0 ] || [ "$nf" -gt 0 ] || fail "node --test exited $rc"
  fi
else
  fail "ubrn generate napi bindings"
fi

# --- 1b. the JSI module in Hermes ---------------------------------------------------------------------
# run-jsi-tests.sh prints one `react-native-jsi: N passed, M failed` per test file and a total last.
t0=$SECONDS
# Part of every run. Cold, it builds Hermes once (20-25 min on 2 cores; cached under ~/.cache keyed
# by its commit). ROBUST_API_JSI=0 opts out, and the run reports the route as skipped, not passed.
if [ "${ROBUST_API_JSI:-1}" = 0 ]; then
  skipped=$((skipped + 1)); log "SKIPPED: the Hermes-JSI route (ROBUST_API_JSI=0)"
else
  set +e
  UBRN="$UBRN" UBRN_VERSION="$UBRN_VERSION" RN_NODE_MODULES="$NM" "$HERE/run-jsi-tests.sh" >"$tmp/jsi.out"
  rc=$?
  set -e
  jline="$(tail -1 "$tmp/jsi.out")"
  if [[ "$jline" =~ ^react-native-jsi:\ ([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    jp="${BASH_REMATCH[1]}" jf="${BASH_REMATCH[2]}"
    [ "$jp" -eq 0 ] || ok "JSI in Hermes (run-jsi-tests.sh): $jp tests ($((SECONDS - t0)) s)" "$jp"
    [ "$jf" -eq 0 ] || fail "JSI in Hermes (run-jsi-tests.sh): $jf tests" "$jf"
    [ "$rc" -eq 0 ] || [ "$jf" -gt 0 ] || fail "run-jsi-tests.sh exited $rc"
  else
    fail "run-jsi-tests.sh (exit $rc, no summary)"
  fi
fi

# --- 2. tsc --noEmit, strict -------------------------------------------------------------------------
# Generated TypeScript starts with `// @ts-nocheck` unless the crate's uniffi.toml says
# [bindings.typescript] strictTypeChecking = true; then tsc checks the hand-written code against the
# generated types but not the generated code itself, which is reported as a skipped check.
t0=$SECONDS
if (cd "$HERE" && node "$NM/typescript/bin/tsc" --noEmit -p tsconfig.json >&2); then
  ok "tsc --noEmit, strict: src/ (hand-written, generated JSI API, Codegen spec), tests, N-API API ($((SECONDS - t0)) s)"
  if grep -lq '^// @ts-nocheck' "$HERE"/src/generated/*.ts "$NODE_OUT"/generated/*.ts 2>/dev/null; then
    skipped=$((skipped + 1))
    log "SKIPPED: the generated TypeScript has // @ts-nocheck, so tsc did not check its code; add"
    log "  [bindings.typescript] strictTypeChecking = true to $ROOT/uniffi.toml"
  else
    ok "tsc --noEmit, strict: the generated TypeScript itself (strictTypeChecking)"
  fi
else
  fail "tsc --noEmit"
fi

# --- 3. the package's compiled entry points ----------------------------------------------------------
t0=$SECONDS
build="$tmp/build"
if (cd "$HERE" && node "$NM/typescript/bin/tsc" -p tsconfig.build.json \
      --outDir "$build/lib/module" --declarationDir "$build/lib/typescript" >&2) \
   && node -e '
     const [pkgDir, out] = process.argv.slice(1);
     const pkg = require(pkgDir + "/package.json"), fs = require("fs"), path = require("path");
     for (const [field, base] of [["main", out], ["types", out], ["react-native", pkgDir], ["source", pkgDir]]) {
       const f = path.join(base, pkg[field]);
       if (!fs.existsSync(f)) throw new Error(`package.json ${field}: ${pkg[field]} was not produced`);
     }' "$HERE" "$build"; then
  ok "package build (tsc -p tsconfig.build.json): main, types, react-native entry points exist ($((SECONDS - t0)) s)"
else
  fail "package build (tsc -p tsconfig.build.json)"
fi

# --- 4. the TurboModule contract --------------------------------------------------------------------
# React Native's Codegen accepts the generated spec, and the module name and JNI symbols agree across
# the spec, the Kotlin module, cpp-adapter.cpp, the iOS module and the podspec.
t0=$SECONDS
if node "$HERE/test/turbo-module-contract.cjs" "$HERE" "$NM" "$tmp"; then
  ok "TurboModule contract: Codegen parses the spec; names and JNI symbols agree ($((SECONDS - t0)) s)"
else
  fail "TurboModule contract (test/turbo-module-contract.cjs)"
fi

# --- 5. the generated C++ ----------------------------------------------------------------------------
# C++20 (React Native's own standard, the iOS pod) and C++17 (the generated android/CMakeLists.txt),
# two compilers at a time.
RNH="$NM/react-native/ReactCommon"
cxx_out="$tmp/cxx" && mkdir -p "$cxx_out"
cxx_check() {  # STD FILE ID: writes ID.log and ID.rc
  if g++ -std="$1" -Wall -Werror -fsyntax-only -I "$HERE/cpp" -I "$HERE/cpp/generated" \
       -I "$NM/uniffi-bindgen-react-native/cpp/includes" -I "$RNH" -I "$RNH/jsi" -I "$RNH/callinvoker" \
       "$HERE/$2" >"$cxx_out/$3.log" 2>&1; then echo 0; else echo 1; fi >"$cxx_out/$3.rc"
}
CXX_SOURCES=(cpp/generated/robust_api.cpp cpp/react-native-robust-api.cpp)
t0=$SECONDS
for std in c++20 c++17; do
  for src in "${CXX_SOURCES[@]}"; do cxx_check "$std" "$src" "$std-${src//\//_}" & done
  wait
  for src in "${CXX_SOURCES[@]}"; do
    id="$std-${src//\//_}"
    if [ "$(cat "$cxx_out/$id.rc")" = 0 ] && [ ! -s "$cxx_out/$id.log" ]; then
      ok "g++ -std=$std -Wall -Werror -fsyntax-only $src"
    else
      cat "$cxx_out/$id.log" >&2
      fail "g++ -std=$std $src"
    fi
  done
done
log "C++ checks: $((SECONDS - t0)) s"

summary
[ "$failed" -eq 0 ]
