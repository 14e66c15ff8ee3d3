/* `entry` command lines to admin API requests, and the local checks of EntryInput. The
 * checks reuse the library's validators, so the CLI and the server name the same rule for
 * the same mistake; the server still checks everything again (it trusts no client). */
#include "cli_req.h"

#include "sigil/duration.h"
#include "sigil/err.h"
#include "sigil/selectors.h"
#include "sigil/spiffeid.h"
#include "sigil/utf8.h"

#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HINT_MAX 1024
#define DNS_NAME_MAX 253
#define TTL_MAX 2147483647LL
#define EXPIRES_AT_MAX 64

enum req_opt {
    O_ADMIN_SOCKET = 256,
    O_OUTPUT,
    O_HELP,
    O_ID,
    O_SPIFFE_ID,
    O_PARENT_ID,
    O_SELECTOR,
    O_X509_TTL,
    O_JWT_TTL,
    O_DNS,
    O_FEDERATES,
    O_ADMIN,
    O_NO_ADMIN,
    O_DOWNSTREAM,
    O_NO_DOWNSTREAM,
    O_HINT,
    O_CLEAR_DNS,
    O_CLEAR_FEDERATES,
    O_MATCH,
    O_TEAM,
    O_PAGE_SIZE,
    O_BATCH_SIZE,
    O_NODE,
};

static const struct option req_options[] = {
    {"admin-socket", required_argument, NULL, O_ADMIN_SOCKET},
    {"output", required_argument, NULL, O_OUTPUT},
    {"help", no_argument, NULL, O_HELP},
    {"id", required_argument, NULL, O_ID},
    {"spiffe-id", required_argument, NULL, O_SPIFFE_ID},
    {"parent-id", required_argument, NULL, O_PARENT_ID},
    {"selector", required_argument, NULL, O_SELECTOR},
    {"x509-ttl", required_argument, NULL, O_X509_TTL},
    {"jwt-ttl", required_argument, NULL, O_JWT_TTL},
    {"dns", required_argument, NULL, O_DNS},
    {"federates-with", required_argument, NULL, O_FEDERATES},
    {"admin", no_argument, NULL, O_ADMIN},
    {"no-admin", no_argument, NULL, O_NO_ADMIN},
    {"downstream", no_argument, NULL, O_DOWNSTREAM},
    {"no-downstream", no_argument, NULL, O_NO_DOWNSTREAM},
    {"hint", required_argument, NULL, O_HINT},
    {"clear-dns", no_argument, NULL, O_CLEAR_DNS},
    {"clear-federates-with", no_argument, NULL, O_CLEAR_FEDERATES},
    {"match", required_argument, NULL, O_MATCH},
    {"team", required_argument, NULL, O_TEAM},
    {"page-size", required_argument, NULL, O_PAGE_SIZE},
    {"batch-size", required_argument, NULL, O_BATCH_SIZE},
    {"node", no_argument, NULL, O_NODE},
    {NULL, 0, NULL, 0},
};

/* Which options each command takes (beyond --admin-socket and --help, which all take). */
struct req_cmd {
    const char *name;
    enum req_opt opts[20];
    bool positional; /* entry import [FILE|-] */
};

static const struct req_cmd req_cmds[] = {
    {"create",
     {O_OUTPUT, O_SPIFFE_ID, O_PARENT_ID, O_SELECTOR, O_X509_TTL, O_JWT_TTL, O_DNS, O_FEDERATES,
      O_ADMIN, O_DOWNSTREAM, O_HINT, O_NODE},
     false},
    {"show",
     {O_OUTPUT, O_ID, O_SPIFFE_ID, O_PARENT_ID, O_SELECTOR, O_MATCH, O_TEAM, O_PAGE_SIZE},
     false},
    {"update",
     {O_OUTPUT, O_ID, O_SPIFFE_ID, O_PARENT_ID, O_SELECTOR, O_X509_TTL, O_JWT_TTL, O_DNS,
      O_FEDERATES, O_ADMIN, O_NO_ADMIN, O_DOWNSTREAM, O_NO_DOWNSTREAM, O_HINT, O_CLEAR_DNS,
      O_CLEAR_FEDERATES},
     false},
    {"delete", {O_ID}, false},
    {"import", {O_BATCH_SIZE}, true},
};
#define REQ_NCMDS (sizeof req_cmds / sizeof req_cmds[0])

/* The parent --node gives: the server ID's path, spiffe://<td>/sigil/server. */
static const char node_parent[] = "/sigil/server";

static void req_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
req_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool
req_cmd_takes(const struct req_cmd *c, int opt)
{
    if (opt == O_ADMIN_SOCKET || opt == O_HELP)
        return true;
    for (size_t i = 0; i < sizeof c->opts / sizeof c->opts[0] && c->opts[i] != 0; i++)
        if ((int)c->opts[i] == opt)
            return true;
    return false;
}

static const char *
req_opt_name(int opt)
{
    for (size_t i = 0; req_options[i].name != NULL; i++)
        if (req_options[i].val == opt)
            return req_options[i].name;
    return "?";
}

int
sigil_cli_int_parse(const char *s, long long min, long long max, long long *out)
{
    long long v = 0;
    size_t i = 0;

    if (s == NULL || s[0] == '\0' || strlen(s) > 19)
        return SIGIL_ERR_INVALID;
    if (s[0] == '0' && s[1] != '\0')
        return SIGIL_ERR_INVALID; /* one spelling per number */
    for (; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9')
            return SIGIL_ERR_INVALID;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s[i] - '0', &v))
            return SIGIL_ERR_INVALID;
    }
    if (v < min || v > max)
        return SIGIL_ERR_INVALID;
    *out = v;
    return 0;
}

int
sigil_cli_output_parse(const char *s, enum sigil_cli_output *out)
{
    if (strcmp(s, "json") == 0)
        *out = SIGIL_CLI_OUTPUT_JSON;
    else if (strcmp(s, "text") == 0 || strcmp(s, "pretty") == 0)
        *out = SIGIL_CLI_OUTPUT_TEXT;
    else
        return SIGIL_ERR_INVALID;
    return 0;
}

int
sigil_cli_ttl_parse(const char *s, long long *seconds, char *err, size_t errlen)
{
    const char *why = NULL;
    int64_t ms = 0;
    int r;

    if ((r = sigil_duration_parse(s, &ms, &why)) != 0) {
        req_err(err, errlen, "%s", why);
        return r;
    }
    if (ms % 1000 != 0) {
        req_err(err, errlen, "TTLs are whole seconds (\"%s\" is not)", s);
        return SIGIL_ERR_INVALID;
    }
    if (ms / 1000 > TTL_MAX) {
        req_err(err, errlen, "TTL over 2147483647 seconds");
        return SIGIL_ERR_RANGE;
    }
    *seconds = ms / 1000;
    return 0;
}

static bool
req_is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool
sigil_cli_uuid_valid(const char *s)
{
    size_t i;

    for (i = 0; i < 36 && s[i] != '\0'; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!req_is_hex(s[i])) {
            return false;
        }
    }
    return i == 36 && s[36] == '\0';
}

static int
req_list_add(const char **list, size_t *n, const char *v, const char *opt, char *err, size_t errlen)
{
    if (*n >= SIGIL_CLI_LIST_MAX) {
        req_err(err, errlen, "--%s given more than %d times", opt, SIGIL_CLI_LIST_MAX);
        return SIGIL_ERR_INVALID;
    }
    list[(*n)++] = v;
    return 0;
}

static int
req_match_parse(const char *s, int *out)
{
    static const char *const names[] = {"exact", "subset", "superset", "any"};

    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = i; /* the same numbers as enum sigil_selector_match */
            return 0;
        }
    }
    return SIGIL_ERR_INVALID;
}

int
sigil_cli_entry_args_parse(const char *cmd, int argc, char **argv, struct sigil_cli_entry_args *a,
                           char *err, size_t errlen)
{
    const struct req_cmd *c = NULL;
    long long v = 0;
    int opt, r = 0;

    memset(a, 0, sizeof *a);
    a->x509_ttl = a->jwt_ttl = -1;
    a->admin = a->downstream = -1;
    a->match = -1;
    a->batch_size = 1000;
    for (size_t i = 0; i < REQ_NCMDS; i++)
        if (strcmp(req_cmds[i].name, cmd) == 0)
            c = &req_cmds[i];
    if (c == NULL) {
        req_err(err, errlen, "unknown command \"entry %s\"", cmd);
        return SIGIL_ERR_INVALID;
    }
    optind = 0; /* GNU getopt: start over (tests parse many command lines) */
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", req_options, NULL)) != -1) {
        const char *arg = optarg;

        if (opt == '?') {
            req_err(err, errlen, "unknown option %s", argv[optind - 1]);
            return SIGIL_ERR_INVALID;
        }
        if (opt == ':') {
            req_err(err, errlen, "option %s needs a value", argv[optind - 1]);
            return SIGIL_ERR_INVALID;
        }
        if (opt == 'h')
            opt = O_HELP;
        if (!req_cmd_takes(c, opt)) {
            req_err(err, errlen, "\"entry %s\" does not take --%s", cmd, req_opt_name(opt));
            return SIGIL_ERR_INVALID;
        }
        switch (opt) {
        case O_ADMIN_SOCKET:
            a->common.admin_socket = arg;
            break;
        case O_OUTPUT:
            if (sigil_cli_output_parse(arg, &a->common.output) != 0) {
                req_err(err, errlen, "--output takes json or text, not \"%s\"", arg);
                return SIGIL_ERR_INVALID;
            }
            break;
        case O_HELP:
            a->common.help = true;
            break;
        case O_ID:
            a->id = arg;
            break;
        case O_SPIFFE_ID:
            a->spiffe_id = arg;
            break;
        case O_PARENT_ID:
        case O_NODE:
            /* --node: the parent is the server ID, a path the caller expands in the trust
             * domain like any other */
            if (a->parent_id == node_parent || (opt == O_NODE && a->parent_id != NULL)) {
                req_err(err, errlen, "--node and --parent-id together: give one (--node sets "
                                     "the parent to the server ID)");
                return SIGIL_ERR_INVALID;
            }
            a->parent_id = opt == O_NODE ? node_parent : arg;
            break;
        case O_SELECTOR:
            r = req_list_add(a->selectors, &a->nselectors, arg, "selector", err, errlen);
            break;
        case O_DNS:
            r = req_list_add(a->dns, &a->ndns, arg, "dns", err, errlen);
            break;
        case O_FEDERATES:
            r = req_list_add(a->federates, &a->nfederates, arg, "federates-with", err, errlen);
            break;
        case O_X509_TTL:
        case O_JWT_TTL: {
            char why[SIGIL_CLI_ERR_MAX];

            if (sigil_cli_ttl_parse(arg, opt == O_X509_TTL ? &a->x509_ttl : &a->jwt_ttl, why,
                                    sizeof why) != 0) {
                req_err(err, errlen, "--%s: %s", req_opt_name(opt), why);
                return SIGIL_ERR_INVALID;
            }
            break;
        }
        case O_ADMIN:
        case O_NO_ADMIN:
            a->admin = opt == O_ADMIN;
            break;
        case O_DOWNSTREAM:
        case O_NO_DOWNSTREAM:
            a->downstream = opt == O_DOWNSTREAM;
            break;
        case O_HINT:
            a->hint = arg;
            break;
        case O_CLEAR_DNS:
            a->clear_dns = true;
            break;
        case O_CLEAR_FEDERATES:
            a->clear_federates = true;
            break;
        case O_MATCH:
            if (req_match_parse(arg, &a->match) != 0) {
                req_err(err, errlen, "--match takes exact, subset, superset or any, not \"%s\"",
                        arg);
                return SIGIL_ERR_INVALID;
            }
            break;
        case O_TEAM:
            a->team = arg;
            break;
        case O_PAGE_SIZE:
            if (sigil_cli_int_parse(arg, 1, SIGIL_CLI_PAGE_MAX, &v) != 0) {
                req_err(err, errlen, "--page-size takes 1 to %d, not \"%s\"", SIGIL_CLI_PAGE_MAX,
                        arg);
                return SIGIL_ERR_INVALID;
            }
            a->page_size = (int)v;
            break;
        case O_BATCH_SIZE:
            if (sigil_cli_int_parse(arg, 1, 10000, &v) != 0) {
                req_err(err, errlen, "--batch-size takes 1 to 10000, not \"%s\"", arg);
                return SIGIL_ERR_INVALID;
            }
            a->batch_size = (int)v;
            break;
        default:
            req_err(err, errlen, "unexpected option");
            return SIGIL_ERR_INVALID;
        }
        if (r != 0)
            return r;
    }
    if (a->common.help)
        return 0;
    if (optind < argc) {
        if (!c->positional || argc - optind > 1) {
            req_err(err, errlen, "unexpected argument \"%s\"",
                    argv[c->positional ? argc - 1 : optind]);
            return SIGIL_ERR_INVALID;
        }
        a->file = argv[optind];
    }
    if (a->clear_dns && a->ndns > 0) {
        req_err(err, errlen, "--clear-dns and --dns together: give one");
        return SIGIL_ERR_INVALID;
    }
    if (a->clear_federates && a->nfederates > 0) {
        req_err(err, errlen, "--clear-federates-with and --federates-with together: give one");
        return SIGIL_ERR_INVALID;
    }
    if ((strcmp(cmd, "update") == 0 || strcmp(cmd, "delete") == 0) && a->id == NULL) {
        req_err(err, errlen, "\"entry %s\" needs --id", cmd);
        return SIGIL_ERR_INVALID;
    }
    if (a->id != NULL && !sigil_cli_uuid_valid(a->id)) {
        req_err(err, errlen, "--id: \"%s\" is not an entry id (a UUID)", a->id);
        return SIGIL_ERR_INVALID;
    }
    if (strcmp(cmd, "show") == 0 && a->id != NULL &&
        (a->spiffe_id != NULL || a->parent_id != NULL || a->nselectors > 0 || a->team != NULL ||
         a->match >= 0 || a->page_size > 0)) {
        req_err(err, errlen, "--id shows one entry: give no filters with it");
        return SIGIL_ERR_INVALID;
    }
    if (a->match >= 0 && a->nselectors == 0) {
        req_err(err, errlen, "--match needs --selector");
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

/* --- checks of EntryInput / EntryPatch */

static const char *const req_entry_fields[] = {
    "spiffe_id",      "parent_id", "selectors",  "x509_svid_ttl", "jwt_svid_ttl", "dns_names",
    "federates_with", "admin",     "downstream", "hint",          "expires_at",
};
#define REQ_NFIELDS (sizeof req_entry_fields / sizeof req_entry_fields[0])

static int
req_check_id(const json_t *v, const char *field, bool leaf, char *err, size_t errlen)
{
    struct sigil_spiffeid id;
    const char *why = NULL;

    if (!json_is_string(v)) {
        req_err(err, errlen, "%s: must be a string", field);
        return SIGIL_ERR_INVALID;
    }
    if (sigil_spiffeid_parse(json_string_value(v), json_string_length(v), &id, &why) != 0) {
        req_err(err, errlen, "%s: %s", field, why);
        return SIGIL_ERR_INVALID;
    }
    if (leaf && !sigil_spiffeid_has_path(&id)) {
        req_err(err, errlen, "%s: X-2: a workload's SPIFFE ID needs a path (\"%s\" has none)",
                field, id.str);
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

static int
req_check_selectors(const json_t *v, char *err, size_t errlen)
{
    struct sigil_selector_set set = SIGIL_SELECTOR_SET_INIT;
    const char *why = NULL;
    size_t i;
    json_t *s;
    int r = SIGIL_ERR_INVALID;

    if (!json_is_array(v) || json_array_size(v) == 0) {
        req_err(err, errlen, "selectors: give at least one (type:value, e.g. unix:uid:1000)");
        return SIGIL_ERR_INVALID;
    }
    if (json_array_size(v) > SIGIL_SELECTOR_SET_MAX) {
        req_err(err, errlen, "selectors: more than %d", SIGIL_SELECTOR_SET_MAX);
        return SIGIL_ERR_INVALID;
    }
    json_array_foreach(v, i, s)
    {
        size_t before = set.count;

        if (!json_is_string(s)) {
            req_err(err, errlen, "selectors[%zu]: must be a string \"type:value\"", i);
            goto out;
        }
        if (sigil_selector_set_add_str(&set, json_string_value(s), json_string_length(s), &why) !=
            0) {
            req_err(err, errlen, "selector \"%.80s\": %s", json_string_value(s), why);
            goto out;
        }
        if (set.count == before) {
            req_err(err, errlen, "selector \"%.80s\" is given twice", json_string_value(s));
            goto out;
        }
    }
    r = 0;
out:
    sigil_selector_set_free(&set);
    return r;
}

static bool
req_dns_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* RFC 1123 host names, with one leading "*." wildcard label as X.509 allows. */
static bool
req_dns_valid(const char *s, size_t len)
{
    size_t i = 0, label = 0;

    if (len == 0 || len > DNS_NAME_MAX)
        return false;
    if (len > 2 && s[0] == '*' && s[1] == '.')
        i = 2;
    for (; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-')
                return false;
            label = 0;
        } else if (req_dns_char(s[i])) {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

static int
req_check_strings(const json_t *v, const char *field, bool dns, char *err, size_t errlen)
{
    const char *why = NULL;
    size_t i;
    json_t *s;

    if (!json_is_array(v) || json_array_size(v) > SIGIL_CLI_LIST_MAX) {
        req_err(err, errlen, "%s: must be a list of at most %d strings", field, SIGIL_CLI_LIST_MAX);
        return SIGIL_ERR_INVALID;
    }
    json_array_foreach(v, i, s)
    {
        if (!json_is_string(s)) {
            req_err(err, errlen, "%s[%zu]: must be a string", field, i);
            return SIGIL_ERR_INVALID;
        }
        if (dns && !req_dns_valid(json_string_value(s), json_string_length(s))) {
            req_err(err, errlen,
                    "%s: \"%.80s\" is not a DNS name (labels of letters, digits "
                    "and '-', at most 253 bytes)",
                    field, json_string_value(s));
            return SIGIL_ERR_INVALID;
        }
        if (!dns &&
            sigil_trust_domain_check(json_string_value(s), json_string_length(s), &why) != 0) {
            req_err(err, errlen, "%s: \"%.80s\": %s", field, json_string_value(s), why);
            return SIGIL_ERR_INVALID;
        }
    }
    return 0;
}

/* RFC 3339 date-time "YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)"; the server parses it
 * fully, this only catches a unix timestamp or a date without a time early. */
static bool
req_rfc3339_shape(const char *s, size_t len)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";

    if (len < 20 || len > EXPIRES_AT_MAX)
        return false;
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return false;
    }
    return s[len - 1] == 'Z' || (len >= 25 && s[len - 3] == ':');
}

int
sigil_cli_entry_input_check(const json_t *in, bool patch, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    int r;

    if (!json_is_object(in)) {
        req_err(err, errlen, "an entry must be a JSON object");
        return SIGIL_ERR_INVALID;
    }
    json_object_foreach((json_t *)in, key, v)
    {
        size_t i;

        for (i = 0; i < REQ_NFIELDS; i++)
            if (strcmp(key, req_entry_fields[i]) == 0)
                break;
        if (i == REQ_NFIELDS || (patch && strcmp(key, "expires_at") == 0)) {
            req_err(err, errlen, "unknown field \"%.64s\"", key);
            return SIGIL_ERR_INVALID;
        }
    }
    if (!patch) {
        if (json_object_get(in, "spiffe_id") == NULL) {
            req_err(err, errlen, "spiffe_id: required");
            return SIGIL_ERR_INVALID;
        }
        if (json_object_get(in, "parent_id") == NULL) {
            req_err(err, errlen, "parent_id: required");
            return SIGIL_ERR_INVALID;
        }
        if (json_object_get(in, "selectors") == NULL) {
            req_err(err, errlen, "selectors: required (type:value, e.g. unix:uid:1000)");
            return SIGIL_ERR_INVALID;
        }
    }
    if ((v = json_object_get(in, "spiffe_id")) != NULL &&
        (r = req_check_id(v, "spiffe_id", true, err, errlen)) != 0)
        return r;
    if ((v = json_object_get(in, "parent_id")) != NULL &&
        (r = req_check_id(v, "parent_id", false, err, errlen)) != 0)
        return r;
    if ((v = json_object_get(in, "selectors")) != NULL &&
        (r = req_check_selectors(v, err, errlen)) != 0)
        return r;
    for (int t = 0; t < 2; t++) {
        const char *f = t == 0 ? "x509_svid_ttl" : "jwt_svid_ttl";

        if ((v = json_object_get(in, f)) != NULL &&
            (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > TTL_MAX)) {
            req_err(err, errlen, "%s: seconds, 0 to %lld (0: the server's default)", f, TTL_MAX);
            return SIGIL_ERR_INVALID;
        }
    }
    if ((v = json_object_get(in, "dns_names")) != NULL &&
        (r = req_check_strings(v, "dns_names", true, err, errlen)) != 0)
        return r;
    if ((v = json_object_get(in, "federates_with")) != NULL &&
        (r = req_check_strings(v, "federates_with", false, err, errlen)) != 0)
        return r;
    for (int t = 0; t < 2; t++) {
        const char *f = t == 0 ? "admin" : "downstream";

        if ((v = json_object_get(in, f)) != NULL && !json_is_boolean(v)) {
            req_err(err, errlen, "%s: must be true or false", f);
            return SIGIL_ERR_INVALID;
        }
    }
    if ((v = json_object_get(in, "hint")) != NULL &&
        (!json_is_string(v) || json_string_length(v) > HINT_MAX)) {
        req_err(err, errlen, "hint: a string of at most %d bytes", HINT_MAX);
        return SIGIL_ERR_INVALID;
    }
    if ((v = json_object_get(in, "expires_at")) != NULL &&
        (!json_is_string(v) || !req_rfc3339_shape(json_string_value(v), json_string_length(v)))) {
        req_err(err, errlen, "expires_at: an RFC 3339 time such as 2027-01-31T12:00:00Z");
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

/* --- bodies and targets */

static int
req_set_new(json_t *obj, const char *key, json_t *v)
{
    /* json_object_set_new steals v even when it fails */
    return v != NULL && json_object_set_new(obj, key, v) == 0 ? 0 : SIGIL_ERR_NOMEM;
}

static json_t *
req_str_array(const char *const *list, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < n; i++) {
        if (json_array_append_new(a, json_string(list[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* --federates-with takes "td" or "spiffe://td" (SPIRE's form); the API wants the bare name. */
static int
req_trust_domains(const struct sigil_cli_entry_args *a, json_t **out, char *err, size_t errlen)
{
    char td[SIGIL_TRUST_DOMAIN_MAX + 1];
    const char *why = NULL;
    json_t *arr = json_array();

    if (arr == NULL)
        return SIGIL_ERR_NOMEM;
    for (size_t i = 0; i < a->nfederates; i++) {
        if (sigil_trust_domain_parse(a->federates[i], strlen(a->federates[i]), td, &why) != 0) {
            req_err(err, errlen, "--federates-with \"%.80s\": %s", a->federates[i], why);
            json_decref(arr);
            return SIGIL_ERR_INVALID;
        }
        if (json_array_append_new(arr, json_string(td)) != 0) {
            json_decref(arr);
            return SIGIL_ERR_NOMEM;
        }
    }
    *out = arr;
    return 0;
}

static bool
req_utf8(const char *s)
{
    size_t n = strlen(s);
    uint32_t cp;

    for (size_t i = 0, k; i < n; i += k)
        if ((k = sigil_utf8_decode((const unsigned char *)s + i, n - i, &cp)) == 0)
            return false;
    return true;
}

/* JSON strings are UTF-8: name the option whose value is not, before jansson refuses it. */
static int
req_check_utf8(const struct sigil_cli_entry_args *a, char *err, size_t errlen)
{
    const char *one[] = {a->spiffe_id, a->parent_id, a->hint};
    const char *names[] = {"spiffe-id", "parent-id", "hint"};

    for (size_t i = 0; i < 3; i++) {
        if (one[i] != NULL && !req_utf8(one[i])) {
            req_err(err, errlen, "--%s: not valid UTF-8", names[i]);
            return SIGIL_ERR_INVALID;
        }
    }
    for (size_t i = 0; i < a->nselectors; i++)
        if (!req_utf8(a->selectors[i])) {
            req_err(err, errlen, "--selector: not valid UTF-8");
            return SIGIL_ERR_INVALID;
        }
    for (size_t i = 0; i < a->ndns; i++)
        if (!req_utf8(a->dns[i])) {
            req_err(err, errlen, "--dns: not valid UTF-8");
            return SIGIL_ERR_INVALID;
        }
    return 0;
}

/* The fields create and update share; each only if given. */
static int
req_fields(const struct sigil_cli_entry_args *a, json_t *o, char *err, size_t errlen)
{
    json_t *tds = NULL;
    int r = SIGIL_ERR_NOMEM;

    if ((r = req_check_utf8(a, err, errlen)) != 0)
        return r;
    if ((a->spiffe_id != NULL && req_set_new(o, "spiffe_id", json_string(a->spiffe_id)) != 0) ||
        (a->parent_id != NULL && req_set_new(o, "parent_id", json_string(a->parent_id)) != 0) ||
        (a->nselectors > 0 &&
         req_set_new(o, "selectors", req_str_array(a->selectors, a->nselectors)) != 0) ||
        (a->x509_ttl >= 0 && req_set_new(o, "x509_svid_ttl", json_integer(a->x509_ttl)) != 0) ||
        (a->jwt_ttl >= 0 && req_set_new(o, "jwt_svid_ttl", json_integer(a->jwt_ttl)) != 0) ||
        ((a->ndns > 0 || a->clear_dns) &&
         req_set_new(o, "dns_names", req_str_array(a->dns, a->ndns)) != 0) ||
        (a->admin >= 0 && req_set_new(o, "admin", json_boolean(a->admin)) != 0) ||
        (a->downstream >= 0 && req_set_new(o, "downstream", json_boolean(a->downstream)) != 0) ||
        (a->hint != NULL && req_set_new(o, "hint", json_string(a->hint)) != 0))
        return SIGIL_ERR_NOMEM;
    if (a->nfederates > 0 || a->clear_federates) {
        if ((r = req_trust_domains(a, &tds, err, errlen)) != 0)
            return r;
        if (req_set_new(o, "federates_with", tds) != 0)
            return SIGIL_ERR_NOMEM;
    }
    return 0;
}

static int
req_build(const struct sigil_cli_entry_args *a, bool patch, json_t **out, char *err, size_t errlen)
{
    json_t *o = json_object();
    int r;

    *out = NULL;
    if (o == NULL) {
        req_err(err, errlen, "out of memory");
        return SIGIL_ERR_NOMEM;
    }
    if ((r = req_fields(a, o, err, errlen)) != 0) {
        if (r == SIGIL_ERR_NOMEM)
            req_err(err, errlen, "out of memory");
        goto out;
    }
    if (patch && json_object_size(o) == 0) {
        req_err(err, errlen, "nothing to update: give at least one field to change");
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    if ((r = sigil_cli_entry_input_check(o, patch, err, errlen)) != 0)
        goto out;
    *out = o;
    o = NULL;
out:
    json_decref(o);
    return r;
}

int
sigil_cli_entry_input_build(const struct sigil_cli_entry_args *a, json_t **out, char *err,
                            size_t errlen)
{
    if (a->spiffe_id == NULL || a->parent_id == NULL || a->nselectors == 0) {
        req_err(err, errlen,
                "\"entry create\" needs --spiffe-id, --parent-id and at least one "
                "--selector");
        *out = NULL;
        return SIGIL_ERR_INVALID;
    }
    return req_build(a, false, out, err, errlen);
}

int
sigil_cli_entry_patch_build(const struct sigil_cli_entry_args *a, json_t **out, char *err,
                            size_t errlen)
{
    return req_build(a, true, out, err, errlen);
}

static bool
req_unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

int
sigil_cli_urlenc_append(struct sigil_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";

    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};

        if (req_unreserved(*p) ? sigil_buf_append(b, p, 1) != 0
                               : sigil_buf_append(b, esc, sizeof esc) != 0)
            return SIGIL_ERR_NOMEM;
    }
    return 0;
}

static int
req_query(struct sigil_buf *b, bool *first, const char *key, const char *value)
{
    if (sigil_buf_append_str(b, *first ? "?" : "&") != 0 || sigil_buf_append_str(b, key) != 0 ||
        sigil_buf_append_str(b, "=") != 0 || sigil_cli_urlenc_append(b, value) != 0)
        return SIGIL_ERR_NOMEM;
    *first = false;
    return 0;
}

int
sigil_cli_entry_list_target(const struct sigil_cli_entry_args *a, const char *page_token,
                            char **out, char *err, size_t errlen)
{
    static const char *const match_names[] = {"exact", "subset", "superset", "any"};
    struct sigil_buf b = {0};
    struct sigil_spiffeid id;
    struct sigil_selector sel;
    const char *why = NULL;
    char num[24];
    bool first = true;
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    for (int t = 0; t < 2; t++) {
        const char *v = t == 0 ? a->spiffe_id : a->parent_id;

        if (v != NULL && sigil_spiffeid_parse(v, strlen(v), &id, &why) != 0) {
            req_err(err, errlen, "--%s: %s", t == 0 ? "spiffe-id" : "parent-id", why);
            r = SIGIL_ERR_INVALID;
            goto out;
        }
    }
    for (size_t i = 0; i < a->nselectors; i++) {
        if (sigil_selector_parse(a->selectors[i], strlen(a->selectors[i]), &sel, &why) != 0) {
            req_err(err, errlen, "--selector \"%.80s\": %s", a->selectors[i], why);
            r = SIGIL_ERR_INVALID;
            goto out;
        }
        sigil_selector_free(&sel);
    }
    if (sigil_buf_append_str(&b, "/v1/entries") != 0 ||
        (a->spiffe_id != NULL && req_query(&b, &first, "spiffe_id", a->spiffe_id) != 0) ||
        (a->parent_id != NULL && req_query(&b, &first, "parent_id", a->parent_id) != 0))
        goto out;
    for (size_t i = 0; i < a->nselectors; i++)
        if (req_query(&b, &first, "selector", a->selectors[i]) != 0)
            goto out;
    if ((a->match >= 0 && a->match < 4 &&
         req_query(&b, &first, "match", match_names[a->match]) != 0) ||
        (a->team != NULL && req_query(&b, &first, "team", a->team) != 0))
        goto out;
    if (a->page_size > 0) {
        snprintf(num, sizeof num, "%d", a->page_size);
        if (req_query(&b, &first, "page_size", num) != 0)
            goto out;
    }
    if (page_token != NULL && req_query(&b, &first, "page_token", page_token) != 0)
        goto out;
    if ((*out = sigil_buf_strdup(&b)) == NULL)
        goto out;
    r = 0;
out:
    if (r == SIGIL_ERR_NOMEM)
        req_err(err, errlen, "out of memory");
    sigil_buf_free(&b);
    return r;
}
