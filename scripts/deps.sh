#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, when it is missing:
# Debian's chromium (the web UI's browser tests), prometheus (promtool lints /metrics) and
# postgresql (the store and HA tests start their own throw-away PostgreSQL servers; the
# package's own cluster is not used), then the browser tests' npm packages from
# ui-tests/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "deps: installing ${missing[*]} from Debian's packages"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
  export DEBIAN_FRONTEND=noninteractive
  if ! "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/tmp/zenith-apt.log 2>&1; then
    # Stale package lists: refresh once and try again.
    "${sudo[@]}" apt-get update -qq >>/tmp/zenith-apt.log 2>&1
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >>/tmp/zenith-apt.log 2>&1 || {
      echo "deps: apt-get install ${missing[*]} failed; see /tmp/zenith-apt.log" >&2
      exit 1
    }
  fi
fi

if [ ! -d ui-tests/node_modules/playwright-core ]; then
  echo "deps: npm ci in ui-tests"
  (cd ui-tests && npm ci --no-audit --no-fund --loglevel=error)
fi
