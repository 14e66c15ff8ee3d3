/* sigil-agent run against an in-process fake node API server (sigil/rpc.h over TLS 1.3,
 * on its own thread): attestation with a single-use join token, the workload SVID reaching
 * `api fetch x509`, a JWT-SVID minted once and then cached, rotation at half life, a restart
 * that does not attest again, serving from the cache while the server is down (with the
 * retry log line), catching up from the last revision when it returns, dropping the entries a
 * full resync no longer holds (a server that cannot answer from that revision), and the ban ending
 * the agent with exit status 3. The agent and the CLI run as this binary re-executed
 * ("run ..." / "cli ..."), so no file descriptor of the fake server leaks into them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "agent.h"
#include "cli.h"
#include "node.pb-c.h"
#include "nodeattest.h"
#include "sigil/bundle.h"
#include "sigil/err.h"
#include "sigil/jwtsvid.h"
#include "sigil/rpc.h"
#include "sigil/tls.h"
#include "sigil/x509.h"

extern char **environ;

#define TD "example.org"
#define AGENT_ID "spiffe://example.org/sigil/agent/join_token/t1"
#define TOKEN "join-token-for-test"
#define X509_TTL 6
#define AGENT_TTL 8 /* renewed at about 4 s */

enum cmd { CMD_NONE, CMD_STOP, CMD_START, CMD_ADD_ENTRY, CMD_BAN, CMD_EVICT, CMD_QUIT };

/* The fake server: everything below runs on its loop, except the atomics and cmd. */
static struct {
    uv_loop_t loop;
    uv_timer_t timer;
    pthread_t thread;
    pthread_mutex_t mu;
    enum cmd cmd;
    struct sigil_rpc_server *srv;
    struct sigil_tls_ctx *tls;
    int port;
    X509 *root, *server_cert;
    EVP_PKEY *root_key, *server_key, *jwt_key;
    char *bundle_json;
    size_t bundle_len;
    bool two_entries, banned, token_used, evicted;
    bool lost_e2; /* e2 went while the agent was away and the server cannot say so: full state */
    /* x509pop: the challenge in flight */
    uint8_t nonce[32];
    struct sigil_buf pop_csr;
    EVP_PKEY *pop_pub;
    struct sigil_rpc_call *sync_call, *bundle_call;
    atomic_int attests, signs, jwts, renews, syncs;
    atomic_ullong last_since;
    atomic_ullong first_since; /* the first sync's since_revision after a CMD_START */
    atomic_bool since_armed;   /* set before CMD_START: the next sync call records it */
    atomic_bool running;
} fk;

static char dir[64], cfg_path[128], sock_path[128], log_path[128];

/* ---- the fake node API ---- */

static int
mint_from_csr(const uint8_t *der, size_t len, const char *id_str, int ttl, struct sigil_buf *out)
{
    struct sigil_spiffeid id;
    struct sigil_x509_leaf_params lp = {.id = &id};
    X509_REQ *req = NULL;
    X509 *leaf = NULL;
    const char *why = NULL;
    int r;

    if ((r = sigil_spiffeid_parse(id_str, strlen(id_str), &id, &why)) != 0 ||
        (r = sigil_x509_csr_parse(der, len, &req, &why)) != 0)
        return r;
    lp.not_before = time(NULL) - 1;
    lp.not_after = time(NULL) + ttl;
    if ((r = sigil_x509_mint_leaf_csr(&lp, req, fk.root, fk.root_key, &leaf, &why)) == 0)
        r = sigil_x509_cert_to_der(leaf, out);
    X509_free(leaf);
    X509_REQ_free(req);
    return r;
}

/* Packs any protobuf-c message, sends it on call. */
static void
send_msg(struct sigil_rpc_call *call, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);

    protobuf_c_message_pack(m, buf);
    (void)sigil_rpc_call_send(call, buf, n);
    free(buf);
}

/* Sends the AttestResult for the CSR. */
static void
attest_ok(struct sigil_rpc_call *call, const uint8_t *csr, size_t csr_len, bool reattestable)
{
    Sigil__Node__V1__AttestResponse resp = SIGIL__NODE__V1__ATTEST_RESPONSE__INIT;
    Sigil__Node__V1__AttestResult res = SIGIL__NODE__V1__ATTEST_RESULT__INIT;
    struct sigil_buf chain = {0};

    if (mint_from_csr(csr, csr_len, AGENT_ID, AGENT_TTL, &chain) != 0) {
        sigil_rpc_call_finish(call, SIGIL_RPC_INVALID_ARGUMENT, "bad csr", NULL, 0);
        return;
    }
    fk.attests++;
    fk.evicted = false;
    res.spiffe_id = AGENT_ID;
    res.svid_chain.data = chain.data;
    res.svid_chain.len = chain.len;
    res.bundle.data = (uint8_t *)fk.bundle_json;
    res.bundle.len = fk.bundle_len;
    res.reattestable = reattestable;
    resp.step_case = SIGIL__NODE__V1__ATTEST_RESPONSE__STEP_RESULT;
    resp.result = &res;
    send_msg(call, &resp.base);
    sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
    sigil_buf_free(&chain);
}

/* x509pop: params -> a nonce challenge; the response must sign it (checked with the leaf's
 * public key over the message the agent's attestor builds, verified independently in
 * agent_nodeattest_test). */
static void
pop_step(struct sigil_rpc_call *call, const Sigil__Node__V1__AttestRequest *req)
{
    Sigil__Node__V1__AttestResponse resp = SIGIL__NODE__V1__ATTEST_RESPONSE__INIT;
    struct sigil_buf msg = {0};
    STACK_OF(X509) *chain = NULL;
    EVP_MD_CTX *md = NULL;
    const char *why = NULL;

    if (req->step_case == SIGIL__NODE__V1__ATTEST_REQUEST__STEP_PARAMS) {
        if (sigil_x509_chain_parse_der(req->params->payload.data, req->params->payload.len, &chain,
                                       &why) != 0 ||
            X509_verify(sk_X509_value(chain, 0), fk.root_key) != 1) {
            sigil_rpc_call_finish(call, SIGIL_RPC_PERMISSION_DENIED, "bad node certificate", NULL,
                                  0);
            goto out;
        }
        EVP_PKEY_free(fk.pop_pub);
        fk.pop_pub = X509_get_pubkey(sk_X509_value(chain, 0));
        sigil_buf_free(&fk.pop_csr);
        assert_int_equal(sigil_buf_append(&fk.pop_csr, req->params->csr.data, req->params->csr.len),
                         0);
        for (size_t i = 0; i < sizeof fk.nonce; i++)
            fk.nonce[i] = (uint8_t)rand();
        resp.step_case = SIGIL__NODE__V1__ATTEST_RESPONSE__STEP_CHALLENGE;
        resp.challenge.data = fk.nonce;
        resp.challenge.len = sizeof fk.nonce;
        send_msg(call, &resp.base);
        goto out;
    }
    assert_int_equal(
        sigil_x509pop_message(fk.nonce, sizeof fk.nonce, fk.pop_csr.data, fk.pop_csr.len, &msg), 0);
    md = EVP_MD_CTX_new();
    if (fk.pop_pub == NULL || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, fk.pop_pub) != 1 ||
        EVP_DigestVerify(md, req->challenge_response.data, req->challenge_response.len, msg.data,
                         msg.len) != 1) {
        sigil_rpc_call_finish(call, SIGIL_RPC_PERMISSION_DENIED, "bad proof", NULL, 0);
        goto out;
    }
    attest_ok(call, fk.pop_csr.data, fk.pop_csr.len, true);
out:
    EVP_MD_CTX_free(md);
    sigil_buf_free(&msg);
    sk_X509_pop_free(chain, X509_free);
}

static void
attest_msg(struct sigil_rpc_call *call, void *ud, const uint8_t *msg, size_t len)
{
    Sigil__Node__V1__AttestRequest *req = sigil__node__v1__attest_request__unpack(NULL, len, msg);
    Sigil__Node__V1__AttestResponse resp = SIGIL__NODE__V1__ATTEST_RESPONSE__INIT;
    Sigil__Node__V1__AttestResult res = SIGIL__NODE__V1__ATTEST_RESULT__INIT;
    struct sigil_buf chain = {0};

    (void)ud;
    if (req != NULL &&
        (req->step_case == SIGIL__NODE__V1__ATTEST_REQUEST__STEP_CHALLENGE_RESPONSE ||
         strcmp(req->params->attestation_type, "x509pop") == 0)) {
        pop_step(call, req);
        goto out;
    }
    if (req == NULL || req->step_case != SIGIL__NODE__V1__ATTEST_REQUEST__STEP_PARAMS ||
        strcmp(req->params->attestation_type, "join_token") != 0 ||
        req->params->payload.len != strlen(TOKEN) ||
        memcmp(req->params->payload.data, TOKEN, strlen(TOKEN)) != 0) {
        sigil_rpc_call_finish(call, SIGIL_RPC_INVALID_ARGUMENT, "bad params", NULL, 0);
        goto out;
    }
    if (fk.token_used) {
        sigil_rpc_call_finish(call, SIGIL_RPC_PERMISSION_DENIED, "join token already used", NULL,
                              0);
        goto out;
    }
    fk.token_used = true;
    fk.attests++;
    if (mint_from_csr(req->params->csr.data, req->params->csr.len, AGENT_ID, AGENT_TTL, &chain) !=
        0) {
        sigil_rpc_call_finish(call, SIGIL_RPC_INVALID_ARGUMENT, "bad csr", NULL, 0);
        goto out;
    }
    res.spiffe_id = AGENT_ID;
    res.svid_chain.data = chain.data;
    res.svid_chain.len = chain.len;
    res.bundle.data = (uint8_t *)fk.bundle_json;
    res.bundle.len = fk.bundle_len;
    resp.step_case = SIGIL__NODE__V1__ATTEST_RESPONSE__STEP_RESULT;
    resp.result = &res;
    send_msg(call, &resp.base);
    sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
out:
    sigil_buf_free(&chain);
    sigil__node__v1__attest_request__free_unpacked(req, NULL);
}

static void
h_attest(struct sigil_rpc_call *call, void *arg)
{
    const struct sigil_rpc_call_cbs cbs = {.on_message = attest_msg};

    (void)arg;
    sigil_rpc_call_set_cbs(call, &cbs, NULL);
}

/* mTLS calls: the agent's SVID, not banned. Finishes the call and returns false otherwise. */
static bool
agent_ok(struct sigil_rpc_call *call)
{
    const struct sigil_rpc_peer *p = sigil_rpc_call_peer(call);
    struct sigil_spiffeid id;
    const char *why = NULL;

    if (p == NULL || p->chain == NULL ||
        sigil_x509_cert_spiffeid(sk_X509_value(p->chain, 0), &id, &why) != 0 ||
        strcmp(id.str, AGENT_ID) != 0) {
        sigil_rpc_call_finish(call, SIGIL_RPC_UNAUTHENTICATED, "no agent SVID", NULL, 0);
        return false;
    }
    if (fk.banned) {
        sigil_rpc_call_finish(call, SIGIL_RPC_PERMISSION_DENIED, "agent is banned", NULL, 0);
        return false;
    }
    if (fk.evicted) {
        sigil_rpc_call_finish(call, SIGIL_RPC_UNAUTHENTICATED, "unknown agent (evicted)", NULL, 0);
        return false;
    }
    return true;
}

static void
send_entries(struct sigil_rpc_call *call)
{
    char sel[64];
    char *sels[] = {sel};
    Sigil__Node__V1__Entry e1 = SIGIL__NODE__V1__ENTRY__INIT, e2 = SIGIL__NODE__V1__ENTRY__INIT;
    Sigil__Node__V1__Entry *ents[] = {&e1, &e2};
    Sigil__Node__V1__SyncEntriesResponse r = SIGIL__NODE__V1__SYNC_ENTRIES_RESPONSE__INIT;

    snprintf(sel, sizeof sel, "unix:uid:%u", (unsigned)getuid());
    e1.id = "e1";
    e1.spiffe_id = "spiffe://example.org/workload/w1";
    e1.parent_id = AGENT_ID;
    e1.n_selectors = 1;
    e1.selectors = sels;
    e2 = e1;
    e2.id = "e2";
    e2.spiffe_id = "spiffe://example.org/workload/w2";
    r.entries = ents;
    r.n_entries = fk.two_entries && !fk.lost_e2 ? 2 : 1;
    r.revision = fk.lost_e2 ? 3 : fk.two_entries ? 2 : 1;
    r.full = true;
    r.last = true;
    send_msg(call, &r.base);
}

static void
sync_cancel(struct sigil_rpc_call *call, void *ud)
{
    (void)ud;
    if (call == fk.sync_call)
        fk.sync_call = NULL;
    if (call == fk.bundle_call)
        fk.bundle_call = NULL;
}

static void
h_sync(struct sigil_rpc_call *call, void *arg)
{
    const struct sigil_rpc_call_cbs cbs = {.on_cancel = sync_cancel};
    Sigil__Node__V1__SyncEntriesRequest *req;
    const uint8_t *p;
    size_t n;

    (void)arg;
    if (!agent_ok(call))
        return;
    p = sigil_rpc_call_request(call, &n);
    if ((req = sigil__node__v1__sync_entries_request__unpack(NULL, n, p)) != NULL) {
        fk.last_since = req->since_revision;
        if (atomic_exchange(&fk.since_armed, false))
            fk.first_since = req->since_revision;
        sigil__node__v1__sync_entries_request__free_unpacked(req, NULL);
    }
    fk.syncs++;
    sigil_rpc_call_set_cbs(call, &cbs, NULL);
    fk.sync_call = call;
    send_entries(call);
}

static void
h_bundles(struct sigil_rpc_call *call, void *arg)
{
    const struct sigil_rpc_call_cbs cbs = {.on_cancel = sync_cancel};
    Sigil__Node__V1__BundlesUpdate up = SIGIL__NODE__V1__BUNDLES_UPDATE__INIT;

    (void)arg;
    if (!agent_ok(call))
        return;
    sigil_rpc_call_set_cbs(call, &cbs, NULL);
    fk.bundle_call = call;
    up.bundle.data = (uint8_t *)fk.bundle_json;
    up.bundle.len = fk.bundle_len;
    send_msg(call, &up.base);
}

static void
h_sign(struct sigil_rpc_call *call, void *arg)
{
    Sigil__Node__V1__BatchSignX509SVIDRequest *req;
    Sigil__Node__V1__BatchSignX509SVIDResponse resp =
        SIGIL__NODE__V1__BATCH_SIGN_X509_SVIDRESPONSE__INIT;
    Sigil__Node__V1__SignedX509SVID out[8], *pout[8];
    struct sigil_buf chains[8] = {{0}};
    const uint8_t *p;
    size_t n, i;

    (void)arg;
    if (!agent_ok(call))
        return;
    p = sigil_rpc_call_request(call, &n);
    if ((req = sigil__node__v1__batch_sign_x509_svidrequest__unpack(NULL, n, p)) == NULL ||
        req->n_params > 8) {
        sigil_rpc_call_finish(call, SIGIL_RPC_INVALID_ARGUMENT, "bad batch", NULL, 0);
        sigil__node__v1__batch_sign_x509_svidrequest__free_unpacked(req, NULL);
        return;
    }
    for (i = 0; i < req->n_params; i++) {
        const char *id = strcmp(req->params[i]->entry_id, "e1") == 0
                             ? "spiffe://example.org/workload/w1"
                             : "spiffe://example.org/workload/w2";

        sigil__node__v1__signed_x509_svid__init(&out[i]);
        out[i].entry_id = req->params[i]->entry_id;
        if (mint_from_csr(req->params[i]->csr.data, req->params[i]->csr.len, id, X509_TTL,
                          &chains[i]) != 0)
            out[i].error = "bad csr";
        out[i].svid_chain.data = chains[i].data;
        out[i].svid_chain.len = chains[i].len;
        out[i].expires_at = time(NULL) + X509_TTL;
        pout[i] = &out[i];
        fk.signs++;
    }
    resp.n_svids = req->n_params;
    resp.svids = pout;
    send_msg(call, &resp.base);
    sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
    for (i = 0; i < req->n_params; i++)
        sigil_buf_free(&chains[i]);
    sigil__node__v1__batch_sign_x509_svidrequest__free_unpacked(req, NULL);
}

static void
h_jwt(struct sigil_rpc_call *call, void *arg)
{
    Sigil__Node__V1__SignJWTSVIDRequest *req;
    Sigil__Node__V1__SignJWTSVIDResponse resp = SIGIL__NODE__V1__SIGN_JWTSVIDRESPONSE__INIT;
    struct sigil_jwtsvid_params jp = {.key = fk.jwt_key, .kid = "k1"};
    char *token = NULL;
    const char *why = NULL;
    const uint8_t *p;
    size_t n;

    (void)arg;
    if (!agent_ok(call))
        return;
    p = sigil_rpc_call_request(call, &n);
    req = sigil__node__v1__sign_jwtsvidrequest__unpack(NULL, n, p);
    jp.sub = "spiffe://example.org/workload/w1";
    jp.aud = (const char *const *)req->audience;
    jp.naud = req->n_audience;
    jp.iat = time(NULL);
    jp.exp = jp.iat + 300;
    if (req->n_audience == 1 && strcmp(req->audience[0], "deny") == 0) {
        /* what the server says for a request (not the agent) it refuses */
        sigil_rpc_call_finish(call, SIGIL_RPC_PERMISSION_DENIED,
                              "entry is not authorized for this agent", NULL, 0);
    } else if (strcmp(req->entry_id, "e1") != 0 || sigil_jwtsvid_sign(&jp, &token, &why) != 0) {
        sigil_rpc_call_finish(call, SIGIL_RPC_INVALID_ARGUMENT, "cannot sign", NULL, 0);
    } else {
        fk.jwts++;
        resp.token = token;
        resp.expires_at = jp.exp;
        send_msg(call, &resp.base);
        sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
    }
    sigil_jwtsvid_token_free(token);
    sigil__node__v1__sign_jwtsvidrequest__free_unpacked(req, NULL);
}

static void
h_renew(struct sigil_rpc_call *call, void *arg)
{
    Sigil__Node__V1__RenewAgentRequest *req;
    Sigil__Node__V1__RenewAgentResponse resp = SIGIL__NODE__V1__RENEW_AGENT_RESPONSE__INIT;
    struct sigil_buf chain = {0};
    const uint8_t *p;
    size_t n;

    (void)arg;
    if (!agent_ok(call))
        return;
    p = sigil_rpc_call_request(call, &n);
    req = sigil__node__v1__renew_agent_request__unpack(NULL, n, p);
    if (req == NULL ||
        mint_from_csr(req->csr.data, req->csr.len, AGENT_ID, AGENT_TTL, &chain) != 0) {
        sigil_rpc_call_finish(call, SIGIL_RPC_INVALID_ARGUMENT, "bad csr", NULL, 0);
    } else {
        fk.renews++;
        resp.svid_chain.data = chain.data;
        resp.svid_chain.len = chain.len;
        send_msg(call, &resp.base);
        sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
    }
    sigil_buf_free(&chain);
    sigil__node__v1__renew_agent_request__free_unpacked(req, NULL);
}

static int
accept_any(void *arg, STACK_OF(X509) *chain, const char **why)
{
    (void)arg, (void)chain, (void)why;
    return 0; /* the handlers look at the chain; Attest has none */
}

static void
server_start(void)
{
    static const struct sigil_rpc_method methods[] = {
        {.path = "/sigil.node.v1.Node/Attest", .kind = SIGIL_RPC_BIDI, .handler = h_attest},
        {.path = "/sigil.node.v1.Node/SyncEntries",
         .kind = SIGIL_RPC_SERVER_STREAM,
         .handler = h_sync},
        {.path = "/sigil.node.v1.Node/StreamBundles",
         .kind = SIGIL_RPC_SERVER_STREAM,
         .handler = h_bundles},
        {.path = "/sigil.node.v1.Node/BatchSignX509SVID",
         .kind = SIGIL_RPC_UNARY,
         .handler = h_sign},
        {.path = "/sigil.node.v1.Node/SignJWTSVID", .kind = SIGIL_RPC_UNARY, .handler = h_jwt},
        {.path = "/sigil.node.v1.Node/RenewAgent", .kind = SIGIL_RPC_UNARY, .handler = h_renew},
    };
    const char *why = NULL;

    assert_int_equal(sigil_rpc_server_new(&fk.loop, NULL, &fk.srv), 0);
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        assert_int_equal(sigil_rpc_server_add(fk.srv, &methods[i]), 0);
    if (sigil_rpc_server_listen_tcp(fk.srv, "127.0.0.1", fk.port, fk.tls, 16, &why) != 0)
        fail_msg("listen: %s", why);
    fk.port = sigil_rpc_server_port(fk.srv);
    fk.running = true;
}

static void
server_stop(void)
{
    fk.sync_call = fk.bundle_call = NULL;
    sigil_rpc_server_shutdown(fk.srv, 0, NULL, NULL);
    fk.srv = NULL;
    fk.running = false;
}

static void
cmd_timer(uv_timer_t *t)
{
    enum cmd c;

    pthread_mutex_lock(&fk.mu);
    c = fk.cmd;
    fk.cmd = CMD_NONE;
    pthread_mutex_unlock(&fk.mu);
    switch (c) {
    case CMD_STOP:
        server_stop();
        break;
    case CMD_START:
        server_start();
        break;
    case CMD_ADD_ENTRY:
        fk.two_entries = true;
        if (fk.sync_call != NULL)
            send_entries(fk.sync_call);
        break;
    case CMD_BAN:
        fk.banned = true;
        if (fk.sync_call != NULL)
            sigil_rpc_call_finish(fk.sync_call, SIGIL_RPC_PERMISSION_DENIED, "agent is banned",
                                  NULL, 0);
        fk.sync_call = NULL;
        break;
    case CMD_EVICT:
        fk.evicted = true;
        if (fk.sync_call != NULL)
            sigil_rpc_call_finish(fk.sync_call, SIGIL_RPC_PERMISSION_DENIED, "agent evicted", NULL,
                                  0);
        fk.sync_call = NULL;
        break;
    case CMD_QUIT:
        if (fk.srv != NULL)
            server_stop();
        uv_close((uv_handle_t *)t, NULL);
        break;
    case CMD_NONE:
        break;
    }
}

static void *
server_thread(void *arg)
{
    (void)arg;
    uv_run(&fk.loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Hands a command to the server thread and waits until it was taken. */
static void
command(enum cmd c)
{
    pthread_mutex_lock(&fk.mu);
    fk.cmd = c;
    pthread_mutex_unlock(&fk.mu);
    for (int i = 0; i < 200; i++) {
        enum cmd now;

        pthread_mutex_lock(&fk.mu);
        now = fk.cmd;
        pthread_mutex_unlock(&fk.mu);
        if (now == CMD_NONE)
            break;
        usleep(10000);
    }
    usleep(50000);
}

/* ---- the test side ---- */

static const char *self_exe = "/proc/self/exe";

/* Starts this binary with args, stdout and stderr to out (appended); returns the pid. */
static pid_t
spawn(const char *const *args, const char *out)
{
    posix_spawn_file_actions_t fa;
    char exe[4096];
    ssize_t n = readlink(self_exe, exe, sizeof exe - 1);
    pid_t pid;

    assert_true(n > 0);
    exe[n] = '\0';
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    {
        char *argv[16];
        size_t i = 0;

        argv[i++] = exe;
        for (; *args != NULL && i < 15; args++)
            argv[i++] = (char *)*args;
        argv[i] = NULL;
        assert_int_equal(posix_spawn(&pid, exe, &fa, NULL, argv, environ), 0);
    }
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

/* Runs the CLI with args; returns its exit status, its output in out (if not NULL). */
static int
cli(const char *const *args, char *out, size_t cap)
{
    char path[160];
    pid_t pid;
    int st;
    FILE *f;

    snprintf(path, sizeof path, "%s/cli.out", dir);
    unlink(path);
    pid = spawn(args, path);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (out != NULL) {
        size_t n = 0;

        out[0] = '\0';
        if ((f = fopen(path, "r")) != NULL) {
            n = fread(out, 1, cap - 1, f);
            out[n] = '\0';
            fclose(f);
        }
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int
fetch(char *out, size_t cap)
{
    const char *args[] = {"cli",     "api",       "fetch", "x509", "--socket",
                          sock_path, "--timeout", "3",     NULL};

    return cli(args, out, cap);
}

static bool
log_has(const char *needle)
{
    static char buf[1 << 20];
    FILE *f = fopen(log_path, "r");
    size_t n;

    if (f == NULL)
        return false;
    n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return strstr(buf, needle) != NULL;
}

/* Waits up to secs for fetch output to contain needle. */
static bool
wait_fetch(const char *needle, int secs)
{
    static char out[1 << 16];

    for (int i = 0; i < secs * 5; i++) {
        if (fetch(out, sizeof out) == 0 && strstr(out, needle) != NULL)
            return true;
        usleep(200000);
    }
    fprintf(stderr, "last fetch output: %s\n", out);
    return false;
}

/* The "SVID valid until" line of a fetch, to tell rotations apart. */
static bool
svid_line(char *line, size_t cap)
{
    static char out[1 << 16];
    char *p, *e;

    if (fetch(out, sizeof out) != 0 || (p = strstr(out, "SVID valid until")) == NULL)
        return false;
    if ((e = strchr(p, '\n')) != NULL)
        *e = '\0';
    snprintf(line, cap, "%s", p);
    return true;
}

static pid_t
start_agent(void)
{
    const char *args[] = {"run", "--config", cfg_path, NULL};

    return spawn(args, log_path);
}

static int
stop_agent(pid_t pid)
{
    int st;

    kill(pid, SIGTERM);
    assert_int_equal(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void
setup_pki(void)
{
    struct sigil_x509_ca_params ca = {.trust_domain = TD, .path_len = -1};
    struct sigil_spiffeid sid;
    struct sigil_x509_leaf_params lp = {.id = &sid};
    struct sigil_tls_opts to = {.verify = accept_any};
    struct sigil_bundle *b = NULL;
    struct sigil_buf pem = {0};
    const char *why = NULL;
    STACK_OF(X509) *nochain = sk_X509_new_null();

    ca.subject.common_name = "agent run test root";
    ca.not_before = time(NULL) - 60;
    ca.not_after = time(NULL) + 7200;
    assert_int_equal(sigil_x509_key_generate(&fk.root_key), 0);
    assert_int_equal(sigil_x509_mint_root(&ca, fk.root_key, &fk.root, &why), 0);
    assert_int_equal(sigil_spiffeid_from_parts(TD, "/sigil/server", &sid, &why), 0);
    lp.not_before = ca.not_before;
    lp.not_after = ca.not_after;
    assert_int_equal(sigil_x509_key_generate(&fk.server_key), 0);
    assert_int_equal(
        sigil_x509_mint_leaf(&lp, fk.server_key, fk.root, fk.root_key, &fk.server_cert, &why), 0);
    to.cert = fk.server_cert;
    to.chain = nochain;
    to.key = fk.server_key;
    if (sigil_tls_ctx_new_server(&to, &fk.tls, &why) != 0)
        fail_msg("tls: %s", why);
    sk_X509_free(nochain);
    assert_int_equal(sigil_x509_key_generate(&fk.jwt_key), 0);
    assert_int_equal(sigil_bundle_new(TD, &b, &why), 0);
    assert_int_equal(sigil_bundle_x509_add(b, fk.root, &why), 0);
    assert_int_equal(sigil_bundle_jwt_add(b, "k1", fk.jwt_key, &why), 0);
    assert_int_equal(sigil_bundle_set_sequence(b, 1), 0);
    assert_int_equal(sigil_bundle_encode(b, &fk.bundle_json, &fk.bundle_len), 0);
    sigil_bundle_free(b);
    /* the bootstrap bundle the agent trusts for its first connection */
    assert_int_equal(sigil_x509_cert_to_pem(fk.root, &pem), 0);
    {
        char p[160];

        snprintf(p, sizeof p, "%s/bootstrap.pem", dir);
        write_file(p, pem.data, pem.len);
    }
    sigil_buf_free(&pem);
}

static void
write_config(const char *pop)
{
    char yaml[2048], evidence[512];
    int n;

    if (pop != NULL)
        snprintf(evidence, sizeof evidence,
                 "x509pop:\n  cert_path: %s/node.pem\n  key_path: %s/node.key\n", pop, pop);
    else
        snprintf(evidence, sizeof evidence, "join_token: %s\n", TOKEN);
    n = snprintf(yaml, sizeof yaml,
                 "trust_domain: %s\nserver_address: 127.0.0.1:%d\n"
                 "trust_bundle_path: %s/bootstrap.pem\ndata_dir: %s/data\n"
                 "%sworkload_api:\n  socket_path: %s\n"
                 "workload_attestors: [unix]\nlog:\n  level: debug\n"
                 "retry:\n  initial: 200ms\n  max: 1s\n",
                 TD, fk.port, dir, dir, evidence, sock_path);
    write_file(cfg_path, yaml, (size_t)n);
}

/* A temporary directory, the PKI, the fake server on its thread, the agent's config (x509pop
 * evidence when pop is set, else the join token). */
/* The x509pop node certificate (issued by the test root) and its key, in dir. */
static void
write_node_cert(void)
{
    struct sigil_spiffeid sid;
    struct sigil_x509_leaf_params lp = {.id = &sid};
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    struct sigil_buf pem = {0};
    const char *why = NULL;
    char p[160];

    assert_int_equal(sigil_spiffeid_from_parts(TD, "/node/n1", &sid, &why), 0);
    lp.not_before = time(NULL) - 60;
    lp.not_after = time(NULL) + 3600;
    assert_int_equal(sigil_x509_key_generate(&key), 0);
    assert_int_equal(sigil_x509_mint_leaf(&lp, key, fk.root, fk.root_key, &leaf, &why), 0);
    assert_int_equal(sigil_x509_cert_to_pem(leaf, &pem), 0);
    snprintf(p, sizeof p, "%s/node.pem", dir);
    write_file(p, pem.data, pem.len);
    snprintf(p, sizeof p, "%s/node.key", dir);
    assert_int_equal(sigil_x509_key_write_file(p, key), 0);
    sigil_buf_free(&pem);
    X509_free(leaf);
    EVP_PKEY_free(key);
}

static void
fake_up(bool pop)
{
    memset(&fk, 0, sizeof fk);
    snprintf(dir, sizeof dir, "/tmp/agent_run_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(cfg_path, sizeof cfg_path, "%s/agent.yaml", dir);
    snprintf(sock_path, sizeof sock_path, "%s/api.sock", dir);
    snprintf(log_path, sizeof log_path, "%s/agent.log", dir);
    setup_pki();
    pthread_mutex_init(&fk.mu, NULL);
    assert_int_equal(uv_loop_init(&fk.loop), 0);
    server_start();
    uv_timer_init(&fk.loop, &fk.timer);
    uv_timer_start(&fk.timer, cmd_timer, 20, 20);
    if (pop)
        write_node_cert();
    write_config(pop ? dir : NULL);
    assert_int_equal(pthread_create(&fk.thread, NULL, server_thread, NULL), 0);
}

static void
fake_down(void)
{
    char cmd[200];

    command(CMD_QUIT);
    pthread_join(fk.thread, NULL);
    uv_loop_close(&fk.loop);
    pthread_mutex_destroy(&fk.mu);
    sigil_tls_ctx_free(fk.tls);
    X509_free(fk.root);
    X509_free(fk.server_cert);
    EVP_PKEY_free(fk.root_key);
    EVP_PKEY_free(fk.server_key);
    EVP_PKEY_free(fk.jwt_key);
    EVP_PKEY_free(fk.pop_pub);
    sigil_buf_free(&fk.pop_csr);
    free(fk.bundle_json);
    if (getenv("SIGIL_KEEP_TEST_DIR") != NULL) {
        fprintf(stderr, "kept %s\n", dir);
        return;
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void
test_run(void **state)
{
    char out[1 << 16], first[256], later[256], p[160];
    const char *jwt_args[] = {"cli",      "api",     "fetch",     "jwt", "--audience", "svc-x",
                              "--socket", sock_path, "--timeout", "3",   NULL};
    const char *deny_args[] = {"cli",      "api",     "fetch",     "jwt", "--audience", "deny",
                               "--socket", sock_path, "--timeout", "3",   NULL};
    const char *bad_token_args[] = {"run", "--config", cfg_path, "--join-token", "wrong", NULL};
    pid_t agent;
    int st, i;
    bool rotated = false, exited = false;

    (void)state;
    fake_up(false);

    /* attests once, the workload gets its SVID */
    agent = start_agent();
    assert_true(wait_fetch("spiffe://example.org/workload/w1", 15));
    assert_int_equal(fk.attests, 1);
    assert_true(fk.signs >= 1);
    assert_true(log_has("node attested"));
    snprintf(p, sizeof p, "%s/data/agent.pem", dir);
    {
        struct stat sb;

        assert_int_equal(stat(p, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0600);
    }

    /* a JWT-SVID through SignJWTSVID, then from the agent's cache */
    assert_int_equal(cli(jwt_args, out, sizeof out), 0);
    assert_non_null(strstr(out, "spiffe://example.org/workload/w1"));
    assert_int_equal(fk.jwts, 1);
    assert_int_equal(cli(jwt_args, out, sizeof out), 0);
    assert_int_equal(fk.jwts, 1);
    /* a refused request is that request's failure, not the agent's */
    assert_int_not_equal(cli(deny_args, out, sizeof out), 0);
    usleep(300000);
    assert_int_equal(waitpid(agent, &st, WNOHANG), 0);
    assert_int_equal(fetch(out, sizeof out), 0);

    /* rotation at half of the 6 s life (3 s +- 0.3 s) */
    assert_true(svid_line(first, sizeof first));
    for (i = 0; i < 40 && !rotated; i++) {
        usleep(250000);
        rotated = svid_line(later, sizeof later) && strcmp(first, later) != 0;
    }
    assert_true(rotated);
    assert_true(fk.signs >= 2);

    /* a restart uses the saved SVID: no second attestation (the token is single use) */
    assert_int_equal(stop_agent(agent), 0);
    agent = start_agent();
    assert_true(wait_fetch("spiffe://example.org/workload/w1", 15));
    assert_int_equal(fk.attests, 1);
    assert_true(log_has("using the saved agent SVID"));

    /* the server goes away: the cache keeps serving, the retry line is logged */
    command(CMD_STOP);
    sleep(1);
    assert_int_equal(fetch(out, sizeof out), 0);
    assert_non_null(strstr(out, "spiffe://example.org/workload/w1"));
    assert_true(log_has("server unreachable, serving cached SVIDs; retrying in"));
    /* an entry created meanwhile arrives once it returns, synced from the last revision */
    pthread_mutex_lock(&fk.mu);
    fk.two_entries = true;
    pthread_mutex_unlock(&fk.mu);
    command(CMD_START);
    assert_true(wait_fetch("spiffe://example.org/workload/w2", 15));
    assert_true(fk.last_since >= 1);

    /* e2 is deleted while the agent is away and the server cannot send a delta from the
     * agent's revision: its full state (e1 only) makes the agent drop e2 and its SVID */
    command(CMD_STOP);
    pthread_mutex_lock(&fk.mu);
    fk.lost_e2 = true;
    pthread_mutex_unlock(&fk.mu);
    fk.since_armed = true;
    command(CMD_START);
    {
        bool dropped = false;

        for (i = 0; i < 75 && !dropped; i++) {
            usleep(200000);
            dropped = fetch(out, sizeof out) == 0 &&
                      strstr(out, "spiffe://example.org/workload/w1") != NULL &&
                      strstr(out, "spiffe://example.org/workload/w2") == NULL;
        }
        if (!dropped)
            fprintf(stderr, "last fetch output: %s\n", out);
        assert_true(dropped);
    }
    /* its first call asked from the revision it had (a later reconnect, e.g. after the
     * agent SVID's renewal on a loaded machine, asks from the full state's revision) */
    assert_int_equal(fk.first_since, 2);
    assert_true(log_has("full entry resync: dropped 1 entries the server no longer sends"));

    /* the agent SVID is renewed at half its life over mTLS, and saved */
    for (i = 0; i < 100 && fk.renews < 1; i++)
        usleep(100000);
    assert_true(fk.renews >= 1);
    for (i = 0; i < 20 && !log_has("agent SVID renewed"); i++)
        usleep(100000);
    assert_true(log_has("agent SVID renewed"));

    /* banned: the agent says so and exits with 3 */
    command(CMD_BAN);
    for (i = 0; i < 150 && !exited; i++) {
        usleep(100000);
        exited = waitpid(agent, &st, WNOHANG) == agent;
    }
    assert_true(exited);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), SIGIL_AGENT_EXIT_BANNED);
    assert_true(log_has("banned"));

    /* a fresh data_dir with a used token: the refusal is logged, exit 3, not a retry loop */
    snprintf(out, sizeof out, "rm -rf '%s/data'", dir);
    assert_int_equal(system(out), 0);
    agent = spawn(bad_token_args, log_path);
    assert_int_equal(waitpid(agent, &st, 0), agent);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), SIGIL_AGENT_EXIT_BANNED);
    assert_true(log_has("the server refused the node attestation"));

    fake_down();
}

/* x509pop: the nonce challenge answered, a re-attestable agent; evicted, it attests again
 * with the same evidence and keeps serving. */
static void
test_x509pop_evict(void **state)
{
    pid_t agent;
    int i;

    (void)state;
    fake_up(true);
    agent = start_agent();
    assert_true(wait_fetch("spiffe://example.org/workload/w1", 15));
    assert_int_equal(fk.attests, 1);
    assert_true(log_has("attestor=x509pop"));
    command(CMD_EVICT);
    for (i = 0; i < 100 && fk.attests < 2; i++)
        usleep(100000);
    assert_int_equal(fk.attests, 2);
    assert_true(log_has("the server no longer knows this agent; attesting again"));
    assert_true(wait_fetch("spiffe://example.org/workload/w1", 15));
    assert_int_equal(stop_agent(agent), 0);
    fake_down();
}

int
main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_x509pop_evict),
    };

    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "run") == 0)
        return sigil_agent_run_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "cli") == 0) {
        argv[1] = argv[0];
        return sigil_agent_cli_main(argc - 1, argv + 1);
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
