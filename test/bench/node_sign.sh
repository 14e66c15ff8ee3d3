#!/usr/bin/env bash
# Sets up a throwaway PostgreSQL and sigil-server with the node API, attests an agent with a
# join token (nodeapi_client), makes an entry under it, then runs bench_node_sign: X.509-SVIDs
# signed per second through BatchSignX509SVID against ECDSA P-256 sign+verify from the same run.
#   test/bench/node_sign.sh [SECONDS [BATCH [IN_FLIGHT]]]   (defaults 10 100 2; never run by CI)
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
SRV=$BUILD/server/sigil-server
CLIENT=$BUILD/test/nodeapi_client
BENCH=${SIGIL_BENCH_BIN:-$BUILD/test/bench_node_sign}
for b in "$SRV" "$CLIENT" "$BENCH"; do
  [ -x "$b" ] || { echo "$b is not built" >&2; exit 1; }
done
PGDIR=$BUILD/pg-bench-node-sign
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null || { echo "cannot start PostgreSQL" >&2; exit 1; }
SOCK=$PGDIR/socket
DB=sigil_bench_sign_$$
TMP=$(mktemp -d /tmp/sigil-bs.XXXXXX)
SRV_PID=
cleanup() {
  [ -n "$SRV_PID" ] && { kill -TERM "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; }
  psql -h "$SOCK" -U sigil -d postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  "$PG" stop "$PGDIR" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
until_ok() {
  local secs=$1 i
  shift
  for i in $(seq 1 $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}
psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $DB" || exit 1
TD=example.org
ADMIN=$TMP/admin.sock
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export SIGIL_ADMIN_SOCKET=$ADMIN
cat >"$TMP/server.yaml" <<EOF
trust_domain: $TD
database:
  conninfo: host=$SOCK user=sigil dbname=$DB
  pool_size: 2
admin:
  socket_path: $ADMIN
node_api:
  listen: 127.0.0.1:$PORT
ca:
  key_dir: $TMP/keys
policy:
  tier: off
log:
  level: warn
EOF
"$SRV" run --config "$TMP/server.yaml" >"$TMP/server.log" 2>&1 &
SRV_PID=$!
until_ok 30 "$SRV" healthcheck --admin-socket "$ADMIN" || { cat "$TMP/server.log" >&2; exit 1; }
until_ok 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" || { echo "node API not listening" >&2; exit 1; }
"$SRV" bundle show >"$TMP/bundle.pem" 2>/dev/null
TOKEN=$("$SRV" token generate --ttl 10m --agent-path /sigil/agent/bench 2>/dev/null |
  sed -nE 's/^Token +: ([A-Za-z0-9_-]+)$/\1/p')
mkdir -p "$TMP/agent"
"$CLIENT" "127.0.0.1:$PORT" "$TD" "$TMP/bundle.pem" "$TMP/agent" attest join_token "$TOKEN" >"$TMP/attest.out" 2>&1 ||
  { cat "$TMP/attest.out" >&2; exit 1; }
AGENT_ID=$(sed -nE 's/^spiffe_id=//p' "$TMP/attest.out")
ENTRY=$("$SRV" entry create --spiffe-id "spiffe://$TD/prod/onprem/bench/w" --parent-id "$AGENT_ID" \
  --selector unix:uid:1000 --selector unix:path:/usr/bin/w \
  --selector unix:sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881 2>&1 |
  sed -nE 's/^Entry ID +: //p')
[ -n "$ENTRY" ] || { echo "entry create failed" >&2; exit 1; }
# the server's index learns the entry from its feed: wait until one signing succeeds
until_ok 10 "$CLIENT" "127.0.0.1:$PORT" "$TD" "$TMP/bundle.pem" "$TMP/agent" sign "$ENTRY" "$TMP/one.pem" ||
  { echo "the entry never became signable" >&2; exit 1; }
echo "cores: $(nproc), server and client on the same machine"
"$BENCH" "127.0.0.1:$PORT" "$TD" "$TMP/bundle.pem" "$TMP/agent" "$ENTRY" "${1:-10}" "${2:-100}" "${3:-2}"
