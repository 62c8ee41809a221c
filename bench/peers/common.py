"""Shared by the peer benchmarks: percentiles, process memory, a free port, JSON out."""
import json
import os
import socket
import statistics


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def p50(ms):
    return round(statistics.median(ms), 3) if ms else None


def rss_kb_matching(*needles):
    """Summed RSS of this user's processes whose command line contains any needle."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
            if not any(n in cmd for n in needles):
                continue
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def emit(doc):
    print(json.dumps(doc), flush=True)
