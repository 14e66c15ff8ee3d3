/* go-spiffe's bundle vectors (shared/interop/go-spiffe-testdata/bundle/{spiffebundle,jwtbundle})
 * through our decoder: every file in both folders must have an expectation here (a new
 * vector fails the test until someone decides what it means), and accepted ones round-trip.
 * spiffebundle_no_keys.json has no "keys": rejected by B-4 (MUST), as go-spiffe does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>

#include "sigil/bundle.h"
#include "sigil/err.h"

struct expect {
    const char *dir; /* under go-spiffe-testdata/bundle/ */
    const char *file;
    bool jwks; /* decode as a plain JWKS (jwtbundle) instead of a SPIFFE bundle */
    bool ok;
    const char *rule; /* ok == false: the rule `why` must name */
    size_t nx509, njwt;
    bool has_seq, has_hint;
    uint64_t seq;
    int64_t hint;
    const char *kid; /* ok: one kid that must be there */
    bool seen;
};

/* Counts from reading each file: x509-svid entries with one x5c, jwt-svid entries (wit-svid
 * entries ignored by B-5), plain JWKS keys. */
static struct expect expects[] = {
    {"spiffebundle", "spiffebundle_missing_kid.json", false, false, "J-9", 0, 0, false, false, 0, 0,
     NULL, false},
    {"spiffebundle", "spiffebundle_multiple_x509.json", false, false, "H-3", 0, 0, false, false, 0,
     0, NULL, false},
    {"spiffebundle", "spiffebundle_no_keys.json", false, false, "B-4", 0, 0, false, false, 0, 0,
     NULL, false},
    {"spiffebundle", "spiffebundle_valid_1.json", false, true, NULL, 1, 1, false, false, 0, 0,
     "C6vs25welZOx6WksNYfbMfiw9l96pMnD", false},
    {"spiffebundle", "spiffebundle_valid_2.json", false, true, NULL, 1, 6, true, true, 1, 60,
     "cHPeHMMEtvTeSMBc20DzPPhkF41BN2WJ", false},
    {"spiffebundle", "spiffebundle_valid_with_wit.json", false, true, NULL, 1, 2, true, true, 1, 60,
     "qjwWkiMpkHzIxsSrAsLxSZ2WZ8AyMESx", false},
    {"jwtbundle", "jwks_missing_kid.json", true, false, "J-9", 0, 0, false, false, 0, 0, NULL,
     false},
    {"jwtbundle", "jwks_valid_1.json", true, true, NULL, 0, 1, false, false, 0, 0,
     "C6vs25welZOx6WksNYfbMfiw9l96pMnD", false},
    {"jwtbundle", "jwks_valid_2.json", true, true, NULL, 0, 2, false, false, 0, 0,
     "gHTCunJbefYtnZnTctd84xeRWyMrEsWD", false},
};

static char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    p[n] = '\0';
    *len = (size_t)n;
    return p;
}

static struct sigil_bundle *
decode(const struct expect *e, const char *json, size_t len, int *r, const char **why)
{
    struct sigil_bundle *b = NULL;

    *why = NULL;
    if (e->jwks)
        *r = sigil_bundle_decode_jwks("example.org", json, len, &b, why);
    else
        *r = sigil_bundle_decode("example.org", json, len, &b, why);
    return b;
}

/* decode -> encode -> decode gives an equal bundle, and encoding is stable. */
static void
round_trip(const struct expect *e, const struct sigil_bundle *b)
{
    struct sigil_bundle *b2 = NULL, *b3 = NULL;
    char *s = NULL, *s2 = NULL;
    size_t n, n2;
    const char *why;

    assert_int_equal(sigil_bundle_encode(b, &s, &n), 0);
    assert_int_equal(sigil_bundle_decode("example.org", s, n, &b2, &why), 0);
    assert_true(sigil_bundle_equal(b, b2));
    assert_int_equal(sigil_bundle_encode(b2, &s2, &n2), 0);
    assert_int_equal(n, n2);
    assert_memory_equal(s, s2, n);
    free(s2);

    /* The JWKS form carries exactly the JWT authorities (W-9). */
    assert_int_equal(sigil_bundle_encode_jwks(b, &s2, &n2), 0);
    assert_null(strstr(s2, "x509-svid"));
    assert_null(strstr(s2, "spiffe_sequence"));
    assert_int_equal(sigil_bundle_decode_jwks("example.org", s2, n2, &b3, &why), 0);
    assert_int_equal(sigil_bundle_jwt_count(b3), e->njwt);
    assert_int_equal(sigil_bundle_x509_count(b3), 0);
    for (size_t i = 0; i < e->njwt; i++)
        assert_string_equal(sigil_bundle_jwt_kid(b3, i), sigil_bundle_jwt_kid(b, i));
    free(s2);
    free(s);
    sigil_bundle_free(b3);
    sigil_bundle_free(b2);
}

static void
check_file(struct expect *e, const char *path)
{
    size_t len;
    char *json = read_file(path, &len);
    const char *why;
    uint64_t seq = 0;
    int64_t hint = 0;
    int r;
    struct sigil_bundle *b = decode(e, json, len, &r, &why);

    e->seen = true;
    if (!e->ok) {
        if (r == 0)
            fail_msg("%s: accepted, expected a rejection naming %s", e->file, e->rule);
        assert_null(b);
        assert_non_null(why);
        if (strstr(why, e->rule) == NULL)
            fail_msg("%s: why \"%s\" does not name %s", e->file, why, e->rule);
        free(json);
        return;
    }
    if (r != 0)
        fail_msg("%s: rejected: %s (%s)", e->file, why, sigil_strerror(r));
    assert_string_equal(sigil_bundle_trust_domain(b), "example.org");
    assert_int_equal(sigil_bundle_x509_count(b), e->nx509);
    assert_int_equal(sigil_bundle_jwt_count(b), e->njwt);
    assert_int_equal(sigil_bundle_sequence(b, &seq), e->has_seq);
    assert_int_equal(seq, e->seq);
    assert_int_equal(sigil_bundle_refresh_hint(b, &hint), e->has_hint);
    assert_int_equal(hint, e->hint);
    assert_non_null(sigil_bundle_jwt_find(b, e->kid));
    assert_null(sigil_bundle_jwt_find(b, "no-such-kid"));
    for (size_t i = 0; i < e->nx509; i++)
        assert_non_null(sigil_bundle_x509_get(b, i));
    if (e->nx509 > 0) {
        /* FetchX509Bundles form: the DER of the one CA, 0x30 0x82 ... */
        struct sigil_buf der = {0};

        assert_int_equal(sigil_bundle_x509_der(b, &der), 0);
        assert_true(der.len > 100);
        assert_int_equal(der.data[0], 0x30);
        sigil_buf_free(&der);
    }
    round_trip(e, b);
    sigil_bundle_free(b);
    free(json);
}

static void
run_dir(const char *shared, const char *sub)
{
    char dir[4096], path[8192];
    struct dirent *d;
    DIR *dp;
    size_t files = 0;

    snprintf(dir, sizeof dir, "%s/interop/go-spiffe-testdata/bundle/%s/testdata", shared, sub);
    dp = opendir(dir);
    if (dp == NULL)
        fail_msg("cannot open %s", dir);
    while ((d = readdir(dp)) != NULL) {
        struct expect *e = NULL;

        if (d->d_name[0] == '.')
            continue;
        for (size_t i = 0; i < sizeof expects / sizeof expects[0]; i++)
            if (strcmp(expects[i].dir, sub) == 0 && strcmp(expects[i].file, d->d_name) == 0)
                e = &expects[i];
        if (e == NULL)
            fail_msg("%s/%s: no expectation for this vector; add one", sub, d->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, d->d_name);
        check_file(e, path);
        files++;
    }
    closedir(dp);
    assert_true(files > 0);
}

static void
test_gospiffe_vectors(void **state)
{
    const char *shared = getenv("SIGIL_SHARED_DIR");

    (void)state;
    if (shared == NULL)
        fail_msg("SIGIL_SHARED_DIR is not set (ctest sets it)");
    run_dir(shared, "spiffebundle");
    run_dir(shared, "jwtbundle");
    for (size_t i = 0; i < sizeof expects / sizeof expects[0]; i++)
        if (!expects[i].seen)
            fail_msg("%s/%s: expected vector is missing", expects[i].dir, expects[i].file);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gospiffe_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
