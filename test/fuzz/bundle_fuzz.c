/* Fuzzes SPIFFE bundle decoding in its three forms (SPIFFE bundle, plain JWKS, bundle map):
 * whatever decodes must encode, decode again to an equal bundle and encode to the same
 * bytes; whatever fails must say why. Any mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/bundle.h"
#include "sigil/err.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

static void
check_failure(int r, const char *why)
{
    CHECK(r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE || r == SIGIL_ERR_UNSUPPORTED ||
          r == SIGIL_ERR_NOMEM);
    CHECK(why != NULL && why[0] != '\0');
}

/* decode -> encode -> decode -> encode: equal bundles, identical bytes. */
static void
bundle_round_trip(const char *data, size_t size, int jwks)
{
    struct sigil_bundle *b = NULL, *b2 = NULL;
    const char *why = NULL;
    char *s = NULL, *s2 = NULL;
    size_t n = 0, n2 = 0;
    int r = jwks ? sigil_bundle_decode_jwks("example.org", data, size, &b, &why)
                 : sigil_bundle_decode("example.org", data, size, &b, &why);

    if (r != 0) {
        check_failure(r, why);
        CHECK(b == NULL);
        return;
    }
    CHECK(sigil_bundle_encode(b, &s, &n) == 0);
    CHECK(sigil_bundle_decode("example.org", s, n, &b2, &why) == 0);
    CHECK(sigil_bundle_equal(b, b2));
    CHECK(sigil_bundle_encode(b2, &s2, &n2) == 0);
    CHECK(n == n2 && memcmp(s, s2, n) == 0);
    free(s2);
    /* The JWKS form keeps every JWT authority. */
    CHECK(sigil_bundle_encode_jwks(b, &s2, &n2) == 0);
    sigil_bundle_free(b2);
    CHECK(sigil_bundle_decode_jwks("example.org", s2, n2, &b2, &why) == 0);
    CHECK(sigil_bundle_jwt_count(b2) == sigil_bundle_jwt_count(b));
    CHECK(sigil_bundle_x509_count(b2) == 0);
    free(s2);
    free(s);
    sigil_bundle_free(b2);
    sigil_bundle_free(b);
}

static void
map_round_trip(const char *data, size_t size)
{
    struct sigil_bundle_set *s = NULL, *s2 = NULL;
    const char *why = NULL;
    char *t = NULL, *t2 = NULL;
    size_t n = 0, n2 = 0;
    int r = sigil_bundle_map_decode(data, size, &s, &why);

    if (r != 0) {
        check_failure(r, why);
        CHECK(s == NULL);
        return;
    }
    CHECK(sigil_bundle_map_encode(s, &t, &n) == 0);
    CHECK(sigil_bundle_map_decode(t, n, &s2, &why) == 0);
    CHECK(sigil_bundle_set_equal(s, s2));
    CHECK(sigil_bundle_map_encode(s2, &t2, &n2) == 0);
    CHECK(n == n2 && memcmp(t, t2, n) == 0);
    for (size_t i = 0; i < sigil_bundle_set_count(s); i++)
        CHECK(sigil_bundle_set_find(s, sigil_bundle_trust_domain(sigil_bundle_set_at(s, i))) ==
              sigil_bundle_set_at(s, i));
    free(t);
    free(t2);
    sigil_bundle_set_free(s);
    sigil_bundle_set_free(s2);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bundle_round_trip((const char *)data, size, 0);
    bundle_round_trip((const char *)data, size, 1);
    map_round_trip((const char *)data, size);
    return 0;
}
