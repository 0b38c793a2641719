#!/usr/bin/env bash
# A release build carries no test hooks. Builds `fedkey` the way a release is built (no
# cargo features; target/release is reused, so a rerun only relinks what changed), serves a
# fresh data directory on a free loopback port, and checks that the /api/v1/test/* routes
# do not exist (404 for POST and GET, with a valid admin token) and that
# `--unsafe-test-clock` and FEDKEY_UNSAFE_TEST_CLOCK are refused.
# Ends with `check-release: N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --bin fedkey
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/fedkey"

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

pass=0
fail=0
check() { # description, got, want
  if [ "$2" = "$3" ]; then
    pass=$((pass + 1)); echo "ok: $1"
  else
    fail=$((fail + 1)); echo "FAILED: $1 (got $2, want $3)" >&2
  fi
}

token="$("$BIN" init --data-dir "$work/data" --output json 2>"$work/init.log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_token"])')"
"$BIN" serve --data-dir "$work/data" --listen 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
pid=$!
url=""
for _ in $(seq 1 100); do
  url="$(sed -n 's/^fedkey listening on //p' "$work/serve.out")"
  [ -n "$url" ] && break
  sleep 0.1
done
if [ -z "$url" ]; then
  cat "$work/serve.log" >&2
  echo "check-release: 0 passed, 1 failed"
  exit 1
fi

status() { curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$@"; }
check "the admin token works, so the 404s below are not authentication failures" \
  "$(status "$url/api/v1/directories")" 200
for route in clock engine/tick watchers/tick sync/tick sync/reconcile-tick; do
  check "POST /api/v1/test/$route does not exist" \
    "$(status -X POST -H 'Content-Type: application/json' -d '{"advance":"1h"}' "$url/api/v1/test/$route")" 404
  # A build with the hooks answers 405 here (the route exists, for POST only).
  check "GET /api/v1/test/$route does not exist" "$(status "$url/api/v1/test/$route")" 404
done
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=""

# The test clock is refused, as a flag and as a setting, before anything is served.
refused() {
  local rc=0
  timeout 30 env "$@" --data-dir "$work/data" --listen 127.0.0.1:0 >"$work/refused.out" 2>"$work/refused.err" || rc=$?
  if [ "$rc" -ne 0 ] && grep -q "built without test hooks" "$work/refused.err"; then echo refused; else echo "exit $rc"; fi
}
check "serve --unsafe-test-clock is refused" "$(refused "$BIN" serve --unsafe-test-clock)" refused
check "FEDKEY_UNSAFE_TEST_CLOCK=true is refused" "$(refused FEDKEY_UNSAFE_TEST_CLOCK=true "$BIN" serve)" refused

echo "check-release: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
