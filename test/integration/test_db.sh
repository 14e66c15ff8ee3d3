#!/usr/bin/env bash
# lib/db against a real PostgreSQL (a throwaway cluster of our own): the worker pool runs
# queries in parallel, conflicts (40001, 40P01) are retried, a database that is down gives a
# clear error without the password, and a listener survives a server restart and says it may
# have missed notifications.
set -euo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
BIN=${SIGIL_DB_TEST:-$BUILD/test/sigil_db_test}
[ -x "$BIN" ] || { echo "not ok - $BIN is not built"; exit 1; }
PGDIR=$BUILD/pg-db
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null
SOCK=$PGDIR/socket
DB=sigil_db_$$
OUT=$(mktemp)
cleanup() {
  [ -n "${LPID:-}" ] && kill "$LPID" 2>/dev/null || true
  "$PG" start "$PGDIR" >/dev/null 2>&1 || true
  psql -h "$SOCK" -U sigil -d postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  "$PG" stop "$PGDIR" >/dev/null 2>&1 || true
  [ -n "${KEEP_OUT:-}" ] && cp "$OUT" "$KEEP_OUT"; rm -f "$OUT"
}
trap cleanup EXIT
psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $DB"
C="host=$SOCK user=sigil dbname=$DB"
fail=0

for scenario in pool retry; do
  echo "# $scenario"
  "$BIN" "$C" "$scenario" || fail=1
done

echo "# down"
# a password in the conninfo (trust auth ignores it) must never appear in what we print
"$BIN" "host=$PGDIR/no-such-socket-dir user=sigil dbname=$DB password=sekrit-canary" down \
  >"$OUT" 2>&1 || fail=1
cat "$OUT"
if grep -q sekrit "$OUT"; then echo "not ok - the password leaked"; fail=1; fi

echo "# listen (with a server restart in the middle)"
"$BIN" "$C password=sekrit-canary" listen >"$OUT" 2>&1 &
LPID=$!
for _ in $(seq 1 300); do
  grep -q '^restart-now' "$OUT" && break
  kill -0 "$LPID" 2>/dev/null || break
  sleep 0.1
done
if grep -q '^restart-now' "$OUT"; then
  "$PG" stop "$PGDIR" >/dev/null
  sleep 1 # down long enough for the listener and the pool to see it
  "$PG" start "$PGDIR" >/dev/null
else
  echo "not ok - the listener never asked for the restart"
  fail=1
fi
lrc=0
wait "$LPID" || lrc=$?
LPID=
cat "$OUT"
[ "$lrc" -eq 0 ] || { echo "not ok - listen scenario exited $lrc"; fail=1; }
grep -q '^ok - connection loss reported once' "$OUT" || { echo "not ok - no LOST"; fail=1; }
grep -q '^ok - listening again after a reconnect' "$OUT" || { echo "not ok - no gap"; fail=1; }
grep -q '^ok - NOTIFY received after the reconnect' "$OUT" || { echo "not ok - no NOTIFY"; fail=1; }
if grep -q sekrit "$OUT"; then echo "not ok - the password leaked"; fail=1; fi

[ "$fail" -eq 0 ] && echo "ok - lib/db integration" || echo "not ok - lib/db integration"
exit "$fail"
