/* The HTTP server of Sigil (admin API, health, metrics, bundle endpoint) on a caller's libuv
 * loop. libh2o 2.2.5 does the protocol work, but every h2o call stays in lib/http.c: callers
 * see only this interface. Listeners: a Unix socket (no TLS, callers known by SO_PEERCRED),
 * public TLS (HTTP/1.1 only) and mutual TLS (HTTP/2 and HTTP/1.1; a callback of ours turns the
 * client's chain into a SPIFFE ID). Request bodies are capped at 1 MiB, headers are capped,
 * and every error response is JSON: {"error":{"code":"http.<kind>","message":"<reason>"}}.
 *
 * Threads: everything here runs on the loop's thread, except sigil_http_post and
 * sigil_http_post_json, which a worker thread calls to answer a deferred request.
 * The process must ignore SIGPIPE (sigil_http_server_new checks): libuv writes with write(2),
 * and a client that closes early would otherwise kill it. */
#ifndef SIGIL_HTTP_H
#define SIGIL_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <openssl/x509.h>
#include <uv.h>

#include "sigil/buf.h"

#define SIGIL_HTTP_BODY_MAX (1024 * 1024)       /* request body bytes; more is 413 */
#define SIGIL_HTTP_HEADERS_MAX 64               /* request header fields; more is 431 */
#define SIGIL_HTTP_HEADER_BYTES_MAX (16 * 1024) /* names + values of one request; more is 431 */
#define SIGIL_HTTP_ID_MAX 2048                  /* bytes of a peer identity (a SPIFFE ID, ID-7) */
#define SIGIL_HTTP_PEER_CHAIN_MAX 16            /* certificates a client may send */
#define SIGIL_HTTP_DEFERRED_PER_CONN_MAX 16     /* unanswered deferred requests per connection */
#define SIGIL_HTTP_QUERY_VALUE_MAX (8 * 1024)   /* decoded bytes of one query parameter */
#define SIGIL_HTTP_STOP_GRACE_MS 10000 /* HTTP/2 connections are cut this long after stop */

struct sigil_http_server;
struct sigil_http_req;

/* How the caller of a request was identified. */
enum sigil_http_peer_kind {
    SIGIL_HTTP_PEER_UNIX = 1, /* Unix socket: uid, gid, pid from SO_PEERCRED */
    SIGIL_HTTP_PEER_TLS,      /* TLS without client authentication: anonymous */
    SIGIL_HTTP_PEER_MTLS,     /* mutual TLS: id is what the verify callback returned */
};

/* The caller of a request, as the kernel or the TLS handshake established it. */
struct sigil_http_peer {
    enum sigil_http_peer_kind kind;
    uid_t uid;      /* SIGIL_HTTP_PEER_UNIX only */
    gid_t gid;      /* SIGIL_HTTP_PEER_UNIX only */
    pid_t pid;      /* SIGIL_HTTP_PEER_UNIX only; may be reused later, pin it with a pidfd */
    const char *id; /* SIGIL_HTTP_PEER_MTLS only: NUL-terminated SPIFFE ID; else NULL */
};

/* Verifies a client's certificate chain during the TLS handshake (on the loop thread): chain is
 * what the client sent, leaf first, 1 to SIGIL_HTTP_PEER_CHAIN_MAX certificates, not verified
 * by anyone else (this callback IS the verification; check it against the current bundle).
 * On success write the caller's identity, NUL-terminated, into id and return 0; any other
 * return fails the handshake (set *why to a static text; it is logged). */
typedef int (*sigil_http_verify_fn)(void *arg, STACK_OF(X509) *chain,
                                    char id[SIGIL_HTTP_ID_MAX + 1], const char **why);

/* A TLS listener's configuration (TLS 1.2 and 1.3, Mozilla "intermediate" ciphers). */
struct sigil_http_tls {
    const char *cert_file;       /* PEM: server certificate, then its intermediates */
    const char *key_file;        /* PEM: its private key */
    sigil_http_verify_fn verify; /* NULL: no client authentication, HTTP/1.1 only (public);
                                  * else a client certificate is required, HTTP/2 offered */
    void *verify_arg;
};

/* A request handler: runs on the loop thread; it must answer req exactly once, now with a
 * sigil_http_respond* call, or later after sigil_http_req_defer. */
typedef void (*sigil_http_handler_fn)(struct sigil_http_req *req, void *arg);

/* A log sink for things no caller sees (rejected handshakes, dropped answers). */
typedef void (*sigil_http_log_fn)(void *arg, const char *msg);

/* ---- server ---- */

/* Creates a server on loop (no listener yet). *out is freed by sigil_http_server_stop.
 * Returns 0, SIGIL_ERR_NOMEM, or SIGIL_ERR_STATE with *why set if SIGPIPE is not ignored. */
int sigil_http_server_new(uv_loop_t *loop, struct sigil_http_server **out, const char **why);

/* Sets the log sink (NULL: silent). */
void sigil_http_server_set_log(struct sigil_http_server *srv, sigil_http_log_fn fn, void *arg);

/* Listens on a Unix socket at path (at most 96 bytes) with permissions mode. The socket is
 * made under a temporary name, chmod-ed, then renamed over path, so it never exists with
 * looser permissions. An existing socket at path is replaced only if nobody answers on it
 * (stale); a live socket is SIGIL_ERR_EXISTS, anything else at path (file, symlink) is
 * SIGIL_ERR_EXISTS too and is left alone. Stopping removes path if it is still ours.
 * Returns 0 or SIGIL_ERR_RANGE / SIGIL_ERR_EXISTS / SIGIL_ERR_IO / SIGIL_ERR_NOMEM + *why. */
int sigil_http_listen_unix(struct sigil_http_server *srv, const char *path, mode_t mode,
                           const char **why);

/* Listens on TCP host:port (a numeric IPv4 or IPv6 address) with TLS as tls says. port 0
 * binds a free port; *bound_port (if not NULL) is set to the port bound. Returns 0 or
 * SIGIL_ERR_INVALID / SIGIL_ERR_IO / SIGIL_ERR_CRYPTO / SIGIL_ERR_NOMEM with *why set. */
int sigil_http_listen_tcp(struct sigil_http_server *srv, const char *host, uint16_t port,
                          const struct sigil_http_tls *tls, uint16_t *bound_port, const char **why);

/* Re-reads the certificate and key files of every TLS listener (after an SVID rotation);
 * new connections use them, open ones keep theirs. All or nothing: on error nothing changed.
 * Returns 0 or SIGIL_ERR_IO / SIGIL_ERR_CRYPTO with *why set. */
int sigil_http_tls_reload(struct sigil_http_server *srv, const char **why);

/* Routes method (e.g. "GET") and path to handler. path must start with '/'; with prefix
 * true it matches every request path that starts with it (end it with '/'), else only
 * itself. Paths are matched byte for byte, undecoded, without the query; an exact route
 * wins over prefixes, a longer prefix over a shorter one. A path with routes but none for
 * the method gets 405, no route at all 404. Returns 0, SIGIL_ERR_INVALID or
 * SIGIL_ERR_NOMEM. The strings are copied. */
int sigil_http_route(struct sigil_http_server *srv, const char *method, const char *path,
                     bool prefix, sigil_http_handler_fn handler, void *arg);

/* Stops gracefully: closes the listeners (removing the Unix socket files), lets HTTP/2 clients
 * finish with GOAWAY, closes idle HTTP/1.1 connections and the others after their response,
 * waits until every deferred request was answered, then frees srv and calls done(arg) on the
 * loop. After done, run the loop until it returns before closing it: h2o's handles are closed
 * by then. h2o 2.2.5 keeps a few process-wide caches (memory-pool chunks, socket buffers)
 * reachable from globals; nothing of the server is left. Call it once. */
void sigil_http_server_stop(struct sigil_http_server *srv, void (*done)(void *arg), void *arg);

/* ---- the request (on the loop thread, while the handler runs) ---- */

/* Returns the method, e.g. "GET" (NUL-terminated, owned by req). */
const char *sigil_http_req_method(const struct sigil_http_req *req);

/* Returns the path without the query, undecoded, NUL-terminated (owned by req). */
const char *sigil_http_req_path(const struct sigil_http_req *req);

/* Returns the query string without '?', undecoded, NUL-terminated (owned by req), or NULL
 * if the request has none. Read parameters with sigil_http_query_param. */
const char *sigil_http_req_query(const struct sigil_http_req *req);

/* Looks up the request header name (case-insensitive): *value and *len are its bytes
 * (owned by req, not NUL-terminated). Returns 0, SIGIL_ERR_NOTFOUND, or SIGIL_ERR_INVALID
 * if the header occurs more than once (never guess which one counts). */
int sigil_http_req_header(const struct sigil_http_req *req, const char *name, const uint8_t **value,
                          size_t *len);

/* Returns the request body (owned by req, at most SIGIL_HTTP_BODY_MAX bytes) and sets *len;
 * an empty body gives *len == 0 and a non-NULL pointer. */
const uint8_t *sigil_http_req_body(const struct sigil_http_req *req, size_t *len);

/* Parses the body as one JSON object (duplicate keys rejected) into *out (caller decrefs).
 * Returns 0 or SIGIL_ERR_INVALID with *why set. */
int sigil_http_req_body_json(const struct sigil_http_req *req, json_t **out, const char **why);

/* Returns who sent the request (valid until req is answered). */
const struct sigil_http_peer *sigil_http_req_peer(const struct sigil_http_req *req);

/* True if req came over HTTP/2. */
bool sigil_http_req_is_http2(const struct sigil_http_req *req);

/* ---- answering (on the loop thread) ---- */

/* Adds a response header (before answering, only while the handler runs). name must be a
 * token and not one the server sets itself (content-type, content-length, connection,
 * transfer-encoding); value printable, no CR/LF. Returns 0 or SIGIL_ERR_INVALID /
 * SIGIL_ERR_STATE. */
int sigil_http_res_header(struct sigil_http_req *req, const char *name, const char *value);

/* Answers req with status (200..599), content_type and len bytes of body (copied). A
 * status >= 400 that is not application/json is rewritten to {"error":{"code":"http.<kind>",
 * "message":"<reason phrase>"}}.
 * Always answers (bad arguments become a 500) and releases a deferred req. Returns 0,
 * SIGIL_ERR_CANCELLED if the client left (nothing sent), SIGIL_ERR_INVALID for bad
 * arguments, or SIGIL_ERR_STATE if req was already answered. */
int sigil_http_respond(struct sigil_http_req *req, int status, const char *content_type,
                       const void *body, size_t len);

/* Answers with json serialized compactly as application/json. Steals the reference to json
 * (json may be NULL, as from a failed json_pack: the answer is then a 500). Returns as
 * sigil_http_respond. */
int sigil_http_respond_json(struct sigil_http_req *req, int status, json_t *json);

/* Answers with status and {"error": {"code": "http.<kind of status>", "message": reason}}
 * (http.not_found, http.busy, ...). Returns as sigil_http_respond. */
int sigil_http_respond_error(struct sigil_http_req *req, int status, const char *reason);

/* Called by a handler that will answer later, off its own call: from the loop with
 * sigil_http_respond*, or from any thread with sigil_http_post*. req stays valid until then
 * even if the client leaves (the answer is then dropped). A connection may hold at most
 * SIGIL_HTTP_DEFERRED_PER_CONN_MAX: beyond, this answers 503 itself and returns
 * SIGIL_ERR_RANGE (then req must not be used). Returns 0 when deferred, SIGIL_ERR_STATE
 * outside the handler or when already answered. */
int sigil_http_req_defer(struct sigil_http_req *req);

/* Answers a deferred req from any thread (copies body; the loop sends it soon, or drops it
 * if the client left). Must be called once per deferred req; a stopping server waits for it.
 * Returns 0 or SIGIL_ERR_STATE if req is not deferred or already answered; on allocation
 * failure a 500 is sent instead and SIGIL_ERR_NOMEM returned, on bad arguments a 500 and
 * SIGIL_ERR_INVALID. */
int sigil_http_post(struct sigil_http_req *req, int status, const char *content_type,
                    const void *body, size_t len);

/* As sigil_http_post with json serialized compactly (in the calling thread); steals the
 * reference to json (NULL gives a 500). */
int sigil_http_post_json(struct sigil_http_req *req, int status, json_t *json);

/* ---- pure helpers ---- */

/* Extracts the SPIFFE ID of a peer from its chain (leaf first): the leaf must carry exactly
 * one URI SAN, a valid SPIFFE ID (ID-1..ID-7) with a non-root path. This reads,
 * it does not verify: run it after the chain verified. Writes the ID, NUL-terminated, into
 * id. Returns 0 or SIGIL_ERR_INVALID / SIGIL_ERR_RANGE / SIGIL_ERR_NOTFOUND (no URI SAN)
 * with *why naming the rule. */
int sigil_http_peer_spiffeid(STACK_OF(X509) *chain, char id[SIGIL_HTTP_ID_MAX + 1],
                             const char **why);

/* Finds parameter name in an undecoded query string (a=1&b=2, no '?') of qlen bytes and
 * appends its value, percent-decoded ('+' is a space), to out. A parameter given twice,
 * bad %-escapes, a decoded NUL or more than SIGIL_HTTP_QUERY_VALUE_MAX bytes are errors.
 * Returns 0, SIGIL_ERR_NOTFOUND, SIGIL_ERR_INVALID / SIGIL_ERR_RANGE with *why set, or
 * SIGIL_ERR_NOMEM. */
int sigil_http_query_param(const char *query, size_t qlen, const char *name, struct sigil_buf *out,
                           const char **why);

#endif
