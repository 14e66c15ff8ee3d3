#!/usr/bin/env bash
# The agent's Workload API (workload_harness over the real cache and server code) against npm's
# @grpc/grpc-js: X.509-SVID verified by openssl, key matching the leaf, JWT-SVID verified with
# the JWKS bundle and by ValidateJWTSVID, missing header, rotations on a stream, and (as root)
# PERMISSION_DENIED for uid 65534. Needs node and `npm ci --prefix test/integration`
# (deploy/install-deps does both).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=${SIGIL_SOURCE_DIR:-$HERE/../..}
BUILD=${SIGIL_BUILD_DIR:-$SRC/build}
HARNESS=$BUILD/test/workload_harness

if ! command -v node >/dev/null || [ ! -d "$HERE/node_modules/@grpc/grpc-js" ]; then
  echo "FAIL - node or test/integration/node_modules missing: run deploy/install-deps"
  exit 1
fi

TMP=$(mktemp -d)
chmod 755 "$TMP"
HPID=""
cleanup() {
  if [ -n "$HPID" ]; then kill -TERM "$HPID" 2>/dev/null || true; wait "$HPID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

SOCK=$TMP/api.sock
ID=spiffe://example.org/node-workload
"$HARNESS" --socket "$SOCK" --mode 0666 --rotate-every 1000 \
  --entry "n1:$ID:unix:uid:$(id -u)" >"$TMP/ready" 2>"$TMP/harness.err" &
HPID=$!
for _ in $(seq 100); do
  grep -q READY "$TMP/ready" 2>/dev/null && break
  sleep 0.1
done
grep -q READY "$TMP/ready" || { echo "FAIL - workload_harness did not start"; cat "$TMP/harness.err"; exit 1; }

rc=0
SIGIL_SOURCE_DIR=$SRC node "$HERE/workload_api_node.js" full "$SOCK" "$ID" "$TMP" || rc=1
if [ "$(id -u)" = 0 ]; then
  SIGIL_SOURCE_DIR=$SRC setpriv --reuid 65534 --regid 65534 --clear-groups \
    node "$HERE/workload_api_node.js" denied "$SOCK" || rc=1
else
  echo "skip - the uid 65534 check needs root (setpriv)"
fi

kill -TERM "$HPID"
if wait "$HPID"; then echo "ok - harness stops cleanly"; else echo "FAIL - harness exit status"; rc=1; fi
HPID=""
[ "$rc" = 0 ] && echo "all node checks passed"
exit "$rc"
