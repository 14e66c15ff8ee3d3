#!/usr/bin/env bash
# sigil-server's node API against a throwaway PostgreSQL, with nodeapi_client playing agents:
# join_token attestation works once, then not, and not with an expired token; x509pop with a
# node certificate of the configured CA and a right proof works, a wrong proof or a foreign CA
# does not; agent SVIDs pass `openssl verify` against the bundle; BatchSignX509SVID signs an
# authorized entry (its ID, openssl verify) and refuses another agent's; a JWT-SVID validates
# against the bundle's JWKS; SyncEntries sends N entries in pages, then pushes a new entry on
# the open stream (the delay is printed); RenewAgent; a ban ends the agent's open stream; a
# banned agent and an evicted agent are refused with their reasons; the metrics count; a
# restart keeps agents and entries. One line per check, then a summary.
set -uo pipefail
# ok/notok/check/until_ok/free_port/need_built, SRC and BUILD
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
SRV=$BUILD/server/sigil-server
CLIENT=$BUILD/test/nodeapi_client
need_built "$SRV" "$CLIENT"
PGDIR=$BUILD/pg-nodeapi
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null || { echo "not ok - cannot start PostgreSQL"; exit 1; }
SOCK=$PGDIR/socket
DB=sigil_nodeapi_$$
TMP=$(mktemp -d /tmp/sigil-nodeapi.XXXXXX)
SRV_PID=
SYNC_PID=
cleanup() {
  for p in $SYNC_PID $SRV_PID; do kill -TERM "$p" 2>/dev/null || true; done
  for p in $SYNC_PID $SRV_PID; do wait "$p" 2>/dev/null || true; done
  psql -h "$SOCK" -U sigil -d postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  "$PG" stop "$PGDIR" >/dev/null 2>&1 || true
  [ -n "${SIGIL_KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $DB" || { echo "not ok - createdb"; exit 1; }
TD=example.org
ADMIN=$TMP/admin.sock
PORT=$(free_port)
ADDR=127.0.0.1:$PORT
export SIGIL_ADMIN_SOCKET=$ADMIN

# node CAs and node certificates for x509pop (PKCS#8 keys)
mkcert() { # name, CN, issuer name or "" for a CA
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/$1.key" 2>/dev/null
  if [ -z "$3" ]; then
    openssl req -x509 -new -key "$TMP/$1.key" -subj "/CN=$2" -days 2 -out "$TMP/$1.pem" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
  else
    openssl req -new -key "$TMP/$1.key" -subj "/CN=$2" -out "$TMP/$1.csr" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' >"$TMP/ext"
    openssl x509 -req -in "$TMP/$1.csr" -CA "$TMP/$3.pem" -CAkey "$TMP/$3.key" -days 1 \
      -set_serial 0x1234 -extfile "$TMP/ext" -out "$TMP/$1.pem" 2>/dev/null
  fi
}
mkcert nodeca "Node CA" ""
mkcert node1 node1.example.org nodeca
mkcert otherca "Other CA" ""
mkcert node2 node2.example.org otherca

cat >"$TMP/server.yaml" <<EOF
trust_domain: $TD
database:
  conninfo: host=$SOCK user=sigil dbname=$DB
  pool_size: 3
admin:
  socket_path: $ADMIN
node_api:
  listen: $ADDR
node_attestors:
  x509pop:
    ca_bundle: $TMP/nodeca.pem
ca:
  key_dir: $TMP/keys
policy:
  tier: off
log:
  level: info
EOF

"$SRV" run --config "$TMP/server.yaml" >"$TMP/server.log" 2>&1 &
SRV_PID=$!
until_ok 30 "$SRV" healthcheck --admin-socket "$ADMIN"
check "the server logs the node API listening" until_ok 10 grep -q "node API listening" "$TMP/server.log"
"$SRV" bundle show >"$TMP/bundle.pem" 2>/dev/null
check "our bundle as PEM" openssl x509 -in "$TMP/bundle.pem" -noout

cl() { # state dir, then the client's command
  local dir=$TMP/$1
  shift
  mkdir -p "$dir"
  "$CLIENT" "$ADDR" "$TD" "$TMP/bundle.pem" "$dir" "$@"
}

# --- join_token
TOKEN=$("$SRV" token generate --ttl 10m 2>/dev/null | sed -nE 's/^Token +: ([A-Za-z0-9_-]+)$/\1/p')
check "a join token" test -n "$TOKEN"
cl a1 attest join_token "$TOKEN" >"$TMP/a1.out" 2>&1
A1=$(sed -nE 's/^spiffe_id=//p' "$TMP/a1.out")
check "join_token attestation succeeds" grep -q "^spiffe_id=spiffe://$TD/sigil/agent/join_token/[0-9a-f]\{16\}$" "$TMP/a1.out"
check "... and the ID does not hold the token" bash -c "! grep -q -- '$TOKEN' '$TMP/a1.out'"
check "... not reattestable" grep -q "^reattestable=0" "$TMP/a1.out"
check "the agent SVID verifies against the bundle (openssl verify)" \
  openssl verify -CAfile "$TMP/bundle.pem" -untrusted "$TMP/a1/agent.pem" "$TMP/a1/agent.pem"
cl again attest join_token "$TOKEN" >"$TMP/again.out" 2>&1
check "the same token a second time is refused" grep -q "error PERMISSION_DENIED: join token is unknown, used or expired" "$TMP/again.out"
SHORT=$("$SRV" token generate --ttl 1s 2>/dev/null | sed -nE 's/^Token +: ([A-Za-z0-9_-]+)$/\1/p')
sleep 2.2
cl short attest join_token "$SHORT" >"$TMP/short.out" 2>&1
check "an expired token is refused" grep -q "error PERMISSION_DENIED" "$TMP/short.out"
cl bad attest join_token 'not a token!' >"$TMP/badtok.out" 2>&1
check "a malformed token is INVALID_ARGUMENT" grep -q "error INVALID_ARGUMENT" "$TMP/badtok.out"

# --- x509pop
cl p1 attest x509pop "$TMP/node1.pem" "$TMP/node1.key" >"$TMP/p1.out" 2>&1
P1=$(sed -nE 's/^spiffe_id=//p' "$TMP/p1.out")
FP=$(openssl x509 -in "$TMP/node1.pem" -outform DER | sha1sum | cut -c1-40)
check "x509pop attestation succeeds (ID from the leaf's SHA-1)" test "$P1" = "spiffe://$TD/sigil/agent/x509pop/$FP"
check "... reattestable" grep -q "^reattestable=1" "$TMP/p1.out"
check "... its SVID verifies (openssl verify)" \
  openssl verify -CAfile "$TMP/bundle.pem" -untrusted "$TMP/p1/agent.pem" "$TMP/p1/agent.pem"
cl p1bad attest x509pop "$TMP/node1.pem" "$TMP/node1.key" bad >"$TMP/p1bad.out" 2>&1
check "x509pop with a wrong proof is refused" grep -q "error PERMISSION_DENIED: x509pop proof of possession does not verify" "$TMP/p1bad.out"
cl p2 attest x509pop "$TMP/node2.pem" "$TMP/node2.key" >"$TMP/p2.out" 2>&1
check "x509pop with a foreign CA is refused" grep -q "error PERMISSION_DENIED: node certificate does not chain" "$TMP/p2.out"

# --- signing
mkentry() { # spiffe id, parent id -> prints the entry id
  "$SRV" entry create --spiffe-id "$1" --parent-id "$2" --selector unix:uid:1000 --selector unix:path:/usr/bin/web --selector unix:sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881 2>&1 | tee -a "$TMP/mkentry.log" |
    sed -nE 's/^Entry ID +: //p'
}
E1=$(mkentry "spiffe://$TD/prod/onprem/payments/web" "$A1")
E2=$(mkentry "spiffe://$TD/prod/onprem/payments/db" "$P1")
check "entries for both agents" test -n "$E1" -a -n "$E2"
cl a1 sign "$E1" "$TMP/web.pem" >"$TMP/sign.out" 2>&1
check "BatchSignX509SVID for an authorized entry" grep -q "^spiffe_id=spiffe://$TD/prod/onprem/payments/web$" "$TMP/sign.out"
check "... the SVID verifies (openssl verify)" \
  openssl verify -CAfile "$TMP/bundle.pem" -untrusted "$TMP/web.pem" "$TMP/web.pem"
check "... its key is the CSR's" bash -c "cmp <(openssl x509 -in '$TMP/web.pem' -noout -pubkey) <(openssl pkey -in '$TMP/web.pem.key' -pubout)"
cl a1 sign "$E2" "$TMP/db.pem" >"$TMP/sign2.out" 2>&1
rc=$?
check "an entry of another agent is refused" test "$rc" = 2 -a -n "$(grep 'refused: entry is not authorized' "$TMP/sign2.out")"
cl a1 jwt "$E1" aud-1 >"$TMP/jwt.out" 2>&1
JWT=$(head -1 "$TMP/jwt.out")
cl a1 validate "$JWT" aud-1 >"$TMP/val.out" 2>&1
check "a JWT-SVID validates against the bundle's JWKS" grep -q "^valid sub=spiffe://$TD/prod/onprem/payments/web" "$TMP/val.out"
cl a1 validate "$JWT" other-aud >/dev/null 2>&1
check "... not for another audience" test $? = 1
cl a1 bundles >"$TMP/bundles.out" 2>&1
check "StreamBundles sends our bundle" grep -q "^sequence=[1-9][0-9]* bundle_bytes=[1-9]" "$TMP/bundles.out"

# --- SyncEntries: 24 more entries (25 in all) in pages of 10, then a push
for i in $(seq 1 24); do mkentry "spiffe://$TD/prod/onprem/payments/s$i" "$A1" >/dev/null; done
cl a1 sync 10 "spiffe://$TD/prod/onprem/payments/late" 20 >"$TMP/sync.out" 2>&1 &
SYNC_PID=$!
check "SyncEntries: the full state in pages" until_ok 10 grep -q "^pages=3 entries=25 full=1" "$TMP/sync.out"
T0=$(date +%s%N)
mkentry "spiffe://$TD/prod/onprem/payments/late" "$A1" >/dev/null
wait "$SYNC_PID"
SYNC_PID=
AT=$(sed -nE 's/^arrived_ns=([0-9]+).*/\1/p' "$TMP/sync.out")
if [ -n "$AT" ]; then
  MS=$(( (AT - T0) / 1000000 ))
  echo "# entry create -> pushed on the open SyncEntries stream: ${MS} ms"
  check "a new entry arrives on the open stream within a second" test "$MS" -lt 1000
else
  notok "a new entry arrives on the open stream (nothing arrived)"
fi

# --- SyncEntries from a revision: a reconnect gets what changed since, not the 26 entries
R1=$(sed -nE 's/^page revision=([0-9]+).*/\1/p' "$TMP/sync.out" | tail -n 1)
check "the pushed page carries a revision" test -n "$R1"
EA=$(mkentry "spiffe://$TD/prod/onprem/payments/after" "$A1")
signable() { cl a1 sign "$1" "$TMP/after.pem" >/dev/null 2>&1; }
until_ok 10 signable "$EA" # the index has it
cl a1 sync 500 - 10 "$R1" >"$TMP/since1.out" 2>&1
check "a reconnect from the last revision after one change among 27 sends that one entry" \
  grep -q "^pages=1 entries=1 full=0 .* removed=0$" "$TMP/since1.out"
R2=$(sed -nE 's/^pages=.* revision=([0-9]+) .*/\1/p' "$TMP/since1.out")
"$SRV" entry delete --id "$EA" >/dev/null 2>&1
gone() { ! signable "$EA"; }
until_ok 10 gone
cl a1 sync 500 - 10 "$R2" >"$TMP/since2.out" 2>&1
check "... a deletion since then comes as the one removed id" \
  grep -q "^pages=1 entries=0 full=0 .* removed=1$" "$TMP/since2.out"
check "... naming the deleted entry" grep -q "^removed_id=$EA$" "$TMP/since2.out"
R3=$(sed -nE 's/^pages=.* revision=([0-9]+) .*/\1/p' "$TMP/since2.out")
cl a1 sync 500 - 10 "$R3" >"$TMP/since3.out" 2>&1
check "... nothing changed: an empty delta at the same revision" \
  grep -q "^pages=1 entries=0 full=0 revision=$R3 removed=0$" "$TMP/since3.out"
cl a1 sync 500 - 10 "$R1" >"$TMP/since4.out" 2>&1
check "a revision the server did not send last gets the full state (full=1)" \
  grep -q "^pages=1 entries=26 full=1 " "$TMP/since4.out"
cl a1 sync 500 - 10 $((R3 + 1000)) >"$TMP/since5.out" 2>&1
check "... so does a revision from the future" grep -q "^pages=1 entries=26 full=1 " "$TMP/since5.out"

# --- renewal, ban, evict
cl a1 renew >"$TMP/renew.out" 2>&1
check "RenewAgent gives a new agent SVID" grep -q "^spiffe_id=$A1$" "$TMP/renew.out"
cl a1 sign "$E1" "$TMP/web2.pem" >"$TMP/sign3.out" 2>&1
check "... which the next call presents" grep -q "^spiffe_id=spiffe://$TD/prod/onprem/payments/web$" "$TMP/sign3.out"
cl a1 sync 10 "spiffe://$TD/none" 15 >"$TMP/banstream.out" 2>&1 &
SYNC_PID=$!
until_ok 10 grep -q "^ready" "$TMP/banstream.out"
"$SRV" agent ban --spiffe-id "$A1" >/dev/null 2>&1
wait "$SYNC_PID"
SYNC_PID=
check "a ban ends the agent's open SyncEntries stream with the reason" grep -q "error PERMISSION_DENIED: agent is banned" "$TMP/banstream.out"
cl a1 sign "$E1" "$TMP/web3.pem" >"$TMP/banned.out" 2>&1
check "a banned agent is refused with the reason" grep -q "error PERMISSION_DENIED: agent is banned" "$TMP/banned.out"
"$SRV" agent evict --spiffe-id "$P1" >/dev/null 2>&1
# the server learns of the eviction from its event feed (milliseconds): allow a moment
evicted() {
  cl p1 sign "$E2" "$TMP/db2.pem" >"$TMP/evicted.out" 2>&1
  grep -q "error PERMISSION_DENIED: agent was evicted: attest again" "$TMP/evicted.out"
}
check "an evicted agent is told to attest again" until_ok 5 evicted
cl p1 attest x509pop "$TMP/node1.pem" "$TMP/node1.key" >"$TMP/p1b.out" 2>&1
cl p1 sign "$E2" "$TMP/db3.pem" >"$TMP/p1sign.out" 2>&1
check "... and after attesting again it signs" grep -q "^spiffe_id=spiffe://$TD/prod/onprem/payments/db$" "$TMP/p1sign.out"

# p1's last batch, to ask for after the restart below
cl p1 sync 500 - 10 >"$TMP/p1sync.out" 2>&1
RP=$(sed -nE 's/^pages=.* revision=([0-9]+) .*/\1/p' "$TMP/p1sync.out")
cl p1 sync 500 - 10 "$RP" >"$TMP/p1sync1.out" 2>&1
check "p1 from its last revision: an empty delta" grep -q "^pages=1 entries=0 full=0 revision=$RP " "$TMP/p1sync1.out"

# --- metrics
curl -s --unix-socket "$ADMIN" http://localhost/metrics >"$TMP/metrics" 2>/dev/null
check "metrics: attestations by type and result" grep -q 'sigil_node_attestations_total{type="x509pop",result="ok"} 2' "$TMP/metrics"
check "metrics: SVIDs signed" grep -q 'sigil_node_svids_signed_total{kind="x509"}' "$TMP/metrics"
check "metrics: sync pages" grep -q '^sigil_node_sync_pages_total [1-9]' "$TMP/metrics"
check "metrics: signing latency histogram" grep -q '^sigil_node_sign_seconds_count [1-9]' "$TMP/metrics"

kill -TERM "$SRV_PID"
wait "$SRV_PID"
rc=$?
SRV_PID=
check "the server stops cleanly (exit 0)" test "$rc" = 0

# a restart loads the agents and entries from the database: no attestation needed
"$SRV" run --config "$TMP/server.yaml" >>"$TMP/server.log" 2>&1 &
SRV_PID=$!
until_ok 30 "$SRV" healthcheck --admin-socket "$ADMIN"
until_ok 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT"
cl p1 sign "$E2" "$TMP/db4.pem" >"$TMP/restart.out" 2>&1
check "after a restart the agent signs with its SVID (agents and entries loaded)" grep -q "^spiffe_id=spiffe://$TD/prod/onprem/payments/db$" "$TMP/restart.out"
cl p1 sync 500 - 10 "$RP" >"$TMP/p1sync2.out" 2>&1
check "a restarted server knows nothing it sent: the full state from any revision (full=1)" \
  grep -q "^pages=1 entries=1 full=1 " "$TMP/p1sync2.out"
cl a1 sign "$E1" "$TMP/web4.pem" >"$TMP/restart2.out" 2>&1
check "... and the banned agent stays banned" grep -q "error PERMISSION_DENIED: agent is banned" "$TMP/restart2.out"
kill -TERM "$SRV_PID"
wait "$SRV_PID"
rc=$?
SRV_PID=
check "the server stops cleanly again (exit 0)" test "$rc" = 0
if [ "$failed" != 0 ]; then
  echo "# entry create (first and last lines):"; head -5 "$TMP/mkentry.log" | sed "s/^/# /"; tail -5 "$TMP/mkentry.log" | sed "s/^/# /"
  echo "# server log:"
  tail -40 "$TMP/server.log" | sed 's/^/# /'
fi
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
