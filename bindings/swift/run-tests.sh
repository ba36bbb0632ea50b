#!/usr/bin/env bash
# Runs the Swift binding tests (XCTest) against a local test fleet.
#   Linux: Swift 6 lives in a Debian trixie chroot (scripts/setup-swift.sh builds it once);
#          the tests run there via scripts/swift-in-chroot.sh.
#   macOS: runs `swift test` with the host toolchain.
# Prints a last line `swift: N passed, M failed`; exits non-zero if anything failed.
# Extra arguments go to `swift test` (e.g. --filter RobustApiTests.testGetWithDefaultConfigReturnsIntactResponse).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
CACHE="${ROBUST_API_CACHE:-$HOME/.cache/robust-api}"

if [ "$(uname -s)" != Darwin ]; then
  "$ROOT/scripts/setup-swift.sh"
fi
# Build the library, the fleet and the bindings; copy the generated files into the package.
"$HERE/prepare.sh" || { rc=$?; echo "swift: 0 passed, 1 failed (building the library or bindings failed)"; exit "$rc"; }

log=$(mktemp)
# The official tus server (@tus/server, pinned; scripts/setup-tus-server.sh) for the resumable-upload
# test, started here on the host as the Python and React Native suites do (the Swift chroot has no
# Node): its port and store (under the mounted repository) go to the tests as ROBUST_API_TUS_PORT
# and ROBUST_API_TUS_STORE.
tus_pid=""
trap 'rm -f "$log"; [ -z "$tus_pid" ] || kill "$tus_pid" 2>/dev/null || true' EXIT
tus_store="$HERE/.build/tus-store"
rm -rf "$tus_store" && mkdir -p "$tus_store"
tus_dir=$("$ROOT/scripts/setup-tus-server.sh")
coproc TUS { exec node "$tus_dir/server.mjs" "$tus_store" 0 0; }
tus_pid=$TUS_PID
read -r -t 30 tus_line <&"${TUS[0]}" || tus_line=""
case $tus_line in
  "LISTENING "*) export ROBUST_API_TUS_PORT=${tus_line#LISTENING } ROBUST_API_TUS_STORE=$tus_store ;;
  *) echo "run-tests.sh: the tus server did not start ($tus_line)" >&2; echo "swift: 0 passed, 1 failed (tus server)"; exit 1 ;;
esac
rc=0
if [ "$(uname -s)" = Darwin ]; then
  (cd "$HERE" && ROBUST_API_FFI=system swift test --disable-swift-testing "$@") 2>&1 | tee "$log" || rc=$?
else
  envs=()
  [ -z "${ROBUST_API_TEST_FLEET-}" ] || envs+=(-e ROBUST_API_TEST_FLEET)   # another fleet binary
  [ -z "${BENCH_N-}" ] || envs+=(-e BENCH_N)   # timed calls of BridgeTimingTests (default 1000)
  envs+=(-e ROBUST_API_TUS_PORT -e ROBUST_API_TUS_STORE)
  # The Rust client's TLS setup (rustls-platform-verifier) refuses to start without a CA store,
  # even for http:// backends, and the minimal chroot has none: lend it the host's bundle.
  # (Remove once scripts/setup-swift.sh installs ca-certificates in the chroot.)
  if [ ! -s "$CACHE/swift-chroot/etc/ssl/certs/ca-certificates.crt" ]; then
    [ -s /etc/ssl/certs/ca-certificates.crt ] || (. "$ROOT/scripts/lib.sh" && apt_ensure ca-certificates)
    mkdir -p "$HERE/.build"
    cp /etc/ssl/certs/ca-certificates.crt "$HERE/.build/host-ca-certificates.crt"
    envs+=(-e "SSL_CERT_FILE=$HERE/.build/host-ca-certificates.crt")
  fi
  # The repository root is mounted (not just bindings/swift): the package links target/debug and
  # the tests start target/debug/examples/test-fleet.
  "$ROOT/scripts/swift-in-chroot.sh" "${envs[@]}" "$ROOT" -- \
    swift test --package-path "$HERE" --disable-swift-testing "$@" 2>&1 | tee "$log" || rc=$?
fi

# XCTest's top-level summary: the "Executed N tests, with M failures (K unexpected) in ..." line after
# "Test Suite 'All tests' passed|failed" ('Selected tests' with --filter). Inner suites print the same
# kind of line, so a crash part-way leaves an inner one last: only the top-level one counts.
summary=$(awk '/^Test Suite .(All|Selected) tests. (passed|failed)/ { top = 1; next }
               top && /Executed [0-9]+ tests?, with [0-9]+ failures?/ { line = $0 } { top = 0 }
               END { print line }' "$log")
if [ -z "$summary" ]; then   # the build failed or the test process crashed: count what ran, plus one
  passed=$(grep -cE "^Test Case '.*' passed" "$log" || true)
  failed=$(grep -cE "^Test Case '.*' failed" "$log" || true)
  echo "swift: $passed passed, $(( failed + 1 )) failed (no XCTest summary: build failure or crash, exit status $rc)"
  exit $(( rc == 0 ? 1 : rc ))
fi
total=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
failures=$(sed -E 's/.*with ([0-9]+) failures?.*/\1/' <<<"$summary")
# XCTest counts failed assertions, not failed tests; count failed test cases for the summary.
failed=$(grep -cE "^Test Case '.*' failed" "$log" || true)
[ "$failed" -gt 0 ] || [ "$failures" -eq 0 ] || failed=$failures
echo "swift: $(( total - failed )) passed, $failed failed"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ] || exit $(( rc == 0 ? 1 : rc ))
