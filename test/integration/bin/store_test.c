/* store_test CONNINFO: drives server/store*.c against a real PostgreSQL with the migrations
 * applied (test_store.sh sets it up). Prints TAP-like lines; exit 0 only if all held. Helper
 * programs link only `sigil`, so the store's sources are compiled in here. */
#include "../../../server/store.c"
#include "../../../server/store_agents.c"
#include "../../../server/store_bundles.c"
#include "../../../server/store_entries.c"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

static int failures;
static const char *conninfo;
static const char *ACTOR = "uid:1000";

static void check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
check(bool ok, const char *fmt, ...)
{
    va_list ap;

    printf("%s - ", ok ? "ok" : "not ok");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    if (!ok)
        failures++;
}

static struct sigil_db_conn *
connect_or_die(void)
{
    struct sigil_db_conn *c = NULL;
    struct sigil_db_error e;

    if (sigil_db_connect(conninfo, &c, &e) != 0) {
        printf("not ok - connect: %s\n", e.message);
        exit(1);
    }
    return c;
}

/* Runs one statement and returns its first value as an integer (-1 on failure). */
static int64_t
scalar(struct sigil_db_conn *c, const char *sql, const char *arg)
{
    struct sigil_db_res *res = NULL;
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(arg)};
    int64_t v = -1;

    if (sigil_db_exec(c, sql, arg ? p : NULL, arg ? 1 : 0, &res) == 0 &&
        sigil_db_res_int64(res, 0, 0, &v) != 0)
        v = -1;
    sigil_db_res_free(res);
    return v;
}

/* Fills e with an entry: spiffe://example.org/<path>, parent, and ';'-separated selectors. */
static void
mk(struct sigil_store_entry *e, const char *path, const char *parent, const char *sels)
{
    char buf[512];

    memset(e, 0, sizeof *e);
    snprintf(buf, sizeof buf, "spiffe://example.org/%s", path);
    e->spiffe_id = strdup(buf);
    e->parent_id = strdup(parent);
    for (const char *p = sels; *p != '\0';) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        sigil_selector_set_add_str(&e->selectors, p, n, NULL);
        p += n + (end ? 1 : 0);
    }
}

static void
test_entries_basic(struct sigil_db_conn *c)
{
    struct sigil_store_entry e, got, dup;
    struct sigil_store_err err;
    json_t *j = NULL;
    int r;

    mk(&e, "prod/gcp/payments/api", "spiffe://example.org/agent/a", "unix:uid:1000;unix:path:/a");
    e.hint = strdup("api");
    e.team = strdup("payments");
    e.dns_names.items = calloc(2, sizeof(char *));
    e.dns_names.items[0] = strdup("api.example.org");
    e.dns_names.items[1] = strdup("*.api.example.org");
    e.dns_names.count = 2;
    e.federates_with.items = calloc(1, sizeof(char *));
    e.federates_with.items[0] = strdup("other.org");
    e.federates_with.count = 1;
    e.expires_at = 4102444800; /* 2100-01-01 */
    r = sigil_store_entry_create(c, ACTOR, &e, &err);
    check(r == 0 && store_uuid_valid(e.id) && e.revision > 0, "entry create (%d %s)", r,
          err.message);
    r = sigil_store_entry_get(c, e.id, &got, &err);
    check(r == 0 && strcmp(got.spiffe_id, e.spiffe_id) == 0 && got.selectors.count == 2 &&
              got.x509_ttl == 3600 && got.jwt_ttl == 300 && got.dns_names.count == 2 &&
              strcmp(got.dns_names.items[1], "*.api.example.org") == 0 &&
              got.federates_with.count == 1 && strcmp(got.team, "payments") == 0 &&
              got.expires_at == 4102444800 && got.revision == e.revision,
          "entry get returns what was created");
    /* the JSON round trip of an exported entry */
    check(sigil_store_entry_to_json(&got, &j) == 0, "entry to JSON");
    {
        struct sigil_store_entry back;
        r = sigil_store_entry_from_json(j, SIGIL_STORE_JSON_ENTRY, &back, &err);
        check(r == 0 && strcmp(back.id, got.id) == 0 &&
                  sigil_selector_set_equal(&back.selectors, &got.selectors) &&
                  back.expires_at == got.expires_at && back.created_at == got.created_at &&
                  back.dns_names.count == 2,
              "entry JSON reads back (%s)", err.message);
        sigil_store_entry_free(&back);
        r = sigil_store_entry_from_json(j, SIGIL_STORE_JSON_INPUT, &back, &err);
        check(r == SIGIL_ERR_INVALID && strstr(err.message, "unknown field") != NULL,
              "EntryInput refuses the read-only fields (%s)", err.message);
    }
    json_decref(j);
    mk(&dup, "prod/gcp/payments/api", "spiffe://example.org/agent/a", "unix:path:/a;unix:uid:1000");
    r = sigil_store_entry_create(c, ACTOR, &dup, &err);
    check(r == SIGIL_ERR_EXISTS && strcmp(err.code, "entry.exists") == 0 &&
              strstr(err.message, e.id) != NULL && dup.id[0] == '\0',
          "duplicate entry is EXISTS naming the existing one (%s)", err.message);
    sigil_store_entry_free(&dup);
    mk(&dup, "far/future", "spiffe://example.org/agent/a", "unix:uid:1");
    dup.expires_at = INT64_MAX;
    r = sigil_store_entry_create(c, ACTOR, &dup, &err);
    check(r == SIGIL_ERR_INVALID && strcmp(err.code, "entry.expires_at") == 0,
          "an expiry past year 9999 is refused before SQL (%s)", err.message);
    sigil_store_entry_free(&dup);
    mk(&dup, "", "spiffe://example.org/agent/a", "unix:uid:1");
    r = sigil_store_entry_create(c, ACTOR, &dup, &err);
    check(r == SIGIL_ERR_INVALID && strcmp(err.code, "entry.spiffe_id") == 0,
          "entry without a path refused before SQL (%s)", err.message);
    sigil_store_entry_free(&dup);
    check(sigil_store_entry_get(c, "not-a-uuid", &dup, &err) == SIGIL_ERR_INVALID,
          "get with a malformed id is INVALID");
    check(sigil_store_entry_get(c, "00000000-0000-4000-8000-000000000000", &dup, &err) ==
              SIGIL_ERR_NOTFOUND,
          "get of an unknown id is NOTFOUND");
    check(scalar(c,
                 "SELECT count(*) FROM audit_log WHERE action = 'entry.create' AND "
                 "object_id = $1 AND after->>'hint' = 'api'",
                 e.id) == 1,
          "create wrote its audit row with the entry as after");
    sigil_store_entry_free(&got);
    sigil_store_entry_free(&e);

    /* bytes that are special in array literals, JSON and SQL survive the trip */
    mk(&e, "odd/chars", "spiffe://example.org/agent/a", "");
    {
        const char *odd = "unix:path:/a \"b\\c,{d}";
        sigil_selector_set_add_str(&e.selectors, odd, strlen(odd), NULL);
    }
    sigil_selector_set_add_str(&e.selectors, "unix:user:NULL", 14, NULL);
    e.hint = strdup("quote \" backslash \\ brace { comma , \xc3\xa9");
    r = sigil_store_entry_create(c, ACTOR, &e, &err);
    check(
        r == 0 && sigil_store_entry_get(c, e.id, &got, &err) == 0 &&
            sigil_selector_set_equal(&got.selectors, &e.selectors) && strcmp(got.hint, e.hint) == 0,
        "selector values and hints with quotes, backslashes, braces round-trip (%s)", err.message);
    check(scalar(c,
                 "SELECT count(*) FROM entry_selectors WHERE entry_id = $1::uuid AND "
                 "value IN ('path:/a \"b\\c,{d}', 'user:NULL')",
                 e.id) == 2,
          "the selector rows hold the exact values");
    check(scalar(c,
                 "SELECT count(*) FROM audit_log WHERE object_id = $1 AND "
                 "after->>'hint' LIKE 'quote \" backslash %'",
                 e.id) == 1,
          "the audit JSON holds the exact hint");
    sigil_store_entry_free(&got);
    sigil_store_entry_free(&e);
}

static void
test_batch(struct sigil_db_conn *c)
{
    struct sigil_store_entry e[5];
    struct sigil_store_item res[5];
    struct sigil_store_err err;
    int64_t before;
    int r;

    mk(&e[0], "batch/one", "spiffe://example.org/agent/b", "unix:uid:1");
    mk(&e[1], "batch/two", "spiffe://example.org/agent/b", "unix:uid:2");
    mk(&e[2], "", "spiffe://example.org/agent/b", "unix:uid:3"); /* invalid */
    mk(&e[3], "prod/gcp/payments/api", "spiffe://example.org/agent/a",
       "unix:uid:1000;unix:path:/a");                                     /* exists already */
    mk(&e[4], "batch/one", "spiffe://example.org/agent/b", "unix:uid:1"); /* repeats item 0 */
    r = sigil_store_entries_create_batch(c, ACTOR, e, 5, false, res, &err);
    check(r == 0 && res[0].status == 0 && res[1].status == 0 &&
              res[2].status == SIGIL_ERR_INVALID && res[3].status == SIGIL_ERR_EXISTS &&
              res[4].status == SIGIL_ERR_EXISTS,
          "non-atomic batch: bad items fail, the rest are written (%d %d %d %d %d)", res[0].status,
          res[1].status, res[2].status, res[3].status, res[4].status);
    check(store_uuid_valid(res[3].id) && strcmp(res[4].id, e[0].id) == 0 && res[0].id[0] == '\0',
          "EXISTS items carry the stored entry's id (%s, %s)", res[3].id, res[4].id);
    check(strstr(res[3].err.message, "entry ") != NULL && strstr(res[4].err.message, "item 0"),
          "batch EXISTS messages name the entry or item (%s | %s)", res[3].err.message,
          res[4].err.message);
    check(scalar(c, "SELECT count(*) FROM entries WHERE parent_id = $1",
                 "spiffe://example.org/agent/b") == 2,
          "exactly the two good items are stored");
    for (int i = 0; i < 5; i++)
        sigil_store_entry_free(&e[i]);

    before = scalar(c, "SELECT count(*) FROM entries", NULL);
    mk(&e[0], "atomic/one", "spiffe://example.org/agent/b", "unix:uid:1");
    mk(&e[1], "atomic/two", "spiffe://example.org/agent/b", "unix:uid:2");
    mk(&e[2], "batch/two", "spiffe://example.org/agent/b", "unix:uid:2"); /* exists */
    r = sigil_store_entries_create_batch(c, ACTOR, e, 3, true, res, &err);
    check(r == 0 && res[0].status == SIGIL_ERR_CANCELLED && res[1].status == SIGIL_ERR_CANCELLED &&
              res[2].status == SIGIL_ERR_EXISTS && e[0].id[0] == '\0',
          "atomic batch with a conflict writes nothing (%d %d %d)", res[0].status, res[1].status,
          res[2].status);
    check(scalar(c, "SELECT count(*) FROM entries", NULL) == before, "no row was added");
    for (int i = 0; i < 3; i++)
        sigil_store_entry_free(&e[i]);
}

/* Lists with a filter and returns the spiffe_id paths found, joined by ','. */
static char *
list_paths(struct sigil_db_conn *c, const char *sels, enum sigil_selector_match m)
{
    struct sigil_selector_set set = SIGIL_SELECTOR_SET_INIT;
    struct sigil_store_entry_filter f = {
        .parent_id = "spiffe://example.org/agent/m", .selectors = &set, .match = m};
    struct sigil_store_entry_list l;
    struct sigil_store_err err;
    char buf[256] = "";

    for (const char *p = sels; *p != '\0';) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        sigil_selector_set_add_str(&set, p, n, NULL);
        p += n + (end ? 1 : 0);
    }
    if (sigil_store_entries_list(c, &f, &l, &err) != 0) {
        sigil_selector_set_free(&set);
        return strdup(err.message);
    }
    /* sorted by path for a stable answer */
    for (char want = 'a'; want <= 'z'; want++)
        for (size_t i = 0; i < l.count; i++) {
            const char *path = strrchr(l.items[i].spiffe_id, '/') + 1;
            if (path[0] == want) {
                strncat(buf, path, sizeof buf - strlen(buf) - 2);
                strcat(buf, ",");
            }
        }
    sigil_store_entry_list_free(&l);
    sigil_selector_set_free(&set);
    return strdup(buf);
}

static void
test_list(struct sigil_db_conn *c)
{
    static const struct {
        const char *path, *sels;
    } in[] = {
        {"m/a", "k:a:1;k:b:2"}, {"m/b", "k:a:1"}, {"m/c", "k:a:1;k:b:2;k:c:3"}, {"m/d", "k:d:4"}};
    static const struct {
        enum sigil_selector_match m;
        const char *want;
    } cases[] = {{SIGIL_SELECTOR_MATCH_EXACT, "a,"},
                 {SIGIL_SELECTOR_MATCH_SUBSET, "a,b,"},
                 {SIGIL_SELECTOR_MATCH_SUPERSET, "a,c,"},
                 {SIGIL_SELECTOR_MATCH_ANY, "a,b,c,"}};
    static const char *const names[] = {"exact", "subset", "superset", "any"};
    struct sigil_store_entry e[4];
    struct sigil_store_item res[4];
    struct sigil_store_err err;
    struct sigil_store_entry_list l;
    int r;

    for (int i = 0; i < 4; i++) {
        mk(&e[i], in[i].path, "spiffe://example.org/agent/m", in[i].sels);
        if (i == 3)
            e[i].team = strdup("ops");
    }
    r = sigil_store_entries_create_batch(c, ACTOR, e, 4, true, res, &err);
    check(r == 0 && res[0].status == 0 && res[3].status == 0, "list fixtures created");
    for (int i = 0; i < 4; i++) {
        char *got = list_paths(c, "k:a:1;k:b:2", cases[i].m);
        check(strcmp(got, cases[i].want) == 0, "selector match %s: want %s, got %s", names[i],
              cases[i].want, got);
        free(got);
    }
    {
        struct sigil_store_entry_filter f = {.spiffe_id = "spiffe://example.org/m/c"};
        r = sigil_store_entries_list(c, &f, &l, &err);
        check(r == 0 && l.count == 1 && strcmp(l.items[0].id, e[2].id) == 0 &&
                  l.next_page_token == NULL,
              "filter by spiffe_id");
        sigil_store_entry_list_free(&l);
        struct sigil_store_entry_filter g = {.team = "ops"};
        r = sigil_store_entries_list(c, &g, &l, &err);
        check(r == 0 && l.count == 1 && strcmp(l.items[0].id, e[3].id) == 0, "filter by team");
        sigil_store_entry_list_free(&l);
        struct sigil_store_entry_filter h = {.page_token = "!!"};
        check(sigil_store_entries_list(c, &h, &l, &err) == SIGIL_ERR_INVALID,
              "a malformed page token is INVALID");
        struct sigil_store_entry_filter k = {.page_size = 1001};
        check(sigil_store_entries_list(c, &k, &l, &err) == SIGIL_ERR_RANGE,
              "page_size over 1000 is RANGE");
    }
    for (int i = 0; i < 4; i++)
        sigil_store_entry_free(&e[i]);
}

static void
test_pages(struct sigil_db_conn *c)
{
    enum { N = 2500 };
    struct sigil_store_entry *e = calloc(N, sizeof *e);
    struct sigil_store_item *res = calloc(N, sizeof *res);
    struct sigil_store_err err;
    struct sigil_store_entry_filter f = {.parent_id = "spiffe://example.org/agent/p",
                                         .page_size = 1000};
    char **seen = calloc(N + 1, sizeof *seen), *token = NULL, path[64];
    size_t nseen = 0, pages = 0, sizes[4] = {0};
    bool ordered = true, dup = false;
    int r, bad = 0;

    for (int i = 0; i < N; i++) {
        snprintf(path, sizeof path, "pages/w%04d", i);
        mk(&e[i], path, "spiffe://example.org/agent/p", "unix:uid:7");
    }
    r = sigil_store_entries_create_batch(c, ACTOR, e, N, false, res, &err);
    for (int i = 0; i < N; i++)
        bad += res[i].status != 0;
    check(r == 0 && bad == 0, "2,500 entries created in one batch (%d failed)", bad);
    do {
        struct sigil_store_entry_list l;
        f.page_token = token;
        if ((r = sigil_store_entries_list(c, &f, &l, &err)) != 0)
            break;
        if (pages < 4)
            sizes[pages] = l.count;
        pages++;
        for (size_t i = 0; i < l.count && nseen < N + 1; i++) {
            if (nseen > 0 && strcmp(seen[nseen - 1], l.items[i].id) >= 0)
                ordered = false;
            seen[nseen++] = strdup(l.items[i].id);
        }
        free(token);
        token = l.next_page_token ? strdup(l.next_page_token) : NULL;
        sigil_store_entry_list_free(&l);
    } while (token != NULL && pages < 10);
    for (size_t i = 1; i < nseen; i++)
        if (strcmp(seen[i - 1], seen[i]) == 0)
            dup = true;
    check(r == 0 && pages == 3 && sizes[0] == 1000 && sizes[1] == 1000 && sizes[2] == 500,
          "pagination: 3 pages of 1000, 1000, 500 (got %zu pages: %zu %zu %zu)", pages, sizes[0],
          sizes[1], sizes[2]);
    check(nseen == N && ordered && !dup, "pagination: every entry once, in id order (%zu seen)",
          nseen);
    {
        /* every created id was seen: both lists are sorted, walk them together */
        size_t missing = 0;
        for (int i = 0; i < N; i++) {
            bool found = false;
            size_t lo = 0, hi = nseen;
            while (lo < hi && !found) {
                size_t mid = (lo + hi) / 2;
                int d = strcmp(seen[mid], e[i].id);
                found = d == 0;
                if (d < 0)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            missing += !found;
        }
        check(missing == 0, "pagination: no gaps (%zu missing)", missing);
    }
    for (size_t i = 0; i < nseen; i++)
        free(seen[i]);
    for (int i = 0; i < N; i++)
        sigil_store_entry_free(&e[i]);
    free(seen);
    free(e);
    free(res);
    free(token);
}

static void
test_update_delete(struct sigil_db_conn *c)
{
    struct sigil_store_entry e, other, patch, out;
    struct sigil_store_err err;
    struct sigil_store_audit_list al;
    int r;

    mk(&e, "upd/one", "spiffe://example.org/agent/u", "unix:uid:1");
    e.hint = strdup("old");
    mk(&other, "upd/two", "spiffe://example.org/agent/u", "unix:uid:2");
    check(sigil_store_entry_create(c, ACTOR, &e, &err) == 0 &&
              sigil_store_entry_create(c, ACTOR, &other, &err) == 0,
          "update fixtures created");
    memset(&patch, 0, sizeof patch);
    patch.fields = SIGIL_STORE_F_HINT | SIGIL_STORE_F_SELECTORS | SIGIL_STORE_F_X509_TTL;
    patch.hint = strdup("new");
    patch.x509_ttl = 600;
    sigil_selector_set_add_str(&patch.selectors, "unix:uid:1", 10, NULL);
    sigil_selector_set_add_str(&patch.selectors, "unix:gid:5", 10, NULL);
    r = sigil_store_entry_update(c, "spiffe://example.org/admin/alice", e.id, &patch, &out, &err);
    check(r == 0 && strcmp(out.hint, "new") == 0 && out.selectors.count == 2 &&
              out.x509_ttl == 600 && out.jwt_ttl == 300 && out.revision > e.revision &&
              strcmp(out.spiffe_id, e.spiffe_id) == 0,
          "update replaces the given fields only (%d %s)", r, err.message);
    check(scalar(c, "SELECT count(*) FROM entry_selectors WHERE entry_id = $1::uuid", e.id) == 2,
          "update replaced the selector rows as a set");
    {
        struct sigil_store_audit_filter af = {.object_type = "entry", .object_id = e.id};
        r = sigil_store_audit_list(c, &af, &al, &err);
        check(r == 0 && al.count == 2 && strcmp(al.items[0].action, "entry.update") == 0 &&
                  strcmp(al.items[0].actor, "spiffe://example.org/admin/alice") == 0 &&
                  al.items[0].before != NULL && strstr(al.items[0].before, "\"old\"") &&
                  al.items[0].after != NULL && strstr(al.items[0].after, "\"new\"") &&
                  strcmp(al.items[1].action, "entry.create") == 0,
              "update wrote an audit row with before and after, newest first");
        sigil_store_audit_list_free(&al);
    }
    sigil_store_entry_free(&out);
    sigil_store_entry_free(&patch);
    /* DNS names and federated trust domains are replaced as sets too */
    memset(&patch, 0, sizeof patch);
    patch.fields = SIGIL_STORE_F_DNS_NAMES | SIGIL_STORE_F_FEDERATES_WITH;
    patch.dns_names.items = calloc(2, sizeof(char *));
    patch.dns_names.items[0] = strdup("b.example.org");
    patch.dns_names.items[1] = strdup("a.example.org");
    patch.dns_names.count = 2;
    patch.federates_with.items = calloc(1, sizeof(char *));
    patch.federates_with.items[0] = strdup("fed.org");
    patch.federates_with.count = 1;
    r = sigil_store_entry_update(c, ACTOR, e.id, &patch, &out, &err);
    check(r == 0 && out.dns_names.count == 2 &&
              strcmp(out.dns_names.items[0], "b.example.org") == 0 &&
              out.federates_with.count == 1 &&
              strcmp(out.federates_with.items[0], "fed.org") == 0 && strcmp(out.hint, "new") == 0 &&
              out.selectors.count == 2,
          "update replaces DNS names (in order) and federated trust domains (%s)", err.message);
    sigil_store_entry_free(&out);
    sigil_store_entry_free(&patch);
    memset(&patch, 0, sizeof patch);
    patch.fields = SIGIL_STORE_F_DNS_NAMES;
    r = sigil_store_entry_update(c, ACTOR, e.id, &patch, &out, &err);
    check(r == 0 && out.dns_names.count == 0 && out.federates_with.count == 1,
          "an empty set clears DNS names only");
    sigil_store_entry_free(&out);
    /* collide with the other entry */
    memset(&patch, 0, sizeof patch);
    patch.fields = SIGIL_STORE_F_SPIFFE_ID | SIGIL_STORE_F_SELECTORS;
    patch.spiffe_id = strdup(other.spiffe_id);
    sigil_selector_set_add_str(&patch.selectors, "unix:uid:2", 10, NULL);
    r = sigil_store_entry_update(c, ACTOR, e.id, &patch, NULL, &err);
    check(r == SIGIL_ERR_EXISTS && strstr(err.message, other.id) != NULL,
          "update into another entry's key is EXISTS naming it (%s)", err.message);
    r = sigil_store_entry_update(c, ACTOR, "00000000-0000-4000-8000-000000000000", &patch, NULL,
                                 &err);
    check(r == SIGIL_ERR_NOTFOUND, "update of an unknown entry is NOTFOUND");
    sigil_store_entry_free(&patch);

    r = sigil_store_entry_delete(c, ACTOR, e.id, &err);
    check(r == 0 && sigil_store_entry_get(c, e.id, &out, &err) == SIGIL_ERR_NOTFOUND,
          "delete removes the entry");
    check(scalar(c, "SELECT count(*) FROM entry_selectors WHERE entry_id = $1::uuid", e.id) == 0,
          "its selector rows went with it");
    check(scalar(c,
                 "SELECT count(*) FROM audit_log WHERE action = 'entry.delete' AND "
                 "object_id = $1 AND before->>'hint' = 'new' AND after IS NULL",
                 e.id) == 1,
          "delete wrote an audit row with before");
    check(sigil_store_entry_delete(c, ACTOR, e.id, &err) == SIGIL_ERR_NOTFOUND,
          "deleting again is NOTFOUND");
    {
        const char *ids[] = {other.id, e.id, "bogus"};
        struct sigil_store_item res[3];
        r = sigil_store_entries_delete_batch(c, ACTOR, ids, 3, res, &err);
        check(r == 0 && res[0].status == 0 && res[1].status == SIGIL_ERR_NOTFOUND &&
                  res[2].status == SIGIL_ERR_INVALID,
              "batch delete reports per item (%d %d %d)", res[0].status, res[1].status,
              res[2].status);
    }
    sigil_store_entry_free(&e);
    sigil_store_entry_free(&other);
}

static bool
has_id(const struct sigil_store_changes *ch, const char *id, bool deleted)
{
    if (deleted) {
        for (size_t i = 0; i < ch->deleted.count; i++)
            if (strcmp(ch->deleted.items[i], id) == 0)
                return true;
        return false;
    }
    for (size_t i = 0; i < ch->upserted.count; i++)
        if (strcmp(ch->upserted.items[i].id, id) == 0)
            return true;
    return false;
}

static void
test_since(struct sigil_db_conn *c)
{
    struct sigil_store_entry a, b, patch;
    struct sigil_store_entry_list all;
    struct sigil_store_changes ch;
    struct sigil_store_err err;
    int64_t rev = 0;
    int r;

    mk(&a, "since/a", "spiffe://example.org/agent/s", "unix:uid:1");
    mk(&b, "since/b", "spiffe://example.org/agent/s", "unix:uid:2");
    check(sigil_store_entry_create(c, ACTOR, &a, &err) == 0 &&
              sigil_store_entry_create(c, ACTOR, &b, &err) == 0,
          "since fixtures created");
    r = sigil_store_entries_load_all(c, &all, &rev, &err);
    check(r == 0 && all.count > 2500 && rev >= b.revision, "full load (%zu entries at %lld)",
          all.count, (long long)rev);
    sigil_store_entry_list_free(&all);
    memset(&patch, 0, sizeof patch);
    patch.fields = SIGIL_STORE_F_ADMIN;
    patch.admin = true;
    check(sigil_store_entry_update(c, ACTOR, a.id, &patch, NULL, &err) == 0 &&
              sigil_store_entry_delete(c, ACTOR, b.id, &err) == 0,
          "one entry changed, one deleted");
    r = sigil_store_entries_since(c, rev, &ch, &err);
    check(r == 0 && ch.revision > rev && ch.upserted.count == 1 && has_id(&ch, a.id, false) &&
              ch.upserted.items[0].admin && ch.deleted.count == 1 && has_id(&ch, b.id, true),
          "entries_since returns the change and the delete (%d: %zu up, %zu del)", r,
          ch.upserted.count, ch.deleted.count);
    rev = ch.revision;
    sigil_store_changes_free(&ch);
    r = sigil_store_entries_since(c, rev, &ch, &err);
    check(r == 0 && ch.upserted.count == 0 && ch.deleted.count == 0 && ch.revision == rev,
          "nothing after the newest revision");
    sigil_store_changes_free(&ch);
    r = sigil_store_entries_since(c, rev + 1000, &ch, &err);
    check(r == SIGIL_ERR_EXPIRED, "a revision from the future asks for a full load");
    sigil_store_changes_free(&ch);
    sigil_store_entry_free(&a);
    sigil_store_entry_free(&b);
}

static void
test_agents(struct sigil_db_conn *c)
{
    const char *id = "spiffe://example.org/sigil/agent/join_token/n1";
    struct sigil_store_agent a, got;
    struct sigil_store_agent_list l;
    struct sigil_store_err err;
    int r;

    memset(&a, 0, sizeof a);
    a.spiffe_id = (char *)id;
    a.attestation_type = (char *)"join_token";
    a.serial = (char *)"0a1b";
    a.expires_at = 4102444800;
    sigil_selector_set_add_str(&a.selectors, "join_token:n1", 13, NULL);
    r = sigil_store_agent_attest(c, ACTOR, &a, &got, &err);
    check(r == 0 && strcmp(got.serial, "0a1b") == 0 && got.selectors.count == 1 && !got.banned,
          "agent attest (%d %s)", r, err.message);
    sigil_store_agent_free(&got);
    a.serial = (char *)"0c0d";
    r = sigil_store_agent_attest(c, ACTOR, &a, &got, &err);
    check(r == 0 && strcmp(got.serial, "0c0d") == 0, "agent re-attest replaces the serial");
    sigil_store_agent_free(&got);
    check(sigil_store_agent_renew(c, id, id, "0e0f", 4102444900, &err) == 0,
          "renew records the new serial");
    check(sigil_store_agent_use_serial(c, id, "0c0d", &err) == 0, "the current serial is fine");
    check(sigil_store_agent_use_serial(c, id, "0e0f", &err) == 0 &&
              sigil_store_agent_get(c, id, &got, &err) == 0 && strcmp(got.serial, "0e0f") == 0 &&
              got.new_serial == NULL && got.expires_at == 4102444900,
          "using the new serial makes it current");
    sigil_store_agent_free(&got);
    check(sigil_store_agent_use_serial(c, id, "0c0d", &err) == SIGIL_ERR_DENIED,
          "the old serial is refused after the switch (%s)", err.message);
    {
        struct sigil_store_agent_filter f = {.banned = 0, .attestation_type = "join_token"};
        r = sigil_store_agents_list(c, &f, &l, &err);
        check(r == 0 && l.count == 1 && strcmp(l.items[0].spiffe_id, id) == 0,
              "list agents by type, not banned");
        sigil_store_agent_list_free(&l);
    }
    {
        /* three more agents, listed two at a time */
        static const char *const more[] = {"spiffe://example.org/sigil/agent/x/1",
                                           "spiffe://example.org/sigil/agent/x/2",
                                           "spiffe://example.org/sigil/agent/x/3"};
        struct sigil_store_agent m;
        struct sigil_store_agent_filter f = {
            .banned = -1, .attestation_type = "x509pop", .page_size = 2};
        size_t seen = 0, pages = 0;
        char *token = NULL;
        memset(&m, 0, sizeof m);
        m.attestation_type = (char *)"x509pop";
        m.serial = (char *)"01";
        m.expires_at = 4102444800;
        for (int i = 0; i < 3; i++) {
            m.spiffe_id = (char *)more[i];
            sigil_store_agent_attest(c, ACTOR, &m, NULL, &err);
        }
        do {
            f.page_token = token;
            if (sigil_store_agents_list(c, &f, &l, &err) != 0)
                break;
            for (size_t i = 0; i < l.count; i++)
                seen += strcmp(l.items[i].spiffe_id, more[seen < 3 ? seen : 2]) == 0;
            pages++;
            free(token);
            token = l.next_page_token ? strdup(l.next_page_token) : NULL;
            sigil_store_agent_list_free(&l);
        } while (token != NULL && pages < 5);
        free(token);
        check(seen == 3 && pages == 2, "agents paged two at a time, in order (%zu seen, %zu pages)",
              seen, pages);
    }
    r = sigil_store_agent_ban(c, ACTOR, id, &got, &err);
    check(r == 0 && got.banned, "ban");
    sigil_store_agent_free(&got);
    {
        struct sigil_store_agent_filter f = {.banned = 0, .attestation_type = "join_token"};
        r = sigil_store_agents_list(c, &f, &l, &err);
        check(r == 0 && l.count == 0, "a banned agent is not listed as not banned");
        sigil_store_agent_list_free(&l);
    }
    check(sigil_store_agent_attest(c, ACTOR, &a, NULL, &err) == SIGIL_ERR_DENIED &&
              strcmp(err.code, "agent.banned") == 0,
          "a banned agent cannot attest again (%s)", err.message);
    check(sigil_store_agent_evict(c, ACTOR, id, &err) == 0 &&
              sigil_store_agent_get(c, id, &got, &err) == SIGIL_ERR_NOTFOUND,
          "evict deletes the agent");
    check(sigil_store_agent_evict(c, ACTOR, id, &err) == SIGIL_ERR_NOTFOUND,
          "evicting again is NOTFOUND");
    check(scalar(c,
                 "SELECT count(*) FROM audit_log WHERE object_type = 'agent' AND "
                 "object_id = $1 AND action IN ('agent.ban', 'agent.evict')",
                 id) == 2,
          "ban and evict are audited");
    sigil_selector_set_free(&a.selectors);
}

struct racer {
    const char *token;
    pthread_barrier_t *barrier;
    int result;
};

static void *
race(void *arg)
{
    struct racer *rc = arg;
    struct sigil_db_conn *c = connect_or_die();
    struct sigil_store_err err;

    pthread_barrier_wait(rc->barrier);
    rc->result = sigil_store_join_token_consume(c, ACTOR, rc->token, NULL, &err);
    sigil_db_disconnect(c);
    return NULL;
}

static void
test_tokens(struct sigil_db_conn *c)
{
    char token[SIGIL_STORE_TOKEN_LEN + 1], *path = NULL;
    struct sigil_store_err err;
    int64_t exp = 0;
    int r;

    r = sigil_store_join_token_create(c, ACTOR, 600, "/node/n1", token, &exp, &err);
    check(r == 0 && strlen(token) == 43 && exp > 0, "join token created (%s)", err.message);
    check(scalar(c,
                 "SELECT count(*) FROM join_tokens WHERE token_sha256 = "
                 "sha256(convert_to($1, 'UTF8'))",
                 token) == 1,
          "only the token's SHA-256 is stored");
    check(scalar(c,
                 "SELECT count(*) FROM audit_log WHERE strpos(coalesce(after::text, ''), $1) "
                 "> 0 OR strpos(object_id, $1) > 0",
                 token) == 0,
          "the audit log never holds the token");
    r = sigil_store_join_token_consume(c, "spiffe://example.org/server", token, &path, &err);
    check(r == 0 && path != NULL && strcmp(path, "/node/n1") == 0, "consume returns the path");
    free(path);
    path = NULL;
    r = sigil_store_join_token_consume(c, ACTOR, token, &path, &err);
    check(r == SIGIL_ERR_DENIED && strcmp(err.message, "invalid or expired join token") == 0,
          "a used token is refused (%s)", err.message);
    r = sigil_store_join_token_consume(c, ACTOR, "short", NULL, &err);
    check(r == SIGIL_ERR_DENIED && strcmp(err.message, "invalid or expired join token") == 0,
          "a malformed token gets the same answer");

    /* two consumers at once: exactly one wins */
    for (int round = 0; round < 5; round++) {
        pthread_barrier_t b;
        pthread_t t[2];
        struct racer rc[2];
        pthread_barrier_init(&b, NULL, 2);
        sigil_store_join_token_create(c, ACTOR, 600, NULL, token, &exp, &err);
        for (int i = 0; i < 2; i++) {
            rc[i] = (struct racer){token, &b, 1};
            pthread_create(&t[i], NULL, race, &rc[i]);
        }
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&b);
        check((rc[0].result == 0) + (rc[1].result == 0) == 1 &&
                  (rc[0].result == SIGIL_ERR_DENIED || rc[1].result == SIGIL_ERR_DENIED),
              "concurrent consumes, round %d: exactly one wins (%d, %d)", round, rc[0].result,
              rc[1].result);
    }

    sigil_store_join_token_create(c, ACTOR, 600, NULL, token, &exp, &err);
    scalar(c,
           "UPDATE join_tokens SET expires_at = now() - interval '1 second' WHERE "
           "token_sha256 = sha256(convert_to($1, 'UTF8'))",
           token);
    r = sigil_store_join_token_consume(c, ACTOR, token, NULL, &err);
    check(r == SIGIL_ERR_DENIED && strcmp(err.message, "invalid or expired join token") == 0,
          "an expired token is refused with the same message");
    int64_t removed = 0;
    check(sigil_store_join_tokens_prune(c, &removed, &err) == 0 && removed == 1,
          "prune removes the expired token");
    check(sigil_store_join_token_create(c, ACTOR, 0, NULL, token, &exp, &err) == SIGIL_ERR_RANGE &&
              sigil_store_join_token_create(c, ACTOR, 60, "no-slash", token, &exp, &err) ==
                  SIGIL_ERR_INVALID,
          "bad TTL and agent path refused");
}

static void
test_bundles(struct sigil_db_conn *c)
{
    struct sigil_store_bundle b;
    struct sigil_store_bundle_list l;
    struct sigil_store_federation f, f2;
    struct sigil_store_federation_list fl;
    struct sigil_store_err err;
    int r;

    r = sigil_store_bundle_set_own(c, ACTOR, "example.org", "{\"keys\":[],\"spiffe_sequence\":3}",
                                   3, &err);
    check(r == 0, "own bundle stored (%s)", err.message);
    r = sigil_store_bundle_get(c, NULL, &b, &err);
    check(r == 0 && b.own && b.sequence == 3 && strcmp(b.trust_domain, "example.org") == 0,
          "own bundle read back");
    sigil_store_bundle_free(&b);
    r = sigil_store_bundle_set_federated(c, ACTOR, "other.org",
                                         "{\"keys\":[],\"spiffe_sequence\":7}", &err);
    check(r == 0, "federated bundle stored (%s)", err.message);
    r = sigil_store_bundle_set_federated(c, ACTOR, "other.org", "{\"keys\":[]}", &err);
    r = r == 0 ? sigil_store_bundle_get(c, "other.org", &b, &err) : r;
    check(r == 0 && !b.own && b.sequence == 8, "a bundle without a sequence gets the next (%lld)",
          (long long)b.sequence);
    sigil_store_bundle_free(&b);
    check(sigil_store_bundle_set_federated(c, ACTOR, "example.org", "{\"keys\":[]}", &err) ==
              SIGIL_ERR_DENIED,
          "our own trust domain cannot be set as federated (%s)", err.message);
    check(sigil_store_bundle_set_federated(c, ACTOR, "other.org", "{\"keys\":5}", &err) ==
              SIGIL_ERR_INVALID,
          "a document that is not a bundle is refused (%s)", err.message);
    r = sigil_store_bundles_list(c, &l, &err);
    check(r == 0 && l.count == 1 && strcmp(l.items[0].trust_domain, "other.org") == 0,
          "list shows federated bundles only");
    sigil_store_bundle_list_free(&l);
    check(sigil_store_bundle_delete(c, ACTOR, "other.org", &err) == 0 &&
              sigil_store_bundle_delete(c, ACTOR, "other.org", &err) == SIGIL_ERR_NOTFOUND,
          "delete, then NOTFOUND");

    memset(&f, 0, sizeof f);
    f.trust_domain = (char *)"other.org";
    f.bundle_endpoint_url = (char *)"https://other.org/bundle";
    f.profile = (char *)"https_spiffe";
    f.endpoint_spiffe_id = (char *)"spiffe://other.org/bundle-server";
    check(sigil_store_federation_create(c, ACTOR, &f, &err) == 0, "federation created (%s)",
          err.message);
    check(sigil_store_federation_create(c, ACTOR, &f, &err) == SIGIL_ERR_EXISTS,
          "the same relationship again is EXISTS");
    f2 = f;
    f2.trust_domain = (char *)"third.org";
    f2.endpoint_spiffe_id = NULL;
    check(sigil_store_federation_create(c, ACTOR, &f2, &err) == SIGIL_ERR_INVALID,
          "https_spiffe without endpoint_spiffe_id is refused (%s)", err.message);
    r = sigil_store_federations_list(c, &fl, &err);
    check(r == 0 && fl.count == 1 && strcmp(fl.items[0].profile, "https_spiffe") == 0,
          "federations listed");
    sigil_store_federation_list_free(&fl);
    check(sigil_store_federation_delete(c, ACTOR, "other.org", &err) == 0 &&
              sigil_store_federation_delete(c, ACTOR, "other.org", &err) == SIGIL_ERR_NOTFOUND,
          "federation delete, then NOTFOUND");
}

static void
test_audit_pages(struct sigil_db_conn *c)
{
    struct sigil_store_audit_filter f = {.object_type = "bundle", .page_size = 2};
    struct sigil_store_audit_list l;
    struct sigil_store_err err;
    int64_t last = INT64_MAX;
    size_t total = 0;
    bool newest_first = true;
    char *token = NULL;
    int r;

    do {
        f.page_token = token;
        if ((r = sigil_store_audit_list(c, &f, &l, &err)) != 0)
            break;
        for (size_t i = 0; i < l.count; i++) {
            newest_first &= l.items[i].id < last;
            last = l.items[i].id;
            if (i == 0 && total == 0) {
                json_t *j = NULL;
                check(sigil_store_audit_to_json(&l.items[i], &j) == 0 &&
                          json_object_get(j, "before") != NULL,
                      "audit record JSON carries before");
                json_decref(j);
            }
        }
        total += l.count;
        free(token);
        token = l.next_page_token ? strdup(l.next_page_token) : NULL;
        sigil_store_audit_list_free(&l);
    } while (token != NULL && total < 100);
    check(r == 0 && total == 4 && newest_first, "audit pages of 2, newest first (%zu)", total);
    free(token);
}

static void
test_json(void)
{
    struct sigil_store_entry e;
    struct sigil_store_err err;
    json_error_t je;
    int64_t t;
    char buf[32];
    static const char *const bad[] = {
        "{\"spiffe_id\":\"spiffe://example.org/a\",\"parent_id\":\"spiffe://example.org/p\"}",
        "{\"spiffe_id\":\"spiffe://example.org/a\",\"parent_id\":\"spiffe://example.org/p\","
        "\"selectors\":[]}",
        "{\"spiffe_id\":\"spiffe://example.org/a\",\"parent_id\":\"spiffe://example.org/p\","
        "\"selectors\":[\"nocolon\"]}",
        "{\"spiffe_id\":\"spiffe://example.org/a\",\"parent_id\":\"spiffe://example.org/p\","
        "\"selectors\":[\"unix:uid:1\"],\"x509_svid_ttl\":-1}",
        "{\"spiffe_id\":\"spiffe://example.org/a\",\"parent_id\":\"spiffe://example.org/p\","
        "\"selectors\":[\"unix:uid:1\"],\"expires_at\":\"tomorrow\"}",
        "{\"spiffe_id\":\"spiffe://example.org/a\",\"parent_id\":\"spiffe://example.org/p\","
        "\"selectors\":[\"unix:uid:1\"],\"colour\":\"red\"}",
        "{\"spiffe_id\":\"spiffe://example.org/a\\u0000x\",\"parent_id\":\"spiffe://example.org/"
        "p\",\"selectors\":[\"unix:uid:1\"]}",
        "[]"};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = json_loads(bad[i], JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
        int r = sigil_store_entry_from_json(j, SIGIL_STORE_JSON_INPUT, &e, &err);
        check(j != NULL && r != 0 && err.message[0] != '\0', "malformed EntryInput %zu refused: %s",
              i, err.message);
        json_decref(j);
    }
    {
        json_t *j = json_loads("{\"hint\":\"h\",\"admin\":true}", 0, &je);
        int r = sigil_store_entry_from_json(j, SIGIL_STORE_JSON_PATCH, &e, &err);
        check(r == 0 && e.fields == (SIGIL_STORE_F_HINT | SIGIL_STORE_F_ADMIN) && e.admin,
              "EntryPatch records which fields it gives");
        sigil_store_entry_free(&e);
        json_decref(j);
        j = json_loads("{\"expires_at\":\"2030-01-01T00:00:00Z\"}", 0, &je);
        check(sigil_store_entry_from_json(j, SIGIL_STORE_JSON_PATCH, &e, &err) == SIGIL_ERR_INVALID,
              "EntryPatch has no expires_at (admin-api.yaml)");
        json_decref(j);
    }
    check(sigil_store_time_parse("2026-01-02T03:04:05Z", &t) == 0 && t == 1767323045,
          "RFC 3339 UTC parses");
    check(sigil_store_time_parse("2026-01-02T05:04:05.123+02:00", &t) == 0 && t == 1767323045,
          "RFC 3339 with fraction and offset parses");
    sigil_store_time_format(1767323045, buf);
    check(strcmp(buf, "2026-01-02T03:04:05Z") == 0, "time formats as RFC 3339");
    check(sigil_store_time_parse("2026-02-30T00:00:00Z", &t) != 0 &&
              sigil_store_time_parse("2026-01-02 03:04:05Z", &t) != 0 &&
              sigil_store_time_parse("2026-01-02T03:04:05", &t) != 0 &&
              sigil_store_time_parse("2025-02-29T00:00:00Z", &t) != 0,
          "malformed times refused");
}

int
main(int argc, char **argv)
{
    struct sigil_db_conn *c;

    if (argc != 2) {
        fprintf(stderr, "usage: store_test CONNINFO\n");
        return 2;
    }
    conninfo = argv[1];
    c = connect_or_die();
    test_json();
    test_entries_basic(c);
    test_batch(c);
    test_list(c);
    test_pages(c);
    test_update_delete(c);
    test_since(c);
    test_agents(c);
    test_tokens(c);
    test_bundles(c);
    test_audit_pages(c);
    sigil_db_disconnect(c);
    printf("%s - store (%d failures)\n", failures == 0 ? "ok" : "not ok", failures);
    return failures == 0 ? 0 : 1;
}
