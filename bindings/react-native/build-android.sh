#!/usr/bin/env bash
# Builds the Rust library for Android and regenerates the bindings and turbo-module glue:
#   ubrn build android --config ubrn.config.yaml --and-generate [ARGS...]
# (e.g. `--release`, `--targets aarch64-linux-android`). The static libraries land in
# android/src/main/jniLibs/<abi>/librobust_api.a, which android/CMakeLists.txt links into the
# turbo-module's shared library; the app's Gradle build does the rest.
# Needs the Android NDK (ANDROID_NDK_HOME, or ANDROID_HOME/ndk/<version>), cargo-ndk and the Rust
# Android targets: this script checks for them and says what is missing (the project's CI machine
# has none of them, so this is not run in tests). Works from any cwd.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
. "$ROOT/scripts/lib.sh"

missing=()
if [ -z "${ANDROID_NDK_HOME:-}" ]; then
  sdk="${ANDROID_HOME:-${ANDROID_SDK_ROOT:-}}"
  if [ -n "$sdk" ] && ndk="$(ls -d "$sdk"/ndk/* 2>/dev/null | sort -V | tail -1)" && [ -n "$ndk" ]; then
    export ANDROID_NDK_HOME="$ndk"
  else
    missing+=("the Android NDK: install it with Android Studio's SDK Manager (NDK, side by side) and set ANDROID_HOME or ANDROID_NDK_HOME")
  fi
elif [ ! -d "$ANDROID_NDK_HOME" ]; then
  missing+=("the Android NDK: ANDROID_NDK_HOME=$ANDROID_NDK_HOME is not a directory")
fi
cargo ndk --version >/dev/null 2>&1 || missing+=("cargo-ndk: cargo install cargo-ndk")
targets=(aarch64-linux-android armv7-linux-androideabi x86_64-linux-android i686-linux-android)
[[ " $* " == *" --targets"* || " $* " == *" -t "* ]] && targets=()   # a subset: cargo says what is missing
if [ ${#targets[@]} -eq 0 ]; then
  :
elif command -v rustup >/dev/null; then
  installed="$(rustup target list --installed)"
  for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || missing+=("the Rust target $t: rustup target add $t")
  done
else
  missing+=("rustup (to add the Rust Android targets ${targets[*]})")
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "cannot build for Android on this machine; missing:"
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi

"$ROOT/scripts/setup-react-native.sh"
. "$CACHE/react-native.env"
cd "$HERE"
"$UBRN" build android --config ubrn.config.yaml --and-generate "$@"
log "built: android/src/main/jniLibs/*/librobust_api.a; glue regenerated"
