/* Fuzzes the server's x509pop attestor: the first byte picks the target. 0: the input is the
 * payload (a DER chain) checked against a fixed CA; 1: the input is the challenge response to
 * a good chain's challenge. A result may only come with an ID of our prefix; a random response
 * must never verify. The attestors are linked from sigil_server_core. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/x509v3.h>

#include "nodeattest.h"
#include "sigil/buf.h"
#include "sigil/err.h"
#include "sigil/x509.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

/* nodeattest.c lists join_token too; the fuzzer never starts it, and defining it here keeps
 * the linker from pulling nodeattest_join_token.o (and the datastore it calls) in. */
const struct sigil_nodeattest sigil_nodeattest_join_token = {.name = "join_token"};

static STACK_OF(X509) *roots;
static struct sigil_buf leaf_der;

static X509 *
make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, bool ca)
{
    X509 *c = X509_new();
    X509_NAME *n = X509_NAME_new();
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    CHECK(c != NULL && n != NULL);
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), ca ? 1 : 2);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)(ca ? "ca" : "node"),
                               -1, -1, 0);
    X509_set_subject_name(c, n);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400L * 365 * 50);
    X509_set_pubkey(c, key);
    X509V3_set_ctx(&v3, issuer ? issuer : c, c, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
                              ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    CHECK(X509_sign(c, issuer ? ikey : key, EVP_sha256()) > 0);
    X509_NAME_free(n);
    return c;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    EVP_PKEY *ca_key = NULL, *leaf_key = NULL;
    X509 *ca, *leaf;

    (void)argc, (void)argv;
    CHECK(sigil_x509_key_generate(&ca_key) == 0 && sigil_x509_key_generate(&leaf_key) == 0);
    ca = make_cert(ca_key, NULL, NULL, true);
    leaf = make_cert(leaf_key, ca, ca_key, false);
    CHECK((roots = sk_X509_new_null()) != NULL && sk_X509_push(roots, ca) > 0);
    CHECK(sigil_x509_cert_to_der(leaf, &leaf_der) == 0);
    X509_free(leaf);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(leaf_key);
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t csr[] = {0x30, 0x00};
    struct sigil_nodeattest_cfg cfg = {
        .trust_domain = "example.org", .x509pop_roots = roots, .now = (int64_t)time(NULL)};
    struct sigil_nodeattest_result res = {0};
    struct sigil_buf ch = {0};
    const char *why = NULL;
    void *st = NULL;
    int r;

    if (size == 0)
        return 0;
    if (data[0] == 0) {
        r = sigil_nodeattest_x509pop.start(&cfg, NULL, data + 1, size - 1, csr, sizeof csr, &st,
                                           &ch, &res, &why);
        CHECK(r != 0 || (st != NULL && ch.len == SIGIL_NODEATTEST_NONCE_LEN));
        CHECK(r == 0 || (why != NULL && st == NULL));
        CHECK(res.spiffe_id == NULL);
    } else {
        r = sigil_nodeattest_x509pop.start(&cfg, NULL, leaf_der.data, leaf_der.len, csr, sizeof csr,
                                           &st, &ch, &res, &why);
        CHECK(r == 0 && st != NULL);
        r = sigil_nodeattest_x509pop.answer(st, data + 1, size - 1, &res, &why);
        /* nobody forges an ECDSA signature over a fresh nonce */
        CHECK(r != 0 && why != NULL && res.spiffe_id == NULL);
    }
    sigil_nodeattest_x509pop.free_state(st);
    sigil_nodeattest_result_free(&res);
    sigil_buf_free(&ch);
    return 0;
}
