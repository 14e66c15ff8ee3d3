/* Schema migrations: numbered SQL files applied in order, each in one transaction under the
 * advisory lock every migrator (and test/sql/run) takes, so servers starting together neither
 * deadlock nor apply twice; the recorded sha256 refuses edited history, the highest recorded
 * version refuses a binary older than its database. */
#include "migrate.h"

#include "sigil/encoding.h"
#include "sigil/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define STR_(x) #x
#define STR(x) STR_(x)
#define LOCK_SQL "SELECT pg_advisory_xact_lock(" STR(SIGIL_MIGRATE_LOCK_KEY) ")"
/* The same bookkeeping table test/sql/run creates. */
#define TABLE_SQL                                                                                  \
    "CREATE TABLE IF NOT EXISTS sigil_schema_migrations ("                                         \
    " version integer PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL,"                      \
    " applied_at timestamptz NOT NULL DEFAULT now())"
#define VERSION_DIGITS 4
#define VERSION_MAX 9999
/* Deadlocks with live traffic (DDL against running queries) are worth another go. */
#define TX_ATTEMPTS 3

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

int
sigil_migrate_parse_name(const char *file, int *version, char name[SIGIL_MIGRATE_NAME_MAX + 1],
                         const char **why)
{
    static const char suffix[] = ".sql";
    const size_t slen = sizeof suffix - 1,
                 longest = VERSION_DIGITS + 1 + SIGIL_MIGRATE_NAME_MAX + slen;
    const char *ignored;
    size_t len, nlen;
    int v = 0;

    if (why == NULL)
        why = &ignored;
    if (file == NULL || version == NULL || name == NULL) {
        *why = "migration file name: missing";
        return SIGIL_ERR_INVALID;
    }
    len = strnlen(file, longest + 1);
    if (len > longest) {
        *why = "migration file name: the name part is over 64 bytes";
        return SIGIL_ERR_INVALID;
    }
    if (len < slen || memcmp(file + len - slen, suffix, slen) != 0) {
        *why = "migration file name: must end in .sql";
        return SIGIL_ERR_INVALID;
    }
    for (size_t i = 0; i < VERSION_DIGITS; i++) {
        if (i >= len - slen || !is_digit(file[i])) {
            *why = "migration file name: must start with a four-digit version (NNNN_name.sql)";
            return SIGIL_ERR_INVALID;
        }
        v = v * 10 + (file[i] - '0');
    }
    if (file[VERSION_DIGITS] != '_') {
        *why = "migration file name: the four-digit version must be followed by '_'";
        return SIGIL_ERR_INVALID;
    }
    if (v == 0) {
        *why = "migration file name: versions start at 0001";
        return SIGIL_ERR_INVALID;
    }
    nlen = len - slen - VERSION_DIGITS - 1;
    if (nlen == 0) {
        *why = "migration file name: the name after NNNN_ is empty";
        return SIGIL_ERR_INVALID;
    }
    for (size_t i = 0; i < nlen; i++) {
        char c = file[VERSION_DIGITS + 1 + i];
        if (!((c >= 'a' && c <= 'z') || is_digit(c) || c == '_')) {
            *why = "migration file name: the name may use only a-z, 0-9 and _";
            return SIGIL_ERR_INVALID;
        }
    }
    memcpy(name, file + VERSION_DIGITS + 1, nlen);
    name[nlen] = '\0';
    *version = v;
    return 0;
}

static bool
ends_with_sql(const char *s)
{
    size_t n = strlen(s);

    return n >= 4 && strcmp(s + n - 4, ".sql") == 0;
}

/* Reads one migration file (a regular file under the size cap, no NUL byte) and hashes it. */
static int
read_migration(int dirfd, const char *dir, const char *file, struct sigil_migration *m, char *err,
               size_t errlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    struct stat st;
    size_t len = 0, cap = 0;
    char *buf = NULL;
    int fd = -1, r = SIGIL_ERR_IO;
    ssize_t got;

    if ((fd = openat(dirfd, file, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &st) != 0) {
        set_err(err, errlen, "%s/%s: cannot open: %s", dir, file, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s/%s: not a regular file", dir, file);
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    for (;;) {
        if (len == cap) {
            size_t ncap = cap == 0 ? 65536 : cap * 2;
            char *nbuf;
            if (cap > SIGIL_MIGRATE_FILE_MAX) {
                set_err(err, errlen, "%s/%s: over %u bytes", dir, file, SIGIL_MIGRATE_FILE_MAX);
                r = SIGIL_ERR_RANGE;
                goto out;
            }
            if ((nbuf = realloc(buf, ncap + 1)) == NULL) {
                set_err(err, errlen, "%s/%s: out of memory", dir, file);
                r = SIGIL_ERR_NOMEM;
                goto out;
            }
            buf = nbuf;
            cap = ncap;
        }
        if ((got = read(fd, buf + len, cap - len)) < 0) {
            if (errno == EINTR)
                continue;
            set_err(err, errlen, "%s/%s: read: %s", dir, file, strerror(errno));
            goto out;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    if (len > SIGIL_MIGRATE_FILE_MAX) {
        set_err(err, errlen, "%s/%s: over %u bytes", dir, file, SIGIL_MIGRATE_FILE_MAX);
        r = SIGIL_ERR_RANGE;
        goto out;
    }
    if (len == 0 || memchr(buf, '\0', len) != NULL) {
        set_err(err, errlen, "%s/%s: empty, or holds a NUL byte", dir, file);
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    buf[len] = '\0';
    if (EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        set_err(err, errlen, "%s/%s: SHA-256 failed", dir, file);
        r = SIGIL_ERR_CRYPTO;
        goto out;
    }
    sigil_hex_encode(md, mdlen, m->sha256);
    m->sql = buf;
    buf = NULL;
    r = 0;
out:
    free(buf);
    if (fd >= 0)
        close(fd);
    return r;
}

static int
by_version(const void *a, const void *b)
{
    const struct sigil_migration *x = a, *y = b;

    return (x->version > y->version) - (x->version < y->version);
}

void
sigil_migrate_set_free(struct sigil_migration_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        free(set->m[i].sql);
    free(set->m);
    set->m = NULL;
    set->n = 0;
}

int
sigil_migrate_load(const char *dir, struct sigil_migration_set *set, char *err, size_t errlen)
{
    struct sigil_migration_set s = {0};
    size_t cap = 0;
    struct dirent *ent;
    DIR *d = NULL;
    int r = 0;

    if (set == NULL || dir == NULL) {
        set_err(err, errlen, "migrations: no directory");
        return SIGIL_ERR_INVALID;
    }
    set->m = NULL;
    set->n = 0;
    if ((d = opendir(dir)) == NULL) {
        set_err(err, errlen, "migrations: cannot open directory %s: %s", dir, strerror(errno));
        return SIGIL_ERR_IO;
    }
    while ((errno = 0, ent = readdir(d)) != NULL) {
        struct sigil_migration m = {0};
        const char *why = NULL;
        /* editor backups, READMEs and dot files are not migrations; a *.sql always is */
        if (ent->d_name[0] == '.' || !ends_with_sql(ent->d_name))
            continue;
        if (sigil_migrate_parse_name(ent->d_name, &m.version, m.name, &why) != 0) {
            set_err(err, errlen, "%s/%s: %s", dir, ent->d_name, why);
            r = SIGIL_ERR_INVALID;
            goto out;
        }
        if (s.n == VERSION_MAX) {
            set_err(err, errlen, "%s: more than %d migrations", dir, VERSION_MAX);
            r = SIGIL_ERR_RANGE;
            goto out;
        }
        if (s.n == cap) {
            size_t ncap = cap == 0 ? 16 : cap * 2;
            struct sigil_migration *nm = realloc(s.m, ncap * sizeof *nm);
            if (nm == NULL) {
                set_err(err, errlen, "migrations: out of memory");
                r = SIGIL_ERR_NOMEM;
                goto out;
            }
            s.m = nm;
            cap = ncap;
        }
        if ((r = read_migration(dirfd(d), dir, ent->d_name, &m, err, errlen)) != 0)
            goto out;
        s.m[s.n++] = m;
    }
    if (errno != 0) {
        set_err(err, errlen, "migrations: reading directory %s: %s", dir, strerror(errno));
        r = SIGIL_ERR_IO;
        goto out;
    }
    if (s.n == 0) {
        set_err(err, errlen, "migrations: no NNNN_name.sql files in %s", dir);
        r = SIGIL_ERR_NOTFOUND;
        goto out;
    }
    qsort(s.m, s.n, sizeof *s.m, by_version);
    for (size_t i = 0; i < s.n; i++) {
        if (i > 0 && s.m[i].version == s.m[i - 1].version) {
            set_err(err, errlen, "%s: two migrations with version %04d (%04d_%s.sql, %04d_%s.sql)",
                    dir, s.m[i].version, s.m[i - 1].version, s.m[i - 1].name, s.m[i].version,
                    s.m[i].name);
            r = SIGIL_ERR_INVALID;
            goto out;
        }
        if (s.m[i].version != (int)i + 1) {
            /* a gap is a missing file: applying past it would build a schema nobody tested */
            set_err(err, errlen, "%s: migration %04d is missing (next is %04d_%s.sql)", dir,
                    (int)i + 1, s.m[i].version, s.m[i].name);
            r = SIGIL_ERR_INVALID;
            goto out;
        }
    }
    *set = s;
    s.m = NULL;
    s.n = 0;
out:
    sigil_migrate_set_free(&s);
    if (d != NULL)
        closedir(d);
    return r;
}

/* The state one transaction of the run works on. */
struct step {
    const struct sigil_migration_set *set;
    const struct sigil_migration *m; /* the migration to apply, or NULL for a check */
    struct sigil_migrate_report *rep;
    int version; /* highest version recorded (check) */
    bool did;    /* this attempt applied m */
};

static void
db_err(struct sigil_db_conn *c, struct sigil_migrate_report *rep, const char *what)
{
    set_err(rep->error, sizeof rep->error, "%s: %s", what, sigil_db_conn_error(c)->message);
}

static int
lock(struct sigil_db_conn *c, struct sigil_migrate_report *rep)
{
    int r;

    if ((r = sigil_db_exec(c, LOCK_SQL, NULL, 0, NULL)) != 0)
        db_err(c, rep, "migrations: taking advisory lock " STR(SIGIL_MIGRATE_LOCK_KEY));
    return r;
}

/* Compares what the database recorded with the files: a newer database or an edited or
 * renamed migration refuses the run. Runs under the lock, after creating the table. */
static int
check_recorded(struct sigil_db_conn *c, struct step *st)
{
    const struct sigil_migration_set *set = st->set;
    struct sigil_migrate_report *rep = st->rep;
    struct sigil_db_res *res = NULL;
    int64_t v, max = 0;
    size_t rows;
    int r;

    if ((r = sigil_db_exec(c,
                           "SELECT version, name, sha256 FROM sigil_schema_migrations "
                           "ORDER BY version",
                           NULL, 0, &res)) != 0) {
        db_err(c, rep, "migrations: reading sigil_schema_migrations");
        goto out;
    }
    rows = sigil_db_res_rows(res);
    if (rows > 0 && (r = sigil_db_res_int64(res, rows - 1, 0, &max)) != 0) {
        set_err(rep->error, sizeof rep->error,
                "migrations: unreadable version in "
                "sigil_schema_migrations");
        goto out;
    }
    if (max > (int64_t)set->n) {
        const char *name = sigil_db_res_text(res, rows - 1, 1);
        set_err(rep->error, sizeof rep->error,
                "migrations: the database schema is at version %lld (%s), newer than the "
                "%zu migrations this binary knows: refusing to start rather than run on a "
                "schema it does not understand (downgrade protection); run a sigil-server at "
                "least as new as the one that migrated this database",
                (long long)max, name != NULL ? name : "?", set->n);
        r = SIGIL_ERR_UNSUPPORTED;
        goto out;
    }
    for (size_t i = 0; i < rows; i++) {
        const char *name = sigil_db_res_text(res, i, 1), *sum = sigil_db_res_text(res, i, 2);
        const struct sigil_migration *m;
        if ((r = sigil_db_res_int64(res, i, 0, &v)) != 0 || v != (int64_t)i + 1) {
            set_err(rep->error, sizeof rep->error,
                    "migrations: sigil_schema_migrations does not hold versions 1..%lld in "
                    "order (row %zu): the table was edited by hand; refusing to migrate",
                    (long long)max, i + 1);
            r = SIGIL_ERR_VERIFY;
            goto out;
        }
        m = &set->m[i];
        if (name == NULL || strcmp(name, m->name) != 0) {
            set_err(rep->error, sizeof rep->error,
                    "migrations: version %04lld was applied as \"%s\" but the file is now "
                    "%04d_%s.sql: refusing to start; restore the file's released name",
                    (long long)v, name != NULL ? name : "", m->version, m->name);
            r = SIGIL_ERR_VERIFY;
            goto out;
        }
        if (sum == NULL || strcmp(sum, m->sha256) != 0) {
            set_err(rep->error, sizeof rep->error,
                    "migrations: %04d_%s.sql was changed after it was applied (recorded sha256 "
                    "%.16s..., file %.16s...): refusing to start; restore the file as released "
                    "and put the schema change in a new migration",
                    m->version, m->name, sum != NULL ? sum : "", m->sha256);
            r = SIGIL_ERR_VERIFY;
            goto out;
        }
    }
    st->version = (int)max;
out:
    sigil_db_res_free(res);
    return r;
}

/* First transaction: the bookkeeping table (created under the lock, so two first runs do not
 * race on it), then the check. */
static int
tx_prepare(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct step *st = arg;
    int r;

    (void)attempt;
    if ((r = lock(c, st->rep)) != 0)
        return r;
    if ((r = sigil_db_exec(c, TABLE_SQL, NULL, 0, NULL)) != 0) {
        db_err(c, st->rep, "migrations: creating sigil_schema_migrations");
        return r;
    }
    return check_recorded(c, st);
}

static int
tx_check(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct step *st = arg;
    int r;

    (void)attempt;
    if ((r = lock(c, st->rep)) != 0)
        return r;
    return check_recorded(c, st);
}

/* One migration in one transaction: under the lock, skip it if another migrator applied it
 * meanwhile (after checking it is the same file), else run it and record it. */
static int
tx_apply(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct step *st = arg;
    const struct sigil_migration *m = st->m;
    struct sigil_migrate_report *rep = st->rep;
    struct sigil_db_res *res = NULL;
    char version[16], what[128];
    int r;

    (void)attempt;
    st->did = false;
    snprintf(version, sizeof version, "%d", m->version);
    snprintf(what, sizeof what, "migration %04d_%s.sql", m->version, m->name);
    if ((r = lock(c, rep)) != 0)
        goto out;
    if ((r = sigil_db_exec(c, "SELECT name, sha256 FROM sigil_schema_migrations WHERE version = $1",
                           (struct sigil_db_param[]){SIGIL_DB_TEXT(version)}, 1, &res)) != 0) {
        db_err(c, rep, what);
        goto out;
    }
    if (sigil_db_res_rows(res) == 1) {
        const char *name = sigil_db_res_text(res, 0, 0), *sum = sigil_db_res_text(res, 0, 1);
        if (name == NULL || sum == NULL || strcmp(name, m->name) != 0 ||
            strcmp(sum, m->sha256) != 0) {
            set_err(rep->error, sizeof rep->error,
                    "migrations: %s was applied meanwhile by another migrator from a different "
                    "file (%s, sha256 %.16s...): refusing to start",
                    what, name != NULL ? name : "?", sum != NULL ? sum : "?");
            r = SIGIL_ERR_VERIFY;
        }
        goto out;
    }
    if ((r = sigil_db_exec_script(c, m->sql)) != 0) {
        db_err(c, rep, what);
        goto out;
    }
    if (!sigil_db_in_transaction(c)) {
        /* a COMMIT or ROLLBACK in the file ended our transaction and released the lock */
        set_err(rep->error, sizeof rep->error,
                "migrations: %s ended the migration's transaction itself (COMMIT, ROLLBACK or "
                "END in the file); remove it: every migration runs in one transaction",
                what);
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    if ((r = sigil_db_exec(c,
                           "INSERT INTO sigil_schema_migrations (version, name, sha256) "
                           "VALUES ($1, $2, $3)",
                           (struct sigil_db_param[]){SIGIL_DB_TEXT(version), SIGIL_DB_TEXT(m->name),
                                                     SIGIL_DB_TEXT(m->sha256)},
                           3, NULL)) != 0) {
        db_err(c, rep, what);
        goto out;
    }
    st->did = true;
out:
    sigil_db_res_free(res);
    return r;
}

/* Runs one step; a failure of the database itself (not one of ours) lands in rep->error. */
static int
run_tx(struct sigil_db_conn *c, sigil_db_tx_fn fn, struct step *st, const char *what)
{
    int r;

    st->rep->error[0] = '\0';
    if ((r = sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, TX_ATTEMPTS, fn, st)) != 0 &&
        st->rep->error[0] == '\0')
        db_err(c, st->rep, what);
    return r;
}

int
sigil_migrate_apply(struct sigil_db_conn *c, const struct sigil_migration_set *set,
                    sigil_migrate_applied_fn applied, void *arg, struct sigil_migrate_report *rep)
{
    struct step st = {.set = set, .rep = rep};
    int r;

    if (rep == NULL)
        return SIGIL_ERR_INVALID;
    memset(rep, 0, sizeof *rep);
    if (c == NULL || set == NULL || set->n == 0) {
        set_err(rep->error, sizeof rep->error, "migrations: nothing to apply from");
        return SIGIL_ERR_INVALID;
    }
    if ((r = run_tx(c, tx_prepare, &st, "migrations: preparing")) != 0)
        return r;
    rep->from_version = st.version;
    for (size_t i = (size_t)st.version; i < set->n; i++) {
        st.m = &set->m[i];
        if ((r = run_tx(c, tx_apply, &st, "migrations: applying")) != 0)
            return r;
        if (st.did) {
            rep->applied++;
            if (applied != NULL)
                applied(arg, st.m);
        }
    }
    /* a newer migrator may have moved the schema past us while we waited on the lock */
    st.m = NULL;
    if ((r = run_tx(c, tx_check, &st, "migrations: checking")) != 0)
        return r;
    rep->to_version = st.version;
    return 0;
}

int
sigil_migrate_run(struct sigil_db_conn *c, const char *dir, sigil_migrate_applied_fn applied,
                  void *arg, struct sigil_migrate_report *rep)
{
    struct sigil_migration_set set = {0};
    int r;

    if (rep == NULL)
        return SIGIL_ERR_INVALID;
    memset(rep, 0, sizeof *rep);
    if ((r = sigil_migrate_load(dir, &set, rep->error, sizeof rep->error)) != 0)
        return r;
    r = sigil_migrate_apply(c, &set, applied, arg, rep);
    sigil_migrate_set_free(&set);
    return r;
}
