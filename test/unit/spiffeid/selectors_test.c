/* Unit tests of selectors and selector sets: parsing good and malformed selectors, caps,
 * canonical order whatever the insert order, the canonical text and its parser, and the
 * truth tables of subset / exact / any matching, empty sets included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigil/err.h"
#include "sigil/selectors.h"

static void
expect_bad_n(const char *s, size_t len, int want, const char *why_prefix)
{
    struct sigil_selector sel;
    const char *why = NULL;
    int r = sigil_selector_parse(s, len, &sel, &why);

    if (r != want)
        fail_msg("selector \"%.*s\": got %d (%s), want %d", (int)(len > 60 ? 60 : len), s, r,
                 why ? why : "-", want);
    assert_non_null(why);
    if (strncmp(why, why_prefix, strlen(why_prefix)) != 0)
        fail_msg("selector \"%.*s\": why \"%s\", want \"%s...\"", (int)(len > 60 ? 60 : len), s,
                 why, why_prefix);
    assert_null(sel.type);
    assert_null(sel.value);
    sigil_selector_free(&sel); /* a no-op, and safe */
}

static void
expect_bad(const char *s, int want, const char *why_prefix)
{
    expect_bad_n(s, strlen(s), want, why_prefix);
}

static void
expect_good(const char *s, const char *type, const char *value)
{
    struct sigil_selector sel;
    const char *why = NULL;

    if (sigil_selector_parse(s, strlen(s), &sel, &why) != 0)
        fail_msg("selector \"%s\": %s", s, why);
    assert_string_equal(sel.type, type);
    assert_string_equal(sel.value, value);
    assert_int_equal(sel.type_len, strlen(type));
    assert_int_equal(sel.value_len, strlen(value));
    char *back = sigil_selector_to_string(&sel);
    assert_string_equal(back, s);
    free(back);
    sigil_selector_free(&sel);
    assert_null(sel.type);
}

static char *
repeat(char c, size_t n)
{
    char *s = malloc(n + 1);

    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void
test_parse_good(void **state)
{
    (void)state;
    expect_good("unix:uid:1000", "unix", "uid:1000");
    expect_good("k8s:ns:prod", "k8s", "ns:prod");
    expect_good("a:b", "a", "b");
    expect_good("k8s_psat:cluster:c1", "k8s_psat", "cluster:c1");
    expect_good("x::", "x", ":");
    expect_good("x:hello world", "x", "hello world");
    expect_good("x: leading and trailing ", "x", " leading and trailing ");
    expect_good("docker:label:com.example=a,b", "docker", "label:com.example=a,b");
    expect_good("k8s:container-image:docker.io/app@sha256:0123abcd", "k8s",
                "container-image:docker.io/app@sha256:0123abcd");
    expect_good("x:caf\xc3\xa9", "x", "caf\xc3\xa9");
    expect_good("x:\xc2\xa0nbsp", "x", "\xc2\xa0nbsp");         /* U+00A0 */
    expect_good("x:\xe2\x82\xac", "x", "\xe2\x82\xac");         /* U+20AC */
    expect_good("x:\xf0\x9f\x94\x91", "x", "\xf0\x9f\x94\x91"); /* U+1F511 */
    expect_good("x:\xf4\x8f\xbf\xbf", "x", "\xf4\x8f\xbf\xbf"); /* U+10FFFF */
    expect_good("x:\xed\x9f\xbf", "x", "\xed\x9f\xbf");         /* U+D7FF */
    expect_good("x:~!\"#$%&'()*+,-./;<=>?@[\\]^_`{|}", "x", "~!\"#$%&'()*+,-./;<=>?@[\\]^_`{|}");
}

static void
test_parse_malformed(void **state)
{
    (void)state;
    expect_bad("", SIGIL_ERR_INVALID, "selector: empty");
    expect_bad("unix", SIGIL_ERR_INVALID, "selector: missing ':'");
    expect_bad(":1000", SIGIL_ERR_INVALID, "selector: type is empty");
    expect_bad("unix:", SIGIL_ERR_INVALID, "selector: value is empty");
    expect_bad(":", SIGIL_ERR_INVALID, "selector: type is empty");
    expect_bad("Unix:uid:1000", SIGIL_ERR_INVALID, "selector: type has an invalid character");
    expect_bad("un-ix:x", SIGIL_ERR_INVALID, "selector: type has an invalid character");
    expect_bad("un ix:x", SIGIL_ERR_INVALID, "selector: type has an invalid character");
    expect_bad(" unix:x", SIGIL_ERR_INVALID, "selector: type has an invalid character");
    expect_bad("k8s.io:x", SIGIL_ERR_INVALID, "selector: type has an invalid character");
    expect_bad("caf\xc3\xa9:x", SIGIL_ERR_INVALID, "selector: type has an invalid character");
    expect_bad("unix:uid\n1000", SIGIL_ERR_INVALID, "selector: value has a control character");
    expect_bad("unix:uid:1000\n", SIGIL_ERR_INVALID, "selector: value has a control character");
    expect_bad("unix:uid:1000\r", SIGIL_ERR_INVALID, "selector: value has a control character");
    expect_bad("unix:\t", SIGIL_ERR_INVALID, "selector: value has a control character");
    expect_bad("unix:a\x7f", SIGIL_ERR_INVALID, "selector: value has a control character");
    expect_bad("unix:a\x1b[31m", SIGIL_ERR_INVALID, "selector: value has a control character");
    expect_bad("unix:\xc2\x85", SIGIL_ERR_INVALID, "selector: value has a control character");
    expect_bad("unix:\xc2\x80", SIGIL_ERR_INVALID, "selector: value has a control character");
    expect_bad("unix:\xc2\x9f", SIGIL_ERR_INVALID, "selector: value has a control character");
    expect_bad("unix:\xc3", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\xe2\x82", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\xc3(", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\x80", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\xc0\xaf", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\xc1\xbf", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\xe0\x80\xaf", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\xed\xa0\x80", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\xf0\x80\x80\xaf", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\xf4\x90\x80\x80", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\xf5\x80\x80\x80", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\xff", SIGIL_ERR_INVALID, "selector: value is not valid UTF-8");
    expect_bad("unix:\xe2\x82\xac\xf0\x9f\x94", SIGIL_ERR_INVALID, "selector: value is not valid");
    /* NULs in length-delimited input are control characters, not terminators */
    expect_bad_n("unix:a\0b", 8, SIGIL_ERR_INVALID, "selector: value has a control character");
    expect_bad_n("unix:a\0", 7, SIGIL_ERR_INVALID, "selector: value has a control character");
    expect_bad_n("un\0x:a", 6, SIGIL_ERR_INVALID, "selector: type has an invalid character");
    expect_bad_n("\0", 1, SIGIL_ERR_INVALID, "selector: missing ':'");

    struct sigil_selector sel;
    assert_int_equal(sigil_selector_parse(NULL, 0, &sel, NULL), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_selector_parse("a", 1, &sel, NULL), SIGIL_ERR_INVALID);
}

/* Every byte 0..255 as a one-byte value and as a type character. */
static void
test_byte_sweep(void **state)
{
    (void)state;
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        struct sigil_selector sel;
        char s[4] = {'t', ':', (char)c, '\0'};
        int want = c >= 0x20 && c < 0x7f ? 0 : SIGIL_ERR_INVALID;
        int r = sigil_selector_parse(s, 3, &sel, NULL);
        if (r != want)
            fail_msg("value byte 0x%02x: got %d, want %d", b, r, want);
        sigil_selector_free(&sel);

        char t[4] = {'t', (char)c, ':', 'v'};
        bool type_ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        r = sigil_selector_parse(t, 4, &sel, NULL);
        if (c == ':')
            want = 0; /* "t::v": type "t", value ":v" */
        else
            want = type_ok ? 0 : SIGIL_ERR_INVALID;
        if (r != want)
            fail_msg("type byte 0x%02x: got %d, want %d", b, r, want);
        sigil_selector_free(&sel);
    }
}

static void
test_caps(void **state)
{
    (void)state;
    struct sigil_selector sel;
    const char *why = NULL;
    char *t64 = repeat('t', 64), *t65 = repeat('t', 65);
    char *v1024 = repeat('v', 1024), *v1025 = repeat('v', 1025);

    assert_int_equal(sigil_selector_make(t64, 64, v1024, 1024, &sel, &why), 0);
    assert_int_equal(sel.type_len, 64);
    assert_int_equal(sel.value_len, 1024);
    assert_int_equal(strlen(sel.type), 64);
    assert_int_equal(strlen(sel.value), 1024);
    char *s = sigil_selector_to_string(&sel);
    assert_int_equal(strlen(s), 64 + 1 + 1024);
    sigil_selector_free(&sel);
    assert_int_equal(sigil_selector_parse(s, strlen(s), &sel, &why), 0);
    sigil_selector_free(&sel);
    free(s);

    assert_int_equal(sigil_selector_make(t65, 65, "v", 1, &sel, &why), SIGIL_ERR_RANGE);
    assert_string_equal(why, "selector: type is longer than 64 bytes");
    assert_int_equal(sigil_selector_make("t", 1, v1025, 1025, &sel, &why), SIGIL_ERR_RANGE);
    assert_string_equal(why, "selector: value is longer than 1024 bytes");
    assert_null(sel.type);
    /* the cap counts bytes, not characters: 512 two-byte characters fit, 513 do not */
    char utf[1026 + 1];
    for (int i = 0; i < 513; i++)
        memcpy(utf + 2 * i, "\xc3\xa9", 2);
    assert_int_equal(sigil_selector_make("t", 1, utf, 1024, &sel, &why), 0);
    sigil_selector_free(&sel);
    assert_int_equal(sigil_selector_make("t", 1, utf, 1026, &sel, &why), SIGIL_ERR_RANGE);
    free(t64);
    free(t65);
    free(v1024);
    free(v1025);
}

static struct sigil_selector
sel_of(const char *s)
{
    struct sigil_selector sel;
    const char *why = NULL;

    if (sigil_selector_parse(s, strlen(s), &sel, &why) != 0)
        fail_msg("selector \"%s\": %s", s, why);
    return sel;
}

static void
test_cmp_is_type_then_value(void **state)
{
    (void)state;
    /* As whole strings "a1:x" < "a:zzz" (since '1' < ':'), but by type "a" < "a1". */
    struct sigil_selector a = sel_of("a:zzz"), a1 = sel_of("a1:x"), b = sel_of("b:a"),
                          u = sel_of("a_:x"), aa = sel_of("a:zz"), hi = sel_of("a:\xc3\xa9"),
                          tilde = sel_of("a:~");
    assert_true(sigil_selector_cmp(&a, &a1) < 0);
    assert_true(sigil_selector_cmp(&a1, &a) > 0);
    assert_true(sigil_selector_cmp(&a1, &b) < 0);
    assert_true(sigil_selector_cmp(&a1, &u) < 0);     /* '1' < '_' */
    assert_true(sigil_selector_cmp(&aa, &a) < 0);     /* prefix first */
    assert_true(sigil_selector_cmp(&tilde, &hi) < 0); /* bytes compare unsigned */
    assert_int_equal(sigil_selector_cmp(&a, &a), 0);
    struct sigil_selector *all[] = {&a, &a1, &b, &u, &aa, &hi, &tilde};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sigil_selector_free(all[i]);
}

static const char *const sample[] = {
    "unix:uid:1000",
    "unix:gid:1000",
    "k8s:ns:prod",
    "k8s:sa:web",
    "a1:x",
    "a:zzz",
    "unix:path:/usr/bin/app",
    "k8s:container-image:img@sha256:00",
    "b:\xc3\xa9",
    "b:~",
};
#define NSAMPLE (sizeof sample / sizeof sample[0])
static const char canonical[] = "a:zzz\n"
                                "a1:x\n"
                                "b:~\n"
                                "b:\xc3\xa9\n"
                                "k8s:container-image:img@sha256:00\n"
                                "k8s:ns:prod\n"
                                "k8s:sa:web\n"
                                "unix:gid:1000\n"
                                "unix:path:/usr/bin/app\n"
                                "unix:uid:1000";

static void
test_set_canonical_order(void **state)
{
    (void)state;
    unsigned seed = 12345;

    for (int round = 0; round < 50; round++) {
        size_t order[NSAMPLE];
        for (size_t i = 0; i < NSAMPLE; i++)
            order[i] = i;
        for (size_t i = NSAMPLE - 1; i > 0; i--) { /* Fisher-Yates with a fixed LCG */
            seed = seed * 1103515245u + 12345u;
            size_t j = (seed >> 16) % (i + 1), tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        struct sigil_selector_set set = SIGIL_SELECTOR_SET_INIT;
        for (size_t i = 0; i < NSAMPLE; i++) {
            const char *s = sample[order[i]];
            assert_int_equal(sigil_selector_set_add_str(&set, s, strlen(s), NULL), 0);
            /* and every one again: duplicates change nothing */
            assert_int_equal(sigil_selector_set_add_str(&set, s, strlen(s), NULL), 0);
        }
        assert_int_equal(sigil_selector_set_count(&set), NSAMPLE);
        char *text = sigil_selector_set_to_string(&set);
        assert_string_equal(text, canonical);
        free(text);
        for (size_t i = 1; i < set.count; i++)
            assert_true(sigil_selector_cmp(sigil_selector_set_at(&set, i - 1),
                                           sigil_selector_set_at(&set, i)) < 0);
        assert_null(sigil_selector_set_at(&set, set.count));
        sigil_selector_set_free(&set);
        assert_int_equal(set.count, 0);
        assert_null(set.items);
    }
}

static void
test_set_contains_add_copy(void **state)
{
    (void)state;
    struct sigil_selector_set set = SIGIL_SELECTOR_SET_INIT, copy;
    const char *why = NULL;
    struct sigil_selector in = sel_of("unix:uid:1000"), out = sel_of("unix:uid:1001");

    assert_false(sigil_selector_set_contains(&set, &in));
    assert_int_equal(sigil_selector_set_add(&set, &in, &why), 0);
    assert_true(sigil_selector_set_contains(&set, &in));
    assert_false(sigil_selector_set_contains(&set, &out));
    /* the set holds its own copy */
    assert_true(set.items[0].type != in.type);
    sigil_selector_free(&in);
    assert_string_equal(set.items[0].value, "uid:1000");
    assert_false(sigil_selector_set_contains(&set, &in)); /* freed: empty, no crash */

    /* a hand-built selector is checked again */
    struct sigil_selector bad = {"Unix", "x", 4, 1};
    assert_int_equal(sigil_selector_set_add(&set, &bad, &why), SIGIL_ERR_INVALID);
    assert_string_equal(why, "selector: type has an invalid character (allowed: a-z 0-9 _)");
    struct sigil_selector lying = {"unix", "x\n", 4, 2};
    assert_int_equal(sigil_selector_set_add(&set, &lying, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_selector_set_add_str(&set, "nocolon", 7, &why), SIGIL_ERR_INVALID);
    assert_int_equal(set.count, 1);

    assert_int_equal(sigil_selector_set_add(&set, &out, &why), 0);
    assert_int_equal(sigil_selector_set_copy(&copy, &set), 0);
    assert_true(sigil_selector_set_equal(&copy, &set));
    assert_true(copy.items[0].type != set.items[0].type);
    sigil_selector_set_free(&set);
    assert_int_equal(copy.count, 2);
    assert_string_equal(copy.items[1].value, "uid:1001");
    sigil_selector_set_free(&copy);
    sigil_selector_set_free(&copy); /* twice is fine */
    sigil_selector_free(&out);

    struct sigil_selector_set empty = SIGIL_SELECTOR_SET_INIT;
    assert_int_equal(sigil_selector_set_copy(&copy, &empty), 0);
    assert_int_equal(copy.count, 0);
    assert_true(sigil_selector_set_equal(&copy, &empty));
}

static void
test_set_cap(void **state)
{
    (void)state;
    struct sigil_selector_set set = SIGIL_SELECTOR_SET_INIT;
    const char *why = NULL;
    char s[32];

    for (int i = 0; i < SIGIL_SELECTOR_SET_MAX; i++) {
        snprintf(s, sizeof s, "t:%03d", i);
        assert_int_equal(sigil_selector_set_add_str(&set, s, strlen(s), &why), 0);
    }
    assert_int_equal(set.count, SIGIL_SELECTOR_SET_MAX);
    assert_int_equal(sigil_selector_set_add_str(&set, "t:256", 5, &why), SIGIL_ERR_RANGE);
    assert_string_equal(why, "selector set: more than 256 selectors");
    assert_int_equal(set.count, SIGIL_SELECTOR_SET_MAX);
    /* one already there is no growth, so it is fine even when full */
    assert_int_equal(sigil_selector_set_add_str(&set, "t:000", 5, &why), 0);
    assert_int_equal(set.count, SIGIL_SELECTOR_SET_MAX);
    /* the canonical text of a full set parses back */
    char *text = sigil_selector_set_to_string(&set);
    struct sigil_selector_set back;
    assert_int_equal(sigil_selector_set_parse(text, strlen(text), &back, &why), 0);
    assert_true(sigil_selector_set_equal(&set, &back));
    sigil_selector_set_free(&back);
    free(text);
    sigil_selector_set_free(&set);

    /* 257 distinct lines */
    char *big = malloc(257 * 8 + 1), *p = big;
    for (int i = 0; i < 257; i++)
        p += sprintf(p, "t:%03d\n", i);
    assert_int_equal(sigil_selector_set_parse(big, strlen(big), &back, &why), SIGIL_ERR_RANGE);
    assert_int_equal(back.count, 0);
    assert_null(back.items);
    free(big);

    /* many repeats of one line stay one selector, up to the text cap */
    size_t n = SIGIL_SELECTOR_SET_TEXT_MAX / 4;
    big = malloc(n * 4 + 8);
    for (size_t i = 0; i < n; i++)
        memcpy(big + 4 * i, "a:b\n", 4);
    assert_int_equal(sigil_selector_set_parse(big, n * 4, &back, &why), 0);
    assert_int_equal(back.count, 1);
    sigil_selector_set_free(&back);
    memcpy(big + n * 4, "a:b\n", 4);
    assert_int_equal(sigil_selector_set_parse(big, n * 4 + 4, &back, &why), SIGIL_ERR_RANGE);
    assert_string_equal(why, "selector set: text is too long");
    free(big);
}

static void
test_set_text(void **state)
{
    (void)state;
    struct sigil_selector_set set, again;
    const char *why = NULL;

#define SP(lit) sigil_selector_set_parse(lit, sizeof(lit) - 1, &set, &why)
    assert_int_equal(SP(""), 0);
    assert_int_equal(set.count, 0);
    char *text = sigil_selector_set_to_string(&set);
    assert_string_equal(text, "");
    free(text);

    assert_int_equal(SP("k8s:ns:prod\nunix:uid:0\nk8s:ns:prod\n"), 0);
    assert_int_equal(set.count, 2);
    text = sigil_selector_set_to_string(&set);
    assert_string_equal(text, "k8s:ns:prod\nunix:uid:0");
    assert_int_equal(sigil_selector_set_parse(text, strlen(text), &again, &why), 0);
    assert_true(sigil_selector_set_equal(&set, &again));
    sigil_selector_set_free(&again);
    free(text);
    sigil_selector_set_free(&set);

    assert_int_equal(SP("a:b"), 0);
    assert_int_equal(set.count, 1);
    sigil_selector_set_free(&set);

    assert_int_equal(SP("\n"), SIGIL_ERR_INVALID);
    assert_string_equal(why, "selector set: empty line");
    assert_int_equal(SP("a:b\n\nc:d"), SIGIL_ERR_INVALID);
    assert_string_equal(why, "selector set: empty line");
    assert_int_equal(SP("a:b\n\n"), SIGIL_ERR_INVALID);
    assert_int_equal(SP("\na:b"), SIGIL_ERR_INVALID);
    assert_int_equal(SP("a:b\r\nc:d"), SIGIL_ERR_INVALID);
    assert_string_equal(why, "selector: value has a control character");
    assert_int_equal(SP("a:b,c:d"), 0); /* one selector, value "b,c:d" */
    assert_int_equal(set.count, 1);
    assert_string_equal(set.items[0].value, "b,c:d");
    sigil_selector_set_free(&set);
    assert_int_equal(SP("a:b\nBad:x"), SIGIL_ERR_INVALID);
    assert_int_equal(set.count, 0);
    assert_null(set.items);
    assert_int_equal(SP("a:b\0\nc:d"), SIGIL_ERR_INVALID);
#undef SP
}

/* The three selectors a, b, c; a set is a 3-bit mask of them. */
static void
set_of_mask(unsigned mask, struct sigil_selector_set *set)
{
    static const char *const names[] = {"unix:uid:1000", "unix:path:/bin/app", "k8s:ns:prod"};

    *set = (struct sigil_selector_set)SIGIL_SELECTOR_SET_INIT;
    for (unsigned i = 0; i < 3; i++) {
        if (mask & (1u << i))
            assert_int_equal(sigil_selector_set_add_str(set, names[i], strlen(names[i]), NULL), 0);
    }
}

static void
test_truth_tables(void **state)
{
    (void)state;
    struct sigil_selector_set s[8];

    for (unsigned m = 0; m < 8; m++)
        set_of_mask(m, &s[m]);
    for (unsigned x = 0; x < 8; x++) {
        for (unsigned y = 0; y < 8; y++) {
            bool subset = x != 0 && (x & ~y) == 0;
            bool superset = y != 0 && x != 0 && (y & ~x) == 0;
            bool exact = x != 0 && x == y;
            bool any = (x & y) != 0;
            if (sigil_selectors_is_subset(&s[x], &s[y]) != subset ||
                sigil_selectors_match_exact(&s[x], &s[y]) != exact ||
                sigil_selectors_match_any(&s[x], &s[y]) != any ||
                sigil_selectors_match(&s[x], &s[y], SIGIL_SELECTOR_MATCH_SUBSET) != subset ||
                sigil_selectors_match(&s[x], &s[y], SIGIL_SELECTOR_MATCH_SUPERSET) != superset ||
                sigil_selectors_match(&s[x], &s[y], SIGIL_SELECTOR_MATCH_EXACT) != exact ||
                sigil_selectors_match(&s[x], &s[y], SIGIL_SELECTOR_MATCH_ANY) != any)
                fail_msg("sets %u and %u: wrong relation", x, y);
            assert_false(sigil_selectors_match(&s[x], &s[y], (enum sigil_selector_match)99));
            assert_int_equal(sigil_selector_set_equal(&s[x], &s[y]), x == y);
        }
    }
    /* The empty set never matches, spelled out. */
    struct sigil_selector_set *e = &s[0], *a = &s[1];
    assert_false(sigil_selectors_is_subset(e, e));
    assert_false(sigil_selectors_is_subset(e, a));
    assert_false(sigil_selectors_is_subset(a, e));
    assert_false(sigil_selectors_match_exact(e, e));
    assert_false(sigil_selectors_match_any(e, e));
    assert_false(sigil_selectors_match_any(a, e));
    assert_true(sigil_selector_set_equal(e, e)); /* equality is not matching */
    for (unsigned m = 0; m < 8; m++)
        sigil_selector_set_free(&s[m]);
}

static void
test_workload_matching(void **state)
{
    (void)state;
    struct sigil_selector_set entry, workload, other;
    const char *why = NULL;
    static const char e[] = "unix:uid:1000\nunix:path:/usr/bin/app";
    static const char w[] = "unix:gid:1000\nunix:path:/usr/bin/app\nunix:uid:1000\n"
                            "unix:sha256:00ff";
    static const char o[] = "unix:uid:1000\nunix:path:/usr/bin/other";

    assert_int_equal(sigil_selector_set_parse(e, strlen(e), &entry, &why), 0);
    assert_int_equal(sigil_selector_set_parse(w, strlen(w), &workload, &why), 0);
    assert_int_equal(sigil_selector_set_parse(o, strlen(o), &other, &why), 0);
    /* AND: every selector of the entry must be the workload's */
    assert_true(sigil_selectors_is_subset(&entry, &workload));
    assert_false(sigil_selectors_is_subset(&entry, &other));
    assert_false(sigil_selectors_is_subset(&workload, &entry));
    assert_true(sigil_selectors_match_any(&entry, &other));
    assert_false(sigil_selectors_match_exact(&entry, &workload));
    assert_true(sigil_selectors_match(&entry, &workload, SIGIL_SELECTOR_MATCH_SUBSET));
    assert_true(sigil_selectors_match(&workload, &entry, SIGIL_SELECTOR_MATCH_SUPERSET));
    sigil_selector_set_free(&entry);
    sigil_selector_set_free(&workload);
    sigil_selector_set_free(&other);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_byte_sweep),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_cmp_is_type_then_value),
        cmocka_unit_test(test_set_canonical_order),
        cmocka_unit_test(test_set_contains_add_copy),
        cmocka_unit_test(test_set_cap),
        cmocka_unit_test(test_set_text),
        cmocka_unit_test(test_truth_tables),
        cmocka_unit_test(test_workload_matching),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
