/* Fuzzes the duration parser: whatever parses is non-negative, formats back to a text that
 * parses to the same value, and that text is the canonical one (formatting it again gives
 * itself); whatever fails says why. Any mismatch aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/duration.h"
#include "sigil/err.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char text[SIGIL_DURATION_FMT_LEN], again[SIGIL_DURATION_FMT_LEN];
    const char *why = NULL;
    int64_t ms, ms2;
    int r;

    r = sigil_duration_parsen((const char *)data, size, &ms, &why);
    if (r != 0) {
        CHECK(r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE);
        CHECK(why != NULL && strncmp(why, "duration: ", 10) == 0);
        CHECK(ms == 0);
        return 0;
    }
    CHECK(ms >= 0);
    CHECK(size > 0 && size <= SIGIL_DURATION_MAX_LEN);
    sigil_duration_format(ms, text, sizeof text);
    CHECK(text[0] != '\0');
    CHECK(sigil_duration_parse(text, &ms2, &why) == 0 && ms2 == ms);
    CHECK(strcmp(sigil_duration_format(ms2, again, sizeof again), text) == 0);
    return 0;
}
