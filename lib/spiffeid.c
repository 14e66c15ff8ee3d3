/* SPIFFE IDs and trust domain names, checked byte by byte against SPIFFE-ID.md (checklist
 * ID-1..ID-8). Nothing is lowercased, decoded or repaired: one ID has exactly one accepted
 * spelling, so byte equality is identity equality. Input is length-delimited and untrusted;
 * a NUL byte is just another invalid character. */
#include "sigil/spiffeid.h"
#include "sigil/err.h"

#include <string.h>

#define SCHEME "spiffe://"
#define SCHEME_LEN (sizeof SCHEME - 1)

static int
fail(const char **why, const char *text, int err)
{
    if (why != NULL)
        *why = text;
    return err;
}

static bool
is_td_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

static bool
is_path_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

/* Names the rule a byte that is not a trust domain character breaks. In an ID these bytes
 * would start a userinfo, port, query or fragment, so the rule says so. */
static int
bad_td_char(unsigned char c, const char **why)
{
    switch (c) {
    case '@':
        return fail(why, "ID-2: userinfo not allowed", SIGIL_ERR_INVALID);
    case ':':
        return fail(why, "ID-2: port not allowed", SIGIL_ERR_INVALID);
    case '?':
        return fail(why, "ID-1: query not allowed", SIGIL_ERR_INVALID);
    case '#':
        return fail(why, "ID-1: fragment not allowed", SIGIL_ERR_INVALID);
    case '%':
        return fail(why, "ID-3: percent-encoding not allowed in trust domain", SIGIL_ERR_INVALID);
    }
    if (c >= 'A' && c <= 'Z')
        return fail(why, "ID-3: trust domain must be lowercase", SIGIL_ERR_INVALID);
    return fail(why, "ID-3: trust domain has an invalid character", SIGIL_ERR_INVALID);
}

/* Checks a bare trust domain name of len bytes (no scheme, no '/'). */
static int
check_td(const char *td, size_t len, const char **why)
{
    if (len == 0)
        return fail(why, "ID-1: trust domain is empty", SIGIL_ERR_INVALID);
    for (size_t i = 0; i < len; i++) {
        if (!is_td_char((unsigned char)td[i]))
            return bad_td_char((unsigned char)td[i], why);
    }
    if (len > SIGIL_TRUST_DOMAIN_MAX)
        return fail(why, "ID-7: trust domain is longer than 255 bytes", SIGIL_ERR_RANGE);
    return 0;
}

/* Checks a path of len bytes: "" or one or more "/segment". */
static int
check_path(const char *p, size_t len, const char **why)
{
    size_t seg = 0; /* index of the '/' that opened the current segment */

    if (len == 0)
        return 0;
    if (p[0] != '/')
        return fail(why, "ID-5: path must start with '/'", SIGIL_ERR_INVALID);
    for (size_t i = 1; i <= len; i++) {
        if (i == len || p[i] == '/') {
            size_t n = i - seg - 1;
            if (n == 0 && i == len)
                return fail(why, "ID-5: path has a trailing '/'", SIGIL_ERR_INVALID);
            if (n == 0)
                return fail(why, "ID-5: path segment is empty", SIGIL_ERR_INVALID);
            if ((n == 1 && p[seg + 1] == '.') || (n == 2 && p[seg + 1] == '.' && p[seg + 2] == '.'))
                return fail(why, "ID-5: path segment is '.' or '..'", SIGIL_ERR_INVALID);
            seg = i;
            continue;
        }
        unsigned char c = (unsigned char)p[i];
        if (is_path_char(c))
            continue;
        switch (c) {
        case '?':
            return fail(why, "ID-1: query not allowed", SIGIL_ERR_INVALID);
        case '#':
            return fail(why, "ID-1: fragment not allowed", SIGIL_ERR_INVALID);
        case '%':
            return fail(why, "ID-5: percent-encoding not allowed in path", SIGIL_ERR_INVALID);
        }
        return fail(why, "ID-5: path segment has an invalid character", SIGIL_ERR_INVALID);
    }
    return 0;
}

static bool
ascii_case_equal(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x = (unsigned char)(x - 'A' + 'a');
        if (x != y)
            return false;
    }
    return true;
}

/* Checks that s starts with exactly "spiffe://", naming the rule broken otherwise. */
static int
check_scheme(const char *s, size_t len, const char **why)
{
    if (len >= SCHEME_LEN && memcmp(s, SCHEME, SCHEME_LEN) == 0)
        return 0;
    /* "SPIFFE://" would be valid under ID-8 alone; H-1: we never accept uppercase. */
    if (len >= SCHEME_LEN && ascii_case_equal(s, SCHEME, SCHEME_LEN))
        return fail(why, "ID-8: scheme must be lowercase \"spiffe\"", SIGIL_ERR_INVALID);
    if (len >= 7 && ascii_case_equal(s, "spiffe:", 7))
        return fail(why, "ID-1: scheme must be followed by \"//\" and a trust domain",
                    SIGIL_ERR_INVALID);
    return fail(why, "ID-1: scheme must be \"spiffe\"", SIGIL_ERR_INVALID);
}

static void
clear(struct sigil_spiffeid *out)
{
    memset(out, 0, sizeof *out);
}

/* Fills out from parts already checked; total length already checked too. */
static void
build(struct sigil_spiffeid *out, const char *td, size_t tdlen, const char *path, size_t plen)
{
    memcpy(out->str, SCHEME, SCHEME_LEN);
    memcpy(out->str + SCHEME_LEN, td, tdlen);
    memcpy(out->str + SCHEME_LEN + tdlen, path, plen);
    out->len = SCHEME_LEN + tdlen + plen;
    out->str[out->len] = '\0';
    memcpy(out->td, td, tdlen);
    out->td[tdlen] = '\0';
    out->path_off = SCHEME_LEN + tdlen;
}

int
sigil_spiffeid_parse(const char *s, size_t len, struct sigil_spiffeid *out, const char **why)
{
    size_t end;
    int r;

    clear(out);
    if (s == NULL || len == 0)
        return fail(why, "ID-1: SPIFFE ID is empty", SIGIL_ERR_INVALID);
    if (len > SIGIL_SPIFFEID_MAX)
        return fail(why, "ID-7: SPIFFE ID is longer than 2048 bytes", SIGIL_ERR_RANGE);
    if ((r = check_scheme(s, len, why)) != 0)
        return r;
    for (end = SCHEME_LEN; end < len && s[end] != '/'; end++)
        ;
    if ((r = check_td(s + SCHEME_LEN, end - SCHEME_LEN, why)) != 0)
        return r;
    if ((r = check_path(s + end, len - end, why)) != 0)
        return r;
    build(out, s + SCHEME_LEN, end - SCHEME_LEN, s + end, len - end);
    return 0;
}

int
sigil_trust_domain_check(const char *td, size_t len, const char **why)
{
    if (td == NULL)
        return fail(why, "ID-1: trust domain is empty", SIGIL_ERR_INVALID);
    return check_td(td, len, why);
}

int
sigil_trust_domain_parse(const char *s, size_t len, char out[SIGIL_TRUST_DOMAIN_MAX + 1],
                         const char **why)
{
    struct sigil_spiffeid id;
    int r;

    out[0] = '\0';
    if (s == NULL)
        return fail(why, "ID-1: trust domain is empty", SIGIL_ERR_INVALID);
    /* Like go-spiffe: anything with ":/" is meant as an ID, which gives better errors for
     * "spiffe:/td" than a complaint about ':' in a name. */
    if (memmem(s, len, ":/", 2) == NULL) {
        if ((r = check_td(s, len, why)) != 0)
            return r;
        memcpy(out, s, len);
        out[len] = '\0';
        return 0;
    }
    if ((r = sigil_spiffeid_parse(s, len, &id, why)) != 0)
        return r;
    if (sigil_spiffeid_has_path(&id))
        return fail(why, "ID-6: a trust domain's SPIFFE ID has no path", SIGIL_ERR_INVALID);
    memcpy(out, id.td, strlen(id.td) + 1);
    return 0;
}

int
sigil_spiffeid_path_check(const char *path, size_t len, const char **why)
{
    if (path == NULL && len != 0)
        return fail(why, "ID-5: path is missing", SIGIL_ERR_INVALID);
    if (len > SIGIL_SPIFFEID_MAX - SCHEME_LEN - 1)
        return fail(why, "ID-7: SPIFFE ID is longer than 2048 bytes", SIGIL_ERR_RANGE);
    return check_path(path, len, why);
}

int
sigil_spiffeid_from_parts(const char *td, const char *path, struct sigil_spiffeid *out,
                          const char **why)
{
    size_t tdlen, plen;
    int r;

    clear(out);
    if (td == NULL)
        return fail(why, "ID-1: trust domain is empty", SIGIL_ERR_INVALID);
    if (path == NULL)
        path = "";
    tdlen = strlen(td);
    plen = strlen(path);
    if ((r = check_td(td, tdlen, why)) != 0 || (r = check_path(path, plen, why)) != 0)
        return r;
    if (plen > SIGIL_SPIFFEID_MAX - SCHEME_LEN - tdlen)
        return fail(why, "ID-7: SPIFFE ID is longer than 2048 bytes", SIGIL_ERR_RANGE);
    build(out, td, tdlen, path, plen);
    return 0;
}

const char *
sigil_spiffeid_path(const struct sigil_spiffeid *id)
{
    return id->str + id->path_off;
}

bool
sigil_spiffeid_has_path(const struct sigil_spiffeid *id)
{
    return id->path_off < id->len;
}

bool
sigil_spiffeid_member_of(const struct sigil_spiffeid *id, const char *td)
{
    /* id->td is never empty for a parsed ID; an empty td must not match a zeroed struct. */
    return td != NULL && td[0] != '\0' && strcmp(id->td, td) == 0;
}

bool
sigil_spiffeid_equal(const struct sigil_spiffeid *a, const struct sigil_spiffeid *b)
{
    return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
}

bool
sigil_spiffeid_has_prefix(const struct sigil_spiffeid *id, const struct sigil_spiffeid *prefix)
{
    if (prefix->len == 0 || prefix->len > id->len || memcmp(id->str, prefix->str, prefix->len) != 0)
        return false;
    /* Segment boundary: "spiffe://td/ab" is not under "spiffe://td/a". IDs never end in
     * '/', so the next byte of id must open a new segment (or there is none). */
    return id->len == prefix->len || id->str[prefix->len] == '/';
}
