/* sigil-agent run: one libuv loop holds the identity cache, the Workload API, and the node API
 * client. Phases: attest (bidi Attest over TLS without a client certificate) unless data_dir
 * holds a valid SVID, then connect with mTLS and keep two streams open (SyncEntries,
 * StreamBundles); a tick signs entries that need an SVID in batches of CSRs and renews the
 * agent SVID, each at half life with jitter. When a stream fails the cache keeps serving and we
 * reconnect with exponential backoff. Every callback checks it still belongs to the current
 * connection (the generation number), so a late answer from a torn-down one changes nothing. */
#include "agent.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sodium.h>
#include <uv.h>

#include "agent_config.h"
#include "cache.h"
#include "node.pb-c.h"
#include "nodeattest.h"
#include "svidstore.h"
#include "workload_api.h"

#include "sigil/err.h"
#include "sigil/log.h"
#include "sigil/rpc.h"
#include "sigil/tls.h"
#include "sigil/x509.h"

#define COMP "agent"
#define NODE "/sigil.node.v1.Node/"
#define TICK_MS 250
#define MAX_BATCHES_INFLIGHT 4
#define SIGN_RETRY_S 5
#define JWT_CACHE_MAX 4096 /* cached JWT-SVIDs: audiences come from workloads, so bounded */
#define REATTESTABLE_FILE "reattestable"
#define MAX_MESSAGE (64u << 20) /* sync pages and bundles may be large; no entry ceiling */

time_t
sigil_agent_renew_time(time_t not_before, time_t not_after, int jitter_percent, double u)
{
    double half, j, t;

    if (not_after <= not_before)
        return not_before;
    if (u < 0 || u >= 1)
        u = 0.5;
    if (jitter_percent < 0)
        jitter_percent = 0;
    if (jitter_percent > 100)
        jitter_percent = 100;
    half = (double)(not_after - not_before) / 2;
    j = half * jitter_percent / 100.0;
    t = (double)not_before + half + (2 * u - 1) * j;
    if (t < (double)not_before)
        t = (double)not_before;
    return (time_t)t;
}

uint64_t
sigil_agent_backoff_next(uint64_t cur_ms, uint64_t initial_ms, uint64_t max_ms)
{
    uint64_t next = cur_ms == 0 ? initial_ms : (cur_ms > UINT64_MAX / 2 ? UINT64_MAX : cur_ms * 2);

    return next > max_ms ? max_ms : next;
}

/* A uniform double in [0, 1) for jitter (not a secret, but libsodium is at hand). */
static double
rand_unit(void)
{
    return (double)randombytes_uniform(1u << 30) / (double)(1u << 30);
}

/* One entry this agent may issue, kept sorted by id beside the cache (which has no
 * iteration), with its rotation schedule. */
struct ent {
    char *id;
    struct sigil_spiffeid sid;
    time_t renew_at; /* 0: needs an SVID now */
    bool inflight;
    bool seen; /* sent in the current full sync */
};

/* A JWT-SVID kept until half its life, per (entry, audiences). */
struct jwt_cached {
    struct jwt_cached *next;
    char *entry_id;
    char *aud; /* audiences joined by '\n' */
    char *token;
    time_t refresh_at;
    time_t expires_at;
};

enum phase {
    PH_IDLE,      /* waiting for the retry timer */
    PH_ATTEST,    /* Attest in flight */
    PH_CONNECTED, /* mTLS streams open */
    PH_STOPPING,
};

struct agent {
    struct sigil_agent_config cfg;
    const char *join_token;
    uv_loop_t *loop;
    struct sigil_cache *cache;
    struct sigil_wapi *wapi;
    uv_signal_t sigint, sigterm;
    uv_timer_t tick, retry;
    enum phase phase;
    int exit_code;
    unsigned gen; /* bumped on every teardown of the node API client */

    /* the agent's identity */
    STACK_OF(X509) *chain;
    EVP_PKEY *key;
    struct sigil_spiffeid id;
    time_t renew_at;
    bool renewing;
    bool reattestable;
    STACK_OF(X509)
    *roots; /* X.509 authorities of our own bundle: the server's SVID chains to one */

    /* the node API client */
    struct sigil_tls_ctx *tls;
    struct sigil_rpc_client *cli;
    struct sigil_rpc_ccall *attest_call, *sync_call, *bundle_call;
    uint64_t backoff_ms;
    /* a failure seen inside a client callback is acted on from the loop (never free the
     * client from inside its own callback); the first one wins */
    uv_timer_t later;
    void (*later_fn)(struct agent *a, int code, const char *message);
    int later_code;
    char later_msg[512];

    /* attestation in flight */
    const struct sigil_nodeattest *na;
    void *na_state;
    EVP_PKEY *attest_key;
    struct sigil_buf attest_csr;
    bool attested;

    /* sync */
    uint64_t revision;
    bool in_full;
    struct ent *ents;
    size_t nents, cap;
    unsigned batches_inflight;
    struct jwt_cached *jwts;
    size_t njwts;
};

static void stop(struct agent *a, int code);
static void start_attest(struct agent *a);
static void connect_node(struct agent *a);
static void kick(struct agent *a);
static void retry_cb(uv_timer_t *t);

static void
later_cb(uv_timer_t *t)
{
    struct agent *a = t->data;
    void (*fn)(struct agent *, int, const char *) = a->later_fn;
    char msg[sizeof a->later_msg];

    a->later_fn = NULL;
    memcpy(msg, a->later_msg, sizeof msg);
    if (fn != NULL && a->phase != PH_STOPPING)
        fn(a, a->later_code, msg);
}

/* Runs fn(a, code, message) from the loop soon, unless an earlier one is pending. */
static void
later(struct agent *a, void (*fn)(struct agent *, int, const char *), int code, const char *message)
{
    if (a->later_fn != NULL)
        return;
    a->later_fn = fn;
    a->later_code = code;
    snprintf(a->later_msg, sizeof a->later_msg, "%s", message != NULL ? message : "");
    uv_timer_start(&a->later, later_cb, 0, 0);
}

/* ---- the entry table ---- */

/* Finds id; returns its slot or, with *found false, where it would go. */
static size_t
ent_find(const struct agent *a, const char *id, bool *found)
{
    size_t lo = 0, hi = a->nents;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(a->ents[mid].id, id);

        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static struct ent *
ent_get(struct agent *a, const char *id)
{
    bool found;
    size_t i = ent_find(a, id, &found);

    return found ? &a->ents[i] : NULL;
}

static void
ent_remove_at(struct agent *a, size_t i)
{
    free(a->ents[i].id);
    memmove(&a->ents[i], &a->ents[i + 1], (a->nents - i - 1) * sizeof *a->ents);
    a->nents--;
}

/* ---- identity and bundle helpers ---- */

/* Sets a->roots from bundle b's X.509 authorities. Returns 0 or SIGIL_ERR_*. */
static int
roots_from_bundle(struct agent *a, const struct sigil_bundle *b, const char **why)
{
    struct sigil_buf der = {0};
    STACK_OF(X509) *roots = NULL;
    int r;

    if ((r = sigil_bundle_x509_der(b, &der)) != 0) {
        *why = "cannot encode the bundle's authorities";
        goto out;
    }
    if (der.len == 0) {
        *why = "the bundle holds no X.509 authority";
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    if ((r = sigil_x509_chain_parse_der(der.data, der.len, &roots, why)) != 0)
        goto out;
    sk_X509_pop_free(a->roots, X509_free);
    a->roots = roots;
out:
    sigil_buf_free(&der);
    return r;
}

/* Takes our own bundle b (ownership passes): roots, disk and cache. */
static int
own_bundle_set(struct agent *a, struct sigil_bundle *b, bool save, const char **why)
{
    int r;

    if ((r = roots_from_bundle(a, b, why)) != 0 ||
        (save && (r = sigil_svidstore_save_bundle(a->cfg.data_dir, b, why)) != 0)) {
        sigil_bundle_free(b);
        return r;
    }
    return sigil_cache_set_bundle(a->cache, b);
}

/* The TLS verify hook: the server's SVID must chain to our bundle and be the server's ID. */
static int
verify_server(void *arg, STACK_OF(X509) *chain, const char **why)
{
    struct agent *a = arg;
    struct sigil_spiffeid id, want;
    int r;

    if (a->roots == NULL) {
        *why = "no trust bundle to verify the server with";
        return SIGIL_ERR_VERIFY;
    }
    if ((r = sigil_x509_svid_verify(chain, a->roots, 0, &id, why)) != 0)
        return r;
    if (sigil_spiffeid_from_parts(a->cfg.td, "/sigil/server", &want, why) != 0)
        return SIGIL_ERR_INTERNAL;
    if (!sigil_spiffeid_equal(&id, &want)) {
        *why = "the server's SVID is not spiffe://<trust domain>/sigil/server";
        return SIGIL_ERR_VERIFY;
    }
    return 0;
}

/* Installs chain + key as the agent's identity (references taken) and plans its renewal. */
static int
identity_set(struct agent *a, STACK_OF(X509) *chain, EVP_PKEY *key, const char **why)
{
    X509 *leaf = sk_X509_value(chain, 0);
    struct sigil_spiffeid id;
    time_t nb, na;
    STACK_OF(X509) *dup;

    if (leaf == NULL || sigil_x509_cert_spiffeid(leaf, &id, why) != 0)
        return SIGIL_ERR_INVALID;
    if (!sigil_spiffeid_member_of(&id, a->cfg.td)) {
        *why = "the agent SVID is not in the configured trust domain";
        return SIGIL_ERR_INVALID;
    }
    if (!sigil_x509_key_matches_cert(key, leaf)) {
        *why = "the agent SVID does not match our key";
        return SIGIL_ERR_INVALID;
    }
    if (sigil_x509_cert_not_before(leaf, &nb) != 0 || sigil_x509_cert_not_after(leaf, &na) != 0) {
        *why = "the agent SVID has an unreadable validity";
        return SIGIL_ERR_INVALID;
    }
    if ((dup = X509_chain_up_ref(chain)) == NULL)
        return SIGIL_ERR_NOMEM;
    EVP_PKEY_up_ref(key);
    sk_X509_pop_free(a->chain, X509_free);
    EVP_PKEY_free(a->key);
    a->chain = dup;
    a->key = key;
    a->id = id;
    a->renew_at = sigil_agent_renew_time(nb, na, (int)a->cfg.jitter_percent, rand_unit());
    return 0;
}

/* True if the agent SVID is still valid now. */
static bool
identity_valid(const struct agent *a)
{
    time_t na;

    return a->chain != NULL && sigil_x509_cert_not_after(sk_X509_value(a->chain, 0), &na) == 0 &&
           time(NULL) < na;
}

/* ---- the node API client ---- */

/* Drops the client and its calls; callbacks of the old generation find nothing to do. */
static void
teardown(struct agent *a)
{
    a->gen++;
    a->attest_call = a->sync_call = a->bundle_call = NULL;
    if (a->cli != NULL)
        sigil_rpc_client_free(a->cli);
    a->cli = NULL;
    sigil_tls_ctx_free(a->tls);
    a->tls = NULL;
    a->renewing = false;
    a->batches_inflight = 0;
    for (size_t i = 0; i < a->nents; i++)
        a->ents[i].inflight = false;
    a->in_full = false;
}

/* Makes a client for the server; with_identity: mTLS with the agent SVID. */
static int
client_new(struct agent *a, bool with_identity, const char **why)
{
    struct sigil_tls_opts to = {.verify = verify_server, .verify_arg = a};
    struct sigil_rpc_client_opts co = {0};
    STACK_OF(X509) *rest = NULL;
    int r;

    if (with_identity) {
        to.cert = sk_X509_value(a->chain, 0);
        if ((rest = sk_X509_dup(a->chain)) == NULL)
            return SIGIL_ERR_NOMEM;
        (void)sk_X509_shift(rest);
        to.chain = rest;
        to.key = a->key;
    }
    r = sigil_tls_ctx_new_client(&to, &a->tls, why);
    sk_X509_free(rest);
    if (r != 0)
        return r;
    co.target = a->cfg.server_address;
    co.tls = a->tls;
    co.max_message = MAX_MESSAGE;
    return sigil_rpc_client_new(a->loop, &co, &a->cli, why);
}

/* The server is out of reach (or the connection failed): serve the cache, retry later. */
static void
unreachable(struct agent *a, int code, const char *message)
{
    char secs[32];

    teardown(a);
    if (a->phase == PH_STOPPING)
        return;
    a->phase = PH_IDLE;
    a->backoff_ms = sigil_agent_backoff_next(a->backoff_ms, (uint64_t)a->cfg.retry_initial_ms,
                                             (uint64_t)a->cfg.retry_max_ms);
    {
        const struct sigil_log_field f[] = {{"status", sigil_rpc_code_name(code)},
                                            {"reason", message}};

        snprintf(secs, sizeof secs, "%.1f", (double)a->backoff_ms / 1000);
        sigil_log_fields(SIGIL_LOG_WARN, COMP, f, 2,
                         "server unreachable, serving cached SVIDs; retrying in %s s", secs);
    }
    uv_timer_start(&a->retry, retry_cb, a->backoff_ms, 0);
}

/* The server refused this agent for good: log why and stop serving. */
static void
refused(struct agent *a, const char *what, int code, const char *message)
{
    sigil_log_kv(SIGIL_LOG_ERROR, COMP, what, "status", sigil_rpc_code_name(code), "reason",
                 message, NULL);
    sigil_log(SIGIL_LOG_ERROR, COMP,
              "the agent stops: no new SVIDs are served (SVIDs workloads hold stay valid until "
              "they expire); exiting with status %d",
              SIGIL_AGENT_EXIT_BANNED);
    stop(a, SIGIL_AGENT_EXIT_BANNED);
}

/* A node API status saying the server no longer knows this agent or its SVID (evicted, or
 * an SVID that is not the current one): attest again. */
static bool
is_unknown_agent(int code, const char *message)
{
    return code == SIGIL_RPC_UNAUTHENTICATED || code == SIGIL_RPC_NOT_FOUND ||
           (code == SIGIL_RPC_PERMISSION_DENIED &&
            (strstr(message, "evicted") != NULL || strstr(message, "unknown") != NULL ||
             strstr(message, "attest again") != NULL));
}

/* A status about this agent rather than about one request ("entry is not authorized" is
 * about the request): the whole connection acts on it. */
static bool
is_about_agent(int code, const char *message)
{
    return is_unknown_agent(code, message) ||
           (code == SIGIL_RPC_PERMISSION_DENIED && strstr(message, "banned") != NULL);
}

/* Any node API failure on the mTLS connection lands here. */
static void
node_failed(struct agent *a, int code, const char *message)
{
    char path[4200];

    if (a->phase == PH_STOPPING)
        return;
    if (is_unknown_agent(code, message)) {
        teardown(a);
        if (!a->reattestable) {
            /* not fatal: the server may know us again (a restored database, an index still
             * loading), and an operator can give the node a new join token meanwhile */
            sigil_log_kv(SIGIL_LOG_ERROR, COMP,
                         "the server does not know this agent and its attestation cannot be "
                         "repeated; still serving cached SVIDs (restart with a new join token "
                         "and an empty data_dir to attest again)",
                         "status", sigil_rpc_code_name(code), "reason", message, NULL);
            unreachable(a, code, message);
            return;
        }
        sigil_log_kv(SIGIL_LOG_WARN, COMP, "the server no longer knows this agent; attesting again",
                     "reason", message, NULL);
        snprintf(path, sizeof path, "%s/%s", a->cfg.data_dir, SIGIL_SVIDSTORE_AGENT_FILE);
        if (unlink(path) != 0 && errno != ENOENT)
            sigil_log_kv(SIGIL_LOG_WARN, COMP, "cannot remove the old agent SVID", "path", path,
                         NULL);
        sk_X509_pop_free(a->chain, X509_free);
        a->chain = NULL;
        start_attest(a);
        return;
    }
    if (code == SIGIL_RPC_PERMISSION_DENIED) {
        teardown(a);
        refused(a,
                strstr(message, "banned") != NULL ? "the server says this agent is banned"
                                                  : "the server refuses this agent",
                code, message);
        return;
    }
    unreachable(a, code, message);
}

/* ---- attestation ---- */

static void
attest_state_free(struct agent *a)
{
    EVP_PKEY_free(a->attest_key);
    a->attest_key = NULL;
    sigil_buf_free(&a->attest_csr);
}

/* Packs and sends one AttestRequest. */
static int
attest_send(struct sigil_rpc_ccall *call, const Sigil__Node__V1__AttestRequest *req)
{
    size_t n = sigil__node__v1__attest_request__get_packed_size(req);
    uint8_t *buf = malloc(n ? n : 1);
    int r;

    if (buf == NULL)
        return SIGIL_ERR_NOMEM;
    sigil__node__v1__attest_request__pack(req, buf);
    r = sigil_rpc_ccall_send(call, buf, n);
    OPENSSL_cleanse(buf, n); /* a join token */
    free(buf);
    return r;
}

/* Takes an AttestResult: our SVID (for attest_key), the bundle, saved to disk. */
static int
attest_result(struct agent *a, const Sigil__Node__V1__AttestResult *res, const char **why)
{
    STACK_OF(X509) *chain = NULL;
    struct sigil_bundle *b = NULL;
    int r;

    if ((r = sigil_x509_chain_parse_der(res->svid_chain.data, res->svid_chain.len, &chain, why)) !=
        0)
        goto out;
    /* the server proved it holds the bundle's key during the handshake (verify_server); the
     * bundle it sends now replaces the bootstrap one */
    if (res->bundle.len > 0) {
        if ((r = sigil_bundle_decode(a->cfg.td, (const char *)res->bundle.data, res->bundle.len, &b,
                                     why)) != 0)
            goto out;
        r = own_bundle_set(a, b, true, why);
        b = NULL;
        if (r != 0)
            goto out;
    }
    if ((r = sigil_x509_svid_verify(chain, a->roots, 0, NULL, why)) != 0 ||
        (r = identity_set(a, chain, a->attest_key, why)) != 0 ||
        (r = sigil_svidstore_save_agent(a->cfg.data_dir, a->chain, a->key, why)) != 0)
        goto out;
    a->reattestable = res->reattestable;
    {
        char path[4200];

        snprintf(path, sizeof path, "%s/%s", a->cfg.data_dir, REATTESTABLE_FILE);
        if (res->reattestable)
            r = sigil_svidstore_write_file(a->cfg.data_dir, REATTESTABLE_FILE, "1\n", 2, why);
        else if (unlink(path) != 0 && errno != ENOENT)
            r = SIGIL_ERR_IO, *why = "cannot remove the reattestable mark";
    }
out:
    sigil_bundle_free(b);
    sk_X509_pop_free(chain, X509_free);
    return r;
}

static void
attest_on_message(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    struct agent *a = ud;
    Sigil__Node__V1__AttestResponse *resp = NULL;
    Sigil__Node__V1__AttestRequest req = SIGIL__NODE__V1__ATTEST_REQUEST__INIT;
    struct sigil_buf answer = {0};
    const char *why = "malformed AttestResponse";
    bool ok = false;

    if (call != a->attest_call)
        return;
    if ((resp = sigil__node__v1__attest_response__unpack(NULL, len, msg)) == NULL)
        goto out;
    if (resp->step_case == SIGIL__NODE__V1__ATTEST_RESPONSE__STEP_CHALLENGE) {
        if (a->na->answer(a->na_state, resp->challenge.data, resp->challenge.len,
                          a->attest_csr.data, a->attest_csr.len, &answer, &why) != 0)
            goto out;
        req.step_case = SIGIL__NODE__V1__ATTEST_REQUEST__STEP_CHALLENGE_RESPONSE;
        req.challenge_response.data = answer.data;
        req.challenge_response.len = answer.len;
        if (attest_send(call, &req) != 0) {
            why = "cannot send the challenge response";
            goto out;
        }
        ok = true;
        goto out;
    }
    if (resp->step_case != SIGIL__NODE__V1__ATTEST_RESPONSE__STEP_RESULT ||
        attest_result(a, resp->result, &why) != 0)
        goto out;
    a->attested = true;
    sigil_log_kv(SIGIL_LOG_INFO, COMP, "node attested", "spiffe_id", a->id.str, "attestor",
                 a->na->name, NULL);
    (void)sigil_rpc_ccall_close_send(call);
    ok = true;
out:
    if (!ok) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMP, "attestation failed", "reason", why, NULL);
        sigil_rpc_ccall_cancel(call); /* attest_on_end runs with CANCELLED */
    }
    sigil_buf_freezero(&answer);
    sigil__node__v1__attest_response__free_unpacked(resp, NULL);
}

/* After Attest ended (from the loop): connect, stop, or retry. */
static void
attest_ended(struct agent *a, int code, const char *message)
{
    if (a->attested) {
        teardown(a);
        a->backoff_ms = 0;
        connect_node(a);
        return;
    }
    if (code == SIGIL_RPC_PERMISSION_DENIED || code == SIGIL_RPC_INVALID_ARGUMENT ||
        code == SIGIL_RPC_UNAUTHENTICATED || code == SIGIL_RPC_FAILED_PRECONDITION) {
        teardown(a);
        refused(a, "the server refused the node attestation", code, message);
        return;
    }
    unreachable(a, code, message);
}

static void
attest_on_end(struct sigil_rpc_ccall *call, void *ud, int code, const char *message)
{
    struct agent *a = ud;

    if (call != a->attest_call)
        return;
    a->attest_call = NULL;
    attest_state_free(a);
    if (a->phase == PH_STOPPING)
        return;
    later(a, attest_ended, code, message);
}

/* Starts Attest: a fresh key and CSR, the attestor's payload, over TLS without a client
 * certificate. Failures before the call exist end the agent (bad evidence) or retry. */
static void
start_attest(struct agent *a)
{
    static const struct sigil_rpc_ccall_cbs cbs = {.on_message = attest_on_message,
                                                   .on_end = attest_on_end};
    struct sigil_nodeattest_opts no = {.join_token = a->join_token,
                                       .x509pop_cert_path = a->cfg.x509pop_cert_path,
                                       .x509pop_key_path = a->cfg.x509pop_key_path};
    Sigil__Node__V1__AttestRequest req = SIGIL__NODE__V1__ATTEST_REQUEST__INIT;
    Sigil__Node__V1__AttestParams params = SIGIL__NODE__V1__ATTEST_PARAMS__INIT;
    struct sigil_buf payload = {0};
    const char *why = NULL;
    int r;

    teardown(a);
    attest_state_free(a);
    a->attested = false;
    if (a->na == NULL && (a->na = sigil_nodeattest_pick(&no)) == NULL) {
        sigil_log(SIGIL_LOG_ERROR, COMP,
                  "no valid agent SVID in data_dir and no node attestor configured (set "
                  "join_token, --join-token or x509pop)");
        stop(a, 1);
        return;
    }
    if (a->na_state == NULL && (r = a->na->load(&no, &a->na_state, &why)) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMP, "cannot load the node attestation evidence", "attestor",
                     a->na->name, "reason", why, NULL);
        stop(a, 1);
        return;
    }
    if ((r = sigil_x509_key_generate(&a->attest_key)) != 0 ||
        (r = sigil_x509_csr_create(a->attest_key, NULL, &a->attest_csr)) != 0 ||
        (r = a->na->payload(a->na_state, &payload, &why)) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMP, "cannot prepare the attestation", "reason",
                     why != NULL ? why : sigil_strerror(r), NULL);
        stop(a, 1);
        goto out;
    }
    if ((r = client_new(a, false, &why)) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMP, "cannot set up the node API client", "reason", why,
                     NULL);
        stop(a, 1);
        goto out;
    }
    a->phase = PH_ATTEST;
    if ((r = sigil_rpc_client_call(a->cli, NODE "Attest", NULL, 0, (uint64_t)a->cfg.rpc_timeout_ms,
                                   &cbs, a, &a->attest_call)) != 0) {
        unreachable(a, SIGIL_RPC_INTERNAL, sigil_strerror(r));
        goto out;
    }
    params.attestation_type = (char *)a->na->name;
    params.payload.data = payload.data;
    params.payload.len = payload.len;
    params.csr.data = a->attest_csr.data;
    params.csr.len = a->attest_csr.len;
    req.step_case = SIGIL__NODE__V1__ATTEST_REQUEST__STEP_PARAMS;
    req.params = &params;
    sigil_log_kv(SIGIL_LOG_INFO, COMP, "attesting the node", "attestor", a->na->name, "server",
                 a->cfg.server_address, NULL);
    if (attest_send(a->attest_call, &req) != 0)
        sigil_rpc_ccall_cancel(a->attest_call);
out:
    sigil_buf_freezero(&payload);
}

/* ---- entry sync ---- */

static void
entry_remove(struct agent *a, const char *id)
{
    bool found;
    size_t i = ent_find(a, id, &found);

    (void)sigil_cache_remove_entry(a->cache, id);
    if (found)
        ent_remove_at(a, i);
}

/* Puts one synced entry into the cache and the table. One that cannot be taken is dropped
 * (with its older version: a stale entry must not keep issuing). */
static void
entry_put(struct agent *a, const Sigil__Node__V1__Entry *e)
{
    struct sigil_selector_set sels = {0};
    struct sigil_spiffeid sid;
    const char *why = NULL;
    bool found, ok = false;
    size_t i;

    if (sigil_spiffeid_parse(e->spiffe_id, strlen(e->spiffe_id), &sid, &why) != 0)
        goto out;
    for (i = 0; i < e->n_selectors; i++)
        if (sigil_selector_set_add_str(&sels, e->selectors[i], strlen(e->selectors[i]), &why) != 0)
            goto out;
    if (sigil_cache_put_entry(a->cache, e->id, &sid, &sels, e->hint,
                              (const char *const *)e->federates_with, e->n_federates_with,
                              &why) != 0)
        goto out;
    why = "out of memory";
    i = ent_find(a, e->id, &found);
    if (!found) {
        if (a->nents == a->cap) {
            size_t cap = a->cap ? a->cap * 2 : 64;
            struct ent *n = realloc(a->ents, cap * sizeof *n);

            if (n == NULL)
                goto out;
            a->ents = n;
            a->cap = cap;
        }
        memmove(&a->ents[i + 1], &a->ents[i], (a->nents - i) * sizeof *a->ents);
        memset(&a->ents[i], 0, sizeof a->ents[i]);
        if ((a->ents[i].id = strdup(e->id)) == NULL) {
            memmove(&a->ents[i], &a->ents[i + 1], (a->nents - i) * sizeof *a->ents);
            goto out;
        }
        a->nents++;
    } else if (!sigil_spiffeid_equal(&a->ents[i].sid, &sid)) {
        a->ents[i].renew_at = 0; /* the cache dropped the SVID of the old ID */
    }
    a->ents[i].sid = sid;
    a->ents[i].seen = true;
    ok = true;
out:
    if (!ok) {
        sigil_log_kv(SIGIL_LOG_WARN, COMP, "entry skipped", "entry_id", e->id, "reason",
                     why != NULL ? why : "invalid", NULL);
        entry_remove(a, e->id);
    }
    sigil_selector_set_free(&sels);
}

static void
sync_on_message(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    struct agent *a = ud;
    Sigil__Node__V1__SyncEntriesResponse *resp;
    size_t i;

    if (call != a->sync_call)
        return;
    if ((resp = sigil__node__v1__sync_entries_response__unpack(NULL, len, msg)) == NULL) {
        sigil_log(SIGIL_LOG_WARN, COMP, "malformed SyncEntriesResponse");
        sigil_rpc_ccall_cancel(call);
        return;
    }
    if (a->backoff_ms != 0)
        sigil_log(SIGIL_LOG_INFO, COMP, "server reachable again; entries resync");
    a->backoff_ms = 0;
    if (resp->full && !a->in_full) {
        a->in_full = true;
        for (i = 0; i < a->nents; i++)
            a->ents[i].seen = false;
    }
    for (i = 0; i < resp->n_entries; i++)
        entry_put(a, resp->entries[i]);
    for (i = 0; i < resp->n_removed_ids; i++)
        entry_remove(a, resp->removed_ids[i]);
    if (resp->last) {
        if (a->in_full) {
            size_t dropped = 0;

            /* a full state (the server could not answer from our revision): what it did not
             * send again is gone */
            for (i = a->nents; i-- > 0;)
                if (!a->ents[i].seen) {
                    (void)sigil_cache_remove_entry(a->cache, a->ents[i].id);
                    ent_remove_at(a, i);
                    dropped++;
                }
            a->in_full = false;
            if (dropped > 0)
                sigil_log(SIGIL_LOG_INFO, COMP,
                          "full entry resync: dropped %zu entries the server no longer sends",
                          dropped);
        }
        a->revision = resp->revision;
        sigil_log(SIGIL_LOG_DEBUG, COMP, "entries synced to revision %llu (%zu entries)",
                  (unsigned long long)a->revision, a->nents);
        kick(a);
    }
    sigil__node__v1__sync_entries_response__free_unpacked(resp, NULL);
}

static void
stream_on_end(struct sigil_rpc_ccall *call, void *ud, int code, const char *message)
{
    struct agent *a = ud;

    if (call != a->sync_call && call != a->bundle_call)
        return;
    if (call == a->sync_call)
        a->sync_call = NULL;
    else
        a->bundle_call = NULL;
    later(a, node_failed, code == SIGIL_RPC_OK ? SIGIL_RPC_UNAVAILABLE : code,
          code == SIGIL_RPC_OK ? "the server ended the stream" : message);
}

/* ---- bundles ---- */

static void
bundles_on_message(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    struct agent *a = ud;
    Sigil__Node__V1__BundlesUpdate *up;
    const struct sigil_bundle_set *have;
    struct sigil_bundle *b = NULL;
    const char *why = NULL;
    char **gone = NULL;
    size_t i, j, ngone = 0;

    if (call != a->bundle_call)
        return;
    if ((up = sigil__node__v1__bundles_update__unpack(NULL, len, msg)) == NULL) {
        sigil_log(SIGIL_LOG_WARN, COMP, "malformed BundlesUpdate");
        return;
    }
    if (up->bundle.len > 0) {
        if (sigil_bundle_decode(a->cfg.td, (const char *)up->bundle.data, up->bundle.len, &b,
                                &why) != 0 ||
            own_bundle_set(a, b, true, &why) != 0)
            sigil_log_kv(SIGIL_LOG_WARN, COMP, "own bundle update ignored", "reason", why, NULL);
        b = NULL;
    }
    for (i = 0; i < up->n_federated; i++) {
        const char *td = up->federated[i]->key;

        if (strcmp(td, a->cfg.td) == 0 ||
            sigil_bundle_decode(td, (const char *)up->federated[i]->value.data,
                                up->federated[i]->value.len, &b, &why) != 0) {
            sigil_log_kv(SIGIL_LOG_WARN, COMP, "federated bundle ignored", "trust_domain", td,
                         "reason", why != NULL ? why : "our own trust domain", NULL);
            continue;
        }
        (void)sigil_cache_set_bundle(a->cache, b);
        b = NULL;
    }
    /* federated bundles the update no longer holds are dropped */
    have = sigil_cache_bundles(a->cache);
    if ((gone = calloc(sigil_bundle_set_count(have) + 1, sizeof *gone)) != NULL) {
        for (i = 0; i < sigil_bundle_set_count(have); i++) {
            const char *td = sigil_bundle_trust_domain(sigil_bundle_set_at(have, i));
            bool keep = strcmp(td, a->cfg.td) == 0;

            for (j = 0; j < up->n_federated && !keep; j++)
                keep = strcmp(td, up->federated[j]->key) == 0;
            if (!keep && (gone[ngone] = strdup(td)) != NULL)
                ngone++;
        }
        for (i = 0; i < ngone; i++) {
            (void)sigil_cache_remove_bundle(a->cache, gone[i]);
            free(gone[i]);
        }
        free(gone);
    }
    sigil__node__v1__bundles_update__free_unpacked(up, NULL);
}

/* ---- signing workload SVIDs ---- */

/* One BatchSignX509SVID in flight: the ids and the keys made for them on this node. */
struct batch {
    struct agent *a;
    unsigned gen;
    size_t n;
    char **ids;
    EVP_PKEY **keys;
};

static void
batch_free(struct batch *bt)
{
    for (size_t i = 0; i < bt->n; i++) {
        free(bt->ids[i]);
        EVP_PKEY_free(bt->keys[i]);
    }
    free(bt->ids);
    free(bt->keys);
    free(bt);
}

/* Stores one signed SVID; returns why it was not taken, or NULL. */
static const char *
batch_take(struct agent *a, struct batch *bt, size_t k, const Sigil__Node__V1__SignedX509SVID *s,
           struct ent *e)
{
    STACK_OF(X509) *chain = NULL;
    const char *why = NULL;
    time_t nb, na;

    if (s->error != NULL && s->error[0] != '\0')
        return s->error;
    if (sigil_x509_chain_parse_der(s->svid_chain.data, s->svid_chain.len, &chain, &why) != 0)
        return why;
    if (sigil_x509_cert_not_before(sk_X509_value(chain, 0), &nb) != 0 ||
        sigil_x509_cert_not_after(sk_X509_value(chain, 0), &na) != 0)
        why = "unreadable validity";
    else if (sigil_cache_set_svid(a->cache, bt->ids[k], chain, bt->keys[k], &why) == 0)
        e->renew_at = sigil_agent_renew_time(nb, na, (int)a->cfg.jitter_percent, rand_unit());
    else if (why == NULL)
        why = "the cache refused the SVID";
    sk_X509_pop_free(chain, X509_free);
    return why;
}

static void
batch_done(void *ud, int code, const char *message, const uint8_t *resp, size_t len)
{
    struct batch *bt = ud;
    struct agent *a = bt->a;
    Sigil__Node__V1__BatchSignX509SVIDResponse *r = NULL;
    time_t now = time(NULL);
    size_t i, k;

    if (bt->gen != a->gen)
        goto out;
    a->batches_inflight--;
    if (code == SIGIL_RPC_OK)
        r = sigil__node__v1__batch_sign_x509_svidresponse__unpack(NULL, len, resp);
    if (r == NULL)
        sigil_log_kv(SIGIL_LOG_WARN, COMP, "BatchSignX509SVID failed", "status",
                     sigil_rpc_code_name(code), "reason",
                     code == SIGIL_RPC_OK ? "malformed response" : message, NULL);
    if (is_about_agent(code, message))
        later(a, node_failed, code, message);
    for (k = 0; k < bt->n; k++) {
        struct ent *e = ent_get(a, bt->ids[k]);
        const char *why = "no answer for this entry";

        if (e == NULL)
            continue; /* removed meanwhile */
        e->inflight = false;
        for (i = 0; r != NULL && i < r->n_svids; i++)
            if (strcmp(r->svids[i]->entry_id, bt->ids[k]) == 0) {
                e->renew_at = 0;
                why = batch_take(a, bt, k, r->svids[i], e);
                break;
            }
        if (why != NULL) {
            if (r != NULL)
                sigil_log_kv(SIGIL_LOG_WARN, COMP, "no SVID for entry", "entry_id", bt->ids[k],
                             "reason", why, NULL);
            e->renew_at = now + SIGN_RETRY_S;
        } else {
            sigil_log_kv(SIGIL_LOG_DEBUG, COMP, "SVID stored", "entry_id", bt->ids[k], "spiffe_id",
                         e->sid.str, NULL);
        }
    }
    if (r != NULL)
        kick(a);
out:
    sigil__node__v1__batch_sign_x509_svidresponse__free_unpacked(r, NULL);
    batch_free(bt);
}

/* Sends one batch of CSRs for entries due now; returns false when none is due. */
static bool
batch_send(struct agent *a, time_t now)
{
    size_t max = (size_t)a->cfg.sign_batch_size, i, n = 0;
    Sigil__Node__V1__BatchSignX509SVIDRequest req =
        SIGIL__NODE__V1__BATCH_SIGN_X509_SVIDREQUEST__INIT;
    Sigil__Node__V1__X509SVIDParams *params = NULL, **pp = NULL;
    struct sigil_buf *csrs = NULL;
    struct batch *bt = NULL;
    uint8_t *buf = NULL;
    size_t blen;
    bool sent = false;

    /* the tick runs every 250 ms: allocate nothing unless something is due */
    for (i = 0; i < a->nents; i++)
        if (!a->ents[i].inflight && a->ents[i].renew_at <= now)
            break;
    if (i == a->nents)
        return false;
    if ((bt = calloc(1, sizeof *bt)) == NULL || (bt->ids = calloc(max, sizeof *bt->ids)) == NULL ||
        (bt->keys = calloc(max, sizeof *bt->keys)) == NULL ||
        (params = calloc(max, sizeof *params)) == NULL || (pp = calloc(max, sizeof *pp)) == NULL ||
        (csrs = calloc(max, sizeof *csrs)) == NULL)
        goto out;
    bt->a = a;
    bt->gen = a->gen;
    for (i = 0; i < a->nents && n < max; i++) {
        struct ent *e = &a->ents[i];

        if (e->inflight || e->renew_at > now)
            continue;
        if ((bt->ids[n] = strdup(e->id)) == NULL || sigil_x509_key_generate(&bt->keys[n]) != 0 ||
            sigil_x509_csr_create(bt->keys[n], &e->sid, &csrs[n]) != 0) {
            free(bt->ids[n]);
            bt->ids[n] = NULL;
            EVP_PKEY_free(bt->keys[n]);
            bt->keys[n] = NULL;
            sigil_buf_free(&csrs[n]);
            break;
        }
        sigil__node__v1__x509_svidparams__init(&params[n]);
        params[n].entry_id = bt->ids[n];
        params[n].csr.data = csrs[n].data;
        params[n].csr.len = csrs[n].len;
        pp[n] = &params[n];
        e->inflight = true;
        n++;
    }
    bt->n = n;
    if (n == 0)
        goto out;
    req.n_params = n;
    req.params = pp;
    blen = sigil__node__v1__batch_sign_x509_svidrequest__get_packed_size(&req);
    if ((buf = malloc(blen ? blen : 1)) == NULL)
        goto out;
    sigil__node__v1__batch_sign_x509_svidrequest__pack(&req, buf);
    if (sigil_rpc_client_unary(a->cli, NODE "BatchSignX509SVID", NULL, 0, buf, blen,
                               (uint64_t)a->cfg.rpc_timeout_ms, batch_done, bt) != 0)
        goto out;
    sigil_log(SIGIL_LOG_DEBUG, COMP, "sent %zu CSRs", n);
    a->batches_inflight++;
    bt = NULL;
    sent = true;
out:
    /* entries marked in flight for a batch that never left are retried later */
    for (i = 0; !sent && bt != NULL && i < bt->n; i++) {
        struct ent *e = ent_get(a, bt->ids[i]);

        if (e != NULL) {
            e->inflight = false;
            e->renew_at = now + SIGN_RETRY_S;
        }
    }
    if (csrs != NULL)
        for (i = 0; i < max; i++)
            sigil_buf_free(&csrs[i]);
    free(csrs);
    free(pp);
    free(params);
    free(buf);
    if (bt != NULL)
        batch_free(bt);
    return sent;
}

/* ---- renewing the agent SVID ---- */

static void
reconnect(struct agent *a, int code, const char *message)
{
    (void)code, (void)message;
    if (a->phase == PH_CONNECTED)
        connect_node(a);
}

struct renew {
    struct agent *a;
    unsigned gen;
    EVP_PKEY *key;
};

static void
renew_done(void *ud, int code, const char *message, const uint8_t *resp, size_t len)
{
    struct renew *rn = ud;
    struct agent *a = rn->a;
    Sigil__Node__V1__RenewAgentResponse *r = NULL;
    STACK_OF(X509) *chain = NULL, *rest = NULL;
    struct sigil_spiffeid id;
    const char *why = "malformed RenewAgentResponse", *twhy = NULL;
    bool ok = false;

    if (rn->gen != a->gen) {
        ok = true; /* a connection since torn down: nothing to say */
        goto out;
    }
    a->renewing = false;
    if (code != SIGIL_RPC_OK) {
        why = message;
        if (is_about_agent(code, message))
            later(a, node_failed, code, message);
        goto out;
    }
    if ((r = sigil__node__v1__renew_agent_response__unpack(NULL, len, resp)) == NULL ||
        sigil_x509_chain_parse_der(r->svid_chain.data, r->svid_chain.len, &chain, &why) != 0 ||
        sigil_x509_svid_verify(chain, a->roots, 0, NULL, &why) != 0 ||
        sigil_x509_cert_spiffeid(sk_X509_value(chain, 0), &id, &why) != 0)
        goto out;
    if (!sigil_spiffeid_equal(&id, &a->id)) {
        why = "the renewed SVID carries another SPIFFE ID";
        goto out;
    }
    why = "cannot keep the renewed SVID";
    if (identity_set(a, chain, rn->key, &why) != 0 ||
        sigil_svidstore_save_agent(a->cfg.data_dir, a->chain, a->key, &why) != 0)
        goto out;
    ok = true;
    /* handshakes from now on present the new SVID */
    if ((rest = sk_X509_dup(a->chain)) != NULL)
        (void)sk_X509_shift(rest);
    if (rest == NULL ||
        sigil_tls_ctx_set_identity(a->tls, sk_X509_value(a->chain, 0), rest, a->key, &twhy) != 0)
        sigil_log_kv(SIGIL_LOG_WARN, COMP, "cannot present the renewed SVID", "reason",
                     twhy != NULL ? twhy : "out of memory", NULL);
    sigil_log_kv(SIGIL_LOG_INFO, COMP, "agent SVID renewed", "spiffe_id", a->id.str, NULL);
    /* the open connection still presents the old SVID, which the server accepts only until
     * the next renewal: reconnect (the streams resume; SVIDs held stay) */
    later(a, reconnect, SIGIL_RPC_OK, "");
out:
    if (!ok) {
        sigil_log_kv(SIGIL_LOG_WARN, COMP, "agent SVID renewal failed", "status",
                     sigil_rpc_code_name(code), "reason", why != NULL ? why : "", NULL);
        a->renew_at = time(NULL) + SIGN_RETRY_S;
    }
    sk_X509_free(rest);
    sk_X509_pop_free(chain, X509_free);
    sigil__node__v1__renew_agent_response__free_unpacked(r, NULL);
    EVP_PKEY_free(rn->key);
    free(rn);
}

static void
renew_agent(struct agent *a)
{
    Sigil__Node__V1__RenewAgentRequest req = SIGIL__NODE__V1__RENEW_AGENT_REQUEST__INIT;
    struct sigil_buf csr = {0};
    struct renew *rn;
    uint8_t *buf = NULL;
    size_t n;

    if ((rn = calloc(1, sizeof *rn)) == NULL)
        goto out;
    rn->a = a;
    rn->gen = a->gen;
    if (sigil_x509_key_generate(&rn->key) != 0 || sigil_x509_csr_create(rn->key, &a->id, &csr) != 0)
        goto out;
    req.csr.data = csr.data;
    req.csr.len = csr.len;
    n = sigil__node__v1__renew_agent_request__get_packed_size(&req);
    if ((buf = malloc(n ? n : 1)) == NULL)
        goto out;
    sigil__node__v1__renew_agent_request__pack(&req, buf);
    if (sigil_rpc_client_unary(a->cli, NODE "RenewAgent", NULL, 0, buf, n,
                               (uint64_t)a->cfg.rpc_timeout_ms, renew_done, rn) != 0)
        goto out;
    a->renewing = true;
    rn = NULL;
out:
    if (rn != NULL || !a->renewing) {
        a->renew_at = time(NULL) + SIGN_RETRY_S;
        if (rn != NULL)
            EVP_PKEY_free(rn->key);
        free(rn);
    }
    free(buf);
    sigil_buf_free(&csr);
}

/* ---- JWT-SVIDs through the server ---- */

struct jwtreq {
    struct agent *a;
    unsigned gen;
    char *entry_id;
    char *aud;
    sigil_cache_jwt_done_fn done;
    void *ud;
};

static void
jwt_cached_free(struct jwt_cached *j)
{
    if (j == NULL)
        return;
    OPENSSL_cleanse(j->token, strlen(j->token));
    free(j->token);
    free(j->entry_id);
    free(j->aud);
    free(j);
}

/* Drops cached JWT-SVIDs past half their life. */
static void
jwt_prune(struct agent *a, time_t now)
{
    struct jwt_cached **pp = &a->jwts;

    while (*pp != NULL) {
        struct jwt_cached *j = *pp;

        if (now >= j->refresh_at) {
            *pp = j->next;
            jwt_cached_free(j);
            a->njwts--;
        } else {
            pp = &j->next;
        }
    }
}

static void
jwt_done(void *ud, int code, const char *message, const uint8_t *resp, size_t len)
{
    struct jwtreq *jr = ud;
    struct agent *a = jr->a;
    Sigil__Node__V1__SignJWTSVIDResponse *r = NULL;
    struct jwt_cached *j;
    time_t now = time(NULL);

    if (code != SIGIL_RPC_OK) {
        jr->done(jr->ud, SIGIL_ERR_IO, NULL,
                 code == SIGIL_RPC_UNAVAILABLE ? "the server is unreachable"
                                               : "the server refused the JWT-SVID");
        if (jr->gen == a->gen && is_about_agent(code, message))
            later(a, node_failed, code, message);
        goto out;
    }
    if ((r = sigil__node__v1__sign_jwtsvidresponse__unpack(NULL, len, resp)) == NULL ||
        r->token[0] == '\0') {
        jr->done(jr->ud, SIGIL_ERR_PROTOCOL, NULL, "malformed SignJWTSVIDResponse");
        goto out;
    }
    if (r->expires_at > now && jr->gen == a->gen && a->njwts < JWT_CACHE_MAX &&
        (j = calloc(1, sizeof *j)) != NULL) {
        j->entry_id = strdup(jr->entry_id);
        j->aud = strdup(jr->aud);
        j->token = strdup(r->token);
        j->expires_at = r->expires_at;
        j->refresh_at = now + (r->expires_at - now) / 2;
        if (j->entry_id == NULL || j->aud == NULL || j->token == NULL) {
            free(j->entry_id), free(j->aud), free(j->token), free(j);
        } else {
            j->next = a->jwts;
            a->jwts = j;
            a->njwts++;
        }
    }
    jr->done(jr->ud, 0, r->token, NULL);
    OPENSSL_cleanse(r->token, strlen(r->token));
out:
    sigil__node__v1__sign_jwtsvidresponse__free_unpacked(r, NULL);
    free(jr->entry_id);
    free(jr->aud);
    free(jr);
}

/* The cache's minting hook: a cached token while it is in its first half-life, else the
 * server's SignJWTSVID for the first entry (by id) that has this SPIFFE ID. */
static int
jwt_mint(void *arg, const struct sigil_spiffeid *id, const char *const *aud, size_t naud,
         sigil_cache_jwt_done_fn done, void *ud)
{
    struct agent *a = arg;
    Sigil__Node__V1__SignJWTSVIDRequest req = SIGIL__NODE__V1__SIGN_JWTSVIDREQUEST__INIT;
    struct sigil_buf key = {0};
    struct jwtreq *jr = NULL;
    const struct ent *e = NULL;
    struct jwt_cached *j;
    uint8_t *buf = NULL;
    size_t i, n;
    int r = SIGIL_ERR_NOMEM;

    for (i = 0; i < a->nents && e == NULL; i++)
        if (sigil_spiffeid_equal(&a->ents[i].sid, id))
            e = &a->ents[i];
    if (e == NULL)
        return SIGIL_ERR_NOTFOUND;
    for (i = 0; i < naud; i++)
        if (sigil_buf_append_str(&key, aud[i]) != 0 || sigil_buf_append(&key, "\n", 1) != 0)
            goto out;
    if (sigil_buf_append(&key, "", 1) != 0)
        goto out;
    jwt_prune(a, time(NULL));
    for (j = a->jwts; j != NULL; j = j->next)
        if (strcmp(j->entry_id, e->id) == 0 && strcmp(j->aud, (char *)key.data) == 0) {
            done(ud, 0, j->token, NULL);
            r = 0;
            goto out;
        }
    if (a->phase != PH_CONNECTED || a->cli == NULL) {
        r = SIGIL_ERR_STATE; /* no cached token and the server is away */
        goto out;
    }
    if ((jr = calloc(1, sizeof *jr)) == NULL || (jr->entry_id = strdup(e->id)) == NULL ||
        (jr->aud = strdup((char *)key.data)) == NULL)
        goto out;
    jr->a = a;
    jr->gen = a->gen;
    jr->done = done;
    jr->ud = ud;
    req.entry_id = jr->entry_id;
    req.n_audience = naud;
    req.audience = (char **)aud;
    n = sigil__node__v1__sign_jwtsvidrequest__get_packed_size(&req);
    if ((buf = malloc(n ? n : 1)) == NULL)
        goto out;
    sigil__node__v1__sign_jwtsvidrequest__pack(&req, buf);
    if ((r = sigil_rpc_client_unary(a->cli, NODE "SignJWTSVID", NULL, 0, buf, n,
                                    (uint64_t)a->cfg.rpc_timeout_ms, jwt_done, jr)) != 0)
        goto out;
    jr = NULL;
out:
    if (jr != NULL) {
        free(jr->entry_id);
        free(jr->aud);
        free(jr);
    }
    free(buf);
    sigil_buf_free(&key);
    return r;
}

/* ---- the connected phase ---- */

/* Opens a server-streaming call with one packed request. */
static int
open_stream(struct agent *a, const char *path, const uint8_t *req, size_t n,
            void (*on_message)(struct sigil_rpc_ccall *, void *, const uint8_t *, size_t),
            struct sigil_rpc_ccall **out)
{
    const struct sigil_rpc_ccall_cbs cbs = {.on_message = on_message, .on_end = stream_on_end};

    return sigil_rpc_client_server_stream(a->cli, path, NULL, 0, req, n, 0, &cbs, a, out);
}

/* Connects with the agent SVID: SyncEntries from the last revision, StreamBundles. */
static void
connect_node(struct agent *a)
{
    Sigil__Node__V1__SyncEntriesRequest sr = SIGIL__NODE__V1__SYNC_ENTRIES_REQUEST__INIT;
    Sigil__Node__V1__StreamBundlesRequest br = SIGIL__NODE__V1__STREAM_BUNDLES_REQUEST__INIT;
    uint8_t sbuf[32], bbuf[32];
    size_t sn, bn;
    const char *why = NULL;
    int r;

    teardown(a);
    if (!identity_valid(a)) {
        sigil_log(SIGIL_LOG_WARN, COMP, "the agent SVID expired; attesting again");
        start_attest(a);
        return;
    }
    if ((r = client_new(a, true, &why)) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMP, "cannot set up the node API client", "reason", why,
                     NULL);
        stop(a, 1);
        return;
    }
    sr.since_revision = a->revision;
    sr.page_size = (uint32_t)a->cfg.sync_page_size;
    sn = sigil__node__v1__sync_entries_request__pack(&sr, sbuf);
    br.known_sequence = 0;
    bn = sigil__node__v1__stream_bundles_request__pack(&br, bbuf);
    a->phase = PH_CONNECTED;
    if ((r = open_stream(a, NODE "SyncEntries", sbuf, sn, sync_on_message, &a->sync_call)) != 0 ||
        (r = open_stream(a, NODE "StreamBundles", bbuf, bn, bundles_on_message, &a->bundle_call)) !=
            0) {
        later(a, node_failed, SIGIL_RPC_INTERNAL, sigil_strerror(r));
        return;
    }
    sigil_log_kv(SIGIL_LOG_INFO, COMP, "connecting to the server", "server", a->cfg.server_address,
                 "spiffe_id", a->id.str, NULL);
    kick(a);
}

/* The periodic check: renew the agent SVID, sign entries that are due. */
static void
tick_cb(uv_timer_t *t)
{
    struct agent *a = t->data;
    time_t now = time(NULL);

    jwt_prune(a, now);
    if (a->phase != PH_CONNECTED || a->cli == NULL)
        return;
    if (!a->renewing && now >= a->renew_at)
        renew_agent(a);
    while (a->batches_inflight < MAX_BATCHES_INFLIGHT && batch_send(a, now))
        ;
}

/* Runs the periodic check at once (new entries, a batch done). */
static void
kick(struct agent *a)
{
    uv_timer_start(&a->tick, tick_cb, 0, TICK_MS);
}

static void
retry_cb(uv_timer_t *t)
{
    struct agent *a = t->data;

    if (a->phase != PH_IDLE)
        return;
    if (identity_valid(a))
        connect_node(a);
    else
        start_attest(a);
}

/* ---- start and stop ---- */

static void
wapi_closed(void *arg)
{
    struct agent *a = arg;

    a->wapi = NULL;
    if (a->cache != NULL)
        sigil_cache_free(a->cache);
    a->cache = NULL;
}

static void
stop(struct agent *a, int code)
{
    if (a->phase == PH_STOPPING)
        return;
    a->phase = PH_STOPPING;
    a->exit_code = code;
    teardown(a);
    uv_timer_stop(&a->tick);
    uv_timer_stop(&a->retry);
    uv_timer_stop(&a->later);
    uv_close((uv_handle_t *)&a->tick, NULL);
    uv_close((uv_handle_t *)&a->retry, NULL);
    uv_close((uv_handle_t *)&a->later, NULL);
    uv_close((uv_handle_t *)&a->sigint, NULL);
    uv_close((uv_handle_t *)&a->sigterm, NULL);
    if (a->cache != NULL)
        sigil_cache_set_jwt_minter(a->cache, NULL, NULL);
    if (a->wapi != NULL)
        sigil_wapi_shutdown(a->wapi, 1000, wapi_closed, a);
    else
        wapi_closed(a);
}

static void
signal_cb(uv_signal_t *s, int signum)
{
    struct agent *a = s->data;

    sigil_log(SIGIL_LOG_INFO, COMP, "signal %d: stopping", signum);
    stop(a, 0);
}

/* Loads our bundle: the one saved in data_dir, else the bootstrap trust_bundle_path. */
static int
load_bundle(struct agent *a)
{
    struct sigil_bundle *b = NULL;
    STACK_OF(X509) *certs = NULL;
    struct sigil_buf pem = {0};
    const char *why = NULL;
    int r;

    r = sigil_svidstore_load_bundle(a->cfg.data_dir, a->cfg.td, &b, &why);
    if (r == SIGIL_ERR_INVALID)
        sigil_log_kv(SIGIL_LOG_WARN, COMP, "saved bundle unusable", "reason", why, NULL);
    if (r != 0) {
        why = "no trust bundle: set trust_bundle_path (the server's root CA PEM)";
        if (a->cfg.trust_bundle_path == NULL) {
            r = SIGIL_ERR_NOTFOUND;
            goto out;
        }
        if ((r = sigil_x509_file_read(a->cfg.trust_bundle_path, &pem, &why)) != 0 ||
            (r = sigil_x509_chain_parse_pem(pem.data, pem.len, &certs, &why)) != 0 ||
            (r = sigil_bundle_new(a->cfg.td, &b, &why)) != 0)
            goto out;
        for (int i = 0; i < sk_X509_num(certs); i++)
            if ((r = sigil_bundle_x509_add(b, sk_X509_value(certs, i), &why)) != 0)
                goto out;
    }
    r = own_bundle_set(a, b, false, &why);
    b = NULL;
out:
    if (r != 0)
        sigil_log_kv(SIGIL_LOG_ERROR, COMP, "cannot load the trust bundle", "path",
                     a->cfg.trust_bundle_path, "reason", why, NULL);
    sigil_bundle_free(b);
    sk_X509_pop_free(certs, X509_free);
    sigil_buf_free(&pem);
    return r;
}

/* Loads the saved agent SVID if it is usable (else the agent attests), and whether our
 * attestation may be repeated. */
static void
load_identity(struct agent *a)
{
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    const char *why = NULL;
    char path[4200];
    int r;

    r = sigil_svidstore_load_agent(a->cfg.data_dir, &chain, &key, &why);
    if (r == 0 && (r = identity_set(a, chain, key, &why)) == 0 && !identity_valid(a))
        r = SIGIL_ERR_EXPIRED, why = "the saved agent SVID expired";
    if (r == 0)
        sigil_log_kv(SIGIL_LOG_INFO, COMP, "using the saved agent SVID (no attestation)",
                     "spiffe_id", a->id.str, NULL);
    else if (r != SIGIL_ERR_NOTFOUND)
        sigil_log_kv(SIGIL_LOG_WARN, COMP, "saved agent SVID unusable; attesting again", "reason",
                     why != NULL ? why : sigil_strerror(r), NULL);
    if (r != 0) {
        sk_X509_pop_free(a->chain, X509_free);
        EVP_PKEY_free(a->key);
        a->chain = NULL;
        a->key = NULL;
    }
    snprintf(path, sizeof path, "%s/%s", a->cfg.data_dir, REATTESTABLE_FILE);
    a->reattestable = access(path, F_OK) == 0;
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
}

static const char usage[] =
    "usage: sigil-agent run --config FILE [--join-token TOKEN]\n"
    "       sigil-agent run --check-config --config FILE\n"
    "       sigil-agent run --print-config-doc\n"
    "\n"
    "Attests this node to sigil-server (unless data_dir holds a valid agent SVID), syncs the\n"
    "entries it may issue and serves the SPIFFE Workload API.\n"
    "  --config FILE        the configuration (see --print-config-doc)\n"
    "  --join-token TOKEN   join token for node attestation (overrides join_token)\n"
    "  --check-config       load and validate the configuration, print \"ok\" and exit\n"
    "  --print-config-doc   print the commented example configuration and exit\n"
    "Exit codes: 0 stopped by SIGINT/SIGTERM, 1 startup failure, 2 usage error,\n"
    "3 the server refused this agent (banned) or its attestation: the reason is logged and\n"
    "  nothing more is served (SVIDs workloads already hold stay valid until they expire).\n";

/* Frees what the agent holds once its loop is done. NULL is ignored. */
static void
agent_free(struct agent *a)
{
    if (a == NULL)
        return;
    if (a->na != NULL)
        a->na->free_state(a->na_state);
    attest_state_free(a);
    while (a->jwts != NULL) {
        struct jwt_cached *j = a->jwts;

        a->jwts = j->next;
        jwt_cached_free(j);
    }
    for (size_t i = 0; i < a->nents; i++)
        free(a->ents[i].id);
    free(a->ents);
    sk_X509_pop_free(a->chain, X509_free);
    sk_X509_pop_free(a->roots, X509_free);
    EVP_PKEY_free(a->key);
    sigil_agent_config_free(&a->cfg);
    free(a);
}

int
sigil_agent_run_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"join-token", required_argument, NULL, 'j'},
        {"print-config-doc", no_argument, NULL, 'P'},
        {"check-config", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct sigil_config_error err;
    struct sigil_wapi_opts wo = {0};
    bool check_only = false;
    struct agent *a = NULL;
    const char *config = NULL, *why = NULL;
    char *token = NULL;
    uv_loop_t loop;
    bool loop_ok = false;
    int c, rc = 1;

    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case 'j':
            free(token);
            if ((token = strdup(optarg)) == NULL)
                return 1;
            /* keep the token out of /proc/<pid>/cmdline */
            OPENSSL_cleanse(optarg, strlen(optarg));
            break;
        case 'P':
            return sigil_agent_config_print_doc(stdout) == 0 ? 0 : 1;
        case 'C':
            check_only = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fprintf(stderr, "sigil-agent run: unknown or incomplete option \"%s\"\n\n%s",
                    argv[optind - 1], usage);
            return 2;
        }
    }
    if (config == NULL || optind != argc) {
        fprintf(stderr, "sigil-agent run: %s\n\n%s",
                config == NULL ? "--config FILE is required" : "unexpected argument", usage);
        rc = 2;
        goto out;
    }
    if (sodium_init() < 0 || (a = calloc(1, sizeof *a)) == NULL)
        goto out;
    if (sigil_agent_config_load(config, &a->cfg, &err) != 0) {
        fprintf(stderr, "sigil-agent run: %s\n", err.text);
        goto out;
    }
    if (check_only) {
        printf("ok: %s\n", config);
        rc = 0;
        goto out;
    }
    a->join_token = token != NULL ? token : a->cfg.join_token;
    sigil_log_set_level((enum sigil_log_level)a->cfg.log_level);
    sigil_log_set_format((enum sigil_log_format)a->cfg.log_format);
    if (sigil_svidstore_prepare(a->cfg.data_dir, &why) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMP, "data_dir unusable", "path", a->cfg.data_dir, "reason",
                     why, NULL);
        goto out;
    }
    if (uv_loop_init(&loop) != 0)
        goto out;
    loop_ok = true;
    a->loop = &loop;
    if (sigil_cache_new(&loop, a->cfg.td, &a->cache, &why) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMP, "cannot create the cache", "reason", why, NULL);
        goto out;
    }
    if (load_bundle(a) != 0)
        goto out;
    load_identity(a);
    sigil_cache_set_jwt_minter(a->cache, jwt_mint, a);
    wo.socket_path = a->cfg.wapi_socket_path;
    wo.mode = a->cfg.wapi_socket_mode;
    wo.attest.no_systemd = a->cfg.no_systemd;
    if (sigil_wapi_start(&loop, a->cache, &wo, &a->wapi, &why) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMP, "cannot serve the Workload API", "socket",
                     a->cfg.wapi_socket_path, "reason", why, NULL);
        goto out;
    }
    sigil_log_kv(SIGIL_LOG_INFO, COMP, "serving the Workload API", "socket",
                 a->cfg.wapi_socket_path, NULL);
    uv_timer_init(&loop, &a->tick);
    uv_timer_init(&loop, &a->retry);
    uv_timer_init(&loop, &a->later);
    uv_signal_init(&loop, &a->sigint);
    uv_signal_init(&loop, &a->sigterm);
    a->tick.data = a->retry.data = a->later.data = a->sigint.data = a->sigterm.data = a;
    uv_signal_start(&a->sigint, signal_cb, SIGINT);
    uv_signal_start(&a->sigterm, signal_cb, SIGTERM);
    uv_timer_start(&a->tick, tick_cb, TICK_MS, TICK_MS);
    a->phase = PH_IDLE;
    if (a->chain != NULL)
        connect_node(a);
    else
        start_attest(a);
    uv_run(&loop, UV_RUN_DEFAULT);
    rc = a->exit_code;
out:
    if (loop_ok) {
        if (a->cache != NULL) { /* a startup failure: the cache's timer still needs closing */
            sigil_cache_free(a->cache);
            a->cache = NULL;
            uv_run(&loop, UV_RUN_DEFAULT);
        }
        (void)uv_loop_close(&loop);
    }
    agent_free(a);
    if (token != NULL) {
        OPENSSL_cleanse(token, strlen(token));
        free(token);
    }
    return rc;
}
