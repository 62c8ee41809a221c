"""Ray, local, 2 CPUs: N tasks running `true`, N no-op tasks, and submit-to-start (the task
body's first instruction) one at a time."""
import argparse
import os
import subprocess
import time

from common import emit, p50, rss_kb_matching


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--stamp")
    a = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)

    @ray.remote
    def run_true():
        subprocess.run(["true"], check=True)

    @ray.remote
    def noop():
        return None

    @ray.remote
    def stamp():
        return time.time_ns()

    @ray.remote
    def run_stamp(stamp_bin, path):
        subprocess.run([stamp_bin, path], check=True)
        return int(open(path).read())

    try:
        ray.get([noop.remote() for _ in range(10)])
        out = {"system": f"Ray {ray.__version__}, local, 2 CPUs", "tasks": a.count}
        for name, task in (("true_per_second", run_true), ("noop_per_second", noop)):
            t0 = time.monotonic()
            ray.get([task.remote() for _ in range(a.count)])
            out[name] = a.count / (time.monotonic() - t0)
        ms = []
        for _ in range(50):
            t0 = time.time_ns()
            ms.append((ray.get(stamp.remote()) - t0) / 1e6)
        out["function_start_p50_ms"] = p50(ms)
        if a.stamp:
            import tempfile
            with tempfile.TemporaryDirectory() as d:
                ms = []
                for i in range(50):
                    t0 = time.time_ns()
                    s = ray.get(run_stamp.remote(a.stamp, os.path.join(d, f"stamp-{i}")))
                    ms.append((s - t0) / 1e6)
                out["start_p50_ms"] = p50(ms)
        out["rss_kb"] = rss_kb_matching("ray/", "raylet", "gcs_server", "ray::", "default_worker")
        emit(out)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
