#!/usr/bin/python3
"""Our gRPC server (rpc_test_server, lib/rpc) against a client nobody here wrote: Debian's
python3-grpcio, without generated code (raw bytes through generic stubs), over a Unix socket
and over TCP with TLS 1.3 + mTLS; plus raw HTTP/2 frames for Rapid Reset and a slow reader.
Prints one line per check and "N passed, N failed"; exits non-zero on any failure."""
import os
import select
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import grpc

BUILD = os.environ.get("SIGIL_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
SERVER = os.path.join(BUILD, "test", "rpc_test_server")
E = "/sigil.test.Echo/"

passed = 0
failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {name}")
    else:
        failed += 1
        print(f"FAIL - {name}: {detail}")
    sys.stdout.flush()


def rpc_error(fn, *args, **kw):
    """Runs a call expected to fail; returns (code, details) or (None, result)."""
    try:
        return None, fn(*args, **kw)
    except grpc.RpcError as e:
        return e.code(), e.details()


class Server:
    def __init__(self, *args):
        self.p = subprocess.Popen([SERVER, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        self.port = None
        deadline = time.time() + 10
        while time.time() < deadline:
            line = self.p.stdout.readline()
            if not line:
                break
            if line.startswith("PORT "):
                self.port = int(line.split()[1])
            if line.strip() == "READY":
                return
        raise RuntimeError("rpc_test_server did not start: " + self.p.stderr.read())

    def rss_kib(self):
        with open(f"/proc/{self.p.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return -1

    def stop(self):
        """SIGTERM: graceful shutdown; the exit status says whether every handle closed."""
        self.p.terminate()
        try:
            rc = self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = -9
        err = self.p.stderr.read()
        return rc, err


def stats(ch):
    text = ch.unary_unary(E + "Stats")(b"", timeout=5).decode()
    return dict(kv.split("=") for kv in text.split())


def wait_for(fn, secs=5.0):
    end = time.time() + secs
    while time.time() < end:
        if fn():
            return True
        time.sleep(0.05)
    return False


# ---- raw HTTP/2 (just enough frames for the abuse checks) ----

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(
        ">I", sid) + payload


def hpack_literal(name, value):
    # literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2)
    n, v = name.encode(), value.encode()
    assert len(n) < 127 and len(v) < 127
    return b"\x00" + bytes([len(n)]) + n + bytes([len(v)]) + v


def request_block(path, extra=()):
    hdrs = [(":method", "POST"), (":scheme", "http"), (":path", path),
            (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers")]
    return b"".join(hpack_literal(k, v) for k, v in [*hdrs, *extra])


def read_frames(sock, secs):
    """Reads frames until EOF or secs pass; returns (frames, eof)."""
    buf = b""
    frames = []
    end = time.time() + secs
    eof = False
    while time.time() < end:
        r, _, _ = select.select([sock], [], [], max(0.0, end - time.time()))
        if not r:
            break
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            eof = True
            break
        if not data:
            eof = True
            break
        buf += data
        while len(buf) >= 9:
            ln = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + ln:
                break
            frames.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF,
                           buf[9:9 + ln]))
            buf = buf[9 + ln:]
    return frames, eof


def rapid_reset(path, sock_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    out = PREFACE + frame(4, 0, 0)  # SETTINGS
    block = request_block(path)
    sid = 1
    for _ in range(500):
        out += frame(1, 0x4, sid, block)  # HEADERS, END_HEADERS
        out += frame(3, 0, sid, struct.pack(">I", 8))  # RST_STREAM CANCEL
        sid += 2
    try:
        s.sendall(out)
    except (BrokenPipeError, ConnectionResetError):
        pass
    frames, eof = read_frames(s, 5)
    s.close()
    goaways = [f for f in frames if f[0] == 7]
    codes = [int.from_bytes(f[3][4:8], "big") for f in goaways]
    return codes, eof


def bad_content_type(sock_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    block = b"".join(hpack_literal(k, v) for k, v in [
        (":method", "POST"), (":scheme", "http"), (":path", E + "Unary"),
        (":authority", "localhost"), ("content-type", "application/json")])
    s.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x5, 1, block))
    frames, _ = read_frames(s, 2)
    s.close()
    heads = [f for f in frames if f[0] == 1 and f[2] == 1]
    # the response is tiny; ":status 415" is not in the static table, so it is a literal
    return heads and b"415" in heads[0][3]


def slow_reader(sock_path):
    """Opens Flood (64 KiB messages) and never reads: the server must stop at its outbound
    cap (a failed send, RESOURCE_EXHAUSTED) instead of buffering without bound."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(sock_path)
    body = b"65536"
    msg = b"\x00" + struct.pack(">I", len(body)) + body
    s.sendall(PREFACE + frame(4, 0, 0) + frame(1, 0x4, 1, request_block(E + "Flood")) +
              frame(0, 0x1, 1, msg))
    return s


def pki(d):
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=rpc test CA")
    for name, san in (("server", "DNS:localhost,IP:127.0.0.1"), ("client", "DNS:client")):
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext")

    def rd(n):
        with open(os.path.join(d, n), "rb") as f:
            return f.read()

    return {n: rd(n) for n in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


def unix_checks(tmp):
    sock = os.path.join(tmp, "s.sock")
    srv = Server("--unix", sock)
    ch = grpc.insecure_channel("unix://" + sock)
    unary = ch.unary_unary(E + "Unary")

    check("unary echo", unary(b"hello \x00\xff", timeout=5) == b"hello \x00\xff")
    check("unary echo, empty message", unary(b"", timeout=5) == b"")
    big = os.urandom(3 << 20)
    check("unary echo, 3 MiB", unary(big, timeout=20) == big)

    got = list(ch.unary_stream(E + "ServerStream")(b"50 1", timeout=10))
    check("server streaming: 50 messages in order", got == [str(i).encode() for i in range(50)],
          repr(got[:5]))

    before = int(stats(ch)["cancels"])
    it = ch.unary_stream(E + "ServerStream")(b"100000 20", timeout=30)
    first = [next(it), next(it)]
    it.cancel()
    code, _ = rpc_error(lambda: list(it))
    check("client cancel mid-stream: the client sees CANCELLED",
          code == grpc.StatusCode.CANCELLED and first == [b"0", b"1"], f"{code} {first}")
    check("client cancel mid-stream: the server's on_cancel ran",
          wait_for(lambda: int(stats(ch)["cancels"]) == before + 1), stats(ch))

    before = int(stats(ch)["cancels"])
    code, details = rpc_error(ch.unary_unary(E + "Slow"), b"3000", timeout=0.3)
    check("deadline shorter than the method: DEADLINE_EXCEEDED",
          code == grpc.StatusCode.DEADLINE_EXCEEDED, f"{code} {details}")
    check("deadline: the server cancelled the handler",
          wait_for(lambda: int(stats(ch)["cancels"]) == before + 1), stats(ch))
    check("no deadline issue when the method is fast",
          ch.unary_unary(E + "Slow")(b"10", timeout=5) == b"done")

    code, details = rpc_error(ch.unary_unary(E + "Secure"), b"x", timeout=5)
    check("missing workload.spiffe.io header: INVALID_ARGUMENT (E-2)",
          code == grpc.StatusCode.INVALID_ARGUMENT and
          details == "security header missing from request", f"{code} {details!r}")
    code, details = rpc_error(ch.unary_unary(E + "Secure"), b"x", timeout=5,
                              metadata=[("workload.spiffe.io", "false")])
    check("workload.spiffe.io: false is refused (H-8)",
          code == grpc.StatusCode.INVALID_ARGUMENT, f"{code} {details!r}")
    code, details = rpc_error(ch.unary_unary(E + "Secure"), b"x", timeout=5,
                              metadata=[("workload.spiffe.io", "true"),
                                        ("workload.spiffe.io", "true")])
    check("workload.spiffe.io twice is refused (H-8: exactly one)",
          code == grpc.StatusCode.INVALID_ARGUMENT, f"{code} {details!r}")
    got = ch.unary_unary(E + "Secure")(b"x", timeout=5, metadata=[("workload.spiffe.io", "true")])
    check("workload.spiffe.io: true is accepted", got == b"x")

    code, details = rpc_error(ch.unary_unary(E + "NoSuchMethod"), b"", timeout=5)
    check("unknown method: UNIMPLEMENTED", code == grpc.StatusCode.UNIMPLEMENTED,
          f"{code} {details}")
    code, details = rpc_error(ch.unary_unary("/nosuch.Service/Method"), b"", timeout=5)
    check("unknown service: UNIMPLEMENTED", code == grpc.StatusCode.UNIMPLEMENTED, str(code))

    text = ch.unary_unary(E + "Peer")(b"", timeout=5).decode()
    want = f"uid={os.getuid()} gid={os.getgid()} pid={os.getpid()} pidfd=1"
    check("peer: SO_PEERCRED uid/gid/pid of this process, pidfd held", text == want,
          f"{text} != {want}")

    msgs = [b"a", b"", b"c" * 70000, b"d"]
    got = list(ch.stream_stream(E + "Bidi")(iter(msgs), timeout=10))
    check("bidi echo", got == msgs, repr([len(m) for m in got]))
    got = ch.stream_unary(E + "ClientStream")(iter([b"ab", b"cde", b""]), timeout=10)
    check("client streaming", got == b"3 5", repr(got))

    message = "d\u00e9j\u00e0 vu: 100% \u2713 %41 \"quoted\"\nline two"
    code, details = rpc_error(ch.unary_unary(E + "Fail"), f"9:{message}".encode(), timeout=5)
    check("handler status with non-ASCII and % in the message arrives intact",
          code == grpc.StatusCode.FAILED_PRECONDITION and details == message,
          f"{code} {details!r}")

    # many concurrent calls on one channel (over the 100 concurrent streams setting)
    futures = [unary.future(str(i).encode(), timeout=20) for i in range(300)]
    ok = all(f.result() == str(i).encode() for i, f in enumerate(futures))
    check("300 concurrent unary calls on one connection", ok)

    check("HTTP/2 request with content-type application/json: HTTP 415", bad_content_type(sock))

    codes, eof = rapid_reset(E + "Slow", sock)
    check("Rapid Reset: GOAWAY ENHANCE_YOUR_CALM (0xb) and the connection closes",
          0xB in codes and eof, f"goaway codes {codes}, eof {eof}")
    check("server still serves after the Rapid Reset", unary(b"still", timeout=5) == b"still")

    rss0 = srv.rss_kib()
    s = slow_reader(sock)
    check("slow reader: the server's send hits the outbound cap",
          wait_for(lambda: int(stats(ch)["send_range"]) >= 1, 10), stats(ch))
    rss1 = srv.rss_kib()
    check("slow reader: server memory stays bounded (< 32 MiB growth)",
          rss1 - rss0 < 32 * 1024, f"{rss0} KiB -> {rss1} KiB")
    s.close()
    check("server still serves after the slow reader", unary(b"again", timeout=5) == b"again")

    ch.close()
    rc, err = srv.stop()
    check("graceful shutdown on SIGTERM, every handle closed (exit 0)", rc == 0, f"rc={rc} {err}")
    check("socket file removed at shutdown", not os.path.exists(sock))

    # a small message cap
    srv = Server("--unix", sock, "--max-message", "65536")
    ch = grpc.insecure_channel("unix://" + sock)
    code, details = rpc_error(ch.unary_unary(E + "Unary"), b"x" * (100 * 1024), timeout=5)
    check("100 KiB request over a 64 KiB cap: RESOURCE_EXHAUSTED",
          code == grpc.StatusCode.RESOURCE_EXHAUSTED, f"{code} {details}")
    got = ch.unary_unary(E + "Unary")(b"y" * 65536, timeout=5)
    check("a request of exactly the cap passes", got == b"y" * 65536)
    ch.close()
    rc, err = srv.stop()
    check("second server stops cleanly", rc == 0, f"rc={rc} {err}")


def tls_checks(tmp):
    f = pki(tmp)
    p = lambda n: os.path.join(tmp, n)  # noqa: E731
    srv = Server("--tcp", "127.0.0.1:0", "--cert", p("server.pem"), "--key", p("server.key"),
                 "--ca", p("ca.pem"), "--require-client-cert")
    target = f"localhost:{srv.port}"
    creds = grpc.ssl_channel_credentials(f["ca.pem"], f["client.key"], f["client.pem"])
    ch = grpc.secure_channel(target, creds)
    check("TLS 1.3 + mTLS: unary echo from grpcio",
          ch.unary_unary(E + "Unary")(b"over tls", timeout=10) == b"over tls")
    got = list(ch.unary_stream(E + "ServerStream")(b"5 1", timeout=10))
    check("TLS: server streaming", got == [str(i).encode() for i in range(5)])
    ch.close()

    ch = grpc.secure_channel(target, grpc.ssl_channel_credentials(f["ca.pem"]))
    code, details = rpc_error(ch.unary_unary(E + "Unary"), b"x", timeout=5)
    check("TLS: a client without a certificate is refused (UNAVAILABLE)",
          code == grpc.StatusCode.UNAVAILABLE, f"{code} {details}")
    ch.close()
    rc, err = srv.stop()
    check("TLS server stops cleanly", rc == 0, f"rc={rc} {err}")


def main():
    if not os.path.exists(SERVER):
        print(f"FAIL - {SERVER} not built")
        print("0 passed, 1 failed")
        return 1
    with tempfile.TemporaryDirectory(prefix="sigil-rpc-") as tmp:
        for part in (unix_checks, tls_checks):
            try:
                part(tmp)
            except Exception as e:  # a crash is one more failure, not a silent stop
                check(f"{part.__name__} ran to the end", False, repr(e))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
