/* Unit tests of the pure gRPC parts: status names, the 5-byte deframer under every split of its
 * input, the size cap, grpc-timeout parsing/formatting and grpc-message percent-encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigil/err.h"
#include "sigil/rpc.h"

/* What the deframer delivered: the messages concatenated, with their lengths. */
struct got {
    struct sigil_buf all;
    size_t lens[64];
    bool compressed[64];
    size_t n;
    int fail_at; /* return an error from this message (1-based), 0 never */
};

static int
on_msg(void *arg, bool compressed, const uint8_t *msg, size_t len)
{
    struct got *g = arg;

    assert_true(g->n < 64);
    g->compressed[g->n] = compressed;
    g->lens[g->n++] = len;
    if (len > 0)
        assert_int_equal(sigil_buf_append(&g->all, msg, len), 0);
    if (g->fail_at != 0 && (int)g->n == g->fail_at)
        return SIGIL_ERR_DENIED;
    return 0;
}

/* Three messages (empty, short, 70000 bytes) framed back to back. */
static void
make_stream(struct sigil_buf *wire, struct sigil_buf *payload, size_t *lens)
{
    static uint8_t big[70000];

    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    lens[0] = 0;
    lens[1] = 5;
    lens[2] = sizeof big;
    assert_int_equal(sigil_rpc_frame(wire, NULL, 0), 0);
    assert_int_equal(sigil_rpc_frame(wire, (const uint8_t *)"hello", 5), 0);
    assert_int_equal(sigil_rpc_frame(wire, big, sizeof big), 0);
    assert_int_equal(sigil_buf_append(payload, "hello", 5), 0);
    assert_int_equal(sigil_buf_append(payload, big, sizeof big), 0);
}

static void
check_got(struct got *g, struct sigil_buf *payload, const size_t *lens)
{
    assert_int_equal(g->n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(g->lens[i], lens[i]);
        assert_false(g->compressed[i]);
    }
    assert_int_equal(g->all.len, payload->len);
    assert_memory_equal(g->all.data, payload->data, payload->len);
}

static void
test_code_names(void **state)
{
    (void)state;
    assert_string_equal(sigil_rpc_code_name(SIGIL_RPC_OK), "OK");
    assert_string_equal(sigil_rpc_code_name(SIGIL_RPC_INVALID_ARGUMENT), "INVALID_ARGUMENT");
    assert_string_equal(sigil_rpc_code_name(SIGIL_RPC_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    assert_string_equal(sigil_rpc_code_name(SIGIL_RPC_UNIMPLEMENTED), "UNIMPLEMENTED");
    assert_string_equal(sigil_rpc_code_name(SIGIL_RPC_UNAUTHENTICATED), "UNAUTHENTICATED");
    for (int c = 0; c <= 16; c++)
        assert_non_null(sigil_rpc_code_name(c));
    assert_null(sigil_rpc_code_name(17));
    assert_null(sigil_rpc_code_name(-1));
}

static void
test_deframe_whole(void **state)
{
    struct sigil_buf wire = {0}, payload = {0};
    struct sigil_rpc_deframer d;
    struct got g = {0};
    size_t lens[3];

    (void)state;
    make_stream(&wire, &payload, lens);
    sigil_rpc_deframer_init(&d, SIGIL_RPC_DEFAULT_MAX_MESSAGE);
    assert_int_equal(sigil_rpc_deframer_feed(&d, wire.data, wire.len, on_msg, &g), 0);
    assert_true(sigil_rpc_deframer_idle(&d));
    check_got(&g, &payload, lens);
    sigil_rpc_deframer_free(&d);
    sigil_buf_free(&g.all);
    sigil_buf_free(&wire);
    sigil_buf_free(&payload);
}

static void
test_deframe_byte_by_byte(void **state)
{
    struct sigil_buf wire = {0}, payload = {0};
    struct sigil_rpc_deframer d;
    struct got g = {0};
    size_t lens[3];

    (void)state;
    make_stream(&wire, &payload, lens);
    sigil_rpc_deframer_init(&d, SIGIL_RPC_DEFAULT_MAX_MESSAGE);
    for (size_t i = 0; i < wire.len; i++) {
        assert_int_equal(sigil_rpc_deframer_feed(&d, wire.data + i, 1, on_msg, &g), 0);
        /* idle exactly at message boundaries */
        if (i == 4 || i == 14 || i + 1 == wire.len)
            assert_true(sigil_rpc_deframer_idle(&d));
        else
            assert_false(sigil_rpc_deframer_idle(&d));
    }
    check_got(&g, &payload, lens);
    sigil_rpc_deframer_free(&d);
    sigil_buf_free(&g.all);
    sigil_buf_free(&wire);
    sigil_buf_free(&payload);
}

/* Every split into two feeds, and a few three-way splits, yield the same messages. */
static void
test_deframe_all_splits(void **state)
{
    struct sigil_buf wire = {0}, payload = {0};
    size_t lens[3];

    (void)state;
    make_stream(&wire, &payload, lens);
    for (size_t cut = 0; cut <= wire.len; cut += (cut < 64 || wire.len - cut < 64) ? 1 : 997) {
        struct sigil_rpc_deframer d;
        struct got g = {0};
        size_t cut2 = cut + (wire.len - cut) / 2;
        sigil_rpc_deframer_init(&d, SIGIL_RPC_DEFAULT_MAX_MESSAGE);
        assert_int_equal(sigil_rpc_deframer_feed(&d, wire.data, cut, on_msg, &g), 0);
        assert_int_equal(sigil_rpc_deframer_feed(&d, wire.data + cut, cut2 - cut, on_msg, &g), 0);
        assert_int_equal(sigil_rpc_deframer_feed(&d, wire.data + cut2, wire.len - cut2, on_msg, &g),
                         0);
        check_got(&g, &payload, lens);
        sigil_rpc_deframer_free(&d);
        sigil_buf_free(&g.all);
    }
    sigil_buf_free(&wire);
    sigil_buf_free(&payload);
}

static void
test_deframe_cap(void **state)
{
    struct sigil_buf wire = {0};
    struct sigil_rpc_deframer d;
    struct got g = {0};
    uint8_t msg[101] = {0};

    (void)state;
    assert_int_equal(sigil_rpc_frame(&wire, msg, 100), 0);
    assert_int_equal(sigil_rpc_frame(&wire, msg, 101), 0);
    sigil_rpc_deframer_init(&d, 100);
    /* the 100-byte message passes, the 101-byte header is refused before its payload */
    assert_int_equal(sigil_rpc_deframer_feed(&d, wire.data, 105 + 5, on_msg, &g), SIGIL_ERR_RANGE);
    assert_int_equal(g.n, 1);
    assert_int_equal(d.msg.len, 0);
    assert_int_equal(sigil_rpc_deframer_feed(&d, wire.data + 110, 1, on_msg, &g), SIGIL_ERR_STATE);
    sigil_rpc_deframer_free(&d);
    sigil_buf_free(&g.all);
    sigil_buf_free(&wire);

    /* a 4 GiB announcement with a default cap */
    const uint8_t huge[5] = {0, 0xff, 0xff, 0xff, 0xff};
    sigil_rpc_deframer_init(&d, SIGIL_RPC_DEFAULT_MAX_MESSAGE);
    assert_int_equal(sigil_rpc_deframer_feed(&d, huge, 5, on_msg, &g), SIGIL_ERR_RANGE);
    assert_null(d.msg.data);
    sigil_rpc_deframer_free(&d);
}

static void
test_deframe_flags(void **state)
{
    struct sigil_rpc_deframer d;
    struct got g = {0};
    const uint8_t comp[] = {1, 0, 0, 0, 2, 'h', 'i'};
    const uint8_t bad[] = {2, 0, 0, 0, 0};

    (void)state;
    sigil_rpc_deframer_init(&d, 16);
    assert_int_equal(sigil_rpc_deframer_feed(&d, comp, sizeof comp, on_msg, &g), 0);
    assert_int_equal(g.n, 1);
    assert_true(g.compressed[0]);
    assert_int_equal(sigil_rpc_deframer_feed(&d, bad, sizeof bad, on_msg, &g), SIGIL_ERR_PROTOCOL);
    sigil_rpc_deframer_free(&d);
    sigil_buf_free(&g.all);

    /* the callback's error stops the deframer and comes back */
    struct sigil_buf wire = {0};
    struct got g2 = {.fail_at = 2};
    assert_int_equal(sigil_rpc_frame(&wire, (const uint8_t *)"a", 1), 0);
    assert_int_equal(sigil_rpc_frame(&wire, (const uint8_t *)"b", 1), 0);
    assert_int_equal(sigil_rpc_frame(&wire, (const uint8_t *)"c", 1), 0);
    sigil_rpc_deframer_init(&d, 16);
    assert_int_equal(sigil_rpc_deframer_feed(&d, wire.data, wire.len, on_msg, &g2),
                     SIGIL_ERR_DENIED);
    assert_int_equal(g2.n, 2);
    assert_int_equal(sigil_rpc_deframer_feed(&d, wire.data, 1, on_msg, &g2), SIGIL_ERR_STATE);
    sigil_rpc_deframer_free(&d);
    sigil_buf_free(&g2.all);
    sigil_buf_free(&wire);
}

static void
test_deframe_partial_not_idle(void **state)
{
    struct sigil_rpc_deframer d;
    struct got g = {0};
    const uint8_t part[] = {0, 0, 0, 0, 4, 'a', 'b'};

    (void)state;
    sigil_rpc_deframer_init(&d, 16);
    assert_true(sigil_rpc_deframer_idle(&d));
    assert_int_equal(sigil_rpc_deframer_feed(&d, part, 3, on_msg, &g), 0);
    assert_false(sigil_rpc_deframer_idle(&d));
    assert_int_equal(sigil_rpc_deframer_feed(&d, part + 3, 4, on_msg, &g), 0);
    assert_false(sigil_rpc_deframer_idle(&d));
    assert_int_equal(g.n, 0);
    sigil_rpc_deframer_free(&d);
}

static void
test_timeout_parse(void **state)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"1H", 3600000},
        {"2M", 120000},
        {"3S", 3000},
        {"250m", 250},
        {"1u", 1},
        {"1000u", 1},
        {"1001u", 2},
        {"1n", 1},
        {"0m", 0},
        {"99999999m", 99999999},
        {"99999999H", 359999996400000},
        {"00000001S", 1000},
        {"1000000n", 1},
        {"1000001n", 2},
    };
    static const char *const bad[] = {
        "",   "m",  "1",   "1x",   "-1m", "+1m",        " 1m", "1m ",  "1.5S",
        "1h", "1s", "1mm", "0x1S", "1 m", "123456789m", "١m",  "1M\n",
    };
    uint64_t ms;

    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        assert_int_equal(sigil_rpc_timeout_parse(good[i].s, strlen(good[i].s), &ms), 0);
        assert_int_equal(ms, good[i].ms);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sigil_rpc_timeout_parse(bad[i], strlen(bad[i]), &ms), SIGIL_ERR_INVALID);
    /* the length is honoured: no reading past n */
    assert_int_equal(sigil_rpc_timeout_parse("5S9", 2, &ms), 0);
    assert_int_equal(ms, 5000);
}

static void
test_timeout_format(void **state)
{
    char out[SIGIL_RPC_TIMEOUT_MAX];
    uint64_t ms;

    (void)state;
    sigil_rpc_timeout_format(1500, out);
    assert_string_equal(out, "1500m");
    sigil_rpc_timeout_format(99999999, out);
    assert_string_equal(out, "99999999m");
    sigil_rpc_timeout_format(100000000, out);
    assert_string_equal(out, "100000S");
    sigil_rpc_timeout_format(100000001, out); /* rounded up, never down */
    assert_string_equal(out, "100001S");
    sigil_rpc_timeout_format(UINT64_MAX, out);
    assert_string_equal(out, "99999999H");
    for (uint64_t v = 1; v < UINT64_MAX / 16; v = v * 3 + 1) {
        sigil_rpc_timeout_format(v, out);
        assert_true(strlen(out) < SIGIL_RPC_TIMEOUT_MAX);
        assert_int_equal(sigil_rpc_timeout_parse(out, strlen(out), &ms), 0);
        if (v <= 99999999ull * 3600000ull)
            assert_true(ms >= v);
    }
}

static void
check_pct(const char *in, size_t n, const char *want)
{
    struct sigil_buf enc = {0}, dec = {0};

    assert_int_equal(sigil_rpc_percent_encode(in, n, &enc), 0);
    assert_int_equal(enc.len, strlen(want));
    assert_memory_equal(enc.data, want, enc.len);
    assert_int_equal(sigil_rpc_percent_decode((const char *)enc.data, enc.len, &dec), 0);
    assert_int_equal(dec.len, n);
    assert_memory_equal(dec.data, in, n);
    sigil_buf_free(&enc);
    sigil_buf_free(&dec);
}

static void
test_percent(void **state)
{
    struct sigil_buf dec = {0};

    (void)state;
    check_pct("plain text ~!", 13, "plain text ~!");
    check_pct("100%", 4, "100%25");
    check_pct("caf\xc3\xa9", 5, "caf%C3%A9");
    check_pct("a\nb\x7f\x00", 5, "a%0Ab%7F%00");
    check_pct("", 0, "");
    /* lenient decoding: malformed escapes stay as they are */
    assert_int_equal(sigil_rpc_percent_decode("50%", 3, &dec), 0);
    assert_int_equal(sigil_rpc_percent_decode("%zz%4", 5, &dec), 0);
    assert_int_equal(sigil_rpc_percent_decode("%4a%4A", 6, &dec), 0);
    assert_int_equal(dec.len, 3 + 5 + 2);
    assert_memory_equal(dec.data, "50%%zz%4JJ", 10);
    sigil_buf_free(&dec);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_code_names),
        cmocka_unit_test(test_deframe_whole),
        cmocka_unit_test(test_deframe_byte_by_byte),
        cmocka_unit_test(test_deframe_all_splits),
        cmocka_unit_test(test_deframe_cap),
        cmocka_unit_test(test_deframe_flags),
        cmocka_unit_test(test_deframe_partial_not_idle),
        cmocka_unit_test(test_timeout_parse),
        cmocka_unit_test(test_timeout_format),
        cmocka_unit_test(test_percent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
