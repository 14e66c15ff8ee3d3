/* PostgreSQL access behind one small interface (STYLE.md 6): a pool of worker threads, each
 * with its own libpq connection, runs database work off the event loop and posts the result
 * back to it (STYLE.md 5); a LISTEN connection delivers NOTIFY payloads on the loop. */
#ifndef SIGIL_DB_H
#define SIGIL_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

/* A pool of worker threads with one connection each; lives on one libuv loop. */
struct sigil_db;
/* One connection: a worker's (valid only inside a work function) or a standalone one. */
struct sigil_db_conn;
/* The rows of one query; freed with sigil_db_res_free. */
struct sigil_db_res;
/* A LISTEN subscription on its own connection. */
struct sigil_db_listener;

/* Hard caps: workers per pool, queued jobs per pool, bytes of one text or binary parameter. */
#define SIGIL_DB_POOL_MAX 64
#define SIGIL_DB_QUEUE_MAX 4096
#define SIGIL_DB_PARAM_MAX (64u * 1024 * 1024)
#define SIGIL_DB_ERRMSG_MAX 320

/* What went wrong in the last failed call on a connection. Never holds the conninfo, the
 * password or the DETAIL of a server error (DETAIL echoes row values). */
struct sigil_db_error {
    char sqlstate[6];                  /* five characters, or "" if not from the server */
    char message[SIGIL_DB_ERRMSG_MAX]; /* one line, printable */
};

/* Work run on a worker thread with its connection; returns 0 or a negative SIGIL_ERR_*. The
 * connection serves other work next: leave the session as found (SET LOCAL, not SET; no
 * LISTEN, no temporary tables kept); a transaction left open is rolled back and reported. */
typedef int (*sigil_db_work_fn)(struct sigil_db_conn *c, void *arg);
/* Called on the loop thread once the work ran (status: what it returned), or was never run
 * (SIGIL_ERR_IO: no connection, see the work's error; SIGIL_ERR_CANCELLED: pool closed). */
typedef void (*sigil_db_done_fn)(void *arg, int status);
/* Called on the loop thread once sigil_db_close has released everything. */
typedef void (*sigil_db_closed_fn)(void *arg);

/* Starts a pool of pool_size (1..SIGIL_DB_POOL_MAX) workers on loop; connects lazily. Checks
 * the conninfo's syntax without echoing it (it may hold a password). Returns 0 and *out (free
 * with sigil_db_close), SIGIL_ERR_INVALID, SIGIL_ERR_RANGE, SIGIL_ERR_NOMEM or SIGIL_ERR_IO. */
int sigil_db_open(uv_loop_t *loop, const char *conninfo, unsigned pool_size, struct sigil_db **out);
/* Queues work for the next free worker; done runs on the loop afterwards, exactly once if this
 * returns 0. If err is not NULL (it must live until done) it receives the failure's text when
 * the status is not 0. Returns 0, SIGIL_ERR_RANGE (queue full), SIGIL_ERR_STATE (closing) or
 * SIGIL_ERR_NOMEM. Call on the loop thread. */
int sigil_db_submit(struct sigil_db *db, sigil_db_work_fn work, sigil_db_done_fn done, void *arg,
                    struct sigil_db_error *err);
/* Queues "SELECT 1" (the /ready probe): done gets 0 when a worker reached the database. If err
 * is not NULL it receives the failure's text (it must live until done). Returns as submit. */
int sigil_db_ping(struct sigil_db *db, struct sigil_db_error *err, sigil_db_done_fn done,
                  void *arg);
/* Shuts the pool down without blocking the loop: queued work gets SIGIL_ERR_CANCELLED, running
 * work finishes, listeners stop; closed (may be NULL) runs once all is freed. */
void sigil_db_close(struct sigil_db *db, sigil_db_closed_fn closed, void *arg);

/* Opens a standalone connection, blocking (tools, tests, startup; never on the loop). Returns
 * 0 and *out (free with sigil_db_disconnect), or SIGIL_ERR_IO/INVALID/NOMEM with the reason
 * in err (may be NULL). */
int sigil_db_connect(const char *conninfo, struct sigil_db_conn **out, struct sigil_db_error *err);
/* Closes a standalone connection and wipes its conninfo; NULL is allowed. */
void sigil_db_disconnect(struct sigil_db_conn *c);
/* Returns the error of the last failed call on c (valid until the next call on c). */
const struct sigil_db_error *sigil_db_conn_error(const struct sigil_db_conn *c);

/* One query parameter, sent as text (value NUL-terminated, len ignored) or binary (len bytes);
 * a NULL value is SQL NULL. The parameter's type is inferred by the server from the query. */
struct sigil_db_param {
    const void *value;
    size_t len;
    bool binary;
};
#define SIGIL_DB_TEXT(s) ((struct sigil_db_param){(s), 0, false})
#define SIGIL_DB_BINARY(p, n) ((struct sigil_db_param){(p), (n), true})
#define SIGIL_DB_NULL ((struct sigil_db_param){NULL, 0, false})

/* Runs one statement with $1..$n parameters (extended protocol: one statement only, so a
 * parameter can never become SQL). Returns 0 and, if res is not NULL, the rows (caller frees);
 * or a negative SIGIL_ERR_* mapped from the SQLSTATE, with sigil_db_conn_error(c) set. */
int sigil_db_exec(struct sigil_db_conn *c, const char *sql, const struct sigil_db_param *params,
                  size_t nparams, struct sigil_db_res **res);
/* Runs a script of several statements without parameters (simple protocol; migrations only).
 * Returns 0 or a negative SIGIL_ERR_* with sigil_db_conn_error(c) set. */
int sigil_db_exec_script(struct sigil_db_conn *c, const char *sql);

/* One statement of a batch. */
struct sigil_db_stmt {
    const char *sql;
    const struct sigil_db_param *params;
    size_t nparams;
};
/* Runs n statements in pipeline mode: sent back to back, one round trip for the lot, atomic
 * (one implicit transaction, or part of the caller's sigil_db_tx). Rows they return are
 * dropped: for writes. Returns 0, or the first failure with sigil_db_conn_error(c) set and,
 * if failed_at is not NULL, the index of the statement that failed (the later ones were
 * skipped and nothing was committed). */
int sigil_db_exec_batch(struct sigil_db_conn *c, const struct sigil_db_stmt *stmts, size_t n,
                        size_t *failed_at);

/* Returns true if c is inside a transaction block that has not failed (for code that runs
 * scripts inside sigil_db_tx and must notice a script that ended the transaction itself). */
bool sigil_db_in_transaction(const struct sigil_db_conn *c);

/* Isolation level of a transaction run by sigil_db_tx. */
enum sigil_db_isolation {
    SIGIL_DB_READ_COMMITTED,
    SIGIL_DB_REPEATABLE_READ,
    SIGIL_DB_SERIALIZABLE,
};
/* A transaction's body; attempt counts from 1. Returns 0 to commit, negative to roll back. */
typedef int (*sigil_db_tx_fn)(struct sigil_db_conn *c, void *arg, int attempt);
/* Runs body between BEGIN and COMMIT; on a serialization failure or deadlock (SQLSTATE 40001,
 * 40P01, from the body or from COMMIT) rolls back and runs it again, up to max_attempts times
 * in all. Returns 0 once committed, or the last failure (SIGIL_ERR_CANCELLED if the conflicts
 * outlasted the attempts) with sigil_db_conn_error(c) set and the transaction rolled back. */
int sigil_db_tx(struct sigil_db_conn *c, enum sigil_db_isolation iso, int max_attempts,
                sigil_db_tx_fn body, void *arg);

/* Returns the number of rows (0 for NULL). */
size_t sigil_db_res_rows(const struct sigil_db_res *r);
/* Returns the number of columns (0 for NULL). */
size_t sigil_db_res_cols(const struct sigil_db_res *r);
/* Returns the index of the column named name, or -1. */
int sigil_db_res_col(const struct sigil_db_res *r, const char *name);
/* Returns true if the value is SQL NULL or outside the result. */
bool sigil_db_res_is_null(const struct sigil_db_res *r, size_t row, size_t col);
/* Returns the text of a value (owned by r), or NULL if SQL NULL or outside the result. */
const char *sigil_db_res_text(const struct sigil_db_res *r, size_t row, size_t col);
/* Reads an integer value; returns 0, SIGIL_ERR_NOTFOUND (NULL/outside) or SIGIL_ERR_INVALID. */
int sigil_db_res_int64(const struct sigil_db_res *r, size_t row, size_t col, int64_t *out);
/* Reads a boolean value; returns 0, SIGIL_ERR_NOTFOUND or SIGIL_ERR_INVALID. */
int sigil_db_res_bool(const struct sigil_db_res *r, size_t row, size_t col, bool *out);
/* Reads a bytea value into a new buffer (caller frees; a value may be a secret's hash, the
 * caller decides whether to wipe it). Returns 0, NOTFOUND, INVALID or NOMEM. */
int sigil_db_res_bytea(const struct sigil_db_res *r, size_t row, size_t col, uint8_t **out,
                       size_t *len);
/* Rows a command affected (INSERT/UPDATE/DELETE...), or -1 if it reports none. */
int64_t sigil_db_res_affected(const struct sigil_db_res *r);
/* Frees rows; NULL is allowed. */
void sigil_db_res_free(struct sigil_db_res *r);

/* What a listener reports on the loop thread. */
enum sigil_db_listen_event {
    SIGIL_DB_LISTEN_READY,  /* subscribed (first time or again after a reconnect): anything
                               sent before may have been missed, reload from your revision */
    SIGIL_DB_LISTEN_NOTIFY, /* payload is a notification's payload */
    SIGIL_DB_LISTEN_LOST,   /* the connection failed (payload: why); retrying with backoff */
};
/* A listener's callback; payload is valid during the call only (may be ""). */
typedef void (*sigil_db_listen_fn)(void *arg, enum sigil_db_listen_event ev, const char *payload);

/* LISTENs on channel ([a-z_][a-z0-9_]{0,62}) over a dedicated connection of db's conninfo,
 * connecting off the loop and reconnecting with backoff. Returns 0 and *out (stop it with
 * sigil_db_unlisten, or let sigil_db_close stop it: *out is invalid after that), or
 * SIGIL_ERR_INVALID, STATE (pool closing), NOMEM or IO. */
int sigil_db_listen(struct sigil_db *db, const char *channel, sigil_db_listen_fn cb, void *arg,
                    struct sigil_db_listener **out);
/* Stops a listener: no callback after this returns; memory is released on the loop. */
void sigil_db_unlisten(struct sigil_db_listener *l);

/* Pure helpers, public for the modules that read rows and for the tests. */

/* Parses a base-10 int64 as PostgreSQL prints it ("-12"; no spaces, '+' or leading zeros);
 * returns 0, SIGIL_ERR_INVALID or SIGIL_ERR_RANGE (overflow). */
int sigil_db_parse_int64(const char *s, int64_t *out);
/* Parses a bytea in hex output format ("\x0aff"); returns 0 and a new buffer (caller frees;
 * an empty value gives a non-NULL buffer of length 0), SIGIL_ERR_INVALID or NOMEM. */
int sigil_db_parse_bytea(const char *s, uint8_t **out, size_t *len);
/* Maps a five-character SQLSTATE to a SIGIL_ERR_* (never 0); unknown codes give SIGIL_ERR_IO. */
int sigil_db_sqlstate_err(const char *sqlstate);
/* Returns true for the SQLSTATEs a transaction is retried on (40001, 40P01). */
bool sigil_db_sqlstate_retryable(const char *sqlstate);
/* Returns true if name is a channel sigil_db_listen accepts. */
bool sigil_db_channel_valid(const char *name);
/* Copies msg into dst (cap > 0) as one printable line: control bytes become spaces, runs of
 * spaces collapse, and every occurrence of secret (if not NULL or empty) becomes "***". */
void sigil_db_message_clean(char *dst, size_t cap, const char *msg, const char *secret);
/* Describes a conninfo for logs with only its non-secret keys ("host=/run/pg dbname=sigil
 * user=sigil"); returns a new string (caller frees) or NULL if it does not parse or on OOM. */
char *sigil_db_conninfo_describe(const char *conninfo);

#endif
