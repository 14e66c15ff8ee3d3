/* The connection engine under the gRPC server and client: reads a libuv stream, runs TLS and
 * the HTTP/2 session over it, and writes with at most one uv_write in flight, pulling from
 * nghttp2 only when the previous write finished: that is what lets a peer that does not read
 * push back all the way to the per-call queues (and their caps). Plus timers and metadata. */
#include "rpc_int.h"
#include "sigil/encoding.h"
#include "sigil/err.h"

#include <stdlib.h>
#include <string.h>

/* ---- timers ---- */

struct rpc_timer {
    uv_timer_t t;
    struct rpc_tracker *tr;
    void (*fn)(void *arg);
    void *arg;
    bool closing;
};

static void
timer_closed(uv_handle_t *h)
{
    struct rpc_timer *t = h->data;
    struct rpc_tracker *tr = t->tr;

    free(t);
    if (--tr->open == 0 && tr->drained != NULL)
        tr->drained(tr);
}

static void
timer_fired(uv_timer_t *h)
{
    struct rpc_timer *t = h->data;

    if (t->closing)
        return;
    /* closing first: fn may call rpc_timer_stop on this very timer */
    t->closing = true;
    t->fn(t->arg);
    uv_close((uv_handle_t *)&t->t, timer_closed);
}

struct rpc_timer *
rpc_timer_start(uv_loop_t *loop, struct rpc_tracker *tr, uint64_t ms, void (*fn)(void *arg),
                void *arg)
{
    struct rpc_timer *t = calloc(1, sizeof *t);

    if (t == NULL)
        return NULL;
    if (uv_timer_init(loop, &t->t) != 0) {
        free(t);
        return NULL;
    }
    t->t.data = t;
    t->tr = tr;
    t->fn = fn;
    t->arg = arg;
    tr->open++;
    uv_timer_start(&t->t, timer_fired, ms, 0);
    return t;
}

void
rpc_timer_stop(struct rpc_timer *t)
{
    if (t == NULL || t->closing)
        return;
    t->closing = true;
    uv_timer_stop(&t->t);
    uv_close((uv_handle_t *)&t->t, timer_closed);
}

/* ---- the connection ---- */

/* Filled and consumed within one read callback, so one per thread is enough. */
static _Thread_local char read_buf[65536];

static void flush(struct rpc_conn *c);

static void
conn_handle_closed(uv_handle_t *h)
{
    struct rpc_conn *c = h->data;

    if (--c->handles == 0)
        c->ops->freed(c);
}

/* The one place a connection is torn down; its memory stays valid until `freed`. */
static void
teardown(struct rpc_conn *c)
{
    c->closed = true;
    rpc_timer_stop(c->hs_timer);
    c->hs_timer = NULL;
    rpc_timer_stop(c->linger);
    c->linger = NULL;
    c->ops->closing(c);
    h2_session_free(c->h2);
    c->h2 = NULL;
    sigil_tls_conn_free(c->tls);
    c->tls = NULL;
    uv_idle_stop(&c->idle);
    uv_close((uv_handle_t *)&c->idle, conn_handle_closed);
    if (c->has_io)
        uv_close(&c->io.h, conn_handle_closed);
}

void
rpc_conn_close(struct rpc_conn *c, const char *why)
{
    if (c->ended)
        return;
    c->ended = true;
    if (c->why == NULL)
        c->why = why;
    /* nghttp2 is on the stack: the session is freed once it has returned */
    if (c->depth > 0)
        return;
    teardown(c);
}

static void
linger_expired(void *arg)
{
    struct rpc_conn *c = arg;

    c->linger = NULL;
    rpc_conn_close(c, c->why);
}

void
rpc_conn_close_after_flush(struct rpc_conn *c, const char *why)
{
    if (c->ended || c->close_after_flush)
        return;
    c->close_after_flush = true;
    if (c->why == NULL)
        c->why = why;
    if (c->has_io)
        uv_read_stop(&c->io.s);
    /* a peer that stopped reading does not keep the connection alive */
    c->linger = rpc_timer_start(c->loop, c->tr, RPC_LINGER_MS, linger_expired, c);
    rpc_conn_kick(c);
}

int
rpc_conn_init(struct rpc_conn *c, uv_loop_t *loop, const struct rpc_conn_ops *ops,
              struct rpc_tracker *tr)
{
    c->loop = loop;
    c->ops = ops;
    c->tr = tr;
    if (uv_idle_init(loop, &c->idle) != 0)
        return SIGIL_ERR_IO;
    c->idle.data = c;
    c->wreq.data = c;
    c->handles = 1;
    return 0;
}

void
rpc_conn_adopt_io(struct rpc_conn *c)
{
    c->io.h.data = c;
    c->has_io = true;
    c->handles++;
}

static void
on_idle(uv_idle_t *h)
{
    struct rpc_conn *c = h->data;

    uv_idle_stop(h);
    flush(c);
}

void
rpc_conn_kick(struct rpc_conn *c)
{
    if (!c->closed)
        uv_idle_start(&c->idle, on_idle);
}

static void
process_plain(struct rpc_conn *c, const uint8_t *p, size_t n)
{
    int r;

    if (c->h2 == NULL || c->ended || c->close_after_flush || n == 0)
        return;
    c->depth++;
    r = h2_session_recv(c->h2, p, n);
    c->depth--;
    if (c->ended) {
        if (!c->closed)
            teardown(c);
        return;
    }
    if (r != 0) {
        c->proto_error = true;
        rpc_conn_close_after_flush(c, "HTTP/2 protocol error from the peer");
    }
}

static void
tls_input(struct rpc_conn *c, const uint8_t *p, size_t n)
{
    const char *why = NULL;
    int r;

    if (sigil_tls_conn_feed(c->tls, p, n) != 0) {
        rpc_conn_close(c, "out of memory");
        return;
    }
    r = sigil_tls_conn_read(c->tls, &c->in, &why);
    if (c->h2 == NULL && sigil_tls_conn_ready(c->tls)) {
        rpc_timer_stop(c->hs_timer);
        c->hs_timer = NULL;
        if (c->ops->ready(c) != 0) {
            rpc_conn_close(c, "cannot start the HTTP/2 session");
            return;
        }
    }
    if (c->in.len > 0) {
        process_plain(c, c->in.data, c->in.len);
        c->in.len = 0;
    }
    if (r != 0 && !c->ended)
        rpc_conn_close_after_flush(c, why != NULL ? why : "TLS failed");
}

static void
on_alloc(uv_handle_t *h, size_t size, uv_buf_t *b)
{
    (void)h;
    (void)size;
    b->base = read_buf;
    b->len = sizeof read_buf;
}

static void
on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct rpc_conn *c = s->data;

    if (c->ended || n == 0)
        return;
    if (n < 0) {
        rpc_conn_close(c, n == UV_EOF ? "the peer closed the connection" : "read error");
        return;
    }
    if (c->tls != NULL)
        tls_input(c, (const uint8_t *)b->base, (size_t)n);
    else
        process_plain(c, (const uint8_t *)b->base, (size_t)n);
    flush(c);
}

static void
on_write(uv_write_t *req, int status)
{
    struct rpc_conn *c = req->data;

    c->writing = false;
    c->wbuf.len = 0;
    if (c->closed)
        return;
    if (status < 0) {
        rpc_conn_close(c, "write error");
        return;
    }
    flush(c);
}

/* Pulls frames from nghttp2 (and encrypts them) into wbuf and starts one write. */
static void
flush(struct rpc_conn *c)
{
    uv_buf_t b;
    int r;

    if (c->closed || c->writing)
        return;
    if (c->depth > 0) {
        rpc_conn_kick(c);
        return;
    }
    for (;;) {
        if (c->h2 != NULL && !c->ended) {
            struct sigil_buf *dst = c->tls != NULL ? &c->out : &c->wbuf;
            c->depth++;
            r = h2_session_send(c->h2, dst, RPC_WRITE_CHUNK);
            c->depth--;
            if (r != 0)
                rpc_conn_close(c, "HTTP/2 send failed");
            else if (c->tls != NULL && c->out.len > 0 &&
                     sigil_tls_conn_write(c->tls, c->out.data, c->out.len) != 0)
                rpc_conn_close(c, "TLS write failed");
            c->out.len = 0;
        }
        if (c->ended) {
            if (!c->closed)
                teardown(c);
            return;
        }
        if (c->tls != NULL && sigil_tls_conn_take(c->tls, &c->wbuf) != 0) {
            rpc_conn_close(c, "out of memory");
            return;
        }
        if (c->wbuf.len == 0)
            break;
        if (!c->has_io) { /* fed from a buffer: the output goes nowhere */
            c->wbuf.len = 0;
            continue;
        }
        b = uv_buf_init((char *)c->wbuf.data, (unsigned)c->wbuf.len);
        if (uv_write(&c->wreq, &c->io.s, &b, 1, on_write) != 0) {
            c->wbuf.len = 0;
            rpc_conn_close(c, "write error");
            return;
        }
        c->writing = true;
        return;
    }
    if (c->close_after_flush || (c->h2 != NULL && !h2_session_alive(c->h2)))
        rpc_conn_close(c, "the HTTP/2 session ended");
}

static void
hs_expired(void *arg)
{
    struct rpc_conn *c = arg;

    c->hs_timer = NULL;
    rpc_conn_close(c, "TLS handshake timed out");
}

int
rpc_conn_start(struct rpc_conn *c, struct sigil_tls_ctx *tls, const char *server_name,
               uint64_t hs_timeout_ms)
{
    const char *why = NULL;
    int r;

    if (tls != NULL) {
        if ((r = sigil_tls_conn_new(tls, server_name, &c->tls)) != 0)
            return r;
        if (hs_timeout_ms > 0 &&
            (c->hs_timer = rpc_timer_start(c->loop, c->tr, hs_timeout_ms, hs_expired, c)) == NULL)
            return SIGIL_ERR_NOMEM;
        /* a client's first flight (ClientHello) is produced here */
        if ((r = sigil_tls_conn_read(c->tls, &c->in, &why)) != 0)
            return r;
    } else if ((r = c->ops->ready(c)) != 0) {
        return r;
    }
    if (c->has_io && uv_read_start(&c->io.s, on_alloc, on_read) != 0)
        return SIGIL_ERR_IO;
    flush(c);
    return 0;
}

void
rpc_conn_feed_plain(struct rpc_conn *c, const uint8_t *p, size_t n)
{
    process_plain(c, p, n);
    flush(c);
}

/* ---- metadata ---- */

/* gRPC senders may leave out base64 padding; sigil_b64_decode wants it. */
static int
b64_decode_lenient(const uint8_t *v, size_t n, uint8_t **out, size_t *outlen)
{
    size_t l = n, padded;
    char *tmp;
    int r;

    while (l > 0 && v[l - 1] == '=')
        l--;
    if (n - l > 2 || l % 4 == 1)
        return SIGIL_ERR_INVALID;
    padded = (l + 3) / 4 * 4;
    if ((tmp = malloc(padded + 1)) == NULL)
        return SIGIL_ERR_NOMEM;
    memcpy(tmp, v, l);
    memset(tmp + l, '=', padded - l);
    r = sigil_b64_decode(tmp, padded, out, outlen);
    free(tmp);
    return r;
}

static bool
ends_with_bin(const char *name, size_t n)
{
    return n > 4 && memcmp(name + n - 4, "-bin", 4) == 0;
}

int
rpc_md_add(struct rpc_mdstore *m, const uint8_t *name, size_t nl, const uint8_t *value, size_t vl)
{
    struct rpc_md_entry e = {0};
    int r = SIGIL_ERR_NOMEM;

    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 8;
        struct rpc_md_entry *v = realloc(m->v, cap * sizeof *v);
        if (v == NULL)
            return SIGIL_ERR_NOMEM;
        m->v = v;
        m->cap = cap;
    }
    if ((e.name = malloc(nl + 1)) == NULL)
        goto out;
    memcpy(e.name, name, nl);
    e.name[nl] = '\0';
    if (ends_with_bin(e.name, nl)) {
        if ((r = b64_decode_lenient(value, vl, &e.value, &e.len)) != 0)
            goto out;
    } else {
        /* one spare byte so that text values read as C strings too */
        if ((e.value = malloc(vl + 1)) == NULL)
            goto out;
        if (vl > 0)
            memcpy(e.value, value, vl);
        e.value[vl] = '\0';
        e.len = vl;
    }
    m->v[m->n++] = e;
    return 0;
out:
    free(e.name);
    free(e.value);
    return r;
}

size_t
rpc_md_get(const struct rpc_mdstore *m, const char *name, const uint8_t **value, size_t *len)
{
    size_t count = 0;

    if (value != NULL)
        *value = NULL;
    if (len != NULL)
        *len = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->v[i].name, name) != 0)
            continue;
        if (count++ == 0) {
            if (value != NULL)
                *value = m->v[i].value;
            if (len != NULL)
                *len = m->v[i].len;
        }
    }
    return count;
}

void
rpc_md_free(struct rpc_mdstore *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].name);
        free(m->v[i].value);
    }
    free(m->v);
    memset(m, 0, sizeof *m);
}

static bool
md_name_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 256 || strncmp(s, "grpc-", 5) == 0 || strcmp(s, "content-type") == 0 ||
        strcmp(s, "te") == 0 || strcmp(s, "user-agent") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

struct h2_nv
rpc_nv(const char *name, const char *value)
{
    return (struct h2_nv){name, strlen(name), value, strlen(value)};
}

int
rpc_md_to_nv(const struct sigil_rpc_md *md, size_t n, struct h2_nv *nv, struct rpc_nv_tmp *tmp)
{
    if (n > RPC_MD_MAX)
        return SIGIL_ERR_RANGE;
    for (size_t i = 0; i < n; i++) {
        size_t nl;
        if (md[i].name == NULL || !md_name_ok(md[i].name) || (md[i].value == NULL && md[i].len))
            return SIGIL_ERR_INVALID;
        nl = strlen(md[i].name);
        if (ends_with_bin(md[i].name, nl)) {
            char *s =
                sigil_b64_encode(md[i].len > 0 ? md[i].value : (const uint8_t *)"", md[i].len);
            if (s == NULL)
                return SIGIL_ERR_NOMEM;
            tmp->s[tmp->n++] = s;
            nv[i] = rpc_nv(md[i].name, s);
            continue;
        }
        for (size_t j = 0; j < md[i].len; j++)
            if (md[i].value[j] < 0x20 || md[i].value[j] > 0x7e)
                return SIGIL_ERR_INVALID;
        nv[i] = (struct h2_nv){md[i].name, nl, (const char *)md[i].value, md[i].len};
    }
    return 0;
}

void
rpc_nv_tmp_free(struct rpc_nv_tmp *tmp)
{
    for (size_t i = 0; i < tmp->n; i++)
        free(tmp->s[i]);
    tmp->n = 0;
}

/* ---- outbound queues ---- */

int
rpc_outq_push(struct rpc_outq *q, const void *msg, size_t len)
{
    /* compact when more than half of the buffer was already read */
    if (q->off > 0 && q->off >= q->b.len / 2) {
        sigil_buf_consume(&q->b, q->off);
        q->off = 0;
    }
    return sigil_rpc_frame(&q->b, msg, len);
}

size_t
rpc_outq_read(struct rpc_outq *q, uint8_t *buf, size_t len)
{
    size_t k = rpc_outq_len(q);

    if (k > len)
        k = len;
    if (k == 0)
        return 0;
    memcpy(buf, q->b.data + q->off, k);
    q->off += k;
    if (q->off == q->b.len) {
        q->b.len = 0;
        q->off = 0;
        /* a drained queue does not keep a big message's buffer */
        if (q->b.cap > RPC_WRITE_CHUNK)
            sigil_buf_free(&q->b);
    }
    return k;
}

void
rpc_outq_free(struct rpc_outq *q)
{
    sigil_buf_free(&q->b);
    q->off = 0;
}

int
rpc_http_to_code(int http_status)
{
    switch (http_status) {
    case 400:
        return SIGIL_RPC_INTERNAL;
    case 401:
        return SIGIL_RPC_UNAUTHENTICATED;
    case 403:
        return SIGIL_RPC_PERMISSION_DENIED;
    case 404:
        return SIGIL_RPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return SIGIL_RPC_UNAVAILABLE;
    default:
        return SIGIL_RPC_UNKNOWN;
    }
}
