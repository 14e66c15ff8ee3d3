/* Unit tests of the buffer and the base64/hex codecs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigil/buf.h"
#include "sigil/encoding.h"
#include "sigil/err.h"

static void
test_b64url_roundtrip(void **state)
{
    (void)state;
    const uint8_t in[] = {0xfb, 0xff, 0x00, 0x01};
    char *s = sigil_b64url_encode(in, sizeof in);
    assert_non_null(s);
    assert_string_equal(s, "-_8AAQ");
    uint8_t *out;
    size_t n;
    assert_int_equal(sigil_b64url_decode(s, strlen(s), &out, &n), 0);
    assert_int_equal(n, sizeof in);
    assert_memory_equal(out, in, n);
    free(out);
    free(s);
}

static void
test_b64url_rejects_malformed(void **state)
{
    (void)state;
    uint8_t *out;
    size_t n;
    assert_int_equal(sigil_b64url_decode("-_8AAQ==", 8, &out, &n), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_b64url_decode("+/8AAQ", 6, &out, &n), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_b64url_decode("ab c", 4, &out, &n), SIGIL_ERR_INVALID);
    assert_null(out);
}

static void
test_b64_padding(void **state)
{
    (void)state;
    uint8_t *out;
    size_t n;
    assert_int_equal(sigil_b64_decode("YQ==", 4, &out, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(out[0], 'a');
    free(out);
    assert_int_equal(sigil_b64_decode("YQ", 2, &out, &n), SIGIL_ERR_INVALID);
}

static void
test_buf_and_reader(void **state)
{
    (void)state;
    struct sigil_buf b = {0};
    assert_int_equal(sigil_buf_appendf(&b, "%d-%s", 42, "x"), 0);
    assert_int_equal(b.len, 4);
    char *s = sigil_buf_strdup(&b);
    assert_string_equal(s, "42-x");
    free(s);
    sigil_buf_consume(&b, 3);
    assert_int_equal(b.len, 1);
    assert_int_equal(b.data[0], 'x');
    sigil_buf_freezero(&b);
    assert_null(b.data);

    const uint8_t bytes[] = {0, 0, 1, 2, 9};
    struct sigil_reader r = {bytes, sizeof bytes};
    uint32_t v;
    uint8_t c;
    assert_true(sigil_reader_u32be(&r, &v));
    assert_int_equal(v, 258);
    assert_true(sigil_reader_u8(&r, &c));
    assert_int_equal(c, 9);
    assert_false(sigil_reader_u8(&r, &c));
    assert_false(sigil_reader_u32be(&r, &v));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_roundtrip),
        cmocka_unit_test(test_b64url_rejects_malformed),
        cmocka_unit_test(test_b64_padding),
        cmocka_unit_test(test_buf_and_reader),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
