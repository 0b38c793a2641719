#!/usr/bin/env bash
# Outbound provisioning, shown end to end from a clean start: one fedkey server whose
# directory `acme` provisions to three real SCIM applications —
#   acme/app   a second fedkey directory (`app`; its inbound key is acme's outbound key),
#   acme/wiki  a third fedkey directory (`wiki`), which goes away for a while,
#   acme/ref   the reference Python server scim2-server (PyPI),
# through the transactional outbox and the dispatcher loop of `fedkey serve`.
# Joiner, mover (attributes, group, role), leaver; then the deprovisioning report while
# the wiki refuses fedkey (its trust suspended): pending/failed until the operator fixes
# it and retries the dead letter, then full deprovisioning with the time it took.
#
# Ends with `N checks passed, 0 failed`; exits non-zero on any failed check.
#
#   scripts/demo-provisioning.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PASS=0
FAIL=0
source scripts/lib/demo.sh
die() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }
check() { # description, command…
  local what=$1; shift
  if "$@"; then PASS=$((PASS + 1)); printf '  ok    %s\n' "$what"
  else FAIL=$((FAIL + 1)); printf '  FAIL  %s\n' "$what"; fi
}
eventually() { # description, 'command' (re-evaluated for up to 60 s: deliveries are asynchronous)
  local what=$1; shift
  for _ in $(seq 1 300); do
    if eval "$1" 2>/dev/null; then PASS=$((PASS + 1)); printf '  ok    %s\n' "$what"; return 0; fi
    sleep 0.2
  done
  FAIL=$((FAIL + 1)); printf '  FAIL  %s (gave up after 60 s)\n' "$what"
}

say "building fedkey; finding scim2-server"
SCIM2=${FEDKEY_SCIM2_SERVER_BIN:-$ROOT/.venv-conformance/bin/scim2-server}
if [ ! -x "$SCIM2" ]; then
  python3 -m venv "$ROOT/.venv-conformance"
  "$ROOT/.venv-conformance/bin/pip" install -q -r tools/conformance/requirements.txt
  SCIM2=$ROOT/.venv-conformance/bin/scim2-server
fi
[ -x "$SCIM2" ] || die "scim2-server not found (set FEDKEY_SCIM2_SERVER_BIN)"


say "starting scim2-server"
REF_PORT=$(free_port)
REF_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
"$SCIM2" --hostname 127.0.0.1 --port "$REF_PORT" --bearer-token "$REF_TOKEN" >"$WORK/ref.out" 2>"$WORK/ref.log" &
PIDS+=($!)
for _ in $(seq 1 200); do grep -q "Serving SCIM" "$WORK/ref.out" 2>/dev/null && break; sleep 0.05; done
REF="http://127.0.0.1:$REF_PORT/v2"

say "starting fedkey"
start_fedkey
fk() { "$FEDKEY" "$@"; }

say "directories: acme (the source) and two applications served by fedkey itself (app, wiki)"
for d in acme app wiki; do fk directory create "$d" >/dev/null; done
HR=$(fk trust create --directory acme --name hr --direction inbound --output json | jq -r .key)
APP_KEY=$(fk trust create --directory app --name fedkey --direction inbound --output json | jq -r .key)
WIKI_KEY=$(fk trust create --directory wiki --name fedkey --direction inbound --output json | jq -r .key)
api() { # method path [json]
  curl -fsS -X "$1" -H "Authorization: Bearer $FEDKEY_TOKEN" -H 'content-type: application/json' \
    ${3:+--data "$3"} "$FEDKEY_URL/api/v1$2"
}
api POST /directories/acme/trusts "{\"name\":\"app\",\"direction\":\"outbound\",\"key\":\"$APP_KEY\"}" >/dev/null
api POST /directories/acme/trusts "{\"name\":\"wiki\",\"direction\":\"outbound\",\"key\":\"$WIKI_KEY\"}" >/dev/null
api POST /directories/acme/trusts "{\"name\":\"ref\",\"direction\":\"outbound\",\"key\":\"$REF_TOKEN\"}" >/dev/null

say "targets and mappings"
cat >"$WORK/app-mapping.json" <<'EOF'
{"roles": [{"group": "Engineering", "assign": {"appRole": "developer"}}]}
EOF
cat >"$WORK/ref-mapping.json" <<'EOF'
{"roles": [{"group": "Engineering", "assign": {"appGroup": "eng-app"}}], "leaver": "delete"}
EOF
fk sync target set acme/app --url "$FEDKEY_URL/scim/v2/app" --mapping-file "$WORK/app-mapping.json"
fk sync target set acme/wiki --url "$FEDKEY_URL/scim/v2/wiki" >/dev/null
fk sync target set acme/ref --url "$REF" --mapping-file "$WORK/ref-mapping.json" >/dev/null

# SCIM as the identity provider sends it, into acme.
scim() { # method path [json]
  curl -fsS -X "$1" -H "Authorization: Bearer $HR" -H 'content-type: application/scim+json' \
    ${3:+--data "$3"} "$FEDKEY_URL/scim/v2/acme$2"
}
# Reading an application back: (base, token, endpoint) → its resources as JSON lines.
list() { curl -fsS -H "Authorization: Bearer $2" "$1/$3?count=500" | jq -c '.Resources[]?'; }
user_at() { list "$1" "$2" Users | jq -c --arg e "$3" 'select(.externalId == $e)'; }
group_at() { list "$1" "$2" Groups | jq -c --arg n "$3" 'select(.displayName == $n)'; }
declare -A BASE=([app]="$FEDKEY_URL/scim/v2/app" [wiki]="$FEDKEY_URL/scim/v2/wiki" [ref]="$REF")
declare -A TOK=([app]="$APP_KEY" [wiki]="$WIKI_KEY" [ref]="$REF_TOKEN")
# Per application name (app, wiki, ref):
field() { user_at "${BASE[$1]}" "${TOK[$1]}" "$2" | jq -r "$3"; }     # app, directory user id, jq path
members() { group_at "${BASE[$1]}" "${TOK[$1]}" "$2" | jq -r '[.members[]?.value] | sort | join(",")'; }
rid() { field "$1" "$2" .id; }
users_at() { list "${BASE[$1]}" "${TOK[$1]}" Users | wc -l; }
is() { [ "$1" = "$2" ]; }

say "joiner: alice and bob; group Engineering with alice"
USER_URN=urn:ietf:params:scim:schemas:core:2.0:User
ALICE=$(scim POST /Users "{\"schemas\":[\"$USER_URN\"],\"userName\":\"alice@acme.test\",\"active\":true,\"title\":\"Engineer\",\"name\":{\"givenName\":\"Alice\",\"familyName\":\"Liddell\"},\"emails\":[{\"value\":\"alice@acme.test\",\"type\":\"work\",\"primary\":true}]}" | jq -r .id)
BOB=$(scim POST /Users "{\"schemas\":[\"$USER_URN\"],\"userName\":\"bob@acme.test\",\"active\":true,\"title\":\"Analyst\"}" | jq -r .id)
ENG=$(scim POST /Groups "{\"schemas\":[\"urn:ietf:params:scim:schemas:core:2.0:Group\"],\"displayName\":\"Engineering\",\"members\":[{\"value\":\"$ALICE\"}]}" | jq -r .id)
for t in app wiki ref; do
  eventually "alice arrives at $t with her title" 'is "$(field $t $ALICE .title)" Engineer'
  eventually "bob arrives at $t" 'is "$(field $t $BOB .userName)" bob@acme.test'
  eventually "Engineering at $t has alice as its member" 'is "$(members $t Engineering)" "$(rid $t $ALICE)"'
done
check "alice holds the app role developer at app" is "$(field app "$ALICE" '.roles[0].value')" developer
eventually "alice is in the app group eng-app at scim2-server" 'is "$(members ref eng-app)" "$(rid ref $ALICE)"'

say "mover: alice's title changes; she leaves Engineering and bob joins"
scim PATCH "/Users/$ALICE" '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"title","value":"Staff Engineer"}]}' >/dev/null
scim PATCH "/Groups/$ENG" "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{\"op\":\"remove\",\"path\":\"members[value eq \\\"$ALICE\\\"]\"},{\"op\":\"add\",\"path\":\"members\",\"value\":[{\"value\":\"$BOB\"}]}]}" >/dev/null
for t in app wiki ref; do
  eventually "alice's new title at $t" 'is "$(field $t $ALICE .title)" "Staff Engineer"'
  eventually "Engineering at $t now has bob only" 'is "$(members $t Engineering)" "$(rid $t $BOB)"'
done
eventually "the developer role moved from alice to bob at app" \
  'is "$(field app $ALICE "(.roles // []) | length"),$(field app $BOB ".roles[0].value")" "0,developer"'
eventually "eng-app at scim2-server now has bob only" 'is "$(members ref eng-app)" "$(rid ref $BOB)"'

say "leaver while the wiki refuses fedkey (its trust suspended at the wiki)"
fk trust suspend wiki/fedkey >/dev/null
scim PATCH "/Users/$ALICE" '{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"active","value":false}]}' >/dev/null
state_of() { fk sync status acme --output json | jq -r --arg u "$1" --arg t "$2" '.deprovisioning.users[] | select(.user == $u) | .targets[] | select(.trust == $t) | .state'; }
eventually "app confirms alice's deactivation" 'is "$(state_of alice@acme.test acme/app)" confirmed'
eventually "scim2-server confirms alice's deletion" 'is "$(state_of alice@acme.test acme/ref)" confirmed'
eventually "the wiki is reported failed for alice" 'is "$(state_of alice@acme.test acme/wiki)" failed'
check "alice still has an active account at the wiki, and the report says so" \
  is "$(fk sync status acme --output json | jq -r '[.still_active[] | .user + "@" + .trust] | join(",")')" "alice@acme.test@acme/wiki"
check "the wiki delivery is a dead letter (401 cannot succeed by retrying)" \
  is "$(fk sync dead-letters list acme --output json | jq -r '.dead_letters[0].trust')" acme/wiki
echo
fk sync status acme
fk sync dead-letters list acme

say "runbook: the wiki trusts fedkey again; the operator retries the dead letter"
sleep 2
fk trust resume wiki/fedkey >/dev/null
fk sync dead-letters retry acme --trust wiki
eventually "the wiki confirms alice's deactivation" 'is "$(state_of alice@acme.test acme/wiki)" confirmed'
check "alice is inactive at app and the wiki, gone from scim2-server" \
  is "$(field app "$ALICE" .active),$(field wiki "$ALICE" .active),$(user_at "$REF" "$REF_TOKEN" "$ALICE" | wc -l)" "false,false,0"
STATUS=$(fk sync status acme --output json)
check "alice is fully deprovisioned" is "$(jq -r '.deprovisioning.users[0].complete' <<<"$STATUS")" true
TOOK=$(jq -r '.deprovisioning.users[0].seconds_to_full_deprovisioning' <<<"$STATUS")
check "time to full deprovisioning is reported (${TOOK}s)" test "$TOOK" -ge 2
check "nobody has an account left to deprovision" is "$(jq -r '.still_active | length' <<<"$STATUS")" 0
echo
fk sync status acme

say "no duplicates; everything audited"
check "app and wiki each hold exactly alice and bob; scim2-server only bob" \
  is "$(users_at app),$(users_at wiki),$(users_at ref)" "2,2,1"
check "deliveries are in the audit log" test "$(api GET '/audit?action=sync.deliver&limit=1000' | jq '.records | length')" -ge 10
check "the audit log verifies" fk audit verify --offline
check "no key appears in fedkey's log" bash -c "! grep -qF -e '$APP_KEY' -e '$WIKI_KEY' -e '$REF_TOKEN' '$WORK/serve.log'"

printf '\n%d checks passed, %d failed\n' "$PASS" "$FAIL"
[ "$FAIL" -eq 0 ]
