/* A test client playing an agent against sigil-server's node API (proto/node.proto):
 *   nodeapi_client ADDR TD BUNDLE.pem STATE_DIR COMMAND [ARGS]
 * attest join_token TOKEN | attest x509pop CERT.pem KEY.pem [bad]: attests, keeps the agent
 * SVID and key in STATE_DIR (agent.pem, agent.key) and prints spiffe_id=...; renew; sign
 * ENTRY_ID OUT.pem; jwt ENTRY_ID AUDIENCE; bundles; sync PAGE_SIZE WANT_SPIFFE_ID TIMEOUT_S
 * [SINCE_REVISION] (prints the first batch's counts and removed ids, "ready", then a line per
 * later page and arrived_ns=<wall clock> when WANT arrives; WANT "-" ends after the first
 * batch);
 * validate TOKEN AUDIENCE (offline, against the bundle.json an attestation saved).
 * An error status prints "error CODE: message" and exits 1; a refused batch item exits 2. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <uv.h>

#include "node.pb-c.h"
#include "sigil/bundle.h"
#include "sigil/jwtsvid.h"
#include "sigil/buf.h"
#include "sigil/err.h"
#include "sigil/rpc.h"
#include "sigil/spiffeid.h"
#include "sigil/tls.h"
#include "sigil/x509.h"

#define SVC "/sigil.node.v1.Node/"

struct client {
    uv_loop_t loop;
    const char *addr, *td, *dir;
    STACK_OF(X509) *roots;
    STACK_OF(X509) *chain; /* agent SVID, once attested */
    EVP_PKEY *key;
    struct sigil_tls_ctx *tls;
    struct sigil_rpc_client *cli;
    struct sigil_rpc_ccall *call;
    int code;
    char *message;
    int exit_code;
    /* command state */
    const char *cmd;
    EVP_PKEY *attest_key, *pop_key;
    STACK_OF(X509) *pop_chain;
    bool pop_bad;
    struct sigil_buf csr;
    const char *want;
    size_t pages, entries, removed;
    bool first_done;
    uv_timer_t timer;
};

static void
die(const char *what, const char *why)
{
    fprintf(stderr, "nodeapi_client: %s: %s\n", what, why ? why : "?");
    exit(1);
}

static int
verify_server(void *arg, STACK_OF(X509) *chain, const char **why)
{
    struct client *c = arg;
    struct sigil_spiffeid id, want;
    int r;

    if ((r = sigil_x509_svid_verify(chain, c->roots, 0, &id, why)) != 0)
        return r;
    if ((r = sigil_spiffeid_from_parts(c->td, "/sigil/server", &want, why)) != 0)
        return r;
    if (!sigil_spiffeid_equal(&id, &want)) {
        *why = "the node API does not present the server's SPIFFE ID";
        return SIGIL_ERR_VERIFY;
    }
    return 0;
}

static void
connect_client(struct client *c, bool with_identity)
{
    struct sigil_tls_opts to = {.verify = verify_server, .verify_arg = c};
    struct sigil_rpc_client_opts co = {.target = c->addr};
    STACK_OF(X509) *rest = NULL;
    const char *why = NULL;

    if (with_identity) {
        if (c->chain == NULL)
            die("identity", "attest first (no agent SVID in the state dir)");
        to.cert = sk_X509_value(c->chain, 0);
        rest = sk_X509_dup(c->chain);
        (void)sk_X509_shift(rest);
        to.chain = rest;
        to.key = c->key;
    }
    if (sigil_tls_ctx_new_client(&to, &c->tls, &why) != 0)
        die("tls", why);
    sk_X509_free(rest);
    co.tls = c->tls;
    if (sigil_rpc_client_new(&c->loop, &co, &c->cli, &why) != 0)
        die("client", why);
}

static void
save_identity(struct client *c, const uint8_t *der, size_t len, EVP_PKEY *key)
{
    STACK_OF(X509) *chain = NULL;
    struct sigil_buf pem = {0};
    const char *why = NULL;
    char path[4096];
    FILE *f;

    if (sigil_x509_chain_parse_der(der, len, &chain, &why) != 0)
        die("svid", why);
    if (sigil_x509_chain_to_pem(chain, &pem) != 0)
        die("svid", "cannot encode");
    snprintf(path, sizeof path, "%s/agent.pem", c->dir);
    if ((f = fopen(path, "w")) == NULL || fwrite(pem.data, 1, pem.len, f) != pem.len)
        die("write", path);
    fclose(f);
    snprintf(path, sizeof path, "%s/agent.key", c->dir);
    if (sigil_x509_key_write_file(path, key) != 0)
        die("write", path);
    sk_X509_pop_free(chain, X509_free);
    sigil_buf_free(&pem);
}

static void
print_leaf_id(const uint8_t *der, size_t len)
{
    STACK_OF(X509) *chain = NULL;
    struct sigil_spiffeid id;
    const char *why = NULL;

    if (sigil_x509_chain_parse_der(der, len, &chain, &why) != 0 ||
        sigil_x509_cert_spiffeid(sk_X509_value(chain, 0), &id, &why) != 0)
        die("svid", why);
    printf("spiffe_id=%s\n", id.str);
    sk_X509_pop_free(chain, X509_free);
}

static void
on_end(struct sigil_rpc_ccall *call, void *ud, int code, const char *message)
{
    struct client *c = ud;

    (void)call;
    c->call = NULL;
    c->code = code;
    c->message = strdup(message);
    sigil_rpc_client_free(c->cli);
    c->cli = NULL;
    if (uv_is_active((uv_handle_t *)&c->timer))
        uv_timer_stop(&c->timer);
}

static void
make_csr(struct client *c)
{
    if (sigil_x509_key_generate(&c->attest_key) != 0 ||
        sigil_x509_csr_create(c->attest_key, NULL, &c->csr) != 0)
        die("csr", "cannot make a key and CSR");
}

/* Attest: send params, answer a challenge, keep the result. */
static void
attest_msg(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    struct client *c = ud;
    Sigil__Node__V1__AttestResponse *resp =
        sigil__node__v1__attest_response__unpack(NULL, len, msg);

    if (resp == NULL)
        die("attest", "malformed AttestResponse");
    if (resp->step_case == SIGIL__NODE__V1__ATTEST_RESPONSE__STEP_CHALLENGE) {
        Sigil__Node__V1__AttestRequest req = SIGIL__NODE__V1__ATTEST_REQUEST__INIT;
        struct sigil_buf m = {0}, sig = {0};
        uint8_t h[SHA256_DIGEST_LENGTH], out[4096];
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        size_t n = sizeof out;

        /* "sigil x509pop v1" || 0x00 || nonce || sha256(csr) */
        SHA256(c->csr.data, c->csr.len, h);
        sigil_buf_append(&m, "sigil x509pop v1", 17);
        sigil_buf_append(&m, resp->challenge.data, resp->challenge.len);
        sigil_buf_append(&m, h, sizeof h);
        if (c->pop_bad)
            m.data[m.len - 1] ^= 1; /* a proof over another message */
        if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, c->pop_key) != 1 ||
            EVP_DigestSign(md, out, &n, m.data, m.len) != 1)
            die("attest", "cannot sign the challenge");
        EVP_MD_CTX_free(md);
        sigil_buf_append(&sig, out, n);
        req.step_case = SIGIL__NODE__V1__ATTEST_REQUEST__STEP_CHALLENGE_RESPONSE;
        req.challenge_response.data = sig.data;
        req.challenge_response.len = sig.len;
        size_t plen = sigil__node__v1__attest_request__get_packed_size(&req);
        uint8_t *p = malloc(plen + 1);
        sigil__node__v1__attest_request__pack(&req, p);
        sigil_rpc_ccall_send(call, p, plen);
        free(p);
        sigil_buf_free(&m);
        sigil_buf_free(&sig);
    } else if (resp->step_case == SIGIL__NODE__V1__ATTEST_RESPONSE__STEP_RESULT) {
        save_identity(c, resp->result->svid_chain.data, resp->result->svid_chain.len,
                      c->attest_key);
        printf("spiffe_id=%s\nreattestable=%d\n", resp->result->spiffe_id,
               resp->result->reattestable);
        if (resp->result->bundle.len > 0) {
            char path[4096];
            FILE *f;

            snprintf(path, sizeof path, "%s/bundle.json", c->dir);
            if ((f = fopen(path, "w")) != NULL) {
                fwrite(resp->result->bundle.data, 1, resp->result->bundle.len, f);
                fclose(f);
            }
        }
        sigil_rpc_ccall_close_send(call);
    }
    sigil__node__v1__attest_response__free_unpacked(resp, NULL);
}

static void
cmd_attest(struct client *c, int argc, char **argv)
{
    Sigil__Node__V1__AttestRequest req = SIGIL__NODE__V1__ATTEST_REQUEST__INIT;
    Sigil__Node__V1__AttestParams params = SIGIL__NODE__V1__ATTEST_PARAMS__INIT;
    struct sigil_rpc_ccall_cbs cbs = {.on_message = attest_msg, .on_end = on_end};
    struct sigil_buf payload = {0}, pem = {0};
    const char *why = NULL;

    if (argc < 2)
        die("usage", "attest join_token TOKEN | attest x509pop CERT KEY [bad]");
    make_csr(c);
    params.attestation_type = argv[0];
    if (strcmp(argv[0], "x509pop") == 0) {
        if (argc < 3)
            die("usage", "attest x509pop CERT KEY [bad]");
        if (sigil_x509_file_read(argv[1], &pem, &why) != 0 ||
            sigil_x509_chain_parse_pem(pem.data, pem.len, &c->pop_chain, &why) != 0 ||
            sigil_x509_chain_to_der(c->pop_chain, &payload) != 0 ||
            sigil_x509_key_read_file(argv[2], &c->pop_key, &why) != 0)
            die("x509pop", why);
        c->pop_bad = argc > 3 && strcmp(argv[3], "bad") == 0;
    } else {
        sigil_buf_append(&payload, argv[1], strlen(argv[1]));
    }
    params.payload.data = payload.data;
    params.payload.len = payload.len;
    params.csr.data = c->csr.data;
    params.csr.len = c->csr.len;
    req.step_case = SIGIL__NODE__V1__ATTEST_REQUEST__STEP_PARAMS;
    req.params = &params;
    connect_client(c, false);
    if (sigil_rpc_client_call(c->cli, SVC "Attest", NULL, 0, 10000, &cbs, c, &c->call) != 0)
        die("attest", "cannot start the call");
    size_t plen = sigil__node__v1__attest_request__get_packed_size(&req);
    uint8_t *p = malloc(plen + 1);
    sigil__node__v1__attest_request__pack(&req, p);
    sigil_rpc_ccall_send(c->call, p, plen);
    free(p);
    sigil_buf_free(&payload);
    sigil_buf_free(&pem);
}

/* Unary calls: the response handler runs on OK. */
static void (*unary_ok)(struct client *c, const uint8_t *resp, size_t len);
static struct client *unary_client;

static void
unary_done(void *ud, int code, const char *message, const uint8_t *resp, size_t len)
{
    struct client *c = ud;

    c->code = code;
    c->message = strdup(message);
    if (code == 0)
        unary_ok(c, resp, len);
    sigil_rpc_client_free(c->cli);
    c->cli = NULL;
}

static void
unary(struct client *c, const char *method, const ProtobufCMessage *req,
      void (*ok)(struct client *, const uint8_t *, size_t))
{
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *p = malloc(len + 1);
    char path[128];

    protobuf_c_message_pack(req, p);
    snprintf(path, sizeof path, SVC "%s", method);
    unary_ok = ok;
    unary_client = c;
    connect_client(c, true);
    if (sigil_rpc_client_unary(c->cli, path, NULL, 0, p, len, 10000, unary_done, c) != 0)
        die(method, "cannot start the call");
    free(p);
}

static void
renew_ok(struct client *c, const uint8_t *resp, size_t len)
{
    Sigil__Node__V1__RenewAgentResponse *r =
        sigil__node__v1__renew_agent_response__unpack(NULL, len, resp);

    if (r == NULL)
        die("renew", "malformed response");
    save_identity(c, r->svid_chain.data, r->svid_chain.len, c->attest_key);
    print_leaf_id(r->svid_chain.data, r->svid_chain.len);
    sigil__node__v1__renew_agent_response__free_unpacked(r, NULL);
}

static const char *sign_out;

static void
sign_ok(struct client *c, const uint8_t *resp, size_t len)
{
    Sigil__Node__V1__BatchSignX509SVIDResponse *r =
        sigil__node__v1__batch_sign_x509_svidresponse__unpack(NULL, len, resp);
    STACK_OF(X509) *chain = NULL;
    struct sigil_buf pem = {0};
    const char *why = NULL;
    FILE *f;

    if (r == NULL || r->n_svids != 1)
        die("sign", "malformed response");
    if (r->svids[0]->error[0] != '\0') {
        printf("refused: %s\n", r->svids[0]->error);
        c->exit_code = 2;
    } else {
        if (sigil_x509_chain_parse_der(r->svids[0]->svid_chain.data, r->svids[0]->svid_chain.len,
                                       &chain, &why) != 0 ||
            sigil_x509_chain_to_pem(chain, &pem) != 0)
            die("sign", why);
        if ((f = fopen(sign_out, "w")) == NULL || fwrite(pem.data, 1, pem.len, f) != pem.len)
            die("write", sign_out);
        fclose(f);
        print_leaf_id(r->svids[0]->svid_chain.data, r->svids[0]->svid_chain.len);
        printf("expires_at=%lld\n", (long long)r->svids[0]->expires_at);
        /* the key stays with the caller in real agents; the test wants it for openssl */
        char kp[4096];
        snprintf(kp, sizeof kp, "%s.key", sign_out);
        sigil_x509_key_write_file(kp, c->attest_key);
    }
    sk_X509_pop_free(chain, X509_free);
    sigil_buf_free(&pem);
    sigil__node__v1__batch_sign_x509_svidresponse__free_unpacked(r, NULL);
}

static void
jwt_ok(struct client *c, const uint8_t *resp, size_t len)
{
    Sigil__Node__V1__SignJWTSVIDResponse *r =
        sigil__node__v1__sign_jwtsvidresponse__unpack(NULL, len, resp);

    (void)c;
    if (r == NULL)
        die("jwt", "malformed response");
    printf("%s\n", r->token);
    sigil__node__v1__sign_jwtsvidresponse__free_unpacked(r, NULL);
}

static void
bundles_msg(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    Sigil__Node__V1__BundlesUpdate *u = sigil__node__v1__bundles_update__unpack(NULL, len, msg);

    (void)ud;
    if (u == NULL)
        die("bundles", "malformed update");
    printf("sequence=%llu bundle_bytes=%zu federated=%zu\n", (unsigned long long)u->sequence,
           u->bundle.len, u->n_federated);
    sigil__node__v1__bundles_update__free_unpacked(u, NULL);
    sigil_rpc_ccall_cancel(call);
}

static void
sync_msg(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    struct client *c = ud;
    Sigil__Node__V1__SyncEntriesResponse *r =
        sigil__node__v1__sync_entries_response__unpack(NULL, len, msg);
    struct timespec ts;

    if (r == NULL)
        die("sync", "malformed page");
    clock_gettime(CLOCK_REALTIME, &ts);
    if (!c->first_done) {
        c->pages++;
        c->entries += r->n_entries;
        c->removed += r->n_removed_ids;
        for (size_t i = 0; i < r->n_removed_ids; i++)
            printf("removed_id=%s\n", r->removed_ids[i]);
        if (r->last) {
            c->first_done = true;
            printf("pages=%zu entries=%zu full=%d revision=%llu removed=%zu\nready\n", c->pages,
                   c->entries, r->full, (unsigned long long)r->revision, c->removed);
            fflush(stdout);
            if (strcmp(c->want, "-") == 0)
                sigil_rpc_ccall_cancel(call);
        }
    } else {
        printf("page revision=%llu entries=%zu removed=%zu full=%d last=%d\n",
               (unsigned long long)r->revision, r->n_entries, r->n_removed_ids, r->full, r->last);
        for (size_t i = 0; i < r->n_entries; i++)
            if (strcmp(r->entries[i]->spiffe_id, c->want) == 0) {
                printf("arrived_ns=%lld full=%d\n",
                       (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec, r->full);
                fflush(stdout);
                sigil_rpc_ccall_cancel(call);
                break;
            }
        for (size_t i = 0; i < r->n_removed_ids; i++)
            printf("removed=%s\n", r->removed_ids[i]);
    }
    sigil__node__v1__sync_entries_response__free_unpacked(r, NULL);
}

static void
on_timeout(uv_timer_t *t)
{
    struct client *c = t->data;

    c->exit_code = 3;
    printf("timeout\n");
    if (c->call != NULL)
        sigil_rpc_ccall_cancel(c->call);
}

static void
load_state(struct client *c)
{
    struct sigil_buf pem = {0};
    const char *why = NULL;
    char path[4096];

    snprintf(path, sizeof path, "%s/agent.pem", c->dir);
    if (sigil_x509_file_read(path, &pem, &why) != 0)
        return;
    if (sigil_x509_chain_parse_pem(pem.data, pem.len, &c->chain, &why) != 0)
        die("state", why);
    snprintf(path, sizeof path, "%s/agent.key", c->dir);
    if (sigil_x509_key_read_file(path, &c->key, &why) != 0)
        die("state", why);
    sigil_buf_free(&pem);
}

int
main(int argc, char **argv)
{
    struct client c = {.exit_code = 0};
    struct sigil_buf pem = {0};
    const char *why = NULL;
    int r;

    if (argc < 6) {
        fprintf(stderr, "usage: nodeapi_client ADDR TD BUNDLE.pem STATE_DIR COMMAND [ARGS]\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach the test even if a sanitizer aborts */
    c.addr = argv[1];
    c.td = argv[2];
    c.dir = argv[4];
    c.cmd = argv[5];
    if (sigil_x509_file_read(argv[3], &pem, &why) != 0 ||
        sigil_x509_chain_parse_pem(pem.data, pem.len, &c.roots, &why) != 0)
        die("bundle", why);
    sigil_buf_free(&pem);
    load_state(&c);
    uv_loop_init(&c.loop);
    uv_timer_init(&c.loop, &c.timer);
    c.timer.data = &c;
    if (strcmp(c.cmd, "validate") == 0 && argc >= 8) {
        struct sigil_bundle_set *set = NULL;
        struct sigil_bundle *b = NULL;
        struct sigil_jwtsvid out = {0};
        char path[4096];

        snprintf(path, sizeof path, "%s/bundle.json", c.dir);
        if (sigil_x509_file_read(path, &pem, &why) != 0 ||
            sigil_bundle_decode(c.td, (const char *)pem.data, pem.len, &b, &why) != 0 ||
            sigil_bundle_set_new(&set) != 0 || sigil_bundle_set_put(set, b) != 0)
            die("bundle.json", why);
        if (sigil_jwtsvid_validate(argv[6], strlen(argv[6]), argv[7], set, time(NULL), 0, &out,
                                   &why) != 0) {
            printf("invalid: %s\n", why);
            c.exit_code = 1;
        } else {
            printf("valid sub=%s kid=%s\n", out.id.str, out.kid);
            sigil_jwtsvid_clear(&out);
        }
        sigil_bundle_set_free(set);
        sigil_buf_free(&pem);
    } else if (strcmp(c.cmd, "attest") == 0) {
        cmd_attest(&c, argc - 6, argv + 6);
    } else if (strcmp(c.cmd, "renew") == 0) {
        Sigil__Node__V1__RenewAgentRequest req = SIGIL__NODE__V1__RENEW_AGENT_REQUEST__INIT;

        make_csr(&c);
        req.csr.data = c.csr.data;
        req.csr.len = c.csr.len;
        unary(&c, "RenewAgent", &req.base, renew_ok);
    } else if (strcmp(c.cmd, "sign") == 0 && argc >= 8) {
        Sigil__Node__V1__BatchSignX509SVIDRequest req =
            SIGIL__NODE__V1__BATCH_SIGN_X509_SVIDREQUEST__INIT;
        Sigil__Node__V1__X509SVIDParams p = SIGIL__NODE__V1__X509_SVIDPARAMS__INIT, *pp = &p;

        make_csr(&c);
        sign_out = argv[7];
        p.entry_id = argv[6];
        p.csr.data = c.csr.data;
        p.csr.len = c.csr.len;
        req.n_params = 1;
        req.params = &pp;
        unary(&c, "BatchSignX509SVID", &req.base, sign_ok);
    } else if (strcmp(c.cmd, "jwt") == 0 && argc >= 8) {
        Sigil__Node__V1__SignJWTSVIDRequest req = SIGIL__NODE__V1__SIGN_JWTSVIDREQUEST__INIT;
        char *aud[1] = {argv[7]};

        req.entry_id = argv[6];
        req.n_audience = 1;
        req.audience = aud;
        unary(&c, "SignJWTSVID", &req.base, jwt_ok);
    } else if (strcmp(c.cmd, "bundles") == 0 || (strcmp(c.cmd, "sync") == 0 && argc >= 9)) {
        Sigil__Node__V1__SyncEntriesRequest sreq = SIGIL__NODE__V1__SYNC_ENTRIES_REQUEST__INIT;
        Sigil__Node__V1__StreamBundlesRequest breq = SIGIL__NODE__V1__STREAM_BUNDLES_REQUEST__INIT;
        struct sigil_rpc_ccall_cbs cbs = {.on_end = on_end};
        bool sync = strcmp(c.cmd, "sync") == 0;
        const ProtobufCMessage *m = sync ? &sreq.base : &breq.base;
        size_t len;
        uint8_t *p;

        if (sync) {
            sreq.page_size = (uint32_t)atoi(argv[6]);
            c.want = argv[7];
            if (argc > 9)
                sreq.since_revision = strtoull(argv[9], NULL, 10);
            uv_timer_start(&c.timer, on_timeout, (uint64_t)atoi(argv[8]) * 1000, 0);
        }
        cbs.on_message = sync ? sync_msg : bundles_msg;
        len = protobuf_c_message_get_packed_size(m);
        p = malloc(len + 1);
        protobuf_c_message_pack(m, p);
        connect_client(&c, true);
        if (sigil_rpc_client_server_stream(c.cli, sync ? SVC "SyncEntries" : SVC "StreamBundles",
                                           NULL, 0, p, len, 0, &cbs, &c, &c.call) != 0)
            die(c.cmd, "cannot start the call");
        free(p);
    } else {
        die("usage", "unknown command or missing arguments");
    }
    uv_run(&c.loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&c.timer, NULL);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    uv_loop_close(&c.loop);
    r = c.exit_code;
    if (c.code != 0 && c.code != SIGIL_RPC_CANCELLED && r == 0) {
        printf("error %s: %s\n", sigil_rpc_code_name(c.code), c.message ? c.message : "");
        r = 1;
    }
    free(c.message);
    sk_X509_pop_free(c.roots, X509_free);
    sk_X509_pop_free(c.chain, X509_free);
    sk_X509_pop_free(c.pop_chain, X509_free);
    EVP_PKEY_free(c.key);
    EVP_PKEY_free(c.attest_key);
    EVP_PKEY_free(c.pop_key);
    sigil_tls_ctx_free(c.tls);
    sigil_buf_free(&c.csr);
    return r;
}
