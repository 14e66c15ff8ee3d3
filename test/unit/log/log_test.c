/* Unit tests of logging: both line formats, JSON validity (checked by jansson), escaping of
 * injected newlines, control bytes and bad UTF-8, level filtering and concurrent writers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "sigil/err.h"
#include "sigil/log.h"

static int capture_fd = -1;

static int
setup(void **state)
{
    (void)state;
    capture_fd = memfd_create("log", 0);
    if (capture_fd < 0)
        return -1;
    sigil_log_set_fd(capture_fd);
    sigil_log_set_level(SIGIL_LOG_INFO);
    sigil_log_set_format(SIGIL_LOG_HUMAN);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    sigil_log_set_fd(2);
    close(capture_fd);
    return 0;
}

/* Returns everything logged since the last call (caller frees) and empties the capture. */
static char *
captured(void)
{
    off_t end = lseek(capture_fd, 0, SEEK_CUR);
    char *buf = calloc(1, (size_t)end + 1);

    assert_non_null(buf);
    assert_int_equal(pread(capture_fd, buf, (size_t)end, 0), end);
    assert_int_equal(ftruncate(capture_fd, 0), 0);
    assert_int_equal(lseek(capture_fd, 0, SEEK_SET), 0);
    return buf;
}

/* Checks "YYYY-MM-DDTHH:MM:SS.mmmZ " and returns what follows it. */
static const char *
skip_timestamp(const char *line)
{
    const char *shape = "dddd-dd-ddTdd:dd:dd.dddZ ";

    for (size_t i = 0; shape[i] != '\0'; i++) {
        if (shape[i] == 'd')
            assert_true(line[i] >= '0' && line[i] <= '9');
        else
            assert_int_equal(line[i], shape[i]);
    }
    return line + strlen(shape);
}

static json_t *
parse_line(const char *line)
{
    json_error_t e;
    size_t n = strlen(line);
    json_t *j;

    assert_true(n > 0 && line[n - 1] == '\n');
    assert_null(memchr(line, '\n', n - 1)); /* exactly one line */
    j = json_loadb(line, n - 1, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL)
        fail_msg("not JSON: %s in %s", e.text, line);
    return j;
}

static void
test_human(void **state)
{
    (void)state;
    char *out;

    sigil_log_kv(SIGIL_LOG_INFO, "agent", "attested node", "spiffe_id",
                 "spiffe://example.org/agent/gcp", "platform", "gcp", NULL);
    out = captured();
    assert_string_equal(skip_timestamp(out),
                        "INFO  agent: attested node spiffe_id=spiffe://example.org/agent/gcp "
                        "platform=gcp\n");
    free(out);

    sigil_log(SIGIL_LOG_ERROR, "server", "bind %s:%d failed", "0.0.0.0", 8081);
    sigil_log(SIGIL_LOG_WARN, NULL, "no component");
    out = captured();
    char *second = strchr(out, '\n') + 1;
    second[-1] = '\0';
    assert_string_equal(skip_timestamp(out), "ERROR server: bind 0.0.0.0:8081 failed");
    assert_string_equal(skip_timestamp(second), "WARN  no component\n");
    free(out);

    /* values needing it are quoted, empty and NULL values too */
    sigil_log_kv(SIGIL_LOG_INFO, "a", "m", "path", "/a b", "eq", "x=y", "q", "say \"hi\"", "empty",
                 "", "null", NULL, NULL);
    out = captured();
    assert_string_equal(skip_timestamp(out),
                        "INFO  a: m path=\"/a b\" eq=\"x=y\" q=\"say \\\"hi\\\"\" empty=\"\" "
                        "null=\"\"\n");
    free(out);
}

static void
test_human_injection(void **state)
{
    (void)state;
    char *out;

    /* a forged second line in a value or the message stays on this line, escaped */
    sigil_log_kv(SIGIL_LOG_INFO, "broker", "denied\n2026-01-01T00:00:00.000Z INFO  fake", "path",
                 "/x\n2026-01-01T00:00:00.000Z INFO  broker: allowed", NULL);
    out = captured();
    assert_string_equal(skip_timestamp(out),
                        "INFO  broker: denied\\n2026-01-01T00:00:00.000Z INFO  fake "
                        "path=\"/x\\n2026-01-01T00:00:00.000Z INFO  broker: allowed\"\n");
    free(out);

    /* terminal escapes, CR, tab, bad UTF-8, U+2028 and a bidi override */
    sigil_log_kv(SIGIL_LOG_INFO, "x", "m", "v",
                 "\x1b[2J\r\t\xff\xc3\x28\xe2\x80\xa8\xe2\x80\xae"
                 "ok \xc3\xa9",
                 "k e\"y", "1", NULL);
    out = captured();
    assert_string_equal(skip_timestamp(out),
                        "INFO  x: m v=\"\\x1b[2J\\r\\t\\xff\\xc3(\\u{2028}\\u{202e}ok \xc3\xa9\" "
                        "k_e_y=1\n");
    free(out);
}

static void
test_json(void **state)
{
    (void)state;
    json_t *j;
    char *out;
    const char *ts;

    sigil_log_set_format(SIGIL_LOG_JSON);
    sigil_log_kv(SIGIL_LOG_WARN, "agent", "attested node", "spiffe_id",
                 "spiffe://example.org/agent/gcp", NULL);
    out = captured();
    j = parse_line(out);
    assert_int_equal(json_object_size(j), 5);
    ts = json_string_value(json_object_get(j, "ts"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24);
    char tsline[32];
    snprintf(tsline, sizeof tsline, "%s ", ts);
    skip_timestamp(tsline);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(j, "component")), "agent");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "attested node");
    assert_string_equal(json_string_value(json_object_get(j, "spiffe_id")),
                        "spiffe://example.org/agent/gcp");
    /* the field order is fixed: ts, level, component, msg, then the fields */
    assert_int_equal(strncmp(out, "{\"ts\":\"", 7), 0);
    assert_non_null(strstr(out, "\",\"level\":\"warn\",\"component\":\"agent\",\"msg\":\"attested "
                                "node\",\"spiffe_id\":\"spiffe://example.org/agent/gcp\"}\n"));
    json_decref(j);
    free(out);

    sigil_log(SIGIL_LOG_ERROR, NULL, "n=%d", 3);
    out = captured();
    j = parse_line(out);
    assert_int_equal(json_object_size(j), 3);
    assert_null(json_object_get(j, "component"));
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "n=3");
    json_decref(j);
    free(out);
}

static void
test_json_escaping(void **state)
{
    (void)state;
    json_t *j;
    char *out;

    sigil_log_set_format(SIGIL_LOG_JSON);
    sigil_log_kv(SIGIL_LOG_INFO, "x", "line\n\"two\"\\", "v", "\x01\x1f\x7f\t\r\n", "bad",
                 "a\xff\xc0\x80\xed\xa0\x80z", "sep", "\xe2\x80\xa8", "uni",
                 "\xc3\xa9\xf0\x9f\x94\x91", NULL);
    out = captured();
    assert_non_null(strstr(out, "\"msg\":\"line\\n\\\"two\\\"\\\\\""));
    assert_non_null(strstr(out, "\"v\":\"\\u0001\\u001f\\u007f\\t\\r\\n\""));
    j = parse_line(out);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "line\n\"two\"\\");
    assert_string_equal(json_string_value(json_object_get(j, "v")), "\x01\x1f\x7f\t\r\n");
    /* every bad byte (lone 0xff, overlong C0 80, surrogate ED A0 80) becomes U+FFFD */
    assert_string_equal(json_string_value(json_object_get(j, "bad")),
                        "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                        "z");
    assert_string_equal(json_string_value(json_object_get(j, "sep")), "\xe2\x80\xa8");
    assert_non_null(strstr(out, "\"sep\":\"\\u2028\""));
    assert_string_equal(json_string_value(json_object_get(j, "uni")), "\xc3\xa9\xf0\x9f\x94\x91");
    json_decref(j);
    free(out);
}

static void
test_json_key_clashes(void **state)
{
    (void)state;
    json_t *j;
    char *out;

    sigil_log_set_format(SIGIL_LOG_JSON);
    sigil_log_kv(SIGIL_LOG_INFO, "x", "real", "msg", "forged", "level", "debug", "k", "1", "k", "2",
                 "_k", "3", "bad key!", "4", "", "5", NULL);
    out = captured();
    j = parse_line(out); /* duplicates would be rejected here */
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "real");
    assert_string_equal(json_string_value(json_object_get(j, "level")), "info");
    assert_string_equal(json_string_value(json_object_get(j, "_msg")), "forged");
    assert_string_equal(json_string_value(json_object_get(j, "_level")), "debug");
    assert_string_equal(json_string_value(json_object_get(j, "k")), "1");
    assert_string_equal(json_string_value(json_object_get(j, "_k")), "2");
    assert_string_equal(json_string_value(json_object_get(j, "__k")), "3");
    assert_string_equal(json_string_value(json_object_get(j, "bad_key_")), "4");
    assert_string_equal(json_string_value(json_object_get(j, "_")), "5");
    json_decref(j);
    free(out);
}

static void
test_caps(void **state)
{
    (void)state;
    char *big = malloc(10000), *out;
    json_t *j;

    assert_non_null(big);
    /* 4095 'a' then a 2-byte character straddling the 4096-byte cap */
    memset(big, 'a', 9999);
    big[4095] = '\xc3';
    big[4096] = '\xa9';
    big[9999] = '\0';
    sigil_log_set_format(SIGIL_LOG_JSON);
    sigil_log_kv(SIGIL_LOG_INFO, "x", big, "v", big, NULL);
    sigil_log(SIGIL_LOG_INFO, "x", "%s", big);
    out = captured();
    char *second = strchr(out, '\n') + 1;
    char *first = strndup(out, (size_t)(second - out));
    assert_non_null(first);
    j = parse_line(first);
    free(first);
    char *v = strdup(json_string_value(json_object_get(j, "v")));
    assert_non_null(v);
    assert_int_equal(strlen(v), 4095 + 3);
    assert_string_equal(v + 4095, "...");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), v);
    json_decref(j);
    j = parse_line(second);
    assert_string_equal(json_string_value(json_object_get(j, "msg")), v);
    json_decref(j);
    free(v);
    free(out);
    free(big);
}

static void
test_levels(void **state)
{
    (void)state;
    enum sigil_log_level l;
    enum sigil_log_format f;
    const char *why = NULL;
    char *out;

    sigil_log(SIGIL_LOG_DEBUG, "x", "hidden");
    out = captured();
    assert_string_equal(out, "");
    free(out);
    assert_false(sigil_log_enabled(SIGIL_LOG_DEBUG));
    assert_true(sigil_log_enabled(SIGIL_LOG_INFO));
    sigil_log_set_level(SIGIL_LOG_DEBUG);
    sigil_log(SIGIL_LOG_DEBUG, "x", "shown");
    sigil_log_set_level(SIGIL_LOG_ERROR);
    sigil_log_kv(SIGIL_LOG_WARN, "x", "hidden", NULL);
    out = captured();
    assert_string_equal(skip_timestamp(out), "DEBUG x: shown\n");
    free(out);

    assert_int_equal(sigil_log_level_parse("warn", &l, &why), 0);
    assert_int_equal(l, SIGIL_LOG_WARN);
    assert_int_equal(sigil_log_level_parse("debug", &l, &why), 0);
    assert_int_equal(l, SIGIL_LOG_DEBUG);
    assert_int_equal(sigil_log_level_parse("WARN", &l, &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "log level: expected debug, info, warn or error");
    assert_int_equal(sigil_log_level_parse("warning", &l, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_log_format_parse("json", &f, &why), 0);
    assert_int_equal(f, SIGIL_LOG_JSON);
    assert_int_equal(sigil_log_format_parse("human", &f, &why), 0);
    assert_int_equal(f, SIGIL_LOG_HUMAN);
    assert_int_equal(sigil_log_format_parse("text", &f, &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "log format: expected human or json");
    assert_string_equal(sigil_log_level_names[SIGIL_LOG_ERROR], "error");
    assert_null(sigil_log_level_names[4]);
}

#define THREADS 8
#define LINES 500

static void *
writer(void *arg)
{
    char id[16];

    snprintf(id, sizeof id, "%d", (int)(intptr_t)arg);
    for (int i = 0; i < LINES; i++)
        sigil_log_kv(SIGIL_LOG_INFO, "worker", "a line long enough to be worth interleaving",
                     "thread", id, "pad",
                     "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                     NULL);
    return NULL;
}

struct drain {
    int fd;
    char *buf;
    size_t len, cap;
};

/* Reads the pipe to its end, so writers never block on a full pipe. */
static void *
drain(void *arg)
{
    struct drain *d = arg;
    ssize_t n;

    for (;;) {
        if (d->cap - d->len < 4096) {
            d->cap = d->cap ? d->cap * 2 : 65536;
            d->buf = realloc(d->buf, d->cap + 1);
            if (d->buf == NULL)
                abort();
        }
        n = read(d->fd, d->buf + d->len, d->cap - d->len);
        if (n <= 0)
            break;
        d->len += (size_t)n;
    }
    d->buf[d->len] = '\0';
    return NULL;
}

/* Checks that buf holds THREADS * LINES whole JSON lines, LINES from each thread. */
static void
check_lines(const char *buf)
{
    int per[THREADS] = {0}, lines = 0;
    const char *p, *nl;

    for (p = buf; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        json_error_t e;
        json_t *j = json_loadb(p, (size_t)(nl - p), JSON_REJECT_DUPLICATES, &e);

        assert_non_null(j);
        per[atoi(json_string_value(json_object_get(j, "thread")))]++;
        json_decref(j);
        lines++;
    }
    assert_string_equal(p, "");
    assert_int_equal(lines, THREADS * LINES);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(per[i], LINES);
}

/* Many threads log at once into a pipe (what stderr under systemd or a container is):
 * each line arrives whole, none lost or mixed with another. */
static void
test_threads(void **state)
{
    (void)state;
    pthread_t t[THREADS], reader;
    struct drain d = {0};
    char *out;
    int fds[2];

    assert_int_equal(pipe(fds), 0);
    d.fd = fds[0];
    assert_int_equal(pthread_create(&reader, NULL, drain, &d), 0);
    sigil_log_set_fd(fds[1]);
    sigil_log_set_format(SIGIL_LOG_JSON);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    sigil_log_set_fd(capture_fd);
    close(fds[1]);
    pthread_join(reader, NULL);
    close(fds[0]);
    check_lines(d.buf);
    free(d.buf);

    /* and into a file opened without O_APPEND, where only the lock keeps lines apart */
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    out = captured();
    check_lines(out);
    free(out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_human, setup, teardown),
        cmocka_unit_test_setup_teardown(test_human_injection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_key_clashes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
