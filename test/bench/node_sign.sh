#!/usr/bin/env bash
# Sets up a throwaway PostgreSQL and sigil-server with the node API, attests an agent with a
# join token (nodeapi_client), makes an entry under it, then runs bench_node_sign: X.509-SVIDs
# signed per second through BatchSignX509SVID, against `openssl speed ecdsap256` sign+verify
# on the cores the server may use (and an in-process EVP figure), all in the same run.
#   test/bench/node_sign.sh [SECONDS [BATCH [IN_FLIGHT]]]   (defaults 10 100 2; never run by CI)
# Cores: SIGIL_BENCH_SERVER_CPUS (taskset list; default: the last core) run the server and the
# baselines; SIGIL_BENCH_CLIENT_CPUS (default: the other cores) the client. With one core, or
# when the two lists overlap, client and server share cores and the output says so.
# The CSRs request the entry's SPIFFE ID, as the agent's do.
set -uo pipefail
SRC=${SIGIL_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
SRV=$BUILD/server/sigil-server
CLIENT=$BUILD/test/nodeapi_client
BENCH=${SIGIL_BENCH_BIN:-$BUILD/test/bench_node_sign}
for b in "$SRV" "$CLIENT" "$BENCH"; do
  [ -x "$b" ] || { echo "$b is not built" >&2; exit 1; }
done
command -v taskset >/dev/null || { echo "taskset (util-linux) is needed" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is needed for the baseline" >&2; exit 1; }
NCPU=$(nproc)
if [ "$NCPU" -ge 2 ]; then
  SCPUS=${SIGIL_BENCH_SERVER_CPUS:-$((NCPU - 1))}
  CCPUS=${SIGIL_BENCH_CLIENT_CPUS:-0-$((NCPU - 2))}
else
  SCPUS=${SIGIL_BENCH_SERVER_CPUS:-0}
  CCPUS=${SIGIL_BENCH_CLIENT_CPUS:-0}
fi
# the cores a taskset list names, one a line
cpus_of() {
  local part a b
  for part in ${1//,/ }; do
    a=${part%-*}
    b=${part#*-}
    seq "$a" "$b"
  done | sort -un
}
K=$(cpus_of "$SCPUS" | wc -l)
SHARED=$(comm -12 <(cpus_of "$SCPUS") <(cpus_of "$CCPUS") | wc -l)
SECS=${1:-10}
SPEED_SECS=$(( (SECS + 1) / 2 ))
# the integration tests' stack (test/integration/lib/stack.sh): PostgreSQL, server config
# shellcheck source=../integration/lib/common.sh
. "$SRC/test/integration/lib/common.sh"
# shellcheck source=../integration/lib/stack.sh
. "$SRC/test/integration/lib/stack.sh"
stack_init bench-node-sign
PORT=$NODE_PORT
stack_server_config "  tier: off"
taskset -c "$SCPUS" "$SRV" run --config "$TMP/server.yaml" >"$TMP/server.log" 2>&1 &
SRV_PID=$!
until_ok 30 "$SRV" healthcheck --admin-socket "$ADMIN" || { cat "$TMP/server.log" >&2; exit 1; }
until_ok 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" || { echo "node API not listening" >&2; exit 1; }
stack_bundle
TOKEN=$(stack_token /sigil/agent/bench)
mkdir -p "$TMP/agent"
"$CLIENT" "127.0.0.1:$PORT" "$TD" "$TMP/bootstrap.pem" "$TMP/agent" attest join_token "$TOKEN" >"$TMP/attest.out" 2>&1 ||
  { cat "$TMP/attest.out" >&2; exit 1; }
AGENT_ID=$(sed -nE 's/^spiffe_id=//p' "$TMP/attest.out")
ENTRY=$("$SRV" entry create --spiffe-id "spiffe://$TD/prod/onprem/bench/w" --parent-id "$AGENT_ID" \
  --selector unix:uid:1000 --selector unix:path:/usr/bin/w \
  --selector unix:sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881 2>&1 |
  sed -nE 's/^Entry ID +: //p')
[ -n "$ENTRY" ] || { echo "entry create failed" >&2; exit 1; }
# the server's index learns the entry from its feed: wait until one signing succeeds
until_ok 10 "$CLIENT" "127.0.0.1:$PORT" "$TD" "$TMP/bootstrap.pem" "$TMP/agent" sign "$ENTRY" "$TMP/one.pem" ||
  { echo "the entry never became signable" >&2; exit 1; }
# openssl speed ecdsap256 on the server's cores: "wall" runs K processes (-multi K) counting
# per second of wall clock (-elapsed), as SVIDs/s is counted; "cpu" runs one process on one
# of those cores counting per CPU-second of user time (openssl speed's default).
speed() {
  local opts=(-seconds "$SPEED_SECS") cpus=$SCPUS
  if [ "$1" = wall ]; then
    opts+=(-elapsed)
    [ "$K" -gt 1 ] && opts+=(-multi "$K")
  else
    cpus=$(cpus_of "$SCPUS" | head -n 1)
  fi
  taskset -c "$cpus" openssl speed "${opts[@]}" ecdsap256 2>/dev/null |
    awk '/ecdsa \(nistp256\)/ { s = $(NF - 1); v = $NF } END { if (s == "") exit 1; print s, v }'
}
# CPU seconds the server (all its threads) has used
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / hz }' "/proc/$SRV_PID/stat"; }
read -r SIGN1 VERIFY1 < <(speed wall) || { echo "openssl speed failed" >&2; exit 1; }
CPU0=$(cpu_s)
OUT=$(taskset -c "$CCPUS" "$BENCH" "127.0.0.1:$PORT" "$TD" "$TMP/bootstrap.pem" "$TMP/agent" "$ENTRY" \
  "$SECS" "${2:-100}" "${3:-2}" "spiffe://$TD/prod/onprem/bench/w")
RC=$?
CPU1=$(cpu_s)
read -r SIGN2 VERIFY2 < <(speed wall) || { echo "openssl speed failed" >&2; exit 1; }
read -r SIGNC VERIFYC < <(speed cpu) || { echo "openssl speed failed" >&2; exit 1; }
EVP=$(taskset -c "$SCPUS" "$BENCH" --baseline "$SPEED_SECS")
echo "$OUT" | grep -v '='
[ "$RC" -eq 0 ] || { echo "bench_node_sign failed ($RC)" >&2; cat "$TMP/server.log" >&2; exit 1; }
SVIDS=$(echo "$OUT" | sed -nE 's/^svids_per_s=([0-9.]+)$/\1/p')
EVP_SV=$(echo "$EVP" | sed -nE 's/.*evp_sign_verify_per_s=([0-9.]+).*/\1/p')
echo "machine: $NCPU cores; server on cores $SCPUS (K=$K), client on cores $CCPUS"
if [ "$SHARED" -gt 0 ]; then
  echo "  the client shares $SHARED of the server's cores: its TLS and decoding count against the server"
else
  echo "  the client runs on other cores; the baselines run on the server's K cores, one after the other"
fi
echo "  other work on these cores lowers every wall-clock figure; the per-CPU-second ratio does not"
echo "  depend on it (\"cores busy\" says how much of the K cores the server got)"
awk -v svids="$SVIDS" -v secs="$SECS" -v cpu0="$CPU0" -v cpu1="$CPU1" -v s1="$SIGN1" \
  -v v1="$VERIFY1" -v s2="$SIGN2" -v v2="$VERIFY2" -v sc="$SIGNC" -v vc="$VERIFYC" \
  -v evp="$EVP_SV" -v k="$K" 'BEGIN {
  s = (s1 + s2) / 2; v = (v1 + v2) / 2; sv = 1 / (1 / s + 1 / v)
  svc = 1 / (1 / sc + 1 / vc)
  cpu = cpu1 - cpu0; us = cpu * 1e6 / (svids * secs); per_cpu_s = 1e6 / us
  printf "openssl speed -elapsed ecdsap256 on K=%d cores (before/after): sign %.0f/%.0f/s, verify %.0f/%.0f/s\n", k, s1, s2, v1, v2
  printf "baseline: sign+verify 1/(1/sign + 1/verify) = %.0f/s on K=%d cores (%.0f per core)\n", sv, k, sv / k
  printf "node API: %.0f SVIDs/s\n", svids
  printf "ratio (wall clock): %.2f (target >= 0.6)\n", svids / sv
  printf "openssl speed ecdsap256, one core, per CPU-second: sign %.0f, verify %.0f, sign+verify %.0f\n", sc, vc, svc
  printf "second baseline: EVP in-process sign+verify %.0f per CPU-second, one core\n", evp
  printf "server CPU (user+system, all threads) per SVID: %.0f us (one sign plus one verify: %.0f us); %.2f of K=%d cores busy\n", us, 1e6 / sc + 1e6 / vc, cpu / secs, k
  printf "ratio per CPU-second: %.2f (%.0f SVIDs per server CPU-second against openssl); against EVP: %.2f\n", per_cpu_s / svc, per_cpu_s, per_cpu_s / evp
}'
