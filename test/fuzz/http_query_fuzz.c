/* Fuzzes sigil_http_query_param, the one parser of ours in lib/http: the first byte picks a
 * name length (0..7), the next bytes are the name, the rest is the query string. Whatever
 * it accepts is within the cap, NUL-free and no longer than the query; whatever it refuses
 * says why with an expected code and leaves the output empty. Any mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/err.h"
#include "sigil/http.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigil_buf out = {0};
    const char *why = NULL;
    char name[8];
    size_t nlen;
    int r;

    if (size < 1)
        return 0;
    nlen = data[0] % 8;
    if (size - 1 < nlen)
        return 0;
    memcpy(name, data + 1, nlen);
    name[nlen] = '\0';
    data += 1 + nlen;
    size -= 1 + nlen;

    r = sigil_http_query_param((const char *)data, size, name, &out, &why);
    if (r == 0) {
        CHECK(out.len <= SIGIL_HTTP_QUERY_VALUE_MAX);
        CHECK(out.len <= size);
        CHECK(out.len == 0 || memchr(out.data, '\0', out.len) == NULL);
        /* asking again gives the same answer */
        struct sigil_buf again = {0};
        CHECK(sigil_http_query_param((const char *)data, size, name, &again, &why) == 0);
        CHECK(again.len == out.len && (out.len == 0 || memcmp(again.data, out.data, out.len) == 0));
        sigil_buf_free(&again);
    } else {
        CHECK(r == SIGIL_ERR_NOTFOUND || r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE);
        CHECK(why != NULL && why[0] != '\0');
        CHECK(out.len == 0);
        /* an empty name (or one with a NUL cut short) is refused up front */
        if (strlen(name) == 0)
            CHECK(r == SIGIL_ERR_INVALID);
    }
    sigil_buf_free(&out);
    return 0;
}
