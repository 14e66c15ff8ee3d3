/* Node attestors, agent side: join_token sends the token and refuses challenges; x509pop
 * sends the node chain and answers a nonce with a signature that an independent verifier
 * (OpenSSL directly, over a message assembled here) accepts, bound to nonce and CSR. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "nodeattest.h"
#include "sigil/err.h"
#include "sigil/x509.h"

static void
test_join_token(void **state)
{
    struct sigil_nodeattest_opts o = {.join_token = "tok-123"};
    struct sigil_buf out = {0};
    const char *why = NULL;
    void *st = NULL;

    (void)state;
    assert_ptr_equal(sigil_nodeattest_pick(&o), &sigil_nodeattest_join_token);
    assert_int_equal(sigil_nodeattest_join_token.load(&o, &st, &why), 0);
    assert_int_equal(sigil_nodeattest_join_token.payload(st, &out, &why), 0);
    assert_int_equal(out.len, 7);
    assert_memory_equal(out.data, "tok-123", 7);
    assert_int_equal(
        sigil_nodeattest_join_token.answer(st, (const uint8_t *)"n", 1, NULL, 0, &out, &why),
        SIGIL_ERR_PROTOCOL);
    sigil_nodeattest_join_token.free_state(st);
    sigil_buf_free(&out);
    o.join_token = "";
    assert_null(sigil_nodeattest_pick(&o));
    assert_int_equal(sigil_nodeattest_join_token.load(&o, &st, &why), SIGIL_ERR_INVALID);
}

static char dir[64];

/* Writes a node certificate (and its key, or another key if mismatched) as PEM files. */
static void
write_node(X509 **leaf_out, EVP_PKEY **key_out, bool mismatched, char *cert_path, char *key_path)
{
    struct sigil_x509_ca_params ca = {.trust_domain = "example.org", .path_len = -1};
    struct sigil_spiffeid id;
    struct sigil_x509_leaf_params lp = {.id = &id};
    EVP_PKEY *root_key = NULL, *key = NULL, *other = NULL;
    X509 *root = NULL, *leaf = NULL;
    struct sigil_buf pem = {0};
    const char *why = NULL;
    FILE *f;

    ca.subject.common_name = "x509pop test CA";
    ca.not_before = time(NULL) - 60;
    ca.not_after = time(NULL) + 3600;
    assert_int_equal(sigil_x509_key_generate(&root_key), 0);
    assert_int_equal(sigil_x509_mint_root(&ca, root_key, &root, &why), 0);
    assert_int_equal(sigil_spiffeid_from_parts("example.org", "/node/n1", &id, &why), 0);
    lp.not_before = ca.not_before;
    lp.not_after = ca.not_after;
    assert_int_equal(sigil_x509_key_generate(&key), 0);
    assert_int_equal(sigil_x509_mint_leaf(&lp, key, root, root_key, &leaf, &why), 0);
    sprintf(cert_path, "%s/node.pem", dir);
    sprintf(key_path, "%s/node.key", dir);
    assert_int_equal(sigil_x509_cert_to_pem(leaf, &pem), 0);
    assert_int_equal(sigil_x509_cert_to_pem(root, &pem), 0);
    assert_non_null(f = fopen(cert_path, "w"));
    assert_int_equal(fwrite(pem.data, 1, pem.len, f), pem.len);
    fclose(f);
    assert_int_equal(sigil_x509_key_generate(&other), 0);
    assert_int_equal(sigil_x509_key_write_file(key_path, mismatched ? other : key), 0);
    sigil_buf_free(&pem);
    X509_free(root);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(other);
    *leaf_out = leaf;
    *key_out = key;
}

/* The independent check: ECDSA-SHA256 over context || 0 || nonce || sha256(csr). */
static bool
pop_verifies(X509 *leaf, const uint8_t *nonce, size_t n, const uint8_t *csr, size_t csr_len,
             const struct sigil_buf *sig)
{
    uint8_t msg[64 + 64 + 32], h[32];
    size_t len = 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok;

    memcpy(msg, "sigil x509pop v1", 16);
    msg[16] = 0;
    len = 17;
    memcpy(msg + len, nonce, n);
    len += n;
    SHA256(csr, csr_len, h);
    memcpy(msg + len, h, 32);
    len += 32;
    ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, X509_get0_pubkey(leaf)) == 1 &&
         EVP_DigestVerify(md, sig->data, sig->len, msg, len) == 1;
    EVP_MD_CTX_free(md);
    return ok;
}

static void
test_x509pop(void **state)
{
    char cert_path[128], key_path[128];
    struct sigil_nodeattest_opts o = {0};
    struct sigil_buf payload = {0}, sig = {0}, csr = {0};
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL, *agent_key = NULL;
    X509 *leaf = NULL;
    uint8_t nonce[32], huge[SIGIL_NODEATTEST_CHALLENGE_MAX + 1] = {0};
    const char *why = NULL;
    void *st = NULL;

    (void)state;
    snprintf(dir, sizeof dir, "/tmp/agent_pop_XXXXXX");
    assert_non_null(mkdtemp(dir));
    write_node(&leaf, &key, false, cert_path, key_path);
    o.x509pop_cert_path = cert_path;
    o.x509pop_key_path = key_path;
    o.join_token = "ignored";
    assert_ptr_equal(sigil_nodeattest_pick(&o), &sigil_nodeattest_x509pop);
    assert_int_equal(sigil_nodeattest_x509pop.load(&o, &st, &why), 0);
    /* the payload is the DER chain, leaf first */
    assert_int_equal(sigil_nodeattest_x509pop.payload(st, &payload, &why), 0);
    assert_int_equal(sigil_x509_chain_parse_der(payload.data, payload.len, &chain, &why), 0);
    assert_int_equal(sk_X509_num(chain), 2);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), leaf), 0);
    /* the answer verifies for this nonce and CSR, not for another of either */
    for (size_t i = 0; i < sizeof nonce; i++)
        nonce[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(sigil_x509_key_generate(&agent_key), 0);
    assert_int_equal(sigil_x509_csr_create(agent_key, NULL, &csr), 0);
    assert_int_equal(
        sigil_nodeattest_x509pop.answer(st, nonce, sizeof nonce, csr.data, csr.len, &sig, &why), 0);
    assert_true(pop_verifies(leaf, nonce, sizeof nonce, csr.data, csr.len, &sig));
    nonce[0] ^= 1;
    assert_false(pop_verifies(leaf, nonce, sizeof nonce, csr.data, csr.len, &sig));
    nonce[0] ^= 1;
    csr.data[csr.len - 1] ^= 1;
    assert_false(pop_verifies(leaf, nonce, sizeof nonce, csr.data, csr.len, &sig));
    /* empty and oversized challenges, and a missing CSR, are refused */
    assert_int_equal(sigil_nodeattest_x509pop.answer(st, nonce, 0, csr.data, csr.len, &sig, &why),
                     SIGIL_ERR_RANGE);
    assert_int_equal(
        sigil_nodeattest_x509pop.answer(st, huge, sizeof huge, csr.data, csr.len, &sig, &why),
        SIGIL_ERR_RANGE);
    assert_int_equal(sigil_nodeattest_x509pop.answer(st, nonce, sizeof nonce, NULL, 0, &sig, &why),
                     SIGIL_ERR_INVALID);
    sigil_nodeattest_x509pop.free_state(st);
    st = NULL;
    X509_free(leaf);
    EVP_PKEY_free(key);

    /* a key that is not the certificate's is refused at load */
    write_node(&leaf, &key, true, cert_path, key_path);
    assert_int_equal(sigil_nodeattest_x509pop.load(&o, &st, &why), SIGIL_ERR_INVALID);
    assert_null(st);
    o.x509pop_key_path = "/nonexistent/key";
    assert_int_not_equal(sigil_nodeattest_x509pop.load(&o, &st, &why), 0);

    unlink(cert_path);
    unlink(key_path);
    rmdir(dir);
    X509_free(leaf);
    EVP_PKEY_free(key);
    EVP_PKEY_free(agent_key);
    sk_X509_pop_free(chain, X509_free);
    sigil_buf_free(&payload);
    sigil_buf_free(&sig);
    sigil_buf_free(&csr);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_token),
        cmocka_unit_test(test_x509pop),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
