#!/usr/bin/env bash
# Installs the Kotlin/JVM toolchain for the Kotlin binding tests (idempotent) and writes
# $CACHE/kotlin.env. Usage: scripts/setup-kotlin.sh && . ~/.cache/robust-api/kotlin.env
set -euo pipefail
. "$(dirname "$0")/lib.sh"
exec >&2   # nothing on stdout
KOTLIN_VERSION=2.4.20

# JNA and JUnit 5 from Debian (plus a JRE if the machine has none).
pkgs=(libjna-java junit5)
command -v java >/dev/null || pkgs+=(default-jdk-headless)
apt_ensure "${pkgs[@]}"

# kotlinc from the npm registry, unpacked once into $KOTLIN_HOME.
KOTLIN_HOME="$CACHE/kotlin-compiler"
if [ "$(cat "$KOTLIN_HOME/.robust-api-version" 2>/dev/null)" != "$KOTLIN_VERSION" ]; then
  tgz="$CACHE/downloads/kotlin-compiler-$KOTLIN_VERSION.tgz"
  if [ ! -f "$tgz" ]; then
    log "npm pack kotlin-compiler@$KOTLIN_VERSION (about 90 MB)"
    mkdir -p "$CACHE/downloads" && tmp=$(mktemp -d "$CACHE/downloads/tmp.XXXXXX")
    (cd "$tmp" && npm pack --silent --cache "$tmp/npm" "kotlin-compiler@$KOTLIN_VERSION" >/dev/null)
    mv "$tmp/kotlin-compiler-$KOTLIN_VERSION.tgz" "$tgz" && rm -rf "$tmp"   # keep only the .tgz
  fi
  log "unpacking $tgz into $KOTLIN_HOME"
  rm -rf "$KOTLIN_HOME" "$KOTLIN_HOME.tmp" && mkdir -p "$KOTLIN_HOME.tmp"
  tar -xzf "$tgz" -C "$KOTLIN_HOME.tmp" --strip-components=1   # npm tarballs hold package/...
  chmod +x "$KOTLIN_HOME.tmp"/bin/*
  echo "$KOTLIN_VERSION" > "$KOTLIN_HOME.tmp/.robust-api-version"
  mv "$KOTLIN_HOME.tmp" "$KOTLIN_HOME"
fi

# Write the env file (export KEY=value lines, shell-quoted); every path must exist.
J=/usr/share/java L="$KOTLIN_HOME/lib"
vars=(
  KOTLIN_HOME="$KOTLIN_HOME"
  KOTLINC="$KOTLIN_HOME/bin/kotlinc"
  KOTLIN_STDLIB="$L/kotlin-stdlib.jar"
  KOTLIN_TEST="$L/kotlin-test.jar"
  KOTLIN_TEST_JUNIT5="$L/kotlin-test-junit5.jar"
  KOTLINX_COROUTINES="$L/kotlinx-coroutines-core-jvm.jar"
  JNA_JAR="$J/jna.jar"
  JUNIT_CONSOLE="$J/junit-platform-console-standalone.jar"
  JUNIT_JUPITER_API="$J/junit-jupiter-api.jar"
  JUNIT_PLATFORM_COMMONS="$J/junit-platform-commons.jar"
  OPENTEST4J="$J/opentest4j.jar"
  APIGUARDIAN="$J/apiguardian-api.jar"
)
out="$CACHE/kotlin.env"
{
  echo "# Written by scripts/setup-kotlin.sh. Source it: . $out"
  for kv in "${vars[@]}"; do
    [ -e "${kv#*=}" ] || die "missing ${kv#*=}"
    printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
  done
  echo 'export JAVA_OPTS="${JAVA_OPTS:--XX:TieredStopAtLevel=1}"  # kotlinc about 2x faster'
} > "$out.tmp"
mv "$out.tmp" "$out"
log "ok: kotlinc $KOTLIN_VERSION in $KOTLIN_HOME; env in $out"
