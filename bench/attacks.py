#!/usr/bin/env python3
"""Denial-of-service figures against a real Zenith (stdlib only; as root for descriptor limits).

    python3 bench/attacks.py [--zenith PATH] [--quick] [--only flood,slowloris,submit]

Writes bench/results/attacks.json and prints it. `goal_met` in each figure judges its goal:

flood      N pipelined keep-alive requests `M<8 digits> /healthz HTTP/1.1` over 16 connections
           to `zenith up`, each with a method name never seen before. Server RSS before and after
           (after a settle), requests/s, and `/metrics` lines with a `method=` label before and
           after. Goal: RSS grows by at most 10 MB (made-up methods grow nothing per method).
slowloris  C connections from 127.0.0.1 (spread over processes of 5,000 each) that send a partial
           request head, then one more header line every few seconds, never finishing; meanwhile
           another client (source 127.0.0.2: a separate address to the per-client cap) times a
           plain `GET /healthz` on a new connection each (timeout 5 s). Variants: the per-client
           cap lifted (100,000) with the default 30 s header timeout; lifted with a short
           `--header-timeout`; the server's defaults (its 4,096 cap refuses the rest at accept).
           Goal: the other client's p99 < 100 ms with no failures. `closed_later` and
           `alive_at_end` show the header timeout closing the slow connections.
submit     N `POST /api/v1/jobs` with a unique `Idempotency-Key` each from 8 keep-alive threads
           with the admin token, to `zenith server` (no agent: jobs stay queued) with its default
           limits: a 429/503 is counted, waited out (Retry-After) and retried with the same key;
           so is a broken connection. Then N' runs of the CLI, `zenith submit -- true`, in turn.
           Goal: every submission is accepted in the end and the CLI never fails.
"""
import argparse
import atexit
import collections
import datetime
import http.client
import itertools
import json
import multiprocessing
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the working tree
from lib import Zenith, rss_kb  # noqa: E402
from run import git_rev, machine  # noqa: E402

tempfile.tempdir = "/tmp"
SIZES = {  # quick, full
    "flood": (20_000, 1_000_000), "slow_conns": (500, 20_000), "slow_seconds": (6, 40),
    "slow_every": (2, 10), "slow_timeout": ("2s", "10s"), "probes": (60, 500),
    "submits": (2_000, 200_000), "cli": (50, 2_000)}
OTHER = "127.0.0.2"  # the innocent client's source address (all of 127/8 is loopback on Linux)
SERVERS = []


def start(binary, mode, *args):
    z = Zenith(binary, mode=mode, args=args)
    SERVERS.append(z)
    return z.start()


def stop(z):
    """Stops the server; whether it had died, and its warnings and errors by message."""
    died, bad = z.proc.poll(), collections.Counter()
    z.stop()
    for ln in open(os.path.join(z.dir, f"{z.mode}.log"), errors="replace"):
        if '"level":"WARN"' in ln or '"level":"ERROR"' in ln or "panicked" in ln:
            try:
                bad[json.loads(ln)["fields"]["message"][:200]] += 1
            except (ValueError, KeyError, TypeError):
                bad[ln.strip()[:200]] += 1
    z.close()
    SERVERS.remove(z)
    return {"server_exited_early": died, "log_problems": sum(bad.values()),
            "log_first": dict(list(bad.items())[:5])}


@atexit.register
def stop_all():
    for z in list(SERVERS):
        z.close()


def get(port, path, timeout=10):
    """GET on a new connection from OTHER: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout, source_address=(OTHER, 0)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        head, _, body = b"".join(iter(lambda: s.recv(65536), b"")).partition(b"\r\n\r\n")
    return int(head[9:12]), body


def metrics(port):
    return get(port, "/metrics")[1].decode().splitlines()


def metric(port, name):
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in metrics(port) if ln.split("{")[0].split(" ")[0] == name)


def pct(xs, q):
    return round(sorted(xs)[min(len(xs) - 1, int(q * len(xs)))], 2) if xs else None


def content_length(head):
    i = head.lower().find(b"content-length:")
    j = head.find(b"\r", i)
    return int(head[i + 15:j if j > 0 else len(head)]) if i >= 0 else 0


def flood(binary, n, conns=16, window=64):
    z = start(binary, "up")
    time.sleep(1)
    pid = z.proc.pid
    series0, rss0 = sum("method=" in ln for ln in metrics(z.port)), rss_kb(pid)
    sel, seq, issued, done, lost = selectors.DefaultSelector(), itertools.count(), 0, 0, 0
    statuses = collections.Counter()

    def connect():
        s = socket.create_connection(("127.0.0.1", z.port))
        s.setblocking(False)
        c = {"s": s, "buf": b"", "out": b"", "inflight": 0, "ev": selectors.EVENT_READ}
        sel.register(s, c["ev"], c)
        return c

    def pump(c):  # keeps `window` requests in flight on c
        nonlocal issued
        if c["inflight"] <= window // 2 and issued < n:
            k = min(window - c["inflight"], n - issued)
            c["out"] += b"".join(b"M%08d /healthz HTTP/1.1\r\nHost: x\r\n\r\n" % next(seq) for _ in range(k))
            c["inflight"], issued = c["inflight"] + k, issued + k
        if c["out"]:
            try:
                c["out"] = c["out"][c["s"].send(c["out"]):]
            except BlockingIOError:
                pass
        ev = selectors.EVENT_READ | (selectors.EVENT_WRITE if c["out"] else 0)
        if ev != c["ev"]:
            sel.modify(c["s"], ev, c)
            c["ev"] = ev

    t0 = last = time.monotonic()
    for c in [connect() for _ in range(conns)]:
        pump(c)
    while done < n and time.monotonic() - last < 30:
        for key, ev in sel.select(1):
            c = key.data
            if ev & selectors.EVENT_READ:
                try:
                    data = c["s"].recv(262144)
                except BlockingIOError:
                    data = None
                except ConnectionError:
                    data = b""
                if data == b"":  # the server closed it: its requests are lost, issue them again
                    sel.unregister(c["s"])
                    c["s"].close()
                    lost, issued = lost + c["inflight"], issued - c["inflight"]
                    c = connect()
                elif data:
                    buf, at = c["buf"] + data, 0
                    while (end := buf.find(b"\r\n\r\n", at)) >= 0:
                        body = content_length(buf[at:end])
                        if end + 4 + body > len(buf):
                            break
                        statuses[int(buf[at + 9:at + 12])] += 1
                        at, done, last = end + 4 + body, done + 1, time.monotonic()
                        c["inflight"] -= 1
                    c["buf"] = buf[at:]
            pump(c)
    secs = time.monotonic() - t0
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    time.sleep(3)  # settle: let the server free what the connections held
    series1, rss1 = sum("method=" in ln for ln in metrics(z.port)), rss_kb(pid)
    peak = int(next(ln.split()[1] for ln in open(f"/proc/{pid}/status") if ln.startswith("VmHWM:")))
    return {"requests": n, "answered": done, "connections": conns, "pipelined": window,
            "statuses": {str(k): v for k, v in statuses.items()}, "reissued_after_close": lost,
            "seconds": round(secs, 2), "requests_per_second": round(done / secs),
            "rss_before_kb": rss0, "rss_after_kb": rss1, "rss_peak_kb": peak,
            "rss_delta_mb": round((rss1 - rss0) / 1024, 2), "method_series_before": series0,
            "method_series_after": series1, "goal_met": done == n and rss1 - rss0 <= 10 * 1024, **stop(z)}


def forked(target, *args):
    """Runs target(*args, pipe) in a forked process: (the process, the pipe's other end)."""
    mine, theirs = multiprocessing.Pipe(False)
    p = multiprocessing.get_context("fork").Process(target=target, args=(*args, theirs))
    p.start()
    return p, mine


def probe(port, count, seconds, pipe):
    """`count` GET /healthz from OTHER, spread over `seconds`: latencies and failures."""
    lat, fails, t0 = [], collections.Counter(), time.monotonic()
    for i in range(count):
        if time.monotonic() > t0 + seconds + 1:  # probes that timed out made it late: stop on time
            fails["not started (time up)"] += count - i
            break
        time.sleep(max(0.0, t0 + i * seconds / count - time.monotonic()))
        t = time.perf_counter()
        try:
            status, _ = get(port, "/healthz", timeout=5)
            if status != 200:
                raise RuntimeError(f"status {status}")
            lat.append((time.perf_counter() - t) * 1000)
        except Exception as e:
            fails[type(e).__name__ + (f" {e}" if isinstance(e, RuntimeError) else "")] += 1
    pipe.send({"probes": count, "failed": sum(fails.values()), "failures": dict(fails),
               "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "max_ms": pct(lat, 1)})


def hold(port, conns, seconds, every, pipe):
    """Opens `conns` connections that each send a partial head, then a header line every
    `every` s, for `seconds`; reports when the server closed them (s after the connect call)."""
    sel, born, alive, closed, answered, failed = selectors.DefaultSelector(), {}, set(), [], 0, 0
    t0 = time.monotonic()
    for i in range(conns):  # non-blocking connects; each sends its head once it is up
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        born[s] = time.monotonic()
        sel.register(s, selectors.EVENT_WRITE)
        if i % 500 == 499:
            time.sleep(0.01)

    def close(s):
        sel.unregister(s)
        s.close()
        if s in alive:
            alive.discard(s)
            closed.append(time.monotonic() - born[s])

    def send(s, data):
        try:
            s.send(data)
        except OSError:
            close(s)

    next_line = t0 + every
    while time.monotonic() - t0 < seconds:
        for key, ev in sel.select(0.2):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:  # connected, or failed to
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    failed += 1
                    close(s)
                else:
                    alive.add(s)
                    sel.modify(s, selectors.EVENT_READ)
                    send(s, b"GET /healthz HTTP/1.1\r\nX-a: b\r\n")
                continue
            try:  # readable: the server answered (e.g. 408) or closed it
                data = s.recv(4096)
            except OSError:
                data = b""
            answered += bool(data)
            if not data:
                close(s)
        if time.monotonic() >= next_line:
            next_line += every
            for s in list(alive):
                send(s, b"X-b: c\r\n")
    late = [t for t in closed if t >= 1]
    pipe.send({"connect_failed": failed, "closed_within_1s": len(closed) - len(late),
               "closed_later": len(late), "first_later_close_after_s": min(late, default=None),
               "alive_at_end": len(alive), "answered_with_data": answered})


def slowloris(binary, conns, seconds, every, probes, server_args, per_process=5000):
    z = start(binary, "up", *server_args)
    p, pipe = forked(probe, z.port, max(10, probes // 5), 2)
    p.join()
    baseline = pipe.recv()
    prober = forked(probe, z.port, probes, seconds)
    # Several processes: one may be allowed fewer descriptors than the attack needs.
    holders = [forked(hold, z.port, min(per_process, conns - k), seconds, every)
               for k in range(0, conns, per_process)]
    fd_limit = next(int(ln.split()[3]) for ln in open(f"/proc/{z.proc.pid}/limits")
                    if ln.startswith("Max open files"))
    peak_fds = peak_rss = 0
    while any(h.is_alive() for h, _ in holders) or prober[0].is_alive():
        peak_fds = max(peak_fds, len(os.listdir(f"/proc/{z.proc.pid}/fd")))
        peak_rss = max(peak_rss, rss_kb(z.proc.pid))
        time.sleep(1)
    under, held = prober[1].recv(), [pipe.recv() for _, pipe in holders]
    late = [h.pop("first_later_close_after_s") for h in held]
    late = [t for t in late if t is not None]
    return {"server_args": list(server_args), "slow_connections": conns, "seconds": seconds,
            **{k: sum(h[k] for h in held) for k in held[0]},
            "first_later_close_after_s": round(min(late), 1) if late else None,
            "server_refused_at_accept": metric(z.port, "zenith_http_connections_refused_total"),
            "server_fd_limit": fd_limit, "server_peak_fds": peak_fds, "server_peak_rss_kb": peak_rss,
            "healthz_baseline": baseline, "healthz_under_attack": under,
            "goal_met": under["failed"] == 0 and (under["p99_ms"] or 1e9) < 100, **stop(z)}


def submit(binary, n, threads, cli_n):
    z = start(binary, "server")
    rss0, lock, ctr, tag = rss_kb(z.proc.pid), threading.Lock(), itertools.count(), os.getpid()
    body = json.dumps({"command": ["true"], "resources": {"cpus": 0.001}}).encode()
    c, refusals = collections.Counter(), collections.Counter()

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", z.port, timeout=60)
        while (i := next(ctr)) < n:
            hdrs = {"Authorization": "Bearer " + z.token, "Content-Type": "application/json",
                    "Idempotency-Key": f"attack-{tag}-{i}"}
            while True:  # until accepted, or refused for good
                try:
                    conn.request("POST", "/api/v1/jobs", body, hdrs)
                    r = conn.getresponse()
                    data = r.read()
                except (OSError, http.client.HTTPException) as e:
                    conn.close()  # the next request reconnects; the key makes a retry safe
                    with lock:
                        c["connection_errors"] += 1
                        refusals[("error", type(e).__name__)] += 1
                    continue
                with lock:
                    if r.status == 201:
                        c["ok"] += 1
                        c["replayed"] += r.getheader("idempotent-replayed") == "true"
                        break
                    c[f"refused_{r.status}"] += 1
                    refusals[(r.status, data[:200].decode(errors="replace"))] += 1
                if r.status not in (429, 503):
                    break
                time.sleep(float(r.getheader("retry-after") or 1))
        conn.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    secs = time.monotonic() - t0
    time.sleep(2)
    rss1, cli, t1 = rss_kb(z.proc.pid), collections.Counter(), time.monotonic()
    for _ in range(cli_n):
        r = subprocess.run([binary, "submit", "--", "true"], env=z.env(), capture_output=True, text=True,
                           timeout=120)
        ok = r.returncode == 0 and r.stdout.strip().isdigit()
        cli["ok" if ok else f"exit {r.returncode}: {(r.stderr.strip().splitlines() or [''])[-1][:200]}"] += 1
    cli_secs, queued = time.monotonic() - t1, sum(q["queued"] for q in z.get("/summary")["queues"])
    return {"submissions": n, "threads": threads, **c, "seconds": round(secs, 2),
            "submissions_per_second": round(c["ok"] / secs), "refused_first": [
                {"status": k[0], "body": k[1], "count": v} for k, v in list(refusals.items())[:5]],
            "rss_before_kb": rss0, "rss_after_kb": rss1, "cli_submits": cli_n, "cli_ok": cli["ok"],
            "cli_failures": {k: v for k, v in cli.items() if k != "ok"},
            "cli_idempotency_errors": sum(v for k, v in cli.items() if "dempoten" in k),
            "cli_ms_per_submit": round(cli_secs / max(1, cli_n) * 1000, 2), "queued_jobs_at_end": queued,
            "goal_met": c["ok"] == n and cli["ok"] == cli_n and queued == n + cli_n, **stop(z)}


def run(binary, quick, only=("flood", "slowloris", "submit"), overrides=None):
    """The figures as a dict; `overrides` (an argparse namespace) replaces the sizes it sets."""
    sz = {k: getattr(overrides, k, None) or v[0 if quick else 1] for k, v in SIZES.items()}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:  # the servers started after this inherit it
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 65536), max(hard, 65536)))
    except (ValueError, OSError):  # no CAP_SYS_RESOURCE: as far as the hard limit
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.environ["ZENITH_LOG_FORMAT"] = "json"  # for stop()'s count of the servers' warnings
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that atexit stops the servers
    out, t0 = {"sizes": sz}, time.monotonic()
    if "flood" in only:
        out["flood"] = flood(binary, sz["flood"])
    if "slowloris" in only:
        lifted = ("--max-connections-per-client", "100000")
        for name, args in (("cap_lifted", lifted), ("defaults", ()),
                           ("cap_lifted_short_timeout", lifted + ("--header-timeout", sz["slow_timeout"]))):
            out[f"slowloris_{name}"] = slowloris(binary, sz["slow_conns"], sz["slow_seconds"],
                                                 sz["slow_every"], sz["probes"], args)
    if "submit" in only:
        out["submit"] = submit(binary, sz["submits"], 8, sz["cli"])
    out["goals_met"] = {k: v["goal_met"] for k, v in out.items() if isinstance(v, dict) and "goal_met" in v}
    out["seconds"] = round(time.monotonic() - t0, 1)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    ap.add_argument("--zenith", default=os.path.join(target, "release", "zenith"))
    ap.add_argument("--quick", action="store_true", help="small sizes, for a CI smoke run (< 60 s)")
    ap.add_argument("--only", default="flood,slowloris,submit")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    for k, v in SIZES.items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v[1]), help=f"default {v[1]} (quick {v[0]})")
    a = ap.parse_args()
    doc = {"bench": "attacks", "mode": "quick" if a.quick else "full", "binary": a.zenith,
           "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "git": git_rev(), "machine": machine(), "result": run(a.zenith, a.quick, a.only.split(","), a)}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "attacks.json"), "w") as f:
        json.dump(doc, f, indent=2)
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
