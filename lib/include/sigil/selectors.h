/* Workload and node selectors ("unix:uid:1000", "k8s:ns:prod"), sets of them in one
 * canonical order, and the set relations that registration entries are matched with.
 *
 * A selector is "type:value". The type is everything before the FIRST ':' and is 1..64
 * bytes of [a-z0-9_]. The value is everything after it (it may hold more ':') and is
 * 1..1024 bytes of valid UTF-8 without control characters: no byte below 0x20, no DEL
 * (0x7f), no C1 control (U+0080..U+009F). Spaces are allowed, even leading or trailing.
 * Values are stored and compared byte for byte: nothing is trimmed, folded or normalised.
 * Because a value can never hold '\n', a newline-separated list is unambiguous, and because
 * it is valid UTF-8 without controls, every selector is a valid JSON string and PostgreSQL
 * text as it is. */
#ifndef SIGIL_SELECTORS_H
#define SIGIL_SELECTORS_H

#include <stdbool.h>
#include <stddef.h>

#define SIGIL_SELECTOR_TYPE_MAX 64    /* bytes */
#define SIGIL_SELECTOR_VALUE_MAX 1024 /* bytes */
#define SIGIL_SELECTOR_SET_MAX 256    /* distinct selectors in one set */
/* Longest text sigil_selector_set_parse reads: a full set, one selector a line. */
#define SIGIL_SELECTOR_SET_TEXT_MAX                                                                \
    (SIGIL_SELECTOR_SET_MAX * (SIGIL_SELECTOR_TYPE_MAX + 1 + SIGIL_SELECTOR_VALUE_MAX + 1))

/* One valid selector. type and value are NUL-terminated and share one allocation that
 * the selector owns: free it with sigil_selector_free, never free the fields. */
struct sigil_selector {
    char *type;
    char *value;
    size_t type_len;
    size_t value_len;
};

/* A set of distinct valid selectors, always kept in canonical order: by type, then by
 * value, each compared byte-wise (unsigned), shorter first on a common prefix. The fields
 * are read-only for callers: iterate with `for (i = 0; i < set->count; i++) set->items[i]`
 * or sigil_selector_set_at. Start from SIGIL_SELECTOR_SET_INIT (or all zeros); it owns its
 * selectors, free with sigil_selector_set_free. */
struct sigil_selector_set {
    struct sigil_selector *items;
    size_t count;
    size_t cap;
};
#define SIGIL_SELECTOR_SET_INIT                                                                    \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

/* How sigil_selectors_match relates a candidate's set (an entry's selectors) to a filter's
 * set. Same numbers and meaning as SPIRE's SelectorMatch.MatchBehavior. */
enum sigil_selector_match {
    SIGIL_SELECTOR_MATCH_EXACT = 0,    /* candidate == filter */
    SIGIL_SELECTOR_MATCH_SUBSET = 1,   /* candidate is a subset of filter */
    SIGIL_SELECTOR_MATCH_SUPERSET = 2, /* candidate is a superset of filter */
    SIGIL_SELECTOR_MATCH_ANY = 3,      /* candidate and filter share at least one selector */
};

/* --- one selector */

/* Parses len bytes of s (no NUL needed) as "type:value" into out (overwritten; free it with
 * sigil_selector_free). Returns 0, or SIGIL_ERR_INVALID / SIGIL_ERR_RANGE (over a cap) /
 * SIGIL_ERR_NOMEM with *why (if why != NULL) set to a static text; on error out holds
 * nothing and freeing it is a no-op. */
int sigil_selector_parse(const char *s, size_t len, struct sigil_selector *out, const char **why);

/* Builds a selector from a type of type_len bytes and a value of value_len bytes, with the
 * same checks and contract as sigil_selector_parse. */
int sigil_selector_make(const char *type, size_t type_len, const char *value, size_t value_len,
                        struct sigil_selector *out, const char **why);

/* Returns "type:value" as a NUL-terminated string the caller frees, or NULL on no memory. */
char *sigil_selector_to_string(const struct sigil_selector *sel);

/* Orders two selectors canonically: <0, 0 or >0 like strcmp. */
int sigil_selector_cmp(const struct sigil_selector *a, const struct sigil_selector *b);

/* Frees what sel owns and empties it; safe on an emptied or failed-to-parse selector. */
void sigil_selector_free(struct sigil_selector *sel);

/* --- sets */

/* Adds a copy of sel (checked again, so a hand-built struct cannot break the set's order).
 * Adding a selector already present changes nothing and returns 0. Returns 0, or
 * SIGIL_ERR_RANGE (the set already holds SIGIL_SELECTOR_SET_MAX) / SIGIL_ERR_INVALID /
 * SIGIL_ERR_NOMEM with *why set; on error the set is unchanged. */
int sigil_selector_set_add(struct sigil_selector_set *set, const struct sigil_selector *sel,
                           const char **why);

/* Parses len bytes of s as one "type:value" and adds it; contract of sigil_selector_set_add. */
int sigil_selector_set_add_str(struct sigil_selector_set *set, const char *s, size_t len,
                               const char **why);

/* True if set holds a selector equal to sel. */
bool sigil_selector_set_contains(const struct sigil_selector_set *set,
                                 const struct sigil_selector *sel);

/* Returns how many distinct selectors set holds. */
size_t sigil_selector_set_count(const struct sigil_selector_set *set);

/* Returns the i-th selector in canonical order (owned by the set, valid until the set is
 * changed or freed), or NULL if i >= count. */
const struct sigil_selector *sigil_selector_set_at(const struct sigil_selector_set *set, size_t i);

/* True if both sets hold the same selectors (two empty sets are equal here; contrast
 * sigil_selectors_match_exact). */
bool sigil_selector_set_equal(const struct sigil_selector_set *a,
                              const struct sigil_selector_set *b);

/* Makes dst (overwritten, as if uninitialised) a copy of src. Returns 0 or SIGIL_ERR_NOMEM,
 * after which dst is empty. */
int sigil_selector_set_copy(struct sigil_selector_set *dst, const struct sigil_selector_set *src);

/* Frees every selector and the array; the set is empty and reusable afterwards. */
void sigil_selector_set_free(struct sigil_selector_set *set);

/* Returns the canonical text of set, for storage and hashing: its selectors in canonical
 * order, each "type:value", joined by '\n' with no trailing '\n' ("" for the empty set).
 * Two sets are equal exactly when their texts are byte-equal. NUL-terminated; the caller
 * frees it; NULL on no memory. */
char *sigil_selector_set_to_string(const struct sigil_selector_set *set);

/* Parses len bytes of s as selectors, one per line, each line ended by '\n' or by the end
 * of s (so one final '\n' is allowed; "" is the empty set). Lines may come in any order and
 * repeat; an empty line, '\r' or any invalid selector is an error. Accepts every text
 * sigil_selector_set_to_string makes. out is overwritten (as if uninitialised). Returns 0,
 * or SIGIL_ERR_INVALID / SIGIL_ERR_RANGE (over SIGIL_SELECTOR_SET_MAX distinct selectors
 * or SIGIL_SELECTOR_SET_TEXT_MAX bytes) / SIGIL_ERR_NOMEM with *why set; on error out is
 * empty. */
int sigil_selector_set_parse(const char *s, size_t len, struct sigil_selector_set *out,
                             const char **why);

/* --- matching. An EMPTY set never matches anything, in every function below: an entry
 * without selectors must not match every workload (the vacuous "{} is a subset of W"), and
 * SPIRE refuses to filter by an empty set. Each is one merge walk, O(|a| + |b|). */

/* AND matching: true if a is non-empty and every selector of a is in b. An entry with
 * selectors S matches a workload (or node) with selectors W when
 * sigil_selectors_is_subset(S, W). */
bool sigil_selectors_is_subset(const struct sigil_selector_set *a,
                               const struct sigil_selector_set *b);

/* True if a is non-empty and a and b hold the same selectors. */
bool sigil_selectors_match_exact(const struct sigil_selector_set *a,
                                 const struct sigil_selector_set *b);

/* True if a and b share at least one selector (so neither is empty). */
bool sigil_selectors_match_any(const struct sigil_selector_set *a,
                               const struct sigil_selector_set *b);

/* The admin API's selector filter, by SPIRE's semantics: true if candidate (an entry's
 * selectors) relates to filter as `how` says, both non-empty. EXACT: candidate == filter;
 * SUBSET: candidate is a subset of filter (the entries a workload with selectors `filter`
 * would get); SUPERSET: candidate holds all of filter (SPIRE CLI's default); ANY: they
 * share one. An unknown `how` is false. */
bool sigil_selectors_match(const struct sigil_selector_set *candidate,
                           const struct sigil_selector_set *filter, enum sigil_selector_match how);

#endif
