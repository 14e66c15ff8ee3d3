/* The identity cache: entries sorted by id, their SVIDs, the bundles, and subscribers told
 * about changes once per loop iteration (a zero timer coalesces a sync's many puts into one
 * push to each Workload API stream). */
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "sigil/err.h"
#include "sigil/x509.h"

struct sigil_cache_sub {
    struct sigil_cache_sub *next;
    sigil_cache_notify_fn fn;
    void *ud;
    bool dead;
};

struct sigil_cache {
    uv_timer_t timer;
    char td[SIGIL_TRUST_DOMAIN_MAX + 1];
    struct sigil_cache_entry **entries; /* sorted by id */
    size_t n, cap;
    struct sigil_bundle_set *bundles;
    struct sigil_cache_sub *subs;
    unsigned notifying;
    bool pending;
    sigil_cache_jwt_mint_fn mint;
    void *mint_arg;
};

static void
entry_free(struct sigil_cache_entry *e)
{
    size_t i;

    if (e == NULL)
        return;
    free(e->id);
    free(e->hint);
    for (i = 0; i < e->n_federates_with; i++)
        free(e->federates_with[i]);
    free(e->federates_with);
    sigil_selector_set_free(&e->selectors);
    if (e->chain != NULL)
        sk_X509_pop_free(e->chain, X509_free);
    EVP_PKEY_free(e->key);
    sigil_buf_free(&e->chain_der);
    sigil_buf_freezero(&e->key_der);
    free(e);
}

static void
cache_closed(uv_handle_t *h)
{
    struct sigil_cache *c = h->data;
    size_t i;

    for (i = 0; i < c->n; i++)
        entry_free(c->entries[i]);
    free(c->entries);
    sigil_bundle_set_free(c->bundles);
    while (c->subs != NULL) {
        struct sigil_cache_sub *s = c->subs;

        c->subs = s->next;
        free(s);
    }
    free(c);
}

static void
sweep_subs(struct sigil_cache *c)
{
    struct sigil_cache_sub **pp = &c->subs, *s;

    while ((s = *pp) != NULL) {
        if (s->dead) {
            *pp = s->next;
            free(s);
        } else {
            pp = &s->next;
        }
    }
}

static void
notify_now(uv_timer_t *t)
{
    struct sigil_cache *c = t->data;
    struct sigil_cache_sub *s;

    c->pending = false;
    c->notifying++;
    for (s = c->subs; s != NULL; s = s->next) {
        if (!s->dead)
            s->fn(s->ud);
    }
    c->notifying--;
    if (c->notifying == 0)
        sweep_subs(c);
}

static void
changed(struct sigil_cache *c)
{
    if (!c->pending) {
        c->pending = true;
        uv_timer_start(&c->timer, notify_now, 0, 0);
    }
}

int
sigil_cache_new(uv_loop_t *loop, const char *td, struct sigil_cache **out, const char **why)
{
    struct sigil_cache *c;
    int r;

    *out = NULL;
    if ((r = sigil_trust_domain_check(td, strlen(td), why)) != 0)
        return r;
    if ((c = calloc(1, sizeof *c)) == NULL)
        return SIGIL_ERR_NOMEM;
    if (sigil_bundle_set_new(&c->bundles) != 0) {
        free(c);
        return SIGIL_ERR_NOMEM;
    }
    strcpy(c->td, td); /* length checked above */
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    *out = c;
    return 0;
}

void
sigil_cache_free(struct sigil_cache *c)
{
    if (c == NULL)
        return;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, cache_closed);
}

const char *
sigil_cache_trust_domain(const struct sigil_cache *c)
{
    return c->td;
}

/* Index of id, or where it would go (*found false). */
static size_t
find(const struct sigil_cache *c, const char *id, bool *found)
{
    size_t lo = 0, hi = c->n, mid;
    int k;

    *found = false;
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        k = strcmp(c->entries[mid]->id, id);
        if (k == 0) {
            *found = true;
            return mid;
        }
        if (k < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int
sigil_cache_put_entry(struct sigil_cache *c, const char *id, const struct sigil_spiffeid *spiffe_id,
                      const struct sigil_selector_set *selectors, const char *hint,
                      const char *const *federates_with, size_t n_federates_with, const char **why)
{
    struct sigil_cache_entry *e = NULL, *old;
    size_t i, at, idlen = strlen(id);
    bool found;
    int r = SIGIL_ERR_NOMEM;

    *why = NULL;
    if (idlen == 0 || idlen > SIGIL_CACHE_ENTRY_ID_MAX) {
        *why = "entry id must be 1..256 bytes";
        return SIGIL_ERR_INVALID;
    }
    if (!sigil_spiffeid_has_path(spiffe_id) || !sigil_spiffeid_member_of(spiffe_id, c->td)) {
        *why = "entry SPIFFE ID must have a path in the own trust domain (X-2)";
        return SIGIL_ERR_INVALID;
    }
    if (sigil_selector_set_count(selectors) == 0) {
        *why = "entry needs at least one selector";
        return SIGIL_ERR_INVALID;
    }
    if (hint != NULL && strlen(hint) > SIGIL_CACHE_HINT_MAX) {
        *why = "hint over 1024 bytes (W-6)";
        return SIGIL_ERR_RANGE;
    }
    if (n_federates_with > SIGIL_CACHE_FEDERATES_MAX) {
        *why = "entry federates with too many trust domains";
        return SIGIL_ERR_RANGE;
    }
    for (i = 0; i < n_federates_with; i++) {
        if ((r = sigil_trust_domain_check(federates_with[i], strlen(federates_with[i]), why)) != 0)
            return r;
    }
    if ((e = calloc(1, sizeof *e)) == NULL)
        goto out;
    if ((e->id = strdup(id)) == NULL || (e->hint = strdup(hint != NULL ? hint : "")) == NULL)
        goto out;
    e->spiffe_id = *spiffe_id;
    if (sigil_selector_set_copy(&e->selectors, selectors) != 0)
        goto out;
    if (n_federates_with > 0 &&
        (e->federates_with = calloc(n_federates_with, sizeof *e->federates_with)) == NULL)
        goto out;
    for (i = 0; i < n_federates_with; i++) {
        if ((e->federates_with[i] = strdup(federates_with[i])) == NULL)
            goto out;
        e->n_federates_with++;
    }
    at = find(c, id, &found);
    if (found) {
        old = c->entries[at];
        if (sigil_spiffeid_equal(&old->spiffe_id, &e->spiffe_id)) {
            e->chain = old->chain;
            e->key = old->key;
            e->expiry = old->expiry;
            e->chain_der = old->chain_der;
            e->key_der = old->key_der;
            old->chain = NULL;
            old->key = NULL;
            old->chain_der = (struct sigil_buf){0};
            old->key_der = (struct sigil_buf){0};
        }
        entry_free(old);
        c->entries[at] = e;
    } else {
        if (c->n == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 16;
            struct sigil_cache_entry **ne = realloc(c->entries, ncap * sizeof *ne);

            if (ne == NULL)
                goto out;
            c->entries = ne;
            c->cap = ncap;
        }
        memmove(c->entries + at + 1, c->entries + at, (c->n - at) * sizeof *c->entries);
        c->entries[at] = e;
        c->n++;
    }
    e = NULL;
    changed(c);
    r = 0;
out:
    entry_free(e);
    if (r == SIGIL_ERR_NOMEM && *why == NULL)
        *why = "out of memory";
    return r;
}

int
sigil_cache_remove_entry(struct sigil_cache *c, const char *id)
{
    bool found;
    size_t at = find(c, id, &found);

    if (!found)
        return SIGIL_ERR_NOTFOUND;
    entry_free(c->entries[at]);
    memmove(c->entries + at, c->entries + at + 1, (c->n - at - 1) * sizeof *c->entries);
    c->n--;
    changed(c);
    return 0;
}

int
sigil_cache_set_svid(struct sigil_cache *c, const char *id, STACK_OF(X509) *chain, EVP_PKEY *key,
                     const char **why)
{
    struct sigil_spiffeid leaf_id;
    struct sigil_cache_entry *e;
    STACK_OF(X509) *copy = NULL;
    struct sigil_buf chain_der = {0}, key_der = {0};
    time_t expiry;
    bool found;
    size_t at = find(c, id, &found);
    int r;

    *why = NULL;
    if (!found) {
        *why = "no such entry";
        return SIGIL_ERR_NOTFOUND;
    }
    e = c->entries[at];
    if (chain == NULL || sk_X509_num(chain) < 1 || key == NULL) {
        *why = "an SVID needs a chain and a key";
        return SIGIL_ERR_INVALID;
    }
    if ((r = sigil_x509_cert_spiffeid(sk_X509_value(chain, 0), &leaf_id, why)) != 0)
        return SIGIL_ERR_INVALID;
    if (!sigil_spiffeid_equal(&leaf_id, &e->spiffe_id)) {
        *why = "the leaf's SPIFFE ID is not the entry's";
        return SIGIL_ERR_INVALID;
    }
    if (!sigil_x509_key_matches_cert(key, sk_X509_value(chain, 0))) {
        *why = "the key does not match the leaf";
        return SIGIL_ERR_INVALID;
    }
    if (sigil_x509_cert_not_after(sk_X509_value(chain, 0), &expiry) != 0) {
        *why = "the leaf has no readable notAfter";
        return SIGIL_ERR_INVALID;
    }
    /* Encoded once here, not for every caller on every push. */
    if ((r = sigil_x509_chain_to_der(chain, &chain_der)) != 0 ||
        (r = sigil_x509_key_to_pkcs8_der(key, &key_der)) != 0) {
        sigil_buf_free(&chain_der);
        sigil_buf_freezero(&key_der);
        *why = "cannot encode the SVID";
        return r == SIGIL_ERR_NOMEM ? r : SIGIL_ERR_INVALID;
    }
    if ((copy = X509_chain_up_ref(chain)) == NULL || EVP_PKEY_up_ref(key) != 1) {
        if (copy != NULL)
            sk_X509_pop_free(copy, X509_free);
        sigil_buf_free(&chain_der);
        sigil_buf_freezero(&key_der);
        *why = "out of memory";
        return SIGIL_ERR_NOMEM;
    }
    if (e->chain != NULL)
        sk_X509_pop_free(e->chain, X509_free);
    EVP_PKEY_free(e->key);
    sigil_buf_free(&e->chain_der);
    sigil_buf_freezero(&e->key_der);
    e->chain = copy;
    e->key = key;
    e->expiry = expiry;
    e->chain_der = chain_der;
    e->key_der = key_der;
    changed(c);
    return 0;
}

int
sigil_cache_set_bundle(struct sigil_cache *c, struct sigil_bundle *b)
{
    const struct sigil_bundle *old;
    int r;

    old = sigil_bundle_set_find(c->bundles, sigil_bundle_trust_domain(b));
    if (old != NULL && sigil_bundle_equal(old, b)) {
        sigil_bundle_free(b);
        return 0;
    }
    if ((r = sigil_bundle_set_put(c->bundles, b)) != 0)
        return r;
    changed(c);
    return 0;
}

int
sigil_cache_remove_bundle(struct sigil_cache *c, const char *td)
{
    int r;

    if ((r = sigil_bundle_set_remove(c->bundles, td)) != 0)
        return r;
    changed(c);
    return 0;
}

const struct sigil_bundle_set *
sigil_cache_bundles(const struct sigil_cache *c)
{
    return c->bundles;
}

size_t
sigil_cache_match(const struct sigil_cache *c, const struct sigil_selector_set *workload,
                  const struct sigil_cache_entry **out, size_t cap)
{
    size_t i, j, n = 0;
    bool dup;

    for (i = 0; i < c->n; i++) {
        const struct sigil_cache_entry *e = c->entries[i];

        if (e->chain == NULL || !sigil_selectors_is_subset(&e->selectors, workload))
            continue;
        /* Two entries of one SPIFFE ID would be two svids with one ID (and hint): the first
         * matching one wins, whether or not it fit into out. */
        dup = false;
        for (j = 0; j < i && !dup; j++) {
            const struct sigil_cache_entry *f = c->entries[j];

            dup = f->chain != NULL && sigil_spiffeid_equal(&f->spiffe_id, &e->spiffe_id) &&
                  sigil_selectors_is_subset(&f->selectors, workload);
        }
        if (dup)
            continue;
        if (n < cap)
            out[n] = e;
        n++;
    }
    return n;
}

const struct sigil_cache_entry *
sigil_cache_entry_get(const struct sigil_cache *c, const char *id)
{
    bool found;
    size_t at = find(c, id, &found);

    return found ? c->entries[at] : NULL;
}

size_t
sigil_cache_entry_count(const struct sigil_cache *c)
{
    return c->n;
}

int
sigil_cache_subscribe(struct sigil_cache *c, sigil_cache_notify_fn fn, void *ud,
                      struct sigil_cache_sub **out)
{
    struct sigil_cache_sub *s;

    if ((s = calloc(1, sizeof *s)) == NULL)
        return SIGIL_ERR_NOMEM;
    s->fn = fn;
    s->ud = ud;
    s->next = c->subs;
    c->subs = s;
    *out = s;
    return 0;
}

void
sigil_cache_unsubscribe(struct sigil_cache *c, struct sigil_cache_sub *sub)
{
    if (sub == NULL)
        return;
    sub->dead = true;
    if (c->notifying == 0)
        sweep_subs(c);
}

void
sigil_cache_set_jwt_minter(struct sigil_cache *c, sigil_cache_jwt_mint_fn fn, void *arg)
{
    c->mint = fn;
    c->mint_arg = arg;
}

int
sigil_cache_mint_jwt(struct sigil_cache *c, const struct sigil_spiffeid *id, const char *const *aud,
                     size_t naud, sigil_cache_jwt_done_fn done, void *ud)
{
    if (c->mint == NULL)
        return SIGIL_ERR_UNSUPPORTED;
    return c->mint(c->mint_arg, id, aud, naud, done, ud);
}
