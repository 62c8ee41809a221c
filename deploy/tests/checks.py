"""The Python half of scripts/deploy-test.sh: parses systemd units, the Dockerfile, rendered
Kubernetes manifests and the Grafana dashboard, and checks them against the real binary.
Run as `checks.py COMMAND ARGS...` (each `cmd_*` function below is one command); the binary is
$ZENITH_BIN."""
import base64, json, os, re, shlex, shutil, subprocess, sys

ZENITH = os.environ["ZENITH_BIN"]

def die(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)

def help_parses(args):
    """The binary parses ARGS (every flag exists, every value is valid): ARGS --help exits 0."""
    r = subprocess.run([ZENITH, *args, "--help"], capture_output=True, text=True)
    if r.returncode != 0:
        die(f"zenith {' '.join(args)}: {r.stderr.strip().splitlines()[0] if r.stderr.strip() else r.returncode}")

# ---------------------------------------------------------------- systemd
def unit(path):
    """[Section] -> list of (key, value), continuation lines joined."""
    out, sec, buf = {}, None, ""
    for raw in open(path):
        line = raw.rstrip("\n")
        if buf:
            line, buf = buf + line, ""
        if line.endswith("\\"):
            buf = line[:-1] + " "
            continue
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            sec = s.strip("[]")
            out.setdefault(sec, [])
            continue
        k, _, v = s.partition("=")
        out[sec].append((k.strip(), v.strip()))
    return out

def values(u, key, sec="Service"):
    return [v for k, v in u.get(sec, []) if k == key]

def env_defaults(u):
    env = {}
    for v in values(u, "Environment"):
        for item in shlex.split(v):
            k, _, val = item.partition("=")
            env[k] = val
    return env

def expand(cmd, env):
    # systemd: ${VAR} is one word, a lone $VAR splits into words (none when empty).
    words = []
    for w in cmd.split():
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            words += env.get(m.group(1), "").split()
            continue
        words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env.get(m.group(1), ""), w))
    return words

NNP_IMPLIED = ["DynamicUser", "LockPersonality", "MemoryDenyWriteExecute", "PrivateDevices", "ProtectClock",
               "ProtectHostname", "ProtectKernelLogs", "ProtectKernelModules", "ProtectKernelTunables",
               "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
               "SystemCallArchitectures", "SystemCallFilter", "SystemCallLog", "NoNewPrivileges"]

def duration_s(v):
    m = re.fullmatch(r"(\d+)(s|min|m)?", v)
    if not m:
        die(f"cannot read duration {v!r}")
    return int(m.group(1)) * (60 if m.group(2) in ("min", "m") else 1)

def cmd_systemd_rules(d):
    notes = []
    for name in ("zenith-server.service", "zenith-agent.service", "zenith-up.service"):
        u = unit(os.path.join(d, name))
        get = lambda k: (values(u, k) or [None])[-1]
        execs = values(u, "ExecStart")
        if len(execs) != 1:
            die(f"{name}: one ExecStart expected")
        words = expand(execs[0], env_defaults(u))
        if words[0] != "/usr/local/bin/zenith":
            die(f"{name}: ExecStart runs {words[0]}")
        # every flag and value of the command line, with the unit's defaults, parses
        help_parses(words[1:])
        dd = words[words.index("--data-dir") + 1]
        states = [s for v in values(u, "StateDirectory") for s in v.split()]
        if dd not in ["/var/lib/" + s for s in states]:
            die(f"{name}: --data-dir {dd} is not one of its StateDirectory= {states}")
        for k, want in (("User", "zenith"), ("Restart", "on-failure"), ("Type", "exec")):
            if get(k) != want:
                die(f"{name}: {k}={get(k)}, want {want}")
        if not get("LimitNOFILE"):
            die(f"{name}: no LimitNOFILE")
        if not any(v.lstrip("-").startswith("/etc/zenith/") for v in values(u, "EnvironmentFile")):
            die(f"{name}: no EnvironmentFile in /etc/zenith")
        if get("DynamicUser") == "yes":
            die(f"{name}: DynamicUser (a static user from sysusers.d is expected)")
        if name == "zenith-server.service":
            for k, want in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                            ("PrivateTmp", "yes"), ("CapabilityBoundingSet", "")):
                if get(k) != want:
                    die(f"{name}: {k}={get(k)}, want {want!r}")
            if dd not in " ".join(values(u, "ReadWritePaths")).split():
                die(f"{name}: ReadWritePaths does not name the data directory {dd}")
            if values(u, "ExecReload"):
                die(f"{name}: ExecReload (SIGHUP stops a server without TLS)")
        else:
            # runs jobs: nothing that forces no_new_privs on them, cgroup delegated, drain on stop
            bad = [k for k in NNP_IMPLIED if values(u, k)]
            if bad:
                die(f"{name}: sets {bad}, which impose NoNewPrivileges on every job")
            for k, want in (("Delegate", "yes"), ("KillMode", "mixed"), ("ProtectSystem", "full"), ("PrivateTmp", "yes")):
                if get(k) != want:
                    die(f"{name}: {k}={get(k)}, want {want}")
            if values(u, "ProtectControlGroups"):
                die(f"{name}: ProtectControlGroups conflicts with Delegate")
            grace = 30 if "agent" in name else 0
            if duration_s(get("TimeoutStopSec")) <= grace + 5:
                die(f"{name}: TimeoutStopSec={get('TimeoutStopSec')} does not outlast --shutdown-grace {grace}s + --kill-grace 5s")
        notes.append(name.split(".")[0])
    # the example environment files name only variables the binary or the units read
    read_by_binary = set(re.findall(r"\[env: ([A-Z_]+)", subprocess.run(
        [ZENITH, "server", "--help"], capture_output=True, text=True).stdout + subprocess.run(
        [ZENITH, "agent", "--help"], capture_output=True, text=True).stdout)) | {"ZENITH_LOG"}
    for f, unit_name, sub in (("server.env.example", "zenith-server.service", "server"),
                              ("agent.env.example", "zenith-agent.service", "agent")):
        u = unit(os.path.join(d, unit_name))
        known = read_by_binary | set(env_defaults(u))
        for line in open(os.path.join(d, f)):
            m = re.match(r"#?([A-Z_]+)=(.*)", line.strip())
            if not m:
                continue
            if m.group(1) not in known:
                die(f"{f}: {m.group(1)} is read by neither the binary nor {unit_name}")
            if m.group(1).endswith("_ARGS") and m.group(2):
                help_parses([sub, *m.group(2).split()])
    print("units:", ", ".join(notes))

# ---------------------------------------------------------------- docker
def cmd_dockerfile(path, ignore):
    lines, buf = [], ""
    for raw in open(path):
        s = raw.rstrip("\n")
        if s.strip().startswith("#") and not buf:
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        s, buf = buf + s, ""
        if s.strip():
            lines.append(s.strip())
    ins = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in lines]
    froms = [a for i, a in ins if i == "FROM"]
    if len(froms) < 2 or not re.search(r"\bAS\s+builder\b", froms[0], re.I):
        die("not multi-stage with a named builder stage")
    last = max(n for n, (i, _) in enumerate(ins) if i == "FROM")
    final = ins[last:]
    users = [a for i, a in final if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        die("the final stage does not end as a non-root USER")
    if not re.fullmatch(r"\d+(:\d+)?", users[-1]):
        die("USER should be numeric so that runAsNonRoot can check it")
    for i, a in ins:
        if i == "ADD":
            die("ADD used (COPY, and no remote URLs)")
    if not any(i == "COPY" and "--from=builder" in a for i, a in final):
        die("the binary is not copied from the builder stage")
    expose = " ".join(a for i, a in final if i == "EXPOSE").split()
    if "7700" not in expose:
        die("EXPOSE 7700 missing")
    if not any(i == "VOLUME" for i, _ in final):
        die("no VOLUME for the data directory")
    hc = [a for i, a in final if i == "HEALTHCHECK"]
    if not hc or "/healthz" not in hc[0]:
        die("no HEALTHCHECK on /healthz")
    ep = json.loads([a for i, a in final if i == "ENTRYPOINT"][-1])
    cmd = json.loads([a for i, a in final if i == "CMD"][-1])
    if os.path.basename(ep[-1]) != "zenith":
        die(f"ENTRYPOINT {ep} does not end in zenith")
    if cmd[0] != "up" or "--listen" not in cmd or not cmd[cmd.index("--listen") + 1].startswith("0.0.0.0:"):
        die(f"CMD {cmd} is not `up --listen 0.0.0.0:PORT`")
    help_parses(cmd)
    # the build context after Dockerfile.dockerignore holds what COPY takes, and what cargo reads
    allow = [l[1:].rstrip("/") for l in open(ignore).read().split("\n") if l.startswith("!")]
    if "*" not in open(ignore).read().split("\n"):
        die("dockerignore is not an allowlist (no '*' line)")
    for i, a in ins:
        if i == "COPY" and not a.startswith("--from"):
            for src in shlex.split(a)[:-1]:
                if src.rstrip("/") not in allow:
                    die(f"COPY {src}: excluded by {os.path.basename(ignore)}")
                if not os.path.exists(src):
                    die(f"COPY {src}: not in the repository")
    ws = open("Cargo.toml").read()
    members = re.search(r"members\s*=\s*\[([^\]]*)\]", ws).group(1)
    for m in re.findall(r'"([^"]+)"', members):
        if not any(m == a or m.startswith(a + "/") for a in allow):
            die(f"workspace member {m} is outside the build context")
    for dep in re.findall(r'path\s*=\s*"([^"]+)"', ws):
        if not any(os.path.normpath(dep) == a or os.path.normpath(dep).startswith(a + "/") for a in allow):
            die(f"Cargo.toml: path dependency {dep} is outside the build context")
    for root, _, files in os.walk("crates"):
        if "Cargo.toml" in files:
            for dep in re.findall(r'path\s*=\s*"([^"]+)"', open(os.path.join(root, "Cargo.toml")).read()):
                p = os.path.normpath(os.path.join(root, dep))
                if not any(p == a or p.startswith(a + "/") for a in allow):
                    die(f"{root}/Cargo.toml: path dependency {dep} is outside the build context")
    hc_cmd = json.loads(re.sub(r"^(--\S+\s+)*CMD\s+", "", hc[0]))
    print(json.dumps({"user": users[-1], "stages": len(froms), "healthcheck": hc_cmd[-1]}))

# ---------------------------------------------------------------- kubernetes
def docs(path):
    import yaml
    return [d for d in yaml.safe_load_all(open(path)) if d]

def pods(ds):
    for d in ds:
        spec = d.get("spec", {}).get("template", {}).get("spec")
        if spec is not None:
            yield d, spec

ALLOWED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}

def cmd_pod_security(path):
    """Pod Security Standard "restricted" (v1.25+) for every pod template, and what the chart adds."""
    ds = docs(path)
    seen = []
    for d, spec in pods(ds):
        name = f"{d['kind']}/{d['metadata']['name']}"
        psc = spec.get("securityContext", {})
        for k in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(k):
                die(f"{name}: {k}")
        for v in spec.get("volumes", []):
            kinds = set(v) - {"name"}
            if not kinds <= ALLOWED_VOLUMES:
                die(f"{name}: volume {v['name']} of type {kinds} is not allowed under restricted")
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            where = f"{name} container {c['name']}"
            if not (sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                die(f"{where}: runAsNonRoot is not true")
            if sc.get("runAsUser", psc.get("runAsUser")) == 0:
                die(f"{where}: runAsUser 0")
            if sc.get("privileged"):
                die(f"{where}: privileged")
            if sc.get("allowPrivilegeEscalation") is not False:
                die(f"{where}: allowPrivilegeEscalation is not false")
            caps = sc.get("capabilities", {})
            if "ALL" not in caps.get("drop", []):
                die(f"{where}: capabilities do not drop ALL")
            if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
                die(f"{where}: adds capabilities {caps.get('add')}")
            sp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
            if sp not in ("RuntimeDefault", "Localhost"):
                die(f"{where}: seccompProfile {sp}")
            for p in c.get("ports", []):
                if p.get("hostPort"):
                    die(f"{where}: hostPort")
            if d["kind"] == "StatefulSet" and sc.get("readOnlyRootFilesystem") is not True:
                die(f"{where}: the server's root file system is not read-only")
            # named probe and policy ports exist on the container
            names = {p["name"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str) and port not in names:
                    die(f"{where}: {probe} port {port} is not a container port")
            if spec.get("automountServiceAccountToken") is not False:
                die(f"{name}: the service account token is mounted (zenith calls no Kubernetes API)")
        seen.append(name)
    if not seen:
        die("no pod templates rendered")
    # Services and NetworkPolicies select pods that exist, on ports that exist
    pod_labels = [(d, spec, d["spec"]["template"]["metadata"]["labels"]) for d, spec in pods(ds)]
    def selects(sel):
        return [(d, s) for d, s, l in pod_labels if all(l.get(k) == v for k, v in sel.items())]
    for d in ds:
        if d["kind"] == "Service":
            hit = selects(d["spec"]["selector"])
            if not hit:
                die(f"Service {d['metadata']['name']} selects no pod")
            ports = {p["name"] for _, s in hit for c in s["containers"] for p in c.get("ports", [])}
            for p in d["spec"]["ports"]:
                if isinstance(p.get("targetPort"), str) and p["targetPort"] not in ports:
                    die(f"Service {d['metadata']['name']}: targetPort {p['targetPort']} not on its pods")
        if d["kind"] == "NetworkPolicy":
            hit = selects(d["spec"]["podSelector"]["matchLabels"])
            if not hit:
                die(f"NetworkPolicy {d['metadata']['name']} selects no pod")
            ports = {p["name"] for _, s in hit for c in s["containers"] for p in c.get("ports", [])}
            for rule in d["spec"].get("ingress", []):
                for p in rule.get("ports", []):
                    if isinstance(p.get("port"), str) and p["port"] not in ports:
                        die(f"NetworkPolicy {d['metadata']['name']}: port {p['port']} not on its pods")
    print(", ".join(seen))

def pod(ds, kind):
    """The first workload of KIND and its pod spec, or (None, None)."""
    for d, spec in pods(ds):
        if d["kind"] == kind:
            return d, spec
    return None, None

def container(ds, kind):
    _, spec = pod(ds, kind)
    return spec["containers"][0] if spec else None

def secret_mounts(spec, c):
    """mountPath -> (Secret name, {file: key} or None for every key, file mode) of the
    container's Secret volumes."""
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    out = {}
    for m in c.get("volumeMounts", []):
        s = vols.get(m["name"], {}).get("secret")
        if s is not None:
            items = {i["path"]: i["key"] for i in s.get("items", [])} or None
            out[m["mountPath"].rstrip("/")] = (s["secretName"], items, s.get("defaultMode", 0o644))
    return out

def secret_file(mounts, path):
    """(Secret name, key) that PATH in the container reads, or None when no Secret is there."""
    for mp, (name, items, _) in mounts.items():
        if path.startswith(mp + "/"):
            rel = path[len(mp) + 1:]
            if items is None:
                return name, rel
            if rel not in items:
                die(f"{path}: the Secret volume at {mp} has no file {rel}")
            return name, items[rel]
    return None

def flag(args, name):
    """The value of --NAME=VALUE in ARGS, or None."""
    return next((a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")), None)

def secret_refs(spec):
    """(Secret name, key or None for every key) of everything a pod spec takes from Secrets."""
    refs = []
    for v in spec.get("volumes", []):
        s = v.get("secret")
        if s is not None:
            refs += [(s["secretName"], i["key"]) for i in s.get("items", [])] or [(s["secretName"], None)]
        for src in v.get("projected", {}).get("sources", []):
            s = src.get("secret")
            if s is not None:
                refs += [(s["name"], i["key"]) for i in s.get("items", [])] or [(s["name"], None)]
    for c in spec.get("initContainers", []) + spec["containers"]:
        for e in c.get("env", []):
            r = e.get("valueFrom", {}).get("secretKeyRef")
            if r:
                refs.append((r["name"], r["key"]))
        refs += [(e["secretRef"]["name"], None) for e in c.get("envFrom", []) if "secretRef" in e]
    return refs

def cmd_k8s_args(path):
    """The binary parses the rendered server and agent command lines ($(VAR) filled in)."""
    ds = docs(path)
    fill = {"POD_NAME": "zenith-server-0", "NODE_NAME": "node-a", "POD_IP": "10.0.0.7"}
    n = 0
    for kind in ("StatefulSet", "DaemonSet"):
        c = container(ds, kind)
        if c is None:
            continue
        args = [re.sub(r"\$\((\w+)\)", lambda m: fill[m.group(1)], a) for a in c["args"]]
        help_parses(args)
        n += 1
    # One step: the server's tokens and certificate, and the agent's join token and CA, all
    # come from Secrets (none from a file copied out of a pod); the agent gets neither the
    # admin token nor the server's key.
    _, sspec = pod(ds, "StatefulSet")
    s = sspec["containers"][0]
    if "--store" in " ".join(s["args"]):
        die("the PostgreSQL URL is on the command line; it belongs in ZENITH_STORE from a Secret")
    smounts = secret_mounts(sspec, s)
    from_secret = {}
    for f in ("admin-token-file", "agent-token-file", "tls-cert", "tls-key", "ca-cert"):
        path = flag(s["args"], f)
        if path is None and f.startswith(("admin", "agent")):
            die(f"the server has no --{f}: a new store would make tokens the agents do not hold")
        if path is not None:
            from_secret[f] = secret_file(smounts, path) or die(f"the server's --{f}={path} is not in a Secret volume")
    tls = "--insecure-http" not in s["args"]
    if tls and "tls-cert" not in from_secret:
        die("the server serves TLS with no --tls-cert from a Secret (a CA made on first start reaches no agent)")
    _, aspec = pod(ds, "DaemonSet")
    if aspec is not None:
        a = aspec["containers"][0]
        env = {e["name"]: e for e in a.get("env", [])}
        ref = env.get("ZENITH_AGENT_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            die("the agent's ZENITH_AGENT_TOKEN does not come from a Secret")
        if (ref["name"], ref["key"]) != from_secret["agent-token-file"]:
            die(f"the agent's join token {ref} is not the server's --agent-token-file {from_secret['agent-token-file']}")
        if tls:
            ca = flag(a["args"], "ca-cert")
            if ca is None or secret_file(secret_mounts(aspec, a), ca) != from_secret["ca-cert"]:
                die(f"the agent's --ca-cert={ca} is not the server's CA {from_secret['ca-cert']}")
        private = {from_secret["admin-token-file"], from_secret.get("tls-key")}
        for name, key in secret_refs(aspec):
            if (name, key) in private or (key is None and name in {p[0] for p in private if p}):
                die(f"the agent pod gets Secret {name} {key or '(every key)'}: the admin token or the server's key")
    print(n)

def cmd_k8s_secrets(path, cluster):
    """Stores the rendered Secrets as the API server would hold them, CLUSTER/<name>/<key>
    (decoded; type and annotations in CLUSTER/.meta/<name>.json), beside those already there
    (an operator's own); prints how many."""
    n = 0
    os.makedirs(os.path.join(cluster, ".meta"), exist_ok=True)
    for d in docs(path):
        if d["kind"] != "Secret":
            continue
        dst = os.path.join(cluster, d["metadata"]["name"])
        shutil.rmtree(dst, ignore_errors=True)
        os.makedirs(dst)
        meta = {"type": d.get("type", "Opaque"), "annotations": d["metadata"].get("annotations", {})}
        json.dump(meta, open(os.path.join(cluster, ".meta", d["metadata"]["name"] + ".json"), "w"))
        for k, v in d.get("data", {}).items():
            with open(os.path.join(dst, k), "wb") as f:
                f.write(base64.b64decode(v))
        for k, v in d.get("stringData", {}).items():
            with open(os.path.join(dst, k), "w") as f:
                f.write(v)
        n += 1
    print(n)

def cmd_k8s_run_cmd(path, kind, out_dir, port, mport, cluster, node="node-a"):
    """One rendered container as a local command: `env` words (NAME=VALUE, the binary, its
    arguments). Its Secrets come from CLUSTER/<name>/<key> only (k8s-secrets), projected as the
    kubelet would: Secret volumes as files (items, defaultMode), secretKeyRef as variables; a
    Secret or key missing there fails. $(VAR) is filled from the container's environment."""
    d, spec = pod(docs(path), kind)
    c = spec["containers"][0]
    pod_name = f"{d['metadata']['name']}-0" if kind == "StatefulSet" else f"{d['metadata']['name']}-{node}"
    fields = {"metadata.name": pod_name, "spec.nodeName": node, "status.podIP": "127.0.0.1"}
    def secret_value(name, key):
        f = os.path.join(cluster, name, key)
        if not os.path.isfile(f):
            die(f"{kind}: Secret {name} (key {key}) is neither rendered nor in the cluster")
        return open(f, "rb").read()
    mounts = os.path.join(cluster, ".mounts", pod_name)
    shutil.rmtree(mounts, ignore_errors=True)
    local = {}
    for mp, (name, items, mode) in secret_mounts(spec, c).items():
        dst = os.path.join(mounts, mp.strip("/").replace("/", "_"))
        os.makedirs(dst)
        if items is None:
            if not os.path.isdir(os.path.join(cluster, name)):
                die(f"{kind}: Secret {name} is neither rendered nor in the cluster")
            items = {k: k for k in os.listdir(os.path.join(cluster, name))}
        for rel, key in items.items():
            with open(os.path.join(dst, rel), "wb") as f:
                f.write(secret_value(name, key))
            os.chmod(os.path.join(dst, rel), mode)
        local[mp] = dst
    def localize(v):
        for mp, dst in local.items():
            if v.startswith(mp + "/"):
                return dst + v[len(mp):]
        return v
    env = {}
    def fill(v):
        return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), v)
    for e in c.get("env", []):
        vf = e.get("valueFrom")
        if vf is None:
            env[e["name"]] = localize(fill(e.get("value", "")))
        elif "fieldRef" in vf:
            env[e["name"]] = fields[vf["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in vf:
            v = secret_value(vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"]).decode()
            if "\n" in v:
                die(f"{kind}: {e['name']} from Secret {vf['secretKeyRef']['name']} holds a newline")
            env[e["name"]] = v
        else:
            die(f"{kind}: cannot fill {e['name']} from {vf}")
    out = [f"{k}={v}" for k, v in env.items()] + [ZENITH]
    for a in c["args"]:
        a = fill(a)
        if a.startswith("--listen="):
            a = f"--listen=127.0.0.1:{port}"
        elif a.startswith("--data-dir="):
            a = f"--data-dir={out_dir}"
        elif a.startswith("--server="):
            a = re.sub(r"//[^/:]+:\d+", f"//localhost:{port}", a)
        elif a.startswith("--metrics-listen="):
            a = f"--metrics-listen=127.0.0.1:{mport}"
        elif a.startswith("--") and "=" in a:
            k, v = a.split("=", 1)
            a = f"{k}={localize(v)}"
        out.append(a)
    print("\n".join(out))

def cmd_k8s_value(path, kind, what):
    c = container(docs(path), kind)
    if what == "server-url":
        print(next(a.split("=", 1)[1] for a in c["args"] if a.startswith("--server=")))

def cmd_k8s_dial_names(path, domain):
    """The names clients and agents reach the servers at: each Service's in-cluster names,
    each server pod's name under its headless Service, and localhost (kubectl port-forward)."""
    ds = docs(path)
    names = ["localhost"]
    for d in ds:
        if d["kind"] == "Service" and d["spec"].get("clusterIP") != "None":
            n, ns = d["metadata"]["name"], d["metadata"]["namespace"]
            names += [n, f"{n}.{ns}", f"{n}.{ns}.svc", f"{n}.{ns}.svc.{domain}"]
    for d in ds:
        if d["kind"] == "StatefulSet":
            ns = d["metadata"]["namespace"]
            for i in range(d["spec"]["replicas"]):
                names.append(f"{d['metadata']['name']}-{i}.{d['spec']['serviceName']}.{ns}.svc.{domain}")
    print("\n".join(names))

def cmd_fake_apiserver(cluster, namespace, port_file):
    """A stand-in Kubernetes API server on 127.0.0.1 (its port written to PORT_FILE) for
    `helm template --dry-run=server`, whose lookup then reads the Secrets in CLUSTER: discovery
    of the kinds the chart renders, and GET of a Secret in NAMESPACE; everything else is 404."""
    import http.server
    kinds = {"v1": [("secrets", "Secret"), ("services", "Service"), ("serviceaccounts", "ServiceAccount")],
             "apps/v1": [("statefulsets", "StatefulSet"), ("daemonsets", "DaemonSet")],
             "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy")]}
    def resources(gv):
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
            {"name": p, "singularName": k.lower(), "namespaced": True, "kind": k, "verbs": ["get", "list"]}
            for p, k in kinds[gv]]}
    def group(gv):
        v = {"groupVersion": gv, "version": "v1"}
        return {"name": gv.split("/")[0], "versions": [v], "preferredVersion": v}
    static = {"/version": {"major": "1", "minor": "31", "gitVersion": "v1.31.0"},
              "/api": {"kind": "APIVersions", "versions": ["v1"],
                       "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
              "/apis": {"kind": "APIGroupList", "apiVersion": "v1",
                        "groups": [group(gv) for gv in kinds if gv != "v1"]},
              "/api/v1": resources("v1")}
    static.update({f"/apis/{gv}": resources(gv) for gv in kinds if gv != "v1"})
    def secret(name):
        d = os.path.join(cluster, name)
        if not os.path.isdir(d) or name.startswith("."):
            return None
        mf = os.path.join(cluster, ".meta", name + ".json")
        meta = json.load(open(mf)) if os.path.exists(mf) else {"type": "Opaque", "annotations": {}}
        return {"apiVersion": "v1", "kind": "Secret", "type": meta["type"],
                "metadata": {"name": name, "namespace": namespace, "annotations": meta["annotations"]},
                "data": {k: base64.b64encode(open(os.path.join(d, k), "rb").read()).decode() for k in os.listdir(d)}}
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?")[0]
            body = static.get(path)
            m = re.fullmatch(rf"/api/v1/namespaces/{re.escape(namespace)}/secrets/([-.a-z0-9]+)", path)
            if m:
                body = secret(m.group(1))
            print("GET", path, "200" if body else "404", file=sys.stderr, flush=True)
            code = 200 if body else 404
            body = body or {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())
        def log_message(self, *args):
            pass
    srv = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    os.replace(port_file + ".tmp", port_file)
    srv.serve_forever()

def cmd_helm_release(release_json, manifest_out, notes_out):
    """Splits `helm install --dry-run -o json` into its manifests and its rendered NOTES."""
    r = json.load(open(release_json))
    open(manifest_out, "w").write(r["manifest"])
    open(notes_out, "w").write(r["info"]["notes"])

def cmd_notes_commands(notes, port):
    """The commands NOTES.txt gives an operator to read the Secrets and set up the CLI, one a
    line, with the port-forward's local port replaced by PORT."""
    lines = [l.strip() for l in open(notes)]
    cmds = [l for l in lines if re.match(r"kubectl .*\bget secret\b", l) or l.startswith("zenith context set ")]
    if not any(l.startswith("zenith context set ") for l in cmds):
        die("NOTES.txt gives no `zenith context set` command")
    print("\n".join(re.sub(r"//localhost:\d+", f"//localhost:{port}", l) for l in cmds))

def cmd_kubectl(cluster, namespace, *argv):
    """A stand-in for `kubectl -n NS get secret NAME -o jsonpath='{.data.KEY}'` (KEY with
    kubectl's \\. escapes), answered from CLUSTER as the API server would: base64, no newline.
    Anything else is refused, so NOTES.txt's commands run as written or fail."""
    args = list(argv)
    if args[:2] != ["-n", namespace] or args[2:4] != ["get", "secret"] or len(args) != 7 or args[5] != "-o":
        die(f"kubectl stand-in: not `kubectl -n {namespace} get secret NAME -o jsonpath=...`: {args}")
    m = re.fullmatch(r"jsonpath=\{\.data\.((?:[^.\\{}]|\\\.)+)\}", args[6])
    if not m:
        die(f"kubectl stand-in: jsonpath {args[6]!r} is not {{.data.KEY}}")
    f = os.path.join(cluster, args[4], m.group(1).replace("\\.", "."))
    if not os.path.isfile(f):
        die(f"Error from server (NotFound): {f} not in the cluster")
    sys.stdout.write(base64.b64encode(open(f, "rb").read()).decode())

def cmd_chart_files(chart):
    import yaml
    c = yaml.safe_load(open(os.path.join(chart, "Chart.yaml")))
    for k in ("apiVersion", "name", "version", "appVersion"):
        if not c.get(k):
            die(f"Chart.yaml: no {k}")
    if c["apiVersion"] != "v2":
        die("Chart.yaml: apiVersion is not v2")
    schema = json.load(open(os.path.join(chart, "values.schema.json")))
    def keys_in_schema(v, s, path):
        if not isinstance(v, dict) or s.get("additionalProperties") is not False:
            return
        for k, sub in v.items():
            if k not in s.get("properties", {}):
                die(f"{path}{k}: not in values.schema.json")
            keys_in_schema(sub, s["properties"][k], f"{path}{k}.")
    files = [os.path.join(chart, "values.yaml")] + sorted(
        os.path.join(chart, "ci", f) for f in os.listdir(os.path.join(chart, "ci")))
    for f in files:
        keys_in_schema(yaml.safe_load(open(f)) or {}, schema, os.path.basename(f) + ": ")
    if not os.path.exists(os.path.join(chart, "templates", "NOTES.txt")):
        die("no templates/NOTES.txt")

def cmd_mutate(path, out):
    """A manifest with an unknown field in a pod spec: the schema check must refuse it."""
    import yaml
    ds = docs(path)
    for d, spec in pods(ds):
        spec["containers"][0]["bogusField"] = True
        break
    yaml.safe_dump_all(ds, open(out, "w"))

# ---------------------------------------------------------------- grafana
def exprs(dash):
    out = []
    def walk(ps):
        for p in ps:
            for t in p.get("targets", []):
                out.append((p.get("title", "?"), t["expr"]))
            walk(p.get("panels", []))
    walk(dash["panels"])
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable {v['name']}", q))
    return out

def cmd_dashboard_static(path):
    dash = json.load(open(path))
    ids, cells = set(), {}
    def walk(ps):
        for p in ps:
            if p["id"] in ids:
                die(f"panel id {p['id']} used twice")
            ids.add(p["id"])
            g = p["gridPos"]
            if g["x"] + g["w"] > 24:
                die(f"panel {p['title']!r} is wider than the grid")
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    if (x, y) in cells:
                        die(f"panels {cells[(x, y)]!r} and {p['title']!r} overlap")
                    cells[(x, y)] = p["title"]
            if p["type"] != "row":
                if p.get("datasource", {}).get("uid") != "${datasource}":
                    die(f"panel {p['title']!r} does not use the datasource variable")
                if not p.get("targets"):
                    die(f"panel {p['title']!r} has no query")
            walk(p.get("panels", []))
    walk(dash["panels"])
    if dash.get("uid") is None or dash.get("schemaVersion", 0) < 30:
        die("no uid or an old schemaVersion")
    print(f"{len(ids)} panels, {len(exprs(dash))} queries")

def scrape_index(files):
    """sample name -> family type, from OpenMetrics scrapes."""
    types, samples = {}, {}
    for f in files:
        for line in open(f):
            m = re.match(r"# TYPE (\S+) (\S+)", line)
            if m:
                types[m.group(1)] = m.group(2)
                continue
            if line.startswith("#") or not line.strip():
                continue
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            fam = name
            for suf in ("_total", "_bucket", "_sum", "_count", "_created", "_info"):
                if name.endswith(suf) and name[: -len(suf)] in types:
                    fam = name[: -len(suf)]
                    break
            samples[name] = types.get(fam, "unknown")
    return samples

def cmd_dashboard_metrics(path, *scrapes):
    dash = json.load(open(path))
    samples = scrape_index(scrapes)
    used, missing, misuse = set(), [], []
    for title, e in exprs(dash):
        for name in re.findall(r"\b(zenith_[a-z0-9_]+)\b", e):
            used.add(name)
            if name not in samples:
                missing.append(f"{name} ({title})")
        # rate/irate/increase over counters (or histogram parts) only; quantiles from buckets
        for fn, name in re.findall(r"\b(rate|irate|increase)\(\s*(zenith_[a-z0-9_]+)", e):
            t = samples.get(name)
            if t and not (t == "counter" or (t == "histogram" and re.search(r"_(bucket|sum|count)$", name))):
                misuse.append(f"{fn}({name}) over a {t} ({title})")
        for name in re.findall(r"histogram_quantile\([^,]+,.*?\b(zenith_[a-z0-9_]+)", e):
            if not name.endswith("_bucket") or "le" not in e:
                misuse.append(f"histogram_quantile over {name} ({title})")
    if missing:
        die("metrics not in the scrape: " + ", ".join(sorted(set(missing))))
    if misuse:
        die("; ".join(misuse))
    unused = sorted({n for n in samples if n.startswith("zenith_")} - used)
    print(f"{len(used)} metric names, all in the scrape ({len(samples)} sample names); not shown: {len(unused)}")
    print("not on the dashboard: " + " ".join(unused), file=sys.stderr)

def cmd_dashboard_queries(path, rate_interval):
    """Prints one query a line, Grafana's variables filled in as a dashboard would."""
    for title, e in exprs(json.load(open(path))):
        if e.startswith("label_values("):
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", e)
            e = f"count by ({m.group(2)}) ({m.group(1)})"
        e = e.replace("$__rate_interval", rate_interval).replace("$server", ".*").replace("$agent", ".*")
        print(json.dumps({"title": title, "expr": e}))

def cmd_prom_eval(base, queries_file):
    import urllib.parse, urllib.request
    bad, n = [], 0
    for line in open(queries_file):
        q = json.loads(line)
        url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": q["expr"]})
        try:
            r = json.load(urllib.request.urlopen(url, timeout=10))
        except Exception as e:  # a 400 carries the parse error
            body = getattr(e, "read", lambda: b"")().decode(errors="replace")
            bad.append(f"{q['title']}: {e} {body[:200]}")
            continue
        n += 1
        if r.get("status") != "success":
            bad.append(f"{q['title']}: {r}")
        elif not r["data"]["result"]:
            bad.append(f"{q['title']}: no data for {q['expr']}")
    if bad:
        die("\n".join(bad))
    print(n)

if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1].replace("-", "_")](*sys.argv[2:])
