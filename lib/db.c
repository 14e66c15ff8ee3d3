/* libpq behind one small interface: a pool of worker threads (one connection each) runs the
 * database work off the event loop and posts results back with uv_async; a listener keeps a
 * LISTEN connection of its own, watched with uv_poll, and says when it may have missed NOTIFYs.
 * Every libpq call of Sigil lives in this file. */
#include "sigil/db.h"
#include "sigil/buf.h"
#include "sigil/err.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <sodium.h>

/* Reconnect backoff of workers and listeners: doubles from MIN to MAX while the database is
 * down, so a restart is noticed within MAX and a dead database is not hammered. */
#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 5000u
/* Without connect_timeout in the conninfo a blackholed host holds a worker for minutes. */
#define DEFAULT_CONNECT_TIMEOUT "10"
/* Serialization retries wait a little, growing, with jitter, so the conflicting transactions
 * do not meet again in lockstep. */
#define RETRY_BASE_MS 5u
#define RETRY_MAX_MS 200u
/* PostgreSQL's protocol counts parameters in 16 bits. */
#define PARAMS_MAX 65535u
#define CHANNEL_MAX 63u

struct sigil_db_conn {
    PGconn *pg;
    struct sigil_db_error err;
    const char *conninfo; /* not owned by worker connections (the pool's copy) */
    const char *secret;   /* the conninfo's password, scrubbed from every message */
    bool standalone;      /* conninfo and secret are owned */
    /* reconnects of worker connections */
    uint64_t retry_at_ms;
    unsigned backoff_ms;
    char down[SIGIL_DB_ERRMSG_MAX];
};

struct sigil_db_res {
    PGresult *pg;
};

struct job {
    struct job *next;
    sigil_db_work_fn work;
    sigil_db_done_fn done;
    void *arg;
    struct sigil_db_error *err;
    int status;
};

struct worker {
    struct sigil_db *db;
    pthread_t thread;
    bool started;
    struct sigil_db_conn conn;
};

struct sigil_db {
    uv_loop_t *loop;
    uv_async_t async;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* guarded by mu */
    struct job *todo, *todo_tail;
    size_t ntodo;
    struct job *done, *done_tail;
    bool stopping;
    unsigned nexited;
    /* fixed after open */
    unsigned nworkers;
    struct worker *workers;
    char *conninfo;
    char *secret;
    /* loop thread only */
    struct sigil_db_listener *listeners;
    bool async_closed;
    sigil_db_closed_fn closed;
    void *closed_arg;
};

struct sigil_db_listener {
    struct sigil_db *db;
    struct sigil_db_listener *next;
    char channel[CHANNEL_MAX + 1];
    sigil_db_listen_fn cb;
    void *arg;
    PGconn *pg;      /* the subscribed connection, or NULL while down */
    uv_poll_t *poll; /* watches pg's socket; its own allocation, freed when closed */
    uv_timer_t timer;
    uv_work_t work;  /* a connect running on libuv's threadpool */
    PGconn *work_pg; /* what that connect produced (NULL on failure) */
    char work_err[SIGIL_DB_ERRMSG_MAX];
    bool working;
    unsigned backoff_ms;
    bool lost_reported; /* LOST said once per outage, not once per attempt */
    bool stopped;
    unsigned refs; /* open handles and running work; freed at zero once stopped */
};

/* ---- pure helpers ---- */

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int
sigil_db_parse_int64(const char *s, int64_t *out)
{
    uint64_t v = 0, limit = INT64_MAX;
    bool neg = false;
    size_t i = 0;

    if (s == NULL || out == NULL)
        return SIGIL_ERR_INVALID;
    if (s[0] == '-') {
        neg = true;
        limit = (uint64_t)INT64_MAX + 1;
        i = 1;
    }
    /* one spelling per value, as PostgreSQL prints it: no "+", "007", "-0" or "" */
    if (!is_digit(s[i]) || (s[i] == '0' && (s[i + 1] != '\0' || neg)))
        return SIGIL_ERR_INVALID;
    for (; s[i] != '\0'; i++) {
        if (!is_digit(s[i]))
            return SIGIL_ERR_INVALID;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10)
            return SIGIL_ERR_RANGE;
        v = v * 10 + d;
    }
    if (neg)
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return 0;
}

static int
hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
sigil_db_parse_bytea(const char *s, uint8_t **out, size_t *len)
{
    size_t n;
    uint8_t *p;

    if (out != NULL)
        *out = NULL;
    if (len != NULL)
        *len = 0;
    if (s == NULL || out == NULL || len == NULL)
        return SIGIL_ERR_INVALID;
    /* only the hex output format (bytea_output = hex, the default since 9.0) */
    if (s[0] != '\\' || s[1] != 'x')
        return SIGIL_ERR_INVALID;
    s += 2;
    n = strlen(s);
    if (n % 2 != 0)
        return SIGIL_ERR_INVALID;
    if ((p = malloc(n / 2 + 1)) == NULL)
        return SIGIL_ERR_NOMEM;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hex_nibble(s[2 * i]), lo = hex_nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(p);
            return SIGIL_ERR_INVALID;
        }
        p[i] = (uint8_t)(hi << 4 | lo);
    }
    *out = p;
    *len = n / 2;
    return 0;
}

static bool
sqlstate_wellformed(const char *s)
{
    if (s == NULL)
        return false;
    for (size_t i = 0; i < 5; i++) {
        if (!is_digit(s[i]) && !(s[i] >= 'A' && s[i] <= 'Z'))
            return false;
    }
    return s[5] == '\0';
}

int
sigil_db_sqlstate_err(const char *s)
{
    if (!sqlstate_wellformed(s))
        return SIGIL_ERR_IO;
    if (strcmp(s, "23505") == 0)
        return SIGIL_ERR_EXISTS; /* unique_violation */
    if (strcmp(s, "42501") == 0)
        return SIGIL_ERR_DENIED; /* insufficient_privilege */
    if (strcmp(s, "55P03") == 0)
        return SIGIL_ERR_TIMEOUT; /* lock_not_available (lock_timeout) */
    if (strcmp(s, "57014") == 0)
        return SIGIL_ERR_CANCELLED; /* query_canceled (statement_timeout, cancel) */
    if (strcmp(s, "P0001") == 0)
        return SIGIL_ERR_INVALID; /* RAISE EXCEPTION in our triggers: a rule was broken */
    if (strncmp(s, "23", 2) == 0 || strncmp(s, "22", 2) == 0)
        return SIGIL_ERR_INVALID; /* integrity constraint, data exception */
    if (strncmp(s, "28", 2) == 0)
        return SIGIL_ERR_DENIED; /* invalid authorization */
    if (strncmp(s, "40", 2) == 0)
        return SIGIL_ERR_CANCELLED; /* the server rolled the transaction back */
    if (strncmp(s, "25", 2) == 0)
        return SIGIL_ERR_STATE; /* invalid transaction state */
    if (strncmp(s, "0A", 2) == 0)
        return SIGIL_ERR_UNSUPPORTED;
    if (strncmp(s, "42", 2) == 0)
        return SIGIL_ERR_INTERNAL; /* our SQL does not fit the schema: a bug */
    return SIGIL_ERR_IO;           /* 08 connection, 53 resources, 57 shutdown, 58, XX, ... */
}

bool
sigil_db_sqlstate_retryable(const char *s)
{
    return s != NULL && (strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0);
}

bool
sigil_db_channel_valid(const char *name)
{
    size_t i;

    if (name == NULL || !((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
        return false;
    for (i = 1; name[i] != '\0'; i++) {
        char c = name[i];
        if (i >= CHANNEL_MAX || !((c >= 'a' && c <= 'z') || is_digit(c) || c == '_'))
            return false;
    }
    return true;
}

void
sigil_db_message_clean(char *dst, size_t cap, const char *msg, const char *secret)
{
    size_t o = 0, i = 0, slen = secret != NULL ? strlen(secret) : 0;
    bool space = true; /* drops leading spaces */

    if (dst == NULL || cap == 0)
        return;
    if (msg == NULL)
        msg = "";
    while (msg[i] != '\0' && o + 1 < cap) {
        if (slen > 0 && strncmp(msg + i, secret, slen) == 0) {
            for (const char *m = "***"; *m != '\0' && o + 1 < cap; m++)
                dst[o++] = *m;
            i += slen;
            space = false;
            continue;
        }
        unsigned char ch = (unsigned char)msg[i++];
        if (ch < 0x20 || ch == 0x7f)
            ch = ' ';
        if (ch == ' ') {
            if (space)
                continue;
            space = true;
        } else {
            space = false;
        }
        dst[o++] = (char)ch;
    }
    if (msg[i] != '\0' && o > 0) {
        /* cut short: drop a UTF-8 sequence the cut left incomplete */
        size_t start = o, need;
        while (start > 0 && ((unsigned char)dst[start - 1] & 0xc0) == 0x80 && o - start < 3)
            start--;
        if (start > 0 && (unsigned char)dst[start - 1] >= 0xc0) {
            unsigned char lead = (unsigned char)dst[start - 1];
            need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
            if (o - (start - 1) < need)
                o = start - 1;
        }
    }
    while (o > 0 && dst[o - 1] == ' ')
        o--;
    dst[o] = '\0';
}

/* Wipes and frees what PQconninfoParse returned (the values hold the password). */
static void
conninfo_options_free(PQconninfoOption *opts)
{
    if (opts == NULL)
        return;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (o->val != NULL)
            sodium_memzero(o->val, strlen(o->val));
    }
    PQconninfoFree(opts);
}

/* Parses conninfo; returns the options (free with conninfo_options_free) or NULL. libpq's
 * parse error is dropped unseen: it quotes the conninfo, which may hold the password. */
static PQconninfoOption *
conninfo_parse(const char *conninfo)
{
    char *errmsg = NULL;
    PQconninfoOption *opts;

    if (conninfo == NULL)
        return NULL;
    opts = PQconninfoParse(conninfo, &errmsg);
    if (errmsg != NULL) {
        sodium_memzero(errmsg, strlen(errmsg));
        PQfreemem(errmsg);
    }
    return opts;
}

/* Sets *secret to a copy of the conninfo's password (NULL if none); returns 0,
 * SIGIL_ERR_INVALID (does not parse) or SIGIL_ERR_NOMEM. */
static int
conninfo_secret(const char *conninfo, char **secret)
{
    PQconninfoOption *opts;
    int r = 0;

    *secret = NULL;
    if ((opts = conninfo_parse(conninfo)) == NULL)
        return SIGIL_ERR_INVALID;
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "password") == 0 && o->val != NULL && o->val[0] != '\0') {
            if ((*secret = strdup(o->val)) == NULL)
                r = SIGIL_ERR_NOMEM;
        }
    }
    conninfo_options_free(opts);
    return r;
}

char *
sigil_db_conninfo_describe(const char *conninfo)
{
    static const char *const shown[] = {"host", "hostaddr", "port", "dbname", "user", "sslmode"};
    PQconninfoOption *opts;
    struct sigil_buf b = {0};
    char *s = NULL;
    int r = 0;

    if ((opts = conninfo_parse(conninfo)) == NULL)
        return NULL;
    for (size_t k = 0; k < sizeof shown / sizeof shown[0] && r == 0; k++) {
        for (PQconninfoOption *o = opts; o->keyword != NULL && r == 0; o++) {
            if (strcmp(o->keyword, shown[k]) != 0 || o->val == NULL || o->val[0] == '\0')
                continue;
            if (b.len > 0)
                r = sigil_buf_append_str(&b, " ");
            if (r == 0)
                r = sigil_buf_appendf(&b, "%s=", o->keyword);
            /* quoted as a conninfo value when it needs to be; control bytes shown as '?' so
             * a value cannot forge a log line */
            bool quote = strpbrk(o->val, " '\\") != NULL;
            if (r == 0 && quote)
                r = sigil_buf_append_str(&b, "'");
            for (const char *p = o->val; *p != '\0' && r == 0; p++) {
                unsigned char ch = (unsigned char)*p;
                if (ch == '\'' || ch == '\\')
                    r = sigil_buf_append_str(&b, "\\");
                if (r == 0)
                    r = sigil_buf_append(&b, ch < 0x20 || ch == 0x7f ? "?" : p, 1);
            }
            if (r == 0 && quote)
                r = sigil_buf_append_str(&b, "'");
        }
    }
    if (r == 0)
        s = b.len > 0 ? sigil_buf_strdup(&b) : strdup("");
    sigil_buf_free(&b);
    conninfo_options_free(opts);
    return s;
}

/* ---- connections ---- */

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* libpq prints notices (NOTICE, WARNING from migrations, "CREATE TABLE IF NOT EXISTS ...
 * skipping") on stderr by default; a library must not write there. */
static void
quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static void conn_err(struct sigil_db_conn *c, const char *sqlstate, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
conn_err(struct sigil_db_conn *c, const char *sqlstate, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    snprintf(c->err.sqlstate, sizeof c->err.sqlstate, "%s",
             sqlstate_wellformed(sqlstate) ? sqlstate : "");
    sigil_db_message_clean(c->err.message, sizeof c->err.message, tmp, c->secret);
    sodium_memzero(tmp, sizeof tmp);
}

static void
conn_err_clear(struct sigil_db_conn *c)
{
    memset(&c->err, 0, sizeof c->err);
}

/* Connects with our defaults underneath the caller's conninfo (which overrides them). Returns
 * the connection, or NULL with the reason cleaned into why. Blocking: workers only. */
static PGconn *
pg_connect(const char *conninfo, const char *secret, char *why, size_t whylen)
{
    /* keywords before "dbname" are defaults: the expanded conninfo overrides them */
    const char *const keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
    const char *const vals[] = {DEFAULT_CONNECT_TIMEOUT, "sigil", conninfo, NULL};
    PGconn *pg;

    if ((pg = PQconnectdbParams(keys, vals, 1)) == NULL) {
        sigil_db_message_clean(why, whylen, "out of memory", NULL);
        return NULL;
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        sigil_db_message_clean(why, whylen, PQerrorMessage(pg), secret);
        PQfinish(pg);
        return NULL;
    }
    PQsetNoticeProcessor(pg, quiet_notices, NULL);
    return pg;
}

static void
conn_drop(struct sigil_db_conn *c)
{
    if (c->pg != NULL)
        PQfinish(c->pg);
    c->pg = NULL;
}

/* An idle connection whose server went away (restart, failover, idle timeout) has bytes or
 * EOF waiting on its socket; finding that now lets the next job run on a fresh connection
 * instead of failing. Returns true if the connection is unusable. */
static bool
idle_conn_broken(PGconn *pg)
{
    struct pollfd p = {.fd = PQsocket(pg), .events = POLLIN};
    PGnotify *n;

    if (PQstatus(pg) != CONNECTION_OK || p.fd < 0)
        return true;
    /* a shutting-down server sends its FATAL and then EOF: libpq reads them in separate
     * calls (the FATAL, while idle, only as a notice), so look a few times */
    for (int i = 0; i < 4; i++) {
        p.revents = 0;
        if (poll(&p, 1, 0) <= 0)
            return false;
        if (!PQconsumeInput(pg))
            return true;
        while ((n = PQnotifies(pg)) != NULL)
            PQfreemem(n);
        if (PQstatus(pg) != CONNECTION_OK)
            return true;
    }
    return false;
}

/* Makes sure a worker's connection is up: reconnects a broken one at once, then backs off
 * while the database stays down (failing fast meanwhile, with the last reason). */
static int
conn_ensure(struct sigil_db_conn *c)
{
    uint64_t now;

    if (c->pg != NULL) {
        if (!idle_conn_broken(c->pg))
            return 0;
        conn_drop(c);
    }
    now = now_ms();
    if (now < c->retry_at_ms) {
        /* the delay first: a long reason may be cut to fit */
        conn_err(c, "", "database unavailable (next connection attempt in %llu ms): %s",
                 (unsigned long long)(c->retry_at_ms - now), c->down);
        return SIGIL_ERR_IO;
    }
    if ((c->pg = pg_connect(c->conninfo, c->secret, c->down, sizeof c->down)) == NULL) {
        c->backoff_ms = c->backoff_ms == 0 ? BACKOFF_MIN_MS : c->backoff_ms * 2;
        if (c->backoff_ms > BACKOFF_MAX_MS)
            c->backoff_ms = BACKOFF_MAX_MS;
        c->retry_at_ms = now_ms() + c->backoff_ms;
        conn_err(c, "", "database unavailable: %s", c->down);
        return SIGIL_ERR_IO;
    }
    c->backoff_ms = 0;
    c->retry_at_ms = 0;
    c->down[0] = '\0';
    return 0;
}

int
sigil_db_connect(const char *conninfo, struct sigil_db_conn **out, struct sigil_db_error *err)
{
    struct sigil_db_conn *c = NULL;
    char *ci = NULL, *secret = NULL;
    char why[SIGIL_DB_ERRMSG_MAX];
    int r;

    if (err != NULL)
        memset(err, 0, sizeof *err);
    if (out == NULL)
        return SIGIL_ERR_INVALID;
    *out = NULL;
    if ((r = conninfo_secret(conninfo, &secret)) != 0) {
        if (err != NULL)
            sigil_db_message_clean(err->message, sizeof err->message,
                                   r == SIGIL_ERR_INVALID
                                       ? "the database conninfo does not parse (not shown: it "
                                         "may hold a password)"
                                       : "out of memory",
                                   NULL);
        goto out;
    }
    if ((c = calloc(1, sizeof *c)) == NULL || (ci = strdup(conninfo)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    c->standalone = true;
    c->conninfo = ci;
    c->secret = secret;
    ci = secret = NULL;
    if ((c->pg = pg_connect(c->conninfo, c->secret, why, sizeof why)) == NULL) {
        conn_err(c, "", "database unavailable: %s", why);
        if (err != NULL)
            *err = c->err;
        r = SIGIL_ERR_IO;
        goto out;
    }
    *out = c;
    c = NULL;
    r = 0;
out:
    if (ci != NULL)
        free(ci);
    if (secret != NULL) {
        sodium_memzero(secret, strlen(secret));
        free(secret);
    }
    sigil_db_disconnect(c);
    return r;
}

void
sigil_db_disconnect(struct sigil_db_conn *c)
{
    if (c == NULL)
        return;
    conn_drop(c);
    if (c->standalone) {
        char *ci = (char *)c->conninfo, *secret = (char *)c->secret;
        if (ci != NULL) {
            sodium_memzero(ci, strlen(ci));
            free(ci);
        }
        if (secret != NULL) {
            sodium_memzero(secret, strlen(secret));
            free(secret);
        }
        free(c);
    }
}

const struct sigil_db_error *
sigil_db_conn_error(const struct sigil_db_conn *c)
{
    return &c->err;
}

/* ---- statements ---- */

/* Turns a libpq result into 0 or an error recorded on c. Only the primary message, the
 * SQLSTATE and the constraint name are kept: DETAIL echoes row values. */
static int
check_result(struct sigil_db_conn *c, PGresult *res)
{
    const char *state, *primary, *constraint;
    int r;

    if (res == NULL) {
        conn_err(c, "", "database: %s", PQerrorMessage(c->pg));
        return PQstatus(c->pg) == CONNECTION_OK ? SIGIL_ERR_NOMEM : SIGIL_ERR_IO;
    }
    switch (PQresultStatus(res)) {
    case PGRES_COMMAND_OK:
    case PGRES_TUPLES_OK:
    case PGRES_EMPTY_QUERY:
        return 0;
    case PGRES_COPY_IN:
    case PGRES_COPY_OUT:
    case PGRES_COPY_BOTH:
        /* a COPY would leave the connection mid-protocol; start over on a fresh one */
        conn_err(c, "", "database: COPY is not supported through sigil_db");
        conn_drop(c);
        return SIGIL_ERR_UNSUPPORTED;
    default:
        break;
    }
    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
    if (PQstatus(c->pg) != CONNECTION_OK) {
        conn_err(c, "", "database connection lost: %s",
                 primary != NULL ? primary : PQerrorMessage(c->pg));
        return SIGIL_ERR_IO;
    }
    if (primary == NULL)
        primary = PQresultErrorMessage(res);
    if (constraint != NULL)
        conn_err(c, state, "%s (SQLSTATE %s, constraint %s)", primary, state != NULL ? state : "?",
                 constraint);
    else
        conn_err(c, state, "%s (SQLSTATE %s)", primary, state != NULL ? state : "?");
    r = state != NULL ? sigil_db_sqlstate_err(state) : SIGIL_ERR_IO;
    return r;
}

static int
conn_usable(struct sigil_db_conn *c)
{
    if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK) {
        conn_err(c, "", "database connection lost");
        return SIGIL_ERR_IO;
    }
    return 0;
}

/* libpq's three parallel arrays for one statement's parameters. */
struct wire_params {
    const char **values;
    int *lengths;
    int *formats;
};

static void
wire_params_free(struct wire_params *w)
{
    free(w->values);
    free(w->lengths);
    free(w->formats);
    memset(w, 0, sizeof *w);
}

static size_t
param_len(const struct sigil_db_param *p)
{
    if (p->value == NULL)
        return 0;
    return p->binary ? p->len : strnlen(p->value, SIGIL_DB_PARAM_MAX + 1);
}

/* Checks a statement and its parameters against the caps; errors are recorded on c. */
static int
params_check(struct sigil_db_conn *c, const char *sql, const struct sigil_db_param *params,
             size_t nparams)
{
    if (sql == NULL || (nparams > 0 && params == NULL)) {
        conn_err(c, "", "sigil_db: no statement or no parameters");
        return SIGIL_ERR_INVALID;
    }
    if (nparams > PARAMS_MAX) {
        conn_err(c, "", "sigil_db: %zu parameters, at most %u", nparams, PARAMS_MAX);
        return SIGIL_ERR_RANGE;
    }
    for (size_t i = 0; i < nparams; i++) {
        if (param_len(&params[i]) > SIGIL_DB_PARAM_MAX) {
            conn_err(c, "", "sigil_db: parameter $%zu is over %u bytes", i + 1, SIGIL_DB_PARAM_MAX);
            return SIGIL_ERR_RANGE;
        }
    }
    return 0;
}

/* Checks a statement and lays its parameters out for libpq; errors are recorded on c. */
static int
wire_params_make(struct sigil_db_conn *c, const char *sql, const struct sigil_db_param *params,
                 size_t nparams, struct wire_params *w)
{
    int r;

    memset(w, 0, sizeof *w);
    if ((r = params_check(c, sql, params, nparams)) != 0 || nparams == 0)
        return r;
    if ((w->values = calloc(nparams, sizeof *w->values)) == NULL ||
        (w->lengths = calloc(nparams, sizeof *w->lengths)) == NULL ||
        (w->formats = calloc(nparams, sizeof *w->formats)) == NULL) {
        wire_params_free(w);
        conn_err(c, "", "out of memory");
        return SIGIL_ERR_NOMEM;
    }
    for (size_t i = 0; i < nparams; i++) {
        w->values[i] = params[i].value;
        w->lengths[i] = (int)param_len(&params[i]);
        w->formats[i] = params[i].binary ? 1 : 0;
    }
    return 0;
}

int
sigil_db_exec(struct sigil_db_conn *c, const char *sql, const struct sigil_db_param *params,
              size_t nparams, struct sigil_db_res **out)
{
    struct wire_params w = {0};
    PGresult *res = NULL;
    int r;

    if (out != NULL)
        *out = NULL;
    if (c == NULL)
        return SIGIL_ERR_INVALID;
    conn_err_clear(c);
    if ((r = wire_params_make(c, sql, params, nparams, &w)) != 0 || (r = conn_usable(c)) != 0)
        goto out;
    res = PQexecParams(c->pg, sql, (int)nparams, NULL, w.values, w.lengths, w.formats, 0);
    if ((r = check_result(c, res)) != 0)
        goto out;
    if (out != NULL) {
        struct sigil_db_res *wr;
        if ((wr = malloc(sizeof *wr)) == NULL) {
            r = SIGIL_ERR_NOMEM;
            conn_err(c, "", "out of memory");
            goto out;
        }
        wr->pg = res;
        res = NULL;
        *out = wr;
    }
out:
    PQclear(res);
    wire_params_free(&w);
    return r;
}

/* A batch's connection failed mid-protocol: it cannot be reused. */
static int
batch_broken(struct sigil_db_conn *c, const char *what)
{
    conn_err(c, "", "database connection lost during a batch (%s): %s", what,
             PQerrorMessage(c->pg));
    conn_drop(c);
    return SIGIL_ERR_IO;
}

/* Reads every result that is ready; returns 1 once the batch's sync arrived, 0 if more are
 * to come, or a negative error if the connection broke. The first failed statement's error
 * is recorded on c, its index in *failed_at and its code in *first. */
static int
batch_read(struct sigil_db_conn *c, size_t sent, bool synced, size_t *finished, size_t *failed_at,
           int *first)
{
    PGresult *res;

    /* a NULL result ends one statement's results; past the last one sent, libpq would keep
     * answering NULL, so stop there unless the sync is still to come */
    while (!PQisBusy(c->pg) && (*finished < sent || synced)) {
        if ((res = PQgetResult(c->pg)) == NULL) {
            if (*finished == sent)
                return batch_broken(c, "result out of order");
            (*finished)++;
            continue;
        }
        switch (PQresultStatus(res)) {
        case PGRES_PIPELINE_SYNC:
            PQclear(res);
            return *finished == sent ? 1 : batch_broken(c, "early sync");
        case PGRES_COMMAND_OK:
        case PGRES_TUPLES_OK:
        case PGRES_PIPELINE_ABORTED: /* skipped after an earlier failure */
            break;
        case PGRES_FATAL_ERROR:
            if (*first == 0) {
                *first = check_result(c, res);
                *failed_at = *finished;
                if (*first == 0)
                    *first = SIGIL_ERR_IO;
            }
            break;
        default:
            PQclear(res);
            return batch_broken(c, "unexpected result");
        }
        PQclear(res);
    }
    return 0;
}

int
sigil_db_exec_batch(struct sigil_db_conn *c, const struct sigil_db_stmt *stmts, size_t n,
                    size_t *failed_at)
{
    size_t sent = 0, finished = 0, failed = 0;
    bool synced = false, flushing = false;
    int first = 0, r, fr;

    if (failed_at != NULL)
        *failed_at = 0;
    if (c == NULL)
        return SIGIL_ERR_INVALID;
    conn_err_clear(c);
    if (n > 0 && stmts == NULL) {
        conn_err(c, "", "sigil_db_exec_batch: no statements");
        return SIGIL_ERR_INVALID;
    }
    if (n == 0)
        return 0;
    /* every statement is checked before the first is sent: a refusal sends nothing */
    for (size_t i = 0; i < n; i++) {
        const struct sigil_db_stmt *st = &stmts[i];
        if ((r = params_check(c, st->sql, st->params, st->nparams)) != 0) {
            if (failed_at != NULL)
                *failed_at = i;
            return r;
        }
    }
    if ((r = conn_usable(c)) != 0)
        return r;
    if (!PQenterPipelineMode(c->pg)) {
        conn_err(c, "", "sigil_db_exec_batch: cannot enter pipeline mode: %s",
                 PQerrorMessage(c->pg));
        return SIGIL_ERR_STATE;
    }
    /* non-blocking, so sending never stalls while the server waits for us to read */
    if (PQsetnonblocking(c->pg, 1) != 0)
        return batch_broken(c, "non-blocking mode");
    for (;;) {
        while (sent < n && !flushing) {
            const struct sigil_db_stmt *st = &stmts[sent];
            struct wire_params w;
            if ((r = wire_params_make(c, st->sql, st->params, st->nparams, &w)) != 0) {
                /* out of memory halfway: nothing is synced yet, so closing the connection
                 * rolls back what was sent */
                struct sigil_db_error keep = c->err;
                conn_drop(c);
                c->err = keep;
                if (failed_at != NULL)
                    *failed_at = sent;
                return r;
            }
            fr = PQsendQueryParams(c->pg, st->sql, (int)st->nparams, NULL, w.values, w.lengths,
                                   w.formats, 0);
            wire_params_free(&w);
            if (!fr)
                return batch_broken(c, "send");
            sent++;
            if ((fr = PQflush(c->pg)) < 0)
                return batch_broken(c, "flush");
            flushing = fr == 1;
        }
        if (sent == n && !synced) {
            if (!PQpipelineSync(c->pg))
                return batch_broken(c, "sync");
            synced = true;
            if ((fr = PQflush(c->pg)) < 0)
                return batch_broken(c, "flush");
            flushing = fr == 1;
        }
        if (!PQconsumeInput(c->pg))
            return batch_broken(c, "read");
        if ((r = batch_read(c, sent, synced, &finished, &failed, &first)) < 0)
            return r;
        if (r == 1)
            break;
        struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN | (flushing ? POLLOUT : 0)};
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            return batch_broken(c, "poll");
        if (flushing) {
            if ((fr = PQflush(c->pg)) < 0)
                return batch_broken(c, "flush");
            flushing = fr == 1;
        }
    }
    if (PQsetnonblocking(c->pg, 0) != 0 || !PQexitPipelineMode(c->pg))
        return batch_broken(c, "leaving pipeline mode");
    if (first != 0 && failed_at != NULL)
        *failed_at = failed;
    return first;
}

int
sigil_db_exec_script(struct sigil_db_conn *c, const char *sql)
{
    PGresult *res;
    int r;

    if (c == NULL)
        return SIGIL_ERR_INVALID;
    conn_err_clear(c);
    if (sql == NULL) {
        conn_err(c, "", "sigil_db_exec_script: no script");
        return SIGIL_ERR_INVALID;
    }
    if ((r = conn_usable(c)) != 0)
        return r;
    /* PQexec stops at the first failing statement and returns its error */
    res = PQexec(c->pg, sql);
    r = check_result(c, res);
    PQclear(res);
    return r;
}

/* ---- transactions ---- */

bool
sigil_db_in_transaction(const struct sigil_db_conn *c)
{
    return c != NULL && c->pg != NULL && PQtransactionStatus(c->pg) == PQTRANS_INTRANS;
}

/* Rolls back whatever is open, keeping the error that made us roll back. */
static void
tx_rollback(struct sigil_db_conn *c)
{
    struct sigil_db_error keep = c->err;
    PGTransactionStatusType ts;

    if (c->pg == NULL)
        return;
    ts = PQtransactionStatus(c->pg);
    if (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR)
        PQclear(PQexec(c->pg, "ROLLBACK"));
    c->err = keep;
}

static unsigned
retry_delay_ms(int attempt)
{
    unsigned base = RETRY_BASE_MS << (attempt < 6 ? attempt : 6);

    struct timespec ts;

    if (base > RETRY_MAX_MS)
        base = RETRY_MAX_MS;
    /* jitter only has to differ between threads, not be unpredictable */
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return base / 2 + (unsigned)((unsigned long)ts.tv_nsec / 1000u % (base / 2 + 1));
}

int
sigil_db_tx(struct sigil_db_conn *c, enum sigil_db_isolation iso, int max_attempts,
            sigil_db_tx_fn body, void *arg)
{
    const char *begin;
    struct sigil_db_res *res = NULL;
    int r = SIGIL_ERR_INVALID;

    if (c == NULL)
        return SIGIL_ERR_INVALID;
    switch (iso) {
    case SIGIL_DB_READ_COMMITTED:
        begin = "BEGIN ISOLATION LEVEL READ COMMITTED";
        break;
    case SIGIL_DB_REPEATABLE_READ:
        begin = "BEGIN ISOLATION LEVEL REPEATABLE READ";
        break;
    case SIGIL_DB_SERIALIZABLE:
        begin = "BEGIN ISOLATION LEVEL SERIALIZABLE";
        break;
    default:
        conn_err(c, "", "sigil_db_tx: unknown isolation level");
        return SIGIL_ERR_INVALID;
    }
    if (body == NULL || max_attempts < 1) {
        conn_err(c, "", "sigil_db_tx: no body or no attempts");
        return SIGIL_ERR_INVALID;
    }
    if (c->pg != NULL && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        conn_err(c, "", "sigil_db_tx: a transaction is already open (nesting is a bug)");
        return SIGIL_ERR_STATE;
    }
    for (int attempt = 1; attempt <= max_attempts; attempt++) {
        if ((r = sigil_db_exec(c, begin, NULL, 0, NULL)) != 0)
            return r;
        conn_err_clear(c);
        r = body(c, arg, attempt);
        if (r == 0 && PQtransactionStatus(c->pg) == PQTRANS_INERROR) {
            /* COMMIT would quietly roll back; the body swallowed a failed statement */
            conn_err(c, "", "sigil_db_tx: the body returned success after a failed statement");
            r = SIGIL_ERR_INTERNAL;
        } else if (r == 0 && PQtransactionStatus(c->pg) != PQTRANS_INTRANS) {
            conn_err(c, "", "sigil_db_tx: the body ended the transaction itself");
            r = PQstatus(c->pg) == CONNECTION_OK ? SIGIL_ERR_INTERNAL : SIGIL_ERR_IO;
        } else if (r == 0) {
            /* serializable conflicts may surface only here */
            if ((r = sigil_db_exec(c, "COMMIT", NULL, 0, &res)) == 0) {
                const char *tag = PQcmdStatus(res->pg);
                if (tag == NULL || strcmp(tag, "COMMIT") != 0) {
                    conn_err(c, "", "sigil_db_tx: COMMIT answered %s", tag ? tag : "nothing");
                    r = SIGIL_ERR_INTERNAL;
                }
                sigil_db_res_free(res);
                res = NULL;
                if (r == 0)
                    return 0;
            }
        }
        tx_rollback(c);
        if (!sigil_db_sqlstate_retryable(c->err.sqlstate) || c->pg == NULL ||
            PQstatus(c->pg) != CONNECTION_OK)
            return r;
        if (attempt == max_attempts) {
            size_t n = strlen(c->err.message);
            snprintf(c->err.message + n, sizeof c->err.message - n, " (gave up after %d attempts)",
                     max_attempts);
            return r;
        }
        sleep_ms(retry_delay_ms(attempt));
    }
    return r;
}

/* ---- rows ---- */

size_t
sigil_db_res_rows(const struct sigil_db_res *r)
{
    return r == NULL ? 0 : (size_t)PQntuples(r->pg);
}

size_t
sigil_db_res_cols(const struct sigil_db_res *r)
{
    return r == NULL ? 0 : (size_t)PQnfields(r->pg);
}

int
sigil_db_res_col(const struct sigil_db_res *r, const char *name)
{
    int n;

    if (r == NULL || name == NULL)
        return -1;
    n = PQnfields(r->pg);
    /* exact names (PQfnumber would fold case and parse quotes) */
    for (int i = 0; i < n; i++) {
        if (strcmp(PQfname(r->pg, i), name) == 0)
            return i;
    }
    return -1;
}

static bool
in_range(const struct sigil_db_res *r, size_t row, size_t col)
{
    return r != NULL && row < (size_t)PQntuples(r->pg) && col < (size_t)PQnfields(r->pg);
}

bool
sigil_db_res_is_null(const struct sigil_db_res *r, size_t row, size_t col)
{
    return !in_range(r, row, col) || PQgetisnull(r->pg, (int)row, (int)col);
}

const char *
sigil_db_res_text(const struct sigil_db_res *r, size_t row, size_t col)
{
    if (sigil_db_res_is_null(r, row, col))
        return NULL;
    return PQgetvalue(r->pg, (int)row, (int)col);
}

int
sigil_db_res_int64(const struct sigil_db_res *r, size_t row, size_t col, int64_t *out)
{
    const char *s = sigil_db_res_text(r, row, col);

    if (s == NULL)
        return SIGIL_ERR_NOTFOUND;
    return sigil_db_parse_int64(s, out);
}

int
sigil_db_res_bool(const struct sigil_db_res *r, size_t row, size_t col, bool *out)
{
    const char *s = sigil_db_res_text(r, row, col);

    if (s == NULL)
        return SIGIL_ERR_NOTFOUND;
    if (strcmp(s, "t") == 0)
        *out = true;
    else if (strcmp(s, "f") == 0)
        *out = false;
    else
        return SIGIL_ERR_INVALID;
    return 0;
}

int
sigil_db_res_bytea(const struct sigil_db_res *r, size_t row, size_t col, uint8_t **out, size_t *len)
{
    const char *s = sigil_db_res_text(r, row, col);

    if (out != NULL)
        *out = NULL;
    if (len != NULL)
        *len = 0;
    if (s == NULL)
        return SIGIL_ERR_NOTFOUND;
    return sigil_db_parse_bytea(s, out, len);
}

int64_t
sigil_db_res_affected(const struct sigil_db_res *r)
{
    int64_t n;

    if (r == NULL || sigil_db_parse_int64(PQcmdTuples(r->pg), &n) != 0)
        return -1;
    return n;
}

void
sigil_db_res_free(struct sigil_db_res *r)
{
    if (r == NULL)
        return;
    PQclear(r->pg);
    free(r);
}

/* ---- the worker pool ---- */

/* After the work: a transaction left open is a bug of the work (rolled back, reported), a
 * connection left mid-query or broken is dropped so the next job starts clean. */
static void
conn_after_work(struct sigil_db_conn *c, int *status)
{
    if (c->pg == NULL)
        return;
    switch (PQtransactionStatus(c->pg)) {
    case PQTRANS_IDLE:
        break;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR:
        tx_rollback(c);
        if (*status == 0) {
            conn_err(c, "", "database work left a transaction open; rolled back");
            *status = SIGIL_ERR_INTERNAL;
        }
        break;
    default:
        conn_drop(c);
        return;
    }
    if (PQstatus(c->pg) != CONNECTION_OK)
        conn_drop(c);
}

static void
run_job(struct worker *w, struct job *j)
{
    struct sigil_db_conn *c = &w->conn;
    int r;

    conn_err_clear(c);
    if ((r = conn_ensure(c)) == 0) {
        r = j->work(c, j->arg);
        conn_after_work(c, &r);
    }
    if (r != 0 && j->err != NULL) {
        *j->err = c->err;
        if (j->err->message[0] == '\0')
            snprintf(j->err->message, sizeof j->err->message, "%s", sigil_strerror(r));
    }
    j->status = r;
}

static void
done_push(struct sigil_db *db, struct job *j)
{
    j->next = NULL;
    if (db->done_tail != NULL)
        db->done_tail->next = j;
    else
        db->done = j;
    db->done_tail = j;
}

static void *
worker_main(void *p)
{
    struct worker *w = p;
    struct sigil_db *db = w->db;
    struct job *j;

    pthread_mutex_lock(&db->mu);
    for (;;) {
        while (!db->stopping && db->todo == NULL)
            pthread_cond_wait(&db->cv, &db->mu);
        if (db->stopping)
            break;
        j = db->todo;
        if ((db->todo = j->next) == NULL)
            db->todo_tail = NULL;
        db->ntodo--;
        pthread_mutex_unlock(&db->mu);

        run_job(w, j);

        pthread_mutex_lock(&db->mu);
        done_push(db, j);
        uv_async_send(&db->async);
    }
    pthread_mutex_unlock(&db->mu);
    conn_drop(&w->conn);
    pthread_mutex_lock(&db->mu);
    db->nexited++;
    pthread_mutex_unlock(&db->mu);
    uv_async_send(&db->async);
    return NULL;
}

static void
db_free(struct sigil_db *db)
{
    sigil_db_closed_fn closed = db->closed;
    void *closed_arg = db->closed_arg;

    pthread_mutex_destroy(&db->mu);
    pthread_cond_destroy(&db->cv);
    free(db->workers);
    if (db->conninfo != NULL) {
        sodium_memzero(db->conninfo, strlen(db->conninfo));
        free(db->conninfo);
    }
    if (db->secret != NULL) {
        sodium_memzero(db->secret, strlen(db->secret));
        free(db->secret);
    }
    free(db);
    if (closed != NULL)
        closed(closed_arg);
}

static void
db_maybe_free(struct sigil_db *db)
{
    if (db->async_closed && db->listeners == NULL)
        db_free(db);
}

static void
on_async_closed(uv_handle_t *h)
{
    struct sigil_db *db = h->data;

    db->async_closed = true;
    db_maybe_free(db);
}

/* Joins the workers once all have left their loop; they have, so this does not wait. */
static void
join_workers(struct sigil_db *db)
{
    for (unsigned i = 0; i < db->nworkers; i++) {
        if (db->workers[i].started)
            pthread_join(db->workers[i].thread, NULL);
        db->workers[i].started = false;
    }
}

static void
on_async(uv_async_t *h)
{
    struct sigil_db *db = h->data;
    struct job *list, *next;
    bool finished;

    pthread_mutex_lock(&db->mu);
    list = db->done;
    db->done = db->done_tail = NULL;
    finished = db->stopping && db->nexited == db->nworkers;
    pthread_mutex_unlock(&db->mu);
    for (; list != NULL; list = next) {
        next = list->next;
        list->done(list->arg, list->status);
        free(list);
    }
    if (finished && !uv_is_closing((uv_handle_t *)&db->async)) {
        join_workers(db);
        uv_close((uv_handle_t *)&db->async, on_async_closed);
    }
}

int
sigil_db_open(uv_loop_t *loop, const char *conninfo, unsigned pool_size, struct sigil_db **out)
{
    struct sigil_db *db = NULL;
    int r;

    if (out == NULL)
        return SIGIL_ERR_INVALID;
    *out = NULL;
    if (loop == NULL || conninfo == NULL)
        return SIGIL_ERR_INVALID;
    if (pool_size < 1 || pool_size > SIGIL_DB_POOL_MAX)
        return SIGIL_ERR_RANGE;
    if ((db = calloc(1, sizeof *db)) == NULL)
        return SIGIL_ERR_NOMEM;
    db->loop = loop;
    if ((r = conninfo_secret(conninfo, &db->secret)) != 0 ||
        (db->conninfo = strdup(conninfo)) == NULL ||
        (db->workers = calloc(pool_size, sizeof *db->workers)) == NULL) {
        r = r != 0 ? r : SIGIL_ERR_NOMEM;
        goto fail;
    }
    db->nworkers = pool_size;
    if (pthread_mutex_init(&db->mu, NULL) != 0) {
        r = SIGIL_ERR_NOMEM;
        goto fail;
    }
    if (pthread_cond_init(&db->cv, NULL) != 0) {
        pthread_mutex_destroy(&db->mu);
        r = SIGIL_ERR_NOMEM;
        goto fail;
    }
    if (uv_async_init(loop, &db->async, on_async) != 0) {
        pthread_cond_destroy(&db->cv);
        pthread_mutex_destroy(&db->mu);
        r = SIGIL_ERR_IO;
        goto fail;
    }
    db->async.data = db;
    for (unsigned i = 0; i < pool_size; i++) {
        struct worker *w = &db->workers[i];
        w->db = db;
        w->conn.conninfo = db->conninfo;
        w->conn.secret = db->secret;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            /* the started ones exit; the rest of the pool is released on the loop */
            db->nworkers = i;
            pthread_mutex_lock(&db->mu);
            db->stopping = true;
            pthread_cond_broadcast(&db->cv);
            pthread_mutex_unlock(&db->mu);
            join_workers(db);
            uv_close((uv_handle_t *)&db->async, on_async_closed);
            return SIGIL_ERR_IO;
        }
        w->started = true;
    }
    *out = db;
    return 0;
fail:
    if (db->conninfo != NULL) {
        sodium_memzero(db->conninfo, strlen(db->conninfo));
        free(db->conninfo);
    }
    if (db->secret != NULL) {
        sodium_memzero(db->secret, strlen(db->secret));
        free(db->secret);
    }
    free(db->workers);
    free(db);
    return r;
}

int
sigil_db_submit(struct sigil_db *db, sigil_db_work_fn work, sigil_db_done_fn done, void *arg,
                struct sigil_db_error *err)
{
    struct job *j;
    int r = 0;

    if (db == NULL || work == NULL || done == NULL)
        return SIGIL_ERR_INVALID;
    if ((j = calloc(1, sizeof *j)) == NULL)
        return SIGIL_ERR_NOMEM;
    j->work = work;
    j->done = done;
    j->arg = arg;
    j->err = err;
    if (err != NULL)
        memset(err, 0, sizeof *err);
    pthread_mutex_lock(&db->mu);
    if (db->stopping)
        r = SIGIL_ERR_STATE;
    else if (db->ntodo >= SIGIL_DB_QUEUE_MAX)
        r = SIGIL_ERR_RANGE;
    if (r == 0) {
        if (db->todo_tail != NULL)
            db->todo_tail->next = j;
        else
            db->todo = j;
        db->todo_tail = j;
        db->ntodo++;
        pthread_cond_signal(&db->cv);
    }
    pthread_mutex_unlock(&db->mu);
    if (r != 0)
        free(j);
    return r;
}

static int
ping_work(struct sigil_db_conn *c, void *arg)
{
    (void)arg;
    return sigil_db_exec(c, "SELECT 1", NULL, 0, NULL);
}

int
sigil_db_ping(struct sigil_db *db, struct sigil_db_error *err, sigil_db_done_fn done, void *arg)
{
    return sigil_db_submit(db, ping_work, done, arg, err);
}

static void listener_stop(struct sigil_db_listener *l);

void
sigil_db_close(struct sigil_db *db, sigil_db_closed_fn closed, void *arg)
{
    struct job *j, *next;

    if (db == NULL)
        return;
    pthread_mutex_lock(&db->mu);
    if (db->stopping) {
        pthread_mutex_unlock(&db->mu);
        return;
    }
    db->stopping = true;
    db->closed = closed;
    db->closed_arg = arg;
    /* queued work never runs; its done is called from on_async, not from inside close */
    for (j = db->todo; j != NULL; j = next) {
        next = j->next;
        j->status = SIGIL_ERR_CANCELLED;
        if (j->err != NULL)
            snprintf(j->err->message, sizeof j->err->message, "database pool closed");
        done_push(db, j);
    }
    db->todo = db->todo_tail = NULL;
    db->ntodo = 0;
    pthread_cond_broadcast(&db->cv);
    pthread_mutex_unlock(&db->mu);
    /* listeners are unlinked and freed from close callbacks, never inside listener_stop */
    for (struct sigil_db_listener *l = db->listeners; l != NULL; l = l->next)
        listener_stop(l);
    uv_async_send(&db->async);
}

/* ---- LISTEN ---- */

static void listener_connect(struct sigil_db_listener *l);

static void
listener_unref(struct sigil_db_listener *l)
{
    struct sigil_db *db = l->db;

    if (--l->refs > 0 || !l->stopped)
        return;
    for (struct sigil_db_listener **pp = &db->listeners; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    free(l);
    db_maybe_free(db);
}

static void
on_poll_closed(uv_handle_t *h)
{
    struct sigil_db_listener *l = h->data;

    free(h);
    listener_unref(l);
}

static void
on_timer_closed(uv_handle_t *h)
{
    listener_unref(h->data);
}

/* Stops watching and closes the connection (the poll handle first: libuv must not watch a
 * descriptor that PQfinish closes). */
static void
listener_disconnect(struct sigil_db_listener *l)
{
    if (l->poll != NULL) {
        uv_poll_stop(l->poll);
        uv_close((uv_handle_t *)l->poll, on_poll_closed);
        l->poll = NULL;
    }
    if (l->pg != NULL)
        PQfinish(l->pg);
    l->pg = NULL;
}

static void
on_retry_timer(uv_timer_t *t)
{
    listener_connect(t->data);
}

/* Reports the outage once, then tries again after the backoff. */
static void
listener_down(struct sigil_db_listener *l, const char *why)
{
    char msg[SIGIL_DB_ERRMSG_MAX];

    /* why may be PQerrorMessage of the connection about to be closed: copy it first */
    sigil_db_message_clean(msg, sizeof msg, why, l->db->secret);
    listener_disconnect(l);
    if (!l->lost_reported) {
        l->lost_reported = true;
        l->cb(l->arg, SIGIL_DB_LISTEN_LOST, msg);
    }
    if (l->stopped)
        return;
    l->backoff_ms = l->backoff_ms == 0 ? BACKOFF_MIN_MS : l->backoff_ms * 2;
    if (l->backoff_ms > BACKOFF_MAX_MS)
        l->backoff_ms = BACKOFF_MAX_MS;
    uv_timer_start(&l->timer, on_retry_timer, l->backoff_ms, 0);
}

static void
on_listen_readable(uv_poll_t *h, int status, int events)
{
    struct sigil_db_listener *l = h->data;
    PGnotify *n;

    (void)events;
    if (l->stopped || l->pg == NULL)
        return;
    if (status < 0) {
        listener_down(l, uv_strerror(status));
        return;
    }
    /* Over TLS, one read may leave further records inside OpenSSL where poll cannot see
     * them: consume again while a round still brought notifications. */
    for (int round = 0; round < 64; round++) {
        int got = 0;
        if (!PQconsumeInput(l->pg)) {
            listener_down(l, PQerrorMessage(l->pg));
            return;
        }
        while (!l->stopped && l->pg != NULL && (n = PQnotifies(l->pg)) != NULL) {
            got++;
            l->cb(l->arg, SIGIL_DB_LISTEN_NOTIFY, n->extra != NULL ? n->extra : "");
            PQfreemem(n);
        }
        if (l->stopped || l->pg == NULL)
            return;
        if (PQstatus(l->pg) != CONNECTION_OK) {
            listener_down(l, PQerrorMessage(l->pg));
            return;
        }
        if (got == 0)
            break;
    }
}

/* On libuv's threadpool: connect and LISTEN, blocking, so the loop never waits on either. */
static void
listen_connect_work(uv_work_t *w)
{
    struct sigil_db_listener *l = w->data;
    char *ident = NULL, *sql = NULL;
    PGresult *res = NULL;
    PGconn *pg;

    l->work_pg = NULL;
    l->work_err[0] = '\0';
    if ((pg = pg_connect(l->db->conninfo, l->db->secret, l->work_err, sizeof l->work_err)) == NULL)
        return;
    if ((ident = PQescapeIdentifier(pg, l->channel, strlen(l->channel))) == NULL ||
        (sql = malloc(strlen(ident) + sizeof "LISTEN ")) == NULL) {
        sigil_db_message_clean(l->work_err, sizeof l->work_err, "out of memory", NULL);
        goto out;
    }
    snprintf(sql, strlen(ident) + sizeof "LISTEN ", "LISTEN %s", ident);
    res = PQexec(pg, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        sigil_db_message_clean(l->work_err, sizeof l->work_err, PQerrorMessage(pg), l->db->secret);
        goto out;
    }
    /* from here on the loop only reads; nothing may ever block on a write */
    if (PQsetnonblocking(pg, 1) != 0) {
        sigil_db_message_clean(l->work_err, sizeof l->work_err, PQerrorMessage(pg), NULL);
        goto out;
    }
    l->work_pg = pg;
    pg = NULL;
out:
    PQclear(res);
    if (ident != NULL)
        PQfreemem(ident);
    free(sql);
    if (pg != NULL)
        PQfinish(pg);
}

static void
listen_connect_done(uv_work_t *w, int status)
{
    struct sigil_db_listener *l = w->data;
    PGconn *pg = l->work_pg;

    (void)status;
    l->work_pg = NULL;
    l->working = false;
    if (l->stopped) {
        if (pg != NULL)
            PQfinish(pg);
        listener_unref(l);
        return;
    }
    if (pg == NULL) {
        listener_down(l, l->work_err[0] != '\0' ? l->work_err : "connection failed");
        listener_unref(l);
        return;
    }
    l->pg = pg;
    if ((l->poll = malloc(sizeof *l->poll)) == NULL ||
        uv_poll_init(l->db->loop, l->poll, PQsocket(pg)) != 0) {
        free(l->poll);
        l->poll = NULL;
        listener_down(l, "cannot watch the LISTEN connection");
        listener_unref(l);
        return;
    }
    l->poll->data = l;
    l->refs++;
    uv_poll_start(l->poll, UV_READABLE, on_listen_readable);
    l->backoff_ms = 0;
    l->lost_reported = false;
    l->cb(l->arg, SIGIL_DB_LISTEN_READY, "");
    /* NOTIFYs that arrived between LISTEN and the poll start are already buffered */
    if (!l->stopped && l->pg != NULL)
        on_listen_readable(l->poll, 0, UV_READABLE);
    listener_unref(l);
}

static void
listener_connect(struct sigil_db_listener *l)
{
    if (l->stopped || l->working)
        return;
    l->working = true;
    l->refs++;
    l->work.data = l;
    if (uv_queue_work(l->db->loop, &l->work, listen_connect_work, listen_connect_done) != 0) {
        l->working = false;
        listener_down(l, "cannot queue the LISTEN connection");
        listener_unref(l);
    }
}

static void
listener_stop(struct sigil_db_listener *l)
{
    if (l->stopped)
        return;
    l->stopped = true;
    listener_disconnect(l);
    uv_timer_stop(&l->timer);
    /* the timer's reference is dropped once it is closed; a running connect drops its own */
    uv_close((uv_handle_t *)&l->timer, on_timer_closed);
}

int
sigil_db_listen(struct sigil_db *db, const char *channel, sigil_db_listen_fn cb, void *arg,
                struct sigil_db_listener **out)
{
    struct sigil_db_listener *l;

    if (out != NULL)
        *out = NULL;
    if (db == NULL || cb == NULL || !sigil_db_channel_valid(channel))
        return SIGIL_ERR_INVALID;
    if (db->stopping)
        return SIGIL_ERR_STATE;
    if ((l = calloc(1, sizeof *l)) == NULL)
        return SIGIL_ERR_NOMEM;
    l->db = db;
    snprintf(l->channel, sizeof l->channel, "%s", channel);
    l->cb = cb;
    l->arg = arg;
    if (uv_timer_init(db->loop, &l->timer) != 0) {
        free(l);
        return SIGIL_ERR_IO;
    }
    l->timer.data = l;
    l->refs = 1; /* the timer */
    l->next = db->listeners;
    db->listeners = l;
    listener_connect(l);
    if (out != NULL)
        *out = l;
    return 0;
}

void
sigil_db_unlisten(struct sigil_db_listener *l)
{
    if (l != NULL)
        listener_stop(l);
}
