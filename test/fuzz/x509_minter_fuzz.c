/* Fuzzes the prepared minter's CSR reading against OpenSSL's: whatever the strict DER frame
 * reader takes must parse as a PKCS#10 request too and request the same SPIFFE ID (or none)
 * by both readings; a certificate minted on the fast path must come from a CSR the general
 * path accepts; every refusal carries a why and leaves the output untouched. */
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

static struct sigil_x509_minter *minter;

static void
init(void)
{
    struct sigil_x509_ca_params p = {.trust_domain = "example.org",
                                     .subject = {.common_name = "fuzz"},
                                     .not_before = 1700000000,
                                     .not_after = 4000000000,
                                     .path_len = -1};
    EVP_PKEY *key = NULL;
    X509 *root = NULL;
    const char *why = NULL;

    CHECK(sigil_x509_key_generate(&key) == 0);
    CHECK(sigil_x509_mint_root(&p, key, &root, &why) == 0);
    CHECK(sigil_x509_minter_new(root, key, &minter, &why) == 0);
    X509_free(root);
    EVP_PKEY_free(key);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigil_x509_csr_frame f;
    struct sigil_spiffeid a, b, id;
    struct sigil_x509_minted info;
    struct sigil_buf out = {0};
    const unsigned char *q = data;
    const char *why = NULL;
    X509_REQ *req = NULL;
    int rf, rs, r;

    if (minter == NULL)
        init();
    if (sigil_x509_csr_frame(data, size, &f) == 0) {
        rf = sigil_x509_csr_frame_spiffeid(&f, &a, &why);
        if (rf != SIGIL_ERR_UNSUPPORTED) {
            req = d2i_X509_REQ(NULL, &q, (long)size);
            CHECK(req != NULL && q == data + size);
            why = NULL;
            rs = sigil_x509_csr_spiffeid(req, &b, &why);
            CHECK(rf == rs);
            if (rf == 0)
                CHECK(strcmp(a.str, b.str) == 0);
            X509_REQ_free(req);
            req = NULL;
        }
    }
    CHECK(sigil_spiffeid_parse("spiffe://example.org/w", 22, &id, &why) == 0);
    struct sigil_x509_leaf_params lp = {
        .id = &id, .not_before = 1700000000, .not_after = 1700003600};
    CHECK(sigil_buf_append(&out, "x", 1) == 0);
    why = NULL;
    r = sigil_x509_minter_leaf_csr(minter, &lp, data, size, &out, &info, &why);
    if (r != 0) {
        CHECK(r < 0 && why != NULL && out.len == 1);
    } else {
        CHECK(out.len > 1);
        if (info.fast) {
            CHECK(sigil_x509_csr_parse(data, size, &req, &why) == 0);
            X509_REQ_free(req);
        }
    }
    sigil_buf_free(&out);
    return 0;
}
