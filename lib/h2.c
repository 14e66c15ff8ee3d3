/* The only file that calls nghttp2: it turns nghttp2's session, callbacks and data providers
 * into the small sans-IO interface of h2.h that the gRPC layer (rpc.c) is written against.
 * Written for nghttp2 1.52 (Debian 12); the 1.60 API renames would land here only. */
#include "h2.h"
#include "sigil/err.h"

#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

struct h2_session {
    nghttp2_session *ng;
    struct h2_callbacks cb;
    void *ud;
    bool server;
};

/* Most requests carry few headers; larger header sets fall back to the heap. */
#define NV_STACK 32

static int
cb_result(int r)
{
    if (r == 0)
        return 0;
    if (r == H2_CB_RESET)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
}

/* on_frame_recv and on_data_chunk_recv treat any non-zero return as fatal, so a stream-level
 * failure there is turned into an explicit RST_STREAM instead. */
static int
stream_result(struct h2_session *s, int32_t sid, int r)
{
    if (r == H2_CB_RESET) {
        nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, sid, NGHTTP2_INTERNAL_ERROR);
        return 0;
    }
    return cb_result(r);
}

static bool
map_cat(nghttp2_headers_category c, enum h2_cat *out)
{
    switch (c) {
    case NGHTTP2_HCAT_REQUEST:
        *out = H2_CAT_REQUEST;
        return true;
    case NGHTTP2_HCAT_RESPONSE:
        *out = H2_CAT_RESPONSE;
        return true;
    case NGHTTP2_HCAT_HEADERS:
        *out = H2_CAT_TRAILERS;
        return true;
    default: /* push responses: we disable server push */
        return false;
    }
}

static int
on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
    struct h2_session *s = arg;

    (void)ng;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST || !s->server ||
        s->cb.begin_request == NULL)
        return 0;
    return cb_result(s->cb.begin_request(s->ud, f->hd.stream_id));
}

static int
on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
          const uint8_t *value, size_t valuelen, uint8_t flags, void *arg)
{
    struct h2_session *s = arg;
    enum h2_cat cat;
    void *sud;

    (void)flags;
    if (f->hd.type != NGHTTP2_HEADERS || !map_cat(f->headers.cat, &cat))
        return 0;
    sud = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (sud == NULL)
        return 0;
    return cb_result(
        s->cb.header(s->ud, f->hd.stream_id, sud, cat, name, namelen, value, valuelen));
}

static int
on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
    struct h2_session *s = arg;
    int32_t sid = f->hd.stream_id;
    enum h2_cat cat;
    void *sud;
    int r;

    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        if (!map_cat(f->headers.cat, &cat))
            return 0;
        if ((sud = nghttp2_session_get_stream_user_data(ng, sid)) == NULL)
            return 0;
        if ((r = s->cb.headers_done(s->ud, sid, sud, cat)) != 0)
            return stream_result(s, sid, r);
        if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
            (sud = nghttp2_session_get_stream_user_data(ng, sid)) != NULL)
            return stream_result(s, sid, s->cb.end_stream(s->ud, sid, sud));
        return 0;
    case NGHTTP2_DATA:
        if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
            (sud = nghttp2_session_get_stream_user_data(ng, sid)) != NULL)
            return stream_result(s, sid, s->cb.end_stream(s->ud, sid, sud));
        return 0;
    case NGHTTP2_RST_STREAM:
        return cb_result(s->cb.rst_recv(s->ud, sid));
    case NGHTTP2_GOAWAY:
        s->cb.goaway_recv(s->ud, f->goaway.last_stream_id, f->goaway.error_code);
        return 0;
    default:
        return 0;
    }
}

static int
on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t sid, const uint8_t *p, size_t n,
              void *arg)
{
    struct h2_session *s = arg;
    void *sud;

    (void)flags;
    if ((sud = nghttp2_session_get_stream_user_data(ng, sid)) == NULL)
        return 0;
    return stream_result(s, sid, s->cb.data(s->ud, sid, sud, p, n));
}

static int
on_stream_close(nghttp2_session *ng, int32_t sid, uint32_t error, void *arg)
{
    struct h2_session *s = arg;
    void *sud = nghttp2_session_get_stream_user_data(ng, sid);

    if (sud != NULL)
        s->cb.stream_close(s->ud, sid, sud, error);
    return 0;
}

/* A server that has answered while the client is still sending asks it to stop, without
 * error (RFC 9113 §8.1), so the client's request body does not flow on for nothing. */
static int
on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *arg)
{
    struct h2_session *s = arg;

    if (!s->server || (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    if (nghttp2_session_get_stream_remote_close(ng, f->hd.stream_id) == 0)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_NO_ERROR);
    return 0;
}

static ssize_t
on_read(nghttp2_session *ng, int32_t sid, uint8_t *buf, size_t len, uint32_t *data_flags,
        nghttp2_data_source *src, void *arg)
{
    struct h2_session *s = arg;
    uint32_t flags = 0;
    ssize_t n;
    void *sud;

    (void)src;
    if ((sud = nghttp2_session_get_stream_user_data(ng, sid)) == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    n = s->cb.read(s->ud, sid, sud, buf, len, &flags);
    if (n == H2_READ_DEFER)
        return NGHTTP2_ERR_DEFERRED;
    if (n < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (flags & H2_FLAG_EOF)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    if (flags & H2_FLAG_NO_END_STREAM)
        *data_flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    return n;
}

int
h2_session_new(bool server, const struct h2_settings *set, const struct h2_callbacks *cb, void *ud,
               struct h2_session **out)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    struct h2_session *s = NULL;
    nghttp2_settings_entry iv[4];
    size_t niv = 0;
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    if ((s = calloc(1, sizeof *s)) == NULL)
        goto out;
    s->cb = *cb;
    s->ud = ud;
    s->server = server;
    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    /* Closed streams are not kept around for priorities: gRPC does not use them. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    if ((server ? nghttp2_session_server_new2(&s->ng, cbs, s, opt)
                : nghttp2_session_client_new2(&s->ng, cbs, s, opt)) != 0)
        goto out;

    iv[niv++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
                                         set->max_concurrent_streams};
    iv[niv++] =
        (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, set->max_header_list_size};
    iv[niv++] =
        (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, set->initial_window_size};
    if (!server)
        iv[niv++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_PUSH, 0};
    if (nghttp2_submit_settings(s->ng, NGHTTP2_FLAG_NONE, iv, niv) != 0)
        goto out;
    if (set->connection_window_size > 65535 &&
        nghttp2_session_set_local_window_size(s->ng, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)set->connection_window_size) != 0)
        goto out;
    *out = s;
    s = NULL;
    r = 0;
out:
    nghttp2_session_callbacks_del(cbs);
    nghttp2_option_del(opt);
    h2_session_free(s);
    return r;
}

void
h2_session_free(struct h2_session *s)
{
    if (s == NULL)
        return;
    nghttp2_session_del(s->ng);
    free(s);
}

int
h2_session_recv(struct h2_session *s, const uint8_t *p, size_t n)
{
    ssize_t r = nghttp2_session_mem_recv(s->ng, p, n);

    if (r >= 0)
        return 0;
    /* A fatal error: queue a GOAWAY for the peer if the session can still say it. */
    nghttp2_session_terminate_session(s->ng, r == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM
                                                                      : NGHTTP2_PROTOCOL_ERROR);
    return SIGIL_ERR_PROTOCOL;
}

int
h2_session_send(struct h2_session *s, struct sigil_buf *out, size_t want)
{
    const uint8_t *p;
    ssize_t n;
    int r;

    while (out->len < want) {
        n = nghttp2_session_mem_send(s->ng, &p);
        if (n < 0)
            return n == NGHTTP2_ERR_NOMEM ? SIGIL_ERR_NOMEM : SIGIL_ERR_PROTOCOL;
        if (n == 0)
            break;
        if ((r = sigil_buf_append(out, p, (size_t)n)) != 0)
            return r;
    }
    return 0;
}

bool
h2_session_alive(struct h2_session *s)
{
    return nghttp2_session_want_read(s->ng) || nghttp2_session_want_write(s->ng);
}

bool
h2_session_want_write(struct h2_session *s)
{
    return nghttp2_session_want_write(s->ng) != 0;
}

/* nghttp2 copies names and values (NGHTTP2_NV_FLAG_NONE), so const is only cast away for
 * its struct's sake, never written through. */
static nghttp2_nv *
to_ng(const struct h2_nv *nv, size_t n, nghttp2_nv *stack)
{
    nghttp2_nv *a = n <= NV_STACK ? stack : calloc(n, sizeof *a);

    if (a == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        a[i].name = (uint8_t *)(uintptr_t)nv[i].name;
        a[i].namelen = nv[i].namelen;
        a[i].value = (uint8_t *)(uintptr_t)nv[i].value;
        a[i].valuelen = nv[i].valuelen;
        a[i].flags = NGHTTP2_NV_FLAG_NONE;
    }
    return a;
}

static void
free_ng(nghttp2_nv *a, nghttp2_nv *stack)
{
    if (a != stack)
        free(a);
}

static int
ng_err(int r)
{
    if (r == 0)
        return 0;
    return r == NGHTTP2_ERR_NOMEM ? SIGIL_ERR_NOMEM : SIGIL_ERR_STATE;
}

int
h2_submit_request(struct h2_session *s, const struct h2_nv *nv, size_t n, void *sud, int32_t *sid)
{
    nghttp2_nv stack[NV_STACK], *a;
    nghttp2_data_provider prd = {.source = {.ptr = NULL}, .read_callback = on_read};
    int32_t r;

    if ((a = to_ng(nv, n, stack)) == NULL)
        return SIGIL_ERR_NOMEM;
    r = nghttp2_submit_request(s->ng, NULL, a, n, &prd, sud);
    free_ng(a, stack);
    if (r < 0)
        return r == NGHTTP2_ERR_NOMEM ? SIGIL_ERR_NOMEM : SIGIL_ERR_STATE;
    *sid = r;
    return 0;
}

int
h2_submit_response(struct h2_session *s, int32_t sid, const struct h2_nv *nv, size_t n,
                   bool with_body)
{
    nghttp2_nv stack[NV_STACK], *a;
    nghttp2_data_provider prd = {.source = {.ptr = NULL}, .read_callback = on_read};
    int r;

    if ((a = to_ng(nv, n, stack)) == NULL)
        return SIGIL_ERR_NOMEM;
    r = nghttp2_submit_response(s->ng, sid, a, n, with_body ? &prd : NULL);
    free_ng(a, stack);
    return ng_err(r);
}

int
h2_submit_trailers(struct h2_session *s, int32_t sid, const struct h2_nv *nv, size_t n)
{
    nghttp2_nv stack[NV_STACK], *a;
    int r;

    if ((a = to_ng(nv, n, stack)) == NULL)
        return SIGIL_ERR_NOMEM;
    r = nghttp2_submit_trailer(s->ng, sid, a, n);
    free_ng(a, stack);
    return ng_err(r);
}

int
h2_resume(struct h2_session *s, int32_t sid)
{
    return ng_err(nghttp2_session_resume_data(s->ng, sid));
}

int
h2_reset(struct h2_session *s, int32_t sid, uint32_t error)
{
    return ng_err(nghttp2_submit_rst_stream(s->ng, NGHTTP2_FLAG_NONE, sid, error));
}

int
h2_goaway(struct h2_session *s, uint32_t error)
{
    return ng_err(nghttp2_submit_goaway(
        s->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->ng), error, NULL, 0));
}

int
h2_terminate(struct h2_session *s, uint32_t error)
{
    return ng_err(nghttp2_session_terminate_session(s->ng, error));
}

void
h2_set_stream_data(struct h2_session *s, int32_t sid, void *sud)
{
    nghttp2_session_set_stream_user_data(s->ng, sid, sud);
}
