/* Fuzzes the migration file name parser: an accepted name must print back to exactly the
 * same file name (one spelling per version), a refused one must say why. Any violation
 * aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The migrator comes from sigil_server_core, which server/CMakeLists.txt links in. */
#include "../../server/migrate.h"
#include "sigil/err.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char name[SIGIL_MIGRATE_NAME_MAX + 1], back[128];
    const char *why = NULL;
    char *s;
    int v = 0, r;

    if (size > 256 || (s = malloc(size + 1)) == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    r = sigil_migrate_parse_name(s, &v, name, &why);
    if (r == 0) {
        CHECK(v >= 1 && v <= 9999);
        CHECK(strlen(name) >= 1 && strlen(name) <= SIGIL_MIGRATE_NAME_MAX);
        snprintf(back, sizeof back, "%04d_%s.sql", v, name);
        CHECK(strcmp(back, s) == 0);
    } else {
        CHECK(r == SIGIL_ERR_INVALID && why != NULL && why[0] != '\0');
    }
    free(s);
    return 0;
}
