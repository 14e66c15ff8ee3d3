/* bench_entries_batch CONNINFO [TOTAL]: creates TOTAL (default 100,000) registration entries
 * through sigil_store_entries_create_batch in batches of 1,000 and prints entries per second,
 * against a baseline measured in the same run: the same rows through a plain multi-row INSERT
 * into the entries table only (no child rows, no audit). CONNINFO names a database with the
 * migrations applied; rows are added under a per-run prefix and left in place. Benchmarks can
 * link only `sigil`, so the store's sources are compiled in here. Never run by CI. */
#include "../../server/store.c"
#include "../../server/store_agents.c"
#include "../../server/store_bundles.c"
#include "../../server/store_entries.c"

#include <time.h>

#define BATCH 1000

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Entry i of a run: three unix selectors, like a typical workload entry. */
static int
make_entry(struct sigil_store_entry *e, const char *run, const char *kind, size_t i)
{
    char buf[160];
    uint8_t h[32];
    char hex[65];

    memset(e, 0, sizeof *e);
    snprintf(buf, sizeof buf, "spiffe://example.org/bench/%s/%s/w%zu", run, kind, i);
    if ((e->spiffe_id = strdup(buf)) == NULL ||
        (e->parent_id = strdup("spiffe://example.org/agent/bench")) == NULL)
        return SIGIL_ERR_NOMEM;
    crypto_hash_sha256(h, (const uint8_t *)buf, strlen(buf));
    sigil_hex_encode(h, sizeof h, hex);
    snprintf(buf, sizeof buf, "unix:sha256:%s", hex);
    if (sigil_selector_set_add_str(&e->selectors, buf, strlen(buf), NULL) != 0 ||
        sigil_selector_set_add_str(&e->selectors, "unix:uid:1000", 13, NULL) != 0)
        return SIGIL_ERR_NOMEM;
    snprintf(buf, sizeof buf, "unix:path:/opt/%s/w%zu", kind, i);
    return sigil_selector_set_add_str(&e->selectors, buf, strlen(buf), NULL);
}

/* The baseline: one multi-row INSERT of BATCH rows into entries, one transaction each. */
static int
baseline(struct sigil_db_conn *c, const char *run, size_t total, double *secs)
{
    double t0 = 0, spent = 0;
    int r = 0;

    for (size_t base = 0; base < total && r == 0; base += BATCH) {
        struct store_arr ids = {0}, sids = {0}, pids = {0}, canons = {0};
        size_t n = total - base < BATCH ? total - base : BATCH;
        for (size_t i = 0; i < n && r == 0; i++) {
            struct sigil_store_entry e;
            char id[SIGIL_STORE_UUID_LEN + 1], *canon;
            if ((r = make_entry(&e, run, "base", base + i)) == 0 && (r = store_uuid_new(id)) == 0 &&
                (canon = sigil_selector_set_to_string(&e.selectors)) != NULL) {
                store_arr_add(&ids, id);
                store_arr_add(&sids, e.spiffe_id);
                store_arr_add(&pids, e.parent_id);
                store_arr_add(&canons, canon);
                free(canon);
            }
            sigil_store_entry_free(&e);
        }
        const char *l0 = store_arr_end(&ids), *l1 = store_arr_end(&sids),
                   *l2 = store_arr_end(&pids), *l3 = store_arr_end(&canons);
        if (r == 0 && (l0 == NULL || l1 == NULL || l2 == NULL || l3 == NULL))
            r = SIGIL_ERR_NOMEM;
        if (r == 0) {
            const struct sigil_db_param p[] = {SIGIL_DB_TEXT(l0), SIGIL_DB_TEXT(l1),
                                               SIGIL_DB_TEXT(l2), SIGIL_DB_TEXT(l3)};
            t0 = now_s();
            r = sigil_db_exec(c,
                              "INSERT INTO entries (id, spiffe_id, parent_id, selectors_canon) "
                              "SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], "
                              "$4::text[])",
                              p, 4, NULL);
            spent += now_s() - t0;
        }
        store_arr_free(&ids);
        store_arr_free(&sids);
        store_arr_free(&pids);
        store_arr_free(&canons);
    }
    *secs = spent;
    return r;
}

int
main(int argc, char **argv)
{
    struct sigil_db_conn *c = NULL;
    struct sigil_db_error dberr;
    struct sigil_store_entry *e = calloc(BATCH, sizeof *e);
    struct sigil_store_item *res = calloc(BATCH, sizeof *res);
    struct sigil_store_err err;
    size_t total = 100000, failed = 0;
    double spent = 0, t0, base_secs = 0;
    char run[17];
    uint8_t rnd[8];
    int r = 0;

    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: bench_entries_batch CONNINFO [TOTAL]\n");
        return 2;
    }
    if (argc == 3 && (total = strtoul(argv[2], NULL, 10)) == 0) {
        fprintf(stderr, "bench_entries_batch: TOTAL must be a positive number\n");
        return 2;
    }
    if (e == NULL || res == NULL || sodium_init() < 0)
        return 1;
    if (sigil_db_connect(argv[1], &c, &dberr) != 0) {
        fprintf(stderr, "bench_entries_batch: %s\n", dberr.message);
        return 1;
    }
    randombytes_buf(rnd, sizeof rnd);
    sigil_hex_encode(rnd, sizeof rnd, run);
    printf("run %s: %zu entries in batches of %d\n", run, total, BATCH);
    fflush(stdout);

    for (size_t base = 0; base < total && r == 0; base += BATCH) {
        size_t n = total - base < BATCH ? total - base : BATCH;
        for (size_t i = 0; i < n && r == 0; i++)
            r = make_entry(&e[i], run, "store", base + i);
        if (r == 0) {
            t0 = now_s();
            r = sigil_store_entries_create_batch(c, "uid:0", e, n, false, res, &err);
            spent += now_s() - t0;
        }
        for (size_t i = 0; i < n; i++) {
            failed += r == 0 && res[i].status != 0;
            sigil_store_entry_free(&e[i]);
        }
        if (r == 0 && (base / BATCH) % 10 == 9) {
            printf("  %zu entries, %.0f entries/s so far\n", base + n, (double)(base + n) / spent);
            fflush(stdout);
        }
    }
    if (r != 0) {
        fprintf(stderr, "bench_entries_batch: batch create failed: %s\n", err.message);
        goto out;
    }
    printf("store batch create: %zu entries in %.2f s = %.0f entries/s (%zu items failed)\n", total,
           spent, (double)total / spent, failed);
    fflush(stdout);
    if ((r = baseline(c, run, total, &base_secs)) != 0) {
        fprintf(stderr, "bench_entries_batch: baseline failed: %s\n",
                sigil_db_conn_error(c)->message);
        goto out;
    }
    printf("baseline multi-row INSERT (entries table only): %.2f s = %.0f entries/s\n", base_secs,
           (double)total / base_secs);
    printf("ratio store/baseline: %.2f\n", ((double)total / spent) / ((double)total / base_secs));
out:
    sigil_db_disconnect(c);
    free(e);
    free(res);
    return r == 0 ? 0 : 1;
}
