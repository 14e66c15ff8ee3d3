#!/usr/bin/env bash
# The admin API of a running sigil-server over its Unix socket, with curl and the CLI against a
# real PostgreSQL: entries created (team and TTLs from the policy), refused by the policy with
# the rule as the code, duplicates 409, strict JSON, get, list with filters and pages, batch
# create (atomic or not) and delete, PATCH judged by the policy, join tokens stored hashed,
# agents (list, get, ban, evict), the audit log, federation relationships, federated bundles,
# our bundle decoded by our decoder, and an audit row per change with the caller's uid.
# One line per check, then "N passed, N failed".
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
BIN=$BUILD/server/sigil-server
CHECK=$BUILD/test/server_bundle_check
for b in "$BIN" "$CHECK"; do
  [ -x "$b" ] || { echo "not ok - $b is not built"; echo "0 passed, 1 failed"; exit 1; }
done
PGDIR=$BUILD/pg-server-admin
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null || { echo "not ok - cannot start PostgreSQL"; exit 1; }
SOCK=$PGDIR/socket
DB=sigil_admin_$$
TMP=$(mktemp -d /tmp/sigil-adm.XXXXXX)
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
TD=example.org
ADMIN=$TMP/admin.sock
cat >"$TMP/server.yaml" <<EOF
trust_domain: $TD
database:
  conninfo: $C
  pool_size: 2
admin:
  socket_path: $ADMIN
ca:
  key_dir: $TMP/keys
EOF

# curl on the admin socket: method path [json body]; the body goes to $TMP/body, prints the status
api() {
  curl -s -o "$TMP/body" -w '%{http_code}' --unix-socket "$ADMIN" -X "$1" \
    ${3:+-H 'content-type: application/json' --data-binary "$3"} "http://localhost$2"
}
field() { python3 -c "import json,sys; d=json.load(open('$TMP/body')); print($1)"; }
body_has() { grep -q -- "$1" "$TMP/body"; }

"$BIN" run --config "$TMP/server.yaml" >"$TMP/server.log" 2>&1 &
SPID=$!
for _ in $(seq 1 200); do
  curl -sf --unix-socket "$ADMIN" http://localhost/live >/dev/null 2>&1 && break
  sleep 0.1
done
check "the server answers" curl -sf --unix-socket "$ADMIN" http://localhost/live

SHA=$(printf 'a%.0s' $(seq 64))
API_ENTRY='{"spiffe_id":"spiffe://example.org/prod/gcp/payments/api","parent_id":"spiffe://example.org/sigil/agent/node1","selectors":["unix:uid:1000","unix:path:/usr/bin/api","unix:sha256:'$SHA'"]}'

# --- create
check "POST /v1/entries is 201" test "$(api POST /v1/entries "$API_ENTRY")" = 201
ID=$(field 'd["id"]')
check "the entry has an id" test ${#ID} = 36
check "the team comes from the ID's team segment" test "$(field 'd["team"]')" = payments
check "the TTLs are the policy's defaults" test "$(field 'd["x509_svid_ttl"], d["jwt_svid_ttl"]')" = "3600 300"
check "the same entry again is 409 entry.exists" test "$(api POST /v1/entries "$API_ENTRY")" = 409
check "... with code entry.exists" body_has '"code":"entry.exists"'

# --- the policy refuses, naming the rule and the fix
st=$(api POST /v1/entries '{"spiffe_id":"spiffe://example.org/prod/gcp/payments/api2","parent_id":"spiffe://example.org/sigil/agent/node1","selectors":["unix:uid:1000"]}')
check "missing required selectors: 400" test "$st" = 400
check "... code policy.selectors.required" body_has '"code":"policy.selectors.required"'
check "... the message says what to add" body_has 'add unix:path'
st=$(api POST /v1/entries '{"spiffe_id":"spiffe://example.org/qa/gcp/payments/api","parent_id":"spiffe://example.org/sigil/agent/node1","selectors":["unix:uid:1000"]}')
check "an environment outside the scheme: 400 policy.id.segment_value" \
  test "$st/$(field 'd["error"]["code"]')" = "400/policy.id.segment_value"
st=$(api POST /v1/entries '{"spiffe_id":"spiffe://example.org/prod/aws/shop/web","parent_id":"spiffe://example.org/sigil/agent/n2","selectors":["k8s:ns:shop","k8s:sa:web","k8s:container-image:ghcr.io/x/web@sha256:'$SHA'","k8s:pod-name:web-1"]}')
check "a discouraged selector: 400 policy.selectors.discouraged" \
  test "$st/$(field 'd["error"]["code"]')" = "400/policy.selectors.discouraged"
st=$(api POST /v1/entries '{"spiffe_id":"spiffe://example.org/prod/aws/shop/web","parent_id":"spiffe://example.org/sigil/agent/n2","selectors":["k8s:ns:shop"],"x509_svid_ttl":"1h"}')
check "a wrongly typed field is 400" test "$st" = 400
st=$(api POST /v1/entries '{"spiffe_id":"spiffe://example.org/prod/aws/shop/web","parent_id":"spiffe://example.org/sigil/agent/n2","selectors":["k8s:ns:shop"],"colour":"red"}')
check "an unknown field is 400 and named" test "$st" = 400
check "... the message names it" body_has colour
check "bad JSON is 400" test "$(api POST /v1/entries '{"spiffe_id":')" = 400
check "duplicate JSON keys are 400" test "$(api POST /v1/entries '{"hint":"a","hint":"b"}')" = 400
check "nothing refused was stored" test "$(q "SELECT count(*) FROM entries")" = 1

# --- the CLI against the same server
"$BIN" entry create --admin-socket "$ADMIN" --spiffe-id spiffe://example.org/prod/aws/shop/web \
  --parent-id spiffe://example.org/sigil/agent/n2 --selector k8s:ns:shop --selector k8s:sa:web \
  --selector "k8s:container-image:ghcr.io/x/web@sha256:$SHA" >"$TMP/cli.out" 2>&1
check "sigil-server entry create (CLI) succeeds" test $? = 0
"$BIN" entry create --admin-socket "$ADMIN" --spiffe-id spiffe://example.org/prod/aws/shop/db \
  --parent-id spiffe://example.org/sigil/agent/n2 --selector k8s:ns:shop >"$TMP/cli2.out" 2>&1
check "the CLI reports a policy refusal (exit 1)" test $? = 1
check "... with the policy's message" grep -q "k8s entries need k8s:sa" "$TMP/cli2.out"

# --- get, list, pages, filters
check "GET /v1/entries/{id} is 200" test "$(api GET "/v1/entries/$ID")" = 200
check "... the same entry" test "$(field 'd["id"]')" = "$ID"
check "GET an unknown id is 404" test "$(api GET /v1/entries/00000000-0000-4000-8000-000000000000)" = 404
check "GET a malformed id is 4xx" test "$(api GET /v1/entries/nope | cut -c1)" = 4
check "list: 200 with both entries" test "$(api GET /v1/entries)/$(field 'len(d["entries"])')" = 200/2
check "list page 1 of size 1 has a next_page_token" test "$(api GET '/v1/entries?page_size=1')/$(field 'len(d["entries"])')" = 200/1
TOKEN=$(field 'd["next_page_token"]')
FIRST=$(field 'd["entries"][0]["id"]')
check "list page 2 (by token) holds the other entry" \
  test "$(api GET "/v1/entries?page_size=1&page_token=$TOKEN")/$(field 'd["entries"][0]["id"] != "'"$FIRST"'"')" = 200/True
check "filter by team" test "$(api GET '/v1/entries?team=shop')/$(field '[e["team"] for e in d["entries"]]')" = "200/['shop']"
check "filter by spiffe_id" test "$(api GET '/v1/entries?spiffe_id=spiffe://example.org/prod/gcp/payments/api')/$(field 'len(d["entries"])')" = 200/1
check "filter by selector (superset)" test "$(api GET '/v1/entries?selector=unix:uid:1000')/$(field 'len(d["entries"])')" = 200/1
check "filter by two selectors (superset: both)" test "$(api GET '/v1/entries?selector=unix:uid:1000&selector=unix:path:/usr/bin/api')/$(field 'len(d["entries"])')" = 200/1
check "two selectors, one absent: no entry" test "$(api GET '/v1/entries?selector=unix:uid:1000&selector=unix:path:/nope')/$(field 'len(d["entries"])')" = 200/0
check "match=any with two selectors finds both entries" test "$(api GET '/v1/entries?selector=unix:uid:1000&selector=k8s:ns:shop&match=any')/$(field 'len(d["entries"])')" = 200/2
check "a percent-encoded selector is decoded" test "$(api GET '/v1/entries?selector=unix%3Apath%3A%2Fusr%2Fbin%2Fapi')/$(field 'len(d["entries"])')" = 200/1
check "a bad selector is 400" test "$(api GET '/v1/entries?selector=nocolon')" = 400
check "the CLI shows entries by two selectors" bash -c "'$BIN' entry show --admin-socket '$ADMIN' --selector k8s:ns:shop --selector k8s:sa:web | grep -q 'Found 1 entry'"
check "page_size 0 is 400" test "$(api GET '/v1/entries?page_size=0')" = 400
check "match=bogus is 400" test "$(api GET '/v1/entries?selector=unix:uid:1&match=bogus')" = 400

# --- delete
check "DELETE /v1/entries/{id} is 204" test "$(api DELETE "/v1/entries/$ID")" = 204
check "DELETE again is 404" test "$(api DELETE "/v1/entries/$ID")" = 404
check "GET after delete is 404 entry.not_found" test "$(api GET "/v1/entries/$ID")/$(field 'd["error"]["code"]')" = 404/entry.not_found

# --- batchCreate: one result per item, the policy per item, atomic all or nothing
E1='{"spiffe_id":"spiffe://example.org/prod/gcp/team1/w1","parent_id":"spiffe://example.org/sigil/agent/n","selectors":["unix:uid:1","unix:path:/bin/a","unix:sha256:'$SHA'"]}'
E2='{"spiffe_id":"spiffe://example.org/qa/gcp/team1/w2","parent_id":"spiffe://example.org/sigil/agent/n","selectors":["unix:uid:1"]}'
E3='{"spiffe_id":"spiffe://example.org/prod/gcp/team1/w3","parent_id":"spiffe://example.org/sigil/agent/n","selectors":["unix:uid:3","unix:path:/bin/c","unix:sha256:'$SHA'"]}'
check "batchCreate is 200" test "$(api POST /v1/entries:batchCreate "{\"entries\":[$E1,$E2]}")" = 200
check "... item 1 created (201), item 2 refused by the policy (400)" \
  test "$(field '[r["status"] for r in d["results"]]')" = "[201, 400]"
check "... item 2 names the rule" test "$(field 'd["results"][1]["error"]["code"]')" = policy.id.segment_value
W1=$(field 'd["results"][0]["entry"]["id"]')
check "atomic batchCreate with a bad item writes nothing" \
  test "$(api POST /v1/entries:batchCreate "{\"atomic\":true,\"entries\":[$E3,$E2]}")/$(field '[r["status"] for r in d["results"]]')" = "200/[424, 400]"
check "... the good item says batch.aborted" test "$(field 'd["results"][0]["error"]["code"]')" = batch.aborted
check "... and it is not stored" test "$(q "SELECT count(*) FROM entries WHERE spiffe_id LIKE '%/w3'")" = 0
check "batchCreate of an existing entry: 409 with its id" \
  test "$(api POST /v1/entries:batchCreate "{\"entries\":[$E1]}")/$(field 'd["results"][0]["status"], d["results"][0]["id"]')" = "200/409 $W1"
check "batchCreate with an unknown member is 400" test "$(api POST /v1/entries:batchCreate "{\"entries\":[],\"x\":1}")" = 400

# --- PATCH: the policy judges the result
check "PATCH x509_svid_ttl within bounds is 200" test "$(api PATCH "/v1/entries/$W1" '{"x509_svid_ttl":7200}')/$(field 'd["x509_svid_ttl"]')" = 200/7200
check "PATCH x509_svid_ttl above the bound is 400 policy.ttl.x509" \
  test "$(api PATCH "/v1/entries/$W1" '{"x509_svid_ttl":999999}')/$(field 'd["error"]["code"]')" = 400/policy.ttl.x509
check "PATCH to an ID outside the scheme is 400" test "$(api PATCH "/v1/entries/$W1" '{"spiffe_id":"spiffe://example.org/qa/gcp/team1/w1"}')" = 400
check "PATCH of the SPIFFE ID moves the entry to the new team" \
  test "$(api PATCH "/v1/entries/$W1" '{"spiffe_id":"spiffe://example.org/dev/gcp/team2/w1"}')/$(field 'd["team"]')" = 200/team2
check "PATCH with an unknown field is 400" test "$(api PATCH "/v1/entries/$W1" '{"colour":"red"}')" = 400
check "PATCH of an unknown entry is 404" test "$(api PATCH /v1/entries/00000000-0000-4000-8000-000000000000 '{"hint":"x"}')" = 404

# --- PATCH is one transaction: read (locked), policy on the merged result, write
# concurrent PATCHes of different fields all land (none lost between read and write)
papi() { curl -s -o /dev/null -w '%{http_code}' --unix-socket "$ADMIN" -X PATCH \
  -H 'content-type: application/json' --data-binary "$2" "http://localhost/v1/entries/$1"; }
lost=0
for i in $(seq 1 10); do
  papi "$W1" '{"hint":"h'"$i"'"}' >"$TMP/p1" &
  p1=$!
  papi "$W1" '{"x509_svid_ttl":'"$((3600 + i))"'}' >"$TMP/p2" &
  p2=$!
  papi "$W1" '{"dns_names":["w'"$i"'.example.org"]}' >"$TMP/p3" &
  p3=$!
  wait $p1 $p2 $p3
  [ "$(cat "$TMP/p1")$(cat "$TMP/p2")$(cat "$TMP/p3")" = 200200200 ] || lost=$((lost + 1))
  [ "$(q "SELECT hint || ' ' || x509_ttl_seconds FROM entries WHERE id = '$W1'")" = "h$i $((3600 + i))" ] ||
    lost=$((lost + 1))
  [ "$(q "SELECT string_agg(name, ',') FROM entry_dns_names WHERE entry_id = '$W1'")" = "w$i.example.org" ] ||
    lost=$((lost + 1))
done
check "10 rounds of 3 concurrent PATCHes of different fields: every one 200 and stored" test "$lost" = 0
# a row the policy now refuses (written before the policy was tightened): a PATCH that does not
# touch the bad field is still refused, because the policy judges the merged result
q "INSERT INTO entry_selectors (entry_id, type, value) VALUES ('$W1', 'unix', 'pid:42')" >/dev/null
q "UPDATE entries SET selectors_canon = selectors_canon || E'\\nunix:pid:42' WHERE id = '$W1'" >/dev/null
check "PATCH of the hint alone on an entry whose stored selectors break the policy: 400 policy.selectors.discouraged" \
  test "$(api PATCH "/v1/entries/$W1" '{"hint":"ignored"}')/$(field 'd["error"]["code"]')" = 400/policy.selectors.discouraged
check "... and nothing was written" test "$(q "SELECT hint FROM entries WHERE id = '$W1'")" = h10
check "PATCH replacing the selectors with allowed ones is 200" \
  test "$(api PATCH "/v1/entries/$W1" '{"selectors":["unix:uid:1","unix:path:/bin/a","unix:sha256:'$SHA'"]}')" = 200
# the race itself: another transaction holds the row, the PATCH waits on its lock, the other one
# commits selectors the policy refuses; the PATCH must judge what it then reads (refuse), not
# what it might have read before waiting
mkfifo "$TMP/locker"
psql "$C" -v ON_ERROR_STOP=1 -q <"$TMP/locker" >"$TMP/locker.out" 2>&1 &
LPID=$!
exec 7>"$TMP/locker"
echo "BEGIN; SELECT 1 FROM entries WHERE id = '$W1' FOR UPDATE;" >&7
for _ in $(seq 1 100); do
  [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'")" -ge 1 ] && break
  sleep 0.05
done
curl -s -o "$TMP/race.body" -w '%{http_code}' --unix-socket "$ADMIN" -X PATCH \
  -H 'content-type: application/json' --data-binary '{"hint":"raced"}' \
  "http://localhost/v1/entries/$W1" >"$TMP/race.status" &
RPID=$!
waited=no
for _ in $(seq 1 100); do
  [ "$(q "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")" -ge 1 ] &&
    { waited=yes; break; }
  sleep 0.05
done
check "the PATCH waits on the row lock of the other transaction" test "$waited" = yes
echo "INSERT INTO entry_selectors (entry_id, type, value) VALUES ('$W1', 'unix', 'pid:43');
UPDATE entries SET selectors_canon = selectors_canon || E'\\nunix:pid:43' WHERE id = '$W1'; COMMIT;" >&7
exec 7>&-
wait "$RPID"
wait "$LPID"
check "the waiting PATCH judges the row committed meanwhile: 400 policy.selectors.discouraged" \
  test "$(cat "$TMP/race.status")/$(python3 -c "import json; print(json.load(open('$TMP/race.body'))['error']['code'])")" = 400/policy.selectors.discouraged
check "... and did not write its hint" test "$(q "SELECT hint FROM entries WHERE id = '$W1'")" = h10
check "PATCH replacing the selectors again is 200" \
  test "$(api PATCH "/v1/entries/$W1" '{"selectors":["unix:uid:1","unix:path:/bin/a","unix:sha256:'$SHA'"]}')" = 200

# --- batchDelete
check "batchDelete is 200 with one result per id" \
  test "$(api POST /v1/entries:batchDelete "{\"ids\":[\"$W1\",\"00000000-0000-4000-8000-000000000000\"]}")/$(field '[r["status"] for r in d["results"]]')" = "200/[204, 404]"

# --- join tokens: shown once, stored hashed
check "POST /v1/join-tokens is 201" test "$(api POST /v1/join-tokens '{"ttl_seconds":120,"agent_path":"/sigil/agent/node-9"}')" = 201
TOK=$(field 'd["token"]')
check "the token is 43 base64url characters" test "$(printf %s "$TOK" | grep -cE '^[A-Za-z0-9_-]{43}$')" = 1
check "the answer names the agent ID" test "$(field 'd["agent_id"]')" = spiffe://example.org/sigil/agent/node-9
check "the database holds only the token's SHA-256" \
  test "$(q "SELECT count(*) FROM join_tokens WHERE token_sha256 = sha256(convert_to('$TOK', 'UTF8'))")" = 1
check "a TTL over a day is 400" test "$(api POST /v1/join-tokens '{"ttl_seconds":90000}')" = 400
check "the CLI generates a token" "$BIN" token generate --admin-socket "$ADMIN" --ttl 5m

# --- agents
q "INSERT INTO agents (spiffe_id, attestation_type, serial, expires_at)
   VALUES ('spiffe://example.org/sigil/agent/n1', 'join_token', '01', now() + interval '1 hour')" >/dev/null
check "GET /v1/agents lists the agent" test "$(api GET /v1/agents)/$(field 'len(d["agents"])')" = 200/1
check "GET /v1/agent?spiffe_id= is 200" test "$(api GET '/v1/agent?spiffe_id=spiffe://example.org/sigil/agent/n1')" = 200
check "GET /v1/agent of an unknown agent is 404" test "$(api GET '/v1/agent?spiffe_id=spiffe://example.org/sigil/agent/zz')" = 404
check "GET /v1/agent without spiffe_id is 400" test "$(api GET /v1/agent)" = 400
check "ban is 200 and the agent is banned" \
  test "$(api POST /v1/agents:ban '{"spiffe_id":"spiffe://example.org/sigil/agent/n1"}')/$(field 'd["banned"]')" = 200/True
check "list banned=true finds it" test "$(api GET '/v1/agents?banned=true')/$(field 'len(d["agents"])')" = 200/1
check "banned=maybe is 400" test "$(api GET '/v1/agents?banned=maybe')" = 400
check "evict is 204" test "$(api POST /v1/agents:evict '{"spiffe_id":"spiffe://example.org/sigil/agent/n1"}')" = 204
check "evict again is 404" test "$(api POST /v1/agents:evict '{"spiffe_id":"spiffe://example.org/sigil/agent/n1"}')" = 404

# --- audit list
check "GET /v1/audit is 200, newest first" test "$(api GET '/v1/audit?page_size=1')/$(field 'd["records"][0]["action"]')" = 200/agent.evict
check "... with a next page" test "$(field '"next_page_token" in d')" = True
check "filter by object_type" test "$(api GET '/v1/audit?object_type=join_token')/$(field 'sorted(set(r["action"] for r in d["records"]))')" = "200/['token.create']"
check "the CLI lists the audit log" "$BIN" audit list --admin-socket "$ADMIN"

# --- federation relationships
FED='{"trust_domain":"other.org","bundle_endpoint_url":"https://other.org/bundle","profile":"https_web"}'
check "POST a federation relationship is 201" test "$(api POST /v1/federation-relationships "$FED")" = 201
check "the same again is 409" test "$(api POST /v1/federation-relationships "$FED")" = 409
check "https_spiffe without endpoint_spiffe_id is 400" \
  test "$(api POST /v1/federation-relationships '{"trust_domain":"x.org","bundle_endpoint_url":"https://x.org/b","profile":"https_spiffe"}')" = 400
check "list: one relationship" test "$(api GET /v1/federation-relationships)/$(field '[f["trust_domain"] for f in d["relationships"]]')" = "200/['other.org']"
check "the CLI lists it" bash -c "'$BIN' federation list --admin-socket '$ADMIN' | grep -q other.org"
check "DELETE it is 204" test "$(api DELETE /v1/federation-relationships/other.org)" = 204
check "DELETE again is 404" test "$(api DELETE /v1/federation-relationships/other.org)" = 404
check "DELETE of a malformed trust domain is 404" test "$(api DELETE /v1/federation-relationships/Bad..Name)" = 404

# --- federated bundles
check "PUT a federated bundle is 200" test "$(api PUT /v1/federated-bundles/other.org '{"keys":[],"spiffe_sequence":5}')" = 200
check "... and answers the stored bundle (sequence 5)" test "$(field 'd["spiffe_sequence"]')" = 5
check "GET it back" test "$(api GET /v1/federated-bundles/other.org)/$(field 'd["spiffe_sequence"]')" = 200/5
check "the bundle map lists it" test "$(api GET /v1/federated-bundles)/$(field 'list(d["trust_domains"])')" = "200/['other.org']"
check "a federated bundle for our own trust domain is refused" test "$(api PUT /v1/federated-bundles/$TD '{"keys":[]}' | cut -c1)" = 4
check "our own bundle is not a federated one (404)" test "$(api GET /v1/federated-bundles/$TD)" = 404
check "a malformed bundle is 400" test "$(api PUT /v1/federated-bundles/other.org '{"keys":"no"}')" = 400
check "DELETE the federated bundle is 204" test "$(api DELETE /v1/federated-bundles/other.org)" = 204
check "GET it after delete is 404" test "$(api GET /v1/federated-bundles/other.org)" = 404

# --- our bundle
check "GET /v1/bundle is 200" test "$(api GET /v1/bundle)" = 200
"$CHECK" "$TD" <"$TMP/body" >"$TMP/bundle.txt" 2>&1
check "the bundle decodes with our decoder (1 root, 1 JWT key, sequence 1)" \
  grep -qz "x509 1.jwt 1.sequence 1" "$TMP/bundle.txt"

# --- node aliases: an entry parented to the server ID groups nodes by their node selectors
SRV=spiffe://example.org/sigil/server
ALIAS='{"spiffe_id":"spiffe://example.org/sigil/node/rack-7","parent_id":"'$SRV'","selectors":["x509pop:subject:cn:node1"]}'
check "a node alias (parent = the server ID, x509pop selector) is 201" test "$(api POST /v1/entries "$ALIAS")" = 201
check "... and says node_alias: true" test "$(field 'd["node_alias"]')" = True
AID=$(field 'd["id"]')
check "GET shows node_alias: true" test "$(api GET "/v1/entries/$AID")/$(field 'd["node_alias"]')" = 200/True
check "a node alias with a unix selector: 400 policy.node_alias.selectors" \
  test "$(api POST /v1/entries '{"spiffe_id":"spiffe://example.org/sigil/node/r8","parent_id":"'$SRV'","selectors":["join_token:abc","unix:uid:0"]}')/$(field 'd["error"]["code"]')" = 400/policy.node_alias.selectors
check "... the message names the selector and what to use" body_has 'unix:uid:0 is not one (use join_token: or x509pop: selectors'
check "a node alias whose ID is a workload's: 400 policy.node_alias.id" \
  test "$(api POST /v1/entries '{"spiffe_id":"spiffe://example.org/prod/gcp/team1/nodes","parent_id":"'$SRV'","selectors":["join_token:abc"]}')/$(field 'd["error"]["code"]')" = 400/policy.node_alias.id
check "... the message says how to name it" body_has 'name it spiffe://example.org/sigil/node/<name>'
check "a workload entry with an x509pop selector: 400 policy.selectors.node_type" \
  test "$(api POST /v1/entries '{"spiffe_id":"spiffe://example.org/prod/gcp/team1/w9","parent_id":"spiffe://example.org/sigil/agent/n","selectors":["unix:uid:9","unix:path:/bin/z","unix:sha256:'$SHA'","x509pop:subject:cn:node1"]}')/$(field 'd["error"]["code"]')" = 400/policy.selectors.node_type
check "a workload entry named like a node alias: 400 policy.id.node_alias" \
  test "$(api POST /v1/entries '{"spiffe_id":"spiffe://example.org/sigil/node/r9","parent_id":"spiffe://example.org/sigil/agent/n","selectors":["unix:uid:9","unix:path:/bin/z","unix:sha256:'$SHA'"]}')/$(field 'd["error"]["code"]')" = 400/policy.id.node_alias
check "a workload parented to the alias ID is 201, node_alias: false" \
  test "$(api POST /v1/entries '{"spiffe_id":"spiffe://example.org/prod/gcp/team1/on-rack","parent_id":"spiffe://example.org/sigil/node/rack-7","selectors":["unix:uid:7","unix:path:/bin/r","unix:sha256:'$SHA'"]}')/$(field 'd["node_alias"]')" = 201/False
RID=$(field 'd["id"]')
check "PATCH of the alias's parent to an agent re-judges it: 400 policy.id.node_alias" \
  test "$(api PATCH "/v1/entries/$AID" '{"parent_id":"spiffe://example.org/sigil/agent/n"}')/$(field 'd["error"]["code"]')" = 400/policy.id.node_alias
check "PATCH of a workload's parent to the server ID: 400 policy.node_alias.id" \
  test "$(api PATCH "/v1/entries/$RID" '{"parent_id":"'$SRV'"}')/$(field 'd["error"]["code"]')" = 400/policy.node_alias.id
check "... neither PATCH was stored" \
  test "$(q "SELECT string_agg(parent_id, ' ' ORDER BY spiffe_id) FROM entries WHERE id IN ('$AID', '$RID')")" = "spiffe://example.org/sigil/node/rack-7 $SRV"
check "PATCH of the alias's selectors to another node selector is 200" \
  test "$(api PATCH "/v1/entries/$AID" '{"selectors":["x509pop:ca:fingerprint:abc"]}')/$(field 'd["node_alias"]')" = 200/True
check "the CLI marks the alias" bash -c "'$BIN' entry show --admin-socket '$ADMIN' --id '$AID' | grep -q 'Node alias *: yes'"
check "entry create --node makes a node alias (parent from \$SIGIL_TRUST_DOMAIN)" bash -c "SIGIL_TRUST_DOMAIN=$TD '$BIN' entry create --admin-socket '$ADMIN' --node --spiffe-id /sigil/node/cli --selector join_token:xyz >'$TMP/node.out' && grep -q 'Parent ID *: $SRV' '$TMP/node.out' && grep -q 'Node alias *: yes' '$TMP/node.out'"
check "entry create --node without \$SIGIL_TRUST_DOMAIN takes a whole --spiffe-id's trust domain" bash -c "env -u SIGIL_TRUST_DOMAIN '$BIN' entry create --admin-socket '$ADMIN' --node --spiffe-id spiffe://$TD/sigil/node/cli2 --selector join_token:xyz2 | grep -q 'Parent ID *: $SRV'"
check "entry create --node with --parent-id is a usage error" bash -c "SIGIL_TRUST_DOMAIN=$TD '$BIN' entry create --admin-socket '$ADMIN' --node --parent-id /sigil/agent/n --spiffe-id /sigil/node/c2 --selector join_token:xyz 2>&1 | grep -q 'node and --parent-id together'"
check "entry create --node with a unix selector shows the policy's refusal" bash -c "SIGIL_TRUST_DOMAIN=$TD '$BIN' entry create --admin-socket '$ADMIN' --node --spiffe-id /sigil/node/c3 --selector unix:uid:0 2>&1 | grep -q 'policy.node_alias.selectors\\|a node alias matches node attestation selectors'"
check "DELETE the workload and the alias" test "$(api DELETE "/v1/entries/$RID")/$(api DELETE "/v1/entries/$AID")" = 204/204

# --- the audit log
ME="uid:$(id -u)"
check "each change wrote an audit row with the caller's uid" \
  test "$(q "SELECT string_agg(DISTINCT action, ',' ORDER BY action) FROM audit_log WHERE actor = '$ME'")" = "agent.ban,agent.evict,bundle.delete,bundle.set,entry.create,entry.delete,entry.update,federation.create,federation.delete,token.create"
check "no audit row from anyone else" test "$(q "SELECT count(*) FROM audit_log WHERE actor <> '$ME'")" = 0

check "POST on a read-only path is 405" test "$(api POST /v1/bundle '{}')" = 405
kill -TERM "$SPID"
wait "$SPID"
check "the server stops with exit 0" test $? = 0
SPID=

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
