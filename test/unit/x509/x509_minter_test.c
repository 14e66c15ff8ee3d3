/* The prepared minter against the reference path (sigil_x509_csr_parse +
 * sigil_x509_mint_leaf_csr): the fast path writes the same certificate (every extension
 * byte for byte, names, validity, key), passes our SVID checks and verifies; what it does not
 * take (PEM, P-384, a subject) goes the general way with the same result; broken CSRs get the
 * reference's errors; the DER frame reader refuses truncations and BER; threads share one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <pthread.h>

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sigil/err.h"
#include "sigil/spiffeid.h"
#include "sigil/x509.h"

#define TD "example.org"
#define HOUR 3600

struct pki {
    time_t now;
    EVP_PKEY *root_key, *inter_key, *leaf_key;
    X509 *root, *inter;
    STACK_OF(X509) *roots;
    struct sigil_x509_minter *m;
};

static struct sigil_spiffeid
mkid(const char *s)
{
    struct sigil_spiffeid id;
    const char *why = NULL;

    if (sigil_spiffeid_parse(s, strlen(s), &id, &why) != 0)
        fail_msg("bad test ID %s: %s", s, why);
    return id;
}

static int
setup(void **state)
{
    struct pki *k = calloc(1, sizeof *k);
    struct sigil_x509_ca_params rp = {
        .trust_domain = TD,
        .subject = {.country = "US", .organization = "Sigil", .common_name = "Root"},
        .path_len = -1,
    };
    struct sigil_x509_ca_params ip = {.trust_domain = TD,
                                      .subject = {.organization = "Sigil", .common_name = "Inter"}};
    const char *why = NULL;

    assert_non_null(k);
    k->now = time(NULL);
    rp.not_before = ip.not_before = k->now - HOUR;
    rp.not_after = k->now + 48 * HOUR;
    ip.not_after = k->now + 24 * HOUR;
    ip.path_len = 0;
    assert_int_equal(sigil_x509_key_generate(&k->root_key), 0);
    assert_int_equal(sigil_x509_key_generate(&k->inter_key), 0);
    assert_int_equal(sigil_x509_key_generate(&k->leaf_key), 0);
    assert_int_equal(sigil_x509_mint_root(&rp, k->root_key, &k->root, &why), 0);
    assert_int_equal(
        sigil_x509_mint_intermediate(&ip, k->inter_key, k->root, k->root_key, &k->inter, &why), 0);
    k->roots = sk_X509_new_null();
    assert_true(sk_X509_push(k->roots, k->root) > 0);
    if (sigil_x509_minter_new(k->inter, k->inter_key, &k->m, &why) != 0)
        fail_msg("minter: %s", why);
    *state = k;
    return 0;
}

static int
teardown(void **state)
{
    struct pki *k = *state;

    sigil_x509_minter_free(k->m);
    sk_X509_pop_free(k->roots, X509_free);
    X509_free(k->inter);
    EVP_PKEY_free(k->root_key);
    EVP_PKEY_free(k->inter_key);
    EVP_PKEY_free(k->leaf_key);
    free(k);
    return 0;
}

static void
assert_ext_equal(X509 *a, X509 *b)
{
    assert_int_equal(X509_get_ext_count(a), X509_get_ext_count(b));
    for (int i = 0; i < X509_get_ext_count(a); i++) {
        unsigned char *da = NULL, *db = NULL;
        int la = i2d_X509_EXTENSION(X509_get_ext(a, i), &da);
        int lb = i2d_X509_EXTENSION(X509_get_ext(b, i), &db);

        assert_true(la > 0);
        assert_int_equal(la, lb);
        assert_memory_equal(da, db, (size_t)la);
        OPENSSL_free(da);
        OPENSSL_free(db);
    }
}

/* Mints csr with the minter and with the reference, and compares the two certificates. */
static X509 *
compare_with_reference(struct pki *k, const struct sigil_x509_leaf_params *lp,
                       const struct sigil_buf *csr, bool want_fast)
{
    struct sigil_x509_minted info;
    struct sigil_buf der = {0};
    struct sigil_spiffeid got;
    const unsigned char *q;
    unsigned char *again = NULL;
    X509_REQ *req = NULL;
    X509 *fast, *ref = NULL;
    BIGNUM *bn;
    char *hex;
    const char *why = NULL;
    STACK_OF(X509) *chain;
    time_t na;

    if (sigil_x509_minter_leaf_csr(k->m, lp, csr->data, csr->len, &der, &info, &why) != 0)
        fail_msg("minter: %s", why);
    assert_int_equal(info.fast, want_fast);
    q = der.data;
    assert_non_null(fast = d2i_X509(NULL, &q, (long)der.len));
    assert_ptr_equal(q, der.data + der.len);
    /* canonical DER: OpenSSL writes back exactly what we wrote */
    assert_int_equal(i2d_X509(fast, &again), (int)der.len);
    assert_memory_equal(again, der.data, der.len);
    OPENSSL_free(again);
    assert_int_equal(sigil_x509_csr_parse(csr->data, csr->len, &req, &why), 0);
    assert_int_equal(sigil_x509_mint_leaf_csr(lp, req, k->inter, k->inter_key, &ref, &why), 0);
    assert_int_equal(X509_get_version(fast), X509_get_version(ref));
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(fast), X509_get_issuer_name(ref)), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(fast), X509_get_subject_name(ref)), 0);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notBefore(fast), X509_get0_notBefore(ref)), 0);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(fast), X509_get0_notAfter(ref)), 0);
    assert_int_equal(X509_get_signature_nid(fast), X509_get_signature_nid(ref));
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(fast), X509_get0_pubkey(ref)), 1);
    assert_ext_equal(fast, ref);
    /* it is an SVID for the ID asked, signed by the intermediate, and info says what it is */
    assert_int_equal(X509_verify(fast, k->inter_key), 1);
    assert_int_equal(sigil_x509_svid_check_leaf(fast, &why), 0);
    chain = sk_X509_new_null();
    sk_X509_push(chain, fast);
    sk_X509_push(chain, k->inter);
    assert_int_equal(sigil_x509_svid_verify(chain, k->roots, 0, &got, &why), 0);
    assert_string_equal(got.str, lp->id->str);
    sk_X509_free(chain);
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(fast), NULL);
    hex = BN_bn2hex(bn);
    for (char *p = hex; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    assert_string_equal(info.serial, hex);
    assert_true(BN_is_negative(bn) == 0 && !BN_is_zero(bn));
    OPENSSL_free(hex);
    BN_free(bn);
    assert_int_equal(sigil_x509_cert_not_after(fast, &na), 0);
    assert_int_equal(na, info.not_after);
    X509_free(ref);
    X509_REQ_free(req);
    sigil_buf_free(&der);
    return fast;
}

static void
test_fast_matches_reference(void **state)
{
    struct pki *k = *state;
    struct sigil_spiffeid id = mkid("spiffe://" TD "/ns/prod/web");
    const char *dns[] = {"web.example.org", "*.web.example.org"};
    struct sigil_x509_leaf_params lp = {
        .id = &id, .not_before = k->now - 10, .not_after = k->now + HOUR};
    struct sigil_buf csr = {0};

    /* a CSR asking for nothing, one asking for the ID, with and without DNS names */
    assert_int_equal(sigil_x509_csr_create(k->leaf_key, NULL, &csr), 0);
    X509_free(compare_with_reference(k, &lp, &csr, true));
    sigil_buf_free(&csr);
    assert_int_equal(sigil_x509_csr_create(k->leaf_key, &id, &csr), 0);
    X509_free(compare_with_reference(k, &lp, &csr, true));
    lp.dns_names = dns;
    lp.n_dns = 2;
    X509_free(compare_with_reference(k, &lp, &csr, true));
    /* a long ID (lengths over 127 and 255 bytes in the SAN) */
    char longid[300];
    snprintf(longid, sizeof longid, "spiffe://" TD "/%0250d", 7);
    struct sigil_spiffeid lid = mkid(longid);
    sigil_buf_free(&csr);
    assert_int_equal(sigil_x509_csr_create(k->leaf_key, NULL, &csr), 0);
    lp.id = &lid;
    X509_free(compare_with_reference(k, &lp, &csr, true));
    /* past the intermediate's life: clamped as the reference clamps */
    lp.not_after = k->now + 1000 * HOUR;
    X509 *x = compare_with_reference(k, &lp, &csr, true);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(k->inter)), 0);
    X509_free(x);
    /* GeneralizedTime from 2050 on */
    lp.not_before = 2524608000 + 5; /* 2050-01-01 */
    lp.not_after = lp.not_before + HOUR;
    struct sigil_x509_ca_params ip = {.trust_domain = TD,
                                      .subject = {.common_name = "Late"},
                                      .not_before = k->now - HOUR,
                                      .not_after = 2524608000 + 10 * HOUR,
                                      .path_len = 0};
    struct sigil_x509_ca_params rp = ip;
    X509 *root2 = NULL, *inter2 = NULL;
    const char *why = NULL;
    rp.path_len = -1;
    rp.not_after += HOUR;
    assert_int_equal(sigil_x509_mint_root(&rp, k->root_key, &root2, &why), 0);
    assert_int_equal(
        sigil_x509_mint_intermediate(&ip, k->inter_key, root2, k->root_key, &inter2, &why), 0);
    struct sigil_x509_minter *m2 = NULL;
    assert_int_equal(sigil_x509_minter_new(inter2, k->inter_key, &m2, &why), 0);
    struct sigil_x509_minted info;
    struct sigil_buf der = {0};
    assert_int_equal(sigil_x509_minter_leaf_csr(m2, &lp, csr.data, csr.len, &der, &info, &why), 0);
    assert_true(info.fast);
    const unsigned char *q = der.data;
    x = d2i_X509(NULL, &q, (long)der.len);
    assert_non_null(x);
    assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_GENERALIZEDTIME);
    assert_int_equal(X509_verify(x, k->inter_key), 1);
    X509_free(x);
    sigil_buf_free(&der);
    sigil_x509_minter_free(m2);
    X509_free(inter2);
    X509_free(root2);
    sigil_buf_free(&csr);
}

static void
test_general_path_same_result(void **state)
{
    struct pki *k = *state;
    struct sigil_spiffeid id = mkid("spiffe://" TD "/w");
    struct sigil_x509_leaf_params lp = {
        .id = &id, .not_before = k->now - 10, .not_after = k->now + HOUR};
    struct sigil_buf csr = {0}, pem = {0};
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    X509_REQ *req = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long len;

    /* PEM */
    assert_int_equal(sigil_x509_csr_create(k->leaf_key, &id, &csr), 0);
    const unsigned char *q = csr.data;
    assert_non_null(req = d2i_X509_REQ(NULL, &q, (long)csr.len));
    assert_int_equal(PEM_write_bio_X509_REQ(b, req), 1);
    len = BIO_get_mem_data(b, &data);
    assert_int_equal(sigil_buf_append(&pem, data, (size_t)len), 0);
    X509_free(compare_with_reference(k, &lp, &pem, false));
    /* a subject */
    lp.subject.common_name = "w";
    X509_free(compare_with_reference(k, &lp, &csr, false));
    lp.subject.common_name = NULL;
    /* a P-384 key */
    sigil_buf_free(&csr);
    assert_non_null(p384);
    assert_int_equal(sigil_x509_csr_create(p384, &id, &csr), 0);
    X509_free(compare_with_reference(k, &lp, &csr, false));
    EVP_PKEY_free(p384);
    X509_REQ_free(req);
    BIO_free(b);
    sigil_buf_free(&csr);
    sigil_buf_free(&pem);
}

/* Mints csr, expecting the error want with why containing text; out stays as it was. */
static void
expect_error(struct pki *k, const struct sigil_x509_leaf_params *lp, const uint8_t *csr, size_t n,
             int want, const char *text)
{
    struct sigil_x509_minted info;
    struct sigil_buf out = {0};
    const char *why = NULL;

    assert_int_equal(sigil_buf_append(&out, "x", 1), 0);
    assert_int_equal(sigil_x509_minter_leaf_csr(k->m, lp, csr, n, &out, &info, &why), want);
    assert_non_null(why);
    if (strstr(why, text) == NULL)
        fail_msg("why is \"%s\", expected \"%s\"", why, text);
    assert_int_equal(out.len, 1);
    sigil_buf_free(&out);
}

static void
test_refusals(void **state)
{
    struct pki *k = *state;
    struct sigil_spiffeid id = mkid("spiffe://" TD "/w"), other = mkid("spiffe://" TD "/x"),
                          foreign = mkid("spiffe://other.org/w"), bare = mkid("spiffe://" TD);
    const char *bad_dns[] = {"-bad-.example.org"};
    struct sigil_x509_leaf_params lp = {
        .id = &id, .not_before = k->now - 10, .not_after = k->now + HOUR};
    struct sigil_buf csr = {0};

    assert_int_equal(sigil_x509_csr_create(k->leaf_key, &id, &csr), 0);
    /* a broken signature (its last byte) */
    csr.data[csr.len - 1] ^= 1;
    expect_error(k, &lp, csr.data, csr.len, SIGIL_ERR_VERIFY, "self-signature");
    csr.data[csr.len - 1] ^= 1;
    /* trailing bytes, truncation, nothing */
    assert_int_equal(sigil_buf_append(&csr, "", 1), 0);
    expect_error(k, &lp, csr.data, csr.len, SIGIL_ERR_INVALID, "malformed DER");
    csr.len -= 2;
    expect_error(k, &lp, csr.data, csr.len, SIGIL_ERR_INVALID, "malformed DER");
    csr.len++;
    expect_error(k, &lp, csr.data, 0, SIGIL_ERR_INVALID, "empty");
    /* asks for another ID; the leaf's own rules */
    lp.id = &other;
    expect_error(k, &lp, csr.data, csr.len, SIGIL_ERR_DENIED, "different SPIFFE ID");
    sigil_buf_free(&csr);
    assert_int_equal(sigil_x509_csr_create(k->leaf_key, NULL, &csr), 0);
    lp.id = &foreign;
    expect_error(k, &lp, csr.data, csr.len, SIGIL_ERR_INVALID, "X-3");
    lp.id = &bare;
    expect_error(k, &lp, csr.data, csr.len, SIGIL_ERR_INVALID, "X-2");
    lp.id = &id;
    lp.dns_names = bad_dns;
    lp.n_dns = 1;
    expect_error(k, &lp, csr.data, csr.len, SIGIL_ERR_INVALID, "DNS");
    lp.n_dns = 0;
    lp.not_after = lp.not_before;
    expect_error(k, &lp, csr.data, csr.len, SIGIL_ERR_INVALID, "notAfter");
    sigil_buf_free(&csr);
}

static void
test_frame_malformed(void **state)
{
    struct pki *k = *state;
    struct sigil_spiffeid id = mkid("spiffe://" TD "/w");
    struct sigil_x509_csr_frame f;
    struct sigil_buf csr = {0}, ber = {0};

    assert_int_equal(sigil_x509_csr_create(k->leaf_key, &id, &csr), 0);
    assert_int_equal(sigil_x509_csr_frame(csr.data, csr.len, &f), 0);
    assert_non_null(f.point);
    assert_int_equal(f.point[0], 0x04);
    assert_true(f.attrs_len > 0 && f.subject_len == 2);
    /* every truncation and every single-byte extension is refused */
    for (size_t n = 0; n < csr.len; n++)
        assert_int_equal(sigil_x509_csr_frame(csr.data, n, &f), SIGIL_ERR_UNSUPPORTED);
    assert_int_equal(sigil_buf_append(&csr, "\0", 1), 0);
    assert_int_equal(sigil_x509_csr_frame(csr.data, csr.len, &f), SIGIL_ERR_UNSUPPORTED);
    csr.len--;
    /* BER: the outer length in a non-minimal long form */
    assert_true(csr.data[1] == 0x81);
    uint8_t hdr[] = {0x30, 0x82, 0x00, csr.data[2]};
    assert_int_equal(sigil_buf_append(&ber, hdr, sizeof hdr), 0);
    assert_int_equal(sigil_buf_append(&ber, csr.data + 3, csr.len - 3), 0);
    assert_int_equal(sigil_x509_csr_frame(ber.data, ber.len, &f), SIGIL_ERR_UNSUPPORTED);
    /* indefinite length */
    ber.data[1] = 0x80;
    assert_int_equal(sigil_x509_csr_frame(ber.data, ber.len, &f), SIGIL_ERR_UNSUPPORTED);
    /* a wrong curve OID byte, a compressed point */
    uint8_t *alg = memmem(csr.data, csr.len, "\x2a\x86\x48\xce\x3d\x03\x01\x07", 8);
    assert_non_null(alg);
    alg[7] = 0x08;
    assert_int_equal(sigil_x509_csr_frame(csr.data, csr.len, &f), SIGIL_ERR_UNSUPPORTED);
    alg[7] = 0x07;
    assert_int_equal(sigil_x509_csr_frame(csr.data, csr.len, &f), 0);
    uint8_t *pt = (uint8_t *)f.point;
    pt[0] = 0x02;
    assert_int_equal(sigil_x509_csr_frame(csr.data, csr.len, &f), SIGIL_ERR_UNSUPPORTED);
    sigil_buf_free(&csr);
    sigil_buf_free(&ber);
}

struct thread_arg {
    struct pki *k;
    struct sigil_buf csr;
    int ok;
};

static void *
mint_many(void *p)
{
    struct thread_arg *t = p;
    struct sigil_spiffeid id = mkid("spiffe://" TD "/t");
    struct sigil_x509_leaf_params lp = {
        .id = &id, .not_before = t->k->now - 10, .not_after = t->k->now + HOUR};

    for (int i = 0; i < 50; i++) {
        struct sigil_x509_minted info;
        struct sigil_buf der = {0};
        const char *why = NULL;

        if (sigil_x509_minter_leaf_csr(t->k->m, &lp, t->csr.data, t->csr.len, &der, &info, &why) ==
                0 &&
            info.fast)
            t->ok++;
        sigil_buf_free(&der);
    }
    return NULL;
}

static void
test_threads_share(void **state)
{
    struct pki *k = *state;
    struct thread_arg a[4];
    pthread_t th[4];

    for (int i = 0; i < 4; i++) {
        EVP_PKEY *key = NULL;

        a[i] = (struct thread_arg){.k = k};
        assert_int_equal(sigil_x509_key_generate(&key), 0);
        assert_int_equal(sigil_x509_csr_create(key, NULL, &a[i].csr), 0);
        EVP_PKEY_free(key);
    }
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, mint_many, &a[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].ok, 50);
        sigil_buf_free(&a[i].csr);
    }
}

static void
test_minter_refuses_bad_issuer(void **state)
{
    struct pki *k = *state;
    struct sigil_x509_minter *m = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_x509_minter_new(k->inter, k->leaf_key, &m, &why), SIGIL_ERR_INVALID);
    assert_null(m);
    assert_int_equal(sigil_x509_minter_new(NULL, k->inter_key, &m, &why), SIGIL_ERR_INVALID);
    /* the chain tail is the issuer */
    struct sigil_buf der = {0};
    unsigned char *want = NULL;
    int len = i2d_X509(k->inter, &want);
    assert_int_equal(sigil_x509_minter_chain_tail(k->m, &der), 0);
    assert_int_equal(der.len, (size_t)len);
    assert_memory_equal(der.data, want, (size_t)len);
    assert_ptr_equal(sigil_x509_minter_issuer(k->m), k->inter);
    OPENSSL_free(want);
    sigil_buf_free(&der);
}

/* One thread, CSRs of different keys and two issuers in turn: each certificate carries its own
 * CSR's key and the signature of its own issuer (the thread's reused contexts follow). */
static void
test_alternating_keys_and_issuers(void **state)
{
    struct pki *k = *state;
    struct sigil_spiffeid id = mkid("spiffe://" TD "/alt");
    struct sigil_x509_leaf_params lp = {
        .id = &id, .not_before = k->now - 10, .not_after = k->now + HOUR};
    struct sigil_x509_ca_params ip = {.trust_domain = TD,
                                      .subject = {.common_name = "Inter 2"},
                                      .not_before = k->now - HOUR,
                                      .not_after = k->now + 20 * HOUR,
                                      .path_len = 0};
    struct sigil_x509_minter *m2 = NULL;
    EVP_PKEY *keys[2] = {NULL, NULL}, *ik2 = NULL;
    struct sigil_buf csr[2] = {{0}, {0}};
    X509 *inter2 = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_x509_key_generate(&ik2), 0);
    assert_int_equal(sigil_x509_mint_intermediate(&ip, ik2, k->root, k->root_key, &inter2, &why),
                     0);
    assert_int_equal(sigil_x509_minter_new(inter2, ik2, &m2, &why), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sigil_x509_key_generate(&keys[i]), 0);
        assert_int_equal(sigil_x509_csr_create(keys[i], i ? &id : NULL, &csr[i]), 0);
    }
    for (int round = 0; round < 6; round++) {
        int i = round % 2;
        struct sigil_x509_minter *m = round % 3 == 0 ? k->m : m2;
        EVP_PKEY *ikey = m == k->m ? k->inter_key : ik2;
        struct sigil_x509_minted info;
        struct sigil_buf der = {0};
        const unsigned char *q;
        X509 *x;

        /* a broken copy of the other CSR first: refused, and no trace on the next */
        csr[1 - i].data[csr[1 - i].len - 1] ^= 1;
        assert_int_equal(
            sigil_x509_minter_leaf_csr(m, &lp, csr[1 - i].data, csr[1 - i].len, &der, &info, &why),
            SIGIL_ERR_VERIFY);
        csr[1 - i].data[csr[1 - i].len - 1] ^= 1;
        assert_int_equal(der.len, 0);
        assert_int_equal(
            sigil_x509_minter_leaf_csr(m, &lp, csr[i].data, csr[i].len, &der, &info, &why), 0);
        assert_true(info.fast);
        q = der.data;
        assert_non_null(x = d2i_X509(NULL, &q, (long)der.len));
        assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(x), keys[i]), 1);
        assert_int_equal(X509_verify(x, ikey), 1);
        assert_int_equal(X509_verify(x, ikey == ik2 ? k->inter_key : ik2), 0);
        X509_free(x);
        sigil_buf_free(&der);
    }
    for (int i = 0; i < 2; i++) {
        EVP_PKEY_free(keys[i]);
        sigil_buf_free(&csr[i]);
    }
    sigil_x509_minter_free(m2);
    X509_free(inter2);
    EVP_PKEY_free(ik2);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fast_matches_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_general_path_same_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frame_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_share, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alternating_keys_and_issuers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_minter_refuses_bad_issuer, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
