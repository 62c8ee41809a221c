"""Helpers for bench/run.py: a Zenith process on a free port, its API, process figures."""
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_kb_matching(needle):
    """Summed RSS of the processes whose command line contains `needle`."""
    total = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
                if needle in cmd:
                    total += rss_kb(pid)
            except OSError:
                pass
    return total


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def wait_for(cond, what, secs=60, every=0.01):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}")


class Zenith:
    """`zenith up` (with a local agent) or `zenith server` (none) in a fresh data directory."""

    def __init__(self, binary, mode="up", args=(), data_dir=None):
        self.binary = binary
        self.mode = mode
        self.args = list(args)
        self.tmp = None
        if data_dir is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="zenith-bench-")
            data_dir = self.tmp.name
        self.dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self, wait_agent=True):
        cmd = [self.binary, self.mode, "--data-dir", self.dir, "--listen", f"127.0.0.1:{self.port}"]
        self.log = open(os.path.join(self.dir, f"{self.mode}.log"), "ab")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.proc = subprocess.Popen(cmd + self.args, stdout=self.log, stderr=self.log, env=env)
        wait_for(self.ready, "the server to be ready", 120)
        self.token = open(os.path.join(self.dir, "admin.token")).read().strip()
        self.agent_token = open(os.path.join(self.dir, "agent.token")).read().strip()
        if self.mode == "up" and wait_agent:
            wait_for(lambda: len(self.get("/nodes")["nodes"]) == 1, "the local agent", 60)
        return self

    def ready(self):
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, OSError):
            return False

    def env(self):
        return dict(os.environ, ZENITH_SERVER=self.url, ZENITH_TOKEN=self.token,
                    ZENITH_AGENT_TOKEN=self.agent_token)

    def request(self, method, path, body=None, timeout=120):
        data = json.dumps(body).encode() if body is not None else None
        r = urllib.request.Request(self.url + "/api/v1" + path, method=method, data=data, headers={
            "Authorization": "Bearer " + self.token, "content-type": "application/json"})
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return json.load(resp)

    def get(self, path):
        return self.request("GET", path)

    def metric(self, name):
        """One unlabelled value from the server's Prometheus metrics (0 when absent)."""
        r = urllib.request.Request(self.url + "/metrics", headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(r, timeout=30) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def post(self, path, body):
        return self.request("POST", path, body)

    def cli(self, *args, capture=True):
        return subprocess.run([self.binary, *args], env=self.env(), check=True,
                              capture_output=capture, text=True).stdout

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def close(self):
        self.stop()
        if self.tmp:
            self.tmp.cleanup()
