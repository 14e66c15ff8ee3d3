#!/usr/bin/python3
"""Our gRPC client (rpc_test_client, lib/rpc) against a server nobody here wrote: Debian's
python3-grpcio with generic (raw bytes) handlers, over TLS 1.3 on 127.0.0.1 with a throwaway
CA made by the openssl CLI (with and without required client certificates), and over a Unix
socket. Prints one line per check and "N passed, N failed"; exits non-zero on any failure."""
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures

import grpc

BUILD = os.environ.get("SIGIL_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
CLIENT = os.path.join(BUILD, "test", "rpc_test_client")
E = "/sigil.test.Echo/"
FAIL_MESSAGE = "n\u00f6n-ASCII 100% \u2713 %zz"

passed = 0
failed = 0
cancelled_streams = 0
lock = threading.Lock()


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"FAIL - {name}: {detail}")
    sys.stdout.flush()


# ---- the python server ----

def unary(req, ctx):
    return req


def meta(req, ctx):
    md = dict(ctx.invocation_metadata())
    b = md.get("x-test-bin", b"")
    return f"x-test={md.get('x-test', '')} x-test-bin={b.hex()}".encode()


def server_stream(req, ctx):
    n = int(req.decode() or "0")
    for i in range(n):
        if not ctx.is_active():
            return
        yield str(i).encode()
        time.sleep(0.01)


def endless(req, ctx):
    def on_end():
        # this stream never completes on its own: any end is a cancellation
        global cancelled_streams
        with lock:
            cancelled_streams += 1

    ctx.add_callback(on_end)
    i = 0
    while ctx.is_active():
        yield str(i).encode()
        i += 1
        time.sleep(0.02)


def bidi(it, ctx):
    for m in it:
        yield m


def client_stream(it, ctx):
    msgs = list(it)
    return f"{len(msgs)} {sum(len(m) for m in msgs)}".encode()


def fail(req, ctx):
    ctx.abort(grpc.StatusCode.PERMISSION_DENIED, FAIL_MESSAGE)


def slow(req, ctx):
    end = time.time() + 3
    while time.time() < end and ctx.is_active():
        time.sleep(0.02)
    return b"done"


def stats(req, ctx):
    with lock:
        return f"cancelled={cancelled_streams}".encode()


def big(req, ctx):
    return b"z" * int(req.decode())


HANDLERS = grpc.method_handlers_generic_handler("sigil.test.Echo", {
    "Unary": grpc.unary_unary_rpc_method_handler(unary),
    "Meta": grpc.unary_unary_rpc_method_handler(meta),
    "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
    "Endless": grpc.unary_stream_rpc_method_handler(endless),
    "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
    "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
    "Slow": grpc.unary_unary_rpc_method_handler(slow),
    "Stats": grpc.unary_unary_rpc_method_handler(stats),
    "Big": grpc.unary_unary_rpc_method_handler(big),
})


def start_server(addr, creds=None):
    s = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    s.add_generic_rpc_handlers((HANDLERS,))
    port = s.add_secure_port(addr, creds) if creds is not None else s.add_insecure_port(addr)
    s.start()
    return s, port


# ---- running our client ----

def run(target, method, *args, timeout=30):
    p = subprocess.run([CLIENT, "--target", target, "--method", method, *args],
                       capture_output=True, text=True, timeout=timeout)
    msgs = [line[4:] for line in p.stdout.splitlines() if line.startswith("MSG ")]
    status = [line for line in p.stdout.splitlines() if line.startswith("STATUS ")]
    code, name, message = None, None, None
    if status:
        parts = status[-1].split(" ", 3)
        code, name = int(parts[1]), parts[2]
        message = parts[3] if len(parts) > 3 else ""
    return {"rc": p.returncode, "msgs": msgs, "code": code, "name": name, "message": message,
            "nstatus": len(status), "out": p.stdout, "err": p.stderr}


def ok_call(r):
    return r["rc"] == 0 and r["code"] == 0 and r["nstatus"] == 1


def desc(r):
    return f"rc={r['rc']} status={r['name']} {r['message']!r} msgs={r['msgs'][:5]} err={r['err'][-300:]!r}"


def pki(d):
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=rpc test CA")
    for name, san in (("server", "DNS:localhost,IP:127.0.0.1"), ("client", "DNS:client")):
        ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
             f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")
    # an unrelated CA, to check that the client refuses a server it cannot verify
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "other.key", "-out", "other.pem", "-days", "1", "-subj", "/CN=other CA")

    def rd(n):
        with open(os.path.join(d, n), "rb") as f:
            return f.read()

    return {n: rd(n) for n in ("ca.pem", "server.pem", "server.key")}


def tls_checks(tmp):
    f = pki(tmp)
    p = lambda n: os.path.join(tmp, n)  # noqa: E731
    ca = ["--ca", p("ca.pem")]
    mine = ["--cert", p("client.pem"), "--key", p("client.key")]

    creds = grpc.ssl_server_credentials([(f["server.key"], f["server.pem"])])
    srv, port = start_server("127.0.0.1:0", creds)
    t = f"localhost:{port}"

    r = run(t, E + "Unary", *ca, "--data", "hello over TLS 1.3")
    check("TLS unary echo", ok_call(r) and r["msgs"] == ["hello over TLS 1.3"], desc(r))
    r = run(f"127.0.0.1:{port}", E + "Unary", *ca, "--data", "by IP")
    check("TLS unary to an IP target (IP SAN checked)", ok_call(r) and r["msgs"] == ["by IP"],
          desc(r))
    r = run(t, E + "Unary", *ca, "--data", "sync", "--sync")
    check("synchronous unary helper", ok_call(r) and r["msgs"] == ["sync"], desc(r))
    r = run(t, E + "ServerStream", *ca, "--kind", "server", "--data", "7")
    check("server streaming: 7 messages in order",
          ok_call(r) and r["msgs"] == [str(i) for i in range(7)], desc(r))
    r = run(t, E + "Bidi", *ca, "--kind", "bidi", "--data", "a", "--data", "bb", "--data", "ccc")
    check("bidi echo", ok_call(r) and r["msgs"] == ["a", "bb", "ccc"], desc(r))
    r = run(t, E + "ClientStream", *ca, "--kind", "client", "--data", "ab", "--data", "cde")
    check("client streaming", ok_call(r) and r["msgs"] == ["2 5"], desc(r))
    r = run(t, E + "Meta", *ca, "--md", "x-test=hello", "--md", "x-test-bin=\x01\x02")
    check("metadata (text and -bin) reaches the server",
          ok_call(r) and r["msgs"] == ["x-test=hello x-test-bin=0102"], desc(r))
    r = run(t, E + "Fail", *ca)
    check("server status + non-ASCII message propagated (PERMISSION_DENIED)",
          r["code"] == 7 and r["message"] == FAIL_MESSAGE, desc(r))
    r = run(t, E + "Slow", *ca, "--timeout", "300")
    check("deadline exceeded", r["code"] == 4 and r["name"] == "DEADLINE_EXCEEDED", desc(r))
    r = run(t, E + "NoSuch", *ca)
    check("unknown method: UNIMPLEMENTED from grpcio", r["code"] == 12, desc(r))
    r = run(t, E + "Big", *ca, "--data", str(3 << 20))
    check("3 MiB response", ok_call(r) and r["msgs"] == ["z" * (3 << 20)], desc(r)[:200])
    r = run(t, E + "Big", *ca, "--data", "70000", "--max-message", "65536")
    check("response over the client's cap: RESOURCE_EXHAUSTED", r["code"] == 8, desc(r))

    r = run(t, E + "Endless", *ca, "--kind", "server", "--cancel-after", "3")
    check("client cancel mid-stream: CANCELLED after 3 messages",
          r["code"] == 1 and r["msgs"] == ["0", "1", "2"], desc(r))
    end = time.time() + 5
    while time.time() < end and cancelled_streams < 1:
        time.sleep(0.05)
    check("client cancel: the grpcio server saw the stream end", cancelled_streams >= 1)

    r = run(t, E + "Unary", "--ca", p("other.pem"), "--data", "x")
    check("server certificate from an unknown CA: UNAVAILABLE", r["code"] == 14, desc(r))
    r = run(t, E + "Unary", *ca, "--server-name", "example.com", "--data", "x")
    check("server certificate for another name: UNAVAILABLE", r["code"] == 14, desc(r))
    srv.stop(0)

    r = run(t, E + "Unary", *ca, "--data", "x")
    check("server gone: UNAVAILABLE", r["code"] == 14 and r["nstatus"] == 1, desc(r))

    creds = grpc.ssl_server_credentials([(f["server.key"], f["server.pem"])],
                                        root_certificates=f["ca.pem"], require_client_auth=True)
    srv, port = start_server("127.0.0.1:0", creds)
    t = f"localhost:{port}"
    r = run(t, E + "Unary", *ca, *mine, "--data", "mtls")
    check("mTLS: client certificate accepted", ok_call(r) and r["msgs"] == ["mtls"], desc(r))
    r = run(t, E + "ServerStream", *ca, *mine, "--kind", "server", "--data", "3")
    check("mTLS: server streaming", ok_call(r) and r["msgs"] == ["0", "1", "2"], desc(r))
    r = run(t, E + "Unary", *ca, "--data", "no cert")
    check("mTLS: without a client certificate the call is refused (UNAVAILABLE)",
          r["code"] == 14 and r["msgs"] == [], desc(r))
    srv.stop(0)


def unix_checks(tmp):
    sock = os.path.join(tmp, "py.sock")
    srv, _ = start_server("unix://" + sock)
    t = "unix://" + sock
    r = run(t, E + "Unary", "--data", "over unix")
    check("Unix socket unary against grpcio", ok_call(r) and r["msgs"] == ["over unix"], desc(r))
    r = run(t, E + "Bidi", "--kind", "bidi", "--data", "x", "--data", "y")
    check("Unix socket bidi against grpcio", ok_call(r) and r["msgs"] == ["x", "y"], desc(r))
    srv.stop(0)
    r = run("unix://" + os.path.join(tmp, "nobody.sock"), E + "Unary")
    check("no socket: UNAVAILABLE", r["code"] == 14, desc(r))
    r = run("127.0.0.1", E + "Unary")
    check("bad target is a usage error, not a call", r["rc"] == 2 and r["nstatus"] == 0, desc(r))


def main():
    if not os.path.exists(CLIENT):
        print(f"FAIL - {CLIENT} not built")
        print("0 passed, 1 failed")
        return 1
    with tempfile.TemporaryDirectory(prefix="sigil-rpcc-") as tmp:
        for part in (tls_checks, unix_checks):
            try:
                part(tmp)
            except Exception as e:  # a crash is one more failure, not a silent stop
                check(f"{part.__name__} ran to the end", False, repr(e))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
