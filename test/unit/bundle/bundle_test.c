/* Unit tests of the bundle module beyond the go-spiffe vectors: malformed input of every
 * kind (each refusal must name its rule), key filtering (B-5, X-11), caps, mutations,
 * deterministic encoding, the bundle map (B-7) and the set keyed by trust domain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sigil/bundle.h"
#include "sigil/encoding.h"
#include "sigil/err.h"
#include "sigil/jwk.h"

static EVP_PKEY *
ec_key(const char *curve)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", curve);

    assert_non_null(k);
    return k;
}

static EVP_PKEY *
rsa_key(size_t bits)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", bits);

    assert_non_null(k);
    return k;
}

/* A self-signed certificate for key; serial makes two certs of one key differ. */
static X509 *
make_cert(EVP_PKEY *key, long serial)
{
    X509 *c = X509_new();
    X509_NAME *n;

    assert_non_null(c);
    assert_int_equal(X509_set_version(c, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(c), serial), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(c), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(c), 3600));
    n = X509_get_subject_name(c);
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
                                                (const unsigned char *)"sigil test", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(c, n), 1);
    assert_int_equal(X509_set_pubkey(c, key), 1);
    assert_true(X509_sign(c, key, EVP_sha256()) > 0);
    return c;
}

/* A jwt-svid JWK object for key. */
static json_t *
jwt_jwk(EVP_PKEY *key, const char *kid)
{
    json_t *k = json_object();

    assert_non_null(k);
    assert_int_equal(json_object_set_new(k, "use", json_string("jwt-svid")), 0);
    if (kid != NULL)
        assert_int_equal(json_object_set_new(k, "kid", json_string(kid)), 0);
    assert_int_equal(sigil_jwk_from_pkey(key, k), 0);
    return k;
}

/* An x509-svid JWK object for cert (x5c plus the key members). */
static json_t *
x509_jwk(X509 *cert)
{
    json_t *k = json_object(), *x5c = json_array();
    unsigned char *der = NULL;
    int n = i2d_X509(cert, &der);
    char *b64;

    assert_true(n > 0);
    b64 = sigil_b64_encode(der, (size_t)n);
    assert_non_null(b64);
    assert_int_equal(json_object_set_new(k, "use", json_string("x509-svid")), 0);
    assert_int_equal(sigil_jwk_from_pkey(X509_get0_pubkey(cert), k), 0);
    assert_int_equal(json_array_append_new(x5c, json_string(b64)), 0);
    assert_int_equal(json_object_set_new(k, "x5c", x5c), 0);
    free(b64);
    OPENSSL_free(der);
    return k;
}

/* {"keys":[k...]} taking the references of the given keys (NULL-terminated). */
static json_t *
doc_of(json_t *k, ...)
{
    json_t *doc = json_object(), *keys = json_array();
    va_list ap;

    assert_int_equal(json_object_set_new(doc, "keys", keys), 0);
    va_start(ap, k);
    for (; k != NULL; k = va_arg(ap, json_t *))
        assert_int_equal(json_array_append_new(keys, k), 0);
    va_end(ap);
    return doc;
}

static int
decode_json(const json_t *doc, struct sigil_bundle **b, const char **why)
{
    char *s = json_dumps(doc, JSON_COMPACT);
    int r;

    assert_non_null(s);
    r = sigil_bundle_decode("example.org", s, strlen(s), b, why);
    free(s);
    return r;
}

/* Decoding text must fail with err and a why naming rule. */
static void
reject_text(const char *json, size_t len, int err, const char *rule)
{
    struct sigil_bundle *b = NULL;
    const char *why = NULL;
    int r = sigil_bundle_decode("example.org", json, len, &b, &why);

    if (r != err)
        fail_msg("%.200s: got %d (%s), want %d", json, r, why ? why : "-", err);
    assert_null(b);
    assert_non_null(why);
    if (rule != NULL && strstr(why, rule) == NULL)
        fail_msg("%.200s: why \"%s\" does not name %s", json, why, rule);
}

static void
reject(const char *json, int err, const char *rule)
{
    reject_text(json, strlen(json), err, rule);
}

/* Decoding doc (consumed) must fail with err and a why naming rule. */
static void
reject_doc(json_t *doc, int err, const char *rule)
{
    char *s = json_dumps(doc, JSON_COMPACT);

    assert_non_null(s);
    reject(s, err, rule);
    free(s);
    json_decref(doc);
}

/* Decoding doc (consumed) must succeed with these counts. */
static void
accept_doc(json_t *doc, size_t nx509, size_t njwt)
{
    struct sigil_bundle *b = NULL;
    const char *why = NULL;
    int r = decode_json(doc, &b, &why);

    if (r != 0)
        fail_msg("rejected: %s", why);
    assert_int_equal(sigil_bundle_x509_count(b), nx509);
    assert_int_equal(sigil_bundle_jwt_count(b), njwt);
    sigil_bundle_free(b);
    json_decref(doc);
}

/* Replaces the base64url member name of k by f(decoded bytes). */
static void
mangle_b64url(json_t *k, const char *name, size_t newlen, int flip_last)
{
    const json_t *v = json_object_get(k, name);
    uint8_t *raw, buf[600] = {0};
    size_t n;
    char *s;

    assert_int_equal(sigil_b64url_decode(json_string_value(v), json_string_length(v), &raw, &n), 0);
    assert_true(newlen <= sizeof buf && n <= sizeof buf);
    memcpy(buf, raw, n < newlen ? n : newlen);
    if (flip_last)
        buf[newlen - 1] ^= 1;
    s = sigil_b64url_encode(buf, newlen);
    assert_int_equal(json_object_set_new(k, name, json_string(s)), 0);
    free(s);
    free(raw);
}

static void
test_not_json(void **state)
{
    (void)state;
    reject("not json", SIGIL_ERR_INVALID, "JSON");
    reject("", SIGIL_ERR_INVALID, "JSON");
    reject("{", SIGIL_ERR_INVALID, "JSON");
    reject("{\"keys\":[]} x", SIGIL_ERR_INVALID, "JSON");
    reject("{\"keys\":[]}{}", SIGIL_ERR_INVALID, "JSON");
    reject_text("{\"keys\":[]}\0", 12, SIGIL_ERR_INVALID, "JSON");
    reject("{\"keys\":[],\"x\":\"\\u0000\"}", SIGIL_ERR_INVALID, "JSON");
    reject("[]", SIGIL_ERR_INVALID, "B-1");
    reject("\"keys\"", SIGIL_ERR_INVALID, "JSON"); /* a bare string is not even loaded */
}

static void
test_duplicate_keys(void **state)
{
    (void)state;
    reject("{\"keys\":[],\"keys\":[]}", SIGIL_ERR_INVALID, "duplicate");
    reject("{\"keys\":[{\"kty\":\"EC\",\"kty\":\"RSA\",\"use\":\"jwt-svid\"}]}", SIGIL_ERR_INVALID,
           "duplicate");
    reject("{\"keys\":[],\"spiffe_sequence\":1,\"spiffe_sequence\":2}", SIGIL_ERR_INVALID,
           "duplicate");
}

static void
test_keys_member(void **state)
{
    struct sigil_bundle *b = NULL;
    const char *why;

    (void)state;
    reject("{}", SIGIL_ERR_INVALID, "B-4");
    reject("{\"spiffe_sequence\":1}", SIGIL_ERR_INVALID, "B-4");
    reject("{\"keys\":{}}", SIGIL_ERR_INVALID, "B-4");
    reject("{\"keys\":null}", SIGIL_ERR_INVALID, "B-4");
    reject("{\"keys\":\"x\"}", SIGIL_ERR_INVALID, "B-4");
    reject("{\"keys\":[1]}", SIGIL_ERR_INVALID, "B-5");
    /* B-4: keys may be empty; B-1: unknown top-level members are fine. */
    {
        const char *extra = "{\"keys\":[],\"other\":{\"a\":[1]}}";

        assert_int_equal(sigil_bundle_decode("example.org", extra, strlen(extra), &b, &why), 0);
    }
    assert_int_equal(sigil_bundle_x509_count(b), 0);
    assert_int_equal(sigil_bundle_jwt_count(b), 0);
    sigil_bundle_free(b);
}

static void
test_sequence_and_hint(void **state)
{
    struct sigil_bundle *b = NULL;
    const char *why;
    uint64_t seq;
    int64_t hint;
    const char *ok = "{\"keys\":[],\"spiffe_sequence\":9223372036854775807,"
                     "\"spiffe_refresh_hint\":0}";

    (void)state;
    reject("{\"keys\":[],\"spiffe_sequence\":-1}", SIGIL_ERR_INVALID, "B-2");
    reject("{\"keys\":[],\"spiffe_sequence\":\"1\"}", SIGIL_ERR_INVALID, "B-2");
    reject("{\"keys\":[],\"spiffe_sequence\":1.5}", SIGIL_ERR_INVALID, "B-2");
    reject("{\"keys\":[],\"spiffe_sequence\":1.0}", SIGIL_ERR_INVALID, "B-2");
    reject("{\"keys\":[],\"spiffe_sequence\":true}", SIGIL_ERR_INVALID, "B-2");
    reject("{\"keys\":[],\"spiffe_sequence\":null}", SIGIL_ERR_INVALID, "B-2");
    /* Above 2^63-1 jansson cannot hold the integer: refused, not wrapped. */
    reject("{\"keys\":[],\"spiffe_sequence\":18446744073709551615}", SIGIL_ERR_INVALID, "range");
    reject("{\"keys\":[],\"spiffe_refresh_hint\":-5}", SIGIL_ERR_INVALID, "B-3");
    reject("{\"keys\":[],\"spiffe_refresh_hint\":\"60\"}", SIGIL_ERR_INVALID, "B-3");
    reject("{\"keys\":[],\"spiffe_refresh_hint\":6.5}", SIGIL_ERR_INVALID, "B-3");

    assert_int_equal(sigil_bundle_decode("example.org", ok, strlen(ok), &b, &why), 0);
    assert_true(sigil_bundle_sequence(b, &seq));
    assert_true(seq == INT64_MAX);
    assert_true(sigil_bundle_refresh_hint(b, &hint));
    assert_int_equal(hint, 0);
    assert_int_equal(sigil_bundle_set_sequence(b, (uint64_t)INT64_MAX + 1), SIGIL_ERR_RANGE);
    assert_int_equal(sigil_bundle_set_refresh_hint(b, -1), SIGIL_ERR_RANGE);
    sigil_bundle_clear_sequence(b);
    sigil_bundle_clear_refresh_hint(b);
    assert_false(sigil_bundle_sequence(b, &seq));
    assert_false(sigil_bundle_refresh_hint(b, &hint));
    sigil_bundle_free(b);
}

static void
test_bad_base64(void **state)
{
    EVP_PKEY *k = ec_key("P-256");
    X509 *c = make_cert(k, 1);
    json_t *j;

    (void)state;
    /* x5c is standard padded base64: url-safe, unpadded or junk are refused. */
    j = x509_jwk(c);
    json_array_set_new(json_object_get(j, "x5c"), 0, json_string("!!!!"));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "X-10");
    j = x509_jwk(c);
    json_array_set_new(json_object_get(j, "x5c"), 0, json_string("MIIB"));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "X-10"); /* base64, but not a certificate */
    j = x509_jwk(c);
    json_array_set_new(json_object_get(j, "x5c"), 0, json_string("MII-_w"));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "X-10");
    j = x509_jwk(c);
    json_array_set_new(json_object_get(j, "x5c"), 0, json_integer(3));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "X-10");
    /* Coordinates are unpadded base64url (RFC 7518). */
    j = jwt_jwk(k, "a");
    json_object_set_new(j, "x", json_string("a+b/"));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "RFC 7518");
    j = jwt_jwk(k, "a");
    json_object_set_new(j, "y", json_string("AAAA===="));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "RFC 7518");
    j = jwt_jwk(k, "a");
    json_object_del(j, "y");
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "RFC 7518");
    j = jwt_jwk(k, "a");
    json_object_set_new(j, "x", json_integer(1));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "RFC 7518");
    X509_free(c);
    EVP_PKEY_free(k);
}

static void
test_coordinates(void **state)
{
    EVP_PKEY *k256 = ec_key("P-256"), *k384 = ec_key("P-384"), *k521 = ec_key("P-521");
    json_t *j;

    (void)state;
    j = jwt_jwk(k256, "a");
    mangle_b64url(j, "x", 31, 0);
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "wrong length");
    j = jwt_jwk(k256, "a");
    mangle_b64url(j, "y", 33, 0);
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "wrong length");
    j = jwt_jwk(k384, "a"); /* P-384 coordinates labelled P-256 */
    json_object_set_new(j, "crv", json_string("P-256"));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "wrong length");
    j = jwt_jwk(k521, "a"); /* P-521 needs 66 bytes, not 65 */
    mangle_b64url(j, "x", 65, 0);
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "wrong length");
    /* Point not on the curve. */
    j = jwt_jwk(k256, "a");
    mangle_b64url(j, "y", 32, 1);
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "not on the curve");
    j = jwt_jwk(k384, "a");
    mangle_b64url(j, "x", 48, 1);
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "not on the curve");
    /* Coordinates of all 0xff: x >= p, out of range. */
    j = jwt_jwk(k256, "a");
    json_object_set_new(j, "x", json_string("__________________________________________8"));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "not on the curve");
    /* The right lengths on every curve are accepted. */
    accept_doc(doc_of(jwt_jwk(k256, "a"), jwt_jwk(k384, "b"), jwt_jwk(k521, "c"), NULL), 0, 3);
    /* Unsupported curves of a known kty refuse the bundle. */
    j = jwt_jwk(k256, "a");
    json_object_set_new(j, "crv", json_string("secp256k1"));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_UNSUPPORTED, "curve");
    j = jwt_jwk(k256, "a");
    json_object_del(j, "crv");
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "crv");
    EVP_PKEY_free(k256);
    EVP_PKEY_free(k384);
    EVP_PKEY_free(k521);
}

static void
test_rsa_keys(void **state)
{
    EVP_PKEY *r2048 = rsa_key(2048), *r1024 = rsa_key(1024);
    X509 *c = make_cert(r2048, 7);
    struct sigil_bundle *b = NULL, *b2 = NULL;
    const char *why;
    json_t *j, *doc;
    char *s;
    size_t n;

    (void)state;
    doc = doc_of(jwt_jwk(r2048, "rsa"), x509_jwk(c), NULL);
    assert_int_equal(decode_json(doc, &b, &why), 0);
    json_decref(doc);
    assert_int_equal(sigil_bundle_jwt_count(b), 1);
    assert_int_equal(sigil_bundle_x509_count(b), 1);
    assert_int_equal(EVP_PKEY_eq(sigil_bundle_jwt_find(b, "rsa"), r2048), 1);
    assert_int_equal(sigil_bundle_encode(b, &s, &n), 0);
    assert_non_null(strstr(s, "\"kty\":\"RSA\""));
    assert_non_null(strstr(s, "\"e\":\"AQAB\""));
    assert_int_equal(sigil_bundle_decode("example.org", s, n, &b2, &why), 0);
    assert_true(sigil_bundle_equal(b, b2));
    free(s);
    sigil_bundle_free(b2);
    sigil_bundle_free(b);

    reject_doc(doc_of(jwt_jwk(r1024, "weak"), NULL), SIGIL_ERR_UNSUPPORTED, "2048");
    j = jwt_jwk(r2048, "a");
    json_object_set_new(j, "e", json_string("AAEAAQ")); /* leading zero octet */
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "leading zero");
    j = jwt_jwk(r2048, "a");
    json_object_set_new(j, "e", json_string("Ag")); /* e = 2 */
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "odd");
    j = jwt_jwk(r2048, "a");
    json_object_del(j, "n");
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "RFC 7518");
    X509_free(c);
    EVP_PKEY_free(r2048);
    EVP_PKEY_free(r1024);
}

static void
test_key_filtering(void **state)
{
    EVP_PKEY *k = ec_key("P-256"), *k2 = ec_key("P-256");
    X509 *c = make_cert(k, 1), *c2 = make_cert(k2, 2);
    json_t *j, *x5c;

    (void)state;
    /* B-5: unknown kty and missing or unknown (case-sensitive) use are ignored. */
    j = jwt_jwk(k, "okp");
    json_object_set_new(j, "kty", json_string("OKP"));
    accept_doc(doc_of(j, jwt_jwk(k2, "good"), NULL), 0, 1);
    j = jwt_jwk(k, "oct");
    json_object_set_new(j, "kty", json_string("oct"));
    json_object_del(j, "crv");
    accept_doc(doc_of(j, NULL), 0, 0);
    j = jwt_jwk(k, "nouse");
    json_object_del(j, "use");
    accept_doc(doc_of(j, NULL), 0, 0);
    j = jwt_jwk(k, "wit");
    json_object_set_new(j, "use", json_string("wit-svid"));
    accept_doc(doc_of(j, NULL), 0, 0);
    j = jwt_jwk(k, "upper");
    json_object_set_new(j, "use", json_string("JWT-SVID"));
    accept_doc(doc_of(j, NULL), 0, 0);
    /* ...but kty itself is required, and use must be a string. */
    j = jwt_jwk(k, "a");
    json_object_del(j, "kty");
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "B-5");
    j = jwt_jwk(k, "a");
    json_object_set_new(j, "use", json_integer(1));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "B-5");

    /* x509-svid entries with a missing or empty x5c are ignored. */
    j = x509_jwk(c);
    json_object_del(j, "x5c");
    accept_doc(doc_of(j, NULL), 0, 0);
    j = x509_jwk(c);
    json_array_clear(json_object_get(j, "x5c"));
    accept_doc(doc_of(j, NULL), 0, 0);
    j = x509_jwk(c);
    json_object_set_new(j, "x5c", json_string("x"));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "X-10");
    /* H-3: more than one certificate rejects the bundle. */
    j = x509_jwk(c);
    x5c = json_object_get(j, "x5c");
    json_array_append(x5c, json_array_get(x5c, 0));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "H-3");
    /* the CA set is the union: the same certificate twice is one authority. */
    accept_doc(doc_of(x509_jwk(c), x509_jwk(c), x509_jwk(c2), NULL), 2, 0);
    /* The certificate is authoritative: kty or key members that contradict it are refused. */
    j = x509_jwk(c);
    json_object_set_new(j, "kty", json_string("RSA"));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "RFC 7517 §4.7");
    {
        json_t *other = x509_jwk(c2);

        /* Members of another (valid) key: parse fine, match nothing. */
        j = x509_jwk(c);
        json_object_set(j, "x", json_object_get(other, "x"));
        json_object_set(j, "y", json_object_get(other, "y"));
        reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "do not match");
        /* Only y of another key: the point is off the curve. */
        j = x509_jwk(c);
        json_object_set(j, "y", json_object_get(other, "y"));
        reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "not on the curve");
        json_decref(other);
    }
    j = x509_jwk(c); /* key members are optional beside x5c */
    json_object_del(j, "crv");
    json_object_del(j, "x");
    json_object_del(j, "y");
    accept_doc(doc_of(j, NULL), 1, 0);
    /* A certificate with trailing bytes is not one DER certificate. */
    {
        unsigned char *der = NULL, buf[4096];
        int n = i2d_X509(c, &der);
        char *b64;

        assert_true(n > 0 && (size_t)n < sizeof buf);
        memcpy(buf, der, (size_t)n);
        buf[n] = 0;
        b64 = sigil_b64_encode(buf, (size_t)n + 1);
        j = x509_jwk(c);
        json_array_set_new(json_object_get(j, "x5c"), 0, json_string(b64));
        reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "X-10");
        free(b64);
        OPENSSL_free(der);
    }

    /* J-9: kid required and unique; a private part is never accepted. */
    reject_doc(doc_of(jwt_jwk(k, NULL), NULL), SIGIL_ERR_INVALID, "J-9");
    reject_doc(doc_of(jwt_jwk(k, ""), NULL), SIGIL_ERR_INVALID, "J-9");
    j = jwt_jwk(k, "a");
    json_object_set_new(j, "kid", json_integer(5));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "J-9");
    reject_doc(doc_of(jwt_jwk(k, "same"), jwt_jwk(k2, "same"), NULL), SIGIL_ERR_INVALID,
               "duplicate kid");
    reject("{\"keys\":[{\"use\":\"jwt-svid\",\"kty\":\"EC\",\"kid\":\"a\\u0000b\",\"crv\":\"P-"
           "256\"}]}",
           SIGIL_ERR_INVALID, NULL);
    j = jwt_jwk(k, "a");
    json_object_set_new(j, "d", json_string("AAAA"));
    reject_doc(doc_of(j, NULL), SIGIL_ERR_INVALID, "private");
    /* Other members of a JWK (alg, key_ops, x5t...) are allowed (RFC 7517). */
    j = jwt_jwk(k, "a");
    json_object_set_new(j, "alg", json_string("ES256"));
    json_object_set_new(j, "x5t", json_string("whatever"));
    accept_doc(doc_of(j, NULL), 0, 1);

    X509_free(c);
    X509_free(c2);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
}

static void
test_caps(void **state)
{
    size_t big = SIGIL_BUNDLE_JSON_MAX + 1, n;
    char *s = malloc(big + 1), deep[200];
    json_t *doc;
    EVP_PKEY *k = ec_key("P-256");

    (void)state;
    assert_non_null(s);
    /* A valid JSON document, one byte over the cap. */
    memset(s, ' ', big);
    memcpy(s, "{\"keys\":[]}", 11);
    reject_text(s, big, SIGIL_ERR_RANGE, "cap");
    free(s);
    /* 40 levels of nesting in an extra member. */
    n = (size_t)snprintf(deep, sizeof deep, "{\"keys\":[],\"x\":");
    for (int i = 0; i < 40; i++)
        deep[n++] = '[';
    for (int i = 0; i < 40; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    reject(deep, SIGIL_ERR_RANGE, "nested");
    /* Brackets inside strings do not count. */
    accept_doc(json_pack("{s:[],s:s}", "keys", "x", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["), 0,
               0);
    /* More keys than the cap. */
    doc = json_pack("{s:[]}", "keys");
    for (int i = 0; i <= SIGIL_BUNDLE_KEYS_MAX; i++)
        json_array_append_new(json_object_get(doc, "keys"), json_pack("{s:s}", "kty", "OKP"));
    reject_doc(doc, SIGIL_ERR_RANGE, "4096");
    /* An over-long kid. */
    {
        char kid[SIGIL_BUNDLE_KID_MAX + 2];

        memset(kid, 'k', sizeof kid - 1);
        kid[sizeof kid - 1] = '\0';
        reject_doc(doc_of(jwt_jwk(k, kid), NULL), SIGIL_ERR_RANGE, "J-9");
    }
    EVP_PKEY_free(k);
}

static void
test_mutations(void **state)
{
    EVP_PKEY *k1 = ec_key("P-256"), *k2 = ec_key("P-384"), *r = rsa_key(2048);
    EVP_PKEY *bad = ec_key("secp256k1");
    X509 *c1 = make_cert(k1, 1), *c2 = make_cert(k2, 2), *c3 = make_cert(bad, 3);
    struct sigil_bundle *a = NULL, *b = NULL, *c = NULL;
    const char *why;
    char *sa, *sb;
    size_t na, nb;

    (void)state;
    assert_int_equal(sigil_bundle_new("example.org", &a, &why), 0);
    assert_int_equal(sigil_bundle_new("example.org", &b, &why), 0);
    assert_true(sigil_bundle_equal(a, b));

    /* Same contents added in a different order: equal, and the same bytes. */
    assert_int_equal(sigil_bundle_x509_add(a, c1, &why), 0);
    assert_int_equal(sigil_bundle_x509_add(a, c2, &why), 0);
    assert_int_equal(sigil_bundle_jwt_add(a, "one", k1, &why), 0);
    assert_int_equal(sigil_bundle_jwt_add(a, "two", r, &why), 0);
    assert_int_equal(sigil_bundle_jwt_add(b, "two", r, &why), 0);
    assert_int_equal(sigil_bundle_jwt_add(b, "one", k1, &why), 0);
    assert_false(sigil_bundle_equal(a, b));
    assert_int_equal(sigil_bundle_x509_add(b, c2, &why), 0);
    assert_int_equal(sigil_bundle_x509_add(b, c1, &why), 0);
    assert_true(sigil_bundle_equal(a, b));
    assert_int_equal(sigil_bundle_set_sequence(a, 5), 0);
    assert_false(sigil_bundle_equal(a, b));
    assert_int_equal(sigil_bundle_set_sequence(b, 5), 0);
    assert_true(sigil_bundle_equal(a, b));
    assert_int_equal(sigil_bundle_encode(a, &sa, &na), 0);
    assert_int_equal(sigil_bundle_encode(b, &sb, &nb), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(sa, sb, na);
    /* A private key handed in is published as its public part only. */
    assert_null(strstr(sa, "\"d\""));
    /* x509-svid entries carry no kid; jwt-svid entries carry one. */
    assert_non_null(strstr(sa, "{\"use\":\"x509-svid\",\"kty\":\"EC\",\"crv\":"));
    assert_non_null(strstr(sa, "{\"use\":\"jwt-svid\",\"kty\":\"EC\",\"kid\":\"one\",\"crv\":"));
    free(sa);
    free(sb);

    /* Dedupe and removal. */
    assert_int_equal(sigil_bundle_x509_add(a, c1, &why), SIGIL_ERR_EXISTS);
    assert_int_equal(sigil_bundle_jwt_add(a, "one", k2, &why), SIGIL_ERR_EXISTS);
    assert_int_equal(sigil_bundle_x509_count(a), 2);
    assert_int_equal(sigil_bundle_jwt_add(a, "", k2, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_bundle_jwt_add(a, "k1", bad, &why), SIGIL_ERR_UNSUPPORTED);
    assert_int_equal(sigil_bundle_x509_add(a, c3, &why), SIGIL_ERR_UNSUPPORTED);
    assert_int_equal(sigil_bundle_clone(a, &c), 0);
    assert_true(sigil_bundle_equal(a, c));
    assert_int_equal(sigil_bundle_x509_remove(a, c1), 0);
    assert_int_equal(sigil_bundle_x509_remove(a, c1), SIGIL_ERR_NOTFOUND);
    assert_int_equal(sigil_bundle_x509_count(a), 1);
    assert_int_equal(sigil_bundle_jwt_remove(a, "two"), 0);
    assert_int_equal(sigil_bundle_jwt_remove(a, "two"), SIGIL_ERR_NOTFOUND);
    assert_null(sigil_bundle_jwt_find(a, "two"));
    assert_non_null(sigil_bundle_jwt_find(a, "one"));
    assert_false(sigil_bundle_equal(a, c)); /* the clone is independent */
    assert_int_equal(sigil_bundle_x509_count(c), 2);
    assert_int_equal(sigil_bundle_jwt_count(c), 2);

    /* Different trust domains are never equal. */
    sigil_bundle_free(b);
    assert_int_equal(sigil_bundle_new("other.org", &b, &why), 0);
    sigil_bundle_free(a);
    assert_int_equal(sigil_bundle_new("example.org", &a, &why), 0);
    assert_false(sigil_bundle_equal(a, b));
    sigil_bundle_free(a);
    sigil_bundle_free(b);
    sigil_bundle_free(c);

    /* Trust domain names are checked (B-6 binds a bundle to a valid name). */
    assert_int_not_equal(sigil_bundle_new("Example.org", &a, &why), 0);
    assert_null(a);
    assert_int_not_equal(sigil_bundle_new("spiffe://example.org", &a, &why), 0);
    assert_int_not_equal(sigil_bundle_new("", &a, &why), 0);
    assert_int_not_equal(sigil_bundle_decode("a/b", "{\"keys\":[]}", 11, &a, &why), 0);

    X509_free(c1);
    X509_free(c2);
    X509_free(c3);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(r);
    EVP_PKEY_free(bad);
}

static void
map_reject(const char *json, const char *rule)
{
    struct sigil_bundle_set *s = NULL;
    const char *why = NULL;
    int r = sigil_bundle_map_decode(json, strlen(json), &s, &why);

    if (r == 0)
        fail_msg("%.200s: accepted", json);
    assert_null(s);
    assert_non_null(why);
    if (rule != NULL && strstr(why, rule) == NULL)
        fail_msg("%.200s: why \"%s\" does not name %s", json, why, rule);
}

static void
test_bundle_map(void **state)
{
    EVP_PKEY *k = ec_key("P-256");
    X509 *c = make_cert(k, 1);
    struct sigil_bundle *b = NULL;
    struct sigil_bundle_set *s = NULL, *s2 = NULL;
    const struct sigil_bundle *found;
    json_t *map, *tds;
    const char *why;
    char *text, *text2;
    size_t n, n2;
    int64_t hint;

    (void)state;
    map_reject("{}", "B-7");
    map_reject("{\"keys\":[]}", "B-7");
    map_reject("{\"trust_domains\":[]}", "B-7");
    map_reject("[]", "B-7");
    map_reject("{\"trust_domains\":{\"Example.org\":{\"keys\":[]}}}", "ID-3");
    map_reject("{\"trust_domains\":{\"spiffe://example.org\":{\"keys\":[]}}}", NULL);
    map_reject("{\"trust_domains\":{\"\":{\"keys\":[]}}}", NULL);
    map_reject("{\"trust_domains\":{\"a.org\":{\"keys\":[]},\"a.org\":{\"keys\":[]}}}",
               "duplicate");
    map_reject("{\"trust_domains\":{\"a.org\":{}}}", "B-4");
    map_reject("{\"trust_domains\":{\"a.org\":[]}}", "B-1");
    map_reject("{\"trust_domains\":{\"a.org\":{\"keys\":[],\"spiffe_refresh_hint\":\"x\"}}}",
               "B-3");

    /* Empty trust_domains is a valid, empty map. */
    assert_int_equal(sigil_bundle_map_decode("{\"trust_domains\":{}}", 20, &s, &why), 0);
    assert_int_equal(sigil_bundle_set_count(s), 0);
    assert_null(sigil_bundle_set_find(s, "example.org"));
    sigil_bundle_set_free(s);

    /* Two trust domains; refresh hints in a map are dropped (B-7). */
    map = json_pack("{s:{}}", "trust_domains");
    tds = json_object_get(map, "trust_domains");
    json_object_set_new(tds, "z.example",
                        json_pack("{s:[o],s:i,s:i}", "keys", jwt_jwk(k, "kz"), "spiffe_sequence", 3,
                                  "spiffe_refresh_hint", 60));
    json_object_set_new(tds, "a.example", json_pack("{s:[o]}", "keys", x509_jwk(c)));
    text = json_dumps(map, JSON_COMPACT);
    json_decref(map);
    assert_int_equal(sigil_bundle_map_decode(text, strlen(text), &s, &why), 0);
    free(text);
    assert_int_equal(sigil_bundle_set_count(s), 2);
    assert_string_equal(sigil_bundle_trust_domain(sigil_bundle_set_at(s, 0)), "a.example");
    assert_string_equal(sigil_bundle_trust_domain(sigil_bundle_set_at(s, 1)), "z.example");
    found = sigil_bundle_set_find(s, "z.example");
    assert_non_null(found);
    assert_non_null(sigil_bundle_jwt_find(found, "kz"));
    assert_false(sigil_bundle_refresh_hint(found, &hint));
    assert_int_equal(sigil_bundle_x509_count(sigil_bundle_set_find(s, "a.example")), 1);
    assert_null(sigil_bundle_set_find(s, "example"));

    /* Round trip: encode (names in order, no refresh hint) and decode equal. */
    assert_int_equal(sigil_bundle_map_encode(s, &text, &n), 0);
    assert_null(strstr(text, "spiffe_refresh_hint"));
    assert_true(strstr(text, "a.example") < strstr(text, "z.example"));
    assert_int_equal(sigil_bundle_map_decode(text, n, &s2, &why), 0);
    assert_true(sigil_bundle_set_equal(s, s2));
    assert_int_equal(sigil_bundle_map_encode(s2, &text2, &n2), 0);
    assert_int_equal(n, n2);
    assert_memory_equal(text, text2, n);
    free(text);
    free(text2);

    /* The set: replace, remove, find. */
    assert_int_equal(sigil_bundle_new("z.example", &b, &why), 0);
    assert_int_equal(sigil_bundle_set_put(s2, b), 0);
    assert_int_equal(sigil_bundle_set_count(s2), 2);
    assert_int_equal(sigil_bundle_jwt_count(sigil_bundle_set_find(s2, "z.example")), 0);
    assert_false(sigil_bundle_set_equal(s, s2));
    assert_int_equal(sigil_bundle_set_remove(s2, "a.example"), 0);
    assert_int_equal(sigil_bundle_set_remove(s2, "a.example"), SIGIL_ERR_NOTFOUND);
    assert_int_equal(sigil_bundle_set_count(s2), 1);
    assert_int_equal(sigil_bundle_new("m.example", &b, &why), 0);
    assert_int_equal(sigil_bundle_set_put(s2, b), 0);
    assert_string_equal(sigil_bundle_trust_domain(sigil_bundle_set_at(s2, 0)), "m.example");
    assert_null(sigil_bundle_set_at(s2, 2));
    sigil_bundle_set_free(s);
    sigil_bundle_set_free(s2);
    X509_free(c);
    EVP_PKEY_free(k);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_not_json),    cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_keys_member), cmocka_unit_test(test_sequence_and_hint),
        cmocka_unit_test(test_bad_base64),  cmocka_unit_test(test_coordinates),
        cmocka_unit_test(test_rsa_keys),    cmocka_unit_test(test_key_filtering),
        cmocka_unit_test(test_caps),        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_bundle_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
