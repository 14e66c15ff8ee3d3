/* Fuzzes X.509 chain parsing (PEM, concatenated DER, certificates + key PEM) and the SVID
 * checks on whatever parses: every refusal must carry a why, a parsed chain must re-encode
 * to DER that parses back to as many certificates, and verification of a parsed chain
 * against its own last certificate must return one of the documented codes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/err.h"
#include "sigil/x509.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* verification time when the leaf's notBefore is unreadable: fixed, so a run never depends
 * on the clock (2021-01-01T00:00:00Z) */
#define AT ((time_t)1609459200)

static void
check_refusal(int r, const char *why)
{
    CHECK(r < 0);
    CHECK(why != NULL && why[0] != '\0');
}

static void
exercise(STACK_OF(X509) *chain)
{
    struct sigil_spiffeid id;
    struct sigil_buf der = {0};
    STACK_OF(X509) *back = NULL, *roots = NULL;
    const char *why = NULL;
    time_t t;
    int r, n = sk_X509_num(chain);

    CHECK(n >= 1 && n <= SIGIL_X509_CHAIN_MAX);
    for (int i = 0; i < n; i++) {
        X509 *x = sk_X509_value(chain, i);
        why = NULL;
        if ((r = sigil_x509_svid_check_leaf(x, &why)) != 0)
            check_refusal(r, why);
        why = NULL;
        if ((r = sigil_x509_svid_check_ca(x, &why)) != 0)
            check_refusal(r, why);
        why = NULL;
        if ((r = sigil_x509_cert_spiffeid(x, &id, &why)) != 0)
            check_refusal(r, why);
        else
            CHECK(strncmp(id.str, "spiffe://", 9) == 0 && strlen(id.str) == id.len);
        (void)sigil_x509_cert_not_after(x, &t);
        (void)sigil_x509_cert_not_before(x, &t);
    }
    CHECK(sigil_x509_chain_to_der(chain, &der) == 0);
    why = NULL;
    CHECK(sigil_x509_chain_parse_der(der.data, der.len, &back, &why) == 0);
    CHECK(sk_X509_num(back) == n);
    roots = sk_X509_new_null();
    CHECK(roots != NULL && sk_X509_push(roots, sk_X509_value(chain, n - 1)) > 0);
    /* just after the leaf's notBefore: inside its validity if the input is sane */
    if (sigil_x509_cert_not_before(sk_X509_value(chain, 0), &t) != 0 || t <= 0 ||
        t > (time_t)1 << 40)
        t = AT;
    why = NULL;
    r = sigil_x509_svid_verify(chain, roots, t + 1, &id, &why);
    if (r != 0) {
        check_refusal(r, why);
        CHECK(r == SIGIL_ERR_INVALID || r == SIGIL_ERR_VERIFY || r == SIGIL_ERR_EXPIRED ||
              r == SIGIL_ERR_RANGE || r == SIGIL_ERR_NOMEM || r == SIGIL_ERR_CRYPTO);
    }
    sk_X509_free(roots);
    sk_X509_pop_free(back, X509_free);
    sigil_buf_free(&der);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    const char *why = NULL;
    int r;

    if ((r = sigil_x509_chain_parse_pem(data, size, &chain, &why)) == 0)
        exercise(chain);
    else
        check_refusal(r, why);
    CHECK(r == 0 || chain == NULL);
    sk_X509_pop_free(chain, X509_free);
    chain = NULL;

    why = NULL;
    if ((r = sigil_x509_chain_parse_der(data, size, &chain, &why)) == 0)
        exercise(chain);
    else
        check_refusal(r, why);
    CHECK(r == 0 || chain == NULL);
    sk_X509_pop_free(chain, X509_free);
    chain = NULL;

    why = NULL;
    if ((r = sigil_x509_pem_parse_certs_and_key(data, size, &chain, &key, &why)) == 0) {
        CHECK(key != NULL);
        (void)sigil_x509_key_matches_cert(key, sk_X509_value(chain, 0));
        exercise(chain);
    } else {
        check_refusal(r, why);
        CHECK(chain == NULL && key == NULL);
    }
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return 0;
}
