/* Admin API answers to text for people. The labels follow SPIRE's CLI so its users can read
 * (and grep) the output as they are used to; the values are escaped because they come from
 * the database, and entry hints or selectors are written by whoever may create entries. */
#include "cli_fmt.h"

#include "sigil/duration.h"
#include "sigil/encoding.h"
#include "sigil/err.h"
#include "sigil/utf8.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* Longest certificate we turn into PEM (as sigil/bundle.h caps them). */
#define FMT_CERT_MAX (64 * 1024)

static bool
fmt_bidi_control(uint32_t cp)
{
    /* LRE..RLO, LRI..PDI, LRM/RLM/ALM: they reorder what a terminal shows */
    return (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200e ||
           cp == 0x200f || cp == 0x061c;
}

int
sigil_cli_fmt_safe(struct sigil_buf *out, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        uint32_t cp = 0;
        size_t n = sigil_utf8_decode(p + i, len - i, &cp);

        if (n == 0) {
            if (sigil_buf_appendf(out, "\\x%02X", p[i]) != 0)
                return SIGIL_ERR_NOMEM;
            i++;
            continue;
        }
        if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f)) {
            if (sigil_buf_appendf(out, "\\x%02X", (unsigned)cp) != 0)
                return SIGIL_ERR_NOMEM;
        } else if (fmt_bidi_control(cp)) {
            if (sigil_buf_appendf(out, "\\u{%04X}", (unsigned)cp) != 0)
                return SIGIL_ERR_NOMEM;
        } else if (cp == '\\') {
            /* so that an escape in the output always came from us */
            if (sigil_buf_append_str(out, "\\\\") != 0)
                return SIGIL_ERR_NOMEM;
        } else if (sigil_buf_append(out, p + i, n) != 0) {
            return SIGIL_ERR_NOMEM;
        }
        i += n;
    }
    return 0;
}

int
sigil_cli_fmt_kv(struct sigil_buf *out, const char *label, const char *value)
{
    if (sigil_buf_appendf(out, "%-*s : ", SIGIL_CLI_LABEL_WIDTH, label) != 0 ||
        sigil_cli_fmt_safe(out, value, strlen(value)) != 0 || sigil_buf_append_str(out, "\n") != 0)
        return SIGIL_ERR_NOMEM;
    return 0;
}

static int
fmt_str_value(struct sigil_buf *out, const char *label, const json_t *v)
{
    if (sigil_buf_appendf(out, "%-*s : ", SIGIL_CLI_LABEL_WIDTH, label) != 0 ||
        sigil_cli_fmt_safe(out, json_string_value(v), json_string_length(v)) != 0 ||
        sigil_buf_append_str(out, "\n") != 0)
        return SIGIL_ERR_NOMEM;
    return 0;
}

/* A line for a string member; nothing if it is absent (or, when skip_empty, ""). */
static int
fmt_str(struct sigil_buf *out, const char *label, const json_t *o, const char *key, bool skip_empty)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_string(v) || (skip_empty && json_string_length(v) == 0))
        return 0;
    return fmt_str_value(out, label, v);
}

static int
fmt_int(struct sigil_buf *out, const char *label, const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_integer(v))
        return 0;
    return sigil_buf_appendf(out, "%-*s : %" JSON_INTEGER_FORMAT "\n", SIGIL_CLI_LABEL_WIDTH, label,
                             json_integer_value(v));
}

/* Booleans print always (false included) unless only_true. */
static int
fmt_bool(struct sigil_buf *out, const char *label, const json_t *o, const char *key, bool only_true)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_boolean(v) || (only_true && !json_is_true(v)))
        return 0;
    return sigil_cli_fmt_kv(out, label, json_is_true(v) ? "true" : "false");
}

/* A TTL in seconds as a duration ("1h"), 0 or absent as "default". */
static int
fmt_ttl(struct sigil_buf *out, const char *label, const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    char d[SIGIL_DURATION_FMT_LEN];
    json_int_t s;

    if (v != NULL && !json_is_integer(v))
        return 0;
    s = v == NULL ? 0 : json_integer_value(v);
    if (s <= 0 || s > INT64_MAX / 1000)
        return sigil_cli_fmt_kv(out, label, s == 0 ? "default" : "invalid");
    sigil_duration_format((int64_t)s * 1000, d, sizeof d);
    return sigil_cli_fmt_kv(out, label, d);
}

/* One line per string of an array member. */
static int
fmt_list(struct sigil_buf *out, const char *label, const json_t *o, const char *key)
{
    const json_t *a = json_object_get(o, key), *v;
    size_t i;

    if (!json_is_array(a))
        return 0;
    json_array_foreach(a, i, v)
    {
        if (json_is_string(v) && fmt_str_value(out, label, v) != 0)
            return SIGIL_ERR_NOMEM;
    }
    return 0;
}

/* Copies a safe rendering of len bytes of s into dst (truncated to fit, NUL-terminated). */
static void
fmt_safe_copy(char *dst, size_t dstlen, const char *s, size_t len)
{
    struct sigil_buf b = {0};

    if (dstlen == 0)
        return;
    dst[0] = '\0';
    if (sigil_cli_fmt_safe(&b, s, len) == 0 && sigil_buf_append(&b, "", 1) == 0)
        snprintf(dst, dstlen, "%s", (const char *)b.data);
    sigil_buf_free(&b);
}

void
sigil_cli_fmt_error(const char *body, size_t len, long status, char *code, size_t codelen,
                    char *msg, size_t msglen)
{
    json_t *j = NULL, *e, *c, *m;
    char head[256];

    if (codelen > 0)
        code[0] = '\0';
    if (len > 0 && len <= 1024 * 1024 &&
        (j = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL)) != NULL &&
        json_is_object(e = json_object_get(j, "error")) &&
        json_is_string(m = json_object_get(e, "message"))) {
        fmt_safe_copy(msg, msglen, json_string_value(m), json_string_length(m));
        if (json_is_string(c = json_object_get(e, "code")))
            fmt_safe_copy(code, codelen, json_string_value(c), json_string_length(c));
        json_decref(j);
        return;
    }
    if (json_is_string(e = json_object_get(j, "error"))) {
        /* {"error":"not found"}: what an older server's HTTP layer said for a path it has no route
         * for */
        fmt_safe_copy(head, sizeof head, json_string_value(e), json_string_length(e));
        snprintf(msg, msglen, "%s (HTTP %ld)", head, status);
        json_decref(j);
        return;
    }
    json_decref(j);
    if (len == 0) {
        snprintf(msg, msglen, "the server answered HTTP %ld", status);
        return;
    }
    fmt_safe_copy(head, sizeof head, body, len > 160 ? 160 : len);
    snprintf(msg, msglen, "the server answered HTTP %ld: %s%s", status, head,
             len > 160 ? "..." : "");
}

int
sigil_cli_fmt_entry(struct sigil_buf *out, const json_t *e)
{
    if (fmt_str(out, "Entry ID", e, "id", false) != 0 ||
        fmt_str(out, "SPIFFE ID", e, "spiffe_id", false) != 0 ||
        fmt_str(out, "Parent ID", e, "parent_id", false) != 0 ||
        fmt_int(out, "Revision", e, "revision") != 0 ||
        fmt_str(out, "Team", e, "team", true) != 0 ||
        fmt_ttl(out, "X509-SVID TTL", e, "x509_svid_ttl") != 0 ||
        fmt_ttl(out, "JWT-SVID TTL", e, "jwt_svid_ttl") != 0 ||
        fmt_str(out, "Expires at", e, "expires_at", true) != 0 ||
        fmt_list(out, "Selector", e, "selectors") != 0 ||
        fmt_list(out, "FederatesWith", e, "federates_with") != 0 ||
        fmt_list(out, "DNS name", e, "dns_names") != 0 ||
        fmt_bool(out, "Admin", e, "admin", true) != 0 ||
        fmt_bool(out, "Downstream", e, "downstream", true) != 0 ||
        fmt_str(out, "Hint", e, "hint", true) != 0 ||
        fmt_str(out, "Created at", e, "created_at", false) != 0 ||
        fmt_str(out, "Updated at", e, "updated_at", false) != 0)
        return SIGIL_ERR_NOMEM;
    return 0;
}

typedef int (*fmt_one_fn)(struct sigil_buf *out, const json_t *o);

/* "Found N <things>" (singular for one), then each object and a blank line. */
static int
fmt_many(struct sigil_buf *out, const json_t *arr, const char *one, const char *many,
         const char *colon, fmt_one_fn fn)
{
    const json_t *v;
    size_t i, n = json_is_array(arr) ? json_array_size(arr) : 0;

    if (sigil_buf_appendf(out, "Found %zu %s%s\n\n", n, n == 1 ? one : many, colon) != 0)
        return SIGIL_ERR_NOMEM;
    json_array_foreach(arr, i, v)
    {
        if (!json_is_object(v))
            continue;
        if (fn(out, v) != 0 || sigil_buf_append_str(out, "\n") != 0)
            return SIGIL_ERR_NOMEM;
    }
    return 0;
}

int
sigil_cli_fmt_entries(struct sigil_buf *out, const json_t *entries)
{
    return fmt_many(out, entries, "entry", "entries", "", sigil_cli_fmt_entry);
}

int
sigil_cli_fmt_agent(struct sigil_buf *out, const json_t *a)
{
    if (fmt_str(out, "SPIFFE ID", a, "spiffe_id", false) != 0 ||
        fmt_str(out, "Attestation type", a, "attestation_type", false) != 0 ||
        fmt_str(out, "Serial number", a, "serial", false) != 0 ||
        fmt_str(out, "Expires at", a, "expires_at", false) != 0 ||
        fmt_bool(out, "Banned", a, "banned", false) != 0 ||
        fmt_bool(out, "Can re-attest", a, "can_reattest", false) != 0 ||
        fmt_list(out, "Selector", a, "selectors") != 0)
        return SIGIL_ERR_NOMEM;
    return 0;
}

int
sigil_cli_fmt_agents(struct sigil_buf *out, const json_t *agents)
{
    return fmt_many(out, agents, "attested agent", "attested agents", ":", sigil_cli_fmt_agent);
}

int
sigil_cli_fmt_token(struct sigil_buf *out, const json_t *t)
{
    if (fmt_str(out, "Token", t, "token", false) != 0 ||
        fmt_str(out, "Expires at", t, "expires_at", false) != 0 ||
        fmt_str(out, "Agent ID", t, "agent_id", true) != 0)
        return SIGIL_ERR_NOMEM;
    return 0;
}

int
sigil_cli_fmt_federation(struct sigil_buf *out, const json_t *f)
{
    if (fmt_str(out, "Trust domain", f, "trust_domain", false) != 0 ||
        fmt_str(out, "Bundle endpoint", f, "bundle_endpoint_url", false) != 0 ||
        fmt_str(out, "Profile", f, "profile", false) != 0 ||
        fmt_str(out, "Endpoint SPIFFE ID", f, "endpoint_spiffe_id", true) != 0)
        return SIGIL_ERR_NOMEM;
    return 0;
}

int
sigil_cli_fmt_federations(struct sigil_buf *out, const json_t *rels)
{
    return fmt_many(out, rels, "federation relationship", "federation relationships", ":",
                    sigil_cli_fmt_federation);
}

/* before/after: any JSON, shown compact and ASCII-only (then made safe like any value). */
static int
fmt_json_member(struct sigil_buf *out, const char *label, const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    char *s;
    int r;

    if (v == NULL)
        return 0;
    if ((s = json_dumps(v, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY)) == NULL)
        return SIGIL_ERR_NOMEM;
    r = sigil_cli_fmt_kv(out, label, s);
    free(s);
    return r;
}

static int
fmt_audit_one(struct sigil_buf *out, const json_t *a)
{
    if (fmt_int(out, "Record ID", a, "id") != 0 || fmt_str(out, "At", a, "at", false) != 0 ||
        fmt_str(out, "Actor", a, "actor", false) != 0 ||
        fmt_str(out, "Action", a, "action", false) != 0 ||
        fmt_str(out, "Object type", a, "object_type", false) != 0 ||
        fmt_str(out, "Object ID", a, "object_id", false) != 0 ||
        fmt_int(out, "Revision", a, "revision") != 0 ||
        fmt_json_member(out, "Before", a, "before") != 0 ||
        fmt_json_member(out, "After", a, "after") != 0)
        return SIGIL_ERR_NOMEM;
    return 0;
}

int
sigil_cli_fmt_audit(struct sigil_buf *out, const json_t *records)
{
    return fmt_many(out, records, "audit record", "audit records", "", fmt_audit_one);
}

/* One x5c certificate (standard base64 of DER) as PEM. */
static int
fmt_pem_cert(struct sigil_buf *out, const json_t *b64)
{
    uint8_t *der = NULL;
    const unsigned char *p;
    size_t der_len = 0;
    X509 *x = NULL;
    BIO *bio = NULL;
    char *pem;
    long pem_len;
    int r = SIGIL_ERR_INVALID;

    if (!json_is_string(b64) || json_string_length(b64) > FMT_CERT_MAX * 4 / 3 + 4 ||
        sigil_b64_decode(json_string_value(b64), json_string_length(b64), &der, &der_len) != 0)
        goto out;
    p = der;
    if (der_len > LONG_MAX || (x = d2i_X509(NULL, &p, (long)der_len)) == NULL || p != der + der_len)
        goto out;
    r = SIGIL_ERR_NOMEM;
    if ((bio = BIO_new(BIO_s_mem())) == NULL || PEM_write_bio_X509(bio, x) != 1)
        goto out;
    pem_len = BIO_get_mem_data(bio, &pem);
    if (pem_len < 0 || sigil_buf_append(out, pem, (size_t)pem_len) != 0)
        goto out;
    r = 0;
out:
    BIO_free(bio);
    X509_free(x);
    free(der);
    return r;
}

int
sigil_cli_fmt_bundle_pem(struct sigil_buf *out, const json_t *bundle)
{
    const json_t *keys = json_object_get(bundle, "keys"), *k, *use, *x5c;
    size_t i;
    int r;

    if (!json_is_array(keys))
        return SIGIL_ERR_INVALID;
    json_array_foreach(keys, i, k)
    {
        use = json_object_get(k, "use");
        x5c = json_object_get(k, "x5c");
        if (!json_is_string(use) || strcmp(json_string_value(use), "x509-svid") != 0 ||
            !json_is_array(x5c) || json_array_size(x5c) == 0)
            continue;
        if ((r = fmt_pem_cert(out, json_array_get(x5c, 0))) != 0)
            return r;
    }
    return 0;
}

int
sigil_cli_fmt_bundle_map(struct sigil_buf *out, const json_t *map)
{
    const json_t *tds = json_object_get(map, "trust_domains"), *b;
    const char *td;
    int r;

    if (!json_is_object(tds))
        return SIGIL_ERR_INVALID;
    if (sigil_buf_appendf(out, "Found %zu federated bundle%s\n\n", json_object_size(tds),
                          json_object_size(tds) == 1 ? "" : "s") != 0)
        return SIGIL_ERR_NOMEM;
    json_object_foreach((json_t *)tds, td, b)
    {
        if (sigil_buf_append_str(out, "* ") != 0 || sigil_cli_fmt_safe(out, td, strlen(td)) != 0 ||
            sigil_buf_append_str(out, "\n") != 0 || fmt_int(out, "Sequence", b, "spiffe_sequence"))
            return SIGIL_ERR_NOMEM;
        if ((r = sigil_cli_fmt_bundle_pem(out, b)) != 0)
            return r;
        if (sigil_buf_append_str(out, "\n") != 0)
            return SIGIL_ERR_NOMEM;
    }
    return 0;
}
