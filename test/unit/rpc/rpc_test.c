/* In-process tests of lib/rpc: our server and our client on one libuv loop over a Unix socket
 * in a temporary directory (and TLS on 127.0.0.1): unary, server streaming, bidi, deadline,
 * cancel, required header, caps, peer credentials, graceful shutdown, connection limits, raw
 * HTTP/2 input (Rapid Reset) and socket-file handling. Every test ends with the loop closed
 * cleanly (no handle left open). */
#include <setjmp.h>
#include <signal.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include <uv.h>

#include "sigil/err.h"
#include "sigil/rpc.h"
#include "sigil/tls.h"

#include "../../../lib/h2.h"
#include "rpc_pki.h"

#define E "/sigil.test.Echo/"

static struct {
    uv_loop_t loop;
    char dir[64];
    char path[128];
    char target[160];
    struct sigil_rpc_server *srv;
    struct sigil_rpc_client *cli;
    bool srv_done;
    int cancels; /* on_cancel calls seen by handlers */
    int handler_runs;
    uv_timer_t guard; /* fails a test that hangs */
} T;

static struct pki K;

/* ---- server handlers ---- */

/* The request as a number (requests are not NUL-terminated). */
static unsigned long
request_number(struct sigil_rpc_call *call)
{
    char text[32];
    size_t len;
    const uint8_t *p = sigil_rpc_call_request(call, &len);

    assert_non_null(p);
    assert_true(len < sizeof text);
    memcpy(text, p, len);
    text[len] = '\0';
    return strtoul(text, NULL, 10);
}

static void
h_echo(struct sigil_rpc_call *call, void *arg)
{
    const uint8_t *p;
    size_t len;

    (void)arg;
    T.handler_runs++;
    p = sigil_rpc_call_request(call, &len);
    assert_non_null(p);
    assert_int_equal(sigil_rpc_call_send(call, p, len), 0);
    /* a unary call takes one response only */
    assert_int_equal(sigil_rpc_call_send(call, p, len), SIGIL_ERR_STATE);
    assert_int_equal(sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0), 0);
}

static void
h_stream_sync(struct sigil_rpc_call *call, void *arg)
{
    char msg[16];
    int n;

    (void)arg;
    n = (int)request_number(call);
    for (int i = 0; i < n; i++) {
        snprintf(msg, sizeof msg, "m%d", i);
        assert_int_equal(sigil_rpc_call_send(call, msg, strlen(msg)), 0);
    }
    struct sigil_rpc_md md = {"x-count", (const uint8_t *)"ok", 2};
    assert_int_equal(sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, &md, 1), 0);
}

/* A call held across loop iterations by a timer; cancelled through on_cancel. */
struct held {
    uv_timer_t t;
    struct sigil_rpc_call *call;
    int sent;
};

static void
held_closed(uv_handle_t *h)
{
    free(h->data);
}

static void
held_cancel(struct sigil_rpc_call *call, void *ud)
{
    struct held *h = ud;

    assert_ptr_equal(call, h->call);
    /* the call is gone: sends fail, and the peer is no longer reachable */
    assert_int_equal(sigil_rpc_call_send(call, "x", 1), SIGIL_ERR_CANCELLED);
    assert_null(sigil_rpc_call_peer(call));
    T.cancels++;
    uv_close((uv_handle_t *)&h->t, held_closed);
}

static void
held_tick(uv_timer_t *t)
{
    struct held *h = t->data;
    char msg[16];

    snprintf(msg, sizeof msg, "t%d", h->sent++);
    assert_int_equal(sigil_rpc_call_send(h->call, msg, strlen(msg)), 0);
}

static void
held_finish(uv_timer_t *t)
{
    struct held *h = t->data;

    assert_int_equal(sigil_rpc_call_send(h->call, "done", 4), 0);
    assert_int_equal(sigil_rpc_call_finish(h->call, SIGIL_RPC_OK, NULL, NULL, 0), 0);
    uv_close((uv_handle_t *)&h->t, held_closed);
}

static struct held *
held_new(struct sigil_rpc_call *call)
{
    static const struct sigil_rpc_call_cbs cbs = {.on_cancel = held_cancel};
    struct held *h = calloc(1, sizeof *h);

    assert_non_null(h);
    h->call = call;
    uv_timer_init(sigil_rpc_call_loop(call), &h->t);
    h->t.data = h;
    sigil_rpc_call_set_cbs(call, &cbs, h);
    return h;
}

/* Streams a message every 10 ms until cancelled. */
static void
h_ticker(struct sigil_rpc_call *call, void *arg)
{
    (void)arg;
    uv_timer_start(&held_new(call)->t, held_tick, 10, 10);
}

/* Answers after the number of ms in its request. */
static void
h_slow(struct sigil_rpc_call *call, void *arg)
{

    (void)arg;
    T.handler_runs++;
    uv_timer_start(&held_new(call)->t, held_finish, request_number(call), 0);
}

static void
bidi_msg(struct sigil_rpc_call *call, void *ud, const uint8_t *msg, size_t len)
{
    (void)ud;
    assert_int_equal(sigil_rpc_call_send(call, msg, len), 0);
}

static void
bidi_half_close(struct sigil_rpc_call *call, void *ud)
{
    (void)ud;
    assert_int_equal(sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0), 0);
}

static void
h_bidi(struct sigil_rpc_call *call, void *arg)
{
    static const struct sigil_rpc_call_cbs cbs = {.on_message = bidi_msg,
                                                  .on_half_close = bidi_half_close};
    (void)arg;
    assert_int_equal(sigil_rpc_call_send_headers(call, NULL, 0), 0);
    assert_int_equal(sigil_rpc_call_send_headers(call, NULL, 0), SIGIL_ERR_STATE);
    sigil_rpc_call_set_cbs(call, &cbs, NULL);
}

static void
h_peer(struct sigil_rpc_call *call, void *arg)
{
    const struct sigil_rpc_peer *p = sigil_rpc_call_peer(call);
    char text[128];

    (void)arg;
    assert_non_null(p);
    if (p->kind == SIGIL_RPC_PEER_TLS) {
        /* TLS: the verified client chain, leaf first */
        bool leaf_ok = p->chain != NULL && X509_cmp(sk_X509_value(p->chain, 0), K.client) == 0;
        snprintf(text, sizeof text, "tls leaf=%d", leaf_ok);
    } else {
        snprintf(text, sizeof text, "unix %d %u %u %d %d", p->has_cred, (unsigned)p->uid,
                 (unsigned)p->gid, (int)p->pid, p->pidfd >= 0);
    }
    assert_int_equal(sigil_rpc_call_send(call, text, strlen(text)), 0);
    assert_int_equal(sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0), 0);
}

/* Queues 1 MiB messages without letting the loop drain them: the 5th passes the 4 MiB cap. */
static void
h_burst(struct sigil_rpc_call *call, void *arg)
{
    static uint8_t mib[1 << 20];
    int r = 0, n = 0;

    (void)arg;
    while (n < 10 && (r = sigil_rpc_call_send(call, mib, sizeof mib)) == 0)
        n++;
    assert_int_equal(r, SIGIL_ERR_RANGE);
    assert_int_equal(n, 4);
    assert_true(sigil_rpc_call_queued(call) <= (4u << 20) + 65536);
    assert_int_equal(
        sigil_rpc_call_finish(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "outbound cap", NULL, 0), 0);
}

static void
h_status(struct sigil_rpc_call *call, void *arg)
{
    (void)arg;
    assert_int_equal(sigil_rpc_call_finish(call, SIGIL_RPC_ABORTED, "caf\xc3\xa9 100%\n", NULL, 0),
                     0);
}

/* ---- fixture ---- */

static void
guard_fired(uv_timer_t *t)
{
    (void)t;
    fail_msg("test timed out");
}

static void
server_done(void *arg)
{
    (void)arg;
    T.srv_done = true;
}

static void
run_until(const bool *flag)
{
    uv_timer_start(&T.guard, guard_fired, 10000, 0);
    while (!*flag)
        uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&T.guard);
}

static int
add_methods(struct sigil_rpc_server *srv)
{
    static const struct sigil_rpc_method m[] = {
        {.path = E "Unary", .kind = SIGIL_RPC_UNARY, .handler = h_echo},
        {.path = E "Secure",
         .kind = SIGIL_RPC_UNARY,
         .handler = h_echo,
         .required_header = "workload.spiffe.io",
         .required_value = "true"},
        {.path = E "Stream", .kind = SIGIL_RPC_SERVER_STREAM, .handler = h_stream_sync},
        {.path = E "Ticker", .kind = SIGIL_RPC_SERVER_STREAM, .handler = h_ticker},
        {.path = E "Slow", .kind = SIGIL_RPC_UNARY, .handler = h_slow},
        {.path = E "Bidi", .kind = SIGIL_RPC_BIDI, .handler = h_bidi},
        {.path = E "Peer", .kind = SIGIL_RPC_UNARY, .handler = h_peer},
        {.path = E "Burst", .kind = SIGIL_RPC_SERVER_STREAM, .handler = h_burst},
        {.path = E "Status", .kind = SIGIL_RPC_UNARY, .handler = h_status},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        assert_int_equal(sigil_rpc_server_add(srv, &m[i]), 0);
    return 0;
}

static void
start_server(const struct sigil_rpc_server_opts *o)
{
    struct sigil_rpc_unix_opts uo = {.path = T.path, .mode = 0600};
    const char *why = NULL;

    T.srv_done = false;
    assert_int_equal(sigil_rpc_server_new(&T.loop, o, &T.srv), 0);
    add_methods(T.srv);
    if (sigil_rpc_server_listen_unix(T.srv, &uo, &why) != 0)
        fail_msg("listen: %s", why);
}

static void
start_client(void)
{
    struct sigil_rpc_client_opts o = {.target = T.target};
    const char *why = NULL;

    if (sigil_rpc_client_new(&T.loop, &o, &T.cli, &why) != 0)
        fail_msg("client: %s", why);
}

static void
stop_all(void)
{
    if (T.cli != NULL)
        sigil_rpc_client_free(T.cli);
    T.cli = NULL;
    if (T.srv != NULL) {
        sigil_rpc_server_shutdown(T.srv, 1000, server_done, NULL);
        run_until(&T.srv_done);
        T.srv = NULL;
    }
}

static int
setup(void **state)
{
    (void)state;
    memset(&T, 0, sizeof T);
    snprintf(T.dir, sizeof T.dir, "/tmp/sigil-rpc-XXXXXX");
    assert_non_null(mkdtemp(T.dir));
    snprintf(T.path, sizeof T.path, "%s/s.sock", T.dir);
    snprintf(T.target, sizeof T.target, "unix://%s", T.path);
    assert_int_equal(uv_loop_init(&T.loop), 0);
    uv_timer_init(&T.loop, &T.guard);
    uv_unref((uv_handle_t *)&T.guard);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    stop_all();
    uv_close((uv_handle_t *)&T.guard, NULL);
    uv_run(&T.loop, UV_RUN_DEFAULT);
    /* every handle of the server and client was closed */
    assert_int_equal(uv_loop_close(&T.loop), 0);
    unlink(T.path);
    rmdir(T.dir);
    return 0;
}

/* ---- client side ---- */

struct result {
    bool done;
    int code;
    char message[256];
    struct sigil_buf resp;
    int nmsgs;
    char msgs[64][32];
    bool headers;
    char trailer[32];
    int cancel_after;
};

static void
unary_done(void *ud, int code, const char *message, const uint8_t *resp, size_t len)
{
    struct result *r = ud;

    assert_false(r->done);
    r->done = true;
    r->code = code;
    snprintf(r->message, sizeof r->message, "%s", message);
    if (resp != NULL)
        assert_int_equal(sigil_buf_append(&r->resp, resp, len), 0);
}

static void
c_headers(struct sigil_rpc_ccall *call, void *ud)
{
    (void)call;
    ((struct result *)ud)->headers = true;
}

static void
c_message(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    struct result *r = ud;

    if (r->nmsgs < 64 && len < 32) {
        memcpy(r->msgs[r->nmsgs], msg, len);
        r->msgs[r->nmsgs][len] = '\0';
    }
    r->nmsgs++;
    if (r->cancel_after > 0 && r->nmsgs == r->cancel_after) {
        sigil_rpc_ccall_cancel(call);
        assert_true(r->done); /* on_end ran before cancel returned */
    }
}

static void
c_end(struct sigil_rpc_ccall *call, void *ud, int code, const char *message)
{
    struct result *r = ud;
    const uint8_t *v;
    size_t len;

    assert_false(r->done);
    r->done = true;
    r->code = code;
    snprintf(r->message, sizeof r->message, "%s", message);
    if (sigil_rpc_ccall_metadata(call, "x-count", &v, &len) == 1)
        snprintf(r->trailer, sizeof r->trailer, "%.*s", (int)len, (const char *)v);
}

static const struct sigil_rpc_ccall_cbs ccbs = {
    .on_headers = c_headers, .on_message = c_message, .on_end = c_end};

static void
unary(const char *path, const struct sigil_rpc_md *md, size_t nmd, const char *req,
      uint64_t timeout, struct result *r)
{
    memset(r, 0, sizeof *r);
    assert_int_equal(
        sigil_rpc_client_unary(T.cli, path, md, nmd, req, strlen(req), timeout, unary_done, r), 0);
    run_until(&r->done);
}

/* ---- tests ---- */

static void
test_unary_echo(void **state)
{
    struct result r;

    (void)state;
    start_server(NULL);
    start_client();
    unary(E "Unary", NULL, 0, "hello", 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    assert_int_equal(r.resp.len, 5);
    assert_memory_equal(r.resp.data, "hello", 5);
    sigil_buf_free(&r.resp);
    /* again on the same connection, and an empty message */
    unary(E "Unary", NULL, 0, "", 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    assert_int_equal(r.resp.len, 0);
    assert_int_equal(T.handler_runs, 2);

    struct sigil_rpc_server_stats st;
    sigil_rpc_server_stats(T.srv, &st);
    assert_int_equal(st.conns_accepted, 1);
    assert_int_equal(st.calls, 2);
}

static void
test_statuses(void **state)
{
    struct result r;
    struct sigil_rpc_md good = {"workload.spiffe.io", (const uint8_t *)"true", 4};
    struct sigil_rpc_md bad = {"workload.spiffe.io", (const uint8_t *)"True", 4};

    (void)state;
    start_server(NULL);
    start_client();
    unary(E "Nope", NULL, 0, "", 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_UNIMPLEMENTED);
    assert_non_null(strstr(r.message, E "Nope"));
    unary(E "Secure", NULL, 0, "x", 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_INVALID_ARGUMENT);
    assert_string_equal(r.message, "security header missing from request");
    unary(E "Secure", &bad, 1, "x", 0, &r); /* the value is case-sensitive (E-2) */
    assert_int_equal(r.code, SIGIL_RPC_INVALID_ARGUMENT);
    unary(E "Secure", &good, 1, "x", 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    sigil_buf_free(&r.resp);
    /* grpc-message percent-encoding round trip, trailers-only response */
    unary(E "Status", NULL, 0, "", 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_ABORTED);
    assert_string_equal(r.message, "caf\xc3\xa9 100%\n");
}

static void
test_server_stream(void **state)
{
    struct result r = {0};
    char want[16];

    (void)state;
    start_server(NULL);
    start_client();
    assert_int_equal(
        sigil_rpc_client_server_stream(T.cli, E "Stream", NULL, 0, "40", 2, 0, &ccbs, &r, NULL), 0);
    run_until(&r.done);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    assert_true(r.headers);
    assert_int_equal(r.nmsgs, 40);
    for (int i = 0; i < 40; i++) {
        snprintf(want, sizeof want, "m%d", i);
        assert_string_equal(r.msgs[i], want);
    }
    assert_string_equal(r.trailer, "ok"); /* trailing metadata */
}

static void
test_bidi(void **state)
{
    struct result r = {0};
    struct sigil_rpc_ccall *call;

    (void)state;
    start_server(NULL);
    start_client();
    assert_int_equal(sigil_rpc_client_call(T.cli, E "Bidi", NULL, 0, 0, &ccbs, &r, &call), 0);
    assert_int_equal(sigil_rpc_ccall_send(call, "one", 3), 0);
    assert_int_equal(sigil_rpc_ccall_send(call, "two", 3), 0);
    assert_int_equal(sigil_rpc_ccall_send(call, "", 0), 0);
    assert_int_equal(sigil_rpc_ccall_close_send(call), 0);
    assert_int_equal(sigil_rpc_ccall_send(call, "late", 4), SIGIL_ERR_STATE);
    run_until(&r.done);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    assert_int_equal(r.nmsgs, 3);
    assert_string_equal(r.msgs[0], "one");
    assert_string_equal(r.msgs[1], "two");
    assert_string_equal(r.msgs[2], "");
}

static void
test_deadline(void **state)
{
    struct result r;

    (void)state;
    start_server(NULL);
    start_client();
    unary(E "Slow", NULL, 0, "5000", 100, &r);
    assert_int_equal(r.code, SIGIL_RPC_DEADLINE_EXCEEDED);
    /* the server learns it too: the handler's on_cancel runs exactly once */
    uv_timer_start(&T.guard, guard_fired, 5000, 0);
    while (T.cancels == 0)
        uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&T.guard);
    assert_int_equal(T.cancels, 1);
    /* a fast enough call is fine */
    unary(E "Slow", NULL, 0, "10", 2000, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    assert_int_equal(T.cancels, 1);
    sigil_buf_free(&r.resp);
}

static void
test_cancel(void **state)
{
    struct result r = {.cancel_after = 3};

    (void)state;
    start_server(NULL);
    start_client();
    assert_int_equal(
        sigil_rpc_client_server_stream(T.cli, E "Ticker", NULL, 0, "", 0, 0, &ccbs, &r, NULL), 0);
    run_until(&r.done);
    assert_int_equal(r.code, SIGIL_RPC_CANCELLED);
    assert_int_equal(r.nmsgs, 3);
    uv_timer_start(&T.guard, guard_fired, 5000, 0);
    while (T.cancels == 0)
        uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&T.guard);
    assert_int_equal(T.cancels, 1);
}

static void
test_peer_unix(void **state)
{
    struct result r;
    char want[128];

    (void)state;
    start_server(NULL);
    start_client();
    unary(E "Peer", NULL, 0, "", 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    snprintf(want, sizeof want, "unix 1 %u %u %d 1", (unsigned)getuid(), (unsigned)getgid(),
             (int)getpid());
    assert_int_equal(r.resp.len, strlen(want));
    assert_memory_equal(r.resp.data, want, r.resp.len);
    sigil_buf_free(&r.resp);
}

static void
test_caps(void **state)
{
    struct sigil_rpc_server_opts o = {.max_message = 1024};
    struct result r = {0};
    char big[2000];

    (void)state;
    start_server(&o);
    start_client();
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    unary(E "Unary", NULL, 0, big, 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_RESOURCE_EXHAUSTED);
    assert_non_null(strstr(r.message, "1024"));
    big[1024] = '\0'; /* exactly the cap */
    unary(E "Unary", NULL, 0, big, 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    sigil_buf_free(&r.resp);
    stop_all();

    /* outbound cap: queued bytes are bounded, the send that would pass it fails */
    start_server(NULL);
    start_client();
    memset(&r, 0, sizeof r);
    assert_int_equal(
        sigil_rpc_client_server_stream(T.cli, E "Burst", NULL, 0, "", 0, 0, &ccbs, &r, NULL), 0);
    run_until(&r.done);
    assert_int_equal(r.code, SIGIL_RPC_RESOURCE_EXHAUSTED);
    assert_int_equal(r.nmsgs, 4); /* what was queued is still delivered, then the status */
}

static void
test_unavailable(void **state)
{
    struct result r;

    (void)state;
    start_client(); /* nobody listens */
    unary(E "Unary", NULL, 0, "x", 1000, &r);
    assert_int_equal(r.code, SIGIL_RPC_UNAVAILABLE);
    assert_non_null(strstr(r.message, "connect"));

    /* the server goes away in the middle of a call */
    start_server(NULL);
    memset(&r, 0, sizeof r);
    assert_int_equal(sigil_rpc_client_unary(T.cli, E "Slow", NULL, 0, "5000", 4, 0, unary_done, &r),
                     0);
    uv_timer_start(&T.guard, guard_fired, 5000, 0);
    while (T.handler_runs == 0)
        uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&T.guard);
    sigil_rpc_server_shutdown(T.srv, 0, server_done, NULL);
    T.srv = NULL;
    run_until(&r.done);
    run_until(&T.srv_done);
    assert_true(r.code == SIGIL_RPC_UNAVAILABLE || r.code == SIGIL_RPC_CANCELLED);
    assert_int_equal(T.cancels, 1);
}

static void
test_graceful_shutdown(void **state)
{
    struct result r;

    (void)state;
    start_server(NULL);
    start_client();
    memset(&r, 0, sizeof r);
    assert_int_equal(
        sigil_rpc_client_unary(T.cli, E "Slow", NULL, 0, "100", 3, 5000, unary_done, &r), 0);
    uv_timer_start(&T.guard, guard_fired, 5000, 0);
    while (T.handler_runs == 0)
        uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&T.guard);
    /* the call in flight finishes within the grace period */
    sigil_rpc_server_shutdown(T.srv, 3000, server_done, NULL);
    T.srv = NULL;
    run_until(&r.done);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    assert_int_equal(r.resp.len, 4);
    assert_memory_equal(r.resp.data, "done", 4);
    run_until(&T.srv_done);
    assert_int_equal(T.cancels, 0);
    /* the socket file went with the listener */
    struct stat st;
    assert_int_not_equal(lstat(T.path, &st), 0);
    sigil_buf_free(&r.resp);
}

static void
test_socket_file(void **state)
{
    struct sigil_rpc_unix_opts uo = {.path = T.path, .mode = 0660};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct sigil_rpc_server *other;
    const char *why = NULL;
    struct stat st;
    struct result r;
    int fd;

    (void)state;
    /* a stale socket (bound, nobody listening) is replaced */
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    memcpy(sa.sun_path, T.path, strlen(T.path) + 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    close(fd);
    assert_int_equal(sigil_rpc_server_new(&T.loop, NULL, &T.srv), 0);
    add_methods(T.srv);
    assert_int_equal(sigil_rpc_server_listen_unix(T.srv, &uo, &why), 0);
    assert_int_equal(lstat(T.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0660);
    start_client();
    unary(E "Unary", NULL, 0, "x", 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    sigil_buf_free(&r.resp);

    /* a live one is not taken over */
    assert_int_equal(sigil_rpc_server_new(&T.loop, NULL, &other), 0);
    assert_int_equal(sigil_rpc_server_listen_unix(other, &uo, &why), SIGIL_ERR_EXISTS);
    assert_non_null(strstr(why, "listening"));
    /* nor a file that is not a socket */
    char file[160];
    snprintf(file, sizeof file, "%s/plain", T.dir);
    fd = open(file, O_CREAT | O_WRONLY, 0600);
    close(fd);
    uo.path = file;
    assert_int_equal(sigil_rpc_server_listen_unix(other, &uo, &why), SIGIL_ERR_EXISTS);
    unlink(file);
    uo.path = "relative.sock";
    assert_int_equal(sigil_rpc_server_listen_unix(other, &uo, &why), SIGIL_ERR_RANGE);
    sigil_rpc_server_shutdown(other, 0, NULL, NULL);
}

static void
test_connection_limit(void **state)
{
    struct sigil_rpc_server_opts o = {.max_connections = 1};
    struct sigil_rpc_client_opts co = {.target = T.target};
    struct sigil_rpc_client *second;
    struct sigil_rpc_server_stats st;
    const char *why;
    struct result r, r2 = {0};

    (void)state;
    start_server(&o);
    start_client();
    unary(E "Unary", NULL, 0, "first", 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    sigil_buf_free(&r.resp);
    assert_int_equal(sigil_rpc_client_new(&T.loop, &co, &second, &why), 0);
    assert_int_equal(
        sigil_rpc_client_unary(second, E "Unary", NULL, 0, "2nd", 3, 2000, unary_done, &r2), 0);
    run_until(&r2.done);
    assert_int_equal(r2.code, SIGIL_RPC_UNAVAILABLE);
    sigil_rpc_client_free(second);
    sigil_rpc_server_stats(T.srv, &st);
    assert_int_equal(st.conns_refused, 1);
    assert_int_equal(st.conns_accepted, 1);
}

static void
test_tls_mtls(void **state)
{
    struct sigil_tls_opts so = {
        .cert = K.server, .key = K.server_key, .ca_certs = K.roots, .require_client_cert = true};
    struct sigil_tls_opts co = {.ca_certs = K.roots, .cert = K.client, .key = K.client_key};
    struct sigil_tls_ctx *sctx, *cctx, *nocert;
    struct sigil_rpc_client_opts o = {0};
    char target[64];
    const char *why = NULL;
    struct result r;

    (void)state;
    assert_int_equal(sigil_tls_ctx_new_server(&so, &sctx, &why), 0);
    assert_int_equal(sigil_tls_ctx_new_client(&co, &cctx, &why), 0);
    co.cert = NULL;
    co.key = NULL;
    assert_int_equal(sigil_tls_ctx_new_client(&co, &nocert, &why), 0);
    assert_int_equal(sigil_rpc_server_new(&T.loop, NULL, &T.srv), 0);
    add_methods(T.srv);
    assert_int_equal(sigil_rpc_server_port(T.srv), -1);
    assert_int_equal(sigil_rpc_server_listen_tcp(T.srv, "127.0.0.1", 0, NULL, 0, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_rpc_server_listen_tcp(T.srv, "127.0.0.1", 0, sctx, 0, &why), 0);
    sigil_tls_ctx_free(sctx);
    assert_true(sigil_rpc_server_port(T.srv) > 0);
    snprintf(target, sizeof target, "localhost:%d", sigil_rpc_server_port(T.srv));

    o.target = target;
    o.tls = cctx;
    assert_int_equal(sigil_rpc_client_new(&T.loop, &o, &T.cli, &why), 0);
    unary(E "Peer", NULL, 0, "", 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    assert_int_equal(r.resp.len, strlen("tls leaf=1"));
    assert_memory_equal(r.resp.data, "tls leaf=1", r.resp.len);
    sigil_buf_free(&r.resp);
    unary(E "Unary", NULL, 0, "over tls", 0, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    sigil_buf_free(&r.resp);
    sigil_rpc_client_free(T.cli);

    /* no client certificate: refused */
    o.tls = nocert;
    assert_int_equal(sigil_rpc_client_new(&T.loop, &o, &T.cli, &why), 0);
    unary(E "Unary", NULL, 0, "x", 5000, &r);
    assert_int_equal(r.code, SIGIL_RPC_UNAVAILABLE);
    sigil_rpc_client_free(T.cli);

    /* a TCP target without TLS is refused up front */
    o.tls = NULL;
    assert_int_equal(sigil_rpc_client_new(&T.loop, &o, &T.cli, &why), SIGIL_ERR_INVALID);
    T.cli = NULL;
    sigil_tls_ctx_free(cctx);
    sigil_tls_ctx_free(nocert);
}

/* ---- raw HTTP/2 input through sigil_rpc_server_feed_raw, made with our h2 client ---- */

struct raw_req {
    const uint8_t *body;
    size_t len;
    bool hold;    /* never send the body (the stream stays open) */
    bool partial; /* send the body without ending the stream, then nothing more */
    size_t off;
};

static int
raw_header(void *ud, int32_t sid, void *sud, enum h2_cat cat, const uint8_t *n, size_t nl,
           const uint8_t *v, size_t vl)
{
    char *status = ud; /* where a live raw client keeps the grpc-status it saw */

    (void)sid, (void)sud, (void)cat;
    if (status != NULL && nl == 11 && memcmp(n, "grpc-status", 11) == 0 && vl < 8) {
        memcpy(status, v, vl);
        status[vl] = '\0';
    }
    return 0;
}

static int
raw_done(void *ud, int32_t sid, void *sud, enum h2_cat cat)
{
    (void)ud, (void)sid, (void)sud, (void)cat;
    return 0;
}

static int
raw_data(void *ud, int32_t sid, void *sud, const uint8_t *p, size_t n)
{
    (void)ud, (void)sid, (void)sud, (void)p, (void)n;
    return 0;
}

static int
raw_end(void *ud, int32_t sid, void *sud)
{
    (void)ud, (void)sid, (void)sud;
    return 0;
}

static void
raw_close(void *ud, int32_t sid, void *sud, uint32_t e)
{
    (void)ud, (void)sid, (void)sud, (void)e;
}

static int
raw_rst(void *ud, int32_t sid)
{
    (void)ud, (void)sid;
    return 0;
}

static void
raw_goaway(void *ud, int32_t last, uint32_t e)
{
    (void)ud, (void)last, (void)e;
}

static ssize_t
raw_read(void *ud, int32_t sid, void *sud, uint8_t *buf, size_t len, uint32_t *flags)
{
    struct raw_req *q = sud;

    (void)ud, (void)sid;
    if (q->hold)
        return H2_READ_DEFER;
    if (q->partial) {
        size_t k = q->len - q->off < len ? q->len - q->off : len;
        if (k == 0)
            return H2_READ_DEFER;
        memcpy(buf, q->body + q->off, k);
        q->off += k;
        return (ssize_t)k;
    }
    assert_true(q->len <= len);
    memcpy(buf, q->body, q->len);
    *flags |= H2_FLAG_EOF;
    return (ssize_t)q->len;
}

static const struct h2_callbacks raw_cbs = {
    .header = raw_header,
    .headers_done = raw_done,
    .data = raw_data,
    .end_stream = raw_end,
    .stream_close = raw_close,
    .rst_recv = raw_rst,
    .goaway_recv = raw_goaway,
    .read = raw_read,
};

static struct h2_session *raw_session(void *ud);
static void raw_submit(struct h2_session *s, struct sigil_buf *out, const char *path,
                       const char *body, const char *timeout, int n, bool reset);

/* The client side of a connection as bytes: the preface, SETTINGS, then `n` requests to
 * path, each reset right away if `reset`. */
static void
raw_requests(struct sigil_buf *out, const char *path, const char *body, int n, bool reset)
{
    struct h2_session *s = raw_session(NULL);

    raw_submit(s, out, path, body, NULL, n, reset);
    h2_session_free(s);
}
static struct h2_session *
raw_session(void *ud)
{
    struct h2_settings set = {100, 65536, 65535, 65535};
    struct h2_session *s;

    assert_int_equal(h2_session_new(false, &set, &raw_cbs, ud, &s), 0);
    return s;
}

/* Submits n requests (with a grpc-timeout if timeout is set) and collects the bytes. */
static void
raw_submit(struct h2_session *s, struct sigil_buf *out, const char *path, const char *body,
           const char *timeout, int n, bool reset)
{
    static uint8_t framed[64];
    static struct raw_req q;
    struct h2_nv nv[] = {
        {":method", 7, "POST", 4},
        {":scheme", 7, "http", 4},
        {":path", 5, path, strlen(path)},
        {":authority", 10, "localhost", 9},
        {"content-type", 12, "application/grpc", 16},
        {"te", 2, "trailers", 8},
        {"grpc-timeout", 12, timeout, timeout != NULL ? strlen(timeout) : 0},
    };
    int32_t sid;

    framed[0] = framed[1] = framed[2] = framed[3] = 0;
    framed[4] = (uint8_t)strlen(body);
    memcpy(framed + 5, body, strlen(body));
    q = (struct raw_req){.body = framed, .len = 5 + strlen(body), .hold = reset};
    for (int i = 0; i < n; i++) {
        assert_int_equal(h2_submit_request(s, nv, timeout != NULL ? 7 : 6, &q, &sid), 0);
        if (reset) {
            assert_int_equal(h2_session_send(s, out, SIZE_MAX), 0);
            assert_int_equal(h2_reset(s, sid, H2_CANCEL), 0);
        }
        assert_int_equal(h2_session_send(s, out, SIZE_MAX), 0);
    }
}

static void
test_raw_feed(void **state)
{
    struct sigil_rpc_server_stats st;
    struct sigil_buf b = {0};

    (void)state;
    assert_int_equal(sigil_rpc_server_new(&T.loop, NULL, &T.srv), 0);
    add_methods(T.srv);

    raw_requests(&b, E "Unary", "hi", 3, false);
    assert_int_equal(sigil_rpc_server_feed_raw(T.srv, b.data, b.len), 0);
    assert_int_equal(T.handler_runs, 3);
    sigil_buf_free(&b);

    /* Rapid Reset: 300 streams opened and reset at once */
    raw_requests(&b, E "Slow", "", 300, true);
    assert_int_equal(sigil_rpc_server_feed_raw(T.srv, b.data, b.len), 0);
    sigil_rpc_server_stats(T.srv, &st);
    assert_int_equal(st.rapid_reset_goaways, 1);
    sigil_buf_free(&b);

    /* 50 resets stay under the limit */
    raw_requests(&b, E "Slow", "", 50, true);
    assert_int_equal(sigil_rpc_server_feed_raw(T.srv, b.data, b.len), 0);
    sigil_rpc_server_stats(T.srv, &st);
    assert_int_equal(st.rapid_reset_goaways, 1);
    sigil_buf_free(&b);

    /* not HTTP/2 at all */
    assert_int_equal(
        sigil_rpc_server_feed_raw(T.srv, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18), 0);
    sigil_rpc_server_stats(T.srv, &st);
    assert_int_equal(st.protocol_errors, 1);
}

/* A raw HTTP/2 client on a real connection, to see what the server alone decides. */
struct live {
    uv_pipe_t pipe;
    uv_connect_t creq;
    struct h2_session *s;
    struct sigil_buf out;
    char status[8];
    bool closed;
};

static void
live_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    static char buf[65536];

    (void)h, (void)size;
    *b = uv_buf_init(buf, sizeof buf);
}

static void
live_closed(uv_handle_t *h)
{
    ((struct live *)h->data)->closed = true;
}

/* Writes whatever the session has to say (tiny here: uv_try_write takes it whole). */
static void
live_flush(struct live *l)
{
    uv_buf_t b;

    assert_int_equal(h2_session_send(l->s, &l->out, SIZE_MAX), 0);
    if (l->out.len > 0) {
        b = uv_buf_init((char *)l->out.data, (unsigned)l->out.len);
        assert_int_equal(uv_try_write((uv_stream_t *)&l->pipe, &b, 1), (int)l->out.len);
    }
    sigil_buf_free(&l->out);
}

static void
live_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    struct live *l = st->data;

    if (n < 0) {
        uv_close((uv_handle_t *)&l->pipe, live_closed);
        return;
    }
    assert_int_equal(h2_session_recv(l->s, (const uint8_t *)b->base, (size_t)n), 0);
    live_flush(l);
}

static void
live_connected(uv_connect_t *req, int status)
{
    struct live *l = req->data;

    assert_int_equal(status, 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&l->pipe, live_alloc, live_read), 0);
    raw_submit(l->s, &l->out, E "Slow", "5000", "50m", 1, false);
    live_flush(l);
}

static void
live_connected_nosubmit(uv_connect_t *req, int status)
{
    struct live *l = req->data;

    assert_int_equal(status, 0);
    assert_int_equal(uv_read_start((uv_stream_t *)&l->pipe, live_alloc, live_read), 0);
    live_flush(l);
}

static void
test_server_deadline(void **state)
{
    struct live l = {0};

    (void)state;
    start_server(NULL);
    l.s = raw_session(l.status);
    uv_pipe_init(&T.loop, &l.pipe, 0);
    l.pipe.data = &l;
    l.creq.data = &l;
    uv_pipe_connect(&l.creq, &l.pipe, T.path, live_connected);
    /* the client has no deadline of its own: the server's grpc-timeout timer ends the call */
    uv_timer_start(&T.guard, guard_fired, 5000, 0);
    while (l.status[0] == '\0')
        uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&T.guard);
    assert_string_equal(l.status, "4");
    assert_int_equal(T.cancels, 1);
    uv_close((uv_handle_t *)&l.pipe, live_closed);
    run_until(&l.closed);
    h2_session_free(l.s);
    sigil_buf_free(&l.out);
}

/* Request bytes a connection makes us buffer are capped across its streams: three streams
 * each stuck inside a 60000-byte message (50000 bytes sent) pass a 100000-byte cap. */
static void
test_inbound_cap(void **state)
{
    struct sigil_rpc_server_opts o = {.max_message = 65536, .max_conn_inbound = 100000};
    static uint8_t body[5 + 50000];
    static struct raw_req q[3];
    struct h2_nv nv[] = {
        {":method", 7, "POST", 4},
        {":scheme", 7, "http", 4},
        {":path", 5, E "Unary", strlen(E "Unary")},
        {":authority", 10, "localhost", 9},
        {"content-type", 12, "application/grpc", 16},
    };
    struct live l = {0};
    int32_t sid;

    (void)state;
    start_server(&o);
    body[0] = 0;
    body[1] = 0;
    body[2] = 60000 >> 8 >> 8;
    body[3] = (60000 >> 8) & 0xff;
    body[4] = 60000 & 0xff;
    l.s = raw_session(l.status);
    for (int i = 0; i < 3; i++) {
        q[i] = (struct raw_req){.body = body, .len = sizeof body, .partial = true};
        assert_int_equal(h2_submit_request(l.s, nv, 5, &q[i], &sid), 0);
    }
    uv_pipe_init(&T.loop, &l.pipe, 0);
    l.pipe.data = &l;
    l.creq.data = &l;
    uv_pipe_connect(&l.creq, &l.pipe, T.path, live_connected_nosubmit);
    uv_timer_start(&T.guard, guard_fired, 5000, 0);
    while (l.status[0] == '\0')
        uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&T.guard);
    assert_string_equal(l.status, "8");
    assert_int_equal(T.handler_runs, 0);
    uv_close((uv_handle_t *)&l.pipe, live_closed);
    run_until(&l.closed);
    h2_session_free(l.s);
    sigil_buf_free(&l.out);
}

static void
test_add_refusals(void **state)
{
    struct sigil_rpc_method m = {.path = E "Unary", .kind = SIGIL_RPC_UNARY, .handler = h_echo};
    static const char *const bad[] = {"", "/", "//x", "/svc", "/svc/", "/a/b/c", "svc/m", "/s c/m"};

    (void)state;
    assert_int_equal(sigil_rpc_server_new(&T.loop, NULL, &T.srv), 0);
    assert_int_equal(sigil_rpc_server_add(T.srv, &m), 0);
    assert_int_equal(sigil_rpc_server_add(T.srv, &m), SIGIL_ERR_EXISTS);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        m.path = bad[i];
        assert_int_equal(sigil_rpc_server_add(T.srv, &m), SIGIL_ERR_INVALID);
    }
    m.path = "/SpiffeWorkloadAPI/FetchX509SVID";
    m.required_header = "workload.spiffe.io"; /* without a value */
    assert_int_equal(sigil_rpc_server_add(T.srv, &m), SIGIL_ERR_INVALID);
    m.required_value = "true";
    assert_int_equal(sigil_rpc_server_add(T.srv, &m), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unary_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bidi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peer_unix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unavailable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_graceful_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tls_mtls, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_feed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbound_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_add_refusals, setup, teardown),
    };
    int r;

    signal(SIGPIPE, SIG_IGN); /* as every process using lib/rpc must */
    pki_make(&K);
    r = cmocka_run_group_tests(tests, NULL, NULL);
    pki_free(&K);
    return r;
}
