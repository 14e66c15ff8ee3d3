/* The h2o glue: the only file of Sigil that calls libh2o (2.2.5, libuv flavour). It owns the
 * listeners, the TLS contexts, our per-connection and per-request records, routing, JSON
 * errors, deferred answers from worker threads and the graceful stop. See sigil/http.h. */
#include "sigil/http.h"
#include "sigil/unixsock.h"
#include "sigil/x509.h"
#include "sigil/err.h"
#include "sigil/spiffeid.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <h2o.h>
#include <h2o/http1.h>
#include <h2o/http2.h>
#include <h2o/socket/uv-binding.h>

#define UNIX_PATH_MAX 96  /* sun_path is 108 bytes; we also need room for a temporary name */
#define CTYPE_MAX 127     /* bytes of a content type we accept from callers */
#define QUERY_KEY_MAX 255 /* bytes of a decoded query parameter name we compare */
#define LISTEN_BACKLOG 128
/* the answer when even an error body cannot be built */
#define ERR_OOM "{\"error\":{\"code\":\"http.internal\",\"message\":\"out of memory\"}}"

/* Mozilla "intermediate" (TLS 1.2 part; TLS 1.3 suites are OpenSSL's defaults, the same). */
static const char TLS12_CIPHERS[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
static const char TLS13_SUITES[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char TLS_GROUPS[] = "X25519:P-256:P-384";

/* ALPN lists, server preference first. h2o keeps the pointer, so they are static. Public
 * listeners never offer h2: h2o 2.2.5's HTTP/2 lacks the Rapid Reset fix. */
static const h2o_iovec_t ALPN_H1[] = {{H2O_STRLIT("http/1.1")}, {NULL, 0}};
static const h2o_iovec_t ALPN_H2_H1[] = {{H2O_STRLIT("h2")}, {H2O_STRLIT("http/1.1")}, {NULL, 0}};

#define CONTAINER_OF(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

struct route {
    char *method;
    char *path;
    size_t path_len;
    bool prefix;
    sigil_http_handler_fn fn;
    void *arg;
};

/* A libuv stream handle; h2o closes it by its address, so it is allocated on its own. */
struct stream {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u; /* first member: the close callback casts back */
    struct sigil_http_server *srv;
};

struct listener {
    struct sigil_http_server *srv;
    struct listener *next;
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    bool open; /* u is an initialised handle not yet closed */
    enum sigil_http_peer_kind kind;
    h2o_accept_ctx_t accept_ctx;
    SSL_CTX *ssl_ctx;
    char *cert_file, *key_file; /* kept for sigil_http_tls_reload */
    sigil_http_verify_fn verify;
    void *verify_arg;
    char *unix_path; /* the socket file we made, removed at stop if still ours */
    dev_t unix_dev;
    ino_t unix_ino;
};

/* One accepted connection. It lives while h2o holds its socket and while any request object
 * of ours refers to it (a deferred request may outlive the socket). */
struct conn {
    struct sigil_http_server *srv;
    struct listener *lst;
    struct conn *prev, *next;
    h2o_socket_t *sock; /* NULL once h2o closed it */
    struct stream *st;  /* its libuv handle (valid while sock is not NULL) */
    struct sigil_http_peer peer;
    char *id;    /* peer.id, owned */
    size_t refs; /* 1 while the socket is open + 1 per request object */
    size_t live; /* requests h2o has not disposed yet */
    size_t held; /* deferred requests not yet answered */
    bool is_h2;
    bool shut;
    bool stuck_seen; /* write_stuck() held at the last reaper pass */
};

struct sigil_http_req {
    struct sigil_http_server *srv;
    struct conn *conn;
    h2o_req_t *h2o; /* NULL once h2o disposed the request (client left or done) */
    unsigned refs;  /* h2o's pool link + the handler frame + a deferred answer */
    bool in_handler;
    bool deferred;       /* written on the loop before any worker sees req */
    atomic_bool claimed; /* the one answer was given (loop or worker) */
    const char *method, *path, *query;
    /* a posted answer, filled by a worker, then queued on srv->posted */
    struct sigil_http_req *post_next;
    int post_status;
    char post_ctype[CTYPE_MAX + 1];
    uint8_t *post_body;
    size_t post_len;
    int post_err;
};

/* The link h2o's request pool holds: its dispose callback tells us the request is over. */
struct req_link {
    struct sigil_http_req *r;
};

struct glue_handler {
    h2o_handler_t super;
    struct sigil_http_server *srv;
};

struct sigil_http_server {
    uv_loop_t *loop;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    struct route *routes;
    size_t nroutes;
    struct listener *listeners;
    size_t listeners_open;
    struct conn *conns;
    size_t streams_open;
    uv_async_t async;
    uv_timer_t reaper;
    int handles_open;     /* async and reaper, until the final close */
    pthread_mutex_t lock; /* guards posted */
    struct sigil_http_req *posted, *posted_tail;
    bool stopping, finishing;
    void (*done)(void *arg);
    void *done_arg;
    sigil_http_log_fn log;
    void *log_arg;
};

static void maybe_finish(struct sigil_http_server *srv);

static void logf_(struct sigil_http_server *srv, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
logf_(struct sigil_http_server *srv, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (srv->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    srv->log(srv->log_arg, msg);
}

/* ---- small pure helpers ---- */

static uint8_t
ascii_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + ('a' - 'A')) : c;
}

static bool
ascii_ieq(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (ascii_lower((uint8_t)a[i]) != ascii_lower((uint8_t)b[i]))
            return false;
    return true;
}

/* RFC 9110 tchar: what a method or header name may contain. */
static bool
is_tchar(uint8_t c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
is_token(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s != '\0'; s++)
        if (!is_tchar((uint8_t)*s))
            return false;
    return true;
}

/* A header value we are willing to emit: printable ASCII and tabs, so no CR/LF injection. */
static bool
is_header_value(const char *s, size_t max)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    for (; *s != '\0'; s++, n++) {
        uint8_t c = (uint8_t)*s;
        if (n >= max || !(c == '\t' || (c >= 0x20 && c < 0x7f)))
            return false;
    }
    return true;
}

static const char *
reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    }
    if (status < 300)
        return "OK";
    if (status < 400)
        return "Redirect";
    return status < 500 ? "Client Error" : "Server Error";
}

/* The stable code of an error this layer answers by itself (schema/admin-api.yaml's Error). */
static const char *
status_code_name(int status)
{
    switch (status) {
    case 400:
        return "http.bad_request";
    case 401:
        return "http.unauthorized";
    case 403:
        return "http.forbidden";
    case 404:
        return "http.not_found";
    case 405:
        return "http.method_not_allowed";
    case 409:
        return "http.conflict";
    case 413:
        return "http.body_too_large";
    case 417:
        return "http.expectation_failed";
    case 431:
        return "http.headers_too_large";
    case 500:
        return "http.internal";
    case 503:
        return "http.busy";
    }
    return status < 500 ? "http.client_error" : "http.server_error";
}

/* {"error": {"code", "message"}} for status and message. Returns the new object, or NULL. */
static json_t *
error_obj(int status, const char *message)
{
    return json_pack("{s:{s:s,s:s}}", "error", "code", status_code_name(status), "message",
                     message);
}

/* error_obj as a NUL-terminated string (caller frees), or NULL. */
static char *
error_json(int status, const char *message)
{
    json_t *j = error_obj(status, message);
    char *s = NULL;

    if (j != NULL)
        s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return s;
}

/* ---- connections and requests: reference counting ---- */

static void
conn_unref(struct conn *c)
{
    struct sigil_http_server *srv = c->srv;

    if (--c->refs != 0)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    free(c->id);
    free(c);
    maybe_finish(srv);
}

/* Ends a connection from our side without touching h2o's state: h2o sees EOF or a failed
 * write on its own schedule and closes through its usual path. */
static void
conn_shutdown(struct conn *c)
{
    int fd;

    if (c->shut || c->sock == NULL)
        return;
    c->shut = true;
    if ((fd = h2o_socket_get_fd(c->sock)) >= 0)
        shutdown(fd, SHUT_RDWR);
}

static void
req_unref(struct sigil_http_req *r)
{
    if (--r->refs != 0)
        return;
    conn_unref(r->conn);
    free(r->post_body);
    free(r);
}

static void
on_link_dispose(void *p)
{
    struct sigil_http_req *r = ((struct req_link *)p)->r;
    struct conn *c = r->conn;

    r->h2o = NULL;
    c->live--;
    /* At stop, an HTTP/1 connection whose last response is out is idle: end it (HTTP/2
     * connections end by h2o's GOAWAY dance). */
    if (r->srv->stopping && c->live == 0 && !c->is_h2)
        conn_shutdown(c);
    req_unref(r);
}

/* ---- sending ---- */

/* Sends the answer of r (which h2o still holds). body is copied by h2o. */
static void
send_answer(struct sigil_http_req *r, int status, const char *ctype, const void *body, size_t len)
{
    h2o_req_t *h = r->h2o;
    h2o_iovec_t ct = h2o_strdup(&h->pool, ctype, strlen(ctype));

    if (status == 204 || status == 304)
        len = 0; /* no body, and no Content-Length either (RFC 9110 8.6) */
    h->res.status = status;
    h->res.reason = reason_phrase(status);
    h->res.content_length = (status == 204 || status == 304) ? SIZE_MAX : len;
    h2o_add_header(&h->pool, &h->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ct.base, ct.len);
    h2o_add_header(&h->pool, &h->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    h2o_add_header_by_str(&h->pool, &h->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
                          H2O_STRLIT("nosniff"));
    h2o_send_inline(h, len == 0 ? "" : body, len);
}

/* Gives r its one answer (the caller claimed it) and drops what a deferral held. status 0
 * means "the arguments were bad": a 500 goes out instead and ret is returned. */
static int
finish(struct sigil_http_req *r, int status, const char *ctype, const void *body, size_t len,
       int ret)
{
    if (r->h2o == NULL) {
        logf_(r->srv, "http: answer %d dropped: the client left", status);
        ret = ret != 0 ? ret : SIGIL_ERR_CANCELLED;
    } else if (status == 0) {
        static const char oops[] = "{\"error\":{\"code\":\"http.internal\",\"message\":"
                                   "\"the server built an invalid response\"}}";
        send_answer(r, 500, "application/json", oops, sizeof oops - 1);
    } else {
        send_answer(r, status, ctype, body, len);
    }
    if (r->deferred) {
        r->conn->held--;
        req_unref(r); /* may free r */
    }
    return ret;
}

static int
check_answer_args(int status, const char *ctype, const void *body, size_t len)
{
    if (status < 200 || status > 599 || (body == NULL && len != 0))
        return SIGIL_ERR_INVALID;
    if (ctype != NULL && (*ctype == '\0' || !is_header_value(ctype, CTYPE_MAX)))
        return SIGIL_ERR_INVALID;
    return 0;
}

int
sigil_http_respond(struct sigil_http_req *req, int status, const char *content_type,
                   const void *body, size_t len)
{
    int r;

    if (req == NULL)
        return SIGIL_ERR_INVALID;
    if (atomic_exchange(&req->claimed, true))
        return SIGIL_ERR_STATE;
    if ((r = check_answer_args(status, content_type, body, len)) != 0)
        return finish(req, 0, NULL, NULL, 0, r);
    return finish(req, status, content_type != NULL ? content_type : "application/octet-stream",
                  body, len, 0);
}

int
sigil_http_respond_json(struct sigil_http_req *req, int status, json_t *json)
{
    char *s = NULL;
    int r;

    if (json != NULL)
        s = json_dumps(json, JSON_COMPACT);
    json_decref(json);
    if (s == NULL) {
        static const char oom[] = ERR_OOM;
        r = sigil_http_respond(req, 500, "application/json", oom, sizeof oom - 1);
        return r == 0 ? SIGIL_ERR_NOMEM : r;
    }
    r = sigil_http_respond(req, status, "application/json", s, strlen(s));
    free(s);
    return r;
}

int
sigil_http_respond_error(struct sigil_http_req *req, int status, const char *reason)
{
    return sigil_http_respond_json(req, status, error_obj(status, reason));
}

int
sigil_http_res_header(struct sigil_http_req *req, const char *name, const char *value)
{
    static const char *const reserved[] = {"content-type",      "content-length", "connection",
                                           "transfer-encoding", "keep-alive",     "upgrade"};
    h2o_iovec_t n, v;

    if (req == NULL || req->h2o == NULL || !req->in_handler || atomic_load(&req->claimed))
        return SIGIL_ERR_STATE;
    if (!is_token(name) || !is_header_value(value, SIGIL_HTTP_HEADER_BYTES_MAX))
        return SIGIL_ERR_INVALID;
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
        if (ascii_ieq(name, strlen(name), reserved[i], strlen(reserved[i])))
            return SIGIL_ERR_INVALID;
    /* HTTP/2 wants lowercase names; h2o keeps pointers, so both live in the pool */
    n = h2o_strdup(&req->h2o->pool, name, strlen(name));
    for (size_t i = 0; i < n.len; i++)
        n.base[i] = (char)ascii_lower((uint8_t)n.base[i]);
    v = h2o_strdup(&req->h2o->pool, value, strlen(value));
    h2o_add_header_by_str(&req->h2o->pool, &req->h2o->res.headers, n.base, n.len, 1, NULL, v.base,
                          v.len);
    return 0;
}

int
sigil_http_req_defer(struct sigil_http_req *req)
{
    if (req == NULL || !req->in_handler || req->deferred || atomic_load(&req->claimed))
        return SIGIL_ERR_STATE;
    /* Bounds the work a client can start and walk away from (HTTP/2 resets are free). */
    if (req->conn->held >= SIGIL_HTTP_DEFERRED_PER_CONN_MAX) {
        logf_(req->srv, "http: deferral refused: %d answers already pending on the connection",
              SIGIL_HTTP_DEFERRED_PER_CONN_MAX);
        sigil_http_respond_error(req, 503, "too many requests in flight on this connection");
        return SIGIL_ERR_RANGE;
    }
    req->deferred = true;
    req->refs++;
    req->conn->held++;
    return 0;
}

int
sigil_http_post(struct sigil_http_req *req, int status, const char *content_type, const void *body,
                size_t len)
{
    struct sigil_http_server *srv;
    int ret;

    if (req == NULL || !req->deferred)
        return SIGIL_ERR_STATE;
    if (atomic_exchange(&req->claimed, true))
        return SIGIL_ERR_STATE;
    srv = req->srv;
    req->post_err = check_answer_args(status, content_type, body, len);
    if (req->post_err == 0) {
        snprintf(req->post_ctype, sizeof req->post_ctype, "%s",
                 content_type != NULL ? content_type : "application/octet-stream");
        req->post_status = status;
        if (len != 0 && (req->post_body = malloc(len)) == NULL)
            req->post_err = SIGIL_ERR_NOMEM;
        else if (len != 0)
            memcpy(req->post_body, body, len);
        req->post_len = len;
    }
    /* Read before queueing: once the loop can see req it may answer it, stop the server and
     * free both, so nothing of req or srv is touched after the unlock. The send happens
     * under the lock for the same reason. */
    ret = req->post_err;
    pthread_mutex_lock(&srv->lock);
    req->post_next = NULL;
    if (srv->posted_tail != NULL)
        srv->posted_tail->post_next = req;
    else
        srv->posted = req;
    srv->posted_tail = req;
    uv_async_send(&srv->async);
    pthread_mutex_unlock(&srv->lock);
    return ret;
}

int
sigil_http_post_json(struct sigil_http_req *req, int status, json_t *json)
{
    char *s = NULL;
    int r;

    if (json != NULL)
        s = json_dumps(json, JSON_COMPACT);
    json_decref(json);
    if (s == NULL) {
        static const char oom[] = ERR_OOM;
        r = sigil_http_post(req, 500, "application/json", oom, sizeof oom - 1);
        return r == 0 ? SIGIL_ERR_NOMEM : r;
    }
    r = sigil_http_post(req, status, "application/json", s, strlen(s));
    free(s);
    return r;
}

static void
on_posted(uv_async_t *a)
{
    struct sigil_http_server *srv = CONTAINER_OF(a, struct sigil_http_server, async);
    struct sigil_http_req *r, *next;

    pthread_mutex_lock(&srv->lock);
    r = srv->posted;
    srv->posted = srv->posted_tail = NULL;
    pthread_mutex_unlock(&srv->lock);
    for (; r != NULL; r = next) {
        next = r->post_next;
        if (r->post_err == SIGIL_ERR_NOMEM) {
            static const char oom[] = ERR_OOM;
            finish(r, 500, "application/json", oom, sizeof oom - 1, SIGIL_ERR_NOMEM);
        } else if (r->post_err != 0) {
            finish(r, 0, NULL, NULL, 0, r->post_err);
        } else {
            finish(r, r->post_status, r->post_ctype, r->post_body, r->post_len, 0);
        }
    }
}

/* ---- request accessors ---- */

const char *
sigil_http_req_method(const struct sigil_http_req *req)
{
    return req->h2o != NULL ? req->method : "";
}

const char *
sigil_http_req_path(const struct sigil_http_req *req)
{
    return req->h2o != NULL ? req->path : "";
}

const char *
sigil_http_req_query(const struct sigil_http_req *req)
{
    return req->h2o != NULL ? req->query : NULL;
}

int
sigil_http_req_header(const struct sigil_http_req *req, const char *name, const uint8_t **value,
                      size_t *len)
{
    const h2o_headers_t *hs;
    int found = 0;

    *value = NULL;
    *len = 0;
    if (req->h2o == NULL)
        return SIGIL_ERR_STATE;
    hs = &req->h2o->headers;
    for (size_t i = 0; i < hs->size; i++) {
        const h2o_header_t *h = hs->entries + i;
        if (!ascii_ieq(h->name->base, h->name->len, name, strlen(name)))
            continue;
        if (found++)
            return SIGIL_ERR_INVALID;
        *value = (const uint8_t *)h->value.base;
        *len = h->value.len;
    }
    return found ? 0 : SIGIL_ERR_NOTFOUND;
}

const uint8_t *
sigil_http_req_body(const struct sigil_http_req *req, size_t *len)
{
    if (req->h2o == NULL || req->h2o->entity.base == NULL) {
        *len = 0;
        return (const uint8_t *)"";
    }
    *len = req->h2o->entity.len;
    return (const uint8_t *)req->h2o->entity.base;
}

int
sigil_http_req_body_json(const struct sigil_http_req *req, json_t **out, const char **why)
{
    const uint8_t *p;
    size_t n;
    json_error_t err;
    json_t *j;

    *out = NULL;
    p = sigil_http_req_body(req, &n);
    if ((j = json_loadb((const char *)p, n, JSON_REJECT_DUPLICATES, &err)) == NULL) {
        *why = "request body is not valid JSON (or repeats a key)";
        return SIGIL_ERR_INVALID;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        *why = "request body must be a JSON object";
        return SIGIL_ERR_INVALID;
    }
    *out = j;
    return 0;
}

const struct sigil_http_peer *
sigil_http_req_peer(const struct sigil_http_req *req)
{
    return &req->conn->peer;
}

bool
sigil_http_req_is_http2(const struct sigil_http_req *req)
{
    return req->conn->is_h2;
}

/* ---- dispatch ---- */

static bool
route_matches(const struct route *rt, const char *path, size_t len)
{
    if (rt->prefix)
        return len >= rt->path_len && memcmp(path, rt->path, rt->path_len) == 0;
    return len == rt->path_len && memcmp(path, rt->path, len) == 0;
}

/* True if a route before index i matches path with the same method as route i. */
static bool
method_listed(const struct sigil_http_server *srv, size_t i, const char *path, size_t len)
{
    for (size_t j = 0; j < i; j++)
        if (route_matches(srv->routes + j, path, len) &&
            strcmp(srv->routes[j].method, srv->routes[i].method) == 0)
            return true;
    return false;
}

static void
dispatch(struct sigil_http_req *r)
{
    struct sigil_http_server *srv = r->srv;
    const struct route *best = NULL;
    size_t best_rank = 0, plen = strlen(r->path);
    bool path_known = false;
    struct sigil_buf allow = {0};

    for (size_t i = 0; i < srv->nroutes; i++) {
        const struct route *rt = srv->routes + i;
        size_t rank = rt->prefix ? rt->path_len : SIZE_MAX;
        if (!route_matches(rt, r->path, plen))
            continue;
        path_known = true;
        if (strcmp(rt->method, r->method) != 0) {
            if (method_listed(srv, i, r->path, plen))
                continue;
            if (allow.len != 0)
                sigil_buf_append_str(&allow, ", ");
            sigil_buf_append_str(&allow, rt->method);
            continue;
        }
        if (best == NULL || rank > best_rank) {
            best = rt;
            best_rank = rank;
        }
    }
    if (best != NULL) {
        best->fn(r, best->arg);
    } else if (path_known) {
        char *a = sigil_buf_strdup(&allow);
        if (a != NULL)
            sigil_http_res_header(r, "allow", a);
        free(a);
        sigil_http_respond_error(r, 405, "method not allowed");
    } else {
        sigil_http_respond_error(r, 404, "not found");
    }
    sigil_buf_free(&allow);
}

/* Bytes of an h2o string as a NUL-terminated pool copy, or NULL if it holds a NUL byte. */
static const char *
pool_cstr(h2o_req_t *h, const char *p, size_t n)
{
    if (n != 0 && memchr(p, '\0', n) != NULL)
        return NULL;
    return h2o_strdup(&h->pool, n == 0 ? "" : p, n).base;
}

static struct conn *conn_of_sock(h2o_socket_t *sock);

/* The one h2o handler: every request of every listener comes through here. */
static int
on_req(h2o_handler_t *self, h2o_req_t *h)
{
    struct sigil_http_server *srv = ((struct glue_handler *)self)->srv;
    h2o_socket_t *sock = h->conn->callbacks->get_socket(h->conn);
    struct conn *c = sock != NULL ? conn_of_sock(sock) : NULL;
    struct sigil_http_req *r;
    struct req_link *link;
    size_t hbytes = 0, plen;

    if (c == NULL || (r = calloc(1, sizeof *r)) == NULL) {
        static const char e[] = "{\"error\":{\"code\":\"http.internal\",\"message\":"
                                "\"internal error\"}}";
        h->res.status = 500;
        h->res.reason = "Internal Server Error";
        h2o_add_header(&h->pool, &h->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/json"));
        h2o_send_inline(h, e, sizeof e - 1);
        return 0;
    }
    link = h2o_mem_alloc_shared(&h->pool, sizeof *link, on_link_dispose);
    link->r = r;
    r->srv = srv;
    r->conn = c;
    r->h2o = h;
    r->refs = 2; /* the pool link and this frame */
    atomic_init(&r->claimed, false);
    c->refs++;
    c->live++;
    if (h->version >= 0x200)
        c->is_h2 = true;

    for (size_t i = 0; i < h->headers.size; i++)
        hbytes += h->headers.entries[i].name->len + h->headers.entries[i].value.len;
    plen = h->query_at != SIZE_MAX ? h->query_at : h->path.len;
    r->method = pool_cstr(h, h->method.base, h->method.len);
    r->path = pool_cstr(h, h->path.base, plen);
    r->query = h->query_at != SIZE_MAX
                   ? pool_cstr(h, h->path.base + plen + 1, h->path.len - plen - 1)
                   : NULL;
    r->in_handler = true;
    if (h->headers.size > SIGIL_HTTP_HEADERS_MAX || hbytes > SIGIL_HTTP_HEADER_BYTES_MAX)
        sigil_http_respond_error(r, 431, "too many or too large request headers");
    else if (h->entity.len > SIGIL_HTTP_BODY_MAX)
        sigil_http_respond_error(r, 413, "request body over 1 MiB");
    else if (r->method == NULL || r->path == NULL || (h->query_at != SIZE_MAX && r->query == NULL))
        sigil_http_respond_error(r, 400, "NUL byte in the request target");
    else if (c->peer.kind == SIGIL_HTTP_PEER_MTLS && c->peer.id == NULL)
        sigil_http_respond_error(r, 403, "no verified client identity");
    else
        dispatch(r);
    r->in_handler = false;
    if (!atomic_load(&r->claimed) && !r->deferred)
        sigil_http_respond_error(r, 500, "the handler did not answer");
    req_unref(r);
    return 0;
}

/* ---- JSON for the errors h2o makes itself (413, 417, 400 from the body reader, ...) ---- */

struct errjson_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
};

static void
errjson_do_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t n,
                h2o_send_state_t state)
{
    struct errjson_ostream *o = (struct errjson_ostream *)self;
    bool head = req->input.method.len == 4 && memcmp(req->input.method.base, "HEAD", 4) == 0;

    (void)bufs;
    (void)n;
    if (h2o_send_state_is_in_progress(state) || head || state == H2O_SEND_STATE_ERROR)
        h2o_ostream_send_next(&o->super, req, NULL, 0, state);
    else
        h2o_ostream_send_next(&o->super, req, &o->body, 1, state);
}

/* Adds the ostream that replaces a non-JSON error body; returns the slot after it. */
static h2o_ostream_t **
errjson_add(h2o_req_t *req, h2o_ostream_t **slot)
{
    ssize_t i = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    struct errjson_ostream *o;
    char reason[64], *s;

    if (i != -1 && req->res.headers.entries[i].value.len >= 16 &&
        memcmp(req->res.headers.entries[i].value.base, "application/json", 16) == 0)
        return slot;
    /* the reason phrase, lowercased, is the error text: h2o's own are plain words */
    snprintf(reason, sizeof reason, "%s",
             req->res.reason != NULL ? req->res.reason : reason_phrase(req->res.status));
    for (size_t k = 0; reason[k] != '\0'; k++)
        reason[k] = (char)ascii_lower((uint8_t)reason[k]);
    if ((s = error_json(req->res.status, reason)) == NULL)
        return slot;
    o = (struct errjson_ostream *)h2o_add_ostream(req, sizeof *o, slot);
    o->super.do_send = errjson_do_send;
    o->body = h2o_strdup(&req->pool, s, strlen(s));
    free(s);
    req->res.content_length = o->body.len;
    if (i != -1)
        req->res.headers.entries[i].value = h2o_iovec_init(H2O_STRLIT("application/json"));
    else
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("application/json"));
    return &o->super.next;
}

static void
errjson_on_setup(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    if (req->res.status >= 400)
        slot = errjson_add(req, slot);
    h2o_setup_next_ostream(req, slot);
}

/* ---- connections ---- */

static void
on_sock_closed(void *data)
{
    struct conn *c = data;

    c->sock = NULL;
    conn_unref(c);
}

static struct conn *
conn_of_sock(h2o_socket_t *sock)
{
    return sock->on_close.cb == on_sock_closed ? sock->on_close.data : NULL;
}

/* h2o makes the SSL object inside its handshake; its BIO's data is the h2o socket (h2o
 * itself reads it back this way), and the socket's on_close data is our connection. */
static struct conn *
conn_of_ssl(SSL *ssl)
{
    BIO *bio = ssl != NULL ? SSL_get_rbio(ssl) : NULL;
    h2o_socket_t *sock = bio != NULL ? BIO_get_data(bio) : NULL;

    return sock != NULL ? conn_of_sock(sock) : NULL;
}

static int
tls_verify_cb(X509_STORE_CTX *xs, void *arg)
{
    struct listener *l = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct conn *c = conn_of_ssl(ssl);
    STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(xs);
    STACK_OF(X509) *chain = NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    char *id = NULL;
    const char *why = "rejected";
    int n, ok = 0;

    if (c == NULL || leaf == NULL) {
        why = "no connection for this handshake";
        goto out;
    }
    /* the chain as the client sent it, leaf first */
    if ((chain = sk_X509_new_null()) == NULL || !sk_X509_push(chain, leaf)) {
        why = "out of memory";
        goto out;
    }
    n = sent != NULL ? sk_X509_num(sent) : 0;
    for (int i = 0; i < n; i++) {
        X509 *x = sk_X509_value(sent, i);
        if (x != leaf && !sk_X509_push(chain, x)) {
            why = "out of memory";
            goto out;
        }
    }
    if (sk_X509_num(chain) > SIGIL_HTTP_PEER_CHAIN_MAX) {
        why = "client sent more than 16 certificates";
        goto out;
    }
    if ((id = calloc(1, SIGIL_HTTP_ID_MAX + 1)) == NULL) {
        why = "out of memory";
        goto out;
    }
    why = NULL;
    if (l->verify(l->verify_arg, chain, id, &why) != 0) {
        if (why == NULL)
            why = "rejected by the verify callback";
        goto out;
    }
    if (id[0] == '\0' || memchr(id, '\0', SIGIL_HTTP_ID_MAX + 1) == NULL) {
        why = "the verify callback gave no identity";
        goto out;
    }
    free(c->id);
    c->id = strdup(id);
    c->peer.id = c->id;
    ok = c->id != NULL;
    if (!ok)
        why = "out of memory";
out:
    if (!ok) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        logf_(l->srv, "http: TLS client certificate rejected: %s", why);
    }
    sk_X509_free(chain);
    free(id);
    return ok;
}

static void
on_stream_closed(uv_handle_t *h)
{
    struct stream *st = (struct stream *)(void *)h;
    struct sigil_http_server *srv = st->srv;

    free(st);
    srv->streams_open--;
    maybe_finish(srv);
}

static void
on_accept(uv_stream_t *ls, int status)
{
    struct listener *l = ls->data;
    struct sigil_http_server *srv = l->srv;
    struct stream *st;
    struct conn *c = NULL;
    h2o_socket_t *sock;

    if (status != 0 || (st = calloc(1, sizeof *st)) == NULL)
        return;
    st->srv = srv;
    if ((l->kind == SIGIL_HTTP_PEER_UNIX ? uv_pipe_init(srv->loop, &st->u.pipe, 0)
                                         : uv_tcp_init(srv->loop, &st->u.tcp)) != 0) {
        free(st);
        return;
    }
    srv->streams_open++;
    if (uv_accept(ls, &st->u.s) != 0 || (c = calloc(1, sizeof *c)) == NULL)
        goto fail;
    c->srv = srv;
    c->lst = l;
    c->peer.kind = l->kind;
    if (l->kind == SIGIL_HTTP_PEER_UNIX) {
        /* who is calling, as the kernel says (the pid may be reused later: a caller that
         * decides on it pins it with a pidfd) */
        struct ucred cred;
        socklen_t cl = sizeof cred;
        uv_os_fd_t fd;
        if (uv_fileno(&st->u.h, &fd) != 0 ||
            getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 || cl != sizeof cred) {
            logf_(srv, "http: SO_PEERCRED failed; connection closed");
            goto fail;
        }
        c->peer.uid = cred.uid;
        c->peer.gid = cred.gid;
        c->peer.pid = cred.pid;
    } else {
        uv_tcp_nodelay(&st->u.tcp, 1);
    }
    sock = h2o_uv_socket_create(&st->u.s, on_stream_closed);
    c->sock = sock;
    c->st = st;
    c->refs = 1;
    sock->on_close.cb = on_sock_closed;
    sock->on_close.data = c;
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    h2o_accept(&l->accept_ctx, sock);
    return;
fail:
    free(c);
    uv_close(&st->u.h, on_stream_closed);
}

/* ---- the stuck-write reaper ---- */

/* h2o 2.2.5 (its master too) ignores what uv_write returns. Once libuv saw a read error on a
 * stream (a client reset), it refuses every later write at once, and h2o waits forever for a
 * completion that never comes: the socket, its fd and whatever h2o hung on it (a TLS
 * close_notify, an HTTP/2 connection) are never freed, and stop never ends. A client can
 * cause that at will. So: a write h2o believes in flight, on a stream libuv will not write
 * to, with nothing queued in libuv, is stuck. */
static bool
write_stuck(const struct conn *c)
{
    return c->sock != NULL && c->sock->_cb.write != NULL && !uv_is_writable(&c->st->u.s) &&
           uv_stream_get_write_queue_size(&c->st->u.s) == 0;
}

/* Every second: a write seen stuck on two passes in a row (so a completion libuv had already
 * queued has had its turn) is failed the way libuv fails a write, by calling h2o's pending
 * write callback with an I/O error; h2o then closes as after any failed write. Writes it
 * starts while failing are stuck from the start (the stream stays unwritable), so they are
 * failed at once, a few times at most. */
static void
on_reaper(uv_timer_t *t)
{
    struct sigil_http_server *srv = CONTAINER_OF(t, struct sigil_http_server, reaper);
    struct conn *c, *next;

    for (c = srv->conns; c != NULL; c = next) {
        bool stuck = write_stuck(c);
        c->refs++; /* h2o's callbacks may close the socket; keep c */
        if (stuck && c->stuck_seen) {
            logf_(srv, "http: failing a write h2o left stuck on a reset connection");
            for (int i = 0; i < 4 && write_stuck(c); i++) {
                h2o_socket_cb cb = c->sock->_cb.write;
                c->sock->_cb.write = NULL;
                cb(c->sock, h2o_socket_error_io);
            }
            stuck = write_stuck(c);
        }
        c->stuck_seen = stuck;
        next = c->next;
        conn_unref(c); /* may free c */
    }
}

/* ---- TLS ---- */

static int
tls_ctx_new(struct listener *l, SSL_CTX **out, const char **why)
{
    SSL_CTX *ctx;
    int r = SIGIL_ERR_CRYPTO;

    *out = NULL;
    if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
        *why = "SSL_CTX_new failed";
        goto out;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) ||
        !SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) ||
        !SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) || !SSL_CTX_set_dh_auto(ctx, 1)) {
        *why = "cannot apply the TLS settings";
        goto out;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, l->cert_file) != 1) {
        *why = "cannot load the certificate chain file (PEM, leaf first)";
        r = SIGIL_ERR_IO;
        goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, l->key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        *why = "cannot load the private key file, or it does not match the certificate";
        r = SIGIL_ERR_IO;
        goto out;
    }
    if (l->verify != NULL) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        SSL_CTX_set_cert_verify_callback(ctx, tls_verify_cb, l);
        /* No resumption: every connection runs the callback against the current bundle, and
         * a resumed session would come without the identity we keep per connection. */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        SSL_CTX_set_num_tickets(ctx, 0);
        h2o_ssl_register_alpn_protocols(ctx, ALPN_H2_H1);
    } else {
        h2o_ssl_register_alpn_protocols(ctx, ALPN_H1);
    }
    *out = ctx;
    ctx = NULL;
    r = 0;
out:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return r;
}

/* ---- listeners ---- */

static struct listener *
listener_new(struct sigil_http_server *srv, enum sigil_http_peer_kind kind)
{
    struct listener *l = calloc(1, sizeof *l);

    if (l == NULL)
        return NULL;
    l->srv = srv;
    l->kind = kind;
    l->accept_ctx.ctx = &srv->ctx;
    l->accept_ctx.hosts = srv->config.hosts;
    l->next = srv->listeners;
    srv->listeners = l;
    return l;
}

static void
on_listener_closed(uv_handle_t *h)
{
    struct listener *l = h->data;

    l->srv->listeners_open--;
    maybe_finish(l->srv);
}

static void
listener_close(struct listener *l)
{
    struct stat st;

    if (!l->open)
        return;
    l->open = false;
    /* remove the socket file only if it is still the one we made */
    if (l->unix_path != NULL && lstat(l->unix_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == l->unix_dev && st.st_ino == l->unix_ino)
        unlink(l->unix_path);
    uv_close(&l->u.h, on_listener_closed);
}

int
sigil_http_listen_unix(struct sigil_http_server *srv, const char *path, mode_t mode,
                       const char **why)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct listener *l;
    struct stat st;
    uint8_t rnd[4];
    int fd = -1, r;
    bool bound = false;

    *why = NULL;
    if (srv->stopping) {
        *why = "server is stopping";
        return SIGIL_ERR_STATE;
    }
    if (path == NULL || *path == '\0' || strlen(path) > UNIX_PATH_MAX) {
        *why = "socket path empty or longer than 96 bytes";
        return SIGIL_ERR_RANGE;
    }
    if ((r = sigil_unixsock_replaceable(path, why)) != 0)
        return r;
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        *why = "no randomness for the temporary name";
        return SIGIL_ERR_CRYPTO;
    }
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s.~%02x%02x%02x%02x", path, rnd[0], rnd[1], rnd[2],
             rnd[3]);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
        *why = "socket() failed";
        r = SIGIL_ERR_IO;
        goto out;
    }
    /* bind under a temporary name, set the mode, then rename into place: the socket is
     * never reachable under path with the umask's permissions */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        *why = "cannot bind the socket (directory missing or not writable?)";
        r = SIGIL_ERR_IO;
        goto out;
    }
    bound = true;
    if (chmod(sa.sun_path, mode) != 0 || rename(sa.sun_path, path) != 0 || lstat(path, &st) != 0) {
        *why = "cannot chmod or rename the socket into place";
        r = SIGIL_ERR_IO;
        goto out;
    }
    bound = false;
    if ((l = listener_new(srv, SIGIL_HTTP_PEER_UNIX)) == NULL ||
        (l->unix_path = strdup(path)) == NULL) {
        unlink(path);
        *why = "out of memory";
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    l->unix_dev = st.st_dev;
    l->unix_ino = st.st_ino;
    if (uv_pipe_init(srv->loop, &l->u.pipe, 0) != 0) {
        unlink(path);
        *why = "uv_pipe_init failed";
        r = SIGIL_ERR_IO;
        goto out;
    }
    l->u.h.data = l;
    l->open = true;
    srv->listeners_open++;
    if (uv_pipe_open(&l->u.pipe, fd) != 0) {
        listener_close(l);
        *why = "uv_pipe_open failed";
        r = SIGIL_ERR_IO;
        goto out;
    }
    fd = -1; /* the pipe owns it */
    if (uv_listen(&l->u.s, LISTEN_BACKLOG, on_accept) != 0) {
        listener_close(l);
        *why = "listen() on the Unix socket failed";
        r = SIGIL_ERR_IO;
        goto out;
    }
    r = 0;
out:
    if (bound)
        unlink(sa.sun_path);
    if (fd >= 0)
        close(fd);
    return r;
}

int
sigil_http_listen_tcp(struct sigil_http_server *srv, const char *host, uint16_t port,
                      const struct sigil_http_tls *tls, uint16_t *bound_port, const char **why)
{
    struct sockaddr_storage ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct listener *l;
    int namelen = sizeof ss, r;

    *why = NULL;
    if (srv->stopping) {
        *why = "server is stopping";
        return SIGIL_ERR_STATE;
    }
    if (tls == NULL || tls->cert_file == NULL || tls->key_file == NULL) {
        *why = "TCP listeners need TLS: a certificate and a key file";
        return SIGIL_ERR_INVALID;
    }
    memset(&ss, 0, sizeof ss);
    if (host != NULL && inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
    } else if (host != NULL && inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
    } else {
        *why = "host must be a numeric IPv4 or IPv6 address";
        return SIGIL_ERR_INVALID;
    }
    if ((l = listener_new(srv, tls->verify != NULL ? SIGIL_HTTP_PEER_MTLS : SIGIL_HTTP_PEER_TLS)) ==
            NULL ||
        (l->cert_file = strdup(tls->cert_file)) == NULL ||
        (l->key_file = strdup(tls->key_file)) == NULL) {
        *why = "out of memory";
        return SIGIL_ERR_NOMEM;
    }
    l->verify = tls->verify;
    l->verify_arg = tls->verify_arg;
    if ((r = tls_ctx_new(l, &l->ssl_ctx, why)) != 0)
        return r;
    l->accept_ctx.ssl_ctx = l->ssl_ctx;
    if (uv_tcp_init(srv->loop, &l->u.tcp) != 0) {
        *why = "uv_tcp_init failed";
        return SIGIL_ERR_IO;
    }
    l->u.h.data = l;
    l->open = true;
    srv->listeners_open++;
    if (uv_tcp_bind(&l->u.tcp, (struct sockaddr *)&ss, 0) != 0 ||
        uv_listen(&l->u.s, LISTEN_BACKLOG, on_accept) != 0) {
        listener_close(l);
        *why = "cannot bind or listen on the TCP address (in use?)";
        return SIGIL_ERR_IO;
    }
    if (bound_port != NULL) {
        if (uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &namelen) != 0) {
            listener_close(l);
            *why = "getsockname failed";
            return SIGIL_ERR_IO;
        }
        *bound_port = ntohs(ss.ss_family == AF_INET ? s4->sin_port : s6->sin6_port);
    }
    return 0;
}

int
sigil_http_tls_reload(struct sigil_http_server *srv, const char **why)
{
    struct listener *l;
    int r = 0;

    *why = NULL;
    /* build every new context first, so a bad file changes nothing */
    for (l = srv->listeners; l != NULL; l = l->next) {
        if (l->ssl_ctx == NULL || !l->open)
            continue;
        SSL_CTX *ctx = NULL;
        if ((r = tls_ctx_new(l, &ctx, why)) != 0)
            break;
        l->accept_ctx.ssl_ctx = ctx; /* staged; old one still in l->ssl_ctx */
    }
    for (l = srv->listeners; l != NULL; l = l->next) {
        if (l->ssl_ctx == NULL || !l->open)
            continue;
        if (r != 0) {
            if (l->accept_ctx.ssl_ctx != l->ssl_ctx)
                SSL_CTX_free(l->accept_ctx.ssl_ctx);
            l->accept_ctx.ssl_ctx = l->ssl_ctx;
        } else {
            /* handshakes in progress hold their own reference (SSL_new up-refs the ctx) */
            SSL_CTX_free(l->ssl_ctx);
            l->ssl_ctx = l->accept_ctx.ssl_ctx;
        }
    }
    return r;
}

/* ---- routes ---- */

int
sigil_http_route(struct sigil_http_server *srv, const char *method, const char *path, bool prefix,
                 sigil_http_handler_fn handler, void *arg)
{
    struct route *rs, *rt;

    if (!is_token(method) || path == NULL || path[0] != '/' || handler == NULL)
        return SIGIL_ERR_INVALID;
    if ((rs = realloc(srv->routes, (srv->nroutes + 1) * sizeof *rs)) == NULL)
        return SIGIL_ERR_NOMEM;
    srv->routes = rs;
    rt = rs + srv->nroutes;
    memset(rt, 0, sizeof *rt);
    if ((rt->method = strdup(method)) == NULL || (rt->path = strdup(path)) == NULL) {
        free(rt->method);
        return SIGIL_ERR_NOMEM;
    }
    rt->path_len = strlen(path);
    rt->prefix = prefix;
    rt->fn = handler;
    rt->arg = arg;
    srv->nroutes++;
    return 0;
}

/* ---- server life ---- */

static bool
sigpipe_is_harmless(void)
{
    struct sigaction sa;
    sigset_t cur;

    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler != SIG_DFL)
        return true;
    return pthread_sigmask(SIG_BLOCK, NULL, &cur) == 0 && sigismember(&cur, SIGPIPE) == 1;
}

int
sigil_http_server_new(uv_loop_t *loop, struct sigil_http_server **out, const char **why)
{
    struct sigil_http_server *srv;
    h2o_hostconf_t *host;
    h2o_pathconf_t *paths[2];

    *out = NULL;
    *why = NULL;
    if (!sigpipe_is_harmless()) {
        *why = "SIGPIPE must be ignored (signal(SIGPIPE, SIG_IGN)) before serving HTTP";
        return SIGIL_ERR_STATE;
    }
    if ((srv = calloc(1, sizeof *srv)) == NULL) {
        *why = "out of memory";
        return SIGIL_ERR_NOMEM;
    }
    srv->loop = loop;
    if (pthread_mutex_init(&srv->lock, NULL) != 0) {
        free(srv);
        *why = "pthread_mutex_init failed";
        return SIGIL_ERR_NOMEM;
    }
    if (uv_async_init(loop, &srv->async, on_posted) != 0) {
        pthread_mutex_destroy(&srv->lock);
        free(srv);
        *why = "uv_async_init failed";
        return SIGIL_ERR_IO;
    }
    /* timer init cannot fail on Unix; unref'd: it must not keep the loop alive alone */
    uv_timer_init(loop, &srv->reaper);
    uv_timer_start(&srv->reaper, on_reaper, 1000, 1000);
    uv_unref((uv_handle_t *)&srv->reaper);
    srv->handles_open = 2;
    h2o_config_init(&srv->config);
    srv->config.server_name = h2o_iovec_init(H2O_STRLIT("")); /* no version banner */
    srv->config.max_request_entity_size = SIGIL_HTTP_BODY_MAX;
    srv->config.http1.upgrade_to_http2 = 0; /* no h2c, no prior knowledge: h2 only by ALPN */
    srv->config.http2.max_concurrent_requests_per_connection = 16;
    srv->config.http2.graceful_shutdown_timeout = SIGIL_HTTP_STOP_GRACE_MS;
    host = h2o_config_register_host(&srv->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    /* "/" catches every origin-form path; the fallback catches "*" and absolute forms, so
     * all requests reach on_req and every error is ours (JSON) */
    paths[0] = h2o_config_register_path(host, "/", 0);
    paths[1] = &host->fallback_path;
    for (int i = 0; i < 2; i++) {
        struct glue_handler *gh = (struct glue_handler *)h2o_create_handler(paths[i], sizeof *gh);
        gh->super.on_req = on_req;
        gh->srv = srv;
        h2o_create_filter(paths[i], sizeof(h2o_filter_t))->on_setup_ostream = errjson_on_setup;
    }
    h2o_context_init(&srv->ctx, loop, &srv->config);
    *out = srv;
    return 0;
}

void
sigil_http_server_set_log(struct sigil_http_server *srv, sigil_http_log_fn fn, void *arg)
{
    srv->log = fn;
    srv->log_arg = arg;
}

static void
on_last_closed(uv_handle_t *h)
{
    struct sigil_http_server *srv = h->data;
    void (*done)(void *) = srv->done;
    void *done_arg = srv->done_arg;
    struct listener *l, *ln;

    if (--srv->handles_open != 0)
        return;

    /* h2o_context_dispose runs a nested uv_run(UV_RUN_NOWAIT) to finish closing its timers.
     * We are in a close callback, between libuv's phases, where that is safe enough; this
     * is the only place it runs. The GOAWAY timer that h2o_context_request_shutdown armed
     * may still be pending (no HTTP/2 connection needed it); dispose asserts it is not. */
    if (h2o_timeout_is_linked(&srv->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&srv->ctx.http2._graceful_shutdown_timeout);
    h2o_context_dispose(&srv->ctx);
    h2o_config_dispose(&srv->config);
    for (l = srv->listeners; l != NULL; l = ln) {
        ln = l->next;
        SSL_CTX_free(l->ssl_ctx);
        free(l->cert_file);
        free(l->key_file);
        free(l->unix_path);
        free(l);
    }
    for (size_t i = 0; i < srv->nroutes; i++) {
        free(srv->routes[i].method);
        free(srv->routes[i].path);
    }
    free(srv->routes);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
    if (done != NULL)
        done(done_arg);
}

static void
maybe_finish(struct sigil_http_server *srv)
{
    if (!srv->stopping || srv->finishing)
        return;
    if (srv->listeners_open != 0 || srv->conns != NULL || srv->streams_open != 0)
        return;
    srv->finishing = true;
    srv->async.data = srv->reaper.data = srv;
    uv_close((uv_handle_t *)&srv->async, on_last_closed);
    uv_close((uv_handle_t *)&srv->reaper, on_last_closed);
}

void
sigil_http_server_stop(struct sigil_http_server *srv, void (*done)(void *arg), void *arg)
{
    struct listener *l;
    struct conn *c;

    if (srv->stopping)
        return;
    srv->stopping = true;
    srv->done = done;
    srv->done_arg = arg;
    for (l = srv->listeners; l != NULL; l = l->next)
        listener_close(l);
    /* HTTP/2: GOAWAY now, a second one a second later, then h2o closes the connections
     * once their streams are done (or after SIGIL_HTTP_STOP_GRACE_MS). HTTP/1: keep-alive
     * ends with the next response; idle connections are ended here. */
    h2o_context_request_shutdown(&srv->ctx);
    for (c = srv->conns; c != NULL; c = c->next)
        if (c->live == 0 && !c->is_h2)
            conn_shutdown(c);
    maybe_finish(srv);
}

/* ---- pure helpers ---- */

int
sigil_http_peer_spiffeid(STACK_OF(X509) *chain, char id[SIGIL_HTTP_ID_MAX + 1], const char **why)
{
    struct sigil_spiffeid sid;
    X509 *leaf;
    int r;

    id[0] = '\0';
    *why = NULL;
    if (chain == NULL || sk_X509_num(chain) < 1 || (leaf = sk_X509_value(chain, 0)) == NULL) {
        *why = "X-1: no peer certificate";
        return SIGIL_ERR_INVALID;
    }
    if ((r = sigil_x509_cert_spiffeid(leaf, &sid, why)) != 0)
        return r;
    if (!sigil_spiffeid_has_path(&sid)) {
        *why = "X-2: a peer's SPIFFE ID must have a path";
        return SIGIL_ERR_INVALID;
    }
    memcpy(id, sid.str, sid.len + 1);
    return 0;
}

/* Percent-decodes s[0..n) ('+' is a space) into out, writing at most cap bytes; *outlen is
 * the full decoded length. A bad escape or a decoded NUL is SIGIL_ERR_INVALID. */
static int
pct_decode(const char *s, size_t n, uint8_t *out, size_t cap, size_t *outlen, const char **why)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (size_t i = 0; i < n; i++, o++) {
        uint8_t c = (uint8_t)s[i];
        if (c == '%') {
            const char *hi, *lo;
            if (n - i < 3 || s[i + 1] == '\0' || s[i + 2] == '\0' ||
                (hi = strchr(hex, ascii_lower((uint8_t)s[i + 1]))) == NULL ||
                (lo = strchr(hex, ascii_lower((uint8_t)s[i + 2]))) == NULL) {
                *why = "query: '%' not followed by two hex digits";
                return SIGIL_ERR_INVALID;
            }
            c = (uint8_t)(((hi - hex) << 4) | (lo - hex));
            i += 2;
        } else if (c == '+') {
            c = ' ';
        }
        if (c == '\0') {
            *why = "query: NUL byte";
            return SIGIL_ERR_INVALID;
        }
        if (o < cap)
            out[o] = c;
    }
    *outlen = o;
    return 0;
}

int
sigil_http_query_param(const char *query, size_t qlen, const char *name, struct sigil_buf *out,
                       const char **why)
{
    uint8_t key[QUERY_KEY_MAX];
    const char *val = NULL;
    size_t vlen = 0, nlen, klen, dlen, i = 0;
    bool found = false;
    int r;

    *why = NULL;
    if (name == NULL || (nlen = strlen(name)) == 0 || nlen > QUERY_KEY_MAX) {
        *why = "query: parameter name empty or too long";
        return SIGIL_ERR_INVALID;
    }
    if (query == NULL)
        qlen = 0;
    while (i < qlen) {
        const char *seg = query + i, *amp = memchr(seg, '&', qlen - i), *eq;
        size_t slen = amp != NULL ? (size_t)(amp - seg) : qlen - i;
        i += slen + 1;
        if (slen == 0)
            continue;
        eq = memchr(seg, '=', slen);
        klen = eq != NULL ? (size_t)(eq - seg) : slen;
        if ((r = pct_decode(seg, klen, key, sizeof key, &dlen, why)) != 0)
            return r;
        /* every value must decode, wanted or not: a malformed query is refused whole */
        const char *v = eq != NULL ? eq + 1 : seg + slen;
        size_t vl = eq != NULL ? slen - klen - 1 : 0, vdl;
        if ((r = pct_decode(v, vl, NULL, 0, &vdl, why)) != 0)
            return r;
        if (dlen != nlen || memcmp(key, name, nlen) != 0)
            continue;
        if (found) {
            *why = "query: parameter given more than once";
            return SIGIL_ERR_INVALID;
        }
        found = true;
        val = v;
        vlen = vl;
    }
    if (!found) {
        *why = "query: parameter missing";
        return SIGIL_ERR_NOTFOUND;
    }
    if ((r = pct_decode(val, vlen, NULL, 0, &dlen, why)) != 0)
        return r;
    if (dlen > SIGIL_HTTP_QUERY_VALUE_MAX) {
        *why = "query: parameter value over 8 KiB";
        return SIGIL_ERR_RANGE;
    }
    if ((r = sigil_buf_reserve(out, dlen + 1)) != 0)
        return r;
    pct_decode(val, vlen, out->data + out->len, dlen, &dlen, why);
    out->len += dlen;
    return 0;
}
