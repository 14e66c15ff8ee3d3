#!/usr/bin/env bash
# The server and the agent run as the systemd units (deploy/systemd) and the Kubernetes
# manifests run them, with the real stack (PostgreSQL, sigil-server, sigil-agent run):
# - sigil-server as a non-root uid (postgres here: the only uid this test's PostgreSQL lets
#   in) with no capability at all (CapabilityBoundingSet= empty), umask 077, and the
#   migrations read from SIGIL_MIGRATIONS_DIR (the installed layout, not the source tree):
#   it serves, its key directory is 0700 and its admin socket 0600, both its own;
# - sigil-agent as uid 65534 with exactly the unit's AmbientCapabilities (setpriv): a
#   workload of another uid (4242), running an executable only root may read (mode 0711),
#   gets its X.509-SVID (entry: unix:uid, unix:path, unix:sha256). Restarted without any one
#   of the three capabilities, or with none, the agent denies that workload (fails closed)
#   while a control workload of the agent's own uid still gets its SVID (so the entries were
#   synced and only the capability is missing). Without CAP_SYS_PTRACE or CAP_DAC_READ_SEARCH
#   the agent logs a warning naming the pid, the uid and the capability it lacks to read the
#   caller's executable, once for two requests (rate-limited per uid); with them, none.
# Needs root (to switch uids); otherwise says so and skips.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/stack.sh"

if [ "$(id -u)" != 0 ] || ! command -v setpriv >/dev/null; then
  echo "ok - # SKIP needs root and setpriv to run the agent and workloads as other uids"
  finish
fi
UNIT=$SRC/deploy/systemd/sigil-agent.service
CAPS=$(sed -n 's/^AmbientCapabilities=//p' "$UNIT")
[ -n "$CAPS" ] || { echo "not ok - no AmbientCapabilities in $UNIT"; finish; }
AGENT_UID=65534
WL_UID=4242

stack_init deploy-unpriv
chmod 0755 "$TMP"
API=$TMP/public/api.sock
install -d -o "$AGENT_UID" -g "$AGENT_UID" -m 0755 "$TMP/public"
install -d -o "$AGENT_UID" -g "$AGENT_UID" -m 0700 "$TMP/agent-data"

# --- the server: non-root, no capabilities, installed migrations
install -d -o postgres -g postgres -m 0700 "$TMP/srv"
install -d -m 0755 "$TMP/share/sigil/migrations"
install -m 0644 "$SRC"/migrations/*.sql "$TMP/share/sigil/migrations/"
ADMIN=$TMP/srv/admin.sock
export SIGIL_ADMIN_SOCKET=$ADMIN
sigil_server_config "$TMP/server.yaml" "$TD" "host=$SOCK user=sigil dbname=$DB" "$ADMIN" \
  "127.0.0.1:$NODE_PORT" "$TMP/srv/keys" "  tier: off"
chmod 0644 "$TMP/server.yaml"
(
  umask 077
  exec env SIGIL_MIGRATIONS_DIR="$TMP/share/sigil/migrations" setpriv --reuid=postgres \
    --regid=postgres --clear-groups --inh-caps=-all --bounding-set=-all \
    "$SRV" run --config "$TMP/server.yaml" >>"$TMP/server.log" 2>&1
) &
SRV_PID=$!
check "sigil-server runs as postgres with no capabilities" until_ok 30 "$SRV" healthcheck --admin-socket "$ADMIN" ||
  { sed 's/^/#   /' "$TMP/server.log" | tail -5; finish; }
status=$(cat "/proc/$SRV_PID/status")
if grep -q "^Uid:[[:space:]]*$(id -u postgres)[[:space:]]" <<<"$status" &&
  grep -q '^CapEff:[[:space:]]*0000000000000000$' <<<"$status" &&
  grep -q '^CapBnd:[[:space:]]*0000000000000000$' <<<"$status"; then
  ok "the server process: uid postgres, no effective and no bounding capabilities"
else
  notok "the server process: $(grep -E '^(Uid|CapEff|CapBnd)' <<<"$status" | tr '\n' ' ')"
fi
[ "$(stat -c '%U %a' "$TMP/srv/keys")" = "postgres 700" ] &&
  ok "ca.key_dir made 0700, owned by the server's uid" || notok "ca.key_dir: $(stat -c '%U %a' "$TMP/srv/keys")"
[ "$(stat -c '%U %a' "$ADMIN")" = "postgres 600" ] &&
  ok "the admin socket 0600, owned by the server's uid" || notok "admin socket: $(stat -c '%U %a' "$ADMIN")"
stack_bundle
chmod 0644 "$TMP/bootstrap.pem"
TOKEN=$(stack_token /sigil/agent/caps-node)
check "a join token" test -n "$TOKEN"
stack_agent_config ""
chmod 0644 "$TMP/agent.yaml"
AGENT_ID=spiffe://$TD/sigil/agent/caps-node

# the workload: another uid, an executable it may run but not read
install -d -m 0755 "$TMP/wl"
install -m 0711 "$AGENT" "$TMP/wl/workload"
WL_SHA=$(sha256sum "$TMP/wl/workload" | cut -d' ' -f1)
WL_ID=spiffe://$TD/dev/onprem/deploy/caps
# the control: the agent's own uid, a readable executable
install -m 0755 "$AGENT" "$TMP/wl/control"
CTL_SHA=$(sha256sum "$TMP/wl/control" | cut -d' ' -f1)
CTL_ID=spiffe://$TD/dev/onprem/deploy/control
"$SRV" entry create --spiffe-id "$WL_ID" --parent-id "$AGENT_ID" --selector "unix:uid:$WL_UID" \
  --selector "unix:path:$TMP/wl/workload" --selector "unix:sha256:$WL_SHA" >"$TMP/e1.out" 2>&1
check "an entry for the workload (uid $WL_UID, path, sha256)" grep -q "Entry created" "$TMP/e1.out"
"$SRV" entry create --spiffe-id "$CTL_ID" --parent-id "$AGENT_ID" --selector "unix:uid:$AGENT_UID" \
  --selector "unix:path:$TMP/wl/control" --selector "unix:sha256:$CTL_SHA" >"$TMP/e2.out" 2>&1
check "an entry for the control (uid $AGENT_UID)" grep -q "Entry created" "$TMP/e2.out"

setpriv_caps() { # "CAP_A CAP_B" -> "+a,+b"
  local c out=
  for c in $1; do c=${c#CAP_}; out+="+${c,,},"; done
  printf '%s' "${out%,}"
}
agent_start() { # capabilities ("" for none), then agent arguments
  local caps=$1 list
  shift
  list=$(setpriv_caps "$caps")
  if [ -n "$list" ]; then
    setpriv --reuid="$AGENT_UID" --regid="$AGENT_UID" --clear-groups --inh-caps="$list" \
      --ambient-caps="$list" --bounding-set=-all,"$list" \
      "$AGENT" run --config "$TMP/agent.yaml" "$@" >>"$TMP/agent.log" 2>&1 &
  else
    setpriv --reuid="$AGENT_UID" --regid="$AGENT_UID" --clear-groups --inh-caps=-all \
      --bounding-set=-all "$AGENT" run --config "$TMP/agent.yaml" "$@" >>"$TMP/agent.log" 2>&1 &
  fi
  AGENT_PID=$!
}
agent_stop() {
  kill -TERM "$AGENT_PID" 2>/dev/null
  wait "$AGENT_PID" 2>/dev/null
  AGENT_PID=
}
fetch_as() { # uid, executable: prints the SPIFFE IDs it gets
  setpriv --reuid="$1" --regid="$1" --clear-groups "$2" api fetch x509 --socket "$API" --timeout 3
}
gets() { fetch_as "$1" "$2" 2>&1 | grep -qF "$3"; }

agent_start "$CAPS" --join-token "$TOKEN"
check "the agent (uid $AGENT_UID, $CAPS) attests with the join token" \
  until_ok 30 grep -q "node attested" "$TMP/agent.log"
check "the control workload (uid $AGENT_UID) gets $CTL_ID" until_ok 30 gets "$AGENT_UID" "$TMP/wl/control" "$CTL_ID"
if until_ok 10 gets "$WL_UID" "$TMP/wl/workload" "$WL_ID"; then
  ok "with the unit's capabilities, the workload of uid $WL_UID (0711 executable) gets $WL_ID"
else
  notok "with the unit's capabilities, the workload of uid $WL_UID gets no SVID: $(fetch_as "$WL_UID" "$TMP/wl/workload" 2>&1 | head -3)"
  sed 's/^/#   /' "$TMP/agent.log" | tail -5
fi
n=$(grep -c "missing_capability=" "$TMP/agent.log")
[ "$n" = 0 ] && ok "with the unit's capabilities, no missing-capability warning" ||
  notok "with the unit's capabilities, $n missing-capability warnings: $(grep -m2 missing_capability "$TMP/agent.log")"
agent_stop

denied_without() { # capabilities kept, what is missing
  local kept=$1 what=$2 out rc=0 start n
  start=$(stat -c %s "$TMP/agent.log")
  agent_start "$kept"
  if ! until_ok 30 gets "$AGENT_UID" "$TMP/wl/control" "$CTL_ID"; then
    notok "without $what: the control workload gets no SVID (cannot conclude)"
    agent_stop
    return
  fi
  out=$(fetch_as "$WL_UID" "$TMP/wl/workload" 2>&1) || rc=$?
  if [ "$rc" != 0 ] && ! grep -qF "$WL_ID" <<<"$out"; then
    ok "without $what: the workload of uid $WL_UID is denied (exit $rc), the control is served"
  else
    notok "without $what: the workload of uid $WL_UID was served: $out"
  fi
  case $what in
  CAP_SYS_PTRACE | CAP_DAC_READ_SEARCH)
    # the agent says why: which capability it lacks to read the caller's executable, once a
    # minute per uid however often the workload asks
    fetch_as "$WL_UID" "$TMP/wl/workload" >/dev/null 2>&1
    n=$(tail -c +$((start + 1)) "$TMP/agent.log" |
      grep -c "WARN.*pid=[0-9][0-9]*.*uid=$WL_UID.*missing_capability=$what")
    if [ "$n" = 1 ]; then
      ok "without $what: one warning for two requests names pid, uid $WL_UID and $what"
    else
      notok "without $what: $n warnings naming $what for uid $WL_UID (want 1): $(tail -c +$((start + 1)) "$TMP/agent.log" | grep "uid=$WL_UID" | head -3)"
    fi
    ;;
  esac
  agent_stop
}
for c in $CAPS; do
  kept=$(for d in $CAPS; do [ "$d" = "$c" ] || printf '%s ' "$d"; done)
  denied_without "$kept" "$c"
done
denied_without "" "any capability"
grep -q 'permission denied.*uid=4242' "$TMP/agent.log" &&
  ok "the agent logs the denials of uid $WL_UID" || notok "no denial of uid $WL_UID logged"
grep -q 'uid=4242.*pidfd' "$TMP/agent.log" &&
  ok "without CAP_KILL the reason is the liveness check (pidfd)" ||
  notok "no pidfd reason logged: $(grep 'uid=4242' "$TMP/agent.log" | head -3)"
finish
