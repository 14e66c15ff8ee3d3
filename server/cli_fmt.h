/* What the CLI prints: the admin API's JSON answers as aligned text in SPIRE's shape
 * ("Entry ID : ...", one "Selector : type:value" line each), X.509 authorities as PEM, and
 * the API's error objects. Answers are untrusted: every string is printed with control
 * characters, bidirectional overrides and broken UTF-8 escaped, so a stored value cannot
 * drive the operator's terminal. No I/O: everything appends to a buffer. */
#ifndef SIGIL_CLI_FMT_H
#define SIGIL_CLI_FMT_H

#include <stddef.h>

#include <jansson.h>

#include "sigil/buf.h"

/* Column the values start at: labels are padded to this width, then " : ". */
#define SIGIL_CLI_LABEL_WIDTH 18

/* Appends len bytes of s with every C0/C1 control, DEL and bidi control written as \xNN or
 * \u{XXXX} and invalid UTF-8 bytes as \xNN. Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_cli_fmt_safe(struct sigil_buf *out, const char *s, size_t len);

/* Appends "Label<pad> : value\n" with value made safe. Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_cli_fmt_kv(struct sigil_buf *out, const char *label, const char *value);

/* Reads an API error answer {"error":{"code","message"}}: writes its code and message
 * (made safe; code "" if absent) into the given arrays; an answer of another shape gives
 * "the server answered HTTP <status>" (and the start of a text body). */
void sigil_cli_fmt_error(const char *body, size_t len, long status, char *code, size_t codelen,
                         char *msg, size_t msglen);

/* Appends one Entry object as text. Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_cli_fmt_entry(struct sigil_buf *out, const json_t *entry);
/* Appends "Found N entries" and every Entry of the array, a blank line after each. */
int sigil_cli_fmt_entries(struct sigil_buf *out, const json_t *entries);
/* Appends one Agent object as text. */
int sigil_cli_fmt_agent(struct sigil_buf *out, const json_t *agent);
/* Appends "Found N attested agents:" and every Agent of the array. */
int sigil_cli_fmt_agents(struct sigil_buf *out, const json_t *agents);
/* Appends a join token answer ({token, expires_at, agent_id}). */
int sigil_cli_fmt_token(struct sigil_buf *out, const json_t *tok);
/* Appends one Federation relationship as text. */
int sigil_cli_fmt_federation(struct sigil_buf *out, const json_t *rel);
/* Appends "Found N federation relationships" and every relationship of the array. */
int sigil_cli_fmt_federations(struct sigil_buf *out, const json_t *rels);
/* Appends "Found N audit records" and every AuditRecord of the array (before/after as
 * compact ASCII JSON). */
int sigil_cli_fmt_audit(struct sigil_buf *out, const json_t *records);
/* Appends the X.509 authorities of a SPIFFE bundle object as PEM certificates (keys with
 * use "x509-svid" and an x5c). Returns 0, SIGIL_ERR_NOMEM, or SIGIL_ERR_INVALID if a
 * certificate is not base64 DER X.509. */
int sigil_cli_fmt_bundle_pem(struct sigil_buf *out, const json_t *bundle);
/* Appends a bundle map {"trust_domains":{td: bundle}}: per trust domain a "* td" banner,
 * its sequence and its X.509 authorities as PEM. Same returns. */
int sigil_cli_fmt_bundle_map(struct sigil_buf *out, const json_t *map);

#endif
