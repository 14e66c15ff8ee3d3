/* Minting and verification round trips: root -> intermediate -> leaf verifies; expired,
 * wrong root, missing intermediate, name constraints, two URI SANs, a CA as a
 * leaf and other broken leaves fail with the rule they break. Broken certificates are
 * made by hand with OpenSSL here, since sigil_x509_mint_* refuses to make them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/bn.h>
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
    X509 *root, *inter, *leaf;
    STACK_OF(X509) *chain; /* leaf, inter (owned) */
    STACK_OF(X509) *roots; /* root (owned) */
};

static void
assert_why(const char *why, const char *want)
{
    assert_non_null(why);
    if (strstr(why, want) == NULL)
        fail_msg("why is \"%s\", expected it to contain \"%s\"", why, want);
}

static struct sigil_spiffeid
mkid(const char *s)
{
    struct sigil_spiffeid id;
    const char *why = NULL;

    if (sigil_spiffeid_parse(s, strlen(s), &id, &why) != 0)
        fail_msg("bad test ID %s: %s", s, why);
    return id;
}

static X509 *
mint_root(const char *td, EVP_PKEY *key, time_t now, int path_len)
{
    struct sigil_x509_ca_params p = {
        .trust_domain = td,
        .subject = {.country = "US", .organization = "Sigil", .common_name = "Sigil Root"},
        .not_before = now - HOUR,
        .not_after = now + 24 * HOUR,
        .path_len = path_len,
    };
    const char *why = NULL;
    X509 *x = NULL;

    if (sigil_x509_mint_root(&p, key, &x, &why) != 0)
        fail_msg("mint root: %s", why);
    return x;
}

static X509 *
mint_inter(EVP_PKEY *pub, X509 *parent, EVP_PKEY *parent_key, time_t now, int path_len)
{
    struct sigil_x509_ca_params p = {
        .trust_domain = TD,
        .subject = {.organization = "Sigil", .common_name = "Sigil Intermediate"},
        .not_before = now - HOUR,
        .not_after = now + 12 * HOUR,
        .path_len = path_len,
    };
    const char *why = NULL;
    X509 *x = NULL;

    if (sigil_x509_mint_intermediate(&p, pub, parent, parent_key, &x, &why) != 0)
        fail_msg("mint intermediate: %s", why);
    return x;
}

static int
setup(void **state)
{
    struct pki *k = calloc(1, sizeof *k);
    struct sigil_spiffeid id = mkid("spiffe://" TD "/ns/prod/web");
    const char *dns[] = {"web.example.org", "*.web.example.org"};
    struct sigil_x509_leaf_params lp = {
        .id = &id,
        .dns_names = dns,
        .n_dns = 2,
        .not_before = 0,
        .not_after = 0,
    };
    const char *why = NULL;

    assert_non_null(k);
    k->now = time(NULL);
    assert_int_equal(sigil_x509_key_generate(&k->root_key), 0);
    assert_int_equal(sigil_x509_key_generate(&k->inter_key), 0);
    assert_int_equal(sigil_x509_key_generate(&k->leaf_key), 0);
    k->root = mint_root(TD, k->root_key, k->now, -1);
    k->inter = mint_inter(k->inter_key, k->root, k->root_key, k->now, 0);
    lp.not_before = k->now - 60;
    lp.not_after = k->now + HOUR;
    if (sigil_x509_mint_leaf(&lp, k->leaf_key, k->inter, k->inter_key, &k->leaf, &why) != 0)
        fail_msg("mint leaf: %s", why);
    k->chain = sk_X509_new_null();
    k->roots = sk_X509_new_null();
    assert_true(sk_X509_push(k->chain, k->leaf) > 0);
    assert_true(sk_X509_push(k->chain, k->inter) > 0);
    assert_true(sk_X509_push(k->roots, k->root) > 0);
    *state = k;
    return 0;
}

static int
teardown(void **state)
{
    struct pki *k = *state;

    sk_X509_pop_free(k->chain, X509_free);
    sk_X509_pop_free(k->roots, X509_free);
    EVP_PKEY_free(k->root_key);
    EVP_PKEY_free(k->inter_key);
    EVP_PKEY_free(k->leaf_key);
    free(k);
    return 0;
}

static STACK_OF(X509) *
stack_of(X509 *a, X509 *b)
{
    STACK_OF(X509) *sk = sk_X509_new_null();

    assert_non_null(sk);
    assert_true(sk_X509_push(sk, a) > 0);
    if (b != NULL)
        assert_true(sk_X509_push(sk, b) > 0);
    return sk;
}

/* ---- certificates made by hand, with whatever we want wrong in them ---- */

struct hand {
    const char *san; /* OpenSSL config, e.g. "URI:spiffe://a/b,URI:spiffe://a/c" */
    const char *bc;  /* e.g. "critical,CA:FALSE" */
    const char *ku;  /* e.g. "critical,digitalSignature", or NULL for none */
    const char *eku; /* e.g. "serverAuth,clientAuth", or NULL for none */
    const char *cn;  /* subject CN, or NULL for an empty subject */
    time_t nb, na;
};

static void
add_conf_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
    X509_EXTENSION *ext;

    if (value == NULL)
        return;
    ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static X509 *
hand_mint(const struct hand *h, EVP_PKEY *pub, X509 *issuer, EVP_PKEY *issuer_key)
{
    X509 *x = X509_new();
    X509V3_CTX ctx;

    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 4242), 1);
    assert_non_null(ASN1_TIME_set(X509_getm_notBefore(x), h->nb));
    assert_non_null(ASN1_TIME_set(X509_getm_notAfter(x), h->na));
    assert_int_equal(X509_set_pubkey(x, pub), 1);
    if (h->cn != NULL)
        assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                                    (const unsigned char *)h->cn, -1, -1, 0),
                         1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(issuer)), 1);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    add_conf_ext(x, &ctx, NID_basic_constraints, h->bc);
    add_conf_ext(x, &ctx, NID_key_usage, h->ku);
    add_conf_ext(x, &ctx, NID_ext_key_usage, h->eku);
    add_conf_ext(x, &ctx, NID_subject_alt_name, h->san);
    add_conf_ext(x, &ctx, NID_subject_key_identifier, "hash");
    add_conf_ext(x, &ctx, NID_authority_key_identifier, "keyid:always");
    assert_true(X509_sign(x, issuer_key, EVP_sha256()) > 0);
    return x;
}

static struct hand
good_hand(const struct pki *k, const char *san)
{
    return (struct hand){
        .san = san,
        .bc = "critical,CA:FALSE",
        .ku = "critical,digitalSignature",
        .eku = "serverAuth,clientAuth",
        .cn = "hand",
        .nb = k->now - 60,
        .na = k->now + HOUR,
    };
}

/* Verifies a hand-made leaf under the fixture's intermediate; returns the code. */
static int
verify_hand(struct pki *k, const struct hand *h, const char **why)
{
    X509 *leaf = hand_mint(h, k->leaf_key, k->inter, k->inter_key);
    STACK_OF(X509) *chain = stack_of(leaf, k->inter);
    int r = sigil_x509_svid_verify(chain, k->roots, 0, NULL, why);

    sk_X509_free(chain);
    X509_free(leaf);
    return r;
}

/* ---- tests ---- */

static void
test_roundtrip_verifies(void **state)
{
    struct pki *k = *state;
    struct sigil_spiffeid id;
    const char *why = NULL;

    if (sigil_x509_svid_verify(k->chain, k->roots, 0, &id, &why) != 0)
        fail_msg("verify: %s", why);
    assert_string_equal(id.str, "spiffe://" TD "/ns/prod/web");
    /* pinned to a time inside every validity period */
    assert_int_equal(sigil_x509_svid_verify(k->chain, k->roots, k->now + 10, NULL, &why), 0);
    assert_int_equal(sigil_x509_svid_check_ca(k->root, &why), 0);
    assert_int_equal(sigil_x509_svid_check_ca(k->inter, &why), 0);
    assert_int_equal(sigil_x509_cert_spiffeid(k->root, &id, &why), 0);
    assert_string_equal(id.str, "spiffe://" TD);
    assert_int_equal(sigil_x509_cert_spiffeid(k->inter, &id, &why), 0);
    assert_string_equal(id.str, "spiffe://" TD);
}

static void
test_roundtrip_through_der_and_pem(void **state)
{
    struct pki *k = *state;
    struct sigil_buf der = {0}, pem = {0};
    STACK_OF(X509) *a = NULL, *b = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_x509_chain_to_der(k->chain, &der), 0);
    assert_int_equal(sigil_x509_chain_to_pem(k->chain, &pem), 0);
    assert_int_equal(sigil_x509_chain_parse_der(der.data, der.len, &a, &why), 0);
    assert_int_equal(sigil_x509_chain_parse_pem(pem.data, pem.len, &b, &why), 0);
    assert_int_equal(sk_X509_num(a), 2);
    assert_int_equal(sk_X509_num(b), 2);
    assert_int_equal(X509_cmp(sk_X509_value(a, 0), k->leaf), 0);
    assert_int_equal(X509_cmp(sk_X509_value(b, 1), k->inter), 0);
    assert_int_equal(sigil_x509_svid_verify(a, k->roots, 0, NULL, &why), 0);
    assert_int_equal(sigil_x509_svid_verify(b, k->roots, 0, NULL, &why), 0);
    sk_X509_pop_free(a, X509_free);
    sk_X509_pop_free(b, X509_free);
    sigil_buf_free(&der);
    sigil_buf_free(&pem);
}

/* What the brief asks of every minted certificate, read back field by field. */
static void
test_minted_fields(void **state)
{
    struct pki *k = *state;
    X509 *all[] = {k->root, k->inter, k->leaf};
    const ASN1_OCTET_STRING *ski, *aki;
    int crit = -1;

    for (size_t i = 0; i < 3; i++) {
        X509 *x = all[i];
        const ASN1_INTEGER *serial = X509_get0_serialNumber(x);
        BIGNUM *bn = ASN1_INTEGER_to_BN(serial, NULL);
        assert_non_null(bn);
        assert_false(BN_is_negative(bn));
        assert_false(BN_is_zero(bn));
        assert_true(BN_num_bytes(bn) <= 16 && BN_num_bytes(bn) >= 8);
        BN_free(bn);
        assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
        assert_non_null(X509_get0_subject_key_id(x));
        assert_non_null(X509_get0_authority_key_id(x));
        int ku = X509_get_ext_by_NID(x, NID_key_usage, -1);
        assert_true(ku >= 0);
        assert_true(X509_EXTENSION_get_critical(X509_get_ext(x, ku)));
    }
    /* each AKI names its issuer's SKI; the root's names itself */
    ski = X509_get0_subject_key_id(k->root);
    aki = X509_get0_authority_key_id(k->root);
    assert_int_equal(ASN1_OCTET_STRING_cmp(ski, aki), 0);
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_subject_key_id(k->root),
                                           X509_get0_authority_key_id(k->inter)),
                     0);
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_subject_key_id(k->inter),
                                           X509_get0_authority_key_id(k->leaf)),
                     0);
    /* CA bits */
    assert_int_equal(X509_get_key_usage(k->root), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_int_equal(X509_get_key_usage(k->inter), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_int_equal(X509_get_pathlen(k->root), -1);
    assert_int_equal(X509_get_pathlen(k->inter), 0);
    assert_int_equal(X509_check_ca(k->leaf), 0);
    /* the intermediate is name-constrained to URI host example.org, critical */
    NAME_CONSTRAINTS *nc = X509_get_ext_d2i(k->inter, NID_name_constraints, &crit, NULL);
    assert_non_null(nc);
    assert_int_equal(crit, 1);
    assert_int_equal(sk_GENERAL_SUBTREE_num(nc->permittedSubtrees), 1);
    GENERAL_NAME *base = sk_GENERAL_SUBTREE_value(nc->permittedSubtrees, 0)->base;
    assert_int_equal(base->type, GEN_URI);
    assert_int_equal(ASN1_STRING_length(base->d.uniformResourceIdentifier), strlen(TD));
    assert_memory_equal(ASN1_STRING_get0_data(base->d.uniformResourceIdentifier), TD, strlen(TD));
    assert_null(nc->excludedSubtrees);
    NAME_CONSTRAINTS_free(nc);
    assert_int_equal(X509_get_ext_by_NID(k->root, NID_name_constraints, -1), -1);
    /* leaf: digitalSignature only, EKU both, SAN = 1 URI + 2 DNS, subject empty so critical */
    assert_int_equal(X509_get_key_usage(k->leaf), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(k->leaf), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(k->leaf)), 0);
    GENERAL_NAMES *sans = X509_get_ext_d2i(k->leaf, NID_subject_alt_name, &crit, NULL);
    assert_non_null(sans);
    assert_int_equal(crit, 1);
    assert_int_equal(sk_GENERAL_NAME_num(sans), 3);
    assert_int_equal(sk_GENERAL_NAME_value(sans, 0)->type, GEN_URI);
    assert_int_equal(sk_GENERAL_NAME_value(sans, 1)->type, GEN_DNS);
    GENERAL_NAMES_free(sans);
    /* the leaf's notAfter is what was asked: inside the intermediate's */
    time_t na;
    assert_int_equal(sigil_x509_cert_not_after(k->leaf, &na), 0);
    assert_int_equal(na, k->now + HOUR);
}

static void
test_verify_expired(void **state)
{
    struct pki *k = *state;
    const char *why = NULL;
    time_t nb, na;

    assert_int_equal(sigil_x509_cert_not_before(k->leaf, &nb), 0);
    assert_int_equal(sigil_x509_cert_not_after(k->leaf, &na), 0);
    /* (OpenSSL treats the notAfter second itself as expired, RFC 5280 as valid: no test) */
    assert_int_equal(sigil_x509_svid_verify(k->chain, k->roots, na - 1, NULL, &why), 0);
    assert_int_equal(sigil_x509_svid_verify(k->chain, k->roots, nb, NULL, &why), 0);
    assert_int_equal(sigil_x509_svid_verify(k->chain, k->roots, na + 1, NULL, &why),
                     SIGIL_ERR_EXPIRED);
    assert_why(why, "X-8");
    assert_int_equal(sigil_x509_svid_verify(k->chain, k->roots, nb - 1, NULL, &why),
                     SIGIL_ERR_EXPIRED);
}

static void
test_verify_wrong_root(void **state)
{
    struct pki *k = *state;
    EVP_PKEY *other_key = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_x509_key_generate(&other_key), 0);
    /* same trust domain, same subject, different key */
    X509 *other = mint_root(TD, other_key, k->now, -1);
    STACK_OF(X509) *roots = stack_of(other, NULL);
    assert_int_equal(sigil_x509_svid_verify(k->chain, roots, 0, NULL, &why), SIGIL_ERR_VERIFY);
    assert_why(why, "X-8");
    /* the right root among others is fine */
    assert_true(sk_X509_push(roots, k->root) > 0);
    assert_int_equal(sigil_x509_svid_verify(k->chain, roots, 0, NULL, &why), 0);
    sk_X509_free(roots);
    X509_free(other);
    EVP_PKEY_free(other_key);
}

static void
test_verify_needs_the_intermediate(void **state)
{
    struct pki *k = *state;
    STACK_OF(X509) *leaf_only = stack_of(k->leaf, NULL), *inter_root = stack_of(k->inter, NULL);
    const char *why = NULL;

    assert_int_equal(sigil_x509_svid_verify(leaf_only, k->roots, 0, NULL, &why), SIGIL_ERR_VERIFY);
    assert_why(why, "X-8: the chain does not lead");
    /* an authority of the bundle need not be self-signed (PARTIAL_CHAIN) */
    assert_int_equal(sigil_x509_svid_verify(leaf_only, inter_root, 0, NULL, &why), 0);
    sk_X509_free(leaf_only);
    sk_X509_free(inter_root);
}

static void
test_verify_name_constraints(void **state)
{
    struct pki *k = *state;
    const char *why = NULL;
    struct hand h;

    /* control: a hand-made leaf in the right trust domain passes */
    h = good_hand(k, "URI:spiffe://example.org/hand");
    assert_int_equal(verify_hand(k, &h, &why), 0);
    h = good_hand(k, "URI:spiffe://other.org/hand");
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_VERIFY);
    assert_why(why, "X-7");
    /* URI constraints match the host exactly: a subdomain is another trust domain */
    h = good_hand(k, "URI:spiffe://sub.example.org/hand");
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_VERIFY);
    assert_why(why, "X-7");
    h = good_hand(k, "URI:spiffe://example.org.evil/hand");
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_VERIFY);
    assert_why(why, "X-7");
    /* the root has no constraints: a leaf of another domain directly under it only fails
     * if the caller picked the bundle by the leaf's trust domain, which it must */
}

static void
test_verify_two_uri_sans(void **state)
{
    struct pki *k = *state;
    const char *why = NULL;
    struct hand h = good_hand(k, "URI:spiffe://example.org/a,URI:spiffe://example.org/b");

    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_INVALID);
    assert_why(why, "X-1: certificate has more than one URI SAN");
    /* a URI and a DNS name is fine (X-1 allows other SAN types) */
    h = good_hand(k, "URI:spiffe://example.org/a,DNS:a.example.org");
    assert_int_equal(verify_hand(k, &h, &why), 0);
}

static void
test_verify_ca_as_leaf(void **state)
{
    struct pki *k = *state;
    STACK_OF(X509) *chain = stack_of(k->inter, NULL);
    const char *why = NULL;

    assert_int_equal(sigil_x509_svid_verify(chain, k->roots, 0, NULL, &why), SIGIL_ERR_INVALID);
    /* the intermediate's ID is path-less, which the leaf checks see first */
    assert_why(why, "X-2");
    sk_X509_free(chain);
    /* a CA with a leaf-like ID still fails, on cA=true */
    struct hand h = good_hand(k, "URI:spiffe://example.org/ca");
    h.bc = "critical,CA:TRUE";
    h.ku = "critical,digitalSignature,keyCertSign";
    const char *why2 = NULL;
    assert_int_equal(verify_hand(k, &h, &why2), SIGIL_ERR_INVALID);
    assert_why(why2, "X-4: a leaf must have cA=false");
}

static void
test_verify_broken_leaves(void **state)
{
    struct pki *k = *state;
    const char *why = NULL;
    struct hand h;

    h = good_hand(k, "URI:spiffe://example.org/x");
    h.eku = "serverAuth";
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_INVALID);
    assert_why(why, "X-6");
    h.eku = "anyExtendedKeyUsage";
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_INVALID);
    assert_why(why, "X-6");
    h.eku = NULL; /* EKU is optional (X-6 SHOULD) */
    assert_int_equal(verify_hand(k, &h, &why), 0);

    h = good_hand(k, "URI:spiffe://example.org/x");
    h.ku = "digitalSignature"; /* not critical */
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_INVALID);
    assert_why(why, "X-5: keyUsage must be critical");
    h.ku = NULL;
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_INVALID);
    assert_why(why, "X-5: a leaf must have the keyUsage extension");
    h.ku = "critical,digitalSignature,keyEncipherment,keyAgreement"; /* allowed by X-5 */
    assert_int_equal(verify_hand(k, &h, &why), 0);

    h = good_hand(k, "URI:spiffe://example.org/x");
    h.cn = NULL; /* empty subject with a non-critical SAN */
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_INVALID);
    assert_why(why, "X-2: subject is empty");
    h.san = "critical,URI:spiffe://example.org/x";
    assert_int_equal(verify_hand(k, &h, &why), 0);

    h = good_hand(k, "URI:spiffe://example.org");
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_INVALID);
    assert_why(why, "X-2: a leaf SPIFFE ID must have a non-root path");
    h = good_hand(k, "URI:https://example.org/x");
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_INVALID);
    assert_why(why, "ID-");
    h = good_hand(k, "URI:spiffe://example.org/a//b");
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_INVALID);
    assert_why(why, "ID-5");
    h = good_hand(k, "DNS:example.org");
    assert_int_equal(verify_hand(k, &h, &why), SIGIL_ERR_INVALID);
    assert_why(why, "X-1");
}

/* pathLenConstraint 0 on the intermediate: a CA below it breaks the path. */
static void
test_verify_path_len(void **state)
{
    struct pki *k = *state;
    EVP_PKEY *sub_key = NULL;
    const char *why = NULL;
    struct hand h;

    assert_int_equal(sigil_x509_key_generate(&sub_key), 0);
    h = good_hand(k, "URI:spiffe://example.org");
    h.bc = "critical,CA:TRUE";
    h.ku = "critical,keyCertSign,cRLSign";
    h.eku = NULL;
    X509 *sub = hand_mint(&h, sub_key, k->inter, k->inter_key);
    h = good_hand(k, "URI:spiffe://example.org/deep");
    X509 *leaf = hand_mint(&h, k->leaf_key, sub, sub_key);
    STACK_OF(X509) *chain = stack_of(leaf, sub);
    assert_true(sk_X509_push(chain, k->inter) > 0);
    assert_int_equal(sigil_x509_svid_verify(chain, k->roots, 0, NULL, &why), SIGIL_ERR_VERIFY);
    assert_why(why, "X-4: the chain exceeds");
    /* and sigil refuses to mint such a CA in the first place */
    struct sigil_x509_ca_params p = {
        .trust_domain = TD,
        .subject = {.common_name = "sub"},
        .not_before = k->now,
        .not_after = k->now + HOUR,
        .path_len = -1,
    };
    X509 *x = NULL;
    assert_int_equal(sigil_x509_mint_intermediate(&p, sub_key, k->inter, k->inter_key, &x, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "pathLenConstraint");
    assert_null(x);
    sk_X509_free(chain);
    X509_free(leaf);
    X509_free(sub);
    EVP_PKEY_free(sub_key);
}

static void
test_verify_tampered_signature(void **state)
{
    struct pki *k = *state;
    struct sigil_buf der = {0};
    STACK_OF(X509) *chain = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_x509_chain_to_der(k->chain, &der), 0);
    /* the last byte of the leaf is inside its signature value */
    size_t leaf_len = (size_t)i2d_X509(k->leaf, NULL);
    der.data[leaf_len - 1] ^= 0x01;
    assert_int_equal(sigil_x509_chain_parse_der(der.data, der.len, &chain, &why), 0);
    assert_int_equal(sigil_x509_svid_verify(chain, k->roots, 0, NULL, &why), SIGIL_ERR_VERIFY);
    assert_why(why, "signature");
    sk_X509_pop_free(chain, X509_free);
    sigil_buf_free(&der);
}

static void
test_verify_caps(void **state)
{
    struct pki *k = *state;
    STACK_OF(X509) *empty = sk_X509_new_null(), *big = sk_X509_new_null();
    const char *why = NULL;

    assert_int_equal(sigil_x509_svid_verify(empty, k->roots, 0, NULL, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_x509_svid_verify(NULL, k->roots, 0, NULL, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_x509_svid_verify(k->chain, empty, 0, NULL, &why), SIGIL_ERR_VERIFY);
    assert_why(why, "B-4");
    assert_int_equal(sigil_x509_svid_verify(k->chain, NULL, 0, NULL, &why), SIGIL_ERR_VERIFY);
    assert_true(sk_X509_push(big, k->leaf) > 0);
    for (int i = 0; i < SIGIL_X509_CHAIN_MAX; i++)
        assert_true(sk_X509_push(big, k->inter) > 0);
    assert_int_equal(sigil_x509_svid_verify(big, k->roots, 0, NULL, &why), SIGIL_ERR_RANGE);
    sk_X509_free(empty);
    sk_X509_free(big);
}

static void
test_mint_refusals(void **state)
{
    struct pki *k = *state;
    struct sigil_spiffeid id = mkid("spiffe://" TD "/ok");
    struct sigil_x509_leaf_params lp = {
        .id = &id, .not_before = k->now, .not_after = k->now + HOUR};
    const char *why = NULL;
    X509 *x = NULL;

    struct sigil_spiffeid root_id = mkid("spiffe://" TD);
    lp.id = &root_id;
    assert_int_equal(sigil_x509_mint_leaf(&lp, k->leaf_key, k->inter, k->inter_key, &x, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "X-2");
    assert_null(x);

    struct sigil_spiffeid other = mkid("spiffe://other.org/x");
    lp.id = &other;
    assert_int_equal(sigil_x509_mint_leaf(&lp, k->leaf_key, k->inter, k->inter_key, &x, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "X-3");

    /* a hand-filled ID struct is re-parsed, not trusted */
    struct sigil_spiffeid forged = id;
    snprintf(forged.str, sizeof forged.str, "spiffe://%s/a/../b", TD);
    lp.id = &forged;
    assert_int_equal(sigil_x509_mint_leaf(&lp, k->leaf_key, k->inter, k->inter_key, &x, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "ID-5");

    lp.id = &id;
    const char *bad_dns[] = {"a.example.org,URI:spiffe://evil/x"};
    lp.dns_names = bad_dns;
    lp.n_dns = 1;
    assert_int_equal(sigil_x509_mint_leaf(&lp, k->leaf_key, k->inter, k->inter_key, &x, &why),
                     SIGIL_ERR_INVALID);
    const char *bad_dns2[] = {"-a.example.org"};
    lp.dns_names = bad_dns2;
    assert_int_equal(sigil_x509_mint_leaf(&lp, k->leaf_key, k->inter, k->inter_key, &x, &why),
                     SIGIL_ERR_INVALID);
    lp.n_dns = SIGIL_X509_DNS_MAX + 1;
    assert_int_equal(sigil_x509_mint_leaf(&lp, k->leaf_key, k->inter, k->inter_key, &x, &why),
                     SIGIL_ERR_RANGE);
    lp.dns_names = NULL;
    lp.n_dns = 0;

    lp.not_after = lp.not_before - 1;
    assert_int_equal(sigil_x509_mint_leaf(&lp, k->leaf_key, k->inter, k->inter_key, &x, &why),
                     SIGIL_ERR_INVALID);
    lp.not_after = k->now + HOUR;

    /* a leaf cannot sign; a key that is not the issuer's cannot either */
    assert_int_equal(sigil_x509_mint_leaf(&lp, k->leaf_key, k->leaf, k->leaf_key, &x, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "X-4");
    assert_int_equal(sigil_x509_mint_leaf(&lp, k->leaf_key, k->inter, k->root_key, &x, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "issuer key does not match");

    /* a leaf starting after its issuer ends */
    time_t inter_end;
    assert_int_equal(sigil_x509_cert_not_after(k->inter, &inter_end), 0);
    lp.not_before = inter_end + 1;
    lp.not_after = inter_end + HOUR;
    assert_int_equal(sigil_x509_mint_leaf(&lp, k->leaf_key, k->inter, k->inter_key, &x, &why),
                     SIGIL_ERR_EXPIRED);
    assert_null(x);

    /* CAs: bad trust domain, empty subject, bad country, intermediate in another domain */
    struct sigil_x509_ca_params cp = {
        .trust_domain = "Example.org",
        .subject = {.common_name = "x"},
        .not_before = k->now,
        .not_after = k->now + HOUR,
        .path_len = -1,
    };
    assert_int_equal(sigil_x509_mint_root(&cp, k->leaf_key, &x, &why), SIGIL_ERR_INVALID);
    assert_why(why, "ID-3");
    cp.trust_domain = TD;
    cp.subject.common_name = NULL;
    assert_int_equal(sigil_x509_mint_root(&cp, k->leaf_key, &x, &why), SIGIL_ERR_INVALID);
    assert_why(why, "non-empty subject");
    cp.subject.country = "USA";
    assert_int_equal(sigil_x509_mint_root(&cp, k->leaf_key, &x, &why), SIGIL_ERR_INVALID);
    cp.subject.country = NULL;
    cp.subject.common_name = "x";
    cp.trust_domain = "other.org";
    assert_int_equal(sigil_x509_mint_intermediate(&cp, k->leaf_key, k->root, k->root_key, &x, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "X-3");
    cp.trust_domain = ".example.org";
    X509 *dot_root = mint_root(".example.org", k->leaf_key, k->now, -1);
    assert_int_equal(
        sigil_x509_mint_intermediate(&cp, k->inter_key, dot_root, k->leaf_key, &x, &why),
        SIGIL_ERR_UNSUPPORTED);
    assert_why(why, "X-7");
    X509_free(dot_root);
    assert_null(x);
}

static void
test_mint_clamps_to_issuer(void **state)
{
    struct pki *k = *state;
    struct sigil_spiffeid id = mkid("spiffe://" TD "/long");
    struct sigil_x509_leaf_params lp = {
        .id = &id,
        .subject = {.organization = "Sigil", .common_name = "long"},
        .not_before = k->now,
        .not_after = k->now + 365 * 24 * HOUR,
    };
    struct sigil_x509_ca_params cp = {
        .trust_domain = TD,
        .subject = {.common_name = "long inter"},
        .not_before = k->now,
        .not_after = k->now + 365 * 24 * HOUR,
        .path_len = -1,
    };
    const char *why = NULL;
    time_t got, want;
    X509 *x = NULL;
    int crit = -1;

    assert_int_equal(sigil_x509_mint_leaf(&lp, k->leaf_key, k->inter, k->inter_key, &x, &why), 0);
    assert_int_equal(sigil_x509_cert_not_after(x, &got), 0);
    assert_int_equal(sigil_x509_cert_not_after(k->inter, &want), 0);
    assert_int_equal(got, want);
    /* a subject: the SAN need not be critical, and is not */
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    assert_int_equal(crit, 0);
    GENERAL_NAMES_free(sans);
    X509_free(x);
    x = NULL;
    assert_int_equal(
        sigil_x509_mint_intermediate(&cp, k->inter_key, k->root, k->root_key, &x, &why), 0);
    assert_int_equal(sigil_x509_cert_not_after(x, &got), 0);
    assert_int_equal(sigil_x509_cert_not_after(k->root, &want), 0);
    assert_int_equal(got, want);
    X509_free(x);
}

/* Leaves straight under the root, and from a CSR. */
static void
test_leaf_under_root_and_from_csr(void **state)
{
    struct pki *k = *state;
    struct sigil_spiffeid id = mkid("spiffe://" TD "/csr"), other = mkid("spiffe://" TD "/no");
    struct sigil_x509_leaf_params lp = {
        .id = &id, .not_before = k->now - 1, .not_after = k->now + HOUR};
    struct sigil_buf der = {0};
    X509_REQ *csr = NULL;
    struct sigil_spiffeid got;
    const char *why = NULL;
    X509 *x = NULL;

    assert_int_equal(sigil_x509_csr_create(k->leaf_key, &id, &der), 0);
    assert_int_equal(sigil_x509_csr_parse(der.data, der.len, &csr, &why), 0);
    assert_int_equal(sigil_x509_mint_leaf_csr(&lp, csr, k->root, k->root_key, &x, &why), 0);
    assert_true(sigil_x509_key_matches_cert(k->leaf_key, x));
    STACK_OF(X509) *chain = stack_of(x, NULL);
    assert_int_equal(sigil_x509_svid_verify(chain, k->roots, 0, &got, &why), 0);
    assert_string_equal(got.str, id.str);
    sk_X509_free(chain);
    X509_free(x);
    x = NULL;
    /* the CSR asked for /csr: minting it as /no is refused */
    lp.id = &other;
    assert_int_equal(sigil_x509_mint_leaf_csr(&lp, csr, k->inter, k->inter_key, &x, &why),
                     SIGIL_ERR_DENIED);
    assert_null(x);
    X509_REQ_free(csr);
    sigil_buf_free(&der);
    /* a CSR asking for nothing takes the ID it is given */
    assert_int_equal(sigil_x509_csr_create(k->leaf_key, NULL, &der), 0);
    assert_int_equal(sigil_x509_csr_parse(der.data, der.len, &csr, &why), 0);
    assert_int_equal(sigil_x509_mint_leaf_csr(&lp, csr, k->inter, k->inter_key, &x, &why), 0);
    assert_int_equal(sigil_x509_cert_spiffeid(x, &got, &why), 0);
    assert_string_equal(got.str, other.str);
    X509_free(x);
    X509_REQ_free(csr);
    sigil_buf_free(&der);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_verifies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_through_der_and_pem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_minted_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_wrong_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_needs_the_intermediate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_name_constraints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_two_uri_sans, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_ca_as_leaf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_broken_leaves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_path_len, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_tampered_signature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_verify_caps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mint_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mint_clamps_to_issuer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leaf_under_root_and_from_csr, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
