#!/usr/bin/env bash
# Builds bindings/swift/RobustApiFFI.xcframework for iOS apps (macOS with Xcode only):
#   * release static libraries for aarch64-apple-ios (device), aarch64-apple-ios-sim and
#     x86_64-apple-ios (simulator, merged with lipo), and with --macos also aarch64/x86_64-apple-darwin
#     (lets `swift test` on a Mac run against the xcframework too);
#   * the generated RobustApiFFI.h and RobustApiFFI.modulemap (as module.modulemap) as headers;
#   * the generated RobustApi.swift copied into Sources/RobustApi (via prepare.sh).
# Package.swift then uses the xcframework automatically (binaryTarget). Also writes
# RobustApiFFI.xcframework.zip and prints its SwiftPM checksum, for a `.binaryTarget(url:checksum:)`.
#
# Usage: bindings/swift/build-xcframework.sh [--macos]
# Environment: IPHONEOS_DEPLOYMENT_TARGET (default 13.0), MACOSX_DEPLOYMENT_TARGET (default 10.15).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
die() { echo "build-xcframework.sh: $*" >&2; exit 1; }

with_macos=false
for arg in "$@"; do
  case $arg in
    --macos) with_macos=true ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done

if [ "$(uname -s)" != Darwin ] || ! command -v xcodebuild >/dev/null 2>&1; then
  die "xcodebuild not found: this script needs macOS with Xcode (and rustup). It cannot run on Linux;
on Linux the package uses the system-library route (see README.md, run-tests.sh)."
fi
command -v cargo >/dev/null || die "cargo not found (install Rust with rustup)"

export IPHONEOS_DEPLOYMENT_TARGET="${IPHONEOS_DEPLOYMENT_TARGET:-13.0}"
export MACOSX_DEPLOYMENT_TARGET="${MACOSX_DEPLOYMENT_TARGET:-10.15}"
ios_targets=(aarch64-apple-ios aarch64-apple-ios-sim x86_64-apple-ios)
mac_targets=(aarch64-apple-darwin x86_64-apple-darwin)
targets=("${ios_targets[@]}")
$with_macos && targets+=("${mac_targets[@]}")

if command -v rustup >/dev/null; then
  rustup target add "${targets[@]}"
fi
. "$ROOT/scripts/release-flags.sh"   # no build-machine paths in the shipped library
for t in "${targets[@]}"; do
  # The staticlib on its own: built together with the rlib and the cdylib, fat LTO keeps every public
  # Rust function for the other outputs (scripts/size-gate.sh).
  echo "build-xcframework.sh: cargo rustc --release --lib --crate-type staticlib --target $t" >&2
  (cd "$ROOT" && cargo rustc --release --lib --crate-type staticlib --target "$t")
done

# Generated Swift + header from the host build (same source, so the API checksums match).
"$HERE/prepare.sh"
GEN="$ROOT/target/bindings/swift"

WORK="$ROOT/target/xcframework"
rm -rf "$WORK"
mkdir -p "$WORK/headers" "$WORK/ios-simulator" "$WORK/macos"
cp "$GEN/RobustApiFFI.h" "$WORK/headers/"
cp "$GEN/RobustApiFFI.modulemap" "$WORK/headers/module.modulemap"

lib() { echo "$ROOT/target/$1/release/librobust_api.a"; }
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output "$WORK/ios-simulator/librobust_api.a"
args=(-library "$(lib aarch64-apple-ios)" -headers "$WORK/headers"
      -library "$WORK/ios-simulator/librobust_api.a" -headers "$WORK/headers")
if $with_macos; then
  lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" -output "$WORK/macos/librobust_api.a"
  args+=(-library "$WORK/macos/librobust_api.a" -headers "$WORK/headers")
fi

OUT="$HERE/RobustApiFFI.xcframework"
rm -rf "$OUT" "$OUT.zip"
xcodebuild -create-xcframework "${args[@]}" -output "$OUT"
(cd "$HERE" && zip -qry RobustApiFFI.xcframework.zip RobustApiFFI.xcframework)
checksum=$(cd "$HERE" && swift package compute-checksum RobustApiFFI.xcframework.zip)
echo "build-xcframework.sh: wrote $OUT (Package.swift now uses it: ROBUST_API_FFI=system to opt out)" >&2
echo "build-xcframework.sh: $OUT.zip checksum $checksum" >&2
