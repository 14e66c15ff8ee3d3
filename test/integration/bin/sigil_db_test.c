/* sigil_db_test CONNINFO SCENARIO: drives lib/db against a real PostgreSQL for
 * test_db.sh. Scenarios: pool (concurrent work, parameters, rows, errors, close), retry
 * (serialization failures and deadlocks retried), down (clear errors, no secrets), listen
 * (NOTIFY delivery; prints "restart-now" and expects the server to be restarted, then must
 * report the gap and receive again). Prints TAP-like lines; exit 0 only if all held. */
#include "sigil/db.h"
#include "sigil/err.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;
static pthread_t loop_thread;

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
check(bool ok, const char *fmt, ...)
{
    va_list ap;

    printf("%s - ", ok ? "ok" : "not ok");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!ok)
        failures++;
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
on_closed(void *arg)
{
    *(bool *)arg = true;
}

/* Runs one statement on a standalone connection (setup and checks outside the pool). */
static bool
direct(const char *conninfo, const char *sql, int64_t *value)
{
    struct sigil_db_conn *c = NULL;
    struct sigil_db_res *res = NULL;
    struct sigil_db_error err;
    bool ok = false;

    if (sigil_db_connect(conninfo, &c, &err) != 0) {
        printf("# connect: %s\n", err.message);
        return false;
    }
    if (sigil_db_exec(c, sql, NULL, 0, &res) != 0)
        printf("# %s: %s\n", sql, sigil_db_conn_error(c)->message);
    else
        ok = value == NULL || sigil_db_res_int64(res, 0, 0, value) == 0;
    sigil_db_res_free(res);
    sigil_db_disconnect(c);
    return ok;
}

/* ---- pool ---- */

#define NJOBS 32

struct qjob {
    int n;
    int64_t doubled;
    int64_t pid;
    pthread_t thread;
    bool done_on_loop;
    int status;
    int *left;
};

static int
q_work(struct sigil_db_conn *c, void *arg)
{
    struct qjob *q = arg;
    struct sigil_db_res *res = NULL;
    char n[16];
    int r;

    q->thread = pthread_self();
    snprintf(n, sizeof n, "%d", q->n);
    if ((r = sigil_db_exec(c, "SELECT pg_backend_pid(), $1::int * 2, pg_sleep(0.1)",
                           (struct sigil_db_param[]){SIGIL_DB_TEXT(n)}, 1, &res)) == 0 &&
        ((r = sigil_db_res_int64(res, 0, 0, &q->pid)) == 0))
        r = sigil_db_res_int64(res, 0, 1, &q->doubled);
    sigil_db_res_free(res);
    return r;
}

static void
q_done(void *arg, int status)
{
    struct qjob *q = arg;

    q->status = status;
    q->done_on_loop = pthread_equal(pthread_self(), loop_thread);
    (*q->left)--;
}

/* Values in and out: binary bytea, text, NULL, bool, affected rows, and mapped errors. */
struct values {
    int status;
    bool finished;
    char log[512];
};

static int
values_work(struct sigil_db_conn *c, void *arg)
{
    static const uint8_t blob[] = {0x00, 0xff, 0x10, 0x5c, 0x78};
    struct values *v = arg;
    struct sigil_db_res *res = NULL;
    const struct sigil_db_error *e = sigil_db_conn_error(c);
    uint8_t *out = NULL;
    size_t len = 0;
    bool b = false;
    int64_t n = 0;
    int r, fails = 0;

#define EXPECT(cond, what)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fails++;                                                                               \
            snprintf(v->log + strlen(v->log), sizeof v->log - strlen(v->log), "[%s: %s] ", what,   \
                     e->message);                                                                  \
        }                                                                                          \
    } while (0)

    r = sigil_db_exec(c,
                      "CREATE TEMP TABLE vt (k text PRIMARY KEY, b bytea, flag boolean, "
                      "note text)",
                      NULL, 0, NULL);
    EXPECT(r == 0, "create");
    r = sigil_db_exec(c, "INSERT INTO vt VALUES ($1, $2, $3, $4)",
                      (struct sigil_db_param[]){SIGIL_DB_TEXT("a"),
                                                SIGIL_DB_BINARY(blob, sizeof blob),
                                                SIGIL_DB_TEXT("true"), SIGIL_DB_NULL},
                      4, &res);
    EXPECT(r == 0 && sigil_db_res_affected(res) == 1, "insert");
    sigil_db_res_free(res);
    res = NULL;
    r = sigil_db_exec(c, "SELECT b, flag, note, k FROM vt WHERE k = $1",
                      (struct sigil_db_param[]){SIGIL_DB_TEXT("a")}, 1, &res);
    EXPECT(r == 0 && sigil_db_res_rows(res) == 1 && sigil_db_res_cols(res) == 4, "select");
    EXPECT(sigil_db_res_bytea(res, 0, 0, &out, &len) == 0 && len == sizeof blob &&
               memcmp(out, blob, len) == 0,
           "bytea round trip");
    EXPECT(sigil_db_res_bool(res, 0, 1, &b) == 0 && b, "bool");
    EXPECT(sigil_db_res_is_null(res, 0, 2) && sigil_db_res_text(res, 0, 2) == NULL, "null");
    EXPECT(sigil_db_res_col(res, "k") == 3 && sigil_db_res_col(res, "K") == -1, "column names");
    EXPECT(sigil_db_res_int64(res, 0, 3, &n) == SIGIL_ERR_INVALID, "text is not an integer");
    EXPECT(sigil_db_res_text(res, 1, 0) == NULL && sigil_db_res_is_null(res, 0, 9), "bounds");
    free(out);
    sigil_db_res_free(res);
    res = NULL;

    r = sigil_db_exec(c, "INSERT INTO vt (k) VALUES ($1)",
                      (struct sigil_db_param[]){SIGIL_DB_TEXT("a")}, 1, NULL);
    EXPECT(r == SIGIL_ERR_EXISTS && strcmp(e->sqlstate, "23505") == 0 &&
               strstr(e->message, "vt_pkey") != NULL && strstr(e->message, "(a)") == NULL,
           "unique violation: EXISTS, constraint named, no DETAIL");
    r = sigil_db_exec(c, "SELEC 1", NULL, 0, NULL);
    EXPECT(r == SIGIL_ERR_INTERNAL && strcmp(e->sqlstate, "42601") == 0, "syntax error");
    r = sigil_db_exec(c, "SELECT $1::int", (struct sigil_db_param[]){SIGIL_DB_TEXT("x")}, 1, NULL);
    EXPECT(r == SIGIL_ERR_INVALID && strcmp(e->sqlstate, "22P02") == 0, "bad input");
    /* one statement only: a parameter or a second statement cannot ride along */
    r = sigil_db_exec(c, "SELECT 1; SELECT 2", NULL, 0, NULL);
    EXPECT(r != 0, "two statements refused by exec");
    r = sigil_db_exec_script(c, "SELECT 1; SELECT 2");
    EXPECT(r == 0, "two statements run by exec_script");
    /* the worker's session serves other work next */
    r = sigil_db_exec(c, "DROP TABLE vt", NULL, 0, NULL);
    EXPECT(r == 0, "drop");
    v->status = fails;
    return 0;
#undef EXPECT
}

static void
values_done(void *arg, int status)
{
    struct values *v = arg;

    if (status != 0)
        v->status = -1000 + status;
    v->finished = true;
}

/* A work that forgets its transaction: rolled back and reported, the worker stays usable. */
static int
leak_tx_work(struct sigil_db_conn *c, void *arg)
{
    (void)arg;
    return sigil_db_exec(c, "BEGIN", NULL, 0, NULL);
}

struct status_box {
    int status;
    int order;
    int *counter;
    bool flag;
    struct sigil_db_error err;
};

static int
in_tx_work(struct sigil_db_conn *c, void *arg)
{
    struct status_box *b = arg;

    b->flag = sigil_db_in_transaction(c);
    return 0;
}

static void
box_done(void *arg, int status)
{
    struct status_box *b = arg;

    b->status = status;
    b->order = ++*b->counter;
}

static int
sleep_work(struct sigil_db_conn *c, void *arg)
{
    (void)arg;
    return sigil_db_exec(c, "SELECT pg_sleep(0.3)", NULL, 0, NULL);
}

/* Pipeline batches: 10,000 inserts in one round trip inside a transaction; a failure in the
 * middle names the statement and leaves nothing behind; a refused statement sends nothing. */
#define NBATCH 10000

struct batch {
    int status;
    bool finished;
    char log[512];
    double took;
};

static int
batch_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    static char keys[NBATCH][12];
    struct sigil_db_stmt *st = NULL;
    struct sigil_db_param *p = NULL;
    size_t failed = 99;
    int r = SIGIL_ERR_NOMEM;

    (void)arg;
    (void)attempt;
    if ((st = calloc(NBATCH, sizeof *st)) == NULL || (p = calloc(NBATCH, sizeof *p)) == NULL)
        goto out;
    for (int i = 0; i < NBATCH; i++) {
        snprintf(keys[i], sizeof keys[i], "%d", i + 1);
        p[i] = SIGIL_DB_TEXT(keys[i]);
        st[i] = (struct sigil_db_stmt){"INSERT INTO b (k, note) VALUES ($1, 'batch')", &p[i], 1};
    }
    r = sigil_db_exec_batch(c, st, NBATCH, &failed);
out:
    free(st);
    free(p);
    return r;
}

static int
batch_work(struct sigil_db_conn *c, void *arg)
{
    struct batch *b = arg;
    const struct sigil_db_error *e = sigil_db_conn_error(c);
    struct sigil_db_res *res = NULL;
    size_t failed = 99;
    int64_t n = -1;
    int r, fails = 0;
    double t0 = now_s();

#define EXPECT(cond, what)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fails++;                                                                               \
            snprintf(b->log + strlen(b->log), sizeof b->log - strlen(b->log), "[%s: %s] ", what,   \
                     e->message);                                                                  \
        }                                                                                          \
    } while (0)

    r = sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, 3, batch_body, b);
    b->took = now_s() - t0;
    EXPECT(r == 0, "batch of 10000 in a transaction");
    r = sigil_db_exec(c, "SELECT count(*) FROM b", NULL, 0, &res);
    EXPECT(r == 0 && sigil_db_res_int64(res, 0, 0, &n) == 0 && n == NBATCH, "10000 rows");
    sigil_db_res_free(res);
    res = NULL;

    /* outside a transaction the batch is one implicit transaction: all or nothing */
    struct sigil_db_stmt bad[] = {
        {"INSERT INTO b (k) VALUES (20001)", NULL, 0},
        {"INSERT INTO b (k) VALUES (20002)", NULL, 0},
        {"INSERT INTO b (k) VALUES (20001)", NULL, 0},
        {"INSERT INTO b (k) VALUES (20003)", NULL, 0},
    };
    r = sigil_db_exec_batch(c, bad, 4, &failed);
    EXPECT(r == SIGIL_ERR_EXISTS && failed == 2 && strcmp(e->sqlstate, "23505") == 0,
           "the duplicate (statement 2) fails the batch");
    r = sigil_db_exec(c, "SELECT count(*) FROM b WHERE k > 20000", NULL, 0, &res);
    EXPECT(r == 0 && sigil_db_res_int64(res, 0, 0, &n) == 0 && n == 0,
           "nothing of the failed batch stayed");
    sigil_db_res_free(res);
    res = NULL;

    struct sigil_db_stmt refused[] = {
        {"INSERT INTO b (k) VALUES (30001)", NULL, 0},
        {NULL, NULL, 0},
    };
    failed = 99;
    r = sigil_db_exec_batch(c, refused, 2, &failed);
    EXPECT(r == SIGIL_ERR_INVALID && failed == 1, "a statement without SQL is refused");
    r = sigil_db_exec(c, "SELECT count(*) FROM b WHERE k > 30000", NULL, 0, &res);
    EXPECT(r == 0 && sigil_db_res_int64(res, 0, 0, &n) == 0 && n == 0,
           "and nothing of that batch was sent");
    sigil_db_res_free(res);
    EXPECT(sigil_db_exec_batch(c, NULL, 0, NULL) == 0, "an empty batch is nothing");
    b->status = fails;
    return 0;
#undef EXPECT
}

static void
batch_done(void *arg, int status)
{
    struct batch *b = arg;

    if (status != 0)
        b->status = -1000 + status;
    b->finished = true;
}

static int
scenario_pool(uv_loop_t *loop, const char *conninfo)
{
    struct qjob q[NJOBS];
    struct sigil_db *db = NULL;
    int left = NJOBS, r;
    bool closed = false;
    double t0;

    r = sigil_db_open(loop, conninfo, 4, &db);
    check(r == 0, "pool of 4 opened (%s)", sigil_strerror(r));
    if (r != 0)
        return 1;
    t0 = now_s();
    for (int i = 0; i < NJOBS; i++) {
        q[i] = (struct qjob){.n = i, .left = &left, .status = 1};
        if (sigil_db_submit(db, q_work, q_done, &q[i], NULL) != 0)
            left--;
    }
    while (left > 0)
        uv_run(loop, UV_RUN_ONCE);
    double took = now_s() - t0;
    int ok = 0, on_loop = 0, npids = 0, nthreads = 0;
    int64_t pids[NJOBS];
    pthread_t threads[NJOBS];
    for (int i = 0; i < NJOBS; i++) {
        bool seen = false;
        ok += q[i].status == 0 && q[i].doubled == 2 * i;
        on_loop += q[i].done_on_loop;
        for (int k = 0; k < npids; k++)
            seen = seen || pids[k] == q[i].pid;
        if (!seen)
            pids[npids++] = q[i].pid;
        seen = false;
        for (int k = 0; k < nthreads; k++)
            seen = seen || pthread_equal(threads[k], q[i].thread);
        if (!seen)
            threads[nthreads++] = q[i].thread;
    }
    check(ok == NJOBS, "%d/%d concurrent queries returned their own parameter doubled", ok, NJOBS);
    check(on_loop == NJOBS, "every done callback ran on the loop thread (%d)", on_loop);
    check(npids == 4 && nthreads == 4, "4 workers, 4 backends, one connection each (%d, %d)",
          nthreads, npids);
    /* 32 x 100 ms: 3.2 s one at a time, 0.8 s on four workers */
    check(took < 2.6, "work ran in parallel: %.2f s for %d x 100 ms", took, NJOBS);

    struct values v = {0};
    r = sigil_db_submit(db, values_work, values_done, &v, NULL);
    while (r == 0 && !v.finished)
        uv_run(loop, UV_RUN_ONCE);
    check(r == 0 && v.status == 0, "parameters, rows and error mapping (%d) %s", v.status, v.log);

    struct batch bt = {0};
    if (!direct(conninfo, "DROP TABLE IF EXISTS b", NULL) ||
        !direct(conninfo, "CREATE TABLE b (k int PRIMARY KEY, note text)", NULL))
        check(false, "batch setup");
    r = sigil_db_submit(db, batch_work, batch_done, &bt, NULL);
    while (r == 0 && !bt.finished)
        uv_run(loop, UV_RUN_ONCE);
    check(r == 0 && bt.status == 0, "pipeline batches (10000 inserts in %.2f s) %s", bt.took,
          bt.log);
    direct(conninfo, "DROP TABLE b", NULL);

    int counter = 0;
    struct status_box b = {.status = 1, .counter = &counter};
    sigil_db_ping(db, &b.err, box_done, &b);
    while (b.order == 0)
        uv_run(loop, UV_RUN_ONCE);
    check(b.status == 0, "ping answers while the database is up");

    /* a pool of one: the leak and the check after it must share the worker */
    struct sigil_db *one = NULL;
    struct status_box leak = {.status = 1, .counter = &counter};
    struct status_box after = {.status = 1, .counter = &counter, .flag = true};
    r = sigil_db_open(loop, conninfo, 1, &one);
    if (r == 0) {
        sigil_db_submit(one, leak_tx_work, box_done, &leak, &leak.err);
        sigil_db_submit(one, in_tx_work, box_done, &after, NULL);
        while (after.order == 0)
            uv_run(loop, UV_RUN_ONCE);
    }
    check(leak.status == SIGIL_ERR_INTERNAL && strstr(leak.err.message, "transaction open"),
          "work that left a transaction open: rolled back and reported (%s)", leak.err.message);
    check(after.status == 0 && !after.flag,
          "the next work on that worker starts outside a transaction");

    /* close: running work finishes, queued work is cancelled, then closed runs */
    struct status_box running = {.status = 1, .counter = &counter};
    struct status_box queued[3];
    bool one_closed = false;
    counter = 0;
    sigil_db_submit(one, sleep_work, box_done, &running, NULL);
    for (int i = 0; i < 3; i++) {
        queued[i] = (struct status_box){.status = 1, .counter = &counter};
        sigil_db_submit(one, sleep_work, box_done, &queued[i], &queued[i].err);
    }
    /* let the worker pick up the first job */
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    sigil_db_close(one, on_closed, &one_closed);
    r = sigil_db_submit(one, sleep_work, box_done, &b, NULL);
    check(r == SIGIL_ERR_STATE, "submit after close is refused");
    while (!one_closed)
        uv_run(loop, UV_RUN_ONCE);
    int cancelled = 0;
    for (int i = 0; i < 3; i++)
        cancelled += queued[i].status == SIGIL_ERR_CANCELLED &&
                     strstr(queued[i].err.message, "closed") != NULL;
    check(running.status == 0 && cancelled == 3 && counter == 4,
          "close finished the running work and cancelled the 3 queued (%d, %d, %d)", running.status,
          cancelled, counter);

    sigil_db_close(db, on_closed, &closed);
    while (!closed)
        uv_run(loop, UV_RUN_ONCE);
    check(true, "pool closed");
    return 0;
}

/* ---- retry ---- */

struct race {
    pthread_barrier_t *barrier;
    int first, second; /* rows, in the order this transaction touches them */
    bool read_first;   /* serializable write skew: read both, write one */
    atomic_int *attempts;
    int max_attempt;
    int status;
    bool finished;
    struct sigil_db_error err;
};

static int
race_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct race *rc = arg;
    char a[8], b[8];
    int r;

    atomic_fetch_add(rc->attempts, 1);
    if (attempt > rc->max_attempt)
        rc->max_attempt = attempt;
    snprintf(a, sizeof a, "%d", rc->first);
    snprintf(b, sizeof b, "%d", rc->second);
    if (rc->read_first) {
        if ((r = sigil_db_exec(c, "SELECT sum(v) FROM t", NULL, 0, NULL)) != 0)
            return r;
        if (attempt == 1)
            pthread_barrier_wait(rc->barrier);
        return sigil_db_exec(c, "UPDATE t SET v = v + 1 WHERE k = $1",
                             (struct sigil_db_param[]){SIGIL_DB_TEXT(a)}, 1, NULL);
    }
    if ((r = sigil_db_exec(c, "UPDATE t SET v = v + 1 WHERE k = $1",
                           (struct sigil_db_param[]){SIGIL_DB_TEXT(a)}, 1, NULL)) != 0)
        return r;
    if (attempt == 1)
        pthread_barrier_wait(rc->barrier);
    return sigil_db_exec(c, "UPDATE t SET v = v + 1 WHERE k = $1",
                         (struct sigil_db_param[]){SIGIL_DB_TEXT(b)}, 1, NULL);
}

static int
race_work(struct sigil_db_conn *c, void *arg)
{
    struct race *rc = arg;

    return sigil_db_tx(c, rc->read_first ? SIGIL_DB_SERIALIZABLE : SIGIL_DB_READ_COMMITTED, 5,
                       race_body, rc);
}

static void
race_done(void *arg, int status)
{
    struct race *rc = arg;

    rc->status = status;
    rc->finished = true;
}

static int
forced_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct race *rc = arg;
    int limit = rc->first; /* fail while attempt <= limit */

    atomic_fetch_add(rc->attempts, 1);
    rc->max_attempt = attempt;
    if (attempt <= limit)
        return sigil_db_exec(c,
                             "DO $$ BEGIN RAISE EXCEPTION 'forced conflict' USING ERRCODE = "
                             "'serialization_failure'; END $$",
                             NULL, 0, NULL);
    return sigil_db_exec(c, "UPDATE t SET v = v + 100 WHERE k = 1", NULL, 0, NULL);
}

static int
forced_work(struct sigil_db_conn *c, void *arg)
{
    return sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, 3, forced_body, arg);
}

static int
unique_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct race *rc = arg;

    (void)attempt;
    atomic_fetch_add(rc->attempts, 1);
    return sigil_db_exec(c, "INSERT INTO t VALUES (1, 0)", NULL, 0, NULL);
}

static int
unique_work(struct sigil_db_conn *c, void *arg)
{
    return sigil_db_tx(c, SIGIL_DB_SERIALIZABLE, 3, unique_body, arg);
}

static void
run_pair(uv_loop_t *loop, struct sigil_db *db, struct race *x, struct race *y)
{
    sigil_db_submit(db, race_work, race_done, x, &x->err);
    sigil_db_submit(db, race_work, race_done, y, &y->err);
    while (!x->finished || !y->finished)
        uv_run(loop, UV_RUN_ONCE);
}

static int
scenario_retry(uv_loop_t *loop, const char *conninfo)
{
    pthread_barrier_t barrier;
    struct sigil_db *db = NULL;
    atomic_int attempts = 0;
    bool closed = false;
    int64_t sum = -1;
    int r;

    if (!direct(conninfo, "DROP TABLE IF EXISTS t", NULL) ||
        !direct(conninfo, "CREATE TABLE t (k int PRIMARY KEY, v int NOT NULL)", NULL) ||
        !direct(conninfo, "INSERT INTO t VALUES (1, 0), (2, 0)", NULL)) {
        check(false, "setup");
        return 1;
    }
    if ((r = sigil_db_open(loop, conninfo, 2, &db)) != 0) {
        check(false, "pool of 2 opened (%s)", sigil_strerror(r));
        return 1;
    }

    /* write skew under SERIALIZABLE: both read both rows, each writes one; one must fail
     * with 40001 and succeed on its retry */
    pthread_barrier_init(&barrier, NULL, 2);
    struct race x = {.barrier = &barrier, .first = 1, .read_first = true, .attempts = &attempts};
    struct race y = {.barrier = &barrier, .first = 2, .read_first = true, .attempts = &attempts};
    run_pair(loop, db, &x, &y);
    direct(conninfo, "SELECT sum(v) FROM t", &sum);
    check(x.status == 0 && y.status == 0, "both serializable transactions committed (%s / %s)",
          x.err.message, y.err.message);
    check(attempts >= 3 && (x.max_attempt > 1) != (y.max_attempt > 1),
          "exactly one was retried after a serialization failure (%d attempts)", (int)attempts);
    check(sum == 2, "each committed once (sum %lld)", (long long)sum);

    /* deadlock under READ COMMITTED: opposite update order; the victim (40P01) is retried */
    attempts = 0;
    struct race d1 = {.barrier = &barrier, .first = 1, .second = 2, .attempts = &attempts};
    struct race d2 = {.barrier = &barrier, .first = 2, .second = 1, .attempts = &attempts};
    run_pair(loop, db, &d1, &d2);
    direct(conninfo, "SELECT sum(v) FROM t", &sum);
    check(d1.status == 0 && d2.status == 0, "both deadlocked transactions committed (%s / %s)",
          d1.err.message, d2.err.message);
    check(attempts == 3, "the deadlock victim was retried once (%d attempts)", (int)attempts);
    check(sum == 6, "each committed once (sum %lld)", (long long)sum);
    pthread_barrier_destroy(&barrier);

    /* a forced serialization failure on the first two attempts: the third commits */
    attempts = 0;
    struct race f = {.first = 2, .attempts = &attempts};
    sigil_db_submit(db, forced_work, race_done, &f, &f.err);
    while (!f.finished)
        uv_run(loop, UV_RUN_ONCE);
    direct(conninfo, "SELECT sum(v) FROM t", &sum);
    check(f.status == 0 && attempts == 3 && sum == 106,
          "forced 40001 twice: committed on attempt 3 (%d, %d, %lld)", f.status, (int)attempts,
          (long long)sum);

    /* always failing: gives up after max attempts with the SQLSTATE and a clear text */
    attempts = 0;
    struct race g = {.first = 99, .attempts = &attempts};
    sigil_db_submit(db, forced_work, race_done, &g, &g.err);
    while (!g.finished)
        uv_run(loop, UV_RUN_ONCE);
    direct(conninfo, "SELECT sum(v) FROM t", &sum);
    check(g.status == SIGIL_ERR_CANCELLED && attempts == 3 &&
              strcmp(g.err.sqlstate, "40001") == 0 &&
              strstr(g.err.message, "gave up after 3 attempts") != NULL && sum == 106,
          "endless conflict: gave up after 3 attempts, nothing committed (%s)", g.err.message);

    /* other errors are not retried */
    attempts = 0;
    struct race u = {.attempts = &attempts};
    sigil_db_submit(db, unique_work, race_done, &u, &u.err);
    while (!u.finished)
        uv_run(loop, UV_RUN_ONCE);
    check(u.status == SIGIL_ERR_EXISTS && attempts == 1 && strcmp(u.err.sqlstate, "23505") == 0,
          "a unique violation is not retried (%d attempts: %s)", (int)attempts, u.err.message);

    sigil_db_close(db, on_closed, &closed);
    while (!closed)
        uv_run(loop, UV_RUN_ONCE);
    direct(conninfo, "DROP TABLE t", NULL);
    return 0;
}

/* ---- down ---- */

static bool
has_secret(const char *s)
{
    return strstr(s, "sekrit") != NULL;
}

static int
scenario_down(uv_loop_t *loop, const char *conninfo)
{
    struct sigil_db_conn *c = NULL;
    struct sigil_db_error err;
    struct sigil_db *db = NULL;
    int counter = 0, r;
    bool closed = false;

    r = sigil_db_connect(conninfo, &c, &err);
    check(r == SIGIL_ERR_IO && strncmp(err.message, "database unavailable: ", 22) == 0 &&
              !has_secret(err.message),
          "connect to a database that is down: %s", err.message);

    r = sigil_db_connect("host=/nowhere password=sekrit-canary junk", &c, &err);
    check(r == SIGIL_ERR_INVALID && strstr(err.message, "does not parse") &&
              !has_secret(err.message),
          "an unparsable conninfo is refused without echoing it: %s", err.message);
    r = sigil_db_open(loop, "password=sekrit-canary junk", 2, &db);
    check(r == SIGIL_ERR_INVALID && db == NULL, "the pool refuses it too");

    if ((r = sigil_db_open(loop, conninfo, 1, &db)) != 0) {
        check(false, "pool opened (%s)", sigil_strerror(r));
        return 1;
    }
    struct status_box a = {.counter = &counter}, b = {.counter = &counter},
                      c3 = {.counter = &counter};
    sigil_db_ping(db, &a.err, box_done, &a);
    sigil_db_ping(db, &b.err, box_done, &b);
    sigil_db_ping(db, &c3.err, box_done, &c3);
    while (c3.order == 0)
        uv_run(loop, UV_RUN_ONCE);
    /* on a loaded machine the second may come after the first backoff (100 ms); then the
     * third falls into the second (200 ms) */
    if (strstr(b.err.message, "next connection attempt in") == NULL)
        b = c3;
    check(a.status == SIGIL_ERR_IO && strncmp(a.err.message, "database unavailable: ", 22) == 0 &&
              !has_secret(a.err.message),
          "ping while down: %s", a.err.message);
    check(b.status == SIGIL_ERR_IO && strstr(b.err.message, "next connection attempt in") != NULL,
          "the next one fails fast during the backoff: %s", b.err.message);
    sigil_db_close(db, on_closed, &closed);
    while (!closed)
        uv_run(loop, UV_RUN_ONCE);
    return 0;
}

/* ---- listen ---- */

struct lstate {
    uv_loop_t *loop;
    struct sigil_db *db;
    struct sigil_db_listener *l, *quiet;
    uv_timer_t timer;
    int ready, lost, quiet_events;
    bool got1, got2, pinged_down, closed;
    int counter;
    struct status_box ping, notify;
    char sent[32];
};

static int
notify_work(struct sigil_db_conn *c, void *arg)
{
    struct lstate *s = arg;

    /* the other channel first: a listener that stopped must hear nothing */
    int r = sigil_db_exec(c, "SELECT pg_notify('sigil_test_quiet', 'x')", NULL, 0, NULL);
    if (r == 0)
        r = sigil_db_exec(c, "SELECT pg_notify('sigil_test', $1)",
                          (struct sigil_db_param[]){SIGIL_DB_TEXT(s->sent)}, 1, NULL);
    return r;
}

static void send_notify(struct lstate *s, const char *payload);

static void
notify_done(void *arg, int status)
{
    struct lstate *s = arg;

    s->notify.status = status;
    s->notify.order = 1;
    if (status != 0 && !s->closed) {
        /* the worker may still be backing off from the outage: try again shortly */
        printf("# notify not sent yet: %s\n", s->notify.err.message);
        fflush(stdout);
        send_notify(s, s->sent);
    }
}

static void
send_notify(struct lstate *s, const char *payload)
{
    struct timespec ts = {0, 200 * 1000 * 1000};

    if (s->notify.order != 0 && s->notify.status != 0)
        nanosleep(&ts, NULL);
    if (payload != s->sent)
        snprintf(s->sent, sizeof s->sent, "%s", payload);
    s->notify.order = 0;
    sigil_db_submit(s->db, notify_work, notify_done, s, &s->notify.err);
}

static void
ping_down_done(void *arg, int status)
{
    struct lstate *s = arg;

    check(status == SIGIL_ERR_IO && strstr(s->ping.err.message, "database") != NULL &&
              !has_secret(s->ping.err.message),
          "ping during the outage fails with a clear error: %s", s->ping.err.message);
}

static void
finish(struct lstate *s)
{
    if (s->closed)
        return;
    s->closed = true;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, NULL);
    sigil_db_close(s->db, NULL, NULL);
}

static void
on_quiet(void *arg, enum sigil_db_listen_event ev, const char *payload)
{
    struct lstate *s = arg;

    (void)payload;
    if (ev == SIGIL_DB_LISTEN_READY) {
        /* stop from inside the callback: nothing may follow */
        sigil_db_unlisten(s->quiet);
        return;
    }
    s->quiet_events++;
}

static void
on_listen(void *arg, enum sigil_db_listen_event ev, const char *payload)
{
    struct lstate *s = arg;

    check(pthread_equal(pthread_self(), loop_thread), "listener event %d on the loop thread", ev);
    check(!has_secret(payload), "listener text holds no secret");
    switch (ev) {
    case SIGIL_DB_LISTEN_READY:
        s->ready++;
        if (s->ready == 1) {
            check(true, "listening");
            send_notify(s, "hello-1");
        } else {
            check(s->lost == 1, "listening again after a reconnect: gap reported (ready #%d)",
                  s->ready);
            send_notify(s, "hello-2");
        }
        break;
    case SIGIL_DB_LISTEN_NOTIFY:
        if (strcmp(payload, "hello-1") == 0 && !s->got1) {
            s->got1 = true;
            check(true, "NOTIFY from another connection received: %s", payload);
            printf("restart-now\n");
            fflush(stdout);
        } else if (strcmp(payload, "hello-2") == 0 && s->ready == 2) {
            s->got2 = true;
            check(true, "NOTIFY received after the reconnect: %s", payload);
            check(s->quiet_events == 0, "the stopped listener heard nothing (%d)", s->quiet_events);
            finish(s);
        }
        break;
    case SIGIL_DB_LISTEN_LOST:
        s->lost++;
        check(s->lost == 1, "connection loss reported once: %s", payload);
        if (!s->pinged_down) {
            s->pinged_down = true;
            sigil_db_ping(s->db, &s->ping.err, ping_down_done, s);
        }
        break;
    }
}

static void
on_timeout(uv_timer_t *t)
{
    struct lstate *s = t->data;

    check(false, "listen scenario timed out (ready %d, lost %d, got1 %d, got2 %d)", s->ready,
          s->lost, s->got1, s->got2);
    finish(s);
}

static int
scenario_listen(uv_loop_t *loop, const char *conninfo)
{
    struct lstate s = {.loop = loop};
    int r;

    if ((r = sigil_db_open(loop, conninfo, 2, &s.db)) != 0) {
        check(false, "pool opened (%s)", sigil_strerror(r));
        return 1;
    }
    check(sigil_db_listen(s.db, "Bad-Channel", on_listen, &s, &s.l) == SIGIL_ERR_INVALID,
          "a channel that is not a plain identifier is refused");
    r = sigil_db_listen(s.db, "sigil_test", on_listen, &s, &s.l);
    check(r == 0, "listen started");
    sigil_db_listen(s.db, "sigil_test_quiet", on_quiet, &s, &s.quiet);
    uv_timer_init(loop, &s.timer);
    s.timer.data = &s;
    uv_timer_start(&s.timer, on_timeout, 60000, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    check(s.got1 && s.got2 && s.ready == 2 && s.lost == 1,
          "listen, lose, reconnect, listen again (ready %d, lost %d)", s.ready, s.lost);
    return 0;
}

int
main(int argc, char **argv)
{
    uv_loop_t loop;
    int r;

    if (argc != 3) {
        fprintf(stderr, "usage: sigil_db_test CONNINFO pool|retry|down|listen\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    loop_thread = pthread_self();
    uv_loop_init(&loop);
    if (strcmp(argv[2], "pool") == 0)
        r = scenario_pool(&loop, argv[1]);
    else if (strcmp(argv[2], "retry") == 0)
        r = scenario_retry(&loop, argv[1]);
    else if (strcmp(argv[2], "down") == 0)
        r = scenario_down(&loop, argv[1]);
    else if (strcmp(argv[2], "listen") == 0)
        r = scenario_listen(&loop, argv[1]);
    else {
        fprintf(stderr, "sigil_db_test: unknown scenario %s\n", argv[2]);
        return 2;
    }
    /* everything must have been released: a handle left open is a leak */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        check(false, "the loop closed cleanly (a handle was left open)");
    if (r != 0 || failures > 0) {
        printf("# %d failed\n", failures);
        return 1;
    }
    return 0;
}
