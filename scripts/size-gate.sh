#!/usr/bin/env bash
# Size gate: builds the shipped library (the release cdylib, `[profile.release]` of Cargo.toml, no
# `bindgen` feature), prints its stripped size and a per-crate breakdown (`cargo bloat`), and fails
# if the stripped size is above the budget in `scripts/size-budget` (bytes).
#
# The release LTO build takes minutes: its target directory is kept under
# $ROBUST_API_CACHE/size-target (default ~/.cache/robust-api/size-target) and `cargo bloat` is
# installed once from crates.io into $ROBUST_API_CACHE/cargo-bloat, so later runs only relink what
# changed. The build keeps its symbols (CARGO_PROFILE_RELEASE_STRIP=false, link-time only: the
# code is the same) so that `cargo bloat` can attribute them; the size gated is that of a copy
# stripped with `strip --strip-all`, which is what `strip = true` ships.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

BLOAT_VERSION=0.12.1
budget=$(grep -v '^#' scripts/size-budget | tr -d '[:space:]')
[[ $budget =~ ^[0-9]+$ ]] || die "scripts/size-budget: expected a number of bytes, got '$budget'"

bloat_root="$CACHE/cargo-bloat"
bloat() { PATH="$bloat_root/bin:$PATH" cargo bloat "$@"; }
if [ "$(bloat --version 2>/dev/null)" != "$BLOAT_VERSION" ]; then
  log "installing cargo-bloat $BLOAT_VERSION into $bloat_root"
  nice -n 10 cargo install --quiet --locked --root "$bloat_root" --version "$BLOAT_VERSION" \
    cargo-bloat || die "cargo install cargo-bloat failed"
fi
command -v strip >/dev/null || apt_ensure binutils || die "apt install of binutils failed"

export CARGO_TARGET_DIR="${SIZE_TARGET_DIR:-$CACHE/size-target}"
export CARGO_PROFILE_RELEASE_STRIP=false
case "$(uname -s)" in
  Darwin) lib="$CARGO_TARGET_DIR/release/librobust_api.dylib" ;;
  *) lib="$CARGO_TARGET_DIR/release/librobust_api.so" ;;
esac

t0=$SECONDS
log "building the release cdylib (target dir $CARGO_TARGET_DIR)"
nice -n 10 cargo build --quiet --release --lib || die "release build failed"
log "built in $((SECONDS - t0)) s"

stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
strip --strip-all -o "$stripped" "$lib"
size=$(wc -c <"$stripped")
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }

# Per-crate breakdown of the code (.text); C code (SQLite, ring's assembly) shows as [Unknown] or
# under its -sys crate. Same environment as the build above: nothing is rebuilt.
nice -n 10 env PATH="$bloat_root/bin:$PATH" cargo bloat --release --lib --crates -n 25 2>/dev/null ||
  log "warning: cargo bloat failed (the gate itself still applies)"

printf '\nstripped %s (%s): %s B = %s; budget %s B = %s\n' "${lib##*/}" "$(uname -m)" "$size" \
  "$(mib "$size")" "$budget" "$(mib "$budget")"
if [ "$size" -gt "$budget" ]; then
  log "FAILED: the library is $((size - budget)) B over its budget (scripts/size-budget)"
  exit 1
fi
log "ok: $((budget - size)) B under budget"
