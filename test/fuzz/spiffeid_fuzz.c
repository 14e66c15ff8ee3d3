/* Fuzzes SPIFFE ID parsing: whatever parses must re-parse to the identical struct, have a
 * trust domain and path that agree with str and path_off, and be rebuilt identically from
 * its parts; whatever fails must name an ID-n rule. Any mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/err.h"
#include "sigil/spiffeid.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void
check_failure(int r, const char *why)
{
    CHECK(r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE);
    CHECK(why != NULL && strncmp(why, "ID-", 3) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sigil_spiffeid id, again; /* 2.3 KiB each: off the stack */
    char td[SIGIL_TRUST_DOMAIN_MAX + 1];
    const char *why = NULL;
    int r;

    /* The same bytes as a bare or ID-form trust domain. */
    r = sigil_trust_domain_parse((const char *)data, size, td, &why);
    if (r == 0) {
        CHECK(sigil_trust_domain_check(td, strlen(td), NULL) == 0);
    } else {
        check_failure(r, why);
        CHECK(td[0] == '\0');
    }

    why = NULL;
    r = sigil_spiffeid_parse((const char *)data, size, &id, &why);
    if (r != 0) {
        check_failure(r, why);
        CHECK(id.len == 0 && id.str[0] == '\0' && id.td[0] == '\0');
        return 0;
    }

    /* str is the input, NUL-terminated, with no NUL inside */
    CHECK(id.len == size && size <= SIGIL_SPIFFEID_MAX);
    CHECK(memcmp(id.str, data, size) == 0 && id.str[id.len] == '\0');
    CHECK(strlen(id.str) == id.len);
    CHECK(memcmp(id.str, "spiffe://", 9) == 0);

    /* td is exactly the bytes between "spiffe://" and path_off */
    CHECK(id.path_off > 9 && id.path_off <= id.len);
    size_t tdlen = id.path_off - 9;
    CHECK(tdlen <= SIGIL_TRUST_DOMAIN_MAX && strlen(id.td) == tdlen);
    CHECK(memcmp(id.str + 9, id.td, tdlen) == 0);
    CHECK(sigil_trust_domain_check(id.td, tdlen, NULL) == 0);
    CHECK(sigil_spiffeid_member_of(&id, id.td));

    /* the path starts at path_off and is "" or "/..." */
    const char *path = sigil_spiffeid_path(&id);
    CHECK(path == id.str + id.path_off);
    CHECK(sigil_spiffeid_has_path(&id) == (path[0] != '\0'));
    CHECK(path[0] == '\0' || (path[0] == '/' && path[strlen(path) - 1] != '/'));
    CHECK(sigil_spiffeid_path_check(path, strlen(path), NULL) == 0);

    /* round trip: re-parsing str gives the identical struct */
    CHECK(sigil_spiffeid_parse(id.str, id.len, &again, NULL) == 0);
    CHECK(memcmp(&id, &again, sizeof id) == 0);
    CHECK(sigil_spiffeid_equal(&id, &again) && sigil_spiffeid_has_prefix(&id, &again));

    /* and so does building it from its parts */
    CHECK(sigil_spiffeid_from_parts(id.td, path, &again, NULL) == 0);
    CHECK(memcmp(&id, &again, sizeof id) == 0);

    /* its trust domain's ID is a prefix of it */
    CHECK(sigil_spiffeid_from_parts(id.td, "", &again, NULL) == 0);
    CHECK(sigil_spiffeid_has_prefix(&id, &again));
    CHECK(sigil_spiffeid_has_prefix(&again, &id) == !sigil_spiffeid_has_path(&id));
    CHECK(sigil_trust_domain_parse(again.str, again.len, td, NULL) == 0);
    CHECK(strcmp(td, id.td) == 0);
    return 0;
}
