#!/usr/bin/env bash
# error-messages.sh GENERATED_TS — the one post-generation step on ubrn's TypeScript, applied to
# both the JSI API (generate.sh) and the N-API API the Node tests run (run-tests.sh).
set -euo pipefail
ts="$1"
die() { printf 'error-messages.sh: error: %s\n' "$*" >&2; exit 1; }
# ubrn's errors pass "ApiError.Http" to `Error` as the `message` (its
# own comment: `toString()` overrides are not always called), so `e.message` — what JavaScript code,
# LogBox and crash reporters read — is the variant's name, not the exported Rust Display text that
# the generated `toString()` returns. Each ApiError variant's constructor gets a lazy `message`
# getter over that `toString()`. Fails loudly if the generated shape changes (a ubrn upgrade).
variants=$(grep -c 'super("ApiError", "[A-Za-z]*");' "$ts" || true)
[ "${variants:-0}" -gt 0 ] || die "no ApiError variant constructors in $ts (ubrn changed?)"
perl -pi -e 's/^(\s*)(super\("ApiError", "[A-Za-z]+"\);)$/$1$2\n$1Object.defineProperty(this, "message", { get: () => this.toString(), configurable: true });/' "$ts"
patched=$(grep -c 'Object.defineProperty(this, "message", { get: () => this.toString()' "$ts" || true)
[ "$patched" = "$variants" ] || die "patched $patched of $variants ApiError message getters in $ts"
echo "error-messages.sh: $patched ApiError variants read their message from Rust's Display ($ts)" >&2
