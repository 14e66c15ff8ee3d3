#!/usr/bin/env bash
# sigil-agent run with server_address a host name, against a real sigil-server (node API on
# 127.0.0.1) and PostgreSQL: "localhost:PORT" attests and the Workload API answers; a name
# that does not resolve (nonexistent.invalid) is logged naming the host and retried on the
# agent's backoff while it keeps running; a made-up name resolved from a hosts file of our own
# (bind-mounted over /etc/hosts in a mount namespace of the agent only: nothing system-wide
# changes) to ::1, where nothing listens, then 127.0.0.1 attests: the second address is
# tried. One line per check, then "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/stack.sh"
stack_init agent-hostname
NAME=sigil-server.made-up.test
RETRY='retry:
  initial: 200ms
  max: 1s
log:
  level: info'

stack_server_config
stack_server_start
check "sigil-server runs (admin socket up)" test -S "$ADMIN" || finish
stack_bundle
if ! until_ok 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$NODE_PORT"; then
  echo "ok - # SKIP this sigil-server does not serve node_api.listen"
  finish
fi
attested() { grep -q "node attested" "$1"; }
agent_stop() { # LOG: the agent stops on SIGTERM with status 0 (under ASan: nothing leaked)
  local rc=0
  kill -TERM "$AGENT_PID" 2>/dev/null
  wait "$AGENT_PID" 2>/dev/null || rc=$?
  AGENT_PID=
  if [ "$rc" = 0 ]; then
    ok "... and stops on SIGTERM with status 0"
  else
    notok "... and stops on SIGTERM with status $rc: $(grep -m3 -E 'Sanitizer|ERROR' "$1")"
  fi
}
# agent_config ADDR DIR: a config in DIR (its own data dir and socket)
agent_config() {
  mkdir -p "$2"
  sigil_agent_config "$2/agent.yaml" "$TD" "$1" "$TMP/bootstrap.pem" "$2/data" "$2/api.sock" "$RETRY"
}

# 1. localhost: a name, looked up with getaddrinfo
agent_config "localhost:$NODE_PORT" "$TMP/a1"
check "the config with server_address localhost:$NODE_PORT passes --check-config" \
  "$AGENT" run --config "$TMP/a1/agent.yaml" --check-config
TOKEN=$(stack_token /sigil/agent/hostname-1)
"$AGENT" run --config "$TMP/a1/agent.yaml" --join-token "$TOKEN" >"$TMP/a1/agent.log" 2>&1 &
AGENT_PID=$!
check "the agent dialing localhost:$NODE_PORT attests" until_ok 20 attested "$TMP/a1/agent.log" ||
  sed 's/^/#   /' "$TMP/a1/agent.log" | tail -5
check "... and its Workload API answers" "$AGENT" healthcheck --socket "$TMP/a1/api.sock"
agent_stop "$TMP/a1/agent.log"

# 2. a name that does not resolve: said, retried, the agent keeps running
agent_config "nonexistent.invalid:$NODE_PORT" "$TMP/a2"
TOKEN=$(stack_token /sigil/agent/hostname-2)
"$AGENT" run --config "$TMP/a2/agent.yaml" --join-token "$TOKEN" >"$TMP/a2/agent.log" 2>&1 &
AGENT_PID=$!
unresolved() { test "$(grep -c 'cannot resolve host \\"nonexistent.invalid\\"' "$TMP/a2/agent.log")" -ge "$1"; }
if until_ok 10 unresolved 1; then
  ok "nonexistent.invalid: the agent logs that it cannot resolve the host, by name"
else
  notok "nonexistent.invalid: no resolution error naming the host: $(tail -3 "$TMP/a2/agent.log")"
fi
check "... and tries again on its backoff (3 attempts logged)" until_ok 10 unresolved 3
check "... still running, serving its Workload API" "$AGENT" healthcheck --socket "$TMP/a2/api.sock"
check "... and never attested" bash -c "! grep -q 'node attested' '$TMP/a2/agent.log'"
agent_stop "$TMP/a2/agent.log"

# 3. a made-up name in a hosts file of the agent's own mount namespace
printf '::1 %s\n127.0.0.1 %s\n127.0.0.1 localhost\n' "$NAME" "$NAME" >"$TMP/hosts"
if [ "$(id -u)" = 0 ]; then NS=(unshare -m); else NS=(unshare -rm); fi
# shellcheck disable=SC2016 # expanded by the inner shell
IN_NS=("${NS[@]}" sh -c 'mount --make-rprivate / && mount --bind "$0" /etc/hosts && exec "$@"' "$TMP/hosts")
if ! "${IN_NS[@]}" getent ahosts "$NAME" >"$TMP/ahosts" 2>&1; then
  echo "ok - # SKIP the made-up name: no private mount namespace here ($(head -1 "$TMP/ahosts"))"
  finish
fi
check "outside the agent's namespace $NAME does not resolve (nothing system-wide)" \
  bash -c "! getent ahosts '$NAME'"
if [ "$(awk '/STREAM/ {print $1; exit}' "$TMP/ahosts")" = "::1" ]; then
  ok "inside it, $NAME resolves to ::1 first (nothing listens there), then 127.0.0.1"
else
  notok "inside it, $NAME resolves in another order: $(tr '\n' ' ' <"$TMP/ahosts")"
fi
agent_config "$NAME:$NODE_PORT" "$TMP/a3"
TOKEN=$(stack_token /sigil/agent/hostname-3)
"${IN_NS[@]}" "$AGENT" run --config "$TMP/a3/agent.yaml" --join-token "$TOKEN" >"$TMP/a3/agent.log" 2>&1 &
AGENT_PID=$!
if until_ok 20 attested "$TMP/a3/agent.log"; then
  ok "the agent dialing $NAME:$NODE_PORT attests (the second address answered)"
else
  notok "the agent dialing $NAME:$NODE_PORT did not attest: $(tail -3 "$TMP/a3/agent.log")"
fi
check "... and its Workload API answers" "$AGENT" healthcheck --socket "$TMP/a3/api.sock"
agent_stop "$TMP/a3/agent.log"
finish
