#!/usr/bin/env bash
# sigil-server against a real PostgreSQL: migrate, run, the admin socket's /live /ready
# /metrics over curl, healthcheck, /ready following the database, the root CA (key file 0600,
# a CA with URI SAN spiffe://<td> per openssl), our own bundle row decoded by our bundle
# decoder, a restart that keeps the root, two servers starting together on a fresh database
# making one root, a swapped key file and another trust domain refused. One line per check,
# then "N passed, N failed".
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
BIN=$BUILD/server/sigil-server
CHECK=$BUILD/test/server_bundle_check
for b in "$BIN" "$CHECK"; do
  [ -x "$b" ] || { echo "not ok - $b is not built"; echo "0 passed, 1 failed"; exit 1; }
done
PGDIR=$BUILD/pg-server-start
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null || { echo "not ok - cannot start PostgreSQL"; exit 1; }
SOCK=$PGDIR/socket
DB1=sigil_srv_$$
DB2=sigil_srv_b_$$
# short paths: a Unix socket path has at most 96 bytes
TMP=$(mktemp -d /tmp/sigil-srv.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "$DB1" "$DB2"; do
    psql -h "$SOCK" -U sigil -d postgres -qc "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true
  done
  "$PG" stop "$PGDIR" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; failed=$((failed + 1)); }
check() { # description, then a command
  local what=$1
  shift
  if "$@" >/dev/null; then ok "$what"; else notok "$what"; fi
}
q() { psql "$1" -v ON_ERROR_STOP=1 -tAc "$2"; }

for d in "$DB1" "$DB2"; do psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $d"; done
C1="host=$SOCK user=sigil dbname=$DB1"
C2="host=$SOCK user=sigil dbname=$DB2"
TD=example.org

# writes a config: name, conninfo, admin socket, key dir [, trust domain]
config() {
  cat >"$TMP/$1.yaml" <<EOF
trust_domain: ${5:-$TD}
database:
  conninfo: $2
  pool_size: 2
admin:
  socket_path: $3
ca:
  key_dir: $4
  root_ttl: 48h
  intermediate_ttl: 12h
log:
  level: info
EOF
}

# starts a server in the background: name (config $TMP/name.yaml, log $TMP/name.log)
start() {
  "$BIN" run --config "$TMP/$1.yaml" >"$TMP/$1.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$1=$!"
}

# waits until the admin socket answers /live: socket [seconds]
wait_live() {
  local i
  for i in $(seq 1 $((${2:-20} * 10))); do
    curl -sf --unix-socket "$1" http://localhost/live >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}

# stops a server by name and checks it exits 0 after SIGTERM
stop() {
  local pid
  eval "pid=\$PID_$1"
  kill -TERM "$pid" 2>/dev/null
  wait "$pid"
}

status_of() { curl -s -o "$TMP/body" -w '%{http_code}' --unix-socket "$1" "http://localhost$2"; }

# --- migrate, then run
config one "$C1" "$TMP/one.sock" "$TMP/keys"
"$BIN" migrate --config "$TMP/one.yaml" >"$TMP/migrate.out" 2>&1
check "sigil-server migrate exits 0" test $? = 0
check "migrate reports the schema version" grep -q "^schema at version 1 " "$TMP/migrate.out"
"$BIN" migrate --database "$C1" >"$TMP/migrate2.out" 2>&1
check "a second migrate (--database) is a no-op" grep -q "this run applied 0" "$TMP/migrate2.out"

start one
check "the admin socket answers" wait_live "$TMP/one.sock"
check "GET /live is 200" test "$(status_of "$TMP/one.sock" /live)" = 200
check "GET /ready is 200" test "$(status_of "$TMP/one.sock" /ready)" = 200
check "/ready says ready" grep -q '"status":"ready"' "$TMP/body"
check "GET /metrics is 200" test "$(status_of "$TMP/one.sock" /metrics)" = 200
check "/metrics has sigil_server_up 1" grep -q '^sigil_server_up 1$' "$TMP/body"
check "/metrics has the bundle sequence" grep -q '^sigil_bundle_sequence 1$' "$TMP/body"
check "an unknown path is 404" test "$(status_of "$TMP/one.sock" /nope)" = 404
check "sigil-server healthcheck exits 0" "$BIN" healthcheck --admin-socket "$TMP/one.sock"
check "healthcheck reads \$SIGIL_ADMIN_SOCKET" env SIGIL_ADMIN_SOCKET="$TMP/one.sock" "$BIN" healthcheck
check "healthcheck on a missing socket exits 2 (cannot reach the server)" test "$("$BIN" healthcheck --admin-socket "$TMP/none.sock" >/dev/null 2>&1; echo $?)" = 2
check "the admin socket is 0600" test "$(stat -c %a "$TMP/one.sock")" = 600
check "the startup log names the trust domain" grep -q "trust_domain=$TD" "$TMP/one.log"
check "the startup log names the root CA serial" grep -q "root CA serial=[0-9a-f]* .*new=true" "$TMP/one.log"
check "the startup log names the JWT kid" grep -q "JWT signing key kid=" "$TMP/one.log"
check "no private key in the log" bash -c "! grep -q 'PRIVATE KEY' '$TMP/one.log'"

# --- readiness follows the database
wait_status() { # socket path status [seconds]
  local i
  for i in $(seq 1 $((${4:-15} * 5))); do
    [ "$(status_of "$1" "$2")" = "$3" ] && return 0
    sleep 0.2
  done
  return 1
}
"$PG" stop "$PGDIR" >/dev/null
check "with the database down, /ready is 503" wait_status "$TMP/one.sock" /ready 503
check "the 503 is a JSON error with a code" grep -q '"code":"not_ready.database"' "$TMP/body"
check "with the database down, /live is still 200" test "$(status_of "$TMP/one.sock" /live)" = 200
"$PG" start "$PGDIR" >/dev/null
check "with the database back, /ready is 200 again" wait_status "$TMP/one.sock" /ready 200

# --- the root CA
check "the key dir is 0700" test "$(stat -c %a "$TMP/keys")" = 700
rootkey=$(ls "$TMP"/keys/root-*.key 2>/dev/null | head -n1)
check "the root key file exists" test -n "$rootkey"
check "the root key file is 0600" test "$(stat -c %a "$rootkey" 2>/dev/null)" = 600
check "one root in the journal" test "$(q "$C1" "SELECT count(*) FROM ca_journal WHERE kind = 'x509_root'")" = 1
q "$C1" "SELECT encode(cert_der, 'base64') FROM ca_journal WHERE kind = 'x509_root'" \
  | base64 -d >"$TMP/root.der"
openssl x509 -inform DER -in "$TMP/root.der" -noout -text >"$TMP/root.txt" 2>&1
check "openssl: the root is a CA" grep -q "CA:TRUE" "$TMP/root.txt"
check "openssl: the root's URI SAN is spiffe://$TD" grep -q "URI:spiffe://$TD\$" "$TMP/root.txt"
check "openssl: the root key file holds the root's key" test \
  "$(openssl pkey -in "$rootkey" -pubout 2>/dev/null | sha256sum)" = \
  "$(openssl x509 -inform DER -in "$TMP/root.der" -pubkey -noout | sha256sum)"
q "$C1" "SELECT encode(cert_der, 'base64') FROM ca_journal WHERE kind = 'x509_intermediate'" \
  | base64 -d >"$TMP/inter.der"
openssl x509 -inform DER -in "$TMP/root.der" -out "$TMP/root.pem"
openssl x509 -inform DER -in "$TMP/inter.der" -out "$TMP/inter.pem"
check "openssl verify: the intermediate chains to the root" \
  openssl verify -CAfile "$TMP/root.pem" -x509_strict "$TMP/inter.pem"
check "the trust domain is recorded" test "$(q "$C1" "SELECT name FROM trust_domain")" = "$TD"

# --- our bundle row, through our decoder
q "$C1" "SELECT document::text FROM bundles WHERE own" >"$TMP/bundle.json"
"$CHECK" "$TD" <"$TMP/bundle.json" >"$TMP/bundle.txt" 2>&1
check "the own bundle row decodes" test $? = 0
check "the bundle holds one X.509 authority" grep -qx "x509 1" "$TMP/bundle.txt"
check "the bundle holds one JWT authority" grep -qx "jwt 1" "$TMP/bundle.txt"
check "the bundle's sequence is 1" grep -qx "sequence 1" "$TMP/bundle.txt"
check "the bundle has a refresh hint" grep -qx "refresh_hint 300" "$TMP/bundle.txt"
kid=$(q "$C1" "SELECT kid FROM ca_journal WHERE kind = 'jwt_key' AND state = 'active'")
check "the bundle's JWT kid is the journal's" grep -qx "jwt_kid $kid" "$TMP/bundle.txt"
check "the row's sequence column is 1" test "$(q "$C1" "SELECT sequence FROM bundles WHERE own")" = 1

# --- restart: same root, same intermediate, same bundle
serial1=$(openssl x509 -inform DER -in "$TMP/root.der" -noout -serial)
check "SIGTERM stops the server with exit 0" stop one
check "the admin socket is removed at stop" test ! -e "$TMP/one.sock"
start one
check "the restarted server answers" wait_live "$TMP/one.sock"
q "$C1" "SELECT encode(cert_der, 'base64') FROM ca_journal WHERE kind = 'x509_root'" \
  | base64 -d >"$TMP/root2.der"
check "after a restart: still one root" test "$(q "$C1" "SELECT count(*) FROM ca_journal WHERE kind = 'x509_root'")" = 1
check "after a restart: the same root" test "$(openssl x509 -inform DER -in "$TMP/root2.der" -noout -serial)" = "$serial1"
check "after a restart: the intermediate is reused" test "$(q "$C1" "SELECT count(*) FROM ca_journal WHERE kind = 'x509_intermediate'")" = 1
check "after a restart: the bundle sequence is unchanged" test "$(q "$C1" "SELECT sequence FROM bundles WHERE own")" = 1
check "the restart log says the root is not new" grep -q "root CA serial=.*new=false" "$TMP/one.log"
check "SIGTERM stops the restarted server" stop one

# --- a key file that does not match the journal is refused
cp "$rootkey" "$TMP/root.bak"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$rootkey" 2>/dev/null
"$BIN" run --config "$TMP/one.yaml" >"$TMP/badkey.log" 2>&1
check "a swapped root key file is refused (exit 4)" test $? = 4
check "the refusal says the key does not match" grep -q "does not match the public key in the CA journal" "$TMP/badkey.log"
cp "$TMP/root.bak" "$rootkey"

# --- another trust domain on the same database is refused
config other "$C1" "$TMP/other.sock" "$TMP/keys" other.example
"$BIN" run --config "$TMP/other.yaml" >"$TMP/other.log" 2>&1
check "another trust domain on this database is refused (exit 4)" test $? = 4
check "the refusal names both trust domains" grep -q 'belongs to trust domain \\"example.org\\", the configuration says \\"other.example\\"' "$TMP/other.log"

# --- two servers at once on a fresh database (each migrates, then opens the CA)
config a "$C2" "$TMP/a.sock" "$TMP/keys2"
config b "$C2" "$TMP/b.sock" "$TMP/keys2"
start a
start b
check "server a answers" wait_live "$TMP/a.sock"
check "server b answers" wait_live "$TMP/b.sock"
check "server a is ready" test "$(status_of "$TMP/a.sock" /ready)" = 200
check "server b is ready" test "$(status_of "$TMP/b.sock" /ready)" = 200
check "two servers at once made exactly one root" test "$(q "$C2" "SELECT count(*) FROM ca_journal WHERE kind = 'x509_root'")" = 1
check "two servers at once made one JWT key" test "$(q "$C2" "SELECT count(*) FROM ca_journal WHERE kind = 'jwt_key'")" = 1
check "each server has its own intermediate" test "$(q "$C2" "SELECT count(DISTINCT issued_to) FROM ca_journal WHERE kind = 'x509_intermediate'")" = 2
check "exactly one of them made the root" test "$(grep -l "root CA serial=.*new=true" "$TMP/a.log" "$TMP/b.log" | wc -l)" = 1
check "one bundle row, sequence 1" test "$(q "$C2" "SELECT count(*) || '/' || max(sequence) FROM bundles WHERE own")" = "1/1"
check "server a stops" stop a
check "server b stops" stop b

# --- usage and config errors
"$BIN" run >/dev/null 2>&1
check "run without --config is a usage error (exit 64)" test $? = 64
printf 'trust_domain: %s\nadmin:\n  sockett_path: /x\n' "$TD" >"$TMP/bad.yaml"
"$BIN" run --config "$TMP/bad.yaml" >"$TMP/bad.out" 2>&1
check "a bad key is a config error (exit 3)" test $? = 3
check "the error names file, line and key" grep -q "bad.yaml:3: key \"admin.sockett_path\": unknown key" "$TMP/bad.out"
"$BIN" >/dev/null 2>&1
check "no command is a usage error (exit 64)" test $? = 64
"$BIN" --bogus >/dev/null 2>&1
check "an unknown option is a usage error (exit 64)" test $? = 64
"$BIN" migrate --config "$TMP/bad.yaml" >/dev/null 2>&1
check "migrate with a bad config is exit 3" test $? = 3
"$BIN" healthcheck extra >/dev/null 2>&1
check "healthcheck with an extra argument is a usage error (exit 64)" test $? = 64
"$BIN" entry show --admin-socket "$TMP/none.sock" >/dev/null 2>&1
check "an admin command with no server to reach is exit 2, like healthcheck" test $? = 2
"$BIN" --help >"$TMP/help.out" 2>&1
check "--help lists the one exit code scheme" bash -c "grep -q '^  2   the server cannot be reached' '$TMP/help.out' && grep -q '^  64  command line error' '$TMP/help.out' && grep -q '^  4   refused by the database' '$TMP/help.out'"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
