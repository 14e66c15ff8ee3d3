/* sigil-server's admin commands: parse a SPIRE-shaped command line, check what can be
 * checked locally, send one request (or a page loop, or import batches) over the admin
 * socket, print the answer as aligned text or as the API's JSON. Exit codes: cli.h. */
#include "cli.h"

#include "cli_fmt.h"
#include "cli_http.h"
#include "cli_import.h"
#include "cli_req.h"

#include "sigil/bundle.h"
#include "sigil/err.h"
#include "sigil/spiffeid.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/pem.h>

#define EXIT_OK SIGIL_CLI_EXIT_OK
#define EXIT_FAIL SIGIL_CLI_EXIT_FAIL
#define EXIT_UNREACHABLE SIGIL_CLI_EXIT_UNREACHABLE
#define EXIT_USAGE SIGIL_CLI_EXIT_USAGE

/* Stop a page loop that does not end (a server bug must not hang a script). */
#define PAGES_MAX 100000
/* Import batches stay under the API's 1 MiB body cap with room to spare. */
#define BATCH_BODY_MAX (900u * 1024)
/* Largest bundle file `bundle set` reads. */
#define BUNDLE_FILE_MAX (1024u * 1024)

#define EXIT_CODES_HELP                                                                            \
    "Exit codes: 0 done; 1 the server (or a local check) refused the request, or import\n"         \
    "items failed; 2 the admin socket could not be reached or the answer was unreadable;\n"        \
    "64 a command line error (the same scheme as every sigil-server command).\n"
#define COMMON_HELP                                                                                \
    "  --admin-socket PATH   the server's admin socket (default: $SIGIL_ADMIN_SOCKET, else\n"      \
    "                        " SIGIL_CLI_ADMIN_SOCKET_DEFAULT ")\n"

/* What every command carries once its options are parsed. */
struct cli {
    const char *socket;
    enum sigil_cli_output output;
};

static void cli_usage_error(const char *group, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
cli_usage_error(const char *group, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sigil-server %s: ", group);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see \"sigil-server %s --help\")\n", group);
}

static void
cli_init(struct cli *c, const struct sigil_cli_common *common)
{
    const char *env = getenv("SIGIL_ADMIN_SOCKET");

    c->output = common->output;
    if (common->admin_socket != NULL)
        c->socket = common->admin_socket;
    else if (env != NULL && env[0] != '\0')
        c->socket = env;
    else
        c->socket = SIGIL_CLI_ADMIN_SOCKET_DEFAULT;
}

/* An ID option given as a path ("/dev/onprem/pay/api") names that path in the trust domain
 * $SIGIL_TRUST_DOMAIN: the full ID goes into buf (SIGIL_SPIFFEID_MAX + 1 bytes). Any other
 * value is returned as it is, to be checked where it is used. NULL (printed): a path with
 * the variable unset or empty, or an ID too long. */
static const char *
cli_expand_id(const char *group, const char *opt, const char *v, char *buf)
{
    const char *td = getenv("SIGIL_TRUST_DOMAIN");

    if (v == NULL || v[0] != '/')
        return v;
    if (td == NULL || td[0] == '\0') {
        cli_usage_error(group,
                        "--%s %s is a path: set SIGIL_TRUST_DOMAIN or give the whole "
                        "spiffe://<trust domain>%s",
                        opt, v, v);
        return NULL;
    }
    if ((size_t)snprintf(buf, SIGIL_SPIFFEID_MAX + 1, "spiffe://%s%s", td, v) >
        SIGIL_SPIFFEID_MAX) {
        fprintf(stderr, "Error: --%s: the SPIFFE ID is longer than %d bytes\n", opt,
                SIGIL_SPIFFEID_MAX);
        return NULL;
    }
    return buf;
}

static void
cli_write(const void *p, size_t n)
{
    if (n > 0)
        fwrite(p, 1, n, stdout);
}

/* Says so and returns EXIT_FAIL: the one message for an allocation that failed. */
static int
cli_nomem(void)
{
    fprintf(stderr, "Error: out of memory\n");
    return EXIT_FAIL;
}

/* True if the answer's body is one JSON document. */
static bool
cli_is_json(const struct sigil_cli_response *resp)
{
    json_t *j;

    if (resp->body.len == 0 || (j = json_loadb((const char *)resp->body.data, resp->body.len,
                                               JSON_REJECT_DUPLICATES, NULL)) == NULL)
        return false;
    json_decref(j);
    return true;
}

/* Prints an API error: "Error: <message>" on stderr; in JSON mode the error document goes to
 * stdout too, and the code to stderr, so a script can branch on it. */
static void
cli_print_api_error(const struct cli *c, const struct sigil_cli_response *resp)
{
    char code[128], msg[1024];

    sigil_cli_fmt_error((const char *)resp->body.data, resp->body.len, resp->status, code,
                        sizeof code, msg, sizeof msg);
    if (c->output == SIGIL_CLI_OUTPUT_JSON) {
        /* stdout gets JSON or nothing: a proxy's HTML page is not passed on */
        if (cli_is_json(resp)) {
            cli_write(resp->body.data, resp->body.len);
            if (resp->body.data[resp->body.len - 1] != '\n')
                putchar('\n');
        }
        fprintf(stderr, "Error: %s%s%s%s\n", msg, code[0] != '\0' ? " (code " : "", code,
                code[0] != '\0' ? ")" : "");
    } else {
        fprintf(stderr, "Error: %s\n", msg);
    }
}

/* Sends one request; body (may be NULL) is serialised compactly. Returns EXIT_OK with resp
 * filled for a 2xx answer, or prints why and returns EXIT_FAIL / EXIT_UNREACHABLE. */
static int
cli_call(const struct cli *c, const char *method, const char *target, const json_t *body,
         struct sigil_cli_response *resp)
{
    char err[SIGIL_CLI_ERR_MAX];
    char *s = NULL;
    int r;

    memset(resp, 0, sizeof *resp);
    if (body != NULL && (s = json_dumps(body, JSON_COMPACT)) == NULL) {
        fprintf(stderr, "Error: out of memory\n");
        return EXIT_FAIL;
    }
    r = sigil_cli_http_request(c->socket, method, target, s, s != NULL ? strlen(s) : 0, resp, err,
                               sizeof err);
    if (s != NULL)
        OPENSSL_cleanse(s, strlen(s));
    free(s);
    if (r != 0) {
        fprintf(stderr, "Error: %s\n", err);
        sigil_cli_response_free(resp);
        return EXIT_UNREACHABLE;
    }
    if (resp->status < 200 || resp->status > 299) {
        cli_print_api_error(c, resp);
        sigil_cli_response_free(resp);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

/* Parses a 2xx answer's JSON. Returns EXIT_OK, or prints why and returns EXIT_UNREACHABLE
 * (the server spoke, but not the contract). */
static int
cli_parse(const struct sigil_cli_response *resp, json_t **out)
{
    json_error_t e;

    *out = json_loadb((const char *)resp->body.data, resp->body.len, JSON_REJECT_DUPLICATES, &e);
    if (*out == NULL) {
        fprintf(stderr, "Error: the server's answer is not JSON (%s)\n", e.text);
        return EXIT_UNREACHABLE;
    }
    return EXIT_OK;
}

/* Prints a 2xx answer: raw in JSON mode, else through fmt (which gets the parsed body). */
static int
cli_show(const struct cli *c, const struct sigil_cli_response *resp,
         int (*fmt)(struct sigil_buf *, const json_t *))
{
    struct sigil_buf out = {0};
    json_t *j = NULL;
    int code;

    if (c->output == SIGIL_CLI_OUTPUT_JSON) {
        if (!cli_is_json(resp)) {
            fprintf(stderr, "Error: the server's answer is not JSON\n");
            return EXIT_UNREACHABLE;
        }
        cli_write(resp->body.data, resp->body.len);
        if (resp->body.data[resp->body.len - 1] != '\n')
            putchar('\n');
        return EXIT_OK;
    }
    if ((code = cli_parse(resp, &j)) != EXIT_OK)
        return code;
    if ((code = fmt(&out, j)) != 0) {
        fprintf(stderr, "Error: %s\n",
                code == SIGIL_ERR_NOMEM ? "out of memory" : "the server's answer is malformed");
        code = code == SIGIL_ERR_NOMEM ? EXIT_FAIL : EXIT_UNREACHABLE;
    } else {
        cli_write(out.data, out.len);
    }
    sigil_buf_freezero(&out);
    if (fmt == sigil_cli_fmt_token) {
        /* a join token is a secret: do not leave it in freed memory */
        json_t *t = json_object_get(j, "token");

        if (json_is_string(t))
            OPENSSL_cleanse((char *)json_string_value(t), json_string_length(t));
    }
    json_decref(j);
    return code;
}

/* Follows next_page_token from base (a target without page_token) and gathers every page's
 * key array into one {"<key>":[...]} (*out, caller decrefs); stops after limit items if
 * limit > 0. Returns an exit code. */
static int
cli_pages(const struct cli *c, const char *base, const char *key, size_t limit, json_t **out)
{
    struct sigil_cli_response resp;
    struct sigil_buf target = {0};
    json_t *all = json_array(), *page = NULL, *arr, *tok;
    char *token = NULL;
    int code = EXIT_FAIL;

    *out = NULL;
    if (all == NULL) {
        code = cli_nomem();
        goto out;
    }
    for (size_t n = 0; n < PAGES_MAX; n++) {
        target.len = 0;
        if (sigil_buf_append_str(&target, base) != 0 ||
            (token != NULL && (sigil_buf_append_str(&target, strchr(base, '?') ? "&" : "?") != 0 ||
                               sigil_buf_append_str(&target, "page_token=") != 0 ||
                               sigil_cli_urlenc_append(&target, token) != 0)) ||
            sigil_buf_append(&target, "", 1) != 0) {
            code = cli_nomem();
            goto out;
        }
        if ((code = cli_call(c, "GET", (const char *)target.data, NULL, &resp)) != EXIT_OK)
            goto out;
        code = cli_parse(&resp, &page);
        sigil_cli_response_free(&resp);
        if (code != EXIT_OK)
            goto out;
        if (!json_is_array(arr = json_object_get(page, key))) {
            fprintf(stderr, "Error: the server's answer has no \"%s\" list\n", key);
            code = EXIT_UNREACHABLE;
            goto out;
        }
        if (json_array_extend(all, arr) != 0) {
            code = cli_nomem();
            goto out;
        }
        if (limit > 0 && json_array_size(all) >= limit) {
            while (json_array_size(all) > limit)
                json_array_remove(all, json_array_size(all) - 1);
            break;
        }
        tok = json_object_get(page, "next_page_token");
        if (!json_is_string(tok) || json_string_length(tok) == 0)
            break;
        if (token != NULL && strcmp(token, json_string_value(tok)) == 0) {
            fprintf(stderr, "Error: the server returned the same page token twice\n");
            code = EXIT_UNREACHABLE;
            goto out;
        }
        free(token);
        if ((token = strdup(json_string_value(tok))) == NULL) {
            code = cli_nomem();
            goto out;
        }
        json_decref(page);
        page = NULL;
    }
    if ((*out = json_object()) == NULL || json_object_set(*out, key, all) != 0) {
        code = cli_nomem();
        goto out;
    }
    code = EXIT_OK;
out:
    if (code != EXIT_OK) {
        json_decref(*out);
        *out = NULL;
    }
    free(token);
    json_decref(page);
    json_decref(all);
    sigil_buf_free(&target);
    return code;
}

/* Prints a gathered list: compact JSON document, or text through fmt of its array. */
static int
cli_show_list(const struct cli *c, const json_t *doc, const char *key,
              int (*fmt)(struct sigil_buf *, const json_t *))
{
    struct sigil_buf out = {0};
    char *s;
    int r;

    if (c->output == SIGIL_CLI_OUTPUT_JSON) {
        if ((s = json_dumps(doc, JSON_COMPACT)) == NULL) {
            fprintf(stderr, "Error: out of memory\n");
            return EXIT_FAIL;
        }
        printf("%s\n", s);
        free(s);
        return EXIT_OK;
    }
    if ((r = fmt(&out, json_object_get(doc, key))) == 0)
        cli_write(out.data, out.len);
    else
        fprintf(stderr, "Error: out of memory\n");
    sigil_buf_free(&out);
    return r == 0 ? EXIT_OK : EXIT_FAIL;
}

/* --- entry */

static const char entry_help[] =
    "Usage: sigil-server entry COMMAND [OPTIONS]\n"
    "Registration entries: which workloads (selectors) under which parent get which SPIFFE ID.\n"
    "\n"
    "  entry create --spiffe-id ID --parent-id ID|--node --selector TYPE:VALUE...\n"
    "               [--x509-ttl D] [--jwt-ttl D] [--dns NAME]... [--federates-with TD]...\n"
    "               [--admin] [--downstream] [--hint TEXT] [--output json]\n"
    "  entry show   [--id ID] [--spiffe-id ID] [--parent-id ID] [--selector T:V]...\n"
    "               [--match exact|subset|superset|any] [--team T] [--page-size N]\n"
    "               [--output json]      (all pages; JSON: one {\"entries\":[...]}, or\n"
    "                                    the Entry itself with --id)\n"
    "  entry update --id ID [--spiffe-id ID] [--parent-id ID] [--selector T:V]... (replaces\n"
    "               the set) [--x509-ttl D] [--jwt-ttl D] [--dns NAME]... [--clear-dns]\n"
    "               [--federates-with TD]... [--clear-federates-with] [--admin|--no-admin]\n"
    "               [--downstream|--no-downstream] [--hint TEXT] [--output json]\n"
    "  entry delete --id ID\n"
    "  entry import [--batch-size N] [FILE|-]\n"
    "\n"
    "Durations (D) read like 90s, 30m, 1h30m; 0 means the server's default.\n"
    "IDs and selectors are checked here first; an error names the rule it broke.\n"
    "An ID given as a path (--spiffe-id /dev/onprem/pay/api, --parent-id /sigil/agent/n1)\n"
    "is in the trust domain $SIGIL_TRUST_DOMAIN (an error if it is unset). entry create\n"
    "without --parent-id uses $SIGIL_AGENT_ID (e.g. from deploy/local/up's env file) and says\n"
    "so on stderr; with neither, --parent-id is required.\n"
    "\n"
    "entry create --node makes a node alias (SPIRE's -node): the parent is the server ID,\n"
    "spiffe://$SIGIL_TRUST_DOMAIN/sigil/server (without the variable, in the trust domain\n"
    "of a whole --spiffe-id). The alias matches agents by the selectors their node\n"
    "attestation gave them (x509pop:..., join_token:...; see sigil-server agent show), and\n"
    "entries parented to the alias's ID (spiffe://TD/sigil/node/NAME) go to every such\n"
    "agent. entry show marks it \"Node alias: yes\".\n"
    "\n"
    "entry import reads FILE (or standard input) holding either JSON lines, one EntryInput\n"
    "object a line (the fields of POST /v1/entries), or a SPIRE registration file\n"
    "{\"entries\":[...]} ({\"type\",\"value\"} selectors, ttl or x509_svid_ttl, jwt_svid_ttl).\n"
    "Entries go to POST /v1/entries:batchCreate in batches (--batch-size, default 1000, and at\n"
    "most ~900 KiB of JSON each), each entry on its own (not atomic). A refused line is\n"
    "reported with its line number and the rest go on. An entry that already exists (same\n"
    "SPIFFE ID, parent ID and selectors: code entry.exists) is counted as existing, not as a\n"
    "failure, and is not changed: so after a crash or a lost connection, run the same import\n"
    "again and it finishes the job. A progress bar is drawn on a terminal.\n"
    "\n"
    "Options of every command:\n" COMMON_HELP
    "  --output json|text    JSON: the API's answer as it came (errors too, on stdout)\n"
    "  --help\n"
    "\n" EXIT_CODES_HELP;

static int
entry_target_id(char *buf, size_t n, const char *id)
{
    /* id was checked to be a UUID: nothing in it needs escaping */
    return (size_t)snprintf(buf, n, "/v1/entries/%s", id) < n ? 0 : -1;
}

/* An entry as text, with "Node alias: yes" for an entry the server marks node_alias (its
 * parent is the server ID). */
static int
fmt_entry(struct sigil_buf *out, const json_t *e)
{
    if (sigil_cli_fmt_entry(out, e) != 0)
        return SIGIL_ERR_NOMEM;
    if (json_is_true(json_object_get(e, "node_alias")))
        return sigil_cli_fmt_kv(out, "Node alias", "yes");
    return 0;
}

static int
fmt_entries(struct sigil_buf *out, const json_t *entries)
{
    const json_t *v;
    size_t i, n = json_is_array(entries) ? json_array_size(entries) : 0;

    if (sigil_buf_appendf(out, "Found %zu %s\n\n", n, n == 1 ? "entry" : "entries") != 0)
        return SIGIL_ERR_NOMEM;
    json_array_foreach(entries, i, v)
    {
        if (!json_is_object(v))
            continue;
        if (fmt_entry(out, v) != 0 || sigil_buf_append_str(out, "\n") != 0)
            return SIGIL_ERR_NOMEM;
    }
    return 0;
}

static int
entry_create_or_update(const struct cli *c, const struct sigil_cli_entry_args *a, bool update)
{
    struct sigil_cli_response resp;
    char err[SIGIL_CLI_ERR_MAX], target[64];
    json_t *body = NULL;
    int code, r;

    r = update ? sigil_cli_entry_patch_build(a, &body, err, sizeof err)
               : sigil_cli_entry_input_build(a, &body, err, sizeof err);
    if (r != 0) {
        fprintf(stderr, "Error: %s\n", err);
        return EXIT_FAIL;
    }
    if (update)
        entry_target_id(target, sizeof target, a->id);
    code = cli_call(c, update ? "PATCH" : "POST", update ? target : "/v1/entries", body, &resp);
    json_decref(body);
    if (code != EXIT_OK)
        return code;
    if (c->output == SIGIL_CLI_OUTPUT_TEXT)
        printf("Entry %s\n\n", update ? "updated" : "created");
    code = cli_show(c, &resp, fmt_entry);
    sigil_cli_response_free(&resp);
    return code;
}

static int
entry_show(const struct cli *c, const struct sigil_cli_entry_args *a)
{
    struct sigil_cli_response resp;
    char err[SIGIL_CLI_ERR_MAX], target[64];
    char *base = NULL;
    json_t *doc = NULL;
    int code;

    if (a->id != NULL) {
        entry_target_id(target, sizeof target, a->id);
        if ((code = cli_call(c, "GET", target, NULL, &resp)) != EXIT_OK)
            return code;
        if (c->output == SIGIL_CLI_OUTPUT_TEXT)
            printf("Found 1 entry\n\n");
        code = cli_show(c, &resp, fmt_entry);
        sigil_cli_response_free(&resp);
        return code;
    }
    if (sigil_cli_entry_list_target(a, NULL, &base, err, sizeof err) != 0) {
        fprintf(stderr, "Error: %s\n", err);
        return EXIT_FAIL;
    }
    if ((code = cli_pages(c, base, "entries", 0, &doc)) == EXIT_OK)
        code = cli_show_list(c, doc, "entries", fmt_entries);
    json_decref(doc);
    free(base);
    return code;
}

static int
entry_delete(const struct cli *c, const struct sigil_cli_entry_args *a)
{
    struct sigil_cli_response resp;
    char target[64];
    int code;

    entry_target_id(target, sizeof target, a->id);
    if ((code = cli_call(c, "DELETE", target, NULL, &resp)) != EXIT_OK)
        return code;
    sigil_cli_response_free(&resp);
    printf("Deleted entry %s\n", a->id);
    return EXIT_OK;
}

/* Reads a whole file ("-" or NULL: standard input) of at most max bytes into out. */
static int
cli_read_all(const char *path, size_t max, struct sigil_buf *out, char *err, size_t errlen)
{
    int fd = 0, r = SIGIL_ERR_IO;
    bool std = path == NULL || strcmp(path, "-") == 0;

    if (!std && (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return SIGIL_ERR_IO;
    }
    for (;;) {
        ssize_t n;

        if (sigil_buf_reserve(out, 64 * 1024) != 0) {
            snprintf(err, errlen, "out of memory");
            r = SIGIL_ERR_NOMEM;
            goto out;
        }
        n = read(fd, out->data + out->len, 64 * 1024);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "reading %s: %s", std ? "standard input" : path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        if (out->len > max) {
            snprintf(err, errlen, "%s is over %zu bytes", std ? "standard input" : path, max);
            r = SIGIL_ERR_RANGE;
            goto out;
        }
    }
    r = 0;
out:
    if (!std)
        close(fd);
    return r;
}

struct import_run {
    const struct cli *c;
    size_t total, seen, created, existing, failed;
    bool tty;
    /* the batch being filled: compact JSON of each item, its number and line */
    char **items;
    size_t *index, *line;
    size_t n, cap, bytes;
};

static void
import_where(char *buf, size_t n, size_t index, size_t line)
{
    if (line > 0)
        snprintf(buf, n, "line %zu", line);
    else
        snprintf(buf, n, "entry #%zu", index);
}

static void
import_progress(struct import_run *ir, bool final)
{
    size_t done = ir->seen, width = 30, fill;

    if (!ir->tty)
        return;
    fill = ir->total > 0 ? done * width / ir->total : width;
    fputs("\r\033[K[", stderr);
    for (size_t i = 0; i < width; i++)
        fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %zu/%zu  created %zu, existing %zu, failed %zu", done, ir->total,
            ir->created, ir->existing, ir->failed);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* A per-item failure; clears the progress line first so the two do not mix. */
static void
import_fail(struct import_run *ir, size_t index, size_t line, const char *code, const char *msg)
{
    struct sigil_buf safe = {0};
    char where[48];

    ir->failed++;
    import_where(where, sizeof where, index, line);
    if (ir->tty)
        fputs("\r\033[K", stderr);
    if (sigil_cli_fmt_safe(&safe, msg, strlen(msg)) == 0 && sigil_buf_append(&safe, "", 1) == 0)
        fprintf(stderr, "%s: Error: %s%s%s%s\n", where, (const char *)safe.data,
                code[0] != '\0' ? " (code " : "", code, code[0] != '\0' ? ")" : "");
    sigil_buf_free(&safe);
}

static void
import_batch_clear(struct import_run *ir)
{
    for (size_t i = 0; i < ir->n; i++)
        free(ir->items[i]);
    ir->n = 0;
    ir->bytes = 0;
}

/* Sends the batch and counts its results. Returns EXIT_OK (item failures are counted, not
 * returned), or EXIT_FAIL / EXIT_UNREACHABLE when the batch as a whole failed. */
static int
import_send(struct import_run *ir)
{
    struct sigil_cli_response resp = {0};
    struct sigil_buf body = {0};
    char err[SIGIL_CLI_ERR_MAX], first[48], last[48], code[128], msg[1024];
    json_t *doc = NULL, *results, *res;
    size_t i;
    bool nomem = false;
    int r, exit_code = EXIT_UNREACHABLE;

    if (ir->n == 0)
        return EXIT_OK;
    import_where(first, sizeof first, ir->index[0], ir->line[0]);
    import_where(last, sizeof last, ir->index[ir->n - 1], ir->line[ir->n - 1]);
    if (sigil_buf_append_str(&body, "{\"entries\":[") != 0)
        nomem = true;
    for (i = 0; !nomem && i < ir->n; i++)
        nomem = (i > 0 && sigil_buf_append_str(&body, ",") != 0) ||
                sigil_buf_append_str(&body, ir->items[i]) != 0;
    if (nomem || sigil_buf_append_str(&body, "]}") != 0) {
        exit_code = cli_nomem();
        goto out;
    }
    r = sigil_cli_http_request(ir->c->socket, "POST", "/v1/entries:batchCreate",
                               (const char *)body.data, body.len, &resp, err, sizeof err);
    if (r != 0) {
        if (ir->tty)
            fputs("\r\033[K", stderr);
        fprintf(stderr, "Error: %s\n", err);
        fprintf(stderr,
                "The batch from %s to %s may or may not have been stored. Run the same "
                "import again: entries that exist are counted as existing.\n",
                first, last);
        goto out;
    }
    if (resp.status != 200) {
        sigil_cli_fmt_error((const char *)resp.body.data, resp.body.len, resp.status, code,
                            sizeof code, msg, sizeof msg);
        if (ir->tty)
            fputs("\r\033[K", stderr);
        fprintf(stderr, "Error: the batch from %s to %s was refused: %s%s%s%s\n", first, last, msg,
                code[0] != '\0' ? " (code " : "", code, code[0] != '\0' ? ")" : "");
        ir->failed += ir->n;
        exit_code = EXIT_FAIL;
        goto out;
    }
    doc = json_loadb((const char *)resp.body.data, resp.body.len, JSON_REJECT_DUPLICATES, NULL);
    results = json_object_get(doc, "results");
    if (!json_is_array(results) || json_array_size(results) != ir->n) {
        fprintf(stderr,
                "Error: the server's answer to the batch from %s to %s does not hold one "
                "result per entry; run the same import again\n",
                first, last);
        goto out;
    }
    json_array_foreach(results, i, res)
    {
        json_t *st = json_object_get(res, "status"), *e = json_object_get(res, "error");
        json_t *ec = json_object_get(e, "code"), *em = json_object_get(e, "message");
        json_int_t s = json_is_integer(st) ? json_integer_value(st) : 0;

        if (s == 200 || s == 201) {
            ir->created++;
        } else if (s == 409 && json_is_string(ec) &&
                   strcmp(json_string_value(ec), "entry.exists") == 0) {
            ir->existing++;
        } else {
            snprintf(msg, sizeof msg, "%s",
                     json_is_string(em) ? json_string_value(em) : "refused by the server");
            snprintf(code, sizeof code, "%s", json_is_string(ec) ? json_string_value(ec) : "");
            import_fail(ir, ir->index[i], ir->line[i], code, msg);
        }
    }
    exit_code = EXIT_OK;
out:
    json_decref(doc);
    sigil_cli_response_free(&resp);
    sigil_buf_free(&body);
    import_batch_clear(ir);
    return exit_code;
}

static int
import_add(struct import_run *ir, const struct sigil_cli_import_item *it, int batch_size)
{
    char *s;
    size_t len;
    int code;

    if ((s = json_dumps(it->input, JSON_COMPACT)) == NULL) {
        fprintf(stderr, "Error: out of memory\n");
        return EXIT_FAIL;
    }
    len = strlen(s);
    if (ir->n > 0 && ir->bytes + len + 1 > BATCH_BODY_MAX && (code = import_send(ir)) != EXIT_OK) {
        free(s);
        return code;
    }
    if (ir->n == ir->cap) {
        size_t cap = ir->cap == 0 ? 64 : ir->cap * 2;
        char **items = realloc(ir->items, cap * sizeof *items);
        size_t *index, *line;

        if (items != NULL)
            ir->items = items;
        index = items != NULL ? realloc(ir->index, cap * sizeof *index) : NULL;
        if (index != NULL)
            ir->index = index;
        line = index != NULL ? realloc(ir->line, cap * sizeof *line) : NULL;
        if (line == NULL) {
            fprintf(stderr, "Error: out of memory\n");
            free(s);
            return EXIT_FAIL;
        }
        ir->line = line;
        ir->cap = cap;
    }
    ir->items[ir->n] = s;
    ir->index[ir->n] = it->index;
    ir->line[ir->n] = it->line;
    ir->n++;
    ir->bytes += len + 1;
    if (ir->n >= (size_t)batch_size)
        return import_send(ir);
    return EXIT_OK;
}

static int
entry_import(const struct cli *c, const struct sigil_cli_entry_args *a)
{
    struct import_run ir = {.c = c, .tty = isatty(STDERR_FILENO) == 1};
    struct sigil_cli_import_item it = {0};
    struct sigil_cli_import *imp = NULL;
    struct sigil_buf data = {0};
    char err[SIGIL_CLI_ERR_MAX];
    const char *name = a->file == NULL || strcmp(a->file, "-") == 0 ? "standard input" : a->file;
    int code = EXIT_FAIL, r;

    if ((a->file == NULL || strcmp(a->file, "-") == 0) && isatty(STDIN_FILENO) == 1)
        fprintf(stderr, "Reading entries from the terminal, one JSON object a line; end with "
                        "Ctrl-D (or give a FILE).\n");
    if (cli_read_all(a->file, SIGIL_CLI_IMPORT_MAX, &data, err, sizeof err) != 0 ||
        sigil_cli_import_open((const char *)data.data, data.len, &imp, err, sizeof err) != 0) {
        fprintf(stderr, "Error: %s\n", err);
        goto out;
    }
    ir.total = sigil_cli_import_count(imp);
    import_progress(&ir, false);
    while ((r = sigil_cli_import_next(imp, &it)) == 1) {
        ir.seen++;
        if (it.input == NULL) {
            import_fail(&ir, it.index, it.line, "", it.err);
            continue;
        }
        if ((code = import_add(&ir, &it, a->batch_size)) != EXIT_OK)
            break;
        if (ir.seen % 64 == 0 || ir.n == 0) /* every 64 lines, and after each batch */
            import_progress(&ir, false);
    }
    if (r < 0) {
        fprintf(stderr, "Error: out of memory\n");
        code = EXIT_FAIL;
    } else if (code == EXIT_OK || r == 0) {
        code = import_send(&ir);
    }
    import_progress(&ir, true);
    printf("Imported %s (%s): %zu entries, %zu created, %zu already existed, %zu failed%s\n", name,
           sigil_cli_import_format(imp) == SIGIL_CLI_IMPORT_SPIRE ? "SPIRE entries file"
                                                                  : "JSON lines",
           ir.total, ir.created, ir.existing, ir.failed,
           ir.seen < ir.total ? " (stopped early: see the error above)" : "");
    if (code == EXIT_OK && ir.failed > 0)
        code = EXIT_FAIL;
out:
    sigil_cli_import_item_clear(&it);
    import_batch_clear(&ir);
    free(ir.items);
    free(ir.index);
    free(ir.line);
    sigil_cli_import_free(imp);
    sigil_buf_free(&data);
    return code;
}

/* The environment's part in an entry command's IDs: paths expanded in $SIGIL_TRUST_DOMAIN,
 * and create's parent from $SIGIL_AGENT_ID when --parent-id is not given (said on stderr, so
 * nobody gets a parent they did not see). The expanded IDs live in static buffers (one
 * command per process). Returns 0, or SIGIL_ERR_INVALID (printed). */
static int
cli_entry_env(const char *cmd, struct sigil_cli_entry_args *a)
{
    static char spiffe_id[SIGIL_SPIFFEID_MAX + 1], parent_id[SIGIL_SPIFFEID_MAX + 1];
    const char *agent = getenv("SIGIL_AGENT_ID"), *opt;
    bool from_env = false;

    if (strcmp(cmd, "import") == 0 || strcmp(cmd, "delete") == 0)
        return 0;
    if (strcmp(cmd, "create") == 0 && a->parent_id == NULL && agent != NULL && agent[0] != '\0') {
        a->parent_id = agent;
        from_env = true;
    }
    if (a->spiffe_id != NULL &&
        (a->spiffe_id = cli_expand_id("entry", "spiffe-id", a->spiffe_id, spiffe_id)) == NULL)
        return SIGIL_ERR_INVALID;
    opt = from_env ? "parent-id (SIGIL_AGENT_ID)" : "parent-id";
    if (a->parent_id != NULL && strcmp(a->parent_id, "/sigil/server") == 0) {
        /* --node: without $SIGIL_TRUST_DOMAIN, the server of the alias's own trust domain
         * when --spiffe-id is a whole ID (the server refuses any other trust domain) */
        const char *td = getenv("SIGIL_TRUST_DOMAIN"), *host, *slash;

        opt = "parent-id (--node)";
        if ((td == NULL || td[0] == '\0') && a->spiffe_id != NULL &&
            strncmp(a->spiffe_id, "spiffe://", 9) == 0) {
            host = a->spiffe_id + 9;
            slash = strchr(host, '/');
            size_t n = slash != NULL ? (size_t)(slash - host) : strlen(host);
            if (n > 0 && n <= SIGIL_TRUST_DOMAIN_MAX) {
                snprintf(parent_id, sizeof parent_id, "spiffe://%.*s/sigil/server", (int)n, host);
                a->parent_id = parent_id;
            }
        }
    }
    if (a->parent_id != NULL &&
        (a->parent_id = cli_expand_id("entry", opt, a->parent_id, parent_id)) == NULL)
        return SIGIL_ERR_INVALID;
    if (from_env)
        fprintf(stderr, "Parent ID: %s (from SIGIL_AGENT_ID; --parent-id overrides)\n",
                a->parent_id);
    return 0;
}

static int
group_entry(int argc, char **argv)
{
    struct sigil_cli_entry_args *a;
    struct cli c;
    char err[SIGIL_CLI_ERR_MAX];
    const char *cmd = argc > 0 ? argv[0] : NULL;
    int code;

    if (cmd == NULL || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 ||
        strcmp(cmd, "help") == 0) {
        fputs(entry_help, cmd == NULL ? stderr : stdout);
        return cmd == NULL ? EXIT_USAGE : EXIT_OK;
    }
    if ((a = malloc(sizeof *a)) == NULL) {
        fprintf(stderr, "Error: out of memory\n");
        return EXIT_FAIL;
    }
    if (sigil_cli_entry_args_parse(cmd, argc, argv, a, err, sizeof err) != 0) {
        cli_usage_error("entry", "%s", err);
        free(a);
        return EXIT_USAGE;
    }
    if (a->common.help) {
        fputs(entry_help, stdout);
        free(a);
        return EXIT_OK;
    }
    if (cli_entry_env(cmd, a) != 0) {
        free(a);
        return EXIT_USAGE;
    }
    cli_init(&c, &a->common);
    if (strcmp(cmd, "create") == 0)
        code = entry_create_or_update(&c, a, false);
    else if (strcmp(cmd, "update") == 0)
        code = entry_create_or_update(&c, a, true);
    else if (strcmp(cmd, "show") == 0)
        code = entry_show(&c, a);
    else if (strcmp(cmd, "delete") == 0)
        code = entry_delete(&c, a);
    else
        code = entry_import(&c, a);
    free(a);
    return code;
}

/* --- the other groups share one small option parser */

struct cli_opt {
    const char *name;
    bool has_arg;
    const char **str; /* where a value goes */
    bool *flag;       /* or: set when given */
};

/* Parses argv (argv[0] is the command) with opts plus --admin-socket, --help and (if
 * output) --output. Returns 0, 1 for --help (printed), or EXIT_USAGE (printed). */
static int
cli_getopt(const char *group, const char *help, int argc, char **argv, const struct cli_opt *opts,
           bool output, struct cli *c)
{
    struct option lo[16];
    struct sigil_cli_common common = {0};
    const char *out_arg = NULL;
    size_t n = 0;
    int opt;

    for (; opts[n].name != NULL && n < 12; n++)
        lo[n] = (struct option){opts[n].name, opts[n].has_arg ? required_argument : no_argument,
                                NULL, (int)n + 256};
    lo[n++] = (struct option){"admin-socket", required_argument, NULL, 'S'};
    lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
    if (output)
        lo[n++] = (struct option){"output", required_argument, NULL, 'O'};
    lo[n] = (struct option){NULL, 0, NULL, 0};
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        if (opt == '?' || opt == ':') {
            cli_usage_error(group, "%s %s", opt == '?' ? "unknown option" : "missing value for",
                            argv[optind - 1]);
            return EXIT_USAGE;
        }
        if (opt == 'h') {
            fputs(help, stdout);
            return 1;
        }
        if (opt == 'S')
            common.admin_socket = optarg;
        else if (opt == 'O')
            out_arg = optarg;
        else if (opts[opt - 256].str != NULL)
            *opts[opt - 256].str = optarg;
        else
            *opts[opt - 256].flag = true;
    }
    if (optind < argc) {
        cli_usage_error(group, "unexpected argument \"%s\"", argv[optind]);
        return EXIT_USAGE;
    }
    if (out_arg != NULL && sigil_cli_output_parse(out_arg, &common.output) != 0) {
        cli_usage_error(group, "--output takes json or text, not \"%s\"", out_arg);
        return EXIT_USAGE;
    }
    cli_init(c, &common);
    return 0;
}

/* A SPIFFE ID option checked locally, with the rule it broke. */
static bool
cli_check_id(const char *group, const char *opt, const char *v)
{
    struct sigil_spiffeid id;
    const char *why = NULL;

    if (v == NULL) {
        cli_usage_error(group, "--%s is required", opt);
        return false;
    }
    if (sigil_spiffeid_parse(v, strlen(v), &id, &why) != 0) {
        fprintf(stderr, "Error: --%s: %s\n", opt, why);
        return false;
    }
    return true;
}

/* A trust domain option ("td" or "spiffe://td") into its bare name. */
static bool
cli_check_td(const char *group, const char *opt, const char *v, char td[SIGIL_TRUST_DOMAIN_MAX + 1])
{
    const char *why = NULL;

    if (v == NULL) {
        cli_usage_error(group, "--%s is required", opt);
        return false;
    }
    if (sigil_trust_domain_parse(v, strlen(v), td, &why) != 0) {
        fprintf(stderr, "Error: --%s: %s\n", opt, why);
        return false;
    }
    return true;
}

static bool
cli_is_help(const char *cmd)
{
    return strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0;
}

/* A page size option: "" (absent) or 1..1000. */
static bool
cli_page_size(const char *group, const char *v, long long *out)
{
    *out = 0;
    if (v != NULL && sigil_cli_int_parse(v, 1, SIGIL_CLI_PAGE_MAX, out) != 0) {
        cli_usage_error(group, "--page-size takes 1 to %d, not \"%s\"", SIGIL_CLI_PAGE_MAX, v);
        return false;
    }
    return true;
}

/* Appends "&key=value" (or "?..." for the first) to a target being built. */
static int
cli_query(struct sigil_buf *b, const char *key, const char *value)
{
    bool first = b->len == 0 || memchr(b->data, '?', b->len) == NULL;

    return sigil_buf_append_str(b, first ? "?" : "&") != 0 || sigil_buf_append_str(b, key) != 0 ||
                   sigil_buf_append_str(b, "=") != 0 || sigil_cli_urlenc_append(b, value) != 0
               ? SIGIL_ERR_NOMEM
               : 0;
}

/* --- agent */

static const char agent_help[] =
    "Usage: sigil-server agent COMMAND [OPTIONS]\n"
    "Attested agents (nodes).\n"
    "\n"
    "  agent list  [--banned|--not-banned] [--attestation-type T] [--page-size N]\n"
    "              [--output json]       (all pages; JSON: one {\"agents\":[...]})\n"
    "  agent show  --spiffe-id ID [--output json]\n"
    "  agent ban   --spiffe-id ID [--output json]   refused from its next call on, cannot\n"
    "                                               attest again\n"
    "  agent evict --spiffe-id ID                   must attest again (if its attestor lets it)\n"
    "\n"
    "--spiffe-id given as a path (/sigil/agent/n1) is in the trust domain $SIGIL_TRUST_DOMAIN.\n"
    "\n"
    "Options of every command:\n" COMMON_HELP "  --help\n"
    "\n" EXIT_CODES_HELP;

static int
group_agent(int argc, char **argv)
{
    const char *cmd = argc > 0 ? argv[0] : NULL, *spiffe_id = NULL, *type = NULL, *psize = NULL;
    static char spiffe_id_buf[SIGIL_SPIFFEID_MAX + 1];
    bool banned = false, not_banned = false;
    struct sigil_cli_response resp;
    struct sigil_buf target = {0};
    json_t *body = NULL, *doc = NULL;
    long long page = 0;
    struct cli c;
    int code;

    if (cmd == NULL || cli_is_help(cmd)) {
        fputs(agent_help, cmd == NULL ? stderr : stdout);
        return cmd == NULL ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(cmd, "list") == 0) {
        const struct cli_opt o[] = {{"banned", false, NULL, &banned},
                                    {"not-banned", false, NULL, &not_banned},
                                    {"attestation-type", true, &type, NULL},
                                    {"page-size", true, &psize, NULL},
                                    {NULL, false, NULL, NULL}};

        if ((code = cli_getopt("agent", agent_help, argc, argv, o, true, &c)) != 0)
            return code == 1 ? EXIT_OK : code;
        if (banned && not_banned) {
            cli_usage_error("agent", "--banned and --not-banned together: give one");
            return EXIT_USAGE;
        }
        if (!cli_page_size("agent", psize, &page))
            return EXIT_USAGE;
        if (sigil_buf_append_str(&target, "/v1/agents") != 0 ||
            ((banned || not_banned) && cli_query(&target, "banned", banned ? "true" : "false")) ||
            (type != NULL && cli_query(&target, "attestation_type", type) != 0) ||
            (psize != NULL && cli_query(&target, "page_size", psize) != 0) ||
            sigil_buf_append(&target, "", 1) != 0) {
            sigil_buf_free(&target);
            fprintf(stderr, "Error: out of memory\n");
            return EXIT_FAIL;
        }
        if ((code = cli_pages(&c, (const char *)target.data, "agents", 0, &doc)) == EXIT_OK)
            code = cli_show_list(&c, doc, "agents", sigil_cli_fmt_agents);
        json_decref(doc);
        sigil_buf_free(&target);
        return code;
    }
    if (strcmp(cmd, "show") != 0 && strcmp(cmd, "ban") != 0 && strcmp(cmd, "evict") != 0) {
        cli_usage_error("agent", "unknown command \"%s\"", cmd);
        return EXIT_USAGE;
    }
    {
        const struct cli_opt o[] = {{"spiffe-id", true, &spiffe_id, NULL},
                                    {NULL, false, NULL, NULL}};

        if ((code = cli_getopt("agent", agent_help, argc, argv, o, strcmp(cmd, "evict") != 0,
                               &c)) != 0)
            return code == 1 ? EXIT_OK : code;
    }
    if (spiffe_id != NULL &&
        (spiffe_id = cli_expand_id("agent", "spiffe-id", spiffe_id, spiffe_id_buf)) == NULL)
        return EXIT_USAGE;
    if (!cli_check_id("agent", "spiffe-id", spiffe_id))
        return spiffe_id == NULL ? EXIT_USAGE : EXIT_FAIL;
    if (strcmp(cmd, "show") == 0) {
        if (sigil_buf_append_str(&target, "/v1/agent") != 0 ||
            cli_query(&target, "spiffe_id", spiffe_id) != 0 ||
            sigil_buf_append(&target, "", 1) != 0) {
            sigil_buf_free(&target);
            fprintf(stderr, "Error: out of memory\n");
            return EXIT_FAIL;
        }
        code = cli_call(&c, "GET", (const char *)target.data, NULL, &resp);
        sigil_buf_free(&target);
        if (code != EXIT_OK)
            return code;
        code = cli_show(&c, &resp, sigil_cli_fmt_agent);
        sigil_cli_response_free(&resp);
        return code;
    }
    if ((body = json_pack("{s:s}", "spiffe_id", spiffe_id)) == NULL) {
        fprintf(stderr, "Error: out of memory\n");
        return EXIT_FAIL;
    }
    code = cli_call(&c, "POST", strcmp(cmd, "ban") == 0 ? "/v1/agents:ban" : "/v1/agents:evict",
                    body, &resp);
    json_decref(body);
    if (code != EXIT_OK)
        return code;
    if (strcmp(cmd, "evict") == 0) {
        printf("Agent evicted: %s\n", spiffe_id);
    } else {
        if (c.output == SIGIL_CLI_OUTPUT_TEXT)
            printf("Agent banned\n\n");
        code = cli_show(&c, &resp, sigil_cli_fmt_agent);
    }
    sigil_cli_response_free(&resp);
    return code;
}

/* --- token */

static const char token_help[] =
    "Usage: sigil-server token generate [--ttl D] [--agent-path PATH] [--output json]\n"
    "A single-use join token for one agent's attestation. It is shown once (the server keeps\n"
    "only its hash). --ttl: how long it may be used, 1s to 24h (default 10m); --agent-path:\n"
    "fix the agent's SPIFFE ID path, e.g. /sigil/agent/node-1.\n"
    "\n"
    "Options:\n" COMMON_HELP "  --help\n"
    "\n" EXIT_CODES_HELP;

static int
group_token(int argc, char **argv)
{
    const char *cmd = argc > 0 ? argv[0] : NULL, *ttl_s = NULL, *path = NULL, *why = NULL;
    const struct cli_opt o[] = {
        {"ttl", true, &ttl_s, NULL}, {"agent-path", true, &path, NULL}, {NULL, false, NULL, NULL}};
    struct sigil_cli_response resp;
    char err[SIGIL_CLI_ERR_MAX];
    json_t *body = NULL;
    long long ttl = 0;
    struct cli c;
    int code;

    if (cmd == NULL || cli_is_help(cmd)) {
        fputs(token_help, cmd == NULL ? stderr : stdout);
        return cmd == NULL ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(cmd, "generate") != 0) {
        cli_usage_error("token", "unknown command \"%s\"", cmd);
        return EXIT_USAGE;
    }
    if ((code = cli_getopt("token", token_help, argc, argv, o, true, &c)) != 0)
        return code == 1 ? EXIT_OK : code;
    if (ttl_s != NULL) {
        if (sigil_cli_ttl_parse(ttl_s, &ttl, err, sizeof err) != 0) {
            fprintf(stderr, "Error: --ttl: %s\n", err);
            return EXIT_FAIL;
        }
        if (ttl < 1 || ttl > 86400) {
            fprintf(stderr, "Error: --ttl: between 1s and 24h\n");
            return EXIT_FAIL;
        }
    }
    if (path != NULL && (path[0] == '\0' || sigil_spiffeid_path_check(path, strlen(path), &why))) {
        fprintf(stderr, "Error: --agent-path: %s\n",
                path[0] == '\0' ? "give a path such as /sigil/agent/node-1" : why);
        return EXIT_FAIL;
    }
    if ((body = json_object()) == NULL ||
        (ttl > 0 && json_object_set_new(body, "ttl_seconds", json_integer(ttl)) != 0) ||
        (path != NULL && json_object_set_new(body, "agent_path", json_string(path)) != 0)) {
        json_decref(body);
        fprintf(stderr, "Error: out of memory\n");
        return EXIT_FAIL;
    }
    code = cli_call(&c, "POST", "/v1/join-tokens", body, &resp);
    json_decref(body);
    if (code != EXIT_OK)
        return code;
    code = cli_show(&c, &resp, sigil_cli_fmt_token);
    sigil_cli_response_free(&resp); /* wipes the token */
    return code;
}

/* --- bundle */

static const char bundle_help[] =
    "Usage: sigil-server bundle COMMAND [OPTIONS]\n"
    "Trust bundles: this trust domain's, and the federated ones.\n"
    "\n"
    "  bundle show   [--output json]            this trust domain's X.509 authorities as PEM\n"
    "                                           (JSON: the SPIFFE bundle)\n"
    "  bundle list   [--id TD] [--output json]  the federated bundles (or one)\n"
    "  bundle set    --id TD [--path FILE|-] [--format pem|spiffe]\n"
    "                set a federated bundle from PEM certificates (default) or a SPIFFE\n"
    "                bundle document; standard input without --path\n"
    "  bundle delete --id TD\n"
    "\n"
    "TD is a trust domain name, bare or as spiffe://TD.\n"
    "\n"
    "Options of every command:\n" COMMON_HELP "  --help\n"
    "\n" EXIT_CODES_HELP;

/* Builds the SPIFFE bundle JSON to PUT from a file of PEM certificates or a bundle doc. */
static int
bundle_body(const char *td, const char *path, bool pem, json_t **out)
{
    struct sigil_buf data = {0};
    struct sigil_bundle *b = NULL;
    const char *why = NULL;
    char err[SIGIL_CLI_ERR_MAX];
    BIO *bio = NULL;
    X509 *x = NULL;
    int code = EXIT_FAIL, r;

    *out = NULL;
    if (cli_read_all(path, BUNDLE_FILE_MAX, &data, err, sizeof err) != 0) {
        fprintf(stderr, "Error: %s\n", err);
        goto out;
    }
    if (!pem) {
        if (sigil_bundle_decode(td, (const char *)data.data, data.len, &b, &why) != 0) {
            fprintf(stderr, "Error: not a SPIFFE bundle: %s\n", why);
            goto out;
        }
        if ((*out = json_loadb((const char *)data.data, data.len, JSON_REJECT_DUPLICATES, NULL)) ==
            NULL) {
            fprintf(stderr, "Error: not a SPIFFE bundle\n");
            goto out;
        }
        code = EXIT_OK;
        goto out;
    }
    if (sigil_bundle_new(td, &b, &why) != 0) {
        fprintf(stderr, "Error: --id: %s\n", why);
        goto out;
    }
    if (data.len > INT32_MAX || (bio = BIO_new_mem_buf(data.data, (int)data.len)) == NULL)
        goto out;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        r = sigil_bundle_x509_add(b, x, &why);
        X509_free(x);
        if (r != 0 && r != SIGIL_ERR_EXISTS) {
            fprintf(stderr, "Error: certificate %zu: %s\n", sigil_bundle_x509_count(b) + 1,
                    why != NULL ? why : sigil_strerror(r));
            goto out;
        }
    }
    if (sigil_bundle_x509_count(b) == 0) {
        fprintf(stderr, "Error: no PEM certificate found (use --format spiffe for a SPIFFE "
                        "bundle document)\n");
        goto out;
    }
    if (sigil_bundle_to_json(b, out) != 0) {
        fprintf(stderr, "Error: cannot encode the bundle\n");
        goto out;
    }
    code = EXIT_OK;
out:
    BIO_free(bio);
    sigil_bundle_free(b);
    sigil_buf_free(&data);
    return code;
}

static int
group_bundle(int argc, char **argv)
{
    const char *cmd = argc > 0 ? argv[0] : NULL, *id = NULL, *path = NULL, *format = NULL;
    const struct cli_opt o_id[] = {{"id", true, &id, NULL}, {NULL, false, NULL, NULL}};
    const struct cli_opt o_set[] = {{"id", true, &id, NULL},
                                    {"path", true, &path, NULL},
                                    {"format", true, &format, NULL},
                                    {NULL, false, NULL, NULL}};
    const struct cli_opt o_none[] = {{NULL, false, NULL, NULL}};
    char td[SIGIL_TRUST_DOMAIN_MAX + 1], target[SIGIL_TRUST_DOMAIN_MAX + 64];
    struct sigil_cli_response resp;
    json_t *body = NULL;
    struct cli c;
    int code;

    if (cmd == NULL || cli_is_help(cmd)) {
        fputs(bundle_help, cmd == NULL ? stderr : stdout);
        return cmd == NULL ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(cmd, "show") == 0) {
        if ((code = cli_getopt("bundle", bundle_help, argc, argv, o_none, true, &c)) != 0)
            return code == 1 ? EXIT_OK : code;
        if ((code = cli_call(&c, "GET", "/v1/bundle", NULL, &resp)) != EXIT_OK)
            return code;
        code = cli_show(&c, &resp, sigil_cli_fmt_bundle_pem);
        sigil_cli_response_free(&resp);
        return code;
    }
    if (strcmp(cmd, "list") == 0) {
        if ((code = cli_getopt("bundle", bundle_help, argc, argv, o_id, true, &c)) != 0)
            return code == 1 ? EXIT_OK : code;
        if (id != NULL && !cli_check_td("bundle", "id", id, td))
            return EXIT_FAIL;
        if (id != NULL)
            snprintf(target, sizeof target, "/v1/federated-bundles/%s", td);
        if ((code = cli_call(&c, "GET", id != NULL ? target : "/v1/federated-bundles", NULL,
                             &resp)) != EXIT_OK)
            return code;
        code =
            cli_show(&c, &resp, id != NULL ? sigil_cli_fmt_bundle_pem : sigil_cli_fmt_bundle_map);
        sigil_cli_response_free(&resp);
        return code;
    }
    if (strcmp(cmd, "set") != 0 && strcmp(cmd, "delete") != 0) {
        cli_usage_error("bundle", "unknown command \"%s\"", cmd);
        return EXIT_USAGE;
    }
    code = cli_getopt("bundle", bundle_help, argc, argv, strcmp(cmd, "set") == 0 ? o_set : o_id,
                      false, &c);
    if (code != 0)
        return code == 1 ? EXIT_OK : code;
    if (id == NULL) {
        cli_usage_error("bundle", "--id is required");
        return EXIT_USAGE;
    }
    if (!cli_check_td("bundle", "id", id, td))
        return EXIT_FAIL;
    snprintf(target, sizeof target, "/v1/federated-bundles/%s", td);
    if (strcmp(cmd, "delete") == 0) {
        if ((code = cli_call(&c, "DELETE", target, NULL, &resp)) != EXIT_OK)
            return code;
        sigil_cli_response_free(&resp);
        printf("Deleted the federated bundle of %s\n", td);
        return EXIT_OK;
    }
    if (format != NULL && strcmp(format, "pem") != 0 && strcmp(format, "spiffe") != 0) {
        cli_usage_error("bundle", "--format takes pem or spiffe, not \"%s\"", format);
        return EXIT_USAGE;
    }
    if ((code = bundle_body(td, path, format == NULL || strcmp(format, "pem") == 0, &body)) != 0)
        return code;
    code = cli_call(&c, "PUT", target, body, &resp);
    json_decref(body);
    if (code != EXIT_OK)
        return code;
    sigil_cli_response_free(&resp);
    printf("Set the federated bundle of %s\n", td);
    return EXIT_OK;
}

/* --- federation */

static const char federation_help[] =
    "Usage: sigil-server federation COMMAND [OPTIONS]\n"
    "Federation relationships: other trust domains whose bundles this server fetches.\n"
    "\n"
    "  federation create --trust-domain TD --bundle-endpoint-url https://... \n"
    "                    --profile https_web|https_spiffe [--endpoint-spiffe-id ID]\n"
    "                    [--output json]     (https_spiffe needs --endpoint-spiffe-id)\n"
    "  federation list   [--output json]\n"
    "  federation delete --trust-domain TD   (--id TD also works)\n"
    "\n"
    "Options of every command:\n" COMMON_HELP "  --help\n"
    "\n" EXIT_CODES_HELP;

static int
federation_create(const struct cli *c, const char *tdarg, const char *url, const char *profile,
                  const char *endpoint)
{
    char td[SIGIL_TRUST_DOMAIN_MAX + 1];
    struct sigil_cli_response resp;
    json_t *body;
    int code;

    if (!cli_check_td("federation", "trust-domain", tdarg, td))
        return tdarg == NULL ? EXIT_USAGE : EXIT_FAIL;
    if (url == NULL || profile == NULL) {
        cli_usage_error("federation", "--bundle-endpoint-url and --profile are required");
        return EXIT_USAGE;
    }
    if (strncmp(url, "https://", 8) != 0 || url[8] == '\0') {
        fprintf(stderr, "Error: --bundle-endpoint-url: an https:// URL (both profiles use "
                        "TLS)\n");
        return EXIT_FAIL;
    }
    if (strcmp(profile, "https_web") != 0 && strcmp(profile, "https_spiffe") != 0) {
        cli_usage_error("federation", "--profile takes https_web or https_spiffe, not \"%s\"",
                        profile);
        return EXIT_USAGE;
    }
    if (strcmp(profile, "https_spiffe") == 0 &&
        !cli_check_id("federation", "endpoint-spiffe-id", endpoint))
        return endpoint == NULL ? EXIT_USAGE : EXIT_FAIL;
    if (strcmp(profile, "https_web") == 0 && endpoint != NULL) {
        cli_usage_error("federation", "--endpoint-spiffe-id goes with --profile https_spiffe");
        return EXIT_USAGE;
    }
    body = json_pack("{s:s, s:s, s:s}", "trust_domain", td, "bundle_endpoint_url", url, "profile",
                     profile);
    if (body == NULL || (endpoint != NULL && json_object_set_new(body, "endpoint_spiffe_id",
                                                                 json_string(endpoint)) != 0)) {
        json_decref(body);
        fprintf(stderr, "Error: out of memory (or a value that is not UTF-8)\n");
        return EXIT_FAIL;
    }
    code = cli_call(c, "POST", "/v1/federation-relationships", body, &resp);
    json_decref(body);
    if (code != EXIT_OK)
        return code;
    if (c->output == SIGIL_CLI_OUTPUT_TEXT)
        printf("Federation relationship created\n\n");
    code = cli_show(c, &resp, sigil_cli_fmt_federation);
    sigil_cli_response_free(&resp);
    return code;
}

static int
group_federation(int argc, char **argv)
{
    const char *cmd = argc > 0 ? argv[0] : NULL, *tdarg = NULL, *id = NULL, *url = NULL;
    const char *profile = NULL, *endpoint = NULL;
    const struct cli_opt o_create[] = {{"trust-domain", true, &tdarg, NULL},
                                       {"bundle-endpoint-url", true, &url, NULL},
                                       {"profile", true, &profile, NULL},
                                       {"endpoint-spiffe-id", true, &endpoint, NULL},
                                       {NULL, false, NULL, NULL}};
    const struct cli_opt o_delete[] = {
        {"trust-domain", true, &tdarg, NULL}, {"id", true, &id, NULL}, {NULL, false, NULL, NULL}};
    const struct cli_opt o_none[] = {{NULL, false, NULL, NULL}};
    char td[SIGIL_TRUST_DOMAIN_MAX + 1], target[SIGIL_TRUST_DOMAIN_MAX + 64];
    struct sigil_cli_response resp;
    json_t *doc = NULL;
    struct cli c;
    int code;

    if (cmd == NULL || cli_is_help(cmd)) {
        fputs(federation_help, cmd == NULL ? stderr : stdout);
        return cmd == NULL ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(cmd, "create") == 0) {
        if ((code = cli_getopt("federation", federation_help, argc, argv, o_create, true, &c)) != 0)
            return code == 1 ? EXIT_OK : code;
        return federation_create(&c, tdarg, url, profile, endpoint);
    }
    if (strcmp(cmd, "list") == 0) {
        if ((code = cli_getopt("federation", federation_help, argc, argv, o_none, true, &c)) != 0)
            return code == 1 ? EXIT_OK : code;
        if ((code = cli_call(&c, "GET", "/v1/federation-relationships", NULL, &resp)) != EXIT_OK)
            return code;
        if (c.output == SIGIL_CLI_OUTPUT_JSON) {
            code = cli_show(&c, &resp, sigil_cli_fmt_federations);
        } else if ((code = cli_parse(&resp, &doc)) == EXIT_OK) {
            code = cli_show_list(&c, doc, "relationships", sigil_cli_fmt_federations);
            json_decref(doc);
        }
        sigil_cli_response_free(&resp);
        return code;
    }
    if (strcmp(cmd, "delete") != 0) {
        cli_usage_error("federation", "unknown command \"%s\"", cmd);
        return EXIT_USAGE;
    }
    if ((code = cli_getopt("federation", federation_help, argc, argv, o_delete, false, &c)) != 0)
        return code == 1 ? EXIT_OK : code;
    if (tdarg != NULL && id != NULL) {
        cli_usage_error("federation", "--trust-domain and --id together: give one");
        return EXIT_USAGE;
    }
    if (!cli_check_td("federation", "trust-domain", tdarg != NULL ? tdarg : id, td))
        return tdarg == NULL && id == NULL ? EXIT_USAGE : EXIT_FAIL;
    snprintf(target, sizeof target, "/v1/federation-relationships/%s", td);
    if ((code = cli_call(&c, "DELETE", target, NULL, &resp)) != EXIT_OK)
        return code;
    sigil_cli_response_free(&resp);
    printf("Deleted the federation relationship with %s\n", td);
    return EXIT_OK;
}

/* --- audit */

static const char audit_help[] =
    "Usage: sigil-server audit list [--object-type T] [--object-id ID] [--actor A]\n"
    "                               [--page-size N] [--limit N] [--output json]\n"
    "The audit log, newest first: who changed what, before and after. Follows every page\n"
    "unless --limit stops it (JSON: one {\"records\":[...]}).\n"
    "\n"
    "Options:\n" COMMON_HELP "  --help\n"
    "\n" EXIT_CODES_HELP;

static int
group_audit(int argc, char **argv)
{
    const char *cmd = argc > 0 ? argv[0] : NULL, *type = NULL, *oid = NULL, *actor = NULL;
    const char *psize = NULL, *limit_s = NULL;
    const struct cli_opt o[] = {
        {"object-type", true, &type, NULL}, {"object-id", true, &oid, NULL},
        {"actor", true, &actor, NULL},      {"page-size", true, &psize, NULL},
        {"limit", true, &limit_s, NULL},    {NULL, false, NULL, NULL}};
    struct sigil_buf target = {0};
    long long page = 0, limit = 0;
    json_t *doc = NULL;
    struct cli c;
    int code;

    if (cmd == NULL || cli_is_help(cmd)) {
        fputs(audit_help, cmd == NULL ? stderr : stdout);
        return cmd == NULL ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(cmd, "list") != 0) {
        cli_usage_error("audit", "unknown command \"%s\"", cmd);
        return EXIT_USAGE;
    }
    if ((code = cli_getopt("audit", audit_help, argc, argv, o, true, &c)) != 0)
        return code == 1 ? EXIT_OK : code;
    if (!cli_page_size("audit", psize, &page))
        return EXIT_USAGE;
    if (limit_s != NULL && sigil_cli_int_parse(limit_s, 1, 100000000, &limit) != 0) {
        cli_usage_error("audit", "--limit takes a positive number, not \"%s\"", limit_s);
        return EXIT_USAGE;
    }
    if (sigil_buf_append_str(&target, "/v1/audit") != 0 ||
        (type != NULL && cli_query(&target, "object_type", type) != 0) ||
        (oid != NULL && cli_query(&target, "object_id", oid) != 0) ||
        (actor != NULL && cli_query(&target, "actor", actor) != 0) ||
        (psize != NULL && cli_query(&target, "page_size", psize) != 0) ||
        sigil_buf_append(&target, "", 1) != 0) {
        sigil_buf_free(&target);
        fprintf(stderr, "Error: out of memory\n");
        return EXIT_FAIL;
    }
    if ((code = cli_pages(&c, (const char *)target.data, "records", (size_t)limit, &doc)) ==
        EXIT_OK)
        code = cli_show_list(&c, doc, "records", sigil_cli_fmt_audit);
    json_decref(doc);
    sigil_buf_free(&target);
    return code;
}

/* --- the entry point */

static const char groups_help[] =
    "Admin commands (they talk to a running server over its admin socket):\n"
    "  entry       create | show | update | delete | import\n"
    "  agent       list | show | ban | evict\n"
    "  token       generate\n"
    "  bundle      show | list | set | delete\n"
    "  federation  create | list | delete\n"
    "  audit       list\n"
    "\"sigil-server GROUP --help\" tells more.\n"
    "\n" EXIT_CODES_HELP;

int
sigil_cli_main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } groups[] = {
        {"entry", group_entry},   {"agent", group_agent},           {"token", group_token},
        {"bundle", group_bundle}, {"federation", group_federation}, {"audit", group_audit},
    };

    if (argc < 1 || argv[0] == NULL) {
        fputs(groups_help, stderr);
        return EXIT_USAGE;
    }
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++) {
        if (strcmp(argv[0], groups[i].name) != 0)
            continue;
        if (sigil_cli_http_init() != 0) {
            fprintf(stderr, "Error: cannot initialise libcurl\n");
            return EXIT_FAIL;
        }
        return groups[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "sigil-server: unknown command \"%s\"\n\n%s", argv[0], groups_help);
    return EXIT_USAGE;
}
