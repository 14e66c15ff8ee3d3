/* The pure parts of gRPC over HTTP/2: status names, the 5-byte length-prefixed message framing
 * (decoded incrementally, capped before any payload is buffered), grpc-timeout values and the
 * percent-encoding of grpc-message. No I/O here, so all of it is unit-tested and fuzzed. */
#include "sigil/rpc.h"
#include "sigil/err.h"

#include <stdio.h>
#include <string.h>

static const char *const code_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *
sigil_rpc_code_name(int code)
{
    if (code < 0 || code >= (int)(sizeof code_names / sizeof code_names[0]))
        return NULL;
    return code_names[code];
}

/* ---- framing ---- */

/* A partial message larger than this is not kept between messages: one big request must not
 * pin its buffer for the rest of a long stream. */
#define KEEP_BUF 65536

void
sigil_rpc_deframer_init(struct sigil_rpc_deframer *d, size_t max)
{
    memset(d, 0, sizeof *d);
    d->max = max;
}

void
sigil_rpc_deframer_free(struct sigil_rpc_deframer *d)
{
    sigil_buf_free(&d->msg);
    d->nhdr = 0;
    d->want = 0;
}

bool
sigil_rpc_deframer_idle(const struct sigil_rpc_deframer *d)
{
    return d->nhdr == 0 && d->msg.len == 0;
}

static int
deliver(struct sigil_rpc_deframer *d, const uint8_t *msg, size_t len, sigil_rpc_msg_fn on_msg,
        void *arg)
{
    bool compressed = d->hdr[0] == 1;
    int r;

    d->nhdr = 0;
    d->want = 0;
    r = on_msg(arg, compressed, msg, len);
    d->msg.len = 0;
    if (d->msg.cap > KEEP_BUF)
        sigil_buf_free(&d->msg);
    if (r != 0)
        d->failed = true;
    return r;
}

int
sigil_rpc_deframer_feed(struct sigil_rpc_deframer *d, const uint8_t *p, size_t n,
                        sigil_rpc_msg_fn on_msg, void *arg)
{
    size_t take;
    int r;

    if (d->failed)
        return SIGIL_ERR_STATE;
    while (n > 0) {
        if (d->nhdr < 5) {
            take = 5 - d->nhdr;
            if (take > n)
                take = n;
            memcpy(d->hdr + d->nhdr, p, take);
            d->nhdr += (uint8_t)take;
            p += take;
            n -= take;
            if (d->nhdr < 5)
                break;
            if (d->hdr[0] > 1) {
                d->failed = true;
                return SIGIL_ERR_PROTOCOL;
            }
            d->want = (uint32_t)d->hdr[1] << 24 | (uint32_t)d->hdr[2] << 16 |
                      (uint32_t)d->hdr[3] << 8 | d->hdr[4];
            /* Refused on the header alone: not one byte of an oversized payload is kept. */
            if (d->want > d->max) {
                d->failed = true;
                return SIGIL_ERR_RANGE;
            }
            if (d->want == 0) {
                /* never NULL, even when empty: callers may memcpy from it */
                if ((r = deliver(d, (const uint8_t *)"", 0, on_msg, arg)) != 0)
                    return r;
                continue;
            }
        }
        /* A message wholly inside this chunk is handed over without a copy. */
        if (d->msg.len == 0 && n >= d->want) {
            take = d->want;
            if ((r = deliver(d, p, take, on_msg, arg)) != 0)
                return r;
            p += take;
            n -= take;
            continue;
        }
        take = d->want - d->msg.len;
        if (take > n)
            take = n;
        if ((r = sigil_buf_append(&d->msg, p, take)) != 0) {
            d->failed = true;
            return r;
        }
        p += take;
        n -= take;
        if (d->msg.len == d->want && (r = deliver(d, d->msg.data, d->msg.len, on_msg, arg)) != 0)
            return r;
    }
    return 0;
}

int
sigil_rpc_frame(struct sigil_buf *out, const uint8_t *msg, size_t len)
{
    uint8_t hdr[5];
    int r;

    if (len > UINT32_MAX)
        return SIGIL_ERR_RANGE;
    hdr[0] = 0;
    hdr[1] = (uint8_t)(len >> 24);
    hdr[2] = (uint8_t)(len >> 16);
    hdr[3] = (uint8_t)(len >> 8);
    hdr[4] = (uint8_t)len;
    if ((r = sigil_buf_reserve(out, 5 + len)) != 0 || (r = sigil_buf_append(out, hdr, 5)) != 0 ||
        (r = sigil_buf_append(out, msg, len)) != 0)
        return r;
    return 0;
}

/* ---- grpc-timeout ---- */

int
sigil_rpc_timeout_parse(const char *s, size_t n, uint64_t *ms)
{
    uint64_t v = 0;

    *ms = 0;
    /* "TimeoutValue: positive integer as ASCII string of at most 8 digits" */
    if (n < 2 || n > 9)
        return SIGIL_ERR_INVALID;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SIGIL_ERR_INVALID;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    switch (s[n - 1]) {
    case 'H':
        *ms = v * 3600000u;
        break;
    case 'M':
        *ms = v * 60000u;
        break;
    case 'S':
        *ms = v * 1000u;
        break;
    case 'm':
        *ms = v;
        break;
    case 'u': /* rounded up: a deadline must never come early */
        *ms = (v + 999u) / 1000u;
        break;
    case 'n':
        *ms = (v + 999999u) / 1000000u;
        break;
    default:
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

void
sigil_rpc_timeout_format(uint64_t ms, char out[SIGIL_RPC_TIMEOUT_MAX])
{
    static const struct {
        uint64_t ms;
        char unit;
    } units[] = {{1, 'm'}, {1000, 'S'}, {60000, 'M'}, {3600000, 'H'}};
    const uint64_t max = 99999999u;

    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        /* rounded up, so the peer never sees a shorter deadline than ours */
        uint64_t v = ms / units[i].ms + (ms % units[i].ms != 0);
        if (v <= max) {
            snprintf(out, SIGIL_RPC_TIMEOUT_MAX, "%llu%c", (unsigned long long)v, units[i].unit);
            return;
        }
    }
    snprintf(out, SIGIL_RPC_TIMEOUT_MAX, "%lluH", (unsigned long long)max);
}

/* ---- grpc-message ---- */

static int
hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
sigil_rpc_percent_encode(const char *msg, size_t n, struct sigil_buf *out)
{
    static const char hex[] = "0123456789ABCDEF";
    int r;

    if ((r = sigil_buf_reserve(out, n)) != 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)msg[i];
        if (c >= 0x20 && c <= 0x7e && c != '%') {
            r = sigil_buf_append(out, &c, 1);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            r = sigil_buf_append(out, e, 3);
        }
        if (r != 0)
            return r;
    }
    return 0;
}

int
sigil_rpc_percent_decode(const char *s, size_t n, struct sigil_buf *out)
{
    int r, hi, lo;

    if ((r = sigil_buf_reserve(out, n)) != 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c == '%' && i + 2 < n && (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
            c = (uint8_t)(hi << 4 | lo);
            i += 2;
        }
        if ((r = sigil_buf_append(out, &c, 1)) != 0)
            return r;
    }
    return 0;
}
