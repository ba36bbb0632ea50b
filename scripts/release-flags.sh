# Sourced (bash) by every script that builds the shipped library: scripts/size-gate.sh,
# bindings/python/bench/run-bench.sh, bindings/kotlin/build-android.sh,
# bindings/swift/build-xcframework.sh. Expects ROOT (the repository). Sets CARGO_ENCODED_RUSTFLAGS
# (after any RUSTFLAGS the caller set) so that the library carries no path of the machine that
# built it: panic locations name `tokio-1.48.0/src/…` and `robust-api/src/…`, not
# `/home/<user>/.cargo/registry/src/index.crates.io-…/` or the checkout's folder (−29 KiB of
# constants, and no user name or folder layout of the build machine in a shipped binary). A
# RUSTFLAGS setting changes every crate's fingerprint, so each of these scripts builds in a target
# directory of its own (the size gate's and the bench's is ~/.cache/robust-api/size-target).
__cargo_home="${CARGO_HOME:-$HOME/.cargo}"
# The registry folders exist once the dependencies are downloaded (a no-op when they are).
(cd "$ROOT" && cargo fetch --quiet --locked) || { echo "release-flags.sh: cargo fetch failed" >&2; exit 1; }
__flags=()
if [ -n "${RUSTFLAGS:-}" ]; then read -r -a __flags <<<"$RUSTFLAGS"; fi
for __d in "$__cargo_home"/registry/src/*/ "$__cargo_home"/git/checkouts/; do
  [ -d "$__d" ] && __flags+=("--remap-path-prefix=$__d=")
done
__flags+=("--remap-path-prefix=$ROOT/=robust-api/")
CARGO_ENCODED_RUSTFLAGS="$(IFS=$'\x1f'; printf '%s' "${__flags[*]}")"
export CARGO_ENCODED_RUSTFLAGS
unset __cargo_home __flags __d
