/* Making X.509-SVIDs: CSRs (create, parse, verify) and minting root CAs, intermediates
 * and leaves. Extensions are built as ASN.1 structures, never from config strings, so no
 * caller-given name can smuggle in another SAN. Every minted certificate is run through
 * our own SVID checks before it is handed out. */
#include "sigil/err.h"
#include "sigil/spiffeid.h"
#include "sigil/x509.h"
#include "x509_int.h"

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define KEYID_LEN 20 /* RFC 7093 §2 method 1: leftmost 160 bits of SHA-256(subjectPublicKey) */

static int
fail(const char **why, int err, const char *text)
{
    if (why != NULL)
        *why = text;
    return err;
}

/* Appends a URI or DNS name to gens. */
static int
push_name(GENERAL_NAMES *gens, int type, const char *s)
{
    GENERAL_NAME *gn = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();

    if (gn == NULL || ia5 == NULL || ASN1_STRING_set(ia5, s, (int)strlen(s)) != 1) {
        GENERAL_NAME_free(gn);
        ASN1_IA5STRING_free(ia5);
        return SIGIL_ERR_NOMEM;
    }
    GENERAL_NAME_set0_value(gn, type, ia5);
    if (sk_GENERAL_NAME_push(gens, gn) <= 0) {
        GENERAL_NAME_free(gn);
        return SIGIL_ERR_NOMEM;
    }
    return 0;
}

/* The one URI SAN among names, as a SPIFFE ID; NOTFOUND without one. */
static int
names_spiffeid(const GENERAL_NAMES *names, struct sigil_spiffeid *out, const char **why)
{
    const ASN1_IA5STRING *uri = NULL;
    const char *idwhy = NULL;
    int n = 0;

    for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        if (gn->type == GEN_URI) {
            uri = gn->d.uniformResourceIdentifier;
            n++;
        }
    }
    if (n == 0)
        return fail(why, SIGIL_ERR_NOTFOUND, "X-1: no URI SAN");
    if (n > 1)
        return fail(why, SIGIL_ERR_INVALID, "X-1: more than one URI SAN");
    if (uri == NULL || uri->length <= 0)
        return fail(why, SIGIL_ERR_INVALID, "X-1: the URI SAN is empty");
    if (sigil_spiffeid_parse((const char *)uri->data, (size_t)uri->length, out, &idwhy) != 0)
        return fail(why, SIGIL_ERR_INVALID, idwhy != NULL ? idwhy : "ID-1: invalid SPIFFE ID");
    return 0;
}

/* ---- CSRs ---- */

int
sigil_x509_csr_create(EVP_PKEY *key, const struct sigil_spiffeid *id, struct sigil_buf *out)
{
    STACK_OF(X509_EXTENSION) *exts = NULL;
    GENERAL_NAMES *gens = NULL;
    X509_REQ *req = NULL;
    unsigned char *q;
    int len, r;

    if ((r = sigil_x509_key_check(key, NULL)) != 0)
        return r;
    r = SIGIL_ERR_NOMEM;
    if ((req = X509_REQ_new()) == NULL)
        goto out;
    r = SIGIL_ERR_CRYPTO;
    if (X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 || X509_REQ_set_pubkey(req, key) != 1)
        goto out;
    if (id != NULL) {
        r = SIGIL_ERR_NOMEM;
        if ((gens = sk_GENERAL_NAME_new_null()) == NULL ||
            (r = push_name(gens, GEN_URI, id->str)) != 0)
            goto out;
        r = SIGIL_ERR_CRYPTO;
        /* critical: the subject is empty */
        if (X509V3_add1_i2d(&exts, NID_subject_alt_name, gens, 1, X509V3_ADD_DEFAULT) != 1 ||
            X509_REQ_add_extensions(req, exts) != 1)
            goto out;
    }
    if (X509_REQ_sign(req, key, EVP_sha256()) <= 0 || (len = i2d_X509_REQ(req, NULL)) <= 0)
        goto out;
    if ((r = sigil_buf_reserve(out, (size_t)len)) != 0)
        goto out;
    q = out->data + out->len;
    if (i2d_X509_REQ(req, &q) != len) {
        r = SIGIL_ERR_CRYPTO;
        goto out;
    }
    out->len += (size_t)len;
    r = 0;
out:
    if (r != 0)
        ERR_clear_error();
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    X509_REQ_free(req);
    return r;
}

/* Decodes the single PEM block of a CSR into *der (OPENSSL_free'd by the caller). */
static int
csr_pem(const uint8_t *p, size_t n, unsigned char **der, long *len, const char **why)
{
    char *name = NULL, *header = NULL;
    unsigned char *data = NULL, *more = NULL;
    char *name2 = NULL, *header2 = NULL;
    long len2 = 0;
    BIO *bio;
    int r;

    *der = NULL;
    if ((bio = BIO_new_mem_buf(p, (int)n)) == NULL)
        return fail(why, SIGIL_ERR_NOMEM, "out of memory");
    if (PEM_read_bio_ex(bio, &name, &header, &data, len, PEM_FLAG_ONLY_B64) != 1) {
        r = fail(why, SIGIL_ERR_INVALID, "CSR: not DER and no valid PEM block");
        goto out;
    }
    if (strcmp(name, PEM_STRING_X509_REQ) != 0 && strcmp(name, PEM_STRING_X509_REQ_OLD) != 0) {
        r = fail(why, SIGIL_ERR_INVALID, "CSR: PEM block is not a CERTIFICATE REQUEST");
        goto out;
    }
    if (header[0] != '\0') {
        r = fail(why, SIGIL_ERR_INVALID, "CSR: PEM headers are not accepted");
        goto out;
    }
    if (PEM_read_bio_ex(bio, &name2, &header2, &more, &len2, PEM_FLAG_ONLY_B64) == 1) {
        r = fail(why, SIGIL_ERR_INVALID, "CSR: more than one PEM block");
        goto out;
    }
    *der = data;
    data = NULL;
    r = 0;
out:
    ERR_clear_error();
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    OPENSSL_free(name2);
    OPENSSL_free(header2);
    OPENSSL_free(more);
    BIO_free(bio);
    return r;
}

int
sigil_x509_csr_parse(const uint8_t *p, size_t n, X509_REQ **out, const char **why)
{
    unsigned char *pemder = NULL;
    const unsigned char *der = p, *q;
    X509_REQ *req = NULL;
    EVP_PKEY *pub;
    long len = (long)n;
    int r;

    *out = NULL;
    if (n > SIGIL_X509_CSR_MAX)
        return fail(why, SIGIL_ERR_RANGE, "CSR: over 64 KiB");
    if (n == 0)
        return fail(why, SIGIL_ERR_INVALID, "CSR: empty input");
    if (p[0] != 0x30) {
        if ((r = csr_pem(p, n, &pemder, &len, why)) != 0)
            goto out;
        der = pemder;
    }
    q = der;
    if ((req = d2i_X509_REQ(NULL, &q, len)) == NULL || q != der + len) {
        r = fail(why, SIGIL_ERR_INVALID, "CSR: malformed DER (PKCS#10)");
        goto out;
    }
    if (X509_REQ_get_version(req) != X509_REQ_VERSION_1) {
        r = fail(why, SIGIL_ERR_INVALID, "CSR: version is not 1");
        goto out;
    }
    if ((pub = X509_REQ_get0_pubkey(req)) == NULL) {
        r = fail(why, SIGIL_ERR_INVALID, "CSR: unreadable public key");
        goto out;
    }
    if ((r = sigil_x509_key_check(pub, why)) != 0)
        goto out;
    if (X509_REQ_verify(req, pub) != 1) {
        r = fail(why, SIGIL_ERR_VERIFY, "CSR: the self-signature does not verify");
        goto out;
    }
    *out = req;
    req = NULL;
    r = 0;
out:
    if (r != 0)
        ERR_clear_error();
    X509_REQ_free(req);
    OPENSSL_free(pemder);
    return r;
}

int
sigil_x509_csr_pubkey(X509_REQ *req, EVP_PKEY **out)
{
    if ((*out = X509_REQ_get_pubkey(req)) == NULL) {
        ERR_clear_error();
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

int
sigil_x509_csr_spiffeid(X509_REQ *req, struct sigil_spiffeid *out, const char **why)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *names = NULL;
    int r, crit = -1;

    names = X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL);
    if (names == NULL) {
        r = crit == -1 ? fail(why, SIGIL_ERR_NOTFOUND, "CSR: requests no SPIFFE ID")
                       : fail(why, SIGIL_ERR_INVALID,
                              "CSR: malformed or duplicated subjectAltName request");
        goto out;
    }
    r = names_spiffeid(names, out, why);
out:
    ERR_clear_error();
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return r;
}

/* ---- minting ---- */

/* Everything one certificate needs; the public functions fill it in after their checks. */
struct mint_spec {
    X509 *issuer;     /* NULL: self-signed */
    EVP_PKEY *signer; /* issuer's (or own) private key */
    EVP_PKEY *pub;    /* the subject's public key */
    const struct sigil_x509_subject *subject;
    time_t not_before, not_after;
    bool ca;
    int path_len;                 /* CA only; -1 none */
    const char *uri;              /* the one URI SAN */
    const char *nc_host;          /* CA only; permitted URI host, or NULL */
    const char *const *dns_names; /* leaf only */
    size_t n_dns;
};

static int
add_ext(X509 *x, int nid, void *value, int crit)
{
    return X509_add1_ext_i2d(x, nid, value, crit, X509V3_ADD_DEFAULT) == 1 ? 0 : SIGIL_ERR_CRYPTO;
}

static int
set_subject(X509 *x, const struct sigil_x509_subject *s)
{
    X509_NAME *name = X509_get_subject_name(x);
    const struct {
        int nid;
        const char *v;
    } parts[] = {
        {NID_countryName, s->country},
        {NID_organizationName, s->organization},
        {NID_commonName, s->common_name},
    };

    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (parts[i].v == NULL)
            continue;
        if (X509_NAME_add_entry_by_NID(name, parts[i].nid, MBSTRING_UTF8,
                                       (const unsigned char *)parts[i].v, -1, -1, 0) != 1)
            return SIGIL_ERR_INVALID;
    }
    return 0;
}

static int
set_serial(X509 *x)
{
    unsigned char b[16];
    BIGNUM *bn = NULL;
    int r = SIGIL_ERR_CRYPTO;

    if (RAND_bytes(b, sizeof b) != 1)
        goto out;
    /* positive (RFC 5280 §4.1.2.2) and never zero */
    b[0] &= 0x7f;
    if (b[0] == 0)
        b[0] = 0x40;
    if ((bn = BN_bin2bn(b, sizeof b, NULL)) == NULL ||
        BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
        goto out;
    r = 0;
out:
    BN_free(bn);
    return r;
}

/* RFC 7093 §2 method 1 key identifier of a certificate's public key. */
static int
key_id(const X509 *x, unsigned char id[KEYID_LEN])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;

    if (X509_pubkey_digest(x, EVP_sha256(), md, &len) != 1 || len < KEYID_LEN)
        return SIGIL_ERR_CRYPTO;
    memcpy(id, md, KEYID_LEN);
    return 0;
}

static int
add_key_ids(X509 *x, X509 *issuer)
{
    unsigned char ski[KEYID_LEN], aki[KEYID_LEN];
    const ASN1_OCTET_STRING *iski = NULL;
    ASN1_OCTET_STRING *os = NULL;
    AUTHORITY_KEYID *akid = NULL;
    int r;

    if ((r = key_id(x, ski)) != 0)
        return r;
    r = SIGIL_ERR_NOMEM;
    if ((os = ASN1_OCTET_STRING_new()) == NULL || ASN1_OCTET_STRING_set(os, ski, KEYID_LEN) != 1)
        goto out;
    if ((r = add_ext(x, NID_subject_key_identifier, os, 0)) != 0)
        goto out;
    /* the issuer's own SKI if it has one, so the AKI matches whatever made it */
    if (issuer != NULL)
        iski = X509_get0_subject_key_id(issuer);
    r = SIGIL_ERR_NOMEM;
    if ((akid = AUTHORITY_KEYID_new()) == NULL || (akid->keyid = ASN1_OCTET_STRING_new()) == NULL)
        goto out;
    if (iski != NULL) {
        if (ASN1_STRING_copy(akid->keyid, iski) != 1)
            goto out;
    } else {
        if ((r = key_id(issuer != NULL ? issuer : x, aki)) != 0)
            goto out;
        r = SIGIL_ERR_NOMEM;
        if (ASN1_OCTET_STRING_set(akid->keyid, aki, KEYID_LEN) != 1)
            goto out;
    }
    r = add_ext(x, NID_authority_key_identifier, akid, 0);
out:
    ASN1_OCTET_STRING_free(os);
    AUTHORITY_KEYID_free(akid);
    return r;
}

static int
add_basic_constraints(X509 *x, bool ca, int path_len)
{
    BASIC_CONSTRAINTS *bc = BASIC_CONSTRAINTS_new();
    int r = SIGIL_ERR_NOMEM;

    if (bc == NULL)
        goto out;
    bc->ca = ca ? 0xff : 0;
    if (ca && path_len >= 0) {
        if ((bc->pathlen = ASN1_INTEGER_new()) == NULL ||
            ASN1_INTEGER_set(bc->pathlen, path_len) != 1)
            goto out;
    }
    r = add_ext(x, NID_basic_constraints, bc, 1);
out:
    BASIC_CONSTRAINTS_free(bc);
    return r;
}

static int
add_key_usage(X509 *x, bool ca)
{
    ASN1_BIT_STRING *ku = ASN1_BIT_STRING_new();
    int r = SIGIL_ERR_NOMEM;

    if (ku == NULL)
        goto out;
    /* bit 0 digitalSignature; 5 keyCertSign; 6 cRLSign (RFC 5280 §4.2.1.3) */
    if (ca ? ASN1_BIT_STRING_set_bit(ku, 5, 1) != 1 || ASN1_BIT_STRING_set_bit(ku, 6, 1) != 1
           : ASN1_BIT_STRING_set_bit(ku, 0, 1) != 1)
        goto out;
    r = add_ext(x, NID_key_usage, ku, 1);
out:
    ASN1_BIT_STRING_free(ku);
    return r;
}

static int
add_eku(X509 *x)
{
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    int r = SIGIL_ERR_NOMEM;

    if (eku == NULL || sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)) <= 0 ||
        sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)) <= 0)
        goto out;
    r = add_ext(x, NID_ext_key_usage, eku, 0);
out:
    sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
    return r;
}

static int
add_sans(X509 *x, const struct mint_spec *m, bool crit)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    int r = SIGIL_ERR_NOMEM;

    if (gens == NULL || (r = push_name(gens, GEN_URI, m->uri)) != 0)
        goto out;
    for (size_t i = 0; i < m->n_dns; i++)
        if ((r = push_name(gens, GEN_DNS, m->dns_names[i])) != 0)
            goto out;
    r = add_ext(x, NID_subject_alt_name, gens, crit);
out:
    GENERAL_NAMES_free(gens);
    return r;
}

/* permittedSubtrees with one URI base: OpenSSL (like RFC 5280 §4.2.1.10) matches a URI
 * constraint against the URI's host, exactly unless the base starts with '.'. */
static int
add_name_constraints(X509 *x, const char *host)
{
    NAME_CONSTRAINTS *nc = NAME_CONSTRAINTS_new();
    GENERAL_SUBTREE *st = NULL;
    GENERAL_NAMES *tmp = NULL;
    int r = SIGIL_ERR_NOMEM;

    if (nc == NULL || (nc->permittedSubtrees = sk_GENERAL_SUBTREE_new_null()) == NULL ||
        (st = GENERAL_SUBTREE_new()) == NULL || (tmp = sk_GENERAL_NAME_new_null()) == NULL ||
        (r = push_name(tmp, GEN_URI, host)) != 0)
        goto out;
    r = SIGIL_ERR_NOMEM;
    GENERAL_NAME_free(st->base);
    st->base = sk_GENERAL_NAME_pop(tmp);
    if (sk_GENERAL_SUBTREE_push(nc->permittedSubtrees, st) <= 0)
        goto out;
    st = NULL;
    /* RFC 5280: conforming CAs MUST mark name constraints critical */
    r = add_ext(x, NID_name_constraints, nc, 1);
out:
    GENERAL_SUBTREE_free(st);
    GENERAL_NAMES_free(tmp);
    NAME_CONSTRAINTS_free(nc);
    return r;
}

static int
mint(const struct mint_spec *m, X509 **out, const char **why)
{
    X509 *x = NULL;
    bool empty_subject;
    int r;

    *out = NULL;
    if ((x = X509_new()) == NULL) {
        r = fail(why, SIGIL_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (X509_set_version(x, X509_VERSION_3) != 1 || set_serial(x) != 0 ||
        X509_set_pubkey(x, m->pub) != 1 ||
        ASN1_TIME_set(X509_getm_notBefore(x), m->not_before) == NULL ||
        ASN1_TIME_set(X509_getm_notAfter(x), m->not_after) == NULL) {
        r = fail(why, SIGIL_ERR_CRYPTO, "mint: cannot set serial, key or validity");
        goto out;
    }
    if (set_subject(x, m->subject) != 0) {
        r = fail(why, SIGIL_ERR_INVALID, "mint: invalid subject (C must be two letters)");
        goto out;
    }
    empty_subject = X509_NAME_entry_count(X509_get_subject_name(x)) == 0;
    if (m->ca && empty_subject) {
        r = fail(why, SIGIL_ERR_INVALID, "RFC 5280 §4.1.2.6: a CA needs a non-empty subject");
        goto out;
    }
    if (X509_set_issuer_name(x, m->issuer != NULL ? X509_get_subject_name(m->issuer)
                                                  : X509_get_subject_name(x)) != 1 ||
        add_basic_constraints(x, m->ca, m->path_len) != 0 || add_key_usage(x, m->ca) != 0 ||
        (!m->ca && add_eku(x) != 0) || add_sans(x, m, empty_subject) != 0 ||
        (m->nc_host != NULL && add_name_constraints(x, m->nc_host) != 0) ||
        add_key_ids(x, m->issuer) != 0 || X509_sign(x, m->signer, EVP_sha256()) <= 0) {
        r = fail(why, SIGIL_ERR_CRYPTO, "mint: cannot build or sign the certificate");
        goto out;
    }
    /* what we hand out must pass what we demand of others */
    if ((m->ca ? sigil_x509_svid_check_ca(x, why) : sigil_x509_svid_check_leaf(x, why)) != 0) {
        r = SIGIL_ERR_INTERNAL;
        goto out;
    }
    *out = x;
    x = NULL;
    r = 0;
out:
    if (r != 0)
        ERR_clear_error();
    X509_free(x);
    return r;
}

int
sigil_x509_issuer_read(X509 *issuer, EVP_PKEY *issuer_key, char td[SIGIL_TRUST_DOMAIN_MAX + 1],
                       time_t *not_after, const char **why)
{
    struct sigil_spiffeid id;
    int r;

    td[0] = '\0';
    if (issuer == NULL || issuer_key == NULL)
        return fail(why, SIGIL_ERR_INVALID, "mint: no issuer");
    if ((r = sigil_x509_key_check(issuer_key, why)) != 0)
        return r;
    if (!sigil_x509_key_matches_cert(issuer_key, issuer))
        return fail(why, SIGIL_ERR_INVALID, "mint: the issuer key does not match its certificate");
    if ((r = sigil_x509_svid_check_ca(issuer, why)) != 0)
        return r;
    r = sigil_x509_cert_spiffeid(issuer, &id, why);
    if (r == 0)
        memcpy(td, id.td, sizeof id.td);
    else if (r != SIGIL_ERR_NOTFOUND)
        return fail(why, SIGIL_ERR_INVALID, "X-3: the issuer's SPIFFE ID is ambiguous");
    if (sigil_x509_cert_not_after(issuer, not_after) != 0)
        return fail(why, SIGIL_ERR_INVALID, "mint: unreadable issuer notAfter");
    return 0;
}

/* Checks an issuer (sigil_x509_issuer_read) and clamps *not_after to its notAfter. */
static int
check_issuer(X509 *issuer, EVP_PKEY *issuer_key, char td[SIGIL_TRUST_DOMAIN_MAX + 1],
             time_t not_before, time_t *not_after, const char **why)
{
    time_t parent_end;
    int r;

    if ((r = sigil_x509_issuer_read(issuer, issuer_key, td, &parent_end, why)) != 0)
        return r;
    /* a child never outlives its issuer: path validation would refuse it past that point */
    if (*not_after > parent_end)
        *not_after = parent_end;
    if (*not_after <= not_before)
        return fail(why, SIGIL_ERR_EXPIRED,
                    "mint: the issuer expires before the requested notBefore");
    return 0;
}

static int
check_validity(time_t not_before, time_t not_after, const char **why)
{
    if (not_before <= 0 || not_after <= not_before)
        return fail(why, SIGIL_ERR_INVALID, "mint: notAfter must be after notBefore");
    return 0;
}

static int
ca_mint(const struct sigil_x509_ca_params *params, EVP_PKEY *pub, X509 *parent, EVP_PKEY *signer,
        X509 **out, const char **why)
{
    struct sigil_spiffeid tdid;
    char parent_td[SIGIL_TRUST_DOMAIN_MAX + 1];
    const char *idwhy = NULL;
    struct mint_spec m;
    int r;

    *out = NULL;
    if (params == NULL || params->trust_domain == NULL)
        return fail(why, SIGIL_ERR_INVALID, "mint: no trust domain");
    if (sigil_spiffeid_from_parts(params->trust_domain, "", &tdid, &idwhy) != 0)
        return fail(why, SIGIL_ERR_INVALID, idwhy != NULL ? idwhy : "ID-3: bad trust domain");
    if ((r = check_validity(params->not_before, params->not_after, why)) != 0)
        return r;
    if ((r = sigil_x509_key_check(pub, why)) != 0)
        return r;
    memset(&m, 0, sizeof m);
    m.issuer = parent;
    m.signer = signer;
    m.pub = pub;
    m.subject = &params->subject;
    m.not_before = params->not_before;
    m.not_after = params->not_after;
    m.ca = true;
    m.path_len = params->path_len;
    m.uri = tdid.str;
    if (parent != NULL) {
        if ((r = check_issuer(parent, signer, parent_td, m.not_before, &m.not_after, why)) != 0)
            return r;
        if (parent_td[0] != '\0' && strcmp(parent_td, tdid.td) != 0)
            return fail(why, SIGIL_ERR_INVALID,
                        "X-3: an intermediate must be in its parent's trust domain");
        if (X509_get_pathlen(parent) == 0)
            return fail(why, SIGIL_ERR_INVALID,
                        "X-4: the parent's pathLenConstraint 0 allows no CA below it");
        if (tdid.td[0] == '.')
            return fail(why, SIGIL_ERR_UNSUPPORTED,
                        "X-7: a trust domain starting with '.' cannot be a URI name constraint");
        m.nc_host = tdid.td;
    }
    return mint(&m, out, why);
}

int
sigil_x509_mint_root(const struct sigil_x509_ca_params *params, EVP_PKEY *key, X509 **out,
                     const char **why)
{
    return ca_mint(params, key, NULL, key, out, why);
}

int
sigil_x509_mint_intermediate(const struct sigil_x509_ca_params *params, EVP_PKEY *pub, X509 *parent,
                             EVP_PKEY *parent_key, X509 **out, const char **why)
{
    if (parent == NULL)
        return fail(why, SIGIL_ERR_INVALID, "mint: an intermediate needs a parent CA");
    return ca_mint(params, pub, parent, parent_key, out, why);
}

/* A DNS SAN we are willing to write: LDH labels of 1..63 bytes, at most 253 in all, and an
 * optional leading "*." wildcard label. */
bool
sigil_x509_dns_name_ok(const char *s)
{
    size_t len = strlen(s), label = 0;

    if (len > 2 && s[0] == '*' && s[1] == '.') {
        s += 2;
        len -= 2;
    }
    if (len == 0 || len > 253 || s[0] == '.' || s[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  (c == '-' && label > 0);
        if (!ok || ++label > 63)
            return false;
    }
    return s[len - 1] != '-';
}

int
sigil_x509_mint_leaf(const struct sigil_x509_leaf_params *params, EVP_PKEY *pub, X509 *issuer,
                     EVP_PKEY *issuer_key, X509 **out, const char **why)
{
    char issuer_td[SIGIL_TRUST_DOMAIN_MAX + 1];
    struct sigil_spiffeid id;
    const char *idwhy = NULL;
    struct mint_spec m;
    int r;

    *out = NULL;
    if (params == NULL || params->id == NULL)
        return fail(why, SIGIL_ERR_INVALID, "X-1: a leaf needs a SPIFFE ID");
    /* re-parse: the caller's struct may have been filled by hand */
    if (sigil_spiffeid_parse(params->id->str, strnlen(params->id->str, sizeof params->id->str), &id,
                             &idwhy) != 0)
        return fail(why, SIGIL_ERR_INVALID, idwhy != NULL ? idwhy : "ID-1: invalid SPIFFE ID");
    if (!sigil_spiffeid_has_path(&id))
        return fail(why, SIGIL_ERR_INVALID, "X-2: a leaf SPIFFE ID must have a non-root path");
    if (params->n_dns > SIGIL_X509_DNS_MAX || (params->n_dns > 0 && params->dns_names == NULL))
        return fail(why, SIGIL_ERR_RANGE, "mint: too many DNS names");
    for (size_t i = 0; i < params->n_dns; i++)
        if (params->dns_names[i] == NULL || !sigil_x509_dns_name_ok(params->dns_names[i]))
            return fail(why, SIGIL_ERR_INVALID, "mint: invalid DNS name");
    if ((r = check_validity(params->not_before, params->not_after, why)) != 0)
        return r;
    if ((r = sigil_x509_key_check(pub, why)) != 0)
        return r;
    memset(&m, 0, sizeof m);
    m.issuer = issuer;
    m.signer = issuer_key;
    m.pub = pub;
    m.subject = &params->subject;
    m.not_before = params->not_before;
    m.not_after = params->not_after;
    m.ca = false;
    m.path_len = -1;
    m.uri = id.str;
    m.dns_names = params->dns_names;
    m.n_dns = params->n_dns;
    if ((r = check_issuer(issuer, issuer_key, issuer_td, m.not_before, &m.not_after, why)) != 0)
        return r;
    if (issuer_td[0] != '\0' && strcmp(issuer_td, id.td) != 0)
        return fail(why, SIGIL_ERR_INVALID,
                    "X-3: the leaf's trust domain differs from its signing certificate's");
    return mint(&m, out, why);
}

int
sigil_x509_mint_leaf_csr(const struct sigil_x509_leaf_params *params, X509_REQ *csr, X509 *issuer,
                         EVP_PKEY *issuer_key, X509 **out, const char **why)
{
    struct sigil_spiffeid want;
    EVP_PKEY *pub;
    int r;

    *out = NULL;
    if (params == NULL || params->id == NULL || csr == NULL)
        return fail(why, SIGIL_ERR_INVALID, "mint: no CSR or SPIFFE ID");
    if ((pub = X509_REQ_get0_pubkey(csr)) == NULL || X509_REQ_verify(csr, pub) != 1) {
        ERR_clear_error();
        return fail(why, SIGIL_ERR_VERIFY, "CSR: the self-signature does not verify");
    }
    r = sigil_x509_csr_spiffeid(csr, &want, why);
    if (r == 0 && strcmp(want.str, params->id->str) != 0)
        return fail(why, SIGIL_ERR_DENIED, "CSR: requests a different SPIFFE ID");
    if (r != 0 && r != SIGIL_ERR_NOTFOUND)
        return r;
    return sigil_x509_mint_leaf(params, pub, issuer, issuer_key, out, why);
}
