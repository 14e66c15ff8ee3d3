/* The gRPC client: one connection per client (Unix socket, or TCP with TLS 1.3 and ALPN h2),
 * opened on the first call and again after it is lost; calls of every kind with deadlines,
 * cancellation and caps; statuses from trailers, trailers-only responses, HTTP statuses or
 * the transport (UNAVAILABLE). Host names are resolved off the loop (uv_getaddrinfo) for each
 * new connection, and its addresses tried in turn. A synchronous unary helper for tests and
 * CLIs is at the end. */
#include "rpc_int.h"
#include "sigil/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Addresses of one name tried at most (a name with more is unusual for a server). */
#define DIAL_MAX_ADDRS 16
/* Time limits of one connect attempt: the longest, and the least when the call deadlines
 * leave less than that to each address still to try. */
#define DIAL_ATTEMPT_MAX_MS 10000
#define DIAL_ATTEMPT_MIN_MS 100

struct dial;

struct cli_conn {
    struct rpc_conn c; /* first: the engine's callbacks cast back */
    struct sigil_rpc_client *cli;
    struct cli_conn *prev, *next;
    uv_connect_t creq;
    struct dial *dial; /* resolving or connecting, or NULL */
    char why[320];     /* c.why when the dialer failed */
    bool ready;        /* the HTTP/2 session is up */
};

struct sigil_rpc_client {
    uv_loop_t *loop;
    char *unix_path;
    struct sockaddr_storage addr; /* the address of an IP literal target */
    bool literal;                 /* addr is set: nothing to resolve */
    struct sigil_rpc_hostport hp; /* the TCP target */
    unsigned dials;               /* dialers not yet freed */
    char *authority;
    char *server_name;
    struct sigil_tls_ctx *tls;
    size_t max_message;
    size_t max_outbound;
    struct cli_conn *conn;  /* the connection new calls go to, or NULL */
    struct cli_conn *conns; /* every connection not yet freed */
    struct sigil_rpc_ccall *calls;
    struct rpc_tracker tr; /* call deadlines, handshake limits */
    int busy;              /* > 0 while sigil_rpc_client_free walks its lists */
    bool freeing;
};

struct sigil_rpc_ccall {
    struct sigil_rpc_client *cli;
    struct cli_conn *conn;
    struct sigil_rpc_ccall *prev, *next;
    int32_t sid; /* 0 until the request is submitted */
    char *path;
    size_t nmd;
    char *md_names[RPC_MD_MAX];
    char *md_values[RPC_MD_MAX];
    uint64_t deadline; /* uv_now() ms, 0 for none */
    struct rpc_timer *timer;
    struct rpc_outq q;
    struct sigil_rpc_deframer df;
    struct rpc_mdstore md;
    size_t hdr_bytes;
    int http_status;
    int code;
    char *message;
    struct sigil_rpc_ccall_cbs cbs;
    void *ud;
    bool stream_open;
    bool in_feed; /* the deframer is on the stack: on_end may run, the free waits */
    bool half_close;
    bool got_status;
    bool ended;
};

/* Response header lists above this are refused (a server cannot make us buffer more). */
#define MAX_RESPONSE_HEADERS 65536

static void client_check_free(struct sigil_rpc_client *cli);
static void cli_kick(struct sigil_rpc_ccall *call);
static void dial_abandon(struct cli_conn *cc);

/* ---- ending a call ---- */

static void
call_free(struct sigil_rpc_ccall *call)
{
    rpc_timer_stop(call->timer);
    free(call->path);
    for (size_t i = 0; i < call->nmd; i++) {
        free(call->md_names[i]);
        free(call->md_values[i]);
    }
    rpc_outq_free(&call->q);
    sigil_rpc_deframer_free(&call->df);
    rpc_md_free(&call->md);
    free(call->message);
    free(call);
}

/* Runs on_end once, detaches the call from its stream and frees it. */
static void
call_end(struct sigil_rpc_ccall *call, int code, const char *message)
{
    struct sigil_rpc_client *cli = call->cli;

    if (call->ended)
        return;
    call->ended = true;
    rpc_timer_stop(call->timer);
    call->timer = NULL;
    if (call->stream_open && call->conn != NULL && call->conn->c.h2 != NULL) {
        /* still open on our side: tell the server, and make nghttp2 forget the call */
        h2_reset(call->conn->c.h2, call->sid, H2_CANCEL);
        h2_set_stream_data(call->conn->c.h2, call->sid, NULL);
        cli_kick(call);
    }
    call->stream_open = false;
    if (call->prev != NULL)
        call->prev->next = call->next;
    else
        cli->calls = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    if (call->cbs.on_end != NULL)
        call->cbs.on_end(call, call->ud, code, message != NULL ? message : "");
    if (!call->in_feed)
        call_free(call);
    client_check_free(cli);
}

static void
cli_kick(struct sigil_rpc_ccall *call)
{
    if (call->conn != NULL)
        rpc_conn_kick(&call->conn->c);
}

static void
call_deadline(void *arg)
{
    struct sigil_rpc_ccall *call = arg;

    call->timer = NULL;
    call_end(call, SIGIL_RPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

/* ---- submitting ---- */

static int
submit(struct sigil_rpc_ccall *call)
{
    struct sigil_rpc_client *cli = call->cli;
    struct cli_conn *cc = call->conn;
    struct h2_nv nv[8 + RPC_MD_MAX];
    char timeout[SIGIL_RPC_TIMEOUT_MAX];
    size_t n = 0;
    int r;

    nv[n++] = rpc_nv(":method", "POST");
    nv[n++] = rpc_nv(":scheme", cli->tls != NULL ? "https" : "http");
    nv[n++] = rpc_nv(":path", call->path);
    nv[n++] = rpc_nv(":authority", cli->authority);
    nv[n++] = rpc_nv("content-type", "application/grpc");
    nv[n++] = rpc_nv("te", "trailers");
    nv[n++] = rpc_nv("user-agent", "sigil-rpc/0.1");
    if (call->deadline != 0) {
        uint64_t now = uv_now(cli->loop);
        sigil_rpc_timeout_format(call->deadline > now ? call->deadline - now : 1, timeout);
        nv[n++] = rpc_nv("grpc-timeout", timeout);
    }
    for (size_t i = 0; i < call->nmd; i++)
        nv[n++] = rpc_nv(call->md_names[i], call->md_values[i]);
    if ((r = h2_submit_request(cc->c.h2, nv, n, call, &call->sid)) != 0)
        return r;
    call->stream_open = true;
    rpc_conn_kick(&cc->c);
    return 0;
}

/* ---- HTTP/2 callbacks of a client session ---- */

static int
cli_header(void *ud, int32_t sid, void *sud, enum h2_cat cat, const uint8_t *name, size_t nl,
           const uint8_t *value, size_t vl)
{
    struct sigil_rpc_ccall *call = sud;
    struct sigil_buf dec = {0};
    unsigned code = 0;

    (void)ud;
    (void)sid;
    if (call->ended)
        return 0;
    call->hdr_bytes += nl + vl + 32;
    if (call->hdr_bytes > MAX_RESPONSE_HEADERS)
        return H2_CB_RESET;
    if (cat == H2_CAT_RESPONSE && nl == 7 && memcmp(name, ":status", 7) == 0) {
        for (size_t i = 0; i < vl && i < 3; i++)
            code = code * 10 + (unsigned)(value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
        call->http_status = (int)code;
        return 0;
    }
    if (nl > 0 && name[0] == ':')
        return 0;
    if (nl == 11 && memcmp(name, "grpc-status", 11) == 0) {
        /* 1 or 2 digits; anything else is UNKNOWN, as gRPC's clients do */
        call->got_status = true;
        call->code = SIGIL_RPC_UNKNOWN;
        if (vl >= 1 && vl <= 2) {
            for (size_t i = 0; i < vl; i++) {
                if (value[i] < '0' || value[i] > '9') {
                    code = 99;
                    break;
                }
                code = code * 10 + (unsigned)(value[i] - '0');
            }
            if (code <= SIGIL_RPC_UNAUTHENTICATED)
                call->code = (int)code;
        }
        return 0;
    }
    if (nl == 12 && memcmp(name, "grpc-message", 12) == 0) {
        free(call->message);
        call->message = NULL;
        if (sigil_rpc_percent_decode((const char *)value, vl, &dec) == 0)
            call->message = sigil_buf_strdup(&dec);
        sigil_buf_free(&dec);
        return 0;
    }
    /* a server's bad -bin value is dropped rather than failing the call */
    rpc_md_add(&call->md, name, nl, value, vl);
    return 0;
}

static int
cli_headers_done(void *ud, int32_t sid, void *sud, enum h2_cat cat)
{
    struct sigil_rpc_ccall *call = sud;

    (void)ud;
    (void)sid;
    if (call->ended || cat != H2_CAT_RESPONSE || call->http_status != 200)
        return 0;
    if (call->cbs.on_headers != NULL)
        call->cbs.on_headers(call, call->ud);
    return 0;
}

static int
cli_on_msg(void *arg, bool compressed, const uint8_t *msg, size_t len)
{
    struct sigil_rpc_ccall *call = arg;

    if (compressed) {
        call_end(call, SIGIL_RPC_INTERNAL, "compressed response without a negotiated encoding");
        return 1;
    }
    if (call->cbs.on_message != NULL)
        call->cbs.on_message(call, call->ud, msg, len);
    return call->ended ? 1 : 0;
}

static int
cli_data(void *ud, int32_t sid, void *sud, const uint8_t *p, size_t n)
{
    struct sigil_rpc_ccall *call = sud;
    char msg[128];
    int r;

    (void)ud;
    (void)sid;
    if (call->ended)
        return 0;
    if (call->http_status != 200) /* a non-gRPC body: the status says it all */
        return 0;
    call->in_feed = true;
    r = sigil_rpc_deframer_feed(&call->df, p, n, cli_on_msg, call);
    call->in_feed = false;
    if (call->ended) { /* ended from a callback (e.g. cancelled in on_message) */
        call_free(call);
        return 0;
    }
    if (r == 0)
        return 0;
    if (r == SIGIL_ERR_RANGE) {
        snprintf(msg, sizeof msg, "response message of %u bytes is larger than the limit of %zu",
                 (unsigned)call->df.want, call->df.max);
        call_end(call, SIGIL_RPC_RESOURCE_EXHAUSTED, msg);
    } else {
        call_end(call, SIGIL_RPC_INTERNAL, "malformed gRPC message framing in the response");
    }
    return 0;
}

static int
cli_end_stream(void *ud, int32_t sid, void *sud)
{
    (void)ud;
    (void)sid;
    (void)sud;
    return 0;
}

static void
cli_stream_close(void *ud, int32_t sid, void *sud, uint32_t error)
{
    struct sigil_rpc_ccall *call = sud;
    char msg[96];

    (void)ud;
    (void)sid;
    call->stream_open = false;
    if (call->ended)
        return;
    if (call->got_status && call->http_status == 200) {
        if (!sigil_rpc_deframer_idle(&call->df))
            call_end(call, SIGIL_RPC_INTERNAL, "the response ended inside a message");
        else
            call_end(call, call->code, call->message);
    } else if (error == H2_REFUSED_STREAM) {
        call_end(call, SIGIL_RPC_UNAVAILABLE, "the server refused the stream");
    } else if (error == H2_CANCEL) {
        call_end(call, SIGIL_RPC_CANCELLED, "the server cancelled the stream");
    } else if (error != H2_NO_ERROR) {
        snprintf(msg, sizeof msg, "stream reset by the server (HTTP/2 error %u)", error);
        call_end(call, SIGIL_RPC_INTERNAL, msg);
    } else if (call->http_status != 200) {
        snprintf(msg, sizeof msg, "HTTP status %d from the server", call->http_status);
        call_end(call, rpc_http_to_code(call->http_status), msg);
    } else {
        call_end(call, SIGIL_RPC_INTERNAL, "the server sent no grpc-status");
    }
}

static int
cli_rst_recv(void *ud, int32_t sid)
{
    (void)ud;
    (void)sid;
    return 0;
}

static void
cli_goaway_recv(void *ud, int32_t last_sid, uint32_t error)
{
    struct cli_conn *cc = ud;

    (void)last_sid;
    (void)error;
    /* streams up to last_sid may finish here; new calls get a new connection */
    if (cc->cli->conn == cc)
        cc->cli->conn = NULL;
}

static ssize_t
cli_read(void *ud, int32_t sid, void *sud, uint8_t *buf, size_t len, uint32_t *flags)
{
    struct sigil_rpc_ccall *call = sud;
    size_t k = rpc_outq_read(&call->q, buf, len);

    (void)ud;
    (void)sid;
    if (rpc_outq_len(&call->q) == 0 && call->half_close) {
        *flags |= H2_FLAG_EOF;
        return (ssize_t)k;
    }
    return k == 0 ? H2_READ_DEFER : (ssize_t)k;
}

static const struct h2_callbacks cli_h2_callbacks = {
    .header = cli_header,
    .headers_done = cli_headers_done,
    .data = cli_data,
    .end_stream = cli_end_stream,
    .stream_close = cli_stream_close,
    .rst_recv = cli_rst_recv,
    .goaway_recv = cli_goaway_recv,
    .read = cli_read,
};

/* ---- connections ---- */

static int
cc_ready(struct rpc_conn *c)
{
    struct cli_conn *cc = (struct cli_conn *)c;
    struct sigil_rpc_client *cli = cc->cli;
    struct h2_settings set = {
        .max_concurrent_streams = 100, /* server push is off; this only bounds pushes */
        .max_header_list_size = MAX_RESPONSE_HEADERS,
        .initial_window_size = RPC_STREAM_WINDOW,
        .connection_window_size = RPC_CONN_WINDOW,
    };
    struct sigil_rpc_ccall *call, *next;
    int r;

    if ((r = h2_session_new(false, &set, &cli_h2_callbacks, cc, &c->h2)) != 0)
        return r;
    cc->ready = true;
    for (call = cli->calls; call != NULL; call = next) {
        next = call->next;
        if (call->conn == cc && call->sid == 0 && submit(call) != 0)
            call_end(call, SIGIL_RPC_INTERNAL, "cannot submit the request");
    }
    return 0;
}

static void
cc_closing(struct rpc_conn *c)
{
    struct cli_conn *cc = (struct cli_conn *)c;
    struct sigil_rpc_client *cli = cc->cli;
    struct sigil_rpc_ccall *call, *next;
    char msg[400];

    if (cli->conn == cc)
        cli->conn = NULL;
    if (cc->dial != NULL)
        dial_abandon(cc);
    snprintf(msg, sizeof msg, "%s: %s", cc->ready ? "connection lost" : "cannot connect",
             c->why != NULL ? c->why : "closed");
    for (call = cli->calls; call != NULL; call = next) {
        next = call->next;
        if (call->conn == cc) {
            call->stream_open = false; /* the session goes with the connection */
            call_end(call, SIGIL_RPC_UNAVAILABLE, msg);
        }
    }
}

static void
cc_freed(struct rpc_conn *c)
{
    struct cli_conn *cc = (struct cli_conn *)c;
    struct sigil_rpc_client *cli = cc->cli;

    if (cc->prev != NULL)
        cc->prev->next = cc->next;
    else
        cli->conns = cc->next;
    if (cc->next != NULL)
        cc->next->prev = cc->prev;
    sigil_buf_free(&c->wbuf);
    sigil_buf_free(&c->in);
    sigil_buf_free(&c->out);
    free(cc);
    client_check_free(cli);
}

static const struct rpc_conn_ops cli_conn_ops = {
    .ready = cc_ready,
    .closing = cc_closing,
    .freed = cc_freed,
};

/* The transport is connected: TLS (if any) and HTTP/2 follow. */
static void
connected(struct cli_conn *cc)
{
    struct sigil_rpc_client *cli = cc->cli;

    if (cli->tls != NULL)
        uv_tcp_nodelay(&cc->c.io.tcp, 1);
    if (rpc_conn_start(&cc->c, cli->tls, cli->server_name, 10000) != 0)
        rpc_conn_close(&cc->c, "cannot start TLS");
}

static void
on_connect(uv_connect_t *req, int status)
{
    struct cli_conn *cc = req->data;

    if (cc->c.ended)
        return;
    if (status < 0) {
        rpc_conn_close(&cc->c, uv_strerror(status));
        return;
    }
    connected(cc);
}

/* ---- dialing a TCP target ----
 * A dialer resolves the host (a thread of libuv's pool runs getaddrinfo) and connects to each
 * address in turn on a socket of its own, each attempt within a time limit; the socket that
 * connects is handed to the connection (a duplicate descriptor), the dialer's own closed. A
 * lookup in a thread cannot be stopped, so a dialer outlives a connection that gives up on it
 * (cc NULL) until its last callback; the client waits for it before being freed. */

struct dial {
    struct sigil_rpc_client *cli;
    struct cli_conn *cc; /* NULL once abandoned */
    uv_getaddrinfo_t gai;
    uv_tcp_t tcp;
    uv_connect_t creq;
    struct rpc_timer *timer; /* the attempt's time limit */
    struct sockaddr_storage addrs[DIAL_MAX_ADDRS];
    size_t naddrs, next;
    int err; /* the last attempt's libuv error */
    bool resolving, tcp_open, tcp_closing, timed_out;
};

static void dial_next(struct dial *d);
static void attempt_close(struct dial *d);

static void
dial_free_if_idle(struct dial *d)
{
    struct sigil_rpc_client *cli = d->cli;

    if (d->cc != NULL || d->resolving || d->tcp_open)
        return;
    rpc_timer_stop(d->timer);
    free(d);
    cli->dials--;
    client_check_free(cli);
}

/* The connection gives up (it closes): stop what can be stopped; the callbacks free d. */
static void
dial_abandon(struct cli_conn *cc)
{
    struct dial *d = cc->dial;

    cc->dial = NULL;
    d->cc = NULL;
    rpc_timer_stop(d->timer);
    d->timer = NULL;
    if (d->resolving)
        (void)uv_cancel((uv_req_t *)&d->gai); /* on_resolved runs either way */
    if (d->tcp_open)
        attempt_close(d);
    dial_free_if_idle(d);
}

/* Ends the dial with a failure: the connection closes with why (it names the host), from the
 * loop (this may run inside sigil_rpc_client_call). */
static void dial_fail(struct dial *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
dial_fail(struct dial *d, const char *fmt, ...)
{
    struct cli_conn *cc = d->cc;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(cc->why, sizeof cc->why, fmt, ap);
    va_end(ap);
    cc->dial = NULL;
    d->cc = NULL;
    rpc_conn_close_after_flush(&cc->c, cc->why);
    dial_free_if_idle(d);
}

static void
attempt_closed(uv_handle_t *h)
{
    struct dial *d = h->data;

    d->tcp_open = false;
    d->tcp_closing = false;
    if (d->cc == NULL) {
        dial_free_if_idle(d);
        return;
    }
    dial_next(d);
}

static void
attempt_close(struct dial *d)
{
    rpc_timer_stop(d->timer);
    d->timer = NULL;
    if (!d->tcp_closing) {
        d->tcp_closing = true;
        uv_close((uv_handle_t *)&d->tcp, attempt_closed);
    }
}

static void
attempt_timeout(void *arg)
{
    struct dial *d = arg;

    d->timer = NULL;
    d->timed_out = true;
    attempt_close(d); /* cancels the connect request */
}

/* The descriptor of the dialer's connected socket goes to the connection. */
static int
adopt_socket(struct dial *d)
{
    struct cli_conn *cc = d->cc;
    uv_os_fd_t fd;
    int nfd, r;

    if ((r = uv_fileno((uv_handle_t *)&d->tcp, &fd)) != 0)
        return r;
    if ((nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
        return uv_translate_sys_error(errno);
    if ((r = uv_tcp_init(d->cli->loop, &cc->c.io.tcp)) != 0) {
        close(nfd);
        return r;
    }
    rpc_conn_adopt_io(&cc->c);
    if ((r = uv_tcp_open(&cc->c.io.tcp, nfd)) != 0) {
        close(nfd);
        return r;
    }
    return 0;
}

static void
attempt_done(uv_connect_t *req, int status)
{
    struct dial *d = req->data;
    struct cli_conn *cc = d->cc;
    int r;

    if (d->tcp_closing) /* timed out or abandoned: attempt_closed goes on */
        return;
    if (cc == NULL || status < 0) {
        d->err = status;
        attempt_close(d);
        return;
    }
    r = adopt_socket(d);
    cc->dial = NULL;
    d->cc = NULL;
    attempt_close(d);
    if (r != 0) {
        snprintf(cc->why, sizeof cc->why, "%s: %s", d->cli->hp.host, uv_strerror(r));
        rpc_conn_close(&cc->c, cc->why);
        return;
    }
    connected(cc);
}

/* The time limit of the next attempt: its share of what the earliest call deadline on this
 * connection leaves, between DIAL_ATTEMPT_MIN_MS and DIAL_ATTEMPT_MAX_MS. */
static uint64_t
attempt_ms(struct dial *d)
{
    uint64_t now = uv_now(d->cli->loop), left = 0, ms;
    size_t n = d->naddrs - d->next + 1; /* this attempt and those after it */

    for (struct sigil_rpc_ccall *call = d->cli->calls; call != NULL; call = call->next) {
        uint64_t l;

        if (call->conn != d->cc || call->deadline == 0)
            continue;
        l = call->deadline > now ? call->deadline - now : 1;
        if (left == 0 || l < left)
            left = l;
    }
    if (left == 0)
        return DIAL_ATTEMPT_MAX_MS;
    ms = left / n;
    return ms < DIAL_ATTEMPT_MIN_MS   ? DIAL_ATTEMPT_MIN_MS
           : ms > DIAL_ATTEMPT_MAX_MS ? DIAL_ATTEMPT_MAX_MS
                                      : ms;
}

static void
addr_text(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char ip[INET6_ADDRSTRLEN] = "?";

    if (ss->ss_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)ss, ip, sizeof ip);
        snprintf(out, n, "[%s]", ip);
    } else {
        uv_ip4_name((const struct sockaddr_in *)ss, ip, sizeof ip);
        snprintf(out, n, "%s", ip);
    }
}

/* Tries the next address, or fails naming the host and the last error. */
static void
dial_next(struct dial *d)
{
    struct sigil_rpc_client *cli = d->cli;
    char ip[INET6_ADDRSTRLEN + 2];
    int r;

    while (d->next < d->naddrs) {
        const struct sockaddr *sa = (const struct sockaddr *)&d->addrs[d->next++];

        d->timed_out = false;
        if ((r = uv_tcp_init(cli->loop, &d->tcp)) != 0) {
            d->err = r;
            break;
        }
        d->tcp.data = d;
        d->tcp_open = true;
        d->creq.data = d;
        if ((r = uv_tcp_connect(&d->creq, &d->tcp, sa, attempt_done)) != 0) {
            d->err = r; /* e.g. no IPv6 here: attempt_closed tries the next */
            attempt_close(d);
            return;
        }
        d->timer = rpc_timer_start(cli->loop, &cli->tr, attempt_ms(d), attempt_timeout, d);
        if (d->timer == NULL) {
            d->err = UV_ENOMEM;
            attempt_close(d);
            d->next = d->naddrs;
        }
        return;
    }
    addr_text(&d->addrs[d->naddrs > 0 ? d->naddrs - 1 : 0], ip, sizeof ip);
    if (cli->hp.family != 0)
        dial_fail(d, "%s port %u: %s", cli->hp.host, (unsigned)cli->hp.port,
                  d->timed_out ? "connect timed out" : uv_strerror(d->err));
    else if (d->naddrs == 1)
        dial_fail(d, "%s (%s) port %u: %s", cli->hp.host, ip, (unsigned)cli->hp.port,
                  d->timed_out ? "connect timed out" : uv_strerror(d->err));
    else
        dial_fail(d, "%s port %u: none of its %zu addresses answered (last, %s: %s)", cli->hp.host,
                  (unsigned)cli->hp.port, d->naddrs, ip,
                  d->timed_out ? "connect timed out" : uv_strerror(d->err));
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct dial *d = req->data;
    struct sigil_rpc_client *cli = d->cli;

    d->resolving = false;
    if (d->cc == NULL || status < 0) {
        if (res != NULL)
            uv_freeaddrinfo(res);
        if (d->cc != NULL)
            dial_fail(d, "cannot resolve host \"%s\": %s", cli->hp.host, uv_strerror(status));
        else
            dial_free_if_idle(d);
        return;
    }
    for (struct addrinfo *ai = res; ai != NULL && d->naddrs < DIAL_MAX_ADDRS; ai = ai->ai_next)
        if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
            ai->ai_addrlen <= sizeof d->addrs[0])
            memcpy(&d->addrs[d->naddrs++], ai->ai_addr, ai->ai_addrlen);
    uv_freeaddrinfo(res);
    if (d->naddrs == 0) {
        dial_fail(d, "host \"%s\" has no IPv4 or IPv6 address", cli->hp.host);
        return;
    }
    dial_next(d);
}

/* Starts dialing cc's TCP target. Returns 0, or a libuv error (nothing started). */
static int
dial_start(struct sigil_rpc_client *cli, struct cli_conn *cc)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_protocol = IPPROTO_TCP,
                             .ai_flags = AI_NUMERICSERV};
    struct dial *d = calloc(1, sizeof *d);
    char port[8];
    int r;

    if (d == NULL)
        return UV_ENOMEM;
    d->cli = cli;
    d->cc = cc;
    d->gai.data = d;
    cli->dials++;
    cc->dial = d;
    if (cli->literal) {
        d->addrs[0] = cli->addr;
        d->naddrs = 1;
        dial_next(d);
        return 0;
    }
    snprintf(port, sizeof port, "%u", (unsigned)cli->hp.port);
    if ((r = uv_getaddrinfo(cli->loop, &d->gai, on_resolved, cli->hp.host, port, &hints)) != 0) {
        cc->dial = NULL;
        d->cc = NULL;
        dial_free_if_idle(d);
        return r;
    }
    d->resolving = true;
    return 0;
}

/* A new connection, made current for new calls; connect_start() dials it. */
static struct cli_conn *
connect_new(struct sigil_rpc_client *cli)
{
    struct cli_conn *cc = calloc(1, sizeof *cc);

    if (cc == NULL)
        return NULL;
    if (rpc_conn_init(&cc->c, cli->loop, &cli_conn_ops, &cli->tr) != 0) {
        free(cc);
        return NULL;
    }
    cc->cli = cli;
    cc->creq.data = cc;
    cc->next = cli->conns;
    if (cli->conns != NULL)
        cli->conns->prev = cc;
    cli->conns = cc;
    cli->conn = cc;
    return cc;
}

/* Failures here are reported from the loop (through the idle flush, or the dialer's
 * callbacks), never before sigil_rpc_client_call has returned. */
static void
connect_start(struct sigil_rpc_client *cli, struct cli_conn *cc)
{
    int r;

    if (cli->unix_path == NULL) {
        if ((r = dial_start(cli, cc)) != 0) {
            snprintf(cc->why, sizeof cc->why, "%s: %s", cli->hp.host, uv_strerror(r));
            rpc_conn_close_after_flush(&cc->c, cc->why);
        }
        return;
    }
    if ((r = uv_pipe_init(cli->loop, &cc->c.io.pipe, 0)) != 0) {
        rpc_conn_close_after_flush(&cc->c, "cannot initialise the socket");
        return;
    }
    rpc_conn_adopt_io(&cc->c);
    uv_pipe_connect(&cc->creq, &cc->c.io.pipe, cli->unix_path, on_connect);
}

/* ---- the client ---- */

/* A DNS name as RFC 1123 allows it for a host: labels of 1-63 of [A-Za-z0-9-], not starting
 * or ending with '-', at most 253 characters (254 with a final dot), the last label not all
 * digits (so that "1.2.3" or "999.1.1.1" is never taken for an address). */
static bool
hostname_ok(const char *h, size_t n)
{
    size_t label = 0;
    bool digits = true;

    if (n > 0 && h[n - 1] == '.')
        n--;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? h[i] : '.';

        if (c == '.') {
            if (label == 0 || h[i - 1] == '-')
                return false;
            if (i == n && digits)
                return false;
            label = 0;
            digits = true;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c == '-' && label > 0)))
            return false;
        if (c < '0' || c > '9')
            digits = false;
        if (++label > 63)
            return false;
    }
    return true;
}

int
sigil_rpc_hostport_parse(const char *s, size_t len, struct sigil_rpc_hostport *out,
                         const char **why)
{
    const char *colon = NULL, *h = s;
    unsigned char ip[16];
    unsigned long port = 0;
    size_t hl;

    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\0') {
            *why = "a NUL byte in host:port";
            return SIGIL_ERR_INVALID;
        }
        if (s[i] == ':')
            colon = s + i;
    }
    if (colon == NULL) {
        *why = "want host:port";
        return SIGIL_ERR_INVALID;
    }
    hl = (size_t)(colon - s);
    if (colon + 1 == s + len || len - hl - 1 > 5) {
        *why = "want host:port with a port from 1 to 65535";
        return SIGIL_ERR_INVALID;
    }
    for (const char *p = colon + 1; p < s + len; p++) {
        if (*p < '0' || *p > '9') {
            *why = "want host:port with a port from 1 to 65535";
            return SIGIL_ERR_INVALID;
        }
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port < 1 || port > 65535) {
        *why = "want host:port with a port from 1 to 65535";
        return SIGIL_ERR_INVALID;
    }
    out->port = (uint16_t)port;
    if (hl >= 2 && s[0] == '[' && s[hl - 1] == ']') {
        if (hl - 2 >= INET6_ADDRSTRLEN) {
            memset(out, 0, sizeof *out);
            *why = "the host in brackets is not an IPv6 address";
            return SIGIL_ERR_INVALID;
        }
        memcpy(out->host, s + 1, hl - 2);
        out->host[hl - 2] = '\0';
        if (inet_pton(AF_INET6, out->host, ip) != 1) {
            memset(out, 0, sizeof *out);
            *why = "the host in brackets is not an IPv6 address";
            return SIGIL_ERR_INVALID;
        }
        out->family = AF_INET6;
        return 0;
    }
    if (hl == 0 || hl > SIGIL_RPC_HOST_MAX) {
        *why = hl == 0 ? "want host:port (the host is empty)" : "the host is longer than 254 bytes";
        return SIGIL_ERR_INVALID;
    }
    memcpy(out->host, h, hl);
    out->host[hl] = '\0';
    if (memchr(h, ':', hl) != NULL || memchr(h, '[', hl) != NULL) {
        memset(out, 0, sizeof *out);
        *why = "an IPv6 address goes in brackets: [addr]:port";
        return SIGIL_ERR_INVALID;
    }
    if (inet_pton(AF_INET, out->host, ip) == 1) {
        out->family = AF_INET;
        return 0;
    }
    if (!hostname_ok(out->host, hl)) {
        memset(out, 0, sizeof *out);
        *why = "the host is neither an IP address nor a DNS name (letters, digits, '-' and "
               "dots; labels of 1 to 63; the last not all digits)";
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

/* "unix:///abs/path" (or "unix:/abs/path"), or "host:port" / "[v6]:port" with an IP address
 * or a host name (resolved when connecting). */
static int
parse_target(struct sigil_rpc_client *cli, const char *t, const char **why)
{
    static _Thread_local char msg[160];
    const char *w = NULL;
    size_t hl;

    if (strncmp(t, "unix:", 5) == 0) {
        const char *p = strncmp(t, "unix://", 7) == 0 ? t + 7 : t + 5;
        if (p[0] != '/' || strlen(p) >= 108) {
            *why = "rpc: a unix target needs an absolute path (unix:///path), at most 107 bytes";
            return SIGIL_ERR_INVALID;
        }
        if ((cli->unix_path = strdup(p)) == NULL || (cli->authority = strdup("localhost")) == NULL)
            return SIGIL_ERR_NOMEM;
        return 0;
    }
    if (sigil_rpc_hostport_parse(t, strlen(t), &cli->hp, &w) != 0) {
        snprintf(msg, sizeof msg, "rpc: bad target (unix:///path or host:port): %s", w);
        *why = msg;
        return SIGIL_ERR_INVALID;
    }
    if (cli->hp.family == AF_INET) {
        cli->literal =
            uv_ip4_addr(cli->hp.host, cli->hp.port, (struct sockaddr_in *)&cli->addr) == 0;
    } else if (cli->hp.family == AF_INET6) {
        cli->literal =
            uv_ip6_addr(cli->hp.host, cli->hp.port, (struct sockaddr_in6 *)&cli->addr) == 0;
    }
    if (cli->hp.family != 0 && !cli->literal) {
        *why = "rpc: the target's IP address is not usable";
        return SIGIL_ERR_INVALID;
    }
    /* the name for SNI and certificate checks has no final dot (RFC 6066) */
    hl = strlen(cli->hp.host);
    if (hl > 1 && cli->hp.host[hl - 1] == '.')
        hl--;
    if ((cli->authority = strdup(t)) == NULL ||
        (cli->server_name == NULL && (cli->server_name = strndup(cli->hp.host, hl)) == NULL))
        return SIGIL_ERR_NOMEM;
    return 0;
}

int
sigil_rpc_client_new(uv_loop_t *loop, const struct sigil_rpc_client_opts *o,
                     struct sigil_rpc_client **out, const char **why)
{
    struct sigil_rpc_client *cli = calloc(1, sizeof *cli);
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    *why = "rpc: out of memory";
    if (cli == NULL)
        return r;
    cli->loop = loop;
    cli->tr.drained = NULL;
    cli->max_message = o->max_message != 0 ? o->max_message : SIGIL_RPC_DEFAULT_MAX_MESSAGE;
    cli->max_outbound = o->max_outbound != 0 ? o->max_outbound : cli->max_message + 65536;
    if (o->server_name != NULL && (cli->server_name = strdup(o->server_name)) == NULL)
        goto out;
    if (o->target == NULL) {
        *why = "rpc: no target";
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    if ((r = parse_target(cli, o->target, why)) != 0)
        goto out;
    if (cli->unix_path == NULL && o->tls == NULL) {
        *why = "rpc: TCP targets need TLS";
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    if (cli->unix_path == NULL) {
        cli->tls = o->tls;
        sigil_tls_ctx_ref(cli->tls);
    }
    *out = cli;
    cli = NULL;
    *why = NULL;
    r = 0;
out:
    if (cli != NULL) {
        free(cli->unix_path);
        free(cli->authority);
        free(cli->server_name);
        free(cli);
    }
    return r;
}

static void
client_tracker_drained(struct rpc_tracker *tr)
{
    struct sigil_rpc_client *cli =
        (struct sigil_rpc_client *)((char *)tr - offsetof(struct sigil_rpc_client, tr));

    client_check_free(cli);
}

static void
client_check_free(struct sigil_rpc_client *cli)
{
    if (!cli->freeing || cli->busy > 0 || cli->calls != NULL || cli->conns != NULL ||
        cli->tr.open > 0 || cli->dials > 0)
        return;
    cli->freeing = false; /* once */
    cli->tr.drained = NULL;
    sigil_tls_ctx_free(cli->tls);
    free(cli->unix_path);
    free(cli->authority);
    free(cli->server_name);
    free(cli);
}

void
sigil_rpc_client_free(struct sigil_rpc_client *cli)
{
    if (cli == NULL || cli->freeing)
        return;
    cli->freeing = true;
    cli->tr.drained = client_tracker_drained;
    cli->busy++;
    while (cli->calls != NULL)
        call_end(cli->calls, SIGIL_RPC_CANCELLED, "the client was closed");
    for (struct cli_conn *cc = cli->conns; cc != NULL; cc = cc->next)
        rpc_conn_close(&cc->c, "the client was closed");
    cli->busy--;
    client_check_free(cli);
}

/* ---- calls ---- */

static bool
path_ok(const char *p)
{
    size_t n;

    if (p == NULL || p[0] != '/' || (n = strlen(p)) < 2 || n > 1024)
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] <= 0x20 || p[i] >= 0x7f)
            return false;
    return true;
}

int
sigil_rpc_client_call(struct sigil_rpc_client *cli, const char *path, const struct sigil_rpc_md *md,
                      size_t nmd, uint64_t timeout_ms, const struct sigil_rpc_ccall_cbs *cbs,
                      void *ud, struct sigil_rpc_ccall **out)
{
    struct sigil_rpc_ccall *call = NULL;
    struct h2_nv nv[RPC_MD_MAX];
    struct rpc_nv_tmp tmp = {0};
    struct cli_conn *cc;
    bool fresh = false;
    int r = SIGIL_ERR_INVALID;

    if (out != NULL)
        *out = NULL;
    if (cli->freeing || !path_ok(path) || nmd > RPC_MD_MAX)
        return cli->freeing ? SIGIL_ERR_STATE : SIGIL_ERR_INVALID;
    if ((call = calloc(1, sizeof *call)) == NULL)
        return SIGIL_ERR_NOMEM;
    call->cli = cli;
    if (cbs != NULL)
        call->cbs = *cbs;
    call->ud = ud;
    sigil_rpc_deframer_init(&call->df, cli->max_message);
    if ((r = rpc_md_to_nv(md, nmd, nv, &tmp)) != 0)
        goto out;
    r = SIGIL_ERR_NOMEM;
    if ((call->path = strdup(path)) == NULL)
        goto out;
    for (size_t i = 0; i < nmd; i++) {
        call->md_names[i] = strndup(nv[i].name, nv[i].namelen);
        call->md_values[i] = strndup(nv[i].value, nv[i].valuelen);
        call->nmd++;
        if (call->md_names[i] == NULL || call->md_values[i] == NULL)
            goto out;
    }
    if (timeout_ms > 0) {
        call->deadline = uv_now(cli->loop) + timeout_ms;
        if ((call->timer = rpc_timer_start(cli->loop, &cli->tr, timeout_ms, call_deadline, call)) ==
            NULL)
            goto out;
    }
    if ((cc = cli->conn) == NULL) {
        if ((cc = connect_new(cli)) == NULL)
            goto out;
        fresh = true;
    }
    /* connected: submitted now; otherwise by cc_ready, or ended by a failed connect */
    call->conn = cc;
    if (cc->ready && (r = submit(call)) != 0)
        goto out;
    call->next = cli->calls;
    if (cli->calls != NULL)
        cli->calls->prev = call;
    cli->calls = call;
    rpc_nv_tmp_free(&tmp);
    if (out != NULL)
        *out = call;
    if (fresh)
        connect_start(cli, cc);
    return 0;
out:
    rpc_nv_tmp_free(&tmp);
    call_free(call);
    return r;
}

int
sigil_rpc_ccall_send(struct sigil_rpc_ccall *call, const void *msg, size_t len)
{
    int r;

    if (call->ended || call->half_close)
        return SIGIL_ERR_STATE;
    if (len > UINT32_MAX || rpc_outq_len(&call->q) + len + 5 > call->cli->max_outbound)
        return SIGIL_ERR_RANGE;
    if ((r = rpc_outq_push(&call->q, msg, len)) != 0)
        return r;
    if (call->stream_open) {
        h2_resume(call->conn->c.h2, call->sid);
        cli_kick(call);
    }
    return 0;
}

int
sigil_rpc_ccall_close_send(struct sigil_rpc_ccall *call)
{
    if (call->ended || call->half_close)
        return SIGIL_ERR_STATE;
    call->half_close = true;
    if (call->stream_open) {
        h2_resume(call->conn->c.h2, call->sid);
        cli_kick(call);
    }
    return 0;
}

void
sigil_rpc_ccall_cancel(struct sigil_rpc_ccall *call)
{
    call_end(call, SIGIL_RPC_CANCELLED, "cancelled by the client");
}

size_t
sigil_rpc_ccall_metadata(const struct sigil_rpc_ccall *call, const char *name,
                         const uint8_t **value, size_t *len)
{
    return rpc_md_get(&call->md, name, value, len);
}

/* ---- unary and server-streaming helpers ---- */

struct unary_ctx {
    sigil_rpc_unary_fn done;
    void *ud;
    struct sigil_buf resp;
    unsigned n;
};

static void
unary_msg(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    struct unary_ctx *u = ud;

    (void)call;
    if (u->n++ == 0 && sigil_buf_append(&u->resp, msg, len) != 0)
        u->n = 99; /* reported as an error below */
}

static void
unary_end(struct sigil_rpc_ccall *call, void *ud, int code, const char *message)
{
    struct unary_ctx *u = ud;

    (void)call;
    if (code == SIGIL_RPC_OK && u->n != 1) {
        code = SIGIL_RPC_INTERNAL;
        message = u->n == 0 ? "no response message for a unary call"
                            : "more than one response message for a unary call";
    }
    u->done(u->ud, code, message,
            code == SIGIL_RPC_OK ? (u->resp.data ? u->resp.data : (const uint8_t *)"") : NULL,
            code == SIGIL_RPC_OK ? u->resp.len : 0);
    sigil_buf_free(&u->resp);
    free(u);
}

int
sigil_rpc_client_unary(struct sigil_rpc_client *cli, const char *path,
                       const struct sigil_rpc_md *md, size_t nmd, const void *req, size_t len,
                       uint64_t timeout_ms, sigil_rpc_unary_fn done, void *ud)
{
    static const struct sigil_rpc_ccall_cbs cbs = {.on_message = unary_msg, .on_end = unary_end};
    struct unary_ctx *u = calloc(1, sizeof *u);
    struct sigil_rpc_ccall *call;
    int r;

    if (u == NULL)
        return SIGIL_ERR_NOMEM;
    u->done = done;
    u->ud = ud;
    if ((r = sigil_rpc_client_call(cli, path, md, nmd, timeout_ms, &cbs, u, &call)) != 0) {
        free(u);
        return r;
    }
    /* the call may already have ended (a synchronous failure ran unary_end) */
    if (call != NULL && !call->ended) {
        if ((r = sigil_rpc_ccall_send(call, req, len)) != 0) {
            call_end(call, r == SIGIL_ERR_RANGE ? SIGIL_RPC_RESOURCE_EXHAUSTED : SIGIL_RPC_INTERNAL,
                     "cannot queue the request");
            return 0;
        }
        sigil_rpc_ccall_close_send(call);
    }
    return 0;
}

int
sigil_rpc_client_server_stream(struct sigil_rpc_client *cli, const char *path,
                               const struct sigil_rpc_md *md, size_t nmd, const void *req,
                               size_t len, uint64_t timeout_ms,
                               const struct sigil_rpc_ccall_cbs *cbs, void *ud,
                               struct sigil_rpc_ccall **out)
{
    struct sigil_rpc_ccall *call;
    int r;

    if ((r = sigil_rpc_client_call(cli, path, md, nmd, timeout_ms, cbs, ud, &call)) != 0)
        return r;
    if (out != NULL)
        *out = call;
    if ((r = sigil_rpc_ccall_send(call, req, len)) != 0) {
        if (out != NULL)
            *out = NULL;
        call_end(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "cannot queue the request");
        return 0;
    }
    sigil_rpc_ccall_close_send(call);
    return 0;
}

/* ---- synchronous unary call on a private loop ---- */

struct sync_ctx {
    struct sigil_rpc_client *cli;
    struct sigil_rpc_result *res;
    int r;
};

static void
sync_done(void *ud, int code, const char *message, const uint8_t *resp, size_t len)
{
    struct sync_ctx *s = ud;

    s->res->code = code;
    if ((s->res->message = strdup(message != NULL ? message : "")) == NULL ||
        (resp != NULL && sigil_buf_append(&s->res->response, resp, len) != 0))
        s->r = SIGIL_ERR_NOMEM;
    /* closing the client lets the private loop run dry */
    sigil_rpc_client_free(s->cli);
}

int
sigil_rpc_unary_sync(const struct sigil_rpc_client_opts *o, const char *path,
                     const struct sigil_rpc_md *md, size_t nmd, const void *req, size_t len,
                     uint64_t timeout_ms, struct sigil_rpc_result *res, const char **why)
{
    struct sync_ctx s = {.res = res};
    uv_loop_t loop;
    int r;

    memset(res, 0, sizeof *res);
    *why = NULL;
    if (uv_loop_init(&loop) != 0) {
        *why = "rpc: cannot create a private loop";
        return SIGIL_ERR_IO;
    }
    if ((r = sigil_rpc_client_new(&loop, o, &s.cli, why)) == 0 &&
        (r = sigil_rpc_client_unary(s.cli, path, md, nmd, req, len, timeout_ms, sync_done, &s)) !=
            0) {
        *why = "rpc: cannot start the call";
        sigil_rpc_client_free(s.cli);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0 && r == 0) {
        r = SIGIL_ERR_INTERNAL;
        *why = "rpc: handles left open on the private loop";
    }
    if (r == 0 && s.r != 0) {
        r = s.r;
        *why = "rpc: out of memory";
    }
    if (r != 0)
        sigil_rpc_result_free(res);
    return r;
}

void
sigil_rpc_result_free(struct sigil_rpc_result *res)
{
    free(res->message);
    res->message = NULL;
    sigil_buf_free(&res->response);
}
