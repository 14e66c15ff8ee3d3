/* The agent's on-disk state: data_dir made 0700 (a group-readable one refused), the SVID and
 * key saved 0600 in one file replaced by rename (no temporary left), and every unusable file
 * (missing, corrupt, wrong mode, symlink, mismatched key) reported so the agent re-attests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <cmocka.h>

#include "sigil/err.h"
#include "sigil/x509.h"
#include "svidstore.h"

#define TD "example.org"

static EVP_PKEY *root_key;
static X509 *root;
static char dir[256];
static char path[512];

static int
setup(void **state)
{
    struct sigil_x509_ca_params ca = {0};
    const char *why = NULL;

    (void)state;
    ca.trust_domain = TD;
    ca.subject.common_name = "svidstore test root";
    ca.not_before = time(NULL) - 60;
    ca.not_after = time(NULL) + 3600;
    ca.path_len = -1;
    assert_int_equal(sigil_x509_key_generate(&root_key), 0);
    assert_int_equal(sigil_x509_mint_root(&ca, root_key, &root, &why), 0);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    X509_free(root);
    EVP_PKEY_free(root_key);
    return 0;
}

static int
mkdir_each(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/agent_svidstore_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/" SIGIL_SVIDSTORE_AGENT_FILE, dir);
    return 0;
}

static int
rmdir_each(void **state)
{
    char cmd[600];

    (void)state;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

/* A chain [leaf] for a fresh key, for spiffe://example.org/<p>. */
static STACK_OF(X509) *
mint(const char *p, EVP_PKEY **key)
{
    struct sigil_spiffeid id;
    struct sigil_x509_leaf_params lp = {.id = &id};
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *leaf = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_spiffeid_from_parts(TD, p, &id, &why), 0);
    lp.not_before = time(NULL) - 60;
    lp.not_after = time(NULL) + 600;
    assert_int_equal(sigil_x509_key_generate(key), 0);
    assert_int_equal(sigil_x509_mint_leaf(&lp, *key, root, root_key, &leaf, &why), 0);
    assert_int_equal(sk_X509_push(chain, leaf), 1);
    return chain;
}

static void
test_prepare(void **state)
{
    char sub[400];
    struct stat st;
    const char *why = NULL;

    (void)state;
    snprintf(sub, sizeof sub, "%s/data", dir);
    assert_int_equal(sigil_svidstore_prepare(sub, &why), 0);
    assert_int_equal(stat(sub, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    assert_int_equal(sigil_svidstore_prepare(sub, &why), 0); /* exists: fine */
    assert_int_equal(chmod(sub, 0750), 0);
    assert_int_equal(sigil_svidstore_prepare(sub, &why), SIGIL_ERR_DENIED);
    assert_non_null(strstr(why, "0700"));
    snprintf(sub, sizeof sub, "%s/file", dir);
    assert_int_equal(sigil_svidstore_write_file(dir, "file", "x", 1, &why), 0);
    assert_int_not_equal(sigil_svidstore_prepare(sub, &why), 0);
}

static void
test_roundtrip_atomic(void **state)
{
    EVP_PKEY *k1 = NULL, *k2 = NULL, *got_key = NULL;
    STACK_OF(X509) *c1 = mint("/sigil/agent/a", &k1), *c2 = mint("/sigil/agent/b", &k2);
    STACK_OF(X509) *got = NULL;
    struct sigil_spiffeid id;
    struct stat st1, st2;
    const char *why = NULL;
    struct dirent *de;
    DIR *d;

    (void)state;
    assert_int_equal(sigil_svidstore_load_agent(dir, &got, &got_key, &why), SIGIL_ERR_NOTFOUND);
    assert_int_equal(sigil_svidstore_save_agent(dir, c1, k1, &why), 0);
    assert_int_equal(stat(path, &st1), 0);
    assert_int_equal(st1.st_mode & 0777, 0600);
    assert_int_equal(sigil_svidstore_load_agent(dir, &got, &got_key, &why), 0);
    assert_int_equal(X509_cmp(sk_X509_value(got, 0), sk_X509_value(c1, 0)), 0);
    assert_true(sigil_x509_key_matches_cert(got_key, sk_X509_value(c1, 0)));
    sk_X509_pop_free(got, X509_free);
    EVP_PKEY_free(got_key);

    /* replaced by rename: a new inode, the new pair, nothing else left in the directory */
    assert_int_equal(sigil_svidstore_save_agent(dir, c2, k2, &why), 0);
    assert_int_equal(stat(path, &st2), 0);
    assert_int_not_equal(st1.st_ino, st2.st_ino);
    assert_int_equal(st2.st_mode & 0777, 0600);
    assert_int_equal(sigil_svidstore_load_agent(dir, &got, &got_key, &why), 0);
    assert_int_equal(sigil_x509_cert_spiffeid(sk_X509_value(got, 0), &id, &why), 0);
    assert_string_equal(id.str, "spiffe://example.org/sigil/agent/b");
    assert_true(sigil_x509_key_matches_cert(got_key, sk_X509_value(got, 0)));
    assert_non_null(d = opendir(dir));
    while ((de = readdir(d)) != NULL)
        assert_true(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
                    strcmp(de->d_name, SIGIL_SVIDSTORE_AGENT_FILE) == 0);
    closedir(d);
    sk_X509_pop_free(got, X509_free);
    EVP_PKEY_free(got_key);
    sk_X509_pop_free(c1, X509_free);
    sk_X509_pop_free(c2, X509_free);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
}

/* Writes bytes as agent.pem (0600) and expects the load to refuse it. */
static void
refuse(const void *p, size_t n, int mode)
{
    STACK_OF(X509) *got = NULL;
    EVP_PKEY *key = NULL;
    const char *why = NULL;
    FILE *f;

    unlink(path);
    assert_non_null(f = fopen(path, "w"));
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
    assert_int_equal(chmod(path, (mode_t)mode), 0);
    assert_int_equal(sigil_svidstore_load_agent(dir, &got, &key, &why), SIGIL_ERR_INVALID);
    assert_non_null(why);
    assert_null(got);
    assert_null(key);
}

static void
test_corrupt_means_reattest(void **state)
{
    EVP_PKEY *k1 = NULL, *k2 = NULL;
    STACK_OF(X509) *c1 = mint("/sigil/agent/a", &k1), *c2 = mint("/sigil/agent/b", &k2);
    struct sigil_buf good = {0}, mixed = {0};
    STACK_OF(X509) *got = NULL;
    EVP_PKEY *key = NULL;
    const char *why = NULL;
    char link[600];

    (void)state;
    assert_int_equal(sigil_x509_chain_to_pem(c1, &good), 0);
    assert_int_equal(sigil_x509_key_to_pkcs8_pem(k1, &mixed), 0);
    assert_int_equal(sigil_buf_append(&good, mixed.data, mixed.len), 0);
    sigil_buf_freezero(&mixed);
    /* the chain of one key with the other key */
    assert_int_equal(sigil_x509_chain_to_pem(c2, &mixed), 0);
    {
        struct sigil_buf kp = {0};

        assert_int_equal(sigil_x509_key_to_pkcs8_pem(k1, &kp), 0);
        assert_int_equal(sigil_buf_append(&mixed, kp.data, kp.len), 0);
        sigil_buf_freezero(&kp);
    }
    refuse("", 0, 0600);
    refuse("garbage", 7, 0600);
    refuse(good.data, good.len / 2, 0600); /* truncated */
    refuse(good.data, good.len, 0644);     /* readable by others */
    refuse(mixed.data, mixed.len, 0600);   /* key does not match */
    /* the intact file loads */
    unlink(path);
    assert_int_equal(
        sigil_svidstore_write_file(dir, SIGIL_SVIDSTORE_AGENT_FILE, good.data, good.len, &why), 0);
    assert_int_equal(sigil_svidstore_load_agent(dir, &got, &key, &why), 0);
    sk_X509_pop_free(got, X509_free);
    EVP_PKEY_free(key);
    /* a symlink is not followed */
    snprintf(link, sizeof link, "%s/real.pem", dir);
    assert_int_equal(rename(path, link), 0);
    assert_int_equal(symlink(link, path), 0);
    assert_int_equal(sigil_svidstore_load_agent(dir, &got, &key, &why), SIGIL_ERR_INVALID);
    sigil_buf_freezero(&good);
    sigil_buf_freezero(&mixed);
    sk_X509_pop_free(c1, X509_free);
    sk_X509_pop_free(c2, X509_free);
    EVP_PKEY_free(k1);
    EVP_PKEY_free(k2);
}

static void
test_bundle(void **state)
{
    struct sigil_bundle *b = NULL, *got = NULL;
    const char *why = NULL;
    char bpath[600];
    FILE *f;

    (void)state;
    assert_int_equal(sigil_svidstore_load_bundle(dir, TD, &got, &why), SIGIL_ERR_NOTFOUND);
    assert_int_equal(sigil_bundle_new(TD, &b, &why), 0);
    assert_int_equal(sigil_bundle_x509_add(b, root, &why), 0);
    assert_int_equal(sigil_bundle_set_sequence(b, 7), 0);
    assert_int_equal(sigil_svidstore_save_bundle(dir, b, &why), 0);
    assert_int_equal(sigil_svidstore_load_bundle(dir, TD, &got, &why), 0);
    assert_true(sigil_bundle_equal(b, got));
    sigil_bundle_free(got);
    got = NULL;
    snprintf(bpath, sizeof bpath, "%s/" SIGIL_SVIDSTORE_BUNDLE_FILE, dir);
    assert_non_null(f = fopen(bpath, "w"));
    fputs("{\"keys\": [", f);
    fclose(f);
    assert_int_equal(chmod(bpath, 0600), 0);
    assert_int_equal(sigil_svidstore_load_bundle(dir, TD, &got, &why), SIGIL_ERR_INVALID);
    assert_null(got);
    sigil_bundle_free(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prepare, mkdir_each, rmdir_each),
        cmocka_unit_test_setup_teardown(test_roundtrip_atomic, mkdir_each, rmdir_each),
        cmocka_unit_test_setup_teardown(test_corrupt_means_reattest, mkdir_each, rmdir_each),
        cmocka_unit_test_setup_teardown(test_bundle, mkdir_each, rmdir_each),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
