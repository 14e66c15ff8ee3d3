/* SPIFFE_ENDPOINT_SOCKET parsing (E-4, H-4) and the socket choice of the agent's client
 * commands: valid and invalid addresses, caps, and the --socket > env > default order. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "endpoint.h"
#include "sigil/err.h"

static void
valid(void **state)
{
    static const struct {
        const char *uri;
        bool is_unix;
        const char *path_or_host;
        int port;
    } cases[] = {
        {"unix:///path/to/endpoint.sock", true, "/path/to/endpoint.sock", 0},
        {"unix:/run/agent.sock", true, "/run/agent.sock", 0},
        {"unix:///a", true, "/a", 0},
        {"tcp://127.0.0.1:8000", false, "127.0.0.1", 8000},
        {"tcp://[::1]:1", false, "::1", 1},
        {"tcp://10.0.0.1:65535", false, "10.0.0.1", 65535},
    };
    struct sigil_endpoint ep;
    const char *why = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int r = sigil_endpoint_parse(cases[i].uri, strlen(cases[i].uri), &ep, &why);

        if (r != 0)
            fail_msg("%s: %s", cases[i].uri, why);
        assert_int_equal(ep.is_unix, cases[i].is_unix);
        if (ep.is_unix) {
            assert_string_equal(ep.path, cases[i].path_or_host);
        } else {
            assert_string_equal(ep.host, cases[i].path_or_host);
            assert_int_equal(ep.port, cases[i].port);
        }
    }
}

static void
invalid(void **state)
{
    static const char *const cases[] = {
        "",
        "/path/only",
        "unix:",
        "unix://",
        "unix:relative.sock",
        "unix://host/path", /* H-4: an authority is not allowed */
        "unix://user@/path",
        "unix:///path?x=1",
        "unix:///path#frag",
        "unix:///pa%41th",
        "unix:///with space",
        "unix:///tab\there",
        "unix:///caf\xc3\xa9",
        "UNIX:///path",
        "http:///path",
        "tcp://",
        "tcp:127.0.0.1:8000",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:65536",
        "tcp://127.0.0.1:99999999999999999999",
        "tcp://127.0.0.1:8000/foo", /* E-4's own example */
        "tcp://127.0.0.1:8000?x",
        "tcp://localhost:8000", /* an IP address, not a name */
        "tcp://user@127.0.0.1:8000",
        "tcp://[::1:8000",
        "tcp://[::1]8000",
        "tcp://:8000",
        "tcp://1.2.3:8000",
    };
    struct sigil_endpoint ep;
    const char *why = NULL;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int r = sigil_endpoint_parse(cases[i], strlen(cases[i]), &ep, &why);

        if (r == 0)
            fail_msg("accepted \"%s\"", cases[i]);
        assert_int_equal(r, SIGIL_ERR_INVALID);
        assert_non_null(why);
    }
    /* A NUL inside; a path over sun_path; an overlong URI. */
    assert_int_equal(sigil_endpoint_parse("unix:///a\0b", 11, &ep, &why), SIGIL_ERR_INVALID);
    {
        char uri[5000];

        memcpy(uri, "unix:///", 8);
        memset(uri + 8, 'a', 200);
        uri[208] = '\0';
        assert_int_equal(sigil_endpoint_parse(uri, strlen(uri), &ep, &why), SIGIL_ERR_RANGE);
        memset(uri + 8, 'a', sizeof uri - 9);
        uri[sizeof uri - 1] = '\0';
        assert_int_equal(sigil_endpoint_parse(uri, strlen(uri), &ep, &why), SIGIL_ERR_RANGE);
    }
}

static void
pick(void **state)
{
    char out[SIGIL_ENDPOINT_PATH_MAX + 1];
    const char *why = NULL;

    (void)state;
    assert_int_equal(sigil_endpoint_pick(NULL, NULL, out, &why), 0);
    assert_string_equal(out, SIGIL_ENDPOINT_DEFAULT);
    assert_int_equal(sigil_endpoint_pick(NULL, "unix:///env.sock", out, &why), 0);
    assert_string_equal(out, "/env.sock");
    assert_int_equal(sigil_endpoint_pick("/flag.sock", "unix:///env.sock", out, &why), 0);
    assert_string_equal(out, "/flag.sock");
    assert_int_equal(sigil_endpoint_pick("unix:///flaguri.sock", NULL, out, &why), 0);
    assert_string_equal(out, "/flaguri.sock");
    /* The flag wins even over a broken environment. */
    assert_int_equal(sigil_endpoint_pick("/flag.sock", "garbage", out, &why), 0);
    assert_int_equal(sigil_endpoint_pick(NULL, "garbage", out, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_endpoint_pick(NULL, "tcp://127.0.0.1:8000", out, &why),
                     SIGIL_ERR_UNSUPPORTED);
    assert_non_null(strstr(why, "Unix socket only"));
    assert_int_equal(sigil_endpoint_pick("relative.sock", NULL, out, &why), SIGIL_ERR_INVALID);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid),
        cmocka_unit_test(invalid),
        cmocka_unit_test(pick),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
