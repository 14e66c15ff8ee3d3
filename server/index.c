/* The node API's in-memory index of registration entries: two chained hash tables over the
 * same nodes (by entry id, by parent ID), the authorization walk from an agent's ID and its
 * node aliases down the parent links, and the diff of two authorized sets. */
#include "index.h"

#include <stdlib.h>
#include <string.h>

#include "sigil/err.h"

struct node {
    struct sigil_store_entry e;
    struct node *id_next;  /* chain of the id table */
    struct node *par_next; /* chain of the parent table */
};

struct sigil_index {
    char *server_id;
    struct node **by_id;
    struct node **by_parent;
    size_t nbuckets; /* a power of two */
    size_t count;
    int64_t revision;
};

#define INITIAL_BUCKETS 64

/* FNV-1a: the keys are UUIDs and SPIFFE IDs we validated, not attacker-chosen en masse. */
static size_t
hash_str(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (; *s != '\0'; s++) {
        h ^= (uint8_t)*s;
        h *= UINT64_C(1099511628211);
    }
    return (size_t)h;
}

static void
strv_free(struct sigil_store_strv *v)
{
    for (size_t i = 0; i < v->count; i++)
        free(v->items[i]);
    free(v->items);
    memset(v, 0, sizeof *v);
}

/* As sigil_store_entry_free (kept here so the index needs nothing of the datastore's code). */
static void
entry_free(struct sigil_store_entry *e)
{
    free(e->spiffe_id);
    free(e->parent_id);
    sigil_selector_set_free(&e->selectors);
    strv_free(&e->dns_names);
    strv_free(&e->federates_with);
    free(e->hint);
    free(e->team);
    memset(e, 0, sizeof *e);
}

int
sigil_index_new(const char *server_id, struct sigil_index **out)
{
    struct sigil_index *ix = calloc(1, sizeof *ix);

    *out = NULL;
    if (ix == NULL || (ix->server_id = strdup(server_id)) == NULL ||
        (ix->by_id = calloc(INITIAL_BUCKETS, sizeof *ix->by_id)) == NULL ||
        (ix->by_parent = calloc(INITIAL_BUCKETS, sizeof *ix->by_parent)) == NULL) {
        sigil_index_free(ix);
        return SIGIL_ERR_NOMEM;
    }
    ix->nbuckets = INITIAL_BUCKETS;
    *out = ix;
    return 0;
}

void
sigil_index_clear(struct sigil_index *ix)
{
    for (size_t b = 0; b < ix->nbuckets; b++) {
        struct node *n = ix->by_id[b];

        while (n != NULL) {
            struct node *next = n->id_next;

            entry_free(&n->e);
            free(n);
            n = next;
        }
        ix->by_id[b] = NULL;
        ix->by_parent[b] = NULL;
    }
    ix->count = 0;
    ix->revision = 0;
}

void
sigil_index_free(struct sigil_index *ix)
{
    if (ix == NULL)
        return;
    if (ix->by_id != NULL && ix->by_parent != NULL)
        sigil_index_clear(ix);
    free(ix->by_id);
    free(ix->by_parent);
    free(ix->server_id);
    free(ix);
}

static struct node *
find(const struct sigil_index *ix, const char *id)
{
    for (struct node *n = ix->by_id[hash_str(id) & (ix->nbuckets - 1)]; n != NULL; n = n->id_next)
        if (strcmp(n->e.id, id) == 0)
            return n;
    return NULL;
}

static void
unlink_parent(struct sigil_index *ix, struct node *n)
{
    struct node **pp = &ix->by_parent[hash_str(n->e.parent_id) & (ix->nbuckets - 1)];

    for (; *pp != NULL; pp = &(*pp)->par_next)
        if (*pp == n) {
            *pp = n->par_next;
            return;
        }
}

static void
link_parent(struct sigil_index *ix, struct node *n)
{
    size_t b = hash_str(n->e.parent_id) & (ix->nbuckets - 1);

    n->par_next = ix->by_parent[b];
    ix->by_parent[b] = n;
}

/* Doubles the tables once there are more entries than buckets. */
static int
grow(struct sigil_index *ix)
{
    size_t nb = ix->nbuckets * 2;
    struct node **by_id, **by_parent;

    if ((by_id = calloc(nb, sizeof *by_id)) == NULL)
        return SIGIL_ERR_NOMEM;
    if ((by_parent = calloc(nb, sizeof *by_parent)) == NULL) {
        free(by_id);
        return SIGIL_ERR_NOMEM;
    }
    for (size_t b = 0; b < ix->nbuckets; b++) {
        struct node *n = ix->by_id[b];

        while (n != NULL) {
            struct node *next = n->id_next;
            size_t i = hash_str(n->e.id) & (nb - 1), p = hash_str(n->e.parent_id) & (nb - 1);

            n->id_next = by_id[i];
            by_id[i] = n;
            n->par_next = by_parent[p];
            by_parent[p] = n;
            n = next;
        }
    }
    free(ix->by_id);
    free(ix->by_parent);
    ix->by_id = by_id;
    ix->by_parent = by_parent;
    ix->nbuckets = nb;
    return 0;
}

int
sigil_index_put(struct sigil_index *ix, struct sigil_store_entry *e)
{
    struct node *n;
    size_t b;

    if (e->id[0] == '\0' || e->spiffe_id == NULL || e->parent_id == NULL)
        return SIGIL_ERR_INVALID;
    if ((n = find(ix, e->id)) != NULL) {
        /* replace in place: the id chain stays, the parent chain may move */
        unlink_parent(ix, n);
        entry_free(&n->e);
        n->e = *e;
        memset(e, 0, sizeof *e);
        link_parent(ix, n);
        return 0;
    }
    if (ix->count >= ix->nbuckets && grow(ix) != 0)
        return SIGIL_ERR_NOMEM;
    if ((n = calloc(1, sizeof *n)) == NULL)
        return SIGIL_ERR_NOMEM;
    n->e = *e;
    memset(e, 0, sizeof *e);
    b = hash_str(n->e.id) & (ix->nbuckets - 1);
    n->id_next = ix->by_id[b];
    ix->by_id[b] = n;
    link_parent(ix, n);
    ix->count++;
    return 0;
}

int
sigil_index_remove(struct sigil_index *ix, const char *id)
{
    struct node **pp = &ix->by_id[hash_str(id) & (ix->nbuckets - 1)];

    for (; *pp != NULL; pp = &(*pp)->id_next) {
        struct node *n = *pp;

        if (strcmp(n->e.id, id) != 0)
            continue;
        *pp = n->id_next;
        unlink_parent(ix, n);
        entry_free(&n->e);
        free(n);
        ix->count--;
        return 0;
    }
    return SIGIL_ERR_NOTFOUND;
}

int
sigil_index_apply(struct sigil_index *ix, struct sigil_store_changes *ch)
{
    int r = 0;

    for (size_t i = 0; i < ch->deleted.count; i++)
        (void)sigil_index_remove(ix, ch->deleted.items[i]); /* unknown: deleted before load */
    for (size_t i = 0; i < ch->upserted.count; i++) {
        struct sigil_store_entry *e = &ch->upserted.items[i];

        if (r == 0 && (r = sigil_index_put(ix, e)) == SIGIL_ERR_INVALID)
            r = 0; /* the store never gives one; skip rather than stall the feed */
        entry_free(e);
    }
    if (r == 0 && ch->revision > ix->revision)
        ix->revision = ch->revision;
    free(ch->upserted.items);
    free(ch->upserted.next_page_token);
    strv_free(&ch->deleted);
    memset(ch, 0, sizeof *ch);
    return r;
}

const struct sigil_store_entry *
sigil_index_get(const struct sigil_index *ix, const char *id)
{
    struct node *n = find(ix, id);

    return n != NULL ? &n->e : NULL;
}

size_t
sigil_index_count(const struct sigil_index *ix)
{
    return ix->count;
}

int64_t
sigil_index_revision(const struct sigil_index *ix)
{
    return ix->revision;
}

void
sigil_index_set_revision(struct sigil_index *ix, int64_t revision)
{
    ix->revision = revision;
}

const char *
sigil_index_server_id(const struct sigil_index *ix)
{
    return ix->server_id;
}

/* The SPIFFE IDs the walk has expanded or queued: an open-addressing set of borrowed strings
 * (valid for the walk: the index does not change during it). */
struct idset {
    const char **slots;
    size_t cap; /* a power of two */
    size_t count;
};

/* Adds s; returns 1 if added, 0 if present, SIGIL_ERR_NOMEM. */
static int
idset_add(struct idset *s, const char *id)
{
    size_t i;

    if ((s->count + 1) * 2 > s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        const char **ns = calloc(nc, sizeof *ns);

        if (ns == NULL)
            return SIGIL_ERR_NOMEM;
        for (size_t j = 0; j < s->cap; j++) {
            if (s->slots[j] == NULL)
                continue;
            for (i = hash_str(s->slots[j]) & (nc - 1); ns[i] != NULL; i = (i + 1) & (nc - 1))
                ;
            ns[i] = s->slots[j];
        }
        free(s->slots);
        s->slots = ns;
        s->cap = nc;
    }
    for (i = hash_str(id) & (s->cap - 1); s->slots[i] != NULL; i = (i + 1) & (s->cap - 1))
        if (strcmp(s->slots[i], id) == 0)
            return 0;
    s->slots[i] = id;
    s->count++;
    return 1;
}

static int
item_cmp(const void *a, const void *b)
{
    return strcmp(((const struct sigil_index_auth_item *)a)->id,
                  ((const struct sigil_index_auth_item *)b)->id);
}

static bool
live(const struct sigil_store_entry *e, int64_t now)
{
    return e->expires_at == 0 || e->expires_at > now;
}

/* Queues id for expansion unless it was queued before (what breaks cycles). */
static int
enqueue(struct idset *seen, const char ***queue, size_t *qlen, size_t *qcap, const char *id)
{
    int r;

    if ((r = idset_add(seen, id)) <= 0)
        return r;
    if (*qlen == *qcap) {
        size_t nc = *qcap ? *qcap * 2 : 32;
        const char **nq = realloc(*queue, nc * sizeof *nq);

        if (nq == NULL)
            return SIGIL_ERR_NOMEM;
        *queue = nq;
        *qcap = nc;
    }
    (*queue)[(*qlen)++] = id;
    return 0;
}

int
sigil_index_authorized(const struct sigil_index *ix, const char *agent_id,
                       const struct sigil_selector_set *node_sel, int64_t now,
                       struct sigil_index_authset *out)
{
    struct idset seen = {0};
    const char **queue = NULL;
    size_t qlen = 0, qcap = 0, cap = 0;
    int r;

    memset(out, 0, sizeof *out);
    if ((r = enqueue(&seen, &queue, &qlen, &qcap, agent_id)) != 0)
        goto out;
    /* node aliases: entries parented to the server whose selectors the node has */
    for (struct node *n = ix->by_parent[hash_str(ix->server_id) & (ix->nbuckets - 1)]; n != NULL;
         n = n->par_next) {
        if (strcmp(n->e.parent_id, ix->server_id) != 0 || !live(&n->e, now) || node_sel == NULL ||
            !sigil_selectors_is_subset(&n->e.selectors, node_sel))
            continue;
        if ((r = enqueue(&seen, &queue, &qlen, &qcap, n->e.spiffe_id)) != 0)
            goto out;
    }
    /* breadth first down the parent links; each ID is expanded once, so each entry (which has
     * one parent ID) is added once */
    for (size_t q = 0; q < qlen; q++) {
        const char *parent = queue[q];

        for (struct node *n = ix->by_parent[hash_str(parent) & (ix->nbuckets - 1)]; n != NULL;
             n = n->par_next) {
            if (strcmp(n->e.parent_id, parent) != 0 || !live(&n->e, now))
                continue;
            if (out->count == cap) {
                size_t nc = cap ? cap * 2 : 16;
                struct sigil_index_auth_item *ni = realloc(out->items, nc * sizeof *ni);

                if (ni == NULL) {
                    r = SIGIL_ERR_NOMEM;
                    goto out;
                }
                out->items = ni;
                cap = nc;
            }
            memcpy(out->items[out->count].id, n->e.id, sizeof n->e.id);
            out->items[out->count].revision = n->e.revision;
            out->count++;
            if ((r = enqueue(&seen, &queue, &qlen, &qcap, n->e.spiffe_id)) != 0)
                goto out;
        }
    }
    if (out->count > 1)
        qsort(out->items, out->count, sizeof *out->items, item_cmp);
    r = 0;
out:
    if (r != 0)
        sigil_index_authset_free(out);
    free(seen.slots);
    free(queue);
    return r;
}

static const struct sigil_index_auth_item *
authset_find(const struct sigil_index_authset *s, const char *id)
{
    size_t lo = 0, hi = s->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->items[mid].id, id);

        if (c == 0)
            return &s->items[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

bool
sigil_index_authset_has(const struct sigil_index_authset *s, const char *id)
{
    return authset_find(s, id) != NULL;
}

void
sigil_index_authset_free(struct sigil_index_authset *s)
{
    if (s == NULL)
        return;
    free(s->items);
    memset(s, 0, sizeof *s);
}

int
sigil_index_authset_diff(const struct sigil_index_authset *old,
                         const struct sigil_index_authset *cur, struct sigil_index_diff *out)
{
    size_t i = 0, j = 0;

    memset(out, 0, sizeof *out);
    if ((cur->count > 0 && (out->upserted = malloc(cur->count * sizeof *out->upserted)) == NULL) ||
        (old->count > 0 && (out->removed = malloc(old->count * sizeof *out->removed)) == NULL)) {
        sigil_index_diff_free(out);
        return SIGIL_ERR_NOMEM;
    }
    /* one merge walk over the two sorted sets */
    while (i < old->count || j < cur->count) {
        int c = i == old->count   ? 1
                : j == cur->count ? -1
                                  : strcmp(old->items[i].id, cur->items[j].id);

        if (c < 0) {
            out->removed[out->n_removed++] = old->items[i++];
        } else if (c > 0) {
            out->upserted[out->n_upserted++] = cur->items[j++];
        } else {
            if (old->items[i].revision != cur->items[j].revision)
                out->upserted[out->n_upserted++] = cur->items[j];
            i++;
            j++;
        }
    }
    return 0;
}

void
sigil_index_diff_free(struct sigil_index_diff *d)
{
    if (d == NULL)
        return;
    free(d->upserted);
    free(d->removed);
    memset(d, 0, sizeof *d);
}
