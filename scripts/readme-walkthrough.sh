#!/usr/bin/env bash
# Runs the README's quick start and five-minute walkthrough against a real server (a release
# build on a fresh data directory, a free loopback port) and compares each output block the
# README shows with what the commands print now, after normalising what changes on every run
# (tokens, timestamps, hashes, the port). Exit 1 with a diff when the README has drifted.
#
#   scripts/readme-walkthrough.sh            # check
#   scripts/readme-walkthrough.sh --update   # rewrite the README's output blocks
#
# Needs curl and jq (as the README does). Ends with `readme-walkthrough: N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin fedkey
export FEDKEY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/fedkey"
exec python3 scripts/readme-walkthrough.py "$@"
