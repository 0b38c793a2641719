#!/usr/bin/env bash
# The whole test suite: every crate's unit, property and integration tests and the SCIM
# conformance suite, on SQLite and — when a server is reachable — PostgreSQL. Under
# CI=true an unreachable PostgreSQL is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_URL="${FEDKEY_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
export FEDKEY_TEST_PG_URL="$PG_URL"

if command -v psql >/dev/null && psql "$PG_URL" -qtAc 'SELECT 1' >/dev/null 2>&1; then
  echo "==> PostgreSQL reachable at ${PG_URL%%\?*}: PostgreSQL tests will run"
elif [ "${CI:-}" = "true" ]; then
  echo "FATAL: PostgreSQL is not reachable at $PG_URL and CI=true; PostgreSQL tests must run in CI" >&2
  exit 1
else
  {
    echo "##################################################################"
    echo "###  PostgreSQL NOT reachable at $PG_URL"
    echo "###  PostgreSQL tests will be SKIPPED (SQLite tests still run)"
    echo "###  Start one, or set FEDKEY_TEST_PG_URL, to run them."
    echo "##################################################################"
  } >&2
fi

# Real peers the tests start: OpenBao (`bao`, .venv-tools) for the connectors, and the
# Python reference SCIM server (`scim2-server`, .venv-conformance) for the sync client.
bash scripts/install-tools.sh
if ! command -v jq >/dev/null || ! command -v curl >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq jq curl >/dev/null
  else
    echo "FATAL: the demos need curl and jq; install them (e.g. apt-get install jq curl)" >&2
    exit 1
  fi
fi
VENV="${FEDKEY_CONFORMANCE_VENV:-.venv-conformance}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r tools/conformance/requirements.txt

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?

# The SCIM conformance suite against the real binary (Python venv; SQLite and PostgreSQL).
if [ "${FEDKEY_SKIP_CONFORMANCE:-}" = "1" ] && [ "${CI:-}" != "true" ]; then
  echo "*** SKIPPED SCIM conformance (FEDKEY_SKIP_CONFORMANCE=1) ***" >&2
else
  if ! bash scripts/conformance.sh 2>&1 | tee -a "$log"; then
    status=1
    # A run that died before its summary still counts as a failure in the closing line.
    grep -q '^conformance: ' "$log" || echo "conformance: 0 passed, 1 failed" | tee -a "$log"
  fi
fi

# Zero-downtime rotation end to end (fedkey + OpenBao + the Entra Graph fake).
if bash scripts/demo-rotation.sh 2>&1 | tee -a "$log"; then
  echo "demo-rotation: 1 passed, 0 failed" | tee -a "$log"
else
  status=1
  echo "demo-rotation: 0 passed, 1 failed" | tee -a "$log"
fi

# Outbound provisioning end to end (two fedkey directories and scim2-server as targets).
if bash scripts/demo-provisioning.sh 2>&1 | tee -a "$log"; then
  echo "demo-provisioning: 1 passed, 0 failed" | tee -a "$log"
else
  status=1
  echo "demo-provisioning: 0 passed, 1 failed" | tee -a "$log"
fi

# A release build (no cargo features) carries no test hooks: /api/v1/test/* is 404 and
# --unsafe-test-clock is refused. Builds into target/release, so reruns are quick.
if ! bash scripts/check-release.sh 2>&1 | tee -a "$log"; then
  status=1
  grep -q '^check-release: ' "$log" || echo "check-release: 0 passed, 1 failed" | tee -a "$log"
fi

# Packaging: the stripped release binary under its size budget, `cargo install`, and the
# Dockerfile, compose file, Helm chart and systemd unit checked as far as this machine allows.
if ! bash scripts/check-packaging.sh 2>&1 | tee -a "$log"; then
  status=1
  grep -q '^check-packaging: ' "$log" || echo "check-packaging: 0 passed, 1 failed" | tee -a "$log"
fi

# The README's walkthrough, run against a real server: its shown output must not drift.
if ! bash scripts/readme-walkthrough.sh 2>&1 | tee -a "$log"; then
  status=1
  grep -q '^readme-walkthrough: ' "$log" || echo "readme-walkthrough: 0 passed, 1 failed" | tee -a "$log"
fi

# One closing line for the whole suite: every test binary's result plus the conformance checks.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     /^(conformance|demo-rotation|demo-provisioning|check-release|check-packaging|readme-walkthrough): / { p += $2; f += $4 }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
