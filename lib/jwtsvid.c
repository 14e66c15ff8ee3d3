/* JWT-SVIDs: ES256 signing and RS/ES/PS validation by JWT-SVID.md (checklist J-1..J-10).
 * Validation checks alg before anything else, then trusts only the bundle of the subject's
 * own trust domain; every refusal names its rule in `why`.
 *
 * Decisions: kid is required (H-2, as go-spiffe and SPIRE); header parameters other than
 * alg, kid and typ are refused, crit included (J-3 forbids producers to add them, and an
 * unknown crit extension must be refused by RFC 7515 §4.1.11 anyway); aud is signed as a
 * string for one audience and an array for several (go-jose, which SPIRE uses), and both are
 * accepted. */
#include "sigil/jwtsvid.h"
#include "sigil/buf.h"
#include "sigil/encoding.h"
#include "sigil/err.h"
#include "sigil/jwk.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#define HEADER_DEPTH_MAX 2
#define PAYLOAD_DEPTH_MAX 16
#define DATE_MAX ((int64_t)1 << 53) /* |NumericDate| cap: exact in a double, no overflow */

enum kind { KIND_ES, KIND_RS, KIND_PS };

struct alg {
    const char *name;
    const char *md;
    enum kind kind;
    const char *crv; /* ES: the curve the key must be on */
    size_t half;     /* ES: bytes of r and of s */
};

/* J-2: exactly the algorithms of RFC 7518 §3.3-3.5. */
static const struct alg algs[] = {
    {"ES256", "SHA256", KIND_ES, "P-256", 32}, {"ES384", "SHA384", KIND_ES, "P-384", 48},
    {"ES512", "SHA512", KIND_ES, "P-521", 66}, {"RS256", "SHA256", KIND_RS, NULL, 0},
    {"RS384", "SHA384", KIND_RS, NULL, 0},     {"RS512", "SHA512", KIND_RS, NULL, 0},
    {"PS256", "SHA256", KIND_PS, NULL, 0},     {"PS384", "SHA384", KIND_PS, NULL, 0},
    {"PS512", "SHA512", KIND_PS, NULL, 0},
};

/* What parsing found beside *out. */
struct parsed {
    const struct alg *alg;
    const char *signed_part; /* "header.payload" as it came */
    size_t signed_len;
    const char *sig; /* base64url signature */
    size_t sig_len;
    bool has_nbf, has_iat;
    int64_t nbf, iat;
};

static int
fail(const char **why, const char *text, int err)
{
    *why = text;
    return err;
}

/* Compares a JSON string with s byte for byte (an embedded NUL never matches). */
static bool
str_is(const json_t *v, const char *s)
{
    size_t n = strlen(s);

    return json_is_string(v) && json_string_length(v) == n &&
           memcmp(json_string_value(v), s, n) == 0;
}

/* Reads a NumericDate (RFC 7519 §2): an integer, or a real rounded down (round_up false)
 * or up, so that a fraction never extends a token's life. */
static bool
numeric_date(const json_t *v, bool round_up, int64_t *out)
{
    if (json_is_integer(v)) {
        json_int_t i = json_integer_value(v);

        if (i < -DATE_MAX || i > DATE_MAX)
            return false;
        *out = i;
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        int64_t t;

        if (!(d >= (double)-DATE_MAX && d <= (double)DATE_MAX)) /* NaN fails too */
            return false;
        t = (int64_t)d; /* truncates toward zero */
        if (round_up && (double)t < d)
            t++;
        else if (!round_up && (double)t > d)
            t--;
        *out = t;
        return true;
    }
    return false;
}

/* Decodes one base64url part of a token into a JSON object. */
static int
load_part(const char *s, size_t len, unsigned depth, json_t **out, const char **why,
          const char *not_b64, const char *not_object)
{
    uint8_t *raw = NULL;
    size_t rawlen = 0;
    const char *w;
    int r;

    *out = NULL;
    if ((r = sigil_b64url_decode(s, len, &raw, &rawlen)) != 0)
        return fail(why, r == SIGIL_ERR_NOMEM ? "out of memory" : not_b64, r);
    r = sigil_jwk_json_load((const char *)raw, rawlen, SIGIL_JWTSVID_MAX, depth, out, &w);
    free(raw);
    if (r == SIGIL_ERR_NOMEM || r == SIGIL_ERR_RANGE)
        return fail(why, w, r);
    if (r != 0 || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return fail(why, not_object, SIGIL_ERR_INVALID);
    }
    return 0;
}

/* J-2 (first), J-3, J-9/H-2 on the protected header. */
static int
check_header(json_t *h, struct parsed *pp, struct sigil_jwtsvid *out, const char **why)
{
    const json_t *a = json_object_get(h, "alg"), *kid, *typ, *v;
    const char *name;

    if (a == NULL)
        return fail(why, "J-2: alg header is missing", SIGIL_ERR_INVALID);
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++)
        if (str_is(a, algs[i].name))
            pp->alg = &algs[i];
    if (pp->alg == NULL) {
        if (!json_is_string(a))
            return fail(why, "J-2: alg must be a string", SIGIL_ERR_INVALID);
        if (str_is(a, "none"))
            return fail(why, "J-2: alg none is not allowed", SIGIL_ERR_INVALID);
        if (json_string_length(a) >= 2 && memcmp(json_string_value(a), "HS", 2) == 0)
            return fail(why, "J-2: HMAC algorithms (HS*) are not allowed", SIGIL_ERR_INVALID);
        if (str_is(a, "EdDSA"))
            return fail(why, "J-2: EdDSA is not allowed", SIGIL_ERR_INVALID);
        return fail(why, "J-2: alg must be RS256/384/512, ES256/384/512 or PS256/384/512",
                    SIGIL_ERR_INVALID);
    }
    memcpy(out->alg, pp->alg->name, strlen(pp->alg->name) + 1);

    json_object_foreach(h, name, v)
    {
        if (strcmp(name, "crit") == 0)
            return fail(why, "J-3: crit header is not supported", SIGIL_ERR_INVALID);
        if (strcmp(name, "alg") != 0 && strcmp(name, "kid") != 0 && strcmp(name, "typ") != 0)
            return fail(why, "J-3: header parameters other than alg, kid and typ are refused",
                        SIGIL_ERR_INVALID);
    }
    typ = json_object_get(h, "typ");
    if (typ != NULL && !str_is(typ, "JWT") && !str_is(typ, "JOSE"))
        return fail(why, "J-3: typ must be JWT or JOSE", SIGIL_ERR_INVALID);
    kid = json_object_get(h, "kid");
    if (!json_is_string(kid) || json_string_length(kid) == 0)
        return fail(why, "J-9, H-2: kid header is required", SIGIL_ERR_INVALID);
    if (json_string_length(kid) > SIGIL_BUNDLE_KID_MAX)
        return fail(why, "J-9: kid longer than 1024 bytes", SIGIL_ERR_RANGE);
    if (strlen(json_string_value(kid)) != json_string_length(kid))
        return fail(why, "J-9: kid contains a NUL byte", SIGIL_ERR_INVALID);
    memcpy(out->kid, json_string_value(kid), json_string_length(kid) + 1);
    return 0;
}

static bool
aud_value_ok(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0;
}

/* J-4, J-5, J-6 (presence and types) and RFC 7519 nbf/iat types. */
static int
check_claims(const json_t *c, struct parsed *pp, struct sigil_jwtsvid *out, const char **why)
{
    const json_t *sub = json_object_get(c, "sub"), *aud = json_object_get(c, "aud");
    const json_t *exp = json_object_get(c, "exp"), *nbf = json_object_get(c, "nbf");
    const json_t *iat = json_object_get(c, "iat");

    if (!json_is_string(sub))
        return fail(why, "J-4: sub is missing or not a string", SIGIL_ERR_INVALID);
    if (sigil_spiffeid_parse(json_string_value(sub), json_string_length(sub), &out->id, NULL) != 0)
        return fail(why, "J-4: sub is not a valid SPIFFE ID", SIGIL_ERR_INVALID);
    if (!sigil_spiffeid_has_path(&out->id))
        return fail(why, "J-4: sub must be a workload SPIFFE ID with a path", SIGIL_ERR_INVALID);

    if (aud == NULL)
        return fail(why, "J-5: aud is missing", SIGIL_ERR_INVALID);
    if (json_is_array(aud)) {
        if (json_array_size(aud) == 0)
            return fail(why, "J-5: aud is an empty array", SIGIL_ERR_INVALID);
        for (size_t i = 0; i < json_array_size(aud); i++)
            if (!aud_value_ok(json_array_get(aud, i)))
                return fail(why, "J-5: aud values must be non-empty strings", SIGIL_ERR_INVALID);
    } else if (!aud_value_ok(aud)) {
        return fail(why, "J-5: aud must be a non-empty string or array of them", SIGIL_ERR_INVALID);
    }

    if (exp == NULL)
        return fail(why, "J-6: exp is missing", SIGIL_ERR_INVALID);
    if (!numeric_date(exp, false, &out->exp))
        return fail(why, "J-6: exp must be a NumericDate", SIGIL_ERR_INVALID);
    if ((pp->has_nbf = nbf != NULL) && !numeric_date(nbf, true, &pp->nbf))
        return fail(why, "J-7: nbf must be a NumericDate (RFC 7519 §4.1.5)", SIGIL_ERR_INVALID);
    if ((pp->has_iat = iat != NULL) && !numeric_date(iat, true, &pp->iat))
        return fail(why, "J-7: iat must be a NumericDate (RFC 7519 §4.1.6)", SIGIL_ERR_INVALID);
    return 0;
}

/* Everything that needs no key: J-1 form, header, claims. */
static int
parse(const char *token, size_t len, struct parsed *pp, struct sigil_jwtsvid *out, const char **why)
{
    const char *d1, *d2;
    json_t *h = NULL;
    int r;

    memset(pp, 0, sizeof *pp);
    memset(out, 0, sizeof *out);
    if (len > SIGIL_JWTSVID_MAX)
        return fail(why, "J-1: token over 16 KiB", SIGIL_ERR_RANGE);
    if (len == 0)
        return fail(why, "J-1: empty token", SIGIL_ERR_INVALID);
    if (token[0] == '{')
        return fail(why, "J-1: JWS JSON serialization is not allowed, compact only",
                    SIGIL_ERR_INVALID);
    if ((d1 = memchr(token, '.', len)) == NULL ||
        (d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token))) == NULL ||
        memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)) != NULL)
        return fail(why, "J-1: a JWS compact token has exactly three parts", SIGIL_ERR_INVALID);
    pp->signed_part = token;
    pp->signed_len = (size_t)(d2 - token);
    pp->sig = d2 + 1;
    pp->sig_len = len - pp->signed_len - 1;

    if ((r = load_part(token, (size_t)(d1 - token), HEADER_DEPTH_MAX, &h, why,
                       "J-1: header is not base64url",
                       "J-1: header is not a JSON object (or has duplicate keys)")) != 0)
        return r;
    r = check_header(h, pp, out, why);
    json_decref(h);
    if (r != 0)
        return r;
    /* Only now: an unsigned "alg":"none" token must be refused by J-2 first. */
    if (pp->sig_len == 0)
        return fail(why, "J-1: the signature part is empty", SIGIL_ERR_INVALID);
    if ((r = load_part(d1 + 1, (size_t)(d2 - d1 - 1), PAYLOAD_DEPTH_MAX, &out->claims, why,
                       "J-1: payload is not base64url",
                       "J-1: payload is not a JSON object (or has duplicate keys)")) != 0)
        return r;
    return check_claims(out->claims, pp, out, why);
}

/* Verifies sig over input with key per alg; the key must be of the kind alg names. */
static int
verify_sig(const struct alg *alg, EVP_PKEY *key, const char *input, size_t inlen,
           const uint8_t *sig, size_t siglen, const char **why)
{
    const uint8_t *vsig = sig;
    size_t vlen = siglen;
    unsigned char *der = NULL;
    ECDSA_SIG *es = NULL;
    BIGNUM *br = NULL, *bs = NULL;
    EVP_MD_CTX *md = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    const char *crv;
    int n, r = SIGIL_ERR_VERIFY;

    if (alg->kind == KIND_ES) {
        crv = sigil_jwk_ec_curve(key);
        if (crv == NULL || strcmp(crv, alg->crv) != 0) {
            *why = "J-2: the key of kid is not an EC key on the curve alg names";
            goto out;
        }
        if (siglen != 2 * alg->half) {
            *why = "J-7: ECDSA signature must be r||s of the curve's size (RFC 7518 §3.4)";
            goto out;
        }
        r = SIGIL_ERR_NOMEM;
        *why = "out of memory";
        if ((es = ECDSA_SIG_new()) == NULL || (br = BN_bin2bn(sig, (int)alg->half, NULL)) == NULL ||
            (bs = BN_bin2bn(sig + alg->half, (int)alg->half, NULL)) == NULL ||
            ECDSA_SIG_set0(es, br, bs) != 1)
            goto out;
        br = bs = NULL; /* owned by es now */
        if ((n = i2d_ECDSA_SIG(es, &der)) <= 0)
            goto out;
        vsig = der;
        vlen = (size_t)n;
    } else if (!EVP_PKEY_is_a(key, "RSA")) {
        *why = "J-2: RS and PS algorithms need an RSA key";
        goto out;
    }
    r = SIGIL_ERR_CRYPTO;
    *why = "J-7: could not set up signature verification";
    if ((md = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestVerifyInit_ex(md, &pctx, alg->md, NULL, NULL, key, NULL) != 1)
        goto out;
    if (alg->kind == KIND_RS && EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) <= 0)
        goto out;
    /* RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash. */
    if (alg->kind == KIND_PS &&
        (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0))
        goto out;
    if (EVP_DigestVerify(md, vsig, vlen, (const unsigned char *)input, inlen) != 1) {
        *why = "J-7: signature does not verify";
        r = SIGIL_ERR_VERIFY;
        goto out;
    }
    r = 0;
out:
    ERR_clear_error();
    EVP_MD_CTX_free(md);
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    BN_free(br);
    BN_free(bs);
    return r;
}

bool
sigil_jwtsvid_has_audience(const struct sigil_jwtsvid *s, const char *audience)
{
    const json_t *aud = s->claims != NULL ? json_object_get(s->claims, "aud") : NULL;

    if (json_is_string(aud))
        return str_is(aud, audience);
    for (size_t i = 0; i < json_array_size(aud); i++)
        if (str_is(json_array_get(aud, i), audience))
            return true;
    return false;
}

int
sigil_jwtsvid_validate(const char *token, size_t len, const char *audience,
                       const struct sigil_bundle_set *bundles, time_t now, unsigned leeway,
                       struct sigil_jwtsvid *out, const char **why)
{
    const char *dummy;
    const struct sigil_bundle *b;
    struct parsed pp;
    EVP_PKEY *key;
    uint8_t *sig = NULL;
    size_t siglen = 0;
    int64_t t = (int64_t)now;
    int r;

    if (why == NULL)
        why = &dummy;
    if ((r = parse(token, len, &pp, out, why)) != 0)
        goto out;
    r = SIGIL_ERR_NOTFOUND;
    /* J-10: only the bundle of the subject's own trust domain. */
    if (bundles == NULL || (b = sigil_bundle_set_find(bundles, out->id.td)) == NULL) {
        *why = "J-10: no bundle for the trust domain of sub: token untrusted";
        goto out;
    }
    if ((key = sigil_bundle_jwt_find(b, out->kid)) == NULL) {
        *why = "J-9: kid is not a JWT authority of sub's trust domain";
        goto out;
    }
    if ((r = sigil_b64url_decode(pp.sig, pp.sig_len, &sig, &siglen)) != 0) {
        *why = r == SIGIL_ERR_NOMEM ? "out of memory" : "J-1: signature is not base64url";
        goto out;
    }
    if ((r = verify_sig(pp.alg, key, pp.signed_part, pp.signed_len, sig, siglen, why)) != 0)
        goto out;
    r = SIGIL_ERR_INVALID;
    if (audience == NULL || audience[0] == '\0') {
        *why = "J-5: the validator's own audience must be set";
        goto out;
    }
    if (!sigil_jwtsvid_has_audience(out, audience)) {
        *why = "J-5: aud does not contain our audience";
        r = SIGIL_ERR_DENIED;
        goto out;
    }
    r = SIGIL_ERR_EXPIRED;
    if (out->exp < t && t - out->exp > (int64_t)leeway) {
        *why = "J-6: token has expired";
        goto out;
    }
    if (pp.has_nbf && pp.nbf > t && pp.nbf - t > (int64_t)leeway) {
        *why = "J-7: token not valid yet (nbf, RFC 7519 §4.1.5)";
        goto out;
    }
    if (pp.has_iat && pp.iat > t && pp.iat - t > (int64_t)leeway) {
        *why = "J-7: token issued in the future (iat, RFC 7519 §4.1.6)";
        goto out;
    }
    r = 0;
out:
    if (sig != NULL) {
        OPENSSL_cleanse(sig, siglen);
        free(sig);
    }
    if (r != 0)
        sigil_jwtsvid_clear(out);
    return r;
}

int
sigil_jwtsvid_parse_insecure(const char *token, size_t len, struct sigil_jwtsvid *out,
                             const char **why)
{
    const char *dummy;
    struct parsed pp;
    int r;

    if (why == NULL)
        why = &dummy;
    if ((r = parse(token, len, &pp, out, why)) != 0)
        sigil_jwtsvid_clear(out);
    return r;
}

void
sigil_jwtsvid_clear(struct sigil_jwtsvid *s)
{
    json_decref(s->claims);
    memset(s, 0, sizeof *s);
}

void
sigil_jwtsvid_token_free(char *token)
{
    if (token == NULL)
        return;
    OPENSSL_cleanse(token, strlen(token));
    free(token);
}

/* Checks the parameters of a token to sign. */
static int
check_params(const struct sigil_jwtsvid_params *p, struct sigil_spiffeid *id, const char **why)
{
    const char *crv = p->key != NULL ? sigil_jwk_ec_curve(p->key) : NULL;
    size_t kidlen = p->kid != NULL ? strlen(p->kid) : 0;
    const char *name;
    json_t *v;

    if (crv == NULL || strcmp(crv, "P-256") != 0)
        return fail(why, "J-2: Sigil signs JWT-SVIDs with ES256: the key must be EC P-256",
                    SIGIL_ERR_UNSUPPORTED);
    if (kidlen == 0 || kidlen > SIGIL_BUNDLE_KID_MAX)
        return fail(why, "J-9, H-2: kid must be 1 to 1024 bytes", SIGIL_ERR_INVALID);
    if (p->sub == NULL || sigil_spiffeid_parse(p->sub, strlen(p->sub), id, NULL) != 0)
        return fail(why, "J-4: sub is not a valid SPIFFE ID", SIGIL_ERR_INVALID);
    if (!sigil_spiffeid_has_path(id))
        return fail(why, "J-4: sub must be a workload SPIFFE ID with a path", SIGIL_ERR_INVALID);
    if (p->naud == 0 || p->aud == NULL)
        return fail(why, "J-5: at least one audience is required", SIGIL_ERR_INVALID);
    for (size_t i = 0; i < p->naud; i++)
        if (p->aud[i] == NULL || p->aud[i][0] == '\0')
            return fail(why, "J-5: audiences must be non-empty", SIGIL_ERR_INVALID);
    if (p->exp <= p->iat)
        return fail(why, "J-6: exp must be after iat", SIGIL_ERR_INVALID);
    if (p->iat < 0 || (int64_t)p->exp > DATE_MAX)
        return fail(why, "J-6: iat and exp must lie between 1970 and 2^53 seconds",
                    SIGIL_ERR_INVALID);
    if (p->extra != NULL) {
        if (!json_is_object(p->extra))
            return fail(why, "J-7: extra claims must be a JSON object", SIGIL_ERR_INVALID);
        /* jansson's iterators take a non-const object; nothing is modified. */
        json_object_foreach((json_t *)p->extra, name, v)
        {
            if (strcmp(name, "sub") == 0 || strcmp(name, "aud") == 0 || strcmp(name, "exp") == 0 ||
                strcmp(name, "iat") == 0)
                return fail(why, "J-7: extra claims must not set sub, aud, exp or iat",
                            SIGIL_ERR_INVALID);
        }
    }
    return 0;
}

/* Appends the base64url of the compact JSON of j to buf. */
static int
append_json_b64(struct sigil_buf *buf, const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT), *b64 = NULL;
    int r = SIGIL_ERR_NOMEM;

    if (s == NULL || (b64 = sigil_b64url_encode((const uint8_t *)s, strlen(s))) == NULL)
        goto out;
    r = sigil_buf_append_str(buf, b64);
out:
    free(s);
    free(b64);
    return r;
}

int
sigil_jwtsvid_sign(const struct sigil_jwtsvid_params *p, char **token, const char **why)
{
    const char *dummy;
    struct sigil_spiffeid id;
    json_t *hdr = NULL, *pl = NULL, *aud = NULL, *v;
    const char *name;
    struct sigil_buf buf = {0};
    unsigned char *der = NULL;
    uint8_t raw[64];
    char *s64 = NULL;
    size_t derlen = 0;
    EVP_MD_CTX *md = NULL;
    ECDSA_SIG *es = NULL;
    const unsigned char *dp;
    const BIGNUM *br, *bs;
    int r;

    if (why == NULL)
        why = &dummy;
    *token = NULL;
    if ((r = check_params(p, &id, why)) != 0)
        return r;

    r = SIGIL_ERR_NOMEM;
    *why = "out of memory";
    if ((hdr = json_object()) == NULL || (pl = json_object()) == NULL)
        goto out;
    /* Header exactly {"alg":"ES256","kid":...,"typ":"JWT"} (J-2, J-3). A failed set here is
     * a kid or audience that is not UTF-8 (or no memory). */
    r = SIGIL_ERR_INVALID;
    *why = "J-3: kid and audiences must be UTF-8 text";
    if (json_object_set_new(hdr, "alg", json_string("ES256")) != 0 ||
        json_object_set_new(hdr, "kid", json_string(p->kid)) != 0 ||
        json_object_set_new(hdr, "typ", json_string("JWT")) != 0)
        goto out;
    if (p->naud == 1) {
        aud = json_string(p->aud[0]);
    } else if ((aud = json_array()) != NULL) {
        for (size_t i = 0; i < p->naud; i++)
            if (json_array_append_new(aud, json_string(p->aud[i])) != 0)
                goto out;
    }
    if (json_object_set_new(pl, "sub", json_string(id.str)) != 0 ||
        json_object_set(pl, "aud", aud) != 0 ||
        json_object_set_new(pl, "exp", json_integer((json_int_t)p->exp)) != 0 ||
        json_object_set_new(pl, "iat", json_integer((json_int_t)p->iat)) != 0)
        goto out;

    r = SIGIL_ERR_NOMEM;
    *why = "out of memory";
    if (p->extra != NULL)
        json_object_foreach((json_t *)p->extra, name, v)
        {
            if (json_object_set(pl, name, v) != 0)
                goto out;
        }
    if (append_json_b64(&buf, hdr) != 0 || sigil_buf_append(&buf, ".", 1) != 0 ||
        append_json_b64(&buf, pl) != 0)
        goto out;
    if (buf.len > SIGIL_JWTSVID_MAX) {
        r = SIGIL_ERR_RANGE;
        *why = "J-1: token would be over 16 KiB";
        goto out;
    }

    r = SIGIL_ERR_CRYPTO;
    *why = "J-2: ES256 signing failed";
    if ((md = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, p->key, NULL) != 1 ||
        EVP_DigestSign(md, NULL, &derlen, buf.data, buf.len) != 1 ||
        (der = OPENSSL_malloc(derlen)) == NULL ||
        EVP_DigestSign(md, der, &derlen, buf.data, buf.len) != 1)
        goto out;
    /* JOSE wants raw r||s (RFC 7518 §3.4), OpenSSL gives DER. */
    dp = der;
    if ((es = d2i_ECDSA_SIG(NULL, &dp, (long)derlen)) == NULL)
        goto out;
    ECDSA_SIG_get0(es, &br, &bs);
    if (BN_bn2binpad(br, raw, 32) != 32 || BN_bn2binpad(bs, raw + 32, 32) != 32)
        goto out;
    r = SIGIL_ERR_NOMEM;
    *why = "out of memory";
    if ((s64 = sigil_b64url_encode(raw, sizeof raw)) == NULL ||
        sigil_buf_append(&buf, ".", 1) != 0 || sigil_buf_append_str(&buf, s64) != 0 ||
        (*token = sigil_buf_strdup(&buf)) == NULL)
        goto out;
    r = 0;
out:
    ERR_clear_error();
    OPENSSL_cleanse(raw, sizeof raw);
    if (der != NULL)
        OPENSSL_clear_free(der, derlen);
    if (s64 != NULL) {
        OPENSSL_cleanse(s64, strlen(s64));
        free(s64);
    }
    sigil_buf_freezero(&buf);
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(md);
    json_decref(aud);
    json_decref(hdr);
    json_decref(pl);
    return r;
}
