#!/usr/bin/env bash
# Validates docs/openapi.json against the OpenAPI 3.1 specification (openapi-spec-validator),
# and every documented flow example against docs/flow.schema.json (jsonschema), in a virtual
# environment outside the clone. That the files are what the code generates is checked by the
# Rust tests (zenith-server's openapi_document, zenith-flowspec's the_shipped_json_schema_is_current,
# zenith-cli's e2e_version).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${ZENITH_OPENAPI_VENV:-$HOME/.cache/zenith-openapi-venv}"
if [ ! -x "$venv/bin/openapi-spec-validator" ] || ! "$venv/bin/python" -c 'import yaml, jsonschema' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'openapi-spec-validator>=0.7,<0.10' 'jsonschema>=4.18,<5' 'PyYAML>=6,<7'
fi
"$venv/bin/openapi-spec-validator" docs/openapi.json
"$venv/bin/python" scripts/checks/flow_examples_schema.py
