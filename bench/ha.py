"""The HA benchmark: two `zenith server` processes on a throw-away PostgreSQL server (Debian's
binaries, started here like the tests do), separate submissions through the leader and through
the standby (forwarded), the same load on the embedded store, and the failover time after a
kill -9 of the leader."""
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from lib import Zenith, free_port, wait_for


def pg_bin():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    return os.environ.get("ZENITH_PG_BIN") or (dirs[-1] if dirs else None)


class Postgres:
    """A fresh cluster on a free port; as root it belongs to the `postgres` user."""

    def __init__(self):
        self.bin = pg_bin()
        if not self.bin:
            raise RuntimeError("PostgreSQL server binaries not found: run ./scripts/deps.sh")
        self.tmp = tempfile.mkdtemp(prefix="zenith-bench-pg-")
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.tmp, "postgres")
        self.port = free_port()
        self.url = f"postgres://zenith@127.0.0.1:{self.port}/zenith"

    def run(self, tool, *args):
        cmd = [os.path.join(self.bin, tool), *args]
        if self.root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    def __enter__(self):
        data = os.path.join(self.tmp, "data")
        self.run("initdb", "-D", data, "-A", "trust", "-U", "zenith", "-E", "UTF8", "--no-sync")
        self.run("pg_ctl", "-D", data, "-l", os.path.join(self.tmp, "log"), "-w", "start", "-o",
                 f"-p {self.port} -k {self.tmp} -c listen_addresses=127.0.0.1")
        subprocess.run([os.path.join(self.bin, "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                        "-U", "zenith", "zenith"], check=True)
        return self

    def __exit__(self, *exc):
        try:
            self.run("pg_ctl", "-D", os.path.join(self.tmp, "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


def ready(url):
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def run(suite, n):
    with Postgres() as pg, tempfile.TemporaryDirectory(prefix="zenith-bench-ha-") as d:
        servers = []
        for i in range(2):
            z = Zenith(suite.zenith, mode="server", data_dir=os.path.join(d, f"s{i}"),
                       args=("--store", pg.url, "--lease-ttl", "2s", "--rate-limit", "1000000"))
            os.makedirs(z.dir)
            z.log = open(os.path.join(z.dir, "server.log"), "ab")
            z.proc = subprocess.Popen([z.binary, "server", "--data-dir", z.dir, "--listen",
                                       f"127.0.0.1:{z.port}", *z.args], stdout=z.log, stderr=z.log)
            servers.append(z)
            if i == 0:
                wait_for(lambda: ready(z.url), "the first server to lead", 60)
        token = open(os.path.join(servers[0].dir, "admin.token")).read().strip()
        leader, standby = servers
        wait_for(lambda: subprocess.run([suite.zenith, "servers", "--server", standby.url, "--token", token],
                                        capture_output=True).returncode == 0, "the standby", 60)

        def submit(url):
            env = dict(os.environ, ZENITH_SERVER=url, ZENITH_TOKEN=token)
            return suite.run_bench("submit", "--count", str(n), "--in-flight", "64", env=env)

        via_leader = submit(leader.url)
        via_standby = submit(standby.url)
        # Failover: kill -9 the leader, time until the standby answers ready as the leader.
        t0 = time.monotonic()
        leader.proc.send_signal(signal.SIGKILL)
        leader.proc.wait()
        wait_for(lambda: ready(standby.url), "the standby to take over", 60, 0.01)
        failover = time.monotonic() - t0
        standby.stop()
    # The same load on the embedded store, for comparison.
    z = Zenith(suite.zenith, mode="server", args=("--rate-limit", "1000000")).start()
    try:
        embedded = suite.run_bench("submit", "--count", str(n), "--in-flight", "64", env=z.env())
    finally:
        z.close()
    return {
        "submit_via_leader": via_leader,
        "submit_via_standby": via_standby,
        "submit_embedded": embedded,
        "failover_seconds": failover,
        "lease_ttl_seconds": 2,
    }
