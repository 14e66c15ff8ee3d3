/* Fuzzes the datastore's JSON readers (admin API Entry, EntryInput, EntryPatch, Federation)
 * and its RFC 3339 parser: an accepted entry passes the store's own checks where its shape
 * requires them and survives a round trip through its JSON; a refusal always says why. Any
 * violation aborts. Fuzz targets link only `sigil`, so the store's sources are compiled in. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/store.c"
#include "../../server/store_bundles.c"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void
one_shape(const json_t *j, enum sigil_store_entry_json shape)
{
    struct sigil_store_entry e, back;
    struct sigil_store_err err;
    json_t *out = NULL;
    int r;

    memset(&err, 0, sizeof err);
    r = sigil_store_entry_from_json(j, shape, &e, &err);
    if (r != 0) {
        CHECK(r < 0 && err.message[0] != '\0' && err.code[0] != '\0');
        return;
    }
    if (shape != SIGIL_STORE_JSON_PATCH && sigil_store_entry_check(&e, &err) == 0) {
        /* what the store would write reads back the same */
        CHECK(sigil_store_entry_to_json(&e, &out) == 0);
        json_object_del(out, "team"); /* read-only fields are not EntryInput */
        json_object_del(out, "id");
        json_object_del(out, "revision");
        json_object_del(out, "created_at");
        json_object_del(out, "updated_at");
        if (e.expires_at == 0)
            json_object_del(out, "expires_at");
        CHECK(sigil_store_entry_from_json(out, SIGIL_STORE_JSON_INPUT, &back, &err) == 0);
        CHECK(sigil_selector_set_equal(&e.selectors, &back.selectors));
        CHECK(strcmp(e.spiffe_id, back.spiffe_id) == 0 && e.x509_ttl == back.x509_ttl &&
              e.expires_at == back.expires_at && e.dns_names.count == back.dns_names.count);
        sigil_store_entry_free(&back);
        json_decref(out);
    }
    sigil_store_entry_free(&e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigil_store_federation f;
    struct sigil_store_err err;
    json_t *j;
    char tbuf[80];
    int64_t t;

    if (size > 64 * 1024)
        return 0;
    /* the bytes as a date-time */
    if (size < sizeof tbuf) {
        memcpy(tbuf, data, size);
        tbuf[size] = '\0';
        if (sigil_store_time_parse(tbuf, &t) == 0) {
            char back[32];
            int64_t t2;
            sigil_store_time_format(t, back);
            CHECK(t >= 0 && sigil_store_time_parse(back, &t2) == 0 && t2 == t);
        }
    }
    j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
    if (j == NULL)
        return 0;
    one_shape(j, SIGIL_STORE_JSON_INPUT);
    one_shape(j, SIGIL_STORE_JSON_PATCH);
    one_shape(j, SIGIL_STORE_JSON_ENTRY);
    memset(&err, 0, sizeof err);
    if (sigil_store_federation_from_json(j, &f, &err) == 0) {
        json_t *out = NULL;
        CHECK(sigil_store_federation_to_json(&f, &out) == 0 && json_equal(out, j));
        json_decref(out);
        sigil_store_federation_free(&f);
    } else {
        CHECK(err.message[0] != '\0');
    }
    json_decref(j);
    return 0;
}
