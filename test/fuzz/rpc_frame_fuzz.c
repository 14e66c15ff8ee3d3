/* Fuzzes the pure gRPC parsers: the 5-byte deframer (the same input fed whole and in pieces
 * must give the same messages and the same verdict, and nothing over the cap is delivered),
 * grpc-timeout values (what parses formats back to a value that parses no earlier) and
 * grpc-message percent-decoding (decode(encode(x)) == x). Any mismatch aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/buf.h"
#include "sigil/err.h"
#include "sigil/rpc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

struct seen {
    struct sigil_buf all; /* each message as a 4-byte length, its flag, then its bytes */
    size_t max;
};

static int
on_msg(void *arg, bool compressed, const uint8_t *msg, size_t len)
{
    struct seen *s = arg;
    uint8_t hdr[5] = {(uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len,
                      compressed};

    CHECK(len <= s->max);
    CHECK(msg != NULL);
    if (sigil_buf_append(&s->all, hdr, 5) != 0 || sigil_buf_append(&s->all, msg, len) != 0)
        abort();
    return 0;
}

static void
deframe(const uint8_t *data, size_t size, size_t max, unsigned step)
{
    struct sigil_rpc_deframer whole, parts;
    struct seen a = {.max = max}, b = {.max = max};
    int ra, rb = 0;

    sigil_rpc_deframer_init(&whole, max);
    sigil_rpc_deframer_init(&parts, max);
    ra = sigil_rpc_deframer_feed(&whole, data, size, on_msg, &a);
    for (size_t off = 0; off < size && rb == 0; off += step) {
        size_t n = size - off < step ? size - off : step;
        rb = sigil_rpc_deframer_feed(&parts, data + off, n, on_msg, &b);
    }
    CHECK(ra == 0 || ra == SIGIL_ERR_RANGE || ra == SIGIL_ERR_PROTOCOL);
    CHECK(ra == rb);
    CHECK(a.all.len == b.all.len &&
          (a.all.len == 0 || memcmp(a.all.data, b.all.data, a.all.len) == 0));
    if (ra == 0)
        CHECK(sigil_rpc_deframer_idle(&whole) == sigil_rpc_deframer_idle(&parts));
    else
        CHECK(sigil_rpc_deframer_feed(&whole, data, size, on_msg, &a) == SIGIL_ERR_STATE);
    sigil_rpc_deframer_free(&whole);
    sigil_rpc_deframer_free(&parts);
    sigil_buf_free(&a.all);
    sigil_buf_free(&b.all);
}

static void
timeout(const uint8_t *data, size_t size)
{
    char text[SIGIL_RPC_TIMEOUT_MAX];
    uint64_t ms, ms2;

    if (sigil_rpc_timeout_parse((const char *)data, size, &ms) != 0) {
        CHECK(ms == 0);
        return;
    }
    CHECK(size >= 2 && size <= 9);
    sigil_rpc_timeout_format(ms, text);
    CHECK(strlen(text) < SIGIL_RPC_TIMEOUT_MAX);
    CHECK(sigil_rpc_timeout_parse(text, strlen(text), &ms2) == 0);
    CHECK(ms2 >= ms || ms > 99999999ull * 3600000ull);
}

static void
percent(const uint8_t *data, size_t size)
{
    struct sigil_buf enc = {0}, dec = {0}, dec2 = {0};

    CHECK(sigil_rpc_percent_encode((const char *)data, size, &enc) == 0);
    for (size_t i = 0; i < enc.len; i++)
        CHECK(enc.data[i] >= 0x20 && enc.data[i] <= 0x7e);
    CHECK(sigil_rpc_percent_decode((const char *)enc.data, enc.len, &dec) == 0);
    CHECK(dec.len == size && (size == 0 || memcmp(dec.data, data, size) == 0));
    /* decoding arbitrary text never fails and never grows it */
    CHECK(sigil_rpc_percent_decode((const char *)data, size, &dec2) == 0);
    CHECK(dec2.len <= size);
    sigil_buf_free(&enc);
    sigil_buf_free(&dec);
    sigil_buf_free(&dec2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t caps[] = {0, 1, 16, 1024, SIGIL_RPC_DEFAULT_MAX_MESSAGE};
    unsigned sel;

    if (size < 1)
        return 0;
    sel = data[0];
    data++;
    size--;
    deframe(data, size, caps[sel % 5], 1 + (sel >> 3) % 7);
    timeout(data, size);
    percent(data, size);
    return 0;
}
