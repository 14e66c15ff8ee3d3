/* The schema migrator: applies migrations/NNNN_name.sql in order, each in one transaction
 * under PostgreSQL advisory lock 7345001, recorded in sigil_schema_migrations; refuses a
 * changed migration and a database newer than this binary. */
#ifndef SIGIL_MIGRATE_H
#define SIGIL_MIGRATE_H

#include <stddef.h>

#include "sigil/db.h"

/* Where an installed server finds its migrations unless configured otherwise. */
#ifndef SIGIL_MIGRATIONS_DEFAULT_DIR
#define SIGIL_MIGRATIONS_DEFAULT_DIR "/usr/local/share/sigil/migrations"
#endif

/* The advisory lock every schema change takes (test/sql/run takes the same one). */
#define SIGIL_MIGRATE_LOCK_KEY 7345001
/* Caps: version digits are exactly four; a name; one file's size. */
#define SIGIL_MIGRATE_NAME_MAX 64
#define SIGIL_MIGRATE_FILE_MAX (16u * 1024 * 1024)
#define SIGIL_MIGRATE_ERR_MAX 640

/* One migration file, read and hashed. */
struct sigil_migration {
    int version;
    char name[SIGIL_MIGRATE_NAME_MAX + 1];
    char sha256[65]; /* lowercase hex of the file's bytes, as sha256sum prints it */
    char *sql;       /* the file's text, NUL-terminated */
};

/* Every migration of a directory, in version order (versions 1..n, no gaps). */
struct sigil_migration_set {
    struct sigil_migration *m;
    size_t n;
};

/* What a run found and did. */
struct sigil_migrate_report {
    int from_version; /* schema version before the run (0: nothing applied yet) */
    int to_version;   /* schema version after it */
    size_t applied;   /* migrations this run applied (others may have applied the rest) */
    char error[SIGIL_MIGRATE_ERR_MAX]; /* on failure: what was refused and what to do */
};

/* Called after each migration this run committed. */
typedef void (*sigil_migrate_applied_fn)(void *arg, const struct sigil_migration *m);

/* Parses a migration file name "NNNN_name.sql" (four digits, version >= 1, name of
 * [a-z0-9_], 1..64 bytes); returns 0 with *version and name set, or SIGIL_ERR_INVALID with
 * *why (static text). */
int sigil_migrate_parse_name(const char *file, int *version, char name[SIGIL_MIGRATE_NAME_MAX + 1],
                             const char **why);
/* Reads every *.sql of dir (other files and dot files are ignored; a *.sql whose name does not
 * parse, a duplicate version or a gap is an error). Returns 0 and *set (free with
 * sigil_migrate_set_free), or a negative SIGIL_ERR_* with the reason in err. */
int sigil_migrate_load(const char *dir, struct sigil_migration_set *set, char *err, size_t errlen);
/* Frees a set loaded by sigil_migrate_load; an empty set is allowed. */
void sigil_migrate_set_free(struct sigil_migration_set *set);
/* Applies what the database lacks of set over c (blocking: a worker or a tool). Safe to run
 * from several processes at once. Returns 0, or a negative SIGIL_ERR_* with rep->error set:
 * SIGIL_ERR_VERIFY (an applied migration changed), SIGIL_ERR_UNSUPPORTED (the database is
 * newer than set), or the database's error. applied (may be NULL) hears of each one applied. */
int sigil_migrate_apply(struct sigil_db_conn *c, const struct sigil_migration_set *set,
                        sigil_migrate_applied_fn applied, void *arg,
                        struct sigil_migrate_report *rep);
/* sigil_migrate_load(dir) then sigil_migrate_apply; same returns. */
int sigil_migrate_run(struct sigil_db_conn *c, const char *dir, sigil_migrate_applied_fn applied,
                      void *arg, struct sigil_migrate_report *rep);

#endif
