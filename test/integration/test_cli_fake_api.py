#!/usr/bin/python3
"""CONTRACT TEST OF THE CLI ONLY: `sigil-server entry|agent|token|bundle|federation|audit`
against a FAKE admin API, a tiny Python http.server on a Unix socket that records every
request and answers canned JSON in the shapes of schema/admin-api.yaml. It checks that the
CLI sends the right method, path, query and body, and prints the right text, JSON and exit
codes. It says nothing about the real server's API (that has its own tests).
Prints one line per check and "N passed, N failed"; exits non-zero on any failure."""
import base64
import json
import os
import pty
import socketserver
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler

BUILD = os.environ.get("SIGIL_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
CLI = os.path.join(BUILD, "server", "sigil-server")
UUID1 = "6f1c2a4e-0b7d-4c55-9a0e-1d2c3b4a5f60"
UUID2 = "0a0b0c0d-1111-2222-3333-444455556666"
UUID3 = "99999999-8888-7777-6666-555544443333"

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


class FakeAPI(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers from self.routes: {(method, path): [(status, body), ...]}, one answer per
    request in order (the last one repeats); records (method, path, query, body)."""
    daemon_threads = True

    def __init__(self, path):
        self.routes = {}
        self.requests = []
        self.lock = threading.Lock()
        super().__init__(path, Handler)

    def reset(self, routes):
        with self.lock:
            self.routes = {k: list(v) for k, v in routes.items()}
            self.requests = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # the client address of a Unix socket is ''
        pass

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        body = json.loads(raw) if raw else None
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        srv = self.server
        with srv.lock:
            srv.requests.append((self.command, url.path, query, body, url.query))
            answers = srv.routes.get((self.command, url.path))
            if answers:
                answer = answers.pop(0) if len(answers) > 1 else answers[0]
                status, out = answer if not callable(answer) else (200, answer)
            else:
                status, out = 404, {"error": {"code": "test.no_route",
                                              "message": f"no canned answer for {self.command} {url.path}"}}
        if callable(out):  # an answer computed from the request
            status, out = out(body)
        if out == "DROP":  # a server that dies mid-request
            self.close_connection = True
            return
        data = b"" if out is None else (out if isinstance(out, bytes) else json.dumps(out).encode())
        self.send_response(status)
        if data:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = answer


def entry(i, uid, **kw):
    e = {"id": i, "spiffe_id": f"spiffe://example.org/prod/web/team/app{uid}",
         "parent_id": "spiffe://example.org/sigil/agent/node-1",
         "selectors": [f"unix:uid:{uid}", "unix:path:/usr/bin/app"], "x509_svid_ttl": 3600,
         "jwt_svid_ttl": 0, "revision": 2, "created_at": "2026-11-24T04:00:00Z",
         "updated_at": "2026-11-24T04:00:01Z"}
    e.update(kw)
    return e


def run(api, routes, *args, stdin=None, env=None):
    api.reset(routes)
    e = dict(os.environ)
    e.pop("SIGIL_ADMIN_SOCKET", None)
    if env:
        e.update(env)
    argv = [CLI, *args]
    if env is None or "SIGIL_ADMIN_SOCKET" not in env:
        argv.insert(3, "--admin-socket=" + api.server_address)
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=e, timeout=60)
    return p.returncode, p.stdout, p.stderr, list(api.requests)


def make_cert(d):
    key, crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=fake CA", "-addext",
                    "basicConstraints=critical,CA:TRUE", "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True)
    der = subprocess.run(["openssl", "x509", "-in", crt, "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return crt, base64.b64encode(der).decode()


def main():
    if not os.access(CLI, os.X_OK):
        print(f"FAIL - {CLI} is not built")
        return 1
    tmp = tempfile.TemporaryDirectory(prefix="sigil-cli-")
    d = tmp.name
    sock = os.path.join(d, "admin.sock")
    api = FakeAPI(sock)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        cases(api, d)
    finally:
        api.shutdown()
        api.server_close()
        tmp.cleanup()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def cases(api, d):
    # --- entry create: the EntryInput body, and SPIRE-like text
    rc, out, err, reqs = run(api, {("POST", "/v1/entries"): [(201, entry(UUID1, 1000, dns_names=["web.example.org"], federates_with=["other.org"], admin=True, hint="h1"))]},
                             "entry", "create", "--spiffe-id", "spiffe://example.org/prod/web/team/app1000",
                             "--parent-id", "spiffe://example.org/sigil/agent/node-1",
                             "--selector", "unix:uid:1000", "--selector", "unix:path:/usr/bin/app",
                             "--x509-ttl", "1h", "--jwt-ttl", "5m", "--dns", "web.example.org",
                             "--federates-with", "spiffe://other.org", "--admin", "--hint", "h1")
    check("entry create exits 0", rc == 0, err)
    check("entry create sends POST /v1/entries", [(r[0], r[1]) for r in reqs] == [("POST", "/v1/entries")], reqs)
    want = {"spiffe_id": "spiffe://example.org/prod/web/team/app1000",
            "parent_id": "spiffe://example.org/sigil/agent/node-1",
            "selectors": ["unix:uid:1000", "unix:path:/usr/bin/app"], "x509_svid_ttl": 3600,
            "jwt_svid_ttl": 300, "dns_names": ["web.example.org"], "federates_with": ["other.org"],
            "admin": True, "hint": "h1"}
    check("entry create body is the EntryInput", reqs and reqs[0][3] == want, reqs and reqs[0][3])
    for line in ["Entry ID           : " + UUID1, "SPIFFE ID          : spiffe://example.org/prod/web/team/app1000",
                 "Selector           : unix:uid:1000", "Selector           : unix:path:/usr/bin/app",
                 "X509-SVID TTL      : 1h", "JWT-SVID TTL       : default", "DNS name           : web.example.org",
                 "FederatesWith      : other.org", "Admin              : true", "Hint               : h1"]:
        check(f"entry create prints {line!r}", line in out.splitlines(), out)

    # --- local checks: nothing is sent, the rule is named
    rc, out, err, reqs = run(api, {}, "entry", "create", "--spiffe-id", "spiffe://example.org",
                             "--parent-id", "spiffe://example.org/n", "--selector", "unix:uid:1")
    check("root SPIFFE ID refused locally (X-2), exit 1, nothing sent", rc == 1 and "X-2" in err and not reqs, (rc, err, reqs))
    rc, out, err, reqs = run(api, {}, "entry", "create", "--spiffe-id", "spiffe://Example.org/a",
                             "--parent-id", "spiffe://example.org/n", "--selector", "unix:uid:1")
    check("upper-case trust domain refused locally with its ID rule", rc == 1 and "ID-" in err and not reqs, (rc, err))
    rc, out, err, reqs = run(api, {}, "entry", "create", "--spiffe-id", "spiffe://example.org/a",
                             "--parent-id", "spiffe://example.org/n", "--selector", "Unix:uid:1")
    check("bad selector type refused locally", rc == 1 and "selector" in err and not reqs, (rc, err))
    rc, out, err, reqs = run(api, {}, "entry", "create", "--spiffe-id", "spiffe://example.org/a",
                             "--parent-id", "spiffe://example.org/n", "--selector", "unix:uid:1", "--x509-ttl", "1.5h")
    check("bad duration is a usage error (64)", rc == 64 and "x509-ttl" in err and not reqs, (rc, err))
    rc, out, err, reqs = run(api, {}, "entry", "create", "--spiffe-id", "spiffe://example.org/a")
    check("missing --parent-id/--selector refused", rc == 1 and "--parent-id" in err and not reqs, (rc, err))
    rc, out, err, reqs = run(api, {}, "entry", "show", "--x509-ttl", "1h")
    check("an option of another command is a usage error", rc == 64 and "does not take --x509-ttl" in err, (rc, err))

    # --- entry show: filters in the query, every page followed
    routes = {("GET", "/v1/entries"): [(200, {"entries": [entry(UUID1, 1000), entry(UUID2, 1001)], "next_page_token": "p/2+"}),
                                       (200, {"entries": [entry(UUID3, 1002)]})]}
    rc, out, err, reqs = run(api, routes, "entry", "show", "--selector", "unix:uid:1000", "--selector",
                             "k8s:ns:a b", "--match", "any", "--parent-id", "spiffe://example.org/sigil/agent/node-1",
                             "--team", "payments", "--page-size", "2")
    check("entry show exits 0", rc == 0, err)
    check("entry show follows both pages", len(reqs) == 2, reqs)
    if len(reqs) == 2:
        q = reqs[0][2]
        check("entry show query: selectors, match, parent, team, page size",
              q.get("selector") == ["unix:uid:1000", "k8s:ns:a b"] and q.get("match") == ["any"]
              and q.get("parent_id") == ["spiffe://example.org/sigil/agent/node-1"]
              and q.get("team") == ["payments"] and q.get("page_size") == ["2"] and "page_token" not in q, q)
        check("selector values are percent-encoded", "selector=unix%3Auid%3A1000" in reqs[0][4] and "k8s%3Ans%3Aa%20b" in reqs[0][4], reqs[0][4])
        check("second page carries the page token", reqs[1][2].get("page_token") == ["p/2+"], reqs[1][2])
    check("entry show prints 'Found 3 entries'", out.startswith("Found 3 entries"), out[:200])
    check("entry show prints each entry", all(("Entry ID           : " + u) in out for u in (UUID1, UUID2, UUID3)), out)
    rc, out, err, reqs = run(api, routes, "entry", "show", "--output", "json")
    try:
        doc = json.loads(out)
    except ValueError:
        doc = None
    check("entry show --output json is one document with every page", doc is not None and [e["id"] for e in doc["entries"]] == [UUID1, UUID2, UUID3], out[:300])
    rc, out, err, reqs = run(api, {("GET", f"/v1/entries/{UUID2}"): [(200, entry(UUID2, 1001))]}, "entry", "show", "--id", UUID2)
    check("entry show --id gets /v1/entries/ID", rc == 0 and reqs[0][:2] == ("GET", f"/v1/entries/{UUID2}") and UUID2 in out, (rc, reqs, err))
    rc, out, err, reqs = run(api, {}, "entry", "show", "--id", "not-a-uuid")
    check("entry show --id refuses a non-UUID (64)", rc == 64 and not reqs, (rc, err))

    # --- update and delete
    rc, out, err, reqs = run(api, {("PATCH", f"/v1/entries/{UUID1}"): [(200, entry(UUID1, 1000, hint=""))]},
                             "entry", "update", "--id", UUID1, "--no-admin", "--hint", "", "--clear-dns",
                             "--selector", "unix:uid:7")
    check("entry update PATCHes only the given fields", rc == 0 and reqs and reqs[0][:2] == ("PATCH", f"/v1/entries/{UUID1}")
          and reqs[0][3] == {"admin": False, "hint": "", "dns_names": [], "selectors": ["unix:uid:7"]}, (rc, reqs, err))
    check("entry update prints the entry", "Entry updated" in out and UUID1 in out, out)
    rc, out, err, reqs = run(api, {}, "entry", "update", "--id", UUID1)
    check("entry update with nothing to change is refused locally", rc == 1 and not reqs and "nothing to update" in err, (rc, err))
    rc, out, err, reqs = run(api, {("DELETE", f"/v1/entries/{UUID1}"): [(204, None)]}, "entry", "delete", "--id", UUID1)
    check("entry delete sends DELETE and says so", rc == 0 and reqs[0][:2] == ("DELETE", f"/v1/entries/{UUID1}") and UUID1 in out, (rc, out, err))

    # --- errors from the API
    refusal = {"error": {"code": "policy.selectors.required", "message": "selector policy: unix entries need unix:sha256"}}
    rc, out, err, reqs = run(api, {("POST", "/v1/entries"): [(400, refusal)]}, "entry", "create",
                             "--spiffe-id", "spiffe://example.org/a", "--parent-id", "spiffe://example.org/n", "--selector", "unix:uid:1")
    check("API refusal: 'Error: <message>', exit 1", rc == 1 and "Error: selector policy: unix entries need unix:sha256" in err and out == "", (rc, out, err))
    rc, out, err, reqs = run(api, {("POST", "/v1/entries"): [(400, refusal)]}, "entry", "create", "--output", "json",
                             "--spiffe-id", "spiffe://example.org/a", "--parent-id", "spiffe://example.org/n", "--selector", "unix:uid:1")
    check("API refusal in JSON mode: error document on stdout, code on stderr",
          rc == 1 and json.loads(out or "null") == refusal and "policy.selectors.required" in err, (rc, out, err))
    rc, out, err, reqs = run(api, {("GET", f"/v1/entries/{UUID1}"): [(404, {"error": {"code": "entry.not_found", "message": "no entry \u001b[31mX"}})]},
                             "entry", "show", "--id", UUID1)
    check("control characters from the server are escaped", rc == 1 and "\x1b" not in err and "\\x1B[31mX" in err, repr(err))
    rc, out, err, reqs = run(api, {("GET", "/v1/bundle"): [(500, b"oops, not json")]}, "bundle", "show")
    check("a non-JSON error answer still says the status", rc == 1 and "HTTP 500" in err, (rc, err))
    rc, out, err, reqs = run(api, {("GET", "/v1/bundle"): [(502, b"<html>bad gateway</html>")]}, "bundle", "show", "--output", "json")
    check("JSON mode passes no non-JSON error body to stdout", rc == 1 and out == "" and "HTTP 502" in err, (rc, out, err))
    rc, out, err, reqs = run(api, {("GET", "/v1/bundle"): [(200, b"\x1b[2J")]}, "bundle", "show", "--output", "json")
    check("JSON mode: a 200 answer that is not JSON is exit 2", rc == 2 and out == "" and "not JSON" in err, (rc, out, err))
    rc, out, err, reqs = run(api, {("GET", "/v1/bundle"): [(200, b"[1,")]}, "bundle", "show")
    check("text mode: a 200 answer that is not JSON is exit 2", rc == 2 and "not JSON" in err, (rc, out, err))
    rc, out, err, reqs = run(api, {}, "entry", "show", env={"SIGIL_ADMIN_SOCKET": os.path.join(d, "nobody.sock")})
    check("no server: exit 2 and what to do, socket from SIGIL_ADMIN_SOCKET",
          rc == 2 and "cannot reach the server's admin socket at " + os.path.join(d, "nobody.sock") in err and "is sigil-server running?" in err, (rc, err))
    rc, out, err, reqs = run(api, {}, "entry", "show", env={"SIGIL_ADMIN_SOCKET": api.server_address})
    check("SIGIL_ADMIN_SOCKET is used when --admin-socket is not given", rc == 1 and len(reqs) == 1, (rc, err))
    rc, out, err, reqs = run(api, {}, "entry", "--help")
    check("entry --help documents exit codes and import's re-run rule", rc == 0 and "Exit codes" in out and "run the same import" in out, out[-400:])

    import_cases(api, d)
    other_cases(api, d)


def progress_bar(api, path, master, slave):
    p = subprocess.Popen([CLI, "entry", "import", "--admin-socket", api.server_address, path],
                         stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    tty = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        tty += chunk
    os.close(master)
    p.wait(timeout=60)
    check("a terminal on stderr shows the progress bar", p.returncode == 0 and b"\r\x1b[K[" in tty and b"2/2" in tty
          and b"created 2" in tty, tty)


def import_cases(api, d):
    def line(spiffe, sel="unix:uid:1", **kw):
        o = {"spiffe_id": "spiffe://example.org/" + spiffe, "parent_id": "spiffe://example.org/n", "selectors": [sel]}
        o.update(kw)
        return json.dumps(o)

    lines = [line("a"), "", '{"spiffe_id": ', line("b"), line("c", sel="nocolon"), line("d"),
             line("e", x509_svid_ttl=999999), line("f", bogus=1)]
    path = os.path.join(d, "entries.jsonl")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    res = lambda *st: (200, {"results": list(st)})
    created = {"status": 201, "entry": entry(UUID1, 1)}
    exists = {"status": 409, "error": {"code": "entry.exists", "message": "an entry like this exists"}, "id": UUID2}
    ttl_refused = {"status": 400, "error": {"code": "policy.ttl", "message": "ttl too long"}}
    routes = {("POST", "/v1/entries:batchCreate"): [res(created, exists), res(created, ttl_refused)]}
    rc, out, err, reqs = run(api, routes, "entry", "import", "--batch-size", "2", path)
    check("import with failures exits 1", rc == 1, (rc, err))
    check("import sends two batches to batchCreate", [(r[0], r[1]) for r in reqs] == [("POST", "/v1/entries:batchCreate")] * 2, reqs)
    if len(reqs) == 2:
        check("batch 1 holds lines 1 and 4", reqs[0][3] == {"entries": [json.loads(lines[0]), json.loads(lines[3])]}, reqs[0][3])
        check("batch 2 holds lines 6 and 7", reqs[1][3] == {"entries": [json.loads(lines[5]), json.loads(lines[6])]}, reqs[1][3])
    for want in ["line 3: Error: not JSON", "line 5: Error: selector \"nocolon\"", "line 7: Error: ttl too long (code policy.ttl)",
                 "line 8: Error: unknown field \"bogus\""]:
        check(f"import reports {want!r}", want in err, err)
    check("import summary counts created, existing and failed",
          "7 entries, 2 created, 1 already existed, 4 failed" in out, out)
    check("no progress bar when stderr is not a terminal", "\x1b" not in err and "\r" not in err, repr(err[:200]))

    ok = [line("a"), line("b")]
    with open(path, "w") as f:
        f.write("\n".join(ok) + "\n")
    rc, out, err, reqs = run(api, {("POST", "/v1/entries:batchCreate"): [res(exists, exists)]}, "entry", "import", path)
    check("re-running an import: existing entries are not failures (exit 0)", rc == 0 and "0 created, 2 already existed, 0 failed" in out, (rc, out, err))
    rc, out, err, reqs = run(api, {("POST", "/v1/entries:batchCreate"): [res(created, created)]}, "entry", "import", "-", stdin="\n".join(ok))
    check("import reads standard input with '-'", rc == 0 and len(reqs) == 1 and "2 created" in out, (rc, out, err))
    # a terminal on stderr gets the progress bar
    api.reset({("POST", "/v1/entries:batchCreate"): [res(created, created)]})
    try:
        master, slave = pty.openpty()
    except OSError as e:  # a container without /dev/ptmx: nothing to draw on
        print(f"ok - progress bar not checked: no pseudo-terminal here ({e})")
        master = None
    if master is not None:
        progress_bar(api, path, master, slave)
    rc, out, err, reqs = run(api, {("POST", "/v1/entries:batchCreate"): [(200, "DROP")]}, "entry", "import", path)
    check("a connection lost mid-batch: exit 2, and the advice to re-run",
          rc == 2 and "may or may not have been stored" in err and "Run the same import again" in err, (rc, err))
    rc, out, err, reqs = run(api, {("POST", "/v1/entries:batchCreate"): [(403, {"error": {"code": "auth.forbidden", "message": "viewers cannot write"}})]},
                             "entry", "import", path)
    check("a refused batch stops the import with the API's message", rc == 1 and "viewers cannot write" in err and "auth.forbidden" in err, (rc, err))

    # the default batch size, and the body cap: 10,000 lines in batches of at most 1,000
    # entries and 900 KiB each
    with open(path, "w") as f:
        for i in range(10000):
            hint = "x" * (900 if i >= 9000 else 0)
            f.write(json.dumps({"spiffe_id": f"spiffe://example.org/w/{i}", "parent_id": "spiffe://example.org/n",
                                "selectors": [f"unix:uid:{i}"], "hint": hint}) + "\n")
    all_created = lambda body: (200, {"results": [{"status": 201}] * len(body["entries"])})
    rc, out, err, reqs = run(api, {("POST", "/v1/entries:batchCreate"): [all_created]}, "entry", "import", path)
    sizes = [len(r[3]["entries"]) for r in reqs]
    check("10,000 lines: every entry sent once, in order", rc == 0 and sum(sizes) == 10000
          and [e["spiffe_id"] for r in reqs for e in r[3]["entries"]] == [f"spiffe://example.org/w/{i}" for i in range(10000)], (rc, err[-300:]))
    check("batches of at most 1,000 entries and 900 KiB", sizes[:9] == [1000] * 9 and all(
        len(json.dumps(r[3], separators=(",", ":"))) <= 900 * 1024 for r in reqs) and len(reqs) > 10, sizes)
    check("10,000 lines: summary", "10000 entries, 10000 created, 0 already existed, 0 failed" in out, out)

    spire = """{
  "entries": [
    {
      "selectors": [{"type": "unix", "value": "uid:1111"}],
      "spiffe_id": "spiffe://example.org/Blog",
      "parent_id": "spiffe://example.org/spire/agent/join_token/TokenBlog",
      "ttl": 200,
      "admin": true
    },
    {
      "selectors": [{"type": "unix", "value": "uid:1111"}, {"type": "unix", "value": "gid:7"}],
      "spiffe_id": {"trust_domain": "example.org", "path": "/Database"},
      "parent_id": "spiffe://example.org/spire/agent/join_token/TokenDatabase",
      "x509_svid_ttl": 200, "jwt_svid_ttl": 30, "federates_with": ["spiffe://other.org"],
      "entry_id": "old-id", "revision_number": "3", "expires_at": "1900000000",
      "dns_names": ["db.example.org"]
    },
    {
      "selectors": [{"type": "unix", "value": "uid:1"}],
      "spiffe_id": "spiffe://example.org/x", "parent_id": "spiffe://example.org/y",
      "store_svid": true
    }
  ]
}
"""
    spath = os.path.join(d, "spire.json")
    with open(spath, "w") as f:
        f.write(spire)
    third = [i + 1 for i, l in enumerate(spire.splitlines()) if l == "    {"][2]
    rc, out, err, reqs = run(api, {("POST", "/v1/entries:batchCreate"): [res(created, created)]}, "entry", "import", spath)
    check("SPIRE file: one batch of the two good entries", len(reqs) == 1, (reqs, err))
    if reqs:
        want = {"entries": [
            {"spiffe_id": "spiffe://example.org/Blog", "parent_id": "spiffe://example.org/spire/agent/join_token/TokenBlog",
             "selectors": ["unix:uid:1111"], "x509_svid_ttl": 200, "admin": True},
            {"spiffe_id": "spiffe://example.org/Database", "parent_id": "spiffe://example.org/spire/agent/join_token/TokenDatabase",
             "selectors": ["unix:uid:1111", "unix:gid:7"], "x509_svid_ttl": 200, "jwt_svid_ttl": 30,
             "federates_with": ["other.org"], "expires_at": "2030-03-17T17:46:40Z", "dns_names": ["db.example.org"]}]}
        check("SPIRE entries converted to EntryInput", reqs[0][3] == want, json.dumps(reqs[0][3]))
    check(f"SPIRE file: the refused entry is reported with its line ({third})",
          f"line {third}: Error: store_svid" in err, err)
    check("SPIRE file: summary and exit 1", rc == 1 and "SPIRE entries file" in out and "2 created" in out and "1 failed" in out, (rc, out))


def agent(n, **kw):
    a = {"spiffe_id": f"spiffe://example.org/sigil/agent/node-{n}", "attestation_type": "join_token",
         "serial": f"0{n}ab", "expires_at": "2026-11-25T00:00:00Z", "banned": False, "can_reattest": False,
         "selectors": [f"join_token:node-{n}"]}
    a.update(kw)
    return a


def other_cases(api, d):
    aid = "spiffe://example.org/sigil/agent/node-1"
    # --- agent
    routes = {("GET", "/v1/agents"): [(200, {"agents": [agent(1), agent(2)], "next_page_token": "t2"}),
                                      (200, {"agents": [agent(3, banned=True)]})]}
    rc, out, err, reqs = run(api, routes, "agent", "list", "--banned", "--attestation-type", "join_token", "--page-size", "2")
    check("agent list follows pages with its filters", rc == 0 and len(reqs) == 2 and reqs[0][2] == {"banned": ["true"], "attestation_type": ["join_token"], "page_size": ["2"]}
          and reqs[1][2].get("page_token") == ["t2"], (rc, reqs, err))
    check("agent list text", out.startswith("Found 3 attested agents:") and "Attestation type   : join_token" in out
          and "Banned             : true" in out and "Serial number      : 01ab" in out, out)
    rc, out, err, reqs = run(api, {("GET", "/v1/agent"): [(200, agent(1))]}, "agent", "show", "--spiffe-id", aid)
    check("agent show: GET /v1/agent?spiffe_id=", rc == 0 and reqs[0][1] == "/v1/agent" and reqs[0][2] == {"spiffe_id": [aid]}
          and "SPIFFE ID          : " + aid in out, (rc, reqs, err))
    rc, out, err, reqs = run(api, {("POST", "/v1/agents:ban"): [(200, agent(1, banned=True))]}, "agent", "ban", "--spiffe-id", aid)
    check("agent ban: POST /v1/agents:ban with AgentRef", rc == 0 and reqs[0][1] == "/v1/agents:ban" and reqs[0][3] == {"spiffe_id": aid}
          and "Agent banned" in out, (rc, reqs, err))
    rc, out, err, reqs = run(api, {("POST", "/v1/agents:evict"): [(204, None)]}, "agent", "evict", "--spiffe-id", aid)
    check("agent evict: POST /v1/agents:evict", rc == 0 and reqs[0][3] == {"spiffe_id": aid} and "evicted" in out, (rc, reqs, err))
    rc, out, err, reqs = run(api, {}, "agent", "show", "--spiffe-id", "spiffe://example.org/a//b")
    check("agent show: bad ID refused locally with its rule", rc == 1 and "ID-" in err and not reqs, (rc, err))

    # --- token
    tok = {"token": "s3cr3t-token", "expires_at": "2026-11-24T05:30:00Z", "agent_id": aid}
    rc, out, err, reqs = run(api, {("POST", "/v1/join-tokens"): [(201, tok)]}, "token", "generate", "--ttl", "90m", "--agent-path", "/sigil/agent/node-1")
    check("token generate body", rc == 0 and reqs[0][3] == {"ttl_seconds": 5400, "agent_path": "/sigil/agent/node-1"}, (rc, reqs, err))
    check("token generate prints the token", "Token              : s3cr3t-token" in out and "Agent ID           : " + aid in out, out)
    rc, out, err, reqs = run(api, {}, "token", "generate", "--ttl", "2d")
    check("token TTL over 24h refused locally", rc == 1 and not reqs, (rc, err))

    # --- bundle
    pem_path, b64 = make_cert(d)
    with open(pem_path) as f:
        pem = f.read()
    bundle = {"keys": [{"use": "x509-svid", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "x5c": [b64]},
                       {"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "AA", "y": "AA"}],
              "spiffe_sequence": 4}
    rc, out, err, reqs = run(api, {("GET", "/v1/bundle"): [(200, bundle)]}, "bundle", "show")
    check("bundle show prints the X.509 authorities as PEM", rc == 0 and out.strip() == pem.strip(), (rc, out, err))
    rc, out, err, reqs = run(api, {("GET", "/v1/bundle"): [(200, bundle)]}, "bundle", "show", "--output", "json")
    check("bundle show --output json is the bundle", rc == 0 and json.loads(out) == bundle, out)
    rc, out, err, reqs = run(api, {("GET", "/v1/federated-bundles"): [(200, {"trust_domains": {"other.org": bundle}})]}, "bundle", "list")
    check("bundle list: banner, sequence, PEM", rc == 0 and "* other.org" in out and "Sequence           : 4" in out and pem.strip() in out, out)
    rc, out, err, reqs = run(api, {("PUT", "/v1/federated-bundles/other.org"): [(200, bundle)]}, "bundle", "set", "--id", "spiffe://other.org", "--path", pem_path)
    body = reqs[0][3] if reqs else {}
    check("bundle set from PEM: PUT with the certificate in x5c", rc == 0 and reqs[0][1] == "/v1/federated-bundles/other.org"
          and [k.get("x5c") for k in body.get("keys", [])] == [[b64]], (rc, reqs, err))
    bpath = os.path.join(d, "bundle.json")
    with open(bpath, "w") as f:
        json.dump(body, f)
    rc, out, err, reqs = run(api, {("PUT", "/v1/federated-bundles/other.org"): [(200, bundle)]}, "bundle", "set", "--id", "other.org", "--format", "spiffe", "--path", bpath)
    check("bundle set --format spiffe sends the document", rc == 0 and len(reqs) == 1 and reqs[0][3] == body, (rc, err))
    with open(bpath, "w") as f:
        json.dump({"keys": [{"use": "jwt-svid", "kty": "EC"}]}, f)
    rc, out, err, reqs = run(api, {}, "bundle", "set", "--id", "other.org", "--format", "spiffe", "--path", bpath)
    check("bundle set --format spiffe refuses a bad bundle locally", rc == 1 and not reqs and "not a SPIFFE bundle" in err, (rc, err))
    rc, out, err, reqs = run(api, {}, "bundle", "set", "--id", "other.org", "--path", os.path.join(d, "entries.jsonl"))
    check("bundle set refuses a file without certificates", rc == 1 and not reqs, (rc, err))
    rc, out, err, reqs = run(api, {("DELETE", "/v1/federated-bundles/other.org"): [(204, None)]}, "bundle", "delete", "--id", "other.org")
    check("bundle delete", rc == 0 and reqs[0][:2] == ("DELETE", "/v1/federated-bundles/other.org"), (rc, reqs, err))

    # --- federation
    rel = {"trust_domain": "other.org", "bundle_endpoint_url": "https://other.org:8443/bundle", "profile": "https_spiffe",
           "endpoint_spiffe_id": "spiffe://other.org/sigil/server"}
    rc, out, err, reqs = run(api, {}, "federation", "create", "--trust-domain", "other.org", "--bundle-endpoint-url",
                             "https://other.org:8443/bundle", "--profile", "https_spiffe")
    check("federation https_spiffe without endpoint ID is a usage error", rc == 64 and not reqs, (rc, err))
    rc, out, err, reqs = run(api, {("POST", "/v1/federation-relationships"): [(201, rel)]}, "federation", "create",
                             "--trust-domain", "spiffe://other.org", "--bundle-endpoint-url", "https://other.org:8443/bundle",
                             "--profile", "https_spiffe", "--endpoint-spiffe-id", "spiffe://other.org/sigil/server")
    check("federation create body", rc == 0 and reqs[0][3] == rel, (rc, reqs, err))
    check("federation create text", "Trust domain       : other.org" in out and "Endpoint SPIFFE ID : spiffe://other.org/sigil/server" in out, out)
    rc, out, err, reqs = run(api, {("GET", "/v1/federation-relationships"): [(200, {"relationships": [rel]})]}, "federation", "list")
    check("federation list", rc == 0 and out.startswith("Found 1 federation relationship:") and "Profile            : https_spiffe" in out, out)
    rc, out, err, reqs = run(api, {("DELETE", "/v1/federation-relationships/other.org"): [(204, None)]}, "federation", "delete", "--id", "other.org")
    check("federation delete", rc == 0 and reqs[0][:2] == ("DELETE", "/v1/federation-relationships/other.org"), (rc, reqs, err))

    # --- audit
    rec = lambda i: {"id": i, "at": "2026-11-24T04:00:00Z", "actor": "uid:0", "action": "entry.create",
                     "object_type": "entry", "object_id": UUID1, "before": None, "after": {"hint": "x"}, "revision": 1}
    routes = {("GET", "/v1/audit"): [(200, {"records": [rec(9), rec(8)], "next_page_token": "n"}), (200, {"records": [rec(7), rec(6)], "next_page_token": "m"})]}
    rc, out, err, reqs = run(api, routes, "audit", "list", "--object-type", "entry", "--actor", "uid:0", "--limit", "3")
    check("audit list stops at --limit", rc == 0 and len(reqs) == 2 and out.startswith("Found 3 audit records") and "Record ID          : 6" not in out, (rc, out, err))
    check("audit list query and text", reqs and reqs[0][2] == {"object_type": ["entry"], "actor": ["uid:0"]}
          and 'After              : {"hint":"x"}' in out and "Before             : null" in out, (reqs, out))


if __name__ == "__main__":
    sys.exit(main())
