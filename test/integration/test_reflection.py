#!/usr/bin/python3
"""gRPC server reflection on the agent's Workload API socket (lib/rpc_reflection.c, registered by
agent/workload_api.c; served by workload_harness over a real cache), asked by clients nobody here
wrote: Debian's python3-grpcio with message classes built by python3-protobuf from a descriptor
set that protoc-c writes from proto/reflection.proto at test time (both package names, v1 and
v1alpha: the messages are the same on the wire), and npm's grpc-js-reflection-client (its own
reflection protos, v1alpha and v1), which lists services and rebuilds a service definition from
the descriptors it fetched (reflection_node.js). Checks list_services, file_containing_symbol
(service, method, nested message), file_by_filename with transitive imports, that the
descriptors decode, load into a fresh DescriptorPool and equal protoc-c's own, extension
numbers, NOT_FOUND error_responses that leave the stream open, a malformed request, and that
the Workload API methods still need their security header while reflection does not.
Prints one line per check and "N passed, N failed"; exits non-zero on any failure."""
import os
import subprocess
import sys
import tempfile

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SRC = os.environ.get("SIGIL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
BUILD = os.environ.get("SIGIL_BUILD_DIR", os.path.join(SRC, "build"))
HARNESS = os.path.join(BUILD, "test", "workload_harness")
NODE_DIR = os.path.join(SRC, "test", "integration")
TD = "example.org"
V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
NOT_FOUND = 5

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


def descriptor_set(tmp, *protos):
    """A FileDescriptorSet that protoc-c writes (imports included), parsed by python3-protobuf."""
    out = os.path.join(tmp, "set.desc")
    subprocess.run(["protoc-c", "-I", os.path.join(SRC, "proto"), "-I", "/usr/include",
                    "--include_imports", "-o", out, *protos], check=True)
    fds = descriptor_pb2.FileDescriptorSet()
    with open(out, "rb") as f:
        fds.ParseFromString(f.read())
    return fds


def classes(fds):
    pool = descriptor_pool.DescriptorPool()
    for fd in fds.file:
        pool.Add(fd)
    if hasattr(message_factory, "GetMessageClass"):
        make = message_factory.GetMessageClass
    else:  # python3-protobuf 4.21 (Debian 12)
        make = message_factory.MessageFactory(pool).GetPrototype
    return {n: make(pool.FindMessageTypeByName("grpc.reflection.v1." + n))
            for n in ["ServerReflectionRequest", "ServerReflectionResponse"]}


class Harness:
    def __init__(self, tmp):
        self.sock = os.path.join(tmp, "api.sock")
        self.err = open(os.path.join(tmp, "harness.err"), "a+")
        self.p = subprocess.Popen([HARNESS, "--socket", self.sock, "--td", TD, "--mode", "0666",
                                   "--entry", f"w1:spiffe://{TD}/w1:unix:uid:{os.getuid()}"],
                                  stdout=subprocess.PIPE, stderr=self.err, text=True)
        line = self.p.stdout.readline()
        if line.strip() != "READY":
            self.p.kill()
            self.err.seek(0)
            raise RuntimeError("workload_harness did not start: " + self.err.read())

    def stop(self):
        self.p.terminate()
        try:
            rc = self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = -9
        self.err.close()
        return rc


def ask(ch, M, path, reqs, metadata=None):
    """Sends the requests on one stream; returns the responses."""
    call = ch.stream_stream(path, request_serializer=lambda m: m.SerializeToString(),
                            response_deserializer=M["ServerReflectionResponse"].FromString)
    return list(call(iter(reqs), metadata=metadata, timeout=10))


def files_of(resp):
    out = []
    for b in resp.file_descriptor_response.file_descriptor_proto:
        fd = descriptor_pb2.FileDescriptorProto()
        fd.ParseFromString(b)
        out.append(fd)
    return out


def reflection_checks(ch, M, ref):
    Req = M["ServerReflectionRequest"]
    for path, label in [(V1, "v1"), (V1ALPHA, "v1alpha")]:
        r = ask(ch, M, path, [Req(host="h", list_services="*")])
        names = [s.name for s in r[0].list_services_response.service] if r else []
        check(f"{label}: list_services names SpiffeWorkloadAPI and the reflection service",
              "SpiffeWorkloadAPI" in names and "grpc.reflection.v1.ServerReflection" in names,
              names)
        check(f"{label}: the answer echoes the request and the host",
              r and r[0].original_request.list_services == "*" and r[0].valid_host == "h", r)

    r = ask(ch, M, V1, [Req(file_containing_symbol="SpiffeWorkloadAPI")])
    fds = files_of(r[0]) if r and r[0].HasField("file_descriptor_response") else []
    names = [f.name for f in fds]
    check("file_containing_symbol SpiffeWorkloadAPI: workload.proto first, then struct.proto",
          names == ["workload.proto", "google/protobuf/struct.proto"], names)
    methods = [m.name for s in fds[0].service for m in s.method] if fds else []
    check("the descriptor decodes and its service has FetchX509SVID",
          "FetchX509SVID" in methods and fds[0].service[0].name == "SpiffeWorkloadAPI", methods)
    by_name = lambda fs: sorted(fs, key=lambda f: f.name)  # noqa: E731
    check("the descriptors equal protoc-c's own", by_name(fds) == by_name(ref.file), "differ")
    pool = descriptor_pool.DescriptorPool()
    try:
        for fd in reversed(fds):
            pool.Add(fd)
        m = pool.FindMethodByName("SpiffeWorkloadAPI.FetchX509SVID")
        ok = m.output_type.full_name == "X509SVIDResponse"
    except Exception as e:  # noqa: BLE001 - any failure to load is the check failing
        ok, m = False, e
    check("the files load into a fresh DescriptorPool (FetchX509SVID -> X509SVIDResponse)", ok, m)

    r = ask(ch, M, V1, [Req(file_by_filename="workload.proto"),
                        Req(file_containing_symbol="SpiffeWorkloadAPI.FetchJWTSVID"),
                        Req(file_containing_symbol="X509SVIDResponse.FederatedBundlesEntry"),
                        Req(file_containing_symbol="google.protobuf.Struct"),
                        Req(file_by_filename="google/protobuf/struct.proto")])
    got = [[f.name for f in files_of(x)] for x in r]
    check("file_by_filename workload.proto brings google/protobuf/struct.proto",
          len(got) == 5 and got[0] == ["workload.proto", "google/protobuf/struct.proto"], got)
    check("a method and a nested map entry are symbols of workload.proto",
          len(got) == 5 and got[1] == got[0] and got[2] == got[0], got)
    check("google.protobuf.Struct and struct.proto give struct.proto alone",
          len(got) == 5 and got[3] == ["google/protobuf/struct.proto"] and got[4] == got[3], got)

    r = ask(ch, M, V1, [Req(file_containing_symbol="NoSuchService"),
                        Req(file_by_filename="nope.proto"),
                        Req(all_extension_numbers_of_type="NoSuchType"),
                        Req(all_extension_numbers_of_type="google.protobuf.Struct"),
                        Req(list_services="")])
    kinds = [x.WhichOneof("message_response") for x in r]
    check("unknown symbol: error_response NOT_FOUND naming it",
          len(r) == 5 and r[0].error_response.error_code == NOT_FOUND and
          "NoSuchService" in r[0].error_response.error_message, r[:1])
    check("unknown file and unknown type: NOT_FOUND",
          len(r) == 5 and r[1].error_response.error_code == NOT_FOUND and
          r[2].error_response.error_code == NOT_FOUND, kinds)
    check("google.protobuf.Struct has no extensions",
          len(r) == 5 and kinds[3] == "all_extension_numbers_response" and
          r[3].all_extension_numbers_response.base_type_name == "google.protobuf.Struct" and
          len(r[3].all_extension_numbers_response.extension_number) == 0, kinds)
    check("the stream stays open after errors (the last request is answered)",
          len(r) == 5 and kinds[4] == "list_services_response", kinds)

    r = ask(ch, M, V1, [Req(host="x")])
    check("a request without a question: INVALID_ARGUMENT error_response",
          r and r[0].error_response.error_code == 3, r)

    r = ask(ch, M, V1, [Req(list_services="*")], metadata=[("workload.spiffe.io", "true")])
    check("reflection also answers with the security header", len(r) == 1, r)

    raw = ch.stream_stream(V1, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        list(raw(iter([b"\xff\xff\xff"]), timeout=10))
        code = grpc.StatusCode.OK
    except grpc.RpcError as e:
        code = e.code()
    check("bytes that are not a request end the stream with INVALID_ARGUMENT",
          code == grpc.StatusCode.INVALID_ARGUMENT, code)

    unary = ch.unary_stream("/SpiffeWorkloadAPI/FetchJWTBundles",
                            request_serializer=lambda b: b, response_deserializer=lambda b: b)
    try:
        next(unary(b"", timeout=10))
        code = grpc.StatusCode.OK
    except grpc.RpcError as e:
        code = e.code()
    check("Workload API methods still need the header (INVALID_ARGUMENT without it)",
          code == grpc.StatusCode.INVALID_ARGUMENT, code)


def node_checks(sock):
    for version in ["v1alpha", "v1"]:
        p = subprocess.run(["node", os.path.join(NODE_DIR, "reflection_node.js"), sock, version],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "NODE_PATH": os.path.join(NODE_DIR, "node_modules")})
        lines = p.stdout.splitlines()
        check(f"grpc-js-reflection-client ({version}) ran", p.returncode == 0,
              p.stdout + p.stderr)
        check(f"grpc-js-reflection-client ({version}): services listed",
              "services SpiffeWorkloadAPI,grpc.reflection.v1.ServerReflection" in lines, lines)
        check(f"grpc-js-reflection-client ({version}): methods of SpiffeWorkloadAPI rebuilt",
              any(x.startswith("methods ") and "FetchX509SVID" in x and "ValidateJWTSVID" in x
                  for x in lines), lines)
        check(f"grpc-js-reflection-client ({version}): FetchX509SVID is a server stream",
              "FetchX509SVID path /SpiffeWorkloadAPI/FetchX509SVID server_stream true" in lines,
              lines)
        check(f"grpc-js-reflection-client ({version}): an unknown symbol is a reflection error",
              any(x.startswith("unknown rejected") and "NoSuchService" in x for x in lines),
              lines)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        M = classes(descriptor_set(tmp, "reflection.proto"))
        ref = descriptor_set(tmp, "workload.proto")
        h = Harness(tmp)
        ch = grpc.insecure_channel("unix:" + h.sock)
        try:
            reflection_checks(ch, M, ref)
            node_checks(h.sock)
        finally:
            ch.close()
            rc = h.stop()
            check("harness stops cleanly (everything freed)", rc == 0, rc)
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
