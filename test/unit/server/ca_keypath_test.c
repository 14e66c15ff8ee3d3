/* sigil_ca_key_path: a CA journal key_ref is a bare file name in ca.key_dir (refused with '/'
 * or ".." in it, so no row reaches outside the key directory); an absolute key_ref from an
 * earlier version is kept, or replaced by key_dir's file of the same name when it is gone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ca.h"
#include "sigil/err.h"

static char dir[64];

static int
setup(void **state)
{
    char p[128];
    FILE *f;

    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sigil-keypath-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(p, sizeof p, "%s/root-aa.key", dir);
    if ((f = fopen(p, "w")) == NULL)
        return -1;
    fclose(f);
    return 0;
}

static int
teardown(void **state)
{
    char p[128];

    (void)state;
    snprintf(p, sizeof p, "%s/root-aa.key", dir);
    unlink(p);
    rmdir(dir);
    return 0;
}

static void
test_bare_name_in_key_dir(void **state)
{
    char out[256], want[256];
    bool moved = true;

    (void)state;
    assert_int_equal(sigil_ca_key_path(dir, "root-aa.key", out, sizeof out, &moved), 0);
    snprintf(want, sizeof want, "%s/root-aa.key", dir);
    assert_string_equal(out, want);
    assert_false(moved);
    /* a bare name is resolved even when the file is missing: reading it then fails */
    assert_int_equal(sigil_ca_key_path(dir, "jwt-x.key", out, sizeof out, &moved), 0);
    snprintf(want, sizeof want, "%s/jwt-x.key", dir);
    assert_string_equal(out, want);
}

static void
test_traversal_refused(void **state)
{
    static const char *const bad[] = {
        "../x", "..",    "a/../../etc/shadow", "sub/root.key", "x/", ".",
        "",     "..key", "root..key",          "./x"};
    char out[256];
    bool moved;

    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sigil_ca_key_path(dir, bad[i], out, sizeof out, &moved),
                         SIGIL_ERR_INVALID);
    assert_int_equal(sigil_ca_key_path(dir, NULL, out, sizeof out, &moved), SIGIL_ERR_INVALID);
}

static void
test_absolute_kept_or_found_in_key_dir(void **state)
{
    char out[256], ref[256], want[256];
    bool moved;

    (void)state;
    /* present: used as is */
    snprintf(ref, sizeof ref, "%s/root-aa.key", dir);
    assert_int_equal(sigil_ca_key_path("/nonexistent-dir", ref, out, sizeof out, &moved), 0);
    assert_string_equal(out, ref);
    assert_false(moved);
    /* gone, same name in key_dir: that one, flagged */
    assert_int_equal(sigil_ca_key_path(dir, "/old/place/root-aa.key", out, sizeof out, &moved), 0);
    snprintf(want, sizeof want, "%s/root-aa.key", dir);
    assert_string_equal(out, want);
    assert_true(moved);
    /* gone everywhere: the recorded path, so the error names it */
    assert_int_equal(sigil_ca_key_path(dir, "/old/place/root-bb.key", out, sizeof out, &moved), 0);
    assert_string_equal(out, "/old/place/root-bb.key");
    assert_false(moved);
}

static void
test_too_long(void **state)
{
    char out[16];
    bool moved;

    (void)state;
    assert_int_equal(
        sigil_ca_key_path(dir, "a-very-long-key-file-name.key", out, sizeof out, &moved),
        SIGIL_ERR_RANGE);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bare_name_in_key_dir),
        cmocka_unit_test(test_traversal_refused),
        cmocka_unit_test(test_absolute_kept_or_found_in_key_dir),
        cmocka_unit_test(test_too_long),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
