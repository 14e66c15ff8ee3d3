#!/usr/bin/env bash
# Root CA rotation by an operator with `sigil-server ca show|prepare|activate|retire --config`
# beside a running server and a real PostgreSQL: prepare publishes a second root and bumps
# spiffe_sequence (seen with `sigil-server bundle show`), activate makes the running server mint
# its intermediate under the new root (an agent's X.509-SVID from the node API, nodeapi_client,
# chains to the old root before and to the new one after), retire is refused while an old
# root can still have valid SVIDs under it and succeeds once not; an audit record per step;
# exit codes. One line per check, then "N passed, N failed".
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
BIN=$BUILD/server/sigil-server
CLIENT=$BUILD/test/nodeapi_client
for b in "$BIN" "$CLIENT"; do
  [ -x "$b" ] || { echo "not ok - $b is not built"; echo "0 passed, 1 failed"; exit 1; }
done
PGDIR=$BUILD/pg-server-ca-rotation
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null || { echo "not ok - cannot start PostgreSQL"; exit 1; }
SOCK=$PGDIR/socket
DB=sigil_carot_$$
TMP=$(mktemp -d /tmp/sigil-carot.XXXXXX)
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
C="host=$SOCK user=sigil dbname=$DB"
q() { psql "$C" -v ON_ERROR_STOP=1 -tAc "$1"; }
psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $DB"
TD=rotation.example
ADMIN=$TMP/admin.sock
CFG=$TMP/server.yaml
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADDR=127.0.0.1:$PORT
cat >"$CFG" <<EOF
trust_domain: $TD
instance_id: srv
database:
  conninfo: $C
  pool_size: 2
admin:
  socket_path: $ADMIN
node_api:
  listen: $ADDR
ca:
  key_dir: $TMP/keys
  check_interval: 1s
EOF

# ca STEP [options]: output in $TMP/ca.out, errors in $TMP/ca.err, prints the exit code
ca() { "$BIN" ca "$@" >"$TMP/ca.out" 2>"$TMP/ca.err"; echo $?; }
cajson() { "$BIN" ca show --config "$CFG" --output json >"$TMP/show.json" 2>&1 || return 1; }
sj() { python3 -c "import json; d=json.load(open('$TMP/show.json')); print($1)"; }
bundle_json() { "$BIN" bundle show --admin-socket "$ADMIN" --output json >"$TMP/bundle.json" 2>&1; }
bj() { python3 -c "import json; d=json.load(open('$TMP/bundle.json')); print($1)"; }
X509KEYS='len([k for k in d["keys"] if k.get("use") == "x509-svid"])'
# attests a fresh agent with a join token over the node API (nodeapi_client): its X.509-SVID,
# minted by the running server, lands in $TMP/NAME/agent.pem (leaf, then intermediate)
agent_svid() {
  local tok
  "$BIN" bundle show --admin-socket "$ADMIN" >"$TMP/trust.pem" 2>/dev/null
  tok=$("$BIN" token generate --admin-socket "$ADMIN" --ttl 10m 2>/dev/null | sed -nE 's/^Token +: ([A-Za-z0-9_-]+)$/\1/p')
  mkdir -p "$TMP/$1"
  "$CLIENT" "$ADDR" "$TD" "$TMP/trust.pem" "$TMP/$1" attest join_token "$tok" >"$TMP/$1.out" 2>&1
}
wait_for() { # what command...
  local i
  for i in $(seq 1 50); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}

# --- exit codes before anything runs
check "ca without a step is a usage error (64)" test "$(ca)" = 64
check "an unknown step is a usage error (64)" test "$(ca rotate --config "$CFG")" = 64
check "--config with --admin-socket is a usage error (64)" test "$(ca show --config "$CFG" --admin-socket "$ADMIN")" = 64
check "a step over an admin socket nobody serves is exit 2" test "$(ca show --admin-socket "$TMP/none.sock")" = 2
check "--help documents the steps and exit codes" \
  bash -c "'$BIN' ca --help | grep -q 'retire    remove old roots' && '$BIN' ca --help | grep -q '64 a command line\$' && '$BIN' ca --help | grep -q '2 the admin socket could not be reached'"
printf 'trust_domain: %s\nca:\n  key_dirr: /x\n' "$TD" >"$TMP/bad.yaml"
check "a bad configuration is exit 3" test "$(ca show --config "$TMP/bad.yaml")" = 3
check "show on a database without a trust root is refused (1) saying what to do" \
  bash -c "[ \"\$('$BIN' migrate --config '$CFG' >/dev/null 2>&1; '$BIN' ca show --config '$CFG' >/dev/null 2>'$TMP/e'; echo \$?)\" = 1 ] && grep -q 'no trust root yet' '$TMP/e'"

"$BIN" run --config "$CFG" >"$TMP/server.log" 2>&1 &
SPID=$!
check "the server answers" wait_for curl -sf --unix-socket "$ADMIN" http://localhost/live

# --- show
check "ca show exits 0" test "$(ca show --config "$CFG")" = 0
check "... lists the active root and the server's intermediate" \
  bash -c "grep -q '^x509_root *active' '$TMP/ca.out' && grep -q 'issued to srv' '$TMP/ca.out'"
cajson
R1=$(sj '[a["serial"] for a in d["authorities"] if a["kind"] == "x509_root" and a["state"] == "active"][0]')
check "ca show --output json: one root, sequence 1" \
  test "$(sj 'len([a for a in d["authorities"] if a["kind"] == "x509_root"]), d["bundle_sequence"]')" = "1 1"
check "ca show wrote no audit record and minted nothing" \
  test "$(q "SELECT count(*) FROM audit_log WHERE object_type = 'ca'")/$(q "SELECT count(*) FROM ca_journal WHERE kind = 'x509_intermediate'")" = 0/1

# --- refusals in the wrong order
check "activate with nothing prepared is refused (1)" test "$(ca activate --config "$CFG")" = 1
check "... saying so" grep -q "no root CA is prepared" "$TMP/ca.err"
check "retire with no old root is a no-op (0)" test "$(ca retire --config "$CFG")" = 0

# --- prepare: a second root published before use
check "prepare exits 0" test "$(ca prepare --config "$CFG")" = 0
check "... and shows the prepared root" grep -q '^x509_root *prepared' "$TMP/ca.out"
check "a second prepare is refused (1)" test "$(ca prepare --config "$CFG")" = 1
check "... saying one is prepared already" grep -q "prepared already" "$TMP/ca.err"
bundle_json
check "bundle show: two roots, spiffe_sequence 2" test "$(bj "$X509KEYS, d['spiffe_sequence']")" = "2 2"
"$BIN" bundle show --admin-socket "$ADMIN" >"$TMP/bundle.pem" 2>&1
check "bundle show (PEM) holds two certificates" test "$(grep -c 'BEGIN CERTIFICATE' "$TMP/bundle.pem")" = 2
check "the running server follows the prepare (metric sequence 2)" \
  wait_for bash -c "curl -s --unix-socket '$ADMIN' http://localhost/metrics | grep -q '^sigil_bundle_sequence 2$'"
cajson
R2=$(sj '[a["serial"] for a in d["authorities"] if a["state"] == "prepared" and a["kind"] == "x509_root"][0]')
check "the root in use is still the first" \
  test "$(sj '[a["serial"] for a in d["authorities"] if a["kind"] == "x509_root" and a["state"] == "active"][0]')" = "$R1"

agent_svid before
check "an agent attested before activate gets an X.509-SVID" test -s "$TMP/before/agent.pem"
# --- activate: the server's intermediate (which signs its SVIDs) moves under the new root
check "activate exits 0" test "$(ca activate --config "$CFG")" = 0
cajson
check "the new root is active, the first one old" \
  test "$(sj '[(a["serial"], a["state"]) for a in d["authorities"] if a["kind"] == "x509_root"]')" = "[('$R1', 'old'), ('$R2', 'active')]"
check "the server mints its intermediate under the new root" \
  wait_for grep -q "intermediate CA renewed" "$TMP/server.log"
q "SELECT encode(cert_der, 'base64') FROM ca_journal WHERE kind = 'x509_intermediate' AND state = 'active' AND issued_to = 'srv'" |
  base64 -d | openssl x509 -inform DER -out "$TMP/inter.pem"
# the new root as bundle show gives it, picked by its serial
python3 - "$TMP/bundle.pem" "$R2" "$TMP/newroot.pem" "$TMP/oldroot.pem" <<'PY'
import subprocess, sys
pems = open(sys.argv[1]).read().split("-----END CERTIFICATE-----")
for p in pems:
    if "BEGIN CERTIFICATE" not in p:
        continue
    pem = p.strip() + "\n-----END CERTIFICATE-----\n"
    ser = subprocess.run(["openssl", "x509", "-noout", "-serial"], input=pem, text=True,
                         capture_output=True).stdout.strip().split("=")[1].lower().lstrip("0")
    open(sys.argv[3] if ser == sys.argv[2].lstrip("0") else sys.argv[4], "w").write(pem)
PY
check "openssl: the server's new intermediate chains to the new root from bundle show" \
  openssl verify -x509_strict -CAfile "$TMP/newroot.pem" "$TMP/inter.pem"
check "... and not to the old root" bash -c "! openssl verify -CAfile '$TMP/oldroot.pem' '$TMP/inter.pem' 2>/dev/null"
agent_svid after
check "an agent attested after activate gets an X.509-SVID" test -s "$TMP/after/agent.pem"
check "openssl: that SVID chains to the new root (and only it)" \
  bash -c "openssl verify -x509_strict -CAfile '$TMP/newroot.pem' -untrusted '$TMP/after/agent.pem' '$TMP/after/agent.pem' >/dev/null 2>&1 &&
    ! openssl verify -CAfile '$TMP/oldroot.pem' -untrusted '$TMP/after/agent.pem' '$TMP/after/agent.pem' >/dev/null 2>&1"
check "... while the SVID minted before activate chains to the old root" \
  openssl verify -x509_strict -CAfile "$TMP/oldroot.pem" -untrusted "$TMP/before/agent.pem" "$TMP/before/agent.pem"
check "no intermediate was minted for the operator's tool" \
  test "$(q "SELECT count(DISTINCT issued_to) FROM ca_journal WHERE kind = 'x509_intermediate'")" = 1

# --- retire: refused while the old root can still have valid SVIDs under it
check "retire while the old intermediate lives is refused (1)" test "$(ca retire --config "$CFG")" = 1
check "... naming the old root and until when" grep -q "old root $R1 still signs an unexpired intermediate" "$TMP/ca.err"
check "... and the bundle still has both roots" bash -c "'$BIN' bundle show --admin-socket '$ADMIN' | grep -c 'BEGIN CERTIFICATE' | grep -qx 2"
# let time pass: the old intermediate expires, the new JWT key has been active 2 hours
q "UPDATE ca_journal SET not_before = now() - interval '3 hours', not_after = now() - interval '1 hour'
   WHERE kind = 'x509_intermediate' AND state = 'old'" >/dev/null
q "UPDATE ca_journal SET activated_at = now() - interval '2 hours' WHERE kind = 'jwt_key' AND state = 'active'" >/dev/null
check "retire then exits 0" test "$(ca retire --config "$CFG")" = 0
check "... retiring the old root and the old JWT key" grep -q "retired 2 old authorities" "$TMP/ca.out"
bundle_json
check "bundle show: one root again, spiffe_sequence 3" test "$(bj "$X509KEYS, d['spiffe_sequence']")" = "1 3"

# --- audit: one record per change, naming the local uid
check "audit records: prepare, activate, retire (not the refused ones)" \
  test "$(q "SELECT string_agg(action, ',' ORDER BY id) FROM audit_log WHERE object_type = 'ca'")" = "ca.prepare,ca.activate,ca.retire"
check "... by uid:$(id -u)" test "$(q "SELECT DISTINCT actor FROM audit_log WHERE object_type = 'ca'")" = "uid:$(id -u)"
check "... the retire record says what it retired" \
  test "$(q "SELECT after->>'retired' FROM audit_log WHERE action = 'ca.retire'")" = 2

# --- another trust domain on this database is refused by its state (4)
sed "s/^trust_domain: .*/trust_domain: other.example/" "$CFG" >"$TMP/other.yaml"
check "a step with another trust domain's configuration is exit 4" test "$(ca prepare --config "$TMP/other.yaml")" = 4

# --- a second rotation over the admin API (the CLI's default, and curl)
api() { curl -s -o "$TMP/api.json" -w '%{http_code}' --unix-socket "$ADMIN" -X "$1" "http://localhost$2"; }
acode() { python3 -c "import json; print(json.load(open('$TMP/api.json'))['error']['code'])"; }
check "GET /v1/ca is 200 with the journal (sequence 3)" \
  test "$(api GET /v1/ca)/$(python3 -c "import json; print(json.load(open('$TMP/api.json'))['bundle_sequence'])")" = 200/3
check "ca prepare over the admin socket exits 0" test "$(ca prepare --admin-socket "$ADMIN")" = 0
check "... and prints the prepared root" grep -q '^x509_root *prepared' "$TMP/ca.out"
bundle_json
check "bundle show: two roots, spiffe_sequence 4" test "$(bj "$X509KEYS, d['spiffe_sequence']")" = "2 4"
check "POST /v1/ca:prepare again is 409 ca.prepared_already" test "$(api POST /v1/ca:prepare)/$(acode)" = 409/ca.prepared_already
check "ca activate over the admin socket exits 0" test "$(ca activate --admin-socket "$ADMIN")" = 0
check "POST /v1/ca:activate with nothing prepared is 409 ca.nothing_prepared" \
  test "$(api POST /v1/ca:activate)/$(acode)" = 409/ca.nothing_prepared
check "the server mints its intermediate under the third root" \
  wait_for bash -c "[ \$(grep -c 'intermediate CA renewed' '$TMP/server.log') -ge 2 ]"
check "ca retire over the admin socket is refused (1)" test "$(ca retire --admin-socket "$ADMIN")" = 1
check "... naming the old root, why and the code" \
  bash -c "grep -q 'still signs an unexpired intermediate CA' '$TMP/ca.err' && grep -q 'ca.root_in_use' '$TMP/ca.err'"
check "POST /v1/ca:retire is 409 ca.root_in_use" test "$(api POST /v1/ca:retire)/$(acode)" = 409/ca.root_in_use
check "GET on a step is 405" test "$(api GET /v1/ca:prepare)" = 405
check "audit records of the API steps, by the socket caller's uid" \
  test "$(q "SELECT string_agg(action || '/' || actor, ',' ORDER BY id) FROM audit_log WHERE object_type = 'ca' AND id > (SELECT max(id) FROM audit_log WHERE action = 'ca.retire')")" = "ca.prepare/uid:$(id -u),ca.activate/uid:$(id -u)"
check "ca show --output json over the socket: sequence 4, three roots in the journal (retired, old, active)" \
  bash -c "'$BIN' ca show --admin-socket '$ADMIN' --output json | python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(not (d[\"bundle_sequence\"] == 4 and len([a for a in d[\"authorities\"] if a[\"kind\"] == \"x509_root\"]) == 3))'"

kill -TERM "$SPID"
wait "$SPID"
check "the server stops with exit 0" test $? = 0
SPID=

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
