/* Fuzzes sigil_ca_key_path, which turns a CA journal key_ref (a database value) into the file
 * the server reads. Whatever the input, a relative key_ref is either refused or names a file
 * directly inside key_dir: no '/' and no ".." may pass, and the result is key_dir/key_ref. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.h"
#include "sigil/err.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static const char key_dir[] = "/nonexistent/sigil-fuzz/keys";

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char ref[512], out[256], want[600];
    bool moved = true;
    int r;

    if (size >= sizeof ref)
        return 0;
    memcpy(ref, data, size);
    ref[size] = '\0';
    r = sigil_ca_key_path(key_dir, ref, out, sizeof out, &moved);
    if (ref[0] == '\0') {
        CHECK(r == SIGIL_ERR_INVALID);
        return 0;
    }
    if (ref[0] == '/') {
        /* old absolute rows: kept as they are (nothing exists under key_dir here) */
        CHECK(r != 0 || (strcmp(out, ref) == 0 && !moved));
        return 0;
    }
    if (strchr(ref, '/') != NULL || strstr(ref, "..") != NULL || strcmp(ref, ".") == 0) {
        CHECK(r == SIGIL_ERR_INVALID);
        return 0;
    }
    CHECK(!moved);
    snprintf(want, sizeof want, "%s/%s", key_dir, ref);
    if (r == 0)
        CHECK(strcmp(out, want) == 0);
    else
        CHECK(r == SIGIL_ERR_RANGE && strlen(want) >= sizeof out);
    return 0;
}
