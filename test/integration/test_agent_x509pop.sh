#!/usr/bin/env bash
# sigil-agent run with x509pop against a real sigil-server and PostgreSQL: the node
# certificate (issued by a node CA the server trusts) and the nonce challenge attest the
# agent; evicted (`sigil-server agent evict`), it attests again with the same evidence and
# goes on serving. The agent dials the server by name (localhost). One line per check, then
# "N passed, N failed".
set -uo pipefail
# ok/notok/check/until_ok/free_port/need_built, SRC and BUILD
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
SRV=$BUILD/server/sigil-server
AGENT=$BUILD/agent/sigil-agent
need_built "$SRV" "$AGENT"
PGDIR=$BUILD/pg-agent-x509pop
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null || { echo "not ok - cannot start PostgreSQL"; exit 1; }
SOCK=$PGDIR/socket
DB=sigil_agent_pop_$$
TMP=$(mktemp -d /tmp/sigil-ap.XXXXXX)
SRV_PID=
AGENT_PID=
cleanup() {
  for p in $AGENT_PID $SRV_PID; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $AGENT_PID $SRV_PID; do wait "$p" 2>/dev/null || true; done
  psql -h "$SOCK" -U sigil -d postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  "$PG" stop "$PGDIR" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

attested() { test "$(grep -c 'node attested' "$TMP/agent.log")" -ge "$1"; }

psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $DB" || { echo "not ok - createdb"; exit 1; }
# a node CA and a node certificate it issued (PKCS#8 keys)
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/ca.key" 2>/dev/null
openssl req -x509 -new -key "$TMP/ca.key" -subj "/CN=Node CA" -days 2 -out "$TMP/ca.pem" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/node.key" 2>/dev/null
openssl req -new -key "$TMP/node.key" -subj "/CN=node1" -out "$TMP/node.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' >"$TMP/ext"
openssl x509 -req -in "$TMP/node.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -days 1 \
  -set_serial 0x1234 -extfile "$TMP/ext" -out "$TMP/node.pem" 2>/dev/null
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export SIGIL_ADMIN_SOCKET=$TMP/admin.sock
cat >"$TMP/server.yaml" <<EOF
trust_domain: example.org
database:
  conninfo: host=$SOCK user=sigil dbname=$DB
  pool_size: 2
admin:
  socket_path: $TMP/admin.sock
node_api:
  listen: 127.0.0.1:$PORT
node_attestors:
  x509pop:
    ca_bundle: $TMP/ca.pem
ca:
  key_dir: $TMP/keys
EOF
"$SRV" run --config "$TMP/server.yaml" >"$TMP/server.log" 2>&1 &
SRV_PID=$!
check "sigil-server runs" until_ok 30 "$SRV" healthcheck
"$SRV" bundle show >"$TMP/bootstrap.pem" 2>/dev/null
if ! until_ok 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT"; then
  echo "ok - # SKIP this sigil-server does not serve node_api.listen"
  echo "$passed passed, $failed failed"
  [ "$failed" = 0 ]
  exit $?
fi
cat >"$TMP/agent.yaml" <<EOF
trust_domain: example.org
server_address: localhost:$PORT
trust_bundle_path: $TMP/bootstrap.pem
data_dir: $TMP/data
x509pop:
  cert_path: $TMP/node.pem
  key_path: $TMP/node.key
workload_api:
  socket_path: $TMP/api.sock
workload_attestors: [unix]
retry:
  initial: 200ms
  max: 1s
EOF
"$AGENT" run --config "$TMP/agent.yaml" >"$TMP/agent.log" 2>&1 &
AGENT_PID=$!
check "the agent attests with x509pop" until_ok 20 attested 1
check "... named so in its log" grep -q "attestor=x509pop" "$TMP/agent.log"
ID=$(sed -nE 's/.*node attested spiffe_id=([^ ]+).*/\1/p' "$TMP/agent.log" | head -1)
check "... as an x509pop agent ID" test "${ID#spiffe://example.org/sigil/agent/x509pop/}" != "$ID"
check "the server marks it re-attestable (the mark in data_dir)" test -f "$TMP/data/reattestable"
check "sigil-server agent evict" "$SRV" agent evict --spiffe-id "$ID"
check "the evicted agent attests again with the same evidence" until_ok 20 attested 2
check "... saying why" grep -q "the server no longer knows this agent; attesting again" "$TMP/agent.log"
check "... and is still running" kill -0 "$AGENT_PID"
check "the Workload API still answers" "$AGENT" healthcheck --socket "$TMP/api.sock"
kill -TERM "$AGENT_PID"
wait "$AGENT_PID"
rc=$?
AGENT_PID=
check "the agent stops on SIGTERM with status 0" test "$rc" = 0
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
