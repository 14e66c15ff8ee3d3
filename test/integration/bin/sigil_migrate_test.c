/* sigil_migrate_test CONNINFO [MIGRATIONS_DIR]: runs the schema migrator once, as a server
 * does at startup, and prints each migration it applied. The directory defaults to
 * $SIGIL_MIGRATIONS_DIR, then $SIGIL_SOURCE_DIR/migrations (test/sql/run passes only the
 * conninfo). Exit: 0 migrated, 1 failed, 2 usage, 3 refused (changed migration, newer DB). */

/* The migrator comes from sigil_server_core, which server/CMakeLists.txt links in. */
#include "../../../server/migrate.h"
#include "sigil/err.h"

#include <stdio.h>
#include <stdlib.h>

static void
on_applied(void *arg, const struct sigil_migration *m)
{
    (void)arg;
    printf("applied %04d_%s sha256=%s\n", m->version, m->name, m->sha256);
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    struct sigil_migrate_report rep;
    struct sigil_db_error err;
    struct sigil_db_conn *c = NULL;
    char fallback[4096];
    const char *dir;
    int r;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: sigil_migrate_test CONNINFO [MIGRATIONS_DIR]\n");
        return 2;
    }
    if (argc == 3)
        dir = argv[2];
    else if ((dir = getenv("SIGIL_MIGRATIONS_DIR")) != NULL && dir[0] != '\0')
        ;
    else if ((dir = getenv("SIGIL_SOURCE_DIR")) != NULL && dir[0] != '\0') {
        snprintf(fallback, sizeof fallback, "%s/migrations", dir);
        dir = fallback;
    } else
        dir = SIGIL_MIGRATIONS_DEFAULT_DIR;
    if (sigil_db_connect(argv[1], &c, &err) != 0) {
        fprintf(stderr, "sigil_migrate_test: %s\n", err.message);
        return 1;
    }
    r = sigil_migrate_run(c, dir, on_applied, NULL, &rep);
    sigil_db_disconnect(c);
    if (r != 0) {
        fprintf(stderr, "sigil_migrate_test: %s\n", rep.error);
        return r == SIGIL_ERR_VERIFY || r == SIGIL_ERR_UNSUPPORTED ? 3 : 1;
    }
    printf("schema at version %d (was %d); this run applied %zu\n", rep.to_version,
           rep.from_version, rep.applied);
    return 0;
}
