#!/usr/bin/env bash
# Builds the robust-api Android library (AAR) from bindings/kotlin/android:
#   1. generates the Kotlin bindings (scripts/build-bindings.sh kotlin) and copies them into
#      android/src/main/kotlin (generated code: never edited, never committed);
#   2. cross-compiles librobust_api.so for arm64-v8a, armeabi-v7a and x86_64 with cargo-ndk into
#      android/src/main/jniLibs/<abi>/;
#   3. runs Gradle (assembleRelease) -> android/build/outputs/aar/robust-api-release.aar.
#
#   bindings/kotlin/build-android.sh            # all steps
#   bindings/kotlin/build-android.sh --check    # only check the prerequisites
#   bindings/kotlin/build-android.sh --no-gradle  # steps 1-2 (e.g. the module is built by an app)
#
# Needs: the Android NDK (ANDROID_NDK_HOME, ANDROID_NDK_ROOT or $ANDROID_HOME/ndk/<version>),
# cargo-ndk (`cargo install cargo-ndk`), the Rust targets (`rustup target add aarch64-linux-android
# armv7-linux-androideabi x86_64-linux-android`), and for step 3 Gradle (`gradle` or a wrapper
# `android/gradlew`) with the Android SDK (ANDROID_HOME) and access to Google Maven / Maven Central.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
MODULE="$HERE/android"
ABIS=(arm64-v8a armeabi-v7a x86_64)
TARGETS=(aarch64-linux-android armv7-linux-androideabi x86_64-linux-android)
MIN_SDK=24   # keep in sync with minSdk in android/build.gradle.kts

log() { printf 'build-android.sh: %s\n' "$*" >&2; }

check_only=0 gradle=1
for a in "$@"; do
  case "$a" in
    --check) check_only=1 ;;
    --no-gradle) gradle=0 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) log "unknown option $a"; exit 2 ;;
  esac
done

# --- prerequisites: report every missing one, then stop -------------------------------------------
missing=()
ndk=""
for cand in "${ANDROID_NDK_HOME:-}" "${ANDROID_NDK_ROOT:-}" "${ANDROID_NDK:-}"; do
  if [ -n "$cand" ] && [ -d "$cand/toolchains/llvm" ]; then ndk="$cand"; break; fi
done
if [ -z "$ndk" ]; then
  for sdk in "${ANDROID_HOME:-}" "${ANDROID_SDK_ROOT:-}"; do
    [ -n "$sdk" ] && [ -d "$sdk/ndk" ] || continue
    ndk="$(find "$sdk/ndk" -mindepth 1 -maxdepth 1 -type d | sort -V | tail -1)"
    [ -n "$ndk" ] && break
  done
fi
if [ -z "$ndk" ]; then
  missing+=("the Android NDK: install it (Android Studio > SDK Manager > NDK, or sdkmanager 'ndk;27.2.12479018') and set ANDROID_NDK_HOME")
fi
if ! cargo ndk --version >/dev/null 2>&1; then
  missing+=("cargo-ndk: cargo install cargo-ndk")
fi
if command -v rustup >/dev/null 2>&1; then
  installed="$(rustup target list --installed)"
  for t in "${TARGETS[@]}"; do
    grep -qx "$t" <<<"$installed" || missing+=("Rust target $t: rustup target add $t")
  done
fi
gradle_cmd=""
if [ "$gradle" = 1 ]; then
  if [ -x "$MODULE/gradlew" ]; then gradle_cmd="$MODULE/gradlew"
  elif command -v gradle >/dev/null 2>&1; then gradle_cmd="gradle"
  else missing+=("Gradle (8.9+) for the AAR step, or run with --no-gradle and build the module from your app")
  fi
  if [ -z "${ANDROID_HOME:-${ANDROID_SDK_ROOT:-}}" ] && [ ! -f "$MODULE/local.properties" ]; then
    missing+=("the Android SDK for Gradle: set ANDROID_HOME (or write sdk.dir=... to android/local.properties)")
  fi
fi
if [ ${#missing[@]} -gt 0 ]; then
  log "cannot build the Android library on this machine; missing:"
  for m in "${missing[@]}"; do log "  - $m"; done
  exit 1
fi
log "prerequisites ok (NDK $ndk)"
[ "$check_only" = 1 ] && exit 0
export ANDROID_NDK_HOME="$ndk"

# --- 1. generated Kotlin ----------------------------------------------------------------------------
"$ROOT/scripts/build-bindings.sh" kotlin
rm -rf "$MODULE/src/main/kotlin"
mkdir -p "$MODULE/src/main/kotlin"
cp -R "$ROOT/target/bindings/kotlin/." "$MODULE/src/main/kotlin/"
cp -R "$HERE/src/main/kotlin/." "$MODULE/src/main/kotlin/"   # the hand-written layer (Flows.kt)
log "copied the generated Kotlin and the hand-written layer into android/src/main/kotlin"

# --- 2. native libraries ----------------------------------------------------------------------------
rm -rf "$MODULE/src/main/jniLibs"
targs=()
for abi in "${ABIS[@]}"; do targs+=(-t "$abi"); done
. "$ROOT/scripts/release-flags.sh"   # no build-machine paths in the shipped library
(cd "$ROOT" && cargo ndk "${targs[@]}" --platform "$MIN_SDK" -o "$MODULE/src/main/jniLibs" \
  rustc --release --lib --crate-type cdylib)
for abi in "${ABIS[@]}"; do
  so="$MODULE/src/main/jniLibs/$abi/librobust_api.so"
  [ -s "$so" ] || { log "error: $so was not produced"; exit 1; }
  log "built $so ($(du -h "$so" | cut -f1))"
done

# --- 3. AAR -------------------------------------------------------------------------------------------
if [ "$gradle" = 0 ]; then
  log "done (no Gradle step): android/ is ready to be included in an app"
  exit 0
fi
(cd "$MODULE" && "$gradle_cmd" --no-daemon assembleRelease)
aar="$MODULE/build/outputs/aar/robust-api-release.aar"
[ -s "$aar" ] || { log "error: $aar was not produced"; exit 1; }
log "AAR: $aar"
