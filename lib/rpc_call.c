/* Server side of a gRPC call: an HTTP/2 stream checked as a gRPC request (method, content
 * type, path, required header, grpc-timeout, framing, size cap), handed to its handler, and
 * answered with messages and trailers (or trailers-only). A call lives until both nghttp2 and
 * the handler have let go of it; on_cancel tells the handler exactly once that it is gone. */
#include "rpc_srv.h"
#include "sigil/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returned by the message callback to stop a call's deframer (the call is already ended). */
#define STOP 1

/* ---- lifetime ---- */

static void
trailers_free(struct rpc_trailers *t)
{
    free(t->message);
    for (size_t i = 0; i < t->n; i++) {
        free(t->names[i]);
        free(t->values[i]);
    }
    memset(t, 0, sizeof *t);
}

static void
queue_drop(struct sigil_rpc_call *call)
{
    if (call->conn != NULL)
        call->conn->queued -= rpc_outq_len(&call->q);
    rpc_outq_free(&call->q);
}

/* Keeps the connection's count of buffered request bytes in step with this call's buffers
 * (their capacity: that is the memory a client can make us hold). */
static void
inbound_sync(struct sigil_rpc_call *call)
{
    size_t cur = call->df.msg.cap + call->req.cap;

    if (call->conn != NULL)
        call->conn->inbound = call->conn->inbound - call->inbound + cur;
    call->inbound = cur;
}

static void
call_unlink(struct sigil_rpc_call *call)
{
    struct srv_conn *sc = call->conn;

    if (sc == NULL)
        return;
    queue_drop(call);
    sc->inbound -= call->inbound;
    call->inbound = 0;
    if (call->prev != NULL)
        call->prev->next = call->next;
    else
        sc->calls = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
    call->conn = NULL;
}

static void
call_free(struct sigil_rpc_call *call)
{
    rpc_timer_stop(call->deadline_timer);
    call_unlink(call);
    rpc_md_free(&call->md);
    free(call->path);
    sigil_rpc_deframer_free(&call->df);
    sigil_buf_free(&call->req);
    rpc_outq_free(&call->q);
    trailers_free(&call->tr);
    free(call);
}

/* Freed once nghttp2 forgot the stream and the handler let go (never inside on_cancel). */
static void
call_maybe_free(struct sigil_rpc_call *call)
{
    if (!call->stream_open && !call->handler_holds && !call->in_cancel)
        call_free(call);
}

/* Marks the call gone and, if a handler holds it, runs its on_cancel (once). */
static void
notify_cancel(struct sigil_rpc_call *call)
{
    if (call->cancelled)
        return;
    call->cancelled = true;
    rpc_timer_stop(call->deadline_timer);
    call->deadline_timer = NULL;
    if (!call->handler_holds || call->cbs.on_cancel == NULL)
        return;
    call->in_cancel = true;
    call->cbs.on_cancel(call, call->ud);
    call->in_cancel = false;
    call->handler_holds = false;
}

void
rpc_srv_conn_drop_calls(struct srv_conn *sc)
{
    struct sigil_rpc_call *call, *next;

    for (call = sc->calls; call != NULL; call = next) {
        next = call->next;
        call->stream_open = false;
        notify_cancel(call);
        call_unlink(call);
        call_maybe_free(call);
    }
}

/* ---- responses ---- */

static struct h2_session *
call_h2(const struct sigil_rpc_call *call)
{
    return call->conn != NULL ? call->conn->c.h2 : NULL;
}

static void
call_kick(struct sigil_rpc_call *call)
{
    if (call->conn != NULL)
        rpc_conn_kick(&call->conn->c);
}

static int
send_response_headers(struct sigil_rpc_call *call, const struct sigil_rpc_md *md, size_t n)
{
    struct h2_nv nv[2 + RPC_MD_MAX];
    struct rpc_nv_tmp tmp = {0};
    struct h2_session *h2 = call_h2(call);
    int r;

    if (h2 == NULL)
        return SIGIL_ERR_CANCELLED;
    nv[0] = rpc_nv(":status", "200");
    nv[1] = rpc_nv("content-type", "application/grpc");
    if ((r = rpc_md_to_nv(md, n, nv + 2, &tmp)) == 0 &&
        (r = h2_submit_response(h2, call->sid, nv, 2 + n, true)) == 0)
        call->headers_sent = true;
    rpc_nv_tmp_free(&tmp);
    call_kick(call);
    return r;
}

/* grpc-status, grpc-message and the stored trailing metadata, after `pre` leading fields. */
static size_t
trailer_nv(const struct sigil_rpc_call *call, struct h2_nv *nv, size_t pre, char *code)
{
    size_t n = pre;

    snprintf(code, 4, "%d", call->tr.code);
    nv[n++] = rpc_nv("grpc-status", code);
    if (call->tr.message != NULL && call->tr.message[0] != '\0')
        nv[n++] = rpc_nv("grpc-message", call->tr.message);
    for (size_t i = 0; i < call->tr.n; i++)
        nv[n++] = rpc_nv(call->tr.names[i], call->tr.values[i]);
    return n;
}

static int
submit_trailers(struct sigil_rpc_call *call)
{
    struct h2_nv nv[2 + RPC_MD_MAX];
    struct h2_session *h2 = call_h2(call);
    char code[4];
    size_t n = trailer_nv(call, nv, 0, code);

    if (h2 == NULL)
        return SIGIL_ERR_CANCELLED;
    call->trailers_sent = true;
    return h2_submit_trailers(h2, call->sid, nv, n);
}

/* A response that is only a header block: ":status 200" and the status, END_STREAM. */
static void
submit_trailers_only(struct sigil_rpc_call *call)
{
    struct h2_nv nv[4 + RPC_MD_MAX];
    struct h2_session *h2 = call_h2(call);
    char code[4];
    size_t n;

    if (h2 == NULL)
        return;
    nv[0] = rpc_nv(":status", "200");
    nv[1] = rpc_nv("content-type", "application/grpc");
    n = trailer_nv(call, nv, 2, code);
    call->headers_sent = true;
    call->trailers_sent = true;
    if (h2_submit_response(h2, call->sid, nv, n, false) != 0)
        h2_reset(h2, call->sid, H2_INTERNAL_ERROR);
    call_kick(call);
}

/* Stores the status and sends it now (trailers-only) or after the queued messages. */
static int
respond_status(struct sigil_rpc_call *call, int code, const char *message,
               const struct sigil_rpc_md *md, size_t n)
{
    struct h2_nv nv[RPC_MD_MAX];
    struct rpc_nv_tmp tmp = {0};
    struct sigil_buf enc = {0};
    int r = 0;

    if (call->finished)
        return SIGIL_ERR_STATE;
    call->finished = true;
    call->tr.code = code;
    if (message != NULL && message[0] != '\0') {
        if (sigil_rpc_percent_encode(message, strlen(message), &enc) != 0 ||
            (call->tr.message = sigil_buf_strdup(&enc)) == NULL)
            r = SIGIL_ERR_NOMEM;
        sigil_buf_free(&enc);
    }
    if (r == 0 && n > 0 && (r = rpc_md_to_nv(md, n, nv, &tmp)) == 0) {
        for (size_t i = 0; i < n; i++) {
            call->tr.names[i] = strndup(nv[i].name, nv[i].namelen);
            call->tr.values[i] = strndup(nv[i].value, nv[i].valuelen);
            call->tr.n++;
            if (call->tr.names[i] == NULL || call->tr.values[i] == NULL) {
                r = SIGIL_ERR_NOMEM;
                break;
            }
        }
    }
    rpc_nv_tmp_free(&tmp);
    if (r != 0) {
        /* the status still goes out, without what could not be kept */
        trailers_free(&call->tr);
        call->tr.code = code == SIGIL_RPC_OK ? SIGIL_RPC_INTERNAL : code;
    }
    if (!call->headers_sent) {
        queue_drop(call);
        submit_trailers_only(call);
    } else if (call_h2(call) != NULL) {
        h2_resume(call_h2(call), call->sid);
        call_kick(call);
    }
    return r;
}

/* Ends a call on the server's initiative (deadline, bad input): the handler, if running, is
 * cancelled and queued messages are dropped so the status goes out at once. */
static void
call_abort(struct sigil_rpc_call *call, int code, const char *message)
{
    if (call->finished)
        return;
    queue_drop(call);
    /* nothing more is read for this call: its request buffers can go now (the deframer's
     * once it has returned, if it is the one calling us) */
    if (!call->in_feed)
        sigil_rpc_deframer_free(&call->df);
    if (!call->started)
        sigil_buf_free(&call->req);
    inbound_sync(call);
    if (call->started)
        notify_cancel(call);
    respond_status(call, code, message, NULL, 0);
}

/* An HTTP-level refusal (not gRPC): just a status line, END_STREAM. */
static void
respond_http(struct sigil_rpc_call *call, const char *status)
{
    struct h2_nv nv[1] = {rpc_nv(":status", status)};
    struct h2_session *h2 = call_h2(call);

    call->finished = call->headers_sent = call->trailers_sent = true;
    if (h2 != NULL && h2_submit_response(h2, call->sid, nv, 1, false) != 0)
        h2_reset(h2, call->sid, H2_INTERNAL_ERROR);
    call_kick(call);
}

static void
deadline_fired(void *arg)
{
    struct sigil_rpc_call *call = arg;

    call->deadline_timer = NULL;
    call_abort(call, SIGIL_RPC_DEADLINE_EXCEEDED, "deadline exceeded");
}

static void
invoke(struct sigil_rpc_call *call)
{
    call->started = true;
    call->handler_holds = true;
    call->m->handler(call, call->m->arg);
}

/* ---- HTTP/2 callbacks of a server session ---- */

static bool
name_is(const uint8_t *name, size_t nl, const char *s)
{
    return nl == strlen(s) && memcmp(name, s, nl) == 0;
}

/* "application/grpc", optionally followed by "+proto" style suffixes or parameters. */
static bool
content_type_is_grpc(const uint8_t *v, size_t n)
{
    static const char ct[] = "application/grpc";
    const size_t l = sizeof ct - 1;

    return n >= l && memcmp(v, ct, l) == 0 && (n == l || v[l] == '+' || v[l] == ';');
}

static int
srv_begin_request(void *ud, int32_t sid)
{
    struct srv_conn *sc = ud;
    struct sigil_rpc_call *call = calloc(1, sizeof *call);

    if (call == NULL)
        return H2_CB_RESET;
    call->conn = sc;
    call->loop = sc->srv->loop;
    call->sid = sid;
    call->stream_open = true;
    sigil_rpc_deframer_init(&call->df, sc->srv->o.max_message);
    call->next = sc->calls;
    if (sc->calls != NULL)
        sc->calls->prev = call;
    sc->calls = call;
    h2_set_stream_data(sc->c.h2, sid, call);
    return 0;
}

static int
srv_header(void *ud, int32_t sid, void *sud, enum h2_cat cat, const uint8_t *name, size_t nl,
           const uint8_t *value, size_t vl)
{
    struct srv_conn *sc = ud;
    struct sigil_rpc_call *call = sud;

    (void)sid;
    if (cat != H2_CAT_REQUEST) /* request trailers carry nothing gRPC uses */
        return 0;
    /* RFC 9113 §6.5.2 counts 32 bytes of overhead per field */
    call->hdr_bytes += nl + vl + 32;
    if (call->hdr_bytes > sc->srv->o.max_header_list) {
        call->hdr_overflow = true;
        return 0;
    }
    if (nl > 0 && name[0] == ':') {
        if (name_is(name, nl, ":method")) {
            call->is_post = vl == 4 && memcmp(value, "POST", 4) == 0;
        } else if (name_is(name, nl, ":path")) {
            free(call->path);
            if ((call->path = strndup((const char *)value, vl)) == NULL)
                call->bad_md = true;
        }
        return 0;
    }
    if (name_is(name, nl, "content-type")) {
        call->ct_seen = true;
        call->ct_grpc = content_type_is_grpc(value, vl);
    } else if (name_is(name, nl, "grpc-timeout")) {
        call->has_timeout = true;
        call->bad_timeout =
            sigil_rpc_timeout_parse((const char *)value, vl, &call->timeout_ms) != 0;
    } else if (name_is(name, nl, "grpc-encoding")) {
        call->compressed_ok = !(vl == 8 && memcmp(value, "identity", 8) == 0);
    }
    if (rpc_md_add(&call->md, name, nl, value, vl) != 0)
        call->bad_md = true;
    return 0;
}

static const struct rpc_method *
find_method(const struct sigil_rpc_server *srv, const char *path)
{
    for (size_t i = 0; path != NULL && i < srv->nmethods; i++)
        if (strcmp(srv->methods[i]->path, path) == 0)
            return srv->methods[i];
    return NULL;
}

static bool
is_unary_request(const struct sigil_rpc_call *call)
{
    return call->kind == SIGIL_RPC_UNARY || call->kind == SIGIL_RPC_SERVER_STREAM;
}

static int
srv_headers_done(void *ud, int32_t sid, void *sud, enum h2_cat cat)
{
    struct srv_conn *sc = ud;
    struct sigil_rpc_server *srv = sc->srv;
    struct sigil_rpc_call *call = sud;
    const struct rpc_method *m;
    const uint8_t *v;
    size_t vl;
    char msg[160];

    (void)sid;
    if (cat != H2_CAT_REQUEST || call->finished)
        return 0;
    if (call->hdr_overflow) {
        snprintf(msg, sizeof msg, "request headers larger than %u bytes",
                 (unsigned)srv->o.max_header_list);
        respond_status(call, SIGIL_RPC_RESOURCE_EXHAUSTED, msg, NULL, 0);
        return 0;
    }
    /* gRPC over HTTP/2: anything but application/grpc* is not for us (HTTP 415) */
    if (!call->ct_grpc) {
        respond_http(call, "415");
        return 0;
    }
    if (!call->is_post) {
        respond_status(call, SIGIL_RPC_INTERNAL, "gRPC requests must use POST", NULL, 0);
        return 0;
    }
    if (call->bad_md) {
        respond_status(call, SIGIL_RPC_INTERNAL, "malformed request metadata", NULL, 0);
        return 0;
    }
    if ((m = find_method(srv, call->path)) == NULL) {
        snprintf(msg, sizeof msg, "unknown method %.100s", call->path ? call->path : "(none)");
        respond_status(call, SIGIL_RPC_UNIMPLEMENTED, msg, NULL, 0);
        return 0;
    }
    if (call->bad_timeout) {
        respond_status(call, SIGIL_RPC_INTERNAL, "malformed grpc-timeout", NULL, 0);
        return 0;
    }
    /* E-2 / H-8: exactly one entry with exactly the expected value */
    if (m->req_header != NULL && (rpc_md_get(&call->md, m->req_header, &v, &vl) != 1 ||
                                  vl != strlen(m->req_value) || memcmp(v, m->req_value, vl) != 0)) {
        respond_status(call, SIGIL_RPC_INVALID_ARGUMENT, m->req_why, NULL, 0);
        return 0;
    }
    call->m = m;
    call->kind = m->kind;
    srv->stats.calls++;
    if (call->has_timeout) {
        call->deadline = uv_now(call->loop) + call->timeout_ms;
        call->deadline_timer =
            rpc_timer_start(call->loop, &srv->tr, call->timeout_ms, deadline_fired, call);
        if (call->deadline_timer == NULL) {
            respond_status(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
            return 0;
        }
    }
    if (!is_unary_request(call))
        invoke(call);
    return 0;
}

static int
srv_on_msg(void *arg, bool compressed, const uint8_t *msg, size_t len)
{
    struct sigil_rpc_call *call = arg;

    if (compressed) {
        call_abort(call, call->compressed_ok ? SIGIL_RPC_UNIMPLEMENTED : SIGIL_RPC_INTERNAL,
                   call->compressed_ok
                       ? "compressed messages are not supported (grpc-encoding identity only)"
                       : "compressed flag set without grpc-encoding");
        return STOP;
    }
    if (is_unary_request(call)) {
        if (++call->nreq > 1) {
            call_abort(call, SIGIL_RPC_INTERNAL, "more than one request message");
            return STOP;
        }
        if (sigil_buf_append(&call->req, msg, len) != 0) {
            call_abort(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
            return STOP;
        }
        return 0;
    }
    if (call->cbs.on_message != NULL)
        call->cbs.on_message(call, call->ud, msg, len);
    return call->finished || call->cancelled ? STOP : 0;
}

static int
srv_data(void *ud, int32_t sid, void *sud, const uint8_t *p, size_t n)
{
    struct sigil_rpc_call *call = sud;
    char msg[128];
    int r;

    (void)ud;
    (void)sid;
    if (call->finished || call->cancelled || call->m == NULL)
        return 0;
    call->in_feed = true;
    r = sigil_rpc_deframer_feed(&call->df, p, n, srv_on_msg, call);
    call->in_feed = false;
    if (call->finished)
        sigil_rpc_deframer_free(&call->df);
    inbound_sync(call);
    if (call->conn != NULL && call->conn->inbound > call->conn->srv->o.max_conn_inbound) {
        call_abort(call, SIGIL_RPC_RESOURCE_EXHAUSTED,
                   "too much request data buffered on this connection");
        return 0;
    }
    if (r == 0 || r == STOP)
        return 0;
    if (r == SIGIL_ERR_RANGE) {
        /* refused on the length prefix: the payload is never buffered */
        snprintf(msg, sizeof msg, "request message of %u bytes is larger than the limit of %zu",
                 (unsigned)call->df.want, call->df.max);
        call_abort(call, SIGIL_RPC_RESOURCE_EXHAUSTED, msg);
    } else if (r == SIGIL_ERR_PROTOCOL) {
        call_abort(call, SIGIL_RPC_INTERNAL, "malformed gRPC message framing");
    } else {
        call_abort(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    return 0;
}

static int
srv_end_stream(void *ud, int32_t sid, void *sud)
{
    struct sigil_rpc_call *call = sud;

    (void)ud;
    (void)sid;
    if (call->finished || call->cancelled || call->m == NULL)
        return 0;
    if (!sigil_rpc_deframer_idle(&call->df)) {
        call_abort(call, SIGIL_RPC_INTERNAL, "request ended inside a message");
        return 0;
    }
    if (is_unary_request(call)) {
        if (call->nreq != 1)
            call_abort(call, SIGIL_RPC_INTERNAL, "no request message");
        else
            invoke(call);
        return 0;
    }
    if (call->cbs.on_half_close != NULL)
        call->cbs.on_half_close(call, call->ud);
    return 0;
}

static void
srv_stream_close(void *ud, int32_t sid, void *sud, uint32_t error)
{
    struct sigil_rpc_call *call = sud;

    (void)ud;
    (void)sid;
    (void)error;
    call->stream_open = false;
    /* a handler still holding the call learns it is gone (reset, or the deadline's end) */
    notify_cancel(call);
    call_unlink(call);
    call_maybe_free(call);
}

/* Rapid Reset (CVE-2023-44487): more than rst_limit client resets within rst_window_ms
 * (a sliding window over the latest resets) ends the connection with ENHANCE_YOUR_CALM. */
static int
srv_rst_recv(void *ud, int32_t sid)
{
    struct srv_conn *sc = ud;
    struct sigil_rpc_server *srv = sc->srv;
    unsigned lim = srv->o.rst_limit;
    uint64_t now = uv_now(srv->loop);

    (void)sid;
    if (sc->calm)
        return 0;
    if (sc->rst_n < lim) {
        sc->rst_times[(sc->rst_head + sc->rst_n++) % lim] = now;
        return 0;
    }
    /* the ring is full: its oldest entry is lim resets ago */
    if (now - sc->rst_times[sc->rst_head] < srv->o.rst_window_ms) {
        sc->calm = true;
        srv->stats.rapid_reset_goaways++;
        h2_terminate(sc->c.h2, H2_ENHANCE_YOUR_CALM);
        rpc_conn_close_after_flush(&sc->c, "rpc: too many stream resets from the client "
                                           "(HTTP/2 Rapid Reset, CVE-2023-44487)");
        return 0;
    }
    sc->rst_times[sc->rst_head] = now;
    sc->rst_head = (sc->rst_head + 1) % lim;
    return 0;
}

static void
srv_goaway_recv(void *ud, int32_t last_sid, uint32_t error)
{
    (void)ud;
    (void)last_sid;
    (void)error;
}

static ssize_t
srv_read(void *ud, int32_t sid, void *sud, uint8_t *buf, size_t len, uint32_t *flags)
{
    struct srv_conn *sc = ud;
    struct sigil_rpc_call *call = sud;
    size_t k = rpc_outq_read(&call->q, buf, len);

    (void)sid;
    sc->queued -= k;
    if (rpc_outq_len(&call->q) == 0 && call->finished) {
        *flags |= H2_FLAG_EOF | H2_FLAG_NO_END_STREAM;
        if (submit_trailers(call) != 0)
            return H2_READ_FATAL;
        return (ssize_t)k;
    }
    return k == 0 ? H2_READ_DEFER : (ssize_t)k;
}

const struct h2_callbacks rpc_srv_h2_callbacks = {
    .begin_request = srv_begin_request,
    .header = srv_header,
    .headers_done = srv_headers_done,
    .data = srv_data,
    .end_stream = srv_end_stream,
    .stream_close = srv_stream_close,
    .rst_recv = srv_rst_recv,
    .goaway_recv = srv_goaway_recv,
    .read = srv_read,
};

/* ---- the handler's API ---- */

void
sigil_rpc_call_set_cbs(struct sigil_rpc_call *call, const struct sigil_rpc_call_cbs *cbs, void *ud)
{
    call->cbs = *cbs;
    call->ud = ud;
}

const uint8_t *
sigil_rpc_call_request(const struct sigil_rpc_call *call, size_t *len)
{
    *len = 0;
    if (call->m == NULL || !is_unary_request(call) || call->nreq != 1)
        return NULL;
    *len = call->req.len;
    return call->req.data != NULL ? call->req.data : (const uint8_t *)"";
}

const char *
sigil_rpc_call_path(const struct sigil_rpc_call *call)
{
    return call->path;
}

size_t
sigil_rpc_call_metadata(const struct sigil_rpc_call *call, const char *name, const uint8_t **value,
                        size_t *len)
{
    return rpc_md_get(&call->md, name, value, len);
}

const struct sigil_rpc_peer *
sigil_rpc_call_peer(const struct sigil_rpc_call *call)
{
    return call->cancelled || call->conn == NULL ? NULL : &call->conn->peer;
}

uint64_t
sigil_rpc_call_deadline(const struct sigil_rpc_call *call)
{
    return call->has_timeout ? call->deadline : 0;
}

uv_loop_t *
sigil_rpc_call_loop(const struct sigil_rpc_call *call)
{
    return call->loop;
}

int
sigil_rpc_call_send_headers(struct sigil_rpc_call *call, const struct sigil_rpc_md *md, size_t n)
{
    if (call->cancelled)
        return SIGIL_ERR_CANCELLED;
    if (call->finished || call->headers_sent)
        return SIGIL_ERR_STATE;
    return send_response_headers(call, md, n);
}

int
sigil_rpc_call_send(struct sigil_rpc_call *call, const void *msg, size_t len)
{
    struct srv_conn *sc = call->conn;
    size_t need = len + 5;
    int r;

    if (call->cancelled || sc == NULL)
        return SIGIL_ERR_CANCELLED;
    if (call->finished || call->m == NULL ||
        (call->nsent > 0 &&
         (call->kind == SIGIL_RPC_UNARY || call->kind == SIGIL_RPC_CLIENT_STREAM)))
        return SIGIL_ERR_STATE;
    /* The outbound caps: a peer that does not read makes sends fail, never memory grow. */
    if (len > UINT32_MAX || rpc_outq_len(&call->q) + need > sc->srv->o.max_outbound ||
        sc->queued + need > sc->srv->o.max_conn_outbound)
        return SIGIL_ERR_RANGE;
    if (!call->headers_sent && (r = send_response_headers(call, NULL, 0)) != 0)
        return r;
    if ((r = rpc_outq_push(&call->q, msg, len)) != 0)
        return r;
    sc->queued += need;
    call->nsent++;
    h2_resume(sc->c.h2, call->sid);
    rpc_conn_kick(&sc->c);
    return 0;
}

size_t
sigil_rpc_call_queued(const struct sigil_rpc_call *call)
{
    return rpc_outq_len(&call->q);
}

int
sigil_rpc_call_finish(struct sigil_rpc_call *call, int code, const char *message,
                      const struct sigil_rpc_md *md, size_t n)
{
    int r = 0;

    if (call->cancelled || call->conn == NULL) {
        call->handler_holds = false;
        call_maybe_free(call);
        return SIGIL_ERR_CANCELLED;
    }
    if (code < 0 || code > SIGIL_RPC_UNAUTHENTICATED || n > RPC_MD_MAX) {
        code = SIGIL_RPC_INTERNAL;
        message = "the server answered with an invalid status";
        md = NULL;
        n = 0;
        r = SIGIL_ERR_INVALID;
    }
    if (respond_status(call, code, message, md, n) == SIGIL_ERR_INVALID)
        r = SIGIL_ERR_INVALID;
    call->handler_holds = false;
    call_maybe_free(call);
    return r;
}
