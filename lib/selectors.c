/* Selectors and selector sets. A set is a sorted array without duplicates, so membership
 * is a binary search, every relation is one merge walk, and the canonical text falls out of
 * printing in order. Selector text is untrusted (configs, the admin API, attestors' input):
 * every byte is checked here, without <ctype.h>. */
#include "sigil/selectors.h"
#include "sigil/utf8.h"
#include "sigil/err.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int
fail(const char **why, const char *text, int err)
{
    if (why != NULL)
        *why = text;
    return err;
}

static int
check_type(const char *t, size_t len, const char **why)
{
    if (len == 0)
        return fail(why, "selector: type is empty", SIGIL_ERR_INVALID);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return fail(why, "selector: type has an invalid character (allowed: a-z 0-9 _)",
                        SIGIL_ERR_INVALID);
    }
    if (len > SIGIL_SELECTOR_TYPE_MAX)
        return fail(why, "selector: type is longer than 64 bytes", SIGIL_ERR_RANGE);
    return 0;
}

/* Valid UTF-8 (no overlong form, surrogate or code point over U+10FFFF) without C0 or C1
 * controls or DEL. */
static int
check_value(const char *v, size_t len, const char **why)
{
    static const char *control = "selector: value has a control character";
    static const char *utf8 = "selector: value is not valid UTF-8";
    const unsigned char *p = (const unsigned char *)v;
    size_t i = 0;

    if (len == 0)
        return fail(why, "selector: value is empty", SIGIL_ERR_INVALID);
    if (len > SIGIL_SELECTOR_VALUE_MAX)
        return fail(why, "selector: value is longer than 1024 bytes", SIGIL_ERR_RANGE);
    while (i < len) {
        uint32_t cp;
        size_t n = sigil_utf8_decode(p + i, len - i, &cp);

        if (n == 0)
            return fail(why, utf8, SIGIL_ERR_INVALID);
        /* C0 controls, DEL and the C1 controls U+0080..U+009F */
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
            return fail(why, control, SIGIL_ERR_INVALID);
        i += n;
    }
    return 0;
}

static void
zero(struct sigil_selector *sel)
{
    sel->type = NULL;
    sel->value = NULL;
    sel->type_len = 0;
    sel->value_len = 0;
}

int
sigil_selector_make(const char *type, size_t type_len, const char *value, size_t value_len,
                    struct sigil_selector *out, const char **why)
{
    char *p;
    int r;

    zero(out);
    if (type == NULL)
        type_len = 0;
    if (value == NULL)
        value_len = 0;
    if ((r = check_type(type, type_len, why)) != 0 || (r = check_value(value, value_len, why)) != 0)
        return r;
    if ((p = malloc(type_len + 1 + value_len + 1)) == NULL)
        return fail(why, "selector: out of memory", SIGIL_ERR_NOMEM);
    memcpy(p, type, type_len);
    p[type_len] = '\0';
    memcpy(p + type_len + 1, value, value_len);
    p[type_len + 1 + value_len] = '\0';
    out->type = p;
    out->value = p + type_len + 1;
    out->type_len = type_len;
    out->value_len = value_len;
    return 0;
}

int
sigil_selector_parse(const char *s, size_t len, struct sigil_selector *out, const char **why)
{
    const char *colon;

    zero(out);
    if (s == NULL || len == 0)
        return fail(why, "selector: empty", SIGIL_ERR_INVALID);
    if ((colon = memchr(s, ':', len)) == NULL)
        return fail(why, "selector: missing ':' between type and value", SIGIL_ERR_INVALID);
    return sigil_selector_make(s, (size_t)(colon - s), colon + 1, len - (size_t)(colon - s) - 1,
                               out, why);
}

char *
sigil_selector_to_string(const struct sigil_selector *sel)
{
    char *s = malloc(sel->type_len + 1 + sel->value_len + 1);

    if (s == NULL)
        return NULL;
    memcpy(s, sel->type, sel->type_len);
    s[sel->type_len] = ':';
    memcpy(s + sel->type_len + 1, sel->value, sel->value_len);
    s[sel->type_len + 1 + sel->value_len] = '\0';
    return s;
}

int
sigil_selector_cmp(const struct sigil_selector *a, const struct sigil_selector *b)
{
    /* Neither field holds a NUL, and strcmp compares as unsigned char: byte-wise order. */
    int c = strcmp(a->type, b->type);

    return c != 0 ? c : strcmp(a->value, b->value);
}

void
sigil_selector_free(struct sigil_selector *sel)
{
    if (sel == NULL)
        return;
    free(sel->type);
    zero(sel);
}

/* Index of the first item not below sel; *found says whether it is equal. */
static size_t
lower_bound(const struct sigil_selector_set *set, const struct sigil_selector *sel, bool *found)
{
    size_t lo = 0, hi = set->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sigil_selector_cmp(&set->items[mid], sel) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < set->count && sigil_selector_cmp(&set->items[lo], sel) == 0;
    return lo;
}

int
sigil_selector_set_add(struct sigil_selector_set *set, const struct sigil_selector *sel,
                       const char **why)
{
    struct sigil_selector copy;
    bool found;
    size_t at;
    int r;

    if ((r = sigil_selector_make(sel->type, sel->type_len, sel->value, sel->value_len, &copy,
                                 why)) != 0)
        return r;
    at = lower_bound(set, &copy, &found);
    if (found) {
        sigil_selector_free(&copy);
        return 0;
    }
    if (set->count >= SIGIL_SELECTOR_SET_MAX) {
        sigil_selector_free(&copy);
        return fail(why, "selector set: more than 256 selectors", SIGIL_ERR_RANGE);
    }
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 8;
        if (cap > SIGIL_SELECTOR_SET_MAX)
            cap = SIGIL_SELECTOR_SET_MAX;
        struct sigil_selector *items = realloc(set->items, cap * sizeof *items);
        if (items == NULL) {
            sigil_selector_free(&copy);
            return fail(why, "selector set: out of memory", SIGIL_ERR_NOMEM);
        }
        set->items = items;
        set->cap = cap;
    }
    memmove(&set->items[at + 1], &set->items[at], (set->count - at) * sizeof *set->items);
    set->items[at] = copy;
    set->count++;
    return 0;
}

int
sigil_selector_set_add_str(struct sigil_selector_set *set, const char *s, size_t len,
                           const char **why)
{
    struct sigil_selector sel;
    int r;

    if ((r = sigil_selector_parse(s, len, &sel, why)) != 0)
        return r;
    r = sigil_selector_set_add(set, &sel, why);
    sigil_selector_free(&sel);
    return r;
}

bool
sigil_selector_set_contains(const struct sigil_selector_set *set, const struct sigil_selector *sel)
{
    bool found;

    if (sel->type == NULL || sel->value == NULL)
        return false;
    lower_bound(set, sel, &found);
    return found;
}

size_t
sigil_selector_set_count(const struct sigil_selector_set *set)
{
    return set->count;
}

const struct sigil_selector *
sigil_selector_set_at(const struct sigil_selector_set *set, size_t i)
{
    return i < set->count ? &set->items[i] : NULL;
}

bool
sigil_selector_set_equal(const struct sigil_selector_set *a, const struct sigil_selector_set *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++) {
        if (sigil_selector_cmp(&a->items[i], &b->items[i]) != 0)
            return false;
    }
    return true;
}

void
sigil_selector_set_free(struct sigil_selector_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->count; i++)
        sigil_selector_free(&set->items[i]);
    free(set->items);
    set->items = NULL;
    set->count = 0;
    set->cap = 0;
}

int
sigil_selector_set_copy(struct sigil_selector_set *dst, const struct sigil_selector_set *src)
{
    struct sigil_selector_set out = SIGIL_SELECTOR_SET_INIT;

    *dst = out;
    if (src->count == 0)
        return 0;
    if ((out.items = calloc(src->count, sizeof *out.items)) == NULL)
        return SIGIL_ERR_NOMEM;
    out.cap = src->count;
    /* src is already sorted and checked: copy in order, no search. */
    for (; out.count < src->count; out.count++) {
        const struct sigil_selector *s = &src->items[out.count];
        if (sigil_selector_make(s->type, s->type_len, s->value, s->value_len, &out.items[out.count],
                                NULL) != 0) {
            sigil_selector_set_free(&out);
            return SIGIL_ERR_NOMEM;
        }
    }
    *dst = out;
    return 0;
}

char *
sigil_selector_set_to_string(const struct sigil_selector_set *set)
{
    size_t len = 0;
    char *s, *p;

    for (size_t i = 0; i < set->count; i++)
        len += set->items[i].type_len + 1 + set->items[i].value_len + 1;
    if ((s = malloc(len ? len : 1)) == NULL)
        return NULL;
    p = s;
    for (size_t i = 0; i < set->count; i++) {
        const struct sigil_selector *sel = &set->items[i];
        if (i > 0)
            *p++ = '\n';
        memcpy(p, sel->type, sel->type_len);
        p += sel->type_len;
        *p++ = ':';
        memcpy(p, sel->value, sel->value_len);
        p += sel->value_len;
    }
    *p = '\0';
    return s;
}

int
sigil_selector_set_parse(const char *s, size_t len, struct sigil_selector_set *out,
                         const char **why)
{
    struct sigil_selector_set set = SIGIL_SELECTOR_SET_INIT;
    size_t pos = 0;
    int r = 0;

    *out = set;
    if (len > SIGIL_SELECTOR_SET_TEXT_MAX)
        return fail(why, "selector set: text is too long", SIGIL_ERR_RANGE);
    while (pos < len) {
        const char *nl = memchr(s + pos, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - (s + pos)) : len - pos;
        if (n == 0) {
            r = fail(why, "selector set: empty line", SIGIL_ERR_INVALID);
            goto out;
        }
        if ((r = sigil_selector_set_add_str(&set, s + pos, n, why)) != 0)
            goto out;
        pos += n + 1;
    }
    *out = set;
out:
    if (r != 0)
        sigil_selector_set_free(&set);
    return r;
}

/* One merge walk over two sorted sets: how many selectors they share. */
static size_t
common(const struct sigil_selector_set *a, const struct sigil_selector_set *b, bool stop_at_one)
{
    size_t i = 0, j = 0, n = 0;

    while (i < a->count && j < b->count) {
        int c = sigil_selector_cmp(&a->items[i], &b->items[j]);
        if (c < 0) {
            i++;
        } else if (c > 0) {
            j++;
        } else {
            n++;
            if (stop_at_one)
                break;
            i++;
            j++;
        }
    }
    return n;
}

bool
sigil_selectors_is_subset(const struct sigil_selector_set *a, const struct sigil_selector_set *b)
{
    return a->count > 0 && a->count <= b->count && common(a, b, false) == a->count;
}

bool
sigil_selectors_match_exact(const struct sigil_selector_set *a, const struct sigil_selector_set *b)
{
    return a->count > 0 && sigil_selector_set_equal(a, b);
}

bool
sigil_selectors_match_any(const struct sigil_selector_set *a, const struct sigil_selector_set *b)
{
    return a->count > 0 && b->count > 0 && common(a, b, true) > 0;
}

bool
sigil_selectors_match(const struct sigil_selector_set *candidate,
                      const struct sigil_selector_set *filter, enum sigil_selector_match how)
{
    if (candidate->count == 0 || filter->count == 0)
        return false;
    switch (how) {
    case SIGIL_SELECTOR_MATCH_EXACT:
        return sigil_selectors_match_exact(candidate, filter);
    case SIGIL_SELECTOR_MATCH_SUBSET:
        return sigil_selectors_is_subset(candidate, filter);
    case SIGIL_SELECTOR_MATCH_SUPERSET:
        return sigil_selectors_is_subset(filter, candidate);
    case SIGIL_SELECTOR_MATCH_ANY:
        return sigil_selectors_match_any(candidate, filter);
    }
    return false;
}
