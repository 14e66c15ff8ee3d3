/* The identity cache: entry checks, subset matching (an entry's selectors within the
 * workload's), SVIDs kept or dropped on replace, one notification per batch of changes, no
 * notification for an equal bundle, unsubscribing from inside a callback, the JWT hook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "cache.h"
#include "sigil/err.h"
#include "sigil/x509.h"

#define TD "example.org"

static EVP_PKEY *root_key;
static X509 *root;

static int
setup(void **state)
{
    struct sigil_x509_ca_params ca = {0};
    const char *why = NULL;

    (void)state;
    ca.trust_domain = TD;
    ca.subject.common_name = "cache test root";
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

static struct sigil_spiffeid
id_of(const char *s)
{
    struct sigil_spiffeid id;

    assert_int_equal(sigil_spiffeid_parse(s, strlen(s), &id, NULL), 0);
    return id;
}

/* A set from "a:b,c:d". */
static struct sigil_selector_set
sels(const char *list)
{
    struct sigil_selector_set s = SIGIL_SELECTOR_SET_INIT;
    const char *p = list, *comma;

    for (;;) {
        comma = strchr(p, ',');
        assert_int_equal(
            sigil_selector_set_add_str(&s, p, comma ? (size_t)(comma - p) : strlen(p), NULL), 0);
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return s;
}

static void
put(struct sigil_cache *c, const char *id, const char *spiffe_id, const char *list)
{
    struct sigil_spiffeid sid = id_of(spiffe_id);
    struct sigil_selector_set s = sels(list);
    const char *why = NULL;

    assert_int_equal(sigil_cache_put_entry(c, id, &sid, &s, NULL, NULL, 0, &why), 0);
    sigil_selector_set_free(&s);
}

/* Mints a leaf for spiffe_id and sets it as entry id's SVID; returns set_svid's result. */
static int
give_svid(struct sigil_cache *c, const char *id, const char *spiffe_id, bool wrong_key)
{
    struct sigil_spiffeid sid = id_of(spiffe_id);
    struct sigil_x509_leaf_params lp = {.id = &sid};
    STACK_OF(X509) *chain = sk_X509_new_null();
    EVP_PKEY *key = NULL, *other = NULL;
    X509 *leaf = NULL;
    const char *why = NULL;
    int r;

    lp.not_before = time(NULL) - 60;
    lp.not_after = time(NULL) + 600;
    assert_int_equal(sigil_x509_key_generate(&key), 0);
    assert_int_equal(sigil_x509_key_generate(&other), 0);
    assert_int_equal(sigil_x509_mint_leaf(&lp, key, root, root_key, &leaf, &why), 0);
    sk_X509_push(chain, leaf);
    r = sigil_cache_set_svid(c, id, chain, wrong_key ? other : key, &why);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    return r;
}

static int notified;

static void
on_change(void *ud)
{
    (void)ud;
    notified++;
}

static void
run(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_NOWAIT);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void
finish(uv_loop_t *loop, struct sigil_cache *c)
{
    sigil_cache_free(c);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void
entry_checks(void **state)
{
    struct sigil_selector_set s = sels("unix:uid:1"), empty = SIGIL_SELECTOR_SET_INIT;
    struct sigil_spiffeid good = id_of("spiffe://" TD "/w"), other = id_of("spiffe://other.org/w"),
                          root_id = id_of("spiffe://" TD);
    struct sigil_cache *c = NULL;
    const char *why = NULL, *fed_bad[] = {"Bad.Org"};
    char hint[1100];
    uv_loop_t loop;

    (void)state;
    uv_loop_init(&loop);
    assert_int_equal(sigil_cache_new(&loop, "Not/A/TD", &c, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_cache_new(&loop, TD, &c, &why), 0);
    assert_int_equal(sigil_cache_put_entry(c, "e", &other, &s, NULL, NULL, 0, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_cache_put_entry(c, "e", &root_id, &s, NULL, NULL, 0, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_cache_put_entry(c, "e", &good, &empty, NULL, NULL, 0, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_cache_put_entry(c, "", &good, &s, NULL, NULL, 0, &why),
                     SIGIL_ERR_INVALID);
    memset(hint, 'h', sizeof hint - 1);
    hint[sizeof hint - 1] = '\0';
    assert_int_equal(sigil_cache_put_entry(c, "e", &good, &s, hint, NULL, 0, &why),
                     SIGIL_ERR_RANGE);
    assert_int_equal(sigil_cache_put_entry(c, "e", &good, &s, NULL, fed_bad, 1, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_cache_entry_count(c), 0);
    assert_int_equal(sigil_cache_remove_entry(c, "e"), SIGIL_ERR_NOTFOUND);

    /* SVID checks: unknown entry, another ID in the leaf, a key that is not the leaf's. */
    put(c, "e", "spiffe://" TD "/w", "unix:uid:1");
    assert_int_equal(give_svid(c, "nope", "spiffe://" TD "/w", false), SIGIL_ERR_NOTFOUND);
    assert_int_equal(give_svid(c, "e", "spiffe://" TD "/x", false), SIGIL_ERR_INVALID);
    assert_int_equal(give_svid(c, "e", "spiffe://" TD "/w", true), SIGIL_ERR_INVALID);
    assert_null(sigil_cache_entry_get(c, "e")->chain);
    assert_int_equal(give_svid(c, "e", "spiffe://" TD "/w", false), 0);
    assert_non_null(sigil_cache_entry_get(c, "e")->chain);
    assert_true(sigil_cache_entry_get(c, "e")->expiry > time(NULL));
    sigil_selector_set_free(&s);
    finish(&loop, c);
}

static void
matching(void **state)
{
    struct sigil_selector_set w = sels("unix:uid:1000,unix:gid:50,unix:path:/bin/app");
    const struct sigil_cache_entry *out[8];
    struct sigil_cache *c = NULL;
    const char *why = NULL;
    uv_loop_t loop;

    (void)state;
    uv_loop_init(&loop);
    assert_int_equal(sigil_cache_new(&loop, TD, &c, &why), 0);
    put(c, "b-uid", "spiffe://" TD "/uid", "unix:uid:1000");
    put(c, "a-both", "spiffe://" TD "/both", "unix:uid:1000,unix:gid:50");
    put(c, "c-more", "spiffe://" TD "/more", "unix:uid:1000,unix:gid:51");
    put(c, "d-other", "spiffe://" TD "/other", "unix:uid:1001");
    put(c, "e-dup", "spiffe://" TD "/uid", "unix:gid:50");
    put(c, "f-nosvid", "spiffe://" TD "/nosvid", "unix:uid:1000");
    assert_int_equal(give_svid(c, "b-uid", "spiffe://" TD "/uid", false), 0);
    assert_int_equal(give_svid(c, "a-both", "spiffe://" TD "/both", false), 0);
    assert_int_equal(give_svid(c, "c-more", "spiffe://" TD "/more", false), 0);
    assert_int_equal(give_svid(c, "d-other", "spiffe://" TD "/other", false), 0);
    assert_int_equal(give_svid(c, "e-dup", "spiffe://" TD "/uid", false), 0);

    /* Subsets of w, with an SVID, one per SPIFFE ID, in entry id order. */
    assert_int_equal(sigil_cache_match(c, &w, out, 8), 2);
    assert_string_equal(out[0]->id, "a-both");
    assert_string_equal(out[1]->id, "b-uid");
    /* cap smaller than the count: the count is still the total. */
    assert_int_equal(sigil_cache_match(c, &w, out, 1), 2);
    assert_string_equal(out[0]->id, "a-both");

    /* Replacing an entry with the same SPIFFE ID keeps its SVID; another ID drops it. */
    put(c, "a-both", "spiffe://" TD "/both", "unix:uid:1000");
    assert_non_null(sigil_cache_entry_get(c, "a-both")->chain);
    put(c, "a-both", "spiffe://" TD "/renamed", "unix:uid:1000");
    assert_null(sigil_cache_entry_get(c, "a-both")->chain);
    assert_int_equal(sigil_cache_match(c, &w, out, 8), 1);
    assert_int_equal(sigil_cache_remove_entry(c, "b-uid"), 0);
    assert_int_equal(sigil_cache_match(c, &w, out, 8), 1);
    assert_string_equal(out[0]->id, "e-dup");

    /* An empty workload set matches nothing. */
    {
        struct sigil_selector_set none = SIGIL_SELECTOR_SET_INIT;

        assert_int_equal(sigil_cache_match(c, &none, out, 8), 0);
    }
    sigil_selector_set_free(&w);
    finish(&loop, c);
}

static struct sigil_cache *self_unsub_cache;
static struct sigil_cache_sub *self_unsub;
static int self_calls;

static void
unsub_me(void *ud)
{
    (void)ud;
    self_calls++;
    sigil_cache_unsubscribe(self_unsub_cache, self_unsub);
}

static void
notification(void **state)
{
    struct sigil_cache_sub *sub = NULL;
    struct sigil_cache *c = NULL;
    struct sigil_bundle *b = NULL, *b2 = NULL;
    const char *why = NULL;
    uv_loop_t loop;

    (void)state;
    uv_loop_init(&loop);
    assert_int_equal(sigil_cache_new(&loop, TD, &c, &why), 0);
    assert_int_equal(sigil_cache_subscribe(c, on_change, NULL, &sub), 0);
    notified = 0;
    run(&loop);
    assert_int_equal(notified, 0);

    /* Three changes in one loop iteration: one notification. */
    put(c, "e1", "spiffe://" TD "/a", "unix:uid:1");
    put(c, "e2", "spiffe://" TD "/b", "unix:uid:1");
    assert_int_equal(give_svid(c, "e1", "spiffe://" TD "/a", false), 0);
    assert_int_equal(notified, 0); /* never from inside the change */
    run(&loop);
    assert_int_equal(notified, 1);

    /* A bundle: notifies; the same contents again: does not. */
    assert_int_equal(sigil_bundle_new(TD, &b, &why), 0);
    assert_int_equal(sigil_bundle_x509_add(b, root, &why), 0);
    assert_int_equal(sigil_bundle_clone(b, &b2), 0);
    assert_int_equal(sigil_cache_set_bundle(c, b), 0);
    run(&loop);
    assert_int_equal(notified, 2);
    assert_int_equal(sigil_cache_set_bundle(c, b2), 0);
    run(&loop);
    assert_int_equal(notified, 2);
    assert_non_null(sigil_bundle_set_find(sigil_cache_bundles(c), TD));
    assert_int_equal(sigil_cache_remove_bundle(c, TD), 0);
    assert_int_equal(sigil_cache_remove_bundle(c, TD), SIGIL_ERR_NOTFOUND);
    run(&loop);
    assert_int_equal(notified, 3);

    /* A subscriber removing itself from its callback; the other one keeps being called. */
    self_unsub_cache = c;
    self_calls = 0;
    assert_int_equal(sigil_cache_subscribe(c, unsub_me, NULL, &self_unsub), 0);
    assert_int_equal(sigil_cache_remove_entry(c, "e1"), 0);
    run(&loop);
    assert_int_equal(self_calls, 1);
    assert_int_equal(notified, 4);
    assert_int_equal(sigil_cache_remove_entry(c, "e2"), 0);
    run(&loop);
    assert_int_equal(self_calls, 1);
    assert_int_equal(notified, 5);

    sigil_cache_unsubscribe(c, sub);
    put(c, "e3", "spiffe://" TD "/c", "unix:uid:1");
    run(&loop);
    assert_int_equal(notified, 5);
    finish(&loop, c);
}

static int minted;

static void
jwt_done(void *ud, int err, const char *token, const char *why)
{
    (void)why;
    assert_int_equal(err, 0);
    assert_string_equal(token, "tok:spiffe://" TD "/a:aud1");
    *(int *)ud += 1;
}

static int
fake_mint(void *arg, const struct sigil_spiffeid *id, const char *const *aud, size_t naud,
          sigil_cache_jwt_done_fn done, void *ud)
{
    char tok[SIGIL_SPIFFEID_MAX + 64];

    assert_ptr_equal(arg, &minted);
    assert_int_equal(naud, 1);
    snprintf(tok, sizeof tok, "tok:%s:%s", id->str, aud[0]);
    done(ud, 0, tok, NULL);
    return 0;
}

static void
jwt_hook(void **state)
{
    struct sigil_spiffeid id = id_of("spiffe://" TD "/a");
    const char *aud[] = {"aud1"};
    struct sigil_cache *c = NULL;
    const char *why = NULL;
    uv_loop_t loop;
    int count = 0;

    (void)state;
    uv_loop_init(&loop);
    assert_int_equal(sigil_cache_new(&loop, TD, &c, &why), 0);
    assert_int_equal(sigil_cache_mint_jwt(c, &id, aud, 1, jwt_done, &count), SIGIL_ERR_UNSUPPORTED);
    sigil_cache_set_jwt_minter(c, fake_mint, &minted);
    assert_int_equal(sigil_cache_mint_jwt(c, &id, aud, 1, jwt_done, &count), 0);
    assert_int_equal(count, 1);
    finish(&loop, c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(entry_checks),
        cmocka_unit_test(matching),
        cmocka_unit_test(notification),
        cmocka_unit_test(jwt_hook),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
