#!/usr/bin/env bash
# Time from `sigil-server entry create` to the new SVID arriving on an already-open Workload API
# stream: PostgreSQL, sigil-server and sigil-agent run as test_agent_e2e.sh sets them up, one
# `sigil-agent api watch` kept open, its lines stamped on arrival; N samples (default 50), then
# p50/p99/max (target p99 < 200 ms). Each sample starts before the CLI runs, so it includes the
# CLI's own start and admin-socket round trip. Never run by CI.
#   test/bench/entry_to_stream.sh [SAMPLES]
set -uo pipefail
N=${1:-50}
# the integration tests' stack (test/integration/lib/stack.sh: PostgreSQL, server, agent)
# shellcheck source=../integration/lib/common.sh
. "$(dirname "$0")/../integration/lib/common.sh"
# shellcheck source=../integration/lib/stack.sh
. "$SRC/test/integration/lib/stack.sh"
stack_init bench-e2s
UID_=$(id -u)
AGENT_EXE=$(readlink -f "$AGENT")
AGENT_SHA=$(sha256sum "$AGENT_EXE" | cut -d' ' -f1)
AGENT_ID=spiffe://$TD/sigil/agent/bench-node
stack_server_config "  tier: off"
stack_server_start || { cat "$TMP/server.log" >&2; exit 1; }
until_ok 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$NODE_PORT" || { echo "node API not listening" >&2; exit 1; }
stack_bundle
TOKEN=$(stack_token /sigil/agent/bench-node)
mkentry() {
  "$SRV" entry create --spiffe-id "$1" --parent-id "$AGENT_ID" --selector "unix:uid:$UID_" \
    --selector "unix:path:$AGENT_EXE" --selector "unix:sha256:$AGENT_SHA" >"$TMP/entry.out" 2>&1
}
mkentry "spiffe://$TD/dev/onprem/bench/first" || { cat "$TMP/entry.out" >&2; exit 1; }
stack_agent_config
stack_agent_start --join-token "$TOKEN"
until_ok 30 "$AGENT" api fetch x509 --socket "$API" --timeout 3 || { cat "$TMP/agent.log" >&2; exit 1; }

# the open stream: every line stamped with the wall clock as it arrives
"$AGENT" api watch --socket "$API" > >(while IFS= read -r line; do
  printf '%s %s\n' "${EPOCHREALTIME/./}" "$line"
done >"$TMP/watch.out") 2>"$TMP/watch.err" &
WATCH_PID=$!
until_ok 10 grep -q "bench/first" "$TMP/watch.out" || { echo "api watch got nothing" >&2; exit 1; }

: >"$TMP/ms"
for i in $(seq -w 1 "$N"); do
  id="spiffe://$TD/dev/onprem/bench/e$i"
  t0=${EPOCHREALTIME/./}
  mkentry "$id" || { cat "$TMP/entry.out" >&2; exit 1; }
  if ! until_ok 10 grep -q -- "$id\$" "$TMP/watch.out"; then
    echo "sample $i: $id never arrived on the stream" >&2
    exit 1
  fi
  t1=$(awk -v id="$id" '{ n = length(id) } substr($0, length($0) - n + 1) == id { print $1; exit }' "$TMP/watch.out")
  echo $(((t1 - t0) / 1000)) >>"$TMP/ms"
done
sort -n "$TMP/ms" | awk -v n="$N" '
  { v[NR] = $1 }
  END {
    p50 = v[int((NR + 1) * 0.50)]; i99 = int(NR * 0.99 + 0.999); if (i99 > NR) i99 = NR
    printf "entry create -> SVID on an open stream, %d samples: p50 %d ms, p99 %d ms, min %d ms, max %d ms (target p99 < 200 ms)\n", NR, p50, v[i99], v[1], v[NR]
  }'
