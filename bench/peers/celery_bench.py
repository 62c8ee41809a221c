"""Celery 5 with Redis (broker and results), 2 prefork worker processes: N tasks running
`true`, N no-op tasks, and submit-to-start (the task body's first instruction) one at a time."""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from common import emit, free_port, p50, rss_kb_matching

TASKS = '''
import subprocess, time
from celery import Celery
app = Celery("zb", broker="{url}", backend="{url}")
app.conf.update(worker_prefetch_multiplier=4, task_acks_late=False, result_expires=600)

@app.task
def run_true():
    subprocess.run(["true"], check=True)

@app.task
def noop():
    return None

@app.task
def stamp():
    return time.time_ns()


@app.task
def run_stamp(stamp_bin, path):
    subprocess.run([stamp_bin, path], check=True)
    return int(open(path).read())
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--stamp")
    a = ap.parse_args()
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    with tempfile.TemporaryDirectory(prefix="zb-celery-") as d:
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                                  "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL)
        with open(os.path.join(d, "zbtasks.py"), "w") as f:
            f.write(TASKS.format(url=url))
        sys.path.insert(0, d)
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "zbtasks", "worker", "-c", "2",
                                   "--pool", "prefork", "--loglevel", "WARNING", "--without-gossip",
                                   "--without-mingle", "--without-heartbeat"], cwd=d,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            import zbtasks
            deadline = time.monotonic() + 60
            while not zbtasks.app.control.ping(timeout=0.5):
                if time.monotonic() > deadline:
                    raise SystemExit("celery worker did not answer")
            zbtasks.noop.delay().get(timeout=30)
            out = {"system": "Celery 5.7 + Redis, 2 workers", "tasks": a.count}
            for name, task in (("true_per_second", zbtasks.run_true), ("noop_per_second", zbtasks.noop)):
                t0 = time.monotonic()
                rs = [task.delay() for _ in range(a.count)]
                for r in rs:
                    r.get(timeout=600)
                out[name] = a.count / (time.monotonic() - t0)
            ms = []
            for _ in range(50):
                t0 = time.time_ns()
                ms.append((zbtasks.stamp.delay().get(timeout=30) - t0) / 1e6)
            out["function_start_p50_ms"] = p50(ms)
            if a.stamp:
                ms = []
                for i in range(50):
                    t0 = time.time_ns()
                    s = zbtasks.run_stamp.delay(a.stamp, os.path.join(d, f"stamp-{i}")).get(timeout=30)
                    ms.append((s - t0) / 1e6)
                out["start_p50_ms"] = p50(ms)
            out["rss_kb"] = rss_kb_matching("zbtasks", "redis-server *:" + str(port), f"127.0.0.1:{port}")
            emit(out)
        finally:
            worker.terminate()
            worker.wait(30)
            redis.terminate()
            redis.wait(30)


if __name__ == "__main__":
    main()
