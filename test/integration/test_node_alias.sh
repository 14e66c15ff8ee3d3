#!/usr/bin/env bash
# Node aliases end to end, against a real sigil-server and PostgreSQL with two agents: A
# attests with x509pop (node certificate CN=node1), B with a join token. A node alias
# (`entry create --node`, parent = the server ID) with A's selector x509pop:subject:cn:node1
# and a workload entry parented to the alias's ID: A serves that workload's SVID, B (whose
# node selectors do not match) does not, though both run the same workloads (this uid, this
# sigil-agent executable); B serves the entry parented to its own ID, A does not. An alias
# for B's join_token selector (from `agent show`) made while B runs brings B the workload
# under it. Deleting the first alias takes the workload's SVID away from A (entry sync). One
# line per check, then "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/stack.sh"
stack_init node-alias
UID_=$(id -u)
AGENT_EXE=$(readlink -f "$AGENT")
AGENT_SHA=$(sha256sum "$AGENT_EXE" | cut -d' ' -f1)
B_ID=spiffe://$TD/sigil/agent/alias-b
ALIAS=spiffe://$TD/sigil/node/rack-1
W_ALIAS=spiffe://$TD/dev/onprem/alias/on-rack
W_B=spiffe://$TD/dev/onprem/alias/on-b
API_A=$TMP/api-a.sock

# a node CA the server trusts and node1's certificate
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/ca.key" 2>/dev/null
openssl req -x509 -new -key "$TMP/ca.key" -subj "/CN=Node CA" -days 2 -out "$TMP/ca.pem" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/node.key" 2>/dev/null
openssl req -new -key "$TMP/node.key" -subj "/CN=node1" -out "$TMP/node.csr" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' >"$TMP/ext"
openssl x509 -req -in "$TMP/node.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" -days 1 \
  -set_serial 0x77 -extfile "$TMP/ext" -out "$TMP/node.pem" 2>/dev/null

stack_server_config "  tier: off"
printf 'node_attestors:\n  x509pop:\n    ca_bundle: %s\n' "$TMP/ca.pem" >>"$TMP/server.yaml"
check "sigil-server runs with x509pop and join tokens" stack_server_start || finish
stack_bundle
if ! until_ok 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$NODE_PORT"; then
  echo "ok - # SKIP this sigil-server does not serve node_api.listen"
  finish
fi

# the alias, a workload under it, a workload under agent B
SIGIL_TRUST_DOMAIN=$TD "$SRV" entry create --node --spiffe-id /sigil/node/rack-1 \
  --selector x509pop:subject:cn:node1 --output json >"$TMP/alias.json" 2>"$TMP/alias.err"
check "entry create --node: a node alias for x509pop:subject:cn:node1" \
  test "$(python3 -c "import json; d=json.load(open('$TMP/alias.json')); print(d['parent_id'], d['node_alias'])")" = "spiffe://$TD/sigil/server True" ||
  sed 's/^/# /' "$TMP/alias.err" "$TMP/alias.json"
ALIAS_ENTRY=$(python3 -c "import json; print(json.load(open('$TMP/alias.json'))['id'])" 2>/dev/null)
wl() { # ID PARENT
  "$SRV" entry create --spiffe-id "$1" --parent-id "$2" --selector "unix:uid:$UID_" \
    --selector "unix:path:$AGENT_EXE" --selector "unix:sha256:$AGENT_SHA" >"$TMP/wl.out" 2>&1 ||
    { sed 's/^/# /' "$TMP/wl.out"; return 1; }
}
check "a workload entry parented to the alias ID" wl "$W_ALIAS" "$ALIAS"
check "a workload entry parented to agent B" wl "$W_B" "$B_ID"
check "entry show marks the alias" bash -c "'$SRV' entry show --id '$ALIAS_ENTRY' | grep -q 'Node alias *: yes'"

# agent A: x509pop
sigil_agent_config "$TMP/agent-a.yaml" "$TD" "127.0.0.1:$NODE_PORT" "$TMP/bootstrap.pem" \
  "$TMP/data-a" "$API_A" "x509pop:
  cert_path: $TMP/node.pem
  key_path: $TMP/node.key
retry:
  initial: 200ms
  max: 1s"
"$AGENT" run --config "$TMP/agent-a.yaml" >"$TMP/agent-a.log" 2>&1 &
AGENT_PID=$!
# agent B: a join token for B_ID (stack_cleanup stops WATCH_PID too)
TOKEN=$(stack_token /sigil/agent/alias-b)
stack_agent_config "retry:
  initial: 200ms
  max: 1s"
"$AGENT" run --config "$TMP/agent.yaml" --join-token "$TOKEN" >"$TMP/agent-b.log" 2>&1 &
WATCH_PID=$!

fetch_ids() { # SOCKET: the SPIFFE IDs its Workload API serves this process, one a line
  "$AGENT" api fetch x509 --socket "$1" --timeout 3 2>/dev/null | grep -oE "spiffe://$TD/[^ ]+" | sort -u
}
serves() { fetch_ids "$1" | grep -qx "$2"; }
check "agent A (x509pop, CN=node1) serves the workload under the alias" until_ok 30 serves "$API_A" "$W_ALIAS" ||
  sed 's/^/# A: /' "$TMP/agent-a.log" | tail -5
check "agent B (join token) serves the workload under its own ID" until_ok 30 serves "$API" "$W_B" ||
  sed 's/^/# B: /' "$TMP/agent-b.log" | tail -5
check "agent B does not serve the alias's workload (its node selectors do not match)" \
  bash -c "! '$AGENT' api fetch x509 --socket '$API' --timeout 3 2>/dev/null | grep -q '$W_ALIAS'"
check "agent A does not serve agent B's workload" bash -c "! '$AGENT' api fetch x509 --socket '$API_A' --timeout 3 2>/dev/null | grep -q '$W_B'"

# an alias for B's join_token selector (as `agent show` lists it), made while B runs: B's
# entry sync brings the workload under it
B_SEL=$("$SRV" agent show --spiffe-id "$B_ID" --output json 2>/dev/null |
  python3 -c 'import json,sys; print(next(s for s in json.load(sys.stdin)["selectors"] if s.startswith("join_token:")))' 2>/dev/null)
check "agent show lists B's join_token node selector" test -n "$B_SEL"
W_JT=spiffe://$TD/dev/onprem/alias/on-jt
check "a node alias for B's join_token selector" \
  env SIGIL_TRUST_DOMAIN="$TD" "$SRV" entry create --node --spiffe-id /sigil/node/jt --selector "$B_SEL"
check "a workload entry under it" wl "$W_JT" "spiffe://$TD/sigil/node/jt"
check "agent B serves it (synced while running)" until_ok 30 serves "$API" "$W_JT"
check "agent A does not" bash -c "! '$AGENT' api fetch x509 --socket '$API_A' --timeout 3 2>/dev/null | grep -q '$W_JT'"

# deleting the alias: A's entry sync drops the workload under it
check "entry delete the alias" "$SRV" entry delete --id "$ALIAS_ENTRY"
gone() { ! fetch_ids "$API_A" | grep -qx "$W_ALIAS"; }
check "agent A no longer serves the alias's workload" until_ok 30 gone
check "... and agent B still serves its own" serves "$API" "$W_B"
check "both agents still run" kill -0 "$AGENT_PID" "$WATCH_PID"
finish
