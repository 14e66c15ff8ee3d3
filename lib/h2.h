/* Private to libsigil: the one interface to nghttp2. rpc.c speaks HTTP/2 only through this
 * header, so a change of HTTP/2 library (or nghttp2's 1.60 renames) touches h2.c alone.
 * The session is sans-IO: bytes go in with h2_session_recv and come out of h2_session_send. */
#ifndef SIGIL_H2_H
#define SIGIL_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sigil/buf.h"

/* HTTP/2 error codes (RFC 9113 §7), as sent in RST_STREAM and GOAWAY. */
#define H2_NO_ERROR 0x0u
#define H2_PROTOCOL_ERROR 0x1u
#define H2_INTERNAL_ERROR 0x2u
#define H2_REFUSED_STREAM 0x7u
#define H2_CANCEL 0x8u
#define H2_ENHANCE_YOUR_CALM 0xbu

/* Return values of the callbacks below (besides 0). */
#define H2_CB_RESET (-1) /* reset this stream (RST_STREAM INTERNAL_ERROR) */
#define H2_CB_FATAL (-2) /* tear the whole session down */

/* What h2_callbacks.read may return instead of a byte count. */
#define H2_READ_DEFER (-1) /* nothing to send now; h2_resume() once there is */
#define H2_READ_FATAL (-2) /* reset the stream */

/* Flags h2_callbacks.read sets in *flags. */
#define H2_FLAG_EOF 0x1u           /* the body is complete */
#define H2_FLAG_NO_END_STREAM 0x2u /* ...but trailers follow (submitted from the callback) */

struct h2_session;

/* One header field; name and value need not be NUL-terminated. */
struct h2_nv {
    const char *name;
    size_t namelen;
    const char *value;
    size_t valuelen;
};

/* What a header block is. */
enum h2_cat {
    H2_CAT_REQUEST,  /* server side: a new request */
    H2_CAT_RESPONSE, /* client side: the response headers */
    H2_CAT_TRAILERS, /* a later block (trailers) */
};

/* Callbacks into the owner; `ud` is the session's user data, `sud` the stream's. */
struct h2_callbacks {
    /* A request's header block begins (server only). Return 0 or H2_CB_*. */
    int (*begin_request)(void *ud, int32_t sid);
    /* One header field of a block. */
    int (*header)(void *ud, int32_t sid, void *sud, enum h2_cat cat, const uint8_t *name,
                  size_t namelen, const uint8_t *value, size_t valuelen);
    /* A header block is complete. */
    int (*headers_done)(void *ud, int32_t sid, void *sud, enum h2_cat cat);
    /* A chunk of a stream's body. */
    int (*data)(void *ud, int32_t sid, void *sud, const uint8_t *p, size_t n);
    /* The peer ended its side of the stream (END_STREAM). */
    int (*end_stream)(void *ud, int32_t sid, void *sud);
    /* The stream is gone; `error` is the HTTP/2 error code (H2_NO_ERROR if it ended well). */
    void (*stream_close)(void *ud, int32_t sid, void *sud, uint32_t error);
    /* The peer sent RST_STREAM (counted for the Rapid Reset limit). Return 0 or H2_CB_FATAL. */
    int (*rst_recv)(void *ud, int32_t sid);
    /* The peer sent GOAWAY. */
    void (*goaway_recv)(void *ud, int32_t last_sid, uint32_t error);
    /* Copies up to len body bytes into buf; returns the count, H2_READ_DEFER or
     * H2_READ_FATAL, and may set H2_FLAG_* in *flags. */
    ssize_t (*read)(void *ud, int32_t sid, void *sud, uint8_t *buf, size_t len, uint32_t *flags);
};

/* Local settings announced to the peer. */
struct h2_settings {
    uint32_t max_concurrent_streams;
    uint32_t max_header_list_size;
    uint32_t initial_window_size;
    uint32_t connection_window_size;
};

/* Creates a server or client session; returns 0 or SIGIL_ERR_NOMEM. Free with h2_session_free. */
int h2_session_new(bool server, const struct h2_settings *set, const struct h2_callbacks *cb,
                   void *ud, struct h2_session **out);
/* Frees the session without calling any callback. */
void h2_session_free(struct h2_session *s);
/* Processes received bytes; returns 0, or SIGIL_ERR_PROTOCOL when the session is beyond
 * repair (a GOAWAY may still be pending: drain h2_session_send, then close). */
int h2_session_recv(struct h2_session *s, const uint8_t *p, size_t n);
/* Appends bytes to send to out until it holds at least `want` bytes or nothing is pending;
 * returns 0 or a negative SIGIL_ERR_*. */
int h2_session_send(struct h2_session *s, struct sigil_buf *out, size_t want);
/* True while the session still expects to read or write (false: close the connection). */
bool h2_session_alive(struct h2_session *s);
/* True if frames are waiting to be sent. */
bool h2_session_want_write(struct h2_session *s);
/* Client: opens a stream with request headers and a body read through the read callback;
 * returns 0 and the stream id, or a negative SIGIL_ERR_*. */
int h2_submit_request(struct h2_session *s, const struct h2_nv *nv, size_t n, void *sud,
                      int32_t *sid);
/* Server: sends response headers; with_body false ends the stream with them. */
int h2_submit_response(struct h2_session *s, int32_t sid, const struct h2_nv *nv, size_t n,
                       bool with_body);
/* Sends trailers (may be called from the read callback after setting H2_FLAG_EOF). */
int h2_submit_trailers(struct h2_session *s, int32_t sid, const struct h2_nv *nv, size_t n);
/* Asks the read callback again for a stream that returned H2_READ_DEFER. */
int h2_resume(struct h2_session *s, int32_t sid);
/* Resets a stream with an HTTP/2 error code. */
int h2_reset(struct h2_session *s, int32_t sid, uint32_t error);
/* Sends GOAWAY with the last stream id processed: no new streams, open ones may finish. */
int h2_goaway(struct h2_session *s, uint32_t error);
/* Sends GOAWAY and ends the session once it is written (open streams are dropped). */
int h2_terminate(struct h2_session *s, uint32_t error);
/* Sets or clears a stream's user data. */
void h2_set_stream_data(struct h2_session *s, int32_t sid, void *sud);

#endif
