#!/usr/bin/env bash
# The admin API over TCP with mutual TLS (admin.listen): clients present X.509-SVIDs minted by
# openssl from our own root CA; the caller's SPIFFE ID decides the role. A platform admin
# writes anything, a viewer only reads, a team admin (team_admins/team_prefixes) writes entries
# only under its prefixes, anyone else is refused with a reason; a client without a
# certificate, from a foreign CA or another trust domain does not get through the handshake.
# The public bundle endpoint (https_web) serves our bundle and nothing else.
# One line per check, then "N passed, N failed".
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
BIN=$BUILD/server/sigil-server
TOOL=$BUILD/test/server_ca_tool
CHECK=$BUILD/test/server_bundle_check
for b in "$BIN" "$TOOL" "$CHECK"; do
  [ -x "$b" ] || { echo "not ok - $b is not built"; echo "0 passed, 1 failed"; exit 1; }
done
PGDIR=$BUILD/pg-server-mtls
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null || { echo "not ok - cannot start PostgreSQL"; exit 1; }
SOCK=$PGDIR/socket
DB=sigil_mtls_$$
TMP=$(mktemp -d /tmp/sigil-mtls.XXXXXX)
SPID=
cleanup() {
  [ -n "$SPID" ] && { kill -TERM "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; }
  psql -h "$SOCK" -U sigil -d postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  "$PG" stop "$PGDIR" >/dev/null 2>&1 || true
  [ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"
}
trap cleanup EXIT

passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; failed=$((failed + 1)); }
check() {
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then ok "$what"; else notok "$what"; fi
}
C="host=$SOCK user=sigil dbname=$DB"
q() { psql "$C" -v ON_ERROR_STOP=1 -tAc "$1"; }
psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $DB"
TD=example.org
"$BIN" migrate --database "$C" >/dev/null || { echo "not ok - migrate"; exit 1; }

# --- our root CA (made the way the server makes it), then certificates from it
"$TOOL" "$C" "$TMP/keys" "$TD" mint open >/dev/null || { echo "not ok - CA"; exit 1; }
q "SELECT encode(cert_der, 'base64') FROM ca_journal WHERE kind = 'x509_root'" | base64 -d \
  | openssl x509 -inform DER -out "$TMP/root.pem"
ROOTKEY=$(ls "$TMP"/keys/root-*.key)

# mint NAME SAN-EXTENSION [CA-CERT CA-KEY]: a P-256 leaf signed by our root (or the given CA)
mint() {
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/$1.key" 2>/dev/null
  openssl req -new -key "$TMP/$1.key" -subj "/O=Sigil test/CN=$1" -out "$TMP/$1.csr" 2>/dev/null
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' \
    "$2" >"$TMP/$1.ext"
  openssl x509 -req -in "$TMP/$1.csr" -CA "${3:-$TMP/root.pem}" -CAkey "${4:-$ROOTKEY}" \
    -CAcreateserial -days 1 -sha256 -extfile "$TMP/$1.ext" -out "$TMP/$1.pem" 2>/dev/null
}
mint server "DNS:localhost,IP:127.0.0.1"
mint platform "URI:spiffe://$TD/sigil/admin/platform"
mint viewer "URI:spiffe://$TD/sigil/admin/viewer"
mint lead "URI:spiffe://$TD/sigil/admin/pay-lead"
mint nobody "URI:spiffe://$TD/sigil/admin/nobody"
mint foreigntd "URI:spiffe://other.org/sigil/admin/platform"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/evil-ca.key" \
  -subj "/CN=evil" -days 1 -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign" -out "$TMP/evil-ca.pem" 2>/dev/null
mint evil "URI:spiffe://$TD/sigil/admin/platform" "$TMP/evil-ca.pem" "$TMP/evil-ca.key"
check "openssl minted the test certificates" test -s "$TMP/platform.pem" -a -s "$TMP/evil.pem"

# the payments team owns spiffe://example.org/prod/gcp/payments; pay-lead administers it
q "INSERT INTO teams (name) VALUES ('payments');
   INSERT INTO team_prefixes (team, prefix) VALUES ('payments', 'spiffe://$TD/prod/gcp/payments');
   INSERT INTO team_admins (team, spiffe_id) VALUES ('payments', 'spiffe://$TD/sigil/admin/pay-lead')" >/dev/null

cat >"$TMP/server.yaml" <<EOF
trust_domain: $TD
database:
  conninfo: $C
  pool_size: 2
admin:
  socket_path: $TMP/admin.sock
  listen: 127.0.0.1:0
  tls_cert: $TMP/server.pem
  tls_key: $TMP/server.key
  platform_admins: [spiffe://$TD/sigil/admin/platform]
  viewers: [spiffe://$TD/sigil/admin/viewer]
bundle_endpoint:
  listen: 127.0.0.1:0
  tls_cert: $TMP/server.pem
  tls_key: $TMP/server.key
ca:
  key_dir: $TMP/keys
EOF
"$BIN" run --config "$TMP/server.yaml" >"$TMP/server.log" 2>&1 &
SPID=$!
PORT=
for _ in $(seq 1 200); do
  PORT=$(sed -n 's/.*admin API listening (mTLS) host=127.0.0.1 port=\([0-9]*\).*/\1/p' "$TMP/server.log")
  [ -n "$PORT" ] && break
  sleep 0.1
done
check "the server listens for mTLS and logs the port" test -n "$PORT"
BPORT=$(sed -n 's/.*bundle endpoint listening (https_web) host=127.0.0.1 port=\([0-9]*\).*/\1/p' "$TMP/server.log")
check "the bundle endpoint listens and logs its port" test -n "$BPORT"

# as WHO: method path [json]; prints the HTTP status (000 when the handshake fails)
as() {
  local who=$1 m=$2 path=$3 body=${4:-}
  curl -s -o "$TMP/body" -w '%{http_code}' --cacert "$TMP/root.pem" \
    ${who:+--cert "$TMP/$who.pem" --key "$TMP/$who.key"} -X "$m" \
    ${body:+-H 'content-type: application/json' --data-binary "$body"} \
    "https://127.0.0.1:$PORT$path" 2>/dev/null
}
code() { python3 -c "import json; print(json.load(open('$TMP/body'))['error']['code'])"; }
SHA=$(printf 'a%.0s' $(seq 64))
entry() { # SPIFFE ID path
  printf '{"spiffe_id":"spiffe://%s%s","parent_id":"spiffe://%s/sigil/agent/n1","selectors":["unix:uid:1","unix:path:/bin/x","unix:sha256:%s"]}' \
    "$TD" "$1" "$TD" "$SHA"
}

# --- the handshake
check "no client certificate: no connection" test "$(as "" GET /live)" = 000
check "a client from a foreign CA: no connection" test "$(as evil GET /live)" = 000
check "an SVID of another trust domain: no connection" test "$(as foreigntd GET /live)" = 000
check "the refusals are logged with the rule" grep -q "X-8" "$TMP/server.log"
check "an SVID of ours gets /live" test "$(as platform GET /live)" = 200

# --- platform admin
check "platform admin: create an entry anywhere (201)" test "$(as platform POST /v1/entries "$(entry /prod/gcp/shop/web)")" = 201
check "platform admin: generate a join token (201)" test "$(as platform POST /v1/join-tokens '{}')" = 201
check "the audit log records the platform admin's SPIFFE ID" \
  test "$(q "SELECT count(*) FROM audit_log WHERE actor = 'spiffe://$TD/sigil/admin/platform' AND action = 'entry.create'")" = 1

# --- viewer
check "viewer: list entries (200)" test "$(as viewer GET /v1/entries)" = 200
check "viewer: list agents (200)" test "$(as viewer GET /v1/agents)" = 200
check "viewer: create is 403 auth.forbidden" test "$(as viewer POST /v1/entries "$(entry /prod/gcp/shop/api)")/$(code)" = 403/auth.forbidden
check "... saying viewers only read" grep -q "viewers may only read" "$TMP/body"
check "viewer: a join token is 403" test "$(as viewer POST /v1/join-tokens '{}')" = 403

# --- team admin
check "team admin: create under its prefix (201)" test "$(as lead POST /v1/entries "$(entry /prod/gcp/payments/api)")" = 201
PAY=$(python3 -c "import json; print(json.load(open('$TMP/body'))['id'])")
check "the audit log records the team admin" \
  test "$(q "SELECT count(*) FROM audit_log WHERE actor = 'spiffe://$TD/sigil/admin/pay-lead'")" = 1
check "team admin: create outside its prefix is 403 auth.outside_prefix" \
  test "$(as lead POST /v1/entries "$(entry /prod/gcp/shop/api)")/$(code)" = 403/auth.outside_prefix
check "team admin: a sibling prefix (payments2) is outside too" \
  test "$(as lead POST /v1/entries "$(entry /prod/gcp/payments2/api)")" = 403
check "team admin: batchCreate judges each item" \
  test "$(as lead POST /v1/entries:batchCreate "{\"entries\":[$(entry /prod/gcp/payments/worker),$(entry /prod/gcp/shop/worker)]}")/$(python3 -c "import json; print([r['status'] for r in json.load(open('$TMP/body'))['results']])")" = "200/[201, 403]"
SHOP=$(q "SELECT id FROM entries WHERE spiffe_id = 'spiffe://$TD/prod/gcp/shop/web'")
check "team admin: PATCH of another team's entry is 403" test "$(as lead PATCH "/v1/entries/$SHOP" '{"hint":"x"}')" = 403
check "team admin: moving its entry out of its prefix is 403" \
  test "$(as lead PATCH "/v1/entries/$PAY" "{\"spiffe_id\":\"spiffe://$TD/prod/gcp/shop/api\"}")" = 403
check "team admin: PATCH of its own entry is 200" test "$(as lead PATCH "/v1/entries/$PAY" '{"hint":"payments api"}')" = 200
check "team admin: DELETE of another team's entry is 403" test "$(as lead DELETE "/v1/entries/$SHOP")" = 403
check "team admin: reads entries (200)" test "$(as lead GET /v1/entries)" = 200
check "team admin: agents are for platform admins (403)" test "$(as lead GET /v1/agents)/$(code)" = 403/auth.forbidden
check "team admin: DELETE of its own entry is 204" test "$(as lead DELETE "/v1/entries/$PAY")" = 204

# --- root CA rotation: platform admins only, viewers may look
check "viewer: GET /v1/ca (200)" test "$(as viewer GET /v1/ca)" = 200
check "viewer: POST /v1/ca:prepare is 403" test "$(as viewer POST /v1/ca:prepare)/$(code)" = 403/auth.forbidden
check "team admin: POST /v1/ca:prepare is 403" test "$(as lead POST /v1/ca:prepare)/$(code)" = 403/auth.forbidden
check "team admin: GET /v1/ca is 403" test "$(as lead GET /v1/ca)" = 403
check "nothing was prepared by them" test "$(q "SELECT count(*) FROM ca_journal WHERE state = 'prepared'")" = 0
check "platform admin: POST /v1/ca:prepare (200)" test "$(as platform POST /v1/ca:prepare)" = 200
check "the audit log records the platform admin for ca.prepare" \
  test "$(q "SELECT actor FROM audit_log WHERE action = 'ca.prepare'")" = "spiffe://$TD/sigil/admin/platform"

# --- anyone else of our trust domain
check "an SVID with no role: 403 auth.forbidden" test "$(as nobody GET /v1/entries)/$(code)" = 403/auth.forbidden
check "... even for writes under any prefix" test "$(as nobody POST /v1/entries "$(entry /prod/gcp/payments/x)")" = 403
check "nothing the refused callers sent was stored" \
  test "$(q "SELECT count(*) FROM entries WHERE spiffe_id LIKE '%/shop/api' OR spiffe_id LIKE '%/payments2/%' OR spiffe_id LIKE '%/payments/x'")" = 0

# --- the bundle endpoint (https_web): public TLS, HTTP/1.1, our bundle only
bget() { curl -s -o "$TMP/bbody" -w '%{http_code} %{http_version}' --cacert "$TMP/root.pem" "$@"; }
check "GET / on the bundle endpoint is 200 over HTTP/1.1 without a client certificate" \
  test "$(bget --http2 "https://127.0.0.1:$BPORT/")" = "200 1.1"
check "the bundle decodes with our decoder (1 root, 1 JWT key)" \
  bash -c "'$CHECK' '$TD' <'$TMP/bbody' | tr '\n' ' ' | grep -q '^x509 1 jwt 1 '"
check "the admin API is not on the bundle endpoint (404)" test "$(bget "https://127.0.0.1:$BPORT/v1/entries" | cut -d' ' -f1)" = 404
check "nor are the health routes (404)" test "$(bget "https://127.0.0.1:$BPORT/metrics" | cut -d' ' -f1)" = 404
check "POST / is 405" test "$(bget -X POST -d x "https://127.0.0.1:$BPORT/" | cut -d' ' -f1)" = 405

kill -TERM "$SPID"
wait "$SPID"
check "the server stops with exit 0" test $? = 0
SPID=

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
