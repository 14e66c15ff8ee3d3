#!/usr/bin/env bash
# Root CA rotation (server/ca.c) against a real PostgreSQL: prepare publishes the new root and
# JWT key before use and bumps the bundle sequence, activate switches to them and re-mints this
# instance's intermediate under the new root, retire removes the old ones only once nothing
# under them can be valid; refused steps say why; a running server follows rotations made by
# another process. One line per check, then "N passed, N failed".
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
SERVER=$BUILD/server/sigil-server
TOOL=$BUILD/test/server_ca_tool
CHECK=$BUILD/test/server_bundle_check
for b in "$SERVER" "$TOOL" "$CHECK"; do
  [ -x "$b" ] || { echo "not ok - $b is not built"; echo "0 passed, 1 failed"; exit 1; }
done
PGDIR=$BUILD/pg-server-ca
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null || { echo "not ok - cannot start PostgreSQL"; exit 1; }
SOCK=$PGDIR/socket
DB=sigil_ca_$$
TMP=$(mktemp -d /tmp/sigil-ca.XXXXXX)
SPID=
cleanup() {
  [ -n "$SPID" ] && { kill -TERM "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; }
  psql -h "$SOCK" -U sigil -d postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  "$PG" stop "$PGDIR" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT

passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
notok() { echo "not ok - $*"; failed=$((failed + 1)); }
check() {
  local what=$1
  shift
  if "$@" >/dev/null; then ok "$what"; else notok "$what"; fi
}
q() { psql "$C" -v ON_ERROR_STOP=1 -tAc "$1"; }
TD=rotate.example
C="host=$SOCK user=sigil dbname=$DB"
psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $DB"

# runs a step: name, instance, step [, jwt max seconds]; output in $TMP/name.out, code in .rc
step() {
  local rc=0
  "$TOOL" "$C" "$TMP/keys" "$TD" "$2" "$3" ${4:+"$4"} >"$TMP/$1.out" 2>"$TMP/$1.err" || rc=$?
  echo "$rc" >"$TMP/$1.rc"
}
val() { sed -n "s/^$2 //p" "$TMP/$1.out"; }
rc() { cat "$TMP/$1.rc"; }
bundle() { q "SELECT document::text FROM bundles WHERE own" | "$CHECK" "$TD"; }

"$SERVER" migrate --database "$C" >/dev/null 2>&1
check "migrate" test $? = 0

step open inst-a open
check "open on a fresh database makes the root" test "$(val open made_root)" = 1
check "open: bundle sequence 1 with one root and one JWT key" \
  test "$(val open sequence)/$(val open x509)/$(val open jwt)" = "1/1/1"
check "open: the intermediate is signed by the root" test "$(val open intermediate_signed_by_root)" = yes
R1=$(val open root_serial)
K1=$(val open kid)

step act0 inst-a activate
check "activate with nothing prepared is refused" test "$(rc act0)" = 3
check "the refusal says to prepare first" grep -q "prepare one first" "$TMP/act0.err"
check "a refused step leaves the CA loaded" test "$(val act0 root_serial)" = "$R1"

step prep inst-a prepare
check "prepare succeeds" test "$(rc prep)" = 0
check "prepare bumps the sequence to 2" test "$(val prep sequence)" = 2
check "prepare publishes both roots and both JWT keys" test "$(val prep x509)/$(val prep jwt)" = "2/2"
check "prepare keeps signing with the active root" test "$(val prep root_serial)" = "$R1"
check "prepare keeps the active JWT key" test "$(val prep kid)" = "$K1"
check "the journal holds a prepared root and JWT key" \
  test "$(q "SELECT count(*) FROM ca_journal WHERE state = 'prepared'")" = 2
bundle >"$TMP/b2.txt"
check "the bundle row (sequence 2, 2 roots, 2 JWT keys) decodes" \
  grep -qz "x509 2.jwt 2.sequence 2" "$TMP/b2.txt"
check "the prepared root's key file is 0600" \
  test "$(stat -c %a "$TMP"/keys/root-*.key | sort -u)" = 600

step prep2 inst-a prepare
check "a second prepare is refused" test "$(rc prep2)" = 3
check "the refusal says one is prepared" grep -q "prepared already" "$TMP/prep2.err"
check "the refused prepare left the sequence" test "$(q "SELECT sequence FROM bundles WHERE own")" = 2

step act inst-a activate
R2=$(val act root_serial)
check "activate succeeds" test "$(rc act)" = 0
check "activate switches to the new root" test -n "$R2" -a "$R2" != "$R1"
check "activate switches the JWT key" test "$(val act kid)" != "$K1"
check "the new intermediate is signed by the new root" test "$(val act intermediate_signed_by_root)" = yes
check "activate does not change the published bundle (sequence 2)" test "$(val act sequence)" = 2
check "the old root is 'old'" \
  test "$(q "SELECT count(*) FROM ca_journal WHERE kind = 'x509_root' AND state = 'old'")" = 1
check "this instance's previous intermediate is 'old'" \
  test "$(q "SELECT count(*) FROM ca_journal WHERE kind = 'x509_intermediate' AND state = 'old' AND issued_to = 'inst-a'")" = 1

step ret0 inst-a retire 3600
check "retire while chains under the old root live retires nothing" test "$(val ret0 retired)" = 0
check "... and keeps the sequence" test "$(val ret0 sequence)" = 2

# let time pass: the old intermediate expires, the new JWT key has been active 2 hours
q "UPDATE ca_journal SET not_before = now() - interval '3 hours', not_after = now() - interval '1 hour'
   WHERE kind = 'x509_intermediate' AND state = 'old'" >/dev/null
q "UPDATE ca_journal SET activated_at = now() - interval '2 hours' WHERE kind = 'jwt_key' AND state = 'active'" >/dev/null
step ret inst-a retire 3600
check "retire then retires the old root and the old JWT key" test "$(val ret retired)" = 2
check "retire bumps the sequence to 3" test "$(val ret sequence)" = 3
check "the bundle holds one root and one JWT key again" test "$(val ret x509)/$(val ret jwt)" = "1/1"
bundle >"$TMP/b3.txt"
check "the bundle row (sequence 3) decodes" grep -qz "x509 1.jwt 1.sequence 3" "$TMP/b3.txt"
check "the old root is 'retired' with a time" \
  test "$(q "SELECT count(*) FROM ca_journal WHERE kind = 'x509_root' AND state = 'retired' AND retired_at IS NOT NULL")" = 1

step b inst-b open
check "another instance gets its own intermediate under the new root" \
  test "$(val b made_root)/$(val b made_intermediate)/$(val b root_serial)/$(val b intermediate_signed_by_root)" = "0/1/$R2/yes"
step a2 inst-a open
check "reopening reuses this instance's intermediate" test "$(val a2 made_intermediate)" = 0
check "every bundle change was one sequence step (events logged per change)" \
  test "$(q "SELECT count(DISTINCT revision) FROM events WHERE kind = 'bundle'")" = 3

# --- a running server follows rotations made elsewhere (ca.check_interval)
cat >"$TMP/server.yaml" <<EOF
trust_domain: $TD
instance_id: srv
database:
  conninfo: $C
  pool_size: 2
admin:
  socket_path: $TMP/srv.sock
ca:
  key_dir: $TMP/keys
  check_interval: 1s
  bundle_refresh_hint: 1m # as server_ca_tool: a different hint would bump the sequence
EOF
"$SERVER" run --config "$TMP/server.yaml" >"$TMP/server.log" 2>&1 &
SPID=$!
for _ in $(seq 1 200); do
  curl -sf --unix-socket "$TMP/srv.sock" http://localhost/live >/dev/null 2>&1 && break
  sleep 0.1
done
metric() { curl -s --unix-socket "$TMP/srv.sock" http://localhost/metrics | sed -n "s/^$1 //p"; }
wait_metric() { # name value
  local i
  for i in $(seq 1 50); do [ "$(metric "$1")" = "$2" ] && return 0; sleep 0.2; done
  return 1
}
check "the server starts at bundle sequence 3" test "$(metric sigil_bundle_sequence)" = 3
step prep3 inst-a prepare
check "a prepare by another process reaches the running server (sequence 4)" wait_metric sigil_bundle_sequence 4
check "... and it logs the change" grep -q "bundle sequence 4 (was 3)" "$TMP/server.log"
step act3 inst-a activate
R3=$(val act3 root_serial)
for _ in $(seq 1 50); do grep -q "intermediate CA renewed" "$TMP/server.log" && break; sleep 0.2; done
check "after an activation elsewhere the server mints its intermediate under the new root" \
  grep -q "intermediate CA renewed" "$TMP/server.log"
check "... recorded as this instance's" \
  test "$(q "SELECT count(*) FROM ca_journal WHERE kind = 'x509_intermediate' AND state = 'active' AND issued_to = 'srv'")" = 1
q "SELECT encode(cert_der, 'base64') FROM ca_journal WHERE kind = 'x509_intermediate' AND state = 'active' AND issued_to = 'srv'" \
  | base64 -d | openssl x509 -inform DER -out "$TMP/srv-inter.pem"
q "SELECT encode(cert_der, 'base64') FROM ca_journal WHERE kind = 'x509_root' AND state = 'active'" \
  | base64 -d | openssl x509 -inform DER -out "$TMP/root3.pem"
check "openssl verify: the renewed intermediate chains to the new root ($R3)" \
  openssl verify -CAfile "$TMP/root3.pem" -x509_strict "$TMP/srv-inter.pem"
check "the server is still ready" test "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$TMP/srv.sock" http://localhost/ready)" = 200
kill -TERM "$SPID"
wait "$SPID"
check "the server stops with exit 0" test $? = 0
SPID=


# --- key files are found relative to ca.key_dir: the whole directory may move
check "the journal records key files by bare name (no '/')" \
  test "$(q "SELECT count(*) FROM ca_journal WHERE key_ref LIKE '%/%'")" = 0
BUNDLE_BEFORE=$(q "SELECT sequence || ' ' || md5(document::text) FROM bundles WHERE own")
ROOTS_BEFORE=$(q "SELECT count(*) FROM ca_journal WHERE kind = 'x509_root'")
mv "$TMP/keys" "$TMP/moved-keys"
sed -i "s|key_dir: $TMP/keys|key_dir: $TMP/moved-keys|" "$TMP/server.yaml"
start_server() { # log file; returns 0 once /ready answers 200, 1 if the server exits first
  "$SERVER" run --config "$TMP/server.yaml" >"$1" 2>&1 &
  SPID=$!
  for _ in $(seq 1 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$TMP/srv.sock" http://localhost/ready 2>/dev/null)" = 200 ] && return 0
    kill -0 "$SPID" 2>/dev/null || { wait "$SPID"; SPID=; return 1; }
    sleep 0.1
  done
  return 1
}
stop_server() { kill -TERM "$SPID" && wait "$SPID"; local rc=$?; SPID=; return $rc; }
check "after moving the key directory and changing ca.key_dir the server starts" \
  start_server "$TMP/server-moved.log"
check "... with the same bundle (sequence and document)" \
  test "$(q "SELECT sequence || ' ' || md5(document::text) FROM bundles WHERE own")" = "$BUNDLE_BEFORE"
check "... and made no new root" \
  test "$(q "SELECT count(*) FROM ca_journal WHERE kind = 'x509_root'")" = "$ROOTS_BEFORE"
check "... and stops with exit 0" stop_server

# rows written by earlier versions hold absolute paths; the moved files are still found
q "UPDATE ca_journal SET key_ref = '$TMP/keys/' || key_ref WHERE state IN ('active', 'prepared')" >/dev/null
check "old absolute key paths whose files moved into ca.key_dir: the server starts" \
  start_server "$TMP/server-abs.log"
check "... logs once that the journal holds an old absolute path" \
  test "$(grep -c "old absolute key path" "$TMP/server-abs.log")" = 1
check "... with the same bundle" \
  test "$(q "SELECT sequence || ' ' || md5(document::text) FROM bundles WHERE own")" = "$BUNDLE_BEFORE"
stop_server >/dev/null
q "UPDATE ca_journal SET key_ref = regexp_replace(key_ref, '^.*/', '') WHERE key_ref LIKE '/%'" >/dev/null

# a relative key_ref may not leave ca.key_dir, even when the file it reaches is the right key
q "UPDATE ca_journal SET key_ref = '../moved-keys/' || key_ref WHERE kind = 'x509_root' AND state = 'active'" >/dev/null
if start_server "$TMP/server-trav.log"; then
  notok "a key_ref with '../' is refused (the server started)"
  stop_server >/dev/null
else
  ok "a key_ref with '../' is refused: the server does not start"
fi
check "... and says why, naming the key_ref" grep -q 'key_ref .*[.][.]/moved-keys/root-.* is refused' "$TMP/server-trav.log"
q "UPDATE ca_journal SET key_ref = regexp_replace(key_ref, '^.*/', '') WHERE key_ref LIKE '%/%'" >/dev/null
check "the key directory is still 0700 and the key files 0600" \
  test "$(stat -c %a "$TMP/moved-keys")/$(stat -c %a "$TMP"/moved-keys/*.key | sort -u)" = 700/600

# --- ca show --config checks the key files a server needs
show() { # name: ca show --config, output in $TMP/name.show, exit code in $TMP/name.rc
  local rc=0
  "$SERVER" ca show --config "$TMP/server.yaml" >"$TMP/$1.show" 2>&1 || rc=$?
  echo "$rc" >"$TMP/$1.rc"
}
ROOTKEY=$(q "SELECT key_ref FROM ca_journal WHERE kind = 'x509_root' AND state = 'active'")
JWTKEY=$(q "SELECT key_ref FROM ca_journal WHERE kind = 'jwt_key' AND state = 'active'")
show fine
check "ca show --config with every key in place exits 0" test "$(rc fine)" = 0
check "... with a status line per key (root, JWT key, this instance's intermediate)" \
  test "$(grep -c '^key .*: ok$' "$TMP/fine.show")" -ge 3
check "... and no FAILED line" test "$(grep -c FAILED "$TMP/fine.show")" = 0
mv "$TMP/moved-keys/$ROOTKEY" "$TMP/root.aside"
show noroot
check "ca show --config with the root key deleted exits 1" test "$(rc noroot)" = 1
check "... naming the missing root key file" \
  grep -q "^key x509_root .*active .*FAILED (missing: $TMP/moved-keys/$ROOTKEY" "$TMP/noroot.show"
cp "$TMP/moved-keys/$JWTKEY" "$TMP/moved-keys/$ROOTKEY"
chmod 600 "$TMP/moved-keys/$ROOTKEY"
show swapped
check "ca show --config with another key in the root's file exits 1" test "$(rc swapped)" = 1
check "... saying it does not match the journal" \
  grep -q "^key x509_root .*FAILED (CA key .*$ROOTKEY does not match" "$TMP/swapped.show"
mv "$TMP/root.aside" "$TMP/moved-keys/$ROOTKEY"
chmod 644 "$TMP/moved-keys/$ROOTKEY"
show wide
check "ca show --config with the root key readable by others exits 1" test "$(rc wide)" = 1
check "... naming the mode" grep -q "mode 0644, wider than 0600" "$TMP/wide.show"
chmod 600 "$TMP/moved-keys/$ROOTKEY"
show again
check "ca show --config exits 0 again once the right key is back" test "$(rc again)" = 0

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
