/* JWT-SVIDs (checklist J-1..J-10): signing ES256 tokens and validating RS/ES/PS tokens against
 * the bundle of the subject's own trust domain. A token is a bearer credential: wipe it
 * (sigil_jwtsvid_token_free) and never log it. */
#ifndef SIGIL_JWTSVID_H
#define SIGIL_JWTSVID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "sigil/bundle.h"
#include "sigil/spiffeid.h"

#define SIGIL_JWTSVID_MAX (16 * 1024) /* bytes of one token we sign or parse */

/* What to sign. */
struct sigil_jwtsvid_params {
    EVP_PKEY *key;          /* EC P-256 private key (ES256) */
    const char *kid;        /* its kid in the bundle: 1..SIGIL_BUNDLE_KID_MAX bytes */
    const char *sub;        /* SPIFFE ID with a path (J-4) */
    const char *const *aud; /* naud >= 1 non-empty audiences (J-5); one is a string */
    size_t naud;
    time_t iat;          /* issued at */
    time_t exp;          /* expiry, after iat (J-6) */
    const json_t *extra; /* optional object of other claims, or NULL; must not hold
                          * sub, aud, exp or iat */
};

/* A parsed token. Fill with sigil_jwtsvid_validate or sigil_jwtsvid_parse_insecure and
 * release with sigil_jwtsvid_clear. */
struct sigil_jwtsvid {
    struct sigil_spiffeid id; /* sub */
    json_t *claims;           /* every claim of the payload; owned, see sigil_jwtsvid_clear */
    int64_t exp;              /* exp, in seconds since the epoch */
    char alg[8];              /* "ES256", ... */
    char kid[SIGIL_BUNDLE_KID_MAX + 1];
};

/* Signs a JWS compact ES256 JWT-SVID with header exactly {"alg":"ES256","kid":..,"typ":"JWT"}
 * and payload sub, aud (a string for one audience, an array for several, as go-jose and
 * SPIRE do), exp, iat, then extra. *token (NUL-terminated) is freed with
 * sigil_jwtsvid_token_free. Returns 0, or SIGIL_ERR_INVALID / SIGIL_ERR_UNSUPPORTED /
 * SIGIL_ERR_CRYPTO / SIGIL_ERR_RANGE / SIGIL_ERR_NOMEM with *why. */
int sigil_jwtsvid_sign(const struct sigil_jwtsvid_params *p, char **token, const char **why);

/* Validates len bytes of token for audience against bundles (J-1..J-10): compact form only,
 * alg checked first, header alg/kid/typ only, kid required, sub a SPIFFE ID with a path, the
 * bundle of sub's trust domain, the key of kid matching alg, the signature, aud contains
 * audience, exp not before now - leeway, nbf and iat not after now + leeway. bundles may be
 * NULL (nothing is trusted). *out is overwritten, not freed: clear it before reuse. On
 * success fills *out (sigil_jwtsvid_clear it). Returns 0 or, with *why naming the rule and *out
 * cleared: SIGIL_ERR_INVALID (malformed, forbidden alg/header/claim), SIGIL_ERR_RANGE (too large),
 * SIGIL_ERR_NOTFOUND (no bundle, unknown kid), SIGIL_ERR_VERIFY (key/alg mismatch, bad
 * signature), SIGIL_ERR_DENIED (audience not in aud), SIGIL_ERR_EXPIRED, SIGIL_ERR_NOMEM. */
int sigil_jwtsvid_validate(const char *token, size_t len, const char *audience,
                           const struct sigil_bundle_set *bundles, time_t now, unsigned leeway,
                           struct sigil_jwtsvid *out, const char **why);

/* INSECURE: parses token WITHOUT checking its signature, trust domain, audience or times,
 * only to read sub/aud/exp for cache decisions about a token we obtained ourselves. Never
 * use the result to authenticate anyone. Same structure checks, *out and errors as
 * sigil_jwtsvid_validate. */
int sigil_jwtsvid_parse_insecure(const char *token, size_t len, struct sigil_jwtsvid *out,
                                 const char **why);

/* True if the aud claim of s holds audience. */
bool sigil_jwtsvid_has_audience(const struct sigil_jwtsvid *s, const char *audience);

/* Releases the claims of s and zeroes it; safe on a cleared or zeroed struct. */
void sigil_jwtsvid_clear(struct sigil_jwtsvid *s);

/* Wipes and frees a token from sigil_jwtsvid_sign; NULL is a no-op. */
void sigil_jwtsvid_token_free(char *token);

#endif
