/* X.509-SVIDs signed per second through the node API (BatchSignX509SVID over TLS 1.3, as an
 * attested agent), and a baseline: ECDSA P-256 sign+verify pairs per second in-process with
 * EVP on one core. node_sign.sh runs both (pinned) and `openssl speed ecdsap256` beside them.
 *   bench_node_sign ADDR TD BUNDLE.pem STATE_DIR ENTRY_ID [SECONDS [BATCH [IN_FLIGHT [CSR_ID]]]]
 *   bench_node_sign --baseline SECONDS
 * STATE_DIR holds agent.pem/agent.key as nodeapi_client attest leaves them (node_sign.sh).
 * CSR_ID: the SPIFFE ID each CSR requests, as the agent's do (default: none). The last line
 * of each mode is machine-readable (key=value). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <uv.h>

#include "node.pb-c.h"
#include "sigil/buf.h"
#include "sigil/err.h"
#include "sigil/rpc.h"
#include "sigil/spiffeid.h"
#include "sigil/tls.h"
#include "sigil/x509.h"

#define PATH "/sigil.node.v1.Node/BatchSignX509SVID"

struct bench {
    uv_loop_t loop;
    const char *td;
    STACK_OF(X509) *roots, *chain;
    EVP_PKEY *key;
    struct sigil_tls_ctx *tls;
    struct sigil_rpc_client *cli;
    uint8_t *req;
    size_t req_len;
    uint64_t end_ns;
    unsigned long long svids, refused, calls;
    int inflight;
    int failed;
};

static void
die(const char *what, const char *why)
{
    fprintf(stderr, "bench_node_sign: %s: %s\n", what, why ? why : "?");
    exit(1);
}

static uint64_t
now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* CPU time of this thread: the baseline counts per CPU-second, as openssl speed does. */
static uint64_t
cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
verify_server(void *arg, STACK_OF(X509) *chain, const char **why)
{
    struct bench *b = arg;
    struct sigil_spiffeid id, want;
    int r;

    if ((r = sigil_x509_svid_verify(chain, b->roots, 0, &id, why)) != 0)
        return r;
    if ((r = sigil_spiffeid_from_parts(b->td, "/sigil/server", &want, why)) != 0)
        return r;
    if (!sigil_spiffeid_equal(&id, &want)) {
        *why = "the node API does not present the server's SPIFFE ID";
        return SIGIL_ERR_VERIFY;
    }
    return 0;
}

static void start_call(struct bench *b);

static void
call_done(void *ud, int code, const char *message, const uint8_t *resp, size_t len)
{
    struct bench *b = ud;
    Sigil__Node__V1__BatchSignX509SVIDResponse *r;

    b->inflight--;
    if (code != 0) {
        fprintf(stderr, "bench_node_sign: %s: %s\n", sigil_rpc_code_name(code), message);
        b->failed = 1;
    } else if ((r = sigil__node__v1__batch_sign_x509_svidresponse__unpack(NULL, len, resp)) ==
               NULL) {
        fprintf(stderr, "bench_node_sign: malformed response\n");
        b->failed = 1;
    } else {
        b->calls++;
        for (size_t i = 0; i < r->n_svids; i++) {
            if (r->svids[i]->error[0] == '\0' && r->svids[i]->svid_chain.len > 0)
                b->svids++;
            else
                b->refused++;
        }
        sigil__node__v1__batch_sign_x509_svidresponse__free_unpacked(r, NULL);
    }
    if (!b->failed && now_ns() < b->end_ns)
        start_call(b);
    else if (b->inflight == 0) {
        sigil_rpc_client_free(b->cli);
        b->cli = NULL;
    }
}

static void
start_call(struct bench *b)
{
    if (sigil_rpc_client_unary(b->cli, PATH, NULL, 0, b->req, b->req_len, 60000, call_done, b) != 0)
        die("BatchSignX509SVID", "cannot start the call");
    b->inflight++;
}

/* The request: batch copies of one entry's params, each with its own key's CSR, so the server
 * verifies a distinct proof of possession per item as it would for a real agent. */
static void
make_request(struct bench *b, const char *entry_id, size_t batch, const char *csr_id)
{
    struct sigil_spiffeid id;
    const char *why = NULL;

    Sigil__Node__V1__BatchSignX509SVIDRequest req =
        SIGIL__NODE__V1__BATCH_SIGN_X509_SVIDREQUEST__INIT;
    Sigil__Node__V1__X509SVIDParams *p = calloc(batch, sizeof *p), **pp = calloc(batch, sizeof *pp);
    struct sigil_buf *csr = calloc(batch, sizeof *csr);
    EVP_PKEY *k = NULL;

    if (p == NULL || pp == NULL || csr == NULL)
        die("request", "out of memory");
    if (csr_id != NULL && sigil_spiffeid_parse(csr_id, strlen(csr_id), &id, &why) != 0)
        die(csr_id, why);
    for (size_t i = 0; i < batch; i++) {
        sigil__node__v1__x509_svidparams__init(&p[i]);
        if (sigil_x509_key_generate(&k) != 0 ||
            sigil_x509_csr_create(k, csr_id != NULL ? &id : NULL, &csr[i]) != 0)
            die("csr", "cannot make a key and CSR");
        EVP_PKEY_free(k);
        k = NULL;
        p[i].entry_id = (char *)entry_id;
        p[i].csr.data = csr[i].data;
        p[i].csr.len = csr[i].len;
        pp[i] = &p[i];
    }
    req.n_params = batch;
    req.params = pp;
    b->req_len = protobuf_c_message_get_packed_size(&req.base);
    if ((b->req = malloc(b->req_len + 1)) == NULL)
        die("request", "out of memory");
    protobuf_c_message_pack(&req.base, b->req);
    for (size_t i = 0; i < batch; i++)
        sigil_buf_free(&csr[i]);
    free(csr);
    free(pp);
    free(p);
}

/* ECDSA P-256 (SHA-256) sign then verify of a 32-byte message, pairs per CPU-second, for secs
 * of wall clock. */
static double
baseline(double secs, double *sign_per_s)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    unsigned char msg[32] = {1}, sig[80];
    unsigned long long n = 0, ns = 0;
    uint64_t t0, c0, end;
    size_t sl;

    if (k == NULL)
        die("baseline", "cannot make a P-256 key");
    t0 = now_ns();
    c0 = cpu_ns();
    end = t0 + (uint64_t)(secs / 2 * 1e9);
    while (now_ns() < end) { /* sign only, for the record */
        EVP_MD_CTX *m = EVP_MD_CTX_new();
        sl = sizeof sig;
        if (EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, k) != 1 ||
            EVP_DigestSign(m, sig, &sl, msg, sizeof msg) != 1)
            die("baseline", "sign failed");
        EVP_MD_CTX_free(m);
        ns++;
    }
    *sign_per_s = (double)ns / ((double)(cpu_ns() - c0) / 1e9);
    t0 = now_ns();
    c0 = cpu_ns();
    end = t0 + (uint64_t)(secs / 2 * 1e9);
    while (now_ns() < end) {
        EVP_MD_CTX *m = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
        sl = sizeof sig;
        if (EVP_DigestSignInit(m, NULL, EVP_sha256(), NULL, k) != 1 ||
            EVP_DigestSign(m, sig, &sl, msg, sizeof msg) != 1 ||
            EVP_DigestVerifyInit(v, NULL, EVP_sha256(), NULL, k) != 1 ||
            EVP_DigestVerify(v, sig, sl, msg, sizeof msg) != 1)
            die("baseline", "sign+verify failed");
        EVP_MD_CTX_free(m);
        EVP_MD_CTX_free(v);
        n++;
    }
    EVP_PKEY_free(k);
    return (double)n / ((double)(cpu_ns() - c0) / 1e9);
}

int
main(int argc, char **argv)
{
    struct bench b = {0};
    struct sigil_tls_opts to = {.verify = verify_server, .verify_arg = &b};
    struct sigil_rpc_client_opts co;
    STACK_OF(X509) *rest;
    struct sigil_buf pem = {0};
    const char *why = NULL;
    char path[4096];
    double secs, rate, base, sign_only;
    size_t batch;
    int depth;
    uint64_t t0;

    if (argc == 3 && strcmp(argv[1], "--baseline") == 0) {
        if ((secs = atof(argv[2])) <= 0)
            die("usage", "--baseline SECONDS > 0");
        base = baseline(secs, &sign_only);
        printf("EVP in-process, one core, per CPU-second: ECDSA P-256 sign+verify %.0f/s (sign "
               "only %.0f/s)\n",
               base, sign_only);
        printf("evp_sign_per_s=%.0f evp_sign_verify_per_s=%.0f\n", sign_only, base);
        return 0;
    }
    if (argc < 6) {
        fprintf(stderr, "usage: bench_node_sign ADDR TD BUNDLE.pem STATE_DIR ENTRY_ID "
                        "[SECONDS [BATCH [IN_FLIGHT [CSR_ID]]]]\n"
                        "       bench_node_sign --baseline SECONDS\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    secs = argc > 6 ? atof(argv[6]) : 10;
    batch = argc > 7 ? (size_t)atoi(argv[7]) : 100;
    depth = argc > 8 ? atoi(argv[8]) : 2;
    if (secs <= 0 || batch == 0 || batch > 1000 || depth < 1 || depth > 64)
        die("usage", "SECONDS > 0, 1 <= BATCH <= 1000, 1 <= IN_FLIGHT <= 64");
    b.td = argv[2];
    if (sigil_x509_file_read(argv[3], &pem, &why) != 0 ||
        sigil_x509_chain_parse_pem(pem.data, pem.len, &b.roots, &why) != 0)
        die("bundle", why);
    sigil_buf_free(&pem);
    snprintf(path, sizeof path, "%s/agent.pem", argv[4]);
    if (sigil_x509_file_read(path, &pem, &why) != 0 ||
        sigil_x509_chain_parse_pem(pem.data, pem.len, &b.chain, &why) != 0)
        die(path, why);
    sigil_buf_free(&pem);
    snprintf(path, sizeof path, "%s/agent.key", argv[4]);
    if (sigil_x509_key_read_file(path, &b.key, &why) != 0)
        die(path, why);
    make_request(&b, argv[5], batch, argc > 9 ? argv[9] : NULL);

    to.cert = sk_X509_value(b.chain, 0);
    rest = sk_X509_dup(b.chain);
    (void)sk_X509_shift(rest);
    to.chain = rest;
    to.key = b.key;
    if (sigil_tls_ctx_new_client(&to, &b.tls, &why) != 0)
        die("tls", why);
    sk_X509_free(rest);
    uv_loop_init(&b.loop);
    co = (struct sigil_rpc_client_opts){.target = argv[1], .tls = b.tls};
    if (sigil_rpc_client_new(&b.loop, &co, &b.cli, &why) != 0)
        die("client", why);
    t0 = now_ns();
    b.end_ns = t0 + (uint64_t)(secs * 1e9);
    for (int i = 0; i < depth; i++)
        start_call(&b);
    uv_run(&b.loop, UV_RUN_DEFAULT);
    rate = (double)b.svids / ((double)(now_ns() - t0) / 1e9);
    uv_loop_close(&b.loop);

    printf("node API: %llu X.509-SVIDs in %llu calls of %zu (%d in flight), %llu refused: "
           "%.0f SVIDs/s\n",
           b.svids, b.calls, batch, depth, b.refused, rate);
    printf("svids_per_s=%.0f\n", rate);
    free(b.req);
    sk_X509_pop_free(b.roots, X509_free);
    sk_X509_pop_free(b.chain, X509_free);
    EVP_PKEY_free(b.key);
    sigil_tls_ctx_free(b.tls);
    return b.failed || b.svids == 0 || b.refused != 0;
}
