/* The SPIFFE checks on X.509-SVIDs (leaf; signing
 * certificates) and chain verification: our checks first, so a refusal names
 * the rule it broke, then RFC 5280 path validation by OpenSSL against the bundle. */
#include "sigil/err.h"
#include "sigil/spiffeid.h"
#include "sigil/x509.h"

#include <string.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static int
fail(const char **why, int err, const char *text)
{
    if (why != NULL)
        *why = text;
    return err;
}

/* Where an extension is: -1 absent, else its critical flag (0 or 1). Duplicates were
 * refused already through EXFLAG_INVALID. */
static int
ext_critical(const X509 *cert, int nid)
{
    int i = X509_get_ext_by_NID(cert, nid, -1);

    if (i < 0)
        return -1;
    return X509_EXTENSION_get_critical(X509_get_ext(cert, i)) ? 1 : 0;
}

/* Common to leaves and CAs: OpenSSL marks a certificate whose extensions failed to decode,
 * or appear twice, EXFLAG_INVALID; we refuse those before reading any extension. */
static int
check_wellformed(X509 *cert, const char **why)
{
    uint32_t flags;

    if (X509_get_version(cert) != X509_VERSION_3)
        return fail(why, SIGIL_ERR_INVALID, "X-4: an SVID must be an X.509 v3 certificate");
    flags = X509_get_extension_flags(cert);
    if (flags & EXFLAG_INVALID)
        return fail(why, SIGIL_ERR_INVALID,
                    "RFC 5280: malformed or duplicated certificate extensions");
    if (flags & EXFLAG_CRITICAL)
        return fail(why, SIGIL_ERR_INVALID,
                    "RFC 5280: certificate has an unknown critical extension");
    return 0;
}

/* The URI SANs of cert: sets *uris (caller frees with GENERAL_NAMES_free; NULL if the
 * certificate has no SAN extension) and *san_crit. */
static int
get_sans(X509 *cert, GENERAL_NAMES **sans, int *san_crit, const char **why)
{
    int crit = -1;

    *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    *san_crit = crit;
    if (*sans == NULL && crit != -1) {
        ERR_clear_error();
        return fail(why, SIGIL_ERR_INVALID, "X-1: malformed subjectAltName extension");
    }
    return 0;
}

/* Parses one URI SAN as a SPIFFE ID. */
static int
uri_spiffeid(const GENERAL_NAME *gn, struct sigil_spiffeid *out, const char **why)
{
    const ASN1_IA5STRING *s = gn->d.uniformResourceIdentifier;
    const char *idwhy = NULL;
    int r;

    if (s == NULL || s->length <= 0)
        return fail(why, SIGIL_ERR_INVALID, "X-1: the URI SAN is empty");
    /* keep the parser's code: SIGIL_ERR_RANGE says "over ID-7's length" */
    if ((r = sigil_spiffeid_parse((const char *)s->data, (size_t)s->length, out, &idwhy)) != 0)
        return fail(why, r, idwhy != NULL ? idwhy : "ID-1: invalid SPIFFE ID");
    return 0;
}

/* Finds the one URI SAN of sans. */
static int
sans_spiffeid(const GENERAL_NAMES *sans, struct sigil_spiffeid *out, const char **why)
{
    const GENERAL_NAME *uri = NULL;
    int n = 0;

    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        if (gn->type == GEN_URI) {
            uri = gn;
            n++;
        }
    }
    if (n == 0)
        return fail(why, SIGIL_ERR_NOTFOUND, "X-1: certificate has no URI SAN (no SPIFFE ID)");
    if (n > 1)
        return fail(why, SIGIL_ERR_INVALID, "X-1: certificate has more than one URI SAN");
    return uri_spiffeid(uri, out, why);
}

int
sigil_x509_cert_spiffeid(X509 *cert, struct sigil_spiffeid *out, const char **why)
{
    GENERAL_NAMES *sans = NULL;
    int r, crit;

    if ((r = get_sans(cert, &sans, &crit, why)) != 0)
        goto out;
    r = sans_spiffeid(sans, out, why);
out:
    GENERAL_NAMES_free(sans);
    return r;
}

static int
asn1_time_to_time_t(const ASN1_TIME *t, time_t *out)
{
    struct tm tm;

    memset(&tm, 0, sizeof tm);
    if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1) {
        ERR_clear_error();
        return SIGIL_ERR_INVALID;
    }
    *out = timegm(&tm);
    return 0;
}

int
sigil_x509_cert_not_after(const X509 *cert, time_t *out)
{
    return asn1_time_to_time_t(X509_get0_notAfter(cert), out);
}

int
sigil_x509_cert_not_before(const X509 *cert, time_t *out)
{
    return asn1_time_to_time_t(X509_get0_notBefore(cert), out);
}

int
sigil_x509_svid_check_leaf(X509 *cert, const char **why)
{
    struct sigil_spiffeid id;
    GENERAL_NAMES *sans = NULL;
    uint32_t flags, ku;
    int r, crit;

    if ((r = check_wellformed(cert, why)) != 0)
        goto out;
    if ((r = get_sans(cert, &sans, &crit, why)) != 0)
        goto out;
    if ((r = sans_spiffeid(sans, &id, why)) != 0) {
        /* a leaf without an ID is malformed, not merely "not found" */
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    if (!sigil_spiffeid_has_path(&id)) {
        r = fail(why, SIGIL_ERR_INVALID, "X-2: a leaf SPIFFE ID must have a non-root path");
        goto out;
    }
    if (X509_NAME_entry_count(X509_get_subject_name(cert)) == 0 && crit != 1) {
        r = fail(why, SIGIL_ERR_INVALID,
                 "X-2: subject is empty but the URI SAN extension is not critical");
        goto out;
    }
    flags = X509_get_extension_flags(cert);
    if (flags & EXFLAG_CA) {
        r = fail(why, SIGIL_ERR_INVALID, "X-4: a leaf must have cA=false");
        goto out;
    }
    if (!(flags & EXFLAG_KUSAGE)) {
        r = fail(why, SIGIL_ERR_INVALID, "X-5: a leaf must have the keyUsage extension");
        goto out;
    }
    if (ext_critical(cert, NID_key_usage) != 1) {
        r = fail(why, SIGIL_ERR_INVALID, "X-5: keyUsage must be critical");
        goto out;
    }
    ku = X509_get_key_usage(cert);
    if (!(ku & KU_DIGITAL_SIGNATURE)) {
        r = fail(why, SIGIL_ERR_INVALID, "X-5: a leaf must have keyUsage digitalSignature");
        goto out;
    }
    if (ku & KU_KEY_CERT_SIGN) {
        r = fail(why, SIGIL_ERR_INVALID, "X-9: a leaf must not have keyUsage keyCertSign");
        goto out;
    }
    if (ku & KU_CRL_SIGN) {
        r = fail(why, SIGIL_ERR_INVALID, "X-9: a leaf must not have keyUsage cRLSign");
        goto out;
    }
    /* X-6 asks for both purposes by name; anyExtendedKeyUsage alone does not count. */
    if ((flags & EXFLAG_XKUSAGE) &&
        (X509_get_extended_key_usage(cert) & (XKU_SSL_SERVER | XKU_SSL_CLIENT)) !=
            (XKU_SSL_SERVER | XKU_SSL_CLIENT)) {
        r = fail(why, SIGIL_ERR_INVALID,
                 "X-6: extendedKeyUsage must include both serverAuth and clientAuth");
        goto out;
    }
    r = 0;
out:
    GENERAL_NAMES_free(sans);
    return r;
}

/* A signing certificate's SPIFFE ID, if it has one, is path-less. Non-spiffe URIs
 * are not ours to judge; two SPIFFE IDs would make its trust domain ambiguous. */
static int
check_ca_id(X509 *cert, const char **why)
{
    GENERAL_NAMES *sans = NULL;
    struct sigil_spiffeid id;
    int r, crit, seen = 0;

    if ((r = get_sans(cert, &sans, &crit, why)) != 0)
        goto out;
    for (int i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, i);
        const ASN1_IA5STRING *s = gn->d.uniformResourceIdentifier;
        if (gn->type != GEN_URI || s == NULL || s->length < 7 || memcmp(s->data, "spiffe:", 7) != 0)
            continue;
        if (++seen > 1) {
            r = fail(why, SIGIL_ERR_INVALID,
                     "X-3: signing certificate has more than one SPIFFE ID");
            goto out;
        }
        if ((r = uri_spiffeid(gn, &id, why)) != 0)
            goto out;
        if (sigil_spiffeid_has_path(&id)) {
            r = fail(why, SIGIL_ERR_INVALID,
                     "X-3: a signing certificate's SPIFFE ID must have no path");
            goto out;
        }
    }
    r = 0;
out:
    GENERAL_NAMES_free(sans);
    return r;
}

int
sigil_x509_svid_check_ca(X509 *cert, const char **why)
{
    uint32_t flags;
    int r;

    if ((r = check_wellformed(cert, why)) != 0)
        return r;
    flags = X509_get_extension_flags(cert);
    if (!(flags & EXFLAG_BCONS) || !(flags & EXFLAG_CA))
        return fail(why, SIGIL_ERR_INVALID, "X-4: a signing certificate must have cA=true");
    if (!(flags & EXFLAG_KUSAGE))
        return fail(why, SIGIL_ERR_INVALID,
                    "X-5: a signing certificate must have the keyUsage extension");
    if (ext_critical(cert, NID_key_usage) != 1)
        return fail(why, SIGIL_ERR_INVALID, "X-5: keyUsage must be critical");
    if (!(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN))
        return fail(why, SIGIL_ERR_INVALID,
                    "X-5: a signing certificate must have keyUsage keyCertSign");
    return check_ca_id(cert, why);
}

/* Turns OpenSSL's verdict into our code and a text naming the rule. */
static int
map_verify_error(int err, const char **why)
{
    switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return fail(why, SIGIL_ERR_EXPIRED,
                    "X-8: a certificate of the chain is expired or not yet valid");
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD:
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD:
        return fail(why, SIGIL_ERR_INVALID, "X-8: malformed validity period");
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
        return fail(why, SIGIL_ERR_VERIFY,
                    "X-8: the chain does not lead to an authority of the trust bundle");
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY:
        return fail(why, SIGIL_ERR_VERIFY, "X-8: a certificate signature does not verify");
    case X509_V_ERR_PERMITTED_VIOLATION:
    case X509_V_ERR_EXCLUDED_VIOLATION:
    case X509_V_ERR_SUBTREE_MINMAX:
    case X509_V_ERR_UNSUPPORTED_CONSTRAINT_TYPE:
    case X509_V_ERR_UNSUPPORTED_CONSTRAINT_SYNTAX:
    case X509_V_ERR_UNSUPPORTED_NAME_SYNTAX:
        return fail(why, SIGIL_ERR_VERIFY,
                    "X-7: a name is outside the name constraints of a signing certificate");
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
        return fail(why, SIGIL_ERR_VERIFY,
                    "X-4: the chain exceeds a signing certificate's pathLenConstraint");
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN:
        return fail(why, SIGIL_ERR_VERIFY,
                    "X-4: an issuer in the path is not a signing certificate (cA, keyCertSign)");
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
        return fail(why, SIGIL_ERR_RANGE, "X-8: the chain is too long");
    case X509_V_ERR_CA_KEY_TOO_SMALL:
    case X509_V_ERR_EE_KEY_TOO_SMALL:
    case X509_V_ERR_CA_MD_TOO_WEAK:
        return fail(why, SIGIL_ERR_VERIFY,
                    "X-8: a key or signature algorithm is too weak (security level 2)");
    default:
        return fail(why, SIGIL_ERR_VERIFY, "X-8: RFC 5280 path validation failed");
    }
}

int
sigil_x509_svid_verify(STACK_OF(X509) *chain, STACK_OF(X509) *roots, time_t at,
                       struct sigil_spiffeid *id_out, const char **why)
{
    STACK_OF(X509) *untrusted = NULL;
    X509_STORE *store = NULL;
    X509_STORE_CTX *ctx = NULL;
    X509_VERIFY_PARAM *param;
    struct sigil_spiffeid id;
    X509 *leaf;
    int r, n, nroots;

    n = chain != NULL ? sk_X509_num(chain) : 0;
    nroots = roots != NULL ? sk_X509_num(roots) : 0;
    if (n <= 0)
        return fail(why, SIGIL_ERR_INVALID, "X-8: the chain is empty");
    if (n > SIGIL_X509_CHAIN_MAX)
        return fail(why, SIGIL_ERR_RANGE, "X-8: the chain is too long");
    /* B-4: a bundle without X.509 authorities makes every SVID of the domain invalid */
    if (nroots <= 0)
        return fail(why, SIGIL_ERR_VERIFY, "B-4: the trust bundle has no X.509 authority");
    if (nroots > 4 * SIGIL_X509_CHAIN_MAX)
        return fail(why, SIGIL_ERR_RANGE, "B-4: the trust bundle has too many authorities");

    leaf = sk_X509_value(chain, 0);
    if ((r = sigil_x509_svid_check_leaf(leaf, why)) != 0)
        return r;
    if ((r = sigil_x509_cert_spiffeid(leaf, &id, why)) != 0)
        return r;
    for (int i = 1; i < n; i++)
        if ((r = sigil_x509_svid_check_ca(sk_X509_value(chain, i), why)) != 0)
            return r;

    r = SIGIL_ERR_NOMEM;
    if ((store = X509_STORE_new()) == NULL || (ctx = X509_STORE_CTX_new()) == NULL ||
        (untrusted = sk_X509_new_null()) == NULL) {
        fail(why, r, "out of memory");
        goto out;
    }
    for (int i = 0; i < nroots; i++) {
        if (X509_STORE_add_cert(store, sk_X509_value(roots, i)) != 1) {
            r = fail(why, SIGIL_ERR_CRYPTO, "X-8: cannot load a bundle authority");
            goto out;
        }
    }
    for (int i = 1; i < n; i++) {
        if (sk_X509_push(untrusted, sk_X509_value(chain, i)) <= 0) {
            fail(why, r, "out of memory");
            goto out;
        }
    }
    if (X509_STORE_CTX_init(ctx, store, leaf, untrusted) != 1) {
        r = fail(why, SIGIL_ERR_CRYPTO, "X-8: cannot set up path validation");
        goto out;
    }
    param = X509_STORE_CTX_get0_param(ctx);
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_X509_STRICT | X509_V_FLAG_PARTIAL_CHAIN);
    X509_VERIFY_PARAM_set_depth(param, SIGIL_X509_CHAIN_MAX);
    X509_VERIFY_PARAM_set_auth_level(param, 2);
    X509_VERIFY_PARAM_set_time(param, at != 0 ? at : time(NULL));
    if (X509_verify_cert(ctx) != 1) {
        r = map_verify_error(X509_STORE_CTX_get_error(ctx), why);
        ERR_clear_error();
        goto out;
    }
    if (id_out != NULL)
        *id_out = id;
    r = 0;
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    sk_X509_free(untrusted); /* the certificates belong to chain */
    return r;
}
