/* gRPC over HTTP/2 (nghttp2) on one libuv loop: a server listening on Unix sockets and on TCP
 * with TLS 1.3, and a client for the same. Messages are opaque bytes here (callers pack them
 * with protobuf-c). Nothing in this module blocks the loop; the client resolves host names
 * with uv_getaddrinfo, on libuv's thread pool.
 *
 * Server call lifetime: a handler receives a call and holds it until it calls
 * sigil_rpc_call_finish() or until its on_cancel callback returns (client reset, connection
 * closed, deadline, shutdown); after either, the call must not be touched. A handler without
 * on_cancel keeps the call until finish(), which then returns SIGIL_ERR_CANCELLED.
 * Client call lifetime: from sigil_rpc_client_call() until its on_end callback returns.
 * Processes using this module must ignore SIGPIPE (libuv writes with write(2), and a peer that
 * went away would otherwise kill the process). */
#ifndef SIGIL_RPC_H
#define SIGIL_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/x509.h>
#include <uv.h>

#include "sigil/buf.h"
#include "sigil/tls.h"

/* The 17 gRPC status codes. */
enum sigil_rpc_code {
    SIGIL_RPC_OK = 0,
    SIGIL_RPC_CANCELLED = 1,
    SIGIL_RPC_UNKNOWN = 2,
    SIGIL_RPC_INVALID_ARGUMENT = 3,
    SIGIL_RPC_DEADLINE_EXCEEDED = 4,
    SIGIL_RPC_NOT_FOUND = 5,
    SIGIL_RPC_ALREADY_EXISTS = 6,
    SIGIL_RPC_PERMISSION_DENIED = 7,
    SIGIL_RPC_RESOURCE_EXHAUSTED = 8,
    SIGIL_RPC_FAILED_PRECONDITION = 9,
    SIGIL_RPC_ABORTED = 10,
    SIGIL_RPC_OUT_OF_RANGE = 11,
    SIGIL_RPC_UNIMPLEMENTED = 12,
    SIGIL_RPC_INTERNAL = 13,
    SIGIL_RPC_UNAVAILABLE = 14,
    SIGIL_RPC_DATA_LOSS = 15,
    SIGIL_RPC_UNAUTHENTICATED = 16,
};

/* Returns the canonical name of a status code ("OK", "INVALID_ARGUMENT", ...), or NULL if
 * code is not one of the 17. */
const char *sigil_rpc_code_name(int code);

#define SIGIL_RPC_DEFAULT_MAX_MESSAGE (4u << 20)

/* ---- Pure parts: 5-byte message framing, grpc-timeout, grpc-message ---- */

/* Incremental decoder of gRPC's length-prefixed messages (1 flag byte, 4-byte big-endian
 * length). Fields are private; it lives wherever its owner wants (no allocation until a
 * message spans several feeds). */
struct sigil_rpc_deframer {
    size_t max;           /* largest accepted message */
    struct sigil_buf msg; /* the partial message */
    uint32_t want;        /* length of the current message */
    uint8_t hdr[5];
    uint8_t nhdr; /* header bytes seen; 5 while reading a payload */
    bool failed;
};

/* Called for every complete message; bytes (never NULL) are valid during the call only. A non-zero
 * return stops the deframer and is returned by sigil_rpc_deframer_feed. */
typedef int (*sigil_rpc_msg_fn)(void *arg, bool compressed, const uint8_t *msg, size_t len);

/* Prepares a deframer accepting messages of at most max bytes. */
void sigil_rpc_deframer_init(struct sigil_rpc_deframer *d, size_t max);
/* Feeds bytes split anywhere. Returns 0, SIGIL_ERR_RANGE as soon as a header announces more
 * than max bytes (nothing of that payload is buffered), SIGIL_ERR_PROTOCOL for a flag byte
 * other than 0 or 1, SIGIL_ERR_NOMEM, or on_msg's non-zero result; after any error it
 * refuses further input with SIGIL_ERR_STATE. */
int sigil_rpc_deframer_feed(struct sigil_rpc_deframer *d, const uint8_t *p, size_t n,
                            sigil_rpc_msg_fn on_msg, void *arg);
/* True if no partial message is pending (a stream may end cleanly here). */
bool sigil_rpc_deframer_idle(const struct sigil_rpc_deframer *d);
/* Frees the partial-message buffer. */
void sigil_rpc_deframer_free(struct sigil_rpc_deframer *d);
/* Appends the 5-byte prefix and the message to out; returns 0, SIGIL_ERR_RANGE (over 4 GiB)
 * or SIGIL_ERR_NOMEM. */
int sigil_rpc_frame(struct sigil_buf *out, const uint8_t *msg, size_t len);

/* Longest text sigil_rpc_timeout_format writes, with its NUL. */
#define SIGIL_RPC_TIMEOUT_MAX 10
/* Parses a grpc-timeout value (1 to 8 ASCII digits, then one of H M S m u n) into
 * milliseconds, rounding sub-millisecond values up; returns 0 or SIGIL_ERR_INVALID. */
int sigil_rpc_timeout_parse(const char *s, size_t n, uint64_t *ms);
/* Writes ms as a grpc-timeout value (at most 8 digits, coarser units when needed). */
void sigil_rpc_timeout_format(uint64_t ms, char out[SIGIL_RPC_TIMEOUT_MAX]);

/* Appends msg percent-encoded as grpc-message requires (bytes outside 0x20..0x7E and '%'
 * become %XX); returns 0 or SIGIL_ERR_NOMEM. */
int sigil_rpc_percent_encode(const char *msg, size_t n, struct sigil_buf *out);
/* Appends the decoded form of a grpc-message value; a '%' not followed by two hex digits is
 * kept as it is (the spec asks receivers not to fail). Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_rpc_percent_decode(const char *s, size_t n, struct sigil_buf *out);

/* ---- Metadata ---- */

/* One metadata entry to send. Names are lowercase [0-9a-z_.-], not starting with "grpc-";
 * values of names ending in "-bin" are raw bytes (sent base64), others printable ASCII. */
struct sigil_rpc_md {
    const char *name;
    const uint8_t *value;
    size_t len;
};

/* ---- Server ---- */

enum sigil_rpc_kind {
    SIGIL_RPC_UNARY,
    SIGIL_RPC_SERVER_STREAM,
    SIGIL_RPC_CLIENT_STREAM,
    SIGIL_RPC_BIDI,
};

struct sigil_rpc_server;
struct sigil_rpc_call;

/* Starts a call. Unary and server-streaming: the request is ready (sigil_rpc_call_request).
 * Client-streaming and bidi: runs once the headers are valid; set callbacks right here. */
typedef void (*sigil_rpc_handler_fn)(struct sigil_rpc_call *call, void *arg);

/* A method served at a full path ("/SpiffeWorkloadAPI/FetchX509SVID"). */
struct sigil_rpc_method {
    const char *path;
    enum sigil_rpc_kind kind;
    sigil_rpc_handler_fn handler;
    void *arg;
    /* If set, requests must carry exactly one `required_header: required_value` entry, else
     * they fail with INVALID_ARGUMENT and required_why (default: SPIRE's "security header
     * missing from request", rules E-2 / H-8) before the handler runs. */
    const char *required_header;
    const char *required_value;
    const char *required_why;
};

/* Server limits; zero fields take the default in brackets. */
struct sigil_rpc_server_opts {
    size_t max_message;              /* request message cap [4 MiB] */
    size_t max_outbound;             /* bytes queued per call [max_message + 64 KiB] */
    size_t max_conn_outbound;        /* bytes queued per connection [4 x max_outbound] */
    size_t max_conn_inbound;         /* request bytes buffered per connection [4 x max_message] */
    uint32_t max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS [100] */
    uint32_t max_header_list;        /* request header list bytes [16 KiB] */
    unsigned max_connections;        /* open connections per listener [1024] */
    unsigned rst_limit;              /* client RST_STREAMs per window per connection [100] */
    unsigned rst_window_ms;          /* the sliding window [1000 ms] */
    unsigned handshake_timeout_ms;   /* TLS handshake time limit [10000 ms] */
};

/* Creates a server on loop; returns 0 and *out, or SIGIL_ERR_NOMEM. It is freed only by
 * sigil_rpc_server_shutdown. */
int sigil_rpc_server_new(uv_loop_t *loop, const struct sigil_rpc_server_opts *o,
                         struct sigil_rpc_server **out);
/* Registers a method (strings are copied); returns 0, SIGIL_ERR_EXISTS for a path already
 * registered, SIGIL_ERR_INVALID for a malformed path or SIGIL_ERR_NOMEM. */
int sigil_rpc_server_add(struct sigil_rpc_server *srv, const struct sigil_rpc_method *m);

/* A Unix socket to listen on. */
struct sigil_rpc_unix_opts {
    const char *path;
    unsigned mode; /* file mode of the socket, e.g. 0666 or 0660 [0600 if 0] */
    bool set_gid;  /* also chown the socket to gid */
    gid_t gid;
    int backlog; /* [128 if 0] */
};

/* Listens on a Unix socket. A stale socket file (nobody accepting) is removed; a live one or
 * a non-socket file at path is SIGIL_ERR_EXISTS. Returns 0 or SIGIL_ERR_* with *why. */
int sigil_rpc_server_listen_unix(struct sigil_rpc_server *srv, const struct sigil_rpc_unix_opts *o,
                                 const char **why);
/* Listens on TCP host:port (an IP literal or "localhost"; port 0 picks a free one) with TLS
 * (the server takes a reference to tls). Returns 0 or SIGIL_ERR_* with *why. */
int sigil_rpc_server_listen_tcp(struct sigil_rpc_server *srv, const char *host, int port,
                                struct sigil_tls_ctx *tls, int backlog, const char **why);
/* Returns the port the most recent TCP listener is bound to, or -1 if there is none. */
int sigil_rpc_server_port(const struct sigil_rpc_server *srv);

/* Graceful shutdown: stops accepting, sends GOAWAY, lets calls finish for grace_ms, then
 * cancels the rest and closes everything (the socket file too). done(arg) runs once the
 * last handle is closed, after which the server is freed. */
void sigil_rpc_server_shutdown(struct sigil_rpc_server *srv, uint64_t grace_ms,
                               void (*done)(void *arg), void *arg);

/* Counters, for tests and metrics. */
struct sigil_rpc_server_stats {
    uint64_t conns_accepted;
    uint64_t conns_refused; /* over max_connections or during shutdown */
    uint64_t conns_open;
    uint64_t calls;
    uint64_t rapid_reset_goaways; /* connections closed for too many client RST_STREAMs */
    uint64_t protocol_errors;     /* connections closed for HTTP/2 protocol errors */
};

/* Copies the server's counters into *out. */
void sigil_rpc_server_stats(const struct sigil_rpc_server *srv, struct sigil_rpc_server_stats *out);

/* Runs bytes as the whole input of one client connection without a socket (for fuzzing and
 * tests): the HTTP/2 preface must be in p; output is discarded; the connection is closed at
 * the end (run the loop briefly to finish closing). Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_rpc_server_feed_raw(struct sigil_rpc_server *srv, const uint8_t *p, size_t n);

/* Who is calling. */
enum sigil_rpc_peer_kind {
    SIGIL_RPC_PEER_NONE,
    SIGIL_RPC_PEER_UNIX,
    SIGIL_RPC_PEER_TLS,
};

struct sigil_rpc_peer {
    enum sigil_rpc_peer_kind kind;
    /* Unix: the kernel's SO_PEERCRED of the connecting process. */
    bool has_cred;
    uid_t uid;
    gid_t gid;
    pid_t pid;
    int pidfd; /* pidfd_open(pid) taken at accept, owned by the connection; -1 if unavailable */
    /* TLS: the verified client chain, leaf first (NULL without a client certificate). */
    STACK_OF(X509) *chain;
};

/* Callbacks a handler may set on its call; each gets the ud given with them. */
struct sigil_rpc_call_cbs {
    /* One request message (client-streaming and bidi); bytes valid during the call only. */
    void (*on_message)(struct sigil_rpc_call *call, void *ud, const uint8_t *msg, size_t len);
    /* The client finished sending (client-streaming and bidi). */
    void (*on_half_close)(struct sigil_rpc_call *call, void *ud);
    /* The call is gone (reset, disconnect, deadline, shutdown); runs at most once and never
     * after finish(). Release everything; the call is invalid after this returns. */
    void (*on_cancel)(struct sigil_rpc_call *call, void *ud);
};

/* Sets the call's callbacks (cbs is copied). */
void sigil_rpc_call_set_cbs(struct sigil_rpc_call *call, const struct sigil_rpc_call_cbs *cbs,
                            void *ud);
/* The request of a unary or server-streaming call (owned by the call); NULL otherwise. */
const uint8_t *sigil_rpc_call_request(const struct sigil_rpc_call *call, size_t *len);
/* The method path. */
const char *sigil_rpc_call_path(const struct sigil_rpc_call *call);
/* Looks up request metadata by lowercase name (-bin values come base64-decoded): returns the
 * number of entries with that name and points *value and *len at the first (owned by the call). */
size_t sigil_rpc_call_metadata(const struct sigil_rpc_call *call, const char *name,
                               const uint8_t **value, size_t *len);
/* The caller, owned by the connection; NULL once the call was cancelled. */
const struct sigil_rpc_peer *sigil_rpc_call_peer(const struct sigil_rpc_call *call);
/* The deadline on the uv_now() clock in ms, or 0 without one. */
uint64_t sigil_rpc_call_deadline(const struct sigil_rpc_call *call);
/* The loop the call runs on (for a handler's timers). */
uv_loop_t *sigil_rpc_call_loop(const struct sigil_rpc_call *call);
/* Sends response headers with initial metadata now (optional: sent with the first message
 * otherwise). Returns 0, SIGIL_ERR_STATE if already sent, SIGIL_ERR_INVALID, or
 * SIGIL_ERR_CANCELLED. */
int sigil_rpc_call_send_headers(struct sigil_rpc_call *call, const struct sigil_rpc_md *md,
                                size_t n);
/* Queues one response message (copied). Returns 0; SIGIL_ERR_RANGE if the bytes queued for
 * this call or its connection would pass the outbound cap (the peer is not reading: nothing
 * was queued); SIGIL_ERR_STATE after finish or for a second unary response;
 * SIGIL_ERR_CANCELLED if the call is gone. */
int sigil_rpc_call_send(struct sigil_rpc_call *call, const void *msg, size_t len);
/* Bytes of this call queued but not yet handed to the socket. */
size_t sigil_rpc_call_queued(const struct sigil_rpc_call *call);
/* Ends the call with a status, message (may be NULL) and trailing metadata; without any
 * message sent this is a trailers-only response. Releases the handler's hold on the call.
 * Returns 0, SIGIL_ERR_CANCELLED if the call was already gone, SIGIL_ERR_INVALID. */
int sigil_rpc_call_finish(struct sigil_rpc_call *call, int code, const char *message,
                          const struct sigil_rpc_md *md, size_t n);

/* ---- Client ---- */

struct sigil_rpc_client;
struct sigil_rpc_ccall;

/* The longest host name of a target (RFC 1035: 253 characters without the final dot). */
#define SIGIL_RPC_HOST_MAX 254

/* A "host:port" target, split and checked. */
struct sigil_rpc_hostport {
    char host[SIGIL_RPC_HOST_MAX + 1]; /* the name or address, without brackets */
    uint16_t port;
    int family; /* AF_INET or AF_INET6 for an IP address, 0 for a host name */
};

/* Parses len bytes of "name:port", "ipv4:port" or "[ipv6]:port" (port 1-65535; a name is
 * dot-separated labels of 1-63 letters, digits and '-', not starting or ending with '-', the
 * last not all digits, with an optional final dot). Returns 0 and *out, or SIGIL_ERR_INVALID
 * with *why (static text). */
int sigil_rpc_hostport_parse(const char *s, size_t len, struct sigil_rpc_hostport *out,
                             const char **why);

/* Where and how to connect. */
struct sigil_rpc_client_opts {
    const char *target;        /* "unix:///abs/path" or "host:port" ("[v6]:port"); a host
                                * name is resolved for each new connection and each of its
                                * addresses tried in turn */
    struct sigil_tls_ctx *tls; /* client TLS context: required for host:port */
    const char *server_name;   /* name the server certificate must carry [the host] */
    size_t max_message;        /* response message cap [4 MiB] */
    size_t max_outbound;       /* bytes queued per call [max_message + 64 KiB] */
};

/* Creates a client (it connects on the first call, and again after losing the connection;
 * a name that does not resolve or addresses that all refuse end the calls waiting for that
 * connection with UNAVAILABLE and a message naming the host).
 * Returns 0 and *out, or SIGIL_ERR_INVALID (bad target, TCP without TLS) with *why, or
 * SIGIL_ERR_NOMEM. Free with sigil_rpc_client_free. */
int sigil_rpc_client_new(uv_loop_t *loop, const struct sigil_rpc_client_opts *o,
                         struct sigil_rpc_client **out, const char **why);
/* Ends every open call (on_end with CANCELLED), closes the connections and frees the client
 * once its handles are closed (keep running the loop). */
void sigil_rpc_client_free(struct sigil_rpc_client *cli);

/* Client call callbacks; each gets the ud given with them. */
struct sigil_rpc_ccall_cbs {
    /* Response headers arrived (initial metadata readable with sigil_rpc_ccall_metadata). */
    void (*on_headers)(struct sigil_rpc_ccall *call, void *ud);
    /* One response message; bytes valid during the call only. */
    void (*on_message)(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len);
    /* The call ended: exactly once per call (UNAVAILABLE when the connection failed). The
     * message is decoded, never NULL. The call is freed when this returns. */
    void (*on_end)(struct sigil_rpc_ccall *call, void *ud, int code, const char *message);
};

/* Starts a call of any kind; send with sigil_rpc_ccall_send, end sending with
 * sigil_rpc_ccall_close_send. timeout_ms 0 means none. Returns 0 and *out (valid until
 * on_end returns; may be NULL if not wanted), or SIGIL_ERR_INVALID/SIGIL_ERR_NOMEM (then no
 * callback runs). */
int sigil_rpc_client_call(struct sigil_rpc_client *cli, const char *path,
                          const struct sigil_rpc_md *md, size_t nmd, uint64_t timeout_ms,
                          const struct sigil_rpc_ccall_cbs *cbs, void *ud,
                          struct sigil_rpc_ccall **out);
/* Queues one request message (copied). Returns 0, SIGIL_ERR_RANGE over the outbound cap,
 * SIGIL_ERR_STATE after close_send or the end. */
int sigil_rpc_ccall_send(struct sigil_rpc_ccall *call, const void *msg, size_t len);
/* Half-closes: no more request messages. Returns 0 or SIGIL_ERR_STATE. */
int sigil_rpc_ccall_close_send(struct sigil_rpc_ccall *call);
/* Cancels the call (RST_STREAM); on_end(CANCELLED) runs before this returns, unless the call
 * had already ended. */
void sigil_rpc_ccall_cancel(struct sigil_rpc_ccall *call);
/* Looks up response metadata (headers and trailers received so far), as
 * sigil_rpc_call_metadata does. */
size_t sigil_rpc_ccall_metadata(const struct sigil_rpc_ccall *call, const char *name,
                                const uint8_t **value, size_t *len);

/* The end of a unary call: the response (NULL unless code is OK) is valid during the call. */
typedef void (*sigil_rpc_unary_fn)(void *ud, int code, const char *message, const uint8_t *resp,
                                   size_t len);
/* A unary call: one request, one response, then done(ud, ...) exactly once. Returns 0 or
 * SIGIL_ERR_* (then done does not run). */
int sigil_rpc_client_unary(struct sigil_rpc_client *cli, const char *path,
                           const struct sigil_rpc_md *md, size_t nmd, const void *req, size_t len,
                           uint64_t timeout_ms, sigil_rpc_unary_fn done, void *ud);
/* A server-streaming call: sends req, half-closes, then the callbacks of cbs run. */
int sigil_rpc_client_server_stream(struct sigil_rpc_client *cli, const char *path,
                                   const struct sigil_rpc_md *md, size_t nmd, const void *req,
                                   size_t len, uint64_t timeout_ms,
                                   const struct sigil_rpc_ccall_cbs *cbs, void *ud,
                                   struct sigil_rpc_ccall **out);

/* The outcome of a synchronous call. */
struct sigil_rpc_result {
    int code;
    char *message;             /* decoded grpc-message; caller frees (sigil_rpc_result_free) */
    struct sigil_buf response; /* the response message when code is OK */
};

/* For tests and CLIs: runs a unary call on a private loop until it ends. Returns 0 with *res
 * filled (any status), or SIGIL_ERR_* with *why when no call could be made. */
int sigil_rpc_unary_sync(const struct sigil_rpc_client_opts *o, const char *path,
                         const struct sigil_rpc_md *md, size_t nmd, const void *req, size_t len,
                         uint64_t timeout_ms, struct sigil_rpc_result *res, const char **why);
/* Frees what a sigil_rpc_result holds. */
void sigil_rpc_result_free(struct sigil_rpc_result *res);

#endif
