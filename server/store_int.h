/* Helpers the store_*.c files share (not part of the store's interface): error texts, the
 * audit row, PostgreSQL array literals, page tokens and row readers. */
#ifndef SIGIL_STORE_INT_H
#define SIGIL_STORE_INT_H

#include <stdarg.h>

#include "sigil/buf.h"
#include "store.h"

/* Sets err (may be NULL) to code and a printf-formatted message. */
void store_err(struct sigil_store_err *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Fills err from the connection's last failure and returns r. */
int store_db_fail(struct sigil_db_conn *c, int r, struct sigil_store_err *err);
/* Checks an actor ("uid:N" or a SPIFFE ID: 1..SIGIL_STORE_ACTOR_MAX printable bytes). */
int store_actor_check(const char *actor, struct sigil_store_err *err);
/* Writes one audit row in the caller's transaction; before/after may be NULL. */
int store_audit(struct sigil_db_conn *c, const char *actor, const char *action,
                const char *object_type, const char *object_id, const json_t *before,
                const json_t *after, struct sigil_store_err *err);

/* A PostgreSQL array literal being built: "{"a","b",NULL}". */
struct store_arr {
    struct sigil_buf b;
    size_t n;
    int r; /* first failure, sticky */
};
/* Appends one element (NULL: SQL NULL). */
void store_arr_add(struct store_arr *a, const char *s);
/* Appends one integer element. */
void store_arr_add_i64(struct store_arr *a, int64_t v);
/* Finishes the literal; returns it NUL-terminated (owned by a) or NULL on failure. */
const char *store_arr_end(struct store_arr *a);
/* Frees the literal. */
void store_arr_free(struct store_arr *a);

/* True if s is a canonical UUID text (8-4-4-4-12 hex digits). */
bool store_uuid_valid(const char *s);
/* Writes a new random (version 4) UUID into out. Returns 0 or SIGIL_ERR_CRYPTO. */
int store_uuid_new(char out[SIGIL_STORE_UUID_LEN + 1]);

/* Page tokens: opaque base64url of the last key of a page (caller frees / decoded text). */
char *store_token_encode(const char *key);
/* Decodes a token into its key text (caller frees). Returns 0 or SIGIL_ERR_INVALID. */
int store_token_decode(const char *token, char **key, struct sigil_store_err *err);
/* Resolves a page size (0: default). Returns 0 or SIGIL_ERR_RANGE. */
int store_page_size(size_t in, size_t *out, struct sigil_store_err *err);

/* A copy of a row's text value (NULL for SQL NULL); *r gets NOMEM on failure. */
char *store_res_dup(const struct sigil_db_res *res, size_t row, size_t col, int *r);
/* An integer value; 0 for NULL. */
int64_t store_res_i64(const struct sigil_db_res *res, size_t row, size_t col);
/* A boolean value; false for NULL. */
bool store_res_bool(const struct sigil_db_res *res, size_t row, size_t col);

/* Adds a JSON string member if s is not NULL. Returns 0 or NOMEM. */
int store_json_set_str(json_t *o, const char *key, const char *s);
/* Adds an RFC 3339 time member. Returns 0 or NOMEM. */
int store_json_set_time(json_t *o, const char *key, int64_t t);
/* Reads an optional string member strictly (no NUL, at most max bytes); *out borrowed. */
int store_json_str(const json_t *o, const char *key, size_t max, const char **out,
                   struct sigil_store_err *err);
/* Refuses members of o not in the NULL-terminated list allowed. */
int store_json_only(const json_t *o, const char *const *allowed, const char *what,
                    struct sigil_store_err *err);

/* The selectors of a set as a JSON array of "type:value" strings, or NULL on no memory. */
json_t *store_selectors_json(const struct sigil_selector_set *set);

/* The columns every entry query selects, in the order store_entry_from_row reads them. */
#define STORE_ENTRY_COLS                                                                           \
    "e.id, e.spiffe_id, e.parent_id, e.selectors_canon, e.x509_ttl_seconds, "                      \
    "e.jwt_ttl_seconds, e.admin, e.downstream, e.hint, e.team, "                                   \
    "floor(extract(epoch FROM e.expires_at))::bigint, e.revision, "                                \
    "floor(extract(epoch FROM e.created_at))::bigint, "                                            \
    "floor(extract(epoch FROM e.updated_at))::bigint, "                                            \
    "(SELECT string_agg(d.name, E'\\n' ORDER BY d.ord) FROM entry_dns_names d "                    \
    "WHERE d.entry_id = e.id), "                                                                   \
    "(SELECT string_agg(f.trust_domain, E'\\n' ORDER BY f.trust_domain) "                          \
    "FROM entry_federates_with f WHERE f.entry_id = e.id)"
/* Reads row i of a STORE_ENTRY_COLS result into *out (overwritten). */
int store_entry_from_row(const struct sigil_db_res *res, size_t i, struct sigil_store_entry *out);
/* Appends every row of a STORE_ENTRY_COLS result to l (up to max rows). */
int store_entries_from_res(const struct sigil_db_res *res, size_t max,
                           struct sigil_store_entry_list *l);

#endif
