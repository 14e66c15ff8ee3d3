#!/usr/bin/python3
"""The agent's Workload API (agent/workload_api.c, served by workload_harness over a real cache)
against Debian's python3-grpcio, with message classes built at run time from
proto/workload.proto (protoc-c writes the descriptor set; python3-protobuf makes the classes).
Checks W-6..W-10 and E-2/E-5: the SVID chain verifies with `openssl verify` against the bundle,
the key matches the leaf, a JWT-SVID verifies with `openssl dgst` against the JWKS and with
ValidateJWTSVID, a caller without an entry (uid 65534) and a removed entry get
PERMISSION_DENIED, a missing header INVALID_ARGUMENT, a stream sees rotations.
Prints one line per check and "N passed, N failed"; exits non-zero on any failure."""
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SRC = os.environ.get("SIGIL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
BUILD = os.environ.get("SIGIL_BUILD_DIR", os.path.join(SRC, "build"))
HARNESS = os.path.join(BUILD, "test", "workload_harness")
AGENT = os.path.join(BUILD, "agent", "sigil-agent")
API = "/SpiffeWorkloadAPI/"
HDR = [("workload.spiffe.io", "true")]
TD = "example.org"

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


def load_messages(tmp):
    """Message classes for workload.proto, from a descriptor set protoc-c writes."""
    out = os.path.join(tmp, "workload.desc")
    subprocess.run(["protoc-c", "-I", os.path.join(SRC, "proto"), "-I", "/usr/include",
                    "--include_imports", "-o", out, "workload.proto"], check=True)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out, "rb") as f:
        fds.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    names = ["X509SVIDRequest", "X509SVIDResponse", "X509BundlesRequest", "X509BundlesResponse",
             "JWTSVIDRequest", "JWTSVIDResponse", "JWTBundlesRequest", "JWTBundlesResponse",
             "ValidateJWTSVIDRequest", "ValidateJWTSVIDResponse"]
    if hasattr(message_factory, "GetMessageClass"):
        make = message_factory.GetMessageClass
    else:  # python3-protobuf 4.21 (Debian 12)
        make = message_factory.MessageFactory(pool).GetPrototype
    return {n: make(pool.FindMessageTypeByName(n)) for n in names}


class Harness:
    def __init__(self, tmp, *args):
        self.sock = os.path.join(tmp, "api.sock")
        self.fifo = os.path.join(tmp, "ctl")
        if not os.path.exists(self.fifo):
            os.mkfifo(self.fifo)
        self.err = open(os.path.join(tmp, "harness.err"), "a+")
        self.p = subprocess.Popen([HARNESS, "--socket", self.sock, "--td", TD, "--control",
                                   self.fifo, "--mode", "0666", *args],
                                  stdout=subprocess.PIPE, stderr=self.err, text=True)
        line = self.p.stdout.readline()
        if line.strip() != "READY":
            self.p.kill()
            self.err.seek(0)
            raise RuntimeError("workload_harness did not start: " + self.err.read())
        self.ctl = open(self.fifo, "w")

    def command(self, line):
        self.ctl.write(line + "\n")
        self.ctl.flush()

    def stop(self):
        self.ctl.close()
        self.p.terminate()
        try:
            rc = self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = -9
        self.err.close()
        return rc


def der_split(blob):
    """Splits concatenated DER certificates."""
    out = []
    i = 0
    while i < len(blob):
        if blob[i] != 0x30:
            raise ValueError("not a DER SEQUENCE")
        n = blob[i + 1]
        hdr = 2
        if n & 0x80:
            k = n & 0x7F
            n = int.from_bytes(blob[i + 2:i + 2 + k], "big")
            hdr = 2 + k
        out.append(blob[i:i + hdr + n])
        i += hdr + n
    return out


def pem(kind, der):
    b = base64.encodebytes(der).decode().replace("\n", "")
    lines = [b[i:i + 64] for i in range(0, len(b), 64)]
    return f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, capture_output=True)


def serial(der):
    r = openssl("x509", "-inform", "DER", "-noout", "-serial", data=der)
    return r.stdout.decode().strip()


def b64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def der_int(b):
    b = b.lstrip(b"\0") or b"\0"
    if b[0] & 0x80:
        b = b"\0" + b
    return bytes([2, len(b)]) + b


def verify_jwt_openssl(tmp, token, jwks):
    """Checks an ES256 JWS against the JWKS key of its kid with `openssl dgst -verify`."""
    h, p, s = token.split(".")
    kid = json.loads(b64u(h))["kid"]
    key = next(k for k in jwks["keys"] if k.get("kid") == kid)
    spki = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200") + b"\x04" + \
        b64u(key["x"]) + b64u(key["y"])
    sig = b64u(s)
    body = der_int(sig[:32]) + der_int(sig[32:])
    write(os.path.join(tmp, "jwt.pub"), pem("PUBLIC KEY", spki))
    with open(os.path.join(tmp, "jwt.sig"), "wb") as f:
        f.write(bytes([0x30, len(body)]) + body)
    with open(os.path.join(tmp, "jwt.data"), "wb") as f:
        f.write(f"{h}.{p}".encode())
    r = openssl("dgst", "-sha256", "-verify", os.path.join(tmp, "jwt.pub"), "-signature",
                os.path.join(tmp, "jwt.sig"), os.path.join(tmp, "jwt.data"))
    return r.returncode == 0 and b"Verified OK" in r.stdout, r.stdout + r.stderr


def stub(ch, M, method, req, resp, stream):
    make = ch.unary_stream if stream else ch.unary_unary
    return make(API + method, request_serializer=M[req].SerializeToString,
                response_deserializer=M[resp].FromString)


def main_checks(tmp, M):
    uid = os.getuid()
    h = Harness(tmp, "--entry", f"w1:spiffe://{TD}/w1:unix:uid:{uid}:hint=first",
                "--entry", f"w2:spiffe://{TD}/w2:unix:uid:{uid},unix:path:{os.path.realpath(sys.executable)}",
                "--entry", f"other:spiffe://{TD}/other:unix:uid:4242")
    ch = grpc.insecure_channel("unix:" + h.sock)
    try:
        x509 = stub(ch, M, "FetchX509SVID", "X509SVIDRequest", "X509SVIDResponse", True)
        first = next(x509(M["X509SVIDRequest"](), metadata=HDR, timeout=10))
        ids = [s.spiffe_id for s in first.svids]
        check("FetchX509SVID returns the caller's entries, not others' (W-6)",
              sorted(ids) == [f"spiffe://{TD}/w1", f"spiffe://{TD}/w2"], ids)
        check("svids[0] is the first entry, with its hint", ids[0] == f"spiffe://{TD}/w1" and
              first.svids[0].hint == "first", (ids, first.svids[0].hint))
        s0 = first.svids[0]
        chain = der_split(s0.x509_svid)
        bundle = der_split(s0.bundle)
        check("chain is leaf + intermediate, bundle one root", len(chain) == 2 and
              len(bundle) == 1, (len(chain), len(bundle)))
        write(os.path.join(tmp, "leaf.pem"), pem("CERTIFICATE", chain[0]))
        write(os.path.join(tmp, "chain.pem"), "".join(pem("CERTIFICATE", c) for c in chain[1:]))
        write(os.path.join(tmp, "bundle.pem"), "".join(pem("CERTIFICATE", c) for c in bundle))
        write(os.path.join(tmp, "key.pem"), pem("PRIVATE KEY", s0.x509_svid_key))
        r = openssl("verify", "-CAfile", os.path.join(tmp, "bundle.pem"), "-untrusted",
                    os.path.join(tmp, "chain.pem"), os.path.join(tmp, "leaf.pem"))
        check("openssl verify accepts the chain against the bundle",
              r.returncode == 0 and b": OK" in r.stdout, r.stdout + r.stderr)
        k1 = openssl("pkey", "-in", os.path.join(tmp, "key.pem"), "-pubout").stdout
        k2 = openssl("x509", "-in", os.path.join(tmp, "leaf.pem"), "-noout", "-pubkey").stdout
        check("the PKCS#8 key matches the leaf", k1 != b"" and k1 == k2, (k1, k2))
        r = openssl("x509", "-in", os.path.join(tmp, "leaf.pem"), "-noout", "-ext",
                    "subjectAltName")
        check("the leaf carries the SPIFFE ID", f"URI:spiffe://{TD}/w1".encode() in r.stdout,
              r.stdout)

        xb = stub(ch, M, "FetchX509Bundles", "X509BundlesRequest", "X509BundlesResponse", True)
        b = next(xb(M["X509BundlesRequest"](), metadata=HDR, timeout=10))
        check("FetchX509Bundles has the own trust domain (W-7)",
              dict(b.bundles).get(f"spiffe://{TD}") == s0.bundle, list(b.bundles.keys()))

        jb = stub(ch, M, "FetchJWTBundles", "JWTBundlesRequest", "JWTBundlesResponse", True)
        jr = next(jb(M["JWTBundlesRequest"](), metadata=HDR, timeout=10))
        jwks = json.loads(dict(jr.bundles)[f"spiffe://{TD}"])
        check("FetchJWTBundles: a JWKS of jwt-svid keys only (W-9)",
              len(jwks["keys"]) == 1 and "x5c" not in jwks["keys"][0] and
              jwks["keys"][0].get("kid"), jwks)

        jwt = stub(ch, M, "FetchJWTSVID", "JWTSVIDRequest", "JWTSVIDResponse", False)
        resp = jwt(M["JWTSVIDRequest"](audience=["aud-1"]), metadata=HDR, timeout=10)
        check("FetchJWTSVID without spiffe_id: every identity (W-8)",
              sorted(s.spiffe_id for s in resp.svids) == sorted(ids), resp)
        token = resp.svids[0].svid
        ok, out = verify_jwt_openssl(tmp, token, jwks)
        check("the JWT-SVID signature verifies with the JWKS key (openssl dgst)", ok, out)
        one = jwt(M["JWTSVIDRequest"](audience=["aud-1"], spiffe_id=f"spiffe://{TD}/w1"),
                  metadata=HDR, timeout=10)
        check("FetchJWTSVID for one ID", [s.spiffe_id for s in one.svids] ==
              [f"spiffe://{TD}/w1"], one)
        for name, req, code in [
            ("no audience -> INVALID_ARGUMENT (W-8)", M["JWTSVIDRequest"](),
             grpc.StatusCode.INVALID_ARGUMENT),
            ("an ID not entitled -> PERMISSION_DENIED (W-8)",
             M["JWTSVIDRequest"](audience=["a"], spiffe_id=f"spiffe://{TD}/other"),
             grpc.StatusCode.PERMISSION_DENIED),
            ("a malformed ID -> INVALID_ARGUMENT",
             M["JWTSVIDRequest"](audience=["a"], spiffe_id="spiffe://Bad/x"),
             grpc.StatusCode.INVALID_ARGUMENT)]:
            try:
                jwt(req, metadata=HDR, timeout=10)
                check(name, False, "call succeeded")
            except grpc.RpcError as e:
                check(name, e.code() == code, (e.code(), e.details()))

        val = stub(ch, M, "ValidateJWTSVID", "ValidateJWTSVIDRequest", "ValidateJWTSVIDResponse",
                   False)
        v = val(M["ValidateJWTSVIDRequest"](audience="aud-1", svid=token), metadata=HDR,
                timeout=10)
        check("ValidateJWTSVID accepts the token with its audience (W-10)",
              v.spiffe_id == ids[0] and v.claims.fields["sub"].string_value == ids[0] and
              v.claims.fields["aud"].string_value == "aud-1", v)
        for name, req in [
            ("ValidateJWTSVID: wrong audience -> INVALID_ARGUMENT",
             M["ValidateJWTSVIDRequest"](audience="aud-2", svid=token)),
            ("ValidateJWTSVID: tampered token -> INVALID_ARGUMENT",
             M["ValidateJWTSVIDRequest"](audience="aud-1", svid=token[:-4] + "AAAA")),
            ("ValidateJWTSVID: no audience -> INVALID_ARGUMENT (W-10)",
             M["ValidateJWTSVIDRequest"](svid=token)),
            ("ValidateJWTSVID: no svid -> INVALID_ARGUMENT (W-10)",
             M["ValidateJWTSVIDRequest"](audience="aud-1"))]:
            try:
                val(req, metadata=HDR, timeout=10)
                check(name, False, "call succeeded")
            except grpc.RpcError as e:
                check(name, e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details()))

        try:
            next(x509(M["X509SVIDRequest"](), timeout=10))
            check("no security header -> INVALID_ARGUMENT (E-2)", False, "call succeeded")
        except grpc.RpcError as e:
            check("no security header -> INVALID_ARGUMENT (E-2)",
                  e.code() == grpc.StatusCode.INVALID_ARGUMENT and
                  "security header missing" in e.details(), (e.code(), e.details()))
        try:
            next(ch.unary_stream(API + "FetchWITSVID")(b"", metadata=HDR, timeout=10))
            check("FetchWITSVID -> UNIMPLEMENTED (W-1)", False, "call succeeded")
        except grpc.RpcError as e:
            check("FetchWITSVID -> UNIMPLEMENTED (W-1)", e.code() == grpc.StatusCode.UNIMPLEMENTED,
                  e.code())

        try:
            next(ch.unary_stream(API + "FetchX509SVID")(b"\xff\xff\xff", metadata=HDR,
                                                        timeout=10))
            check("a malformed request -> INVALID_ARGUMENT", False, "call succeeded")
        except grpc.RpcError as e:
            check("a malformed request -> INVALID_ARGUMENT",
                  e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details()))

        if os.getuid() == 0:
            code = ("import grpc,sys\n"
                    "ch=grpc.insecure_channel('unix:'+sys.argv[1])\n"
                    "try:\n"
                    "    next(ch.unary_stream('/SpiffeWorkloadAPI/FetchX509SVID')(b'',"
                    "metadata=[('workload.spiffe.io','true')],timeout=10))\n"
                    "    print('OK')\n"
                    "except grpc.RpcError as e:\n"
                    "    print(e.code().name)\n")
            r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534",
                                "--clear-groups", "/usr/bin/python3", "-c", code, h.sock],
                               capture_output=True, text=True, cwd="/")
            check("a caller with no entry (uid 65534) gets PERMISSION_DENIED (W-6, E-5)",
                  r.stdout.strip() == "PERMISSION_DENIED", r.stdout + r.stderr)
            # The same uid with supplementary group 4242 matches an entry on that group: the
            # attestor read the kernel's Groups line, not anything the caller said.
            h.command(f"add sg spiffe://{TD}/group-4242 unix:supplementary_gid:4242")
            time.sleep(0.3)
            ids_code = code.replace("print('OK')", "print('OK')") + (
                "r=next(ch.unary_stream('/SpiffeWorkloadAPI/FetchX509SVID')(b'',"
                "metadata=[('workload.spiffe.io','true')],timeout=10))\n"
                "print(b'spiffe://example.org/group-4242' in r)\n")
            r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--groups",
                                "4242", "/usr/bin/python3", "-c", ids_code, h.sock],
                               capture_output=True, text=True, cwd="/")
            check("uid 65534 in group 4242 gets the unix:supplementary_gid:4242 entry",
                  r.stdout.split() == ["OK", "True"], r.stdout + r.stderr)
            h.command("remove sg")
        else:
            print("skip - the uid 65534 check needs root (setpriv)")

        # Revocation mid-stream: the stream ends with PERMISSION_DENIED once nothing is left.
        stream = x509(M["X509SVIDRequest"](), metadata=HDR, timeout=20)
        got = next(stream)
        h.command("remove w2")
        after = next(stream)
        check("removing an entry pushes the reduced state", [s.spiffe_id for s in after.svids] ==
              [f"spiffe://{TD}/w1"] and len(got.svids) == 2, [s.spiffe_id for s in after.svids])
        h.command("remove w1")
        try:
            for _ in stream:
                pass
            check("removing the last entry ends the stream with PERMISSION_DENIED", False,
                  "stream ended OK")
        except grpc.RpcError as e:
            check("removing the last entry ends the stream with PERMISSION_DENIED",
                  e.code() == grpc.StatusCode.PERMISSION_DENIED, (e.code(), e.details()))
        h.command(f"add w3 spiffe://{TD}/w3 unix:uid:{uid}")
        time.sleep(0.3)
        again = next(x509(M["X509SVIDRequest"](), metadata=HDR, timeout=10))
        check("a new entry is served", [s.spiffe_id for s in again.svids] ==
              [f"spiffe://{TD}/w3"], again.svids)
    finally:
        ch.close()
        rc = h.stop()
        check("harness stops cleanly", rc == 0, rc)


def rotation_checks(tmp, M):
    uid = os.getuid()
    h = Harness(tmp, "--entry", f"w1:spiffe://{TD}/w1:unix:uid:{uid}", "--rotate-every", "1000")
    ch = grpc.insecure_channel("unix:" + h.sock)
    try:
        x509 = stub(ch, M, "FetchX509SVID", "X509SVIDRequest", "X509SVIDResponse", True)
        stream = x509(M["X509SVIDRequest"](), metadata=HDR, timeout=15)
        serials = []
        start = time.time()
        for resp in stream:
            serials.append(serial(der_split(resp.svids[0].x509_svid)[0]))
            if len(serials) == 3:
                break
        stream.cancel()
        check("a stream sees at least two rotations (different serials, W-3)",
              len(set(serials)) == 3, serials)
        check("rotations arrive about once a second", time.time() - start < 6,
              time.time() - start)
    finally:
        ch.close()
        rc = h.stop()
        check("harness stops cleanly after rotations", rc == 0, rc)


def cli_checks(tmp):
    """sigil-agent's api commands and healthcheck against the same server."""
    uid = os.getuid()
    h = Harness(tmp, "--entry", f"w1:spiffe://{TD}/w1:unix:uid:{uid}:hint=cli")
    env = dict(os.environ, SPIFFE_ENDPOINT_SOCKET="unix://" + h.sock)

    def agent(*args, env=env):
        return subprocess.run([AGENT, *args], capture_output=True, text=True, env=env)

    try:
        out = os.path.join(tmp, "out")
        os.makedirs(out, exist_ok=True)
        r = agent("api", "fetch", "x509", "--write", out)
        check("sigil-agent api fetch x509 prints the ID and hint", r.returncode == 0 and
              f"spiffe://{TD}/w1" in r.stdout and "cli" in r.stdout, r.stdout + r.stderr)
        v = openssl("verify", "-CAfile", os.path.join(out, "bundle.0.pem"), "-untrusted",
                    os.path.join(out, "svid.0.pem"), os.path.join(out, "svid.0.pem"))
        check("--write: openssl verify accepts svid.0.pem against bundle.0.pem",
              v.returncode == 0, v.stdout + v.stderr)
        mode = os.stat(os.path.join(out, "svid.0.key")).st_mode & 0o777
        check("--write: svid.0.key is 0600", mode == 0o600, oct(mode))
        r = agent("api", "fetch", "jwt", "--audience", "cli-aud")
        token = r.stdout.split("\n")[1].strip() if r.returncode == 0 else ""
        check("sigil-agent api fetch jwt", token.count(".") == 2, r.stdout + r.stderr)
        r = agent("api", "validate", "jwt", "--audience", "cli-aud", "--token", token)
        check("sigil-agent api validate jwt: valid", r.returncode == 0 and
              "SVID is valid" in r.stdout, r.stdout + r.stderr)
        r = agent("api", "validate", "jwt", "--audience", "other", "--token", token)
        check("sigil-agent api validate jwt: wrong audience exits 1", r.returncode == 1 and
              "INVALID_ARGUMENT" in r.stderr, r.stdout + r.stderr)
        r = agent("healthcheck")
        check("sigil-agent healthcheck: healthy", r.returncode == 0, r.stdout + r.stderr)
        r = agent("healthcheck", "--socket", os.path.join(tmp, "nothing.sock"))
        check("sigil-agent healthcheck: no agent exits 1", r.returncode == 1, r.stderr)
        r = agent("healthcheck", env=dict(os.environ, SPIFFE_ENDPOINT_SOCKET="tcp://127.0.0.1:1"))
        check("SPIFFE_ENDPOINT_SOCKET=tcp:// is refused clearly (exit 2)",
              r.returncode == 2 and "Unix socket only" in r.stderr, r.stderr)
        r = agent("healthcheck", env=dict(os.environ, SPIFFE_ENDPOINT_SOCKET="unix://host/x"))
        check("SPIFFE_ENDPOINT_SOCKET with an authority is refused (E-4)",
              r.returncode == 2 and "E-4" in r.stderr, r.stderr)
        r = agent("api", "fetch", "jwt")
        check("api fetch jwt without --audience is a usage error", r.returncode == 2, r.stderr)
    finally:
        rc = h.stop()
        check("harness stops cleanly after the CLI checks", rc == 0, rc)


def federation_checks(tmp, M):
    """federated_bundles for the entries' federates_with (W-6), every bundle in the bundle
    streams (W-7, W-9), and a push when a federated bundle changes (W-3)."""
    uid = os.getuid()
    h = Harness(tmp, "--federate", "other.org", "--federate", "unrelated.org",
                "--entry", f"w1:spiffe://{TD}/w1:unix:uid:{uid}:fed=other.org")
    ch = grpc.insecure_channel("unix:" + h.sock)
    try:
        x509 = stub(ch, M, "FetchX509SVID", "X509SVIDRequest", "X509SVIDResponse", True)
        r = next(x509(M["X509SVIDRequest"](), metadata=HDR, timeout=10))
        fed = dict(r.federated_bundles)
        check("federated_bundles holds the entry's federated trust domain only (W-6)",
              list(fed.keys()) == ["spiffe://other.org"] and len(der_split(fed[
                  "spiffe://other.org"])) == 1, list(fed.keys()))
        xb = stub(ch, M, "FetchX509Bundles", "X509BundlesRequest", "X509BundlesResponse", True)
        stream = xb(M["X509BundlesRequest"](), metadata=HDR, timeout=10)
        b = next(stream)
        check("FetchX509Bundles: own and federated bundles (W-7)",
              sorted(b.bundles.keys()) == [f"spiffe://{TD}", "spiffe://other.org",
                                           "spiffe://unrelated.org"], list(b.bundles.keys()))
        h.command("federate other.org")
        b2 = next(stream)
        check("a changed federated bundle is pushed on the bundle stream (W-3)",
              b2.bundles["spiffe://other.org"] != b.bundles["spiffe://other.org"] and
              b2.bundles[f"spiffe://{TD}"] == b.bundles[f"spiffe://{TD}"], "")
        stream.cancel()
        jb = stub(ch, M, "FetchJWTBundles", "JWTBundlesRequest", "JWTBundlesResponse", True)
        j = next(jb(M["JWTBundlesRequest"](), metadata=HDR, timeout=10))
        other = json.loads(j.bundles["spiffe://other.org"])
        check("FetchJWTBundles: a federated bundle without JWT keys is an empty JWKS (W-9)",
              other == {"keys": []}, other)
    finally:
        ch.close()
        rc = h.stop()
        check("harness stops cleanly after the federation checks", rc == 0, rc)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o755)  # uid 65534 must reach the socket
        M = load_messages(tmp)
        main_checks(tmp, M)
        rotation_checks(tmp, M)
        cli_checks(tmp)
        federation_checks(tmp, M)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
