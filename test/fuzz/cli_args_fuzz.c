/* Fuzzes `entry` command-line parsing and request building (server/cli_req.c): the input is
 * a command name and its arguments separated by NUL bytes. Whatever parses must build a body
 * that passes the CLI's own EntryInput check, and a list target of URL-safe characters only.
 * Any violation aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The CLI is compiled into sigil-server, not sigil_server_core: the fuzzer compiles it in. */
#include "../../server/cli_req.c"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)
#define MAX_ARGS 64

static bool
url_safe(const char *s)
{
    for (; *s != '\0'; s++)
        if (!req_unreserved((unsigned char)*s) && strchr("/?&=%:", *s) == NULL)
            return false;
    return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sigil_cli_entry_args args;
    char *buf, *argv[MAX_ARGS + 1], err[SIGIL_CLI_ERR_MAX], why[SIGIL_CLI_ERR_MAX], *t = NULL;
    json_t *body = NULL;
    int argc = 0;

    if (size == 0 || size > 16 * 1024 || (buf = malloc(size + 1)) == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    for (size_t i = 0; i <= size && argc < MAX_ARGS; i++) {
        argv[argc++] = buf + i;
        i += strlen(buf + i);
    }
    argv[argc] = NULL;
    if (sigil_cli_entry_args_parse(argv[0], argc, argv, &args, err, sizeof err) != 0) {
        CHECK(err[0] != '\0');
        goto out;
    }
    if (args.common.help)
        goto out;
    if (strcmp(argv[0], "create") == 0 &&
        sigil_cli_entry_input_build(&args, &body, err, sizeof err) == 0)
        CHECK(sigil_cli_entry_input_check(body, false, why, sizeof why) == 0);
    json_decref(body);
    body = NULL;
    if (strcmp(argv[0], "update") == 0 &&
        sigil_cli_entry_patch_build(&args, &body, err, sizeof err) == 0) {
        CHECK(json_object_size(body) > 0);
        CHECK(sigil_cli_entry_input_check(body, true, why, sizeof why) == 0);
        CHECK(args.id != NULL && sigil_cli_uuid_valid(args.id));
    }
    if (strcmp(argv[0], "show") == 0 &&
        sigil_cli_entry_list_target(&args, "tok", &t, err, sizeof err) == 0) {
        CHECK(strncmp(t, "/v1/entries", 11) == 0);
        CHECK(url_safe(t));
    }
out:
    free(t);
    json_decref(body);
    free(buf);
    return 0;
}
