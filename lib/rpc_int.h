/* Private to libsigil's rpc module (rpc_*.c): the connection engine the gRPC server and client
 * share (a libuv stream, optional TLS, an HTTP/2 session, at most one write in flight so that
 * backpressure reaches the callers' queues), timers that may outlive their owners, and the
 * metadata store. */
#ifndef SIGIL_RPC_INT_H
#define SIGIL_RPC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "h2.h"
#include "sigil/buf.h"
#include "sigil/rpc.h"
#include "sigil/tls.h"

/* Bytes pulled from nghttp2 for one socket write: at most this much (plus one frame) sits
 * between a call's queue and the kernel, so a peer that does not read stalls the queues. */
#define RPC_WRITE_CHUNK 65536
/* How long a closing connection may wait for its last bytes (GOAWAY, an alert) to be taken. */
#define RPC_LINGER_MS 5000
/* HTTP/2 windows we announce: large enough for 4 MiB messages without stalls. */
#define RPC_STREAM_WINDOW (1u << 20)
#define RPC_CONN_WINDOW (16u << 20)

/* Counts open libuv handles of an owner (server, client) that outlive their users. */
struct rpc_tracker {
    unsigned open;
    void (*drained)(struct rpc_tracker *tr); /* runs each time open drops to 0 */
};

/* A one-shot timer, allocated apart from its user so the user may go away while the handle
 * closes. fn runs at most once; the timer closes itself after fn. */
struct rpc_timer;
struct rpc_timer *rpc_timer_start(uv_loop_t *loop, struct rpc_tracker *tr, uint64_t ms,
                                  void (*fn)(void *arg), void *arg);
/* Stops and closes the timer; NULL and already-fired timers are ignored. */
void rpc_timer_stop(struct rpc_timer *t);

struct rpc_conn;

struct rpc_conn_ops {
    /* The transport is ready (TLS handshake done, or none): set c->h2 and return 0, or an
     * error to close the connection. */
    int (*ready)(struct rpc_conn *c);
    /* The connection is going away (once): end every call. c->h2 is still set. */
    void (*closing)(struct rpc_conn *c);
    /* Every handle of the connection is closed: free the owner. */
    void (*freed)(struct rpc_conn *c);
};

/* One connection. The owner embeds it, fills io with uv_pipe_init/uv_tcp_init and calls
 * rpc_conn_start once connected; everything else runs from here. */
struct rpc_conn {
    uv_loop_t *loop;
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } io;
    uv_idle_t idle; /* runs a deferred flush outside nghttp2's callbacks */
    uv_write_t wreq;
    const struct rpc_conn_ops *ops;
    struct rpc_tracker *tr;
    struct sigil_tls_conn *tls;
    struct h2_session *h2;
    struct rpc_timer *hs_timer; /* TLS handshake time limit */
    struct rpc_timer *linger;   /* bounds close_after_flush against a peer that never reads */
    struct sigil_buf wbuf;      /* the bytes of the uv_write in flight */
    struct sigil_buf in;        /* decrypted input */
    struct sigil_buf out;       /* HTTP/2 output before encryption */
    const char *why;            /* why the connection closed, for logs and tests */
    unsigned handles;           /* open handles of this connection (io, idle) */
    int depth;                  /* > 0 inside nghttp2 (no send, no free there) */
    bool has_io;                /* io is initialised (false for sigil_rpc_server_feed_raw) */
    bool writing;
    bool ended;             /* rpc_conn_close ran or is pending */
    bool closed;            /* the teardown ran */
    bool close_after_flush; /* close once everything queued is written */
    bool proto_error;       /* the peer broke HTTP/2 */
};

/* Prepares c (the idle handle); io is initialised by the owner afterwards. Returns 0 or
 * SIGIL_ERR_IO. */
int rpc_conn_init(struct rpc_conn *c, uv_loop_t *loop, const struct rpc_conn_ops *ops,
                  struct rpc_tracker *tr);
/* Marks io as initialised (counted, closed with the connection). */
void rpc_conn_adopt_io(struct rpc_conn *c);
/* Starts reading and, with tls, the handshake (server_name for clients) limited to
 * hs_timeout_ms. Returns 0 or an error (the caller then closes c). */
int rpc_conn_start(struct rpc_conn *c, struct sigil_tls_ctx *tls, const char *server_name,
                   uint64_t hs_timeout_ms);
/* Processes plaintext as if read from the peer (no socket: tests and fuzzing). */
void rpc_conn_feed_plain(struct rpc_conn *c, const uint8_t *p, size_t n);
/* Asks for a flush soon (new frames were submitted). */
void rpc_conn_kick(struct rpc_conn *c);
/* Closes the connection now (why: a static text), or as soon as nghttp2 has returned. */
void rpc_conn_close(struct rpc_conn *c, const char *why);
/* Stops reading and closes once the queued output (a GOAWAY) is written. */
void rpc_conn_close_after_flush(struct rpc_conn *c, const char *why);

/* ---- metadata ---- */

struct rpc_md_entry {
    char *name;
    uint8_t *value;
    size_t len;
};

/* Received metadata: names lowercase as HTTP/2 requires, -bin values decoded. */
struct rpc_mdstore {
    struct rpc_md_entry *v;
    size_t n, cap;
};

/* Adds one received header; returns 0, SIGIL_ERR_INVALID (bad -bin base64) or
 * SIGIL_ERR_NOMEM. */
int rpc_md_add(struct rpc_mdstore *m, const uint8_t *name, size_t nl, const uint8_t *value,
               size_t vl);
/* Counts entries named name and points *value, *len at the first. */
size_t rpc_md_get(const struct rpc_mdstore *m, const char *name, const uint8_t **value,
                  size_t *len);
void rpc_md_free(struct rpc_mdstore *m);

/* Outgoing metadata as header fields: -bin values base64-encoded into strings that *tmp
 * collects (free with rpc_nv_tmp_free). Appends to nv (room for n entries). Returns 0,
 * SIGIL_ERR_INVALID for a bad name or value, SIGIL_ERR_NOMEM. */
struct rpc_nv_tmp {
    char *s[32];
    size_t n;
};
int rpc_md_to_nv(const struct sigil_rpc_md *md, size_t n, struct h2_nv *nv, struct rpc_nv_tmp *tmp);
void rpc_nv_tmp_free(struct rpc_nv_tmp *tmp);
/* Most metadata entries one call may send at once. */
#define RPC_MD_MAX 32

/* A header field from a string literal or NUL-terminated string. */
struct h2_nv rpc_nv(const char *name, const char *value);

/* ---- outbound queue of one call: framed messages not yet handed to nghttp2 ---- */

struct rpc_outq {
    struct sigil_buf b;
    size_t off; /* bytes already read from b */
};

static inline size_t
rpc_outq_len(const struct rpc_outq *q)
{
    return q->b.len - q->off;
}
/* Appends one framed message; returns 0, SIGIL_ERR_RANGE or SIGIL_ERR_NOMEM. */
int rpc_outq_push(struct rpc_outq *q, const void *msg, size_t len);
/* Copies up to len queued bytes into buf and returns the count. */
size_t rpc_outq_read(struct rpc_outq *q, uint8_t *buf, size_t len);
void rpc_outq_free(struct rpc_outq *q);

/* The status for a response without grpc-status, from its HTTP status (gRPC's
 * http-grpc-status-mapping). */
int rpc_http_to_code(int http_status);

#endif
