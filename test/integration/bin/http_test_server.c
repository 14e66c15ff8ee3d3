/* A small server on lib/http for test_http_curl.sh: one Unix socket and two TLS ports
 * (public HTTP/1.1-only, and mutual TLS whose client chain is verified against --ca and
 * turned into a SPIFFE ID). Prints "READY public=<port> mtls=<port>" once listening, logs
 * to stderr, re-reads its certificate and key on SIGHUP, and stops gracefully on SIGTERM/SIGINT
 * (exit 0 once everything is freed).
 *
 *   http_test_server --unix PATH --cert PEM --key PEM --ca PEM */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "sigil/err.h"
#include "sigil/http.h"

struct app {
    uv_loop_t *loop;
    struct sigil_http_server *srv;
    X509_STORE *roots;
    uv_signal_t sigterm, sigint, sighup;
    int exit_code;
};

struct slow {
    uv_work_t work;
    struct sigil_http_req *req;
    unsigned ms;
};

static void
on_log(void *arg, const char *msg)
{
    (void)arg;
    fprintf(stderr, "%s\n", msg);
}

/* The mTLS check: RFC 5280 validation against --ca for client use, then the one SPIFFE ID. */
static int
verify(void *arg, STACK_OF(X509) *chain, char id[SIGIL_HTTP_ID_MAX + 1], const char **why)
{
    struct app *app = arg;
    X509_STORE_CTX *xs = X509_STORE_CTX_new();
    int r = SIGIL_ERR_VERIFY;

    *why = "chain does not verify against the test CA";
    if (xs != NULL && X509_STORE_CTX_init(xs, app->roots, sk_X509_value(chain, 0), chain) == 1 &&
        X509_STORE_CTX_set_purpose(xs, X509_PURPOSE_SSL_CLIENT) == 1 && X509_verify_cert(xs) == 1)
        r = sigil_http_peer_spiffeid(chain, id, why);
    X509_STORE_CTX_free(xs);
    ERR_clear_error();
    return r;
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
    size_t n;
    (void)arg;
    sigil_http_req_body(req, &n);
    sigil_http_respond_json(req, 200, json_pack("{s:I}", "len", (json_int_t)n));
}

static void
h_whoami(struct sigil_http_req *req, void *arg)
{
    const struct sigil_http_peer *p = sigil_http_req_peer(req);
    json_t *j;
    (void)arg;

    switch (p->kind) {
    case SIGIL_HTTP_PEER_UNIX:
        j = json_pack("{s:s,s:I,s:I,s:I}", "kind", "unix", "uid", (json_int_t)p->uid, "gid",
                      (json_int_t)p->gid, "pid", (json_int_t)p->pid);
        break;
    case SIGIL_HTTP_PEER_MTLS:
        j = json_pack("{s:s,s:s}", "kind", "mtls", "id", p->id);
        break;
    default:
        j = json_pack("{s:s}", "kind", "tls");
        break;
    }
    sigil_http_respond_json(req, 200, j);
}

/* A worker thread answers (from libuv's pool), like the admin API's database calls will. */
static void
slow_work(uv_work_t *w)
{
    struct slow *s = w->data;
    usleep(s->ms * 1000);
    sigil_http_post_json(s->req, 200, json_pack("{s:b,s:I}", "slow", 1, "ms", (json_int_t)s->ms));
}

static void
slow_done(uv_work_t *w, int status)
{
    (void)status;
    free(w->data);
}

static void
h_slow(struct sigil_http_req *req, void *arg)
{
    struct app *app = arg;
    struct sigil_buf b = {0};
    const char *why, *q = sigil_http_req_query(req);
    struct slow *s;
    char *end;
    unsigned long ms = 100;

    if (q != NULL && sigil_http_query_param(q, strlen(q), "ms", &b, &why) == 0) {
        char tmp[16] = {0};
        memcpy(tmp, b.data, b.len < 15 ? b.len : 15);
        ms = strtoul(tmp, &end, 10);
        if (*end != '\0' || ms > 10000) {
            sigil_buf_free(&b);
            sigil_http_respond_error(req, 400, "ms must be 0..10000");
            return;
        }
    }
    sigil_buf_free(&b);
    if ((s = calloc(1, sizeof *s)) == NULL) {
        sigil_http_respond_error(req, 500, "out of memory");
        return;
    }
    if (sigil_http_req_defer(req) != 0) {
        free(s);
        return; /* answered 503 already */
    }
    s->req = req;
    s->ms = (unsigned)ms;
    s->work.data = s;
    if (uv_queue_work(app->loop, &s->work, slow_work, slow_done) != 0) {
        sigil_http_respond_error(req, 500, "cannot queue work");
        free(s);
    }
}

/* SIGHUP: re-read the certificate and key files, as after an SVID rotation. */
static void
on_hup(uv_signal_t *h, int sig)
{
    struct app *app = h->data;
    const char *why;
    int r = sigil_http_tls_reload(app->srv, &why);
    (void)sig;
    if (r == 0)
        fprintf(stderr, "reload: ok\n");
    else
        fprintf(stderr, "reload failed: %s: %s\n", sigil_strerror(r), why);
}

static void
on_stopped(void *arg)
{
    struct app *app = arg;
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sighup, NULL);
}

static void
on_signal(uv_signal_t *h, int sig)
{
    struct app *app = h->data;
    fprintf(stderr, "signal %d: stopping\n", sig);
    uv_signal_stop(&app->sigterm);
    uv_signal_stop(&app->sigint);
    uv_signal_stop(&app->sighup);
    sigil_http_server_stop(app->srv, on_stopped, app);
}

static int
usage(void)
{
    fprintf(stderr, "usage: http_test_server --unix PATH --cert PEM --key PEM --ca PEM\n");
    return 2;
}

int
main(int argc, char **argv)
{
    const char *unix_path = NULL, *cert = NULL, *key = NULL, *ca = NULL, *why = NULL;
    struct app app = {0};
    uv_loop_t loop;
    uint16_t pub = 0, mtls = 0;
    int r;

    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--unix") == 0)
            unix_path = argv[i + 1];
        else if (strcmp(argv[i], "--cert") == 0)
            cert = argv[i + 1];
        else if (strcmp(argv[i], "--key") == 0)
            key = argv[i + 1];
        else if (strcmp(argv[i], "--ca") == 0)
            ca = argv[i + 1];
        else
            return usage();
    }
    if (unix_path == NULL || cert == NULL || key == NULL || ca == NULL)
        return usage();
    signal(SIGPIPE, SIG_IGN);
    if ((app.roots = X509_STORE_new()) == NULL || X509_STORE_load_file(app.roots, ca) != 1) {
        fprintf(stderr, "cannot load CA file %s\n", ca);
        X509_STORE_free(app.roots);
        return 1;
    }
    uv_loop_init(&loop);
    app.loop = &loop;
    if ((r = sigil_http_server_new(&loop, &app.srv, &why)) != 0) {
        fprintf(stderr, "server: %s: %s\n", sigil_strerror(r), why);
        return 1;
    }
    sigil_http_server_set_log(app.srv, on_log, &app);
    struct sigil_http_tls tls_pub = {.cert_file = cert, .key_file = key};
    struct sigil_http_tls tls_mtls = {
        .cert_file = cert, .key_file = key, .verify = verify, .verify_arg = &app};
    if ((r = sigil_http_listen_unix(app.srv, unix_path, 0600, &why)) != 0 ||
        (r = sigil_http_listen_tcp(app.srv, "127.0.0.1", 0, &tls_pub, &pub, &why)) != 0 ||
        (r = sigil_http_listen_tcp(app.srv, "127.0.0.1", 0, &tls_mtls, &mtls, &why)) != 0 ||
        (r = sigil_http_route(app.srv, "GET", "/live", false, h_live, &app)) != 0 ||
        (r = sigil_http_route(app.srv, "POST", "/echo", false, h_echo, &app)) != 0 ||
        (r = sigil_http_route(app.srv, "GET", "/whoami", false, h_whoami, &app)) != 0 ||
        (r = sigil_http_route(app.srv, "GET", "/slow", false, h_slow, &app)) != 0) {
        fprintf(stderr, "listen: %s: %s\n", sigil_strerror(r), why != NULL ? why : "");
        app.exit_code = 1;
        sigil_http_server_stop(app.srv, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        goto out;
    }
    uv_signal_init(&loop, &app.sigterm);
    uv_signal_init(&loop, &app.sigint);
    uv_signal_init(&loop, &app.sighup);
    app.sigterm.data = app.sigint.data = app.sighup.data = &app;
    uv_signal_start(&app.sigterm, on_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_signal, SIGINT);
    uv_signal_start(&app.sighup, on_hup, SIGHUP);
    printf("READY public=%u mtls=%u\n", pub, mtls);
    fflush(stdout);
    uv_run(&loop, UV_RUN_DEFAULT);
    fprintf(stderr, "stopped\n");
out:
    if (uv_loop_close(&loop) != 0) {
        fprintf(stderr, "loop still has handles\n");
        app.exit_code = 1;
    }
    X509_STORE_free(app.roots);
    return app.exit_code;
}
