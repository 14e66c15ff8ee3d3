/* Unit tests of the schema-driven YAML config loader: every type on the happy path, every
 * kind of error with its exact text (file, line, key), files, schemas and the doc printer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "sigil/config.h"
#include "sigil/err.h"

struct cfg {
    char *trust_domain;
    int64_t bind_port;
    mode_t socket_mode;
    uint64_t max_body;
    bool tls_enabled;
    int64_t x509_ttl_ms;
    int log_level;
    struct sigil_config_strlist attestors;
    char *data_dir;
    bool debug;
};

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

static const struct sigil_config_field schema[] = {
    {.key = "trust_domain",
     .type = SIGIL_CFG_STRING,
     .offset = offsetof(struct cfg, trust_domain),
     .required = true,
     .doc = "Trust domain this server is the root of."},
    {.key = "server", .type = SIGIL_CFG_SECTION, .doc = "The node API listener."},
    {.key = "server.bind_port",
     .type = SIGIL_CFG_INT64,
     .offset = offsetof(struct cfg, bind_port),
     .required = true,
     .min = 1,
     .max = 65535,
     .doc = "TCP port of the node API."},
    {.key = "server.socket_mode",
     .type = SIGIL_CFG_MODE,
     .offset = offsetof(struct cfg, socket_mode),
     .def = "0660",
     .doc = "Mode of the admin socket."},
    {.key = "server.max_body",
     .type = SIGIL_CFG_SIZE,
     .offset = offsetof(struct cfg, max_body),
     .def = "1MiB",
     .min = 1024,
     .max = 4 * 1024 * 1024,
     .doc = "Largest request body."},
    {.key = "server.tls.enabled",
     .type = SIGIL_CFG_BOOL,
     .offset = offsetof(struct cfg, tls_enabled),
     .def = "true",
     .doc = "Serve TLS."},
    {.key = "ca.x509_ttl",
     .type = SIGIL_CFG_DURATION,
     .offset = offsetof(struct cfg, x509_ttl_ms),
     .def = "1h",
     .min = 60000,
     .max = 86400000,
     .doc = "Lifetime of X.509-SVIDs."},
    {.key = "log.level",
     .type = SIGIL_CFG_ENUM,
     .offset = offsetof(struct cfg, log_level),
     .def = "info",
     .choices = levels,
     .doc = "Lowest level logged."},
    {.key = "attestors",
     .type = SIGIL_CFG_STRLIST,
     .offset = offsetof(struct cfg, attestors),
     .def = "[unix, k8s]",
     .doc = "Workload attestors to run."},
    {.key = "data_dir",
     .type = SIGIL_CFG_STRING,
     .offset = offsetof(struct cfg, data_dir),
     .doc = "Where to keep state."},
    {.key = "debug",
     .type = SIGIL_CFG_BOOL,
     .offset = offsetof(struct cfg, debug),
     .def = "false",
     .doc = "Extra checks."},
    SIGIL_CONFIG_END,
};

/* Loads yaml as "server.yaml"; on failure checks the error text, line and key. */
static int
load(const char *yaml, struct cfg *c, struct sigil_config_error *err)
{
    memset(c, 0xa5, sizeof *c); /* the loader must not rely on a zeroed struct */
    return sigil_config_load_string(schema, "server.yaml", yaml, strlen(yaml), c, err);
}

static void
expect_error(const char *yaml, int code, int line, const char *key, const char *text)
{
    struct sigil_config_error err;
    struct cfg c;

    assert_int_equal(load(yaml, &c, &err), code);
    assert_string_equal(err.text, text);
    assert_int_equal(err.line, line);
    assert_string_equal(err.key, key);
    /* a failed load leaves nothing behind to free */
    assert_null(c.trust_domain);
    assert_null(c.data_dir);
    assert_null(c.attestors.items);
    assert_int_equal(c.attestors.n, 0);
}

static void
test_every_type(void **state)
{
    (void)state;
    const char *yaml = "# a full file\n"
                       "trust_domain: example.org\n"
                       "server:\n"
                       "  bind_port: 8081\n"
                       "  socket_mode: 0640\n"
                       "  max_body: 4MiB\n"
                       "  tls:\n"
                       "    enabled: false\n"
                       "ca:\n"
                       "  x509_ttl: 1h30m\n"
                       "log: {level: warn}\n"
                       "attestors:\n"
                       "  - unix\n"
                       "  - \"k8s\"\n"
                       "  - systemd\n"
                       "data_dir: '/var/lib/sigil'\n"
                       "debug: true\n";
    struct sigil_config_error err;
    struct cfg c;

    assert_int_equal(load(yaml, &c, &err), 0);
    assert_string_equal(c.trust_domain, "example.org");
    assert_int_equal(c.bind_port, 8081);
    assert_int_equal(c.socket_mode, 0640);
    assert_int_equal(c.max_body, 4 * 1024 * 1024);
    assert_false(c.tls_enabled);
    assert_int_equal(c.x509_ttl_ms, 5400000);
    assert_int_equal(c.log_level, 2);
    assert_int_equal(c.attestors.n, 3);
    assert_string_equal(c.attestors.items[0], "unix");
    assert_string_equal(c.attestors.items[1], "k8s");
    assert_string_equal(c.attestors.items[2], "systemd");
    assert_string_equal(c.data_dir, "/var/lib/sigil");
    assert_true(c.debug);
    sigil_config_free(schema, &c);
    assert_null(c.trust_domain);
    assert_null(c.attestors.items);
    assert_int_equal(c.attestors.n, 0);
}

static void
test_defaults(void **state)
{
    (void)state;
    struct sigil_config_error err;
    struct cfg c;

    assert_int_equal(load("trust_domain: td\nserver: {bind_port: 1}\n", &c, &err), 0);
    assert_int_equal(c.bind_port, 1);
    assert_int_equal(c.socket_mode, 0660);
    assert_int_equal(c.max_body, 1024 * 1024);
    assert_true(c.tls_enabled);
    assert_int_equal(c.x509_ttl_ms, 3600000);
    assert_int_equal(c.log_level, 1);
    assert_int_equal(c.attestors.n, 2);
    assert_string_equal(c.attestors.items[1], "k8s");
    assert_null(c.data_dir);
    assert_false(c.debug);
    sigil_config_free(schema, &c);
}

static void
test_other_spellings(void **state)
{
    (void)state;
    struct sigil_config_error err;
    struct cfg c;

    assert_int_equal(load("trust_domain: \"123\"\n"
                          "server:\n  bind_port: \"65535\"\n  socket_mode: 0o600\n"
                          "  max_body: 2048\n"
                          "ca:\n  x509_ttl: 1m\n"
                          "attestors: []\n",
                          &c, &err),
                     0);
    assert_string_equal(c.trust_domain, "123");
    assert_int_equal(c.bind_port, 65535);
    assert_int_equal(c.socket_mode, 0600);
    assert_int_equal(c.max_body, 2048);
    assert_int_equal(c.x509_ttl_ms, 60000);
    assert_int_equal(c.attestors.n, 0);
    sigil_config_free(schema, &c);

    /* "section:" with all of its keys commented out is an empty section */
    assert_int_equal(load("trust_domain: td\nserver: {bind_port: 2}\nca:\n", &c, &err), 0);
    assert_int_equal(c.x509_ttl_ms, 3600000);
    sigil_config_free(schema, &c);
}

static void
test_bad_integer(void **state)
{
    (void)state;
    expect_error("trust_domain: td\n"
                 "server:\n"
                 "  bind_port: abc\n",
                 SIGIL_ERR_INVALID, 3, "server.bind_port",
                 "server.yaml:3: key \"server.bind_port\": expected an integer 1..65535, got "
                 "\"abc\"");
    expect_error("trust_domain: td\nserver:\n  bind_port: 70000\n", SIGIL_ERR_INVALID, 3,
                 "server.bind_port",
                 "server.yaml:3: key \"server.bind_port\": expected an integer 1..65535, got "
                 "\"70000\"");
    expect_error("trust_domain: td\nserver:\n  bind_port: 0x50\n", SIGIL_ERR_INVALID, 3,
                 "server.bind_port",
                 "server.yaml:3: key \"server.bind_port\": expected an integer 1..65535, got "
                 "\"0x50\"");
    expect_error("trust_domain: td\nserver:\n  bind_port: 080\n", SIGIL_ERR_INVALID, 3,
                 "server.bind_port",
                 "server.yaml:3: key \"server.bind_port\": expected an integer 1..65535, got "
                 "\"080\"");
}

static void
test_bad_scalars(void **state)
{
    (void)state;
    expect_error("debug: yes\n", SIGIL_ERR_INVALID, 1, "debug",
                 "server.yaml:1: key \"debug\": expected true or false, got \"yes\"");
    expect_error("server:\n  socket_mode: 660\n", SIGIL_ERR_INVALID, 2, "server.socket_mode",
                 "server.yaml:2: key \"server.socket_mode\": expected an octal file mode like "
                 "0640 (at most 0777), got \"660\"");
    expect_error("server:\n  socket_mode: 04755\n", SIGIL_ERR_INVALID, 2, "server.socket_mode",
                 "server.yaml:2: key \"server.socket_mode\": expected an octal file mode like "
                 "0640 (at most 0777), got \"04755\"");
    expect_error("server:\n  max_body: 4mb\n", SIGIL_ERR_INVALID, 2, "server.max_body",
                 "server.yaml:2: key \"server.max_body\": expected a size 1KiB..4MiB, got "
                 "\"4mb\"");
    expect_error("server:\n  max_body: 5MiB\n", SIGIL_ERR_INVALID, 2, "server.max_body",
                 "server.yaml:2: key \"server.max_body\": expected a size 1KiB..4MiB, got "
                 "\"5MiB\"");
    expect_error("ca:\n  x509_ttl: 1.5h\n", SIGIL_ERR_INVALID, 2, "ca.x509_ttl",
                 "server.yaml:2: key \"ca.x509_ttl\": expected a duration 1m..1d, got \"1.5h\": "
                 "decimals are not allowed (write 1h30m, not 1.5h)");
    expect_error("ca:\n  x509_ttl: 2d\n", SIGIL_ERR_INVALID, 2, "ca.x509_ttl",
                 "server.yaml:2: key \"ca.x509_ttl\": expected a duration 1m..1d, got \"2d\"");
    expect_error("log:\n  level: verbose\n", SIGIL_ERR_INVALID, 2, "log.level",
                 "server.yaml:2: key \"log.level\": expected one of \"debug\", \"info\", "
                 "\"warn\", \"error\", got \"verbose\"");
    expect_error("data_dir:\n", SIGIL_ERR_INVALID, 1, "data_dir",
                 "server.yaml:1: key \"data_dir\": expected a string, got an empty value");
    expect_error("data_dir: \"a\\0b\"\n", SIGIL_ERR_INVALID, 1, "data_dir",
                 "server.yaml:1: key \"data_dir\": contains a NUL byte");
    /* what a value says is shown escaped, never raw */
    expect_error("debug: \"\\e[31mred\\n\"\n", SIGIL_ERR_INVALID, 1, "debug",
                 "server.yaml:1: key \"debug\": expected true or false, got "
                 "\"\\x1b[31mred\\x0a\"");
}

static void
test_wrong_kind(void **state)
{
    (void)state;
    expect_error("trust_domain: [a, b]\n", SIGIL_ERR_INVALID, 1, "trust_domain",
                 "server.yaml:1: key \"trust_domain\": expected a string, got a list");
    expect_error("debug:\n  x: 1\n", SIGIL_ERR_INVALID, 1, "debug",
                 "server.yaml:1: key \"debug\": expected true or false, got a section "
                 "(mapping)");
    expect_error("server: 8081\n", SIGIL_ERR_INVALID, 1, "server",
                 "server.yaml:1: key \"server\": expected a section of keys, got a single "
                 "value");
    expect_error("server:\n  - a\n", SIGIL_ERR_INVALID, 1, "server",
                 "server.yaml:1: key \"server\": expected a section of keys, got a list");
    expect_error("attestors: unix\n", SIGIL_ERR_INVALID, 1, "attestors",
                 "server.yaml:1: key \"attestors\": expected a list of strings, got a single "
                 "value (use [a, b] or one \"- item\" per line)");
    expect_error("attestors:\n  - unix\n  - [k8s]\n", SIGIL_ERR_INVALID, 3, "attestors",
                 "server.yaml:3: key \"attestors\": item 2: expected a string, got a list");
    expect_error("- a\n- b\n", SIGIL_ERR_INVALID, 1, "",
                 "server.yaml:1: expected keys (a mapping) at the top level, got a list");
    expect_error("just text\n", SIGIL_ERR_INVALID, 1, "",
                 "server.yaml:1: expected keys (a mapping) at the top level, got a single "
                 "value");
}

static void
test_unknown_keys(void **state)
{
    (void)state;
    expect_error("trust_domain: td\nserver:\n  bind_prot: 1\n", SIGIL_ERR_INVALID, 3,
                 "server.bind_prot",
                 "server.yaml:3: key \"server.bind_prot\": unknown key (did you mean "
                 "\"server.bind_port\"?)");
    expect_error("trust_domian: td\n", SIGIL_ERR_INVALID, 1, "trust_domian",
                 "server.yaml:1: key \"trust_domian\": unknown key (did you mean "
                 "\"trust_domain\"?)");
    expect_error("sever:\n  bind_port: 1\n", SIGIL_ERR_INVALID, 1, "sever",
                 "server.yaml:1: key \"sever\": unknown key (did you mean \"server\"?)");
    /* right name, wrong section */
    expect_error("bind_port: 1\n", SIGIL_ERR_INVALID, 1, "bind_port",
                 "server.yaml:1: key \"bind_port\": unknown key (did you mean "
                 "\"server.bind_port\"?)");
    expect_error("trust_domain: td\nfrobnicate: 1\n", SIGIL_ERR_INVALID, 2, "frobnicate",
                 "server.yaml:2: key \"frobnicate\": unknown key");
    expect_error("server.bind_port: 1\n", SIGIL_ERR_INVALID, 1, "server.bind_port",
                 "server.yaml:1: key \"server.bind_port\": dotted keys are not read as paths; "
                 "nest the parts as sections");
    expect_error("\"a\\tb\": 1\n", SIGIL_ERR_INVALID, 1, "a\\x09b",
                 "server.yaml:1: key \"a\\x09b\": unknown key");
    expect_error("<<: {debug: true}\n", SIGIL_ERR_INVALID, 1, "<<",
                 "server.yaml:1: key \"<<\": unknown key");
}

static void
test_duplicates(void **state)
{
    (void)state;
    expect_error("trust_domain: a\ndebug: true\ntrust_domain: b\n", SIGIL_ERR_INVALID, 3,
                 "trust_domain",
                 "server.yaml:3: key \"trust_domain\": duplicate key (first set on line 1)");
    expect_error("server:\n  bind_port: 1\nserver:\n  bind_port: 2\n", SIGIL_ERR_INVALID, 3,
                 "server", "server.yaml:3: key \"server\": duplicate key (first set on line 1)");
}

static void
test_missing_required(void **state)
{
    (void)state;
    expect_error("server:\n  bind_port: 1\n", SIGIL_ERR_INVALID, 1, "trust_domain",
                 "server.yaml:1: key \"trust_domain\": required but missing");
    expect_error("", SIGIL_ERR_INVALID, 1, "trust_domain",
                 "server.yaml:1: key \"trust_domain\": required but missing");
    expect_error("trust_domain: td\n\nserver:\n  socket_mode: 0600\n", SIGIL_ERR_INVALID, 3,
                 "server.bind_port",
                 "server.yaml:3: key \"server.bind_port\": required but missing from section "
                 "\"server\"");
    expect_error("trust_domain: td\n", SIGIL_ERR_INVALID, 1, "server.bind_port",
                 "server.yaml:1: key \"server.bind_port\": required but missing");
}

static void
test_yaml_errors(void **state)
{
    (void)state;
    struct sigil_config_error err;
    struct cfg c;

    assert_int_equal(load("trust_domain: td\nserver: [a\n", &c, &err), SIGIL_ERR_INVALID);
    assert_int_equal(strncmp(err.text, "server.yaml:", 12), 0);
    assert_non_null(strstr(err.text, ": invalid YAML: "));
    assert_true(err.line >= 2);
    assert_int_equal(load("a: 1\n b: :\n", &c, &err), SIGIL_ERR_INVALID);
    assert_string_equal(err.text, "server.yaml:2: invalid YAML: invalid multiline plain key");
    expect_error("trust_domain: a\n---\ntrust_domain: b\n", SIGIL_ERR_INVALID, 3, "",
                 "server.yaml:3: more than one YAML document (a config file is one document)");
    expect_error("trust_domain: &x td\ndata_dir: *x\n", SIGIL_ERR_INVALID, 2, "data_dir",
                 "server.yaml:2: key \"data_dir\": aliases (*name) are not supported in config "
                 "files");
    expect_error("trust_domain: !!str td\n", SIGIL_ERR_INVALID, 1, "trust_domain",
                 "server.yaml:1: key \"trust_domain\": tags (!name) are not supported in config "
                 "files");
    expect_error("[a]: 1\n", SIGIL_ERR_INVALID, 1, "",
                 "server.yaml:1: keys must be plain words (found a list as a key)");
}

/* What is refused before libfyaml parses anything (it hangs on some such inputs). */
static void
test_raw_text_checks(void **state)
{
    (void)state;
    struct sigil_config_error err;
    struct cfg c;

    /* the input that made Debian's libfyaml 0.7.12 loop forever in fy_scan_directive */
    expect_error("a: &x 0\nb: *x\n%-{-\x8a"
                 "c d\n",
                 SIGIL_ERR_INVALID, 3, "",
                 "server.yaml:3: YAML directives (%...) are not supported in config files");
    expect_error("%YAML 1.2\n---\ntrust_domain: td\n", SIGIL_ERR_INVALID, 1, "",
                 "server.yaml:1: YAML directives (%...) are not supported in config files");
    expect_error("trust_domain: td\ndata_dir: /a\xff\n", SIGIL_ERR_INVALID, 2, "",
                 "server.yaml:2: not valid UTF-8 (byte 0xff)");
    expect_error("trust_domain: td\r\ndata_dir: \xc0\xaf\n", SIGIL_ERR_INVALID, 2, "",
                 "server.yaml:2: not valid UTF-8 (byte 0xc0)");
    expect_error("trust_domain: t\x1b[2Jd\n", SIGIL_ERR_INVALID, 1, "",
                 "server.yaml:1: control character U+001B is not allowed");
    expect_error("\n\ntrust_domain: \xc2\x9b\n", SIGIL_ERR_INVALID, 3, "",
                 "server.yaml:3: control character U+009B is not allowed");
    /* NUL bytes in the text, not as an escape */
    assert_int_equal(sigil_config_load_string(schema, "server.yaml", "a: 1\n\0", 6, &c, &err),
                     SIGIL_ERR_INVALID);
    assert_string_equal(err.text, "server.yaml:2: control character U+0000 is not allowed");
    /* a byte order mark, tabs in comments, CRLF and non-ASCII text are fine */
    assert_int_equal(load("\xef\xbb\xbftrust_domain: t\xc3\xa9st # \t\r\n"
                          "server: {bind_port: 5}\r\n",
                          &c, &err),
                     0);
    assert_string_equal(c.trust_domain, "t\xc3\xa9st");
    sigil_config_free(schema, &c);
}

static void
test_files(void **state)
{
    (void)state;
    char path[] = "/tmp/sigil-config-test-XXXXXX";
    const char *yaml = "trust_domain: td\nserver:\n  bind_port: 9\n";
    struct sigil_config_error err;
    struct cfg c;
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    assert_int_equal(sigil_config_load_file(schema, path, &c, &err), 0);
    assert_int_equal(c.bind_port, 9);
    sigil_config_free(schema, &c);

    /* errors name the path as given */
    assert_int_equal(ftruncate(fd, 0), 0);
    assert_int_equal(pwrite(fd, "debug: 1\n", 9, 0), 9);
    assert_int_equal(sigil_config_load_file(schema, path, &c, &err), SIGIL_ERR_INVALID);
    char want[256];
    snprintf(want, sizeof want, "%s:1: key \"debug\": expected true or false, got \"1\"", path);
    assert_string_equal(err.text, want);

    /* over the cap: refused before parsing */
    char *big = malloc(SIGIL_CONFIG_MAX_SIZE + 1);
    assert_non_null(big);
    memset(big, '#', SIGIL_CONFIG_MAX_SIZE + 1);
    assert_int_equal(pwrite(fd, big, SIGIL_CONFIG_MAX_SIZE + 1, 0), SIGIL_CONFIG_MAX_SIZE + 1);
    assert_int_equal(sigil_config_load_file(schema, path, &c, &err), SIGIL_ERR_RANGE);
    snprintf(want, sizeof want, "%s: larger than 1048576 bytes", path);
    assert_string_equal(err.text, want);
    assert_int_equal(
        sigil_config_load_string(schema, "big", big, SIGIL_CONFIG_MAX_SIZE + 1, &c, &err),
        SIGIL_ERR_RANGE);
    free(big);
    close(fd);
    unlink(path);

    assert_int_equal(sigil_config_load_file(schema, path, &c, &err), SIGIL_ERR_IO);
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
    assert_string_equal(err.text, want);
    assert_int_equal(err.line, 0);
    assert_int_equal(sigil_config_load_file(schema, "/tmp", &c, &err), SIGIL_ERR_IO);
    assert_string_equal(err.text, "/tmp: not a regular file");
}

struct small {
    int64_t a;
    char *s;
};

static void
test_schema_checks(void **state)
{
    (void)state;
    struct sigil_config_error err;
    struct small x;

    assert_int_equal(sigil_config_check_schema(schema, &err), 0);

    const struct sigil_config_field dup[] = {
        {.key = "a", .type = SIGIL_CFG_INT64, .offset = offsetof(struct small, a)},
        {.key = "a", .type = SIGIL_CFG_INT64, .offset = offsetof(struct small, a)},
        SIGIL_CONFIG_END};
    assert_int_equal(sigil_config_check_schema(dup, &err), SIGIL_ERR_INVALID);
    assert_string_equal(err.text, "schema: key \"a\": key declared twice");
    /* loading refuses a broken schema too, before reading anything */
    assert_int_equal(sigil_config_load_string(dup, "x", "a: 1\n", 5, &x, &err), SIGIL_ERR_INVALID);

    const struct sigil_config_field both[] = {
        {.key = "a", .type = SIGIL_CFG_INT64, .offset = offsetof(struct small, a)},
        {.key = "a.b", .type = SIGIL_CFG_STRING, .offset = offsetof(struct small, s)},
        SIGIL_CONFIG_END};
    assert_int_equal(sigil_config_check_schema(both, &err), SIGIL_ERR_INVALID);
    assert_string_equal(err.text, "schema: key \"a\": key is both a value and a section");

    const struct sigil_config_field split[] = {
        {.key = "a.x", .type = SIGIL_CFG_INT64, .offset = offsetof(struct small, a)},
        {.key = "b", .type = SIGIL_CFG_STRING, .offset = offsetof(struct small, s)},
        {.key = "a.y", .type = SIGIL_CFG_STRING, .offset = offsetof(struct small, s)},
        SIGIL_CONFIG_END};
    assert_int_equal(sigil_config_check_schema(split, &err), SIGIL_ERR_INVALID);
    assert_string_equal(err.text,
                        "schema: key \"a.y\": keys of one section must be declared together");

    const struct sigil_config_field baddef[] = {
        {.key = "a", .type = SIGIL_CFG_INT64, .offset = 0, .def = "x", .min = 1, .max = 5},
        SIGIL_CONFIG_END};
    assert_int_equal(sigil_config_check_schema(baddef, &err), SIGIL_ERR_INVALID);
    assert_string_equal(err.text,
                        "schema: key \"a\": bad default: expected an integer 1..5, got \"x\"");

    const struct sigil_config_field badkey[] = {
        {.key = "a..b", .type = SIGIL_CFG_INT64, .offset = 0}, SIGIL_CONFIG_END};
    assert_int_equal(sigil_config_check_schema(badkey, &err), SIGIL_ERR_INVALID);

    const struct sigil_config_field noenum[] = {{.key = "e", .type = SIGIL_CFG_ENUM, .offset = 0},
                                                SIGIL_CONFIG_END};
    assert_int_equal(sigil_config_check_schema(noenum, &err), SIGIL_ERR_INVALID);
    assert_string_equal(err.text, "schema: key \"e\": an enum needs choices");

    const struct sigil_config_field reqdef[] = {
        {.key = "a", .type = SIGIL_CFG_INT64, .offset = 0, .required = true, .def = "1"},
        SIGIL_CONFIG_END};
    assert_int_equal(sigil_config_check_schema(reqdef, &err), SIGIL_ERR_INVALID);
}

static void
test_print_doc(void **state)
{
    (void)state;
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);

    assert_non_null(fp);
    assert_int_equal(sigil_config_print_doc(schema, fp), 0);
    fclose(fp);
    assert_string_equal(text, "# Trust domain this server is the root of.\n"
                              "# a string; required.\n"
                              "trust_domain:\n"
                              "\n"
                              "# The node API listener.\n"
                              "server:\n"
                              "  # TCP port of the node API.\n"
                              "  # an integer 1..65535; required.\n"
                              "  bind_port:\n"
                              "  # Mode of the admin socket.\n"
                              "  # an octal file mode like 0640 (at most 0777); default 0660.\n"
                              "  #socket_mode: 0660\n"
                              "  # Largest request body.\n"
                              "  # a size 1KiB..4MiB; default 1MiB.\n"
                              "  #max_body: 1MiB\n"
                              "\n"
                              "  tls:\n"
                              "    # Serve TLS.\n"
                              "    # true or false; default true.\n"
                              "    #enabled: true\n"
                              "\n"
                              "ca:\n"
                              "  # Lifetime of X.509-SVIDs.\n"
                              "  # a duration 1m..1d; default 1h.\n"
                              "  #x509_ttl: 1h\n"
                              "\n"
                              "log:\n"
                              "  # Lowest level logged.\n"
                              "  # one of \"debug\", \"info\", \"warn\", \"error\"; default info.\n"
                              "  #level: info\n"
                              "# Workload attestors to run.\n"
                              "# a list of strings; default [unix, k8s].\n"
                              "#attestors: [unix, k8s]\n"
                              "# Where to keep state.\n"
                              "# a string; optional, unset by default.\n"
                              "#data_dir:\n"
                              "# Extra checks.\n"
                              "# true or false; default false.\n"
                              "#debug: false\n");
    free(text);
}

/* Returns a copy of s with the first "from" replaced by "to" (caller frees). */
static char *
replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    char *out = NULL;

    assert_non_null(p);
    assert_true(asprintf(&out, "%.*s%s%s", (int)(p - s), s, to, p + strlen(from)) > 0);
    return out;
}

/* The printed example, with its required keys filled in, is itself a valid config. */
static void
test_print_doc_loads(void **state)
{
    (void)state;
    char *text = NULL, *a, *b;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    struct sigil_config_error err;
    struct cfg c;

    assert_non_null(fp);
    assert_int_equal(sigil_config_print_doc(schema, fp), 0);
    fclose(fp);
    assert_int_equal(load(text, &c, &err), SIGIL_ERR_INVALID);
    assert_string_equal(err.text,
                        "server.yaml:3: key \"trust_domain\": expected a string, got an empty "
                        "value");
    a = replace(text, "trust_domain:\n", "trust_domain: td\n");
    b = replace(a, "  bind_port:\n", "  bind_port: 443\n");
    assert_int_equal(load(b, &c, &err), 0);
    assert_int_equal(c.bind_port, 443);
    assert_int_equal(c.x509_ttl_ms, 3600000);
    assert_int_equal(c.attestors.n, 2);
    sigil_config_free(schema, &c);
    free(b);
    free(a);
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type),       cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_other_spellings),  cmocka_unit_test(test_bad_integer),
        cmocka_unit_test(test_bad_scalars),      cmocka_unit_test(test_wrong_kind),
        cmocka_unit_test(test_unknown_keys),     cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_missing_required), cmocka_unit_test(test_yaml_errors),
        cmocka_unit_test(test_raw_text_checks),  cmocka_unit_test(test_files),
        cmocka_unit_test(test_schema_checks),    cmocka_unit_test(test_print_doc),
        cmocka_unit_test(test_print_doc_loads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
