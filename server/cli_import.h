/* `entry import` input: JSON lines (one EntryInput object a line, the admin API's own shape)
 * or a SPIRE registration file ({"entries":[...]} with {"type","value"} selectors, ttl or
 * x509_svid_ttl, IDs as strings or {trust_domain,path}), read item by item, each item
 * converted to a checked EntryInput or refused with its line number and the reason. */
#ifndef SIGIL_CLI_IMPORT_H
#define SIGIL_CLI_IMPORT_H

#include <stddef.h>

#include <jansson.h>

/* Largest import input read (it is held in memory) and longest JSON line. */
#define SIGIL_CLI_IMPORT_MAX (256u * 1024 * 1024)
#define SIGIL_CLI_IMPORT_LINE_MAX (1024u * 1024)

enum sigil_cli_import_format { SIGIL_CLI_IMPORT_JSONL = 0, SIGIL_CLI_IMPORT_SPIRE = 1 };

/* A reader over an input held by the caller (which must outlive it). */
struct sigil_cli_import;

/* One item: its 1-based number and line (0 if unknown), and either input (a checked
 * EntryInput the item owns) or err (why it was refused). Clear with
 * sigil_cli_import_item_clear. */
struct sigil_cli_import_item {
    size_t index;
    size_t line;
    json_t *input;
    char err[512];
};

/* Opens a reader over len bytes of data, telling the two formats apart: a document that is
 * one JSON object with "entries" is a SPIRE file, anything else is JSON lines. *out is freed
 * with sigil_cli_import_free. Returns 0, or SIGIL_ERR_RANGE (over SIGIL_CLI_IMPORT_MAX) /
 * SIGIL_ERR_INVALID (a SPIRE file whose "entries" is not a list) / SIGIL_ERR_NOMEM with err. */
int sigil_cli_import_open(const char *data, size_t len, struct sigil_cli_import **out, char *err,
                          size_t errlen);

/* Returns the format the reader detected. */
enum sigil_cli_import_format sigil_cli_import_format(const struct sigil_cli_import *imp);

/* Returns how many items the input holds (non-blank lines, or SPIRE entries). */
size_t sigil_cli_import_count(const struct sigil_cli_import *imp);

/* Reads the next item into *item (cleared first). Returns 1 with the item, 0 at the end, or
 * SIGIL_ERR_NOMEM. */
int sigil_cli_import_next(struct sigil_cli_import *imp, struct sigil_cli_import_item *item);

/* Drops what item holds; it is empty afterwards. */
void sigil_cli_import_item_clear(struct sigil_cli_import_item *item);

/* Frees the reader; NULL is a no-op. */
void sigil_cli_import_free(struct sigil_cli_import *imp);

#endif
