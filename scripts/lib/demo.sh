# Shared by the demo scripts (sourced, not run): a scratch directory, background processes
# stopped on exit (only the ones the script started, by PID), free loopback ports, and
# `fedkey` built and started on a fresh data directory.

say() { printf '\n== %s\n' "$*"; }

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Builds fedkey (debug, shared with the tests), initialises $WORK/data and serves it on a free
# loopback port. Exports FEDKEY_DATA_DIR, FEDKEY_TOKEN and FEDKEY_URL; sets FEDKEY. Extra
# environment for `serve` can be given as arguments (NAME=value …).
start_fedkey() {
  cargo build --quiet --bin fedkey
  FEDKEY=${CARGO_TARGET_DIR:-$PWD/target}/debug/fedkey
  export FEDKEY_DATA_DIR="$WORK/data"
  "$FEDKEY" init --output json >"$WORK/init.json"
  export FEDKEY_TOKEN
  FEDKEY_TOKEN=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin_token"])' "$WORK/init.json")
  env "$@" "$FEDKEY" serve --listen 127.0.0.1:0 >"$WORK/serve.out" 2>"$WORK/serve.log" &
  PIDS+=($!)
  for _ in $(seq 1 200); do grep -q "fedkey listening on" "$WORK/serve.out" 2>/dev/null && break; sleep 0.05; done
  export FEDKEY_URL
  FEDKEY_URL=$(sed -n 's/^fedkey listening on //p' "$WORK/serve.out")
  if [ -z "$FEDKEY_URL" ]; then cat "$WORK/serve.log" >&2; printf 'FAILED: fedkey did not start\n' >&2; exit 1; fi
}
