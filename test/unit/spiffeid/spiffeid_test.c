/* Unit tests of SPIFFE ID and trust domain parsing: every example of checklist ID-1..ID-7,
 * the H-1 uppercase decision, byte sweeps of both character sets, exact length limits and
 * the helpers (from_parts, member_of, has_prefix, equal). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sigil/err.h"
#include "sigil/spiffeid.h"

/* Parses s (strlen) and checks the result: 0, or the error code with a why that starts
 * with rule (e.g. "ID-5:"). */
static void
expect_n(const char *s, size_t len, int want, const char *rule)
{
    struct sigil_spiffeid id;
    const char *why = NULL;
    int r = sigil_spiffeid_parse(s, len, &id, &why);

    if (r != want)
        fail_msg("parse \"%.*s\" (%zu bytes): got %d (%s), want %d", (int)(len > 80 ? 80 : len), s,
                 len, r, why ? why : "-", want);
    if (want == 0) {
        assert_int_equal(id.len, len);
        assert_memory_equal(id.str, s, len);
        assert_int_equal(id.str[len], '\0');
        return;
    }
    assert_non_null(why);
    if (strncmp(why, rule, strlen(rule)) != 0)
        fail_msg("parse \"%.*s\": why \"%s\" does not start with \"%s\"",
                 (int)(len > 80 ? 80 : len), s, why, rule);
    /* a failed parse leaves nothing behind */
    assert_int_equal(id.len, 0);
    assert_int_equal(id.str[0], '\0');
    assert_int_equal(id.td[0], '\0');
}

static void
expect(const char *s, int want, const char *rule)
{
    expect_n(s, strlen(s), want, rule);
}

static void
ok(const char *s)
{
    expect(s, 0, NULL);
}

static struct sigil_spiffeid
must(const char *s)
{
    struct sigil_spiffeid id;
    const char *why = NULL;

    if (sigil_spiffeid_parse(s, strlen(s), &id, &why) != 0)
        fail_msg("parse \"%s\": %s", s, why);
    return id;
}

static void
test_id1_scheme_td_query_fragment(void **state)
{
    (void)state;
    expect("spiffe://", SIGIL_ERR_INVALID, "ID-1:");
    expect("spiffe:///a", SIGIL_ERR_INVALID, "ID-1:");
    expect("spiffe://td/a?x=1", SIGIL_ERR_INVALID, "ID-1: query");
    expect("spiffe://td/a#f", SIGIL_ERR_INVALID, "ID-1: fragment");
    expect("spiffe:/td", SIGIL_ERR_INVALID, "ID-1:");
    expect("spiffe://td?x=1", SIGIL_ERR_INVALID, "ID-1: query");
    expect("spiffe://td#f", SIGIL_ERR_INVALID, "ID-1: fragment");
    expect("spiffe://td/?", SIGIL_ERR_INVALID, "ID-1: query");
    expect("", SIGIL_ERR_INVALID, "ID-1:");
    expect("spiffe", SIGIL_ERR_INVALID, "ID-1:");
    expect("spiffe:", SIGIL_ERR_INVALID, "ID-1:");
    expect("spiffe:td", SIGIL_ERR_INVALID, "ID-1:");
    expect("https://td/a", SIGIL_ERR_INVALID, "ID-1:");
    expect("spif://td/a", SIGIL_ERR_INVALID, "ID-1:");
    expect(" spiffe://td/a", SIGIL_ERR_INVALID, "ID-1:");
    expect("td/a", SIGIL_ERR_INVALID, "ID-1:");

    struct sigil_spiffeid id;
    assert_int_equal(sigil_spiffeid_parse(NULL, 0, &id, NULL), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_spiffeid_parse("spiffe://", 9, &id, NULL), SIGIL_ERR_INVALID);
}

static void
test_id2_userinfo_port(void **state)
{
    (void)state;
    expect("spiffe://u@td/a", SIGIL_ERR_INVALID, "ID-2: userinfo");
    expect("spiffe://td:8080/a", SIGIL_ERR_INVALID, "ID-2: port");
    expect("spiffe://u:p@td/a", SIGIL_ERR_INVALID, "ID-2:");
    expect("spiffe://td:/a", SIGIL_ERR_INVALID, "ID-2: port");
    expect("spiffe://td:443", SIGIL_ERR_INVALID, "ID-2: port");
    expect("spiffe://@td", SIGIL_ERR_INVALID, "ID-2: userinfo");
}

static void
test_id3_trust_domain_charset(void **state)
{
    (void)state;
    expect("spiffe://Td/a", SIGIL_ERR_INVALID, "ID-3:");
    expect("spiffe://t%64/a", SIGIL_ERR_INVALID, "ID-3: percent");
    expect("spiffe://t\xc3\xa9/a", SIGIL_ERR_INVALID, "ID-3:");
    expect("spiffe://\xff", SIGIL_ERR_INVALID, "ID-3:");
    expect("spiffe://[::1]/a", SIGIL_ERR_INVALID, "ID-3:");
    expect("spiffe://td a/a", SIGIL_ERR_INVALID, "ID-3:");
    expect("spiffe://td+a/a", SIGIL_ERR_INVALID, "ID-3:");
    expect("spiffe://td\\a", SIGIL_ERR_INVALID, "ID-3:");
}

static void
test_id4_no_ip_or_dns_rules(void **state)
{
    (void)state;
    ok("spiffe://1.2.3.4/x");
    ok("spiffe://a_b.example");
    ok("spiffe://example..org/p");
    ok("spiffe://-example.org/p");
    ok("spiffe://example.org./p");
    ok("spiffe://.");
    ok("spiffe://..");
    ok("spiffe://999.999.999.999");
    ok("spiffe://_");
}

static void
test_id5_path(void **state)
{
    (void)state;
    expect("spiffe://td/a//b", SIGIL_ERR_INVALID, "ID-5: path segment is empty");
    expect("spiffe://td//", SIGIL_ERR_INVALID, "ID-5: path segment is empty");
    expect("spiffe://td//a", SIGIL_ERR_INVALID, "ID-5: path segment is empty");
    expect("spiffe://td/a/./b", SIGIL_ERR_INVALID, "ID-5:");
    expect("spiffe://td/a/../b", SIGIL_ERR_INVALID, "ID-5:");
    expect("spiffe://td/..", SIGIL_ERR_INVALID, "ID-5:");
    expect("spiffe://td/.", SIGIL_ERR_INVALID, "ID-5:");
    expect("spiffe://td/a/.", SIGIL_ERR_INVALID, "ID-5:");
    expect("spiffe://td/a/", SIGIL_ERR_INVALID, "ID-5: path has a trailing");
    expect("spiffe://td/", SIGIL_ERR_INVALID, "ID-5: path has a trailing");
    expect("spiffe://td/%41", SIGIL_ERR_INVALID, "ID-5: percent");
    expect("spiffe://td/a!b", SIGIL_ERR_INVALID, "ID-5:");
    expect("spiffe://td/a@b", SIGIL_ERR_INVALID, "ID-5:");
    expect("spiffe://td/a:b", SIGIL_ERR_INVALID, "ID-5:");
    expect("spiffe://td/a b", SIGIL_ERR_INVALID, "ID-5:");
    expect("spiffe://td/\xc3\xa9", SIGIL_ERR_INVALID, "ID-5:");
    ok("spiffe://td/.a");
    ok("spiffe://td/..a");
    ok("spiffe://td/...");
    ok("spiffe://td/a.");
    ok("spiffe://td/a/b/c");
    ok("spiffe://td/A-Z_a.z/0-9");
    ok("spiffe://td/-/_/...");
}

static void
test_id6_path_optional(void **state)
{
    (void)state;
    struct sigil_spiffeid id = must("spiffe://td");
    assert_false(sigil_spiffeid_has_path(&id));
    assert_string_equal(sigil_spiffeid_path(&id), "");
    assert_string_equal(id.td, "td");
    assert_int_equal(id.path_off, id.len);

    id = must("spiffe://example.org/ns/prod/sa/web");
    assert_true(sigil_spiffeid_has_path(&id));
    assert_string_equal(sigil_spiffeid_path(&id), "/ns/prod/sa/web");
    assert_string_equal(id.td, "example.org");
    assert_string_equal(id.str, "spiffe://example.org/ns/prod/sa/web");
    assert_int_equal(id.len, strlen(id.str));
    assert_int_equal(id.path_off, strlen("spiffe://example.org"));
}

/* A valid ID of exactly n bytes (n >= 21): td "example.org", path of 'a' segments. */
static char *
id_of_len(size_t n)
{
    char *s = malloc(n + 1);
    size_t head = strlen("spiffe://example.org");

    assert_non_null(s);
    memcpy(s, "spiffe://example.org", head);
    for (size_t i = head; i < n; i++)
        s[i] = (i - head) % 64 == 0 ? '/' : 'a';
    if (s[n - 1] == '/')
        s[n - 1] = 'b', s[n - 2] = '/', s[n - 3] = 'a'; /* never end on '/' */
    s[n] = '\0';
    return s;
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
test_id7_lengths(void **state)
{
    (void)state;
    struct sigil_spiffeid id;
    const char *why = NULL;

    for (size_t n = 2040; n <= 2048; n++) {
        char *s = id_of_len(n);
        expect(s, 0, NULL);
        free(s);
    }
    char *s = id_of_len(2049);
    expect(s, SIGIL_ERR_RANGE, "ID-7:");
    free(s);
    s = id_of_len(100000);
    expect(s, SIGIL_ERR_RANGE, "ID-7:");
    free(s);

    /* trust domain: 255 bytes fine, 256 over */
    char *td255 = repeat('a', 255), *td256 = repeat('a', 256);
    assert_int_equal(sigil_trust_domain_check(td255, 255, NULL), 0);
    assert_int_equal(sigil_trust_domain_check(td256, 256, &why), SIGIL_ERR_RANGE);
    assert_true(strncmp(why, "ID-7:", 5) == 0);
    char buf[600];
    snprintf(buf, sizeof buf, "spiffe://%s/x", td255);
    ok(buf);
    assert_int_equal(sigil_spiffeid_parse(buf, strlen(buf), &id, NULL), 0);
    assert_int_equal(strlen(id.td), 255);
    snprintf(buf, sizeof buf, "spiffe://%s", td255);
    ok(buf);
    snprintf(buf, sizeof buf, "spiffe://%s/x", td256);
    expect(buf, SIGIL_ERR_RANGE, "ID-7:");
    snprintf(buf, sizeof buf, "spiffe://%s", td256);
    expect(buf, SIGIL_ERR_RANGE, "ID-7:");

    /* the longest possible ID: a 255-byte trust domain and a path filling up to 2048 */
    char *path = repeat('p', 2048 - 9 - 255);
    path[0] = '/';
    assert_int_equal(sigil_spiffeid_from_parts(td255, path, &id, &why), 0);
    assert_int_equal(id.len, 2048);
    assert_int_equal(strlen(id.str), 2048);
    assert_int_equal(strlen(id.td), 255);
    struct sigil_spiffeid again;
    assert_int_equal(sigil_spiffeid_parse(id.str, id.len, &again, NULL), 0);
    assert_true(sigil_spiffeid_equal(&id, &again));
    free(path);
    path = repeat('p', 2048 - 9 - 255 + 1);
    path[0] = '/';
    assert_int_equal(sigil_spiffeid_from_parts(td255, path, &id, &why), SIGIL_ERR_RANGE);
    assert_true(strncmp(why, "ID-7:", 5) == 0);
    assert_int_equal(id.len, 0);
    free(path);
    assert_int_equal(sigil_spiffeid_from_parts(td256, "", &id, &why), SIGIL_ERR_RANGE);
    free(td255);
    free(td256);
}

static void
test_id8_uppercase(void **state)
{
    (void)state;
    /* H-1: the scheme and trust domain are never accepted in uppercase (as go-spiffe). */
    expect("SPIFFE://td/a", SIGIL_ERR_INVALID, "ID-8:");
    expect("Spiffe://td/a", SIGIL_ERR_INVALID, "ID-8:");
    expect("spiffE://td", SIGIL_ERR_INVALID, "ID-8:");
    expect("sPiffe://td/a", SIGIL_ERR_INVALID, "ID-8:");
    expect("spiffe://TD/a", SIGIL_ERR_INVALID, "ID-3: trust domain must be lowercase");
    expect("spiffe://example.Org", SIGIL_ERR_INVALID, "ID-3: trust domain must be lowercase");
    expect("SPIFFE://EXAMPLE.ORG", SIGIL_ERR_INVALID, "ID-8:");
    /* the path is case-sensitive and kept as it is */
    struct sigil_spiffeid upper = must("spiffe://td/A"), lower = must("spiffe://td/a");
    assert_string_equal(sigil_spiffeid_path(&upper), "/A");
    assert_false(sigil_spiffeid_equal(&upper, &lower));
}

/* Every byte, as a trust domain character and as a path character. */
static void
test_byte_sweep(void **state)
{
    (void)state;
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        bool td_ok =
            (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
        bool path_ok = td_ok || (c >= 'A' && c <= 'Z');
        const char *why = NULL;
        char s[32];
        int r;

        /* bare trust domain "x?y" */
        char td[3] = {'x', (char)c, 'y'};
        r = sigil_trust_domain_check(td, 3, &why);
        if (td_ok) {
            assert_int_equal(r, 0);
        } else {
            if (r != SIGIL_ERR_INVALID)
                fail_msg("trust domain byte 0x%02x: got %d", b, r);
            /* '@' ':' '?' '#' would start userinfo, port, query, fragment: ID-2 / ID-1 */
            const char *rule = c == '@' || c == ':'   ? "ID-2:"
                               : c == '?' || c == '#' ? "ID-1:"
                                                      : "ID-3:";
            if (strncmp(why, rule, 5) != 0)
                fail_msg("trust domain byte 0x%02x: why \"%s\", want %s", b, why, rule);
        }

        /* the same byte inside an ID's trust domain: "spiffe://x?y/p" */
        memcpy(s, "spiffe://x\0y/p", 14);
        s[10] = (char)c;
        if (td_ok || c == '/') /* '/' ends the trust domain: "spiffe://x/y/p" is valid */
            expect_n(s, 14, 0, NULL);
        else
            expect_n(s, 14, SIGIL_ERR_INVALID,
                     c == '@' || c == ':'   ? "ID-2:"
                     : c == '?' || c == '#' ? "ID-1:"
                                            : "ID-3:");

        /* inside a path segment: "spiffe://td/a?b" */
        memcpy(s, "spiffe://td/a\0b", 15);
        s[13] = (char)c;
        if (path_ok || c == '/')
            expect_n(s, 15, 0, NULL);
        else
            expect_n(s, 15, SIGIL_ERR_INVALID, c == '?' || c == '#' ? "ID-1:" : "ID-5:");

        /* as a whole one-byte segment: "spiffe://td/?" */
        memcpy(s, "spiffe://td/\0", 13);
        s[12] = (char)c;
        if (path_ok && c != '.')
            expect_n(s, 13, 0, NULL);
        else
            expect_n(s, 13, SIGIL_ERR_INVALID, c == '?' || c == '#' ? "ID-1:" : "ID-5:");

        /* as a whole trust domain: "spiffe://?" */
        memcpy(s, "spiffe://\0", 10);
        s[9] = (char)c;
        if (td_ok)
            expect_n(s, 10, 0, NULL);
        else if (c == '/')
            expect_n(s, 10, SIGIL_ERR_INVALID, "ID-1:");
        else
            expect_n(s, 10, SIGIL_ERR_INVALID,
                     c == '@' || c == ':'   ? "ID-2:"
                     : c == '?' || c == '#' ? "ID-1:"
                                            : "ID-3:");
    }
}

static void
test_byte_sweep_slash_in_td(void **state)
{
    (void)state;
    /* The sweep's '/' inside the trust domain makes "spiffe://x/y/p": trust domain "x". */
    struct sigil_spiffeid id = must("spiffe://x/y/p");
    assert_string_equal(id.td, "x");
    assert_string_equal(sigil_spiffeid_path(&id), "/y/p");
}

static void
test_embedded_nul(void **state)
{
    (void)state;
    expect_n("spiffe://td\0x/a", 15, SIGIL_ERR_INVALID, "ID-3:");
    expect_n("spiffe://td/a\0b", 15, SIGIL_ERR_INVALID, "ID-5:");
    /* a NUL right after a valid ID: strlen would stop there, len must not */
    expect_n("spiffe://td/a\0", 14, SIGIL_ERR_INVALID, "ID-5:");
    expect_n("spiffe://td\0", 12, SIGIL_ERR_INVALID, "ID-3:");
    expect_n("\0spiffe://td", 12, SIGIL_ERR_INVALID, "ID-1:");
    assert_int_equal(sigil_trust_domain_check("td\0", 3, NULL), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_spiffeid_path_check("/a\0", 3, NULL), SIGIL_ERR_INVALID);
    char out[SIGIL_TRUST_DOMAIN_MAX + 1];
    assert_int_equal(sigil_trust_domain_parse("td\0x", 4, out, NULL), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_trust_domain_parse("spiffe://td\0", 12, out, NULL), SIGIL_ERR_INVALID);
}

static void
test_trust_domain_parse(void **state)
{
    (void)state;
    char out[SIGIL_TRUST_DOMAIN_MAX + 1];
    const char *why = NULL;

#define TDP(s) sigil_trust_domain_parse(s, strlen(s), out, &why)
    assert_int_equal(TDP("example.org"), 0);
    assert_string_equal(out, "example.org");
    assert_int_equal(TDP("spiffe://example.org"), 0);
    assert_string_equal(out, "example.org");
    assert_int_equal(TDP("spiffe://example.org/a"), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-6:", 5) == 0);
    assert_string_equal(out, "");
    assert_int_equal(TDP("Spiffe://example.org"), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-8:", 5) == 0);
    assert_int_equal(TDP("spiffe:/example.org"), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-1:", 5) == 0);
    assert_int_equal(TDP("spiffe://"), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-1:", 5) == 0);
    assert_int_equal(TDP(""), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-1:", 5) == 0);
    assert_int_equal(TDP("example.org:8080"), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-2:", 5) == 0);
    assert_int_equal(TDP("EXAMPLE.org"), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-3:", 5) == 0);
    assert_int_equal(TDP("example.org/a"), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-3:", 5) == 0);
    assert_int_equal(TDP("spiffe://example.org/"), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-5:", 5) == 0);
#undef TDP
    assert_int_equal(sigil_trust_domain_check("", 0, &why), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-1:", 5) == 0);
    assert_int_equal(sigil_trust_domain_check(NULL, 0, &why), SIGIL_ERR_INVALID);
}

static void
test_path_check(void **state)
{
    (void)state;
    const char *why = NULL;

#define PC(s) sigil_spiffeid_path_check(s, strlen(s), &why)
    assert_int_equal(PC(""), 0);
    assert_int_equal(PC("/a"), 0);
    assert_int_equal(PC("/a/B/.c"), 0);
    assert_int_equal(PC("a"), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-5:", 5) == 0);
    assert_int_equal(PC("/"), SIGIL_ERR_INVALID);
    assert_int_equal(PC("/a//b"), SIGIL_ERR_INVALID);
    assert_int_equal(PC("/a/.."), SIGIL_ERR_INVALID);
#undef PC
    assert_int_equal(sigil_spiffeid_path_check(NULL, 0, NULL), 0);
    char *big = repeat('a', 2048);
    big[0] = '/';
    assert_int_equal(sigil_spiffeid_path_check(big, 2048, &why), SIGIL_ERR_RANGE);
    free(big);
}

static void
test_from_parts(void **state)
{
    (void)state;
    struct sigil_spiffeid id;
    const char *why = NULL;

    assert_int_equal(sigil_spiffeid_from_parts("example.org", "/a/b", &id, &why), 0);
    assert_string_equal(id.str, "spiffe://example.org/a/b");
    assert_string_equal(id.td, "example.org");
    assert_string_equal(sigil_spiffeid_path(&id), "/a/b");
    struct sigil_spiffeid parsed = must("spiffe://example.org/a/b");
    assert_true(sigil_spiffeid_equal(&id, &parsed));
    assert_int_equal(id.path_off, parsed.path_off);
    assert_int_equal(id.len, parsed.len);

    assert_int_equal(sigil_spiffeid_from_parts("example.org", "", &id, &why), 0);
    assert_string_equal(id.str, "spiffe://example.org");
    assert_false(sigil_spiffeid_has_path(&id));
    assert_int_equal(sigil_spiffeid_from_parts("example.org", NULL, &id, &why), 0);
    assert_string_equal(id.str, "spiffe://example.org");

    assert_int_equal(sigil_spiffeid_from_parts("Example.org", "/a", &id, &why), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-3:", 5) == 0);
    assert_int_equal(id.len, 0);
    assert_int_equal(sigil_spiffeid_from_parts("", "/a", &id, &why), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-1:", 5) == 0);
    assert_int_equal(sigil_spiffeid_from_parts(NULL, "/a", &id, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_spiffeid_from_parts("td:1", "/a", &id, &why), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-2:", 5) == 0);
    assert_int_equal(sigil_spiffeid_from_parts("td", "a", &id, &why), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-5:", 5) == 0);
    assert_int_equal(sigil_spiffeid_from_parts("td", "/a/", &id, &why), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-5:", 5) == 0);
    assert_int_equal(sigil_spiffeid_from_parts("td", "/a?b", &id, &why), SIGIL_ERR_INVALID);
    assert_true(strncmp(why, "ID-1:", 5) == 0);
    assert_int_equal(sigil_spiffeid_from_parts("td", "/.", &id, &why), SIGIL_ERR_INVALID);
}

static void
test_member_of(void **state)
{
    (void)state;
    struct sigil_spiffeid id = must("spiffe://example.org/a");
    assert_true(sigil_spiffeid_member_of(&id, "example.org"));
    assert_false(sigil_spiffeid_member_of(&id, "example.or"));
    assert_false(sigil_spiffeid_member_of(&id, "example.org.evil"));
    assert_false(sigil_spiffeid_member_of(&id, "EXAMPLE.ORG"));
    assert_false(sigil_spiffeid_member_of(&id, "spiffe://example.org"));
    assert_false(sigil_spiffeid_member_of(&id, ""));
    assert_false(sigil_spiffeid_member_of(&id, NULL));
    struct sigil_spiffeid root = must("spiffe://example.org");
    assert_true(sigil_spiffeid_member_of(&root, "example.org"));
    struct sigil_spiffeid zero;
    memset(&zero, 0, sizeof zero);
    assert_false(sigil_spiffeid_member_of(&zero, ""));
}

static void
test_has_prefix(void **state)
{
    (void)state;
    struct sigil_spiffeid td = must("spiffe://td"), a = must("spiffe://td/a"),
                          ab = must("spiffe://td/ab"), a_b = must("spiffe://td/a/b"),
                          tdx = must("spiffe://tdx/a"), other = must("spiffe://other/a");

    assert_true(sigil_spiffeid_has_prefix(&a, &a));
    assert_true(sigil_spiffeid_has_prefix(&a, &td));
    assert_true(sigil_spiffeid_has_prefix(&td, &td));
    assert_true(sigil_spiffeid_has_prefix(&a_b, &a));
    assert_true(sigil_spiffeid_has_prefix(&a_b, &td));
    assert_false(sigil_spiffeid_has_prefix(&ab, &a));
    assert_false(sigil_spiffeid_has_prefix(&a, &ab));
    assert_false(sigil_spiffeid_has_prefix(&a, &a_b));
    assert_false(sigil_spiffeid_has_prefix(&td, &a));
    assert_false(sigil_spiffeid_has_prefix(&tdx, &td));
    assert_false(sigil_spiffeid_has_prefix(&other, &td));
    struct sigil_spiffeid zero;
    memset(&zero, 0, sizeof zero);
    assert_false(sigil_spiffeid_has_prefix(&a, &zero));
}

static void
test_equal_and_copy(void **state)
{
    (void)state;
    struct sigil_spiffeid a = must("spiffe://td/a"), b = must("spiffe://td/a"),
                          c = must("spiffe://td/b"), d = must("spiffe://td2/a");
    assert_true(sigil_spiffeid_equal(&a, &b));
    assert_false(sigil_spiffeid_equal(&a, &c));
    assert_false(sigil_spiffeid_equal(&a, &d));
    struct sigil_spiffeid copy = a; /* plain data */
    assert_true(sigil_spiffeid_equal(&copy, &a));
    assert_string_equal(sigil_spiffeid_path(&copy), "/a");
    assert_true(sigil_spiffeid_path(&copy) == copy.str + copy.path_off);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_id1_scheme_td_query_fragment),
        cmocka_unit_test(test_id2_userinfo_port),
        cmocka_unit_test(test_id3_trust_domain_charset),
        cmocka_unit_test(test_id4_no_ip_or_dns_rules),
        cmocka_unit_test(test_id5_path),
        cmocka_unit_test(test_id6_path_optional),
        cmocka_unit_test(test_id7_lengths),
        cmocka_unit_test(test_id8_uppercase),
        cmocka_unit_test(test_byte_sweep),
        cmocka_unit_test(test_byte_sweep_slash_in_td),
        cmocka_unit_test(test_embedded_nul),
        cmocka_unit_test(test_trust_domain_parse),
        cmocka_unit_test(test_path_check),
        cmocka_unit_test(test_from_parts),
        cmocka_unit_test(test_member_of),
        cmocka_unit_test(test_has_prefix),
        cmocka_unit_test(test_equal_and_copy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
