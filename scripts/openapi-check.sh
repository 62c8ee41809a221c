#!/usr/bin/env bash
# Validates docs/openapi.json against the OpenAPI 3.1 specification (openapi-spec-validator,
# in a virtual environment outside the clone). That the file is what the server serves is
# checked by the Rust tests (zenith-server's openapi_document, zenith-cli's e2e_version).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ZENITH_OPENAPI_VENV:-$HOME/.cache/zenith-openapi-venv}"
if [ ! -x "$venv/bin/openapi-spec-validator" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'openapi-spec-validator>=0.7,<0.10'
fi
"$venv/bin/openapi-spec-validator" docs/openapi.json
