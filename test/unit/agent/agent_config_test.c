/* sigil-agent run's configuration: the shipped example loads with the documented defaults,
 * the schema is sound, and every refusal names file, line (where there is one) and key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent_config.h"
#include "sigil/err.h"

#define BASE "trust_domain: example.org\nserver_address: localhost:8081\ndata_dir: /var/lib/a\n"

static int
load(const char *yaml, struct sigil_agent_config *cfg, struct sigil_config_error *err)
{
    return sigil_agent_config_load_string("t.yaml", yaml, strlen(yaml), cfg, err);
}

static void
test_schema_sound(void **state)
{
    struct sigil_config_error err;

    (void)state;
    assert_int_equal(sigil_config_check_schema(sigil_agent_config_schema, &err), 0);
}

static void
test_example_loads(void **state)
{
    const char *src = getenv("SIGIL_SOURCE_DIR");
    char path[4096];
    struct sigil_agent_config cfg;
    struct sigil_config_error err;

    (void)state;
    if (src == NULL)
        skip();
    snprintf(path, sizeof path, "%s/deploy/examples/agent.yaml", src);
    if (sigil_agent_config_load(path, &cfg, &err) != 0)
        fail_msg("%s", err.text);
    assert_string_equal(cfg.td, "example.org");
    assert_string_equal(cfg.data_dir, "/var/lib/sigil/agent");
    assert_int_equal(cfg.retry_initial_ms, 1000);
    assert_int_equal(cfg.retry_max_ms, 30000);
    assert_int_equal(cfg.jitter_percent, 10);
    assert_int_equal(cfg.wapi_socket_mode, 0666);
    assert_false(cfg.no_systemd);
    assert_null(cfg.join_token);
    sigil_agent_config_free(&cfg);
}

static void
test_minimal_and_spiffe_td(void **state)
{
    struct sigil_agent_config cfg;
    struct sigil_config_error err;

    (void)state;
    assert_int_equal(load("trust_domain: spiffe://example.org\nserver_address: '[::1]:9'\n"
                          "data_dir: /d\njoin_token: abc\nworkload_attestors: [unix]\n",
                          &cfg, &err),
                     0);
    assert_string_equal(cfg.td, "example.org");
    assert_string_equal(cfg.join_token, "abc");
    assert_true(cfg.no_systemd);
    sigil_agent_config_free(&cfg);
    assert_null(cfg.join_token);
}

/* Loads yaml expecting failure on key (and line, if > 0). */
static void
refused(const char *yaml, const char *key, int line)
{
    struct sigil_agent_config cfg;
    struct sigil_config_error err;
    char want[64];

    assert_int_not_equal(load(yaml, &cfg, &err), 0);
    assert_string_equal(err.key, key);
    assert_non_null(strstr(err.text, "t.yaml"));
    assert_non_null(strstr(err.text, key));
    if (line > 0) {
        assert_int_equal(err.line, line);
        snprintf(want, sizeof want, "t.yaml:%d", line);
        assert_non_null(strstr(err.text, want));
    }
    assert_null(cfg.trust_domain); /* nothing left behind */
}

static void
test_refusals(void **state)
{
    (void)state;
    refused(BASE "bogus: 1\n", "bogus", 4);
    refused(BASE "retry:\n  max: 5\n", "retry.max", 5);
    refused(BASE "rotation:\n  jitter_percent: 90\n", "rotation.jitter_percent", 5);
    refused("server_address: a:1\ndata_dir: /d\n", "trust_domain", 0);
    refused("trust_domain: Example.org\nserver_address: a:1\ndata_dir: /d\n", "trust_domain", 0);
    refused("trust_domain: e.org\nserver_address: a\ndata_dir: /d\n", "server_address", 2);
    refused("trust_domain: e.org\nserver_address: a:0\ndata_dir: /d\n", "server_address", 2);
    refused("trust_domain: e.org\nserver_address: a:70000\ndata_dir: /d\n", "server_address", 2);
    refused("trust_domain: e.org\nserver_address: a:1\ndata_dir: rel\n", "data_dir", 0);
    refused(BASE "x509pop:\n  cert_path: /c\n", "x509pop.key_path", 0);
    refused(BASE "join_token: t\nx509pop:\n  cert_path: /c\n  key_path: /k\n", "join_token", 0);
    refused(BASE "workload_attestors: [unix, k8s]\n", "workload_attestors", 0);
    refused(BASE "workload_api:\n  socket_path: rel.sock\n", "workload_api.socket_path", 0);
    refused(BASE "retry:\n  initial: 40s\n  max: 30s\n", "retry.initial", 0);
}

/* server_address: names, IPv4 and bracketed IPv6 load; malformed ones are refused with the
 * file, the line and the key, whichever line the key is on. */
static void
test_server_address(void **state)
{
    static const char *const good[] = {
        "localhost:8081",
        "sigil-server.sigil.svc:8081",
        "sigil-server.sigil.svc.cluster.local:8081",
        "sigil.example.com:8081",
        "10.96.100.81:8081",
        "'[::1]:8081'",
        "'[2001:db8::1]:443'",
        "s-1:1",
    };
    static const char *const bad[] = {
        "a",        ":8081", "a:",        "a:0",         "a:65536",       "::1:8081",
        "[::1]",    "[x]:1", "a_b.svc:1", "-a.svc:1",    "a..svc:1",      "1.2.3:8081",
        "a.b:8o81", "a b:1", "a.123:1",   "https://a:1", "[127.0.0.1]:1",
    };
    struct sigil_agent_config cfg;
    struct sigil_config_error err;
    char yaml[512];

    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        snprintf(yaml, sizeof yaml, "trust_domain: e.org\nserver_address: %s\ndata_dir: /d\n",
                 good[i]);
        if (load(yaml, &cfg, &err) != 0)
            fail_msg("%s refused: %s", good[i], err.text);
        sigil_agent_config_free(&cfg);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(yaml, sizeof yaml,
                 "# a comment\ntrust_domain: e.org\ndata_dir: /d\n\n"
                 "server_address: '%s'\n",
                 bad[i]);
        refused(yaml, "server_address", 5);
    }
    /* the reason is said */
    assert_int_not_equal(
        load("trust_domain: e.org\nserver_address: '::1:9'\ndata_dir: /d\n", &cfg, &err), 0);
    assert_non_null(strstr(err.text, "t.yaml:2: key \"server_address\": "));
    assert_non_null(strstr(err.text, "brackets"));
}

/* The same from a file: its path and the line. */
static void
test_server_address_file(void **state)
{
    char path[] = "/tmp/sigil-agent-config-XXXXXX";
    const char *yaml = "trust_domain: e.org\ndata_dir: /d\nserver_address:   x_y:1\n";
    struct sigil_agent_config cfg;
    struct sigil_config_error err;
    char want[64];
    int fd;

    (void)state;
    assert_true((fd = mkstemp(path)) >= 0);
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    assert_int_equal(sigil_agent_config_load(path, &cfg, &err), SIGIL_ERR_INVALID);
    unlink(path);
    snprintf(want, sizeof want, "%s:3: key \"server_address\"", path);
    if (strstr(err.text, want) == NULL)
        fail_msg("%s", err.text);
    assert_int_equal(err.line, 3);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_sound),          cmocka_unit_test(test_example_loads),
        cmocka_unit_test(test_minimal_and_spiffe_td), cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_server_address),        cmocka_unit_test(test_server_address_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
