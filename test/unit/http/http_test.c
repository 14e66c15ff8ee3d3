/* Unit tests of the http module: the pure helpers (peer SPIFFE ID from a chain, query
 * parameters) and a real server on a Unix socket driven by a raw HTTP/1.1 client thread:
 * routing, JSON errors, caps, SO_PEERCRED, deferred answers from worker threads, the
 * stale-socket rules and a graceful stop that leaves nothing behind (ASan checks that). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "sigil/err.h"
#include "sigil/http.h"

/* ---- sigil_http_peer_spiffeid ---- */

struct san {
    int type; /* GEN_URI or GEN_DNS */
    const char *v;
    size_t len; /* 0: strlen(v) */
};

/* A self-signed leaf with the given SANs (in one extension, or split over two). */
static X509 *
make_cert(const struct san *sans, size_t n, bool two_exts)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    assert_non_null(k);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    assert_int_equal(X509_set_pubkey(x, k), 1);
    for (int part = 0; part < (two_exts ? 2 : 1); part++) {
        GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
        for (size_t i = 0; i < n; i++) {
            if (two_exts && (int)(i % 2) != part)
                continue;
            GENERAL_NAME *g = GENERAL_NAME_new();
            ASN1_IA5STRING *s = ASN1_IA5STRING_new();
            size_t len = sans[i].len != 0 ? sans[i].len : strlen(sans[i].v);
            assert_int_equal(ASN1_STRING_set(s, sans[i].v, (int)len), 1);
            GENERAL_NAME_set0_value(g, sans[i].type, s);
            sk_GENERAL_NAME_push(gens, g);
        }
        if (n != 0)
            assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
                                               part == 0 ? X509V3_ADD_DEFAULT : X509V3_ADD_APPEND),
                             1);
        GENERAL_NAMES_free(gens);
    }
    assert_true(X509_sign(x, k, EVP_sha256()) > 0);
    EVP_PKEY_free(k);
    return x;
}

/* Runs sigil_http_peer_spiffeid on a one-certificate chain of those SANs. */
static int
peer_id(const struct san *sans, size_t n, bool two_exts, char id[SIGIL_HTTP_ID_MAX + 1],
        const char **why)
{
    X509 *x = make_cert(sans, n, two_exts);
    STACK_OF(X509) *chain = sk_X509_new_null();
    sk_X509_push(chain, x);
    int r = sigil_http_peer_spiffeid(chain, id, why);
    sk_X509_pop_free(chain, X509_free);
    return r;
}

static void
test_peer_id_one_uri(void **state)
{
    (void)state;
    char id[SIGIL_HTTP_ID_MAX + 1];
    const char *why;
    const struct san s[] = {{GEN_DNS, "admin.example.org", 0},
                            {GEN_URI, "spiffe://example.org/admin", 0}};
    assert_int_equal(peer_id(s, 2, false, id, &why), 0);
    assert_string_equal(id, "spiffe://example.org/admin");
}

static void
test_peer_id_rejects(void **state)
{
    (void)state;
    char id[SIGIL_HTTP_ID_MAX + 1];
    const char *why;
    static char longid[SIGIL_HTTP_ID_MAX + 64];
    const struct san none[] = {{GEN_DNS, "example.org", 0}};
    const struct san two[] = {{GEN_URI, "spiffe://example.org/a", 0},
                              {GEN_URI, "spiffe://example.org/b", 0}};
    const struct san https[] = {{GEN_URI, "https://example.org/admin", 0}};
    const struct san root[] = {{GEN_URI, "spiffe://example.org", 0}};
    const struct san upper[] = {{GEN_URI, "spiffe://Example.org/a", 0}};
    const struct san dots[] = {{GEN_URI, "spiffe://example.org/a/../b", 0}};
    const struct san nul[] = {{GEN_URI, "spiffe://example.org/a\0b", 24}};
    const struct san query[] = {{GEN_URI, "spiffe://example.org/a?x=1", 0}};

    assert_int_equal(peer_id(none, 1, false, id, &why), SIGIL_ERR_NOTFOUND);
    assert_string_equal(id, "");
    assert_non_null(strstr(why, "X-1"));
    assert_int_equal(peer_id(none, 0, false, id, &why), SIGIL_ERR_NOTFOUND);
    assert_int_equal(peer_id(two, 2, false, id, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "X-1"));
    /* the same two URIs in two SAN extensions: still not one identity */
    assert_int_not_equal(peer_id(two, 2, true, id, &why), 0);
    assert_int_equal(peer_id(https, 1, false, id, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "ID-1"));
    assert_int_equal(peer_id(root, 1, false, id, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "X-2"));
    assert_int_equal(peer_id(upper, 1, false, id, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "ID-3"));
    assert_int_equal(peer_id(dots, 1, false, id, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "ID-5"));
    assert_int_equal(peer_id(nul, 1, false, id, &why), SIGIL_ERR_INVALID);
    assert_int_equal(peer_id(query, 1, false, id, &why), SIGIL_ERR_INVALID);
    assert_string_equal(id, "");

    /* ID-7: 2049 bytes is over the cap */
    memcpy(longid, "spiffe://example.org/", 21);
    memset(longid + 21, 'a', SIGIL_HTTP_ID_MAX + 1 - 21);
    longid[SIGIL_HTTP_ID_MAX + 1] = '\0';
    const struct san big[] = {{GEN_URI, longid, 0}};
    assert_int_equal(peer_id(big, 1, false, id, &why), SIGIL_ERR_RANGE);
    /* exactly 2048 bytes is fine */
    longid[SIGIL_HTTP_ID_MAX] = '\0';
    assert_int_equal(peer_id(big, 1, false, id, &why), 0);
    assert_int_equal(strlen(id), SIGIL_HTTP_ID_MAX);

    STACK_OF(X509) *empty = sk_X509_new_null();
    assert_int_equal(sigil_http_peer_spiffeid(empty, id, &why), SIGIL_ERR_INVALID);
    sk_X509_free(empty);
    assert_int_equal(sigil_http_peer_spiffeid(NULL, id, &why), SIGIL_ERR_INVALID);
}

/* ---- sigil_http_query_param ---- */

static int
qp(const char *q, const char *name, char *out, size_t cap)
{
    struct sigil_buf b = {0};
    const char *why = NULL;
    int r = sigil_http_query_param(q, q != NULL ? strlen(q) : 0, name, &b, &why);
    if (r != 0)
        assert_non_null(why);
    snprintf(out, cap, "%.*s", (int)b.len, b.data != NULL ? (const char *)b.data : "");
    sigil_buf_free(&b);
    return r;
}

static void
test_query_param(void **state)
{
    (void)state;
    char v[64];

    assert_int_equal(qp("a=1&b=2", "b", v, sizeof v), 0);
    assert_string_equal(v, "2");
    assert_int_equal(qp("id=spiffe%3A%2F%2Fexample.org%2Fa+b", "id", v, sizeof v), 0);
    assert_string_equal(v, "spiffe://example.org/a b");
    assert_int_equal(qp("%61=x", "a", v, sizeof v), 0); /* names are decoded too */
    assert_string_equal(v, "x");
    assert_int_equal(qp("&&flag&x=", "flag", v, sizeof v), 0);
    assert_string_equal(v, "");
    assert_int_equal(qp("&&flag&x=", "x", v, sizeof v), 0);
    assert_string_equal(v, "");
    assert_int_equal(qp("a=1=2", "a", v, sizeof v), 0);
    assert_string_equal(v, "1=2");
    assert_int_equal(qp("a=1", "b", v, sizeof v), SIGIL_ERR_NOTFOUND);
    assert_int_equal(qp(NULL, "b", v, sizeof v), SIGIL_ERR_NOTFOUND);
    assert_int_equal(qp("", "b", v, sizeof v), SIGIL_ERR_NOTFOUND);
}

static void
test_query_param_rejects(void **state)
{
    (void)state;
    char v[64];
    struct sigil_buf b = {0};
    const char *why;

    assert_int_equal(qp("a=1&a=2", "a", v, sizeof v), SIGIL_ERR_INVALID);   /* twice */
    assert_int_equal(qp("a=1&%61=2", "a", v, sizeof v), SIGIL_ERR_INVALID); /* twice, hidden */
    assert_int_equal(qp("a=%zz", "a", v, sizeof v), SIGIL_ERR_INVALID);
    assert_int_equal(qp("a=%4", "a", v, sizeof v), SIGIL_ERR_INVALID);
    assert_int_equal(qp("a=%", "a", v, sizeof v), SIGIL_ERR_INVALID);
    assert_int_equal(qp("a=%00", "a", v, sizeof v), SIGIL_ERR_INVALID);
    assert_int_equal(qp("b=%zz&a=1", "a", v, sizeof v), SIGIL_ERR_INVALID); /* any bad escape */
    assert_int_equal(qp("a=1", "", v, sizeof v), SIGIL_ERR_INVALID);
    /* a raw NUL inside the query bytes */
    assert_int_equal(sigil_http_query_param("a=x\0y", 5, "a", &b, &why), SIGIL_ERR_INVALID);
    assert_int_equal(b.len, 0);

    /* value cap: 8 KiB decoded is fine, one more byte is not */
    size_t n = 2 + SIGIL_HTTP_QUERY_VALUE_MAX + 1;
    char *q = malloc(n + 1);
    assert_non_null(q);
    memcpy(q, "a=", 2);
    memset(q + 2, 'x', n - 2);
    q[n] = '\0';
    assert_int_equal(sigil_http_query_param(q, n, "a", &b, &why), SIGIL_ERR_RANGE);
    assert_int_equal(sigil_http_query_param(q, n - 1, "a", &b, &why), 0);
    assert_int_equal(b.len, SIGIL_HTTP_QUERY_VALUE_MAX);
    sigil_buf_free(&b);
    free(q);
}

/* ---- a real server on a Unix socket ---- */

struct fixture {
    char dir[64];
    char path[100];
    uv_loop_t loop;
    struct sigil_http_server *srv;
    uv_async_t stop;
    bool done;
    pthread_t workers[8];
    int nworkers;
    int double_answer; /* what a second respond returned */
    int bad_header;    /* what a CR/LF header value returned */
    int dropped;       /* "dropped" log lines seen */
};

static struct fixture *fx_current;

static void
on_log(void *arg, const char *msg)
{
    struct fixture *fx = arg;
    if (strstr(msg, "dropped") != NULL)
        fx->dropped++;
}

static void
h_live(struct sigil_http_req *req, void *arg)
{
    (void)arg;
    sigil_http_respond_json(req, 200, json_pack("{s:s}", "status", "ok"));
}

static void
h_echo(struct sigil_http_req *req, void *arg)
{
    struct fixture *fx = arg;
    size_t n;
    json_t *j;
    const char *why;

    sigil_http_req_body(req, &n);
    if (sigil_http_req_body_json(req, &j, &why) == 0) {
        json_decref(j);
        sigil_http_respond_json(req, 200, json_pack("{s:I,s:b}", "len", (json_int_t)n, "json", 1));
        return;
    }
    fx->bad_header = sigil_http_res_header(req, "x-a", "b\r\nset-cookie: x");
    sigil_http_res_header(req, "X-Len-Seen", "yes");
    sigil_http_respond_json(req, 200, json_pack("{s:I}", "len", (json_int_t)n));
    fx->double_answer = sigil_http_respond(req, 200, "text/plain", "x", 1);
}

static void
h_whoami(struct sigil_http_req *req, void *arg)
{
    (void)arg;
    const struct sigil_http_peer *p = sigil_http_req_peer(req);
    sigil_http_respond_json(req, 200,
                            json_pack("{s:i,s:i,s:i,s:i}", "kind", (int)p->kind, "uid", (int)p->uid,
                                      "gid", (int)p->gid, "pid", (int)p->pid));
}

static void
h_query(struct sigil_http_req *req, void *arg)
{
    (void)arg;
    struct sigil_buf b = {0};
    const char *why, *q = sigil_http_req_query(req);
    const uint8_t *hv;
    size_t hl;

    if (sigil_http_req_header(req, "X-Twice", &hv, &hl) == SIGIL_ERR_INVALID) {
        sigil_http_respond_error(req, 400, "x-twice given twice");
        return;
    }
    if (q == NULL || sigil_http_query_param(q, strlen(q), "name", &b, &why) != 0) {
        sigil_http_respond_error(req, 400, "bad query");
        return;
    }
    json_t *j = json_pack("{s:s%,s:s}", "name", (const char *)b.data, b.len, "path",
                          sigil_http_req_path(req));
    sigil_buf_free(&b);
    sigil_http_respond_json(req, 200, j);
}

static void
h_prefix(struct sigil_http_req *req, void *arg)
{
    (void)arg;
    sigil_http_respond_json(req, 200, json_pack("{s:s}", "prefix", sigil_http_req_path(req)));
}

static void
h_silent(struct sigil_http_req *req, void *arg)
{
    (void)req;
    (void)arg;
}

static void
h_text_error(struct sigil_http_req *req, void *arg)
{
    (void)arg;
    sigil_http_respond(req, 409, "text/plain", "plain words", 11);
}

static void
h_nocontent(struct sigil_http_req *req, void *arg)
{
    (void)arg;
    sigil_http_respond(req, 204, NULL, "ignored", 7);
}

static void *
worker(void *p)
{
    struct sigil_http_req *req = p;
    usleep(100 * 1000);
    sigil_http_post_json(req, 202, json_pack("{s:b}", "deferred", 1));
    return NULL;
}

static void
h_defer(struct sigil_http_req *req, void *arg)
{
    struct fixture *fx = arg;
    assert_int_equal(sigil_http_req_defer(req), 0);
    assert_int_equal(sigil_http_req_defer(req), SIGIL_ERR_STATE);
    assert_true(fx->nworkers < 8);
    assert_int_equal(pthread_create(&fx->workers[fx->nworkers++], NULL, worker, req), 0);
}

static void
on_stopped(void *arg)
{
    struct fixture *fx = arg;
    fx->done = true;
}

static void
on_stop_request(uv_async_t *a)
{
    struct fixture *fx = a->data;
    sigil_http_server_stop(fx->srv, on_stopped, fx);
    uv_close((uv_handle_t *)a, NULL);
}

/* One HTTP/1.1 exchange over the Unix socket; returns the whole response (caller frees). */
static char *
exchange(const char *path, const char *req, size_t reqlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    ssize_t k;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);

    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    if (buf == NULL || fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        free(buf);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    for (size_t off = 0; off < reqlen; off += (size_t)k)
        if ((k = write(fd, req + off, reqlen - off)) <= 0)
            break;
    while (n < cap && (k = read(fd, buf + n, cap - n)) > 0)
        n += (size_t)k;
    buf[n] = '\0';
    close(fd);
    return buf;
}

static int
status_of(const char *resp)
{
    int st = 0;
    if (resp == NULL || sscanf(resp, "HTTP/1.1 %d", &st) != 1)
        return -1;
    return st;
}

static const char *
body_of(const char *resp)
{
    const char *p = resp != NULL ? strstr(resp, "\r\n\r\n") : NULL;
    return p != NULL ? p + 4 : "";
}

struct result {
    int status;
    char body[256];
    bool has_allow_get, json_ctype, has_xlen, has_clen;
};

static void
run(const char *path, const char *req, struct result *out)
{
    char *resp = exchange(path, req, strlen(req));
    memset(out, 0, sizeof *out);
    out->status = status_of(resp);
    snprintf(out->body, sizeof out->body, "%s", body_of(resp));
    if (resp != NULL) {
        out->has_allow_get = strstr(resp, "\r\nallow: GET\r\n") != NULL;
        out->json_ctype = strstr(resp, "\r\ncontent-type: application/json\r\n") != NULL;
        out->has_xlen = strstr(resp, "\r\nx-len-seen: yes\r\n") != NULL;
        out->has_clen = strstr(resp, "\r\nContent-Length:") != NULL;
    }
    free(resp);
}

#define NRESULTS 17
static struct result results[NRESULTS];
static char client_path[100];

static void *
client(void *arg)
{
    struct fixture *fx = arg;
    const char *p = client_path;
    char many[4096];
    size_t off;

    run(p, "GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &results[0]);
    run(p, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &results[1]);
    run(p, "POST /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        &results[2]);
    /* over the cap: refused from the header alone, no body sent */
    run(p, "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2097152\r\n\r\n",
        &results[3]);
    off = (size_t)snprintf(many, sizeof many,
                           "GET /live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (int i = 0; i < SIGIL_HTTP_HEADERS_MAX + 5; i++)
        off += (size_t)snprintf(many + off, sizeof many - off, "x-h%d: v\r\n", i);
    snprintf(many + off, sizeof many - off, "\r\n");
    run(p, many, &results[4]);
    run(p, "GET /whoami HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &results[5]);
    run(p, "GET /defer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &results[6]);
    run(p, "GET /silent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &results[7]);
    run(p, "GET /q?name=a%20b+c&x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &results[8]);
    run(p, "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        &results[9]);
    run(p, "GET /pre/fix/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &results[10]);
    run(p, "GET /text-error HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &results[11]);
    run(p,
        "GET /q?name=a HTTP/1.1\r\nHost: x\r\nX-Twice: 1\r\nX-Twice: 2\r\nConnection: "
        "close\r\n\r\n",
        &results[12]);
    run(p,
        "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
        "3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
        &results[13]);
    run(p, "GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &results[14]);
    run(p, "GET /nocontent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", &results[15]);
    /* a deferred request whose client is gone before the answer */
    char *gone = NULL;
    {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", p);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
            const char r[] = "GET /defer HTTP/1.1\r\nHost: x\r\n\r\n";
            if (write(fd, r, sizeof r - 1) < 0)
                gone = "write failed";
            usleep(20 * 1000);
        }
        if (fd >= 0)
            close(fd);
    }
    (void)gone;
    fx->stop.data = fx;
    uv_async_send(&fx->stop);
    return NULL;
}

static void
test_server(void **state)
{
    (void)state;
    struct fixture fx = {0};
    const char *why;
    pthread_t cl;
    struct stat st;
    int fd;

    fx_current = &fx;
    snprintf(fx.dir, sizeof fx.dir, "/tmp/sigil-http-test-XXXXXX");
    assert_non_null(mkdtemp(fx.dir));
    snprintf(fx.path, sizeof fx.path, "%s/api.sock", fx.dir);
    snprintf(client_path, sizeof client_path, "%s", fx.path);
    assert_int_equal(uv_loop_init(&fx.loop), 0);

    /* SIGPIPE must be handled before serving */
    signal(SIGPIPE, SIG_DFL);
    assert_int_equal(sigil_http_server_new(&fx.loop, &fx.srv, &why), SIGIL_ERR_STATE);
    assert_non_null(strstr(why, "SIGPIPE"));
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(sigil_http_server_new(&fx.loop, &fx.srv, &why), 0);
    sigil_http_server_set_log(fx.srv, on_log, &fx);

    /* a regular file at the path is never replaced */
    fd = open(fx.path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(sigil_http_listen_unix(fx.srv, fx.path, 0600, &why), SIGIL_ERR_EXISTS);
    assert_int_equal(unlink(fx.path), 0);
    /* a stale socket (bound, nobody listening) is replaced */
    {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", fx.path);
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        close(fd);
    }
    assert_int_equal(sigil_http_listen_unix(fx.srv, fx.path, 0600, &why), 0);
    assert_int_equal(lstat(fx.path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0600);
    /* a live one is not */
    assert_int_equal(sigil_http_listen_unix(fx.srv, fx.path, 0600, &why), SIGIL_ERR_EXISTS);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    assert_int_equal(sigil_http_listen_unix(fx.srv, longp, 0600, &why), SIGIL_ERR_RANGE);
    /* TCP needs TLS, and a numeric host */
    struct sigil_http_tls tls = {.cert_file = "/nonexistent.pem", .key_file = "/nonexistent.key"};
    assert_int_equal(sigil_http_listen_tcp(fx.srv, "127.0.0.1", 0, NULL, NULL, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_http_listen_tcp(fx.srv, "localhost", 0, &tls, NULL, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_http_listen_tcp(fx.srv, "127.0.0.1", 0, &tls, NULL, &why), SIGIL_ERR_IO);

    assert_int_equal(sigil_http_route(fx.srv, "GET", "/live", false, h_live, &fx), 0);
    assert_int_equal(sigil_http_route(fx.srv, "POST", "/echo", false, h_echo, &fx), 0);
    assert_int_equal(sigil_http_route(fx.srv, "GET", "/whoami", false, h_whoami, &fx), 0);
    assert_int_equal(sigil_http_route(fx.srv, "GET", "/defer", false, h_defer, &fx), 0);
    assert_int_equal(sigil_http_route(fx.srv, "GET", "/silent", false, h_silent, &fx), 0);
    assert_int_equal(sigil_http_route(fx.srv, "GET", "/q", false, h_query, &fx), 0);
    assert_int_equal(sigil_http_route(fx.srv, "GET", "/pre/", true, h_prefix, &fx), 0);
    assert_int_equal(sigil_http_route(fx.srv, "GET", "/text-error", false, h_text_error, &fx), 0);
    assert_int_equal(sigil_http_route(fx.srv, "GET", "/nocontent", false, h_nocontent, &fx), 0);
    assert_int_equal(sigil_http_route(fx.srv, "GET", "no-slash", false, h_live, &fx),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_http_route(fx.srv, "G ET", "/x", false, h_live, &fx), SIGIL_ERR_INVALID);

    assert_int_equal(uv_async_init(&fx.loop, &fx.stop, on_stop_request), 0);
    fx.stop.data = &fx;
    assert_int_equal(pthread_create(&cl, NULL, client, &fx), 0);
    assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(pthread_join(cl, NULL), 0);
    for (int i = 0; i < fx.nworkers; i++)
        assert_int_equal(pthread_join(fx.workers[i], NULL), 0);
    assert_true(fx.done);
    assert_int_equal(uv_loop_close(&fx.loop), 0);
    /* the socket file went with the server */
    assert_int_equal(lstat(fx.path, &st), -1);
    assert_int_equal(rmdir(fx.dir), 0);

    assert_int_equal(results[0].status, 200);
    assert_string_equal(results[0].body, "{\"status\":\"ok\"}");
    assert_true(results[0].json_ctype);
    assert_int_equal(results[1].status, 404);
    assert_string_equal(results[1].body,
                        "{\"error\":{\"code\":\"http.not_found\",\"message\":\"not found\"}}");
    assert_int_equal(results[2].status, 405);
    assert_true(results[2].has_allow_get);
    assert_string_equal(results[2].body, "{\"error\":{\"code\":\"http.method_not_allowed\","
                                         "\"message\":\"method not allowed\"}}");
    assert_int_equal(results[3].status, 413);
    assert_true(results[3].json_ctype);
    assert_non_null(
        strstr(results[3].body, "{\"error\":{\"code\":\"http.body_too_large\",\"message\":\""));
    assert_int_equal(results[4].status, 431);
    assert_non_null(
        strstr(results[4].body, "{\"error\":{\"code\":\"http.headers_too_large\",\"message\":\""));
    char want[128];
    snprintf(want, sizeof want, "\"uid\":%d,", (int)getuid());
    assert_non_null(strstr(results[5].body, want));
    assert_non_null(strstr(results[5].body, "\"kind\":1,"));
    assert_int_equal(results[6].status, 202);
    assert_string_equal(results[6].body, "{\"deferred\":true}");
    assert_int_equal(results[7].status, 500);
    assert_string_equal(results[7].body, "{\"error\":{\"code\":\"http.internal\","
                                         "\"message\":\"the handler did not answer\"}}");
    assert_int_equal(results[8].status, 200);
    assert_string_equal(results[8].body, "{\"name\":\"a b c\",\"path\":\"/q\"}");
    assert_int_equal(results[9].status, 200);
    assert_string_equal(results[9].body, "{\"len\":5}");
    assert_true(results[9].has_xlen);
    assert_int_equal(fx.double_answer, SIGIL_ERR_STATE);
    assert_int_equal(fx.bad_header, SIGIL_ERR_INVALID);
    assert_int_equal(results[10].status, 200);
    assert_string_equal(results[10].body, "{\"prefix\":\"/pre/fix/x\"}");
    assert_int_equal(results[11].status, 409);
    assert_true(results[11].json_ctype);
    assert_string_equal(results[11].body,
                        "{\"error\":{\"code\":\"http.conflict\",\"message\":\"conflict\"}}");
    assert_int_equal(results[12].status, 400);
    assert_string_equal(results[12].body, "{\"error\":{\"code\":\"http.bad_request\","
                                          "\"message\":\"x-twice given twice\"}}");
    assert_int_equal(results[13].status, 200);
    assert_string_equal(results[13].body, "{\"len\":7,\"json\":true}");
    assert_int_equal(results[14].status, 404);
    assert_true(results[14].json_ctype);
    assert_non_null(strstr(results[14].body, "{\"error\":{\"code\":\"http.not_found\""));
    assert_int_equal(results[15].status, 204);
    assert_false(results[15].has_clen);
    assert_string_equal(results[15].body, "");
    assert_true(results[0].has_clen);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peer_id_one_uri), cmocka_unit_test(test_peer_id_rejects),
        cmocka_unit_test(test_query_param),     cmocka_unit_test(test_query_param_rejects),
        cmocka_unit_test(test_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
