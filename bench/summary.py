"""The markdown summary of one run of bench/run.py: each target as a ratio or percentile,
then every peer beside Zenith on the same tasks."""


def _get(d, *path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def fmt(v, unit=""):
    if v is None:
        return "—"
    if isinstance(v, float):
        v = f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def targets(r):
    """(target, measured, goal, met) for each target of issue #4 that this run measured."""
    out = []
    spawn, array = _get(r, "spawn", "per_second"), _get(r, "array", "per_second")
    if spawn and array:
        out.append(("1. 10,000-task array of `true` vs raw spawn (2 at a time)",
                    f"{fmt(array)} tasks/s = {array / spawn:.0%} of {fmt(spawn)}/s", "≥ 90%",
                    array / spawn >= 0.9))
    c = _get(r, "ceiling", "per_second")
    if c:
        out.append(("2. scheduler ceiling (simulated agents, real protocol, durable)",
                    f"{fmt(c)} jobs/s", "≥ 50,000 jobs/s", c >= 50_000))
    t = _get(r, "ceiling_tenants", "per_second")
    if t:
        out.append(("2t. scheduler ceiling, 100 namespaces x 10 users (fair share)",
                    f"{fmt(t)} jobs/s", "≥ 50,000 jobs/s", t >= 50_000))
    p50, p99 = _get(r, "latency", "p50_ms"), _get(r, "latency", "p99_ms")
    if p50 is not None:
        out.append(("3a. submit-to-start on an idle cluster", f"p50 {fmt(p50)} ms, p99 {fmt(p99)} ms",
                    "p50 ≤ 2 ms, p99 ≤ 10 ms", p50 <= 2 and p99 <= 10))
    o = _get(r, "flow3", "overhead_p50_ms")
    if o is not None:
        out.append(("3b. 3-step flow beyond its steps' run time", f"median {fmt(o)} ms", "≤ 10 ms", o <= 10))
    s = _get(r, "submit", "separate", "per_second")
    if s:
        out.append(("4a. separate submissions through the API (64 in flight)", f"{fmt(s)} jobs/s",
                    "≥ 20,000 jobs/s", s >= 20_000))
    per, start = _get(r, "cli", "ms_per_submit"), _get(r, "cli", "ms_per_process_start")
    if per:
        out.append(("4b. `zenith submit` in a shell loop", f"{fmt(per)} ms each; process start alone {fmt(start)} ms",
                    "limited by process start (≤ 2× start)", per <= 2 * start))
    b = _get(r, "memory", "bytes_per_queued_job")
    if b is not None:
        n = _get(r, "memory", "queued_jobs")
        base = _get(r, "memory", "rss_idle_kb") or 0
        again = ((_get(r, "memory", "rss_after_restart_kb") or 0) - base) * 1024 / n
        out.append((f"5a. server memory per queued job ({fmt(n)} plain jobs queued)",
                    f"{fmt(b)} B; after a restart {fmt(again)} B", "≤ 1,024 B", b <= 1024 and again <= 1024))
        rs = _get(r, "memory", "restart_seconds")
        out.append((f"5b. restart with {fmt(n)} queued jobs", f"{fmt(rs)} s", "< 10 s (1,000,000 jobs)", rs < 10))
    a = _get(r, "agents", "server_core_share")
    if a is not None:
        n = _get(r, "agents", "agents")
        out.append((f"6. {fmt(n)} simulated agents heartbeating", f"{a:.1%} of one core", "< 25% (10,000 agents)",
                    a < 0.25))
    v = _get(r, "flows", "validate_10k_steps_seconds")
    if v is not None:
        out.append(("7. a 10,000-step flow validates", f"{fmt(v)} s", "< 1 s", v < 1))
    return out


def write_summary(r, quick, path, machine, profile):
    lines = [f"# Zenith benchmark summary ({'quick' if quick else 'full'} run, {profile} build)", "",
             f"Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['memory_bytes'] / 2**30:.0f} GiB, "
             f"Linux {machine['kernel']}.", ""]
    if quick:
        lines += ["Quick mode: small sizes on a debug build. The figures show that every bench runs; "
                  "they judge nothing.", ""]
    lines += ["## Targets", "", "| target | measured | goal | met |", "|---|---|---|---|"]
    for t, m, g, ok in targets(r):
        lines.append(f"| {t} | {m} | {g} | {'—' if quick else ('yes' if ok else '**no**')} |")
    lines += ["", "## Beside the peers (tasks running `true`, 2 at a time)", "",
              "| system | tasks | tasks/s | no-op tasks/s | submit-to-start p50 | memory |", "|---|---|---|---|---|---|"]
    z = r.get("array", {})
    lat = r.get("latency", {})
    lines.append(f"| Zenith | {fmt(z.get('tasks'))} | {fmt(z.get('per_second'))} | "
                 f"{fmt(_get(r, 'ceiling', 'per_second'))} (simulated agents) | {fmt(lat.get('p50_ms'), ' ms')} | "
                 f"{fmt((z.get('server_rss_kb') or 0) // 1024 or None, ' MiB')} server + "
                 f"{fmt((z.get('agent_rss_kb') or 0) // 1024 or None, ' MiB')} agent |")
    for peer in ("celery", "ray", "slurm"):
        p = r.get(peer)
        if p is None:
            continue
        if "skipped" in p or "error" in p:
            lines.append(f"| {peer} | skipped: {p.get('skipped') or p.get('error')} | | | | |")
            continue
        lines.append(f"| {p.get('system', peer)} | {fmt(p.get('tasks'))} | {fmt(p.get('true_per_second'))} | "
                     f"{fmt(p.get('noop_per_second'))} | {fmt(p.get('start_p50_ms'), ' ms')} | "
                     f"{fmt((p.get('rss_kb') or 0) // 1024 or None, ' MiB')} |")
    lines.append(f"| raw spawn (Rust loop) | {fmt(_get(r, 'spawn', 'count'))} | {fmt(_get(r, 'spawn', 'per_second'))} | | | |")
    lines += ["", "Submit-to-start: from just before the submission to the first act of a new process "
              "(`zenith-stamp` writes the clock); for Celery and Ray the task starts that process, and the "
              "start of the task function alone is in their JSON (`function_start_p50_ms`). Zenith's no-op "
              "figure is its scheduler ceiling with simulated agents.", ""]
    ha = r.get("ha")
    if ha and "submit_via_leader" in ha:
        lines += ["## High availability (two servers on PostgreSQL)", "",
                  "| measure | PostgreSQL via the leader | via a standby (forwarded) | embedded store |",
                  "|---|---|---|---|"]
        row = [_get(ha, k, "per_second") for k in ("submit_via_leader", "submit_via_standby", "submit_embedded")]
        p50 = [_get(ha, k, "request", "p50_ms") for k in ("submit_via_leader", "submit_via_standby", "submit_embedded")]
        lines.append("| separate submissions, 64 in flight | " + " | ".join(fmt(v, " jobs/s") for v in row) + " |")
        lines.append("| request p50 | " + " | ".join(fmt(v, " ms") for v in p50) + " |")
        lines += ["", f"Failover after kill -9 of the leader (lease TTL {ha.get('lease_ttl_seconds')} s): "
                  f"the standby answered ready {fmt(ha.get('failover_seconds'), ' s')} later.", ""]
    elif ha:
        lines += ["## High availability", "", f"skipped: {ha.get('skipped') or ha.get('error')}", ""]
    lines += ["## Everything measured", "", "```json"]
    import json
    lines.append(json.dumps(r, indent=2))
    lines += ["```", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))
