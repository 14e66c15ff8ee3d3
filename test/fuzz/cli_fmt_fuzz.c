/* Fuzzes the CLI's printing of admin API answers (server/cli_fmt.c): any JSON document goes
 * through every formatter and the error reader. The text must never hold a control byte
 * other than '\n' (a hostile server must not drive the operator's terminal), and an error
 * text never one at all. Any violation aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The CLI is compiled into sigil-server, not sigil_server_core: the fuzzer compiles it in. */
#include "../../server/cli_fmt.c"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void
check_clean(const uint8_t *p, size_t n, bool newlines)
{
    for (size_t i = 0; i < n; i++) {
        CHECK(p[i] >= 0x20 || (newlines && p[i] == '\n'));
        CHECK(p[i] != 0x7f);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int (*const fns[])(struct sigil_buf *, const json_t *) = {
        sigil_cli_fmt_entry,       sigil_cli_fmt_entries, sigil_cli_fmt_agent,
        sigil_cli_fmt_agents,      sigil_cli_fmt_token,   sigil_cli_fmt_federation,
        sigil_cli_fmt_federations, sigil_cli_fmt_audit,   sigil_cli_fmt_bundle_pem,
        sigil_cli_fmt_bundle_map,
    };
    char code[64], msg[512];
    json_t *j;

    if (size > 64 * 1024)
        return 0;
    sigil_cli_fmt_error((const char *)data, size, 400, code, sizeof code, msg, sizeof msg);
    check_clean((const uint8_t *)code, strlen(code), false);
    check_clean((const uint8_t *)msg, strlen(msg), false);
    if ((j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                        NULL)) == NULL)
        return 0;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        struct sigil_buf b = {0};
        int r = fns[i](&b, j);

        CHECK(r == 0 || r == SIGIL_ERR_INVALID);
        check_clean(b.data, b.len, true);
        sigil_buf_free(&b);
    }
    json_decref(j);
    return 0;
}
