/* A real Workload API (agent/workload_api.c) over a real identity cache, fed by the test instead
 * of a server: mints a root and an intermediate, registers entries, mints their SVIDs, signs
 * JWT-SVIDs with its own ES256 key, rotates SVIDs on a timer and takes commands on a FIFO.
 *
 *   workload_harness --socket PATH [--td example.org] [--federate TD]..
 *                    [--entry ID:SPIFFE_ID:SEL[,SEL..][:hint=H][:fed=TD[,TD..]]]..
 *                    [--rotate-every MS] [--svid-ttl S] [--control FIFO] [--mode 0666]
 *                    [--no-sha256]
 * FIFO lines: "add ID SPIFFE_ID SEL[,SEL..] [hint=H] [fed=TD[,TD..]]", "remove ID", "rotate",
 * "federate TD" (a new root for TD: a changed federated bundle).
 * Prints "READY" once listening; SIGTERM/SIGINT stop it (exit 0 when everything is freed). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "cache.h"
#include "sigil/err.h"
#include "sigil/jwtsvid.h"
#include "sigil/x509.h"
#include "workload_api.h"

#define MAX_ENTRIES 64

static uv_loop_t *loop;
static struct sigil_cache *cache;
static struct sigil_wapi *wapi;
static uv_signal_t sig_term, sig_int;
static uv_timer_t rotate_timer;
static uv_pipe_t control;
static bool have_control;
static char ctl_buf[4096];
static size_t ctl_len;
static const char *td = "example.org";
static EVP_PKEY *int_key, *jwt_key;
static X509 *int_cert;
static long svid_ttl = 3600;
static unsigned long rotations;

static void
die(const char *what, const char *why)
{
    fprintf(stderr, "workload_harness: %s: %s\n", what, why != NULL ? why : "");
    exit(1);
}

/* Mints a fresh key and leaf for entry id. */
static int
mint_svid(const char *id)
{
    const struct sigil_cache_entry *e = sigil_cache_entry_get(cache, id);
    struct sigil_x509_leaf_params lp = {0};
    STACK_OF(X509) *chain = NULL;
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    const char *why = NULL;
    int r = -1;

    if (e == NULL)
        return -1;
    lp.id = &e->spiffe_id;
    lp.not_before = time(NULL) - 60;
    lp.not_after = time(NULL) + svid_ttl;
    if (sigil_x509_key_generate(&key) != 0 ||
        sigil_x509_mint_leaf(&lp, key, int_cert, int_key, &leaf, &why) != 0) {
        fprintf(stderr, "workload_harness: mint %s: %s\n", id, why ? why : "key");
        goto out;
    }
    if ((chain = sk_X509_new_null()) == NULL || !sk_X509_push(chain, leaf))
        goto out;
    leaf = NULL;
    X509_up_ref(int_cert);
    if (!sk_X509_push(chain, int_cert)) {
        X509_free(int_cert);
        goto out;
    }
    if (sigil_cache_set_svid(cache, id, chain, key, &why) != 0) {
        fprintf(stderr, "workload_harness: set svid %s: %s\n", id, why);
        goto out;
    }
    r = 0;
out:
    X509_free(leaf);
    if (chain != NULL)
        sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    return r;
}

/* Registers entry id for spiffe_id with comma-separated selectors, and mints its SVID. */
static int
add_entry(const char *id, const char *spiffe_id, const char *sels, const char *hint,
          const char *fed)
{
    struct sigil_selector_set set = SIGIL_SELECTOR_SET_INIT;
    struct sigil_spiffeid sid;
    const char *why = NULL, *p = sels, *comma, *feds[8];
    char fedbuf[1024];
    size_t nfed = 0;
    int r = -1;

    if (fed != NULL) {
        char *save = NULL, *tok;

        snprintf(fedbuf, sizeof fedbuf, "%s", fed);
        for (tok = strtok_r(fedbuf, ",", &save); tok != NULL && nfed < 8;
             tok = strtok_r(NULL, ",", &save))
            feds[nfed++] = tok;
    }

    if (sigil_spiffeid_parse(spiffe_id, strlen(spiffe_id), &sid, &why) != 0)
        goto out;
    for (;;) {
        comma = strchr(p, ',');
        if (sigil_selector_set_add_str(&set, p, comma ? (size_t)(comma - p) : strlen(p), &why) != 0)
            goto out;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (sigil_cache_put_entry(cache, id, &sid, &set, hint, feds, nfed, &why) != 0)
        goto out;
    r = mint_svid(id);
out:
    if (r != 0 && why != NULL)
        fprintf(stderr, "workload_harness: entry %s: %s\n", id, why);
    sigil_selector_set_free(&set);
    return r;
}

static char *entry_ids[MAX_ENTRIES];
static size_t n_entry_ids;

static void
remember(const char *id)
{
    size_t i;

    for (i = 0; i < n_entry_ids; i++)
        if (strcmp(entry_ids[i], id) == 0)
            return;
    if (n_entry_ids < MAX_ENTRIES)
        entry_ids[n_entry_ids++] = strdup(id);
}

static void
rotate_now(void)
{
    size_t i;

    for (i = 0; i < n_entry_ids; i++)
        if (entry_ids[i] != NULL && sigil_cache_entry_get(cache, entry_ids[i]) != NULL)
            mint_svid(entry_ids[i]);
    rotations++;
}

static void
on_rotate(uv_timer_t *t)
{
    (void)t;
    rotate_now();
}

/* Puts a bundle for trust domain ftd holding a fresh self-signed root. */
static void
federate(const char *ftd)
{
    struct sigil_x509_ca_params ca = {0};
    struct sigil_bundle *b = NULL;
    EVP_PKEY *key = NULL;
    X509 *root = NULL;
    const char *why = NULL;

    ca.trust_domain = ftd;
    ca.subject.common_name = "federated root";
    ca.not_before = time(NULL) - 3600;
    ca.not_after = time(NULL) + 86400;
    ca.path_len = -1;
    if (sigil_x509_key_generate(&key) != 0 || sigil_x509_mint_root(&ca, key, &root, &why) != 0 ||
        sigil_bundle_new(ftd, &b, &why) != 0 || sigil_bundle_x509_add(b, root, &why) != 0) {
        fprintf(stderr, "workload_harness: federate %s: %s\n", ftd, why ? why : "failed");
        sigil_bundle_free(b);
    } else if (sigil_cache_set_bundle(cache, b) != 0) { /* frees b */
        fprintf(stderr, "workload_harness: federate %s: no memory\n", ftd);
    }
    X509_free(root);
    EVP_PKEY_free(key);
}

static void
control_line(char *line)
{
    char *argv[6] = {0}, *save = NULL, *tok;
    int argc = 0;

    for (tok = strtok_r(line, " ", &save); tok != NULL && argc < 6;
         tok = strtok_r(NULL, " ", &save))
        argv[argc++] = tok;
    if (argc >= 4 && strcmp(argv[0], "add") == 0) {
        const char *hint = NULL, *fed = NULL;

        for (int i = 4; i < argc; i++) {
            if (strncmp(argv[i], "hint=", 5) == 0)
                hint = argv[i] + 5;
            else if (strncmp(argv[i], "fed=", 4) == 0)
                fed = argv[i] + 4;
        }
        if (add_entry(argv[1], argv[2], argv[3], hint, fed) == 0)
            remember(argv[1]);
    } else if (argc == 2 && strcmp(argv[0], "federate") == 0) {
        federate(argv[1]);
    } else if (argc == 2 && strcmp(argv[0], "remove") == 0) {
        sigil_cache_remove_entry(cache, argv[1]);
    } else if (argc == 1 && strcmp(argv[0], "rotate") == 0) {
        rotate_now();
    } else if (argc > 0) {
        fprintf(stderr, "workload_harness: unknown control line\n");
    }
    fprintf(stderr, "workload_harness: control done\n");
}

static void
ctl_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)h;
    (void)hint;
    b->base = ctl_buf + ctl_len;
    b->len = sizeof ctl_buf - 1 - ctl_len;
}

static void
ctl_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    char *nl;

    (void)s;
    (void)b;
    if (n <= 0)
        return;
    ctl_len += (size_t)n;
    while ((nl = memchr(ctl_buf, '\n', ctl_len)) != NULL) {
        size_t k = (size_t)(nl - ctl_buf) + 1;

        *nl = '\0';
        control_line(ctl_buf);
        memmove(ctl_buf, ctl_buf + k, ctl_len - k);
        ctl_len -= k;
    }
    if (ctl_len == sizeof ctl_buf - 1)
        ctl_len = 0; /* an overlong line is dropped */
}

/* The JWT minting hook: signs at once with the harness key (5 minutes). */
static int
mint_jwt(void *arg, const struct sigil_spiffeid *id, const char *const *aud, size_t naud,
         sigil_cache_jwt_done_fn done, void *ud)
{
    struct sigil_jwtsvid_params p = {0};
    const char *why = NULL;
    char *token = NULL;
    int r;

    (void)arg;
    p.key = jwt_key;
    p.kid = "harness-jwt-1";
    p.sub = id->str;
    p.aud = aud;
    p.naud = naud;
    p.iat = time(NULL);
    p.exp = p.iat + 300;
    if ((r = sigil_jwtsvid_sign(&p, &token, &why)) != 0)
        return r;
    done(ud, 0, token, NULL);
    sigil_jwtsvid_token_free(token);
    return 0;
}

static void
closed(uv_handle_t *h)
{
    (void)h;
}

static void
wapi_down(void *arg)
{
    (void)arg;
    sigil_cache_free(cache);
    uv_close((uv_handle_t *)&sig_term, closed);
    uv_close((uv_handle_t *)&sig_int, closed);
    uv_close((uv_handle_t *)&rotate_timer, closed);
    if (have_control)
        uv_close((uv_handle_t *)&control, closed);
}

static void
on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    uv_signal_stop(s);
    uv_timer_stop(&rotate_timer);
    if (wapi != NULL) {
        sigil_wapi_shutdown(wapi, 100, wapi_down, NULL);
        wapi = NULL;
    }
}

static void
setup_pki(void)
{
    struct sigil_x509_ca_params ca = {0};
    struct sigil_bundle *b = NULL;
    EVP_PKEY *root_key = NULL;
    X509 *root = NULL;
    const char *why = NULL;

    ca.trust_domain = td;
    ca.subject.organization = "Sigil test";
    ca.subject.common_name = "harness root";
    ca.not_before = time(NULL) - 3600;
    ca.not_after = time(NULL) + 86400;
    ca.path_len = -1;
    if (sigil_x509_key_generate(&root_key) != 0 ||
        sigil_x509_mint_root(&ca, root_key, &root, &why) != 0)
        die("root", why);
    ca.subject.common_name = "harness intermediate";
    if (sigil_x509_key_generate(&int_key) != 0 ||
        sigil_x509_mint_intermediate(&ca, int_key, root, root_key, &int_cert, &why) != 0)
        die("intermediate", why);
    if (sigil_x509_key_generate(&jwt_key) != 0)
        die("jwt key", "");
    if (sigil_bundle_new(td, &b, &why) != 0 || sigil_bundle_x509_add(b, root, &why) != 0 ||
        sigil_bundle_jwt_add(b, "harness-jwt-1", jwt_key, &why) != 0 ||
        sigil_bundle_set_sequence(b, 1) != 0)
        die("bundle", why);
    if (sigil_cache_set_bundle(cache, b) != 0)
        die("bundle", "cache");
    X509_free(root);
    EVP_PKEY_free(root_key);
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'},   {"td", required_argument, NULL, 't'},
        {"entry", required_argument, NULL, 'e'},    {"rotate-every", required_argument, NULL, 'r'},
        {"svid-ttl", required_argument, NULL, 'l'}, {"control", required_argument, NULL, 'c'},
        {"mode", required_argument, NULL, 'm'},     {"no-sha256", no_argument, NULL, 'n'},
        {"federate", required_argument, NULL, 'f'}, {NULL, 0, NULL, 0},
    };
    struct sigil_wapi_opts wo = {0};
    char *entries[MAX_ENTRIES];
    const char *ctl = NULL, *why = NULL;
    size_t n_entries = 0, n_feds = 0, i;
    char *feds[MAX_ENTRIES];
    long rotate_ms = 0;
    int c;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            wo.socket_path = optarg;
            break;
        case 't':
            td = optarg;
            break;
        case 'e':
            if (n_entries == MAX_ENTRIES)
                die("--entry", "too many");
            entries[n_entries++] = optarg;
            break;
        case 'r':
            rotate_ms = strtol(optarg, NULL, 10);
            break;
        case 'l':
            svid_ttl = strtol(optarg, NULL, 10);
            break;
        case 'c':
            ctl = optarg;
            break;
        case 'm':
            wo.mode = (unsigned)strtoul(optarg, NULL, 8);
            break;
        case 'n':
            wo.attest.no_sha256 = true;
            break;
        case 'f':
            if (n_feds == MAX_ENTRIES)
                die("--federate", "too many");
            feds[n_feds++] = optarg;
            break;
        default:
            die("usage", "see the comment at the top of workload_harness.c");
        }
    }
    if (wo.socket_path == NULL)
        die("usage", "--socket PATH is required");
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    if (sigil_cache_new(loop, td, &cache, &why) != 0)
        die("cache", why);
    sigil_cache_set_jwt_minter(cache, mint_jwt, NULL);
    setup_pki();
    for (i = 0; i < n_feds; i++)
        federate(feds[i]);
    for (i = 0; i < n_entries; i++) {
        /* ID:SPIFFE_ID:SELECTORS[:HINT]; the SPIFFE ID holds "://" so split by hand. */
        char *id = entries[i], *sid, *sels, *hint = NULL, *fed = NULL, *p;

        if ((p = strchr(id, ':')) == NULL)
            die("--entry", "ID:SPIFFE_ID:SELECTORS[:HINT]");
        *p = '\0';
        sid = p + 1;
        if (strncmp(sid, "spiffe://", 9) != 0 || (p = strchr(sid + 9, ':')) == NULL)
            die("--entry", "ID:SPIFFE_ID:SELECTORS[:HINT]");
        *p = '\0';
        sels = p + 1;
        /* Selectors hold ':' themselves: ":fed=" and ":hint=" come last, in this order. */
        if ((p = strstr(sels, ":fed=")) != NULL) {
            *p = '\0';
            fed = p + 5;
        }
        if ((p = strstr(sels, ":hint=")) != NULL) {
            *p = '\0';
            hint = p + 6;
        }
        if (add_entry(id, sid, sels, hint, fed) != 0)
            die("--entry", id);
        remember(id);
    }
    if (sigil_wapi_start(loop, cache, &wo, &wapi, &why) != 0)
        die("listen", why);
    uv_timer_init(loop, &rotate_timer);
    if (rotate_ms > 0)
        uv_timer_start(&rotate_timer, on_rotate, (uint64_t)rotate_ms, (uint64_t)rotate_ms);
    if (ctl != NULL) {
        int fd = open(ctl, O_RDWR | O_NONBLOCK | O_CLOEXEC);

        if (fd < 0)
            die("control", strerror(errno));
        uv_pipe_init(loop, &control, 0);
        if (uv_pipe_open(&control, fd) != 0)
            die("control", "uv_pipe_open");
        uv_read_start((uv_stream_t *)&control, ctl_alloc, ctl_read);
        have_control = true;
    }
    uv_signal_init(loop, &sig_term);
    uv_signal_init(loop, &sig_int);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    printf("READY\n");
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    for (i = 0; i < n_entry_ids; i++)
        free(entry_ids[i]);
    X509_free(int_cert);
    EVP_PKEY_free(int_key);
    EVP_PKEY_free(jwt_key);
    fprintf(stderr, "workload_harness: stopped after %lu rotations\n", rotations);
    return 0;
}
