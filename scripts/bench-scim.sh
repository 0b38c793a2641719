#!/usr/bin/env bash
# SCIM service benchmark: fedkey (SQLite, PostgreSQL) vs the Python reference server
# scim2-server, same requests, same load generator (crates/server/benches/scim_bench.rs).
#
#   scripts/bench-scim.sh                 # 100,000 users, 1,000 groups, 32 connections, 5 s per type
#   BENCH_MILLION=1 scripts/bench-scim.sh # also top up to 1,000,000 users and time `userName eq`
#
# Knobs (see the bench's header): BENCH_USERS, BENCH_GROUPS, BENCH_SECONDS,
# BENCH_CONCURRENCY, BENCH_BACKENDS, BENCH_REF_SEED_SECONDS, BENCH_TIMEOUT,
# FEDKEY_TEST_PG_URL, SCIM2_SERVER (path of scim2-server, or `none`), SCIM_VENV.
#
# scim2-server comes from the pinned conformance requirements; the venv is created on
# first use. The bench starts scim2-server itself on a free 127.0.0.1 port and stops it
# (by PID) when done; everything runs on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${SCIM_VENV:-/tmp/scimvenv}"
if [ -z "${SCIM2_SERVER:-}" ]; then
  if [ ! -x "$venv/bin/scim2-server" ]; then
    echo "creating $venv with tools/conformance/requirements.txt" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet -r tools/conformance/requirements.txt
  fi
  export SCIM2_SERVER="$venv/bin/scim2-server"
fi

exec cargo bench -p fedkey-server --bench scim_bench
