#!/usr/bin/env bash
# The whole test suite — the README's test command, also what .ci/run calls.
# On a fresh Debian 12 machine (root) it installs what it needs (apt, npm, PyPI; caches under
# ~/.cache/robust-api), then runs the Rust tests and every binding suite (Python, Kotlin, Swift,
# React Native).
# Every suite runs even if an earlier one failed; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v cargo >/dev/null || die "cargo not found: install Rust (rustup, stable >= 1.85) first"
# Build tools some crates and the toolchain scripts need (no-ops when present).
apt_ensure build-essential pkg-config curl ca-certificates || die "apt install failed"
command -v npm >/dev/null || apt_ensure nodejs npm || die "apt install of nodejs/npm failed"

started=$SECONDS
failed=()
summary=()
run() {
  local name=$1; shift
  local t0=$SECONDS
  log "=== $name"
  if "$@"; then
    summary+=("$name: ok ($((SECONDS - t0)) s)")
  else
    summary+=("$name: FAILED ($((SECONDS - t0)) s)")
    failed+=("$name")
  fi
}

# Formatting and lints first: cheap, and they fail the run like any test.
lint() {
  if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    rustup component add rustfmt clippy || return 1
  fi
  cargo fmt --all --check && cargo clippy --all-targets --features bindgen -- -D warnings
}
run lint lint
# One feature set for everything (see scripts/build-bindings.sh).
run rust cargo test --features bindgen --no-fail-fast
# The shipped library's size against its budget (scripts/size-budget; release build cached).
run size scripts/size-gate.sh
# The README's other command: the demo must keep running end to end.
run demo cargo run --quiet --features bindgen --example demo
for lang in python kotlin swift react-native; do
  run "$lang" "bindings/$lang/run-tests.sh"
done

printf '\n%s\n' "${summary[@]}" >&2
log "total $((SECONDS - started)) s"
if [ ${#failed[@]} -gt 0 ]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all suites passed"
