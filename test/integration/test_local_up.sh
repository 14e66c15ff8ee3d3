#!/usr/bin/env bash
# Issue 5's must-show: deploy/local/up then deploy/local/down on a clean checkout (a git clone
# of the source tree's HEAD: only committed files), with SIGIL_LOCAL_DIR in a temp dir.
# The printed SPIFFE ID is the registered entry's (sigil-server entry show); the env file has
# every variable and, sourced in an empty environment, lets sigil-server entry show,
# sigil-agent api fetch x509 and psql work with no flags. A second up reuses everything (same
# pids, no new entry, no new attestation, the ID printed again); after kill -9 of the agent,
# up restarts only the agent (saved SVID, no join token), after kill -9 of the server only the
# server (same CA keys); another sigil-agent binary gets the
# entry updated, not duplicated; down stops agent, server and
# PostgreSQL (every pid gone, pid files removed, no process of ours by pgrep -f on the temp
# dir); down --purge deletes the directory.
# The build: up uses SIGIL_BUILD_DIR, i.e. the build ctest runs in (normal or ASan/UBSan: the
# server and agent run sanitized then), instead of building the clone, to keep CI time sane;
# SIGIL_SKIP_DEPS=1 skips deploy/install-deps (no network in tests). Everything else is up's
# full path. One line per check, then "N passed, N failed".
set -uo pipefail
. "$(dirname "$0")/lib/common.sh"
SRV=$BUILD/server/sigil-server
AGENT=$BUILD/agent/sigil-agent
need_built "$SRV" "$AGENT"
command -v git >/dev/null || { echo "not ok - git is missing"; echo "0 passed, 1 failed"; exit 1; }

TMP=$(mktemp -d /tmp/sigil-localup.XXXXXX)
chmod 0755 "$TMP"
CLONE=$TMP/src
LOCAL=$TMP/local
export SIGIL_LOCAL_DIR=$LOCAL SIGIL_BUILD_DIR=$BUILD SIGIL_SKIP_DEPS=1
unset SIGIL_TRUST_DOMAIN SIGIL_ADMIN_SOCKET SIGIL_AGENT_ID SPIFFE_ENDPOINT_SOCKET
cleanup() {
  local f p
  if [ -x "$CLONE/deploy/local/down" ] && [ -d "$LOCAL" ]; then
    "$CLONE/deploy/local/down" >/dev/null 2>&1
  fi
  for f in "$LOCAL"/run/*.pid; do # whatever down did not stop (if it is ours)
    sigil_pid_alive "$f" "$LOCAL/" && p=$(cat "$f") && kill -KILL "$p" 2>/dev/null
  done
  [ -d "$LOCAL/pg/data" ] && "$SRC/deploy/local/pg" stop "$LOCAL/pg" >/dev/null 2>&1
  rm -rf "$TMP"
}
trap cleanup EXIT

# up NAME: runs the clone's deploy/local/up, output in $TMP/NAME.out, status in $TMP/NAME.rc
up() {
  (cd "$CLONE" && deploy/local/up) >"$TMP/$1.out" 2>&1
  echo $? >"$TMP/$1.rc"
}
printed_id() { sed -nE 's/^SPIFFE ID: (spiffe:[^ ]*)$/\1/p' "$TMP/$1.out"; }
pidof_() { cat "$LOCAL/run/$1.pid" 2>/dev/null; }
attestations() { grep -c 'node attested' "$LOCAL/log/agent.log"; }
# in_env CMD...: runs CMD in an empty environment where only the env file was sourced
in_env() { env -i PATH=/usr/bin:/bin HOME="$TMP" bash -c '. "$0/env" && exec "$@"' "$LOCAL" "$@"; }

git clone -q "$SRC" "$CLONE" 2>"$TMP/clone.err"
check "git clone of the source tree's HEAD" test -x "$CLONE/deploy/local/up" || { cat "$TMP/clone.err"; finish; }
check "up --help" bash -c "'$CLONE/deploy/local/up' --help | grep -q SIGIL_LOCAL_DIR"
check "down --help" bash -c "'$CLONE/deploy/local/down' --help | grep -q -- --purge"

# --- the first run
up up1
check "deploy/local/up: exit 0" test "$(cat "$TMP/up1.rc")" = 0 || sed 's/^/# /' "$TMP/up1.out"
ID=$(printed_id up1)
check "... prints a SPIFFE ID ($ID)" test -n "$ID"
check "... prints the X.509-SVID's expiry, its chain (subject/issuer) and openssl verify's OK" \
  test "$(grep -c -e '^expires: ' -e '^chain (2 certificates' -e '^    issuer:  .*Sigil server CA' -e '^openssl verify against the bundle .*: OK$' "$TMP/up1.out")" = 4
check "... and the JWT-SVID's sub (the same ID) and aud" grep -qF "JWT-SVID:  sub $ID, aud sigil-local" "$TMP/up1.out"
check "... ends saying who the workload is" bash -c "tail -n 7 '$TMP/up1.out' | grep -qF 'ready: ' && tail -n 7 '$TMP/up1.out' | grep -qF '$ID'"
check "up ran inside the temp dir, not the clone's .local" test ! -e "$CLONE/.local" -a -f "$LOCAL/server.yaml"

check "the env file is mode 0644" test "$(stat -c %a "$LOCAL/env")" = 644
for v in SPIFFE_ENDPOINT_SOCKET SIGIL_ADMIN_SOCKET SIGIL_TRUST_DOMAIN SIGIL_AGENT_ID SIGIL_DATABASE PGHOST PGUSER PGDATABASE; do
  check "... has $v" grep -q "^$v=" "$LOCAL/env"
done
check "... SPIFFE_ENDPOINT_SOCKET=unix:///<absolute path>" grep -qx "SPIFFE_ENDPOINT_SOCKET=unix://$LOCAL/run/api.sock" "$LOCAL/env"
in_env sh -c 'printf "%s\n" "$SIGIL_ADMIN_SOCKET" "$SIGIL_TRUST_DOMAIN" "$SIGIL_AGENT_ID" "$SIGIL_DATABASE"' >"$TMP/vars.out" 2>&1
check "... sourced by a shell: the admin socket, trust domain, agent ID and conninfo" \
  test "$(cat "$TMP/vars.out")" = "$(printf '%s\n' "$LOCAL/run/admin.sock" example.org spiffe://example.org/sigil/agent/local "host=$LOCAL/pg/socket dbname=sigil user=sigil")"

in_env "$SRV" entry show --output json >"$TMP/entries.json" 2>"$TMP/entries.err"
check "sourced env: sigil-server entry show works with no flags" test $? = 0 || sed 's/^/# /' "$TMP/entries.err"
# the entry up made: this uid, parented to the agent
REG=$(/usr/bin/python3 -c '
import json, sys
es = [e for e in json.load(open(sys.argv[1]))["entries"]
      if "unix:uid:" + sys.argv[2] in e["selectors"] and e["parent_id"] == sys.argv[3]]
print(len(es), es[0]["spiffe_id"] if es else "")' "$TMP/entries.json" "$(id -u)" spiffe://example.org/sigil/agent/local 2>/dev/null)
check "one entry for uid $(id -u) under the agent's ID" test "${REG%% *}" = 1
check "the printed SPIFFE ID is the registered one (${REG#* })" test -n "$ID" -a "${REG#* }" = "$ID"
in_env "$AGENT" api fetch x509 >"$TMP/fetch.out" 2>&1
check "sourced env: sigil-agent api fetch x509 works with no flags" test $? = 0
check "... and returns $ID" grep -qF "$ID" "$TMP/fetch.out"
IDPATH=${ID#spiffe://example.org}
in_env "$SRV" entry show --spiffe-id "$IDPATH" >"$TMP/showpath.out" 2>&1
check "sourced env: entry show --spiffe-id $IDPATH (a path in \$SIGIL_TRUST_DOMAIN) finds it" grep -q "^SPIFFE ID *: $ID\$" "$TMP/showpath.out"
in_env "$AGENT" api fetch jwt --audience t --spiffe-id "$IDPATH" >"$TMP/jwtpath.out" 2>&1
check "sourced env: api fetch jwt --spiffe-id $IDPATH gets its JWT-SVID" grep -qF "token($ID):" "$TMP/jwtpath.out"
in_env env -u SIGIL_TRUST_DOMAIN "$AGENT" api fetch jwt --audience t --spiffe-id "$IDPATH" >"$TMP/jwtnotd.out" 2>&1
rc=$?
check "... without SIGIL_TRUST_DOMAIN: usage error (2) saying to set it" \
  bash -c "test $rc = 2 && grep -q 'set SIGIL_TRUST_DOMAIN' '$TMP/jwtnotd.out'"
check "sourced env: psql reaches the database" bash -c "test \"\$(env -i PATH=/usr/bin:/bin bash -c '. \"$LOCAL/env\" && psql -tAc \"SELECT count(*) FROM entries\"')\" -ge 1"

SPID1=$(pidof_ server)
APID1=$(pidof_ agent)
check "server and agent run (pids $SPID1, $APID1 from the pid files)" kill -0 "$SPID1" "$APID1"
check "the agent attested once" test "$(attestations)" = 1
check "the admin socket is 0600, the CA key dir 0700" \
  test "$(stat -c %a "$LOCAL/run/admin.sock")/$(stat -c %a "$LOCAL/server")" = 600/700

# --- the second run reuses everything
up up2
check "a second up: exit 0" test "$(cat "$TMP/up2.rc")" = 0 || sed 's/^/# /' "$TMP/up2.out"
check "... same server and agent pids" test "$(pidof_ server) $(pidof_ agent)" = "$SPID1 $APID1"
check "... says it reused them and the entry" \
  test "$(grep -c -e '^sigil-server: running .*reused$' -e '^sigil-agent: running .*reused$' -e '^entry: .* exists, reused$' "$TMP/up2.out")" = 3
check "... no new join token" bash -c "! grep -q 'single-use join token' '$TMP/up2.out'"
in_env "$SRV" entry show --output json >"$TMP/entries2.json" 2>&1
check "... no new entry" test "$(/usr/bin/python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["entries"]))' "$TMP/entries2.json")" = 1
check "... no new attestation (agent log)" test "$(attestations)" = 1
check "... prints the same SPIFFE ID" test "$(printed_id up2)" = "$ID"

# --- the agent killed: up restarts only the agent
kill -KILL "$APID1"
until_ok 10 bash -c "! kill -0 $APID1"
up up3
check "up after kill -9 of the agent: exit 0" test "$(cat "$TMP/up3.rc")" = 0 || sed 's/^/# /' "$TMP/up3.out"
APID3=$(pidof_ agent)
check "... the server is the same process" test "$(pidof_ server)" = "$SPID1"
check "... a new agent runs (pid $APID3)" bash -c "test -n '$APID3' -a '$APID3' != '$APID1' && kill -0 '$APID3'"
check "... the stale pid file was said and cleaned" grep -q '^sigil-agent: stale pid file' "$TMP/up3.out"
check "... the agent used its saved SVID: no token, no new attestation" \
  test "$(grep -c 'single-use join token' "$TMP/up3.out")/$(attestations)" = 0/1
check "... prints the same SPIFFE ID" test "$(printed_id up3)" = "$ID"

# --- the server killed: up restarts only the server, with the same CA keys
cp "$LOCAL/bundle.pem" "$TMP/bundle-before.pem"
kill -KILL "$SPID1"
until_ok 10 bash -c "! kill -0 $SPID1"
up up5
check "up after kill -9 of the server: exit 0" test "$(cat "$TMP/up5.rc")" = 0 || sed 's/^/# /' "$TMP/up5.out"
SPID5=$(pidof_ server)
check "... a new server runs (pid $SPID5), the agent is the same process" \
  bash -c "test -n '$SPID5' -a '$SPID5' != '$SPID1' -a '$(pidof_ agent)' = '$APID3' && kill -0 '$SPID5' '$APID3'"
check "... its CA is the same (bundle unchanged: keys reused)" cmp -s "$TMP/bundle-before.pem" "$LOCAL/bundle.pem"
check "... prints the same SPIFFE ID" test "$(printed_id up5)" = "$ID"
check "... still one attestation" test "$(attestations)" = 1
SPID1=$SPID5

# --- another sigil-agent binary (a rebuild, another build dir): the entry follows it
mkdir -p "$TMP/build2/agent" "$TMP/build2/server"
cp "$AGENT" "$TMP/build2/agent/sigil-agent"
ln -s "$SRV" "$TMP/build2/server/sigil-server"
SIGIL_BUILD_DIR=$TMP/build2 up up4
check "up with another sigil-agent binary: exit 0" test "$(cat "$TMP/up4.rc")" = 0 || sed 's/^/# /' "$TMP/up4.out"
check "... the entry is updated, not duplicated" grep -q '^entry: .* updated' "$TMP/up4.out"
in_env "$SRV" entry show --output json >"$TMP/entries4.json" 2>&1
check "... still one entry, naming the new path" test "$(/usr/bin/python3 -c '
import json, sys
es = json.load(open(sys.argv[1]))["entries"]
print(len(es), "unix:path:" + sys.argv[2] in es[0]["selectors"])' "$TMP/entries4.json" "$TMP/build2/agent/sigil-agent")" = "1 True"
check "... the new binary gets the same SPIFFE ID" test "$(printed_id up4)" = "$ID"
check "... server and agent untouched" test "$(pidof_ server) $(pidof_ agent)" = "$SPID1 $APID3"

# --- down
PGPID=$(head -n1 "$LOCAL/pg/data/postmaster.pid" 2>/dev/null)
check "PostgreSQL runs (postmaster pid $PGPID)" kill -0 "$PGPID"
(cd "$CLONE" && deploy/local/down) >"$TMP/down.out" 2>&1
check "deploy/local/down: exit 0" test $? = 0 || sed 's/^/# /' "$TMP/down.out"
check "... says what it stopped" test "$(grep -c -e "^sigil-agent: stopped (pid $APID3)" -e "^sigil-server: stopped (pid $SPID1)" -e '^PostgreSQL: stopped' "$TMP/down.out")" = 3
# gone PID: no such process, or only a zombie init has yet to reap
gone() { case $(ps -o stat= -p "$1" 2>/dev/null) in '' | Z*) return 0 ;; *) return 1 ;; esac; }
check "... the agent is gone" gone "$APID3"
check "... the server is gone" gone "$SPID1"
check "... PostgreSQL is stopped" gone "$PGPID"
{ gone "$APID3" && gone "$SPID1" && gone "$PGPID"; } || ps -o pid,stat,args -p "$APID3,$SPID1,$PGPID" | sed 's/^/# /'
check "... the pid files are removed" test -z "$(ls "$LOCAL/run/"*.pid 2>/dev/null)"
left=$(pgrep -f "$TMP") # (not in a check: its bash -c's command line would name $TMP)
check "... no process of ours is left (pgrep -f $TMP)" test -z "$left"
[ -n "$left" ] && ps -o pid,stat,args -p "$(echo $left | tr ' ' ,)" | sed 's/^/# left: /'
# a pid file naming a live process that is not ours: down leaves it alone
sleep 300 &
OTHER=$!
echo "$OTHER" >"$LOCAL/run/agent.pid"
(cd "$CLONE" && deploy/local/down) >"$TMP/down2.out" 2>&1
check "down with a pid file naming another program: says so, leaves it running" \
  bash -c "grep -q '^sigil-agent: pid $OTHER is not running it' '$TMP/down2.out' && kill -0 $OTHER"
kill "$OTHER"
wait "$OTHER" 2>/dev/null
(cd "$CLONE" && deploy/local/down --purge) >"$TMP/purge.out" 2>&1
check "down --purge deletes the directory" test ! -e "$LOCAL"
finish
