/* What the CLI sends: `entry` command lines parsed into arguments, the JSON bodies and
 * request targets built from them, and the local checks (SPIFFE IDs, selectors, trust
 * domains, TTLs) every EntryInput passes before it leaves, so a typo is named here by the
 * rule it broke instead of costing a round trip. No I/O: everything here is unit-tested. */
#ifndef SIGIL_CLI_REQ_H
#define SIGIL_CLI_REQ_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "sigil/buf.h"

/* Cap on repeated options (--selector, --dns, --federates-with) in one command. */
#define SIGIL_CLI_LIST_MAX 256
/* Longest error text the CLI builds. */
#define SIGIL_CLI_ERR_MAX 512
/* Page size bounds of the list endpoints. */
#define SIGIL_CLI_PAGE_MAX 1000

enum sigil_cli_output { SIGIL_CLI_OUTPUT_TEXT = 0, SIGIL_CLI_OUTPUT_JSON = 1 };

/* Options every command takes. */
struct sigil_cli_common {
    const char *admin_socket; /* NULL: SIGIL_ADMIN_SOCKET, else the default path */
    enum sigil_cli_output output;
    bool help;
};

/* The parsed options of one `entry` command; strings point into argv. */
struct sigil_cli_entry_args {
    struct sigil_cli_common common;
    const char *id, *spiffe_id, *parent_id, *hint, *team;
    const char *selectors[SIGIL_CLI_LIST_MAX];
    size_t nselectors;
    const char *dns[SIGIL_CLI_LIST_MAX];
    size_t ndns;
    const char *federates[SIGIL_CLI_LIST_MAX];
    size_t nfederates;
    long long x509_ttl, jwt_ttl; /* seconds; -1 when not given */
    int admin, downstream;       /* -1 not given, 0 false, 1 true */
    bool clear_dns, clear_federates;
    int match;     /* enum sigil_selector_match, or -1 for the server's default */
    int page_size; /* 0: the server's default */
    /* entry import */
    const char *file; /* NULL or "-": standard input */
    int batch_size;
};

/* Parses the options of `entry <cmd>` (cmd: create, show, update, delete, import; argv[0] is
 * cmd, getopt_long restarts). Accepts only the options cmd knows. Returns 0 (args->common.help
 * set for --help), or SIGIL_ERR_INVALID with a usage error in err. */
int sigil_cli_entry_args_parse(const char *cmd, int argc, char **argv,
                               struct sigil_cli_entry_args *args, char *err, size_t errlen);

/* Parses --output's value into *out. Returns 0 or SIGIL_ERR_INVALID. */
int sigil_cli_output_parse(const char *s, enum sigil_cli_output *out);

/* Parses a TTL given as a duration ("1h", "90s", "0") into whole seconds (0..2^31-1).
 * Returns 0 or SIGIL_ERR_INVALID / SIGIL_ERR_RANGE with the reason in err. */
int sigil_cli_ttl_parse(const char *s, long long *seconds, char *err, size_t errlen);

/* Parses a decimal integer in [min, max]. Returns 0 or SIGIL_ERR_INVALID. */
int sigil_cli_int_parse(const char *s, long long min, long long max, long long *out);

/* True if s is a UUID in its 36-character text form (safe to put in a URL path). */
bool sigil_cli_uuid_valid(const char *s);

/* Builds the EntryInput of `entry create` into *out (caller json_decref()s) and checks it
 * with sigil_cli_entry_input_check. Returns 0 or SIGIL_ERR_INVALID / SIGIL_ERR_NOMEM with
 * the rule that failed in err. */
int sigil_cli_entry_input_build(const struct sigil_cli_entry_args *args, json_t **out, char *err,
                                size_t errlen);

/* Builds the EntryPatch of `entry update` (only the fields given; at least one) into *out
 * (caller json_decref()s). Returns 0 or SIGIL_ERR_INVALID / SIGIL_ERR_NOMEM with err. */
int sigil_cli_entry_patch_build(const struct sigil_cli_entry_args *args, json_t **out, char *err,
                                size_t errlen);

/* Checks an EntryInput object as the contract defines it: only its fields, each of its
 * type; spiffe_id a leaf SPIFFE ID, parent_id a SPIFFE ID, 1..256 distinct valid
 * selectors, trust domain names, DNS names, TTLs 0..2^31-1, hint of at most 1,024 bytes.
 * patch: the EntryPatch rules instead (nothing required, no expires_at). Returns 0 or
 * SIGIL_ERR_INVALID with the field and the rule in err. */
int sigil_cli_entry_input_check(const json_t *in, bool patch, char *err, size_t errlen);

/* Appends s percent-encoded for a query value (everything but RFC 3986 unreserved).
 * Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_cli_urlenc_append(struct sigil_buf *b, const char *s);

/* Builds the target of one page of `entry show` without --id ("/v1/entries?..."), with
 * page_token (NULL for the first page). *out is NUL-terminated; caller frees. Returns 0 or
 * SIGIL_ERR_NOMEM / SIGIL_ERR_INVALID (an invalid filter) with err. */
int sigil_cli_entry_list_target(const struct sigil_cli_entry_args *args, const char *page_token,
                                char **out, char *err, size_t errlen);

#endif
