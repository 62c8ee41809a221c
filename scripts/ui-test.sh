#!/usr/bin/env bash
# The web UI's browser tests: headless Debian Chromium (playwright-core) against a real
# `zenith up` built from this tree. Screenshots and the 10,000-step load time land in
# test-output/ui/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zenith-target}"

./scripts/deps.sh
cargo build -p zenith-cli --locked --quiet
export ZENITH_BIN="$CARGO_TARGET_DIR/debug/zenith"
cd ui-tests
node --test --test-concurrency=1 --test-reporter=spec ui.test.mjs
