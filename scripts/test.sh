#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test (unit, simulation, store, end-to-end
# against the real binary). Needs only the Rust toolchain; run from anywhere in the repo.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build outputs live outside the clone so that repeated runs (and CI) build incrementally.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zenith-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
