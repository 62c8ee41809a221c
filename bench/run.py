#!/usr/bin/env python3
"""Zenith's benchmark suite: Zenith against the machine's limits and against peers, in one run.

    python3 bench/run.py            # full suite (builds release; peers from bench/peers.sh)
    python3 bench/run.py --quick    # small sizes on the debug build, for CI (< 3 min; judges nothing)
    python3 bench/run.py --only array,latency
    python3 bench/run.py --only attacks   # denial-of-service figures (bench/attacks.py; not in the default set)

Writes bench/results/<bench>.json, bench/results/all.json and bench/results/summary.md.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Zenith, cpu_seconds, rss_kb, rss_kb_matching, wait_for  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.environ.get("ZENITH_BENCH_VENV", os.path.expanduser("~/.cache/zenith-bench-venv"))

SIZES = {
    #            quick      full
    "spawn": (1_000, 10_000),
    "array": (1_000, 10_000),
    "latency": (30, 300),
    "flow3": (10, 100),
    "submit": (2_000, 50_000),
    "ha_submit": (2_000, 20_000),
    "cli": (20, 200),
    "memory": (20_000, 1_000_000),
    "ceiling": (20_000, 500_000),
    "agents": (200, 10_000),
    "fanout": (1_000, 10_000),
    "engine_jobs": (2_000, 20_000),
    "peer_tasks": (200, 10_000),
}


class Suite:
    def __init__(self, args):
        self.quick = args.quick
        self.out = args.out
        profile = "release" if (args.release or not args.quick) else "debug"
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        self.zenith = os.path.join(target, profile, "zenith")
        self.bench = os.path.join(target, profile, "zenith-bench")
        self.stamp = os.path.join(target, profile, "zenith-stamp")
        self.profile = profile
        self.results = {}

    def n(self, name):
        return SIZES[name][0 if self.quick else 1]

    def run_bench(self, *args, env=None, timeout=1800):
        out = subprocess.run([self.bench, *args], env=env, check=True, capture_output=True,
                             text=True, timeout=timeout).stdout
        return json.loads(out.strip().splitlines()[-1])

    def record(self, name, result):
        self.results[name] = result
        doc = {"bench": name, "mode": "quick" if self.quick else "full", "build": self.profile,
               "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "git": git_rev(), "machine": machine(), "result": result}
        with open(os.path.join(self.out, f"{name}.json"), "w") as f:
            json.dump(doc, f, indent=2)
        print(f"  {name}: {json.dumps(result)}", flush=True)

    # --- the machine and Zenith ---------------------------------------------------------

    def spawn(self):
        self.record("spawn", self.run_bench("spawn", "--count", str(self.n("spawn")), "--concurrency", "2"))

    def array(self):
        n = self.n("array")
        with cluster(self.zenith, "--cpus", "2") as z:
            commits0 = z.metric("zenith_store_commit_seconds_count")
            t0 = time.monotonic()
            jid = z.cli("submit", "--array", f"0-{n - 1}", "--cpus", "1", "--", "true").strip()
            z.cli("job", "wait", jid)
            wall = time.monotonic() - t0
            commits = z.metric("zenith_store_commit_seconds_count") - commits0
            j = z.get(f"/jobs/{jid}")
            secs = (j["finished_at"] - j["created_at"]) / 1000
            assert j["tasks"]["succeeded"] == n, j["tasks"]
            self.record("array", {"tasks": n, "concurrency": 2, "seconds": secs, "wall_seconds": wall,
                                  "per_second": n / secs, "store_commits": commits,
                                  "server_rss_kb": rss_kb(z.proc.pid),
                                  "agent_rss_kb": rss_kb_matching(f"agent --server {z.url}")})

    def latency(self):
        with cluster(self.zenith, "--cpus", "2") as z, tempfile.TemporaryDirectory() as d:
            self.run_bench("latency", "--count", "5", "--dir", d, env=z.env())  # warm up
            self.record("latency", self.run_bench("latency", "--count", str(self.n("latency")),
                                                  "--dir", d, env=z.env()))

    def flow3(self):
        flow = ("name: three\nsteps:\n  - {name: a, run: [true]}\n"
                "  - {name: b, depends: [a], run: [true]}\n  - {name: c, depends: [b], run: [true]}\n")
        total, over = [], []
        with cluster(self.zenith, "--cpus", "2") as z:
            for _ in range(self.n("flow3")):
                rid = z.post("/flows/runs", {"flow": flow})["id"]
                v = wait_for(lambda: (lambda v: v if v["state"] in ("succeeded", "failed") else None)(
                    z.get(f"/flows/runs/{rid}")), "the run", 30, 0.002)
                own = sum(a["finished_at"] - a["started_at"]
                          for a in z.get(f"/flows/runs/{rid}/attempts")["attempts"])
                total.append(v["finished_at"] - v["created_at"])
                over.append(total[-1] - own)
        self.record("flow3", {"runs": len(total), "p50_ms": statistics.median(total),
                              "overhead_p50_ms": statistics.median(over), "overhead_max_ms": max(over)})

    def submit(self):
        n = self.n("submit")
        # One client far above the default per-address rate limit (1,000 requests/s): raised.
        with cluster(self.zenith, mode="server", args=("--rate-limit", "1000000")) as z:
            sep = self.run_bench("submit", "--count", str(n), "--in-flight", "64", env=z.env())
        with cluster(self.zenith, mode="server") as z:
            batch = [{"command": ["true"], "constraints": ["bench=never"]}] * 10_000
            t0 = time.monotonic()
            for _ in range(max(1, n // 10_000)):
                z.post("/jobs", batch)
            secs = time.monotonic() - t0
            batched = {"count": max(1, n // 10_000) * 10_000, "per_second": max(1, n // 10_000) * 10_000 / secs}
        self.record("submit", {"separate": sep, "batched_10k": batched})

    def ha(self):
        import ha  # noqa: E402
        if not ha.pg_bin():
            self.record("ha", {"skipped": "PostgreSQL server binaries not found (./scripts/deps.sh)"})
            return
        self.record("ha", ha.run(self, self.n("ha_submit")))

    def cli(self):
        n = self.n("cli")
        with cluster(self.zenith, mode="server") as z:
            env = z.env()
            t0 = time.monotonic()
            for _ in range(n):
                subprocess.run([self.zenith, "--version"], env=env, check=True, capture_output=True)
            start_only = (time.monotonic() - t0) / n
            t0 = time.monotonic()
            for _ in range(n):
                subprocess.run([self.zenith, "submit", "-c", "bench=never", "--", "true"], env=env,
                               check=True, capture_output=True)
            per = (time.monotonic() - t0) / n
        self.record("cli", {"submissions": n, "ms_per_submit": per * 1000,
                            "ms_per_process_start": start_only * 1000, "per_second": 1 / per})

    def memory(self):
        n = self.n("memory")
        # `zenith server` without agents: jobs stay queued. A plain job (command, default queue).
        with cluster(self.zenith, mode="server", args=("--max-live-jobs", str(max(n, 1_000_000)))) as z:
            base = rss_kb(z.proc.pid)
            batch = [{"command": ["true"]}] * 10_000
            for _ in range(n // 10_000):
                z.post("/jobs", batch)
            time.sleep(1)  # let the writer drain before reading RSS (a level, not a sync point)
            after = rss_kb(z.proc.pid)
            z.stop()
            t0 = time.monotonic()
            z.start(wait_agent=False)
            restart = time.monotonic() - t0
            live = sum(q["queued"] for q in z.get("/summary")["queues"])
            reloaded = rss_kb(z.proc.pid)
        self.record("memory", {"queued_jobs": n, "rss_idle_kb": base, "rss_queued_kb": after,
                               "bytes_per_queued_job": (after - base) * 1024 / n,
                               "restart_seconds": restart, "jobs_after_restart": live,
                               "rss_after_restart_kb": reloaded})

    def ceiling(self):
        n = self.n("ceiling")
        with cluster(self.zenith, mode="server", args=("--max-live-jobs", str(max(n, 1_000_000)))) as z:
            r = self.run_bench("ceiling", "--agents", "8", "--jobs", str(n), env=z.env())
            r["server_cpu_seconds"] = cpu_seconds(z.proc.pid)
        self.record("ceiling", r)

    def ceiling_tenants(self):
        # The same ceiling with 100 namespaces x 10 users: the pass orders 1,000 parties by
        # fair share (docs/tenancy.md); target: >= 50,000 jobs/s.
        n = self.n("ceiling")
        with cluster(self.zenith, mode="server", args=("--max-live-jobs", str(max(n, 1_000_000)))) as z:
            r = self.run_bench("ceiling", "--agents", "8", "--jobs", str(n), "--namespaces", "100",
                               "--users", "10", env=z.env())
            r["server_cpu_seconds"] = cpu_seconds(z.proc.pid)
        self.record("ceiling_tenants", r)

    def agents(self):
        n = self.n("agents")
        window = 5 if self.quick else 10
        # Every simulated agent holds a connection from this one address: lift the per-address cap.
        with cluster(self.zenith, mode="server", args=("--max-connections-per-client", "100000")) as z:
            sim = subprocess.Popen([self.bench, "sim-agents", "--agents", str(n), "--cpus", "1"],
                                   env=z.env(), stdout=subprocess.PIPE, text=True)
            try:
                wait_for(lambda: len(z.get("/nodes")["nodes"]) >= n, f"{n} agents to register", 300, 0.2)
                c0, t0 = cpu_seconds(z.proc.pid), time.monotonic()
                time.sleep(window)  # a measurement window, not a synchronisation
                share = (cpu_seconds(z.proc.pid) - c0) / (time.monotonic() - t0)
                ready = sum(1 for x in z.get("/nodes")["nodes"] if x["state"] == "ready")
                rss = rss_kb(z.proc.pid)
            finally:
                sim.send_signal(signal.SIGINT)
                sim.wait(30)
        self.record("agents", {"agents": n, "window_seconds": window, "server_core_share": share,
                               "ready_after_window": ready, "server_rss_kb": rss})

    def flows(self):
        n = self.n("fanout")
        with tempfile.TemporaryDirectory() as d, cluster(self.zenith, "--cpus", "2") as z:
            tenk = os.path.join(d, "tenk.yaml")
            with open(tenk, "w") as f:
                f.write("name: tenk\nsteps:\n  - {name: root, run: [true]}\n")
                for i in range(9_999):
                    f.write(f"  - {{name: s{i}, depends: [root], run: [true], resources: {{cpus: 0.1}}}}\n")
            t0 = time.monotonic()
            z.cli("flow", "validate", tenk)
            validate = time.monotonic() - t0
            fan = (f"name: fan\nsteps:\n  - name: w\n    forEach: \"range({n})\"\n    run: [true]\n"
                   "    resources: {cpus: 0.1}\n  - {name: z, depends: [w], run: [true]}\n")
            out = {"validate_10k_steps_seconds": validate}
            for name, text in (("fan_out", fan),) + (() if self.quick else (("tenk_steps", open(tenk).read()),)):
                rid = z.post("/flows/runs", {"flow": text})["id"]
                v = wait_for(lambda: (lambda v: v if v["state"] != "running" else None)(
                    z.get(f"/flows/runs/{rid}/graph")["run"]), name, 600, 0.05)
                out[f"{name}_seconds"] = (v["finished_at"] - v["created_at"]) / 1000
            out["fan_out_items"] = n
            out["server_rss_kb"] = rss_kb(z.proc.pid)
        self.record("flows", out)

    def callgrind(self):
        if not shutil.which("valgrind"):
            self.record("callgrind", {"skipped": "valgrind is not installed"})
            return
        jobs = self.n("engine_jobs")
        nodes = jobs // 20
        with tempfile.TemporaryDirectory() as d:
            outf = os.path.join(d, "cg.out")
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={outf}",
                            self.bench, "engine-work", "--nodes", str(nodes), "--jobs", str(jobs)],
                           check=True, capture_output=True)
            total = next(int(line.split()[1]) for line in open(outf) if line.startswith("summary:"))
        r = {"workload": f"engine-work --nodes {nodes} --jobs {jobs}", "instructions": total,
             "instructions_per_job": total / jobs}
        base_file = os.path.join(ROOT, "bench", "callgrind-baseline.json")
        if os.path.exists(base_file):
            base = json.load(open(base_file)).get(f"{self.profile}:{r['workload']}")
            if base:
                r["baseline"] = base
                r["change_percent"] = (total - base) / base * 100
        self.record("callgrind", r)

    def attacks(self):
        import attacks  # noqa: E402
        self.record("attacks", attacks.run(self.zenith, self.quick))

    # --- peers ---------------------------------------------------------------------------

    def peer(self, name, script, python, count):
        """Runs bench/peers/SCRIPT under PYTHON; its last stdout line is the JSON result."""
        p = subprocess.run([python, os.path.join(ROOT, "bench", "peers", script),
                            "--count", str(count), "--stamp", self.stamp],
                           capture_output=True, text=True, timeout=1800)
        lines = p.stdout.strip().splitlines()
        if p.returncode != 0 or not lines:
            self.record(name, {"skipped": f"failed: {(p.stderr or p.stdout).strip()[-400:]}"})
            return
        self.record(name, json.loads(lines[-1]))

    def venv_peer(self, name, script):
        py = os.path.join(VENV, "bin", "python")
        if not os.path.exists(py):
            self.record(name, {"skipped": f"no virtualenv at {VENV} (run bench/peers.sh)"})
            return
        self.peer(name, script, py, self.n("peer_tasks"))

    def celery(self):
        self.venv_peer("celery", "celery_bench.py")

    def ray(self):
        self.venv_peer("ray", "ray_bench.py")

    def slurm(self):
        # About 2 tasks/s: 200 tasks is already 100 s.
        self.peer("slurm", "slurm_bench.py", sys.executable, min(self.n("peer_tasks"), 200))


class cluster:
    """with cluster(zenith_binary, extra args...) as z: a fresh Zenith, closed afterwards."""

    def __init__(self, binary, *args, mode="up", **kw):
        self.z = Zenith(binary, mode=mode, args=args + tuple(kw.get("args", ())))

    def __enter__(self):
        return self.z.start()

    def __exit__(self, *exc):
        self.z.close()


def git_rev():
    try:
        return subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def machine():
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu": model, "memory_bytes": mem, "kernel": platform.release()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, debug build, no peers unless --peers")
    ap.add_argument("--release", action="store_true", help="quick sizes on the release build")
    ap.add_argument("--peers", action="store_true", help="run the peers in quick mode too")
    ap.add_argument("--no-peers", action="store_true", help="leave the peers out")
    ap.add_argument("--only", help="comma-separated benches")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    s = Suite(args)
    if not args.no_build:
        cargo = ["cargo", "build", "--locked", "-p", "zenith-cli", "-p", "zenith-bench"]
        subprocess.run(cargo + (["--release"] if s.profile == "release" else []), cwd=ROOT, check=True)
    ours = ["spawn", "array", "latency", "flow3", "submit", "cli", "memory", "ceiling",
            "ceiling_tenants", "agents",
            "flows", "callgrind", "ha"]
    peers = ["celery", "ray", "slurm"]
    chosen = ours + (peers if (not args.quick or args.peers) and not args.no_peers else [])
    if args.only:
        chosen = [b for b in args.only.split(",") if b]
    print(f"zenith bench ({'quick' if args.quick else 'full'}, {s.profile} build): {', '.join(chosen)}", flush=True)
    failed = []
    for name in chosen:
        t0 = time.monotonic()
        try:
            getattr(s, name)()
        except Exception as e:  # one bench failing must not hide the others' figures
            failed.append(name)
            s.record(name, {"error": f"{type(e).__name__}: {e}"})
        print(f"  ({name} took {time.monotonic() - t0:.1f} s)", flush=True)
    all_path = os.path.join(args.out, "all.json")
    mode = "quick" if args.quick else "full"
    if args.only and os.path.exists(all_path):
        # A partial run updates the last run of the same mode and build.
        prev = json.load(open(all_path))
        if prev.get("mode") == mode and prev.get("build") == s.profile:
            s.results = {**prev.get("results", {}), **s.results}
    with open(all_path, "w") as f:
        json.dump({"mode": mode, "build": s.profile, "git": git_rev(),
                   "machine": machine(), "results": s.results}, f, indent=2)
    from summary import write_summary  # noqa: E402
    write_summary(s.results, args.quick, os.path.join(args.out, "summary.md"), machine(), s.profile)
    print(f"wrote {args.out}/summary.md")
    if failed:
        print(f"benches that failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
