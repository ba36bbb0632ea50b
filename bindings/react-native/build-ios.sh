#!/usr/bin/env bash
# Builds the Rust library for iOS (device and simulator), packs it as RobustApiFramework.xcframework
# and regenerates the bindings and turbo-module glue:
#   ubrn build ios --config ubrn.config.yaml --and-generate [ARGS...]      (e.g. `--release`)
# RobustApi.podspec vendors the xcframework; then `pod install` in the app's ios/ folder.
# Needs macOS with Xcode (xcodebuild) and the Rust iOS targets: this script checks for them and says
# what is missing (the project's CI machine is Linux, so this is not run in tests). Works from any cwd.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$ROOT/scripts/lib.sh"

if [ "$(uname)" != Darwin ]; then
  log "cannot build for iOS on $(uname): it needs macOS with Xcode"
  exit 1
fi
missing=()
xcodebuild -version >/dev/null 2>&1 || missing+=("Xcode (xcodebuild): install it and run xcode-select --install")
targets=(aarch64-apple-ios aarch64-apple-ios-sim)
if command -v rustup >/dev/null; then
  installed="$(rustup target list --installed)"
  for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || missing+=("the Rust target $t: rustup target add $t")
  done
else
  missing+=("rustup (to add the Rust iOS targets ${targets[*]})")
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "cannot build for iOS on this machine; missing:"
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

"$ROOT/scripts/setup-react-native.sh"
. "$CACHE/react-native.env"
cd "$HERE"
"$UBRN" build ios --config ubrn.config.yaml --and-generate "$@"
log "built: RobustApiFramework.xcframework; glue regenerated"
