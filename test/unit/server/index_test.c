/* Unit tests of the node API's entry index: put/replace/remove with the parent table kept in
 * step, the authorization closure (parented, node aliases by selector subset, descendants,
 * cycles, expiry, other agents' entries), applying a change feed, and the diff used by
 * SyncEntries (server/index.c, linked from sigil_server_core). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "index.h"
#include "sigil/err.h"

#define SERVER "spiffe://td/sigil/server"
#define AGENT "spiffe://td/sigil/agent/x509pop/aa"
#define OTHER "spiffe://td/sigil/agent/x509pop/bb"

/* Entry ids are UUID-shaped; n makes them distinct and sortable. */
static void
put(struct sigil_index *ix, int n, const char *spiffe_id, const char *parent_id,
    const char *selectors, int64_t revision, int64_t expires_at)
{
    struct sigil_store_entry e = {0};
    const char *why = NULL;

    snprintf(e.id, sizeof e.id, "00000000-0000-4000-8000-%012d", n);
    e.spiffe_id = strdup(spiffe_id);
    e.parent_id = strdup(parent_id);
    assert_non_null(e.spiffe_id);
    assert_non_null(e.parent_id);
    if (selectors != NULL)
        assert_int_equal(sigil_selector_set_parse(selectors, strlen(selectors), &e.selectors, &why),
                         0);
    e.revision = revision;
    e.expires_at = expires_at;
    assert_int_equal(sigil_index_put(ix, &e), 0);
    assert_null(e.spiffe_id); /* taken */
}

static const char *
id_of(int n)
{
    static char buf[8][SIGIL_STORE_UUID_LEN + 1];
    static int k;
    char *b = buf[k++ % 8];

    snprintf(b, SIGIL_STORE_UUID_LEN + 1, "00000000-0000-4000-8000-%012d", n);
    return b;
}

static void
node_sel(struct sigil_selector_set *s, const char *text)
{
    const char *why = NULL;

    assert_int_equal(sigil_selector_set_parse(text, strlen(text), s, &why), 0);
}

static void
test_put_replace_remove(void **state)
{
    struct sigil_index *ix = NULL;
    struct sigil_store_entry bad = {0};

    (void)state;
    assert_int_equal(sigil_index_new(SERVER, &ix), 0);
    assert_string_equal(sigil_index_server_id(ix), SERVER);
    assert_int_equal(sigil_index_put(ix, &bad), SIGIL_ERR_INVALID);
    /* more entries than the initial buckets: the tables grow */
    for (int i = 0; i < 300; i++) {
        char sid[64];

        snprintf(sid, sizeof sid, "spiffe://td/w/%d", i);
        put(ix, i, sid, AGENT, "unix:uid:1", 1, 0);
    }
    assert_int_equal(sigil_index_count(ix), 300);
    assert_string_equal(sigil_index_get(ix, id_of(7))->spiffe_id, "spiffe://td/w/7");
    /* replacing moves the entry to another parent */
    put(ix, 7, "spiffe://td/w/7b", OTHER, "unix:uid:2", 2, 0);
    assert_int_equal(sigil_index_count(ix), 300);
    assert_string_equal(sigil_index_get(ix, id_of(7))->spiffe_id, "spiffe://td/w/7b");
    assert_int_equal(sigil_index_get(ix, id_of(7))->revision, 2);
    {
        struct sigil_index_authset a = {0}, o = {0};

        assert_int_equal(sigil_index_authorized(ix, AGENT, NULL, 100, &a), 0);
        assert_int_equal(sigil_index_authorized(ix, OTHER, NULL, 100, &o), 0);
        assert_int_equal(a.count, 299);
        assert_int_equal(o.count, 1);
        assert_false(sigil_index_authset_has(&a, id_of(7)));
        assert_true(sigil_index_authset_has(&o, id_of(7)));
        for (size_t i = 1; i < a.count; i++)
            assert_true(strcmp(a.items[i - 1].id, a.items[i].id) < 0);
        sigil_index_authset_free(&a);
        sigil_index_authset_free(&o);
    }
    assert_int_equal(sigil_index_remove(ix, id_of(7)), 0);
    assert_int_equal(sigil_index_remove(ix, id_of(7)), SIGIL_ERR_NOTFOUND);
    assert_null(sigil_index_get(ix, id_of(7)));
    assert_int_equal(sigil_index_count(ix), 299);
    sigil_index_clear(ix);
    assert_int_equal(sigil_index_count(ix), 0);
    sigil_index_free(ix);
}

static void
test_authorized_closure(void **state)
{
    struct sigil_index *ix = NULL;
    struct sigil_selector_set sel = {0};
    struct sigil_index_authset a = {0};

    (void)state;
    assert_int_equal(sigil_index_new(SERVER, &ix), 0);
    /* 1: parented to the agent; 2: child of 1; 3: grandchild */
    put(ix, 1, "spiffe://td/web", AGENT, "unix:uid:1", 1, 0);
    put(ix, 2, "spiffe://td/web/child", "spiffe://td/web", "unix:uid:2", 1, 0);
    put(ix, 3, "spiffe://td/web/child/gc", "spiffe://td/web/child", "unix:uid:3", 1, 0);
    /* 4: a node alias whose selectors the node has; 5: parented to that alias */
    put(ix, 4, "spiffe://td/cluster/a", SERVER, "x509pop:subject:cn:node1", 1, 0);
    put(ix, 5, "spiffe://td/db", "spiffe://td/cluster/a", "unix:uid:5", 1, 0);
    /* 6: an alias needing a selector the node lacks; 7: parented to it */
    put(ix, 6, "spiffe://td/cluster/b", SERVER, "x509pop:subject:cn:node1\nx509pop:ca:x", 1, 0);
    put(ix, 7, "spiffe://td/cache", "spiffe://td/cluster/b", "unix:uid:7", 1, 0);
    /* 8: another agent's entry; 9: its child */
    put(ix, 8, "spiffe://td/other", OTHER, "unix:uid:8", 1, 0);
    put(ix, 9, "spiffe://td/other/c", "spiffe://td/other", "unix:uid:9", 1, 0);
    /* 10: expired, and 11 under it (unreachable through it) */
    put(ix, 10, "spiffe://td/old", AGENT, "unix:uid:10", 1, 50);
    put(ix, 11, "spiffe://td/old/c", "spiffe://td/old", "unix:uid:11", 1, 0);
    /* 12: an alias without selectors never matches */
    put(ix, 12, "spiffe://td/cluster/empty", SERVER, NULL, 1, 0);
    put(ix, 13, "spiffe://td/empty-child", "spiffe://td/cluster/empty", "unix:uid:13", 1, 0);

    node_sel(&sel, "x509pop:subject:cn:node1\nx509pop:serialnumber:01");
    assert_int_equal(sigil_index_authorized(ix, AGENT, &sel, 100, &a), 0);
    assert_int_equal(a.count, 4);
    assert_true(sigil_index_authset_has(&a, id_of(1)));
    assert_true(sigil_index_authset_has(&a, id_of(2)));
    assert_true(sigil_index_authset_has(&a, id_of(3)));
    assert_true(sigil_index_authset_has(&a, id_of(5)));
    assert_false(sigil_index_authset_has(&a, id_of(4))); /* the alias itself is not issued */
    assert_false(sigil_index_authset_has(&a, id_of(7)));
    assert_false(sigil_index_authset_has(&a, id_of(8)));
    assert_false(sigil_index_authset_has(&a, id_of(9)));
    assert_false(sigil_index_authset_has(&a, id_of(10)));
    assert_false(sigil_index_authset_has(&a, id_of(11)));
    assert_false(sigil_index_authset_has(&a, id_of(13)));
    sigil_index_authset_free(&a);

    /* before the expiry, 10 and 11 are in */
    assert_int_equal(sigil_index_authorized(ix, AGENT, &sel, 10, &a), 0);
    assert_int_equal(a.count, 6);
    assert_true(sigil_index_authset_has(&a, id_of(11)));
    sigil_index_authset_free(&a);

    /* without node selectors: no aliases */
    assert_int_equal(sigil_index_authorized(ix, AGENT, NULL, 100, &a), 0);
    assert_int_equal(a.count, 3);
    assert_false(sigil_index_authset_has(&a, id_of(5)));
    sigil_index_authset_free(&a);

    /* an unknown agent gets nothing */
    assert_int_equal(sigil_index_authorized(ix, "spiffe://td/nobody", NULL, 100, &a), 0);
    assert_int_equal(a.count, 0);
    assert_null(a.items);
    sigil_index_authset_free(&a);
    sigil_selector_set_free(&sel);
    sigil_index_free(ix);
}

static void
test_cycles_end(void **state)
{
    struct sigil_index *ix = NULL;
    struct sigil_index_authset a = {0};

    (void)state;
    assert_int_equal(sigil_index_new(SERVER, &ix), 0);
    /* a -> b -> c -> a, with a parented to the agent too via entry 1 */
    put(ix, 1, "spiffe://td/a", AGENT, "unix:uid:1", 1, 0);
    put(ix, 2, "spiffe://td/b", "spiffe://td/a", "unix:uid:2", 1, 0);
    put(ix, 3, "spiffe://td/c", "spiffe://td/b", "unix:uid:3", 1, 0);
    put(ix, 4, "spiffe://td/a", "spiffe://td/c", "unix:uid:4", 1, 0);
    /* an entry naming itself as parent, and one whose ID is the agent's */
    put(ix, 5, "spiffe://td/self", "spiffe://td/self", "unix:uid:5", 1, 0);
    put(ix, 6, AGENT, AGENT, "unix:uid:6", 1, 0);
    assert_int_equal(sigil_index_authorized(ix, AGENT, NULL, 100, &a), 0);
    assert_int_equal(a.count, 5);
    assert_false(sigil_index_authset_has(&a, id_of(5)));
    assert_true(sigil_index_authset_has(&a, id_of(4)));
    assert_true(sigil_index_authset_has(&a, id_of(6)));
    sigil_index_authset_free(&a);
    /* the self-parented entry is issued only by whoever owns its ID, and once */
    assert_int_equal(sigil_index_authorized(ix, "spiffe://td/self", NULL, 100, &a), 0);
    assert_int_equal(a.count, 1);
    sigil_index_authset_free(&a);
    sigil_index_free(ix);
}

static void
test_apply_changes(void **state)
{
    struct sigil_index *ix = NULL;
    struct sigil_store_changes ch = {0};

    (void)state;
    assert_int_equal(sigil_index_new(SERVER, &ix), 0);
    put(ix, 1, "spiffe://td/a", AGENT, "unix:uid:1", 1, 0);
    put(ix, 2, "spiffe://td/b", AGENT, "unix:uid:2", 1, 0);
    sigil_index_set_revision(ix, 5);

    ch.revision = 9;
    assert_non_null(ch.upserted.items = calloc(2, sizeof *ch.upserted.items));
    ch.upserted.count = 2;
    snprintf(ch.upserted.items[0].id, sizeof ch.upserted.items[0].id, "%s", id_of(1));
    ch.upserted.items[0].spiffe_id = strdup("spiffe://td/a2");
    ch.upserted.items[0].parent_id = strdup(AGENT);
    ch.upserted.items[0].revision = 9;
    snprintf(ch.upserted.items[1].id, sizeof ch.upserted.items[1].id, "%s", id_of(3));
    ch.upserted.items[1].spiffe_id = strdup("spiffe://td/c");
    ch.upserted.items[1].parent_id = strdup(AGENT);
    ch.upserted.items[1].revision = 8;
    assert_non_null(ch.deleted.items = calloc(2, sizeof *ch.deleted.items));
    ch.deleted.count = 2;
    ch.deleted.items[0] = strdup(id_of(2));
    ch.deleted.items[1] = strdup(id_of(99)); /* never loaded: ignored */
    assert_int_equal(sigil_index_apply(ix, &ch), 0);
    assert_null(ch.upserted.items);
    assert_int_equal(ch.deleted.count, 0);
    assert_int_equal(sigil_index_revision(ix), 9);
    assert_int_equal(sigil_index_count(ix), 2);
    assert_string_equal(sigil_index_get(ix, id_of(1))->spiffe_id, "spiffe://td/a2");
    assert_null(sigil_index_get(ix, id_of(2)));
    assert_non_null(sigil_index_get(ix, id_of(3)));
    sigil_index_free(ix);
}

static void
test_diff(void **state)
{
    struct sigil_index *ix = NULL;
    struct sigil_index_authset before = {0}, after = {0}, empty = {0};
    struct sigil_index_diff d = {0};

    (void)state;
    assert_int_equal(sigil_index_new(SERVER, &ix), 0);
    put(ix, 1, "spiffe://td/a", AGENT, "unix:uid:1", 1, 0);
    put(ix, 2, "spiffe://td/b", AGENT, "unix:uid:2", 1, 0);
    put(ix, 3, "spiffe://td/c", AGENT, "unix:uid:3", 1, 0);
    put(ix, 4, "spiffe://td/c/d", "spiffe://td/c", "unix:uid:4", 1, 0);
    assert_int_equal(sigil_index_authorized(ix, AGENT, NULL, 0, &before), 0);
    assert_int_equal(before.count, 4);

    /* 1 unchanged, 2 changed, 3 moved to another agent (and so 4 with it), 5 new */
    put(ix, 2, "spiffe://td/b", AGENT, "unix:uid:22", 2, 0);
    put(ix, 3, "spiffe://td/c", OTHER, "unix:uid:3", 2, 0);
    put(ix, 5, "spiffe://td/e", AGENT, "unix:uid:5", 2, 0);
    assert_int_equal(sigil_index_authorized(ix, AGENT, NULL, 0, &after), 0);
    assert_int_equal(sigil_index_authset_diff(&before, &after, &d), 0);
    assert_int_equal(d.n_upserted, 2);
    assert_string_equal(d.upserted[0].id, id_of(2));
    assert_int_equal(d.upserted[0].revision, 2);
    assert_string_equal(d.upserted[1].id, id_of(5));
    assert_int_equal(d.n_removed, 2);
    assert_string_equal(d.removed[0].id, id_of(3));
    assert_string_equal(d.removed[1].id, id_of(4));
    sigil_index_diff_free(&d);

    /* from nothing: everything is an upsert; to nothing: everything is removed */
    assert_int_equal(sigil_index_authset_diff(&empty, &after, &d), 0);
    assert_int_equal(d.n_upserted, after.count);
    assert_int_equal(d.n_removed, 0);
    sigil_index_diff_free(&d);
    assert_int_equal(sigil_index_authset_diff(&after, &empty, &d), 0);
    assert_int_equal(d.n_upserted, 0);
    assert_int_equal(d.n_removed, after.count);
    sigil_index_diff_free(&d);
    /* equal sets: no change */
    assert_int_equal(sigil_index_authset_diff(&after, &after, &d), 0);
    assert_int_equal(d.n_upserted + d.n_removed, 0);
    sigil_index_diff_free(&d);

    sigil_index_authset_free(&before);
    sigil_index_authset_free(&after);
    sigil_index_free(ix);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_replace_remove),
        cmocka_unit_test(test_authorized_closure),
        cmocka_unit_test(test_cycles_end),
        cmocka_unit_test(test_apply_changes),
        cmocka_unit_test(test_diff),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
