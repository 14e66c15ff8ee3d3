/* Reading `entry import` input item by item. JSON lines are parsed one line at a time, so a
 * broken line costs only itself; a SPIRE file is parsed whole (jansson gives no positions),
 * then scanned once more to learn the line each entry starts on, for the error reports. */
#include "cli_import.h"

#include "cli_req.h"

#include "sigil/err.h"
#include "sigil/spiffeid.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sigil_cli_import {
    const char *data;
    size_t len;
    enum sigil_cli_import_format fmt;
    size_t count;
    /* JSON lines: where the next line starts and its number */
    size_t pos, line;
    /* SPIRE: the document, its entries, the next index and each entry's line (or NULL) */
    json_t *doc;
    json_t *entries;
    size_t idx;
    size_t *lines;
};

static void imp_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
imp_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool
imp_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool
imp_blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!imp_space(s[i]))
            return false;
    return true;
}

/* Finds the line each element of the top-level "entries" array starts on, in a document
 * jansson has already accepted. Returns 0 if it found exactly n (else the caller reports
 * item numbers instead; a key spelled with escapes is the one way to miss). */
static int
imp_scan_lines(const char *s, size_t len, size_t *lines, size_t n)
{
    size_t depth = 0, line = 1, found = 0, kstart = 0, klen = 0, sstart = 0;
    bool in_str = false, esc = false, in_entries = false, want = false, key_entries = false;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (c == '\n')
            line++;
        if (in_str) {
            if (esc) {
                esc = false;
            } else if (c == '\\') {
                esc = true;
            } else if (c == '"') {
                in_str = false;
                if (depth == 1) {
                    kstart = sstart;
                    klen = i - sstart;
                }
            }
            continue;
        }
        if (want && !imp_space(c) && c != ']') {
            if (found < n)
                lines[found] = line;
            found++;
            want = false;
        }
        switch (c) {
        case '"':
            in_str = true;
            sstart = i + 1;
            break;
        case ':':
            if (depth == 1)
                key_entries = klen == 7 && memcmp(s + kstart, "entries", 7) == 0;
            break;
        case '{':
        case '[':
            depth++;
            if (depth == 2 && c == '[' && key_entries)
                in_entries = want = true;
            break;
        case '}':
        case ']':
            if (depth == 2 && in_entries)
                in_entries = want = false;
            if (depth > 0)
                depth--;
            break;
        case ',':
            if (depth == 2 && in_entries)
                want = true;
            if (depth == 1)
                key_entries = false;
            break;
        default:
            break;
        }
    }
    return found == n ? 0 : -1;
}

int
sigil_cli_import_open(const char *data, size_t len, struct sigil_cli_import **out, char *err,
                      size_t errlen)
{
    struct sigil_cli_import *imp;
    json_t *doc = NULL;
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    if (len > SIGIL_CLI_IMPORT_MAX) {
        imp_err(err, errlen, "the input is over %u MiB: split it",
                SIGIL_CLI_IMPORT_MAX / (1024 * 1024));
        return SIGIL_ERR_RANGE;
    }
    if ((imp = calloc(1, sizeof *imp)) == NULL) {
        imp_err(err, errlen, "out of memory");
        return SIGIL_ERR_NOMEM;
    }
    imp->data = data;
    imp->len = len;
    imp->line = 1;
    /* One JSON document with "entries" is a SPIRE file; JSON lines fail to load as one
     * document at their second line, so this costs little for them. */
    doc = json_loadb(data, len, JSON_REJECT_DUPLICATES, NULL);
    if (json_is_object(doc) && json_object_get(doc, "entries") != NULL) {
        imp->fmt = SIGIL_CLI_IMPORT_SPIRE;
        imp->entries = json_object_get(doc, "entries");
        if (!json_is_array(imp->entries)) {
            imp_err(err, errlen, "\"entries\" must be a list of entries");
            r = SIGIL_ERR_INVALID;
            goto out;
        }
        imp->count = json_array_size(imp->entries);
        if (imp->count > 0) {
            if ((imp->lines = calloc(imp->count, sizeof *imp->lines)) == NULL) {
                imp_err(err, errlen, "out of memory");
                goto out;
            }
            if (imp_scan_lines(data, len, imp->lines, imp->count) != 0) {
                free(imp->lines);
                imp->lines = NULL;
            }
        }
        imp->doc = doc;
        doc = NULL;
    } else {
        imp->fmt = SIGIL_CLI_IMPORT_JSONL;
        for (size_t p = 0; p < len;) {
            const char *nl = memchr(data + p, '\n', len - p);
            size_t end = nl != NULL ? (size_t)(nl - data) : len;

            if (!imp_blank(data + p, end - p))
                imp->count++;
            p = end + 1;
        }
    }
    *out = imp;
    imp = NULL;
    r = 0;
out:
    json_decref(doc);
    sigil_cli_import_free(imp);
    return r;
}

enum sigil_cli_import_format
sigil_cli_import_format(const struct sigil_cli_import *imp)
{
    return imp->fmt;
}

size_t
sigil_cli_import_count(const struct sigil_cli_import *imp)
{
    return imp->count;
}

void
sigil_cli_import_item_clear(struct sigil_cli_import_item *item)
{
    json_decref(item->input);
    item->input = NULL;
    item->index = item->line = 0;
    item->err[0] = '\0';
}

void
sigil_cli_import_free(struct sigil_cli_import *imp)
{
    if (imp == NULL)
        return;
    json_decref(imp->doc);
    free(imp->lines);
    free(imp);
}

/* --- SPIRE's registration file: entries of common.RegistrationEntry as JSON */

/* Fields the server assigns: a SPIRE export carries them, we drop them (Sigil gives new ids). */
static const char *const imp_spire_ignored[] = {"id", "entry_id", "revision_number", "created_at"};
static const char *const imp_spire_fields[] = {
    "selectors",    "spiffe_id",      "parent_id",   "ttl",          "x509_svid_ttl",
    "jwt_svid_ttl", "federates_with", "dns_names",   "admin",        "downstream",
    "hint",         "expires_at",     "entryExpiry", "entry_expiry", "store_svid",
};

/* protojson writes 64-bit integers as strings: take a number or a string of digits. */
static bool
imp_int(const json_t *v, long long *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    return json_is_string(v) && sigil_cli_int_parse(json_string_value(v), 0, INT64_MAX, out) == 0;
}

/* An ID as a string, or as {"trust_domain","path"} (SPIRE's API type); a new string. */
static json_t *
imp_spire_id(const json_t *v, const char *field, char *err, size_t errlen)
{
    const json_t *td, *path;
    char buf[SIGIL_SPIFFEID_MAX + 1];

    if (json_is_string(v))
        return json_string(json_string_value(v));
    td = json_object_get(v, "trust_domain");
    path = json_object_get(v, "path");
    if (!json_is_object(v) || json_object_size(v) != (path != NULL ? 2u : 1u) ||
        !json_is_string(td) || (path != NULL && !json_is_string(path))) {
        imp_err(err, errlen, "%s: a string, or {\"trust_domain\",\"path\"}", field);
        return NULL;
    }
    if ((size_t)snprintf(buf, sizeof buf, "spiffe://%s%s", json_string_value(td),
                         path != NULL ? json_string_value(path) : "") >= sizeof buf) {
        imp_err(err, errlen, "%s: ID-7: longer than 2048 bytes", field);
        return NULL;
    }
    return json_string(buf);
}

static json_t *
imp_spire_selectors(const json_t *v, char *err, size_t errlen)
{
    json_t *arr = json_array(), *res = NULL, *s, *t, *val;
    size_t i;

    if (!json_is_array(v)) {
        imp_err(err, errlen, "selectors: must be a list of {\"type\",\"value\"}");
        goto out;
    }
    json_array_foreach(v, i, s)
    {
        json_t *one;

        if (json_is_string(s)) {
            one = json_string(json_string_value(s));
        } else {
            t = json_object_get(s, "type");
            val = json_object_get(s, "value");
            if (!json_is_object(s) || json_object_size(s) != 2 || !json_is_string(t) ||
                !json_is_string(val)) {
                imp_err(err, errlen, "selectors[%zu]: must be {\"type\",\"value\"}", i);
                goto out;
            }
            one = json_sprintf("%s:%s", json_string_value(t), json_string_value(val));
        }
        if (one == NULL || json_array_append_new(arr, one) != 0) {
            imp_err(err, errlen, "out of memory");
            goto out;
        }
    }
    res = arr;
    arr = NULL;
out:
    json_decref(arr);
    return res;
}

/* federates_with in SPIRE may be "td" or "spiffe://td"; the API wants bare names. */
static json_t *
imp_spire_tds(const json_t *v, char *err, size_t errlen)
{
    char td[SIGIL_TRUST_DOMAIN_MAX + 1];
    const char *why = NULL;
    json_t *arr = json_array(), *res = NULL, *s;
    size_t i;

    if (!json_is_array(v)) {
        imp_err(err, errlen, "federates_with: must be a list of trust domains");
        goto out;
    }
    json_array_foreach(v, i, s)
    {
        if (!json_is_string(s) ||
            sigil_trust_domain_parse(json_string_value(s), json_string_length(s), td, &why) != 0) {
            imp_err(err, errlen, "federates_with[%zu]: %s", i,
                    json_is_string(s) ? why : "must be a string");
            goto out;
        }
        if (json_array_append_new(arr, json_string(td)) != 0) {
            imp_err(err, errlen, "out of memory");
            goto out;
        }
    }
    res = arr;
    arr = NULL;
out:
    json_decref(arr);
    return res;
}

/* Unix seconds (0: never) to RFC 3339 UTC; a new string, or NULL with err. */
static int
imp_spire_expiry(const json_t *v, json_t **out, char *err, size_t errlen)
{
    long long secs = 0;
    struct tm tm;
    char buf[32];
    time_t t;

    *out = NULL;
    if (!imp_int(v, &secs) || secs > 253402300799LL /* 9999-12-31 */) {
        imp_err(err, errlen, "expires_at: unix seconds");
        return SIGIL_ERR_INVALID;
    }
    if (secs == 0)
        return 0;
    t = (time_t)secs;
    if (gmtime_r(&t, &tm) == NULL || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        imp_err(err, errlen, "expires_at: out of range");
        return SIGIL_ERR_INVALID;
    }
    return (*out = json_string(buf)) != NULL ? 0 : SIGIL_ERR_NOMEM;
}

static int
imp_put(json_t *o, const char *key, json_t *v, char *err, size_t errlen)
{
    if (v == NULL)
        return SIGIL_ERR_INVALID; /* err set by whoever made v */
    if (json_object_set_new(o, key, v) != 0) {
        imp_err(err, errlen, "out of memory");
        return SIGIL_ERR_NOMEM;
    }
    return 0;
}

/* Converts one SPIRE entry into an EntryInput (*out), or says why not in err. */
static int
imp_spire_entry(const json_t *e, json_t **out, char *err, size_t errlen)
{
    json_t *o = NULL, *v, *exp = NULL;
    const char *key;
    long long ttl = 0, ttl2 = 0;
    int r = SIGIL_ERR_INVALID;

    *out = NULL;
    if (!json_is_object(e)) {
        imp_err(err, errlen, "an entry must be a JSON object");
        return SIGIL_ERR_INVALID;
    }
    json_object_foreach((json_t *)e, key, v)
    {
        bool known = false;

        for (size_t i = 0; i < sizeof imp_spire_fields / sizeof *imp_spire_fields; i++)
            known = known || strcmp(key, imp_spire_fields[i]) == 0;
        for (size_t i = 0; i < sizeof imp_spire_ignored / sizeof *imp_spire_ignored; i++)
            known = known || strcmp(key, imp_spire_ignored[i]) == 0;
        if (!known) {
            imp_err(err, errlen, "unknown field \"%.64s\"", key);
            return SIGIL_ERR_INVALID;
        }
    }
    if ((v = json_object_get(e, "store_svid")) != NULL && !json_is_false(v)) {
        imp_err(err, errlen, "store_svid: Sigil does not store SVIDs for entries; remove it");
        return SIGIL_ERR_UNSUPPORTED;
    }
    if ((o = json_object()) == NULL) {
        imp_err(err, errlen, "out of memory");
        return SIGIL_ERR_NOMEM;
    }
    if (((v = json_object_get(e, "spiffe_id")) != NULL &&
         (r = imp_put(o, "spiffe_id", imp_spire_id(v, "spiffe_id", err, errlen), err, errlen)) !=
             0) ||
        ((v = json_object_get(e, "parent_id")) != NULL &&
         (r = imp_put(o, "parent_id", imp_spire_id(v, "parent_id", err, errlen), err, errlen)) !=
             0) ||
        ((v = json_object_get(e, "selectors")) != NULL &&
         (r = imp_put(o, "selectors", imp_spire_selectors(v, err, errlen), err, errlen)) != 0) ||
        ((v = json_object_get(e, "federates_with")) != NULL &&
         (r = imp_put(o, "federates_with", imp_spire_tds(v, err, errlen), err, errlen)) != 0))
        goto out;
    /* "ttl" is the old name of x509_svid_ttl; both given must agree */
    if ((v = json_object_get(e, "ttl")) != NULL && !imp_int(v, &ttl)) {
        imp_err(err, errlen, "ttl: seconds");
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    if ((v = json_object_get(e, "x509_svid_ttl")) != NULL) {
        if (!imp_int(v, &ttl2) || (json_object_get(e, "ttl") != NULL && ttl != ttl2)) {
            imp_err(err, errlen, "x509_svid_ttl: seconds (and the same as ttl if both given)");
            r = SIGIL_ERR_INVALID;
            goto out;
        }
        ttl = ttl2;
    }
    if (ttl != 0 && (r = imp_put(o, "x509_svid_ttl", json_integer(ttl), err, errlen)) != 0)
        goto out;
    if ((v = json_object_get(e, "jwt_svid_ttl")) != NULL) {
        if (!imp_int(v, &ttl2)) {
            imp_err(err, errlen, "jwt_svid_ttl: seconds");
            r = SIGIL_ERR_INVALID;
            goto out;
        }
        if (ttl2 != 0 && (r = imp_put(o, "jwt_svid_ttl", json_integer(ttl2), err, errlen)) != 0)
            goto out;
    }
    /* the same meaning and shape as ours */
    {
        static const char *const same[] = {"dns_names", "admin", "downstream", "hint"};

        for (size_t i = 0; i < sizeof same / sizeof *same; i++)
            if ((v = json_object_get(e, same[i])) != NULL &&
                (r = imp_put(o, same[i], json_deep_copy(v), err, errlen)) != 0)
                goto out;
    }
    for (int i = 0; i < 3; i++) {
        static const char *const names[] = {"expires_at", "entryExpiry", "entry_expiry"};

        if ((v = json_object_get(e, names[i])) == NULL)
            continue;
        if ((r = imp_spire_expiry(v, &exp, err, errlen)) != 0)
            goto out;
        if (exp != NULL && (r = imp_put(o, "expires_at", exp, err, errlen)) != 0)
            goto out;
    }
    if ((r = sigil_cli_entry_input_check(o, false, err, errlen)) != 0)
        goto out;
    *out = o;
    o = NULL;
out:
    json_decref(o);
    return r;
}

int
sigil_cli_import_next(struct sigil_cli_import *imp, struct sigil_cli_import_item *item)
{
    json_error_t jerr;
    json_t *j;

    sigil_cli_import_item_clear(item);
    if (imp->fmt == SIGIL_CLI_IMPORT_SPIRE) {
        if (imp->idx >= imp->count)
            return 0;
        item->index = imp->idx + 1;
        item->line = imp->lines != NULL ? imp->lines[imp->idx] : 0;
        if (imp_spire_entry(json_array_get(imp->entries, imp->idx), &item->input, item->err,
                            sizeof item->err) == SIGIL_ERR_NOMEM)
            return SIGIL_ERR_NOMEM;
        imp->idx++;
        return 1;
    }
    while (imp->pos < imp->len) {
        const char *start = imp->data + imp->pos;
        const char *nl = memchr(start, '\n', imp->len - imp->pos);
        size_t n = nl != NULL ? (size_t)(nl - start) : imp->len - imp->pos;
        size_t line = imp->line++;

        imp->pos += n + 1;
        if (imp_blank(start, n))
            continue;
        item->index = ++imp->idx;
        item->line = line;
        if (n > SIGIL_CLI_IMPORT_LINE_MAX) {
            imp_err(item->err, sizeof item->err, "longer than %u bytes", SIGIL_CLI_IMPORT_LINE_MAX);
            return 1;
        }
        if ((j = json_loadb(start, n, JSON_REJECT_DUPLICATES, &jerr)) == NULL) {
            imp_err(item->err, sizeof item->err, "not JSON: %s (column %d)", jerr.text,
                    jerr.column);
            return 1;
        }
        if (sigil_cli_entry_input_check(j, false, item->err, sizeof item->err) != 0) {
            json_decref(j);
            return 1;
        }
        item->input = j;
        return 1;
    }
    return 0;
}
