#!/usr/bin/env python3
"""3-step flow of `true` on a running Zenith: time from submission to the run's end, and the
engine's overhead beyond the steps' own attempts (server timestamps, milliseconds).

    ZENITH_SERVER=http://127.0.0.1:7700 ZENITH_TOKEN=$(cat ~/.local/share/zenith/admin.token) \
        python3 bench/flow_latency.py 100
"""
import json, os, statistics, sys, time, urllib.request

base = os.environ.get("ZENITH_SERVER", "http://127.0.0.1:7700").rstrip("/") + "/api/v1"
tok = os.environ["ZENITH_TOKEN"]
FLOW = """name: three
steps:
  - {name: a, run: [true]}
  - {name: b, depends: [a], run: [true]}
  - {name: c, depends: [b], run: [true]}
"""

def req(method, path, body=None):
    r = urllib.request.Request(base + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + tok, "content-type": "application/json"})
    return json.load(urllib.request.urlopen(r))

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
total, over = [], []
for _ in range(n):
    rid = req("POST", "/flows/runs", {"flow": FLOW})["id"]
    while True:
        v = req("GET", f"/flows/runs/{rid}")
        if v["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.005)
    run_ms = v["finished_at"] - v["created_at"]
    own = 0
    for s in v["steps"]:
        for a in req("GET", f"/jobs/{s['job']}")["attempts"]:
            own += a["finished_at"] - a["started_at"]
    total.append(run_ms)
    over.append(run_ms - own)
total.sort(); over.sort()
print(f"runs={n} submit-to-end p50={statistics.median(total)}ms p90={total[int(n*0.9)]}ms; "
      f"overhead beyond the steps p50={statistics.median(over)}ms max={over[-1]}ms")
