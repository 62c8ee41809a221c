#!/usr/bin/env bash
# Installs the peers the benchmark suite compares against, each optional: Slurm (Debian's
# slurm-wlm + munge), Redis (Debian) with Celery, and Ray (PyPI, in a virtualenv this script
# makes under $ZENITH_BENCH_VENV). A peer that cannot be installed is reported as skipped by
# bench/run.py; this script never fails because of one.
set -uo pipefail
VENV="${ZENITH_BENCH_VENV:-$HOME/.cache/zenith-bench-venv}"
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
export DEBIAN_FRONTEND=noninteractive

need=()
command -v slurmctld >/dev/null 2>&1 || need+=(slurm-wlm munge)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ "${#need[@]}" -gt 0 ]; then
  echo "peers: apt-get install ${need[*]}"
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/tmp/zenith-bench-apt.log 2>&1 \
    || { "${sudo[@]}" apt-get update -qq >>/tmp/zenith-bench-apt.log 2>&1 \
         && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >>/tmp/zenith-bench-apt.log 2>&1; } \
    || echo "peers: apt-get failed (see /tmp/zenith-bench-apt.log); those peers will be skipped"
  # The packages start their services; the suite runs its own instances.
  for s in slurmctld slurmd munge redis-server; do "${sudo[@]}" service "$s" stop >/dev/null 2>&1 || true; done
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || echo "peers: cannot make a virtualenv; Celery and Ray will be skipped"
fi
if [ -x "$VENV/bin/python" ]; then
  "$VENV/bin/python" -c 'import celery, redis' 2>/dev/null \
    || "$VENV/bin/pip" install -q 'celery[redis]==5.7.*' || echo "peers: pip install celery failed"
  "$VENV/bin/python" -c 'import ray' 2>/dev/null \
    || "$VENV/bin/pip" install -q 'ray==2.60.*' || echo "peers: pip install ray failed"
fi
echo "peers: done"
