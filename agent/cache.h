/* The agent's identity cache: the registration entries this agent may issue (SPIFFE ID,
 * selectors, hint, federated trust domains) with their current X.509-SVIDs, the own and
 * federated bundles, and a JWT-SVID minting hook. Whoever syncs with the server feeds it; the
 * Workload API reads it and subscribes to changes. Everything runs on one libuv loop. */
#ifndef SIGIL_AGENT_CACHE_H
#define SIGIL_AGENT_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <uv.h>

#include "sigil/buf.h"
#include "sigil/bundle.h"
#include "sigil/selectors.h"
#include "sigil/spiffeid.h"

#define SIGIL_CACHE_ENTRY_ID_MAX 256 /* bytes of an entry id */
#define SIGIL_CACHE_HINT_MAX 1024    /* bytes of a hint (W-6) */
#define SIGIL_CACHE_FEDERATES_MAX 64 /* trust domains one entry federates with */

/* One entry as the cache holds it. Read-only for callers; valid until the cache next changes
 * (so: within the current loop callback). */
struct sigil_cache_entry {
    char *id;
    struct sigil_spiffeid spiffe_id;
    struct sigil_selector_set selectors;
    char *hint;            /* "" if none */
    char **federates_with; /* bare trust domain names */
    size_t n_federates_with;
    STACK_OF(X509) *chain;      /* the current X.509-SVID, leaf first; NULL until set */
    EVP_PKEY *key;              /* its private key; NULL until set */
    time_t expiry;              /* the leaf's notAfter */
    struct sigil_buf chain_der; /* chain as concatenated DER, encoded once per SVID */
    struct sigil_buf key_der;   /* key as PKCS#8 DER (secret: wiped when replaced) */
};

struct sigil_cache;
struct sigil_cache_sub;

/* Creates a cache for own trust domain td (bare name) on loop; *out is freed with
 * sigil_cache_free. Returns 0, SIGIL_ERR_INVALID (with *why) or SIGIL_ERR_NOMEM. */
int sigil_cache_new(uv_loop_t *loop, const char *td, struct sigil_cache **out, const char **why);
/* Frees the cache once its notification timer is closed (keep running the loop). Every
 * subscription must be gone before. */
void sigil_cache_free(struct sigil_cache *c);
/* Returns the own trust domain (owned by the cache). */
const char *sigil_cache_trust_domain(const struct sigil_cache *c);

/* Adds or replaces entry `id`: its SPIFFE ID (with a path, in the own trust domain),
 * selectors (non-empty), hint (may be NULL) and the trust domains it federates with. A
 * replaced entry keeps its SVID only if the SPIFFE ID is unchanged. Returns 0, or
 * SIGIL_ERR_INVALID / SIGIL_ERR_RANGE with *why, or SIGIL_ERR_NOMEM. */
int sigil_cache_put_entry(struct sigil_cache *c, const char *id,
                          const struct sigil_spiffeid *spiffe_id,
                          const struct sigil_selector_set *selectors, const char *hint,
                          const char *const *federates_with, size_t n_federates_with,
                          const char **why);
/* Removes entry id. Returns 0 or SIGIL_ERR_NOTFOUND. */
int sigil_cache_remove_entry(struct sigil_cache *c, const char *id);
/* Sets the X.509-SVID of entry id: chain (leaf first) and key are referenced, not consumed
 * (the cache takes its own references). The leaf must carry the entry's SPIFFE ID and match
 * key. Returns 0, SIGIL_ERR_NOTFOUND, SIGIL_ERR_INVALID (with *why) or SIGIL_ERR_NOMEM. */
int sigil_cache_set_svid(struct sigil_cache *c, const char *id, STACK_OF(X509) *chain,
                         EVP_PKEY *key, const char **why);
/* Puts bundle b (own or federated, by its trust domain), taking ownership (freed on failure
 * too). An equal bundle changes nothing and notifies nobody. Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_cache_set_bundle(struct sigil_cache *c, struct sigil_bundle *b);
/* Removes the bundle of td. Returns 0 or SIGIL_ERR_NOTFOUND. */
int sigil_cache_remove_bundle(struct sigil_cache *c, const char *td);
/* Every bundle the cache holds (owned by the cache). */
const struct sigil_bundle_set *sigil_cache_bundles(const struct sigil_cache *c);

/* Finds the entries whose selectors are a subset of workload (sigil_selectors_is_subset) and
 * that hold an SVID, in entry id order; at most one per SPIFFE ID (the first). Writes up to
 * cap pointers (owned by the cache) into out and returns how many matched in all. */
size_t sigil_cache_match(const struct sigil_cache *c, const struct sigil_selector_set *workload,
                         const struct sigil_cache_entry **out, size_t cap);
/* Returns the entry with this id (owned by the cache), or NULL. */
const struct sigil_cache_entry *sigil_cache_entry_get(const struct sigil_cache *c, const char *id);
/* Returns the number of entries. */
size_t sigil_cache_entry_count(const struct sigil_cache *c);

/* Subscribers are called on the loop, once per batch of changes (puts, removals, SVIDs,
 * bundles made in one loop iteration). fn may unsubscribe itself or others. */
typedef void (*sigil_cache_notify_fn)(void *ud);
/* Subscribes fn(ud); *out is the handle. Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_cache_subscribe(struct sigil_cache *c, sigil_cache_notify_fn fn, void *ud,
                          struct sigil_cache_sub **out);
/* Ends a subscription; fn is not called after this returns. */
void sigil_cache_unsubscribe(struct sigil_cache *c, struct sigil_cache_sub *sub);

/* The end of a JWT-SVID minting: err 0 and a token (valid during the call; the callee wipes
 * it), or an error with why (a static text, kept by the caller). */
typedef void (*sigil_cache_jwt_done_fn)(void *ud, int err, const char *token, const char *why);
/* Mints a JWT-SVID for id and audiences; calls done exactly once (possibly later, on the
 * loop) unless it returns an error. */
typedef int (*sigil_cache_jwt_mint_fn)(void *arg, const struct sigil_spiffeid *id,
                                       const char *const *aud, size_t naud,
                                       sigil_cache_jwt_done_fn done, void *ud);
/* Sets the minting hook (NULL: JWT-SVIDs are unavailable). */
void sigil_cache_set_jwt_minter(struct sigil_cache *c, sigil_cache_jwt_mint_fn fn, void *arg);
/* Mints through the hook. Returns 0 (done will run) or SIGIL_ERR_UNSUPPORTED (no hook) or the
 * hook's error (done will not run). */
int sigil_cache_mint_jwt(struct sigil_cache *c, const struct sigil_spiffeid *id,
                         const char *const *aud, size_t naud, sigil_cache_jwt_done_fn done,
                         void *ud);

#endif
