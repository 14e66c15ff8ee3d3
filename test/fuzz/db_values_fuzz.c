/* Fuzzes lib/db's parsers of what PostgreSQL and operators hand us: integers and bytea as
 * libpq prints them must round-trip to the same spelling, a cleaned message must be one
 * printable line without the secret, and a described conninfo must never show a password and
 * must describe to itself again. Any violation aborts. */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/db.h"
#include "sigil/err.h"

#include <libpq-fe.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void
fuzz_int64(const char *s)
{
    char back[32];
    int64_t v;
    int r = sigil_db_parse_int64(s, &v);

    if (r != 0) {
        CHECK(r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE);
        return;
    }
    snprintf(back, sizeof back, "%" PRId64, v);
    CHECK(strcmp(back, s) == 0);
}

static void
fuzz_bytea(const char *s)
{
    uint8_t *p = NULL;
    size_t n = 0;
    int r = sigil_db_parse_bytea(s, &p, &n);

    if (r != 0) {
        CHECK(r == SIGIL_ERR_INVALID || r == SIGIL_ERR_NOMEM);
        CHECK(p == NULL && n == 0);
        return;
    }
    CHECK(p != NULL && strlen(s) == 2 + 2 * n);
    for (size_t i = 0; i < n; i++) {
        char hex[3];
        snprintf(hex, sizeof hex, "%02x", p[i]);
        CHECK((s[2 + 2 * i] | 0x20) == hex[0] && (s[3 + 2 * i] | 0x20) == hex[1]);
    }
    free(p);
}

static void
fuzz_clean(const char *msg, const char *secret, size_t cap)
{
    char out[SIGIL_DB_ERRMSG_MAX];
    size_t n;
    bool plain = secret[0] != '\0';

    sigil_db_message_clean(out, cap, msg, secret);
    n = strlen(out);
    CHECK(n < cap);
    CHECK(n == 0 || (out[0] != ' ' && out[n - 1] != ' '));
    for (size_t i = 0; i < n; i++) {
        CHECK((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
        CHECK(!(out[i] == ' ' && out[i + 1] == ' '));
    }
    /* a secret of printable, spaceless, starless bytes can never survive */
    for (const char *p = secret; *p != '\0'; p++)
        plain = plain && (unsigned char)*p > 0x20 && *p != 0x7f && *p != '*';
    if (plain)
        CHECK(strstr(out, secret) == NULL);
}

static void
fuzz_conninfo(const char *s)
{
    char *d = sigil_db_conninfo_describe(s), *d2, *err = NULL;
    PQconninfoOption *opts;

    if (d == NULL)
        return;
    for (const char *p = d; *p != '\0'; p++)
        CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
    /* what it shows parses, and holds no password */
    opts = PQconninfoParse(d, &err);
    CHECK(opts != NULL && err == NULL);
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        CHECK(strcmp(o->keyword, "password") != 0 || o->val == NULL);
    PQconninfoFree(opts);
    d2 = sigil_db_conninfo_describe(d);
    CHECK(d2 != NULL && strcmp(d, d2) == 0);
    free(d2);
    free(d);
}

static void
fuzz_small(const char *s)
{
    size_t n = strlen(s);

    CHECK(sigil_db_sqlstate_err(s) < 0);
    CHECK(!sigil_db_sqlstate_retryable(s) || strcmp(s, "40001") == 0 || strcmp(s, "40P01") == 0);
    if (sigil_db_channel_valid(s)) {
        CHECK(n >= 1 && n <= 63);
        for (size_t i = 0; i < n; i++)
            CHECK((s[i] >= 'a' && s[i] <= 'z') || s[i] == '_' ||
                  (i > 0 && s[i] >= '0' && s[i] <= '9'));
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s, *secret;
    size_t split;

    if (size > 4096)
        return 0;
    if ((s = malloc(size + 1)) == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    fuzz_int64(s);
    fuzz_bytea(s);
    fuzz_conninfo(s);
    fuzz_small(s);
    /* the message is the input up to its last '\x01', the secret what follows */
    secret = strrchr(s, '\x01');
    split = secret != NULL ? (size_t)(secret - s) : size;
    s[split] = '\0';
    fuzz_clean(s, secret != NULL ? secret + 1 : "", 1 + size % SIGIL_DB_ERRMSG_MAX);
    free(s);
    return 0;
}
