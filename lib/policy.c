/* The built-in registration policy: an ID scheme, selector rules per compute model,
 * discouraged selectors by tier and TTL bounds, checked on every entry write. Refusals are
 * read by people (they become an HTTP 400), so each message names what is wrong and then,
 * in parentheses, what to do about it. */
#include "sigil/policy.h"
#include "sigil/buf.h"
#include "sigil/duration.h"
#include "sigil/err.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int
fail(const char **why, const char *text, int err)
{
    if (why != NULL)
        *why = text;
    return err;
}

static char *
dupn(const char *s, size_t n)
{
    char *d = malloc(n + 1);

    if (d == NULL)
        return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static bool
is_path_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

static bool
is_lower_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Names in config: segment names [a-z][a-z0-9_]*, selector types [a-z0-9_]+, selector keys
 * [a-z0-9_-]+ (the k8s attestor's keys have '-': pod-name, container-image). */
static bool
name_ok(const char *s, size_t max, bool first_letter, bool dash)
{
    size_t n = strnlen(s, max + 1);

    if (n == 0 || n > max)
        return false;
    if (first_letter && !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || (dash && c == '-')))
            return false;
    }
    return true;
}

#define KEY_MAX 32

/* --- segment patterns: "[class]" or "[class][class]", the last optionally "{n}" or
 * "{min,max}". Small enough to need no regex engine, and what people write anyway. */

struct pattern {
    uint8_t first[32];
    uint8_t rest[32];
    bool has_first;
    size_t rest_min, rest_max;
};

static void
bit_set(uint8_t set[32], unsigned char c)
{
    set[c >> 3] |= (uint8_t)(1u << (c & 7));
}

static bool
bit_has(const uint8_t set[32], unsigned char c)
{
    return (set[c >> 3] >> (c & 7)) & 1u;
}

static int
parse_class(const char *s, size_t len, size_t *pos, uint8_t set[32], const char **why)
{
    size_t i = *pos + 1, start = i;

    memset(set, 0, 32);
    while (i < len && s[i] != ']') {
        unsigned char a = (unsigned char)s[i], b = a;

        if (i + 2 < len && s[i + 1] == '-' && s[i + 2] != ']') {
            b = (unsigned char)s[i + 2];
            i += 3;
        } else {
            i++;
        }
        if (a > b)
            return fail(why, "segment pattern: a range in a class runs backwards",
                        SIGIL_ERR_INVALID);
        for (unsigned c = a; c <= b; c++) {
            if (!is_path_char((unsigned char)c))
                return fail(why,
                            "segment pattern: a class may hold only SPIFFE path characters "
                            "[A-Za-z0-9._-] (ID-5); no negation or escapes",
                            SIGIL_ERR_INVALID);
            bit_set(set, (unsigned char)c);
        }
    }
    if (i >= len)
        return fail(why, "segment pattern: a class is missing its ']'", SIGIL_ERR_INVALID);
    if (i == start)
        return fail(why, "segment pattern: a class is empty", SIGIL_ERR_INVALID);
    *pos = i + 1;
    return 0;
}

/* Reads a decimal count of 1..4 digits at s[*pos]. */
static bool
parse_count(const char *s, size_t len, size_t *pos, size_t *out)
{
    size_t i = *pos, v = 0;

    while (i < len && s[i] >= '0' && s[i] <= '9' && i - *pos < 4)
        v = v * 10 + (size_t)(s[i++] - '0');
    if (i == *pos || (i < len && s[i] >= '0' && s[i] <= '9'))
        return false;
    *pos = i;
    *out = v;
    return true;
}

static int
parse_pattern(const char *s, struct pattern *out, const char **why)
{
    static const char *const shape = "segment pattern: expected [class] or [class][class], the "
                                     "last optionally followed by {n} or {min,max}";
    size_t len, pos = 0;
    int r;

    memset(out, 0, sizeof *out);
    len = strnlen(s, SIGIL_POLICY_PATTERN_MAX + 1);
    if (len > SIGIL_POLICY_PATTERN_MAX)
        return fail(why, "segment pattern: longer than 64 bytes", SIGIL_ERR_RANGE);
    if (len == 0 || s[0] != '[')
        return fail(why, shape, SIGIL_ERR_INVALID);
    if ((r = parse_class(s, len, &pos, out->rest, why)) != 0)
        return r;
    if (pos < len && s[pos] == '[') {
        memcpy(out->first, out->rest, sizeof out->first);
        out->has_first = true;
        if ((r = parse_class(s, len, &pos, out->rest, why)) != 0)
            return r;
    }
    out->rest_min = out->rest_max = 1;
    if (pos < len && s[pos] == '{') {
        pos++;
        if (!parse_count(s, len, &pos, &out->rest_min))
            return fail(why, shape, SIGIL_ERR_INVALID);
        out->rest_max = out->rest_min;
        if (pos < len && s[pos] == ',') {
            pos++;
            if (!parse_count(s, len, &pos, &out->rest_max))
                return fail(why, shape, SIGIL_ERR_INVALID);
        }
        if (pos >= len || s[pos] != '}')
            return fail(why, shape, SIGIL_ERR_INVALID);
        pos++;
        if (out->rest_min > out->rest_max)
            return fail(why, "segment pattern: {min,max} with min above max", SIGIL_ERR_INVALID);
        if (out->rest_max == 0 && !out->has_first)
            return fail(why, "segment pattern: matches only the empty segment, which ID-5 forbids",
                        SIGIL_ERR_INVALID);
    }
    if (pos != len)
        return fail(why, shape, SIGIL_ERR_INVALID);
    return 0;
}

enum pat_verdict { PAT_OK, PAT_CHAR, PAT_SHORT, PAT_LONG };

/* Matches a segment; on a bad character *at is its index. */
static enum pat_verdict
pattern_match(const struct sigil_policy_segment *sg, const char *s, size_t len, size_t *at)
{
    size_t fixed = sg->has_first ? 1 : 0;

    for (size_t i = 0; i < len; i++) {
        const uint8_t *set = (i < fixed) ? sg->first : sg->rest;
        if (!bit_has(set, (unsigned char)s[i])) {
            *at = i;
            return PAT_CHAR;
        }
    }
    if (len < fixed + sg->rest_min)
        return PAT_SHORT;
    if (len > fixed + sg->rest_max)
        return PAT_LONG;
    return PAT_OK;
}

/* --- owning the policy's parts */

static void
free_strv(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void
segment_free(struct sigil_policy_segment *sg)
{
    free(sg->name);
    free_strv(sg->allowed, sg->n_allowed);
    free(sg->pattern);
    memset(sg, 0, sizeof *sg);
}

static void
model_free(struct sigil_policy_model *m)
{
    free(m->type);
    free_strv(m->required, m->n_required);
    memset(m, 0, sizeof *m);
}

static void
segments_free(struct sigil_policy_segment *v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        segment_free(&v[i]);
    free(v);
}

void
sigil_policy_clear_exempt_prefixes(struct sigil_policy *p)
{
    free(p->exempt);
    p->exempt = NULL;
    p->n_exempt = 0;
}

void
sigil_policy_clear_discouraged(struct sigil_policy *p)
{
    for (size_t i = 0; p->discouraged != NULL && i < p->n_discouraged; i++) {
        free(p->discouraged[i].type);
        free(p->discouraged[i].key);
    }
    free(p->discouraged);
    p->discouraged = NULL;
    p->n_discouraged = 0;
}

void
sigil_policy_free(struct sigil_policy *p)
{
    if (p == NULL)
        return;
    segments_free(p->segments, p->n_segments);
    sigil_policy_clear_exempt_prefixes(p);
    for (size_t i = 0; p->models != NULL && i < p->n_models; i++)
        model_free(&p->models[i]);
    free(p->models);
    sigil_policy_clear_discouraged(p);
    memset(p, 0, sizeof *p);
}

static struct sigil_policy_segment *
find_segment(const struct sigil_policy *p, const char *name, size_t *idx)
{
    for (size_t i = 0; name != NULL && i < p->n_segments; i++) {
        if (strcmp(p->segments[i].name, name) == 0) {
            if (idx != NULL)
                *idx = i;
            return &p->segments[i];
        }
    }
    return NULL;
}

static struct sigil_policy_model *
find_model(const struct sigil_policy *p, const char *type, size_t len)
{
    for (size_t i = 0; i < p->n_models; i++) {
        if (strlen(p->models[i].type) == len && memcmp(p->models[i].type, type, len) == 0)
            return &p->models[i];
    }
    return NULL;
}

/* --- setters */

void
sigil_policy_set_enforce_scheme(struct sigil_policy *p, bool on)
{
    p->enforce_scheme = on;
}

int
sigil_policy_set_scheme(struct sigil_policy *p, const char *const *names, size_t n,
                        const char **why)
{
    struct sigil_policy_segment *v = NULL;
    struct pattern pat;
    int r = SIGIL_ERR_INVALID;

    if (p == NULL || names == NULL || n == 0)
        return fail(why, "policy: the ID scheme needs at least one segment (or turn it off)",
                    SIGIL_ERR_INVALID);
    if (n > SIGIL_POLICY_SEGMENTS_MAX)
        return fail(why, "policy: the ID scheme has more than 16 segments", SIGIL_ERR_RANGE);
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL || !name_ok(names[i], SIGIL_POLICY_NAME_MAX, true, false))
            return fail(why, "policy: a scheme segment name must be [a-z][a-z0-9_]{0,31}",
                        SIGIL_ERR_INVALID);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0)
                return fail(why, "policy: a scheme segment name is listed twice",
                            SIGIL_ERR_INVALID);
        }
    }
    if ((r = parse_pattern(SIGIL_POLICY_DEFAULT_PATTERN, &pat, why)) != 0)
        return fail(why, "policy: the default segment pattern does not parse", SIGIL_ERR_INTERNAL);
    if ((v = calloc(n, sizeof *v)) == NULL)
        return fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
    for (size_t i = 0; i < n; i++) {
        v[i].name = dupn(names[i], strlen(names[i]));
        v[i].pattern = dupn(SIGIL_POLICY_DEFAULT_PATTERN, strlen(SIGIL_POLICY_DEFAULT_PATTERN));
        if (v[i].name == NULL || v[i].pattern == NULL) {
            r = fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
            goto out;
        }
        memcpy(v[i].first, pat.first, sizeof pat.first);
        memcpy(v[i].rest, pat.rest, sizeof pat.rest);
        v[i].has_first = pat.has_first;
        v[i].rest_min = pat.rest_min;
        v[i].rest_max = pat.rest_max;
    }
    segments_free(p->segments, p->n_segments);
    p->segments = v;
    p->n_segments = n;
    v = NULL;
    r = 0;
out:
    segments_free(v, n);
    return r;
}

/* One allowed value: a single ID-5 path segment. */
static int
check_value(const char *value, const char **why)
{
    size_t n;
    char *tmp;
    int r;

    if (value == NULL)
        return fail(why, "policy: an allowed value is missing", SIGIL_ERR_INVALID);
    n = strnlen(value, SIGIL_SPIFFEID_MAX + 1);
    if (n > SIGIL_SPIFFEID_MAX)
        return fail(why, "policy: an allowed value is longer than any SPIFFE ID", SIGIL_ERR_RANGE);
    if (memchr(value, '/', n) != NULL)
        return fail(why, "policy: an allowed value is one path segment and may not hold '/'",
                    SIGIL_ERR_INVALID);
    if ((tmp = malloc(n + 2)) == NULL)
        return fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
    tmp[0] = '/';
    memcpy(tmp + 1, value, n);
    tmp[n + 1] = '\0';
    r = sigil_spiffeid_path_check(tmp, n + 1, why);
    free(tmp);
    return r;
}

int
sigil_policy_set_allowed(struct sigil_policy *p, const char *name, const char *const *values,
                         size_t n, const char **why)
{
    struct sigil_policy_segment *sg;
    char **v = NULL;
    size_t made = 0;
    int r;

    if (p == NULL || (sg = find_segment(p, name, NULL)) == NULL)
        return fail(why, "policy: no scheme segment has that name", SIGIL_ERR_NOTFOUND);
    if (n > SIGIL_POLICY_VALUES_MAX)
        return fail(why, "policy: more than 256 allowed values", SIGIL_ERR_RANGE);
    if (n > 0 && values == NULL)
        return fail(why, "policy: allowed values missing", SIGIL_ERR_INVALID);
    for (size_t i = 0; i < n; i++) {
        if ((r = check_value(values[i], why)) != 0)
            return r;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(values[i], values[j]) == 0)
                return fail(why, "policy: an allowed value is listed twice", SIGIL_ERR_INVALID);
        }
    }
    if (n > 0 && (v = calloc(n, sizeof *v)) == NULL)
        return fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
    for (made = 0; made < n; made++) {
        if ((v[made] = dupn(values[made], strlen(values[made]))) == NULL) {
            r = fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
            goto out;
        }
    }
    free_strv(sg->allowed, sg->n_allowed);
    sg->allowed = v;
    sg->n_allowed = n;
    v = NULL;
    r = 0;
out:
    free_strv(v, made);
    return r;
}

int
sigil_policy_set_pattern(struct sigil_policy *p, const char *name, const char *pattern,
                         const char **why)
{
    struct sigil_policy_segment *sg;
    struct pattern pat;
    char *text;
    int r;

    if (p == NULL || (sg = find_segment(p, name, NULL)) == NULL)
        return fail(why, "policy: no scheme segment has that name", SIGIL_ERR_NOTFOUND);
    if (pattern == NULL)
        return fail(why, "segment pattern: missing", SIGIL_ERR_INVALID);
    if ((r = parse_pattern(pattern, &pat, why)) != 0)
        return r;
    if ((text = dupn(pattern, strlen(pattern))) == NULL)
        return fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
    free(sg->pattern);
    sg->pattern = text;
    memcpy(sg->first, pat.first, sizeof pat.first);
    memcpy(sg->rest, pat.rest, sizeof pat.rest);
    sg->has_first = pat.has_first;
    sg->rest_min = pat.rest_min;
    sg->rest_max = pat.rest_max;
    return 0;
}

int
sigil_policy_add_exempt_prefix(struct sigil_policy *p, const char *prefix, const char **why)
{
    struct sigil_spiffeid id;
    struct sigil_spiffeid *v;
    int r;

    if (p == NULL || prefix == NULL)
        return fail(why, "policy: exempt prefix missing", SIGIL_ERR_INVALID);
    if ((r = sigil_spiffeid_parse(prefix, strnlen(prefix, SIGIL_SPIFFEID_MAX + 1), &id, why)) != 0)
        return r;
    if (!sigil_spiffeid_member_of(&id, p->trust_domain))
        return fail(why, "policy: an exempt prefix must be in the policy's trust domain",
                    SIGIL_ERR_INVALID);
    for (size_t i = 0; i < p->n_exempt; i++) {
        if (sigil_spiffeid_equal(&p->exempt[i], &id))
            return 0;
    }
    if (p->n_exempt >= SIGIL_POLICY_EXEMPT_MAX)
        return fail(why, "policy: more than 64 exempt prefixes", SIGIL_ERR_RANGE);
    if ((v = realloc(p->exempt, (p->n_exempt + 1) * sizeof *v)) == NULL)
        return fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
    v[p->n_exempt] = id;
    p->exempt = v;
    p->n_exempt++;
    return 0;
}

int
sigil_policy_set_required(struct sigil_policy *p, const char *type, const char *const *required,
                          size_t n, const char **why)
{
    struct sigil_policy_model *m, *models;
    char **keys = NULL, *mtype = NULL;
    size_t tlen, made = 0;
    int r;

    if (p == NULL || type == NULL || !name_ok(type, SIGIL_SELECTOR_TYPE_MAX, false, false))
        return fail(why, "policy: a compute model is a selector type, [a-z0-9_]{1,64}",
                    SIGIL_ERR_INVALID);
    if (n > SIGIL_POLICY_REQUIRED_MAX)
        return fail(why, "policy: more than 16 required selectors in one model", SIGIL_ERR_RANGE);
    if (n > 0 && required == NULL)
        return fail(why, "policy: required selectors missing", SIGIL_ERR_INVALID);
    tlen = strlen(type);
    for (size_t i = 0; i < n; i++) {
        const char *q = required[i];
        if (q == NULL || strncmp(q, type, tlen) != 0 || q[tlen] != ':')
            return fail(why, "policy: a required selector is \"<model type>:<key>\"",
                        SIGIL_ERR_INVALID);
        if (!name_ok(q + tlen + 1, KEY_MAX, false, true))
            return fail(why, "policy: a required selector's key must be [a-z0-9_-]{1,32}",
                        SIGIL_ERR_INVALID);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(q, required[j]) == 0)
                return fail(why, "policy: a required selector is listed twice", SIGIL_ERR_INVALID);
        }
    }
    m = find_model(p, type, tlen);
    if (m == NULL && p->n_models >= SIGIL_POLICY_MODELS_MAX)
        return fail(why, "policy: more than 16 compute models", SIGIL_ERR_RANGE);
    if (n > 0 && (keys = calloc(n, sizeof *keys)) == NULL) {
        r = fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
        goto out;
    }
    for (made = 0; made < n; made++) {
        const char *key = required[made] + tlen + 1;
        if ((keys[made] = dupn(key, strlen(key))) == NULL) {
            r = fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
            goto out;
        }
    }
    if (m == NULL) {
        if ((mtype = dupn(type, tlen)) == NULL) {
            r = fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
            goto out;
        }
        models = realloc(p->models, (p->n_models + 1) * sizeof *models);
        if (models == NULL) {
            r = fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
            goto out;
        }
        p->models = models;
        m = &p->models[p->n_models++];
        memset(m, 0, sizeof *m);
        m->type = mtype;
        m->digest_check = true;
        mtype = NULL;
    }
    free_strv(m->required, m->n_required);
    m->required = keys;
    m->n_required = n;
    keys = NULL;
    r = 0;
out:
    free(mtype);
    free_strv(keys, made);
    return r;
}

int
sigil_policy_set_digest_check(struct sigil_policy *p, const char *type, bool on, const char **why)
{
    struct sigil_policy_model *m;

    if (p == NULL || type == NULL || (m = find_model(p, type, strlen(type))) == NULL)
        return fail(why, "policy: no compute model has that selector type", SIGIL_ERR_NOTFOUND);
    m->digest_check = on;
    return 0;
}

int
sigil_policy_remove_model(struct sigil_policy *p, const char *type, const char **why)
{
    struct sigil_policy_model *m;
    size_t i;

    if (p == NULL || type == NULL || (m = find_model(p, type, strlen(type))) == NULL)
        return fail(why, "policy: no compute model has that selector type", SIGIL_ERR_NOTFOUND);
    i = (size_t)(m - p->models);
    model_free(m);
    memmove(&p->models[i], &p->models[i + 1], (p->n_models - i - 1) * sizeof *m);
    p->n_models--;
    return 0;
}

int
sigil_policy_add_discouraged(struct sigil_policy *p, const char *type_key, const char *action,
                             const char **why)
{
    struct sigil_policy_discouraged *v;
    enum sigil_policy_action act;
    const char *colon;
    char *type = NULL, *key = NULL;
    int r;

    if (action != NULL && strcmp(action, "refuse") == 0)
        act = SIGIL_POLICY_REFUSE;
    else if (action != NULL && strcmp(action, "warn") == 0)
        act = SIGIL_POLICY_WARN;
    else
        return fail(why, "policy: a discouraged selector's action is \"refuse\" or \"warn\"",
                    SIGIL_ERR_INVALID);
    if (p == NULL || type_key == NULL ||
        (colon = memchr(type_key, ':', strnlen(type_key, SIGIL_SELECTOR_TYPE_MAX + 1))) == NULL)
        return fail(why, "policy: a discouraged selector is \"<type>:<key>\"", SIGIL_ERR_INVALID);
    if ((type = dupn(type_key, (size_t)(colon - type_key))) == NULL)
        return fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
    if (!name_ok(type, SIGIL_SELECTOR_TYPE_MAX, false, false) ||
        !name_ok(colon + 1, KEY_MAX, false, true)) {
        r = fail(why,
                 "policy: a discouraged selector is \"<type>:<key>\", type [a-z0-9_]{1,64}, "
                 "key [a-z0-9_-]{1,32}",
                 SIGIL_ERR_INVALID);
        goto out;
    }
    for (size_t i = 0; i < p->n_discouraged; i++) {
        if (strcmp(p->discouraged[i].type, type) == 0 &&
            strcmp(p->discouraged[i].key, colon + 1) == 0) {
            p->discouraged[i].action = act;
            r = 0;
            goto out;
        }
    }
    if (p->n_discouraged >= SIGIL_POLICY_DISCOURAGED_MAX) {
        r = fail(why, "policy: more than 64 discouraged selectors", SIGIL_ERR_RANGE);
        goto out;
    }
    if ((key = dupn(colon + 1, strlen(colon + 1))) == NULL ||
        (v = realloc(p->discouraged, (p->n_discouraged + 1) * sizeof *v)) == NULL) {
        r = fail(why, "policy: out of memory", SIGIL_ERR_NOMEM);
        goto out;
    }
    p->discouraged = v;
    v[p->n_discouraged].type = type;
    v[p->n_discouraged].key = key;
    v[p->n_discouraged].action = act;
    p->n_discouraged++;
    type = key = NULL;
    r = 0;
out:
    free(type);
    free(key);
    return r;
}

int
sigil_policy_set_tier(struct sigil_policy *p, const char *tier, const char **why)
{
    if (p == NULL || tier == NULL)
        return fail(why, "policy: tier missing", SIGIL_ERR_INVALID);
    if (strcmp(tier, "strict") == 0)
        p->tier = SIGIL_POLICY_TIER_STRICT;
    else if (strcmp(tier, "relaxed") == 0)
        p->tier = SIGIL_POLICY_TIER_RELAXED;
    else if (strcmp(tier, "off") == 0)
        p->tier = SIGIL_POLICY_TIER_OFF;
    else
        return fail(why, "policy: tier is \"strict\", \"relaxed\" or \"off\"", SIGIL_ERR_INVALID);
    return 0;
}

static struct sigil_policy_ttl *
ttl_of(struct sigil_policy *p, const char *kind)
{
    if (kind != NULL && strcmp(kind, "x509") == 0)
        return &p->x509_ttl;
    if (kind != NULL && strcmp(kind, "jwt") == 0)
        return &p->jwt_ttl;
    return NULL;
}

int
sigil_policy_set_ttl(struct sigil_policy *p, const char *kind, int64_t min, int64_t max,
                     int64_t default_s, const char **why)
{
    struct sigil_policy_ttl *t;

    if (p == NULL || (t = ttl_of(p, kind)) == NULL)
        return fail(why, "policy: TTL kind is \"x509\" or \"jwt\"", SIGIL_ERR_INVALID);
    if (min <= 0 || min > default_s || default_s > max)
        return fail(why, "policy: TTL bounds need 0 < min <= default <= max", SIGIL_ERR_INVALID);
    if (max > SIGIL_POLICY_TTL_MAX)
        return fail(why, "policy: TTL max is over 2^31-1 seconds", SIGIL_ERR_RANGE);
    t->min = min;
    t->max = max;
    t->default_s = default_s;
    return 0;
}

static int
parse_secs(const char *s, int64_t *out, const char **why)
{
    int64_t ms;
    int r;

    if (s == NULL)
        return fail(why, "policy: TTL missing", SIGIL_ERR_INVALID);
    if ((r = sigil_duration_parse(s, &ms, why)) != 0)
        return r;
    if (ms % 1000 != 0)
        return fail(why, "policy: TTLs are whole seconds", SIGIL_ERR_INVALID);
    *out = ms / 1000;
    return 0;
}

int
sigil_policy_set_ttl_str(struct sigil_policy *p, const char *kind, const char *min, const char *max,
                         const char *default_s, const char **why)
{
    int64_t a, b, d;
    int r;

    if ((r = parse_secs(min, &a, why)) != 0 || (r = parse_secs(max, &b, why)) != 0 ||
        (r = parse_secs(default_s, &d, why)) != 0)
        return r;
    return sigil_policy_set_ttl(p, kind, a, b, d, why);
}

int
sigil_policy_init_defaults(struct sigil_policy *p, const char *td, const char **why)
{
    static const char *const scheme[] = {"environment", "platform", "team", "workload"};
    static const char *const envs[] = {"prod", "staging", "dev"};
    static const char *const platforms[] = {"gcp", "azure", "aws", "onprem"};
    static const char *const k8s[] = {"k8s:ns", "k8s:sa", "k8s:container-image"};
    static const char *const unix_[] = {"unix:uid", "unix:path", "unix:sha256"};
    static const char *const systemd[] = {"systemd:id"};
    static const char *const discouraged[] = {"k8s:pod-name", "k8s:pod-uid", "k8s:node-name",
                                              "unix:pid"};
    char exempt[sizeof "spiffe://" + SIGIL_TRUST_DOMAIN_MAX + sizeof "/sigil"];
    int r;

    if (p == NULL)
        return fail(why, "policy: missing", SIGIL_ERR_INVALID);
    memset(p, 0, sizeof *p);
    if (td == NULL)
        return fail(why, "ID-1: trust domain is empty", SIGIL_ERR_INVALID);
    if ((r = sigil_trust_domain_parse(td, strnlen(td, SIGIL_SPIFFEID_MAX + 1), p->trust_domain,
                                      why)) != 0)
        goto out;
    p->enforce_scheme = true;
    p->tier = SIGIL_POLICY_TIER_STRICT;
    p->x509_ttl = (struct sigil_policy_ttl){60, 86400, 3600};
    p->jwt_ttl = (struct sigil_policy_ttl){30, 3600, 300};
    snprintf(exempt, sizeof exempt, "spiffe://%s/sigil", p->trust_domain);
    if ((r = sigil_policy_set_scheme(p, scheme, 4, why)) != 0 ||
        (r = sigil_policy_set_allowed(p, "environment", envs, 3, why)) != 0 ||
        (r = sigil_policy_set_allowed(p, "platform", platforms, 4, why)) != 0 ||
        (r = sigil_policy_add_exempt_prefix(p, exempt, why)) != 0 ||
        (r = sigil_policy_set_required(p, "k8s", k8s, 3, why)) != 0 ||
        (r = sigil_policy_set_required(p, "unix", unix_, 3, why)) != 0 ||
        (r = sigil_policy_set_required(p, "systemd", systemd, 1, why)) != 0 ||
        (r = sigil_policy_set_digest_check(p, "systemd", false, why)) != 0)
        goto out;
    for (size_t i = 0; i < sizeof discouraged / sizeof discouraged[0]; i++) {
        if ((r = sigil_policy_add_discouraged(p, discouraged[i], "refuse", why)) != 0)
            goto out;
    }
    r = 0;
out:
    if (r != 0)
        sigil_policy_free(p);
    return r;
}

/* --- checking: the messages of one check go into one buffer, recorded as offsets (the
 * buffer moves as it grows) and turned into pointers when the check is done. */

struct check {
    const struct sigil_policy *p;
    struct sigil_buf text;
    int err; /* sticky: the first allocation failure */
    bool refused;
    const char *refusal_rule;
    size_t refusal_off;
    const char **warn_rule;
    size_t *warn_off;
    size_t n_warn, cap_warn;
    /* the message being built */
    bool cur_warn;
    const char *cur_rule;
    size_t cur_off;
};

/* Starts a finding; false when it would not be kept (a refusal after the first). */
static bool
msg_begin(struct check *c, bool warn, const char *rule)
{
    if (c->err != 0 || (!warn && c->refused))
        return false;
    c->cur_warn = warn;
    c->cur_rule = rule;
    c->cur_off = c->text.len;
    return true;
}

static void __attribute__((format(printf, 2, 3))) msg_add(struct check *c, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (c->err != 0)
        return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        c->err = SIGIL_ERR_INTERNAL;
        return;
    }
    if (sigil_buf_reserve(&c->text, (size_t)n + 1) != 0) {
        c->err = SIGIL_ERR_NOMEM;
        return;
    }
    va_start(ap, fmt);
    vsnprintf((char *)c->text.data + c->text.len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    c->text.len += (size_t)n;
}

static void
msg_addn(struct check *c, const char *s, size_t n)
{
    if (c->err == 0 && sigil_buf_append(&c->text, s, n) != 0)
        c->err = SIGIL_ERR_NOMEM;
}

static void
msg_end(struct check *c)
{
    if (c->err == 0 && sigil_buf_append(&c->text, "", 1) != 0)
        c->err = SIGIL_ERR_NOMEM;
    if (c->err != 0)
        return;
    if (!c->cur_warn) {
        c->refused = true;
        c->refusal_rule = c->cur_rule;
        c->refusal_off = c->cur_off;
        return;
    }
    if (c->n_warn == c->cap_warn) {
        size_t cap = c->cap_warn ? c->cap_warn * 2 : 4;
        const char **rules = realloc(c->warn_rule, cap * sizeof *rules);
        if (rules != NULL)
            c->warn_rule = rules;
        size_t *offs = realloc(c->warn_off, cap * sizeof *offs);
        if (offs != NULL)
            c->warn_off = offs;
        if (rules == NULL || offs == NULL) {
            c->err = SIGIL_ERR_NOMEM;
            return;
        }
        c->cap_warn = cap;
    }
    c->warn_rule[c->n_warn] = c->cur_rule;
    c->warn_off[c->n_warn] = c->cur_off;
    c->n_warn++;
}

/* Appends "spiffe://td/<seg1>/<seg2>..." (the scheme, for a fix). */
static void
msg_scheme(struct check *c)
{
    msg_add(c, "spiffe://%s", c->p->trust_domain);
    for (size_t i = 0; i < c->p->n_segments; i++)
        msg_add(c, "/<%s>", c->p->segments[i].name);
}

static bool
is_exempt(const struct sigil_policy *p, const struct sigil_spiffeid *id)
{
    for (size_t i = 0; i < p->n_exempt; i++) {
        if (sigil_spiffeid_has_prefix(id, &p->exempt[i]))
            return true;
    }
    return false;
}

static size_t
count_segments(const char *path)
{
    size_t n = 0;

    for (; *path != '\0'; path++)
        n += (*path == '/');
    return n;
}

static void
check_segment(struct check *c, const struct sigil_policy_segment *sg, const char *s, size_t len)
{
    size_t at = 0;
    enum pat_verdict v;

    if (sg->n_allowed > 0) {
        for (size_t i = 0; i < sg->n_allowed; i++) {
            if (strlen(sg->allowed[i]) == len && memcmp(sg->allowed[i], s, len) == 0)
                return;
        }
        if (!msg_begin(c, false, "policy.id.segment_value"))
            return;
        msg_add(c, "SPIFFE ID policy: %s \"%.*s\" is not allowed (use one of: ", sg->name, (int)len,
                s);
        for (size_t i = 0; i < sg->n_allowed; i++)
            msg_add(c, "%s%s", i ? ", " : "", sg->allowed[i]);
        msg_add(c, ")");
        msg_end(c);
        return;
    }
    if ((v = pattern_match(sg, s, len, &at)) == PAT_OK)
        return;
    if (!msg_begin(c, false, "policy.id.segment_pattern"))
        return;
    msg_add(c, "SPIFFE ID policy: %s \"%.*s\" does not match %s (", sg->name, (int)len, s,
            sg->pattern);
    if (v == PAT_CHAR) {
        /* Paths are case-sensitive (ID-8), so "Payments" is a different team: say so when
         * lowercase is all it takes. */
        char low[SIGIL_SPIFFEID_MAX + 1];
        size_t at2;
        for (size_t i = 0; i < len; i++)
            low[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
        if (s[at] >= 'A' && s[at] <= 'Z' && pattern_match(sg, low, len, &at2) == PAT_OK)
            msg_add(c, "path segments are case-sensitive; use \"%.*s\"", (int)len, low);
        else
            msg_add(c, "'%c' at position %zu is not allowed there; rename the segment to match",
                    s[at], at + 1);
    } else if (v == PAT_SHORT) {
        msg_add(c, "lengthen it to at least %zu characters",
                (sg->has_first ? 1 : 0) + sg->rest_min);
    } else {
        msg_add(c, "shorten it to at most %zu characters", (sg->has_first ? 1 : 0) + sg->rest_max);
    }
    msg_add(c, ")");
    msg_end(c);
}

static void
check_id(struct check *c, const struct sigil_spiffeid *id)
{
    const struct sigil_policy *p = c->p;
    const char *path = sigil_spiffeid_path(id);
    size_t n;

    if (!sigil_spiffeid_member_of(id, p->trust_domain)) {
        if (msg_begin(c, false, "policy.id.trust_domain")) {
            msg_add(c,
                    "SPIFFE ID policy: %s is not in trust domain %s (use an ID under spiffe://%s/)",
                    id->str, p->trust_domain, p->trust_domain);
            msg_end(c);
        }
        return;
    }
    if (!sigil_spiffeid_has_path(id)) {
        if (msg_begin(c, false, "policy.id.path")) {
            msg_add(c, "SPIFFE ID policy: %s has no path, and an SVID's ID needs one (X-2) (use ",
                    id->str);
            msg_scheme(c);
            msg_add(c, ")");
            msg_end(c);
        }
        return;
    }
    if (!p->enforce_scheme || is_exempt(p, id))
        return;
    if ((n = count_segments(path)) != p->n_segments) {
        if (msg_begin(c, false, "policy.id.scheme")) {
            msg_add(c, "SPIFFE ID policy: %s has %zu path segment%s, the scheme has %zu (use ",
                    id->str, n, n == 1 ? "" : "s", p->n_segments);
            msg_scheme(c);
            msg_add(c, ")");
            msg_end(c);
        }
        return;
    }
    for (size_t i = 0; i < p->n_segments && !c->refused; i++) {
        const char *s = path + 1, *end = strchr(s, '/');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        check_segment(c, &p->segments[i], s, len);
        path = s + len;
    }
}

/* Splits a selector value "key:rest" (a value without ':' is all key and has no rest). */
static void
split_value(const struct sigil_selector *sel, const char **key, size_t *klen, const char **rest,
            size_t *rlen)
{
    const char *colon = memchr(sel->value, ':', sel->value_len);

    *key = sel->value;
    *klen = colon ? (size_t)(colon - sel->value) : sel->value_len;
    *rest = colon ? colon + 1 : sel->value + sel->value_len;
    *rlen = colon ? sel->value_len - *klen - 1 : 0;
}

static bool
key_is(const char *key, size_t klen, const char *want)
{
    return strlen(want) == klen && memcmp(key, want, klen) == 0;
}

/* What to write after "add type:key:" in a fix. */
static const char *
value_hint(const char *key, bool digest)
{
    static const struct {
        const char *key, *hint;
    } hints[] = {
        {"ns", "<namespace>"}, {"sa", "<service account>"}, {"uid", "<uid>"},
        {"gid", "<gid>"},      {"path", "<absolute path>"}, {"sha256", "<64 hex>"},
        {"id", "<unit name>"},
    };
    if (strcmp(key, "container-image") == 0)
        return digest ? "<image>@sha256:<64 hex>" : "<image>";
    for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++) {
        if (strcmp(key, hints[i].key) == 0)
            return hints[i].hint;
    }
    return "<value>";
}

static void
check_required(struct check *c, const struct sigil_policy_model *m,
               const struct sigil_selector_set *set)
{
    for (size_t r = 0; r < m->n_required && !c->refused; r++) {
        const char *want = m->required[r];
        bool found = false;

        for (size_t i = 0; i < set->count && !found; i++) {
            const struct sigil_selector *sel = &set->items[i];
            const char *key, *rest;
            size_t klen, rlen;
            if (strcmp(sel->type, m->type) != 0)
                continue;
            split_value(sel, &key, &klen, &rest, &rlen);
            found = key_is(key, klen, want) && rlen > 0;
        }
        if (found || !msg_begin(c, false, "policy.selectors.required"))
            continue;
        bool digest = m->digest_check && strcmp(want, "container-image") == 0;
        msg_add(c, "selector policy: %s entries need %s:%s%s (add %s:%s:%s)", m->type, m->type,
                want, digest ? " with a digest" : "", m->type, want,
                value_hint(want, m->digest_check));
        msg_end(c);
    }
}

static bool
all_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!is_lower_hex((unsigned char)s[i]))
            return false;
    }
    return true;
}

/* k8s:container-image must be pinned: "<name>@sha256:<64 lowercase hex>". */
static void
check_image(struct check *c, const struct sigil_selector *sel, const char *img, size_t len)
{
    static const char tag[] = "@sha256:";
    const char *at = memmem(img, len, tag, sizeof tag - 1);
    size_t name_len, hex_len;

    if (at == NULL) {
        /* Suggest the same image with its tag (or other digest) swapped for a sha256. */
        const char *cut = memchr(img, '@', len);
        name_len = cut ? (size_t)(cut - img) : len;
        const char *slash = NULL;
        for (size_t i = 0; i < name_len; i++)
            if (img[i] == '/')
                slash = img + i;
        const char *from = slash ? slash : img;
        const char *colon = memchr(from, ':', name_len - (size_t)(from - img));
        if (colon != NULL)
            name_len = (size_t)(colon - img);
        if (!msg_begin(c, false, "policy.selectors.digest"))
            return;
        msg_add(c, "selector policy: %s:%s names an image without a digest (pin it: %s:", sel->type,
                sel->value, sel->type);
        msg_addn(c, sel->value, (size_t)(img - sel->value));
        if (name_len > 0)
            msg_addn(c, img, name_len);
        else
            msg_add(c, "<image>");
        msg_add(c, "@sha256:<64 hex>)");
        msg_end(c);
        return;
    }
    name_len = (size_t)(at - img);
    hex_len = len - name_len - (sizeof tag - 1);
    if (name_len > 0 && hex_len == 64 && all_lower_hex(at + sizeof tag - 1, 64))
        return;
    if (!msg_begin(c, false, "policy.selectors.digest"))
        return;
    if (name_len == 0)
        msg_add(c, "selector policy: %s:%s has no image name before the digest (use %s:", sel->type,
                sel->value, sel->type);
    else
        msg_add(c, "selector policy: %s:%s has a malformed digest (use %s:", sel->type, sel->value,
                sel->type);
    msg_addn(c, sel->value, (size_t)(img - sel->value));
    if (name_len > 0)
        msg_addn(c, img, name_len);
    else
        msg_add(c, "<image>");
    msg_add(c, "@sha256:<64 lowercase hex>)");
    msg_end(c);
}

/* Value forms of the model's selectors: digests pinned, hashes well-formed, paths absolute. */
static void
check_values(struct check *c, const struct sigil_policy_model *m,
             const struct sigil_selector_set *set)
{
    for (size_t i = 0; i < set->count && !c->refused; i++) {
        const struct sigil_selector *sel = &set->items[i];
        const char *key, *rest;
        size_t klen, rlen;

        if (strcmp(sel->type, m->type) != 0)
            continue;
        split_value(sel, &key, &klen, &rest, &rlen);
        if (m->digest_check && key_is(key, klen, "container-image")) {
            check_image(c, sel, rest, rlen);
        } else if (m->digest_check && key_is(key, klen, "sha256")) {
            if (rlen == 64 && all_lower_hex(rest, rlen))
                continue;
            if (msg_begin(c, false, "policy.selectors.digest")) {
                msg_add(c,
                        "selector policy: %s:%s is not a SHA-256 hash (use %s:sha256:<64 "
                        "lowercase hex>, as sha256sum prints it)",
                        sel->type, sel->value, sel->type);
                msg_end(c);
            }
        } else if (key_is(key, klen, "path")) {
            if (rlen > 0 && rest[0] == '/')
                continue;
            if (msg_begin(c, false, "policy.selectors.path")) {
                msg_add(c,
                        "selector policy: %s:%s is not an absolute path (use the binary's "
                        "full path: %s:path:/...)",
                        sel->type, sel->value, sel->type);
                msg_end(c);
            }
        }
    }
}

static void
check_models(struct check *c, const struct sigil_selector_set *set)
{
    const struct sigil_policy *p = c->p;
    uint32_t seen = 0;
    size_t n_seen = 0, one = 0;

    if (p->n_models == 0)
        return;
    for (size_t i = 0; i < set->count; i++) {
        const struct sigil_selector *sel = &set->items[i];
        const struct sigil_policy_model *m = find_model(p, sel->type, sel->type_len);
        if (m == NULL)
            continue;
        size_t k = (size_t)(m - p->models);
        if (!(seen & (1u << k))) {
            seen |= 1u << k;
            n_seen++;
            one = k;
        }
    }
    if (n_seen == 0) {
        if (msg_begin(c, false, "policy.selectors.model")) {
            msg_add(c, "selector policy: no selector names a compute model (add the selectors "
                       "of one of: ");
            for (size_t k = 0; k < p->n_models; k++)
                msg_add(c, "%s%s", k ? ", " : "", p->models[k].type);
            msg_add(c, "; a node alias is parented to spiffe://%s/sigil/server)", p->trust_domain);
            msg_end(c);
        }
        return;
    }
    if (n_seen > 1) {
        if (msg_begin(c, false, "policy.selectors.mixed_models")) {
            size_t done = 0;
            msg_add(c, "selector policy: one entry may not mix ");
            for (size_t k = 0; k < p->n_models; k++) {
                if (!(seen & (1u << k)))
                    continue;
                done++;
                msg_add(c, "%s%s", done == 1 ? "" : (done == n_seen ? " and " : ", "),
                        p->models[k].type);
            }
            msg_add(c, " selectors (make one entry per compute model)");
            msg_end(c);
        }
        return;
    }
    check_required(c, &p->models[one], set);
    check_values(c, &p->models[one], set);
}

/* Why the seed discourages its four selectors, and what scopes the workload instead. */
static void
discouraged_reason(const struct sigil_policy_discouraged *d, const char **why, const char **fix)
{
    static const struct {
        const char *type, *key, *why, *fix;
    } known[] = {
        {"k8s", "pod-name", "pod names change on every pod restart",
         "k8s:ns and k8s:sa scope the workload"},
        {"k8s", "pod-uid", "pod UIDs change on every pod restart",
         "k8s:ns and k8s:sa scope the workload"},
        {"k8s", "node-name", "it ties the identity to where the pod was scheduled",
         "k8s:ns and k8s:sa scope the workload"},
        {"unix", "pid", "process IDs change on every process restart",
         "unix:uid, unix:path and unix:sha256 identify the process"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strcmp(d->type, known[i].type) == 0 && strcmp(d->key, known[i].key) == 0) {
            *why = known[i].why;
            *fix = known[i].fix;
            return;
        }
    }
    *why = "this server's policy discourages it";
    *fix = NULL;
}

static void
check_discouraged(struct check *c, const struct sigil_selector_set *set)
{
    const struct sigil_policy *p = c->p;

    if (p->tier == SIGIL_POLICY_TIER_OFF)
        return;
    for (size_t i = 0; i < set->count; i++) {
        const struct sigil_selector *sel = &set->items[i];
        const char *key, *rest, *why, *fix;
        size_t klen, rlen;

        split_value(sel, &key, &klen, &rest, &rlen);
        for (size_t k = 0; k < p->n_discouraged; k++) {
            const struct sigil_policy_discouraged *d = &p->discouraged[k];
            if (strcmp(d->type, sel->type) != 0 || !key_is(key, klen, d->key))
                continue;
            bool warn = p->tier == SIGIL_POLICY_TIER_RELAXED || d->action == SIGIL_POLICY_WARN;
            if (!msg_begin(c, warn, "policy.selectors.discouraged"))
                break;
            discouraged_reason(d, &why, &fix);
            msg_add(c, "selector policy: %s:%s is discouraged: %s (remove it%s%s)", sel->type,
                    sel->value, why, fix ? "; " : "", fix ? fix : "");
            msg_end(c);
            break;
        }
    }
}

/* Writes a TTL in seconds as a duration ("1h", "90s"), or "<n>s" where that cannot be. */
static const char *
fmt_secs(int64_t s, char *buf, size_t n)
{
    if (s <= 0 || s > INT64_MAX / 1000)
        snprintf(buf, n, "%" PRId64 "s", s);
    else
        sigil_duration_format(s * 1000, buf, n);
    return buf;
}

static void
check_ttl(struct check *c, const char *rule, const char *field, int64_t v,
          const struct sigil_policy_ttl *t, int64_t *eff)
{
    char a[SIGIL_DURATION_FMT_LEN], lo[SIGIL_DURATION_FMT_LEN], hi[SIGIL_DURATION_FMT_LEN],
        def[SIGIL_DURATION_FMT_LEN];
    const char *what;

    *eff = v == 0 ? t->default_s : v;
    if (v == 0 || (v >= t->min && v <= t->max))
        return;
    if (v < 0)
        what = "is negative";
    else if (v < t->min)
        what = "is below the minimum";
    else
        what = "is above the maximum";
    if (!msg_begin(c, false, rule))
        return;
    msg_add(c, "TTL policy: %s %s %s", field, fmt_secs(v, a, sizeof a), what);
    if (v > 0)
        msg_add(c, " %s",
                v < t->min ? fmt_secs(t->min, lo, sizeof lo) : fmt_secs(t->max, hi, sizeof hi));
    msg_add(c, " (use %s to %s, or 0 for the default %s)", fmt_secs(t->min, lo, sizeof lo),
            fmt_secs(t->max, hi, sizeof hi), fmt_secs(t->default_s, def, sizeof def));
    msg_end(c);
}

/* --- node aliases */

/* The selector types Sigil's node attestors give a node (server/nodeattest_*.c): a node
 * alias matches only these, a workload never has them. */
static const char *const node_types[] = {"join_token", "x509pop"};

#define NODE_ALIAS_PATH "/sigil/node/"

static bool
is_node_type(const struct sigil_selector *sel)
{
    for (size_t i = 0; i < sizeof node_types / sizeof node_types[0]; i++) {
        if (strlen(node_types[i]) == sel->type_len &&
            memcmp(node_types[i], sel->type, sel->type_len) == 0)
            return true;
    }
    return false;
}

/* Whether id names a node alias: spiffe://<td>/sigil/node/<name>[/...]. */
static bool
is_node_alias_id(const struct sigil_policy *p, const struct sigil_spiffeid *id)
{
    const char *path = sigil_spiffeid_path(id);

    return sigil_spiffeid_member_of(id, p->trust_domain) &&
           strncmp(path, NODE_ALIAS_PATH, strlen(NODE_ALIAS_PATH)) == 0 &&
           path[strlen(NODE_ALIAS_PATH)] != '\0';
}

/* A node alias: its ID under /sigil/node/ (outside the workload scheme, so it never names a
 * workload), its selectors all from node attestation. */
static void
check_node_alias(struct check *c, const struct sigil_policy_entry *e)
{
    const struct sigil_policy *p = c->p;

    if (!sigil_spiffeid_member_of(e->spiffe_id, p->trust_domain)) {
        check_id(c, e->spiffe_id); /* the trust-domain refusal */
        return;
    }
    if (!is_node_alias_id(p, e->spiffe_id) && msg_begin(c, false, "policy.node_alias.id")) {
        msg_add(c,
                "SPIFFE ID policy: node alias %s is not under spiffe://%s" NODE_ALIAS_PATH
                " (name it spiffe://%s" NODE_ALIAS_PATH "<name>, e.g. spiffe://%s" NODE_ALIAS_PATH
                "rack-7)",
                e->spiffe_id->str, p->trust_domain, p->trust_domain, p->trust_domain);
        msg_end(c);
    }
    for (size_t i = 0; i < e->selectors->count; i++) {
        const struct sigil_selector *sel = &e->selectors->items[i];
        if (is_node_type(sel) || !msg_begin(c, false, "policy.node_alias.selectors"))
            continue;
        msg_add(c,
                "selector policy: a node alias matches node attestation selectors and %s:%s is "
                "not one (use join_token: or x509pop: selectors; to match workloads, parent the "
                "entry to an agent or a node alias instead of spiffe://%s/sigil/server)",
                sel->type, sel->value, p->trust_domain);
        msg_end(c);
        break;
    }
}

/* A workload entry: no ID of a node alias, no selector only nodes have. */
static void
check_not_node(struct check *c, const struct sigil_policy_entry *e)
{
    const struct sigil_policy *p = c->p;

    if (is_node_alias_id(p, e->spiffe_id) && msg_begin(c, false, "policy.id.node_alias")) {
        msg_add(c,
                "SPIFFE ID policy: %s is a node alias ID, and a node alias's parent is "
                "spiffe://%s/sigil/server (give it that parent, or choose an ID outside "
                "spiffe://%s" NODE_ALIAS_PATH ")",
                e->spiffe_id->str, p->trust_domain, p->trust_domain);
        msg_end(c);
    }
    for (size_t i = 0; i < e->selectors->count; i++) {
        const struct sigil_selector *sel = &e->selectors->items[i];
        if (!is_node_type(sel) || !msg_begin(c, false, "policy.selectors.node_type"))
            continue;
        msg_add(c,
                "selector policy: %s:%s is a node attestation selector, which no workload has "
                "(remove it; to group nodes, create a node alias: an entry parented to "
                "spiffe://%s/sigil/server)",
                sel->type, sel->value, p->trust_domain);
        msg_end(c);
        break;
    }
}

void
sigil_policy_result_free(struct sigil_policy_result *res)
{
    if (res == NULL)
        return;
    free(res->warnings);
    free(res->text);
    memset(res, 0, sizeof *res);
}

int
sigil_policy_check_entry(const struct sigil_policy *p, const struct sigil_policy_entry *e,
                         struct sigil_policy_result *res)
{
    struct check c;
    int r;

    if (res == NULL)
        return SIGIL_ERR_INVALID;
    memset(res, 0, sizeof *res);
    if (p == NULL || e == NULL || e->spiffe_id == NULL || e->selectors == NULL)
        return SIGIL_ERR_INVALID;
    memset(&c, 0, sizeof c);
    c.p = p;

    if (e->node_alias) {
        check_node_alias(&c, e);
    } else {
        check_id(&c, e->spiffe_id);
        check_not_node(&c, e);
    }
    if (e->parent_id != NULL && !sigil_spiffeid_member_of(e->parent_id, p->trust_domain) &&
        msg_begin(&c, false, "policy.parent.trust_domain")) {
        msg_add(&c,
                "SPIFFE ID policy: parent ID %s is not in trust domain %s (use an agent, "
                "node alias or server ID under spiffe://%s)",
                e->parent_id->str, p->trust_domain, p->trust_domain);
        msg_end(&c);
    }
    if (e->selectors->count == 0) {
        if (msg_begin(&c, false, "policy.selectors.empty")) {
            msg_add(&c, "selector policy: the entry has no selectors, so it would never match "
                        "(add the selectors that identify the workload)");
            msg_end(&c);
        }
    } else if (!e->node_alias) {
        check_models(&c, e->selectors);
    }
    check_discouraged(&c, e->selectors);
    check_ttl(&c, "policy.ttl.x509", "x509_svid_ttl", e->x509_svid_ttl, &p->x509_ttl,
              &res->x509_svid_ttl);
    check_ttl(&c, "policy.ttl.jwt", "jwt_svid_ttl", e->jwt_svid_ttl, &p->jwt_ttl,
              &res->jwt_svid_ttl);
    if ((r = c.err) != 0)
        goto out;

    if (c.n_warn > 0 && (res->warnings = calloc(c.n_warn, sizeof *res->warnings)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    res->text = (char *)c.text.data;
    c.text = (struct sigil_buf){0};
    for (size_t i = 0; i < c.n_warn; i++) {
        res->warnings[i].rule = c.warn_rule[i];
        res->warnings[i].message = res->text + c.warn_off[i];
    }
    res->n_warnings = c.n_warn;
    res->ok = !c.refused;
    if (c.refused) {
        res->rule = c.refusal_rule;
        res->message = res->text + c.refusal_off;
    }
    r = 0;
out:
    sigil_buf_free(&c.text);
    free(c.warn_rule);
    free(c.warn_off);
    if (r != 0)
        sigil_policy_result_free(res);
    return r;
}

/* --- delegation */

bool
sigil_policy_may_write(const char *const *team_prefixes, size_t n, const struct sigil_spiffeid *id)
{
    struct sigil_spiffeid prefix;

    if (team_prefixes == NULL || id == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        const char *s = team_prefixes[i];
        if (s == NULL ||
            sigil_spiffeid_parse(s, strnlen(s, SIGIL_SPIFFEID_MAX + 1), &prefix, NULL) != 0)
            continue;
        if (sigil_spiffeid_has_prefix(id, &prefix))
            return true;
    }
    return false;
}

int
sigil_policy_id_segment(const struct sigil_policy *p, const struct sigil_spiffeid *id,
                        const char *name, const char **seg, size_t *len)
{
    const char *path, *s;
    size_t idx;

    if (p == NULL || id == NULL || seg == NULL || len == NULL ||
        find_segment(p, name, &idx) == NULL || !sigil_spiffeid_member_of(id, p->trust_domain) ||
        is_exempt(p, id))
        return SIGIL_ERR_NOTFOUND;
    path = sigil_spiffeid_path(id);
    if (count_segments(path) != p->n_segments)
        return SIGIL_ERR_NOTFOUND;
    s = path + 1;
    for (size_t i = 0; i < idx; i++)
        s = strchr(s, '/') + 1;
    const char *end = strchr(s, '/');
    *seg = s;
    *len = end ? (size_t)(end - s) : strlen(s);
    return 0;
}

int
sigil_policy_id_team(const struct sigil_policy *p, const struct sigil_spiffeid *id,
                     const char **seg, size_t *len)
{
    return sigil_policy_id_segment(p, id, "team", seg, len);
}
