/* Private to libsigil's rpc module: the server's structures, shared by rpc_server.c
 * (listeners, connections, shutdown) and rpc_call.c (HTTP/2 streams as gRPC calls). */
#ifndef SIGIL_RPC_SRV_H
#define SIGIL_RPC_SRV_H

#include <sys/types.h>

#include "rpc_int.h"

/* A registered method; allocated one by one so calls may point at them. */
struct rpc_method {
    char *path;
    enum sigil_rpc_kind kind;
    sigil_rpc_handler_fn handler;
    void *arg;
    char *req_header;
    char *req_value;
    char *req_why;
};

struct rpc_listener {
    struct rpc_listener *next;
    struct sigil_rpc_server *srv;
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } u;
    struct sigil_tls_ctx *tls; /* NULL for Unix sockets */
    char *path;                /* Unix socket file, removed on close if still ours */
    dev_t dev;
    ino_t ino;
    unsigned nconns; /* open connections accepted here */
    bool open;       /* not yet uv_close'd */
    bool handle_closed;
};

struct srv_conn {
    struct rpc_conn c; /* first: the engine's callbacks cast back */
    struct sigil_rpc_server *srv;
    struct rpc_listener *l; /* NULL when fed from a buffer */
    struct srv_conn *prev, *next;
    struct sigil_rpc_call *calls; /* live calls on this connection */
    struct sigil_rpc_peer peer;
    size_t queued;       /* outbound bytes queued by all its calls */
    size_t inbound;      /* request bytes its calls hold (partial and unary requests) */
    uint64_t *rst_times; /* ring of the latest client RST_STREAM times (uv_now) */
    unsigned rst_head, rst_n;
    bool calm; /* closed for Rapid Reset */
};

struct sigil_rpc_server {
    uv_loop_t *loop;
    struct sigil_rpc_server_opts o;
    struct rpc_method **methods;
    size_t nmethods, capmethods;
    struct rpc_listener *listeners;
    struct srv_conn *conns;
    struct rpc_tracker tr; /* call deadlines, handshake limits, the grace timer */
    struct rpc_timer *grace;
    struct sigil_rpc_server_stats stats;
    int port;
    bool shutting_down;
    bool freed;
    void (*done)(void *arg);
    void *done_arg;
};

/* The stored trailers of a finished call, submitted once its messages are out. */
struct rpc_trailers {
    int code;
    char *message; /* percent-encoded, or NULL */
    size_t n;
    char *names[RPC_MD_MAX];
    char *values[RPC_MD_MAX];
};

struct sigil_rpc_call {
    struct srv_conn *conn; /* NULL once the stream is gone */
    struct sigil_rpc_call *prev, *next;
    uv_loop_t *loop;
    int32_t sid;
    const struct rpc_method *m; /* NULL until the path matched; only used while connected */
    enum sigil_rpc_kind kind;   /* kept here: a held call may outlive its server */
    char *path;
    struct rpc_mdstore md;
    size_t hdr_bytes;
    uint64_t timeout_ms;
    uint64_t deadline;
    struct rpc_timer *deadline_timer;
    struct sigil_rpc_deframer df;
    struct sigil_buf req; /* the request of unary and server-streaming calls */
    unsigned nreq;
    unsigned nsent;
    size_t inbound; /* what this call adds to conn->inbound */
    struct rpc_outq q;
    struct rpc_trailers tr;
    struct sigil_rpc_call_cbs cbs;
    void *ud;
    /* request facts gathered from the headers */
    bool is_post, ct_grpc, ct_seen, has_timeout, bad_timeout, hdr_overflow, bad_md;
    bool compressed_ok; /* a grpc-encoding other than identity was announced */
    /* lifetime */
    bool stream_open;   /* nghttp2 holds a pointer to this call */
    bool handler_holds; /* the handler owns a reference until finish or on_cancel */
    bool started;       /* the handler ran */
    bool cancelled;     /* the stream or connection is gone, or the deadline passed */
    bool in_cancel;     /* on_cancel is running (a finish() from there must not free) */
    bool in_feed;       /* the deframer is on the stack */
    /* response */
    bool headers_sent;
    bool finished;
    bool trailers_sent;
};

/* rpc_call.c: the HTTP/2 callbacks of a server session. */
extern const struct h2_callbacks rpc_srv_h2_callbacks;
/* rpc_call.c: ends every call of a closing connection (cancels their handlers). */
void rpc_srv_conn_drop_calls(struct srv_conn *sc);

#endif
