/* JWK (RFC 7517/7518) public keys to and from OpenSSL 3 EVP_PKEYs, shared by the bundle and
 * JWT-SVID modules, plus the capped loader every untrusted JOSE/JWKS text goes through.
 * Only EC P-256/P-384/P-521 and RSA: the algorithms JWT-SVID allows (J-2). */
#include "sigil/jwk.h"
#include "sigil/encoding.h"
#include "sigil/err.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>

#define EC_POINT_MAX (1 + 2 * 66) /* uncompressed P-521 point */
#define RSA_E_MAX 8               /* bytes; real exponents are 3 or 65537 */

struct curve {
    const char *crv;  /* JWK name */
    const char *ossl; /* OpenSSL group name */
    size_t len;       /* coordinate length in bytes (RFC 7518 §6.2.1.2) */
};

static const struct curve curves[] = {
    {"P-256", "prime256v1", 32},
    {"P-384", "secp384r1", 48},
    {"P-521", "secp521r1", 66},
};

/* Compares a JSON string with s byte for byte (an embedded NUL never matches). */
static bool
str_is(const json_t *v, const char *s)
{
    size_t n = strlen(s);

    return json_is_string(v) && json_string_length(v) == n &&
           memcmp(json_string_value(v), s, n) == 0;
}

/* Decodes the base64url member name of obj; SIGIL_ERR_INVALID if absent or malformed. */
static int
b64url_member(const json_t *obj, const char *name, uint8_t **out, size_t *outlen)
{
    const json_t *v = json_object_get(obj, name);

    *out = NULL;
    *outlen = 0;
    if (!json_is_string(v))
        return SIGIL_ERR_INVALID;
    return sigil_b64url_decode(json_string_value(v), json_string_length(v), out, outlen);
}

static int
ec_to_pkey(const json_t *jwk, EVP_PKEY **out, const char **why)
{
    const struct curve *c = NULL;
    const json_t *crv = json_object_get(jwk, "crv");
    uint8_t *x = NULL, *y = NULL, pt[EC_POINT_MAX];
    size_t xlen, ylen;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL, *check = NULL;
    EVP_PKEY *key = NULL;
    int r = SIGIL_ERR_INVALID;

    if (!json_is_string(crv)) {
        *why = "RFC 7518 §6.2.1.1: EC key has no crv";
        goto out;
    }
    for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
        if (str_is(crv, curves[i].crv))
            c = &curves[i];
    if (c == NULL) {
        *why = "RFC 7518 §6.2.1.1: EC curve not supported (P-256, P-384, P-521 only)";
        r = SIGIL_ERR_UNSUPPORTED;
        goto out;
    }
    if ((r = b64url_member(jwk, "x", &x, &xlen)) != 0 ||
        (r = b64url_member(jwk, "y", &y, &ylen)) != 0) {
        *why = "RFC 7518 §6.2.1.2: EC x or y missing or not base64url";
        goto out;
    }
    r = SIGIL_ERR_INVALID;
    if (xlen != c->len || ylen != c->len) {
        /* Exact lengths: a short or padded coordinate has more than one spelling. */
        *why = "RFC 7518 §6.2.1.2: EC x or y has the wrong length for its curve";
        goto out;
    }
    pt[0] = 0x04; /* uncompressed point */
    memcpy(pt + 1, x, xlen);
    memcpy(pt + 1 + xlen, y, ylen);

    r = SIGIL_ERR_NOMEM;
    *why = "out of memory";
    if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
        !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, c->ossl, 0) ||
        !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * c->len) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(ctx) != 1)
        goto out;
    r = SIGIL_ERR_INVALID;
    *why = "RFC 7518 §6.2.1: EC point is not on the curve";
    if (EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    /* Full check: coordinates in range, on the curve, not infinity, right order. */
    if ((check = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL)) == NULL ||
        EVP_PKEY_public_check(check) != 1)
        goto out;
    *out = key;
    key = NULL;
    r = 0;
out:
    ERR_clear_error();
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(key);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    free(x);
    free(y);
    return r;
}

static int
rsa_to_pkey(const json_t *jwk, EVP_PKEY **out, const char **why)
{
    uint8_t *n = NULL, *e = NULL;
    size_t nlen, elen;
    BIGNUM *bn_n = NULL, *bn_e = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *key = NULL;
    int bits, r;

    if ((r = b64url_member(jwk, "n", &n, &nlen)) != 0 ||
        (r = b64url_member(jwk, "e", &e, &elen)) != 0) {
        *why = "RFC 7518 §6.3.1: RSA n or e missing or not base64url";
        goto out;
    }
    r = SIGIL_ERR_INVALID;
    /* base64urlUInt: minimal octets, so one key has one spelling (RFC 7518 §2). */
    if (nlen == 0 || n[0] == 0 || elen == 0 || e[0] == 0) {
        *why = "RFC 7518 §6.3.1: RSA n or e is empty or has leading zero octets";
        goto out;
    }
    if (nlen > SIGIL_JWK_RSA_MAX_BITS / 8 || elen > RSA_E_MAX) {
        *why = "RFC 7518 §6.3.1: RSA n or e too long";
        r = SIGIL_ERR_UNSUPPORTED;
        goto out;
    }
    if ((n[nlen - 1] & 1) == 0 || (e[elen - 1] & 1) == 0 || (elen == 1 && e[0] < 3)) {
        *why = "RFC 7518 §6.3.1: RSA n must be odd and e odd and at least 3";
        goto out;
    }
    r = SIGIL_ERR_NOMEM;
    *why = "out of memory";
    if ((bn_n = BN_bin2bn(n, (int)nlen, NULL)) == NULL ||
        (bn_e = BN_bin2bn(e, (int)elen, NULL)) == NULL)
        goto out;
    bits = BN_num_bits(bn_n);
    if (bits < SIGIL_JWK_RSA_MIN_BITS || bits > SIGIL_JWK_RSA_MAX_BITS) {
        *why = "RFC 7518 §3.3: RSA keys must have 2048 bits or more (and 16384 at most here)";
        r = SIGIL_ERR_UNSUPPORTED;
        goto out;
    }
    if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e) ||
        (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(ctx) != 1)
        goto out;
    if (EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) {
        *why = "RFC 7518 §6.3.1: RSA key rejected by OpenSSL";
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    *out = key;
    key = NULL;
    r = 0;
out:
    ERR_clear_error();
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(key);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);
    return r;
}

int
sigil_jwk_to_pkey(const json_t *jwk, EVP_PKEY **out, const char **why)
{
    const char *dummy;
    const json_t *kty;

    if (why == NULL)
        why = &dummy;
    *out = NULL;
    if (!json_is_object(jwk)) {
        *why = "RFC 7517 §4: a JWK must be a JSON object";
        return SIGIL_ERR_INVALID;
    }
    kty = json_object_get(jwk, "kty");
    if (!json_is_string(kty)) {
        *why = "B-5: key has no kty string";
        return SIGIL_ERR_INVALID;
    }
    if (json_object_get(jwk, "d") != NULL) {
        /* A bundle is public: a private member means someone published a secret. */
        *why = "RFC 7518 §6: a published key must not carry its private part (d)";
        return SIGIL_ERR_INVALID;
    }
    if (str_is(kty, "EC"))
        return ec_to_pkey(jwk, out, why);
    if (str_is(kty, "RSA"))
        return rsa_to_pkey(jwk, out, why);
    *why = "B-5: kty not supported (EC and RSA only)";
    return SIGIL_ERR_UNSUPPORTED;
}

const char *
sigil_jwk_ec_curve(const EVP_PKEY *key)
{
    char name[64];
    size_t len = 0;

    if (key == NULL || !EVP_PKEY_is_a(key, "EC") ||
        EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &len) !=
            1) {
        ERR_clear_error();
        return NULL;
    }
    for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
        if (strcmp(name, curves[i].ossl) == 0)
            return curves[i].crv;
    return NULL;
}

int
sigil_jwk_check_pkey(const EVP_PKEY *key, const char **why)
{
    const char *dummy;

    if (why == NULL)
        why = &dummy;
    if (key != NULL && EVP_PKEY_is_a(key, "EC")) {
        if (sigil_jwk_ec_curve(key) != NULL)
            return 0;
        *why = "J-2: EC keys must be on P-256, P-384 or P-521";
        return SIGIL_ERR_UNSUPPORTED;
    }
    if (key != NULL && EVP_PKEY_is_a(key, "RSA")) {
        int bits = EVP_PKEY_get_bits(key);

        if (bits >= SIGIL_JWK_RSA_MIN_BITS && bits <= SIGIL_JWK_RSA_MAX_BITS)
            return 0;
        *why = "RFC 7518 §3.3: RSA keys must have 2048 bits or more (and 16384 at most here)";
        return SIGIL_ERR_UNSUPPORTED;
    }
    *why = "J-2: keys must be EC (P-256, P-384, P-521) or RSA";
    return SIGIL_ERR_UNSUPPORTED;
}

/* Sets obj[name] to the base64url of bn, left-padded with zeros to pad bytes (0: minimal). */
static int
set_bn(json_t *obj, const char *name, const BIGNUM *bn, size_t pad)
{
    size_t len = pad ? pad : (size_t)BN_num_bytes(bn);
    uint8_t *p = NULL;
    char *s = NULL;
    int r = SIGIL_ERR_NOMEM;

    if (len == 0 || (p = malloc(len)) == NULL)
        goto out;
    if (BN_bn2binpad(bn, p, (int)len) != (int)len) {
        r = SIGIL_ERR_INTERNAL;
        goto out;
    }
    if ((s = sigil_b64url_encode(p, len)) == NULL ||
        json_object_set_new(obj, name, json_string(s)) != 0)
        goto out;
    r = 0;
out:
    free(p);
    free(s);
    return r;
}

int
sigil_jwk_from_pkey(const EVP_PKEY *key, json_t *obj)
{
    const char *crv = sigil_jwk_ec_curve(key);
    BIGNUM *a = NULL, *b = NULL;
    int r = SIGIL_ERR_NOMEM;

    if (crv != NULL) {
        size_t len = 0;

        for (size_t i = 0; i < sizeof curves / sizeof curves[0]; i++)
            if (strcmp(crv, curves[i].crv) == 0)
                len = curves[i].len;
        if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &a) != 1 ||
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, &b) != 1)
            goto out;
        if (json_object_set_new(obj, "kty", json_string("EC")) != 0 ||
            json_object_set_new(obj, "crv", json_string(crv)) != 0 ||
            (r = set_bn(obj, "x", a, len)) != 0 || (r = set_bn(obj, "y", b, len)) != 0)
            goto out;
    } else if (key != NULL && EVP_PKEY_is_a(key, "RSA")) {
        if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &a) != 1 ||
            EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_E, &b) != 1)
            goto out;
        if (json_object_set_new(obj, "kty", json_string("RSA")) != 0 ||
            (r = set_bn(obj, "n", a, 0)) != 0 || (r = set_bn(obj, "e", b, 0)) != 0)
            goto out;
    } else {
        r = SIGIL_ERR_UNSUPPORTED;
        goto out;
    }
    r = 0;
out:
    ERR_clear_error();
    BN_free(a);
    BN_free(b);
    return r;
}

/* True if no more than max arrays/objects are open at any point of s (strings skipped).
 * Runs before jansson so that a deeply nested input costs a linear scan, not recursion. */
static bool
depth_ok(const char *s, size_t len, unsigned max)
{
    unsigned depth = 0;
    bool in_str = false, esc = false;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return false;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return true;
}

int
sigil_jwk_json_load(const char *s, size_t len, size_t max_len, unsigned max_depth, json_t **out,
                    const char **why)
{
    const char *dummy;
    json_error_t err;
    json_t *j;

    if (why == NULL)
        why = &dummy;
    *out = NULL;
    if (len > max_len) {
        *why = "JSON: input over its size cap";
        return SIGIL_ERR_RANGE;
    }
    if (!depth_ok(s, len, max_depth)) {
        *why = "JSON: nested too deeply";
        return SIGIL_ERR_RANGE;
    }
    /* No JSON_DISABLE_EOF_CHECK: anything after the value is an error; no JSON_ALLOW_NUL. */
    if ((j = json_loadb(s, len, JSON_REJECT_DUPLICATES, &err)) == NULL) {
        switch (json_error_code(&err)) {
        case json_error_out_of_memory:
            *why = "out of memory";
            return SIGIL_ERR_NOMEM;
        case json_error_duplicate_key:
            *why = "JSON: duplicate object key";
            break;
        case json_error_numeric_overflow:
            *why = "JSON: number out of range";
            break;
        default:
            *why = "JSON: malformed";
            break;
        }
        return SIGIL_ERR_INVALID;
    }
    *out = j;
    return 0;
}
