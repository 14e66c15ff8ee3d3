#!/usr/bin/env bash
# The admin commands of sigil-server (the CLI) against a real running server and PostgreSQL:
# entry create / show (pages, filters, JSON) / update / delete, refusals by the local checks
# and by the server's policy with their messages and exit codes, import of JSON lines and of a
# SPIRE file (and its re-run), join tokens, agents (list, show, ban, evict), the audit log, the
# bundle as PEM that openssl reads, federated bundles and federation relationships; IDs given as
# paths in $SIGIL_TRUST_DOMAIN and entry create's parent from $SIGIL_AGENT_ID.
# One line per check, then "N passed, N failed".
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
BIN=$BUILD/server/sigil-server
[ -x "$BIN" ] || { echo "not ok - $BIN is not built"; echo "0 passed, 1 failed"; exit 1; }
PGDIR=$BUILD/pg-cli-server
PG=$SRC/deploy/local/pg
"$PG" start "$PGDIR" >/dev/null || { echo "not ok - cannot start PostgreSQL"; exit 1; }
SOCK=$PGDIR/socket
DB=sigil_cli_server_$$
TMP=$(mktemp -d /tmp/sigil-cli-server.XXXXXX)
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
  if "$@" >/dev/null 2>&1; then ok "$what"; else notok "$what"; fi
}
C="host=$SOCK user=sigil dbname=$DB"
q() { psql "$C" -v ON_ERROR_STOP=1 -tAc "$1"; }
psql -h "$SOCK" -U sigil -d postgres -qc "CREATE DATABASE $DB"
export SIGIL_ADMIN_SOCKET=$TMP/admin.sock
cat >"$TMP/server.yaml" <<EOF
trust_domain: example.org
database:
  conninfo: $C
  pool_size: 2
admin:
  socket_path: $SIGIL_ADMIN_SOCKET
ca:
  key_dir: $TMP/keys
EOF
"$BIN" run --config "$TMP/server.yaml" >"$TMP/server.log" 2>&1 &
SPID=$!
for _ in $(seq 1 300); do
  curl -sf --unix-socket "$SIGIL_ADMIN_SOCKET" http://localhost/live >/dev/null 2>&1 && break
  sleep 0.1
done

# cli NAME ARGS...: runs the CLI, output in $TMP/NAME.out and .err, exit code in $TMP/NAME.rc
cli() {
  local name=$1
  shift
  "$BIN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
  echo $? >"$TMP/$name.rc"
}
rc() { test "$(cat "$TMP/$1.rc")" = "$2"; }
out_has() { grep -qF -- "$2" "$TMP/$1.out"; }
err_has() { grep -qF -- "$2" "$TMP/$1.err"; }
json() { python3 -c "import json,sys; d=json.load(open('$TMP/$1.out')); print($2)"; }

SHA=$(printf 'b%.0s' $(seq 64))
P=spiffe://example.org/sigil/agent/node1
W=spiffe://example.org/prod/gcp/payments
sel() { echo --selector "unix:uid:$1" --selector unix:path:/usr/bin/app --selector "unix:sha256:$SHA"; }

# --- create
# shellcheck disable=SC2046
cli create entry create --spiffe-id $W/api --parent-id $P $(sel 1000) --x509-ttl 30m --dns api.example.org \
  --hint blue
check "entry create: exit 0" rc create 0
check "... prints the entry" out_has create "Entry created"
check "... its team from the ID" out_has create "Team               : payments"
check "... its TTL" out_has create "X509-SVID TTL      : 30m"
check "... its selectors, one a line" out_has create "Selector           : unix:uid:1000"
check "... its DNS name and hint" test "$(grep -c -e '^DNS name *: api.example.org' -e '^Hint *: blue' "$TMP/create.out")" = 2
ID=$(sed -nE 's/^Entry ID +: //p' "$TMP/create.out")
check "... and its id" test ${#ID} = 36
check "the entry is in the database" test "$(q "SELECT x509_ttl_seconds, hint FROM entries WHERE id = '$ID'")" = "1800|blue"
# shellcheck disable=SC2046
cli dup entry create --spiffe-id $W/api --parent-id $P $(sel 1000)
check "the same entry again: exit 1 with the server's message" rc dup 1
check "... Error: <message>" err_has dup "Error: "
cli policy entry create --spiffe-id $W/x --parent-id $P --selector unix:uid:7
check "a policy refusal: exit 1" rc policy 1
check "... names the missing selector" err_has policy "unix:path"
# shellcheck disable=SC2046
cli policy_json entry create --output json --spiffe-id $W/x --parent-id $P --selector unix:uid:7
check "... in JSON mode the error document on stdout" test "$(json policy_json 'd["error"]["code"]' | cut -d. -f1)" = policy
cli local entry create --spiffe-id spiffe://example.org --parent-id $P --selector unix:uid:7
check "a root SPIFFE ID is refused locally (X-2), exit 1" rc local 1
check "... naming the rule" err_has local "X-2"
check "nothing refused was stored" test "$(q "SELECT count(*) FROM entries")" = 1

# --- import five more (JSON lines), then pages and filters
for i in 1 2 3 4 5; do
  printf '{"spiffe_id":"%s/w%d","parent_id":"%s","selectors":["unix:uid:%d","unix:path:/usr/bin/app","unix:sha256:%s"]}\n' \
    "$W" "$i" "$P" "$i" "$SHA"
done >"$TMP/five.jsonl"
cli import entry import "$TMP/five.jsonl"
check "entry import of 5 lines: exit 0" rc import 0
check "... 5 created" out_has import "5 entries, 5 created, 0 already existed, 0 failed"
cli pages entry show --page-size 2
check "entry show follows every page (page size 2)" out_has pages "Found 6 entries"
check "... printing each" test "$(grep -c '^Entry ID' "$TMP/pages.out")" = 6
cli pages_json entry show --page-size 4 --output json
check "entry show --output json: one document with all 6" test "$(json pages_json 'len(d["entries"])')" = 6
cli by_sel entry show --selector unix:uid:3
check "filter by selector (superset)" test "$(grep -c '^Entry ID' "$TMP/by_sel.out")/$(grep -c "SPIFFE ID *: $W/w3" "$TMP/by_sel.out")" = 1/1
cli exact entry show --selector unix:uid:3 --match exact
check "--match exact with one of three selectors finds none" out_has exact "Found 0 entries"
cli by_team entry show --team payments --spiffe-id $W/api
check "filter by team and SPIFFE ID" test "$(grep -c '^Entry ID' "$TMP/by_team.out")" = 1
cli one entry show --id "$ID"
check "entry show --id" out_has one "Entry ID           : $ID"

# --- update, delete
cli upd entry update --id "$ID" --hint green --jwt-ttl 2m --clear-dns
check "entry update: exit 0" rc upd 0
check "... the new hint and TTL" test "$(grep -c -e '^Hint *: green' -e '^JWT-SVID TTL *: 2m' "$TMP/upd.out")" = 2
check "... the DNS names cleared" test "$(q "SELECT count(*) FROM entry_dns_names WHERE entry_id = '$ID'")" = 0
cli upd_policy entry update --id "$ID" --selector unix:uid:1000
check "an update the policy refuses: exit 1 with its message" test "$(cat "$TMP/upd_policy.rc")" = 1 -a -s "$TMP/upd_policy.err"
check "... and the entry is unchanged" test "$(q "SELECT count(*) FROM entry_selectors WHERE entry_id = '$ID'")" = 3
cli del entry delete --id "$ID"
check "entry delete" out_has del "Deleted entry $ID"
cli gone entry show --id "$ID"
check "the deleted entry is not found: exit 1" rc gone 1

# --- a SPIRE registration file, imported twice
cat >"$TMP/spire.json" <<EOF
{
  "entries": [
    {
      "selectors": [{"type": "unix", "value": "uid:2001"}, {"type": "unix", "value": "path:/usr/bin/blog"},
                    {"type": "unix", "value": "sha256:$SHA"}],
      "spiffe_id": "$W/blog",
      "parent_id": "$P",
      "ttl": 1200,
      "entry_id": "from-spire", "revision_number": "3"
    },
    {
      "selectors": [{"type": "unix", "value": "uid:2002"}, {"type": "unix", "value": "path:/usr/bin/db"},
                    {"type": "unix", "value": "sha256:$SHA"}],
      "spiffe_id": {"trust_domain": "example.org", "path": "/prod/gcp/payments/db"},
      "parent_id": "$P",
      "jwt_svid_ttl": 60
    }
  ]
}
EOF
cli spire entry import "$TMP/spire.json"
check "SPIRE file import: exit 0, 2 created" test "$(cat "$TMP/spire.rc")" = 0 -a -n "$(grep -F '2 created' "$TMP/spire.out")"
check "... ttl became the X.509-SVID TTL" test "$(q "SELECT x509_ttl_seconds FROM entries WHERE spiffe_id = '$W/blog'")" = 1200
cli spire2 entry import "$TMP/spire.json"
check "the same file again: exit 0, both counted as existing" \
  test "$(cat "$TMP/spire2.rc")" = 0 -a -n "$(grep -F '0 created, 2 already existed, 0 failed' "$TMP/spire2.out")"

# --- join tokens
cli tok token generate --ttl 5m --agent-path /sigil/agent/node-9
check "token generate: a 43-character token" test "$(sed -nE 's/^Token +: ([A-Za-z0-9_-]{43})$/\1/p' "$TMP/tok.out" | wc -l)" = 1
check "... for the fixed agent ID" out_has tok "Agent ID           : spiffe://example.org/sigil/agent/node-9"
check "... stored only as a hash" test "$(q "SELECT count(*) FROM join_tokens")" = 1

# --- agents
q "INSERT INTO agents (spiffe_id, attestation_type, serial, expires_at)
   VALUES ('spiffe://example.org/sigil/agent/n1', 'join_token', '0a', now() + interval '1 hour')" >/dev/null
cli agents agent list
check "agent list" test "$(grep -c '^SPIFFE ID *: spiffe://example.org/sigil/agent/n1' "$TMP/agents.out")" = 1
check "... Found 1 attested agent" out_has agents "Found 1 attested agent:"
cli ashow agent show --spiffe-id spiffe://example.org/sigil/agent/n1
check "agent show" out_has ashow "Serial number      : 0a"
cli ban agent ban --spiffe-id spiffe://example.org/sigil/agent/n1
check "agent ban" out_has ban "Banned             : true"
cli banned agent list --banned --output json
check "agent list --banned finds it" test "$(json banned 'len(d["agents"])')" = 1
cli evict agent evict --spiffe-id spiffe://example.org/sigil/agent/n1
check "agent evict" rc evict 0
cli evict2 agent evict --spiffe-id spiffe://example.org/sigil/agent/n1
check "evicting it again: exit 1 with the server's message" test "$(cat "$TMP/evict2.rc")" = 1 -a -n "$(grep '^Error: ' "$TMP/evict2.err")"

# --- audit
cli audit audit list --limit 2
check "audit list --limit 2, newest first" test "$(grep -c '^Record ID' "$TMP/audit.out")/$(sed -nE 's/^Action +: //p' "$TMP/audit.out" | head -n1)" = 2/agent.evict
cli audit_ent audit list --object-type entry --output json
check "audit list --object-type entry: every entry change, all pages" \
  test "$(json audit_ent 'sorted(set(r["action"] for r in d["records"]))')" = "['entry.create', 'entry.delete', 'entry.update']"

# --- bundle
cli bundle bundle show
check "bundle show prints PEM that openssl reads" openssl x509 -in "$TMP/bundle.out" -noout -subject
cli bundle_json bundle show --output json
check "bundle show --output json is the SPIFFE bundle" test "$(json bundle_json '"keys" in d')" = True

# --- federated bundles and federation relationships
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$TMP/other.key" \
  -out "$TMP/other.pem" -days 2 -subj "/CN=other.org root" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  >/dev/null 2>&1
fp() { openssl x509 -in "$1" -noout -fingerprint -sha256 2>/dev/null; }
cli bset bundle set --id spiffe://other.org --path "$TMP/other.pem"
check "bundle set from PEM" out_has bset "Set the federated bundle of other.org"
cli blist bundle list
check "bundle list shows it" out_has blist "* other.org"
cli bone bundle list --id other.org
check "bundle list --id: the same certificate back" test "$(fp "$TMP/bone.out")" = "$(fp "$TMP/other.pem")"
cli bjson bundle list --output json
check "bundle list --output json: the bundle map" test "$(json bjson 'list(d["trust_domains"])')" = "['other.org']"
cli fcreate federation create --trust-domain other.org --bundle-endpoint-url https://other.org:8443/bundle \
  --profile https_web
check "federation create" out_has fcreate "Trust domain       : other.org"
cli fdup federation create --trust-domain other.org --bundle-endpoint-url https://other.org:8443/bundle \
  --profile https_web
check "the same relationship again: exit 1" rc fdup 1
cli fbad federation create --trust-domain third.org --bundle-endpoint-url https://third.org/b \
  --profile https_spiffe
check "https_spiffe without an endpoint ID is a usage error (64)" rc fbad 64
cli flist federation list
check "federation list" out_has flist "Found 1 federation relationship:"
cli fdel federation delete --trust-domain other.org
check "federation delete" rc fdel 0
cli flist2 federation list --output json
check "... it is gone" test "$(json flist2 'len(d["relationships"])')" = 0
cli bdel bundle delete --id other.org
check "bundle delete" rc bdel 0
cli bgone bundle list --id other.org
check "... it is gone: exit 1" rc bgone 1

# --- the environment: SIGIL_TRUST_DOMAIN (IDs as paths), SIGIL_AGENT_ID (create's parent)
# cli_env NAME ENV-ARGS... -- ARGS...: cli with env(1)'s NAME=VALUE / -u NAME first
cli_env() {
  local name=$1 e=()
  shift
  while [ "$1" != -- ]; do e+=("$1"); shift; done
  shift
  env "${e[@]}" "$BIN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
  echo $? >"$TMP/$name.rc"
}
# shellcheck disable=SC2046
cli_env envtd SIGIL_TRUST_DOMAIN=example.org -- entry create --spiffe-id /prod/gcp/payments/envtd \
  --parent-id /sigil/agent/node1 $(sel 1001) --output json
check "entry create with path IDs and SIGIL_TRUST_DOMAIN: exit 0" rc envtd 0
check "... the paths expanded in that trust domain" \
  test "$(json envtd 'd["spiffe_id"] + " " + d["parent_id"]')" = "$W/envtd $P"
cli_env envtd_unset -u SIGIL_TRUST_DOMAIN -- entry create --spiffe-id /prod/gcp/payments/x --parent-id $P $(sel 1002)
check "a path ID without SIGIL_TRUST_DOMAIN: usage error (64)" rc envtd_unset 64
check "... saying to set SIGIL_TRUST_DOMAIN" err_has envtd_unset "set SIGIL_TRUST_DOMAIN"
cli none entry show --selector unix:uid:1002 --match any --output json
check "... and nothing was created" test "$(json none 'len(d["entries"])')" = 0
cli_env envtd_bad SIGIL_TRUST_DOMAIN=Bad_Domain -- entry create --spiffe-id /prod/gcp/payments/x --parent-id $P $(sel 1002)
check "a bad SIGIL_TRUST_DOMAIN: refused locally (exit 1)" rc envtd_bad 1
cli_env envshow SIGIL_TRUST_DOMAIN=example.org -- entry show --spiffe-id /prod/gcp/payments/envtd --output json
check "entry show --spiffe-id PATH finds the entry" test "$(json envshow 'len(d["entries"])')" = 1
cli_env envagent SIGIL_AGENT_ID=spiffe://example.org/sigil/agent/node2 -- entry create \
  --spiffe-id $W/envagent $(sel 1003) --output json
check "entry create without --parent-id takes SIGIL_AGENT_ID: exit 0" rc envagent 0
check "... the parent is SIGIL_AGENT_ID" test "$(json envagent 'd["parent_id"]')" = spiffe://example.org/sigil/agent/node2
check "... and it says so on stderr" err_has envagent "Parent ID: spiffe://example.org/sigil/agent/node2 (from SIGIL_AGENT_ID"
cli_env envagent2 SIGIL_AGENT_ID=spiffe://example.org/sigil/agent/node2 -- entry create \
  --spiffe-id $W/envagent2 --parent-id $P $(sel 1003) --output json
check "--parent-id wins over SIGIL_AGENT_ID" test "$(json envagent2 'd["parent_id"]')" = "$P"
check "... and nothing is said about the variable" bash -c "! grep -q SIGIL_AGENT_ID '$TMP/envagent2.err'"
cli_env noparent -u SIGIL_AGENT_ID -- entry create --spiffe-id $W/noparent $(sel 1004)
check "no --parent-id and no SIGIL_AGENT_ID: refused (exit 1) naming --parent-id" \
  bash -c "rc() { test \"\$(cat '$TMP/noparent.rc')\" = 1; }; rc && grep -q -- --parent-id '$TMP/noparent.err'"
cli_env envupd SIGIL_AGENT_ID=spiffe://example.org/sigil/agent/node2 -- entry show --spiffe-id $W/envtd --output json
check "entry show ignores SIGIL_AGENT_ID (no parent filter)" test "$(json envupd 'len(d["entries"])')" = 1
q "INSERT INTO agents (spiffe_id, attestation_type, serial, expires_at)
   VALUES ('spiffe://example.org/sigil/agent/n3', 'join_token', '0b', now() + interval '1 hour')" >/dev/null
cli_env envagent_show SIGIL_TRUST_DOMAIN=example.org -- agent show --spiffe-id /sigil/agent/n3
check "agent show --spiffe-id PATH with SIGIL_TRUST_DOMAIN finds spiffe://example.org/sigil/agent/n3" \
  out_has envagent_show "Serial number      : 0b"
cli_env envagent_unset -u SIGIL_TRUST_DOMAIN -- agent show --spiffe-id /sigil/agent/nobody
check "agent show --spiffe-id PATH without SIGIL_TRUST_DOMAIN: exit 64" rc envagent_unset 64

# --- no server
cli down entry show --admin-socket "$TMP/nobody.sock"
check "no server at the socket: exit 2" rc down 2
check "... saying what to do" err_has down "is sigil-server running?"

if [ "$failed" -gt 0 ]; then
  for f in "$TMP"/*.err; do [ -s "$f" ] && { echo "# $(basename "$f"):"; head -n 5 "$f"; }; done
  echo "# server log (tail):"; tail -n 20 "$TMP/server.log"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
