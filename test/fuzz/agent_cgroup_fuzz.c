/* Fuzzes the /proc parsers of the workload attestors: the systemd unit found in a cgroup file
 * (a .service or .scope name without '/' or NUL, fitting its buffer), the start time and state
 * of a stat line, and the Groups line of a status file (never more gids than room). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attestor.h"
#include "sigil/err.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static bool
ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);

    return n > k && memcmp(s + n - k, suffix, k) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char unit[64];
    gid_t gids[8];
    uint64_t start;
    char state;
    int r;

    r = sigil_attest_systemd_unit(s, size, unit, sizeof unit);
    CHECK(r == 0 || r == SIGIL_ERR_NOTFOUND || r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE);
    if (r == 0) {
        CHECK(strchr(unit, '/') == NULL && strlen(unit) < sizeof unit);
        CHECK(ends_with(unit, ".service") || ends_with(unit, ".scope"));
        CHECK(memmem(data, size, unit, strlen(unit)) != NULL);
    }
    r = sigil_attest_parse_stat(s, size, &state, &start);
    CHECK(r == 0 || r == SIGIL_ERR_INVALID);
    r = sigil_attest_parse_groups(s, size, gids, 8);
    CHECK(r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE || (r >= 0 && r <= 8));
    return 0;
}
