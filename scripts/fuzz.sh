#!/usr/bin/env bash
# Runs every fuzz target for a bounded time: ./scripts/fuzz.sh [SECONDS_PER_TARGET]
# Needs the nightly toolchain (for the sanitizer); installs cargo-fuzz when it is missing.
# Crashes are kept in fuzz/artifacts/<target>/ and make this script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-${ZENITH_FUZZ_SECONDS:-20}}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/zenith-target}-fuzz"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is not installed; cannot fuzz here" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  if ! cargo install cargo-fuzz --locked --quiet; then
    # Nothing was fuzzed: say so plainly rather than fail the suite over a missing tool.
    echo "fuzz: skipped: cargo-fuzz could not be installed here" >&2
    exit 0
  fi
fi
mkdir -p fuzz/corpus
for target in flow_spec api_decoders agent_protocol; do
  mkdir -p "fuzz/corpus/$target"
  seeds="fuzz/seeds/$target"
  echo "fuzz: $target for ${secs}s" >&2
  log="$CARGO_TARGET_DIR/fuzz-$target.log"
  mkdir -p "$CARGO_TARGET_DIR"
  if ! cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "$seeds" -- \
    -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $target failed (crash inputs in fuzz/artifacts/$target)" >&2
    exit 1
  fi
  grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|Done)" "$log" >&2 || true
done
