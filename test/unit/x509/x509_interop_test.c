/* go-spiffe's X.509 test vectors, read where they sit ($SIGIL_SHARED_DIR/interop/...):
 * every file of svid/x509svid/testdata and bundle/x509bundle/testdata is classified as its
 * name says. A file without an expectation here fails the test, so new vectors are never
 * skipped silently. The certificates expired in 2025; verification pins a time inside. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dirent.h>

#include <cmocka.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sigil/err.h"
#include "sigil/x509.h"

#define SVID_DIR "interop/go-spiffe-testdata/svid/x509svid/testdata"
#define BUNDLE_DIR "interop/go-spiffe-testdata/bundle/x509bundle/testdata"

/* 2020-03-24T14:30:00Z: inside good-leaf-and-intermediate (leaf 14:07:30-15:07:40). */
#define T_LEAF_AND_INTER ((time_t)1585060200)
/* 2021-01-01T00:00:00Z: inside the 2020-03-30..2025-03-29 self-signed RSA vectors. */
#define T_2021 ((time_t)1609459200)

enum kind {
    GOOD_CERT_AND_KEY,   /* leaf + its key in one PEM, any order */
    GOOD_LEAF_AND_INTER, /* leaf + intermediate; key in key-pkcs8-ecdsa.pem */
    GOOD_LEAF_ONLY,      /* self-signed RSA leaf; key in key-pkcs8-rsa.pem */
    KEY_OK,              /* a PKCS#8 key */
    BAD_CERT,            /* certificate PEM that must not parse */
    BAD_KEY,             /* key PEM that must not parse */
    NOT_PEM,             /* neither certificates nor a key */
    WRONG_LEAF,          /* parses; sigil_x509_svid_check_leaf refuses with `why` */
    WRONG_INTER,         /* parses, leaf fine; the intermediate fails the CA checks */
    BUNDLE_CERTS,        /* x509bundle: parses to `count` certificates */
    BUNDLE_BAD,          /* x509bundle: refused, `why` says so */
};

struct expect {
    const char *dir;
    const char *name;
    enum kind kind;
    const char *why; /* a substring the refusal's why must contain, or NULL */
    int count;       /* BUNDLE_CERTS */
    bool seen;
};

static struct expect expects[] = {
    {SVID_DIR, "corrupt-cert.pem", BAD_CERT, "malformed DER", 0, false},
    {SVID_DIR, "corrupt-key.pem", BAD_KEY, "PKCS#8", 0, false},
    {SVID_DIR, "good-cert-and-key.pem", GOOD_CERT_AND_KEY, NULL, 0, false},
    {SVID_DIR, "good-key-and-cert.pem", GOOD_CERT_AND_KEY, NULL, 0, false},
    {SVID_DIR, "good-leaf-and-intermediate.pem", GOOD_LEAF_AND_INTER, NULL, 0, false},
    {SVID_DIR, "good-leaf-only.pem", GOOD_LEAF_ONLY, NULL, 0, false},
    {SVID_DIR, "key-pkcs8-ecdsa.pem", KEY_OK, NULL, EVP_PKEY_EC, false},
    {SVID_DIR, "key-pkcs8-rsa.pem", KEY_OK, NULL, EVP_PKEY_RSA, false},
    {SVID_DIR, "not-pem", NOT_PEM, NULL, 0, false},
    {SVID_DIR, "wrong-intermediate-no-ca.pem", WRONG_INTER,
     "X-4: a signing certificate must have cA=true", 0, false},
    {SVID_DIR, "wrong-intermediate-no-key-cert-sign.pem", WRONG_INTER,
     "X-5: a signing certificate must have keyUsage keyCertSign", 0, false},
    {SVID_DIR, "wrong-leaf-ca-true.pem", WRONG_LEAF, "X-4: a leaf must have cA=false", 0, false},
    {SVID_DIR, "wrong-leaf-cert-sign.pem", WRONG_LEAF,
     "X-9: a leaf must not have keyUsage keyCertSign", 0, false},
    {SVID_DIR, "wrong-leaf-crl-sign.pem", WRONG_LEAF, "X-9: a leaf must not have keyUsage cRLSign",
     0, false},
    {SVID_DIR, "wrong-leaf-empty-id.pem", WRONG_LEAF, "X-1: certificate has no URI SAN", 0, false},
    {SVID_DIR, "wrong-leaf-no-digital-signature.pem", WRONG_LEAF,
     "X-5: a leaf must have keyUsage digitalSignature", 0, false},
    {BUNDLE_DIR, "cert.pem", BUNDLE_CERTS, NULL, 1, false},
    {BUNDLE_DIR, "certs.pem", BUNDLE_CERTS, NULL, 2, false},
    {BUNDLE_DIR, "corrupted.pem", BUNDLE_BAD, "X.509: malformed DER", 0, false},
    {BUNDLE_DIR, "empty.pem", BUNDLE_BAD, "PEM: empty input", 0, false},
    {BUNDLE_DIR, "key.pem", BUNDLE_BAD, "PEM: expected CERTIFICATE blocks only", 0, false},
    {BUNDLE_DIR, "not-pem.pem", BUNDLE_BAD, "PEM: no certificate", 0, false},
};

static char *
vector_path(const char *dir, const char *name)
{
    const char *shared = getenv("SIGIL_SHARED_DIR");
    char *p = NULL;

    assert_non_null(shared);
    assert_true(asprintf(&p, "%s/%s/%s", shared, dir, name) > 0);
    return p;
}

static void
load(const char *dir, const char *name, struct sigil_buf *b)
{
    char *path = vector_path(dir, name);
    const char *why = NULL;

    b->len = 0;
    assert_int_equal(sigil_x509_file_read(path, b, &why), 0);
    free(path);
}

static void
assert_why(const char *why, const char *want)
{
    assert_non_null(why);
    if (want != NULL && strstr(why, want) == NULL)
        fail_msg("why is \"%s\", expected it to contain \"%s\"", why, want);
}

static EVP_PKEY *
load_key(const char *name)
{
    char *path = vector_path(SVID_DIR, name);
    const char *why = NULL;
    EVP_PKEY *k = NULL;

    assert_int_equal(sigil_x509_key_read_file(path, &k, &why), 0);
    free(path);
    return k;
}

/* Leaf checks pass and its ID is spiffe://example.org/workload-1. */
static void
assert_good_leaf(X509 *leaf)
{
    struct sigil_spiffeid id;
    const char *why = NULL;

    if (sigil_x509_svid_check_leaf(leaf, &why) != 0)
        fail_msg("leaf check failed: %s", why);
    assert_int_equal(sigil_x509_cert_spiffeid(leaf, &id, &why), 0);
    assert_string_equal(id.str, "spiffe://example.org/workload-1");
}

/* The DER form of a chain parses back to the same certificates. */
static void
assert_der_roundtrip(STACK_OF(X509) *chain)
{
    struct sigil_buf der = {0}, again = {0};
    STACK_OF(X509) *back = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_x509_chain_to_der(chain, &der), 0);
    assert_int_equal(sigil_x509_chain_parse_der(der.data, der.len, &back, &why), 0);
    assert_int_equal(sk_X509_num(back), sk_X509_num(chain));
    assert_int_equal(sigil_x509_chain_to_der(back, &again), 0);
    assert_int_equal(again.len, der.len);
    assert_memory_equal(again.data, der.data, der.len);
    sk_X509_pop_free(back, X509_free);
    sigil_buf_free(&der);
    sigil_buf_free(&again);
}

static STACK_OF(X509) *
one(X509 *cert)
{
    STACK_OF(X509) *sk = sk_X509_new_null();

    assert_non_null(sk);
    assert_true(sk_X509_push(sk, cert) > 0);
    return sk;
}

static void
check_good_cert_and_key(const struct sigil_buf *b)
{
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_x509_pem_parse_certs_and_key(b->data, b->len, &certs, &key, &why), 0);
    assert_int_equal(sk_X509_num(certs), 1);
    assert_good_leaf(sk_X509_value(certs, 0));
    assert_true(sigil_x509_key_matches_cert(key, sk_X509_value(certs, 0)));
    /* The chain as a plain certificate list refuses the key block. */
    STACK_OF(X509) *only = NULL;
    assert_int_equal(sigil_x509_chain_parse_pem(b->data, b->len, &only, &why), SIGIL_ERR_INVALID);
    /* Its issuer (AKI D3:35:43:...) is not among the vectors, so no path validation is
     * possible; the other example.org intermediate, valid at the same time, must not do. */
    struct sigil_buf ib = {0};
    STACK_OF(X509) *ichain = NULL, *roots;
    load(SVID_DIR, "good-leaf-and-intermediate.pem", &ib);
    assert_int_equal(sigil_x509_chain_parse_pem(ib.data, ib.len, &ichain, &why), 0);
    roots = one(sk_X509_value(ichain, 1));
    assert_int_equal(sigil_x509_svid_verify(certs, roots, T_LEAF_AND_INTER, NULL, &why),
                     SIGIL_ERR_VERIFY);
    assert_why(why, "X-8: the chain does not lead to an authority");
    sk_X509_free(roots);
    sk_X509_pop_free(ichain, X509_free);
    sigil_buf_free(&ib);
    assert_der_roundtrip(certs);
    sk_X509_pop_free(certs, X509_free);
    EVP_PKEY_free(key);
}

static void
check_good_leaf_and_inter(const struct sigil_buf *b)
{
    STACK_OF(X509) *chain = NULL, *roots;
    EVP_PKEY *key = load_key("key-pkcs8-ecdsa.pem"), *other = load_key("key-pkcs8-rsa.pem");
    struct sigil_spiffeid id;
    const char *why = NULL;
    X509 *leaf, *inter;
    time_t end;

    assert_int_equal(sigil_x509_chain_parse_pem(b->data, b->len, &chain, &why), 0);
    assert_int_equal(sk_X509_num(chain), 2);
    leaf = sk_X509_value(chain, 0);
    inter = sk_X509_value(chain, 1);
    assert_good_leaf(leaf);
    if (sigil_x509_svid_check_ca(inter, &why) != 0)
        fail_msg("intermediate check failed: %s", why);
    assert_true(sigil_x509_key_matches_cert(key, leaf));
    assert_false(sigil_x509_key_matches_cert(other, leaf));
    /* The root that signed the intermediate (AKI 87:A5:F3:...) is not in the vectors, so
     * the full path cannot be validated. What can be: the intermediate signed the leaf... */
    assert_int_equal(X509_check_issued(inter, leaf), X509_V_OK);
    assert_int_equal(X509_verify(leaf, X509_get0_pubkey(inter)), 1);
    assert_int_not_equal(X509_verify(inter, X509_get0_pubkey(inter)), 1); /* not a root */
    /* ...and with the intermediate as the bundle's authority the chain verifies. */
    roots = one(inter);
    assert_int_equal(sigil_x509_svid_verify(chain, roots, T_LEAF_AND_INTER, &id, &why), 0);
    assert_string_equal(id.str, "spiffe://example.org/workload-1");
    /* after the leaf's notAfter, and before its notBefore */
    assert_int_equal(sigil_x509_cert_not_after(leaf, &end), 0);
    assert_int_equal(end, (time_t)1585062460); /* 2020-03-24T15:07:40Z */
    assert_int_equal(sigil_x509_svid_verify(chain, roots, end + 1, NULL, &why), SIGIL_ERR_EXPIRED);
    assert_int_equal(sigil_x509_svid_verify(chain, roots, T_LEAF_AND_INTER - 86400, NULL, &why),
                     SIGIL_ERR_EXPIRED);
    /* "now" is years after expiry */
    assert_int_equal(sigil_x509_svid_verify(chain, roots, 0, NULL, &why), SIGIL_ERR_EXPIRED);
    /* the leaf alone is enough when the bundle holds its issuer */
    STACK_OF(X509) *leaf_only = one(leaf);
    assert_int_equal(sigil_x509_svid_verify(leaf_only, roots, T_LEAF_AND_INTER, NULL, &why), 0);
    sk_X509_free(leaf_only);
    /* another authority: no path */
    {
        struct sigil_buf ob = {0};
        STACK_OF(X509) *other_chain = NULL;
        load(SVID_DIR, "good-leaf-only.pem", &ob);
        assert_int_equal(sigil_x509_chain_parse_pem(ob.data, ob.len, &other_chain, &why), 0);
        STACK_OF(X509) *other_roots = one(sk_X509_value(other_chain, 0));
        assert_int_equal(sigil_x509_svid_verify(chain, other_roots, T_LEAF_AND_INTER, NULL, &why),
                         SIGIL_ERR_VERIFY);
        assert_why(why, "X-8: the chain does not lead to an authority");
        sk_X509_free(other_roots);
        sk_X509_pop_free(other_chain, X509_free);
        sigil_buf_free(&ob);
    }
    assert_der_roundtrip(chain);
    sk_X509_free(roots);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

static void
check_good_leaf_only(const struct sigil_buf *b)
{
    STACK_OF(X509) *chain = NULL, *roots;
    EVP_PKEY *key = load_key("key-pkcs8-rsa.pem");
    const char *why = NULL;
    X509 *leaf;

    assert_int_equal(sigil_x509_chain_parse_pem(b->data, b->len, &chain, &why), 0);
    assert_int_equal(sk_X509_num(chain), 1);
    leaf = sk_X509_value(chain, 0);
    assert_good_leaf(leaf);
    assert_true(sigil_x509_key_matches_cert(key, leaf));
    /* Self-signed (a leaf, cA=false): the only way it verifies is by being in the bundle
     * itself, which a trust anchor may be; any other bundle gives no path. */
    assert_int_equal(X509_verify(leaf, X509_get0_pubkey(leaf)), 1);
    roots = one(leaf);
    assert_int_equal(sigil_x509_svid_verify(chain, roots, T_2021, NULL, &why), 0);
    sk_X509_free(roots);
    assert_der_roundtrip(chain);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
}

static void
check_wrong_inter(const struct sigil_buf *b, const char *want)
{
    STACK_OF(X509) *chain = NULL, *roots;
    const char *why = NULL;

    assert_int_equal(sigil_x509_chain_parse_pem(b->data, b->len, &chain, &why), 0);
    assert_int_equal(sk_X509_num(chain), 2);
    assert_good_leaf(sk_X509_value(chain, 0));
    assert_int_equal(sigil_x509_svid_check_ca(sk_X509_value(chain, 1), &why), SIGIL_ERR_INVALID);
    assert_why(why, want);
    /* verification names the same rule, even with the intermediate as the bundle */
    roots = one(sk_X509_value(chain, 1));
    why = NULL;
    assert_int_equal(sigil_x509_svid_verify(chain, roots, T_2021, NULL, &why), SIGIL_ERR_INVALID);
    assert_why(why, want);
    sk_X509_free(roots);
    sk_X509_pop_free(chain, X509_free);
}

static void
check_wrong_leaf(const struct sigil_buf *b, const char *want)
{
    STACK_OF(X509) *chain = NULL, *roots;
    const char *why = NULL;

    assert_int_equal(sigil_x509_chain_parse_pem(b->data, b->len, &chain, &why), 0);
    assert_int_equal(sk_X509_num(chain), 1);
    assert_int_equal(sigil_x509_svid_check_leaf(sk_X509_value(chain, 0), &why), SIGIL_ERR_INVALID);
    assert_why(why, want);
    /* even when the bundle trusts the certificate itself */
    roots = one(sk_X509_value(chain, 0));
    why = NULL;
    assert_int_equal(sigil_x509_svid_verify(chain, roots, T_2021, NULL, &why), SIGIL_ERR_INVALID);
    assert_why(why, want);
    sk_X509_free(roots);
    sk_X509_pop_free(chain, X509_free);
}

static void
classify(struct expect *e)
{
    struct sigil_buf b = {0};
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL;
    const char *why = NULL;

    load(e->dir, e->name, &b);
    switch (e->kind) {
    case GOOD_CERT_AND_KEY:
        check_good_cert_and_key(&b);
        break;
    case GOOD_LEAF_AND_INTER:
        check_good_leaf_and_inter(&b);
        break;
    case GOOD_LEAF_ONLY:
        check_good_leaf_only(&b);
        break;
    case KEY_OK:
        assert_int_equal(sigil_x509_key_parse_pem(b.data, b.len, &key, &why), 0);
        assert_int_equal(EVP_PKEY_get_base_id(key), e->count);
        break;
    case BAD_CERT:
        assert_int_equal(sigil_x509_chain_parse_pem(b.data, b.len, &certs, &why),
                         SIGIL_ERR_INVALID);
        assert_null(certs);
        assert_why(why, e->why);
        break;
    case BAD_KEY:
        assert_int_equal(sigil_x509_key_parse_pem(b.data, b.len, &key, &why), SIGIL_ERR_INVALID);
        assert_null(key);
        assert_why(why, e->why);
        break;
    case NOT_PEM:
        assert_int_equal(sigil_x509_chain_parse_pem(b.data, b.len, &certs, &why),
                         SIGIL_ERR_INVALID);
        assert_why(why, "PEM: no certificate");
        assert_int_equal(sigil_x509_key_parse_pem(b.data, b.len, &key, &why), SIGIL_ERR_INVALID);
        assert_why(why, "PEM: no private key");
        assert_int_equal(sigil_x509_chain_parse_der(b.data, b.len, &certs, &why),
                         SIGIL_ERR_INVALID);
        break;
    case WRONG_LEAF:
        check_wrong_leaf(&b, e->why);
        break;
    case WRONG_INTER:
        check_wrong_inter(&b, e->why);
        break;
    case BUNDLE_CERTS:
        assert_int_equal(sigil_x509_chain_parse_pem(b.data, b.len, &certs, &why), 0);
        assert_int_equal(sk_X509_num(certs), e->count);
        assert_der_roundtrip(certs);
        break;
    case BUNDLE_BAD:
        assert_int_equal(sigil_x509_chain_parse_pem(b.data, b.len, &certs, &why),
                         SIGIL_ERR_INVALID);
        assert_null(certs);
        assert_why(why, e->why);
        break;
    }
    sk_X509_pop_free(certs, X509_free);
    EVP_PKEY_free(key);
    sigil_buf_free(&b);
}

static void
walk(const char *dir)
{
    char *path = vector_path(dir, "");
    DIR *d = opendir(path);
    struct dirent *de;
    int files = 0;

    if (d == NULL)
        fail_msg("cannot open %s", path);
    while ((de = readdir(d)) != NULL) {
        struct expect *e = NULL;
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        for (size_t i = 0; i < sizeof expects / sizeof expects[0]; i++)
            if (strcmp(expects[i].dir, dir) == 0 && strcmp(expects[i].name, de->d_name) == 0)
                e = &expects[i];
        if (e == NULL)
            fail_msg("%s/%s: a vector this test has no expectation for", dir, de->d_name);
        print_message("  %s\n", de->d_name);
        classify(e);
        e->seen = true;
        files++;
    }
    closedir(d);
    free(path);
    assert_true(files > 0);
}

static void
test_every_vector_classified(void **state)
{
    (void)state;
    walk(SVID_DIR);
    walk(BUNDLE_DIR);
    for (size_t i = 0; i < sizeof expects / sizeof expects[0]; i++)
        if (!expects[i].seen)
            fail_msg("%s/%s: expected vector is missing", expects[i].dir, expects[i].name);
}

/* corrupt-key.pem with a good certificate, the way go-spiffe pairs them. */
static void
test_good_cert_with_corrupt_key(void **state)
{
    (void)state;
    struct sigil_buf b = {0};
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL;
    const char *why = NULL;

    load(SVID_DIR, "good-leaf-only.pem", &b);
    struct sigil_buf k = {0};
    load(SVID_DIR, "corrupt-key.pem", &k);
    assert_int_equal(sigil_buf_append(&b, k.data, k.len), 0);
    assert_int_equal(sigil_x509_pem_parse_certs_and_key(b.data, b.len, &certs, &key, &why),
                     SIGIL_ERR_INVALID);
    assert_null(certs);
    assert_null(key);
    assert_why(why, "PKCS#8");
    sigil_buf_free(&k);
    sigil_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_vector_classified),
        cmocka_unit_test(test_good_cert_with_corrupt_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
