/* Fuzzes sigil_http_peer_spiffeid on certificates from the input (back-to-back DER, at most
 * four): a returned identity must be a valid SPIFFE ID with a path (ID-*, X-2) that fits the
 * buffer; a refusal must name a rule and leave the identity empty. Any mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "sigil/err.h"
#include "sigil/http.h"
#include "sigil/spiffeid.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    const unsigned char *p = data;
    char id[SIGIL_HTTP_ID_MAX + 1];
    const char *why = NULL;
    struct sigil_spiffeid sid;
    int r;

    CHECK(chain != NULL);
    while (sk_X509_num(chain) < 4 && p < data + size) {
        X509 *x = d2i_X509(NULL, &p, (long)(data + size - p));
        if (x == NULL)
            break;
        CHECK(sk_X509_push(chain, x) > 0);
    }
    memset(id, 'x', sizeof id);
    r = sigil_http_peer_spiffeid(chain, id, &why);
    if (r == 0) {
        size_t n = strnlen(id, sizeof id);
        CHECK(n > 0 && n <= SIGIL_HTTP_ID_MAX);
        CHECK(sigil_spiffeid_parse(id, n, &sid, NULL) == 0);
        CHECK(sigil_spiffeid_has_path(&sid));
    } else {
        CHECK(r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE || r == SIGIL_ERR_NOTFOUND);
        CHECK(why != NULL && why[0] != '\0');
        CHECK(id[0] == '\0');
    }
    sk_X509_pop_free(chain, X509_free);
    return 0;
}
