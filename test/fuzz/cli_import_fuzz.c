/* Fuzzes `entry import` input (server/cli_import.c): any bytes, read as JSON lines or as a
 * SPIRE file. Every item must either carry an EntryInput that passes the CLI's own check or
 * a non-empty reason; numbers count up from 1; lines never exceed the input's line count.
 * Any violation aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The CLI is compiled into sigil-server, not sigil_server_core: the fuzzer compiles it in. */
#include "../../server/cli_req.c"

#include "../../server/cli_import.c"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigil_cli_import *imp = NULL;
    struct sigil_cli_import_item it = {0};
    char err[256], why[512];
    size_t lines = 1, n = 0;
    int r;

    if (size > 256 * 1024)
        return 0;
    for (size_t i = 0; i < size; i++)
        lines += data[i] == '\n';
    if (sigil_cli_import_open((const char *)data, size, &imp, err, sizeof err) != 0) {
        CHECK(err[0] != '\0');
        return 0;
    }
    while ((r = sigil_cli_import_next(imp, &it)) == 1) {
        n++;
        CHECK(it.index == n);
        CHECK(it.line <= lines);
        CHECK(sigil_cli_import_format(imp) == SIGIL_CLI_IMPORT_SPIRE || it.line >= 1);
        if (it.input != NULL)
            CHECK(sigil_cli_entry_input_check(it.input, false, why, sizeof why) == 0);
        else
            CHECK(it.err[0] != '\0');
    }
    CHECK(r == 0);
    CHECK(n == sigil_cli_import_count(imp));
    sigil_cli_import_item_clear(&it);
    sigil_cli_import_free(imp);
    return 0;
}
