#!/usr/bin/env bash
# Generates the React Native package's native glue from the CURRENT library, with ubrn
# (uniffi-bindgen-react-native, installed by scripts/setup-react-native.sh):
#   1. builds target/debug/librobust_api.so and the test fleet (scripts/build-bindings.sh);
#   2. `ubrn generate jsi bindings`: the public TypeScript API src/generated/robust_api.ts, its FFI
#      declarations src/generated/robust_api-ffi.ts and the C++ JSI host object
#      cpp/generated/robust_api.{hpp,cpp};
#   3. `ubrn generate jsi turbo-module`: the Codegen spec src/NativeRobustApi.ts, the entry point
#      src/native.tsx, the C++ turbo-module cpp/react-native-robust-api.{h,cpp}, Android
#      (CMakeLists.txt, build.gradle, cpp-adapter.cpp, Kotlin module and package) and iOS
#      (RobustApi.{h,mm}, RobustApi.podspec) glue.
# Every generated file is a build product (git-ignored); this script deletes and rewrites them all.
# Works from any cwd. `--no-build` skips step 1 (the library must exist).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$ROOT/scripts/lib.sh"
if [ -z "${UBRN:-}" ]; then
  "$ROOT/scripts/setup-react-native.sh"
  . "$CACHE/react-native.env"
fi
[ "${1:-}" = --no-build ] || "$ROOT/scripts/build-bindings.sh"
lib="$ROOT/target/debug/librobust_api.so"
[ "$(uname)" = Darwin ] && lib="$ROOT/target/debug/librobust_api.dylib"
[ -f "$lib" ] || die "$lib not found: run scripts/build-bindings.sh"

# Everything generated, and nothing else: not the libraries build-android.sh / build-ios.sh put in
# android/src/main/jniLibs and RobustApiFramework.xcframework (all of it is in .gitignore).
GENERATED=(src/generated src/native.tsx src/NativeRobustApi.ts
  cpp/generated cpp/react-native-robust-api.h cpp/react-native-robust-api.cpp
  android/CMakeLists.txt android/build.gradle android/cpp-adapter.cpp
  android/src/main/AndroidManifest.xml android/src/main/java
  ios/RobustApi.h ios/RobustApi.mm RobustApi.podspec)
(cd "$HERE" && rm -rf "${GENERATED[@]}")

# ubrn reads the crate with `cargo metadata`: run it from the crate.
cd "$ROOT"
# (Library mode reads the crate's own uniffi.toml, [bindings.typescript]; ubrn refuses --config here.)
"$UBRN" generate jsi bindings --library "$lib" --no-format \
  --ts-dir "$HERE/src/generated" --cpp-dir "$HERE/cpp/generated" >&2
# The turbo-module glue is generated from the package (it reads package.json and ubrn.config.yaml).
(cd "$HERE" && "$UBRN" generate jsi turbo-module --config ubrn.config.yaml robust_api >&2)

for f in "${GENERATED[@]}"; do
  [ -e "$HERE/$f" ] || die "ubrn did not generate bindings/react-native/$f"
done

# One post-generation step (see error-messages.sh): `e.message` is the Rust Display text.
"$HERE/error-messages.sh" "$HERE/src/generated/robust_api.ts" || die "error-messages.sh failed"
log "generated the TurboModule bindings and glue in $HERE"
