/* The node API: gRPC methods of proto/node.proto on a TLS 1.3 listener presenting the server's
 * own SVID. Attestation and the per-call agent check run on database workers; the
 * authorization walk and the streams run on the loop over the in-memory index, which a feed
 * keeps current (NOTIFY sigil_events -> entries since our revision on a worker -> apply).
 * A batch of X.509-SVIDs is minted on libuv's thread pool, split over the cores, with a
 * prepared minter (sigil_x509_minter) of the current intermediate. */
#include "nodeapi.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <uv.h>

#include "index.h"
#include "node.pb-c.h"
#include "nodeattest.h"
#include "sigil/bundle.h"
#include "sigil/err.h"
#include "sigil/jwtsvid.h"
#include "sigil/log.h"
#include "sigil/rpc.h"
#include "sigil/spiffeid.h"
#include "sigil/tls.h"
#include "sigil/x509.h"
#include "store.h"

#define COMPONENT "nodeapi"
#define SERVER_PATH "/sigil/server"
#define SERVER_SVID_TTL 3600
#define CHECK_MS 5000 /* how often the server SVID and trust roots are looked at */
#define GRACE_MS 1000
#define AGENT_BUCKETS 4096
#define BATCH_CHUNK_MIN 16 /* CSRs per thread-pool job at least: fewer cost more than they gain */
/* Entry ids remembered over all agents for SyncEntries from a revision (about 48 bytes each):
 * past this, an agent's next sync is a full one. */
#define SYNC_REMEMBER_MAX 1000000

enum method {
    M_RENEW,
    M_BATCH,
    M_JWT,
    M_BUNDLES,
    M_SYNC,
};

/* One authenticated call (every method but Attest), from the agent check to its end. Streams
 * stay on the node API's list while open. */
struct ncall {
    struct sigil_nodeapi *n;
    struct sigil_rpc_call *call; /* NULL once gone */
    enum method method;
    bool busy; /* a database job refers to this call */
    bool gone; /* cancelled: free when the job is done */
    uint8_t *req;
    size_t req_len;
    char agent_id[SIGIL_SPIFFEID_MAX + 1];
    char serial[41];
    struct sigil_store_agent agent;
    struct sigil_store_err serr;
    struct sigil_db_error dberr;
    /* RenewAgent */
    struct sigil_buf chain;
    char new_serial[41];
    int64_t new_expires;
    /* streams */
    struct ncall *next, *prev;
    bool open;
    struct sigil_index_authset auth; /* SyncEntries: what the agent was last sent */
    int64_t sent_rev;                /* ... the revision of that batch */
    bool synced;                     /* ... a batch went out (or the call began from one) */
    bool ambiguous; /* ... sent_rev names two states: never start a delta from it */
    uint32_t page_size;
    uint64_t bundle_seq_sent; /* StreamBundles: the feed generation last sent */
};

struct sigil_nodeapi {
    uv_loop_t *loop;
    struct sigil_db *db;
    struct sigil_ca *const *ca;
    char *td;
    char server_id[SIGIL_SPIFFEID_MAX + 1];
    struct sigil_nodeattest_cfg acfg;
    int64_t agent_ttl;
    struct sigil_rpc_server *rpc;
    struct sigil_tls_ctx *tls;
    X509 *svid;
    EVP_PKEY *svid_key;
    time_t svid_renew_at;
    X509 *svid_issuer; /* the intermediate the SVID was minted under */
    STACK_OF(X509) *roots;
    uv_timer_t timer;
    bool timer_open;
    struct sigil_index *ix;
    struct sigil_db_listener *listener;
    bool feed_running, feed_again, feed_full;
    char *bundle_doc; /* own bundle JSON as the database holds it */
    struct sigil_store_bundle_list fed;
    uint64_t bundle_gen; /* bumps when the bundles change */
    struct ncall *streams;
    struct agent_node **agents; /* AGENT_BUCKETS chains: every attested agent */
    int jobs;                   /* database jobs in flight that refer to n */
    size_t remembered;          /* items of every agent_node.sent */
    bool stopping, rpc_down;
    void (*done)(void *);
    void *done_arg;
    struct sigil_counter *attests, *signed_svids, *sync_pages;
    struct sigil_histogram *sign_latency;
    struct signer *signer; /* the current intermediate's minter */
    unsigned int cores;    /* thread-pool jobs one batch is split into at most */
};

static void maybe_free(struct sigil_nodeapi *n);
static void streams_changed(struct sigil_nodeapi *n, bool entries, bool bundles);
static void streams_recheck(struct sigil_nodeapi *n);

static double
mono_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the agents, as the database holds them (kept current by the feed) ---- */

struct agent_node {
    struct agent_node *next;
    char *id;
    char serial[41];
    char new_serial[41]; /* "" without a pending renewal */
    bool banned;
    struct sigil_selector_set sel;
    /* SyncEntries: what the agent's last stream had sent it (at sent_rev; 0: nothing known),
     * so that a new call from that revision gets only what changed */
    struct sigil_index_authset sent;
    int64_t sent_rev;
};

static size_t
agent_bucket(const char *id)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (; *id != '\0'; id++)
        h = (h ^ (uint8_t)*id) * UINT64_C(1099511628211);
    return (size_t)(h % AGENT_BUCKETS);
}

static struct agent_node *
agent_find(struct sigil_nodeapi *n, const char *id)
{
    for (struct agent_node *a = n->agents[agent_bucket(id)]; a != NULL; a = a->next)
        if (strcmp(a->id, id) == 0)
            return a;
    return NULL;
}

static void
agent_forget_sent(struct sigil_nodeapi *n, struct agent_node *a)
{
    n->remembered -= a->sent.count;
    sigil_index_authset_free(&a->sent);
    a->sent_rev = 0;
}

static void
agent_node_free(struct sigil_nodeapi *n, struct agent_node *a)
{
    agent_forget_sent(n, a);
    free(a->id);
    sigil_selector_set_free(&a->sel);
    free(a);
}

static void
agent_remove(struct sigil_nodeapi *n, const char *id)
{
    for (struct agent_node **pp = &n->agents[agent_bucket(id)]; *pp != NULL; pp = &(*pp)->next) {
        struct agent_node *a = *pp;

        if (strcmp(a->id, id) == 0) {
            *pp = a->next;
            agent_node_free(n, a);
            return;
        }
    }
}

static void
agents_clear(struct sigil_nodeapi *n)
{
    for (size_t b = 0; n->agents != NULL && b < AGENT_BUCKETS; b++)
        while (n->agents[b] != NULL) {
            struct agent_node *a = n->agents[b];

            n->agents[b] = a->next;
            agent_node_free(n, a);
        }
}

/* Records the stored row r (replacing what was there). Returns 0 or SIGIL_ERR_NOMEM. */
static int
agent_put(struct sigil_nodeapi *n, const struct sigil_store_agent *r)
{
    struct agent_node *a = calloc(1, sizeof *a), *old;
    size_t b;

    if (a == NULL || (a->id = strdup(r->spiffe_id)) == NULL ||
        sigil_selector_set_copy(&a->sel, &r->selectors) != 0) {
        if (a != NULL)
            agent_node_free(n, a);
        return SIGIL_ERR_NOMEM;
    }
    if ((old = agent_find(n, r->spiffe_id)) != NULL) { /* what it was sent stays known */
        a->sent = old->sent;
        a->sent_rev = old->sent_rev;
        old->sent = (struct sigil_index_authset){0};
        old->sent_rev = 0;
    }
    snprintf(a->serial, sizeof a->serial, "%s", r->serial ? r->serial : "");
    snprintf(a->new_serial, sizeof a->new_serial, "%s", r->new_serial ? r->new_serial : "");
    a->banned = r->banned;
    agent_remove(n, r->spiffe_id);
    b = agent_bucket(a->id);
    a->next = n->agents[b];
    n->agents[b] = a;
    return 0;
}

/* Every agent, page by page (blocking, on a worker or at startup); *out grows. */
static int
agents_load_all(struct sigil_db_conn *c, struct sigil_store_agent_list *out,
                struct sigil_store_err *err)
{
    char *token = NULL;
    int r = 0;

    memset(out, 0, sizeof *out);
    do {
        struct sigil_store_agent_filter f = {
            .banned = -1, .page_size = SIGIL_STORE_PAGE_MAX, .page_token = token};
        struct sigil_store_agent_list l = {0};
        struct sigil_store_agent *grown;

        if ((r = sigil_store_agents_list(c, &f, &l, err)) != 0)
            break;
        grown = realloc(out->items, (out->count + l.count + 1) * sizeof *grown);
        if (grown == NULL) {
            sigil_store_agent_list_free(&l);
            r = SIGIL_ERR_NOMEM;
            break;
        }
        out->items = grown;
        if (l.count > 0)
            memcpy(out->items + out->count, l.items, l.count * sizeof *l.items);
        out->count += l.count;
        l.count = 0; /* moved */
        free(token);
        token = l.next_page_token;
        l.next_page_token = NULL;
        sigil_store_agent_list_free(&l);
    } while (token != NULL);
    free(token);
    return r;
}

/* ---- the server's own SVID and the trust roots ---- */

static int
build_roots(struct sigil_nodeapi *n)
{
    const struct sigil_bundle *b = sigil_ca_bundle(*n->ca);
    STACK_OF(X509) *roots = sk_X509_new_null();

    if (roots == NULL)
        return SIGIL_ERR_NOMEM;
    for (size_t i = 0; i < sigil_bundle_x509_count(b); i++) {
        X509 *c = sigil_bundle_x509_get(b, i);

        if (X509_up_ref(c) != 1 || sk_X509_push(roots, c) <= 0) {
            sk_X509_pop_free(roots, X509_free);
            return SIGIL_ERR_NOMEM;
        }
    }
    sk_X509_pop_free(n->roots, X509_free);
    n->roots = roots;
    return 0;
}

/* Mints spiffe://<td>/sigil/server for a fresh key under the current intermediate. */
static int
mint_server_svid(struct sigil_nodeapi *n, const char **why)
{
    struct sigil_ca *ca = *n->ca;
    struct sigil_spiffeid id;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    time_t now = time(NULL), na;
    int r;

    if ((r = sigil_spiffeid_parse(n->server_id, strlen(n->server_id), &id, why)) != 0 ||
        (r = sigil_x509_key_generate(&key)) != 0)
        goto out;
    struct sigil_x509_leaf_params lp = {
        .id = &id, .not_before = now - 60, .not_after = now + SERVER_SVID_TTL};
    if ((r = sigil_x509_mint_leaf(&lp, key, sigil_ca_intermediate(ca),
                                  sigil_ca_intermediate_key(ca), &cert, why)) != 0)
        goto out;
    r = SIGIL_ERR_NOMEM;
    *why = "out of memory";
    if ((chain = sk_X509_new_null()) == NULL || X509_up_ref(sigil_ca_intermediate(ca)) != 1)
        goto out;
    if (sk_X509_push(chain, sigil_ca_intermediate(ca)) <= 0) {
        X509_free(sigil_ca_intermediate(ca));
        goto out;
    }
    if (n->tls != NULL && (r = sigil_tls_ctx_set_identity(n->tls, cert, chain, key, why)) != 0)
        goto out;
    if (sigil_x509_cert_not_after(cert, &na) != 0)
        na = now + SERVER_SVID_TTL;
    X509_free(n->svid);
    EVP_PKEY_free(n->svid_key);
    n->svid = cert;
    n->svid_key = key;
    n->svid_issuer = sigil_ca_intermediate(ca);
    n->svid_renew_at = now + (na - now) / 2;
    cert = NULL;
    key = NULL;
    r = 0;
out:
    sk_X509_pop_free(chain, X509_free);
    X509_free(cert);
    EVP_PKEY_free(key);
    return r;
}

/* Agents present X.509-SVIDs of our trust domain chaining to our bundle. */
static int
verify_agent(void *arg, STACK_OF(X509) *chain, const char **why)
{
    struct sigil_nodeapi *n = arg;
    struct sigil_spiffeid sid;
    int r;

    if ((r = sigil_x509_svid_verify(chain, n->roots, 0, &sid, why)) != 0)
        return r;
    if (!sigil_spiffeid_member_of(&sid, n->td)) {
        *why = "X-8: the caller's SPIFFE ID is not of our trust domain";
        return SIGIL_ERR_VERIFY;
    }
    return 0;
}

static int
make_tls(struct sigil_nodeapi *n, const char **why)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    struct sigil_tls_opts to = {
        .cert = n->svid,
        .chain = chain,
        .key = n->svid_key,
        .require_client_cert = false, /* Attest has none; the other methods check */
        .verify = verify_agent,
        .verify_arg = n,
    };
    int r;

    if (chain == NULL || sk_X509_push(chain, n->svid_issuer) <= 0) {
        sk_X509_free(chain);
        *why = "out of memory";
        return SIGIL_ERR_NOMEM;
    }
    r = sigil_tls_ctx_new_server(&to, &n->tls, why);
    sk_X509_free(chain); /* borrowed entries: the context up-refs what it keeps */
    return r;
}

static void
on_timer(uv_timer_t *t)
{
    struct sigil_nodeapi *n = t->data;
    const char *why = NULL;

    if (n->stopping)
        return;
    (void)build_roots(n);
    if (time(NULL) >= n->svid_renew_at || n->svid_issuer != sigil_ca_intermediate(*n->ca)) {
        if (mint_server_svid(n, &why) != 0)
            sigil_log_kv(SIGIL_LOG_WARN, COMPONENT, "cannot renew the server SVID", "error",
                         why ? why : "?", NULL);
        else
            sigil_log(SIGIL_LOG_INFO, COMPONENT, "server SVID renewed");
    }
}

/* ---- the index feed ---- */

struct feed_job {
    struct sigil_nodeapi *n;
    bool full;
    int64_t since;
    struct sigil_store_entry_list all;
    int64_t all_rev;
    struct sigil_store_changes ch;
    struct sigil_store_bundle own;
    struct sigil_store_bundle_list fed;
    struct sigil_store_strv agents; /* agents with events after since */
    struct sigil_store_agent *rows; /* their rows now, where found[i] */
    bool *found;
    struct sigil_store_agent_list agents_all; /* full: every agent */
    struct sigil_store_err serr;
    struct sigil_db_error dberr;
};

static void
strv_clear(struct sigil_store_strv *v)
{
    for (size_t i = 0; i < v->count; i++)
        free(v->items[i]);
    free(v->items);
    memset(v, 0, sizeof *v);
}

/* The agents changed (banned, evicted, renewed, re-attested) after since, so the open streams
 * of a banned or evicted agent can be ended. */
static int
changed_agents(struct sigil_db_conn *c, int64_t since, struct sigil_store_strv *out)
{
    struct sigil_db_res *res = NULL;
    char rev[24];
    size_t n;
    int r;

    snprintf(rev, sizeof rev, "%lld", (long long)since);
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(rev)};
    if ((r = sigil_db_exec(c,
                           "SELECT DISTINCT object_id FROM events WHERE kind = 'agent' AND "
                           "revision > $1::bigint",
                           p, 1, &res)) != 0)
        return r;
    n = sigil_db_res_rows(res);
    if (n > 0 && (out->items = calloc(n, sizeof *out->items)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if ((out->items[i] = strdup(sigil_db_res_text(res, i, 0))) == NULL) {
            r = SIGIL_ERR_NOMEM;
            goto out;
        }
        out->count++;
    }
out:
    sigil_db_res_free(res);
    return r;
}

static int
feed_work(struct sigil_db_conn *c, void *arg)
{
    struct feed_job *j = arg;
    int r;

    if (!j->full) {
        if ((r = changed_agents(c, j->since, &j->agents)) != 0)
            return r;
        if (j->agents.count > 0 && ((j->rows = calloc(j->agents.count, sizeof *j->rows)) == NULL ||
                                    (j->found = calloc(j->agents.count, sizeof *j->found)) == NULL))
            return SIGIL_ERR_NOMEM;
        for (size_t i = 0; i < j->agents.count; i++) {
            r = sigil_store_agent_get(c, j->agents.items[i], &j->rows[i], &j->serr);
            if (r != 0 && r != SIGIL_ERR_NOTFOUND)
                return r;
            j->found[i] = r == 0;
        }
        r = sigil_store_entries_since(c, j->since, &j->ch, &j->serr);
        if (r == SIGIL_ERR_EXPIRED)
            j->full = true; /* events were pruned past our revision */
        else if (r != 0)
            return r;
    }
    if (j->full && ((r = sigil_store_entries_load_all(c, &j->all, &j->all_rev, &j->serr)) != 0 ||
                    (r = agents_load_all(c, &j->agents_all, &j->serr)) != 0))
        return r;
    if ((r = sigil_store_bundle_get(c, NULL, &j->own, &j->serr)) != 0 && r != SIGIL_ERR_NOTFOUND)
        return r;
    return sigil_store_bundles_list(c, &j->fed, &j->serr);
}

static void feed_kick(struct sigil_nodeapi *n);

static bool
fed_equal(const struct sigil_store_bundle_list *a, const struct sigil_store_bundle_list *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++)
        if (strcmp(a->items[i].trust_domain, b->items[i].trust_domain) != 0 ||
            strcmp(a->items[i].document, b->items[i].document) != 0)
            return false;
    return true;
}

static void
feed_done(void *arg, int status)
{
    struct feed_job *j = arg;
    struct sigil_nodeapi *n = j->n;
    bool entries = false, bundles = false;
    int r = 0;

    n->jobs--;
    n->feed_running = false;
    if (n->stopping || status != 0) {
        if (!n->stopping)
            sigil_log_kv(SIGIL_LOG_WARN, COMPONENT,
                         "entry feed failed (retrying on the next event)", "error",
                         j->serr.message[0] ? j->serr.message : j->dberr.message, NULL);
        goto out;
    }
    if (j->full) {
        sigil_index_clear(n->ix);
        for (size_t i = 0; i < j->all.count && r == 0; i++)
            r = sigil_index_put(n->ix, &j->all.items[i]);
        sigil_index_set_revision(n->ix, j->all_rev);
        entries = true;
        agents_clear(n);
        for (size_t i = 0; i < j->agents_all.count && r == 0; i++)
            r = agent_put(n, &j->agents_all.items[i]);
    } else if (j->ch.upserted.count > 0 || j->ch.deleted.count > 0 ||
               j->ch.revision != sigil_index_revision(n->ix)) {
        entries = j->ch.upserted.count > 0 || j->ch.deleted.count > 0;
        r = sigil_index_apply(n->ix, &j->ch);
    }
    for (size_t i = 0; !j->full && i < j->agents.count && r == 0; i++) {
        if (j->found[i])
            r = agent_put(n, &j->rows[i]);
        else
            agent_remove(n, j->agents.items[i]);
    }
    if (r != 0) {
        n->feed_full = true; /* the index may be partial: load it all next time */
        n->feed_again = true;
    } else if (j->full) {
        n->feed_full = false;
    }
    if (j->own.document != NULL &&
        (n->bundle_doc == NULL || strcmp(n->bundle_doc, j->own.document) != 0)) {
        free(n->bundle_doc);
        n->bundle_doc = j->own.document;
        j->own.document = NULL;
        bundles = true;
    }
    if (!fed_equal(&n->fed, &j->fed)) {
        sigil_store_bundle_list_free(&n->fed);
        n->fed = j->fed;
        memset(&j->fed, 0, sizeof j->fed);
        bundles = true;
    }
    if (bundles)
        n->bundle_gen++;
    if (entries || bundles)
        streams_changed(n, entries, bundles);
    if (j->agents.count > 0 || j->full)
        streams_recheck(n);
out:
    for (size_t i = 0; j->rows != NULL && i < j->agents.count; i++)
        sigil_store_agent_free(&j->rows[i]);
    free(j->rows);
    free(j->found);
    strv_clear(&j->agents);
    sigil_store_agent_list_free(&j->agents_all);
    sigil_store_entry_list_free(&j->all);
    sigil_store_changes_free(&j->ch);
    sigil_store_bundle_free(&j->own);
    sigil_store_bundle_list_free(&j->fed);
    free(j);
    if (n->stopping) {
        maybe_free(n);
        return;
    }
    if (n->feed_again) {
        n->feed_again = false;
        feed_kick(n);
    }
}

/* Starts a catch-up unless one runs (then one more follows it: events are never lost). */
static void
feed_kick(struct sigil_nodeapi *n)
{
    struct feed_job *j;

    if (n->stopping)
        return;
    if (n->feed_running) {
        n->feed_again = true;
        return;
    }
    if ((j = calloc(1, sizeof *j)) == NULL)
        return;
    j->n = n;
    j->full = n->feed_full;
    j->since = sigil_index_revision(n->ix);
    if (sigil_db_submit(n->db, feed_work, feed_done, j, &j->dberr) != 0) {
        free(j);
        return;
    }
    n->jobs++;
    n->feed_running = true;
}

static void
on_event(void *arg, enum sigil_db_listen_event ev, const char *payload)
{
    struct sigil_nodeapi *n = arg;

    if (ev == SIGIL_DB_LISTEN_LOST) {
        sigil_log_kv(SIGIL_LOG_WARN, COMPONENT, "lost the event feed (reconnecting)", "error",
                     payload, NULL);
        return;
    }
    feed_kick(n); /* READY (maybe missed events) or NOTIFY: catch up from our revision */
}

/* ---- minting ---- */

/* The minter of the current intermediate, shared with the batches in flight: a rotation makes
 * a new one and the old lives until its last batch ends. refs changes on the loop only. */
struct signer {
    struct sigil_x509_minter *m;
    int refs;
};

static void
signer_put(struct signer *s)
{
    if (s != NULL && --s->refs == 0) {
        sigil_x509_minter_free(s->m);
        free(s);
    }
}

/* The signer of the CA's current intermediate (one more reference: signer_put it). The minter
 * holds a reference on its issuer, so its address is not reused while we compare with it. */
static struct signer *
signer_get(struct sigil_nodeapi *n, const char **why)
{
    struct sigil_ca *ca = *n->ca;
    X509 *inter = sigil_ca_intermediate(ca);
    struct signer *s;

    if (n->signer == NULL || sigil_x509_minter_issuer(n->signer->m) != inter) {
        if ((s = calloc(1, sizeof *s)) == NULL) {
            *why = "out of memory";
            return NULL;
        }
        if (sigil_x509_minter_new(inter, sigil_ca_intermediate_key(ca), &s->m, why) != 0) {
            free(s);
            return NULL;
        }
        s->refs = 1;
        signer_put(n->signer);
        n->signer = s;
    }
    n->signer->refs++;
    return n->signer;
}

/* Mints an X.509-SVID for spiffe_id with the key of csr (DER or PEM), living ttl seconds from
 * now; appends the chain (leaf, intermediate) as DER to chain. Any thread. */
static int
mint_with(const struct sigil_x509_minter *m, const uint8_t *csr, size_t csr_len,
          const char *spiffe_id, char *const *dns, size_t ndns, int64_t ttl, time_t now,
          struct sigil_buf *chain, char serial[41], int64_t *expires, const char **why)
{
    struct sigil_x509_minted info;
    struct sigil_spiffeid id;
    int r;

    if ((r = sigil_spiffeid_parse(spiffe_id, strlen(spiffe_id), &id, why)) != 0)
        return r;
    struct sigil_x509_leaf_params lp = {.id = &id,
                                        .dns_names = (const char *const *)dns,
                                        .n_dns = ndns,
                                        .not_before = now - 10,
                                        .not_after = now + (time_t)ttl};
    if ((r = sigil_x509_minter_leaf_csr(m, &lp, csr, csr_len, chain, &info, why)) != 0)
        return r;
    if ((r = sigil_x509_minter_chain_tail(m, chain)) != 0) {
        *why = "cannot encode the SVID";
        return r;
    }
    memcpy(serial, info.serial, sizeof info.serial);
    *expires = (int64_t)info.not_after;
    return 0;
}

/* mint_with on the loop, for Attest and RenewAgent (one SVID each). */
static int
mint_svid(struct sigil_nodeapi *n, const uint8_t *csr, size_t csr_len, const char *spiffe_id,
          char *const *dns, size_t ndns, int64_t ttl, struct sigil_buf *chain, char serial[41],
          int64_t *expires, const char **why)
{
    struct signer *s;
    double t0 = mono_s();
    int r;

    if ((s = signer_get(n, why)) == NULL)
        return SIGIL_ERR_CRYPTO;
    r = mint_with(s->m, csr, csr_len, spiffe_id, dns, ndns, ttl, time(NULL), chain, serial, expires,
                  why);
    signer_put(s);
    if (r == 0)
        sigil_histogram_observe(n->sign_latency, mono_s() - t0);
    return r;
}

static int
send_packed(struct sigil_rpc_call *call, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    int r;

    if (buf == NULL)
        return SIGIL_ERR_NOMEM;
    protobuf_c_message_pack(m, buf);
    r = sigil_rpc_call_send(call, buf, len);
    free(buf);
    return r;
}

/* ---- Attest ---- */

struct attest {
    struct sigil_nodeapi *n;
    struct sigil_rpc_call *call;
    struct sigil_nodeattest_cfg cfg; /* a copy: the worker reads it */
    bool busy, gone, started, challenged;
    const struct sigil_nodeattest *a;
    void *state;
    uint8_t *payload, *csr, *resp;
    size_t payload_len, csr_len, resp_len;
    struct sigil_buf challenge;
    struct sigil_nodeattest_result res;
    const char *why;
    int status;
    /* the agent row written once the SVID is minted */
    struct sigil_store_agent row;
    struct sigil_store_err serr;
    struct sigil_db_error dberr;
    struct sigil_buf chain;
};

static void
attest_free(struct attest *t)
{
    if (t->a != NULL && t->a->free_state != NULL)
        t->a->free_state(t->state);
    free(t->payload);
    free(t->csr);
    free(t->resp);
    sigil_buf_free(&t->challenge);
    sigil_nodeattest_result_free(&t->res);
    t->row.selectors = (struct sigil_selector_set){0}; /* borrowed from res */
    free(t->row.serial);
    sigil_buf_free(&t->chain);
    free(t);
}

static void
attest_count(struct attest *t, const char *result)
{
    sigil_counter_inc_with(t->n->attests, t->a ? t->a->name : "unknown", result, NULL);
}

static void
attest_fail(struct attest *t, int code, const char *msg)
{
    attest_count(t, "refused");
    sigil_log_kv(SIGIL_LOG_INFO, COMPONENT, "attestation refused", "type", t->a ? t->a->name : "?",
                 "reason", msg, NULL);
    if (t->call != NULL)
        sigil_rpc_call_finish(t->call, code, msg, NULL, 0);
    t->call = NULL;
}

static int
attest_code(int r)
{
    switch (r) {
    case SIGIL_ERR_DENIED:
    case SIGIL_ERR_EXPIRED:
    case SIGIL_ERR_VERIFY:
        return SIGIL_RPC_PERMISSION_DENIED;
    case SIGIL_ERR_INVALID:
    case SIGIL_ERR_RANGE:
        return SIGIL_RPC_INVALID_ARGUMENT;
    case SIGIL_ERR_UNSUPPORTED:
        return SIGIL_RPC_FAILED_PRECONDITION;
    default:
        return SIGIL_RPC_UNAVAILABLE;
    }
}

/* On a worker: the attestor's step. */
static int
attest_work(struct sigil_db_conn *c, void *arg)
{
    struct attest *t = arg;

    if (!t->started)
        t->status = t->a->start(&t->cfg, c, t->payload, t->payload_len, t->csr, t->csr_len,
                                &t->state, &t->challenge, &t->res, &t->why);
    else
        t->status = t->a->answer(t->state, t->resp, t->resp_len, &t->res, &t->why);
    return 0;
}

static int
attest_store_work(struct sigil_db_conn *c, void *arg)
{
    struct attest *t = arg;

    return sigil_store_agent_attest(c, t->res.spiffe_id, &t->row, NULL, &t->serr);
}

static void
attest_stored(void *arg, int status)
{
    struct attest *t = arg;
    Sigil__Node__V1__AttestResponse resp = SIGIL__NODE__V1__ATTEST_RESPONSE__INIT;
    Sigil__Node__V1__AttestResult result = SIGIL__NODE__V1__ATTEST_RESULT__INIT;
    char *bundle = NULL;
    size_t blen = 0;

    t->busy = false;
    t->n->jobs--;
    if (t->gone || t->n->stopping) {
        struct sigil_nodeapi *n = t->n;

        if (t->call != NULL)
            sigil_rpc_call_finish(t->call, SIGIL_RPC_UNAVAILABLE, "server stopping", NULL, 0);
        attest_free(t);
        maybe_free(n); /* the last job of a stopping node API frees it */
        return;
    }
    if (status == SIGIL_ERR_DENIED) {
        attest_fail(t, SIGIL_RPC_PERMISSION_DENIED, "agent is banned");
        goto out;
    }
    if (status != 0) {
        attest_fail(t, SIGIL_RPC_UNAVAILABLE, "cannot record the agent (database)");
        goto out;
    }
    if (sigil_bundle_encode(sigil_ca_bundle(*t->n->ca), &bundle, &blen) != 0) {
        attest_fail(t, SIGIL_RPC_INTERNAL, "cannot encode the bundle");
        goto out;
    }
    result.spiffe_id = t->res.spiffe_id;
    result.svid_chain.data = t->chain.data;
    result.svid_chain.len = t->chain.len;
    result.bundle.data = (uint8_t *)bundle;
    result.bundle.len = blen;
    result.reattestable = t->res.reattestable;
    resp.step_case = SIGIL__NODE__V1__ATTEST_RESPONSE__STEP_RESULT;
    resp.result = &result;
    /* the agent's next call may come before the feed brings its row */
    if (agent_put(t->n, &t->row) != 0) {
        attest_fail(t, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    if (send_packed(t->call, &resp.base) == 0) {
        attest_count(t, "ok");
        sigil_counter_inc_with(t->n->signed_svids, "agent", NULL);
        sigil_log_kv(SIGIL_LOG_INFO, COMPONENT, "agent attested", "type", t->a->name, "spiffe_id",
                     t->res.spiffe_id, "serial", t->row.serial, NULL);
        sigil_rpc_call_finish(t->call, SIGIL_RPC_OK, NULL, NULL, 0);
    } else {
        sigil_rpc_call_finish(t->call, SIGIL_RPC_INTERNAL, "cannot send the result", NULL, 0);
    }
    t->call = NULL;
out:
    free(bundle);
    attest_free(t);
}

/* The attestor gave a result: mint the agent SVID and record the agent. */
static void
attest_finish(struct attest *t)
{
    char serial[41];
    int64_t exp = 0;
    const char *why = NULL;

    if (mint_svid(t->n, t->csr, t->csr_len, t->res.spiffe_id, NULL, 0, t->n->agent_ttl, &t->chain,
                  serial, &exp, &why) != 0) {
        attest_fail(t, SIGIL_RPC_INVALID_ARGUMENT, why ? why : "cannot mint the agent SVID");
        attest_free(t);
        return;
    }
    t->row.spiffe_id = t->res.spiffe_id;
    t->row.attestation_type = (char *)t->a->name;
    t->row.serial = strdup(serial);
    t->row.expires_at = exp;
    t->row.can_reattest = t->res.reattestable;
    t->row.selectors = t->res.selectors;
    if (t->row.serial == NULL ||
        sigil_db_submit(t->n->db, attest_store_work, attest_stored, t, &t->dberr) != 0) {
        attest_fail(t, SIGIL_RPC_UNAVAILABLE, "server busy");
        attest_free(t);
        return;
    }
    t->busy = true;
    t->n->jobs++;
}

static void
attest_stepped(void *arg, int status)
{
    struct attest *t = arg;
    Sigil__Node__V1__AttestResponse resp = SIGIL__NODE__V1__ATTEST_RESPONSE__INIT;

    t->busy = false;
    t->n->jobs--;
    if (t->gone || t->n->stopping) {
        struct sigil_nodeapi *n = t->n;

        if (t->call != NULL)
            sigil_rpc_call_finish(t->call, SIGIL_RPC_UNAVAILABLE, "server stopping", NULL, 0);
        attest_free(t);
        maybe_free(n);
        return;
    }
    if (status != 0 || t->status != 0) {
        attest_fail(t, attest_code(status != 0 ? status : t->status),
                    t->why ? t->why : "attestation failed");
        attest_free(t);
        return;
    }
    if (!t->started && t->res.spiffe_id == NULL) {
        /* a challenge: wait for its response */
        t->started = true;
        t->challenged = true;
        resp.step_case = SIGIL__NODE__V1__ATTEST_RESPONSE__STEP_CHALLENGE;
        resp.challenge.data = t->challenge.data;
        resp.challenge.len = t->challenge.len;
        if (send_packed(t->call, &resp.base) != 0) {
            attest_fail(t, SIGIL_RPC_INTERNAL, "cannot send the challenge");
            attest_free(t);
        }
        return;
    }
    t->started = true;
    attest_finish(t);
}

static void
attest_submit(struct attest *t)
{
    if (sigil_db_submit(t->n->db, attest_work, attest_stepped, t, &t->dberr) != 0) {
        attest_fail(t, SIGIL_RPC_UNAVAILABLE, "server busy");
        attest_free(t);
        return;
    }
    t->busy = true;
    t->n->jobs++;
}

static uint8_t *
dup_bytes(const uint8_t *p, size_t n)
{
    uint8_t *d = malloc(n ? n : 1);

    if (d != NULL && n > 0)
        memcpy(d, p, n);
    return d;
}

static void
attest_on_message(struct sigil_rpc_call *call, void *ud, const uint8_t *msg, size_t len)
{
    struct attest *t = ud;
    Sigil__Node__V1__AttestRequest *req;

    if (t->call == NULL || t->busy) {
        if (t->call != NULL && t->busy) {
            attest_fail(t, SIGIL_RPC_INVALID_ARGUMENT, "a message arrived out of turn");
            /* the job's done callback frees t */
            t->gone = true;
        }
        return;
    }
    (void)call;
    if ((req = sigil__node__v1__attest_request__unpack(NULL, len, msg)) == NULL) {
        attest_fail(t, SIGIL_RPC_INVALID_ARGUMENT, "malformed AttestRequest");
        attest_free(t);
        return;
    }
    if (!t->started && req->step_case == SIGIL__NODE__V1__ATTEST_REQUEST__STEP_PARAMS &&
        t->a == NULL) {
        const Sigil__Node__V1__AttestParams *p = req->params;

        t->a = sigil_nodeattest_find(p->attestation_type, strlen(p->attestation_type));
        if (t->a == NULL) {
            attest_fail(t, SIGIL_RPC_INVALID_ARGUMENT, "unknown attestation_type");
            goto drop;
        }
        if (p->payload.len > SIGIL_NODEATTEST_PAYLOAD_MAX || p->csr.len == 0 ||
            p->csr.len > 16384) {
            attest_fail(t, SIGIL_RPC_INVALID_ARGUMENT, "payload or csr missing or too large");
            goto drop;
        }
        if ((t->payload = dup_bytes(p->payload.data, p->payload.len)) == NULL ||
            (t->csr = dup_bytes(p->csr.data, p->csr.len)) == NULL) {
            attest_fail(t, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
            goto drop;
        }
        t->payload_len = p->payload.len;
        t->csr_len = p->csr.len;
        sigil__node__v1__attest_request__free_unpacked(req, NULL);
        attest_submit(t);
        return;
    }
    if (t->challenged &&
        req->step_case == SIGIL__NODE__V1__ATTEST_REQUEST__STEP_CHALLENGE_RESPONSE &&
        t->a->answer != NULL) {
        t->challenged = false;
        free(t->resp);
        if ((t->resp = dup_bytes(req->challenge_response.data, req->challenge_response.len)) ==
            NULL) {
            attest_fail(t, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
            goto drop;
        }
        t->resp_len = req->challenge_response.len;
        sigil__node__v1__attest_request__free_unpacked(req, NULL);
        attest_submit(t);
        return;
    }
    attest_fail(t, SIGIL_RPC_INVALID_ARGUMENT,
                "expected AttestParams first, then one challenge_response per challenge");
drop:
    sigil__node__v1__attest_request__free_unpacked(req, NULL);
    attest_free(t);
}

static void
attest_on_half_close(struct sigil_rpc_call *call, void *ud)
{
    struct attest *t = ud;

    (void)call;
    if (t->call != NULL && !t->busy && !t->challenged) {
        attest_fail(t, SIGIL_RPC_INVALID_ARGUMENT, "the agent ended the attestation early");
        attest_free(t);
    }
}

static void
attest_on_cancel(struct sigil_rpc_call *call, void *ud)
{
    struct attest *t = ud;

    (void)call;
    t->call = NULL;
    if (t->busy)
        t->gone = true;
    else
        attest_free(t);
}

static void
h_attest(struct sigil_rpc_call *call, void *arg)
{
    struct sigil_nodeapi *n = arg;
    struct attest *t = calloc(1, sizeof *t);
    struct sigil_rpc_call_cbs cbs = {
        .on_message = attest_on_message,
        .on_half_close = attest_on_half_close,
        .on_cancel = attest_on_cancel,
    };

    if (t == NULL) {
        sigil_rpc_call_finish(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
        return;
    }
    t->n = n;
    t->call = call;
    t->cfg = n->acfg;
    t->cfg.now = (int64_t)time(NULL);
    sigil_rpc_call_set_cbs(call, &cbs, t);
}

/* ---- the agent check of every other method ---- */

static void
stream_unlink(struct ncall *c)
{
    struct sigil_nodeapi *n = c->n;

    if (!c->open)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        n->streams = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->open = false;
}

static void sync_remember(struct ncall *c);

static void
ncall_free(struct ncall *c)
{
    sync_remember(c);
    stream_unlink(c);
    free(c->req);
    sigil_store_agent_free(&c->agent);
    sigil_buf_free(&c->chain);
    sigil_index_authset_free(&c->auth);
    free(c);
}

static void
ncall_finish(struct ncall *c, int code, const char *msg)
{
    if (c->call != NULL)
        sigil_rpc_call_finish(c->call, code, msg, NULL, 0);
    c->call = NULL;
    ncall_free(c);
}

/* Ends an open stream; one with a database job in flight is freed by the job's end. */
static void
stream_close(struct ncall *c, int code, const char *msg)
{
    if (!c->busy) {
        ncall_finish(c, code, msg);
        return;
    }
    if (c->call != NULL)
        sigil_rpc_call_finish(c->call, code, msg, NULL, 0);
    c->call = NULL;
    c->gone = true;
    stream_unlink(c);
}

static void
ncall_on_cancel(struct sigil_rpc_call *call, void *ud)
{
    struct ncall *c = ud;

    (void)call;
    c->call = NULL;
    if (c->busy)
        c->gone = true;
    else
        ncall_free(c);
}

/* Records on a worker that an agent used its renewed SVID (the check already let it in). */
struct promote {
    struct sigil_nodeapi *n;
    char id[SIGIL_SPIFFEID_MAX + 1];
    char serial[41];
    struct sigil_store_err serr;
    struct sigil_db_error dberr;
};

static int
promote_work(struct sigil_db_conn *conn, void *arg)
{
    struct promote *p = arg;

    return sigil_store_agent_use_serial(conn, p->id, p->serial, &p->serr);
}

static void
promote_done(void *arg, int status)
{
    struct promote *p = arg;
    struct sigil_nodeapi *n = p->n;

    if (status != 0 && !n->stopping)
        sigil_log_kv(SIGIL_LOG_WARN, COMPONENT, "cannot record the agent's renewed SVID",
                     "spiffe_id", p->id, "error", p->serr.message, NULL);
    free(p);
    n->jobs--;
    maybe_free(n);
}

static void do_renew(struct ncall *c);
static void do_batch(struct ncall *c);
static void do_jwt(struct ncall *c);
static void do_bundles(struct ncall *c);
static void do_sync(struct ncall *c);

/* The agent check, in memory: the agent exists, is not banned, and presents its current (or
 * just-renewed) serial; then the method runs. */
static void
auth_check(struct ncall *c)
{
    struct sigil_nodeapi *n = c->n;
    struct agent_node *a = agent_find(n, c->agent_id);

    if (a == NULL) {
        ncall_finish(c, SIGIL_RPC_PERMISSION_DENIED, "agent was evicted: attest again");
        return;
    }
    if (a->banned) {
        ncall_finish(c, SIGIL_RPC_PERMISSION_DENIED, "agent is banned");
        return;
    }
    if (strcmp(a->serial, c->serial) != 0) {
        struct promote *p;

        if (a->new_serial[0] == '\0' || strcmp(a->new_serial, c->serial) != 0) {
            ncall_finish(c, SIGIL_RPC_PERMISSION_DENIED,
                         "agent SVID is not the current one: attest again");
            return;
        }
        /* the renewed SVID is in use: it becomes the current one */
        memcpy(a->serial, a->new_serial, sizeof a->serial);
        a->new_serial[0] = '\0';
        if ((p = calloc(1, sizeof *p)) != NULL) {
            p->n = n;
            snprintf(p->id, sizeof p->id, "%s", c->agent_id);
            memcpy(p->serial, c->serial, sizeof p->serial);
            if (sigil_db_submit(n->db, promote_work, promote_done, p, &p->dberr) == 0)
                n->jobs++;
            else
                free(p);
        }
    }
    if (sigil_selector_set_copy(&c->agent.selectors, &a->sel) != 0) {
        ncall_finish(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    switch (c->method) {
    case M_RENEW:
        do_renew(c);
        break;
    case M_BATCH:
        do_batch(c);
        break;
    case M_JWT:
        do_jwt(c);
        break;
    case M_BUNDLES:
        do_bundles(c);
        break;
    case M_SYNC:
        do_sync(c);
        break;
    }
}

static void
ncall_begin(struct sigil_rpc_call *call, struct sigil_nodeapi *n, enum method m)
{
    const struct sigil_rpc_peer *peer = sigil_rpc_call_peer(call);
    struct sigil_rpc_call_cbs cbs = {.on_cancel = ncall_on_cancel};
    struct sigil_spiffeid sid;
    const uint8_t *req;
    const char *why = NULL;
    struct ncall *c;
    size_t len = 0;

    if (peer == NULL || peer->chain == NULL || sk_X509_num(peer->chain) == 0) {
        sigil_rpc_call_finish(call, SIGIL_RPC_UNAUTHENTICATED,
                              "the agent's X.509-SVID is required (attest first)", NULL, 0);
        return;
    }
    if (sigil_x509_cert_spiffeid(sk_X509_value(peer->chain, 0), &sid, &why) != 0) {
        sigil_rpc_call_finish(call, SIGIL_RPC_UNAUTHENTICATED, why, NULL, 0);
        return;
    }
    if ((c = calloc(1, sizeof *c)) == NULL) {
        sigil_rpc_call_finish(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
        return;
    }
    c->n = n;
    c->call = call;
    c->method = m;
    snprintf(c->agent_id, sizeof c->agent_id, "%s", sid.str);
    sigil_ca_serial_hex(sk_X509_value(peer->chain, 0), c->serial);
    req = sigil_rpc_call_request(call, &len);
    if ((c->req = dup_bytes(req, len)) == NULL) {
        ncall_finish(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    c->req_len = len;
    sigil_rpc_call_set_cbs(call, &cbs, c);
    auth_check(c);
}

/* ---- RenewAgent ---- */

static int
renew_work(struct sigil_db_conn *conn, void *arg)
{
    struct ncall *c = arg;

    return sigil_store_agent_renew(conn, c->agent_id, c->agent_id, c->new_serial, c->new_expires,
                                   &c->serr);
}

static void
renew_done(void *arg, int status)
{
    struct ncall *c = arg;
    Sigil__Node__V1__RenewAgentResponse resp = SIGIL__NODE__V1__RENEW_AGENT_RESPONSE__INIT;

    struct sigil_nodeapi *n = c->n;

    c->busy = false;
    n->jobs--;
    if (c->gone || n->stopping) {
        ncall_finish(c, SIGIL_RPC_UNAVAILABLE, "server stopping");
        maybe_free(n);
        return;
    }
    if (status == SIGIL_ERR_NOTFOUND) {
        ncall_finish(c, SIGIL_RPC_PERMISSION_DENIED, "agent was evicted: attest again");
        return;
    }
    if (status == SIGIL_ERR_DENIED) {
        ncall_finish(c, SIGIL_RPC_PERMISSION_DENIED, "agent is banned");
        return;
    }
    if (status != 0) {
        ncall_finish(c, SIGIL_RPC_UNAVAILABLE, "cannot record the renewal (database)");
        return;
    }
    {
        struct agent_node *a = agent_find(n, c->agent_id);

        if (a != NULL) /* the new SVID may be used before the feed brings the row */
            snprintf(a->new_serial, sizeof a->new_serial, "%s", c->new_serial);
    }
    resp.svid_chain.data = c->chain.data;
    resp.svid_chain.len = c->chain.len;
    if (send_packed(c->call, &resp.base) != 0) {
        ncall_finish(c, SIGIL_RPC_INTERNAL, "cannot send the response");
        return;
    }
    sigil_counter_inc_with(c->n->signed_svids, "agent", NULL);
    ncall_finish(c, SIGIL_RPC_OK, NULL);
}

static void
do_renew(struct ncall *c)
{
    Sigil__Node__V1__RenewAgentRequest *req =
        sigil__node__v1__renew_agent_request__unpack(NULL, c->req_len, c->req);
    const char *why = NULL;

    if (req == NULL) {
        ncall_finish(c, SIGIL_RPC_INVALID_ARGUMENT, "malformed RenewAgentRequest");
        return;
    }
    if (mint_svid(c->n, req->csr.data, req->csr.len, c->agent_id, NULL, 0, c->n->agent_ttl,
                  &c->chain, c->new_serial, &c->new_expires, &why) != 0) {
        sigil__node__v1__renew_agent_request__free_unpacked(req, NULL);
        ncall_finish(c, SIGIL_RPC_INVALID_ARGUMENT, why ? why : "cannot mint the agent SVID");
        return;
    }
    sigil__node__v1__renew_agent_request__free_unpacked(req, NULL);
    if (sigil_db_submit(c->n->db, renew_work, renew_done, c, &c->dberr) != 0) {
        ncall_finish(c, SIGIL_RPC_UNAVAILABLE, "server busy");
        return;
    }
    c->busy = true;
    c->n->jobs++;
}

/* ---- BatchSignX509SVID and SignJWTSVID ---- */

static int
authorize(struct ncall *c, struct sigil_index_authset *out)
{
    return sigil_index_authorized(c->n->ix, c->agent_id, &c->agent.selectors, (int64_t)time(NULL),
                                  out);
}

/* One CSR of a batch. What it needs from the index is copied: the feed may change the entry
 * while a worker mints. */
struct batch_item {
    const uint8_t *csr; /* into the job's request */
    size_t csr_len;
    char *spiffe_id; /* NULL: refused on the loop with error */
    char **dns;
    size_t ndns;
    int64_t ttl;
    struct sigil_buf chain;
    char serial[41];
    int64_t expires;
    const char *error; /* static text */
    double secs;
};

struct batch_job;

/* A slice of a batch for one thread-pool worker. */
struct batch_chunk {
    uv_work_t work;
    struct batch_job *job;
    size_t from, to;
};

struct batch_job {
    struct ncall *c;
    struct signer *s;
    Sigil__Node__V1__BatchSignX509SVIDRequest *req;
    struct batch_item *items;
    size_t n;
    struct batch_chunk *chunks;
    size_t pending;
    time_t now;
};

static void
batch_job_free(struct batch_job *j)
{
    for (size_t i = 0; i < j->n; i++) {
        struct batch_item *it = &j->items[i];

        for (size_t d = 0; d < it->ndns; d++)
            free(it->dns[d]);
        free(it->dns);
        free(it->spiffe_id);
        sigil_buf_free(&it->chain);
    }
    free(j->items);
    free(j->chunks);
    if (j->req != NULL)
        sigil__node__v1__batch_sign_x509_svidrequest__free_unpacked(j->req, NULL);
    signer_put(j->s);
    free(j);
}

static void
batch_chunk_work(uv_work_t *w)
{
    struct batch_chunk *k = w->data;
    struct batch_job *j = k->job;

    for (size_t i = k->from; i < k->to; i++) {
        struct batch_item *it = &j->items[i];
        const char *why = NULL;
        double t0 = mono_s();

        if (it->spiffe_id == NULL)
            continue;
        if (mint_with(j->s->m, it->csr, it->csr_len, it->spiffe_id, it->dns, it->ndns, it->ttl,
                      j->now, &it->chain, it->serial, &it->expires, &why) != 0) {
            it->error = why != NULL ? why : "cannot mint the SVID";
            sigil_buf_free(&it->chain);
            continue;
        }
        it->secs = mono_s() - t0;
    }
}

/* On the loop, once every chunk is done: the answer, in the request's order. */
static void
batch_done(struct batch_job *j)
{
    struct ncall *c = j->c;
    struct sigil_nodeapi *n = c->n;
    Sigil__Node__V1__BatchSignX509SVIDResponse resp =
        SIGIL__NODE__V1__BATCH_SIGN_X509_SVIDRESPONSE__INIT;
    Sigil__Node__V1__SignedX509SVID *items = NULL, **ptrs = NULL;

    c->busy = false;
    n->jobs--;
    if (c->gone || n->stopping) {
        ncall_finish(c, SIGIL_RPC_UNAVAILABLE, "server stopping");
        batch_job_free(j);
        maybe_free(n);
        return;
    }
    if (j->n > 0 && ((items = calloc(j->n, sizeof *items)) == NULL ||
                     (ptrs = calloc(j->n, sizeof *ptrs)) == NULL)) {
        ncall_finish(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < j->n; i++) {
        struct batch_item *it = &j->items[i];

        sigil__node__v1__signed_x509_svid__init(&items[i]);
        ptrs[i] = &items[i];
        items[i].entry_id = j->req->params[i]->entry_id;
        if (it->error != NULL) {
            items[i].error = (char *)it->error;
            continue;
        }
        items[i].svid_chain.data = it->chain.data;
        items[i].svid_chain.len = it->chain.len;
        items[i].expires_at = it->expires;
        sigil_counter_inc_with(n->signed_svids, "x509", NULL);
        sigil_histogram_observe(n->sign_latency, it->secs);
    }
    resp.n_svids = j->n;
    resp.svids = ptrs;
    if (send_packed(c->call, &resp.base) != 0)
        ncall_finish(c, SIGIL_RPC_INTERNAL, "cannot send the response");
    else
        ncall_finish(c, SIGIL_RPC_OK, NULL);
out:
    free(ptrs);
    free(items);
    batch_job_free(j);
}

static void
batch_chunk_after(uv_work_t *w, int status)
{
    struct batch_chunk *k = w->data;

    (void)status; /* never cancelled */
    if (--k->job->pending == 0)
        batch_done(k->job);
}

static char **
dup_strings(char *const *v, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof *out);

    for (size_t i = 0; out != NULL && i < n; i++) {
        if ((out[i] = strdup(v[i])) == NULL) {
            while (i > 0)
                free(out[--i]);
            free(out);
            out = NULL;
        }
    }
    return out;
}

static void
do_batch(struct ncall *c)
{
    struct sigil_nodeapi *n = c->n;
    struct sigil_index_authset auth = {0};
    struct batch_job *j;
    const char *why = NULL;
    size_t np, per, nchunks, queued = 0;

    if ((j = calloc(1, sizeof *j)) == NULL) {
        ncall_finish(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    j->c = c;
    j->now = time(NULL);
    j->req = sigil__node__v1__batch_sign_x509_svidrequest__unpack(NULL, c->req_len, c->req);
    if (j->req == NULL) {
        ncall_finish(c, SIGIL_RPC_INVALID_ARGUMENT, "malformed BatchSignX509SVIDRequest");
        goto fail;
    }
    np = j->req->n_params;
    if (np > SIGIL_NODEAPI_BATCH_MAX) {
        ncall_finish(c, SIGIL_RPC_INVALID_ARGUMENT, "more than 1000 CSRs in one batch");
        goto fail;
    }
    if ((j->s = signer_get(n, &why)) == NULL) {
        ncall_finish(c, SIGIL_RPC_INTERNAL, "cannot prepare the CA for signing");
        goto fail;
    }
    per = np / n->cores + (np % n->cores != 0);
    if (per < BATCH_CHUNK_MIN)
        per = BATCH_CHUNK_MIN;
    nchunks = np == 0 ? 1 : np / per + (np % per != 0);
    if (authorize(c, &auth) != 0 || (np > 0 && (j->items = calloc(np, sizeof *j->items)) == NULL) ||
        (j->chunks = calloc(nchunks, sizeof *j->chunks)) == NULL) {
        ncall_finish(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto fail;
    }
    j->n = np;
    for (size_t i = 0; i < np; i++) {
        const Sigil__Node__V1__X509SVIDParams *p = j->req->params[i];
        struct batch_item *it = &j->items[i];
        const struct sigil_store_entry *e;

        it->csr = p->csr.data;
        it->csr_len = p->csr.len;
        if (!sigil_index_authset_has(&auth, p->entry_id) ||
            (e = sigil_index_get(n->ix, p->entry_id)) == NULL) {
            it->error = "entry is not authorized for this agent";
            continue;
        }
        it->ttl = e->x509_ttl > 0 ? e->x509_ttl : SIGIL_STORE_DEFAULT_X509_TTL;
        if ((it->spiffe_id = strdup(e->spiffe_id)) == NULL ||
            (it->dns = dup_strings(e->dns_names.items, e->dns_names.count)) == NULL) {
            ncall_finish(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
            goto fail;
        }
        it->ndns = e->dns_names.count;
    }
    sigil_index_authset_free(&auth);
    /* every chunk is queued or none: a failure to queue the first answers at once */
    for (size_t k = 0; k < nchunks; k++) {
        struct batch_chunk *ch = &j->chunks[k];

        ch->job = j;
        ch->from = k * per < np ? k * per : np;
        ch->to = ch->from + per < np ? ch->from + per : np;
        ch->work.data = ch;
        j->pending++;
        if (uv_queue_work(n->loop, &ch->work, batch_chunk_work, batch_chunk_after) != 0) {
            j->pending--;
            if (queued == 0) {
                ncall_finish(c, SIGIL_RPC_UNAVAILABLE, "server busy");
                goto fail;
            }
            /* the chunks queued run (workers read them now); the rest is refused */
            for (size_t i = ch->from; i < np; i++)
                j->items[i].error = "server busy";
            break;
        }
        queued++;
    }
    c->busy = true;
    n->jobs++;
    return;
fail:
    sigil_index_authset_free(&auth);
    batch_job_free(j);
}

static void
do_jwt(struct ncall *c)
{
    Sigil__Node__V1__SignJWTSVIDRequest *req =
        sigil__node__v1__sign_jwtsvidrequest__unpack(NULL, c->req_len, c->req);
    Sigil__Node__V1__SignJWTSVIDResponse resp = SIGIL__NODE__V1__SIGN_JWTSVIDRESPONSE__INIT;
    struct sigil_index_authset auth = {0};
    const struct sigil_store_entry *e;
    struct sigil_ca *ca = *c->n->ca;
    char *token = NULL;
    const char *why = NULL;
    time_t now = time(NULL);
    double t0 = mono_s();

    if (req == NULL) {
        ncall_finish(c, SIGIL_RPC_INVALID_ARGUMENT, "malformed SignJWTSVIDRequest");
        return;
    }
    if (req->n_audience == 0) {
        ncall_finish(c, SIGIL_RPC_INVALID_ARGUMENT, "J-5: at least one audience is required");
        goto out;
    }
    if (authorize(c, &auth) != 0) {
        ncall_finish(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    if (!sigil_index_authset_has(&auth, req->entry_id) ||
        (e = sigil_index_get(c->n->ix, req->entry_id)) == NULL) {
        ncall_finish(c, SIGIL_RPC_PERMISSION_DENIED, "entry is not authorized for this agent");
        goto out;
    }
    struct sigil_jwtsvid_params jp = {
        .key = sigil_ca_jwt_key(ca),
        .kid = sigil_ca_jwt_kid(ca),
        .sub = e->spiffe_id,
        .aud = (const char *const *)req->audience,
        .naud = req->n_audience,
        .iat = now,
        .exp = now + (e->jwt_ttl > 0 ? e->jwt_ttl : SIGIL_STORE_DEFAULT_JWT_TTL),
    };
    if (sigil_jwtsvid_sign(&jp, &token, &why) != 0) {
        ncall_finish(c, SIGIL_RPC_INVALID_ARGUMENT, why ? why : "cannot sign the JWT-SVID");
        goto out;
    }
    sigil_histogram_observe(c->n->sign_latency, mono_s() - t0);
    resp.token = token;
    resp.expires_at = (int64_t)jp.exp;
    if (send_packed(c->call, &resp.base) != 0) {
        ncall_finish(c, SIGIL_RPC_INTERNAL, "cannot send the response");
        goto out;
    }
    sigil_counter_inc_with(c->n->signed_svids, "jwt", NULL);
    ncall_finish(c, SIGIL_RPC_OK, NULL);
out:
    sigil_jwtsvid_token_free(token);
    sigil_index_authset_free(&auth);
    sigil__node__v1__sign_jwtsvidrequest__free_unpacked(req, NULL);
}

/* ---- StreamBundles ---- */

static void
stream_open(struct ncall *c)
{
    struct sigil_nodeapi *n = c->n;

    c->open = true;
    c->prev = NULL;
    c->next = n->streams;
    if (n->streams != NULL)
        n->streams->prev = c;
    n->streams = c;
}

static int
send_bundles(struct ncall *c)
{
    struct sigil_nodeapi *n = c->n;
    Sigil__Node__V1__BundlesUpdate up = SIGIL__NODE__V1__BUNDLES_UPDATE__INIT;
    Sigil__Node__V1__BundlesUpdate__FederatedEntry *fe = NULL, **fp = NULL;
    char *own = NULL;
    size_t olen = 0;
    uint64_t seq = 0;
    int r = SIGIL_ERR_NOMEM;

    if (sigil_bundle_encode(sigil_ca_bundle(*n->ca), &own, &olen) != 0)
        goto out;
    sigil_bundle_sequence(sigil_ca_bundle(*n->ca), &seq);
    if (n->fed.count > 0 && ((fe = calloc(n->fed.count, sizeof *fe)) == NULL ||
                             (fp = calloc(n->fed.count, sizeof *fp)) == NULL))
        goto out;
    for (size_t i = 0; i < n->fed.count; i++) {
        sigil__node__v1__bundles_update__federated_entry__init(&fe[i]);
        fe[i].key = n->fed.items[i].trust_domain;
        fe[i].value.data = (uint8_t *)n->fed.items[i].document;
        fe[i].value.len = strlen(n->fed.items[i].document);
        fp[i] = &fe[i];
    }
    /* the database's document is the one the CA check writes; it leads the loaded CA */
    if (n->bundle_doc != NULL) {
        up.bundle.data = (uint8_t *)n->bundle_doc;
        up.bundle.len = strlen(n->bundle_doc);
    } else {
        up.bundle.data = (uint8_t *)own;
        up.bundle.len = olen;
    }
    up.n_federated = n->fed.count;
    up.federated = fp;
    up.sequence = seq;
    r = send_packed(c->call, &up.base);
    c->bundle_seq_sent = n->bundle_gen;
out:
    free(own);
    free(fe);
    free(fp);
    return r;
}

static void
do_bundles(struct ncall *c)
{
    if (send_bundles(c) != 0) {
        ncall_finish(c, SIGIL_RPC_INTERNAL, "cannot send the bundles");
        return;
    }
    stream_open(c);
}

/* ---- SyncEntries ---- */

/* Sends one page: the entries of items[0..count) (skipping any that left the index) and the
 * removed ids. */
static int
send_sync_page(struct ncall *c, const struct sigil_index_auth_item *items, size_t count,
               const struct sigil_index_auth_item *removed, size_t nrem, bool full, bool last)
{
    struct sigil_nodeapi *n = c->n;
    Sigil__Node__V1__SyncEntriesResponse resp = SIGIL__NODE__V1__SYNC_ENTRIES_RESPONSE__INIT;
    Sigil__Node__V1__Entry *es = NULL, **ep = NULL;
    char **rm = NULL, ***sels = NULL;
    size_t ne = 0;
    int r = SIGIL_ERR_NOMEM;

    if ((count > 0 &&
         ((es = calloc(count, sizeof *es)) == NULL || (ep = calloc(count, sizeof *ep)) == NULL ||
          (sels = calloc(count, sizeof *sels)) == NULL)) ||
        (nrem > 0 && (rm = calloc(nrem, sizeof *rm)) == NULL))
        goto out;
    for (size_t i = 0; i < count; i++) {
        const struct sigil_store_entry *e = sigil_index_get(n->ix, items[i].id);
        Sigil__Node__V1__Entry *x = &es[ne];
        size_t ns;

        if (e == NULL)
            continue;
        sigil__node__v1__entry__init(x);
        x->id = (char *)e->id;
        x->spiffe_id = e->spiffe_id;
        x->parent_id = e->parent_id;
        ns = sigil_selector_set_count(&e->selectors);
        if (ns > 0 && (sels[ne] = calloc(ns, sizeof *sels[ne])) == NULL)
            goto out;
        x->n_selectors = ns;
        x->selectors = sels[ne];
        ep[ne++] = x; /* counted now so the selectors are freed on every path */
        for (size_t k = 0; k < ns; k++)
            if ((sels[ne - 1][k] =
                     sigil_selector_to_string(sigil_selector_set_at(&e->selectors, k))) == NULL)
                goto out;
        x->x509_svid_ttl = e->x509_ttl;
        x->jwt_svid_ttl = e->jwt_ttl;
        x->n_dns_names = e->dns_names.count;
        x->dns_names = e->dns_names.items;
        x->n_federates_with = e->federates_with.count;
        x->federates_with = e->federates_with.items;
        x->hint = e->hint != NULL ? e->hint : (char *)"";
        x->admin = e->admin;
        x->downstream = e->downstream;
        x->revision = (uint64_t)e->revision;
    }
    for (size_t i = 0; i < nrem; i++)
        rm[i] = (char *)removed[i].id;
    resp.n_entries = ne;
    resp.entries = ep;
    resp.n_removed_ids = nrem;
    resp.removed_ids = rm;
    resp.revision = (uint64_t)sigil_index_revision(n->ix);
    resp.full = full;
    resp.last = last;
    if ((r = send_packed(c->call, &resp.base)) == 0)
        sigil_counter_inc(n->sync_pages);
out:
    for (size_t i = 0; sels != NULL && i < ne; i++) {
        for (size_t k = 0; sels[i] != NULL && k < es[i].n_selectors; k++)
            free(sels[i][k]);
        free(sels[i]);
    }
    free(sels);
    free(es);
    free(ep);
    free(rm);
    return r;
}

/* Sends upserted then removed in pages of the stream's page size; the last page says so. The
 * batch moves the agent to the index's revision; a batch that changes something without the
 * revision moving (an expiry, the agent's own selectors) makes that revision ambiguous. */
static int
send_sync(struct ncall *c, const struct sigil_index_auth_item *up, size_t nup,
          const struct sigil_index_auth_item *rm, size_t nrm, bool full)
{
    size_t ps = c->page_size, i = 0, j = 0;
    int64_t rev = sigil_index_revision(c->n->ix);
    int r;

    if (rev != c->sent_rev || !c->synced)
        c->ambiguous = false;
    else if (full || nup > 0 || nrm > 0)
        c->ambiguous = true;
    c->sent_rev = rev;
    c->synced = true;

    do {
        size_t a = nup - i < ps ? nup - i : ps;
        size_t b = a < ps ? (nrm - j < ps - a ? nrm - j : ps - a) : 0;
        bool last = i + a == nup && j + b == nrm;

        if ((r = send_sync_page(c, up != NULL ? up + i : NULL, a, rm != NULL ? rm + j : NULL, b,
                                full, last)) != 0)
            return r;
        i += a;
        j += b;
    } while (i < nup || j < nrm);
    return 0;
}

/* When a SyncEntries stream ends: the agent keeps what it was sent, at sent_rev; so do we, for
 * its next call from that revision. Nothing is kept past SYNC_REMEMBER_MAX. */
static void
sync_remember(struct ncall *c)
{
    struct sigil_nodeapi *n = c->n;
    struct agent_node *a;

    if (c->method != M_SYNC || !c->synced || c->ambiguous || c->sent_rev <= 0 || n->stopping ||
        (a = agent_find(n, c->agent_id)) == NULL)
        return;
    agent_forget_sent(n, a);
    if (n->remembered + c->auth.count > SYNC_REMEMBER_MAX)
        return;
    a->sent = c->auth;
    a->sent_rev = c->sent_rev;
    c->auth = (struct sigil_index_authset){0};
    n->remembered += a->sent.count;
}

static void
do_sync(struct ncall *c)
{
    struct sigil_nodeapi *n = c->n;
    Sigil__Node__V1__SyncEntriesRequest *req =
        sigil__node__v1__sync_entries_request__unpack(NULL, c->req_len, c->req);
    struct sigil_index_diff d = {0};
    struct agent_node *a;
    uint64_t since;
    int r;

    if (req == NULL) {
        ncall_finish(c, SIGIL_RPC_INVALID_ARGUMENT, "malformed SyncEntriesRequest");
        return;
    }
    c->page_size = req->page_size == 0                       ? SIGIL_NODEAPI_PAGE_DEFAULT
                   : req->page_size > SIGIL_NODEAPI_PAGE_MAX ? SIGIL_NODEAPI_PAGE_MAX
                                                             : req->page_size;
    since = req->since_revision;
    sigil__node__v1__sync_entries_request__free_unpacked(req, NULL);
    if (authorize(c, &c->auth) != 0) {
        ncall_finish(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    /* From a revision, only what changed since: when this agent's last stream ended having
     * sent it exactly that revision, the set it was sent then, diffed with the set now, is
     * what changed for it (entries, their ancestors, its selectors, expiries alike). Anything
     * else (0, a revision we never sent it or not last, one from the future, a restarted or
     * other server) gets the full state, full=true: the agent drops what it is not sent. */
    a = agent_find(n, c->agent_id);
    if (since > 0 && a != NULL && a->sent_rev > 0 && (uint64_t)a->sent_rev == since &&
        a->sent_rev <= sigil_index_revision(n->ix)) {
        if (sigil_index_authset_diff(&a->sent, &c->auth, &d) != 0) {
            ncall_finish(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
        c->sent_rev = a->sent_rev;
        c->synced = true; /* the agent is at sent_rev with a->sent */
        r = send_sync(c, d.upserted, d.n_upserted, d.removed, d.n_removed, false);
        sigil_index_diff_free(&d);
    } else {
        r = send_sync(c, c->auth.items, c->auth.count, NULL, 0, true);
    }
    if (a != NULL) /* this stream remembers its own when it ends */
        agent_forget_sent(n, a);
    if (r != 0) {
        ncall_finish(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "cannot queue the entries");
        return;
    }
    stream_open(c);
}

/* After the index or the bundles changed: each open stream gets what changed for it. */
static void
streams_changed(struct sigil_nodeapi *n, bool entries, bool bundles)
{
    struct ncall *c = n->streams, *next;

    for (; c != NULL; c = next) {
        next = c->next;
        if (c->call == NULL)
            continue;
        if (c->method == M_BUNDLES && bundles) {
            if (send_bundles(c) != 0)
                stream_close(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "the agent is not reading");
        } else if (c->method == M_SYNC && entries) {
            struct sigil_index_authset cur = {0};
            struct sigil_index_diff d = {0};

            if (authorize(c, &cur) != 0 || sigil_index_authset_diff(&c->auth, &cur, &d) != 0) {
                sigil_index_authset_free(&cur);
                stream_close(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
                continue;
            }
            if ((d.n_upserted > 0 || d.n_removed > 0) &&
                send_sync(c, d.upserted, d.n_upserted, d.removed, d.n_removed, false) != 0) {
                sigil_index_diff_free(&d);
                sigil_index_authset_free(&cur);
                stream_close(c, SIGIL_RPC_RESOURCE_EXHAUSTED, "the agent is not reading");
                continue;
            }
            sigil_index_diff_free(&d);
            sigil_index_authset_free(&c->auth);
            c->auth = cur;
        }
    }
}

/* After the agents changed: open streams of a banned or evicted agent end with the reason. */
static void
streams_recheck(struct sigil_nodeapi *n)
{
    struct ncall *c = n->streams, *next;

    for (; c != NULL; c = next) {
        struct agent_node *a;

        next = c->next;
        if (c->call == NULL)
            continue;
        if ((a = agent_find(n, c->agent_id)) == NULL)
            stream_close(c, SIGIL_RPC_PERMISSION_DENIED, "agent was evicted: attest again");
        else if (a->banned)
            stream_close(c, SIGIL_RPC_PERMISSION_DENIED, "agent is banned");
    }
}

/* ---- handlers, start and stop ---- */

static void
h_renew(struct sigil_rpc_call *call, void *arg)
{
    ncall_begin(call, arg, M_RENEW);
}

static void
h_batch(struct sigil_rpc_call *call, void *arg)
{
    ncall_begin(call, arg, M_BATCH);
}

static void
h_jwt(struct sigil_rpc_call *call, void *arg)
{
    ncall_begin(call, arg, M_JWT);
}

static void
h_bundles(struct sigil_rpc_call *call, void *arg)
{
    ncall_begin(call, arg, M_BUNDLES);
}

static void
h_sync(struct sigil_rpc_call *call, void *arg)
{
    ncall_begin(call, arg, M_SYNC);
}

static int
setup_metrics(struct sigil_nodeapi *n, struct sigil_metrics *m)
{
    static const char *const attest_labels[] = {"type", "result", NULL};
    static const char *const kind_labels[] = {"kind", NULL};
    static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1};
    int r;

    if ((r = sigil_metrics_counter(m, "sigil_node_attestations_total",
                                   "Node attestations by attestor and result.", attest_labels,
                                   &n->attests)) != 0 ||
        (r = sigil_metrics_counter(m, "sigil_node_svids_signed_total",
                                   "SVIDs signed through the node API by kind (agent, x509, jwt).",
                                   kind_labels, &n->signed_svids)) != 0 ||
        (r = sigil_metrics_counter(m, "sigil_node_sync_pages_total", "SyncEntries pages sent.",
                                   NULL, &n->sync_pages)) != 0 ||
        (r = sigil_metrics_histogram(m, "sigil_node_sign_seconds",
                                     "Time to mint one SVID in the node API.", NULL, bounds,
                                     sizeof bounds / sizeof bounds[0], &n->sign_latency)) != 0)
        return r;
    return 0;
}

/* The first load, blocking (startup): every entry and the bundles. */
static int
load_index(struct sigil_nodeapi *n, const char *conninfo, const char **why)
{
    struct feed_job j = {.n = n, .full = true};
    struct sigil_db_conn *conn = NULL;
    int r;

    if ((r = sigil_db_connect(conninfo, &conn, &j.dberr)) != 0) {
        *why = "cannot connect to the database";
        return r;
    }
    if ((r = feed_work(conn, &j)) != 0) {
        *why = "cannot load the entries";
        goto out;
    }
    for (size_t i = 0; i < j.all.count && r == 0; i++)
        r = sigil_index_put(n->ix, &j.all.items[i]);
    if (r != 0) {
        *why = "cannot index the entries";
        goto out;
    }
    sigil_index_set_revision(n->ix, j.all_rev);
    for (size_t i = 0; i < j.agents_all.count && r == 0; i++)
        r = agent_put(n, &j.agents_all.items[i]);
    if (r != 0) {
        *why = "cannot hold the agents";
        goto out;
    }
    n->bundle_doc = j.own.document;
    j.own.document = NULL;
    n->fed = j.fed;
    memset(&j.fed, 0, sizeof j.fed);
out:
    sigil_db_disconnect(conn);
    sigil_store_entry_list_free(&j.all);
    sigil_store_bundle_free(&j.own);
    sigil_store_bundle_list_free(&j.fed);
    sigil_store_agent_list_free(&j.agents_all);
    return r;
}

static void
really_free(struct sigil_nodeapi *n)
{
    void (*done)(void *) = n->done;
    void *arg = n->done_arg;

    signer_put(n->signer);
    sigil_index_free(n->ix);
    agents_clear(n);
    free(n->agents);
    sigil_tls_ctx_free(n->tls);
    X509_free(n->svid);
    EVP_PKEY_free(n->svid_key);
    sk_X509_pop_free(n->roots, X509_free);
    sk_X509_pop_free(n->acfg.x509pop_roots, X509_free);
    free(n->bundle_doc);
    sigil_store_bundle_list_free(&n->fed);
    free(n->td);
    free(n);
    if (done != NULL)
        done(arg);
}

static void
maybe_free(struct sigil_nodeapi *n)
{
    if (n->stopping && n->rpc_down && !n->timer_open && n->jobs == 0)
        really_free(n);
}

static void
on_timer_closed(uv_handle_t *h)
{
    struct sigil_nodeapi *n = h->data;

    n->timer_open = false;
    maybe_free(n);
}

static void
on_rpc_down(void *arg)
{
    struct sigil_nodeapi *n = arg;

    n->rpc = NULL;
    n->rpc_down = true;
    maybe_free(n);
}

int
sigil_nodeapi_start(const struct sigil_nodeapi_opts *o, struct sigil_nodeapi **out,
                    const char **why)
{
    static const struct {
        const char *path;
        enum sigil_rpc_kind kind;
        sigil_rpc_handler_fn fn;
    } methods[] = {
        {"/sigil.node.v1.Node/Attest", SIGIL_RPC_BIDI, h_attest},
        {"/sigil.node.v1.Node/RenewAgent", SIGIL_RPC_UNARY, h_renew},
        {"/sigil.node.v1.Node/BatchSignX509SVID", SIGIL_RPC_UNARY, h_batch},
        {"/sigil.node.v1.Node/SignJWTSVID", SIGIL_RPC_UNARY, h_jwt},
        {"/sigil.node.v1.Node/StreamBundles", SIGIL_RPC_SERVER_STREAM, h_bundles},
        {"/sigil.node.v1.Node/SyncEntries", SIGIL_RPC_SERVER_STREAM, h_sync},
    };
    /* a full sync is queued at once: room for many pages per call */
    struct sigil_rpc_server_opts so = {
        .max_outbound = 256u << 20,
        .max_conn_outbound = 512u << 20,
    };
    struct sigil_nodeapi *n = calloc(1, sizeof *n);
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    *why = "out of memory";
    if (n == NULL)
        return SIGIL_ERR_NOMEM;
    n->loop = o->loop;
    n->cores = uv_available_parallelism();
    if (n->cores < 1)
        n->cores = 1;
    n->db = o->db;
    n->ca = o->ca;
    n->agent_ttl = o->agent_ttl_s > 0 ? o->agent_ttl_s : SIGIL_NODEAPI_AGENT_TTL_DEFAULT;
    snprintf(n->server_id, sizeof n->server_id, "spiffe://%s%s", o->trust_domain, SERVER_PATH);
    if ((n->td = strdup(o->trust_domain)) == NULL ||
        (o->x509pop_roots != NULL &&
         (n->acfg.x509pop_roots = X509_chain_up_ref(o->x509pop_roots)) == NULL) ||
        sigil_index_new(n->server_id, &n->ix) != 0 ||
        (n->agents = calloc(AGENT_BUCKETS, sizeof *n->agents)) == NULL)
        goto fail;
    n->acfg.trust_domain = n->td;
    n->acfg.join_token_enabled = o->join_token_enabled;
    if ((r = setup_metrics(n, o->metrics)) != 0) {
        *why = "cannot register the node API metrics";
        goto fail;
    }
    if ((r = load_index(n, o->conninfo, why)) != 0 || (r = build_roots(n)) != 0 ||
        (r = mint_server_svid(n, why)) != 0 || (r = make_tls(n, why)) != 0)
        goto fail;
    if ((r = sigil_rpc_server_new(n->loop, &so, &n->rpc)) != 0)
        goto fail;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        struct sigil_rpc_method m = {
            .path = methods[i].path, .kind = methods[i].kind, .handler = methods[i].fn, .arg = n};

        if ((r = sigil_rpc_server_add(n->rpc, &m)) != 0)
            goto fail_rpc;
    }
    if ((r = sigil_rpc_server_listen_tcp(n->rpc, o->host, o->port, n->tls, 0, why)) != 0)
        goto fail_rpc;
    if ((r = sigil_db_listen(n->db, "sigil_events", on_event, n, &n->listener)) != 0) {
        *why = "cannot follow sigil_events";
        goto fail_rpc;
    }
    uv_timer_init(n->loop, &n->timer);
    n->timer.data = n;
    n->timer_open = true;
    uv_timer_start(&n->timer, on_timer, CHECK_MS, CHECK_MS);
    sigil_log(SIGIL_LOG_INFO, COMPONENT, "node API serving %zu entries at revision %lld",
              sigil_index_count(n->ix), (long long)sigil_index_revision(n->ix));
    *out = n;
    return 0;
fail_rpc:
    /* the server frees itself once shut down; n goes with it */
    n->stopping = true;
    sigil_rpc_server_shutdown(n->rpc, 0, on_rpc_down, n);
    return r;
fail:
    n->stopping = true;
    n->rpc_down = true;
    really_free(n);
    return r;
}

int
sigil_nodeapi_port(const struct sigil_nodeapi *n)
{
    return sigil_rpc_server_port(n->rpc);
}

void
sigil_nodeapi_stop(struct sigil_nodeapi *n, void (*done)(void *arg), void *arg)
{
    n->done = done;
    n->done_arg = arg;
    n->stopping = true;
    /* open streams end now rather than holding the grace period */
    while (n->streams != NULL)
        stream_close(n->streams, SIGIL_RPC_UNAVAILABLE, "server stopping");
    if (n->listener != NULL) {
        sigil_db_unlisten(n->listener);
        n->listener = NULL;
    }
    if (n->timer_open) {
        uv_timer_stop(&n->timer);
        uv_close((uv_handle_t *)&n->timer, on_timer_closed);
    }
    sigil_rpc_server_shutdown(n->rpc, GRACE_MS, on_rpc_down, n);
}
