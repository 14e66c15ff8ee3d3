#!/usr/bin/env bash
# Time from `sigil-server entry create` to the new SVID arriving on an already-open Workload API
# stream: PostgreSQL, sigil-server and sigil-agent run as test_agent_e2e.sh sets them up, one
# `sigil-agent api watch` kept open, its lines stamped on arrival; N samples (default 50), then
# p50/p99/max (target p99 < 200 ms). Each sample starts before the CLI runs, so it includes the
# CLI's own start and admin-socket round trip. Never run by CI.
#   test/bench/entry_to_stream.sh [SAMPLES]
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
SRV=$BUILD/server/sigil-server
AGENT=$BUILD/agent/sigil-agent
N=${1:-50}
for b in "$SRV" "$AGENT"; do
  [ -x "$b" ] || { echo "$b is not built" >&2; exit 1; }
done
PGDIR=$BUILD/pg-bench-e2s
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null || { echo "cannot start PostgreSQL" >&2; exit 1; }
SOCK=$PGDIR/socket
DB=sigil_bench_e2s_$$
TMP=$(mktemp -d /tmp/sigil-e2s.XXXXXX)
SRV_PID=
AGENT_PID=
WATCH_PID=
cleanup() {
  for p in $WATCH_PID $AGENT_PID $SRV_PID; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $WATCH_PID $AGENT_PID $SRV_PID; do wait "$p" 2>/dev/null || true; done
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
API=$TMP/api.sock
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
UID_=$(id -u)
AGENT_EXE=$(readlink -f "$AGENT")
AGENT_SHA=$(sha256sum "$AGENT_EXE" | cut -d' ' -f1)
AGENT_ID=spiffe://$TD/sigil/agent/bench-node
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
"$SRV" bundle show >"$TMP/bootstrap.pem" 2>/dev/null
TOKEN=$("$SRV" token generate --ttl 10m --agent-path /sigil/agent/bench-node 2>/dev/null |
  sed -nE 's/^Token +: ([A-Za-z0-9_-]+)$/\1/p')
mkentry() {
  "$SRV" entry create --spiffe-id "$1" --parent-id "$AGENT_ID" --selector "unix:uid:$UID_" \
    --selector "unix:path:$AGENT_EXE" --selector "unix:sha256:$AGENT_SHA" >"$TMP/entry.out" 2>&1
}
mkentry "spiffe://$TD/dev/onprem/bench/first" || { cat "$TMP/entry.out" >&2; exit 1; }
cat >"$TMP/agent.yaml" <<EOF
trust_domain: $TD
server_address: 127.0.0.1:$PORT
trust_bundle_path: $TMP/bootstrap.pem
data_dir: $TMP/agent-data
workload_api:
  socket_path: $API
workload_attestors: [unix]
log:
  level: warn
EOF
"$AGENT" run --config "$TMP/agent.yaml" --join-token "$TOKEN" >"$TMP/agent.log" 2>&1 &
AGENT_PID=$!
until_ok 30 "$AGENT" api fetch x509 --socket "$API" --timeout 3 || { cat "$TMP/agent.log" >&2; exit 1; }

# the open stream: every line stamped with the wall clock as it arrives
"$AGENT" api watch --socket "$API" > >(while IFS= read -r line; do
  printf '%s %s\n' "${EPOCHREALTIME/./}" "$line"
done >"$TMP/watch.out") 2>"$TMP/watch.err" &
WATCH_PID=$!
until_ok 10 grep -q "bench/first" "$TMP/watch.out" || { echo "api watch got nothing" >&2; exit 1; }

: >"$TMP/ms"
for i in $(seq -w 1 "$N"); do
  id="spiffe://$TD/dev/onprem/bench/e$i"
  t0=${EPOCHREALTIME/./}
  mkentry "$id" || { cat "$TMP/entry.out" >&2; exit 1; }
  if ! until_ok 10 grep -q -- "$id\$" "$TMP/watch.out"; then
    echo "sample $i: $id never arrived on the stream" >&2
    exit 1
  fi
  t1=$(awk -v id="$id" '{ n = length(id) } substr($0, length($0) - n + 1) == id { print $1; exit }' "$TMP/watch.out")
  echo $(((t1 - t0) / 1000)) >>"$TMP/ms"
done
sort -n "$TMP/ms" | awk -v n="$N" '
  { v[NR] = $1 }
  END {
    p50 = v[int((NR + 1) * 0.50)]; i99 = int(NR * 0.99 + 0.999); if (i99 > NR) i99 = NR
    printf "entry create -> SVID on an open stream, %d samples: p50 %d ms, p99 %d ms, min %d ms, max %d ms (target p99 < 200 ms)\n", NR, p50, v[i99], v[1], v[NR]
  }'
