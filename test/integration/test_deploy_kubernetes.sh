#!/usr/bin/env bash
# deploy/kubernetes/validate: the manifests as committed pass (Kubernetes schemas, strict
# fields, our rules, references, the sigil configs through the real binaries' check mode),
# and a copy broken in one way at a time is refused with the reason: a typo'd field, a
# missing required field, a container without limits, an added capability, a file missing
# from the kustomization, a reference to a missing ConfigMap, an invalid sigil config, an
# agent server_address that is no Service's, a duplicate YAML key, a server running as root.
set -euo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
export SIGIL_BUILD_DIR=$BUILD
K=$SRC/deploy/kubernetes
VALIDATE=$K/validate
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; fail=1; failed=$((failed + 1)); }

rc=0
out=$("$VALIDATE" 2>&1) || rc=$?
if [ "$rc" = 0 ] && grep -q ": 0 errors$" <<<"$out"; then
  ok "deploy/kubernetes/validate: $(tail -1 <<<"$out")"
else
  notok "deploy/kubernetes/validate (exit $rc): $out"
fi
grep -q "3 sigil configs" <<<"$out" && ok "validate checked the 3 sigil configs with the binaries" ||
  notok "validate did not check 3 sigil configs: $(tail -1 <<<"$out")"

# what the deployment must have (the brief of issue 5)
has() { # file, fixed string, what
  grep -qF -- "$2" "$K/$1" && ok "$1: $3" || notok "$1: $3 (no '$2')"
}
has agent.yaml "hostPID: true" "the agent sees the node's processes"
has agent.yaml "path: /run/sigil/agent/public" "the Workload API directory is a hostPath"
has agent.yaml "kind: DaemonSet" "the agent is a DaemonSet"
has server-upstream.yaml "kind: StatefulSet" "the upstream server is a StatefulSet"
has server-upstream.yaml "name: sigil-database" "the database conninfo comes from a Secret"
has server-upstream.yaml "claimName: sigil-server-keys" "the CA key directory is on a PVC"
has server-downstream.yaml "replicas: 0" "the downstream is not started until its role exists"
has server-downstream.yaml "NOT RUNNABLE YET" "the downstream says it is not runnable yet"
has example-workload/workload.yaml "SPIFFE_ENDPOINT_SOCKET" "the example workload finds the socket by SPIFFE_ENDPOINT_SOCKET"
has kustomization.yaml "config/agent.yaml" "the agent ConfigMap embeds config/agent.yaml"

# one broken copy per case: refused, with the reason in the output
n=0
refused() { # what, expected text, then a command run in the copy (cwd) that breaks it
  local what=$1 want=$2 dir rc=0 out
  shift 2
  n=$((n + 1))
  dir=$TMP/copy$n
  mkdir -p "$dir"
  (cd "$K" && tar cf - --exclude=node_modules .) | (cd "$dir" && tar xf -)
  (cd "$dir" && "$@")
  out=$(SIGIL_VALIDATE_KUSTOMIZE=0 "$VALIDATE" "$dir" 2>&1) || rc=$?
  if [ "$rc" = 1 ] && grep -qF -- "$want" <<<"$out"; then
    ok "refused: $what ($(grep -F -- "$want" <<<"$out" | head -1))"
  else
    notok "not refused as expected: $what (exit $rc, want '$want'): $out"
  fi
}
refused "a typo'd field (imagee)" 'unknown field "imagee"' \
  sed -i 's/^          image: sigil:dev/          imagee: sigil:dev/' agent.yaml
refused "a typo'd nested field (readOnlyRootFilesytem)" 'unknown field "readOnlyRootFilesytem"' \
  sed -i 's/readOnlyRootFilesystem: true/readOnlyRootFilesytem: true/' server-upstream.yaml
refused "a missing required field (DaemonSet selector)" "must have required property selector" \
  sed -i '/^  selector:$/,/^      app.kubernetes.io\/name: sigil-agent$/d' agent.yaml
refused "a wrong type (replicas: one)" "replicas must be integer" \
  sed -i 's/^  replicas: 1$/  replicas: one/' server-upstream.yaml
refused "a container without limits" "resources.limits.memory is missing" \
  sed -i '/^            limits:$/,/^              memory: 512Mi$/d' server-downstream.yaml
refused "an added capability (SYS_ADMIN)" "capability SYS_ADMIN may not be added" \
  sed -i 's/add: \[SYS_PTRACE, KILL, DAC_READ_SEARCH\]/add: [SYS_PTRACE, KILL, DAC_READ_SEARCH, SYS_ADMIN]/' agent.yaml
refused "a server allowed to run as root" "runAsNonRoot must be true" \
  sed -i 's/runAsNonRoot: true/runAsNonRoot: false/' server-upstream.yaml
refused "a pod with a service account token" "automountServiceAccountToken must be false" \
  sed -i 's/^      automountServiceAccountToken: false/      automountServiceAccountToken: true/' example-workload/workload.yaml
refused "a manifest missing from the kustomization" "extra.yaml is not listed in resources" \
  cp namespaces.yaml extra.yaml
refused "a reference to a missing ConfigMap" "ConfigMap sigil/sigil-server-confg does not exist" \
  sed -i 's/name: sigil-server-config$/name: sigil-server-confg/' server-upstream.yaml
refused "an invalid sigil config in a ConfigMap" 'run --check-config (exit 3)' \
  sed -i 's/^  #pool_size: 4/  pool_size: 0/' config/server-upstream.yaml
refused "an agent config whose server_address names no Service" "there is no Service sigil/sigil-servr" \
  sed -i 's/^server_address: .*/server_address: sigil-servr.sigil.svc:8081/' config/agent.yaml
refused "an agent config naming the Service in another namespace" "there is no Service sigil-agent/sigil-server" \
  sed -i 's/^server_address: .*/server_address: sigil-server.sigil-agent.svc.cluster.local:8081/' config/agent.yaml
refused "an agent config with a port the Service does not have" "Service sigil/sigil-server has no port 8082" \
  sed -i 's/^server_address: .*/server_address: sigil-server.sigil.svc:8082/' config/agent.yaml
refused "an agent config naming a bare host" "is not <service>.<namespace>.svc:<port>" \
  sed -i 's/^server_address: .*/server_address: sigil-server:8081/' config/agent.yaml
refused "an agent config with an address that is no Service's clusterIP" "is not the clusterIP:port of a Service" \
  sed -i 's/^server_address: .*/server_address: 10.96.100.82:8081/' config/agent.yaml
refused "a duplicate YAML key" "YAML: Map keys must be unique" \
  sed -i 's/^  serviceName: sigil-server-pods$/  serviceName: sigil-server-pods\n  serviceName: x/' server-upstream.yaml
refused "a workload socket outside the agent's directory" "is not in the agent's socket directory" \
  sed -i 's#path: /run/sigil/agent/public$#path: /var/lib/sigil/agent#' example-workload/workload.yaml

echo "deploy kubernetes: $passed passed, $failed failed"
exit "$fail"
