#!/usr/bin/env bash
# The bridge benchmark (bench/bridge.py): a fresh cache hit through the Python binding — the async
# call and the synchronous `cached_response` read — next to requests-cache and hishel (SQLite), in
# one process, against the RELEASE library (the one shipped; the test suite uses the debug build).
#   1. the release cdylib, in the size gate's cached target dir (scripts/size-gate.sh);
#   2. the generated module and the test fleet (scripts/build-bindings.sh python);
#   3. a venv of its own (target/bench/venv) with the wheel and pinned requests-cache/hishel;
#   4. bench/bridge.py, which prints the table. BENCH_N=… sets the number of timed calls.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
. "$ROOT/scripts/lib.sh"
REQUESTS_CACHE_VERSION=1.3.3
HISHEL_VERSION=2.0.0
HTTPX_VERSION=0.28.1
TARGET="${SIZE_TARGET_DIR:-$CACHE/size-target}"
LIB="$TARGET/release/librobust_api.so"
MODULE="$ROOT/target/bindings/python/robust_api.py"
VENV="$ROOT/target/bench/venv"

. "$ROOT/scripts/release-flags.sh"   # the shipped library's flags (and the size gate's target dir)
log "building the release cdylib (target dir $TARGET)"
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" CARGO_PROFILE_RELEASE_STRIP=false nice -n 10 \
  cargo rustc --quiet --release --lib --crate-type cdylib) || die "release build failed"
"$ROOT/scripts/build-bindings.sh" python

if [ ! -x "$VENV/bin/python" ]; then
  "${PYTHON:-python3}" -m venv "$VENV"
fi
PIP_CACHE_DIR="$CACHE/pip" "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  hatchling==1.27.0 mypy==1.13.0 "requests-cache==$REQUESTS_CACHE_VERSION" "hishel==$HISHEL_VERSION" \
  "httpx==$HTTPX_VERSION" >&2
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
ROBUST_API_LIB="$LIB" ROBUST_API_PY="$MODULE" PYTHONDONTWRITEBYTECODE=1 \
  "$VENV/bin/python" -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps \
  -w "$wheels" "$ROOT/bindings/python" >&2
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-index \
  --force-reinstall "$wheels"/robust_api-*.whl >&2
cd "$HERE"
env -u PYTHONPATH PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" bridge.py
