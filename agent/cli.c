/* sigil-agent's commands: Workload API clients for people and scripts (fetch, validate, watch)
 * and a health probe. Each call runs on a private libuv loop with our gRPC client and always
 * sends the `workload.spiffe.io: true` header (E-2). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/x509.h>
#include <uv.h>

#include "cli.h"
#include "endpoint.h"
#include "google/protobuf/struct.pb-c.h"
#include "workload.pb-c.h"

#include "sigil/err.h"
#include "sigil/jwtsvid.h"
#include "sigil/rpc.h"
#include "sigil/spiffeid.h"
#include "sigil/x509.h"

#define API "/SpiffeWorkloadAPI/"

static const struct sigil_rpc_md security_header = {
    .name = "workload.spiffe.io",
    .value = (const uint8_t *)"true",
    .len = 4,
};

static const char usage_main[] =
    "usage: sigil-agent <command> [options]\n"
    "\n"
    "  run --config FILE                     run the agent (sigil-agent run --help;\n"
    "                                        exit 3 when the server banned this agent)\n"
    "\n"
    "Workload API client commands (the socket is --socket PATH|URI, else\n"
    "SPIFFE_ENDPOINT_SOCKET=unix:///path, else " SIGIL_ENDPOINT_DEFAULT "):\n"
    "  api fetch x509 [--write DIR]          fetch this process's X.509-SVIDs and bundle\n"
    "  api fetch jwt --audience A [--spiffe-id ID]\n"
    "                                        fetch JWT-SVIDs for audience A (an ID given\n"
    "                                        as /path is in $SIGIL_TRUST_DOMAIN)\n"
    "  api validate jwt --audience A --token T\n"
    "                                        validate a JWT-SVID through the agent\n"
    "  api watch                             stream X.509-SVID updates until interrupted\n"
    "  healthcheck                           exit 0 if the Workload API answers\n"
    "\n"
    "Each client command takes --help, --socket and --timeout SECONDS (default 10; watch:\n"
    "none).\n"
    "Exit codes: 0 success, 1 the call failed or the agent is unhealthy, 2 usage error.\n";

/* ---- options shared by every command ---- */

struct common {
    const char *socket;
    const char *audience;
    const char *spiffe_id;
    const char *token;
    const char *write_dir;
    long timeout_s;
    char path[SIGIL_ENDPOINT_PATH_MAX + 1];
    char target[SIGIL_ENDPOINT_PATH_MAX + 16];
};

enum { O_SOCKET = 256, O_TIMEOUT, O_AUDIENCE, O_SPIFFE_ID, O_TOKEN, O_WRITE, O_HELP };

/* Parses the options of a command (argv[0] is its name); allowed lists the long options it
 * takes besides --socket, --timeout and --help. Returns 0, 1 for --help, or -1 (printed). */
static int
parse_opts(int argc, char **argv, const char *allowed, const char *usage, struct common *c)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, O_SOCKET},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"audience", required_argument, NULL, O_AUDIENCE},
        {"spiffe-id", required_argument, NULL, O_SPIFFE_ID},
        {"token", required_argument, NULL, O_TOKEN},
        {"write", required_argument, NULL, O_WRITE},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *why = NULL;
    char *end;
    int ch, idx;

    optind = 1;
    opterr = 1;
    while ((ch = getopt_long(argc, argv, "+", opts, &idx)) != -1) {
        if (ch == O_HELP) {
            fputs(usage, stdout);
            return 1;
        }
        if (ch == '?')
            goto bad;
        if (ch != O_SOCKET && ch != O_TIMEOUT && strstr(allowed, opts[idx].name) == NULL) {
            fprintf(stderr, "sigil-agent: --%s is not an option of this command\n", opts[idx].name);
            goto bad;
        }
        switch (ch) {
        case O_SOCKET:
            c->socket = optarg;
            break;
        case O_AUDIENCE:
            c->audience = optarg;
            break;
        case O_SPIFFE_ID:
            c->spiffe_id = optarg;
            break;
        case O_TOKEN:
            c->token = optarg;
            break;
        case O_WRITE:
            c->write_dir = optarg;
            break;
        case O_TIMEOUT:
            errno = 0;
            c->timeout_s = strtol(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || c->timeout_s < 0 || c->timeout_s > 86400) {
                fprintf(stderr, "sigil-agent: --timeout takes 0..86400 seconds\n");
                goto bad;
            }
            break;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "sigil-agent: unexpected argument \"%s\"\n", argv[optind]);
        goto bad;
    }
    if (sigil_endpoint_pick(c->socket, getenv("SPIFFE_ENDPOINT_SOCKET"), c->path, &why) != 0) {
        fprintf(stderr, "sigil-agent: %s socket: %s\n",
                c->socket != NULL ? "--socket" : "SPIFFE_ENDPOINT_SOCKET", why);
        return -1;
    }
    snprintf(c->target, sizeof c->target, "unix://%s", c->path);
    return 0;
bad:
    fputs(usage, stderr);
    return -1;
}

static int
report_status(int code, const char *message)
{
    const char *name = sigil_rpc_code_name(code);

    fprintf(stderr, "sigil-agent: Workload API call failed: %s%s%s\n", name ? name : "UNKNOWN",
            message && *message ? ": " : "", message ? message : "");
    if (code == SIGIL_RPC_PERMISSION_DENIED)
        fprintf(stderr, "sigil-agent: no registration entry matches this process "
                        "(check its selectors with the server's `entry show`)\n");
    if (code == SIGIL_RPC_UNAVAILABLE)
        fprintf(stderr, "sigil-agent: is the agent running, and is the socket path right?\n");
    return SIGIL_AGENT_EXIT_FAILED;
}

/* ---- a server-streaming call on a private loop ---- */

/* Called per message; return false to stop the stream (cancelled, counted as success). */
typedef bool (*stream_fn)(void *ud, const uint8_t *msg, size_t len);

struct stream_run {
    stream_fn fn;
    void *ud;
    int code;
    char *message;
    bool stopped;
    bool failed; /* fn said the message was bad */
};

static void
st_message(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    struct stream_run *s = ud;

    if (s->stopped)
        return;
    if (!s->fn(s->ud, msg, len)) {
        s->stopped = true;
        sigil_rpc_ccall_cancel(call);
    }
}

static void
st_end(struct sigil_rpc_ccall *call, void *ud, int code, const char *message)
{
    struct stream_run *s = ud;

    (void)call;
    s->code = code;
    s->message = strdup(message != NULL ? message : "");
}

/* Runs method as a server stream with an empty request. Returns an exit code. */
static int
run_stream(const struct common *c, const char *method, uint64_t timeout_ms, stream_fn fn, void *ud,
           bool *answered)
{
    static const struct sigil_rpc_ccall_cbs cbs = {.on_message = st_message, .on_end = st_end};
    struct sigil_rpc_client_opts o = {.target = c->target};
    struct sigil_rpc_client *cli = NULL;
    struct stream_run s = {.fn = fn, .ud = ud, .code = -1};
    const char *why = NULL;
    uv_loop_t loop;
    int rc = SIGIL_AGENT_EXIT_FAILED;

    if (answered != NULL)
        *answered = false;
    uv_loop_init(&loop);
    if (sigil_rpc_client_new(&loop, &o, &cli, &why) != 0) {
        fprintf(stderr, "sigil-agent: %s\n", why);
        goto out;
    }
    if (sigil_rpc_client_server_stream(cli, method, &security_header, 1, "", 0, timeout_ms, &cbs,
                                       &s, NULL) != 0) {
        fprintf(stderr, "sigil-agent: cannot start the call\n");
        goto out;
    }
    while (s.code == -1 && uv_run(&loop, UV_RUN_ONCE) != 0)
        ;
    if (answered != NULL)
        *answered = s.stopped || (s.code != SIGIL_RPC_UNAVAILABLE && s.code != -1 &&
                                  s.code != SIGIL_RPC_DEADLINE_EXCEEDED);
    if (s.stopped)
        rc = SIGIL_AGENT_EXIT_OK;
    else if (s.code == SIGIL_RPC_OK)
        rc = SIGIL_AGENT_EXIT_FAILED; /* the stream ended without what we wanted */
    else
        rc = answered != NULL ? SIGIL_AGENT_EXIT_FAILED : report_status(s.code, s.message);
out:
    if (cli != NULL)
        sigil_rpc_client_free(cli);
    while (uv_run(&loop, UV_RUN_DEFAULT) != 0)
        ;
    uv_loop_close(&loop);
    if (answered != NULL && !*answered && s.code != -1)
        report_status(s.code, s.message);
    free(s.message);
    return rc;
}

/* ---- printing and writing SVIDs ---- */

static void
print_time(FILE *fp, time_t t)
{
    struct tm tm;
    char buf[32];

    gmtime_r(&t, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    fputs(buf, fp);
}

static void
print_subject(FILE *fp, X509 *cert)
{
    char buf[512];

    if (X509_NAME_entry_count(X509_get_subject_name(cert)) == 0) {
        fputs("(empty subject)", fp);
        return;
    }
    X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
    fputs(buf, fp);
}

static int
write_file(const char *dir, const char *name, const struct sigil_buf *b)
{
    char path[4096];
    int fd;
    ssize_t k;
    size_t off = 0;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0) {
        fprintf(stderr, "sigil-agent: %s: %s\n", path, strerror(errno));
        return -1;
    }
    while (off < b->len) {
        k = write(fd, b->data + off, b->len - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            fprintf(stderr, "sigil-agent: %s: %s\n", path, strerror(errno));
            close(fd);
            return -1;
        }
        off += (size_t)k;
    }
    return close(fd);
}

/* Prints one X509SVID (and writes svid.N.pem, svid.N.key, bundle.N.pem into dir). */
static int
show_svid(const X509SVID *s, size_t i, const char *dir)
{
    STACK_OF(X509) *chain = NULL, *bundle = NULL;
    EVP_PKEY *key = NULL;
    struct sigil_buf pem = {0};
    const char *why = NULL;
    char name[64];
    time_t exp;
    int r = -1, k;

    if (sigil_x509_chain_parse_der(s->x509_svid.data, s->x509_svid.len, &chain, &why) != 0 ||
        sigil_x509_chain_parse_der(s->bundle.data, s->bundle.len, &bundle, &why) != 0 ||
        sigil_x509_key_parse_der(s->x509_svid_key.data, s->x509_svid_key.len, &key, &why) != 0) {
        fprintf(stderr, "sigil-agent: svid %zu is malformed: %s\n", i, why);
        goto out;
    }
    printf("SPIFFE ID:        %s\n", s->spiffe_id);
    if (s->hint[0] != '\0')
        printf("Hint:             %s\n", s->hint);
    if (sigil_x509_cert_not_after(sk_X509_value(chain, 0), &exp) == 0) {
        printf("SVID valid until: ");
        print_time(stdout, exp);
        printf("\n");
    }
    for (k = 0; k < sk_X509_num(chain); k++) {
        printf(k == 0 ? "Chain:            [0] " : "                  [%d] ", k);
        print_subject(stdout, sk_X509_value(chain, k));
        printf("\n");
    }
    printf("Bundle:           %d authorit%s\n", sk_X509_num(bundle),
           sk_X509_num(bundle) == 1 ? "y" : "ies");
    if (dir != NULL) {
        snprintf(name, sizeof name, "svid.%zu.pem", i);
        if (sigil_x509_chain_to_pem(chain, &pem) != 0 || write_file(dir, name, &pem) != 0)
            goto out;
        sigil_buf_free(&pem);
        snprintf(name, sizeof name, "bundle.%zu.pem", i);
        if (sigil_x509_chain_to_pem(bundle, &pem) != 0 || write_file(dir, name, &pem) != 0)
            goto out;
        /* The key file is written 0600 and atomically, never through a symlink. */
        char path[4096];

        snprintf(path, sizeof path, "%s/svid.%zu.key", dir, i);
        if (sigil_x509_key_write_file(path, key) != 0) {
            fprintf(stderr, "sigil-agent: cannot write %s\n", path);
            goto out;
        }
        printf("Written:          %s/svid.%zu.pem, %s/svid.%zu.key, %s/bundle.%zu.pem\n", dir, i,
               dir, i, dir, i);
    }
    r = 0;
out:
    sigil_buf_free(&pem);
    if (chain != NULL)
        sk_X509_pop_free(chain, X509_free);
    if (bundle != NULL)
        sk_X509_pop_free(bundle, X509_free);
    EVP_PKEY_free(key);
    return r;
}

struct x509_ud {
    const char *dir;
    bool watch;
    unsigned long updates;
    int rc;
};

static bool
on_x509(void *ud, const uint8_t *msg, size_t len)
{
    struct x509_ud *x = ud;
    X509SVIDResponse *resp = x509_svidresponse__unpack(NULL, len, msg);
    size_t i;

    if (resp == NULL) {
        fprintf(stderr, "sigil-agent: malformed X509SVIDResponse\n");
        x->rc = SIGIL_AGENT_EXIT_FAILED;
        return false;
    }
    x->updates++;
    if (x->watch) {
        printf("Update %lu at ", x->updates);
        print_time(stdout, time(NULL));
        printf(": %zu SVID%s\n", resp->n_svids, resp->n_svids == 1 ? "" : "s");
    } else {
        printf("Received %zu SVID%s\n\n", resp->n_svids, resp->n_svids == 1 ? "" : "s");
    }
    x->rc = SIGIL_AGENT_EXIT_OK;
    for (i = 0; i < resp->n_svids; i++) {
        if (show_svid(resp->svids[i], i, x->dir) != 0)
            x->rc = SIGIL_AGENT_EXIT_FAILED;
        printf("\n");
    }
    for (i = 0; i < resp->n_federated_bundles; i++)
        printf("Federated bundle: %s\n", resp->federated_bundles[i]->key);
    fflush(stdout);
    /* The response holds private keys. */
    for (i = 0; i < resp->n_svids; i++)
        OPENSSL_cleanse(resp->svids[i]->x509_svid_key.data, resp->svids[i]->x509_svid_key.len);
    x509_svidresponse__free_unpacked(resp, NULL);
    return x->watch && x->rc == SIGIL_AGENT_EXIT_OK;
}

static int
cmd_fetch_x509(int argc, char **argv, bool watch)
{
    static const char usage_fetch[] =
        "usage: sigil-agent api fetch x509 [--socket PATH|URI] [--timeout S] [--write DIR]\n"
        "Prints each SVID's SPIFFE ID, hint, expiry and chain subjects; --write DIR also\n"
        "writes svid.N.pem (chain), svid.N.key (PKCS#8, mode 0600) and bundle.N.pem.\n";
    static const char usage_watch[] =
        "usage: sigil-agent api watch [--socket PATH|URI] [--timeout S]\n"
        "Streams FetchX509SVID and prints every update until interrupted or the stream ends\n"
        "(then exit 1 with its status).\n";
    struct common c = {.timeout_s = watch ? 0 : 10};
    struct x509_ud x = {.watch = watch, .rc = SIGIL_AGENT_EXIT_FAILED};
    int r;

    if ((r = parse_opts(argc, argv, watch ? "" : "write", watch ? usage_watch : usage_fetch, &c)) !=
        0)
        return r > 0 ? SIGIL_AGENT_EXIT_OK : SIGIL_AGENT_EXIT_USAGE;
    if (c.write_dir != NULL) {
        struct stat st;

        if (stat(c.write_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "sigil-agent: --write %s: not a directory\n", c.write_dir);
            return SIGIL_AGENT_EXIT_USAGE;
        }
    }
    x.dir = c.write_dir;
    r = run_stream(&c, API "FetchX509SVID", (uint64_t)c.timeout_s * 1000, on_x509, &x, NULL);
    if (r != SIGIL_AGENT_EXIT_OK)
        return r;
    return x.rc;
}

/* ---- JWT ---- */

static json_t *value_to_json(const Google__Protobuf__Value *v, unsigned depth);

static json_t *
struct_to_json(const Google__Protobuf__Struct *s, unsigned depth)
{
    json_t *o = json_object();
    size_t i;

    if (o == NULL || depth > 32)
        goto fail;
    for (i = 0; s != NULL && i < s->n_fields; i++) {
        json_t *v = value_to_json(s->fields[i]->value, depth + 1);

        if (v == NULL || json_object_set_new(o, s->fields[i]->key, v) != 0)
            goto fail;
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

static json_t *
value_to_json(const Google__Protobuf__Value *v, unsigned depth)
{
    json_t *a;
    size_t i;

    if (v == NULL || depth > 32)
        return NULL;
    switch (v->kind_case) {
    case GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE:
        if (v->number_value == (double)(json_int_t)v->number_value)
            return json_integer((json_int_t)v->number_value);
        return json_real(v->number_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE:
        return json_string(v->string_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE:
        return json_boolean(v->bool_value);
    case GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE:
        return struct_to_json(v->struct_value, depth);
    case GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE:
        if ((a = json_array()) == NULL)
            return NULL;
        for (i = 0; v->list_value != NULL && i < v->list_value->n_values; i++) {
            if (json_array_append_new(a, value_to_json(v->list_value->values[i], depth + 1)) != 0) {
                json_decref(a);
                return NULL;
            }
        }
        return a;
    default:
        return json_null();
    }
}

static int
unary(const struct common *c, const char *method, const void *req, size_t len,
      struct sigil_rpc_result *res)
{
    struct sigil_rpc_client_opts o = {.target = c->target};
    const char *why = NULL;

    if (sigil_rpc_unary_sync(&o, method, &security_header, 1, req, len,
                             (uint64_t)c->timeout_s * 1000, res, &why) != 0) {
        fprintf(stderr, "sigil-agent: %s\n", why);
        return SIGIL_AGENT_EXIT_FAILED;
    }
    if (res->code != SIGIL_RPC_OK) {
        report_status(res->code, res->message);
        sigil_rpc_result_free(res);
        return SIGIL_AGENT_EXIT_FAILED;
    }
    return SIGIL_AGENT_EXIT_OK;
}

static int
cmd_fetch_jwt(int argc, char **argv)
{
    static const char usage[] =
        "usage: sigil-agent api fetch jwt --audience A [--spiffe-id ID] [--socket PATH|URI]\n"
        "                                 [--timeout S]\n"
        "Prints a JWT-SVID for audience A for each of this process's identities (or only ID;\n"
        "an ID given as /path is spiffe://$SIGIL_TRUST_DOMAIN/path).\n";
    char id[SIGIL_SPIFFEID_MAX + 1];
    const char *td = getenv("SIGIL_TRUST_DOMAIN");
    struct common c = {.timeout_s = 10};
    JWTSVIDRequest req = JWTSVIDREQUEST__INIT;
    JWTSVIDResponse *resp = NULL;
    struct sigil_rpc_result res = {0};
    struct sigil_buf msg = {0};
    char *aud[1];
    size_t i;
    int r;

    if ((r = parse_opts(argc, argv, "audience spiffe-id", usage, &c)) != 0)
        return r > 0 ? SIGIL_AGENT_EXIT_OK : SIGIL_AGENT_EXIT_USAGE;
    if (c.audience == NULL || c.audience[0] == '\0') {
        fprintf(stderr, "sigil-agent: --audience is required (W-8)\n%s", usage);
        return SIGIL_AGENT_EXIT_USAGE;
    }
    aud[0] = (char *)c.audience;
    req.n_audience = 1;
    req.audience = aud;
    if (c.spiffe_id != NULL && c.spiffe_id[0] == '/') {
        if (td == NULL || td[0] == '\0') {
            fprintf(stderr,
                    "sigil-agent: --spiffe-id %s is a path: set SIGIL_TRUST_DOMAIN or give the "
                    "whole spiffe://<trust domain>%s\n",
                    c.spiffe_id, c.spiffe_id);
            return SIGIL_AGENT_EXIT_USAGE;
        }
        if ((size_t)snprintf(id, sizeof id, "spiffe://%s%s", td, c.spiffe_id) >= sizeof id) {
            fprintf(stderr, "sigil-agent: --spiffe-id: longer than %d bytes\n", SIGIL_SPIFFEID_MAX);
            return SIGIL_AGENT_EXIT_USAGE;
        }
        c.spiffe_id = id;
    }
    if (c.spiffe_id != NULL)
        req.spiffe_id = (char *)c.spiffe_id;
    if (sigil_buf_reserve(&msg, jwtsvidrequest__get_packed_size(&req)) != 0)
        return SIGIL_AGENT_EXIT_FAILED;
    msg.len = jwtsvidrequest__pack(&req, msg.data);
    r = unary(&c, API "FetchJWTSVID", msg.data, msg.len, &res);
    sigil_buf_free(&msg);
    if (r != 0)
        return r;
    resp = jwtsvidresponse__unpack(NULL, res.response.len, res.response.data);
    if (resp == NULL) {
        fprintf(stderr, "sigil-agent: malformed JWTSVIDResponse\n");
        r = SIGIL_AGENT_EXIT_FAILED;
    } else {
        for (i = 0; i < resp->n_svids; i++)
            printf("token(%s):\n\t%s\n", resp->svids[i]->spiffe_id, resp->svids[i]->svid);
        for (i = 0; i < resp->n_svids; i++)
            OPENSSL_cleanse(resp->svids[i]->svid, strlen(resp->svids[i]->svid));
        jwtsvidresponse__free_unpacked(resp, NULL);
    }
    sigil_buf_freezero(&res.response);
    sigil_rpc_result_free(&res);
    return r;
}

static int
cmd_validate_jwt(int argc, char **argv)
{
    static const char usage[] =
        "usage: sigil-agent api validate jwt --audience A --token T [--socket PATH|URI]\n"
        "                                    [--timeout S]\n"
        "Asks the agent to validate token T for audience A; prints its SPIFFE ID and claims.\n";
    struct common c = {.timeout_s = 10};
    ValidateJWTSVIDRequest req = VALIDATE_JWTSVIDREQUEST__INIT;
    ValidateJWTSVIDResponse *resp;
    struct sigil_rpc_result res = {0};
    struct sigil_buf msg = {0};
    json_t *claims;
    char *text;
    int r;

    if ((r = parse_opts(argc, argv, "audience token", usage, &c)) != 0)
        return r > 0 ? SIGIL_AGENT_EXIT_OK : SIGIL_AGENT_EXIT_USAGE;
    if (c.audience == NULL || c.token == NULL || !c.audience[0] || !c.token[0]) {
        fprintf(stderr, "sigil-agent: --audience and --token are required (W-10)\n%s", usage);
        return SIGIL_AGENT_EXIT_USAGE;
    }
    req.audience = (char *)c.audience;
    req.svid = (char *)c.token;
    if (sigil_buf_reserve(&msg, validate_jwtsvidrequest__get_packed_size(&req)) != 0)
        return SIGIL_AGENT_EXIT_FAILED;
    msg.len = validate_jwtsvidrequest__pack(&req, msg.data);
    r = unary(&c, API "ValidateJWTSVID", msg.data, msg.len, &res);
    sigil_buf_freezero(&msg);
    if (r != 0)
        return r;
    resp = validate_jwtsvidresponse__unpack(NULL, res.response.len, res.response.data);
    if (resp == NULL) {
        fprintf(stderr, "sigil-agent: malformed ValidateJWTSVIDResponse\n");
        r = SIGIL_AGENT_EXIT_FAILED;
    } else {
        claims = struct_to_json(resp->claims, 0);
        text = claims != NULL ? json_dumps(claims, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        printf("SVID is valid.\nSPIFFE ID : %s\nClaims    : %s\n", resp->spiffe_id,
               text != NULL ? text : "(unreadable)");
        free(text);
        json_decref(claims);
        validate_jwtsvidresponse__free_unpacked(resp, NULL);
    }
    sigil_rpc_result_free(&res);
    return r;
}

/* ---- healthcheck ---- */

static bool
on_any(void *ud, const uint8_t *msg, size_t len)
{
    (void)ud;
    (void)msg;
    (void)len;
    return false;
}

static int
cmd_healthcheck(int argc, char **argv)
{
    static const char usage[] =
        "usage: sigil-agent healthcheck [--socket PATH|URI] [--timeout S]\n"
        "Exit 0 if the Workload API answers a FetchX509Bundles call (any answer from the\n"
        "agent, PermissionDenied included: the agent is up), else 1.\n";
    struct common c = {.timeout_s = 5};
    bool answered = false;
    int r;

    if ((r = parse_opts(argc, argv, "", usage, &c)) != 0)
        return r > 0 ? SIGIL_AGENT_EXIT_OK : SIGIL_AGENT_EXIT_USAGE;
    run_stream(&c, API "FetchX509Bundles", (uint64_t)c.timeout_s * 1000, on_any, NULL, &answered);
    if (!answered) {
        fprintf(stderr, "sigil-agent: unhealthy: no answer on %s\n", c.path);
        return SIGIL_AGENT_EXIT_FAILED;
    }
    printf("healthy\n");
    return SIGIL_AGENT_EXIT_OK;
}

/* ---- dispatch ---- */

static bool
is(const char *a, const char *b)
{
    return a != NULL && strcmp(a, b) == 0;
}

int
sigil_agent_cli_main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : NULL;

    if (cmd == NULL || is(cmd, "--help") || is(cmd, "-h") || is(cmd, "help")) {
        fputs(usage_main, cmd == NULL ? stderr : stdout);
        return cmd == NULL ? SIGIL_AGENT_EXIT_USAGE : SIGIL_AGENT_EXIT_OK;
    }
    if (is(cmd, "--version")) {
        printf("sigil-agent %s\n", SIGIL_VERSION);
        return SIGIL_AGENT_EXIT_OK;
    }
    if (is(cmd, "healthcheck"))
        return cmd_healthcheck(argc - 1, argv + 1);
    if (is(cmd, "api")) {
        const char *a = argc > 2 ? argv[2] : NULL, *b = argc > 3 ? argv[3] : NULL;

        if (is(a, "fetch") && is(b, "x509"))
            return cmd_fetch_x509(argc - 3, argv + 3, false);
        if (is(a, "fetch") && is(b, "jwt"))
            return cmd_fetch_jwt(argc - 3, argv + 3);
        if (is(a, "validate") && is(b, "jwt"))
            return cmd_validate_jwt(argc - 3, argv + 3);
        if (is(a, "watch"))
            return cmd_fetch_x509(argc - 2, argv + 2, true);
        if (is(a, "fetch") || is(a, "validate"))
            a = b; /* "api fetch --help" asks for the list as "api --help" does */
        if (a == NULL || is(a, "--help") || is(a, "-h")) {
            fputs(usage_main, a == NULL ? stderr : stdout);
            return a == NULL ? SIGIL_AGENT_EXIT_USAGE : SIGIL_AGENT_EXIT_OK;
        }
    }
    fprintf(stderr, "sigil-agent: unknown command \"%s%s%s\"\n\n%s", cmd, argc > 2 ? " " : "",
            argc > 2 ? argv[2] : "", usage_main);
    return SIGIL_AGENT_EXIT_USAGE;
}
