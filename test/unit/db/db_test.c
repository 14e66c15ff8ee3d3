/* Unit tests of lib/db's pure parts (value parsers, SQLSTATE mapping, message scrubbing,
 * conninfo description) and of the pool and listener lifecycles against a database that is
 * not there (no server needed: the integration test covers a real one). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigil/db.h"
#include "sigil/err.h"

/* A socket directory that cannot exist: every connection attempt fails at once. */
#define NOWHERE "host=/nonexistent/sigil-db-test user=sigil dbname=sigil"

static void
test_parse_int64(void **state)
{
    int64_t v = 1;

    (void)state;
    assert_int_equal(sigil_db_parse_int64("0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(sigil_db_parse_int64("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(sigil_db_parse_int64("-7", &v), 0);
    assert_int_equal(v, -7);
    assert_int_equal(sigil_db_parse_int64("9223372036854775807", &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(sigil_db_parse_int64("-9223372036854775808", &v), 0);
    assert_true(v == INT64_MIN);
}

static void
test_parse_int64_rejects(void **state)
{
    static const char *const bad[] = {"",   "-",  "+1",   " 1",  "1 ",  "01",
                                      "-0", "1a", "0x10", "1e3", "--1", "１"};
    int64_t v = 5;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sigil_db_parse_int64(bad[i], &v), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_db_parse_int64(NULL, &v), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_db_parse_int64("9223372036854775808", &v), SIGIL_ERR_RANGE);
    assert_int_equal(sigil_db_parse_int64("-9223372036854775809", &v), SIGIL_ERR_RANGE);
    assert_int_equal(sigil_db_parse_int64("99999999999999999999999", &v), SIGIL_ERR_RANGE);
    assert_int_equal(v, 5); /* untouched on failure */
}

static void
test_parse_bytea(void **state)
{
    uint8_t *p = NULL;
    size_t n = 9;

    (void)state;
    assert_int_equal(sigil_db_parse_bytea("\\x", &p, &n), 0);
    assert_non_null(p);
    assert_int_equal(n, 0);
    free(p);
    assert_int_equal(sigil_db_parse_bytea("\\x00ff5C78", &p, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(p, "\x00\xff\x5c\x78", 4);
    free(p);
}

static void
test_parse_bytea_rejects(void **state)
{
    /* the escape output format and every malformed hex are refused */
    static const char *const bad[] = {"",       "00ff",   "x00",   "\\X00", "\\x0",   "\\xzz",
                                      "\\x00 ", " \\x00", "\\000", "\\x0g", "\\\\x00"};
    uint8_t *p = (uint8_t *)"sentinel";
    size_t n = 9;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sigil_db_parse_bytea(bad[i], &p, &n), SIGIL_ERR_INVALID);
        assert_null(p);
        assert_int_equal(n, 0);
    }
    assert_int_equal(sigil_db_parse_bytea(NULL, &p, &n), SIGIL_ERR_INVALID);
}

static void
test_sqlstate(void **state)
{
    (void)state;
    assert_int_equal(sigil_db_sqlstate_err("23505"), SIGIL_ERR_EXISTS);
    assert_int_equal(sigil_db_sqlstate_err("23503"), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_db_sqlstate_err("23514"), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_db_sqlstate_err("22P02"), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_db_sqlstate_err("P0001"), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_db_sqlstate_err("40001"), SIGIL_ERR_CANCELLED);
    assert_int_equal(sigil_db_sqlstate_err("40P01"), SIGIL_ERR_CANCELLED);
    assert_int_equal(sigil_db_sqlstate_err("57014"), SIGIL_ERR_CANCELLED);
    assert_int_equal(sigil_db_sqlstate_err("55P03"), SIGIL_ERR_TIMEOUT);
    assert_int_equal(sigil_db_sqlstate_err("42501"), SIGIL_ERR_DENIED);
    assert_int_equal(sigil_db_sqlstate_err("28P01"), SIGIL_ERR_DENIED);
    assert_int_equal(sigil_db_sqlstate_err("42601"), SIGIL_ERR_INTERNAL);
    assert_int_equal(sigil_db_sqlstate_err("42P01"), SIGIL_ERR_INTERNAL);
    assert_int_equal(sigil_db_sqlstate_err("25P02"), SIGIL_ERR_STATE);
    assert_int_equal(sigil_db_sqlstate_err("0A000"), SIGIL_ERR_UNSUPPORTED);
    assert_int_equal(sigil_db_sqlstate_err("08006"), SIGIL_ERR_IO);
    assert_int_equal(sigil_db_sqlstate_err("57P01"), SIGIL_ERR_IO);
    assert_int_equal(sigil_db_sqlstate_err("XX000"), SIGIL_ERR_IO);
    /* malformed codes never map to success or to a specific meaning */
    assert_int_equal(sigil_db_sqlstate_err("2350"), SIGIL_ERR_IO);
    assert_int_equal(sigil_db_sqlstate_err("235050"), SIGIL_ERR_IO);
    assert_int_equal(sigil_db_sqlstate_err("23a05"), SIGIL_ERR_IO);
    assert_int_equal(sigil_db_sqlstate_err(""), SIGIL_ERR_IO);
    assert_int_equal(sigil_db_sqlstate_err(NULL), SIGIL_ERR_IO);

    assert_true(sigil_db_sqlstate_retryable("40001"));
    assert_true(sigil_db_sqlstate_retryable("40P01"));
    assert_false(sigil_db_sqlstate_retryable("40002"));
    assert_false(sigil_db_sqlstate_retryable("23505"));
    assert_false(sigil_db_sqlstate_retryable("4000"));
    assert_false(sigil_db_sqlstate_retryable(""));
    assert_false(sigil_db_sqlstate_retryable(NULL));
}

static void
test_channel(void **state)
{
    char name[80];

    (void)state;
    assert_true(sigil_db_channel_valid("sigil_events"));
    assert_true(sigil_db_channel_valid("_x9"));
    memset(name, 'a', 63);
    name[63] = '\0';
    assert_true(sigil_db_channel_valid(name));
    name[63] = 'a';
    name[64] = '\0';
    assert_false(sigil_db_channel_valid(name));
    assert_false(sigil_db_channel_valid(""));
    assert_false(sigil_db_channel_valid(NULL));
    assert_false(sigil_db_channel_valid("Sigil"));
    assert_false(sigil_db_channel_valid("9abc"));
    assert_false(sigil_db_channel_valid("a-b"));
    assert_false(sigil_db_channel_valid("a b"));
    assert_false(sigil_db_channel_valid("a\"; DROP TABLE x; --"));
    assert_false(sigil_db_channel_valid("caf\xc3\xa9"));
}

static void
test_message_clean(void **state)
{
    char out[64];

    (void)state;
    sigil_db_message_clean(out, sizeof out, "  a\n\tb\r\n  c\x7f d \n", NULL);
    assert_string_equal(out, "a b c d");
    sigil_db_message_clean(out, sizeof out, "pw=hunter2 again hunter2!", "hunter2");
    assert_string_equal(out, "pw=*** again ***!");
    sigil_db_message_clean(out, sizeof out, "nothing secret", "");
    assert_string_equal(out, "nothing secret");
    sigil_db_message_clean(out, sizeof out, NULL, "x");
    assert_string_equal(out, "");
    /* truncated to the buffer, never in the middle of a UTF-8 character */
    sigil_db_message_clean(out, 6, "abcdefgh", NULL);
    assert_string_equal(out, "abcde");
    sigil_db_message_clean(out, 6, "abcd\xc3\xa9xyz", NULL);
    assert_string_equal(out, "abcd");
    sigil_db_message_clean(out, 6, "abc\xc3\xa9xyz", NULL);
    assert_string_equal(out, "abc\xc3\xa9");
    sigil_db_message_clean(out, 6, "ab\xe2\x82\xac\xe2\x82\xac", NULL);
    assert_string_equal(out, "ab\xe2\x82\xac");
    /* a secret that would only partly fit is replaced, never cut into */
    sigil_db_message_clean(out, 8, "abcdhunter2", "hunter2");
    assert_string_equal(out, "abcd***");
    sigil_db_message_clean(out, 1, "abc", NULL);
    assert_string_equal(out, "");
}

static void
test_conninfo_describe(void **state)
{
    char *s;

    (void)state;
    s = sigil_db_conninfo_describe("host=/run/pg dbname=sigil user=sigil password=sekrit");
    assert_non_null(s);
    assert_string_equal(s, "host=/run/pg dbname=sigil user=sigil");
    free(s);
    s = sigil_db_conninfo_describe("postgresql://u:sekrit@db.example:5433/idp?sslmode=require");
    assert_non_null(s);
    assert_string_equal(s, "host=db.example port=5433 dbname=idp user=u sslmode=require");
    free(s);
    s = sigil_db_conninfo_describe("dbname='my db' user='o\\'brien'");
    assert_non_null(s);
    assert_string_equal(s, "dbname='my db' user='o\\'brien'");
    free(s);
    /* a control byte cannot forge a log line */
    s = sigil_db_conninfo_describe("dbname='a\nb\x01"
                                   "c' password=sekrit");
    assert_non_null(s);
    assert_string_equal(s, "dbname=a?b?c");
    free(s);
    s = sigil_db_conninfo_describe("password=sekrit");
    assert_non_null(s);
    assert_string_equal(s, "");
    free(s);
    assert_null(sigil_db_conninfo_describe("password=sekrit junk"));
    assert_null(sigil_db_conninfo_describe("nosuchkey=1"));
    assert_null(sigil_db_conninfo_describe(NULL));
}

static void
test_res_null(void **state)
{
    int64_t v;
    bool b;
    uint8_t *p;
    size_t n;

    (void)state;
    assert_int_equal(sigil_db_res_rows(NULL), 0);
    assert_int_equal(sigil_db_res_cols(NULL), 0);
    assert_int_equal(sigil_db_res_col(NULL, "x"), -1);
    assert_true(sigil_db_res_is_null(NULL, 0, 0));
    assert_null(sigil_db_res_text(NULL, 0, 0));
    assert_int_equal(sigil_db_res_int64(NULL, 0, 0, &v), SIGIL_ERR_NOTFOUND);
    assert_int_equal(sigil_db_res_bool(NULL, 0, 0, &b), SIGIL_ERR_NOTFOUND);
    assert_int_equal(sigil_db_res_bytea(NULL, 0, 0, &p, &n), SIGIL_ERR_NOTFOUND);
    assert_int_equal(sigil_db_res_affected(NULL), -1);
    sigil_db_res_free(NULL);
}

static void
test_connect_errors(void **state)
{
    struct sigil_db_conn *c = (struct sigil_db_conn *)1;
    struct sigil_db_error err;

    (void)state;
    assert_int_equal(sigil_db_connect("password=sekrit junk", &c, &err), SIGIL_ERR_INVALID);
    assert_null(c);
    assert_null(strstr(err.message, "sekrit"));
    assert_non_null(strstr(err.message, "does not parse"));
    assert_int_equal(sigil_db_connect(NOWHERE " password=sekrit", &c, &err), SIGIL_ERR_IO);
    assert_null(c);
    assert_string_equal(err.sqlstate, "");
    assert_int_equal(strncmp(err.message, "database unavailable: ", 22), 0);
    assert_null(strstr(err.message, "sekrit"));
    assert_int_equal(sigil_db_exec(NULL, "SELECT 1", NULL, 0, NULL), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_db_exec_script(NULL, "SELECT 1"), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_db_exec_batch(NULL, NULL, 0, NULL), SIGIL_ERR_INVALID);
    assert_false(sigil_db_in_transaction(NULL));
    sigil_db_disconnect(NULL);
}

static void
on_closed(void *arg)
{
    (*(int *)arg)++;
}

struct box {
    int status;
    int calls;
    struct sigil_db_error err;
};

static int
never_runs(struct sigil_db_conn *c, void *arg)
{
    (void)c;
    (void)arg;
    fail_msg("work ran without a connection");
    return 0;
}

static void
box_done(void *arg, int status)
{
    struct box *b = arg;

    b->status = status;
    b->calls++;
}

static void
test_open_args(void **state)
{
    struct sigil_db *db = (struct sigil_db *)1;
    uv_loop_t loop;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(sigil_db_open(NULL, NOWHERE, 2, &db), SIGIL_ERR_INVALID);
    assert_null(db);
    assert_int_equal(sigil_db_open(&loop, NULL, 2, &db), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_db_open(&loop, NOWHERE, 0, &db), SIGIL_ERR_RANGE);
    assert_int_equal(sigil_db_open(&loop, NOWHERE, SIGIL_DB_POOL_MAX + 1, &db), SIGIL_ERR_RANGE);
    assert_int_equal(sigil_db_open(&loop, "password=x junk", 2, &db), SIGIL_ERR_INVALID);
    assert_null(db);
    assert_int_equal(sigil_db_submit(NULL, never_runs, box_done, NULL, NULL), SIGIL_ERR_INVALID);
    sigil_db_close(NULL, NULL, NULL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The pool against nothing: the work never runs, done says why, close releases everything. */
static void
test_pool_down(void **state)
{
    struct sigil_db *db = NULL;
    struct box a = {0}, b = {0}, b2 = {0}, c = {0};
    int closed = 0;
    uv_loop_t loop;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(sigil_db_open(&loop, NOWHERE " password=sekrit", 1, &db), 0);
    assert_int_equal(sigil_db_submit(db, never_runs, box_done, &a, &a.err), 0);
    assert_int_equal(sigil_db_ping(db, &b.err, box_done, &b), 0);
    assert_int_equal(sigil_db_ping(db, &b2.err, box_done, &b2), 0);
    while (b2.calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    /* on a loaded machine the second may come after the first backoff (100 ms); then the
     * third falls into the second (200 ms) */
    if (strstr(b.err.message, "next connection attempt in") == NULL)
        b = b2;
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.status, SIGIL_ERR_IO);
    assert_int_equal(strncmp(a.err.message, "database unavailable: ", 22), 0);
    assert_null(strstr(a.err.message, "sekrit"));
    /* the second attempt falls in the backoff and says when the next one is */
    assert_int_equal(b.status, SIGIL_ERR_IO);
    assert_non_null(strstr(b.err.message, "next connection attempt in"));

    sigil_db_close(db, on_closed, &closed);
    sigil_db_close(db, on_closed, &closed); /* a second close is a no-op */
    assert_int_equal(sigil_db_submit(db, never_runs, box_done, &c, NULL), SIGIL_ERR_STATE);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(closed, 1);
    assert_int_equal(c.calls, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

struct listen_box {
    int ready, notify, lost;
    char why[SIGIL_DB_ERRMSG_MAX];
    struct sigil_db_listener *l;
    bool unlisten_on_lost;
};

static void
on_event(void *arg, enum sigil_db_listen_event ev, const char *payload)
{
    struct listen_box *b = arg;

    switch (ev) {
    case SIGIL_DB_LISTEN_READY:
        b->ready++;
        break;
    case SIGIL_DB_LISTEN_NOTIFY:
        b->notify++;
        break;
    case SIGIL_DB_LISTEN_LOST:
        b->lost++;
        strncpy(b->why, payload, sizeof b->why - 1);
        if (b->unlisten_on_lost)
            sigil_db_unlisten(b->l);
        break;
    }
}

static void
on_stop_timer(uv_timer_t *t)
{
    sigil_db_close(t->data, NULL, NULL);
    uv_close((uv_handle_t *)t, NULL);
}

/* A listener that cannot connect reports LOST once, keeps retrying off the loop, and is
 * released by unlisten (from its own callback) or by close. */
static void
test_listen_down(void **state)
{
    struct listen_box one = {.unlisten_on_lost = true}, two = {0};
    struct sigil_db *db = NULL;
    struct sigil_db_listener *l = NULL;
    uv_timer_t timer;
    uv_loop_t loop;

    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(sigil_db_open(&loop, NOWHERE " password=sekrit", 1, &db), 0);
    assert_int_equal(sigil_db_listen(db, "bad channel", on_event, &one, &l), SIGIL_ERR_INVALID);
    assert_null(l);
    assert_int_equal(sigil_db_listen(db, "sigil_events", on_event, &one, &one.l), 0);
    assert_int_equal(sigil_db_listen(db, "sigil_other", on_event, &two, &two.l), 0);
    /* long enough for several reconnect attempts (100, 200, 400 ms) */
    uv_timer_init(&loop, &timer);
    timer.data = db;
    uv_timer_start(&timer, on_stop_timer, 900, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(one.lost, 1);
    assert_int_equal(two.lost, 1);
    assert_int_equal(one.ready + one.notify + two.ready + two.notify, 0);
    assert_non_null(strstr(two.why, "/nonexistent/sigil-db-test"));
    assert_null(strstr(two.why, "sekrit"));
    assert_int_equal(uv_loop_close(&loop), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_int64),   cmocka_unit_test(test_parse_int64_rejects),
        cmocka_unit_test(test_parse_bytea),   cmocka_unit_test(test_parse_bytea_rejects),
        cmocka_unit_test(test_sqlstate),      cmocka_unit_test(test_channel),
        cmocka_unit_test(test_message_clean), cmocka_unit_test(test_conninfo_describe),
        cmocka_unit_test(test_res_null),      cmocka_unit_test(test_connect_errors),
        cmocka_unit_test(test_open_args),     cmocka_unit_test(test_pool_down),
        cmocka_unit_test(test_listen_down),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
