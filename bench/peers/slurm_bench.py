"""Slurm (Debian's slurm-wlm) on this one machine: slurmctld + slurmd with a config written
here (2 CPUs, cons_tres, backfill, a short scheduler interval), munge with a fresh key. An
array of N tasks running `true`, and submit-to-start of `sbatch` one at a time (the job writes
the clock as its first act). Needs root (slurmd runs jobs as the submitting user)."""
import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import time

from common import emit, free_port, p50, rss_kb_matching

CONF = """ClusterName=zbench
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={munge_sock}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=0,batch_sched_delay=0,default_queue_depth=1000
MaxArraySize=100001
MaxJobCount=200000
MinJobAge=2
ReturnToService=2
MpiDefault=none
NodeName={host} CPUs=2 RealMemory=1000 State=UNKNOWN
PartitionName=bench Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def wait(cond, what, secs=60):
    end = time.monotonic() + secs
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"slurm: timed out waiting for {what}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--stamp", required=True)
    a = ap.parse_args()
    for tool in ("slurmctld", "slurmd", "sbatch", "munged"):
        if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is not installed (bench/peers.sh installs slurm-wlm)")
    if os.geteuid() != 0:
        raise SystemExit("needs root")
    host = socket.gethostname().split(".")[0]
    d = tempfile.mkdtemp(prefix="zb-slurm-")
    os.makedirs(f"{d}/state")
    os.makedirs(f"{d}/spool")
    key = f"{d}/munge.key"
    with open(key, "wb") as f:
        f.write(os.urandom(1024))
    os.chmod(key, 0o400)
    sock = f"{d}/munge.sock"
    procs = []
    try:
        subprocess.run(["/usr/sbin/munged", "--force", f"--key-file={key}", f"--socket={sock}",
                        f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/munge.seed"],
                       check=True)
        conf = f"{d}/slurm.conf"
        with open(conf, "w") as f:
            f.write(CONF.format(host=host, ctld_port=free_port(), d_port=free_port(), munge_sock=sock, d=d))
        env = dict(os.environ, SLURM_CONF=conf)
        procs.append(subprocess.Popen(["/usr/sbin/slurmctld", "-D", "-i", "-f", conf], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(["/usr/sbin/slurmd", "-D", "-f", conf], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

        def idle():
            r = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True)
            return r.returncode == 0 and r.stdout.strip() == "idle"
        wait(idle, "the node to be idle", 60)

        def queue_empty():
            r = subprocess.run(["squeue", "-h", "-o", "%i"], env=env, capture_output=True, text=True)
            return r.returncode == 0 and not r.stdout.strip()
        t0 = time.monotonic()
        subprocess.run(["sbatch", f"--array=0-{a.count - 1}", "-o", "/dev/null", "--wrap", "true"],
                       env=env, check=True, capture_output=True)
        wait(queue_empty, "the array to finish", 3600)
        secs = time.monotonic() - t0
        ms = []
        for i in range(10):
            f = f"{d}/stamp-{i}"
            t = time.time_ns()
            subprocess.run(["sbatch", "-o", "/dev/null", "--wrap", f"{a.stamp} {f}"], env=env, check=True,
                           capture_output=True)
            wait(lambda: os.path.exists(f) and open(f).read().strip(), "a job to start", 120)
            ms.append((int(open(f).read()) - t) / 1e6)
        emit({"system": "Slurm 22.05 (slurm-wlm), single node, tuned scheduler", "tasks": a.count,
              "true_per_second": a.count / secs, "start_p50_ms": p50(ms),
              "rss_kb": rss_kb_matching("slurmctld", "slurmd", "munged")})
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        pid = f"{d}/munged.pid"
        if os.path.exists(pid):
            try:
                os.kill(int(open(pid).read().strip()), 15)
            except (OSError, ValueError):
                pass
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
