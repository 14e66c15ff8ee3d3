/* bench_workload_api [STREAMS] [ENTRIES]: first-response latency (p50/p99) of STREAMS
 * (default 1,000) concurrent FetchX509SVID streams against the real Workload API (attestation
 * with sha256 included) in a child process, printed against a baseline from the same run: the
 * same streams to a bare lib/rpc method that answers at once (no attestation, no cache). Then
 * the RSS an identity cache needs for ENTRIES (default 1,000) cached SVIDs, against the
 * process before filling it. Never run by CI. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cache.h"
#include "sigil/err.h"
#include "sigil/rpc.h"
#include "sigil/x509.h"
#include "workload_api.h"

#define TD "bench.test"
#define PER_CLIENT 50 /* streams per connection, under the server's 100 */

static EVP_PKEY *root_key;
static X509 *root;

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
die(const char *what)
{
    fprintf(stderr, "bench_workload_api: %s\n", what);
    exit(1);
}

static void
mint_root(void)
{
    struct sigil_x509_ca_params ca = {.trust_domain = TD, .path_len = -1};
    const char *why = NULL;

    ca.subject.common_name = "bench root";
    ca.not_before = time(NULL) - 60;
    ca.not_after = time(NULL) + 86400;
    if (sigil_x509_key_generate(&root_key) != 0 ||
        sigil_x509_mint_root(&ca, root_key, &root, &why) != 0)
        die("root");
}

/* Entry id with selector sel and a fresh SVID for spiffe://TD/w<i>. */
static void
add_entry(struct sigil_cache *c, size_t i, const char *sel)
{
    struct sigil_selector_set s = SIGIL_SELECTOR_SET_INIT;
    struct sigil_spiffeid sid;
    struct sigil_x509_leaf_params lp = {.id = &sid};
    STACK_OF(X509) *chain = sk_X509_new_null();
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    const char *why = NULL;
    char id[32], path[32];

    snprintf(id, sizeof id, "e%06zu", i);
    snprintf(path, sizeof path, "/w%zu", i);
    lp.not_before = time(NULL) - 60;
    lp.not_after = time(NULL) + 3600;
    if (sigil_spiffeid_from_parts(TD, path, &sid, &why) != 0 ||
        sigil_selector_set_add_str(&s, sel, strlen(sel), &why) != 0 ||
        sigil_cache_put_entry(c, id, &sid, &s, NULL, NULL, 0, &why) != 0 ||
        sigil_x509_key_generate(&key) != 0 ||
        sigil_x509_mint_leaf(&lp, key, root, root_key, &leaf, &why) != 0 ||
        !sk_X509_push(chain, leaf) || sigil_cache_set_svid(c, id, chain, key, &why) != 0)
        die(why != NULL ? why : "entry");
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    sigil_selector_set_free(&s);
}

/* ---- the server process ---- */

static uint8_t base_msg[2048];

static void
h_first(struct sigil_rpc_call *call, void *arg)
{
    (void)arg;
    sigil_rpc_call_send(call, base_msg, sizeof base_msg);
    sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0); /* stream ends after it */
}

static void
on_term(uv_signal_t *s, int signum)
{
    (void)signum;
    uv_stop(s->loop);
}

static void
server(const char *wapi_sock, const char *base_sock, int ready_fd)
{
    struct sigil_rpc_method m = {
        .path = "/Bench/First", .kind = SIGIL_RPC_SERVER_STREAM, .handler = h_first};
    struct sigil_rpc_unix_opts uo = {.path = base_sock, .mode = 0600};
    struct sigil_wapi_opts wo = {.socket_path = wapi_sock};
    struct sigil_rpc_server *srv = NULL;
    struct sigil_cache *cache = NULL;
    struct sigil_wapi *wapi = NULL;
    struct sigil_bundle *b = NULL;
    const char *why = NULL;
    uv_signal_t sig;
    uv_loop_t loop;
    char sel[48];

    uv_loop_init(&loop);
    if (sigil_cache_new(&loop, TD, &cache, &why) != 0 || sigil_bundle_new(TD, &b, &why) != 0 ||
        sigil_bundle_x509_add(b, root, &why) != 0 || sigil_cache_set_bundle(cache, b) != 0)
        die("cache");
    snprintf(sel, sizeof sel, "unix:uid:%lu", (unsigned long)getuid());
    add_entry(cache, 0, sel);
    if (sigil_wapi_start(&loop, cache, &wo, &wapi, &why) != 0)
        die(why);
    if (sigil_rpc_server_new(&loop, NULL, &srv) != 0 || sigil_rpc_server_add(srv, &m) != 0 ||
        sigil_rpc_server_listen_unix(srv, &uo, &why) != 0)
        die("baseline server");
    uv_signal_init(&loop, &sig);
    uv_signal_start(&sig, on_term, SIGTERM);
    if (write(ready_fd, "R", 1) != 1)
        die("ready");
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(0); /* a benchmark child: the OS frees the rest */
}

/* ---- the client side ---- */

struct phase {
    double *lat;
    double *t0;
    size_t n, got, ended;
    struct sigil_rpc_ccall **calls;
};

struct one {
    struct phase *ph;
    size_t i;
    bool first;
};

static void
c_message(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    struct one *o = ud;

    (void)msg;
    (void)len;
    if (o->first)
        return;
    o->first = true;
    o->ph->lat[o->i] = now_ms() - o->ph->t0[o->i];
    o->ph->got++;
    sigil_rpc_ccall_cancel(call);
}

static void
c_end(struct sigil_rpc_ccall *call, void *ud, int code, const char *message)
{
    struct one *o = ud;

    (void)call;
    if (!o->first) {
        fprintf(stderr, "bench_workload_api: a stream ended without a message: %s %s\n",
                sigil_rpc_code_name(code), message);
        o->ph->lat[o->i] = -1;
        o->first = true;
        o->ph->got++;
    }
    o->ph->ended++;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Runs n concurrent streams of method on sock; prints p50/p99 and returns p99. */
static double
run_phase(const char *label, const char *sock, const char *method, size_t n)
{
    static const struct sigil_rpc_ccall_cbs cbs = {.on_message = c_message, .on_end = c_end};
    static const struct sigil_rpc_md hdr = {"workload.spiffe.io", (const uint8_t *)"true", 4};
    size_t nclients = (n + PER_CLIENT - 1) / PER_CLIENT, i, bad = 0;
    struct sigil_rpc_client **clis = calloc(nclients, sizeof *clis);
    struct one *ones = calloc(n, sizeof *ones);
    struct phase ph = {.n = n};
    char target[256];
    const char *why = NULL;
    double start, total, p50, p99;
    uv_loop_t loop;

    ph.lat = calloc(n, sizeof *ph.lat);
    ph.t0 = calloc(n, sizeof *ph.t0);
    if (clis == NULL || ones == NULL || ph.lat == NULL || ph.t0 == NULL)
        die("memory");
    uv_loop_init(&loop);
    snprintf(target, sizeof target, "unix://%s", sock);
    for (i = 0; i < nclients; i++) {
        struct sigil_rpc_client_opts o = {.target = target};

        if (sigil_rpc_client_new(&loop, &o, &clis[i], &why) != 0)
            die(why);
    }
    start = now_ms();
    for (i = 0; i < n; i++) {
        ones[i] = (struct one){.ph = &ph, .i = i};
        ph.t0[i] = now_ms();
        if (sigil_rpc_client_server_stream(clis[i / PER_CLIENT], method, &hdr, 1, "", 0, 30000,
                                           &cbs, &ones[i], NULL) != 0)
            die("call");
    }
    while (ph.ended < n)
        uv_run(&loop, UV_RUN_ONCE);
    total = now_ms() - start;
    for (i = 0; i < n; i++)
        if (ph.lat[i] < 0)
            bad++;
    qsort(ph.lat, n, sizeof *ph.lat, cmp_double);
    p50 = ph.lat[bad + (n - bad) / 2];
    p99 = ph.lat[bad + (size_t)((double)(n - bad) * 0.99) - ((n - bad) > 0 ? 1 : 0)];
    printf("%-34s %zu streams: first response p50 %.2f ms, p99 %.2f ms; all in %.1f ms%s\n", label,
           n, p50, p99, total, bad ? " (SOME FAILED)" : "");
    for (i = 0; i < nclients; i++)
        sigil_rpc_client_free(clis[i]);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    free(clis);
    free(ones);
    free(ph.lat);
    free(ph.t0);
    return p99;
}

static long
rss_kib(void)
{
    FILE *fp = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;

    while (fp != NULL && fgets(line, sizeof line, fp) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    if (fp != NULL)
        fclose(fp);
    return kib;
}

int
main(int argc, char **argv)
{
    size_t streams = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    size_t entries = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000;
    char dir[] = "/tmp/bench_wapi.XXXXXX", wsock[96], bsock[96], c;
    struct sigil_cache *cache = NULL;
    const char *why = NULL;
    int fds[2], status;
    long before, after;
    uv_loop_t loop;
    pid_t pid;
    size_t i;

    if (streams == 0 || entries == 0)
        die("usage: bench_workload_api [STREAMS] [ENTRIES]");
    signal(SIGPIPE, SIG_IGN);
    mint_root();
    memset(base_msg, 'x', sizeof base_msg);
    if (mkdtemp(dir) == NULL || pipe(fds) != 0)
        die("tmp");
    snprintf(wsock, sizeof wsock, "%s/api.sock", dir);
    snprintf(bsock, sizeof bsock, "%s/base.sock", dir);
    if ((pid = fork()) < 0)
        die("fork");
    if (pid == 0) {
        close(fds[0]);
        server(wsock, bsock, fds[1]);
    }
    close(fds[1]);
    if (read(fds[0], &c, 1) != 1)
        die("server did not start");

    printf("Workload API first-response latency (server in its own process, %d streams/conn)\n",
           PER_CLIENT);
    run_phase("warm-up", wsock, "/SpiffeWorkloadAPI/FetchX509SVID", 10);
    run_phase("baseline: bare lib/rpc stream", bsock, "/Bench/First", streams);
    run_phase("FetchX509SVID (attested)", wsock, "/SpiffeWorkloadAPI/FetchX509SVID", streams);
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    unlink(wsock);
    unlink(bsock);
    rmdir(dir);

    /* RSS of an identity cache holding `entries` SVIDs (keys, chains, selectors). */
    uv_loop_init(&loop);
    if (sigil_cache_new(&loop, TD, &cache, &why) != 0)
        die("cache");
    before = rss_kib();
    for (i = 0; i < entries; i++) {
        char sel[48];

        snprintf(sel, sizeof sel, "unix:uid:%zu", 10000 + i);
        add_entry(cache, i, sel);
    }
    after = rss_kib();
    printf("identity cache: %zu SVIDs cached: RSS %.1f MiB, %.1f MiB over the empty-cache "
           "baseline of %.1f MiB (%.1f KiB per SVID)\n",
           entries, (double)after / 1024, (double)(after - before) / 1024, (double)before / 1024,
           (double)(after - before) / (double)entries);
    sigil_cache_free(cache);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    X509_free(root);
    EVP_PKEY_free(root_key);
    return 0;
}
