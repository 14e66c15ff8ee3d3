/* sigil_ca_retire_blocker: which old root keeps `ca retire` (and POST /v1/ca:retire) from
 * removing it, read from a sigil_ca_show document; roots in other states, intermediates and
 * JWT keys never block, and a malformed document blocks nothing rather than crashing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <jansson.h>

#include "ca.h"

static json_t *
doc(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &e);

    assert_non_null(j);
    return j;
}

static void
test_old_root_in_use_blocks(void **state)
{
    json_t *j = doc("{\"authorities\":["
                    "{\"kind\":\"x509_root\",\"state\":\"active\",\"serial\":\"aa\","
                    "\"signs_unexpired_intermediates_until\":\"2030-01-01T00:00:00Z\"},"
                    "{\"kind\":\"x509_root\",\"state\":\"old\",\"serial\":\"bb\","
                    "\"signs_unexpired_intermediates_until\":\"2027-01-01T00:00:00Z\"}]}");
    const char *serial = NULL, *until = NULL;

    (void)state;
    assert_true(sigil_ca_retire_blocker(j, &serial, &until));
    assert_string_equal(serial, "bb");
    assert_string_equal(until, "2027-01-01T00:00:00Z");
    json_decref(j);
}

static void
test_nothing_blocks(void **state)
{
    /* an old root nothing chains to, a prepared root, a retired one, an old intermediate and an
     * old JWT key with the member (which only roots carry) */
    json_t *j = doc("{\"authorities\":["
                    "{\"kind\":\"x509_root\",\"state\":\"old\",\"serial\":\"bb\","
                    "\"signs_unexpired_intermediates_until\":null},"
                    "{\"kind\":\"x509_root\",\"state\":\"prepared\",\"serial\":\"cc\","
                    "\"signs_unexpired_intermediates_until\":\"2030-01-01T00:00:00Z\"},"
                    "{\"kind\":\"x509_root\",\"state\":\"retired\",\"serial\":\"dd\","
                    "\"signs_unexpired_intermediates_until\":\"2030-01-01T00:00:00Z\"},"
                    "{\"kind\":\"x509_intermediate\",\"state\":\"old\",\"serial\":\"ee\","
                    "\"signs_unexpired_intermediates_until\":\"2030-01-01T00:00:00Z\"},"
                    "{\"kind\":\"jwt_key\",\"state\":\"old\",\"kid\":\"k\","
                    "\"signs_unexpired_intermediates_until\":\"2030-01-01T00:00:00Z\"}]}");
    const char *serial = NULL, *until = NULL;

    (void)state;
    assert_false(sigil_ca_retire_blocker(j, &serial, &until));
    assert_null(serial);
    json_decref(j);
}

static void
test_malformed_documents(void **state)
{
    static const char *const docs[] = {
        "{}",
        "{\"authorities\":{}}",
        "{\"authorities\":[1,\"x\",null,[]]}",
        "{\"authorities\":[{\"kind\":1,\"state\":\"old\"}]}",
        /* one element split over two lines (parenthesized for clang's -Wstring-concatenation) */
        ("{\"authorities\":[{\"kind\":\"x509_root\",\"state\":\"old\","
         "\"signs_unexpired_intermediates_until\":5}]}"),
    };
    const char *serial = NULL, *until = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        json_t *j = doc(docs[i]);
        assert_false(sigil_ca_retire_blocker(j, &serial, &until));
        json_decref(j);
    }
    assert_false(sigil_ca_retire_blocker(NULL, &serial, &until));
    /* a blocking root without a serial still blocks, named "?" */
    json_t *j = doc("{\"authorities\":[{\"kind\":\"x509_root\",\"state\":\"old\","
                    "\"signs_unexpired_intermediates_until\":\"2027-01-01T00:00:00Z\"}]}");
    assert_true(sigil_ca_retire_blocker(j, &serial, &until));
    assert_string_equal(serial, "?");
    json_decref(j);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_old_root_in_use_blocks),
        cmocka_unit_test(test_nothing_blocks),
        cmocka_unit_test(test_malformed_documents),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
