# shellcheck shell=bash
# The real stack of an integration test (sourced after common.sh): a PostgreSQL of its own
# ($BUILD/pg-NAME, deploy/local/pg) with a fresh database, sigil-server, its bundle, a join
# token, sigil-agent. The config files, bundle and token come from deploy/local/lib.sh: the
# same code deploy/local/up runs.
#   stack_init NAME              PostgreSQL + database sigil_NAME_<pid>, TMP, trap; sets SRV,
#                                AGENT, TMP, SOCK, DB, TD, ADMIN, API, NODE_PORT and exports
#                                SIGIL_ADMIN_SOCKET
#   stack_server_config [POLICY] $TMP/server.yaml (POLICY: YAML lines under policy:)
#   stack_server_start           in the background (SRV_PID, log $TMP/server.log); status 0
#                                once its healthcheck answers (30 s)
#   stack_server_stop
#   stack_bundle                 the server's bundle into $TMP/bootstrap.pem
#   stack_token AGENT_PATH       prints a single-use join token (10 minutes)
#   stack_agent_config [EXTRA]   $TMP/agent.yaml (EXTRA: top-level YAML lines)
#   stack_agent_start [ARGS]     sigil-agent run in the background (AGENT_PID, $TMP/agent.log)
# On exit: WATCH_PID, AGENT_PID and SRV_PID are stopped (SIGCONT, SIGTERM, waited for), the
# database dropped, PostgreSQL stopped and TMP deleted.
SRV=$BUILD/server/sigil-server
AGENT=$BUILD/agent/sigil-agent
SRV_PID=
AGENT_PID=
WATCH_PID=

stack_cleanup() {
  local p
  for p in $WATCH_PID $AGENT_PID $SRV_PID; do kill -CONT "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null || true; done
  for p in $WATCH_PID $AGENT_PID $SRV_PID; do wait "$p" 2>/dev/null || true; done
  psql -h "$SOCK" -U sigil -d postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  "$SRC/deploy/local/pg" stop "$PGDIR" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}

stack_init() {
  local name=$1
  need_built "$SRV" "$AGENT"
  PGDIR=$BUILD/pg-$name
  "$SRC/deploy/local/pg" start "$PGDIR" >/dev/null || { echo "not ok - cannot start PostgreSQL"; exit 1; }
  SOCK=$PGDIR/socket
  DB=sigil_${name//-/_}_$$
  TMP=$(mktemp -d "/tmp/sigil-$name.XXXXXX")
  trap stack_cleanup EXIT
  psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $DB" || { echo "not ok - createdb"; exit 1; }
  TD=example.org
  ADMIN=$TMP/admin.sock
  API=$TMP/api.sock
  NODE_PORT=$(free_port)
  export SIGIL_ADMIN_SOCKET=$ADMIN
}

stack_server_config() {
  sigil_server_config "$TMP/server.yaml" "$TD" "host=$SOCK user=sigil dbname=$DB" "$ADMIN" \
    "127.0.0.1:$NODE_PORT" "$TMP/keys" "${1:-}"
}
stack_server_start() {
  "$SRV" run --config "$TMP/server.yaml" >>"$TMP/server.log" 2>&1 &
  SRV_PID=$!
  until_ok 30 "$SRV" healthcheck --admin-socket "$ADMIN"
}
stack_server_stop() {
  kill -TERM "$SRV_PID" 2>/dev/null
  wait "$SRV_PID" 2>/dev/null
  SRV_PID=
}
stack_bundle() { sigil_bundle "$SRV" "$TMP/bootstrap.pem" 2>>"$TMP/bundle.err"; }
stack_token() { sigil_join_token "$SRV" "$1" 10m 2>>"$TMP/token.err"; }
stack_agent_config() {
  sigil_agent_config "$TMP/agent.yaml" "$TD" "127.0.0.1:$NODE_PORT" "$TMP/bootstrap.pem" \
    "$TMP/agent-data" "$API" "${1:-}"
}
stack_agent_start() {
  "$AGENT" run --config "$TMP/agent.yaml" "$@" >>"$TMP/agent.log" 2>&1 &
  AGENT_PID=$!
}
