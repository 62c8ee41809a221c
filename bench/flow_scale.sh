#!/usr/bin/env bash
# Wide flows on a running Zenith: a forEach over N items of `true` (N = 1,000 and 10,000) and a
# 10,000-step flow (one root, 9,999 dependents), each step 0.1 CPU. Prints each run's duration
# (server timestamps) and the validation time of the 10,000-step spec.
#   ZENITH_SERVER=... ZENITH_TOKEN=... ./bench/flow_scale.sh [path/to/zenith]
set -euo pipefail
Z="${1:-zenith}"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
for n in 1000 10000; do
  printf 'name: fan%s\nsteps:\n  - name: w\n    forEach: "range(%s)"\n    run: [true]\n    resources: {cpus: 0.1}\n  - {name: z, depends: [w], run: [true]}\n' "$n" "$n" > "$dir/fan$n.yaml"
done
python3 - "$dir/tenk.yaml" <<'PY'
import sys
lines = ["name: tenk", "steps:", "  - {name: root, run: [true]}"]
lines += [f"  - {{name: s{i}, depends: [root], run: [true], resources: {{cpus: 0.1}}}}" for i in range(9999)]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
start=$(date +%s%N); "$Z" flow validate "$dir/tenk.yaml" >/dev/null; end=$(date +%s%N)
echo "validate 10,000 steps: $(( (end - start) / 1000000 )) ms"
for f in fan1000 fan10000 tenk; do
  id=$("$Z" run "$dir/$f.yaml")
  while [ "$("$Z" flow show "$id" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')" = running ]; do sleep 1; done
  "$Z" flow show "$id" -o json | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["name"], v["state"], (v["finished_at"]-v["created_at"])/1000.0, "s")'
done
