#!/usr/bin/env bash
# deploy/systemd offline: systemd-analyze verify of both units (binaries put where the units
# expect them, under a temporary root; any warning fails), the sandboxing keys each unit must
# have, ExecStart paths and config paths of the install layout in docs/deploy.md, the
# sysusers file creating its users in a temporary root, the exposure score of
# systemd-analyze security --offline, and the agent's capability set: with exactly the
# unit's capabilities an unprivileged uid can do what workload attestation does to another
# uid's process (readlink and open /proc/PID/exe, read status and cgroup,
# pidfd_send_signal 0), and without any one of them it cannot.
set -euo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
SD=$SRC/deploy/systemd
PY=/usr/bin/python3
TMP=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT
fail=0
passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; fail=1; failed=$((failed + 1)); }
skip() { echo "ok - # SKIP $*"; }

for u in sigil-server.service sigil-agent.service; do
  [ -f "$SD/$u" ] && ok "deploy/systemd/$u exists" || notok "deploy/systemd/$u is missing"
done
[ "$fail" = 0 ] || { echo "deploy systemd: $passed passed, $failed failed"; exit 1; }

# value of KEY in unit U (all of them, one a line)
val() { sed -n "s/^$2=//p" "$SD/$1"; }

# --- the keys each unit must have
common=(Type=exec ProtectSystem=strict PrivateTmp=yes NoNewPrivileges=yes PrivateDevices=yes
  ProtectKernelTunables=yes ProtectKernelModules=yes ProtectKernelLogs=yes
  ProtectControlGroups=yes RestrictNamespaces=yes LockPersonality=yes
  MemoryDenyWriteExecute=yes SystemCallFilter=@system-service SystemCallArchitectures=native
  UMask=0077 LimitNOFILE=65536 Restart=on-failure
  "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6")
server_keys=("${common[@]}" ProtectHome=yes CapabilityBoundingSet= AmbientCapabilities=
  ProtectProc=invisible StateDirectory=sigil/server RuntimeDirectory=sigil/server
  User=sigil Group=sigil-admin "RestartPreventExitStatus=3 4"
  Environment=SIGIL_MIGRATIONS_DIR=/usr/local/share/sigil/migrations
  "ExecStart=/usr/local/bin/sigil-server run --config /etc/sigil/server.yaml"
  "ExecStartPre=/usr/local/bin/sigil-server run --check-config --config /etc/sigil/server.yaml")
agent_caps="CAP_SYS_PTRACE CAP_KILL CAP_DAC_READ_SEARCH"
agent_keys=("${common[@]}" ProtectHome=read-only "CapabilityBoundingSet=$agent_caps"
  "AmbientCapabilities=$agent_caps" StateDirectory=sigil/agent
  "RuntimeDirectory=sigil/agent sigil/agent/public" User=sigil-agent RestartPreventExitStatus=3
  EnvironmentFile=-/etc/sigil/agent.env
  'ExecStart=/usr/local/bin/sigil-agent run --config /etc/sigil/agent.yaml $SIGIL_AGENT_ARGS'
  "ExecStartPre=/usr/local/bin/sigil-agent run --check-config --config /etc/sigil/agent.yaml")
check_keys() { # unit keys...
  local u=$1 k missing=()
  shift
  for k in "$@"; do grep -qxF -- "$k" "$SD/$u" || missing+=("$k"); done
  [ "${#missing[@]}" = 0 ] && ok "$u has the ${#@} required settings" ||
    notok "$u lacks: ${missing[*]}"
}
check_keys sigil-server.service "${server_keys[@]}"
check_keys sigil-agent.service "${agent_keys[@]}"
# the agent must see other processes: no hidepid, no pid-only /proc
if grep -qE '^(ProtectProc=invisible|ProtectProc=noaccess|ProcSubset=pid)' "$SD/sigil-agent.service"; then
  notok "sigil-agent.service hides /proc from the agent (attestation would fail)"
else
  ok "sigil-agent.service leaves /proc visible for workload attestation"
fi

# --- the install layout: docs/deploy.md installs what the units run
for line in "install -m 0755 build/server/sigil-server build/agent/sigil-agent /usr/local/bin/" \
  "install -m 0644 migrations/*.sql /usr/local/share/sigil/migrations/" \
  "/etc/sigil/server.yaml" "/etc/sigil/agent.yaml" "/etc/sigil/agent.env" \
  "deploy/systemd/sigil.sysusers.conf"; do
  grep -qF -- "$line" "$SRC/docs/deploy.md" && ok "docs/deploy.md installs/uses $line" ||
    notok "docs/deploy.md does not mention $line"
done
# every binary a unit runs is one of ours under /usr/local/bin, or /bin/sh
bad=$(sed -n 's/^Exec[A-Za-z]*=[-@!+]*\([^ ]*\).*/\1/p' "$SD"/*.service |
  grep -vxE '/usr/local/bin/sigil-(server|agent)|/bin/sh' || true)
[ -z "$bad" ] && ok "every Exec*= runs /usr/local/bin/sigil-* or /bin/sh" || notok "unexpected Exec binaries: $bad"

# --- systemd-analyze verify
if ! command -v systemd-analyze >/dev/null; then
  notok "systemd-analyze is missing (deploy/install-deps installs the systemd package)"
else
  for b in server/sigil-server agent/sigil-agent; do
    [ -x "$BUILD/$b" ] || { notok "$BUILD/$b is not built"; continue; }
  done
  mkdir -p "$TMP/root/usr/local/bin"
  cp "$BUILD/server/sigil-server" "$BUILD/agent/sigil-agent" "$TMP/root/usr/local/bin/"
  for u in sigil-server.service sigil-agent.service; do
    sed "s#/usr/local/bin/#$TMP/root/usr/local/bin/#g" "$SD/$u" >"$TMP/$u"
  done
  # verify exits 0 on unknown keys (it only warns): any output is a failure
  rc=0
  out=$(cd "$TMP" && systemd-analyze verify --man=no --generators=no \
    "$TMP/sigil-server.service" "$TMP/sigil-agent.service" 2>&1) || rc=$?
  [ "$rc" = 0 ] && [ -z "$out" ] && ok "systemd-analyze verify: both units, no warning" ||
    notok "systemd-analyze verify (exit $rc): $out"
  # the check can fail: a typo'd key and a missing binary are reported
  sed 's/^ProtectSystem=strict/ProtectSytem=strict/' "$TMP/sigil-server.service" >"$TMP/typo.service"
  out=$(cd "$TMP" && systemd-analyze verify --man=no --generators=no "$TMP/typo.service" 2>&1) || true
  grep -q "Unknown key 'ProtectSytem'" <<<"$out" && ok "verify reports a typo'd key" ||
    notok "verify missed a typo'd key: $out"
  rc=0
  out=$(cd "$TMP" && systemd-analyze verify --man=no --generators=no "$SD/sigil-agent.service" 2>&1) || rc=$?
  if [ -x /usr/local/bin/sigil-agent ]; then
    skip "a missing binary: /usr/local/bin/sigil-agent exists on this machine"
  elif [ "$rc" != 0 ] && grep -q "/usr/local/bin/sigil-agent is not executable" <<<"$out"; then
    ok "verify reports the binary missing from /usr/local/bin"
  else
    notok "verify of a unit whose binary is missing: exit $rc: $out"
  fi
  # the sandbox's exposure score (0 best, 10 worst)
  for u in sigil-server.service sigil-agent.service; do
    score=$(systemd-analyze security --offline=true --no-pager "$TMP/$u" 2>/dev/null |
      sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
    if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s < 3.0) }'; then
      ok "$u: systemd-analyze security exposure $score (< 3.0)"
    else
      notok "$u: systemd-analyze security exposure '${score}' (want < 3.0)"
    fi
  done
fi

# --- sysusers: the users and the group the units name
if command -v systemd-sysusers >/dev/null; then
  mkdir -p "$TMP/users/etc"
  systemd-sysusers --root="$TMP/users" "$SD/sigil.sysusers.conf" >/dev/null 2>&1 || true
  sgid=$(awk -F: '$1 == "sigil-admin" { print $3 }' "$TMP/users/etc/group" 2>/dev/null || true)
  if grep -q "^sigil:x:[0-9]*:$sgid:" "$TMP/users/etc/passwd" 2>/dev/null && [ -n "$sgid" ] &&
    grep -q '^sigil-agent:x:' "$TMP/users/etc/passwd"; then
    ok "systemd-sysusers creates sigil (group sigil-admin) and sigil-agent"
  else
    notok "systemd-sysusers: $(cat "$TMP/users/etc/passwd" 2>/dev/null)"
  fi
else
  notok "systemd-sysusers is missing"
fi

# --- the agent's capabilities, against the kernel
if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
  skip "capability probe: needs root and setpriv to switch to an unprivileged uid"
else
  caps=$(val sigil-agent.service AmbientCapabilities)
  probe='import os, signal, sys
pid = int(sys.argv[1])
for what, f in [("readlink exe", lambda: os.readlink(f"/proc/{pid}/exe")),
                ("open exe", lambda: open(f"/proc/{pid}/exe", "rb").read(4)),
                ("status", lambda: open(f"/proc/{pid}/status").read(8)),
                ("cgroup", lambda: open(f"/proc/{pid}/cgroup").read(8)),
                ("pidfd_send_signal 0", lambda: signal.pidfd_send_signal(os.pidfd_open(pid), 0))]:
    try:
        f()
        print(what, "ok")
    except OSError as e:
        print(what, "denied", e.errno)'
  # the workload: root's process running an executable only root may read (mode 0711)
  cp /bin/sleep "$TMP/workload"
  chmod 0711 "$TMP/workload"
  chmod 0755 "$TMP"
  "$TMP/workload" 300 &
  pids+=($!)
  wpid=$!
  as_agent() { # capability list (comma separated, lower case, no cap_), then the probe
    local c=$1
    if [ -n "$c" ]; then
      setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps="$c" --ambient-caps="$c" \
        --bounding-set=-all,"$c" "$PY" -c "$probe" "$wpid"
    else
      setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all \
        "$PY" -c "$probe" "$wpid"
    fi
  }
  list=$(for c in $caps; do c=${c#CAP_}; printf '+%s,' "${c,,}"; done)
  list=${list%,}
  out=$(as_agent "$list")
  if ! grep -q denied <<<"$out" && [ "$(grep -c ' ok$' <<<"$out")" = 5 ]; then
    ok "with $caps (the unit's) uid 65534 can attest another uid's process"
  else
    notok "with $caps: $(tr '\n' ';' <<<"$out")"
  fi
  # each capability is needed: without it, a step attestation needs is denied
  declare -A needs=([CAP_SYS_PTRACE]="readlink exe" [CAP_KILL]="pidfd_send_signal 0"
    [CAP_DAC_READ_SEARCH]="open exe")
  for c in $caps; do
    less=$(for d in $caps; do [ "$d" = "$c" ] && continue; d=${d#CAP_}; printf '+%s,' "${d,,}"; done)
    out=$(as_agent "${less%,}")
    if grep -q "^${needs[$c]:-?} denied" <<<"$out"; then
      ok "without $c: ${needs[$c]} denied (the capability is needed)"
    else
      notok "without $c nothing attestation needs is denied: $(tr '\n' ';' <<<"$out")"
    fi
  done
  out=$(as_agent "")
  [ "$(grep -c denied <<<"$out")" = 3 ] && grep -q "^status ok" <<<"$out" && grep -q "^cgroup ok" <<<"$out" &&
    ok "without capabilities: exe and the liveness check denied, status and cgroup readable" ||
    notok "without capabilities: $(tr '\n' ';' <<<"$out")"
fi

echo "deploy systemd: $passed passed, $failed failed"
exit "$fail"
