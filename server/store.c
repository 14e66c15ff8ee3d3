/* The datastore's shared parts: error texts, audit rows, PostgreSQL array literals, page
 * tokens, RFC 3339 times, and registration entries as structs and as the admin API's JSON.
 * The SQL of each object kind lives in store_entries.c, store_agents.c, store_bundles.c. */
#include "store.h"
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "sigil/encoding.h"
#include "sigil/err.h"
#include "sigil/spiffeid.h"

void
store_err(struct sigil_store_err *err, const char *code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return;
    snprintf(err->code, sizeof err->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

int
store_db_fail(struct sigil_db_conn *c, int r, struct sigil_store_err *err)
{
    const struct sigil_db_error *e = sigil_db_conn_error(c);

    if (r == 0)
        r = SIGIL_ERR_INTERNAL;
    /* keep a more precise text a body already set (e.g. "entry.exists") */
    if (err != NULL && err->code[0] != '\0')
        return r;
    store_err(err, r == SIGIL_ERR_IO ? "db.unavailable" : "db.error", "database: %s",
              e != NULL && e->message[0] != '\0' ? e->message : sigil_strerror(r));
    return r;
}

int
store_actor_check(const char *actor, struct sigil_store_err *err)
{
    size_t n;

    if (actor == NULL || (n = strnlen(actor, SIGIL_STORE_ACTOR_MAX + 1)) == 0) {
        store_err(err, "internal", "no actor given for an audited write");
        return SIGIL_ERR_INVALID;
    }
    if (n > SIGIL_STORE_ACTOR_MAX) {
        store_err(err, "internal", "actor longer than %d bytes", SIGIL_STORE_ACTOR_MAX);
        return SIGIL_ERR_RANGE;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)actor[i];
        if (ch < 0x21 || ch > 0x7e) {
            store_err(err, "internal", "actor has a byte that is not printable ASCII");
            return SIGIL_ERR_INVALID;
        }
    }
    return 0;
}

int
store_audit(struct sigil_db_conn *c, const char *actor, const char *action, const char *object_type,
            const char *object_id, const json_t *before, const json_t *after,
            struct sigil_store_err *err)
{
    char *b = NULL, *a = NULL;
    int r = SIGIL_ERR_NOMEM;

    if ((before != NULL && (b = json_dumps(before, JSON_COMPACT)) == NULL) ||
        (after != NULL && (a = json_dumps(after, JSON_COMPACT)) == NULL)) {
        store_err(err, "internal", "out of memory");
        goto out;
    }
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(actor),
                                       SIGIL_DB_TEXT(action),
                                       SIGIL_DB_TEXT(object_type),
                                       SIGIL_DB_TEXT(object_id),
                                       b ? SIGIL_DB_TEXT(b) : SIGIL_DB_NULL,
                                       a ? SIGIL_DB_TEXT(a) : SIGIL_DB_NULL};
    r = sigil_db_exec(
        c,
        "INSERT INTO audit_log (actor, action, object_type, object_id, before, after) "
        "VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb)",
        p, 6, NULL);
    if (r != 0)
        r = store_db_fail(c, r, err);
out:
    free(b);
    free(a);
    return r;
}

void
store_arr_add(struct store_arr *a, const char *s)
{
    if (a->r != 0)
        return;
    if (a->b.len == 0 && (a->r = sigil_buf_append(&a->b, "{", 1)) != 0)
        return;
    if (a->n > 0 && (a->r = sigil_buf_append(&a->b, ",", 1)) != 0)
        return;
    a->n++;
    if (s == NULL) {
        a->r = sigil_buf_append_str(&a->b, "NULL");
        return;
    }
    /* every element quoted, '"' and '\' escaped: nothing else is special inside quotes */
    if ((a->r = sigil_buf_reserve(&a->b, strlen(s) * 2 + 2)) != 0)
        return;
    a->b.data[a->b.len++] = '"';
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            a->b.data[a->b.len++] = '\\';
        a->b.data[a->b.len++] = (uint8_t)*p;
    }
    a->b.data[a->b.len++] = '"';
}

void
store_arr_add_i64(struct store_arr *a, int64_t v)
{
    char tmp[24];

    snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    store_arr_add(a, tmp);
}

const char *
store_arr_end(struct store_arr *a)
{
    if (a->r == 0 && a->b.len == 0)
        a->r = sigil_buf_append(&a->b, "{", 1);
    if (a->r == 0)
        a->r = sigil_buf_append(&a->b, "}", 2); /* with the NUL */
    if (a->r != 0)
        return NULL;
    a->b.len--; /* the NUL is not content */
    return (const char *)a->b.data;
}

void
store_arr_free(struct store_arr *a)
{
    sigil_buf_free(&a->b);
    memset(a, 0, sizeof *a);
}

static bool
is_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

bool
store_uuid_valid(const char *s)
{
    if (s == NULL || strnlen(s, SIGIL_STORE_UUID_LEN + 1) != SIGIL_STORE_UUID_LEN)
        return false;
    for (size_t i = 0; i < SIGIL_STORE_UUID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex(s[i]))
            return false;
    }
    return true;
}

int
store_uuid_new(char out[SIGIL_STORE_UUID_LEN + 1])
{
    uint8_t b[16];
    char hex[33];

    if (sodium_init() < 0)
        return SIGIL_ERR_CRYPTO;
    randombytes_buf(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    sigil_hex_encode(b, sizeof b, hex);
    snprintf(out, SIGIL_STORE_UUID_LEN + 1, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12,
             hex + 16, hex + 20);
    return 0;
}

char *
store_token_encode(const char *key)
{
    return sigil_b64url_encode((const uint8_t *)key, strlen(key));
}

int
store_token_decode(const char *token, char **key, struct sigil_store_err *err)
{
    uint8_t *raw = NULL;
    size_t n = 0, len;

    *key = NULL;
    len = strnlen(token, SIGIL_STORE_PAGE_TOKEN_MAX + 1);
    if (len == 0 || len > SIGIL_STORE_PAGE_TOKEN_MAX ||
        sigil_b64url_decode(token, len, &raw, &n) != 0 || n == 0 || memchr(raw, 0, n) != NULL) {
        free(raw);
        store_err(err, "page_token.invalid",
                  "page_token is not one this server gave out: start again without it");
        return SIGIL_ERR_INVALID;
    }
    if ((*key = malloc(n + 1)) == NULL) {
        free(raw);
        return SIGIL_ERR_NOMEM;
    }
    memcpy(*key, raw, n);
    (*key)[n] = '\0';
    free(raw);
    return 0;
}

int
store_page_size(size_t in, size_t *out, struct sigil_store_err *err)
{
    if (in > SIGIL_STORE_PAGE_MAX) {
        store_err(err, "page_size.range", "page_size must be 1..%d", SIGIL_STORE_PAGE_MAX);
        return SIGIL_ERR_RANGE;
    }
    *out = in == 0 ? SIGIL_STORE_PAGE_DEFAULT : in;
    return 0;
}

char *
store_res_dup(const struct sigil_db_res *res, size_t row, size_t col, int *r)
{
    const char *s = sigil_db_res_text(res, row, col);
    char *d;

    if (s == NULL)
        return NULL;
    if ((d = strdup(s)) == NULL)
        *r = SIGIL_ERR_NOMEM;
    return d;
}

int64_t
store_res_i64(const struct sigil_db_res *res, size_t row, size_t col)
{
    int64_t v = 0;

    if (sigil_db_res_int64(res, row, col, &v) != 0)
        return 0;
    return v;
}

bool
store_res_bool(const struct sigil_db_res *res, size_t row, size_t col)
{
    bool v = false;

    if (sigil_db_res_bool(res, row, col, &v) != 0)
        return false;
    return v;
}

void
sigil_store_time_format(int64_t t, char out[32])
{
    struct tm tm;
    time_t tt = (time_t)t;

    if (gmtime_r(&tt, &tm) == NULL || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "1970-01-01T00:00:00Z");
}

/* Reads exactly n decimal digits. */
static bool
digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        char ch = (*p)[i];
        if (ch < '0' || ch > '9')
            return false;
        v = v * 10 + (ch - '0');
    }
    *p += n;
    *out = v;
    return true;
}

int
sigil_store_time_parse(const char *s, int64_t *out)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
    struct tm tm;
    const char *p = s;

    *out = 0;
    if (s == NULL || strnlen(s, 64) >= 64)
        return SIGIL_ERR_INVALID;
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' ||
        !digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
        return SIGIL_ERR_INVALID;
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' ||
        !digits(&p, 2, &sec))
        return SIGIL_ERR_INVALID;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return SIGIL_ERR_INVALID;
        for (int i = 0; *p >= '0' && *p <= '9'; i++, p++)
            if (i >= 9)
                return SIGIL_ERR_INVALID;
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p++ == '+' ? 1 : -1;
        if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om) || oh > 23 || om > 59)
            return SIGIL_ERR_INVALID;
    } else {
        return SIGIL_ERR_INVALID;
    }
    if (*p != '\0' || y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
        mi > 59 || sec > 60)
        return SIGIL_ERR_INVALID;
    if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return SIGIL_ERR_INVALID;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec == 60 ? 59 : sec; /* a leap second counts as the second before */
    *out = (int64_t)timegm(&tm) - (int64_t)sign * (oh * 3600 + om * 60);
    if (*out < 0) {
        *out = 0;
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

int
store_json_set_str(json_t *o, const char *key, const char *s)
{
    if (s == NULL)
        return 0;
    return json_object_set_new(o, key, json_string(s)) == 0 ? 0 : SIGIL_ERR_NOMEM;
}

int
store_json_set_time(json_t *o, const char *key, int64_t t)
{
    char buf[32];

    sigil_store_time_format(t, buf);
    return json_object_set_new(o, key, json_string(buf)) == 0 ? 0 : SIGIL_ERR_NOMEM;
}

int
store_json_str(const json_t *o, const char *key, size_t max, const char **out,
               struct sigil_store_err *err)
{
    const json_t *v = json_object_get(o, key);

    *out = NULL;
    if (v == NULL)
        return 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        store_err(err, "request.invalid", "%s must be a string (without NUL)", key);
        return SIGIL_ERR_INVALID;
    }
    if (json_string_length(v) > max) {
        store_err(err, "request.invalid", "%s is longer than %zu bytes", key, max);
        return SIGIL_ERR_RANGE;
    }
    *out = json_string_value(v);
    return 0;
}

int
store_json_only(const json_t *o, const char *const *allowed, const char *what,
                struct sigil_store_err *err)
{
    const char *key;
    const json_t *v;

    if (!json_is_object(o)) {
        store_err(err, "request.invalid", "%s must be a JSON object", what);
        return SIGIL_ERR_INVALID;
    }
    json_object_foreach((json_t *)o, key, v)
    {
        size_t i;
        (void)v;
        for (i = 0; allowed[i] != NULL; i++)
            if (strcmp(key, allowed[i]) == 0)
                break;
        if (allowed[i] == NULL) {
            store_err(err, "request.unknown_field", "%s: unknown field \"%.64s\"", what, key);
            return SIGIL_ERR_INVALID;
        }
    }
    return 0;
}

static void
strv_free(struct sigil_store_strv *v)
{
    for (size_t i = 0; i < v->count; i++)
        free(v->items[i]);
    free(v->items);
    v->items = NULL;
    v->count = 0;
}

/* Splits a newline-joined text (NULL or "": empty) into v. */
static int
strv_split(const char *s, struct sigil_store_strv *v)
{
    size_t n = 1;

    v->items = NULL;
    v->count = 0;
    if (s == NULL || *s == '\0')
        return 0;
    for (const char *p = s; *p != '\0'; p++)
        n += *p == '\n';
    if ((v->items = calloc(n, sizeof *v->items)) == NULL)
        return SIGIL_ERR_NOMEM;
    for (const char *p = s;;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl != NULL ? (size_t)(nl - p) : strlen(p);
        if ((v->items[v->count] = strndup(p, len)) == NULL)
            return SIGIL_ERR_NOMEM;
        v->count++;
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    return 0;
}

void
sigil_store_entry_free(struct sigil_store_entry *e)
{
    if (e == NULL)
        return;
    free(e->spiffe_id);
    free(e->parent_id);
    sigil_selector_set_free(&e->selectors);
    strv_free(&e->dns_names);
    strv_free(&e->federates_with);
    free(e->hint);
    free(e->team);
    memset(e, 0, sizeof *e);
}

void
sigil_store_entry_list_free(struct sigil_store_entry_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->count; i++)
        sigil_store_entry_free(&l->items[i]);
    free(l->items);
    free(l->next_page_token);
    memset(l, 0, sizeof *l);
}

void
sigil_store_changes_free(struct sigil_store_changes *ch)
{
    if (ch == NULL)
        return;
    sigil_store_entry_list_free(&ch->upserted);
    strv_free(&ch->deleted);
    memset(ch, 0, sizeof *ch);
}

/* A DNS name as an SVID's SAN carries it: LDH labels, '.'-separated, an optional leading
 * "*." wildcard; no empty label. */
static bool
dns_name_valid(const char *s)
{
    size_t n = strnlen(s, SIGIL_STORE_DNS_NAME_MAX + 1), label = 0;

    if (n == 0 || n > SIGIL_STORE_DNS_NAME_MAX)
        return false;
    if (n > 2 && s[0] == '*' && s[1] == '.')
        s += 2;
    for (const char *p = s;; p++) {
        char ch = *p;
        if (ch == '.' || ch == '\0') {
            if (label == 0 || label > 63)
                return false;
            if (ch == '\0')
                return true;
            label = 0;
            continue;
        }
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
        label++;
    }
}

static bool
team_valid(const char *s)
{
    size_t n = strnlen(s, 64);

    if (n == 0 || n > 63 || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= '0' && s[0] <= '9')))
        return false;
    for (size_t i = 1; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == '-'))
            return false;
    }
    return true;
}

int
sigil_store_entry_check(const struct sigil_store_entry *e, struct sigil_store_err *err)
{
    struct sigil_spiffeid id;
    const char *why = NULL;

    if (e->spiffe_id == NULL ||
        sigil_spiffeid_parse(e->spiffe_id, strlen(e->spiffe_id), &id, &why) != 0) {
        store_err(err, "entry.spiffe_id", "spiffe_id is not a SPIFFE ID: %s",
                  why != NULL ? why : "missing");
        return SIGIL_ERR_INVALID;
    }
    if (!sigil_spiffeid_has_path(&id)) {
        store_err(err, "entry.spiffe_id", "spiffe_id needs a path (X-2: an SVID's ID has one)");
        return SIGIL_ERR_INVALID;
    }
    if (e->parent_id == NULL ||
        sigil_spiffeid_parse(e->parent_id, strlen(e->parent_id), &id, &why) != 0) {
        store_err(err, "entry.parent_id", "parent_id is not a SPIFFE ID: %s",
                  why != NULL ? why : "missing");
        return SIGIL_ERR_INVALID;
    }
    if (e->selectors.count == 0) {
        store_err(err, "entry.selectors", "an entry needs at least one selector");
        return SIGIL_ERR_INVALID;
    }
    if (e->x509_ttl < 0 || e->jwt_ttl < 0) {
        store_err(err, "entry.ttl", "TTLs are seconds, 0 for the default; never negative");
        return SIGIL_ERR_INVALID;
    }
    if (e->dns_names.count > SIGIL_STORE_DNS_MAX ||
        e->federates_with.count > SIGIL_STORE_FEDERATES_MAX) {
        store_err(err, "entry.range", "at most %d dns_names and %d federates_with",
                  SIGIL_STORE_DNS_MAX, SIGIL_STORE_FEDERATES_MAX);
        return SIGIL_ERR_RANGE;
    }
    for (size_t i = 0; i < e->dns_names.count; i++) {
        const char *d = e->dns_names.items[i];
        if (!dns_name_valid(d)) {
            store_err(err, "entry.dns_names", "dns_names[%zu] is not a DNS name", i);
            return SIGIL_ERR_INVALID;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(e->dns_names.items[k], d) == 0) {
                store_err(err, "entry.dns_names", "dns_names[%zu] repeats \"%.253s\"", i, d);
                return SIGIL_ERR_INVALID;
            }
    }
    for (size_t i = 0; i < e->federates_with.count; i++) {
        const char *td = e->federates_with.items[i];
        if (sigil_trust_domain_check(td, strlen(td), &why) != 0) {
            store_err(err, "entry.federates_with", "federates_with[%zu] is not a trust domain: %s",
                      i, why);
            return SIGIL_ERR_INVALID;
        }
        for (size_t k = 0; k < i; k++)
            if (strcmp(e->federates_with.items[k], td) == 0) {
                store_err(err, "entry.federates_with", "federates_with[%zu] repeats \"%.255s\"", i,
                          td);
                return SIGIL_ERR_INVALID;
            }
    }
    if (e->hint != NULL && strnlen(e->hint, SIGIL_STORE_HINT_MAX + 1) > SIGIL_STORE_HINT_MAX) {
        store_err(err, "entry.hint", "hint is longer than %d bytes", SIGIL_STORE_HINT_MAX);
        return SIGIL_ERR_RANGE;
    }
    if (e->team != NULL && !team_valid(e->team)) {
        store_err(err, "entry.team", "team must match [a-z0-9][a-z0-9._-]{0,62}");
        return SIGIL_ERR_INVALID;
    }
    if (e->expires_at < 0 || e->expires_at > SIGIL_STORE_TIME_MAX) {
        store_err(err, "entry.expires_at", "expires_at must lie between 1970 and 9999");
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

/* Reads a JSON array of strings into v (at most max items). */
static int
json_strv(const json_t *a, const char *key, size_t max, size_t item_max, struct sigil_store_strv *v,
          struct sigil_store_err *err)
{
    size_t i;
    const json_t *x;

    if (!json_is_array(a)) {
        store_err(err, "request.invalid", "%s must be an array of strings", key);
        return SIGIL_ERR_INVALID;
    }
    if (json_array_size(a) > max) {
        store_err(err, "request.invalid", "%s holds more than %zu items", key, max);
        return SIGIL_ERR_RANGE;
    }
    if (json_array_size(a) > 0 && (v->items = calloc(json_array_size(a), sizeof(char *))) == NULL)
        return SIGIL_ERR_NOMEM;
    json_array_foreach(a, i, x)
    {
        if (!json_is_string(x) || strlen(json_string_value(x)) != json_string_length(x) ||
            json_string_length(x) > item_max) {
            store_err(err, "request.invalid", "%s[%zu] must be a string of at most %zu bytes", key,
                      i, item_max);
            return SIGIL_ERR_INVALID;
        }
        if ((v->items[i] = strdup(json_string_value(x))) == NULL)
            return SIGIL_ERR_NOMEM;
        v->count++;
    }
    return 0;
}

static int
json_ttl(const json_t *o, const char *key, int32_t *out, struct sigil_store_err *err)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
        store_err(err, "request.invalid", "%s must be an integer of seconds, 0..%d", key,
                  INT32_MAX);
        return SIGIL_ERR_INVALID;
    }
    *out = (int32_t)json_integer_value(v);
    return 0;
}

static int
json_bool(const json_t *o, const char *key, bool *out, struct sigil_store_err *err)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_boolean(v)) {
        store_err(err, "request.invalid", "%s must be true or false", key);
        return SIGIL_ERR_INVALID;
    }
    *out = json_is_true(v);
    return 0;
}

static int
json_time(const json_t *o, const char *key, int64_t *out, struct sigil_store_err *err)
{
    const json_t *v = json_object_get(o, key);

    if (!json_is_string(v) || sigil_store_time_parse(json_string_value(v), out) != 0) {
        store_err(err, "request.invalid", "%s must be an RFC 3339 date-time", key);
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

static int
dup_field(const json_t *o, const char *key, size_t max, char **out, struct sigil_store_err *err)
{
    const char *s;
    int r;

    if ((r = store_json_str(o, key, max, &s, err)) != 0 || s == NULL)
        return r;
    return (*out = strdup(s)) == NULL ? SIGIL_ERR_NOMEM : 0;
}

static int
entry_from_json(const json_t *j, enum sigil_store_entry_json shape, struct sigil_store_entry *e,
                struct sigil_store_err *err)
{
    static const char *const input[] = {
        "spiffe_id",      "parent_id", "selectors",  "x509_svid_ttl", "jwt_svid_ttl", "dns_names",
        "federates_with", "admin",     "downstream", "hint",          "expires_at",   NULL};
    static const char *const patch[] = {
        "spiffe_id", "parent_id",      "selectors", "x509_svid_ttl", "jwt_svid_ttl",
        "dns_names", "federates_with", "admin",     "downstream",    "hint",
        NULL};
    static const char *const full[] = {"spiffe_id",
                                       "parent_id",
                                       "selectors",
                                       "x509_svid_ttl",
                                       "jwt_svid_ttl",
                                       "dns_names",
                                       "federates_with",
                                       "admin",
                                       "downstream",
                                       "hint",
                                       "expires_at",
                                       "id",
                                       "team",
                                       "revision",
                                       "created_at",
                                       "updated_at",
                                       NULL};
    const char *const *allowed = shape == SIGIL_STORE_JSON_PATCH   ? patch
                                 : shape == SIGIL_STORE_JSON_ENTRY ? full
                                                                   : input;
    const json_t *v;
    const char *why = NULL, *s;
    size_t i;
    int r;

    if ((r = store_json_only(j, allowed, "entry", err)) != 0)
        return r;
    if (shape != SIGIL_STORE_JSON_PATCH) {
        static const char *const req[] = {"spiffe_id", "parent_id", "selectors"};
        for (i = 0; i < 3; i++)
            if (json_object_get(j, req[i]) == NULL) {
                store_err(err, "request.invalid", "entry: %s is required", req[i]);
                return SIGIL_ERR_INVALID;
            }
    }
    if (json_object_get(j, "spiffe_id") != NULL) {
        e->fields |= SIGIL_STORE_F_SPIFFE_ID;
        if ((r = dup_field(j, "spiffe_id", 2048, &e->spiffe_id, err)) != 0)
            return r;
    }
    if (json_object_get(j, "parent_id") != NULL) {
        e->fields |= SIGIL_STORE_F_PARENT_ID;
        if ((r = dup_field(j, "parent_id", 2048, &e->parent_id, err)) != 0)
            return r;
    }
    if ((v = json_object_get(j, "selectors")) != NULL) {
        e->fields |= SIGIL_STORE_F_SELECTORS;
        if (!json_is_array(v) || json_array_size(v) == 0 ||
            json_array_size(v) > SIGIL_SELECTOR_SET_MAX) {
            store_err(err, "request.invalid", "selectors must be an array of 1..%d strings",
                      SIGIL_SELECTOR_SET_MAX);
            return SIGIL_ERR_INVALID;
        }
        const json_t *x;
        json_array_foreach(v, i, x)
        {
            if (!json_is_string(x)) {
                store_err(err, "entry.selectors", "selectors[%zu] is not a string", i);
                return SIGIL_ERR_INVALID;
            }
            if ((r = sigil_selector_set_add_str(&e->selectors, json_string_value(x),
                                                json_string_length(x), &why)) != 0) {
                store_err(err, "entry.selectors", "selectors[%zu]: %s", i, why);
                return r;
            }
        }
    }
    if (json_object_get(j, "x509_svid_ttl") != NULL) {
        e->fields |= SIGIL_STORE_F_X509_TTL;
        if ((r = json_ttl(j, "x509_svid_ttl", &e->x509_ttl, err)) != 0)
            return r;
    }
    if (json_object_get(j, "jwt_svid_ttl") != NULL) {
        e->fields |= SIGIL_STORE_F_JWT_TTL;
        if ((r = json_ttl(j, "jwt_svid_ttl", &e->jwt_ttl, err)) != 0)
            return r;
    }
    if ((v = json_object_get(j, "dns_names")) != NULL) {
        e->fields |= SIGIL_STORE_F_DNS_NAMES;
        if ((r = json_strv(v, "dns_names", SIGIL_STORE_DNS_MAX, SIGIL_STORE_DNS_NAME_MAX,
                           &e->dns_names, err)) != 0)
            return r;
    }
    if ((v = json_object_get(j, "federates_with")) != NULL) {
        e->fields |= SIGIL_STORE_F_FEDERATES_WITH;
        if ((r = json_strv(v, "federates_with", SIGIL_STORE_FEDERATES_MAX, 2048, &e->federates_with,
                           err)) != 0)
            return r;
        /* "spiffe://td" is accepted for a trust domain and kept bare */
        for (i = 0; i < e->federates_with.count; i++) {
            char td[SIGIL_TRUST_DOMAIN_MAX + 1];
            char *item = e->federates_with.items[i];
            if (sigil_trust_domain_parse(item, strlen(item), td, &why) != 0) {
                store_err(err, "entry.federates_with",
                          "federates_with[%zu] is not a trust domain: %s", i, why);
                return SIGIL_ERR_INVALID;
            }
            memcpy(item, td, strlen(td) + 1); /* never longer than the input */
        }
    }
    if (json_object_get(j, "admin") != NULL) {
        e->fields |= SIGIL_STORE_F_ADMIN;
        if ((r = json_bool(j, "admin", &e->admin, err)) != 0)
            return r;
    }
    if (json_object_get(j, "downstream") != NULL) {
        e->fields |= SIGIL_STORE_F_DOWNSTREAM;
        if ((r = json_bool(j, "downstream", &e->downstream, err)) != 0)
            return r;
    }
    if (json_object_get(j, "hint") != NULL) {
        e->fields |= SIGIL_STORE_F_HINT;
        if ((r = dup_field(j, "hint", SIGIL_STORE_HINT_MAX, &e->hint, err)) != 0)
            return r;
    }
    if (json_object_get(j, "expires_at") != NULL) {
        e->fields |= SIGIL_STORE_F_EXPIRES_AT;
        if ((r = json_time(j, "expires_at", &e->expires_at, err)) != 0)
            return r;
    }
    if (shape != SIGIL_STORE_JSON_ENTRY)
        return 0;
    /* the read-only fields of an exported entry: read, checked, not written back by create */
    if ((r = store_json_str(j, "id", SIGIL_STORE_UUID_LEN, &s, err)) != 0)
        return r;
    if (s != NULL) {
        if (!store_uuid_valid(s)) {
            store_err(err, "request.invalid", "id must be a UUID");
            return SIGIL_ERR_INVALID;
        }
        memcpy(e->id, s, SIGIL_STORE_UUID_LEN + 1);
    }
    if (json_object_get(j, "team") != NULL) {
        e->fields |= SIGIL_STORE_F_TEAM;
        if ((r = dup_field(j, "team", 63, &e->team, err)) != 0)
            return r;
    }
    if ((v = json_object_get(j, "revision")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            store_err(err, "request.invalid", "revision must be a non-negative integer");
            return SIGIL_ERR_INVALID;
        }
        e->revision = json_integer_value(v);
    }
    if (json_object_get(j, "created_at") != NULL &&
        (r = json_time(j, "created_at", &e->created_at, err)) != 0)
        return r;
    if (json_object_get(j, "updated_at") != NULL &&
        (r = json_time(j, "updated_at", &e->updated_at, err)) != 0)
        return r;
    return 0;
}

int
sigil_store_entry_from_json(const json_t *j, enum sigil_store_entry_json shape,
                            struct sigil_store_entry *out, struct sigil_store_err *err)
{
    int r;

    memset(out, 0, sizeof *out);
    if ((r = entry_from_json(j, shape, out, err)) != 0) {
        if (r == SIGIL_ERR_NOMEM)
            store_err(err, "internal", "out of memory");
        sigil_store_entry_free(out);
    }
    return r;
}

static json_t *
json_strv_new(const struct sigil_store_strv *v)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < v->count; i++)
        if (json_array_append_new(a, json_string(v->items[i])) != 0) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

json_t *
store_selectors_json(const struct sigil_selector_set *set)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < set->count; i++) {
        char *s = sigil_selector_to_string(&set->items[i]);
        if (s == NULL || json_array_append_new(a, json_string(s)) != 0) {
            json_decref(a);
            a = NULL;
        }
        free(s);
    }
    return a;
}

int
sigil_store_entry_to_json(const struct sigil_store_entry *e, json_t **out)
{
    json_t *o = json_object();
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    if (o == NULL)
        return SIGIL_ERR_NOMEM;
    if (json_object_set_new(o, "id", json_string(e->id)) != 0 ||
        store_json_set_str(o, "spiffe_id", e->spiffe_id) != 0 ||
        store_json_set_str(o, "parent_id", e->parent_id) != 0 ||
        json_object_set_new(o, "selectors", store_selectors_json(&e->selectors)) != 0 ||
        json_object_set_new(o, "x509_svid_ttl", json_integer(e->x509_ttl)) != 0 ||
        json_object_set_new(o, "jwt_svid_ttl", json_integer(e->jwt_ttl)) != 0 ||
        json_object_set_new(o, "dns_names", json_strv_new(&e->dns_names)) != 0 ||
        json_object_set_new(o, "federates_with", json_strv_new(&e->federates_with)) != 0 ||
        json_object_set_new(o, "admin", json_boolean(e->admin)) != 0 ||
        json_object_set_new(o, "downstream", json_boolean(e->downstream)) != 0 ||
        json_object_set_new(o, "hint", json_string(e->hint != NULL ? e->hint : "")) != 0 ||
        store_json_set_str(o, "team", e->team) != 0 ||
        (e->expires_at != 0 && store_json_set_time(o, "expires_at", e->expires_at) != 0) ||
        json_object_set_new(o, "revision", json_integer(e->revision)) != 0 ||
        store_json_set_time(o, "created_at", e->created_at) != 0 ||
        store_json_set_time(o, "updated_at", e->updated_at) != 0)
        goto out;
    *out = o;
    o = NULL;
    r = 0;
out:
    json_decref(o);
    return r;
}

int
store_entry_from_row(const struct sigil_db_res *res, size_t i, struct sigil_store_entry *e)
{
    const char *s;
    int r = 0;

    memset(e, 0, sizeof *e);
    s = sigil_db_res_text(res, i, 0);
    snprintf(e->id, sizeof e->id, "%s", s != NULL ? s : "");
    e->spiffe_id = store_res_dup(res, i, 1, &r);
    e->parent_id = store_res_dup(res, i, 2, &r);
    s = sigil_db_res_text(res, i, 3);
    if (r == 0 && s != NULL &&
        (r = sigil_selector_set_parse(s, strlen(s), &e->selectors, NULL)) != 0)
        r = r == SIGIL_ERR_NOMEM ? r : SIGIL_ERR_INTERNAL; /* the table's canon is ours */
    e->x509_ttl = (int32_t)store_res_i64(res, i, 4);
    e->jwt_ttl = (int32_t)store_res_i64(res, i, 5);
    e->admin = store_res_bool(res, i, 6);
    e->downstream = store_res_bool(res, i, 7);
    e->hint = store_res_dup(res, i, 8, &r);
    e->team = store_res_dup(res, i, 9, &r);
    e->expires_at = store_res_i64(res, i, 10);
    e->revision = store_res_i64(res, i, 11);
    e->created_at = store_res_i64(res, i, 12);
    e->updated_at = store_res_i64(res, i, 13);
    if (r == 0)
        r = strv_split(sigil_db_res_text(res, i, 14), &e->dns_names);
    if (r == 0)
        r = strv_split(sigil_db_res_text(res, i, 15), &e->federates_with);
    if (r != 0)
        sigil_store_entry_free(e);
    return r;
}

int
store_entries_from_res(const struct sigil_db_res *res, size_t max, struct sigil_store_entry_list *l)
{
    size_t n = sigil_db_res_rows(res);
    struct sigil_store_entry *items;
    int r;

    if (n > max)
        n = max;
    if (n == 0)
        return 0;
    if ((items = realloc(l->items, (l->count + n) * sizeof *items)) == NULL)
        return SIGIL_ERR_NOMEM;
    l->items = items;
    for (size_t i = 0; i < n; i++) {
        if ((r = store_entry_from_row(res, i, &l->items[l->count])) != 0)
            return r;
        l->count++;
    }
    return 0;
}
