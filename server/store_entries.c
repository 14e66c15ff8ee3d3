/* Registration entries in PostgreSQL: batch create (multi-row INSERT from arrays, duplicates
 * skipped with ON CONFLICT and reported per item), get, filtered cursor-paged lists, update,
 * delete, and the change feed the caches read (events after a revision, in one snapshot). */
#include "store.h"
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/err.h"

#define TX_ATTEMPTS 5

/* One item of a batch being written. */
struct bitem {
    char *canon;   /* selectors_canon */
    bool valid;    /* passed the checks, not a duplicate within the batch */
    bool inserted; /* written in this attempt */
    size_t dup_of; /* a repeat of this earlier item of the batch, or (size_t)-1 */
};

struct batch {
    const char *actor;
    struct sigil_store_entry *e;
    size_t n;
    bool atomic;
    struct sigil_store_item *res;
    struct bitem *it;
    size_t *by_id; /* indexes of valid items, sorted by id */
    size_t nvalid;
    bool refused; /* an atomic batch met a bad item: rolled back on purpose */
    struct sigil_store_err *err;
};

/* qsort_r orders (glibc's argument order): items by unique key, then by position. */
static int
cmp_key(const void *a, const void *b, void *arg)
{
    const struct batch *bt = arg;
    size_t i = *(const size_t *)a, k = *(const size_t *)b;
    int d;

    if ((d = strcmp(bt->e[i].spiffe_id, bt->e[k].spiffe_id)) != 0 ||
        (d = strcmp(bt->e[i].parent_id, bt->e[k].parent_id)) != 0 ||
        (d = strcmp(bt->it[i].canon, bt->it[k].canon)) != 0)
        return d;
    return i < k ? -1 : i > k;
}

static int
cmp_id(const void *a, const void *b, void *arg)
{
    const struct batch *bt = arg;

    return strcmp(bt->e[*(const size_t *)a].id, bt->e[*(const size_t *)b].id);
}

static size_t
find_id(const struct batch *bt, const char *id)
{
    size_t lo = 0, hi = bt->nvalid;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int d = strcmp(bt->e[bt->by_id[mid]].id, id);
        if (d == 0)
            return bt->by_id[mid];
        if (d < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (size_t)-1;
}

/* Makes sure every team an entry names has its row (entries.team references teams). */
static int
ensure_teams(struct sigil_db_conn *c, const struct sigil_store_entry *e, size_t n,
             const struct bitem *it, struct sigil_store_err *err)
{
    struct store_arr a = {0};
    const char *lit;
    int r = 0;

    for (size_t i = 0; i < n; i++)
        if ((it == NULL || it[i].valid) && e[i].team != NULL)
            store_arr_add(&a, e[i].team);
    if (a.n == 0)
        goto out;
    if ((lit = store_arr_end(&a)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(lit)};
    if ((r = sigil_db_exec(c,
                           "INSERT INTO teams (name) SELECT DISTINCT unnest($1::text[]) "
                           "ON CONFLICT (name) DO NOTHING",
                           p, 1, NULL)) != 0)
        r = store_db_fail(c, r, err);
out:
    store_arr_free(&a);
    return r;
}

/* Writes the child rows (selectors, DNS names, federated trust domains) of the entries
 * whose indexes are listed. */
static int
write_children(struct sigil_db_conn *c, const struct sigil_store_entry *e, const size_t *idx,
               size_t n, unsigned which, struct sigil_store_err *err)
{
    struct store_arr ids = {0}, a1 = {0}, a2 = {0};
    int r = 0;

    for (int kind = 0; kind < 3 && r == 0; kind++) {
        static const unsigned bit[] = {SIGIL_STORE_F_SELECTORS, SIGIL_STORE_F_DNS_NAMES,
                                       SIGIL_STORE_F_FEDERATES_WITH};
        static const char *const sql[] = {
            "INSERT INTO entry_selectors (entry_id, type, value) "
            "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])",
            "INSERT INTO entry_dns_names (entry_id, ord, name) "
            "SELECT * FROM unnest($1::uuid[], $2::smallint[], $3::text[])",
            "INSERT INTO entry_federates_with (entry_id, trust_domain) "
            "SELECT * FROM unnest($1::uuid[], $2::text[])"};
        const char *l0, *l1, *l2;

        if ((which & bit[kind]) == 0)
            continue;
        for (size_t k = 0; k < n; k++) {
            const struct sigil_store_entry *x = &e[idx[k]];
            if (kind == 0) {
                for (size_t s = 0; s < x->selectors.count; s++) {
                    store_arr_add(&ids, x->id);
                    store_arr_add(&a1, x->selectors.items[s].type);
                    store_arr_add(&a2, x->selectors.items[s].value);
                }
            } else if (kind == 1) {
                for (size_t s = 0; s < x->dns_names.count; s++) {
                    store_arr_add(&ids, x->id);
                    store_arr_add_i64(&a1, (int64_t)s);
                    store_arr_add(&a2, x->dns_names.items[s]);
                }
            } else {
                for (size_t s = 0; s < x->federates_with.count; s++) {
                    store_arr_add(&ids, x->id);
                    store_arr_add(&a1, x->federates_with.items[s]);
                }
            }
        }
        if (ids.n > 0) {
            l0 = store_arr_end(&ids);
            l1 = store_arr_end(&a1);
            l2 = kind == 2 ? "" : store_arr_end(&a2);
            if (l0 == NULL || l1 == NULL || l2 == NULL) {
                r = SIGIL_ERR_NOMEM;
                break;
            }
            const struct sigil_db_param p[] = {SIGIL_DB_TEXT(l0), SIGIL_DB_TEXT(l1),
                                               SIGIL_DB_TEXT(l2)};
            if ((r = sigil_db_exec(c, sql[kind], p, kind == 2 ? 2 : 3, NULL)) != 0)
                r = store_db_fail(c, r, err);
        }
        store_arr_free(&ids);
        store_arr_free(&a1);
        store_arr_free(&a2);
    }
    store_arr_free(&ids);
    store_arr_free(&a1);
    store_arr_free(&a2);
    if (r == SIGIL_ERR_NOMEM)
        store_err(err, "internal", "out of memory");
    return r;
}

/* Names the existing entries the not-inserted valid items collided with. */
static int
report_conflicts(struct sigil_db_conn *c, struct batch *bt)
{
    struct store_arr sid = {0}, pid = {0}, canon = {0}, ord = {0};
    struct sigil_db_res *res = NULL;
    const char *l[4];
    int r = 0;

    for (size_t i = 0; i < bt->n; i++) {
        if (!bt->it[i].valid || bt->it[i].inserted)
            continue;
        bt->res[i].status = SIGIL_ERR_EXISTS;
        store_err(&bt->res[i].err, "entry.exists",
                  "an entry with this spiffe_id, parent_id and selectors exists: update it");
        store_arr_add(&sid, bt->e[i].spiffe_id);
        store_arr_add(&pid, bt->e[i].parent_id);
        store_arr_add(&canon, bt->it[i].canon);
        store_arr_add_i64(&ord, (int64_t)i);
    }
    if (sid.n == 0)
        goto out;
    l[0] = store_arr_end(&sid);
    l[1] = store_arr_end(&pid);
    l[2] = store_arr_end(&canon);
    l[3] = store_arr_end(&ord);
    if (l[0] == NULL || l[1] == NULL || l[2] == NULL || l[3] == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(l[0]), SIGIL_DB_TEXT(l[1]),
                                       SIGIL_DB_TEXT(l[2]), SIGIL_DB_TEXT(l[3])};
    if ((r = sigil_db_exec(c,
                           "SELECT e.id, u.ord FROM unnest($1::text[], $2::text[], $3::text[], "
                           "$4::bigint[]) AS u(sid, pid, canon, ord) JOIN entries e ON "
                           "e.spiffe_id = u.sid AND e.parent_id = u.pid AND "
                           "e.selectors_canon = u.canon",
                           p, 4, &res)) != 0) {
        r = store_db_fail(c, r, bt->err);
        goto out;
    }
    for (size_t row = 0; row < sigil_db_res_rows(res); row++) {
        int64_t i = store_res_i64(res, row, 1);
        if (i < 0 || (size_t)i >= bt->n)
            continue;
        snprintf(bt->res[i].id, sizeof bt->res[i].id, "%s", sigil_db_res_text(res, row, 0));
        store_err(&bt->res[i].err, "entry.exists",
                  "entry %s already has this spiffe_id, parent_id and selectors: update it "
                  "instead",
                  sigil_db_res_text(res, row, 0));
    }
out:
    sigil_db_res_free(res);
    store_arr_free(&sid);
    store_arr_free(&pid);
    store_arr_free(&canon);
    store_arr_free(&ord);
    return r;
}

/* Writes one audit row per created entry (its JSON as "after"): one JSON array for the lot,
 * which PostgreSQL parses once (a jsonb[] literal would be escaped and parsed twice). */
static int
audit_created(struct sigil_db_conn *c, struct batch *bt, const size_t *idx, size_t n)
{
    json_t *arr = json_array();
    char *text = NULL;
    int r = 0;

    for (size_t k = 0; arr != NULL && k < n; k++) {
        json_t *j = NULL;
        if (sigil_store_entry_to_json(&bt->e[idx[k]], &j) != 0 ||
            json_array_append_new(arr, j) != 0) {
            r = SIGIL_ERR_NOMEM;
            goto out;
        }
    }
    if (n == 0)
        goto out;
    if (arr == NULL || (text = json_dumps(arr, JSON_COMPACT)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(bt->actor), SIGIL_DB_TEXT(text)};
    if ((r = sigil_db_exec(c,
                           "INSERT INTO audit_log (actor, action, object_type, object_id, after) "
                           "SELECT $1, 'entry.create', 'entry', x->>'id', x "
                           "FROM jsonb_array_elements($2::jsonb) AS x",
                           p, 2, NULL)) != 0)
        r = store_db_fail(c, r, bt->err);
out:
    if (r == SIGIL_ERR_NOMEM)
        store_err(bt->err, "internal", "out of memory");
    json_decref(arr);
    free(text);
    return r;
}

static int
batch_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct batch *bt = arg;
    struct store_arr a[11];
    const char *lit[11];
    struct sigil_db_res *res = NULL;
    size_t *done = NULL, ndone = 0;
    int r = 0;

    (void)attempt;
    memset(a, 0, sizeof a);
    bt->refused = false;
    for (size_t i = 0; i < bt->n; i++) {
        bt->it[i].inserted = false;
        if (bt->it[i].valid)
            memset(&bt->res[i], 0, sizeof bt->res[i]); /* a retried attempt starts afresh */
    }
    if ((r = ensure_teams(c, bt->e, bt->n, bt->it, bt->err)) != 0)
        goto out;
    for (size_t i = 0; i < bt->n; i++) {
        const struct sigil_store_entry *e = &bt->e[i];
        if (!bt->it[i].valid)
            continue;
        store_arr_add(&a[0], e->id);
        store_arr_add(&a[1], e->spiffe_id);
        store_arr_add(&a[2], e->parent_id);
        store_arr_add(&a[3], bt->it[i].canon);
        store_arr_add_i64(&a[4], e->x509_ttl);
        store_arr_add_i64(&a[5], e->jwt_ttl);
        store_arr_add(&a[6], e->admin ? "t" : "f");
        store_arr_add(&a[7], e->downstream ? "t" : "f");
        store_arr_add(&a[8], e->hint != NULL ? e->hint : "");
        store_arr_add(&a[9], e->team);
        store_arr_add_i64(&a[10], e->expires_at);
    }
    if (a[0].n == 0)
        goto out;
    for (int k = 0; k < 11; k++)
        if ((lit[k] = store_arr_end(&a[k])) == NULL) {
            r = SIGIL_ERR_NOMEM;
            store_err(bt->err, "internal", "out of memory");
            goto out;
        }
    const struct sigil_db_param p[] = {
        SIGIL_DB_TEXT(lit[0]), SIGIL_DB_TEXT(lit[1]),  SIGIL_DB_TEXT(lit[2]),
        SIGIL_DB_TEXT(lit[3]), SIGIL_DB_TEXT(lit[4]),  SIGIL_DB_TEXT(lit[5]),
        SIGIL_DB_TEXT(lit[6]), SIGIL_DB_TEXT(lit[7]),  SIGIL_DB_TEXT(lit[8]),
        SIGIL_DB_TEXT(lit[9]), SIGIL_DB_TEXT(lit[10]), SIGIL_DB_TEXT(bt->actor)};
    r = sigil_db_exec(
        c,
        "INSERT INTO entries (id, spiffe_id, parent_id, selectors_canon, x509_ttl_seconds, "
        "jwt_ttl_seconds, admin, downstream, hint, team, expires_at, created_by) "
        "SELECT u.id, u.sid, u.pid, u.canon, u.x, u.j, u.adm, u.ds, u.hint, u.team, "
        "CASE WHEN u.exp = 0 THEN NULL ELSE to_timestamp(u.exp) END, $12 "
        "FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], "
        "$7::bool[], $8::bool[], $9::text[], $10::text[], $11::bigint[]) "
        "AS u(id, sid, pid, canon, x, j, adm, ds, hint, team, exp) "
        "ON CONFLICT (spiffe_id, parent_id, selectors_canon) DO NOTHING "
        "RETURNING id, revision, floor(extract(epoch FROM created_at))::bigint, "
        "floor(extract(epoch FROM updated_at))::bigint",
        p, 12, &res);
    if (r != 0) {
        r = store_db_fail(c, r, bt->err);
        goto out;
    }
    if ((done = calloc(sigil_db_res_rows(res) + 1, sizeof *done)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        store_err(bt->err, "internal", "out of memory");
        goto out;
    }
    for (size_t row = 0; row < sigil_db_res_rows(res); row++) {
        size_t i = find_id(bt, sigil_db_res_text(res, row, 0));
        if (i == (size_t)-1 || bt->it[i].inserted) {
            r = SIGIL_ERR_INTERNAL;
            store_err(bt->err, "internal", "INSERT returned an id this batch did not send");
            goto out;
        }
        bt->it[i].inserted = true;
        bt->e[i].revision = store_res_i64(res, row, 1);
        bt->e[i].created_at = store_res_i64(res, row, 2);
        bt->e[i].updated_at = store_res_i64(res, row, 3);
        done[ndone++] = i;
    }
    if (ndone < a[0].n) {
        if ((r = report_conflicts(c, bt)) != 0)
            goto out;
        if (bt->atomic) {
            bt->refused = true;
            r = SIGIL_ERR_EXISTS;
            goto out;
        }
    }
    if ((r = write_children(c, bt->e, done, ndone,
                            SIGIL_STORE_F_SELECTORS | SIGIL_STORE_F_DNS_NAMES |
                                SIGIL_STORE_F_FEDERATES_WITH,
                            bt->err)) != 0)
        goto out;
    r = audit_created(c, bt, done, ndone);
out:
    for (int k = 0; k < 11; k++)
        store_arr_free(&a[k]);
    sigil_db_res_free(res);
    free(done);
    return r;
}

/* Checks every item and finds duplicates within the batch, before any SQL. */
static int
batch_prepare(struct batch *bt)
{
    size_t *order = NULL, nv = 0;
    int r;

    for (size_t i = 0; i < bt->n; i++) {
        struct sigil_store_entry *e = &bt->e[i];
        memset(&bt->res[i], 0, sizeof bt->res[i]);
        bt->it[i].dup_of = (size_t)-1;
        if ((r = sigil_store_entry_check(e, &bt->res[i].err)) != 0) {
            bt->res[i].status = r;
            continue;
        }
        if ((bt->it[i].canon = sigil_selector_set_to_string(&e->selectors)) == NULL ||
            store_uuid_new(e->id) != 0)
            return SIGIL_ERR_NOMEM;
        if (e->x509_ttl == 0)
            e->x509_ttl = SIGIL_STORE_DEFAULT_X509_TTL;
        if (e->jwt_ttl == 0)
            e->jwt_ttl = SIGIL_STORE_DEFAULT_JWT_TTL;
        bt->it[i].valid = true;
        nv++;
    }
    if ((order = calloc(nv + 1, sizeof *order)) == NULL)
        return SIGIL_ERR_NOMEM;
    nv = 0;
    for (size_t i = 0; i < bt->n; i++)
        if (bt->it[i].valid)
            order[nv++] = i;
    qsort_r(order, nv, sizeof *order, cmp_key, bt);
    for (size_t k = 1, start = 0; k < nv; k++) {
        size_t first = order[start], i = order[k];
        if (strcmp(bt->e[first].spiffe_id, bt->e[i].spiffe_id) != 0 ||
            strcmp(bt->e[first].parent_id, bt->e[i].parent_id) != 0 ||
            strcmp(bt->it[first].canon, bt->it[i].canon) != 0) {
            start = k;
            continue;
        }
        bt->it[i].valid = false;
        bt->it[i].dup_of = first;
        bt->res[i].status = SIGIL_ERR_EXISTS;
        store_err(&bt->res[i].err, "entry.exists",
                  "item %zu of this batch has the same spiffe_id, parent_id and selectors", first);
    }
    bt->nvalid = 0;
    for (size_t k = 0; k < nv; k++)
        if (bt->it[order[k]].valid)
            order[bt->nvalid++] = order[k];
    qsort_r(order, bt->nvalid, sizeof *order, cmp_id, bt);
    bt->by_id = order;
    return 0;
}

int
sigil_store_entries_create_batch(struct sigil_db_conn *c, const char *actor,
                                 struct sigil_store_entry *entries, size_t n, bool atomic,
                                 struct sigil_store_item *results, struct sigil_store_err *err)
{
    struct batch bt = {
        .actor = actor, .e = entries, .n = n, .atomic = atomic, .res = results, .err = err};
    size_t bad = (size_t)-1;
    int r;

    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = store_actor_check(actor, err)) != 0)
        return r;
    if (n > SIGIL_STORE_BATCH_MAX) {
        store_err(err, "batch.range", "a batch holds at most %d entries", SIGIL_STORE_BATCH_MAX);
        return SIGIL_ERR_RANGE;
    }
    if (n == 0)
        return 0;
    memset(results, 0, n * sizeof *results);
    if ((bt.it = calloc(n, sizeof *bt.it)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    if ((r = batch_prepare(&bt)) != 0)
        goto out;
    for (size_t i = 0; i < n && bad == (size_t)-1; i++)
        if (results[i].status != 0)
            bad = i;
    if (!(atomic && bad != (size_t)-1)) {
        r = sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, TX_ATTEMPTS, batch_body, &bt);
        if (r != 0 && !bt.refused)
            goto out;
        r = 0;
        for (size_t i = 0; i < n && bad == (size_t)-1; i++)
            if (results[i].status != 0)
                bad = i;
    }
    if (atomic && bad != (size_t)-1) {
        /* nothing was written: say so on every item that was fine by itself */
        for (size_t i = 0; i < n; i++) {
            if (results[i].status != 0)
                continue;
            results[i].status = SIGIL_ERR_CANCELLED;
            store_err(&results[i].err, "batch.aborted",
                      "not written: item %zu failed and the batch is atomic", bad);
            entries[i].id[0] = '\0';
        }
    }
out:
    if (r == SIGIL_ERR_NOMEM)
        store_err(err, "internal", "out of memory");
    else if (r != 0)
        r = store_db_fail(c, r, err);
    /* a repeat within the batch points at its first occurrence, if that one was written */
    for (size_t i = 0; r == 0 && bt.it != NULL && i < n; i++) {
        size_t first = bt.it[i].dup_of;
        if (first != (size_t)-1 && results[first].status == 0)
            memcpy(results[i].id, entries[first].id, sizeof results[i].id);
    }
    for (size_t i = 0; i < n; i++) {
        if (bt.it != NULL)
            free(bt.it[i].canon);
        if (r != 0 || results[i].status != 0)
            entries[i].id[0] = '\0'; /* not created */
    }
    free(bt.it);
    free(bt.by_id);
    return r;
}

int
sigil_store_entry_create(struct sigil_db_conn *c, const char *actor, struct sigil_store_entry *e,
                         struct sigil_store_err *err)
{
    struct sigil_store_item item;
    int r;

    if ((r = sigil_store_entries_create_batch(c, actor, e, 1, true, &item, err)) != 0)
        return r;
    if (item.status != 0 && err != NULL)
        *err = item.err;
    return item.status;
}

/* Reads one entry (optionally locking it) into *out. */
static int
load_entry(struct sigil_db_conn *c, const char *id, bool lock, struct sigil_store_entry *out,
           struct sigil_store_err *err)
{
    struct sigil_db_res *res = NULL;
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(id)};
    int r;

    memset(out, 0, sizeof *out);
    r = sigil_db_exec(c,
                      lock ? "SELECT " STORE_ENTRY_COLS " FROM entries e WHERE e.id = $1::uuid "
                             "FOR UPDATE OF e"
                           : "SELECT " STORE_ENTRY_COLS " FROM entries e WHERE e.id = $1::uuid",
                      p, 1, &res);
    if (r != 0) {
        r = store_db_fail(c, r, err);
    } else if (sigil_db_res_rows(res) == 0) {
        store_err(err, "entry.not_found", "no entry with id %s", id);
        r = SIGIL_ERR_NOTFOUND;
    } else if ((r = store_entry_from_row(res, 0, out)) != 0) {
        store_err(err, "internal", "cannot read entry %s: %s", id, sigil_strerror(r));
    }
    sigil_db_res_free(res);
    return r;
}

static int
check_id(const char *id, struct sigil_store_err *err)
{
    if (!store_uuid_valid(id)) {
        store_err(err, "entry.id", "an entry id is a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

int
sigil_store_entry_get(struct sigil_db_conn *c, const char *id, struct sigil_store_entry *out,
                      struct sigil_store_err *err)
{
    int r;

    memset(out, 0, sizeof *out);
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = check_id(id, err)) != 0)
        return r;
    return load_entry(c, id, false, out, err);
}

/* Audits a change of one entry: before and after as the admin API shows them. */
static int
audit_entry(struct sigil_db_conn *c, const char *actor, const char *action, const char *id,
            const struct sigil_store_entry *before, const struct sigil_store_entry *after,
            struct sigil_store_err *err)
{
    json_t *b = NULL, *a = NULL;
    int r;

    if ((before != NULL && sigil_store_entry_to_json(before, &b) != 0) ||
        (after != NULL && sigil_store_entry_to_json(after, &a) != 0)) {
        store_err(err, "internal", "out of memory");
        r = SIGIL_ERR_NOMEM;
    } else {
        r = store_audit(c, actor, action, "entry", id, b, a, err);
    }
    json_decref(b);
    json_decref(a);
    return r;
}

struct update {
    const char *actor;
    const char *id;
    const struct sigil_store_entry *patch;
    sigil_store_entry_check_fn check;
    void *check_arg;
    struct sigil_store_entry *out;
    struct sigil_store_err *err;
};

static int
update_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct update *u = arg;
    const struct sigil_store_entry *p = u->patch;
    struct sigil_store_entry before, after, m;
    struct sigil_db_res *res = NULL;
    char *canon = NULL, ttl1[16], ttl2[16], exp[24];
    unsigned f = p->fields;
    int r;

    (void)attempt;
    memset(&after, 0, sizeof after);
    if ((r = load_entry(c, u->id, true, &before, u->err)) != 0)
        return r;
    /* the merged entry borrows from before and the patch; it owns nothing */
    m = before;
    if (f & SIGIL_STORE_F_SPIFFE_ID)
        m.spiffe_id = p->spiffe_id;
    if (f & SIGIL_STORE_F_PARENT_ID)
        m.parent_id = p->parent_id;
    if (f & SIGIL_STORE_F_SELECTORS)
        m.selectors = p->selectors;
    if (f & SIGIL_STORE_F_X509_TTL)
        m.x509_ttl = p->x509_ttl;
    if (f & SIGIL_STORE_F_JWT_TTL)
        m.jwt_ttl = p->jwt_ttl;
    if (f & SIGIL_STORE_F_DNS_NAMES)
        m.dns_names = p->dns_names;
    if (f & SIGIL_STORE_F_FEDERATES_WITH)
        m.federates_with = p->federates_with;
    if (f & SIGIL_STORE_F_ADMIN)
        m.admin = p->admin;
    if (f & SIGIL_STORE_F_DOWNSTREAM)
        m.downstream = p->downstream;
    if (f & SIGIL_STORE_F_HINT)
        m.hint = p->hint;
    if (f & SIGIL_STORE_F_TEAM)
        m.team = p->team;
    if (f & SIGIL_STORE_F_EXPIRES_AT)
        m.expires_at = p->expires_at;
    /* the hook sees a TTL of 0 as given (the policy picks its own default for it) */
    if (u->check != NULL && (r = u->check(u->check_arg, &before, &m, u->err)) != 0)
        goto out;
    if ((f & SIGIL_STORE_F_X509_TTL) && m.x509_ttl == 0)
        m.x509_ttl = SIGIL_STORE_DEFAULT_X509_TTL;
    if ((f & SIGIL_STORE_F_JWT_TTL) && m.jwt_ttl == 0)
        m.jwt_ttl = SIGIL_STORE_DEFAULT_JWT_TTL;
    if ((r = sigil_store_entry_check(&m, u->err)) != 0)
        goto out;
    if ((canon = sigil_selector_set_to_string(&m.selectors)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    /* name the entry we would collide with (the unique index still decides under races) */
    {
        const struct sigil_db_param q[] = {SIGIL_DB_TEXT(m.spiffe_id), SIGIL_DB_TEXT(m.parent_id),
                                           SIGIL_DB_TEXT(canon), SIGIL_DB_TEXT(u->id)};
        if ((r = sigil_db_exec(c,
                               "SELECT id FROM entries WHERE spiffe_id = $1 AND parent_id = $2 "
                               "AND selectors_canon = $3 AND id <> $4::uuid",
                               q, 4, &res)) != 0) {
            r = store_db_fail(c, r, u->err);
            goto out;
        }
        if (sigil_db_res_rows(res) > 0) {
            store_err(u->err, "entry.exists",
                      "entry %s already has this spiffe_id, parent_id and selectors",
                      sigil_db_res_text(res, 0, 0));
            r = SIGIL_ERR_EXISTS;
            goto out;
        }
    }
    if ((r = ensure_teams(c, &m, 1, NULL, u->err)) != 0)
        goto out;
    snprintf(ttl1, sizeof ttl1, "%d", (int)m.x509_ttl);
    snprintf(ttl2, sizeof ttl2, "%d", (int)m.jwt_ttl);
    snprintf(exp, sizeof exp, "%lld", (long long)m.expires_at);
    {
        const struct sigil_db_param q[] = {SIGIL_DB_TEXT(u->id),
                                           SIGIL_DB_TEXT(m.spiffe_id),
                                           SIGIL_DB_TEXT(m.parent_id),
                                           SIGIL_DB_TEXT(canon),
                                           SIGIL_DB_TEXT(ttl1),
                                           SIGIL_DB_TEXT(ttl2),
                                           SIGIL_DB_TEXT(m.admin ? "t" : "f"),
                                           SIGIL_DB_TEXT(m.downstream ? "t" : "f"),
                                           SIGIL_DB_TEXT(m.hint != NULL ? m.hint : ""),
                                           m.team ? SIGIL_DB_TEXT(m.team) : SIGIL_DB_NULL,
                                           SIGIL_DB_TEXT(exp)};
        if ((r = sigil_db_exec(c,
                               "UPDATE entries SET spiffe_id = $2, parent_id = $3, "
                               "selectors_canon = $4, x509_ttl_seconds = $5::int, "
                               "jwt_ttl_seconds = $6::int, admin = $7::bool, "
                               "downstream = $8::bool, hint = $9, team = $10, expires_at = "
                               "CASE WHEN $11::bigint = 0 THEN NULL ELSE to_timestamp($11::bigint) "
                               "END, updated_at = now() WHERE id = $1::uuid",
                               q, 11, NULL)) != 0) {
            r = store_db_fail(c, r, u->err);
            goto out;
        }
    }
    /* sets are replaced as sets: drop the old rows, write the new */
    static const char *const del[] = {"DELETE FROM entry_selectors WHERE entry_id = $1::uuid",
                                      "DELETE FROM entry_dns_names WHERE entry_id = $1::uuid",
                                      "DELETE FROM entry_federates_with WHERE entry_id = $1::uuid"};
    static const unsigned bits[] = {SIGIL_STORE_F_SELECTORS, SIGIL_STORE_F_DNS_NAMES,
                                    SIGIL_STORE_F_FEDERATES_WITH};
    for (int k = 0; k < 3; k++) {
        const struct sigil_db_param q[] = {SIGIL_DB_TEXT(u->id)};
        if ((f & bits[k]) && (r = sigil_db_exec(c, del[k], q, 1, NULL)) != 0) {
            r = store_db_fail(c, r, u->err);
            goto out;
        }
    }
    {
        size_t zero = 0;
        snprintf(m.id, sizeof m.id, "%s", u->id);
        if ((r = write_children(c, &m, &zero, 1,
                                f & (SIGIL_STORE_F_SELECTORS | SIGIL_STORE_F_DNS_NAMES |
                                     SIGIL_STORE_F_FEDERATES_WITH),
                                u->err)) != 0)
            goto out;
    }
    if ((r = load_entry(c, u->id, false, &after, u->err)) != 0 ||
        (r = audit_entry(c, u->actor, "entry.update", u->id, &before, &after, u->err)) != 0)
        goto out;
    if (u->out != NULL) {
        sigil_store_entry_free(u->out);
        *u->out = after;
        memset(&after, 0, sizeof after);
    }
out:
    if (r == SIGIL_ERR_NOMEM)
        store_err(u->err, "internal", "out of memory");
    sigil_db_res_free(res);
    free(canon);
    sigil_store_entry_free(&before);
    sigil_store_entry_free(&after);
    return r;
}

int
sigil_store_entry_update(struct sigil_db_conn *c, const char *actor, const char *id,
                         const struct sigil_store_entry *patch, struct sigil_store_entry *out,
                         struct sigil_store_err *err)
{
    return sigil_store_entry_update_checked(c, actor, id, patch, NULL, NULL, out, err);
}

int
sigil_store_entry_update_checked(struct sigil_db_conn *c, const char *actor, const char *id,
                                 const struct sigil_store_entry *patch,
                                 sigil_store_entry_check_fn check, void *check_arg,
                                 struct sigil_store_entry *out, struct sigil_store_err *err)
{
    struct update u = {actor, id, patch, check, check_arg, out, err};
    int r;

    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = store_actor_check(actor, err)) != 0 || (r = check_id(id, err)) != 0)
        return r;
    if ((r = sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, TX_ATTEMPTS, update_body, &u)) != 0)
        return store_db_fail(c, r, err);
    return 0;
}

struct del {
    const char *actor;
    const char *const *ids;
    size_t n;
    struct sigil_store_item *res;
    struct sigil_store_err *err;
};

static int
delete_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct del *d = arg;
    struct store_arr ids = {0}, aids = {0}, before = {0};
    struct sigil_db_res *res = NULL;
    const char *lit, *l1, *l2;
    int r = 0;

    (void)attempt;
    for (size_t i = 0; i < d->n; i++) {
        if (d->res[i].status == SIGIL_ERR_INVALID)
            continue;
        d->res[i].status = SIGIL_ERR_NOTFOUND;
        store_err(&d->res[i].err, "entry.not_found", "no entry with id %s", d->ids[i]);
        store_arr_add(&ids, d->ids[i]);
    }
    if (ids.n == 0)
        goto out;
    if ((lit = store_arr_end(&ids)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    {
        const struct sigil_db_param p[] = {SIGIL_DB_TEXT(lit)};
        if ((r = sigil_db_exec(c,
                               "SELECT " STORE_ENTRY_COLS " FROM entries e "
                               "WHERE e.id = ANY($1::uuid[]) ORDER BY e.id FOR UPDATE OF e",
                               p, 1, &res)) != 0 ||
            (r = sigil_db_exec(c, "DELETE FROM entries WHERE id = ANY($1::uuid[])", p, 1, NULL)) !=
                0) {
            r = store_db_fail(c, r, d->err);
            goto out;
        }
    }
    for (size_t row = 0; row < sigil_db_res_rows(res); row++) {
        struct sigil_store_entry e;
        json_t *j = NULL;
        char *s = NULL;
        if ((r = store_entry_from_row(res, row, &e)) != 0)
            goto out;
        if (sigil_store_entry_to_json(&e, &j) != 0 || (s = json_dumps(j, JSON_COMPACT)) == NULL)
            r = SIGIL_ERR_NOMEM;
        store_arr_add(&aids, e.id);
        store_arr_add(&before, s);
        for (size_t i = 0; i < d->n; i++)
            if (d->res[i].status == SIGIL_ERR_NOTFOUND && strcasecmp(d->ids[i], e.id) == 0) {
                memset(&d->res[i], 0, sizeof d->res[i]);
            }
        free(s);
        json_decref(j);
        sigil_store_entry_free(&e);
        if (r != 0)
            goto out;
    }
    if (aids.n == 0)
        goto out;
    if ((l1 = store_arr_end(&aids)) == NULL || (l2 = store_arr_end(&before)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    {
        const struct sigil_db_param p[] = {SIGIL_DB_TEXT(d->actor), SIGIL_DB_TEXT(l1),
                                           SIGIL_DB_TEXT(l2)};
        if ((r = sigil_db_exec(c,
                               "INSERT INTO audit_log (actor, action, object_type, object_id, "
                               "before) SELECT $1, 'entry.delete', 'entry', u.id, u.before "
                               "FROM unnest($2::text[], $3::jsonb[]) AS u(id, before)",
                               p, 3, NULL)) != 0)
            r = store_db_fail(c, r, d->err);
    }
out:
    if (r == SIGIL_ERR_NOMEM)
        store_err(d->err, "internal", "out of memory");
    sigil_db_res_free(res);
    store_arr_free(&ids);
    store_arr_free(&aids);
    store_arr_free(&before);
    return r;
}

int
sigil_store_entries_delete_batch(struct sigil_db_conn *c, const char *actor, const char *const *ids,
                                 size_t n, struct sigil_store_item *results,
                                 struct sigil_store_err *err)
{
    struct del d = {actor, ids, n, results, err};
    int r;

    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = store_actor_check(actor, err)) != 0)
        return r;
    if (n > SIGIL_STORE_BATCH_MAX) {
        store_err(err, "batch.range", "a batch holds at most %d ids", SIGIL_STORE_BATCH_MAX);
        return SIGIL_ERR_RANGE;
    }
    for (size_t i = 0; i < n; i++) {
        memset(&results[i], 0, sizeof results[i]);
        if (check_id(ids[i], &results[i].err) != 0)
            results[i].status = SIGIL_ERR_INVALID;
    }
    if ((r = sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, TX_ATTEMPTS, delete_body, &d)) != 0)
        return store_db_fail(c, r, err);
    return 0;
}

int
sigil_store_entry_delete(struct sigil_db_conn *c, const char *actor, const char *id,
                         struct sigil_store_err *err)
{
    struct sigil_store_item item;
    int r;

    if ((r = sigil_store_entries_delete_batch(c, actor, &id, 1, &item, err)) != 0)
        return r;
    if (item.status != 0 && err != NULL)
        *err = item.err;
    return item.status;
}

int
sigil_store_entries_list(struct sigil_db_conn *c, const struct sigil_store_entry_filter *f,
                         struct sigil_store_entry_list *out, struct sigil_store_err *err)
{
    struct sigil_buf sql = {0};
    struct sigil_db_param p[8];
    struct store_arr types = {0}, values = {0};
    struct sigil_db_res *res = NULL;
    char *after = NULL, *canon = NULL, cnt[24];
    size_t np = 0, page;
    int r;

    memset(out, 0, sizeof *out);
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = store_page_size(f->page_size, &page, err)) != 0)
        return r;
    if (f->page_token != NULL && f->page_token[0] != '\0') {
        if ((r = store_token_decode(f->page_token, &after, err)) != 0)
            return r;
        if (!store_uuid_valid(after)) {
            store_err(err, "page_token.invalid",
                      "page_token is not one this server gave out: start again without it");
            r = SIGIL_ERR_INVALID;
            goto out;
        }
    }
    r = sigil_buf_append_str(&sql, "SELECT " STORE_ENTRY_COLS " FROM entries e WHERE true");
    if (r == 0 && after != NULL) {
        p[np++] = SIGIL_DB_TEXT(after);
        r = sigil_buf_appendf(&sql, " AND e.id > $%zu::uuid", np);
    }
    if (r == 0 && f->spiffe_id != NULL && f->spiffe_id[0] != '\0') {
        p[np++] = SIGIL_DB_TEXT(f->spiffe_id);
        r = sigil_buf_appendf(&sql, " AND e.spiffe_id = $%zu", np);
    }
    if (r == 0 && f->parent_id != NULL && f->parent_id[0] != '\0') {
        p[np++] = SIGIL_DB_TEXT(f->parent_id);
        r = sigil_buf_appendf(&sql, " AND e.parent_id = $%zu", np);
    }
    if (r == 0 && f->team != NULL && f->team[0] != '\0') {
        p[np++] = SIGIL_DB_TEXT(f->team);
        r = sigil_buf_appendf(&sql, " AND e.team = $%zu", np);
    }
    if (r == 0 && f->selectors != NULL && f->selectors->count > 0) {
        const struct sigil_selector_set *s = f->selectors;
        const char *lt, *lv;
        size_t t, v;
        for (size_t i = 0; i < s->count; i++) {
            store_arr_add(&types, s->items[i].type);
            store_arr_add(&values, s->items[i].value);
        }
        if ((lt = store_arr_end(&types)) == NULL || (lv = store_arr_end(&values)) == NULL ||
            (canon = sigil_selector_set_to_string(s)) == NULL) {
            r = SIGIL_ERR_NOMEM;
            goto out;
        }
        t = np + 1;
        v = np + 2;
        if (f->match != SIGIL_SELECTOR_MATCH_EXACT) {
            p[np++] = SIGIL_DB_TEXT(lt);
            p[np++] = SIGIL_DB_TEXT(lv);
        }
        /* entries sharing a selector with the filter, found through the (type, value) index */
        switch (f->match) {
        case SIGIL_SELECTOR_MATCH_EXACT:
            p[np++] = SIGIL_DB_TEXT(canon);
            r = sigil_buf_appendf(&sql, " AND e.selectors_canon = $%zu", np);
            break;
        case SIGIL_SELECTOR_MATCH_SUPERSET:
            snprintf(cnt, sizeof cnt, "%zu", s->count);
            p[np++] = SIGIL_DB_TEXT(cnt);
            r = sigil_buf_appendf(
                &sql,
                " AND e.id IN (SELECT s.entry_id FROM entry_selectors s JOIN "
                "unnest($%zu::text[], $%zu::text[]) AS f(t, v) ON s.type = f.t AND s.value = f.v "
                "GROUP BY s.entry_id HAVING count(*) = $%zu::bigint)",
                t, v, np);
            break;
        case SIGIL_SELECTOR_MATCH_ANY:
            r = sigil_buf_appendf(
                &sql,
                " AND e.id IN (SELECT s.entry_id FROM entry_selectors s JOIN "
                "unnest($%zu::text[], $%zu::text[]) AS f(t, v) ON s.type = f.t AND s.value = f.v)",
                t, v);
            break;
        case SIGIL_SELECTOR_MATCH_SUBSET:
            r = sigil_buf_appendf(
                &sql,
                " AND e.id IN (SELECT s.entry_id FROM entry_selectors s JOIN "
                "unnest($%zu::text[], $%zu::text[]) AS f(t, v) ON s.type = f.t AND s.value = f.v)"
                " AND NOT EXISTS (SELECT 1 FROM entry_selectors s2 WHERE s2.entry_id = e.id AND "
                "NOT EXISTS (SELECT 1 FROM unnest($%zu::text[], $%zu::text[]) AS f2(t, v) "
                "WHERE f2.t = s2.type AND f2.v = s2.value))",
                t, v, t, v);
            break;
        default:
            store_err(err, "request.invalid", "match must be exact, subset, superset or any");
            r = SIGIL_ERR_INVALID;
            goto out;
        }
    }
    if (r == 0)
        r = sigil_buf_appendf(&sql, " ORDER BY e.id LIMIT %zu", page + 1);
    if (r == 0)
        r = sigil_buf_append(&sql, "", 1);
    if (r != 0)
        goto out;
    if ((r = sigil_db_exec(c, (const char *)sql.data, p, np, &res)) != 0) {
        r = store_db_fail(c, r, err);
        goto out;
    }
    if ((r = store_entries_from_res(res, page, out)) != 0)
        goto out;
    if (sigil_db_res_rows(res) > page &&
        (out->next_page_token = store_token_encode(out->items[page - 1].id)) == NULL)
        r = SIGIL_ERR_NOMEM;
out:
    if (r == SIGIL_ERR_NOMEM)
        store_err(err, "internal", "out of memory");
    if (r != 0)
        sigil_store_entry_list_free(out);
    sigil_db_res_free(res);
    sigil_buf_free(&sql);
    store_arr_free(&types);
    store_arr_free(&values);
    free(after);
    free(canon);
    return r;
}

struct since {
    int64_t since;
    bool all;
    struct sigil_store_changes *out;
    struct sigil_store_entry_list *list;
    int64_t *revision;
    struct sigil_store_err *err;
};

/* Reads in one REPEATABLE READ snapshot: the counter and what it covers are consistent,
 * because a writer's revision is taken under the counter row's lock and commits with it. */
static int
since_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct since *s = arg;
    struct sigil_db_res *res = NULL;
    char buf[24];
    int64_t rev, pruned;
    int r;

    (void)attempt;
    if (s->all)
        sigil_store_entry_list_free(s->list);
    else
        sigil_store_changes_free(s->out);
    if ((r = sigil_db_exec(c, "SELECT revision, pruned_through FROM sigil_revision", NULL, 0,
                           &res)) != 0)
        goto fail;
    rev = store_res_i64(res, 0, 0);
    pruned = store_res_i64(res, 0, 1);
    sigil_db_res_free(res);
    res = NULL;
    if (s->all) {
        *s->revision = rev;
        if ((r = sigil_db_exec(c, "SELECT " STORE_ENTRY_COLS " FROM entries e ORDER BY e.id", NULL,
                               0, &res)) != 0)
            goto fail;
        r = store_entries_from_res(res, SIZE_MAX, s->list);
        goto out;
    }
    s->out->revision = rev;
    if (s->since < pruned || s->since > rev) {
        store_err(s->err, "revision.expired",
                  "changes after revision %lld are no longer kept (pruned through %lld, now %lld): "
                  "load every entry again",
                  (long long)s->since, (long long)pruned, (long long)rev);
        r = SIGIL_ERR_EXPIRED;
        goto out;
    }
    snprintf(buf, sizeof buf, "%lld", (long long)s->since);
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(buf)};
    if ((r = sigil_db_exec(c,
                           "SELECT " STORE_ENTRY_COLS " FROM entries e WHERE e.id IN "
                           "(SELECT object_id::uuid FROM events WHERE kind = 'entry' AND "
                           "revision > $1::bigint) ORDER BY e.id",
                           p, 1, &res)) != 0)
        goto fail;
    if ((r = store_entries_from_res(res, SIZE_MAX, &s->out->upserted)) != 0)
        goto out;
    sigil_db_res_free(res);
    res = NULL;
    if ((r = sigil_db_exec(c,
                           "SELECT DISTINCT x.id FROM (SELECT object_id::uuid AS id FROM events "
                           "WHERE kind = 'entry' AND revision > $1::bigint OFFSET 0) x "
                           "WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.id = x.id) "
                           "ORDER BY 1",
                           p, 1, &res)) != 0)
        goto fail;
    if (sigil_db_res_rows(res) > 0) {
        struct sigil_store_strv *d = &s->out->deleted;
        if ((d->items = calloc(sigil_db_res_rows(res), sizeof *d->items)) == NULL) {
            r = SIGIL_ERR_NOMEM;
            goto out;
        }
        for (size_t i = 0; i < sigil_db_res_rows(res); i++) {
            if ((d->items[i] = store_res_dup(res, i, 0, &r)) == NULL && r != 0)
                goto out;
            d->count++;
        }
    }
    goto out;
fail:
    r = store_db_fail(c, r, s->err);
out:
    if (r == SIGIL_ERR_NOMEM)
        store_err(s->err, "internal", "out of memory");
    sigil_db_res_free(res);
    return r;
}

int
sigil_store_entries_since(struct sigil_db_conn *c, int64_t since, struct sigil_store_changes *out,
                          struct sigil_store_err *err)
{
    struct since s = {.since = since, .out = out, .err = err};
    int r;

    memset(out, 0, sizeof *out);
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = sigil_db_tx(c, SIGIL_DB_REPEATABLE_READ, TX_ATTEMPTS, since_body, &s)) != 0) {
        int64_t rev = out->revision;
        sigil_store_changes_free(out);
        out->revision = rev;
        return store_db_fail(c, r, err);
    }
    return 0;
}

int
sigil_store_entries_load_all(struct sigil_db_conn *c, struct sigil_store_entry_list *out,
                             int64_t *revision, struct sigil_store_err *err)
{
    struct since s = {.all = true, .list = out, .revision = revision, .err = err};
    int r;

    memset(out, 0, sizeof *out);
    *revision = 0;
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = sigil_db_tx(c, SIGIL_DB_REPEATABLE_READ, TX_ATTEMPTS, since_body, &s)) != 0) {
        sigil_store_entry_list_free(out);
        return store_db_fail(c, r, err);
    }
    return 0;
}
