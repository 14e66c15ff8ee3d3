/* SPIFFE bundles: decode and encode the JWKS form (B-1..B-5, X-10, X-11, J-9), keep each
 * bundle bound to its trust domain (B-6), and the bundle map / set keyed by trust domain
 * (B-7) that validators use to pick the bundle of a peer's own trust domain (J-10, W-11).
 *
 * Decisions (see the checklist, section H):
 * - x5c with more than one certificate rejects the whole bundle, as go-spiffe and gRPC do
 *   (H-3), although X-11 says to use the first: a producer doing that is broken, and guessing
 *   which certificate it meant is worse than refusing.
 * - A jwt-svid key without kid rejects the whole bundle (J-9; go-spiffe and SPIRE, H-2).
 * - A bundle without "keys" is rejected (B-4 MUST; go-spiffe rejects spiffebundle_no_keys).
 * - x509-svid keys: the x5c certificate is authoritative; key members, when present,
 *   must describe the same key (RFC 7517 §4.7).
 * - A known kty (EC, RSA) with parameters we cannot use (curve, size) rejects the bundle:
 *   B-5 only excuses unknown kty/use values. */
#include "sigil/bundle.h"
#include "sigil/encoding.h"
#include "sigil/err.h"
#include "sigil/jwk.h"
#include "sigil/spiffeid.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>

#define BUNDLE_DEPTH_MAX 32 /* JSON nesting; a bundle map needs 6 */

struct x509_auth {
    X509 *cert;
    uint8_t *der;
    size_t len;
};

struct jwt_auth {
    char *kid;
    EVP_PKEY *key;
};

struct sigil_bundle {
    char td[SIGIL_TRUST_DOMAIN_MAX + 1];
    struct x509_auth *x509; /* sorted by DER */
    size_t nx509, capx509;
    struct jwt_auth *jwt; /* sorted by kid */
    size_t njwt, capjwt;
    bool has_seq, has_hint;
    uint64_t seq;
    int64_t hint;
};

struct sigil_bundle_set {
    struct sigil_bundle **b; /* sorted by trust domain name */
    size_t n, cap;
};

enum mode {
    MODE_SPIFFE, /* a SPIFFE bundle */
    MODE_JWKS,   /* a plain JWKS of JWT authorities */
    MODE_MAP,    /* a SPIFFE bundle inside a bundle map: refresh hint dropped */
};

/* Grows *arr (of elements of size sz) so that one more fits. */
static int
grow(void **arr, size_t *cap, size_t n, size_t sz)
{
    size_t ncap;
    void *p;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : 8;
    if (ncap > SIZE_MAX / sz)
        return SIGIL_ERR_NOMEM;
    if ((p = realloc(*arr, ncap * sz)) == NULL)
        return SIGIL_ERR_NOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

static int
cmp_der(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    if (c != 0)
        return c;
    return alen < blen ? -1 : alen > blen;
}

/* Binary search: returns the index of der, or where it would go with *found false. */
static size_t
x509_find(const struct sigil_bundle *b, const uint8_t *der, size_t len, bool *found)
{
    size_t lo = 0, hi = b->nx509;

    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_der(b->x509[mid].der, b->x509[mid].len, der, len);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static size_t
jwt_find(const struct sigil_bundle *b, const char *kid, bool *found)
{
    size_t lo = 0, hi = b->njwt;

    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(b->jwt[mid].kid, kid);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Inserts cert with its DER (both taken over on success). SIGIL_ERR_EXISTS if present. */
static int
x509_insert(struct sigil_bundle *b, X509 *cert, uint8_t *der, size_t len)
{
    bool found;
    size_t i = x509_find(b, der, len, &found);
    int r;

    if (found)
        return SIGIL_ERR_EXISTS;
    if ((r = grow((void **)&b->x509, &b->capx509, b->nx509, sizeof *b->x509)) != 0)
        return r;
    memmove(&b->x509[i + 1], &b->x509[i], (b->nx509 - i) * sizeof *b->x509);
    b->x509[i] = (struct x509_auth){cert, der, len};
    b->nx509++;
    return 0;
}

/* Inserts kid (copied) with key (taken over on success). SIGIL_ERR_EXISTS if present. */
static int
jwt_insert(struct sigil_bundle *b, const char *kid, EVP_PKEY *key)
{
    bool found;
    size_t i = jwt_find(b, kid, &found);
    char *k;
    int r;

    if (found)
        return SIGIL_ERR_EXISTS;
    if ((r = grow((void **)&b->jwt, &b->capjwt, b->njwt, sizeof *b->jwt)) != 0)
        return r;
    if ((k = strdup(kid)) == NULL)
        return SIGIL_ERR_NOMEM;
    memmove(&b->jwt[i + 1], &b->jwt[i], (b->njwt - i) * sizeof *b->jwt);
    b->jwt[i] = (struct jwt_auth){k, key};
    b->njwt++;
    return 0;
}

int
sigil_bundle_new(const char *td, struct sigil_bundle **out, const char **why)
{
    const char *dummy;
    struct sigil_bundle *b;
    size_t len;
    int r;

    if (why == NULL)
        why = &dummy;
    *out = NULL;
    len = strlen(td);
    if (len > SIGIL_TRUST_DOMAIN_MAX) {
        *why = "ID-7: trust domain longer than 255 bytes";
        return SIGIL_ERR_RANGE;
    }
    if ((r = sigil_trust_domain_check(td, len, why)) != 0)
        return r;
    if ((b = calloc(1, sizeof *b)) == NULL) {
        *why = "out of memory";
        return SIGIL_ERR_NOMEM;
    }
    memcpy(b->td, td, len + 1);
    *out = b;
    return 0;
}

void
sigil_bundle_free(struct sigil_bundle *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->nx509; i++) {
        X509_free(b->x509[i].cert);
        free(b->x509[i].der);
    }
    for (size_t i = 0; i < b->njwt; i++) {
        free(b->jwt[i].kid);
        EVP_PKEY_free(b->jwt[i].key);
    }
    free(b->x509);
    free(b->jwt);
    free(b);
}

int
sigil_bundle_clone(const struct sigil_bundle *b, struct sigil_bundle **out)
{
    struct sigil_bundle *c;
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    if ((c = calloc(1, sizeof *c)) == NULL)
        return SIGIL_ERR_NOMEM;
    memcpy(c->td, b->td, sizeof c->td);
    c->has_seq = b->has_seq;
    c->seq = b->seq;
    c->has_hint = b->has_hint;
    c->hint = b->hint;
    if (b->nx509 > 0 && (c->x509 = calloc(b->nx509, sizeof *c->x509)) == NULL)
        goto out;
    c->capx509 = b->nx509;
    for (; c->nx509 < b->nx509; c->nx509++) {
        const struct x509_auth *s = &b->x509[c->nx509];
        struct x509_auth *d = &c->x509[c->nx509];

        if ((d->der = malloc(s->len)) == NULL)
            goto out;
        memcpy(d->der, s->der, s->len);
        d->len = s->len;
        if (X509_up_ref(s->cert) != 1) {
            free(d->der);
            goto out;
        }
        d->cert = s->cert;
    }
    if (b->njwt > 0 && (c->jwt = calloc(b->njwt, sizeof *c->jwt)) == NULL)
        goto out;
    c->capjwt = b->njwt;
    for (; c->njwt < b->njwt; c->njwt++) {
        const struct jwt_auth *s = &b->jwt[c->njwt];
        struct jwt_auth *d = &c->jwt[c->njwt];

        if ((d->kid = strdup(s->kid)) == NULL)
            goto out;
        if (EVP_PKEY_up_ref(s->key) != 1) {
            free(d->kid);
            goto out;
        }
        d->key = s->key;
    }
    *out = c;
    c = NULL;
    r = 0;
out:
    sigil_bundle_free(c);
    return r;
}

const char *
sigil_bundle_trust_domain(const struct sigil_bundle *b)
{
    return b->td;
}

/* Compares a JSON string with s byte for byte (an embedded NUL never matches). */
static bool
str_is(const json_t *v, const char *s)
{
    size_t n = strlen(s);

    return json_is_string(v) && json_string_length(v) == n &&
           memcmp(json_string_value(v), s, n) == 0;
}

/* True if the JWK carries key members of its own (beside x5c). */
static bool
has_key_members(const json_t *k)
{
    static const char *const names[] = {"crv", "x", "y", "n", "e"};

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (json_object_get(k, names[i]) != NULL)
            return true;
    return false;
}

/* An x509-svid JWK: one DER CA certificate in x5c. */
static int
decode_x509_key(struct sigil_bundle *b, const json_t *k, const char **why)
{
    const json_t *x5c = json_object_get(k, "x5c"), *el, *kty = json_object_get(k, "kty");
    uint8_t *der = NULL;
    const unsigned char *p;
    size_t len = 0;
    X509 *cert = NULL;
    EVP_PKEY *pk, *jk = NULL;
    int r = SIGIL_ERR_INVALID;

    if (x5c == NULL)
        return 0; /* ignore an entry without x5c */
    if (!json_is_array(x5c)) {
        *why = "X-10: x5c must be an array";
        goto out;
    }
    if (json_array_size(x5c) == 0)
        return 0; /* ignore an entry with an empty x5c */
    if (json_array_size(x5c) > 1) {
        *why = "X-10, H-3: x5c holds more than one certificate (bundle rejected, as go-spiffe "
               "does)";
        goto out;
    }
    el = json_array_get(x5c, 0);
    if (!json_is_string(el)) {
        *why = "X-10: x5c entry must be a string";
        goto out;
    }
    if (json_string_length(el) > SIGIL_BUNDLE_CERT_MAX / 3 * 4 + 4) {
        *why = "X-10: x5c certificate over 64 KiB";
        r = SIGIL_ERR_RANGE;
        goto out;
    }
    if ((r = sigil_b64_decode(json_string_value(el), json_string_length(el), &der, &len)) != 0) {
        *why = r == SIGIL_ERR_NOMEM ? "out of memory"
                                    : "X-10: x5c certificate is not padded standard base64";
        goto out;
    }
    r = SIGIL_ERR_INVALID;
    p = der;
    if (len == 0 || len > SIGIL_BUNDLE_CERT_MAX || (cert = d2i_X509(NULL, &p, (long)len)) == NULL ||
        p != der + len) {
        *why = "X-10: x5c entry is not one DER X.509 certificate";
        goto out;
    }
    if ((pk = X509_get0_pubkey(cert)) == NULL) {
        *why = "X-10: x5c certificate has an unreadable public key";
        goto out;
    }
    if ((r = sigil_jwk_check_pkey(pk, why)) != 0)
        goto out;
    r = SIGIL_ERR_INVALID;
    if (EVP_PKEY_is_a(pk, "EC") ? !str_is(kty, "EC") : !str_is(kty, "RSA")) {
        *why = "RFC 7517 §4.7: kty does not match the key of the x5c certificate";
        goto out;
    }
    if (has_key_members(k)) {
        if ((r = sigil_jwk_to_pkey(k, &jk, why)) != 0)
            goto out;
        r = SIGIL_ERR_INVALID;
        if (EVP_PKEY_eq(jk, pk) != 1) {
            *why = "RFC 7517 §4.7: key members do not match the x5c certificate";
            goto out;
        }
    }
    r = x509_insert(b, cert, der, len);
    if (r == 0) {
        cert = NULL;
        der = NULL;
    } else if (r == SIGIL_ERR_EXISTS) {
        r = 0; /* the CA set is the union of the entries */
    } else {
        *why = "out of memory";
    }
out:
    ERR_clear_error();
    EVP_PKEY_free(jk);
    X509_free(cert);
    free(der);
    return r;
}

/* A jwt-svid JWK: kid required (J-9, H-2) and unique. */
static int
decode_jwt_key(struct sigil_bundle *b, const json_t *k, const char **why)
{
    const json_t *kid = json_object_get(k, "kid");
    EVP_PKEY *key = NULL;
    int r;

    if (!json_is_string(kid) || json_string_length(kid) == 0) {
        *why = "J-9, H-2: jwt-svid key has no kid";
        return SIGIL_ERR_INVALID;
    }
    if (json_string_length(kid) > SIGIL_BUNDLE_KID_MAX) {
        *why = "J-9: kid longer than 1024 bytes";
        return SIGIL_ERR_RANGE;
    }
    if (strlen(json_string_value(kid)) != json_string_length(kid)) {
        *why = "J-9: kid contains a NUL byte";
        return SIGIL_ERR_INVALID;
    }
    if ((r = sigil_jwk_to_pkey(k, &key, why)) != 0)
        return r;
    if ((r = jwt_insert(b, json_string_value(kid), key)) != 0) {
        EVP_PKEY_free(key);
        if (r == SIGIL_ERR_EXISTS) {
            *why = "J-9: duplicate kid in bundle";
            return SIGIL_ERR_INVALID;
        }
        *why = "out of memory";
    }
    return r;
}

static int
decode_key(struct sigil_bundle *b, const json_t *k, enum mode mode, const char **why)
{
    const json_t *kty, *use;

    if (!json_is_object(k)) {
        *why = "B-5: each key must be a JSON object";
        return SIGIL_ERR_INVALID;
    }
    kty = json_object_get(k, "kty");
    use = json_object_get(k, "use");
    if (!json_is_string(kty)) {
        *why = "B-5: key has no kty string";
        return SIGIL_ERR_INVALID;
    }
    if (use != NULL && !json_is_string(use)) {
        *why = "B-5: use must be a string";
        return SIGIL_ERR_INVALID;
    }
    if (!str_is(kty, "EC") && !str_is(kty, "RSA"))
        return 0; /* B-5: ignore an unknown kty */
    if (use == NULL)
        /* B-5: ignore a key without use; a plain JWKS holds JWT keys only (go-spiffe). */
        return mode == MODE_JWKS ? decode_jwt_key(b, k, why) : 0;
    if (str_is(use, "jwt-svid"))
        return decode_jwt_key(b, k, why);
    if (str_is(use, "x509-svid") && mode != MODE_JWKS)
        return decode_x509_key(b, k, why);
    return 0; /* B-5 (case-sensitive): ignore an unknown use; W-9 for a plain JWKS */
}

/* Reads an optional non-negative integer member; *present says whether it was there. */
static int
get_count(const json_t *doc, const char *name, bool *present, json_int_t *v)
{
    const json_t *j = json_object_get(doc, name);

    *present = j != NULL;
    if (j == NULL)
        return 0;
    if (!json_is_integer(j) || json_integer_value(j) < 0)
        return SIGIL_ERR_INVALID;
    *v = json_integer_value(j);
    return 0;
}

static int
decode_doc(const char *td, const json_t *doc, enum mode mode, struct sigil_bundle **out,
           const char **why)
{
    struct sigil_bundle *b = NULL;
    const json_t *keys;
    json_int_t v = 0;
    bool present;
    int r;

    *out = NULL;
    if ((r = sigil_bundle_new(td, &b, why)) != 0)
        goto out;
    r = SIGIL_ERR_INVALID;
    if (!json_is_object(doc)) {
        *why = "B-1: a bundle must be a JSON object";
        goto out;
    }
    if (get_count(doc, "spiffe_sequence", &present, &v) != 0) {
        *why = "B-2: spiffe_sequence must be an integer >= 0";
        goto out;
    }
    b->has_seq = present;
    b->seq = (uint64_t)v;
    if (get_count(doc, "spiffe_refresh_hint", &present, &v) != 0) {
        *why = "B-3: spiffe_refresh_hint must be an integer number of seconds >= 0";
        goto out;
    }
    b->has_hint = present && mode != MODE_MAP;
    b->hint = b->has_hint ? v : 0;
    keys = json_object_get(doc, "keys");
    if (keys == NULL) {
        *why = "B-4: keys is required";
        goto out;
    }
    if (!json_is_array(keys)) {
        *why = "B-4: keys must be an array";
        goto out;
    }
    if (json_array_size(keys) > SIGIL_BUNDLE_KEYS_MAX) {
        *why = "B-4: more than 4096 keys";
        r = SIGIL_ERR_RANGE;
        goto out;
    }
    for (size_t i = 0; i < json_array_size(keys); i++)
        if ((r = decode_key(b, json_array_get(keys, i), mode, why)) != 0)
            goto out;
    *out = b;
    b = NULL;
    r = 0;
out:
    sigil_bundle_free(b);
    return r;
}

static int
decode_text(const char *td, const char *json, size_t len, enum mode mode, struct sigil_bundle **out,
            const char **why)
{
    const char *dummy;
    json_t *doc = NULL;
    int r;

    if (why == NULL)
        why = &dummy;
    *out = NULL;
    if ((r = sigil_jwk_json_load(json, len, SIGIL_BUNDLE_JSON_MAX, BUNDLE_DEPTH_MAX, &doc, why)) !=
        0)
        return r;
    r = decode_doc(td, doc, mode, out, why);
    json_decref(doc);
    return r;
}

int
sigil_bundle_decode(const char *td, const char *json, size_t len, struct sigil_bundle **out,
                    const char **why)
{
    return decode_text(td, json, len, MODE_SPIFFE, out, why);
}

int
sigil_bundle_decode_jwks(const char *td, const char *json, size_t len, struct sigil_bundle **out,
                         const char **why)
{
    return decode_text(td, json, len, MODE_JWKS, out, why);
}

/* Appends to keys one JWK: "use", "kty", ["kid"], the key members, ["x5c"]. */
static int
append_jwk(json_t *keys, const char *use, const char *kid, const EVP_PKEY *key,
           const struct x509_auth *ca)
{
    json_t *k = NULL, *members = NULL, *x5c;
    const char *name;
    json_t *v;
    char *b64 = NULL;
    int r = SIGIL_ERR_NOMEM;

    if ((k = json_object()) == NULL || (members = json_object()) == NULL)
        goto out;
    if ((r = sigil_jwk_from_pkey(key, members)) != 0)
        goto out;
    r = SIGIL_ERR_NOMEM;
    if (json_object_set_new(k, "use", json_string(use)) != 0 ||
        json_object_set(k, "kty", json_object_get(members, "kty")) != 0 ||
        (kid != NULL && json_object_set_new(k, "kid", json_string(kid)) != 0))
        goto out;
    json_object_foreach(members, name, v)
    {
        if (strcmp(name, "kty") != 0 && json_object_set(k, name, v) != 0)
            goto out;
    }
    if (ca != NULL) {
        if ((b64 = sigil_b64_encode(ca->der, ca->len)) == NULL || (x5c = json_array()) == NULL ||
            json_object_set_new(k, "x5c", x5c) != 0 ||
            json_array_append_new(x5c, json_string(b64)) != 0)
            goto out;
    }
    if (json_array_append(keys, k) != 0)
        goto out;
    r = 0;
out:
    free(b64);
    json_decref(members);
    json_decref(k);
    return r;
}

/* Builds the bundle JSON; with jwks only the JWT keys and nothing but "keys". */
static int
to_json(const struct sigil_bundle *b, bool jwks, bool hint, json_t **out)
{
    json_t *doc = NULL, *keys = NULL;
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    if ((doc = json_object()) == NULL || (keys = json_array()) == NULL ||
        json_object_set(doc, "keys", keys) != 0)
        goto out;
    for (size_t i = 0; !jwks && i < b->nx509; i++)
        if ((r = append_jwk(keys, "x509-svid", NULL, X509_get0_pubkey(b->x509[i].cert),
                            &b->x509[i])) != 0)
            goto out;
    for (size_t i = 0; i < b->njwt; i++)
        if ((r = append_jwk(keys, "jwt-svid", b->jwt[i].kid, b->jwt[i].key, NULL)) != 0)
            goto out;
    r = SIGIL_ERR_NOMEM;
    if (!jwks && b->has_seq &&
        json_object_set_new(doc, "spiffe_sequence", json_integer((json_int_t)b->seq)) != 0)
        goto out;
    if (!jwks && hint && b->has_hint &&
        json_object_set_new(doc, "spiffe_refresh_hint", json_integer(b->hint)) != 0)
        goto out;
    *out = doc;
    doc = NULL;
    r = 0;
out:
    json_decref(keys);
    json_decref(doc);
    return r;
}

int
sigil_bundle_to_json(const struct sigil_bundle *b, json_t **out)
{
    return to_json(b, false, true, out);
}

static int
dump(json_t *doc, char **out, size_t *outlen)
{
    char *s = json_dumps(doc, JSON_COMPACT);

    json_decref(doc);
    if (s == NULL)
        return SIGIL_ERR_NOMEM;
    *out = s;
    *outlen = strlen(s);
    return 0;
}

int
sigil_bundle_encode(const struct sigil_bundle *b, char **out, size_t *outlen)
{
    json_t *doc;
    int r;

    *out = NULL;
    *outlen = 0;
    if ((r = to_json(b, false, true, &doc)) != 0)
        return r;
    return dump(doc, out, outlen);
}

int
sigil_bundle_encode_jwks(const struct sigil_bundle *b, char **out, size_t *outlen)
{
    json_t *doc;
    int r;

    *out = NULL;
    *outlen = 0;
    if ((r = to_json(b, true, false, &doc)) != 0)
        return r;
    return dump(doc, out, outlen);
}

int
sigil_bundle_x509_der(const struct sigil_bundle *b, struct sigil_buf *out)
{
    int r;

    for (size_t i = 0; i < b->nx509; i++)
        if ((r = sigil_buf_append(out, b->x509[i].der, b->x509[i].len)) != 0)
            return r;
    return 0;
}

size_t
sigil_bundle_x509_count(const struct sigil_bundle *b)
{
    return b->nx509;
}

X509 *
sigil_bundle_x509_get(const struct sigil_bundle *b, size_t i)
{
    return i < b->nx509 ? b->x509[i].cert : NULL;
}

/* DER of cert into a new buffer (caller frees). */
static int
cert_der(X509 *cert, uint8_t **der, size_t *len)
{
    unsigned char *p = NULL;
    int n = i2d_X509(cert, &p);

    if (n <= 0) {
        ERR_clear_error();
        return SIGIL_ERR_INVALID;
    }
    *der = p; /* from OPENSSL_malloc: the caller OPENSSL_free()s it */
    *len = (size_t)n;
    return 0;
}

int
sigil_bundle_x509_add(struct sigil_bundle *b, X509 *cert, const char **why)
{
    const char *dummy;
    uint8_t *der = NULL, *copy = NULL;
    size_t len = 0;
    int r;

    if (why == NULL)
        why = &dummy;
    if ((r = cert_der(cert, &der, &len)) != 0) {
        *why = "X-10: certificate cannot be DER-encoded";
        return r;
    }
    if ((r = sigil_jwk_check_pkey(X509_get0_pubkey(cert), why)) != 0)
        goto out;
    r = SIGIL_ERR_NOMEM;
    if ((copy = malloc(len)) == NULL)
        goto out;
    memcpy(copy, der, len);
    if (X509_up_ref(cert) != 1)
        goto out;
    if ((r = x509_insert(b, cert, copy, len)) != 0) {
        X509_free(cert);
        goto out;
    }
    copy = NULL;
out:
    OPENSSL_free(der);
    free(copy);
    ERR_clear_error();
    return r;
}

int
sigil_bundle_x509_remove(struct sigil_bundle *b, X509 *cert)
{
    uint8_t *der;
    size_t len, i;
    bool found;

    if (cert_der(cert, &der, &len) != 0)
        return SIGIL_ERR_NOTFOUND;
    i = x509_find(b, der, len, &found);
    OPENSSL_free(der);
    if (!found)
        return SIGIL_ERR_NOTFOUND;
    X509_free(b->x509[i].cert);
    free(b->x509[i].der);
    memmove(&b->x509[i], &b->x509[i + 1], (b->nx509 - i - 1) * sizeof *b->x509);
    b->nx509--;
    return 0;
}

size_t
sigil_bundle_jwt_count(const struct sigil_bundle *b)
{
    return b->njwt;
}

const char *
sigil_bundle_jwt_kid(const struct sigil_bundle *b, size_t i)
{
    return i < b->njwt ? b->jwt[i].kid : NULL;
}

EVP_PKEY *
sigil_bundle_jwt_key(const struct sigil_bundle *b, size_t i)
{
    return i < b->njwt ? b->jwt[i].key : NULL;
}

EVP_PKEY *
sigil_bundle_jwt_find(const struct sigil_bundle *b, const char *kid)
{
    bool found;
    size_t i = jwt_find(b, kid, &found);

    return found ? b->jwt[i].key : NULL;
}

/* A copy of the public part of key only, so that a bundle never holds a private key. */
static int
public_copy(EVP_PKEY *key, EVP_PKEY **out)
{
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    if (EVP_PKEY_todata(key, EVP_PKEY_PUBLIC_KEY, &params) != 1 ||
        (ctx = EVP_PKEY_CTX_new_from_name(NULL, EVP_PKEY_get0_type_name(key), NULL)) == NULL ||
        EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, out, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    r = 0;
out:
    ERR_clear_error();
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return r;
}

int
sigil_bundle_jwt_add(struct sigil_bundle *b, const char *kid, EVP_PKEY *key, const char **why)
{
    const char *dummy;
    EVP_PKEY *pub = NULL;
    size_t len = strlen(kid);
    int r;

    if (why == NULL)
        why = &dummy;
    if (len == 0 || len > SIGIL_BUNDLE_KID_MAX) {
        *why = "J-9: kid must be 1 to 1024 bytes";
        return SIGIL_ERR_INVALID;
    }
    if ((r = sigil_jwk_check_pkey(key, why)) != 0)
        return r;
    if ((r = public_copy(key, &pub)) != 0) {
        *why = "could not copy the public key";
        return r;
    }
    if ((r = jwt_insert(b, kid, pub)) != 0) {
        EVP_PKEY_free(pub);
        *why = r == SIGIL_ERR_EXISTS ? "J-9: kid already in the bundle" : "out of memory";
    }
    return r;
}

int
sigil_bundle_jwt_remove(struct sigil_bundle *b, const char *kid)
{
    bool found;
    size_t i = jwt_find(b, kid, &found);

    if (!found)
        return SIGIL_ERR_NOTFOUND;
    free(b->jwt[i].kid);
    EVP_PKEY_free(b->jwt[i].key);
    memmove(&b->jwt[i], &b->jwt[i + 1], (b->njwt - i - 1) * sizeof *b->jwt);
    b->njwt--;
    return 0;
}

int
sigil_bundle_set_sequence(struct sigil_bundle *b, uint64_t seq)
{
    if (seq > INT64_MAX)
        return SIGIL_ERR_RANGE;
    b->has_seq = true;
    b->seq = seq;
    return 0;
}

void
sigil_bundle_clear_sequence(struct sigil_bundle *b)
{
    b->has_seq = false;
    b->seq = 0;
}

bool
sigil_bundle_sequence(const struct sigil_bundle *b, uint64_t *seq)
{
    if (b->has_seq)
        *seq = b->seq;
    return b->has_seq;
}

int
sigil_bundle_set_refresh_hint(struct sigil_bundle *b, int64_t seconds)
{
    if (seconds < 0)
        return SIGIL_ERR_RANGE;
    b->has_hint = true;
    b->hint = seconds;
    return 0;
}

void
sigil_bundle_clear_refresh_hint(struct sigil_bundle *b)
{
    b->has_hint = false;
    b->hint = 0;
}

bool
sigil_bundle_refresh_hint(const struct sigil_bundle *b, int64_t *seconds)
{
    if (b->has_hint)
        *seconds = b->hint;
    return b->has_hint;
}

bool
sigil_bundle_equal(const struct sigil_bundle *a, const struct sigil_bundle *b)
{
    if (strcmp(a->td, b->td) != 0 || a->has_seq != b->has_seq || a->seq != b->seq ||
        a->has_hint != b->has_hint || a->hint != b->hint || a->nx509 != b->nx509 ||
        a->njwt != b->njwt)
        return false;
    /* Both sides are sorted, so equal sets line up index by index. */
    for (size_t i = 0; i < a->nx509; i++)
        if (cmp_der(a->x509[i].der, a->x509[i].len, b->x509[i].der, b->x509[i].len) != 0)
            return false;
    for (size_t i = 0; i < a->njwt; i++)
        if (strcmp(a->jwt[i].kid, b->jwt[i].kid) != 0 ||
            EVP_PKEY_eq(a->jwt[i].key, b->jwt[i].key) != 1) {
            ERR_clear_error();
            return false;
        }
    return true;
}

int
sigil_bundle_set_new(struct sigil_bundle_set **out)
{
    *out = calloc(1, sizeof **out);
    return *out == NULL ? SIGIL_ERR_NOMEM : 0;
}

void
sigil_bundle_set_free(struct sigil_bundle_set *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        sigil_bundle_free(s->b[i]);
    free(s->b);
    free(s);
}

static size_t
set_find(const struct sigil_bundle_set *s, const char *td, bool *found)
{
    size_t lo = 0, hi = s->n;

    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->b[mid]->td, td);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int
sigil_bundle_set_put(struct sigil_bundle_set *s, struct sigil_bundle *b)
{
    bool found;
    size_t i = set_find(s, b->td, &found);

    if (found) {
        sigil_bundle_free(s->b[i]);
        s->b[i] = b;
        return 0;
    }
    if (grow((void **)&s->b, &s->cap, s->n, sizeof *s->b) != 0) {
        sigil_bundle_free(b);
        return SIGIL_ERR_NOMEM;
    }
    memmove(&s->b[i + 1], &s->b[i], (s->n - i) * sizeof *s->b);
    s->b[i] = b;
    s->n++;
    return 0;
}

const struct sigil_bundle *
sigil_bundle_set_find(const struct sigil_bundle_set *s, const char *td)
{
    bool found;
    size_t i = set_find(s, td, &found);

    return found ? s->b[i] : NULL;
}

int
sigil_bundle_set_remove(struct sigil_bundle_set *s, const char *td)
{
    bool found;
    size_t i = set_find(s, td, &found);

    if (!found)
        return SIGIL_ERR_NOTFOUND;
    sigil_bundle_free(s->b[i]);
    memmove(&s->b[i], &s->b[i + 1], (s->n - i - 1) * sizeof *s->b);
    s->n--;
    return 0;
}

size_t
sigil_bundle_set_count(const struct sigil_bundle_set *s)
{
    return s->n;
}

const struct sigil_bundle *
sigil_bundle_set_at(const struct sigil_bundle_set *s, size_t i)
{
    return i < s->n ? s->b[i] : NULL;
}

bool
sigil_bundle_set_equal(const struct sigil_bundle_set *a, const struct sigil_bundle_set *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!sigil_bundle_equal(a->b[i], b->b[i]))
            return false;
    return true;
}

int
sigil_bundle_map_decode(const char *json, size_t len, struct sigil_bundle_set **out,
                        const char **why)
{
    const char *dummy, *name;
    struct sigil_bundle_set *s = NULL;
    struct sigil_bundle *b;
    json_t *doc = NULL, *tds, *v;
    int r;

    if (why == NULL)
        why = &dummy;
    *out = NULL;
    if ((r = sigil_jwk_json_load(json, len, SIGIL_BUNDLE_JSON_MAX, BUNDLE_DEPTH_MAX, &doc, why)) !=
        0)
        return r;
    r = SIGIL_ERR_INVALID;
    if (!json_is_object(doc)) {
        *why = "B-7: a bundle map must be a JSON object";
        goto out;
    }
    tds = json_object_get(doc, "trust_domains");
    if (tds == NULL) {
        *why = "B-7: trust_domains is required";
        goto out;
    }
    if (!json_is_object(tds)) {
        *why = "B-7: trust_domains must be an object";
        goto out;
    }
    if (json_object_size(tds) > SIGIL_BUNDLE_KEYS_MAX) {
        *why = "B-7: more than 4096 trust domains";
        r = SIGIL_ERR_RANGE;
        goto out;
    }
    if ((r = sigil_bundle_set_new(&s)) != 0) {
        *why = "out of memory";
        goto out;
    }
    /* Duplicate trust domain keys never get here: the loader rejects duplicates (B-7). */
    json_object_foreach(tds, name, v)
    {
        if ((r = decode_doc(name, v, MODE_MAP, &b, why)) != 0)
            goto out;
        if ((r = sigil_bundle_set_put(s, b)) != 0) {
            *why = "out of memory";
            goto out;
        }
    }
    *out = s;
    s = NULL;
    r = 0;
out:
    sigil_bundle_set_free(s);
    json_decref(doc);
    return r;
}

int
sigil_bundle_map_encode(const struct sigil_bundle_set *s, char **out, size_t *outlen)
{
    json_t *doc = NULL, *tds = NULL, *b;
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    *outlen = 0;
    if ((doc = json_object()) == NULL || (tds = json_object()) == NULL ||
        json_object_set(doc, "trust_domains", tds) != 0)
        goto out;
    for (size_t i = 0; i < s->n; i++) {
        if ((r = to_json(s->b[i], false, false, &b)) != 0)
            goto out;
        r = SIGIL_ERR_NOMEM;
        if (json_object_set_new(tds, s->b[i]->td, b) != 0)
            goto out;
    }
    json_decref(tds);
    return dump(doc, out, outlen);
out:
    json_decref(tds);
    json_decref(doc);
    return r;
}
