#!/usr/bin/env bash
# The schema migrator against a real PostgreSQL: four migrators at once apply each migration
# exactly once, a second run is a no-op, an edited migration and a database newer than the
# binary are refused with a clear message, a failing migration leaves nothing behind, and a
# migration that commits by itself or a malformed file name is refused.
set -euo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
BIN=${SIGIL_MIGRATE_TEST:-$BUILD/test/sigil_migrate_test}
[ -x "$BIN" ] || { echo "not ok - $BIN is not built"; exit 1; }
PGDIR=$BUILD/pg-migrate
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null
SOCK=$PGDIR/socket
DB=sigil_migrate_$$
DB2=sigil_migrate_b_$$
TMP=$(mktemp -d)
cleanup() {
  for d in "$DB" "$DB2"; do
    psql -h "$SOCK" -U sigil -d postgres -qc "DROP DATABASE IF EXISTS $d" >/dev/null 2>&1 || true
  done
  "$PG" stop "$PGDIR" >/dev/null 2>&1 || true
  rm -rf "$TMP"
}
trap cleanup EXIT
fail=0
ok() { echo "ok - $*"; }
notok() { echo "not ok - $*"; fail=1; }
q() { psql "$1" -v ON_ERROR_STOP=1 -tAc "$2"; }

for d in "$DB" "$DB2"; do psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $d"; done
C="host=$SOCK user=sigil dbname=$DB"
C2="host=$SOCK user=sigil dbname=$DB2"
MIG=$SRC/migrations
nfiles=$(ls "$MIG"/[0-9]*.sql | wc -l)

# runs the migrator, keeping stdout, stderr and the exit code
run() { # name conninfo dir
  local rc=0
  "$BIN" "$2" "$3" >"$TMP/$1.out" 2>"$TMP/$1.err" || rc=$?
  echo "$rc" >"$TMP/$1.rc"
}
rc() { cat "$TMP/$1.rc"; }

# --- four at once on a fresh database
for i in 1 2 3 4; do run "first$i" "$C" "$MIG" & done
wait
allok=1
for i in 1 2 3 4; do [ "$(rc first$i)" = 0 ] || { allok=0; cat "$TMP/first$i.err"; }; done
[ "$allok" = 1 ] && ok "4 concurrent migrators all succeeded" || notok "a concurrent migrator failed"
applied=$(cat "$TMP"/first?.out | grep -c '^applied ' || true)
[ "$applied" = "$nfiles" ] && ok "each of the $nfiles migrations applied by exactly one of them" \
  || notok "$applied applications for $nfiles migrations"
rows=$(q "$C" "SELECT count(*) || '/' || count(DISTINCT version) FROM sigil_schema_migrations")
[ "$rows" = "$nfiles/$nfiles" ] && ok "recorded once each ($rows)" || notok "recorded $rows"
sum=$(q "$C" "SELECT sha256 FROM sigil_schema_migrations WHERE version = 1")
[ "$sum" = "$(sha256sum "$MIG/0001_init.sql" | cut -d' ' -f1)" ] \
  && ok "the recorded sha256 is the file's (as sha256sum prints it)" || notok "sha256 $sum"
[ "$(q "$C" "SELECT to_regclass('entries') IS NOT NULL")" = t ] && ok "the schema exists" \
  || notok "no entries table"
grep -hq "^schema at version $nfiles " "$TMP"/first?.out && ok "reports the version" \
  || notok "no version line"

# --- again: nothing to do
run again "$C" "$MIG"
if [ "$(rc again)" = 0 ] && ! grep -q '^applied' "$TMP/again.out" \
  && grep -q "this run applied 0" "$TMP/again.out"; then
  ok "a second run is a no-op"
else
  notok "second run: $(cat "$TMP/again.out" "$TMP/again.err")"
fi

# --- an edited migration is refused
cp -r "$MIG" "$TMP/tampered"
echo "-- a harmless-looking edit" >>"$TMP/tampered/0001_init.sql"
run tampered "$C" "$TMP/tampered"
if [ "$(rc tampered)" = 3 ] && grep -q "0001_init.sql was changed after it was applied" "$TMP/tampered.err"; then
  ok "an edited migration is refused: $(cat "$TMP/tampered.err")"
else
  notok "edited migration: rc $(rc tampered): $(cat "$TMP/tampered.err")"
fi

# --- a database newer than the binary is refused (downgrade protection)
q "$C" "INSERT INTO sigil_schema_migrations (version, name, sha256) VALUES ($((nfiles + 1)), 'from_the_future', repeat('0', 64))" >/dev/null
run newer "$C" "$MIG"
if [ "$(rc newer)" = 3 ] && grep -q "newer than the $nfiles migrations this binary knows" "$TMP/newer.err"; then
  ok "a newer database is refused: $(cat "$TMP/newer.err")"
else
  notok "newer database: rc $(rc newer): $(cat "$TMP/newer.err")"
fi
q "$C" "DELETE FROM sigil_schema_migrations WHERE name = 'from_the_future'" >/dev/null
run after "$C" "$MIG"
[ "$(rc after)" = 0 ] && ok "accepted again once the newer row is gone" || notok "not accepted again"

# --- more migrations, slower ones, four at once: applied in order, once each
mkdir "$TMP/more"
cp "$MIG"/[0-9]*.sql "$TMP/more/"
n=$((nfiles + 1))
printf -v v1 '%04d' "$n"; printf -v v2 '%04d' $((n + 1))
cat >"$TMP/more/${v1}_probe.sql" <<'SQL'
-- not idempotent: applying it twice fails
CREATE TABLE migrate_probe (id integer PRIMARY KEY);
SELECT pg_sleep(0.3);
INSERT INTO migrate_probe VALUES (1);
SQL
cat >"$TMP/more/${v2}_probe_more.sql" <<'SQL'
ALTER TABLE migrate_probe ADD COLUMN note text;
INSERT INTO migrate_probe VALUES (2, 'second');
SQL
echo "# ignored: not a migration" >"$TMP/more/README"
for i in 1 2 3 4; do run "more$i" "$C2" "$TMP/more" & done
wait
allok=1
for i in 1 2 3 4; do [ "$(rc more$i)" = 0 ] || { allok=0; cat "$TMP/more$i.err"; }; done
applied=$(cat "$TMP"/more?.out | grep -c '^applied ' || true)
order=$(q "$C2" "SELECT string_agg(version::text, ',' ORDER BY applied_at, version) FROM sigil_schema_migrations")
want=$(seq -s, 1 $((n + 1)))
probe=$(q "$C2" "SELECT count(*) FROM migrate_probe")
if [ "$allok" = 1 ] && [ "$applied" = $((n + 1)) ] && [ "$order" = "$want" ] && [ "$probe" = 2 ]; then
  ok "4 concurrent migrators over $((n + 1)) migrations: once each, in order ($order)"
else
  notok "concurrent run: ok=$allok applied=$applied order=$order probe=$probe"
fi

# --- a failing migration leaves nothing behind (one transaction) and is reported
mkdir "$TMP/broken"
cp "$MIG"/[0-9]*.sql "$TMP/broken/"
cat >"$TMP/broken/${v1}_broken.sql" <<'SQL'
CREATE TABLE half_done (id integer);
SELECT 1 / 0;
SQL
run broken "$C" "$TMP/broken"
if [ "$(rc broken)" = 1 ] && grep -q "migration ${v1}_broken.sql: division by zero (SQLSTATE 22012)" "$TMP/broken.err" \
  && [ "$(q "$C" "SELECT to_regclass('half_done') IS NULL")" = t ] \
  && [ "$(q "$C" "SELECT count(*) FROM sigil_schema_migrations WHERE version = $n")" = 0 ]; then
  ok "a failing migration is rolled back entirely: $(cat "$TMP/broken.err")"
else
  notok "failing migration: rc $(rc broken): $(cat "$TMP/broken.err")"
fi

# --- a migration that ends the transaction itself is refused before it is recorded
mkdir "$TMP/commits"
cp "$MIG"/[0-9]*.sql "$TMP/commits/"
printf 'CREATE TABLE committed_early (id integer);\nCOMMIT;\n' >"$TMP/commits/${v1}_commits.sql"
run commits "$C" "$TMP/commits"
if [ "$(rc commits)" = 1 ] && grep -q "ended the migration's transaction itself" "$TMP/commits.err" \
  && [ "$(q "$C" "SELECT count(*) FROM sigil_schema_migrations WHERE version = $n")" = 0 ]; then
  ok "a migration with its own COMMIT is refused: $(cat "$TMP/commits.err")"
else
  notok "COMMIT in a migration: rc $(rc commits): $(cat "$TMP/commits.err")"
fi
q "$C" "DROP TABLE IF EXISTS committed_early" >/dev/null

# --- malformed directories
mkdir "$TMP/badname"
cp "$MIG"/[0-9]*.sql "$TMP/badname/"
echo "SELECT 1;" >"$TMP/badname/02_short.sql"
run badname "$C" "$TMP/badname"
[ "$(rc badname)" = 1 ] && grep -q "02_short.sql: migration file name: must start with a four-digit version" "$TMP/badname.err" \
  && ok "a malformed file name is refused: $(cat "$TMP/badname.err")" \
  || notok "bad name: rc $(rc badname): $(cat "$TMP/badname.err")"
mkdir "$TMP/gap"
cp "$MIG"/[0-9]*.sql "$TMP/gap/"
printf -v v3 '%04d' $((n + 1))
echo "SELECT 1;" >"$TMP/gap/${v3}_after_gap.sql"
run gap "$C" "$TMP/gap"
[ "$(rc gap)" = 1 ] && grep -q "migration $v1 is missing" "$TMP/gap.err" \
  && ok "a gap in versions is refused: $(cat "$TMP/gap.err")" \
  || notok "gap: rc $(rc gap): $(cat "$TMP/gap.err")"
run nodir "$C" "$TMP/no-such-dir"
[ "$(rc nodir)" = 1 ] && grep -q "cannot open directory" "$TMP/nodir.err" \
  && ok "a missing directory is reported" || notok "missing dir: $(cat "$TMP/nodir.err")"

# --- the database is down: a clear error, never the password
run down "host=$PGDIR/no-such-socket-dir user=sigil dbname=x password=sekrit-canary" "$MIG"
[ "$(rc down)" = 1 ] && grep -q "database unavailable" "$TMP/down.err" && ! grep -q sekrit "$TMP/down.err" \
  && ok "database down: $(cat "$TMP/down.err")" || notok "down: $(cat "$TMP/down.err")"

[ "$fail" -eq 0 ] && echo "ok - migrator integration" || echo "not ok - migrator integration"
exit "$fail"
