#!/usr/bin/env bash
# `sigil-server entry import` of 10,000 entries against a real server and PostgreSQL, with the
# server killed (SIGKILL) in the middle: every entry of a batch the CLI saw acknowledged is
# stored, the CLI exits 2 naming the batch whose fate is unknown, and after a restart the same
# import, run again, finishes the job (existing entries counted, not failed; no duplicates).
# One line per check, then "N passed, N failed".
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
BIN=$BUILD/server/sigil-server
[ -x "$BIN" ] || { echo "not ok - $BIN is not built"; echo "0 passed, 1 failed"; exit 1; }
N=10000
PGDIR=$BUILD/pg-cli-import
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null || { echo "not ok - cannot start PostgreSQL"; exit 1; }
SOCK=$PGDIR/socket
DB=sigil_cli_import_$$
TMP=$(mktemp -d /tmp/sigil-cli-import.XXXXXX)
SPID=
IPID=
cleanup() {
  [ -n "$IPID" ] && kill "$IPID" 2>/dev/null
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
ADMIN=$TMP/admin.sock
cat >"$TMP/server.yaml" <<EOF
trust_domain: example.org
database:
  conninfo: $C
  pool_size: 2
admin:
  socket_path: $ADMIN
ca:
  key_dir: $TMP/keys
EOF

start_server() {
  "$BIN" run --config "$TMP/server.yaml" >>"$TMP/server.log" 2>&1 &
  SPID=$!
  for _ in $(seq 1 300); do
    curl -sf --unix-socket "$ADMIN" http://localhost/live >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
check "the server starts" start_server

# 10,000 entries the registration policy accepts; line i holds workload w<i>
SHA=$(printf 'a%.0s' $(seq 64))
for i in $(seq 1 $N); do
  printf '{"spiffe_id":"spiffe://example.org/prod/gcp/payments/w%d","parent_id":"spiffe://example.org/sigil/agent/node1","selectors":["unix:uid:%d","unix:path:/usr/bin/w","unix:sha256:%s"]}\n' \
    "$i" "$i" "$SHA"
done >"$TMP/entries.jsonl"

# small batches, so that the kill lands in the middle of the import
"$BIN" entry import --admin-socket "$ADMIN" --batch-size 20 "$TMP/entries.jsonl" \
  >"$TMP/import1.out" 2>"$TMP/import1.err" &
IPID=$!
stored=0
for _ in $(seq 1 600); do
  stored=$(q "SELECT count(*) FROM entries" 2>/dev/null || echo 0)
  [ "$stored" -ge 2000 ] && break
  kill -0 "$IPID" 2>/dev/null || break
  sleep 0.05
done
kill -KILL "$SPID" 2>/dev/null
wait "$SPID" 2>/dev/null
SPID=
wait "$IPID"
rc=$?
IPID=
check "the server was killed in the middle of the import ($stored of $N stored)" \
  test "$stored" -ge 2000 -a "$stored" -lt $N
check "the CLI exits 2 when the server goes away" test "$rc" = 2
check "... and says to run the same import again" grep -q "Run the same import again" "$TMP/import1.err"
# the batch whose answer never came: entries before its first line were acknowledged
first=$(sed -nE 's/.*The batch from line ([0-9]+) to line [0-9]+ may or may not have been stored.*/\1/p' \
  "$TMP/import1.err" | head -n1)
check "the CLI names the batch whose fate is unknown" test -n "$first"
first=${first:-1}
acked=$((first - 1))
have=$(q "SELECT count(*) FROM entries WHERE spiffe_id LIKE 'spiffe://example.org/prod/gcp/payments/w%'
          AND substr(spiffe_id, 41)::int <= $acked")
check "every acknowledged entry is stored ($have of $acked)" test "$have" = "$acked"
check "nothing past the unknown batch was stored" \
  test "$(q "SELECT count(*) FROM entries WHERE substr(spiffe_id, 41)::int >= $first + 20")" = 0

check "the server starts again" start_server
"$BIN" entry import --admin-socket "$ADMIN" "$TMP/entries.jsonl" >"$TMP/import2.out" 2>"$TMP/import2.err"
rc=$?
check "the import run again succeeds (exit 0)" test "$rc" = 0
created=$(sed -nE 's/.* ([0-9]+) created, ([0-9]+) already existed, 0 failed.*/\1/p' "$TMP/import2.out")
existing=$(sed -nE 's/.* ([0-9]+) created, ([0-9]+) already existed, 0 failed.*/\2/p' "$TMP/import2.out")
check "... counting stored entries as existing and the rest as created" \
  test "${created:-x}" -ge 0 -a "$((${created:-0} + ${existing:-0}))" = $N -a "${existing:-0}" -ge "$acked"
check "all $N entries are stored, once each" \
  test "$(q "SELECT count(*), count(DISTINCT spiffe_id) FROM entries")" = "$N|$N"

if [ "$failed" -gt 0 ]; then
  echo "# first import:"; cat "$TMP/import1.out" "$TMP/import1.err"
  echo "# second import:"; cat "$TMP/import2.out" "$TMP/import2.err"
  echo "# server log (tail):"; tail -n 20 "$TMP/server.log"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
