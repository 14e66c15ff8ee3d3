#!/usr/bin/env bash
# Clients nobody here wrote against the real stack (PostgreSQL, sigil-server, sigil-agent run,
# set up by lib/stack.sh as in test_agent_e2e.sh): Debian's python3-grpcio and npm's @grpc/grpc-js fetch an
# X.509-SVID (openssl verify against the bundle) and a JWT-SVID (JWKS signature, ValidateJWTSVID)
# from the agent's Workload API; a missing header gets INVALID_ARGUMENT (E-2) and uid 65534,
# which no entry names, PERMISSION_DENIED (W-6, E-5). One line per check, "N passed, N failed".
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib/common.sh"
. "$HERE/lib/stack.sh"
stack_init agent-grpc
chmod 755 "$TMP" # uid 65534 must reach the socket

# runs a client and counts its "ok - " / "FAIL - " lines as checks of this test
client() {
  local prefix=$1 line
  shift
  while IFS= read -r line; do
    case $line in
      "ok - "*) ok "$prefix: ${line#ok - }" ;;
      "FAIL - "*) notok "$prefix: ${line#FAIL - }" ;;
      "exit 0") ;;
      "exit "*) notok "$prefix: the client ended with status ${line#exit }" ;;
      *) echo "# $line" ;;
    esac
  done < <("$@" 2>&1; echo "exit $?")
}
UID_=$(id -u)
AGENT_ID=spiffe://$TD/sigil/agent/grpc-node

stack_server_config "  tier: off
  x509_ttl:
    min: 2s
  jwt_ttl:
    min: 2s"
check "sigil-server runs (admin socket up)" stack_server_start
stack_bundle
check "the server's bundle as PEM for the agent" openssl x509 -in "$TMP/bootstrap.pem" -noout
check "the node API listens" until_ok 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$NODE_PORT"
TOKEN=$(stack_token /sigil/agent/grpc-node)
check "a join token with a fixed agent path" test -n "$TOKEN"

# one entry per client program: this uid, that interpreter's executable and its hash
entry() { # name, executable, X.509-SVID TTL (default 1m)
  local exe sha
  exe=$(readlink -f "$2")
  sha=$(sha256sum "$exe" | cut -d' ' -f1)
  "$SRV" entry create --spiffe-id "spiffe://$TD/dev/onprem/grpc/$1" --parent-id "$AGENT_ID" \
    --selector "unix:uid:$UID_" --selector "unix:path:$exe" --selector "unix:sha256:$sha" \
    --x509-ttl "${3:-1m}" --jwt-ttl 1m >"$TMP/entry-$1.out" 2>&1
  check "an entry for $1 ($exe)" grep -q "Entry created" "$TMP/entry-$1.out" ||
    sed 's/^/# /' "$TMP/entry-$1.out"
}
entry python /usr/bin/python3
HAVE_NODE=
if command -v node >/dev/null && [ -d "$HERE/node_modules/@grpc/grpc-js" ]; then
  HAVE_NODE=1
  entry node "$(command -v node)" 2s
else
  notok "node or test/integration/node_modules missing: run deploy/install-deps"
fi

stack_agent_config "retry:
  initial: 200ms
  max: 2s
log:
  level: debug" # (its Workload API socket is mode 0666, as uid 65534 needs)
stack_agent_start --join-token "$TOKEN"
check "the agent attests (node attested logged)" until_ok 30 grep -q "node attested" "$TMP/agent.log"
check "the Workload API socket is up" until_ok 10 test -S "$API"

# The python client reuses test_workload_api_grpcio.py's message classes and DER helpers.
cat >"$TMP/client.py" <<'EOF'
import json, os, sys, time
sys.path.insert(0, os.environ["HERE"])
import grpc
import test_workload_api_grpcio as w

mode, sock, tmp = sys.argv[1], sys.argv[2], sys.argv[3]
M = w.load_messages(tmp)
ch = grpc.insecure_channel("unix:" + sock)
x509 = w.stub(ch, M, "FetchX509SVID", "X509SVIDRequest", "X509SVIDResponse", True)
if mode == "denied":
    try:
        next(x509(M["X509SVIDRequest"](), metadata=w.HDR, timeout=10))
        w.check("uid 65534 (no entry) gets PERMISSION_DENIED (W-6, E-5)", False, "answered")
    except grpc.RpcError as e:
        w.check("uid 65534 (no entry) gets PERMISSION_DENIED (W-6, E-5)",
                e.code() == grpc.StatusCode.PERMISSION_DENIED, e.code())
    sys.exit(1 if w.failed else 0)
want = sys.argv[4]
first = None
for _ in range(50):  # the agent may still be signing the entry's first SVID
    try:
        first = next(x509(M["X509SVIDRequest"](), metadata=w.HDR, timeout=10))
        if any(s.spiffe_id == want for s in first.svids):
            break
    except grpc.RpcError:
        pass
    time.sleep(0.2)
ids = [s.spiffe_id for s in first.svids] if first else []
w.check("FetchX509SVID returns " + want, want in ids, ids)
if want not in ids:
    sys.exit(1)
s0 = next(s for s in first.svids if s.spiffe_id == want)
chain = w.der_split(s0.x509_svid)
bundle = w.der_split(s0.bundle)
w.write(os.path.join(tmp, "leaf.pem"), w.pem("CERTIFICATE", chain[0]))
w.write(os.path.join(tmp, "chain.pem"), "".join(w.pem("CERTIFICATE", c) for c in chain[1:]))
w.write(os.path.join(tmp, "bundle.pem"), "".join(w.pem("CERTIFICATE", c) for c in bundle))
r = w.openssl("verify", "-CAfile", os.path.join(tmp, "bundle.pem"), "-untrusted",
              os.path.join(tmp, "chain.pem"), os.path.join(tmp, "leaf.pem"))
w.check("openssl verify accepts the chain against the bundle",
        r.returncode == 0 and b": OK" in r.stdout, r.stdout + r.stderr)
jb = w.stub(ch, M, "FetchJWTBundles", "JWTBundlesRequest", "JWTBundlesResponse", True)
jr = next(jb(M["JWTBundlesRequest"](), metadata=w.HDR, timeout=10))
jwks = json.loads(dict(jr.bundles)["spiffe://" + w.TD])
jwt = w.stub(ch, M, "FetchJWTSVID", "JWTSVIDRequest", "JWTSVIDResponse", False)
resp = jwt(M["JWTSVIDRequest"](audience=["aud-py"], spiffe_id=want), metadata=w.HDR, timeout=10)
w.check("FetchJWTSVID (W-8)", [s.spiffe_id for s in resp.svids] == [want], resp)
token = resp.svids[0].svid
good, out = w.verify_jwt_openssl(tmp, token, jwks)
w.check("the JWT-SVID verifies with the JWKS key (openssl dgst)", good, out)
val = w.stub(ch, M, "ValidateJWTSVID", "ValidateJWTSVIDRequest", "ValidateJWTSVIDResponse", False)
v = val(M["ValidateJWTSVIDRequest"](audience="aud-py", svid=token), metadata=w.HDR, timeout=10)
w.check("ValidateJWTSVID accepts it (W-10)", v.spiffe_id == want, v)
try:
    jwt(M["JWTSVIDRequest"](audience=["a"]), timeout=10)
    w.check("no security header -> INVALID_ARGUMENT (E-2)", False, "answered")
except grpc.RpcError as e:
    w.check("no security header -> INVALID_ARGUMENT (E-2)",
            e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code())
ch.close()
sys.exit(1 if w.failed else 0)
EOF
mkdir -p "$TMP/py" "$TMP/py-denied" "$TMP/node"
chmod 777 "$TMP/py-denied"
export HERE SIGIL_SOURCE_DIR=$SRC
client python3-grpcio /usr/bin/python3 "$TMP/client.py" full "$API" "$TMP/py" "spiffe://$TD/dev/onprem/grpc/python"
if [ "$UID_" = 0 ]; then
  client "python3-grpcio as uid 65534" setpriv --reuid 65534 --regid 65534 --clear-groups \
    env HERE="$HERE" /usr/bin/python3 "$TMP/client.py" denied "$API" "$TMP/py-denied"
else
  echo "ok - # SKIP the uid 65534 checks need root (setpriv)"
fi
if [ -n "$HAVE_NODE" ]; then
  # the node script's full mode ends with three stream messages within 6 s: its entry's
  # 2 s SVIDs rotate at about half life
  client grpc-js node "$HERE/workload_api_node.js" full "$API" "spiffe://$TD/dev/onprem/grpc/node" "$TMP/node"
  [ "$UID_" = 0 ] && client "grpc-js as uid 65534" setpriv --reuid 65534 --regid 65534 --clear-groups \
    node "$HERE/workload_api_node.js" denied "$API"
fi
check "the agent is still running" kill -0 "$AGENT_PID"
finish
