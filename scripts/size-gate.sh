#!/usr/bin/env bash
# Size gate: builds the shipped library (the release cdylib, `[profile.release]` of Cargo.toml, no
# `bindgen` feature), prints its stripped size and a per-crate breakdown of its symbols, and fails
# if the stripped size is above the budget in `scripts/size-budget` (bytes).
#
# The cdylib is built on its own (`cargo rustc --crate-type cdylib`), the way every packaging script
# builds what it ships: when rustc emits the rlib, the cdylib and the staticlib of Cargo.toml in one
# call, fat LTO has to keep every public Rust function of every crate for the other outputs, and the
# cdylib grows by about 1 MB. The release LTO build takes minutes: its target directory is kept
# under $ROBUST_API_CACHE/size-target (default ~/.cache/robust-api/size-target), so later runs only
# relink what changed. The build keeps its symbols (CARGO_PROFILE_RELEASE_STRIP=false, link-time
# only: the code is the same) so that they can be attributed to crates (`nm`, the way `cargo bloat`
# does it; cargo bloat itself cannot analyse a build with other crate types than Cargo.toml's); the
# size gated is that of a copy stripped with `strip --strip-all`, which is what `strip = true` ships.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

budget=$(grep -v '^#' scripts/size-budget | tr -d '[:space:]')
[[ $budget =~ ^[0-9]+$ ]] || die "scripts/size-budget: expected a number of bytes, got '$budget'"

command -v strip >/dev/null || apt_ensure binutils || die "apt install of binutils failed"

export CARGO_TARGET_DIR="${SIZE_TARGET_DIR:-$CACHE/size-target}"
ROOT="$PWD"
. scripts/release-flags.sh
export CARGO_PROFILE_RELEASE_STRIP=false
case "$(uname -s)" in
  Darwin) lib="$CARGO_TARGET_DIR/release/librobust_api.dylib" ;;
  *) lib="$CARGO_TARGET_DIR/release/librobust_api.so" ;;
esac

t0=$SECONDS
log "building the release cdylib (target dir $CARGO_TARGET_DIR)"
nice -n 10 cargo rustc --quiet --release --lib --crate-type cdylib || die "release build failed"
log "built in $((SECONDS - t0)) s"

# The bundled SQLite is built with OMIT options (.cargo/config.toml); one that changes the grammar
# leaves the pre-generated parser calling functions that do not exist, which a shared library only
# notices when the statement runs. None may be left undefined.
undefined=$(nm -D --undefined-only "$lib" | awk '$2 ~ /^sqlite3/ { print $2 }' | tr '\n' ' ')
[ -z "$undefined" ] || die "SQLite functions left undefined by its compile options: $undefined"

stripped=$(mktemp)
trap 'rm -f "$stripped"' EXIT
strip --strip-all -o "$stripped" "$lib"
size=$(wc -c <"$stripped")
mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }

# Per-crate breakdown of the symbols (code and data) of the unstripped build: a Rust symbol counts
# for the crate its path starts with (`<T as Trait>::f` for T's crate; generics for the crate that
# defines the function, as cargo bloat does); uniffi's exported functions and metadata records
# count apart; C and assembly (SQLite, ring) show as [C].
printf '\n%10s  %6s  %s\n' bytes share crate
nm --print-size --size-sort --defined-only --demangle "$lib" | awk '
  function hex(s,   i, v) {
    v = 0
    for (i = 1; i <= length(s); i++) v = v * 16 + index("0123456789abcdef", substr(s, i, 1)) - 1
    return v
  }
  NF >= 4 {
    size = hex(tolower($2)); name = $4
    for (i = 5; i <= NF; i++) name = name " " $i
    sub(/^</, "", name); sub(/^(impl|dyn) /, "", name); sub(/^&(mut )?/, "", name)
    if (name ~ /^(uniffi_|ffi_|UNIFFI_META_)/) crate = "[uniffi scaffolding and metadata]"
    else if (name ~ /^[A-Za-z_][A-Za-z0-9_]*::/) { split(name, p, "::"); crate = p[1] }
    else crate = "[C]"
    total += size; by[crate] += size
  }
  END {
    for (c in by) printf "%10d  %5.1f%%  %s\n", by[c], 100 * by[c] / total, c
    printf "%10d  100.0%%  (all symbols)\n", total
  }' | sort -rn | head -26

printf '\nstripped %s (%s): %s B = %s; budget %s B = %s\n' "${lib##*/}" "$(uname -m)" "$size" \
  "$(mib "$size")" "$budget" "$(mib "$budget")"
if [ "$size" -gt "$budget" ]; then
  log "FAILED: the library is $((size - budget)) B over its budget (scripts/size-budget)"
  exit 1
fi
log "ok: $((budget - size)) B under budget"
