/* The agent's timing rules: SVIDs renew at half life within the jitter band (never outside
 * it, and spread across it), and reconnects back off exponentially up to the cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "agent.h"

static void
test_renew_half_life(void **state)
{
    (void)state;
    assert_int_equal(sigil_agent_renew_time(1000, 2000, 10, 0.5), 1500);
    assert_int_equal(sigil_agent_renew_time(1000, 2000, 0, 0.0), 1500);
    assert_int_equal(sigil_agent_renew_time(1000, 2000, 0, 0.99), 1500);
    assert_int_equal(sigil_agent_renew_time(1000, 2000, 10, 0.0), 1450);
    assert_true(sigil_agent_renew_time(1000, 2000, 10, 0.9999) >= 1549);
    assert_true(sigil_agent_renew_time(1000, 2000, 10, 0.9999) < 1550);
    /* out-of-range u means no jitter, never outside the band */
    assert_int_equal(sigil_agent_renew_time(1000, 2000, 10, 1.5), 1500);
    assert_int_equal(sigil_agent_renew_time(1000, 2000, 10, -1), 1500);
    /* no life left: renew now */
    assert_int_equal(sigil_agent_renew_time(1000, 1000, 10, 0.5), 1000);
    assert_int_equal(sigil_agent_renew_time(2000, 1000, 10, 0.5), 2000);
    /* a 10 s SVID (the e2e test's TTL): between 4.5 s and 5.5 s */
    assert_int_equal(sigil_agent_renew_time(0, 10, 10, 0.0), 4);
    assert_true(sigil_agent_renew_time(0, 10, 10, 0.999) <= 5);
}

static void
test_renew_jitter_spread(void **state)
{
    time_t lo = 1000000, hi = 0, t;
    unsigned below = 0, above = 0;

    (void)state;
    srand(7);
    for (int i = 0; i < 10000; i++) {
        double u = (double)rand() / ((double)RAND_MAX + 1);

        t = sigil_agent_renew_time(0, 3600, 10, u);
        assert_true(t >= 1800 - 180);
        assert_true(t <= 1800 + 180);
        lo = t < lo ? t : lo;
        hi = t > hi ? t : hi;
        below += t < 1800;
        above += t > 1800;
    }
    /* spread over the band, both sides */
    assert_true(lo <= 1800 - 170);
    assert_true(hi >= 1800 + 170);
    assert_true(below > 4000 && above > 4000);
}

static void
test_backoff(void **state)
{
    uint64_t cur = 0, seq[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};

    (void)state;
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        cur = sigil_agent_backoff_next(cur, 1000, 30000);
        assert_int_equal(cur, seq[i]);
    }
    assert_int_equal(sigil_agent_backoff_next(0, 500, 200), 200);
    assert_int_equal(sigil_agent_backoff_next(UINT64_MAX - 1, 1, UINT64_MAX), UINT64_MAX);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_renew_half_life),
        cmocka_unit_test(test_renew_jitter_spread),
        cmocka_unit_test(test_backoff),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
