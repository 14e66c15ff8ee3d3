/* The upstream server's datastore: registration entries, agents, join tokens, bundles,
 * federation relationships and the audit log in PostgreSQL (migrations/0001_init.sql). Every
 * function runs on a connection inside a sigil_db work function (never on the loop); every
 * write is ONE transaction that also writes its audit row. Policy is the caller's job. */
#ifndef SIGIL_STORE_H
#define SIGIL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sigil/db.h"
#include "sigil/selectors.h"

/* Hard caps on what one call takes. */
#define SIGIL_STORE_PAGE_MAX 1000       /* rows per page */
#define SIGIL_STORE_PAGE_DEFAULT 100    /* rows per page when 0 is asked for */
#define SIGIL_STORE_BATCH_MAX 10000     /* entries per batch create or delete */
#define SIGIL_STORE_DNS_MAX 64          /* DNS names of one entry */
#define SIGIL_STORE_DNS_NAME_MAX 253    /* bytes of one DNS name */
#define SIGIL_STORE_FEDERATES_MAX 64    /* trust domains one entry federates with */
#define SIGIL_STORE_HINT_MAX 1024       /* bytes of a hint */
#define SIGIL_STORE_ACTOR_MAX 2048      /* bytes of an actor */
#define SIGIL_STORE_TOKEN_TTL_MAX 86400 /* seconds a join token may live */
#define SIGIL_STORE_DEFAULT_X509_TTL 3600
#define SIGIL_STORE_DEFAULT_JWT_TTL 300
#define SIGIL_STORE_UUID_LEN 36                    /* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */
#define SIGIL_STORE_TOKEN_LEN 43                   /* base64url of 32 random bytes */
#define SIGIL_STORE_PAGE_TOKEN_MAX 3000            /* bytes of a page token */
#define SIGIL_STORE_TIME_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */

/* Why a call failed, for people and for the admin API's error body. */
struct sigil_store_err {
    char code[48];     /* stable: "entry.exists", "entry.not_found", "token.invalid", ... */
    char message[400]; /* one line: what is wrong and how to fix it */
};

/* A list of strings the owner frees (DNS names in order, trust domains sorted). */
struct sigil_store_strv {
    char **items;
    size_t count;
};

/* Bits of struct sigil_store_entry.fields: which fields a patch gives. */
#define SIGIL_STORE_F_SPIFFE_ID (1u << 0)
#define SIGIL_STORE_F_PARENT_ID (1u << 1)
#define SIGIL_STORE_F_SELECTORS (1u << 2)
#define SIGIL_STORE_F_X509_TTL (1u << 3)
#define SIGIL_STORE_F_JWT_TTL (1u << 4)
#define SIGIL_STORE_F_DNS_NAMES (1u << 5)
#define SIGIL_STORE_F_FEDERATES_WITH (1u << 6)
#define SIGIL_STORE_F_ADMIN (1u << 7)
#define SIGIL_STORE_F_DOWNSTREAM (1u << 8)
#define SIGIL_STORE_F_HINT (1u << 9)
#define SIGIL_STORE_F_EXPIRES_AT (1u << 10)
#define SIGIL_STORE_F_TEAM (1u << 11)

/* A registration entry. Strings are owned (free with sigil_store_entry_free); times are Unix
 * seconds, 0 for "none"; TTLs 0 mean the default. Start from all zeros. */
struct sigil_store_entry {
    char id[SIGIL_STORE_UUID_LEN + 1]; /* "" until created */
    char *spiffe_id;
    char *parent_id;
    struct sigil_selector_set selectors;
    int32_t x509_ttl;
    int32_t jwt_ttl;
    struct sigil_store_strv dns_names;
    struct sigil_store_strv federates_with;
    bool admin;
    bool downstream;
    char *hint; /* NULL is "" */
    char *team; /* NULL: no team (set by the admin layer from policy, not from the input) */
    int64_t expires_at;
    int64_t revision;
    int64_t created_at;
    int64_t updated_at;
    unsigned fields; /* SIGIL_STORE_F_* given, for sigil_store_entry_update */
};

/* Frees what e owns and zeroes it; NULL is allowed. */
void sigil_store_entry_free(struct sigil_store_entry *e);

/* Which JSON shape sigil_store_entry_from_json reads (schema/admin-api.yaml). */
enum sigil_store_entry_json {
    SIGIL_STORE_JSON_INPUT, /* EntryInput: spiffe_id, parent_id, selectors required */
    SIGIL_STORE_JSON_PATCH, /* EntryPatch: every field optional, e->fields says which */
    SIGIL_STORE_JSON_ENTRY, /* Entry (an export line): EntryInput plus the read-only fields */
};

/* Reads an entry from a JSON object of the given shape into *out (overwritten; caller frees
 * with sigil_store_entry_free). Unknown fields, wrong types and invalid values are refused
 * with err naming the field. Returns 0, SIGIL_ERR_INVALID, SIGIL_ERR_RANGE or NOMEM. */
int sigil_store_entry_from_json(const json_t *j, enum sigil_store_entry_json shape,
                                struct sigil_store_entry *out, struct sigil_store_err *err);
/* Builds the admin API's Entry object for e into *out (caller json_decref()s). Returns 0 or
 * SIGIL_ERR_NOMEM. */
int sigil_store_entry_to_json(const struct sigil_store_entry *e, json_t **out);
/* Checks an entry the way the database would (IDs, selectors, TTLs, names, sizes) so a bad
 * one is refused with a clear message before any SQL. Returns 0 or SIGIL_ERR_INVALID/RANGE. */
int sigil_store_entry_check(const struct sigil_store_entry *e, struct sigil_store_err *err);

/* Creates one entry as actor; fills e->id, revision, created_at, updated_at (and TTLs left 0
 * with the defaults); a team the entry names gets its teams row if it has none. Returns 0,
 * SIGIL_ERR_EXISTS (err names the existing entry), INVALID, or a database error. */
int sigil_store_entry_create(struct sigil_db_conn *c, const char *actor,
                             struct sigil_store_entry *e, struct sigil_store_err *err);

/* The outcome of one item of a batch. */
struct sigil_store_item {
    int status; /* 0 or SIGIL_ERR_* */
    struct sigil_store_err err;
    /* with SIGIL_ERR_EXISTS: the id of the stored entry with the same key (for a repeat
     * within the batch, the id its first occurrence got; "" if that was not written) */
    char id[SIGIL_STORE_UUID_LEN + 1];
};

/* Creates n (<= SIGIL_STORE_BATCH_MAX) entries in one transaction, filling each created
 * entry's id, revision and times and results[i] for every item. atomic: one bad item fails
 * them all (nothing is written); otherwise the others are written. Returns 0 when the
 * transaction committed (see results), or an error for the whole batch. */
int sigil_store_entries_create_batch(struct sigil_db_conn *c, const char *actor,
                                     struct sigil_store_entry *entries, size_t n, bool atomic,
                                     struct sigil_store_item *results, struct sigil_store_err *err);

/* Reads the entry with this id into *out (caller frees). Returns 0, SIGIL_ERR_NOTFOUND,
 * SIGIL_ERR_INVALID (not a UUID) or a database error. */
int sigil_store_entry_get(struct sigil_db_conn *c, const char *id, struct sigil_store_entry *out,
                          struct sigil_store_err *err);

/* Replaces the fields patch->fields names (sets replace sets) on entry id; *out (may be NULL;
 * caller frees) receives the result. Returns 0, NOTFOUND, EXISTS, INVALID or a db error. */
int sigil_store_entry_update(struct sigil_db_conn *c, const char *actor, const char *id,
                             const struct sigil_store_entry *patch, struct sigil_store_entry *out,
                             struct sigil_store_err *err);

/* Judges a patch inside the update's transaction: before is the locked row, merged the entry
 * as it would be (borrowing; the hook may set its TTLs and point its team at memory the hook's
 * arg owns until the update returns). Returns 0 to write, negative (with err set) to refuse. */
typedef int (*sigil_store_entry_check_fn)(void *arg, const struct sigil_store_entry *before,
                                          struct sigil_store_entry *merged,
                                          struct sigil_store_err *err);
/* sigil_store_entry_update with check run on the locked row (SELECT ... FOR UPDATE) and the
 * merged result in the same transaction, so no change can land between check and write; it
 * may run again on a retried transaction. Returns as sigil_store_entry_update or check's error. */
int sigil_store_entry_update_checked(struct sigil_db_conn *c, const char *actor, const char *id,
                                     const struct sigil_store_entry *patch,
                                     sigil_store_entry_check_fn check, void *check_arg,
                                     struct sigil_store_entry *out, struct sigil_store_err *err);

/* Deletes entry id. Returns 0, SIGIL_ERR_NOTFOUND, INVALID or a database error. */
int sigil_store_entry_delete(struct sigil_db_conn *c, const char *actor, const char *id,
                             struct sigil_store_err *err);

/* Deletes n (<= SIGIL_STORE_BATCH_MAX) entries in one transaction; results[i] is 0,
 * NOTFOUND or INVALID. Returns 0 when committed, or an error for the whole batch. */
int sigil_store_entries_delete_batch(struct sigil_db_conn *c, const char *actor,
                                     const char *const *ids, size_t n,
                                     struct sigil_store_item *results, struct sigil_store_err *err);

/* Filters of sigil_store_entries_list; NULL/empty fields do not filter. */
struct sigil_store_entry_filter {
    const char *spiffe_id;
    const char *parent_id;
    const char *team;
    const struct sigil_selector_set *selectors; /* with match; NULL or empty: no filter */
    enum sigil_selector_match match;
    size_t page_size;       /* 1..SIGIL_STORE_PAGE_MAX; 0: SIGIL_STORE_PAGE_DEFAULT */
    const char *page_token; /* from the previous page, or NULL for the first */
};

/* Entries (owned by the list, free with sigil_store_entry_list_free). */
struct sigil_store_entry_list {
    struct sigil_store_entry *items;
    size_t count;
    char *next_page_token; /* NULL on the last page */
};

/* Frees a list's entries and token; NULL is allowed. */
void sigil_store_entry_list_free(struct sigil_store_entry_list *l);

/* Lists one page of entries matching f, ordered by id, into *out (caller frees). Returns 0,
 * SIGIL_ERR_INVALID (bad page token or filter), RANGE (page size) or a database error. */
int sigil_store_entries_list(struct sigil_db_conn *c, const struct sigil_store_entry_filter *f,
                             struct sigil_store_entry_list *out, struct sigil_store_err *err);

/* What changed in entries after a revision, read in one snapshot. */
struct sigil_store_changes {
    int64_t revision;                       /* the revision the caller is now at */
    struct sigil_store_entry_list upserted; /* entries created or changed, current state */
    struct sigil_store_strv deleted;        /* ids of entries deleted */
};

/* Frees what ch owns; NULL is allowed. */
void sigil_store_changes_free(struct sigil_store_changes *ch);

/* Reads the entries changed after revision since into *out (caller frees). Returns 0,
 * SIGIL_ERR_EXPIRED when events after since were pruned (load in full), or a db error. */
int sigil_store_entries_since(struct sigil_db_conn *c, int64_t since,
                              struct sigil_store_changes *out, struct sigil_store_err *err);

/* Loads every entry and the revision they are current at, in one snapshot, into *out and
 * *revision (caller frees the list). Returns 0 or a database error. */
int sigil_store_entries_load_all(struct sigil_db_conn *c, struct sigil_store_entry_list *out,
                                 int64_t *revision, struct sigil_store_err *err);

/* An attested agent (owned strings; free with sigil_store_agent_free). Times: Unix seconds. */
struct sigil_store_agent {
    char *spiffe_id;
    char *attestation_type;
    char *serial;     /* hex serial of the current agent SVID */
    char *new_serial; /* during renewal, until the agent uses it; NULL otherwise */
    int64_t expires_at;
    int64_t new_expires_at;
    bool banned;
    bool can_reattest;
    struct sigil_selector_set selectors;
    int64_t created_at;
    int64_t updated_at;
    int64_t revision;
};

/* Frees what a owns and zeroes it; NULL is allowed. */
void sigil_store_agent_free(struct sigil_store_agent *a);
/* Builds the admin API's Agent object into *out (caller json_decref()s); 0 or NOMEM. */
int sigil_store_agent_to_json(const struct sigil_store_agent *a, json_t **out);

/* Records a (re-)attestation: inserts or replaces agent a (spiffe_id, attestation_type,
 * serial, expires_at, can_reattest, selectors), clearing a pending renewal; *out (may be
 * NULL) gets the stored row. Returns 0, SIGIL_ERR_DENIED (banned), INVALID or a db error. */
int sigil_store_agent_attest(struct sigil_db_conn *c, const char *actor,
                             const struct sigil_store_agent *a, struct sigil_store_agent *out,
                             struct sigil_store_err *err);
/* Reads one agent into *out (caller frees). Returns 0, NOTFOUND or a db error. */
int sigil_store_agent_get(struct sigil_db_conn *c, const char *spiffe_id,
                          struct sigil_store_agent *out, struct sigil_store_err *err);

/* Filters of sigil_store_agents_list. */
struct sigil_store_agent_filter {
    int banned;                   /* -1: any, 0: not banned, 1: banned */
    const char *attestation_type; /* NULL: any */
    size_t page_size;             /* 0: default */
    const char *page_token;
};

/* Agents (owned by the list). */
struct sigil_store_agent_list {
    struct sigil_store_agent *items;
    size_t count;
    char *next_page_token;
};

/* Frees a list; NULL is allowed. */
void sigil_store_agent_list_free(struct sigil_store_agent_list *l);
/* Lists one page of agents ordered by SPIFFE ID into *out (caller frees). Returns 0,
 * INVALID, RANGE or a db error. */
int sigil_store_agents_list(struct sigil_db_conn *c, const struct sigil_store_agent_filter *f,
                            struct sigil_store_agent_list *out, struct sigil_store_err *err);
/* Bans an agent (audited); *out (may be NULL) gets the row. Returns 0, NOTFOUND or db error. */
int sigil_store_agent_ban(struct sigil_db_conn *c, const char *actor, const char *spiffe_id,
                          struct sigil_store_agent *out, struct sigil_store_err *err);
/* Evicts (deletes) an agent (audited). Returns 0, NOTFOUND or a db error. */
int sigil_store_agent_evict(struct sigil_db_conn *c, const char *actor, const char *spiffe_id,
                            struct sigil_store_err *err);
/* Starts a renewal: records new_serial/new_expires_at beside the current SVID. Returns 0,
 * NOTFOUND, DENIED (banned), INVALID or a db error. */
int sigil_store_agent_renew(struct sigil_db_conn *c, const char *actor, const char *spiffe_id,
                            const char *new_serial, int64_t new_expires_at,
                            struct sigil_store_err *err);
/* Checks the serial an agent presents: the current one is fine; the pending new one becomes
 * current. Returns 0, DENIED (banned, unknown or old serial), NOTFOUND or a db error. */
int sigil_store_agent_use_serial(struct sigil_db_conn *c, const char *spiffe_id, const char *serial,
                                 struct sigil_store_err *err);

/* Creates a single-use join token living ttl_seconds (1..SIGIL_STORE_TOKEN_TTL_MAX), with an
 * optional fixed agent path; writes it (shown once, never stored: only its SHA-256) into
 * token (the caller wipes it once shown) and its expiry into *expires_at. Returns 0,
 * INVALID/RANGE or a db error. */
int sigil_store_join_token_create(struct sigil_db_conn *c, const char *actor, int64_t ttl_seconds,
                                  const char *agent_path, char token[SIGIL_STORE_TOKEN_LEN + 1],
                                  int64_t *expires_at, struct sigil_store_err *err);
/* Consumes a join token atomically (exactly one caller wins); *agent_path (may be NULL;
 * caller frees; NULL when none) gets its fixed path. Returns 0, SIGIL_ERR_DENIED for an
 * unknown, used or expired token (one message for all), or a db error. */
int sigil_store_join_token_consume(struct sigil_db_conn *c, const char *actor, const char *token,
                                   char **agent_path, struct sigil_store_err *err);
/* Deletes expired join tokens; *removed (may be NULL) gets how many. Returns 0 or db error. */
int sigil_store_join_tokens_prune(struct sigil_db_conn *c, int64_t *removed,
                                  struct sigil_store_err *err);

/* A stored bundle: the SPIFFE bundle document as JSON text (owned). */
struct sigil_store_bundle {
    char *trust_domain;
    char *document;
    bool own;
    int64_t sequence;
    int64_t revision;
    int64_t updated_at;
};

/* Frees what b owns; NULL is allowed. */
void sigil_store_bundle_free(struct sigil_store_bundle *b);
/* Reads the bundle of trust domain td (own or federated); NULL td: our own. Returns 0,
 * NOTFOUND or a db error. */
int sigil_store_bundle_get(struct sigil_db_conn *c, const char *td, struct sigil_store_bundle *out,
                           struct sigil_store_err *err);
/* Stores our own bundle (document: SPIFFE bundle JSON for td; sequence as given). Returns 0,
 * INVALID or a db error. */
int sigil_store_bundle_set_own(struct sigil_db_conn *c, const char *actor, const char *td,
                               const char *document, int64_t sequence, struct sigil_store_err *err);
/* Stores a federated bundle for td; the document is checked as a SPIFFE bundle and its
 * spiffe_sequence kept (absent: the stored one plus one). Returns 0, INVALID, DENIED (our
 * own trust domain) or a db error. */
int sigil_store_bundle_set_federated(struct sigil_db_conn *c, const char *actor, const char *td,
                                     const char *document, struct sigil_store_err *err);
/* Deletes a federated bundle. Returns 0, NOTFOUND or a db error. */
int sigil_store_bundle_delete(struct sigil_db_conn *c, const char *actor, const char *td,
                              struct sigil_store_err *err);

/* Bundles (owned by the list). */
struct sigil_store_bundle_list {
    struct sigil_store_bundle *items;
    size_t count;
};

/* Frees a list; NULL is allowed. */
void sigil_store_bundle_list_free(struct sigil_store_bundle_list *l);
/* Lists every federated bundle ordered by trust domain. Returns 0 or a db error. */
int sigil_store_bundles_list(struct sigil_db_conn *c, struct sigil_store_bundle_list *out,
                             struct sigil_store_err *err);

/* A federation relationship (owned strings). */
struct sigil_store_federation {
    char *trust_domain;
    char *bundle_endpoint_url;
    char *profile;            /* "https_web" or "https_spiffe" */
    char *endpoint_spiffe_id; /* https_spiffe only */
};

/* Frees what f owns; NULL is allowed. */
void sigil_store_federation_free(struct sigil_store_federation *f);
/* Reads a Federation object strictly into *out (caller frees). Returns 0, INVALID or NOMEM. */
int sigil_store_federation_from_json(const json_t *j, struct sigil_store_federation *out,
                                     struct sigil_store_err *err);
/* Builds the Federation object into *out (caller json_decref()s). Returns 0 or NOMEM. */
int sigil_store_federation_to_json(const struct sigil_store_federation *f, json_t **out);
/* Creates a relationship. Returns 0, EXISTS, INVALID or a db error. */
int sigil_store_federation_create(struct sigil_db_conn *c, const char *actor,
                                  const struct sigil_store_federation *f,
                                  struct sigil_store_err *err);

/* Relationships (owned by the list). */
struct sigil_store_federation_list {
    struct sigil_store_federation *items;
    size_t count;
};

/* Frees a list; NULL is allowed. */
void sigil_store_federation_list_free(struct sigil_store_federation_list *l);
/* Lists every relationship ordered by trust domain. Returns 0 or a db error. */
int sigil_store_federations_list(struct sigil_db_conn *c, struct sigil_store_federation_list *out,
                                 struct sigil_store_err *err);
/* Deletes the relationship with td. Returns 0, NOTFOUND or a db error. */
int sigil_store_federation_delete(struct sigil_db_conn *c, const char *actor, const char *td,
                                  struct sigil_store_err *err);

/* One audit record; before/after are JSON texts or NULL (owned). */
struct sigil_store_audit {
    int64_t id;
    int64_t at; /* Unix seconds */
    char *actor;
    char *action;
    char *object_type;
    char *object_id;
    char *before;
    char *after;
    int64_t revision;
};

/* Filters of sigil_store_audit_list (NULL: any). */
struct sigil_store_audit_filter {
    const char *object_type;
    const char *object_id;
    const char *actor;
    size_t page_size;
    const char *page_token;
};

/* Audit records (owned by the list). */
struct sigil_store_audit_list {
    struct sigil_store_audit *items;
    size_t count;
    char *next_page_token;
};

/* Frees a list; NULL is allowed. */
void sigil_store_audit_list_free(struct sigil_store_audit_list *l);
/* Lists one page of audit records, newest first. Returns 0, INVALID, RANGE or a db error. */
int sigil_store_audit_list(struct sigil_db_conn *c, const struct sigil_store_audit_filter *f,
                           struct sigil_store_audit_list *out, struct sigil_store_err *err);
/* Builds the AuditRecord object into *out (caller json_decref()s). Returns 0 or NOMEM. */
int sigil_store_audit_to_json(const struct sigil_store_audit *a, json_t **out);

/* Formats Unix seconds as RFC 3339 UTC ("2026-01-02T03:04:05Z") into out. */
void sigil_store_time_format(int64_t t, char out[32]);
/* Parses an RFC 3339 date-time (with "Z" or an offset; fractions dropped) into Unix seconds.
 * Returns 0 or SIGIL_ERR_INVALID. */
int sigil_store_time_parse(const char *s, int64_t *out);

#endif
