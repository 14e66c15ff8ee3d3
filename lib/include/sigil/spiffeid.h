/* SPIFFE IDs and trust domain names, parsed and validated exactly by the SPIFFE-ID
 * standard (checklist rules ID-1 to ID-8). Parsing never lowercases or repairs: input
 * that is not already canonical is rejected, and `why` names the rule it broke. */
#ifndef SIGIL_SPIFFEID_H
#define SIGIL_SPIFFEID_H

#include <stdbool.h>
#include <stddef.h>

#define SIGIL_SPIFFEID_MAX 2048    /* bytes, scheme and all (ID-7) */
#define SIGIL_TRUST_DOMAIN_MAX 255 /* bytes (ID-7) */

/* A parsed SPIFFE ID. Plain data: safe to copy with `=` or memcpy. */
struct sigil_spiffeid {
    char str[SIGIL_SPIFFEID_MAX + 1];    /* "spiffe://td/path", NUL-terminated */
    char td[SIGIL_TRUST_DOMAIN_MAX + 1]; /* "td", NUL-terminated */
    size_t len;                          /* strlen(str) */
    size_t path_off;                     /* str + path_off is the path: "" or "/a/b" */
};

/* Parses len bytes of s (no NUL needed) as a SPIFFE ID. Returns 0, or SIGIL_ERR_INVALID
 * / SIGIL_ERR_RANGE with *why (if why != NULL) set to a static text naming the rule,
 * e.g. "ID-5: path segment is empty". */
int sigil_spiffeid_parse(const char *s, size_t len, struct sigil_spiffeid *out, const char **why);

/* Checks len bytes of td as a bare trust domain name ("example.org", no scheme).
 * Returns 0 or SIGIL_ERR_INVALID / SIGIL_ERR_RANGE with *why set. */
int sigil_trust_domain_check(const char *td, size_t len, const char **why);

/* Parses a trust domain given either bare ("example.org") or as a path-less SPIFFE ID
 * ("spiffe://example.org"); writes the bare name into out. Returns 0 or an error + why. */
int sigil_trust_domain_parse(const char *s, size_t len, char out[SIGIL_TRUST_DOMAIN_MAX + 1],
                             const char **why);

/* Checks len bytes of path as the path part of an ID: "" or "/seg/..." by ID-5 (no empty,
 * "." or ".." segment, no trailing '/', segments of [a-zA-Z0-9._-]). Returns 0 or
 * SIGIL_ERR_INVALID / SIGIL_ERR_RANGE (cannot fit in any ID) with *why set. */
int sigil_spiffeid_path_check(const char *path, size_t len, const char **why);

/* Builds an ID from a trust domain and a path ("" or "/a/b"), validating both.
 * Returns 0 or an error + why. */
int sigil_spiffeid_from_parts(const char *td, const char *path, struct sigil_spiffeid *out,
                              const char **why);

/* Returns the path of id: "" when it has none, else "/seg/...". */
const char *sigil_spiffeid_path(const struct sigil_spiffeid *id);

/* True if id has a non-root path (a leaf identity, rule X-2). */
bool sigil_spiffeid_has_path(const struct sigil_spiffeid *id);

/* True if id belongs to trust domain td (bare name). */
bool sigil_spiffeid_member_of(const struct sigil_spiffeid *id, const char *td);

/* True if the two IDs are the same (byte-equal canonical forms). */
bool sigil_spiffeid_equal(const struct sigil_spiffeid *a, const struct sigil_spiffeid *b);

/* True if id equals prefix or lies under it on a segment boundary
 * ("spiffe://td/a" is under "spiffe://td/a" and "spiffe://td", not "spiffe://td/ab" under
 * "spiffe://td/a"). */
bool sigil_spiffeid_has_prefix(const struct sigil_spiffeid *id,
                               const struct sigil_spiffeid *prefix);

#endif
