/* Unit tests of sigil-server's config file: the example in deploy/examples loads and matches
 * the printed doc, a bad key names file, line and key, the checks across keys name their key,
 * the policy keys reach sigil/policy.h, and host:port parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../../server/server_config.h"
#include "sigil/err.h"

static const char *
example_path(void)
{
    static char path[4096];
    const char *src = getenv("SIGIL_SOURCE_DIR");

    if (src != NULL && src[0] != '\0') {
        snprintf(path, sizeof path, "%s/deploy/examples/server.yaml", src);
    } else {
        /* __FILE__ is test/unit/server/server_config_test.c under the source tree */
        const char *end = strstr(__FILE__, "test/unit/server/");
        snprintf(path, sizeof path, "%.*sdeploy/examples/server.yaml",
                 end ? (int)(end - __FILE__) : 0, __FILE__);
    }
    return path;
}

static int
load(const char *yaml, struct sigil_server_config *cfg, struct sigil_config_error *err)
{
    return sigil_server_config_load_string("server.yaml", yaml, strlen(yaml), cfg, err);
}

static void
test_example_loads(void **state)
{
    struct sigil_server_config cfg;
    struct sigil_config_error err;
    int r;

    (void)state;
    r = sigil_server_config_load(example_path(), &cfg, &err);
    if (r != 0)
        fail_msg("example: %s", err.text);
    assert_string_equal(cfg.trust_domain, "example.org");
    assert_int_equal(cfg.role, SIGIL_SERVER_UPSTREAM);
    assert_string_equal(cfg.db_conninfo, "host=/run/postgresql dbname=sigil user=sigil");
    assert_int_equal(cfg.db_pool_size, 8);
    assert_int_equal(cfg.admin_socket_mode, 0660);
    assert_int_equal(cfg.platform_admins.n, 1);
    assert_string_equal(cfg.platform_admins.items[0],
                        "spiffe://example.org/sigil/admin/platform-team");
    assert_int_equal(cfg.viewers.n, 1);
    assert_null(cfg.admin_listen);
    assert_null(cfg.bundle_endpoint_listen);
    assert_string_equal(cfg.ca_subject_country, "US");
    assert_int_equal(cfg.ca_root_ttl_ms, 8760LL * 3600 * 1000);
    assert_int_equal(cfg.policy_segment_values.n, 2);
    assert_int_equal(cfg.log_format, 1); /* json */
    /* the instance id defaults to <hostname>:<admin socket> */
    assert_non_null(cfg.instance_id);
    assert_non_null(strstr(cfg.instance_id, ":/run/sigil/server/admin.sock"));
    sigil_server_config_free(&cfg);
    assert_null(cfg.trust_domain);
}

/* The example is the printed doc with values filled in: every doc line is in it. */
static void
test_example_matches_doc(void **state)
{
    char *doc = NULL, *ex = NULL, *save = NULL;
    size_t doclen = 0;
    FILE *fp = open_memstream(&doc, &doclen), *ef;
    long n;

    (void)state;
    assert_non_null(fp);
    assert_int_equal(sigil_server_config_print_doc(fp), 0);
    fclose(fp);
    ef = fopen(example_path(), "r");
    assert_non_null(ef);
    assert_int_equal(fseek(ef, 0, SEEK_END), 0);
    n = ftell(ef);
    rewind(ef);
    ex = calloc(1, (size_t)n + 1);
    assert_non_null(ex);
    assert_int_equal(fread(ex, 1, (size_t)n, ef), (size_t)n);
    fclose(ef);
    for (char *line = strtok_r(doc, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        const char *t = line;

        while (*t == ' ')
            t++;
        /* doc and type lines must all be there; key lines may carry a value now */
        if (t[0] == '#' && t[1] == ' ' && strstr(ex, line) == NULL)
            fail_msg("deploy/examples/server.yaml lacks the doc line \"%s\" (regenerate it "
                     "with sigil-server run --print-config-doc)",
                     line);
    }
    free(doc);
    free(ex);
}

/* The printed doc with only the required key filled in loads: every default is valid. */
static void
test_doc_defaults_load(void **state)
{
    struct sigil_server_config cfg;
    struct sigil_config_error err;
    char *doc = NULL, *fixed;
    size_t len = 0;
    FILE *fp = open_memstream(&doc, &len);
    const char *at;

    (void)state;
    assert_non_null(fp);
    assert_int_equal(sigil_server_config_print_doc(fp), 0);
    fclose(fp);
    at = strstr(doc, "\ntrust_domain:\n");
    assert_non_null(at);
    assert_true(asprintf(&fixed, "%.*s\ntrust_domain: spiffe://example.org\n%s", (int)(at - doc),
                         doc, at + strlen("\ntrust_domain:\n")) > 0);
    if (load(fixed, &cfg, &err) != 0)
        fail_msg("doc with defaults: %s", err.text);
    /* the spiffe:// form is stored bare */
    assert_string_equal(cfg.trust_domain, "example.org");
    assert_string_equal(cfg.admin_socket_path, "/run/sigil/server/admin.sock");
    assert_int_equal(cfg.admin_socket_mode, 0600);
    assert_int_equal(cfg.db_pool_size, 4);
    assert_int_equal(cfg.policy_x509_ttl.default_ms, 3600 * 1000);
    assert_int_equal(cfg.policy_jwt_ttl.max_ms, 3600 * 1000);
    assert_int_equal(cfg.policy_scheme.n, 4);
    assert_int_equal(cfg.policy_discouraged.n, 4);
    sigil_server_config_free(&cfg);
    free(fixed);
    free(doc);
}

static void
test_bad_key_names_file_line_key(void **state)
{
    struct sigil_server_config cfg;
    struct sigil_config_error err;

    (void)state;
    assert_int_equal(load("trust_domain: example.org\n"
                          "admin:\n"
                          "  sockett_path: /tmp/x.sock\n",
                          &cfg, &err),
                     SIGIL_ERR_INVALID);
    assert_int_equal(err.line, 3);
    assert_string_equal(err.key, "admin.sockett_path");
    assert_non_null(strstr(err.text, "server.yaml:3: key \"admin.sockett_path\": unknown key"));
    assert_null(cfg.trust_domain);

    assert_true(load("trust_domain: example.org\n"
                     "database:\n"
                     "  pool_size: 65\n",
                     &cfg, &err) < 0);
    assert_int_equal(err.line, 3);
    assert_string_equal(err.key, "database.pool_size");

    assert_int_equal(load("role: upstream\n", &cfg, &err), SIGIL_ERR_INVALID);
    assert_string_equal(err.key, "trust_domain");
}

/* A check across keys fails with the key named and no line. */
static void
expect_cross(const char *yaml, const char *key, const char *text)
{
    struct sigil_server_config cfg;
    struct sigil_config_error err;

    memset(&err, 0, sizeof err);
    if (load(yaml, &cfg, &err) == 0) {
        sigil_server_config_free(&cfg);
        fail_msg("loaded: %s", yaml);
    }
    assert_string_equal(err.key, key);
    if (strstr(err.text, text) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err.text, text);
    assert_null(cfg.trust_domain);
}

static void
test_cross_key_checks(void **state)
{
    (void)state;
    expect_cross("trust_domain: Example.org\n", "trust_domain",
                 "server.yaml: key \"trust_domain\"");
    expect_cross("trust_domain: spiffe://example.org/path\n", "trust_domain", "");
    expect_cross("trust_domain: example.org\nadmin:\n  listen: 127.0.0.1:8443\n", "admin.tls_cert",
                 "required when admin.listen is set");
    expect_cross("trust_domain: example.org\nbundle_endpoint:\n  listen: 127.0.0.1:0\n  tls_key: "
                 "/k.pem\n",
                 "bundle_endpoint.tls_cert", "required when bundle_endpoint.listen is set");
    expect_cross("trust_domain: example.org\nadmin:\n  listen: localhost\n", "admin.listen",
                 "host:port");
    expect_cross("trust_domain: example.org\nnode_api:\n  listen: 0.0.0.0:99999\n",
                 "node_api.listen", "port");
    expect_cross("trust_domain: example.org\nadmin:\n  viewers: [bob]\n", "admin.viewers",
                 "item 1 is not a SPIFFE ID");
    expect_cross("trust_domain: example.org\nca:\n  root_ttl: 2h\n  intermediate_ttl: 3h\n",
                 "ca.intermediate_ttl", "shorter than ca.root_ttl");
    expect_cross("trust_domain: example.org\nca:\n  key_dir: keys\n", "ca.key_dir", "absolute");
    expect_cross("trust_domain: example.org\nca:\n  bundle_refresh_hint: 1500ms\n",
                 "ca.bundle_refresh_hint", "whole seconds");
    expect_cross(
        "trust_domain: example.org\nadmin:\n  socket_path: /"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
        "admin.socket_path", "96 bytes");
    expect_cross("trust_domain: example.org\npolicy:\n  segment_values: [nosuch=a b]\n",
                 "policy.segment_values", "");
    expect_cross("trust_domain: example.org\npolicy:\n  segment_values: [environment]\n",
                 "policy.segment_values", "segment=value");
    expect_cross("trust_domain: example.org\npolicy:\n  segment_values: [\"environment= \"]\n",
                 "policy.segment_values", "no values");
    expect_cross("trust_domain: example.org\npolicy:\n  segment_patterns: [\"team=[a-z]*\"]\n",
                 "policy.segment_patterns", "");
    expect_cross("trust_domain: example.org\npolicy:\n  scheme: []\n", "policy.scheme", "");
    expect_cross("trust_domain: example.org\npolicy:\n  exempt_prefixes: [spiffe://other.org/x]\n",
                 "policy.exempt_prefixes", "");
    expect_cross("trust_domain: example.org\npolicy:\n  discouraged: [k8s:pod-name=maybe]\n",
                 "policy.discouraged", "");
    expect_cross("trust_domain: example.org\npolicy:\n  x509_ttl:\n    min: 2h\n    max: 1h\n",
                 "policy.x509_ttl", "");
    expect_cross("trust_domain: example.org\npolicy:\n  jwt_ttl:\n    default: 1500ms\n",
                 "policy.jwt_ttl", "whole seconds");
}

static void
test_policy_from_config(void **state)
{
    struct sigil_server_config cfg;
    struct sigil_config_error err;
    struct sigil_policy p;

    (void)state;
    assert_int_equal(load("trust_domain: example.org\n"
                          "policy:\n"
                          "  tier: relaxed\n"
                          "  scheme: [env, team, app]\n"
                          "  segment_values: [env=prod dev]\n"
                          "  segment_patterns: [\"app=[a-z]{2,8}\"]\n"
                          "  exempt_prefixes: [/ops, spiffe://example.org/infra]\n"
                          "  discouraged: [unix:pid=warn]\n"
                          "  x509_ttl:\n"
                          "    min: 2m\n"
                          "    max: 2h\n"
                          "    default: 30m\n",
                          &cfg, &err),
                     0);
    assert_int_equal(sigil_server_config_policy(&cfg, "server.yaml", &p, &err), 0);
    assert_int_equal(p.tier, SIGIL_POLICY_TIER_RELAXED);
    assert_true(p.enforce_scheme);
    assert_int_equal(p.n_segments, 3);
    assert_string_equal(p.segments[0].name, "env");
    assert_int_equal(p.segments[0].n_allowed, 2);
    assert_string_equal(p.segments[0].allowed[1], "dev");
    assert_string_equal(p.segments[2].pattern, "[a-z]{2,8}");
    assert_int_equal(p.n_exempt, 2);
    assert_string_equal(p.exempt[0].str, "spiffe://example.org/ops");
    assert_string_equal(p.exempt[1].str, "spiffe://example.org/infra");
    assert_int_equal(p.n_discouraged, 1);
    assert_int_equal(p.discouraged[0].action, SIGIL_POLICY_WARN);
    assert_int_equal(p.x509_ttl.min, 120);
    assert_int_equal(p.x509_ttl.max, 7200);
    assert_int_equal(p.x509_ttl.default_s, 1800);
    assert_int_equal(p.jwt_ttl.default_s, 300);
    sigil_policy_free(&p);
    sigil_server_config_free(&cfg);
}

static void
test_database_from_env(void **state)
{
    struct sigil_server_config cfg;
    struct sigil_config_error err;

    (void)state;
    setenv("SIGIL_DATABASE", "host=/tmp/pg dbname=x", 1);
    assert_int_equal(load("trust_domain: example.org\n", &cfg, &err), 0);
    assert_string_equal(cfg.db_conninfo, "host=/tmp/pg dbname=x");
    sigil_server_config_free(&cfg);
    /* the file wins over the environment */
    assert_int_equal(
        load("trust_domain: example.org\ndatabase:\n  conninfo: dbname=y\n", &cfg, &err), 0);
    assert_string_equal(cfg.db_conninfo, "dbname=y");
    sigil_server_config_free(&cfg);
    unsetenv("SIGIL_DATABASE");
    /* the admin socket: the file, else $SIGIL_ADMIN_SOCKET, else the default */
    setenv("SIGIL_ADMIN_SOCKET", "/tmp/env-admin.sock", 1);
    assert_int_equal(load("trust_domain: example.org\n", &cfg, &err), 0);
    assert_string_equal(cfg.admin_socket_path, "/tmp/env-admin.sock");
    assert_non_null(strstr(cfg.instance_id, ":/tmp/env-admin.sock"));
    sigil_server_config_free(&cfg);
    assert_int_equal(
        load("trust_domain: example.org\nadmin:\n  socket_path: /tmp/f.sock\n", &cfg, &err), 0);
    assert_string_equal(cfg.admin_socket_path, "/tmp/f.sock");
    sigil_server_config_free(&cfg);
    unsetenv("SIGIL_ADMIN_SOCKET");
    assert_int_equal(load("trust_domain: example.org\n", &cfg, &err), 0);
    assert_string_equal(cfg.admin_socket_path, SIGIL_SERVER_ADMIN_SOCKET_DEFAULT);
    sigil_server_config_free(&cfg);
    assert_int_equal(load("trust_domain: example.org\ninstance_id: replica-1\n", &cfg, &err), 0);
    assert_null(cfg.db_conninfo);
    assert_string_equal(cfg.instance_id, "replica-1");
    sigil_server_config_free(&cfg);
}

static void
test_split_hostport(void **state)
{
    char host[64];
    uint16_t port = 0;
    const char *why = NULL;

    (void)state;
    assert_int_equal(sigil_server_config_split_hostport("127.0.0.1:8443", host, &port, false, &why),
                     0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8443);
    assert_int_equal(sigil_server_config_split_hostport("[::1]:1", host, &port, false, &why), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 1);
    assert_int_equal(sigil_server_config_split_hostport("0.0.0.0:0", host, &port, true, &why), 0);
    assert_int_equal(port, 0);
    static const char *const bad[] = {
        "",        "127.0.0.1", "127.0.0.1:", ":80",  "::1:80",   "[::1]80", "[::1]:", "h:0",
        "h:65536", "h:080",     "h:8a",       "h:-1", "h:123456", "[::1:80", "[]:80",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        if (sigil_server_config_split_hostport(bad[i], host, &port, false, &why) !=
            SIGIL_ERR_INVALID)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_non_null(why);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_loads),
        cmocka_unit_test(test_example_matches_doc),
        cmocka_unit_test(test_doc_defaults_load),
        cmocka_unit_test(test_bad_key_names_file_line_key),
        cmocka_unit_test(test_cross_key_checks),
        cmocka_unit_test(test_policy_from_config),
        cmocka_unit_test(test_database_from_env),
        cmocka_unit_test(test_split_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
