/* Fuzzes CSR parsing (DER or PEM) with its self-signature check, and the extraction of the
 * public key and requested SPIFFE ID from whatever parses. A parsed CSR must re-encode to
 * DER that parses again to the same request; every refusal must carry a why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/x509.h>

#include "sigil/err.h"
#include "sigil/x509.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    X509_REQ *req = NULL, *again = NULL;
    struct sigil_spiffeid id;
    unsigned char *der = NULL;
    EVP_PKEY *pub = NULL;
    const char *why = NULL;
    int r, len;

    r = sigil_x509_csr_parse(data, size, &req, &why);
    if (r != 0) {
        CHECK(r < 0 && why != NULL && req == NULL);
        return 0;
    }
    CHECK(sigil_x509_csr_pubkey(req, &pub) == 0);
    CHECK(sigil_x509_key_check(pub, NULL) == 0);
    why = NULL;
    r = sigil_x509_csr_spiffeid(req, &id, &why);
    if (r == 0)
        CHECK(strncmp(id.str, "spiffe://", 9) == 0 && strlen(id.str) == id.len);
    else
        CHECK((r == SIGIL_ERR_NOTFOUND || r == SIGIL_ERR_INVALID) && why != NULL);
    len = i2d_X509_REQ(req, &der);
    CHECK(len > 0);
    why = NULL;
    CHECK(sigil_x509_csr_parse(der, (size_t)len, &again, &why) == 0);
    CHECK(X509_REQ_verify(again, pub) == 1);
    OPENSSL_free(der);
    X509_REQ_free(again);
    X509_REQ_free(req);
    EVP_PKEY_free(pub);
    return 0;
}
