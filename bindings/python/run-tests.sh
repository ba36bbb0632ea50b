#!/usr/bin/env bash
# Python binding tests, against the INSTALLED wheel:
#   1. the venv (scripts/setup-python.sh) and hatchling, the wheel's build backend;
#   2. the debug library, the test fleet and the generated module (scripts/build-bindings.sh python);
#   3. a platform wheel of the two (bindings/python/pyproject.toml), installed into the venv, only
#      when its inputs changed since the last install;
#   4. pytest on bindings/python/tests, ending with one line `python: N passed, M failed`.
# Works from any cwd; exits non-zero if anything fails. Extra arguments go to pytest (e.g. -k leak).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$ROOT/scripts/lib.sh"
HATCHLING_VERSION=1.27.0
MYPY_VERSION=1.13.0   # its stubgen makes the wheel's .pyi stubs
VENV="$CACHE/venv"
PY="$VENV/bin/python"
WHEELS="$ROOT/target/wheels"
LIB="$ROOT/target/debug/librobust_api.so"
MODULE="$ROOT/target/bindings/python/robust_api.py"

"$ROOT/scripts/setup-python.sh"
if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('hatchling') != '$HATCHLING_VERSION')" 2>/dev/null; then
  log "pip install hatchling==$HATCHLING_VERSION"
  PIP_CACHE_DIR="$CACHE/pip" "$PY" -m pip install -q --disable-pip-version-check "hatchling==$HATCHLING_VERSION" >&2
fi

if ! "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('mypy') != '$MYPY_VERSION')" 2>/dev/null; then
  log "pip install mypy==$MYPY_VERSION"
  PIP_CACHE_DIR="$CACHE/pip" "$PY" -m pip install -q --disable-pip-version-check "mypy==$MYPY_VERSION" >&2
fi

"$ROOT/scripts/build-bindings.sh" python

# The wheel is rebuilt and reinstalled only when what goes into it changed (the module is regenerated
# on every run, so it is compared by content; the 120 MB debug library by size and mtime).
stamp="$(
  { sha256sum "$MODULE" "$HERE/pyproject.toml" "$HERE/hatch_build.py" "$HERE/README.md" "$HERE/src/robust_api/__init__.py" | cut -d' ' -f1
    stat -c '%s %Y' "$LIB"; } | sha256sum | cut -d' ' -f1
)"
stamp_file="$VENV/robust-api-wheel.stamp"
if [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ] && "$PY" -c "import robust_api" 2>/dev/null; then
  log "wheel up to date in $VENV"
else
  rm -f "$stamp_file" "$WHEELS"/robust_api-*.whl
  mkdir -p "$WHEELS"
  log "building the wheel into $WHEELS"
  ROBUST_API_LIB="$LIB" ROBUST_API_PY="$MODULE" PYTHONDONTWRITEBYTECODE=1 \
    "$PY" -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps -w "$WHEELS" "$HERE" >&2
  wheel="$(ls "$WHEELS"/robust_api-*.whl)"
  log "installing $(basename "$wheel")"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --no-index --force-reinstall "$wheel" >&2
  echo "$stamp" >"$stamp_file"
fi

# From the tests folder, with nothing on PYTHONPATH: `import robust_api` can only find the wheel.
junit="$(mktemp)"
trap 'rm -f "$junit"' EXIT
cd "$HERE"
set +e
env -u PYTHONPATH ROBUST_API_EXPECT_INSTALLED=1 PYTHONDONTWRITEBYTECODE=1 \
  timeout -k 10 300 "$PY" -m pytest -q -p no:cacheprovider --junitxml="$junit" tests "$@"
rc=$?
set -e
"$PY" - "$junit" <<'PY' || true
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("python: 0 passed, 1 failed")  # pytest died before writing its report
    sys.exit()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
n = lambda k: sum(int(s.get(k, 0)) for s in suites)
failed = n("failures") + n("errors")
skipped = n("skipped")
passed = n("tests") - failed - skipped
print(f"python: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
PY
exit "$rc"
