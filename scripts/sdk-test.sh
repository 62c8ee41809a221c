#!/usr/bin/env bash
# The Python SDK's tests (sdk/python): installs the package with its test extras into a
# virtual environment kept outside the clone, then runs pytest against a real `zenith up`
# that the tests start themselves. Needs python3 (3.9+) and a built zenith binary:
# ZENITH_BIN, else $CARGO_TARGET_DIR/debug/zenith (`cargo build --bin zenith`).
# Extra arguments go to pytest (e.g. -k flow -x). Run from anywhere in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zenith-target}"
export ZENITH_BIN="${ZENITH_BIN:-$CARGO_TARGET_DIR/debug/zenith}"
if [ ! -x "$ZENITH_BIN" ]; then
  echo "sdk-test: no zenith binary at $ZENITH_BIN (build it: cargo build --bin zenith, or set ZENITH_BIN)" >&2
  exit 1
fi

venv="${ZENITH_SDK_VENV:-$HOME/.cache/zenith-sdk-venv}"
python="${PYTHON:-python3}"
pip=("$venv/bin/python" -m pip --quiet --disable-pip-version-check)
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
  "${pip[@]}" install --upgrade pip
fi
# The build backend lives in the venv (no isolated build env), so that once the venv exists
# reinstalling needs no network. A local directory is rebuilt and reinstalled every time: the
# tests run against what `pip install` makes, not the source tree.
"${pip[@]}" install "hatchling>=1.18"
"${pip[@]}" install --no-build-isolation "./sdk/python[test]"

cd sdk/python
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
