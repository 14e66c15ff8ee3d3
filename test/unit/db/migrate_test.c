/* Unit tests of the migrator's pure parts: file names (NNNN_name.sql) and loading a
 * directory (order, hashes, gaps, duplicates, junk). No database needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The migrator comes from sigil_server_core, which server/CMakeLists.txt links in. */
#include "../../../server/migrate.h"
#include "sigil/err.h"

#define SHA_SELECT1 "b4e0497804e46e0a0b0b8c31975b062152d551bac49c3c2e80932567b4085dcd"
#define SHA_SELECT2 "a41109d24069b4822ddc5f367b25d484dc7e839bff338ce7a3e5da641caacda0"

static void
test_name_ok(void **state)
{
    char name[SIGIL_MIGRATE_NAME_MAX + 1], file[128];
    const char *why = NULL;
    int v = 0;

    (void)state;
    assert_int_equal(sigil_migrate_parse_name("0001_init.sql", &v, name, &why), 0);
    assert_int_equal(v, 1);
    assert_string_equal(name, "init");
    assert_int_equal(sigil_migrate_parse_name("0042_add_index_2.sql", &v, name, &why), 0);
    assert_int_equal(v, 42);
    assert_string_equal(name, "add_index_2");
    assert_int_equal(sigil_migrate_parse_name("9999__.sql", &v, name, &why), 0);
    assert_int_equal(v, 9999);
    assert_string_equal(name, "_");
    /* the longest name */
    snprintf(file, sizeof file, "0007_%s.sql",
             "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz01");
    assert_int_equal(sigil_migrate_parse_name(file, &v, name, &why), 0);
    assert_int_equal(strlen(name), SIGIL_MIGRATE_NAME_MAX);
    assert_null(why);
}

static void
expect_bad(const char *file, const char *because)
{
    char name[SIGIL_MIGRATE_NAME_MAX + 1] = "untouched";
    const char *why = NULL;
    int v = -1;

    if (sigil_migrate_parse_name(file, &v, name, &why) != SIGIL_ERR_INVALID)
        fail_msg("accepted \"%s\"", file);
    assert_non_null(why);
    if (strstr(why, because) == NULL)
        fail_msg("\"%s\": \"%s\" does not say \"%s\"", file, why, because);
    assert_int_equal(v, -1);
    assert_string_equal(name, "untouched");
}

static void
test_name_bad(void **state)
{
    char file[128];

    (void)state;
    expect_bad("", "must end in .sql");
    expect_bad(".sql", "four-digit version");
    expect_bad("1_init.sql", "four-digit version");
    expect_bad("001_init.sql", "four-digit version");
    expect_bad("abcd_init.sql", "four-digit version");
    expect_bad("00a1_init.sql", "four-digit version");
    expect_bad("00001_init.sql", "followed by '_'");
    expect_bad("0001init.sql", "followed by '_'");
    expect_bad("0001-init.sql", "followed by '_'");
    expect_bad("0001_.sql", "is empty");
    expect_bad("0000_zero.sql", "start at 0001");
    expect_bad("0001_Init.sql", "only a-z, 0-9 and _");
    expect_bad("0001_in-it.sql", "only a-z, 0-9 and _");
    expect_bad("0001_in it.sql", "only a-z, 0-9 and _");
    expect_bad("0001_init.x.sql", "only a-z, 0-9 and _");
    expect_bad("0001_caf\xc3\xa9.sql", "only a-z, 0-9 and _");
    expect_bad("0001_init.SQL", "must end in .sql");
    expect_bad("0001_init.sql.bak", "must end in .sql");
    expect_bad("0001_init.sql ", "must end in .sql");
    expect_bad("0001_init", "must end in .sql");
    snprintf(file, sizeof file, "0007_%s.sql",
             "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz012");
    expect_bad(file, "over 64 bytes");
    expect_bad(NULL, "missing");
}

/* A scratch directory with the given files (name, contents; contents NULL = a directory). */
static char *
make_dir(const char *const *files, size_t n)
{
    char tmpl[] = "/tmp/sigil-migrate-test-XXXXXX", path[512];
    char *dir = mkdtemp(tmpl);

    assert_non_null(dir);
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[2 * i]);
        if (files[2 * i + 1] == NULL) {
            assert_int_equal(mkdir(path, 0700), 0);
            continue;
        }
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(files[2 * i + 1], f);
        fclose(f);
    }
    return strdup(dir);
}

static void
remove_dir(char *dir)
{
    char cmd[600];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    free(dir);
}

static void
test_load_ok(void **state)
{
    static const char *const files[] = {
        "0002_second.sql", "SELECT 2;\n",      "0001_first.sql",   "SELECT 1;\n",
        "README",          "not a migration",  ".0003_hidden.sql", "ignored: a dot file",
        "0001_first.sql~", "an editor backup",
    };
    struct sigil_migration_set set = {0};
    char err[256] = "";
    char *dir = make_dir(files, 5);

    (void)state;
    assert_int_equal(sigil_migrate_load(dir, &set, err, sizeof err), 0);
    assert_int_equal(set.n, 2);
    assert_int_equal(set.m[0].version, 1);
    assert_string_equal(set.m[0].name, "first");
    assert_string_equal(set.m[0].sha256, SHA_SELECT1);
    assert_string_equal(set.m[0].sql, "SELECT 1;\n");
    assert_int_equal(set.m[1].version, 2);
    assert_string_equal(set.m[1].name, "second");
    assert_string_equal(set.m[1].sha256, SHA_SELECT2);
    sigil_migrate_set_free(&set);
    assert_null(set.m);
    assert_int_equal(set.n, 0);
    sigil_migrate_set_free(&set);
    remove_dir(dir);
}

static void
expect_load_fails(const char *const *files, size_t n, int code, const char *because)
{
    struct sigil_migration_set set = {(struct sigil_migration *)1, 7};
    char err[256] = "";
    char *dir = make_dir(files, n);

    assert_int_equal(sigil_migrate_load(dir, &set, err, sizeof err), code);
    if (strstr(err, because) == NULL)
        fail_msg("\"%s\" does not say \"%s\"", err, because);
    assert_null(set.m);
    assert_int_equal(set.n, 0);
    remove_dir(dir);
}

static void
test_load_bad(void **state)
{
    (void)state;
    expect_load_fails((const char *const[]){"0001_a.sql", "SELECT 1;", "0003_c.sql", "SELECT 3;"},
                      2, SIGIL_ERR_INVALID, "migration 0002 is missing (next is 0003_c.sql)");
    expect_load_fails((const char *const[]){"0002_b.sql", "SELECT 2;"}, 1, SIGIL_ERR_INVALID,
                      "migration 0001 is missing");
    expect_load_fails((const char *const[]){"0001_a.sql", "SELECT 1;", "0001_b.sql", "SELECT 1;"},
                      2, SIGIL_ERR_INVALID, "two migrations with version 0001");
    expect_load_fails((const char *const[]){"0001_a.sql", "SELECT 1;", "1_b.sql", "SELECT 2;"}, 2,
                      SIGIL_ERR_INVALID, "1_b.sql: migration file name");
    expect_load_fails((const char *const[]){"README", "x"}, 1, SIGIL_ERR_NOTFOUND,
                      "no NNNN_name.sql files");
    expect_load_fails((const char *const[]){"0001_a.sql", ""}, 1, SIGIL_ERR_INVALID,
                      "0001_a.sql: empty");
    expect_load_fails((const char *const[]){"0001_a.sql", NULL}, 1, SIGIL_ERR_INVALID,
                      "0001_a.sql: not a regular file");

    struct sigil_migration_set set = {0};
    char err[256] = "";
    assert_int_equal(sigil_migrate_load("/nonexistent/sigil-migrations", &set, err, sizeof err),
                     SIGIL_ERR_IO);
    assert_non_null(strstr(err, "cannot open directory /nonexistent/sigil-migrations"));
    assert_int_equal(sigil_migrate_load(NULL, &set, err, sizeof err), SIGIL_ERR_INVALID);
}

/* A NUL byte would make the SQL the server runs differ from the bytes that were hashed. */
static void
test_load_nul(void **state)
{
    struct sigil_migration_set set = {0};
    char err[256] = "", path[600];
    char *dir = make_dir(NULL, 0);
    FILE *f;

    (void)state;
    snprintf(path, sizeof path, "%s/0001_a.sql", dir);
    assert_non_null(f = fopen(path, "w"));
    fwrite("SELECT 1;\0DROP TABLE x;", 1, 23, f);
    fclose(f);
    assert_int_equal(sigil_migrate_load(dir, &set, err, sizeof err), SIGIL_ERR_INVALID);
    assert_non_null(strstr(err, "NUL byte"));
    remove_dir(dir);
}

static void
test_apply_args(void **state)
{
    struct sigil_migrate_report rep;
    struct sigil_migration_set empty = {0};

    (void)state;
    assert_int_equal(sigil_migrate_apply(NULL, &empty, NULL, NULL, NULL), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_migrate_apply(NULL, &empty, NULL, NULL, &rep), SIGIL_ERR_INVALID);
    assert_non_null(strstr(rep.error, "nothing to apply"));
    assert_int_equal(sigil_migrate_run(NULL, "/nonexistent/sigil-migrations", NULL, NULL, &rep),
                     SIGIL_ERR_IO);
    assert_non_null(strstr(rep.error, "cannot open directory"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_ok),  cmocka_unit_test(test_name_bad),
        cmocka_unit_test(test_load_ok),  cmocka_unit_test(test_load_bad),
        cmocka_unit_test(test_load_nul), cmocka_unit_test(test_apply_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
