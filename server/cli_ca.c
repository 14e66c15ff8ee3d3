/* sigil-server ca: root CA rotation for operators (prepare, activate, retire; show reads). Each
 * step opens the CA the way a server does, but as no instance (it mints no intermediate), runs
 * in one transaction under the CA lock and writes an audit record naming the local uid. */
#include "cli_ca.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ca.h"
#include "cli.h"
#include "server_config.h"
#include "sigil/db.h"
#include "sigil/err.h"

#define CA_HELP                                                                                    \
    "usage: sigil-server ca show|prepare|activate|retire --config FILE [--output json]\n"          \
    "\n"                                                                                           \
    "Root CA rotation, run on a host with the server's configuration: the commands open its\n"     \
    "database and ca.key_dir directly (like migrate); running servers follow within\n"             \
    "ca.check_interval. Each step is one transaction and writes an audit record (uid:<you>).\n"    \
    "\n"                                                                                           \
    "  show      the CA journal: roots and JWT keys in every state, unexpired intermediates,\n"    \
    "            the bundle sequence; a root says until when SVIDs under it can be valid\n"        \
    "  prepare   make a new root and JWT key and publish them in the bundle (the sequence\n"       \
    "            bumps) before anything is signed with them; give agents and federated\n"          \
    "            peers a refresh interval to fetch the bundle before you activate\n"               \
    "  activate  the prepared root and JWT key become active (servers mint their\n"                \
    "            intermediates under the new root); the previous ones stay published\n"            \
    "  retire    remove old roots no unexpired intermediate chains to, and old JWT keys\n"         \
    "            replaced longer than policy.jwt_ttl.max ago; refused (exit 1) while an\n"         \
    "            old root can still have valid SVIDs under it\n"                                   \
    "\n"                                                                                           \
    "  --config FILE   the server's configuration (database.conninfo, ca.*)\n"                     \
    "  --output json   show: the journal as JSON\n"                                                \
    "\n"                                                                                           \
    "Exit codes: 0 done; 1 failed or refused (nothing prepared, one prepared already, an old\n"    \
    "root still in use, database unreachable); 3 invalid configuration; 4 refused by the\n"        \
    "database's state (another trust domain, a CA key that does not match the journal);\n"         \
    "64 a command line error.\n"

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
    json_t *j = NULL, *a;
    size_t i;

    if (sigil_ca_show(c, &j, err, sizeof err) != 0)
        return;
    json_array_foreach(json_object_get(j, "authorities"), i, a)
    {
        if (strcmp(str_of(a, "kind"), "x509_root") == 0 && strcmp(str_of(a, "state"), "old") == 0 &&
            json_is_string(json_object_get(a, "signs_unexpired_intermediates_until"))) {
            fprintf(stderr,
                    "sigil-server ca: retire refused: old root %s still signs an unexpired "
                    "intermediate CA, so SVIDs under it can be valid until %s (run retire again "
                    "after that)\n",
                    str_of(a, "serial"), str_of(a, "signs_unexpired_intermediates_until"));
            break;
        }
    }
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
            goto out;
        }
        puts(s);
        free(s);
    } else {
        if (step != STEP_SHOW)
            printf("\n");
        print_show(shown);
    }
    code = SIGIL_CLI_EXIT_OK;
out:
    json_decref(shown);
    sigil_ca_free(ca);
    sigil_db_disconnect(c);
    return code;
}

int
sigil_cli_ca_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"output", required_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    static const char *const names[] = {"show", "prepare", "activate", "retire"};
    struct sigil_server_config cfg;
    struct sigil_config_error cerr;
    const char *config = NULL;
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
    while ((c = getopt_long(argc - 1, argv + 1, "c:o:h", opts, NULL)) != -1) {
        switch (c) {
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
    if (config == NULL)
        return usage("%s", "--config FILE is required (the server's configuration)");
    if (sigil_server_config_load(config, &cfg, &cerr) != 0) {
        fprintf(stderr, "sigil-server ca: %s\n", cerr.text);
        return SIGIL_CLI_EXIT_CONFIG;
    }
    code = run_step((enum step)step, &cfg, json);
    sigil_server_config_free(&cfg);
    return code;
}
