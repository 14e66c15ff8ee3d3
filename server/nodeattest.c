/* The list of node attestors the server knows and what they share: lookup by name and the
 * result's release. Adding an attestor is its file plus one line in the table below. */
#include "nodeattest.h"

#include <stdlib.h>
#include <string.h>

static const struct sigil_nodeattest *const attestors[] = {
    &sigil_nodeattest_join_token,
    &sigil_nodeattest_x509pop,
};

const struct sigil_nodeattest *
sigil_nodeattest_find(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof attestors / sizeof attestors[0]; i++)
        if (strlen(attestors[i]->name) == n && memcmp(attestors[i]->name, name, n) == 0)
            return attestors[i];
    return NULL;
}

void
sigil_nodeattest_result_free(struct sigil_nodeattest_result *r)
{
    if (r == NULL)
        return;
    free(r->spiffe_id);
    sigil_selector_set_free(&r->selectors);
    memset(r, 0, sizeof *r);
}
