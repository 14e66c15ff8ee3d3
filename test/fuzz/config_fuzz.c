/* Fuzzes the YAML config loader against a small schema with every type: any input must
 * either load (and free cleanly) or fail with a message naming the file, leaving every
 * field zeroed. Any other outcome aborts; leaks and overflows are the sanitizers' job. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/config.h"
#include "sigil/err.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

struct cfg {
    char *name;
    bool flag;
    int64_t port;
    int64_t ttl;
    int level;
    struct sigil_config_strlist list;
    mode_t mode;
    uint64_t size;
    char *nested;
};

static const char *const levels[] = {"debug", "info", "warn", "error", NULL};

static const struct sigil_config_field schema[] = {
    {.key = "name", .type = SIGIL_CFG_STRING, .offset = offsetof(struct cfg, name)},
    {.key = "flag", .type = SIGIL_CFG_BOOL, .offset = offsetof(struct cfg, flag), .def = "true"},
    {.key = "server", .type = SIGIL_CFG_SECTION, .doc = "a section"},
    {.key = "server.port",
     .type = SIGIL_CFG_INT64,
     .offset = offsetof(struct cfg, port),
     .required = true,
     .min = 1,
     .max = 65535},
    {.key = "server.ttl",
     .type = SIGIL_CFG_DURATION,
     .offset = offsetof(struct cfg, ttl),
     .def = "1h",
     .min = 1000,
     .max = 86400000},
    {.key = "server.deep.nested", .type = SIGIL_CFG_STRING, .offset = offsetof(struct cfg, nested)},
    {.key = "level",
     .type = SIGIL_CFG_ENUM,
     .offset = offsetof(struct cfg, level),
     .def = "info",
     .choices = levels},
    {.key = "list", .type = SIGIL_CFG_STRLIST, .offset = offsetof(struct cfg, list), .def = "[a]"},
    {.key = "mode", .type = SIGIL_CFG_MODE, .offset = offsetof(struct cfg, mode), .def = "0600"},
    {.key = "size", .type = SIGIL_CFG_SIZE, .offset = offsetof(struct cfg, size), .def = "4MiB"},
    SIGIL_CONFIG_END,
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigil_config_error err;
    struct cfg c;
    int r;

    memset(&c, 0x5a, sizeof c);
    r = sigil_config_load_string(schema, "fuzz.yaml", (const char *)data, size, &c, &err);
    if (r == 0) {
        CHECK(c.port >= 1 && c.port <= 65535);
        CHECK(c.ttl >= 1000 && c.ttl <= 86400000);
        CHECK(c.level >= 0 && c.level <= 3);
        CHECK(c.mode <= 0777);
        CHECK(c.size <= INT64_MAX);
        CHECK(c.list.n == 0 || c.list.items != NULL);
        for (size_t i = 0; i < c.list.n; i++)
            CHECK(c.list.items[i] != NULL);
        CHECK(c.name == NULL || strlen(c.name) <= size);
        sigil_config_free(schema, &c);
        CHECK(c.name == NULL && c.list.items == NULL && c.list.n == 0 && c.nested == NULL);
        return 0;
    }
    CHECK(r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE || r == SIGIL_ERR_NOMEM);
    CHECK(strncmp(err.text, "fuzz.yaml", 9) == 0);
    CHECK(strlen(err.text) < sizeof err.text);
    /* messages quote the file only in escaped form: no control bytes reach a terminal */
    for (const char *p = err.text; *p != '\0'; p++)
        CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p != 0x7f);
    CHECK(c.name == NULL && c.list.items == NULL && c.list.n == 0 && c.nested == NULL);
    return 0;
}
