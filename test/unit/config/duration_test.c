/* Unit tests of the duration parser and formatter: good and bad spellings, caps and the
 * round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sigil/duration.h"
#include "sigil/err.h"

static int64_t
ok(const char *s)
{
    const char *why = NULL;
    int64_t ms = -1;

    assert_int_equal(sigil_duration_parse(s, &ms, &why), 0);
    return ms;
}

static void
bad(const char *s, int code, const char *why_want)
{
    const char *why = NULL;
    int64_t ms = 7;

    assert_int_equal(sigil_duration_parse(s, &ms, &why), code);
    assert_int_equal(ms, 0);
    assert_string_equal(why, why_want);
}

static void
test_good(void **state)
{
    (void)state;
    assert_int_equal(ok("0"), 0);
    assert_int_equal(ok("0s"), 0);
    assert_int_equal(ok("500ms"), 500);
    assert_int_equal(ok("90s"), 90000);
    assert_int_equal(ok("30m"), 1800000);
    assert_int_equal(ok("1h"), 3600000);
    assert_int_equal(ok("1h30m"), 5400000);
    assert_int_equal(ok("2d"), 172800000);
    assert_int_equal(ok("1d2h3m4s5ms"), 93784005);
    assert_int_equal(ok("2m05s"), 125000);
    assert_int_equal(ok("90m"), 5400000); /* a unit may exceed the next one up */
    assert_int_equal(ok("9223372036854775807ms"), INT64_MAX);
}

static void
test_bad(void **state)
{
    (void)state;
    bad("", SIGIL_ERR_INVALID, "duration: empty (write e.g. 90s, 30m or 1h30m)");
    bad("-1h", SIGIL_ERR_INVALID, "duration: negative durations are not allowed");
    bad("1h-30m", SIGIL_ERR_INVALID, "duration: negative durations are not allowed");
    bad("+1h", SIGIL_ERR_INVALID, "duration: expected a number before each unit (e.g. 1h30m)");
    bad("h", SIGIL_ERR_INVALID, "duration: expected a number before each unit (e.g. 1h30m)");
    bad("10", SIGIL_ERR_INVALID, "duration: a unit (ms, s, m, h or d) must follow the number");
    bad("00", SIGIL_ERR_INVALID, "duration: a unit (ms, s, m, h or d) must follow the number");
    bad("1h30", SIGIL_ERR_INVALID, "duration: a unit (ms, s, m, h or d) must follow the number");
    bad("1.5h", SIGIL_ERR_INVALID, "duration: decimals are not allowed (write 1h30m, not 1.5h)");
    bad("5w", SIGIL_ERR_INVALID, "duration: unknown unit (use ms, s, m, h or d)");
    bad("5H", SIGIL_ERR_INVALID, "duration: unknown unit (use ms, s, m, h or d)");
    bad("5us", SIGIL_ERR_INVALID, "duration: unknown unit (use ms, s, m, h or d)");
    bad("1h ", SIGIL_ERR_INVALID, "duration: expected a number before each unit (e.g. 1h30m)");
    bad(" 1h", SIGIL_ERR_INVALID, "duration: expected a number before each unit (e.g. 1h30m)");
    bad("1hx", SIGIL_ERR_INVALID, "duration: expected a number before each unit (e.g. 1h30m)");
    bad("30m1h", SIGIL_ERR_INVALID,
        "duration: units must go from largest to smallest, each once (1h30m)");
    bad("1m1m", SIGIL_ERR_INVALID,
        "duration: units must go from largest to smallest, each once (1h30m)");
    bad("9223372036854775808ms", SIGIL_ERR_RANGE, "duration: too large");
    bad("106751991167301d", SIGIL_ERR_RANGE, "duration: too large");
    bad("9223372036854775s1000ms", SIGIL_ERR_RANGE, "duration: too large");
    bad("00000000000000000000000000000000000000000000000000000000000000001s", SIGIL_ERR_RANGE,
        "duration: longer than 64 characters");

    /* a NUL inside a counted string is not the end of it */
    const char *why;
    int64_t ms;
    assert_int_equal(sigil_duration_parsen("1h\0"
                                           "5m",
                                           5, &ms, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_duration_parsen("1h30m", 2, &ms, &why), 0);
    assert_int_equal(ms, 3600000);
}

static void
test_format(void **state)
{
    (void)state;
    char buf[SIGIL_DURATION_FMT_LEN];
    const int64_t values[] = {0, 1, 999, 1000, 60000, 5400000, 86400000, 93784005, INT64_MAX};
    const char *const texts[] = {"0",  "1ms",         "999ms",
                                 "1s", "1m",          "1h30m",
                                 "1d", "1d2h3m4s5ms", "106751991167d7h12m55s807ms"};

    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        assert_string_equal(sigil_duration_format(values[i], buf, sizeof buf), texts[i]);
        assert_int_equal(ok(buf), values[i]);
    }
    assert_string_equal(sigil_duration_format(-1, buf, sizeof buf), "");
    assert_string_equal(sigil_duration_format(5400000, buf, 4), ""); /* too small: nothing */
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_format),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
