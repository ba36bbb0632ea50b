#!/usr/bin/env bash
# Kotlin binding tests: compiles the generated Kotlin (target/bindings/kotlin) and the JUnit 5 tests in
# bindings/kotlin/src/test/kotlin, then runs them on the JVM against target/debug/librobust_api.so and
# the local test fleet (target/debug/examples/test-fleet).
#
#   bindings/kotlin/run-tests.sh               # every test class
#   bindings/kotlin/run-tests.sh ErrorsTest    # only these classes (of package dev.robustapi.tests)
#
# Caches: the compiled generated bindings live in $CACHE/kotlin-bindings/, keyed by a hash of the
# generated .kt (plus compiler and classpath), so a warm run does not recompile them (~30 s); the
# compiled tests live in target/kotlin-tests/, keyed by the bindings key and the test sources.
# ROBUST_API_KOTLIN_NO_CACHE=1 ignores (and rewrites) both.
# Last line of output: `kotlin: N passed, M failed` (`, K skipped` appended when K > 0).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="${ROBUST_API_CACHE:-$HOME/.cache/robust-api}"
log() { printf 'run-tests.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; echo "kotlin: run failed before any test ran"; exit 1; }

# 1. Toolchain (idempotent) and the library, fleet and generated bindings.
"$ROOT/scripts/setup-kotlin.sh" || die "scripts/setup-kotlin.sh failed"
# shellcheck disable=SC1091
. "$CACHE/kotlin.env"
"$ROOT/scripts/build-bindings.sh" kotlin || die "scripts/build-bindings.sh kotlin failed"

GEN="$ROOT/target/bindings/kotlin/dev/robustapi/robust_api.kt"
LIB_DIR="$ROOT/target/debug"
FLEET="$ROOT/target/debug/examples/test-fleet"
for f in "$GEN" "$LIB_DIR/librobust_api.so" "$FLEET"; do [ -e "$f" ] || die "missing $f"; done

OUT="$ROOT/target/kotlin-tests"
mkdir -p "$OUT" "$CACHE/kotlin-bindings"
kotlin_version="$(cat "$KOTLIN_HOME/.robust-api-version" 2>/dev/null || echo unknown)"
no_cache="${ROBUST_API_KOTLIN_NO_CACHE:-0}"

# kotlinc FILE-OR-DIR... -> jar; compiles into a temporary jar and renames it (never a half-written jar).
compile() {
  local jar="$1" cp="$2"; shift 2
  local t0=$SECONDS
  "$KOTLINC" -jvm-target 17 -cp "$cp" -d "$jar.tmp.jar" "$@" || { rm -f "$jar.tmp.jar"; return 1; }
  mv "$jar.tmp.jar" "$jar"
  log "compiled $(basename "$jar") in $((SECONDS - t0)) s"
}

# 2. Generated bindings + the hand-written layer (src/main/kotlin) -> jar, cached by content.
mapfile -t MAIN_SRCS < <(find "$HERE/src/main/kotlin" -name '*.kt' | LC_ALL=C sort)
bkey="$( { cat "$GEN" "${MAIN_SRCS[@]}"; echo "$kotlin_version"; sha256sum "$KOTLINX_COROUTINES" "$JNA_JAR"; } | sha256sum | cut -c1-20)"
BINDINGS_JAR="$CACHE/kotlin-bindings/robust_api-$bkey.jar"
if [ "$no_cache" = 1 ] || [ ! -s "$BINDINGS_JAR" ]; then
  log "compiling the generated bindings ($(wc -c <"$GEN") bytes; about 30 s)"
  compile "$BINDINGS_JAR" "$JNA_JAR:$KOTLINX_COROUTINES" -nowarn "$GEN" "${MAIN_SRCS[@]}" || die "compiling the generated bindings failed"
  # Keep the 5 newest cached jars.
  ls -1t "$CACHE"/kotlin-bindings/robust_api-*.jar 2>/dev/null | tail -n +6 | xargs -r rm -f
else
  log "generated bindings unchanged: using $BINDINGS_JAR"
fi

# 3. Tests -> jar, cached by (bindings key, test sources).
mapfile -t SRCS < <(find "$HERE/src/test/kotlin" -name '*.kt' | LC_ALL=C sort)
[ ${#SRCS[@]} -gt 0 ] || die "no test sources under $HERE/src/test/kotlin"
tkey="$( { echo "$bkey"; for s in "${SRCS[@]}"; do echo "$s"; cat "$s"; done; } | sha256sum | cut -c1-20)"
TESTS_JAR="$OUT/tests-$tkey.jar"
TEST_CP="$BINDINGS_JAR:$JNA_JAR:$KOTLINX_COROUTINES:$KOTLIN_TEST:$KOTLIN_TEST_JUNIT5:$JUNIT_JUPITER_API:$OPENTEST4J:$APIGUARDIAN:$JUNIT_PLATFORM_COMMONS"
if [ "$no_cache" = 1 ] || [ ! -s "$TESTS_JAR" ]; then
  rm -f "$OUT"/tests-*.jar
  compile "$TESTS_JAR" "$TEST_CP" "${SRCS[@]}" || die "compiling the tests failed"
else
  log "tests unchanged: using $TESTS_JAR"
fi

# 4. Run JUnit. The console launcher exits 1 on a failure, 2 when no test ran (--fail-if-no-tests).
RUN_CP="$TESTS_JAR:$BINDINGS_JAR:$KOTLIN_STDLIB:$KOTLINX_COROUTINES:$KOTLIN_TEST:$KOTLIN_TEST_JUNIT5:$JNA_JAR"
LOG="$OUT/junit.log"
SELECT=(--scan-classpath "$TESTS_JAR")
if [ $# -gt 0 ]; then
  SELECT=()
  for c in "$@"; do SELECT+=("--select-class=dev.robustapi.tests.${c##*.}"); done
fi
rm -rf "$OUT/reports"
set +e
java -XX:TieredStopAtLevel=1 \
  -Djna.library.path="$LIB_DIR" \
  -Drobustapi.fleet="$FLEET" \
  -Drobustapi.root="$ROOT" \
  -jar "$JUNIT_CONSOLE" \
  --disable-banner --disable-ansi-colors --details=tree \
  -cp "$RUN_CP" "${SELECT[@]}" --fail-if-no-tests \
  --config junit.jupiter.execution.timeout.default=120s \
  --reports-dir "$OUT/reports" \
  2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e

# 5. Plain summary from the launcher's own counters.
count() { sed -nE "s/^\[ *([0-9]+) $1 *\]\$/\1/p" "$LOG" | tail -1; }
passed="$(count 'tests successful')"; failed="$(count 'tests failed')"
skipped="$(count 'tests skipped')"; aborted="$(count 'tests aborted')"
cfailed="$(count 'containers failed')"
if [ -z "$passed" ] || [ -z "$failed" ]; then
  log "no JUnit summary in $LOG (launcher exit $rc)"
  echo "kotlin: 0 passed, 1 failed"
  exit 1
fi
failed=$((failed + ${cfailed:-0}))   # a failing @BeforeAll fails its container, not a test
# JUnit silently ignores a @Test whose function returns a value (e.g. `= runBlocking { ... }` ending in
# an expression): every @Test in the sources must have been found.
found="$(count 'tests found')"
if [ $# -eq 0 ]; then
  declared="$(cat "${SRCS[@]}" | grep -cE '^\s*@Test\b' || true)"
  if [ "${found:-0}" -ne "$declared" ]; then
    log "JUnit found ${found:-0} tests but the sources declare $declared @Test functions (one returns a value? use runBlocking<Unit>)"
    failed=$((failed + declared - ${found:-0}))
  fi
fi
skipped=$((${skipped:-0} + ${aborted:-0}))
line="kotlin: $passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
  exit 1
fi
