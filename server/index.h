/* The node API's in-memory index of registration entries: every entry by id and by parent ID,
 * kept current from the change feed, and the authorization closure of an agent (the entries it
 * may issue) with the diff between two such sets for SyncEntries. Loop-only: no locks, no
 * queries; the caller feeds it from sigil_store_entries_load_all / sigil_store_entries_since. */
#ifndef SIGIL_SERVER_INDEX_H
#define SIGIL_SERVER_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sigil/selectors.h"
#include "store.h"

/* The index (opaque). */
struct sigil_index;

/* One entry an agent may issue: its id and the revision it had when the set was computed. */
struct sigil_index_auth_item {
    char id[SIGIL_STORE_UUID_LEN + 1];
    int64_t revision;
};

/* An agent's authorized entries, sorted by id (owned; free with sigil_index_authset_free). */
struct sigil_index_authset {
    struct sigil_index_auth_item *items;
    size_t count;
};

/* What changed between two authorized sets: ids to send again and ids to drop (owned; free
 * with sigil_index_diff_free). */
struct sigil_index_diff {
    struct sigil_index_auth_item *upserted; /* new, or with another revision */
    size_t n_upserted;
    struct sigil_index_auth_item *removed; /* gone, or no longer authorized */
    size_t n_removed;
};

/* Makes an empty index for a server whose SPIFFE ID is server_id (copied): entries parented to
 * it are node aliases. Returns 0 and *out (free with sigil_index_free) or SIGIL_ERR_NOMEM. */
int sigil_index_new(const char *server_id, struct sigil_index **out);
/* Frees the index and every entry it holds; NULL is allowed. */
void sigil_index_free(struct sigil_index *ix);
/* Drops every entry (before a full reload); the revision goes back to 0. */
void sigil_index_clear(struct sigil_index *ix);

/* Inserts e, or replaces the entry with its id, taking what e owns (*e is zeroed on success;
 * on error e is untouched). Returns 0, SIGIL_ERR_INVALID (no id, SPIFFE ID or parent ID) or
 * SIGIL_ERR_NOMEM. */
int sigil_index_put(struct sigil_index *ix, struct sigil_store_entry *e);
/* Removes the entry with this id. Returns 0 or SIGIL_ERR_NOTFOUND. */
int sigil_index_remove(struct sigil_index *ix, const char *id);
/* Applies a change feed result: upserts (taking the entries: ch->upserted is emptied) and
 * deletes, then sets the revision to ch->revision. Returns 0 or SIGIL_ERR_NOMEM (the index may
 * then be partly updated: reload it in full). */
int sigil_index_apply(struct sigil_index *ix, struct sigil_store_changes *ch);

/* Returns the entry with this id (owned by the index, valid until it changes), or NULL. */
const struct sigil_store_entry *sigil_index_get(const struct sigil_index *ix, const char *id);
/* Returns the number of entries held. */
size_t sigil_index_count(const struct sigil_index *ix);
/* Returns the revision the index is current at. */
int64_t sigil_index_revision(const struct sigil_index *ix);
/* Records the revision the index is current at (after a full load). */
void sigil_index_set_revision(struct sigil_index *ix, int64_t revision);
/* Returns the server's SPIFFE ID given at creation (owned by the index). */
const char *sigil_index_server_id(const struct sigil_index *ix);

/* Computes the entries agent agent_id with node selectors node_sel may issue at time now
 * (entries whose expires_at has passed are left out): entries parented to agent_id, entries
 * parented to a node alias (an entry parented to the server's ID) whose selectors are a subset
 * of node_sel, and recursively the entries parented to any of those. A cycle of parent IDs
 * ends the walk (each SPIFFE ID is expanded once). Returns 0 and *out (caller frees) or
 * SIGIL_ERR_NOMEM. */
int sigil_index_authorized(const struct sigil_index *ix, const char *agent_id,
                           const struct sigil_selector_set *node_sel, int64_t now,
                           struct sigil_index_authset *out);
/* True if the set holds id (binary search). */
bool sigil_index_authset_has(const struct sigil_index_authset *s, const char *id);
/* Frees what s owns and empties it; NULL is allowed. */
void sigil_index_authset_free(struct sigil_index_authset *s);

/* Compares the set an agent had (old) with the one it has now (cur): *out (caller frees) gets
 * the items of cur that are new or changed revision, and the items of old that are gone.
 * Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_index_authset_diff(const struct sigil_index_authset *old,
                             const struct sigil_index_authset *cur, struct sigil_index_diff *out);
/* Frees what d owns and empties it; NULL is allowed. */
void sigil_index_diff_free(struct sigil_index_diff *d);

#endif
