#!/usr/bin/env bash
# SCIM conformance: starts the real fedkey binary on SQLite and on PostgreSQL, creates a
# directory and an inbound `generic` trust (RFC 7644 PATCH, no client departures), and runs the pinned scim2-tester suite against it
# (tools/conformance/run.py). Fails on any ERROR, CRITICAL or SKIPPED check.
#
#   scripts/conformance.sh            # both backends (PostgreSQL required under CI=true)
#   BACKENDS=sqlite scripts/conformance.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${FEDKEY_CONFORMANCE_VENV:-.venv-conformance}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q -r tools/conformance/requirements.txt

cargo build -q --bin fedkey
BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/fedkey"
PG_URL="${FEDKEY_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
BACKENDS="${BACKENDS:-sqlite postgres}"

work="$(mktemp -d)"
pids=()
dbs=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in "${dbs[@]}"; do psql "$PG_URL" -qtAc "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

total_pass=0
total_fail=0
for backend in $BACKENDS; do
  data="$work/$backend"
  case "$backend" in
    sqlite) db="sqlite://$data/fedkey.db" ;;
    postgres)
      if ! psql "$PG_URL" -qtAc 'SELECT 1' >/dev/null 2>&1; then
        if [ "${CI:-}" = "true" ]; then echo "FATAL: PostgreSQL unreachable at $PG_URL" >&2; exit 1; fi
        echo "*** SKIPPED PostgreSQL conformance: no server at $PG_URL ***" >&2
        continue
      fi
      name="fedkey_conf_$$_$RANDOM"
      psql "$PG_URL" -qtAc "CREATE DATABASE $name" >/dev/null
      dbs+=("$name")
      db="${PG_URL%/*}/$name"
      ;;
    *) echo "unknown backend $backend" >&2; exit 2 ;;
  esac
  admin="$("$BIN" init --data-dir "$data" --database-url "$db" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["admin_token"])')"
  "$BIN" serve --data-dir "$data" --database-url "$db" --listen 127.0.0.1:0 >"$work/$backend.out" 2>"$work/$backend.log" &
  pids+=("$!")
  url=""
  for _ in $(seq 1 100); do
    url="$(sed -n 's/^fedkey listening on //p' "$work/$backend.out")"
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "$url" ] || { echo "fedkey did not start ($backend):" >&2; cat "$work/$backend.log" >&2; exit 1; }
  export FEDKEY_URL="$url" FEDKEY_TOKEN="$admin"
  "$BIN" directory create acme --output json >/dev/null
  key="$("$BIN" trust create --directory acme --name conformance --direction inbound --peer-kind generic --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')"
  echo "==> scim2-tester against fedkey on $backend"
  set +e
  out="$("$VENV/bin/python" tools/conformance/run.py --url "$url/scim/v2/acme" --token "$key")"
  rc=$?
  set -e
  echo "$out"
  line="$(echo "$out" | tail -n1)"
  pass="$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p')"
  fail="$(echo "$line" | sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p')"
  total_pass=$((total_pass + ${pass:-0}))
  total_fail=$((total_fail + ${fail:-1}))
  [ "$rc" -eq 0 ] || total_fail=$((total_fail > 0 ? total_fail : 1))
done
echo "conformance: $total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
