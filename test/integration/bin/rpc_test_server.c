/* A gRPC test server on lib/rpc for test_rpc_grpcio_server.py: service sigil.test.Echo on a
 * Unix socket (--unix PATH) and/or TCP with TLS (--tcp HOST:PORT --cert --key [--ca
 * --require-client-cert]). Prints "READY" (and "PORT <n>" first for TCP) once listening;
 * stops gracefully on SIGTERM/SIGINT and exits 0 once everything is freed.
 *
 * Methods (requests and responses are raw bytes or short ASCII texts):
 *   Unary         echoes the request
 *   Secure        echoes, but requires `workload.spiffe.io: true` (E-2)
 *   Fail          request "<code>:<message>" -> that status and message
 *   Slow          request "<ms>" -> answers "done" after ms (cancelled by the deadline)
 *   ServerStream  request "<count> <interval_ms> [<size>]" -> count messages "<i>" padded to size
 *   ClientStream  -> "<messages> <bytes>" once the client half-closes
 *   Bidi          echoes each message, OK on half-close
 *   Peer          -> "uid=<u> gid=<g> pid=<p> pidfd=<0|1>"
 *   Stats         -> "calls=<n> cancels=<n> send_range=<n>"
 *   Flood         request "<size>": sends size-byte messages until the outbound cap refuses
 *                 one, then RESOURCE_EXHAUSTED "outbound cap after <n> messages" */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "sigil/err.h"
#include "sigil/rpc.h"
#include "sigil/tls.h"

static uv_loop_t *loop;
static struct sigil_rpc_server *srv;
static uv_signal_t sig_term, sig_int;
static unsigned long n_calls, n_cancels, n_send_range;

/* A handler's job that waits on a timer; freed when its timer handle is closed. */
struct job {
    uv_timer_t t;
    struct sigil_rpc_call *call;
    unsigned long count, i, size, interval;
    bool flood;
};

static void
job_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
job_end(struct job *j)
{
    j->call = NULL;
    uv_timer_stop(&j->t);
    uv_close((uv_handle_t *)&j->t, job_closed);
}

static void
job_cancel(struct sigil_rpc_call *call, void *ud)
{
    (void)call;
    n_cancels++;
    job_end(ud);
}

static struct job *
job_new(struct sigil_rpc_call *call)
{
    static const struct sigil_rpc_call_cbs cbs = {.on_cancel = job_cancel};
    struct job *j = calloc(1, sizeof *j);

    if (j == NULL)
        return NULL;
    uv_timer_init(loop, &j->t);
    j->t.data = j;
    j->call = call;
    sigil_rpc_call_set_cbs(call, &cbs, j);
    return j;
}

static void
plain_cancel(struct sigil_rpc_call *call, void *ud)
{
    (void)call;
    (void)ud;
    n_cancels++;
}

static const struct sigil_rpc_call_cbs plain_cbs = {.on_cancel = plain_cancel};

/* The request as a NUL-terminated text (at most 255 bytes). */
static void
request_text(struct sigil_rpc_call *call, char *out, size_t cap)
{
    size_t len;
    const uint8_t *p = sigil_rpc_call_request(call, &len);

    if (p == NULL || len >= cap)
        len = 0;
    if (len > 0)
        memcpy(out, p, len);
    out[len] = '\0';
}

static void
finish_text(struct sigil_rpc_call *call, const char *text)
{
    sigil_rpc_call_send(call, text, strlen(text));
    sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
}

static void
h_unary(struct sigil_rpc_call *call, void *arg)
{
    const uint8_t *p;
    size_t len;

    (void)arg;
    n_calls++;
    p = sigil_rpc_call_request(call, &len);
    sigil_rpc_call_send(call, p, len);
    sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
}

static void
h_fail(struct sigil_rpc_call *call, void *arg)
{
    char req[256], *colon;
    int code;

    (void)arg;
    n_calls++;
    request_text(call, req, sizeof req);
    code = atoi(req);
    colon = strchr(req, ':');
    sigil_rpc_call_finish(call, code, colon != NULL ? colon + 1 : "", NULL, 0);
}

static void
slow_done(uv_timer_t *t)
{
    struct job *j = t->data;
    struct sigil_rpc_call *call = j->call;

    job_end(j);
    finish_text(call, "done");
}

static void
h_slow(struct sigil_rpc_call *call, void *arg)
{
    char req[64];
    struct job *j;

    (void)arg;
    n_calls++;
    request_text(call, req, sizeof req);
    if ((j = job_new(call)) == NULL) {
        sigil_rpc_call_finish(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
        return;
    }
    uv_timer_start(&j->t, slow_done, strtoul(req, NULL, 10), 0);
}

static void
stream_tick(uv_timer_t *t)
{
    struct job *j = t->data;
    struct sigil_rpc_call *call = j->call;
    char *msg;
    int r;

    if (j->i == j->count) {
        job_end(j);
        sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
        return;
    }
    if ((msg = calloc(1, j->size + 32)) == NULL)
        return;
    snprintf(msg, j->size + 32, "%lu", j->i);
    if (j->flood) {
        memset(msg, 'x', j->size);
        while ((r = sigil_rpc_call_send(call, msg, j->size)) == 0)
            j->i++;
        free(msg);
        if (r == SIGIL_ERR_RANGE) {
            char text[96];
            n_send_range++;
            snprintf(text, sizeof text, "outbound cap after %lu messages", j->i);
            job_end(j);
            sigil_rpc_call_finish(call, SIGIL_RPC_RESOURCE_EXHAUSTED, text, NULL, 0);
        }
        return;
    }
    r = sigil_rpc_call_send(call, msg, j->size > strlen(msg) ? j->size : strlen(msg));
    free(msg);
    j->i++;
    if (r != 0) {
        if (r == SIGIL_ERR_RANGE)
            n_send_range++;
        job_end(j);
        sigil_rpc_call_finish(call, SIGIL_RPC_RESOURCE_EXHAUSTED, sigil_strerror(r), NULL, 0);
    }
}

static void
h_server_stream(struct sigil_rpc_call *call, void *arg)
{
    char req[64];
    struct job *j;

    (void)arg;
    n_calls++;
    request_text(call, req, sizeof req);
    if ((j = job_new(call)) == NULL) {
        sigil_rpc_call_finish(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
        return;
    }
    if (sscanf(req, "%lu %lu %lu", &j->count, &j->interval, &j->size) < 2)
        j->interval = 0;
    if (j->size > (4u << 20))
        j->size = 4u << 20;
    uv_timer_start(&j->t, stream_tick, 0, j->interval > 0 ? j->interval : 1);
}

static void
h_flood(struct sigil_rpc_call *call, void *arg)
{
    char req[64];
    struct job *j;

    (void)arg;
    n_calls++;
    request_text(call, req, sizeof req);
    if ((j = job_new(call)) == NULL) {
        sigil_rpc_call_finish(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
        return;
    }
    j->flood = true;
    j->size = strtoul(req, NULL, 10);
    if (j->size == 0 || j->size > (4u << 20))
        j->size = 65536;
    j->count = (unsigned long)-1;
    uv_timer_start(&j->t, stream_tick, 0, 5);
}

/* Client and bidi streams: counters live in a small per-call struct. */
struct acc {
    unsigned long msgs, bytes;
    bool bidi;
};

static void
acc_msg(struct sigil_rpc_call *call, void *ud, const uint8_t *msg, size_t len)
{
    struct acc *a = ud;

    a->msgs++;
    a->bytes += len;
    if (a->bidi)
        sigil_rpc_call_send(call, msg, len);
}

static void
acc_half_close(struct sigil_rpc_call *call, void *ud)
{
    struct acc *a = ud;
    char text[64];

    snprintf(text, sizeof text, "%lu %lu", a->msgs, a->bytes);
    if (!a->bidi)
        sigil_rpc_call_send(call, text, strlen(text));
    sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
    free(a);
}

static void
acc_cancel(struct sigil_rpc_call *call, void *ud)
{
    (void)call;
    n_cancels++;
    free(ud);
}

static void
h_acc(struct sigil_rpc_call *call, void *arg)
{
    static const struct sigil_rpc_call_cbs cbs = {
        .on_message = acc_msg, .on_half_close = acc_half_close, .on_cancel = acc_cancel};
    struct acc *a = calloc(1, sizeof *a);

    n_calls++;
    if (a == NULL) {
        sigil_rpc_call_finish(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
        return;
    }
    a->bidi = arg != NULL;
    sigil_rpc_call_set_cbs(call, &cbs, a);
}

static void
h_peer(struct sigil_rpc_call *call, void *arg)
{
    const struct sigil_rpc_peer *p = sigil_rpc_call_peer(call);
    char text[128];

    (void)arg;
    n_calls++;
    if (p == NULL || !p->has_cred) {
        sigil_rpc_call_finish(call, SIGIL_RPC_UNAUTHENTICATED, "no peer credentials", NULL, 0);
        return;
    }
    snprintf(text, sizeof text, "uid=%u gid=%u pid=%d pidfd=%d", (unsigned)p->uid, (unsigned)p->gid,
             (int)p->pid, p->pidfd >= 0);
    finish_text(call, text);
}

static void
h_stats(struct sigil_rpc_call *call, void *arg)
{
    char text[128];

    (void)arg;
    sigil_rpc_call_set_cbs(call, &plain_cbs, NULL);
    snprintf(text, sizeof text, "calls=%lu cancels=%lu send_range=%lu", n_calls, n_cancels,
             n_send_range);
    finish_text(call, text);
}

static void
shutdown_done(void *arg)
{
    (void)arg;
    srv = NULL;
    fprintf(stderr, "rpc_test_server: stopped\n");
}

static void
on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    uv_close((uv_handle_t *)&sig_term, NULL);
    uv_close((uv_handle_t *)&sig_int, NULL);
    if (srv != NULL)
        sigil_rpc_server_shutdown(srv, 2000, shutdown_done, NULL);
}

static int
usage(void)
{
    fprintf(stderr, "usage: rpc_test_server [--unix PATH] [--tcp HOST:PORT --cert PEM --key PEM "
                    "[--ca PEM] [--require-client-cert]] [--max-message N] [--max-outbound N] "
                    "[--max-streams N] [--rst-limit N]\n");
    return 2;
}

int
main(int argc, char **argv)
{
    static const struct {
        const char *path;
        enum sigil_rpc_kind kind;
        sigil_rpc_handler_fn fn;
        void *arg;
        bool secure;
    } methods[] = {
        {"/sigil.test.Echo/Unary", SIGIL_RPC_UNARY, h_unary, NULL, false},
        {"/sigil.test.Echo/Secure", SIGIL_RPC_UNARY, h_unary, NULL, true},
        {"/sigil.test.Echo/Fail", SIGIL_RPC_UNARY, h_fail, NULL, false},
        {"/sigil.test.Echo/Slow", SIGIL_RPC_UNARY, h_slow, NULL, false},
        {"/sigil.test.Echo/ServerStream", SIGIL_RPC_SERVER_STREAM, h_server_stream, NULL, false},
        {"/sigil.test.Echo/Flood", SIGIL_RPC_SERVER_STREAM, h_flood, NULL, false},
        {"/sigil.test.Echo/ClientStream", SIGIL_RPC_CLIENT_STREAM, h_acc, NULL, false},
        {"/sigil.test.Echo/Bidi", SIGIL_RPC_BIDI, h_acc, (void *)1, false},
        {"/sigil.test.Echo/Peer", SIGIL_RPC_UNARY, h_peer, NULL, false},
        {"/sigil.test.Echo/Stats", SIGIL_RPC_UNARY, h_stats, NULL, false},
    };
    struct sigil_rpc_server_opts so = {0};
    struct sigil_tls_opts to = {0};
    struct sigil_tls_ctx *tls = NULL;
    const char *unix_path = NULL, *tcp = NULL, *why = NULL;
    int r;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--require-client-cert") == 0) {
            to.require_client_cert = true;
            continue;
        }
        if (v == NULL)
            return usage();
        i++;
        if (strcmp(a, "--unix") == 0)
            unix_path = v;
        else if (strcmp(a, "--tcp") == 0)
            tcp = v;
        else if (strcmp(a, "--cert") == 0)
            to.cert_file = v;
        else if (strcmp(a, "--key") == 0)
            to.key_file = v;
        else if (strcmp(a, "--ca") == 0)
            to.ca_file = v;
        else if (strcmp(a, "--max-message") == 0)
            so.max_message = strtoul(v, NULL, 10);
        else if (strcmp(a, "--max-outbound") == 0)
            so.max_outbound = strtoul(v, NULL, 10);
        else if (strcmp(a, "--max-streams") == 0)
            so.max_concurrent_streams = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--rst-limit") == 0)
            so.rst_limit = (unsigned)strtoul(v, NULL, 10);
        else
            return usage();
    }
    if (unix_path == NULL && tcp == NULL)
        return usage();
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    if (sigil_rpc_server_new(loop, &so, &srv) != 0)
        return 1;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        struct sigil_rpc_method m = {
            .path = methods[i].path,
            .kind = methods[i].kind,
            .handler = methods[i].fn,
            .arg = methods[i].arg,
        };
        if (methods[i].secure) {
            m.required_header = "workload.spiffe.io";
            m.required_value = "true";
        }
        if (sigil_rpc_server_add(srv, &m) != 0)
            return 1;
    }
    if (unix_path != NULL) {
        struct sigil_rpc_unix_opts uo = {.path = unix_path, .mode = 0666};
        if ((r = sigil_rpc_server_listen_unix(srv, &uo, &why)) != 0) {
            fprintf(stderr, "rpc_test_server: %s (%s)\n", why, sigil_strerror(r));
            return 1;
        }
    }
    if (tcp != NULL) {
        char host[128];
        const char *colon = strrchr(tcp, ':');
        if (colon == NULL || (size_t)(colon - tcp) >= sizeof host)
            return usage();
        memcpy(host, tcp, (size_t)(colon - tcp));
        host[colon - tcp] = '\0';
        if ((r = sigil_tls_ctx_new_server(&to, &tls, &why)) != 0 ||
            (r = sigil_rpc_server_listen_tcp(srv, host, atoi(colon + 1), tls, 0, &why)) != 0) {
            fprintf(stderr, "rpc_test_server: %s (%s)\n", why, sigil_strerror(r));
            return 1;
        }
        sigil_tls_ctx_free(tls);
        printf("PORT %d\n", sigil_rpc_server_port(srv));
    }
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    printf("READY\n");
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    r = uv_loop_close(loop);
    if (r != 0)
        fprintf(stderr, "rpc_test_server: handles left open at exit\n");
    return r != 0;
}
