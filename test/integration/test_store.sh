#!/usr/bin/env bash
# server/store*.c against a real PostgreSQL (a throwaway cluster of our own) with the
# migrations applied by the real migrator: entries (create, batch, duplicates, list filters for
# every selector match, pagination over 2,500 entries, update, delete, audit rows, the change
# feed), agents, join tokens (single use under a race, expiry), bundles, federation, audit.
set -euo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
BIN=${SIGIL_STORE_TEST:-$BUILD/test/store_test}
MIGRATE=$BUILD/test/sigil_migrate_test
for b in "$BIN" "$MIGRATE"; do
  [ -x "$b" ] || { echo "not ok - $b is not built"; exit 1; }
done
PGDIR=$BUILD/pg-store
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null
SOCK=$PGDIR/socket
DB=sigil_store_$$
cleanup() {
  psql -h "$SOCK" -U sigil -d postgres -qc "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  "$PG" stop "$PGDIR" >/dev/null 2>&1 || true
}
trap cleanup EXIT
psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $DB"
C="host=$SOCK user=sigil dbname=$DB"
"$MIGRATE" "$C" "$SRC/migrations" >/dev/null || { echo "not ok - migrations"; exit 1; }
rc=0
"$BIN" "$C" || rc=$?
[ "$rc" -eq 0 ] && echo "ok - server store integration" || echo "not ok - server store integration"
exit "$rc"
