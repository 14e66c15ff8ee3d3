/* SPIFFE bundles (checklist B-1..B-7, X-10, X-11, J-9): the X.509 and JWT authorities of one
 * trust domain, their JWKS encoding, and sets of bundles keyed by trust domain (the SPIFFE
 * bundle map) for validators that must use the bundle of a peer's own trust domain. */
#ifndef SIGIL_BUNDLE_H
#define SIGIL_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sigil/buf.h"

#define SIGIL_BUNDLE_JSON_MAX (1024 * 1024) /* bytes of bundle or bundle-map JSON we parse */
#define SIGIL_BUNDLE_KEYS_MAX 4096          /* JWKs per bundle, bundles per map */
#define SIGIL_BUNDLE_KID_MAX 1024           /* bytes of one kid */
#define SIGIL_BUNDLE_CERT_MAX (64 * 1024)   /* bytes of one DER CA certificate */

/* A bundle: bound to one trust domain (B-6) it does not name itself; holds X.509 authorities
 * (DER-unique), JWT authorities (kid-unique) and optional sequence and refresh hint.
 * Authorities are kept sorted (DER bytes, kid) so that equal contents encode equally. */
struct sigil_bundle;

/* A set of bundles keyed by trust domain name (at most one each). */
struct sigil_bundle_set;

/* Creates an empty bundle for trust domain td (bare name, checked); *out is freed with
 * sigil_bundle_free. Returns 0, SIGIL_ERR_NOMEM or SIGIL_ERR_INVALID with *why. */
int sigil_bundle_new(const char *td, struct sigil_bundle **out, const char **why);
/* Frees b and everything it holds; NULL is a no-op. */
void sigil_bundle_free(struct sigil_bundle *b);
/* Makes an independent deep copy of b into *out (caller frees). Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_bundle_clone(const struct sigil_bundle *b, struct sigil_bundle **out);
/* Returns the bare trust domain name b is bound to (owned by b). */
const char *sigil_bundle_trust_domain(const struct sigil_bundle *b);

/* Decodes len bytes of SPIFFE bundle JSON (a JWKS with spiffe_* members) for trust domain
 * td into *out (caller frees). Keys of unknown kty or missing/unknown use are ignored (B-5),
 * x509-svid keys without x5c too; x5c with more than one certificate, a jwt-svid key
 * without kid (J-9, H-2) or a duplicate kid reject the whole bundle. Returns 0, or
 * SIGIL_ERR_INVALID / SIGIL_ERR_RANGE / SIGIL_ERR_UNSUPPORTED / SIGIL_ERR_NOMEM with *why. */
int sigil_bundle_decode(const char *td, const char *json, size_t len, struct sigil_bundle **out,
                        const char **why);
/* Decodes a plain JWKS of JWT authorities (FetchJWTBundles, go-spiffe jwtbundle): a key
 * without "use" is a JWT key, every JWT key needs a kid; otherwise as sigil_bundle_decode. */
int sigil_bundle_decode_jwks(const char *td, const char *json, size_t len,
                             struct sigil_bundle **out, const char **why);
/* Builds the SPIFFE bundle JSON of b as a new object (*out, caller json_decref()s). Returns 0,
 * SIGIL_ERR_NOMEM, or SIGIL_ERR_UNSUPPORTED for a key that has no JWK form. */
int sigil_bundle_to_json(const struct sigil_bundle *b, json_t **out);
/* Encodes b as compact SPIFFE bundle JSON: x509-svid keys (no kid, one x5c) then jwt-svid
 * keys, spiffe_sequence, spiffe_refresh_hint; the same contents always give the same
 * bytes. *out is NUL-terminated (caller free()s), *outlen its strlen. Returns 0 or an error. */
int sigil_bundle_encode(const struct sigil_bundle *b, char **out, size_t *outlen);
/* Encodes only the JWT authorities of b as a compact JWKS {"keys":[...]} (W-9: keys of
 * other uses are left out). Same contract as sigil_bundle_encode. */
int sigil_bundle_encode_jwks(const struct sigil_bundle *b, char **out, size_t *outlen);
/* Appends the DER of every X.509 authority of b, concatenated, to out (FetchX509Bundles,
 * W-7). Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_bundle_x509_der(const struct sigil_bundle *b, struct sigil_buf *out);

/* Returns the number of X.509 authorities. */
size_t sigil_bundle_x509_count(const struct sigil_bundle *b);
/* Returns the i-th X.509 authority (i < count), owned by b; do not free. */
X509 *sigil_bundle_x509_get(const struct sigil_bundle *b, size_t i);
/* Adds cert as an X.509 authority (b takes its own reference). Returns 0, SIGIL_ERR_EXISTS if
 * a certificate with the same DER is present, SIGIL_ERR_UNSUPPORTED for a key with no JWK
 * form (why set), SIGIL_ERR_INVALID or SIGIL_ERR_NOMEM. */
int sigil_bundle_x509_add(struct sigil_bundle *b, X509 *cert, const char **why);
/* Removes the X.509 authority with the same DER as cert. Returns 0 or SIGIL_ERR_NOTFOUND. */
int sigil_bundle_x509_remove(struct sigil_bundle *b, X509 *cert);

/* Returns the number of JWT authorities. */
size_t sigil_bundle_jwt_count(const struct sigil_bundle *b);
/* Returns the kid of the i-th JWT authority (i < count), owned by b. */
const char *sigil_bundle_jwt_kid(const struct sigil_bundle *b, size_t i);
/* Returns the public key of the i-th JWT authority (i < count), owned by b; do not free. */
EVP_PKEY *sigil_bundle_jwt_key(const struct sigil_bundle *b, size_t i);
/* Returns the public key of the JWT authority with this kid (owned by b), or NULL. */
EVP_PKEY *sigil_bundle_jwt_find(const struct sigil_bundle *b, const char *kid);
/* Adds key under kid (non-empty, at most SIGIL_BUNDLE_KID_MAX bytes; b takes its own
 * reference and publishes only the public part). Returns 0, SIGIL_ERR_EXISTS for a kid
 * already present, SIGIL_ERR_UNSUPPORTED / SIGIL_ERR_INVALID with *why, or SIGIL_ERR_NOMEM. */
int sigil_bundle_jwt_add(struct sigil_bundle *b, const char *kid, EVP_PKEY *key, const char **why);
/* Removes the JWT authority with this kid. Returns 0 or SIGIL_ERR_NOTFOUND. */
int sigil_bundle_jwt_remove(struct sigil_bundle *b, const char *kid);

/* Sets spiffe_sequence (B-2). Returns 0, or SIGIL_ERR_RANGE above INT64_MAX (JSON integers
 * we read and write are signed 64-bit). */
int sigil_bundle_set_sequence(struct sigil_bundle *b, uint64_t seq);
/* Removes spiffe_sequence. */
void sigil_bundle_clear_sequence(struct sigil_bundle *b);
/* Returns true and sets *seq if b has a spiffe_sequence. */
bool sigil_bundle_sequence(const struct sigil_bundle *b, uint64_t *seq);
/* Sets spiffe_refresh_hint in seconds (B-3). Returns 0 or SIGIL_ERR_RANGE if negative. */
int sigil_bundle_set_refresh_hint(struct sigil_bundle *b, int64_t seconds);
/* Removes spiffe_refresh_hint. */
void sigil_bundle_clear_refresh_hint(struct sigil_bundle *b);
/* Returns true and sets *seconds if b has a spiffe_refresh_hint. */
bool sigil_bundle_refresh_hint(const struct sigil_bundle *b, int64_t *seconds);

/* True if a and b have the same trust domain, authorities (DER; kid and public key),
 * sequence and refresh hint: "did the bundle change". */
bool sigil_bundle_equal(const struct sigil_bundle *a, const struct sigil_bundle *b);

/* Creates an empty set (*out, freed with sigil_bundle_set_free). Returns 0 or NOMEM. */
int sigil_bundle_set_new(struct sigil_bundle_set **out);
/* Frees s and every bundle in it; NULL is a no-op. */
void sigil_bundle_set_free(struct sigil_bundle_set *s);
/* Puts b into s under its trust domain, taking ownership (also on failure: b is freed then);
 * a bundle of the same trust domain already there is replaced and freed. Returns 0 or NOMEM. */
int sigil_bundle_set_put(struct sigil_bundle_set *s, struct sigil_bundle *b);
/* Returns the bundle of trust domain td (bare name), owned by s, or NULL (J-10, W-11). */
const struct sigil_bundle *sigil_bundle_set_find(const struct sigil_bundle_set *s, const char *td);
/* Removes and frees the bundle of td. Returns 0 or SIGIL_ERR_NOTFOUND. */
int sigil_bundle_set_remove(struct sigil_bundle_set *s, const char *td);
/* Returns the number of bundles in s. */
size_t sigil_bundle_set_count(const struct sigil_bundle_set *s);
/* Returns the i-th bundle (i < count, ordered by trust domain name), owned by s. */
const struct sigil_bundle *sigil_bundle_set_at(const struct sigil_bundle_set *s, size_t i);
/* True if both sets hold equal bundles for the same trust domains. */
bool sigil_bundle_set_equal(const struct sigil_bundle_set *a, const struct sigil_bundle_set *b);

/* Decodes a SPIFFE bundle map {"trust_domains": {"td": <bundle>, ...}} (B-7) into a new set
 * (*out, caller frees): trust_domains required (may be empty), names checked, duplicates
 * rejected; per-bundle refresh hints are type-checked but dropped (B-7: consumers must not
 * use them). Returns 0 or an error with *why. */
int sigil_bundle_map_decode(const char *json, size_t len, struct sigil_bundle_set **out,
                            const char **why);
/* Encodes s as a compact bundle map, trust domains in name order, refresh hints omitted
 * (B-7). *out NUL-terminated (caller free()s), *outlen its strlen. Returns 0 or an error. */
int sigil_bundle_map_encode(const struct sigil_bundle_set *s, char **out, size_t *outlen);

#endif
