#!/usr/bin/env bash
# Creates (once) the venv for the Python binding tests, with a pinned pytest.
# Usage: scripts/setup-python.sh && ~/.cache/robust-api/venv/bin/python -m pytest ...
# PYTHON picks the interpreter (default: python3 on PATH).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
exec >&2   # nothing on stdout
PYTEST_VERSION=8.4.2
PY="${PYTHON:-python3}"
VENV="$CACHE/venv"

# Done when the venv works and has the pinned pytest (a broken or half-made venv fails this).
if "$VENV/bin/python" -c "import pytest, sys; sys.exit(pytest.__version__ != '$PYTEST_VERSION')" 2>/dev/null; then
  log "ok: $VENV (pytest $PYTEST_VERSION)"; exit 0
fi

log "creating $VENV with $($PY --version 2>&1)"
rm -rf "$VENV"
if ! "$PY" -m venv "$VENV" 2>/dev/null; then   # Debian's python3 needs python3-venv for ensurepip
  rm -rf "$VENV"
  apt_ensure python3-venv
  "$PY" -m venv "$VENV"
fi
log "pip install pytest==$PYTEST_VERSION"
PIP_CACHE_DIR="$CACHE/pip" "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
  "pytest==$PYTEST_VERSION"
"$VENV/bin/python" -m pytest --version
log "ok: $VENV"
