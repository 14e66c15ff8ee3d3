/* JSON Web Keys (RFC 7517/7518) to and from OpenSSL public keys, for SPIFFE bundles and
 * JWT-SVIDs: EC on P-256/P-384/P-521 and RSA only, exact lengths, public parts only; and
 * the one loader of untrusted JOSE JSON (size cap, depth cap, duplicate keys rejected). */
#ifndef SIGIL_JWK_H
#define SIGIL_JWK_H

#include <stddef.h>

#include <jansson.h>
#include <openssl/evp.h>

#define SIGIL_JWK_RSA_MIN_BITS 2048  /* weaker RSA keys are refused on input */
#define SIGIL_JWK_RSA_MAX_BITS 16384 /* caps the cost of one verification */

/* Builds a new public key (*out, caller EVP_PKEY_free()s) from the key members of the JWK
 * object jwk: kty "EC" with crv, x, y (exact coordinate lengths, point on the curve) or kty
 * "RSA" with n, e. A private member ("d") is refused. Returns 0, SIGIL_ERR_UNSUPPORTED for
 * an unknown kty or curve, or SIGIL_ERR_INVALID / SIGIL_ERR_NOMEM, with *why set. */
int sigil_jwk_to_pkey(const json_t *jwk, EVP_PKEY **out, const char **why);

/* Adds "kty" and "crv", "x", "y" (EC) or "n", "e" (RSA) of key's public part to the
 * object obj, in that order. Returns 0, SIGIL_ERR_UNSUPPORTED for another key type, or
 * SIGIL_ERR_NOMEM. */
int sigil_jwk_from_pkey(const EVP_PKEY *key, json_t *obj);

/* Checks that key is of a kind we accept: EC on P-256/P-384/P-521, or RSA of
 * SIGIL_JWK_RSA_MIN_BITS..SIGIL_JWK_RSA_MAX_BITS. Returns 0 or SIGIL_ERR_UNSUPPORTED + why. */
int sigil_jwk_check_pkey(const EVP_PKEY *key, const char **why);

/* Returns the JWS "crv" name of an accepted EC key ("P-256", "P-384", "P-521"), or NULL
 * for any other key. The text is static. */
const char *sigil_jwk_ec_curve(const EVP_PKEY *key);

/* Loads len bytes of untrusted JSON text (no NUL needed) into *out (caller json_decref()s):
 * at most max_len bytes and max_depth levels of nesting, duplicate object keys and
 * anything after the value rejected. Returns 0, or SIGIL_ERR_RANGE / SIGIL_ERR_INVALID /
 * SIGIL_ERR_NOMEM with *why set. */
int sigil_jwk_json_load(const char *s, size_t len, size_t max_len, unsigned max_depth, json_t **out,
                        const char **why);

#endif
