/* sigil-server ca: root CA rotation for operators (prepare, activate, retire; show reads), over
 * the admin socket (the admin API's /v1/ca routes) or, with --config, locally against the
 * database and key directory. Either way a step opens the CA as no instance (it mints no
 * intermediate), runs in one transaction under the CA lock and writes an audit record. */
#include "cli_ca.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ca.h"
#include "cli.h"
#include "cli_fmt.h"
#include "cli_http.h"
#include "server_config.h"
#include "sigil/db.h"
#include "sigil/err.h"

#define CA_HELP                                                                                    \
    "usage: sigil-server ca show|prepare|activate|retire [--admin-socket PATH | --config FILE]\n"  \
    "                   [--output json]\n"                                                         \
    "\n"                                                                                           \
    "Root CA rotation. By default over the running server's admin socket (the admin API's\n"       \
    "/v1/ca routes, audited under your uid); with --config FILE locally against that\n"            \
    "configuration's database and ca.key_dir (like migrate, e.g. with no server running).\n"       \
    "Running servers follow within ca.check_interval. Each step is one transaction.\n"             \
    "\n"                                                                                           \
    "  show      the CA journal: roots and JWT keys in every state, unexpired intermediates,\n"    \
    "            the bundle sequence; a root says until when SVIDs under it can be valid.\n"       \
    "            With --config it also checks each key file (roots, JWT keys, this\n"              \
    "            instance's intermediates): found in ca.key_dir, readable, mode 0600 or\n"         \
    "            narrower, and the key the journal recorded; one line per key (with --output\n"    \
    "            json only the failed ones, on stderr)\n"                                          \
    "  prepare   make a new root and JWT key and publish them in the bundle (the sequence\n"       \
    "            bumps) before anything is signed with them; give agents and federated\n"          \
    "            peers a refresh interval to fetch the bundle before you activate\n"               \
    "  activate  the prepared root and JWT key become active (servers mint their\n"                \
    "            intermediates under the new root); the previous ones stay published\n"            \
    "  retire    remove old roots no unexpired intermediate chains to, and old JWT keys\n"         \
    "            replaced longer than policy.jwt_ttl.max ago; refused (exit 1) while an\n"         \
    "            old root can still have valid SVIDs under it\n"                                   \
    "\n" COMMON_SOCKET_HELP                                                                        \
    "  --config FILE         run locally with the server's configuration (database.conninfo,\n"    \
    "                        ca.*) instead of over the admin socket\n"                             \
    "  --output json         the journal as JSON\n"                                                \
    "\n"                                                                                           \
    "Exit codes: 0 done; 1 failed or refused (nothing prepared, one prepared already, an old\n"    \
    "root still in use, database unreachable; show --config: an active or prepared key file\n"     \
    "missing, unreadable, wider than 0600 or not the journal's);\n"                                \
    "2 the admin socket could not be reached or the answer was unreadable; 3 invalid\n"            \
    "configuration; 4 refused by the database's state (another trust domain, a CA key that\n"      \
    "does not match the journal); 64 a command line\n"                                             \
    "error.\n"
#define COMMON_SOCKET_HELP                                                                         \
    "  --admin-socket PATH   the server's admin socket (default: $SIGIL_ADMIN_SOCKET, else\n"      \
    "                        " SIGIL_CLI_ADMIN_SOCKET_DEFAULT ")\n"

enum step { STEP_SHOW, STEP_PREPARE, STEP_ACTIVATE, STEP_RETIRE };

static int
usage(const char *msg, const char *arg)
{
    fprintf(stderr, "sigil-server ca: ");
    fprintf(stderr, msg, arg);
    fprintf(stderr, "\n(sigil-server ca --help shows the commands)\n");
    return SIGIL_CLI_EXIT_USAGE;
}

/* A JSON string member, or "-". */
static const char *
str_of(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "-";
}

static void
print_show(const json_t *j)
{
    const json_t *arr = json_object_get(j, "authorities"), *a;
    size_t i;

    printf("Trust domain:     %s\n", str_of(j, "trust_domain"));
    printf("Bundle sequence:  %lld\n\n",
           (long long)json_integer_value(json_object_get(j, "bundle_sequence")));
    printf("%-18s %-9s %-41s %-21s %s\n", "KIND", "STATE", "SERIAL / KID", "NOT AFTER", "NOTE");
    json_array_foreach(arr, i, a)
    {
        const char *kind = str_of(a, "kind"), *note = "";
        char buf[160];
        const json_t *until = json_object_get(a, "signs_unexpired_intermediates_until");

        if (strcmp(kind, "x509_intermediate") == 0) {
            snprintf(buf, sizeof buf, "issued to %s", str_of(a, "issued_to"));
            note = buf;
        } else if (json_is_string(until)) {
            snprintf(buf, sizeof buf, "SVIDs under it can be valid until %s",
                     json_string_value(until));
            note = buf;
        }
        printf("%-18s %-9s %-41s %-21s %s\n", kind, str_of(a, "state"),
               json_is_string(json_object_get(a, "kid")) ? str_of(a, "kid") : str_of(a, "serial"),
               str_of(a, "not_after"), note);
    }
}

/* Why retire kept an old root: the first old root that still signs a live intermediate. */
static void
explain_kept(struct sigil_db_conn *c)
{
    char err[SIGIL_CA_ERR_MAX];
    const char *serial, *until;
    json_t *j = NULL;

    if (sigil_ca_show(c, &j, err, sizeof err) == 0 && sigil_ca_retire_blocker(j, &serial, &until))
        fprintf(stderr,
                "sigil-server ca: old root %s still signs an unexpired intermediate CA, so SVIDs "
                "under it can be valid until %s (retire again after that)\n",
                serial, until);
    json_decref(j);
}

/* True if the journal has an old root (one retire must keep for now). */
static bool
has_old_root(struct sigil_db_conn *c)
{
    struct sigil_db_res *res = NULL;
    int64_t n = 0;
    bool old = sigil_db_exec(c,
                             "SELECT count(*) FROM ca_journal WHERE kind = 'x509_root'"
                             " AND state = 'old'",
                             NULL, 0, &res) == 0 &&
               sigil_db_res_int64(res, 0, 0, &n) == 0 && n > 0;

    sigil_db_res_free(res);
    return old;
}

/* Prints what a step did and the journal (text or JSON). Returns an exit code. */
static int
print_result(enum step step, json_t *shown, bool json, size_t retired)
{
    if (step == STEP_PREPARE)
        printf("prepared a new root CA and JWT key (published, not yet used)\n");
    else if (step == STEP_ACTIVATE)
        printf("activated the prepared root CA and JWT key\n");
    else if (step == STEP_RETIRE)
        printf("retired %zu old authorit%s\n", retired, retired == 1 ? "y" : "ies");
    if (json) {
        char *s = json_dumps(shown, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (s == NULL) {
            fprintf(stderr, "sigil-server ca: out of memory\n");
            return SIGIL_CLI_EXIT_FAIL;
        }
        puts(s);
        free(s);
        return SIGIL_CLI_EXIT_OK;
    }
    if (step != STEP_SHOW)
        printf("\n");
    print_show(shown);
    return SIGIL_CLI_EXIT_OK;
}

/* The exit code for a failure of sigil_ca_open or a step. */
static int
exit_for(int r)
{
    if (r == SIGIL_ERR_STATE || r == SIGIL_ERR_VERIFY)
        return SIGIL_CLI_EXIT_DBSTATE;
    return SIGIL_CLI_EXIT_FAIL;
}

static int
run_step(enum step step, const struct sigil_server_config *cfg, bool json)
{
    struct sigil_ca_params p = {
        .trust_domain = cfg->trust_domain,
        .key_dir = cfg->ca_key_dir,
        .instance_id = NULL, /* an operator's tool signs nothing */
        .root_ttl_s = cfg->ca_root_ttl_ms / 1000,
        .intermediate_ttl_s = cfg->ca_intermediate_ttl_ms / 1000,
        .jwt_key_ttl_s = cfg->ca_jwt_key_ttl_ms / 1000,
        .refresh_hint_s = cfg->ca_refresh_hint_ms / 1000,
        .subject = {cfg->ca_subject_country, cfg->ca_subject_organization,
                    cfg->ca_subject_common_name},
    };
    struct sigil_db_error dberr;
    struct sigil_db_conn *c = NULL;
    struct sigil_ca *ca = NULL;
    char err[SIGIL_CA_ERR_MAX], actor[32];
    json_t *shown = NULL;
    size_t retired = 0;
    int r, code = SIGIL_CLI_EXIT_FAIL;

    if (sigil_db_connect(cfg->db_conninfo, &c, &dberr) != 0) {
        fprintf(stderr, "sigil-server ca: cannot connect to the database: %s\n", dberr.message);
        goto out;
    }
    if (step != STEP_SHOW) {
        snprintf(actor, sizeof actor, "uid:%u", (unsigned)getuid());
        if ((r = sigil_ca_open(c, &p, &ca, NULL, err, sizeof err)) != 0) {
            fprintf(stderr, "sigil-server ca: %s\n", err);
            code = exit_for(r);
            goto out;
        }
        if (sigil_ca_set_actor(ca, actor) != 0) {
            fprintf(stderr, "sigil-server ca: out of memory\n");
            goto out;
        }
        r = step == STEP_PREPARE    ? sigil_ca_prepare(ca, c, err, sizeof err)
            : step == STEP_ACTIVATE ? sigil_ca_activate(ca, c, err, sizeof err)
                                    : sigil_ca_retire(ca, c, cfg->policy_jwt_ttl.max_ms / 1000,
                                                      &retired, err, sizeof err);
        if (r != 0) {
            fprintf(stderr, "sigil-server ca: %s\n", err);
            code = exit_for(r);
            goto out;
        }
        if (step == STEP_RETIRE && retired == 0 && has_old_root(c)) {
            explain_kept(c);
            goto out;
        }
    }
    if ((r = sigil_ca_show(c, &shown, err, sizeof err)) != 0) {
        fprintf(stderr, "sigil-server ca: %s\n", err);
        code = exit_for(r);
        goto out;
    }
    if ((code = print_result(step, shown, json, retired)) != SIGIL_CLI_EXIT_OK)
        goto out;
    if (step == STEP_SHOW) {
        bool keys_ok;

        /* with --output json only failed keys are told, on stderr: stdout stays one JSON
         * document */
        if (!json)
            printf("\nkey files in %s:\n", cfg->ca_key_dir);
        if ((r = sigil_ca_check_keys(c, cfg->ca_key_dir, cfg->instance_id, json,
                                     json ? stderr : stdout, &keys_ok, err, sizeof err)) != 0) {
            fprintf(stderr, "sigil-server ca: %s\n", err);
            code = SIGIL_CLI_EXIT_FAIL;
            goto out;
        }
        if (!keys_ok) {
            fprintf(stderr, "sigil-server ca: a key the server needs is missing or does not match "
                            "the CA journal (see the FAILED lines)\n");
            code = SIGIL_CLI_EXIT_FAIL;
        }
    }
out:
    json_decref(shown);
    sigil_ca_free(ca);
    sigil_db_disconnect(c);
    return code;
}

/* The step over the admin socket: GET /v1/ca or POST /v1/ca:<step>. */
static int
run_remote(enum step step, const char *sock, bool json)
{
    static const char *const targets[] = {"/v1/ca", "/v1/ca:prepare", "/v1/ca:activate",
                                          "/v1/ca:retire"};
    struct sigil_cli_response resp = {0};
    char err[512], code[64], msg[1024];
    json_t *j = NULL;
    int r, exit_code = SIGIL_CLI_EXIT_UNREACHABLE;

    if (sigil_cli_http_init() != 0) {
        fprintf(stderr, "sigil-server ca: cannot start libcurl\n");
        return SIGIL_CLI_EXIT_FAIL;
    }
    if ((r = sigil_cli_http_request(sock, step == STEP_SHOW ? "GET" : "POST", targets[step], NULL,
                                    0, &resp, err, sizeof err)) != 0) {
        fprintf(stderr, "sigil-server ca: %s\n", err);
        goto out;
    }
    if (resp.status != 200) {
        sigil_cli_fmt_error((const char *)resp.body.data, resp.body.len, resp.status, code,
                            sizeof code, msg, sizeof msg);
        if (code[0] != '\0')
            fprintf(stderr, "sigil-server ca: %s (%s)\n", msg, code);
        else
            fprintf(stderr, "sigil-server ca: %s\n", msg);
        exit_code = SIGIL_CLI_EXIT_FAIL;
        goto out;
    }
    if ((j = json_loadb((const char *)resp.body.data, resp.body.len, JSON_REJECT_DUPLICATES,
                        NULL)) == NULL ||
        !json_is_object(j)) {
        fprintf(stderr, "sigil-server ca: the server's answer is not the CA journal\n");
        goto out;
    }
    exit_code =
        print_result(step, j, json, (size_t)json_integer_value(json_object_get(j, "retired")));
out:
    json_decref(j);
    sigil_cli_response_free(&resp);
    return exit_code;
}

int
sigil_cli_ca_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"output", required_argument, NULL, 'o'},
        {"admin-socket", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char *const names[] = {"show", "prepare", "activate", "retire"};
    struct sigil_server_config cfg;
    struct sigil_config_error cerr;
    const char *config = NULL, *sock = NULL;
    bool json = false;
    int c, step = -1, code;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(CA_HELP, argc < 2 ? stderr : stdout);
        return argc < 2 ? SIGIL_CLI_EXIT_USAGE : SIGIL_CLI_EXIT_OK;
    }
    for (int i = 0; i < 4; i++)
        if (strcmp(argv[1], names[i]) == 0)
            step = i;
    if (step < 0)
        return usage("unknown command \"%s\"", argv[1]);
    optind = 1;
    while ((c = getopt_long(argc - 1, argv + 1, "c:o:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            sock = optarg;
            break;
        case 'c':
            config = optarg;
            break;
        case 'o':
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "pretty") != 0)
                return usage("--output takes json or pretty, not \"%s\"", optarg);
            json = strcmp(optarg, "json") == 0;
            break;
        case 'h':
            fputs(CA_HELP, stdout);
            return SIGIL_CLI_EXIT_OK;
        default:
            return SIGIL_CLI_EXIT_USAGE;
        }
    }
    if (optind != argc - 1)
        return usage("unexpected argument \"%s\"", argv[optind + 1]);
    if (config != NULL && sock != NULL)
        return usage("%s", "give --admin-socket or --config, not both");
    if (config == NULL) {
        if (sock == NULL && ((sock = getenv("SIGIL_ADMIN_SOCKET")) == NULL || sock[0] == '\0'))
            sock = SIGIL_CLI_ADMIN_SOCKET_DEFAULT;
        return run_remote((enum step)step, sock, json);
    }
    if (sigil_server_config_load(config, &cfg, &cerr) != 0) {
        fprintf(stderr, "sigil-server ca: %s\n", cerr.text);
        return SIGIL_CLI_EXIT_CONFIG;
    }
    code = run_step((enum step)step, &cfg, json);
    sigil_server_config_free(&cfg);
    return code;
}
