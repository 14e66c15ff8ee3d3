#!/usr/bin/env bash
# lib/http against curl (a client no one here wrote): a throwaway CA, server and client
# certificates made with openssl, then http_test_server on a Unix socket, a public TLS port
# (HTTP/1.1 only) and a mutual-TLS port (HTTP/2), checked request by request. Prints one line
# per check and "N passed, N failed"; exits non-zero if anything failed.
set -u

BUILD=${SIGIL_BUILD_DIR:?set SIGIL_BUILD_DIR to the build directory}
BIN="$BUILD/test/http_test_server"
[ -x "$BIN" ] || { echo "missing $BIN (build the http_test_server target)"; exit 1; }

tmp=$(mktemp -d /tmp/sigil-http-curl.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   - $1"; }
bad() { failed=$((failed + 1)); echo "FAIL - $1: $2"; }
# expect NAME GOT WANT
expect() { if [ "$2" = "$3" ]; then ok "$1"; else bad "$1" "got '$2', want '$3'"; fi; }
# expect_has NAME HAYSTACK NEEDLE
expect_has() {
  case "$2" in *"$3"*) ok "$1" ;; *) bad "$1" "'$2' does not contain '$3'" ;; esac
}

# ---- certificates: CA, server (SAN localhost/127.0.0.1), client (URI SAN SPIFFE ID) ----
cd "$tmp"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # name subject
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -sha256 -days 1 -subj "$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.crt" 2>/dev/null
}
leaf() { # name ca subject extensions
  key "$1.key"
  openssl req -new -key "$1.key" -subj "$3" -out "$1.csr" 2>/dev/null
  printf '%b' "$4" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.crt" -CAkey "$2.key" -CAcreateserial -days 1 \
    -sha256 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}
ca ca "/CN=sigil test CA"
ca rogue "/CN=rogue CA"
leaf server ca "/CN=localhost" \
  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
CLIENT_EXT="basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=URI:spiffe://example.org/admin\n"
leaf client ca "/O=sigil test" "$CLIENT_EXT"
leaf intruder rogue "/O=sigil test" "$CLIENT_EXT"
if [ -s ca.crt ] && [ -s server.crt ] && [ -s client.crt ] && [ -s intruder.crt ]; then
  ok "openssl made the CA, server and client certificates"
else
  bad "openssl made the CA, server and client certificates" "a file is missing"
  echo "$passed passed, $failed failed"
  exit 1
fi

leaf rotated ca "/O=rotated/CN=localhost" \
  "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"

SOCK="$tmp/admin.sock"
# the server reads serve.crt/serve.key, which the rotation check below replaces
cp server.crt serve.crt
cp server.key serve.key
start() { # out-file err-file; sets pid, PUB, MTLS
  "$BIN" --unix "$SOCK" --cert serve.crt --key serve.key --ca ca.crt >"$1" 2>"$2" &
  pid=$!
  for _ in $(seq 200); do
    grep -q '^READY' "$1" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  local line
  line=$(grep '^READY' "$1" || true)
  PUB=$(sed -n 's/.*public=\([0-9]*\).*/\1/p' <<<"$line")
  MTLS=$(sed -n 's/.*mtls=\([0-9]*\).*/\1/p' <<<"$line")
  [ -n "$PUB" ] && [ -n "$MTLS" ]
}
# stop: SIGTERM, wait (at most 20 s, then SIGKILL: rc 137) for the exit; sets STOP_RC
stop() {
  local t=0
  kill -TERM "$pid"
  while [ $t -lt 200 ]; do
    kill -0 "$pid" 2>/dev/null || break
    grep -q '^State:.*Z' /proc/"$pid"/status 2>/dev/null && break # exited, not yet reaped
    sleep 0.1
    t=$((t + 1))
  done
  [ $t -lt 200 ] || kill -9 "$pid"
  wait "$pid" 2>/dev/null
  STOP_RC=$?
  pid=""
}

if start out err; then ok "http_test_server printed READY"; else
  bad "http_test_server printed READY" "$(cat err)"
  echo "$passed passed, $failed failed"
  exit 1
fi

U=(curl -sS --max-time 10 --unix-socket "$SOCK")
P=(curl -sS --max-time 10 --cacert ca.crt)
M=(curl -sS --max-time 10 --cacert ca.crt --cert client.crt --key client.key)
PURL="https://localhost:$PUB"
MURL="https://localhost:$MTLS"
# req CURL-ARGS... : prints "<code> <version>", the body goes to ./body, headers to ./hdr
req() { rm -f body hdr; "$@" -o body -D hdr -w '%{http_code} %{http_version}' 2>curl.err; }

# ---- Unix socket: no TLS, caller known by SO_PEERCRED ----
expect "Unix socket file mode is 600" "$(stat -c %a "$SOCK")" "600"
expect "unix GET /live -> 200" "$(req "${U[@]}" http://x/live)" "200 1.1"
expect "unix GET /live body" "$(cat body)" '{"status":"ok"}'
req "${U[@]}" http://x/whoami >/dev/null
expect_has "unix GET /whoami shows the test's uid (SO_PEERCRED)" "$(cat body)" "\"uid\":$(id -u),"
expect_has "unix GET /whoami shows the test's gid" "$(cat body)" "\"gid\":$(id -g),"
expect "unix --http2 (h2c upgrade) is answered with HTTP/1.1" \
  "$(req "${U[@]}" --http2 http://x/live)" "200 1.1"
expect "unix HTTP/2 prior knowledge is refused (no h2 without mTLS)" \
  "$(req "${U[@]}" --http2-prior-knowledge http://x/live)" "000 0"

# ---- public TLS port: HTTP/1.1 only, no client auth ----
expect "public --http2 GET /live answered with HTTP/1.1" "$(req "${P[@]}" --http2 "$PURL/live")" "200 1.1"
req "${P[@]}" "$PURL/whoami" >/dev/null
expect "public GET /whoami is anonymous TLS" "$(cat body)" '{"kind":"tls"}'
expect "public TLS 1.1 is refused" "$(req "${P[@]}" --tlsv1.1 --tls-max 1.1 "$PURL/live")" "000 0"
expect_has "public default negotiates TLS 1.3" \
  "$(curl -sS -v --max-time 10 --cacert ca.crt "$PURL/live" 2>&1 >/dev/null | grep -m1 'SSL connection using')" "TLSv1.3"

# ---- mutual TLS port: HTTP/2 and HTTP/1.1, client chain -> SPIFFE ID ----
expect "mTLS GET /whoami with the client cert over HTTP/2" "$(req "${M[@]}" "$MURL/whoami")" "200 2"
expect "mTLS /whoami returns the SPIFFE ID" "$(cat body)" '{"kind":"mtls","id":"spiffe://example.org/admin"}'
expect "mTLS --http1.1 also offered" "$(req "${M[@]}" --http1.1 "$MURL/whoami")" "200 1.1"
code=$(req "${P[@]}" "$MURL/whoami")
rc=$?
if [ "$code" = "000 0" ] && [ $rc -ne 0 ]; then
  ok "mTLS without a client certificate: handshake fails (curl rc $rc)"
else
  bad "mTLS without a client certificate: handshake fails" "got '$code' rc $rc"
fi
code=$(req "${P[@]}" --cert intruder.crt --key intruder.key "$MURL/whoami")
rc=$?
if [ "$code" = "000 0" ] && [ $rc -ne 0 ]; then
  ok "mTLS with a certificate of another CA: handshake fails (curl rc $rc)"
else
  bad "mTLS with a certificate of another CA: handshake fails" "got '$code' rc $rc"
fi
expect_has "server logged why it rejected the other CA's certificate" "$(cat err)" \
  "client certificate rejected: chain does not verify"

# ---- limits and errors ----
head -c $((2 * 1024 * 1024)) /dev/zero >big
expect "unix 2 MiB POST -> 413" "$(req "${U[@]}" --data-binary @big http://x/echo)" "413 1.1"
expect_has "413 body is JSON with a code and a reason" "$(cat body)" '{"error":{"code":"http.body_too_large","message":"'
expect_has "413 content type is JSON" "$(tr -d '\r' <hdr)" "content-type: application/json"
expect "public TLS 2 MiB POST -> 413" "$(req "${P[@]}" --data-binary @big "$PURL/echo")" "413 1.1"
expect "unix 2 MiB chunked POST -> 413" \
  "$(req "${U[@]}" -H 'Transfer-Encoding: chunked' --data-binary @big http://x/echo)" "413 1.1"
expect_has "chunked 413 body is JSON" "$(cat body)" '{"error":{"code":"http.body_too_large","message":"'
code=$(req "${M[@]}" --data-binary @big "$MURL/echo")
case "$code" in
  200*) bad "mTLS HTTP/2 2 MiB POST is refused" "got $code" ;;
  *) ok "mTLS HTTP/2 2 MiB POST is refused (h2o 2.2.5 resets the stream: $code)" ;;
esac
expect "POST /echo small body" "$(req "${U[@]}" --data-binary hello http://x/echo)" "200 1.1"
expect "POST /echo body" "$(cat body)" '{"len":5}'
expect "unix unknown path -> 404" "$(req "${U[@]}" http://x/nope)" "404 1.1"
expect "404 body" "$(cat body)" '{"error":{"code":"http.not_found","message":"not found"}}'
expect "mTLS unknown path -> 404 over HTTP/2" "$(req "${M[@]}" "$MURL/nope")" "404 2"
expect "404 body over HTTP/2" "$(cat body)" '{"error":{"code":"http.not_found","message":"not found"}}'
expect "wrong method POST /live -> 405" "$(req "${U[@]}" -X POST http://x/live)" "405 1.1"
expect "405 body" "$(cat body)" '{"error":{"code":"http.method_not_allowed","message":"method not allowed"}}'
expect_has "405 names the allowed method" "$(tr -d '\r' <hdr)" "allow: GET"
hdrs=()
for i in $(seq 70); do hdrs+=(-H "x-h$i: v"); done
expect "70 request headers -> 431" "$(req "${U[@]}" "${hdrs[@]}" http://x/live)" "431 1.1"
expect_has "431 body has code http.headers_too_large" "$(cat body)" '{"error":{"code":"http.headers_too_large","message":"'
expect "public 70 request headers -> 431" "$(req "${P[@]}" "${hdrs[@]}" "$PURL/live")" "431 1.1"

# ---- deferred answers from a worker thread ----
expect "deferred GET /slow over HTTP/2" "$(req "${M[@]}" "$MURL/slow?ms=200")" "200 2"
expect "deferred body" "$(cat body)" '{"slow":true,"ms":200}'
expect "deferred GET /slow over the Unix socket" "$(req "${U[@]}" "http://x/slow?ms=50")" "200 1.1"
"${M[@]}" --max-time 0.3 -o /dev/null "$MURL/slow?ms=1500" 2>/dev/null
expect "client gives up on a slow request (curl rc 28)" "$?" "28"
sleep 2
expect_has "the late answer was dropped safely" "$(cat err)" "dropped: the client left"
expect "server still serves after the dropped answer" "$(req "${M[@]}" "$MURL/live")" "200 2"

# ---- clients that reset mid-request (a raw TLS client: curl cannot send a TCP reset) ----
# libuv refuses writes after a read error and h2o 2.2.5 ignores that refusal, so without
# lib/http's reaper each reset connection below would keep its socket forever.
sockets() { find /proc/"$pid"/fd -lname 'socket:*' 2>/dev/null | wc -l; }
before=$(sockets)
/usr/bin/python3 - "$PUB" "$MTLS" <<'PY'
import socket, ssl, struct, sys, time
for port, mtls in ((int(sys.argv[1]), False), (int(sys.argv[2]), True)):
    ctx = ssl.create_default_context(cafile="ca.crt")
    if mtls:
        ctx.load_cert_chain("client.crt", "client.key")
    for _ in range(5):
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        s.sendall(b"GET /live HTTP/1.1\r\nHost: x\r\n")  # half a request
        time.sleep(0.05)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # a TCP reset
PY
sleep 3
expect "10 connections reset mid-request are all freed within 3 s" "$(sockets)" "$before"
expect_has "the reaper failed h2o's stuck writes" "$(cat err)" "failing a write h2o left stuck"
expect "server still serves after the resets" "$(req "${P[@]}" "$PURL/live")" "200 1.1"

# ---- HTTP/2 Rapid Reset against deferred work (a raw HTTP/2 client: curl cannot reset) ----
# 40 times: HEADERS for a slow deferred request, then RST_STREAM at once. h2o 2.2.5 frees the
# stream slot on reset, so only our per-connection cap bounds the work left running.
/usr/bin/python3 - "$MTLS" <<'PY'
import socket, ssl, struct, sys, time
def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload
def lit(name, value):  # HPACK literal without indexing, new name, no Huffman
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value
ctx = ssl.create_default_context(cafile="ca.crt")
ctx.load_cert_chain("client.crt", "client.key")
ctx.set_alpn_protocols(["h2"])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
assert s.selected_alpn_protocol() == "h2"
out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0)
block = lit(b":method", b"GET") + lit(b":scheme", b"https") + lit(b":path", b"/slow?ms=300") + lit(b":authority", b"localhost")
for i in range(40):
    sid = 1 + 2 * i
    out += frame(1, 0x5, sid, block) + frame(3, 0, sid, struct.pack(">I", 8))  # HEADERS, RST_STREAM(CANCEL)
s.sendall(out)
time.sleep(1)
s.close()
PY
sleep 3
expect_has "Rapid Reset: deferrals beyond the per-connection cap are refused" "$(cat err)" \
  "deferral refused: 16 answers already pending"
expect "server still serves after the Rapid Reset burst" "$(req "${M[@]}" "$MURL/live")" "200 2"

# ---- certificate rotation (SIGHUP -> sigil_http_tls_reload) ----
subject() { curl -sS -v --max-time 10 --cacert ca.crt "$@" -o /dev/null 2>&1 | sed -n 's/^\*  subject: //p'; }
expect "before rotation: the first certificate" "$(subject "$PURL/live")" "CN=localhost"
cp rotated.crt serve.crt
cp rotated.key serve.key
kill -HUP "$pid"
sleep 0.5
expect_has "reload reported ok" "$(cat err)" "reload: ok"
expect "public port serves the rotated certificate" "$(subject "$PURL/live")" "O=rotated; CN=localhost"
expect "mTLS port serves the rotated certificate" \
  "$(subject --cert client.crt --key client.key "$MURL/live")" "O=rotated; CN=localhost"
cp server.crt serve.crt # a key that does not match: the reload must change nothing
kill -HUP "$pid"
sleep 0.5
expect_has "a bad reload is refused" "$(cat err)" "reload failed"
expect "and the rotated certificate stays" "$(subject "$PURL/live")" "O=rotated; CN=localhost"
cp server.crt serve.crt
cp server.key serve.key

# ---- Unix socket file rules ----
"$BIN" --unix "$SOCK" --cert serve.crt --key serve.key --ca ca.crt >out2 2>err2
rc=$?
if [ $rc -ne 0 ] && grep -q "another server is listening" err2; then
  ok "a second server refuses the live socket path"
else
  bad "a second server refuses the live socket path" "rc $rc: $(cat err2)"
fi
expect "first server unaffected" "$(req "${U[@]}" http://x/live)" "200 1.1"

# ---- graceful stop ----
stop
expect "SIGTERM: server stops cleanly (exit 0, no leaks under ASan)" "$STOP_RC" "0"
expect_has "server said it stopped" "$(cat err)" "stopped"
if [ -e "$SOCK" ]; then bad "socket file removed at stop" "still there"; else ok "socket file removed at stop"; fi

# a crashed server leaves a stale socket: the next one replaces it
start out3 err3 >/dev/null
kill -9 "$pid"
wait "$pid" 2>/dev/null
pid=""
if [ -S "$SOCK" ]; then ok "a killed server leaves its socket behind"; else bad "a killed server leaves its socket behind" "no socket"; fi
if start out4 err4; then ok "the next server replaces the stale socket"; else bad "the next server replaces the stale socket" "$(cat err4)"; fi
expect "and serves on it" "$(req "${U[@]}" http://x/live)" "200 1.1"
stop
expect "second stop is clean too" "$STOP_RC" "0"
: >"$SOCK.file" && mv "$SOCK.file" "$SOCK"
"$BIN" --unix "$SOCK" --cert serve.crt --key serve.key --ca ca.crt >out5 2>err5
rc=$?
if [ $rc -ne 0 ] && [ -f "$SOCK" ] && grep -q "not a socket" err5; then
  ok "a regular file at the socket path is left alone"
else
  bad "a regular file at the socket path is left alone" "rc $rc: $(cat err5)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
