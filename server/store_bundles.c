/* Bundles (our own and federated ones, each with its sequence), federation relationships, and
 * reading the audit log back (newest first, cursor-paged). */
#include "store.h"
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/bundle.h"
#include "sigil/err.h"
#include "sigil/spiffeid.h"

#define TX_ATTEMPTS 5
#define URL_MAX 2048

#define BUNDLE_COLS                                                                                \
    "trust_domain, document::text, own, sequence, revision, "                                      \
    "floor(extract(epoch FROM updated_at))::bigint"

void
sigil_store_bundle_free(struct sigil_store_bundle *b)
{
    if (b == NULL)
        return;
    free(b->trust_domain);
    free(b->document);
    memset(b, 0, sizeof *b);
}

void
sigil_store_bundle_list_free(struct sigil_store_bundle_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->count; i++)
        sigil_store_bundle_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int
bundle_from_row(const struct sigil_db_res *res, size_t i, struct sigil_store_bundle *b)
{
    int r = 0;

    memset(b, 0, sizeof *b);
    b->trust_domain = store_res_dup(res, i, 0, &r);
    b->document = store_res_dup(res, i, 1, &r);
    b->own = store_res_bool(res, i, 2);
    b->sequence = store_res_i64(res, i, 3);
    b->revision = store_res_i64(res, i, 4);
    b->updated_at = store_res_i64(res, i, 5);
    if (r != 0)
        sigil_store_bundle_free(b);
    return r;
}

int
sigil_store_bundle_get(struct sigil_db_conn *c, const char *td, struct sigil_store_bundle *out,
                       struct sigil_store_err *err)
{
    struct sigil_db_res *res = NULL;
    const struct sigil_db_param p[] = {td != NULL ? SIGIL_DB_TEXT(td) : SIGIL_DB_NULL};
    int r;

    memset(out, 0, sizeof *out);
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = sigil_db_exec(c,
                           "SELECT " BUNDLE_COLS " FROM bundles WHERE "
                           "CASE WHEN $1::text IS NULL THEN own ELSE trust_domain = $1::text END",
                           p, 1, &res)) != 0)
        return store_db_fail(c, r, err);
    if (sigil_db_res_rows(res) == 0) {
        store_err(err, "bundle.not_found", "no bundle for %.255s",
                  td != NULL ? td : "this trust domain yet");
        r = SIGIL_ERR_NOTFOUND;
    } else if ((r = bundle_from_row(res, 0, out)) != 0) {
        store_err(err, "internal", "out of memory");
    }
    sigil_db_res_free(res);
    return r;
}

struct bundle_call {
    const char *actor;
    const char *td;
    const char *doc;
    bool own;
    bool has_seq;
    int64_t seq;
    bool del;
    struct sigil_store_err *err;
};

/* The stored row as audit JSON: trust domain, sequence and the document itself. */
static json_t *
bundle_audit_json(const struct sigil_store_bundle *b)
{
    json_t *o = json_object(), *doc = json_loads(b->document, JSON_REJECT_DUPLICATES, NULL);

    if (o == NULL || doc == NULL || store_json_set_str(o, "trust_domain", b->trust_domain) != 0 ||
        json_object_set_new(o, "own", json_boolean(b->own)) != 0 ||
        json_object_set_new(o, "sequence", json_integer(b->sequence)) != 0 ||
        json_object_set(o, "document", doc) != 0) {
        json_decref(o);
        o = NULL;
    }
    json_decref(doc);
    return o;
}

static int
bundle_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct bundle_call *k = arg;
    struct sigil_store_bundle before, after;
    json_t *jb = NULL, *ja = NULL;
    char seq[24];
    bool existed;
    int r;

    (void)attempt;
    memset(&after, 0, sizeof after);
    r = sigil_store_bundle_get(c, k->td, &before, k->err);
    if (r != 0 && r != SIGIL_ERR_NOTFOUND)
        return r;
    existed = r == 0;
    if (k->err != NULL)
        memset(k->err, 0, sizeof *k->err);
    r = 0;
    if (existed && before.own != k->own) {
        store_err(k->err, "bundle.own",
                  k->own ? "%.255s holds a federated bundle: delete it first"
                         : "%.255s is this server's own trust domain: its bundle is managed by "
                           "the CA",
                  k->td);
        r = SIGIL_ERR_DENIED;
        goto out;
    }
    if (k->del) {
        if (!existed) {
            store_err(k->err, "bundle.not_found", "no federated bundle for %.255s", k->td);
            r = SIGIL_ERR_NOTFOUND;
            goto out;
        }
        const struct sigil_db_param p[] = {SIGIL_DB_TEXT(k->td)};
        if ((r = sigil_db_exec(c, "DELETE FROM bundles WHERE trust_domain = $1 AND NOT own", p, 1,
                               NULL)) != 0) {
            r = store_db_fail(c, r, k->err);
            goto out;
        }
    } else {
        int64_t s = k->has_seq ? k->seq : existed ? before.sequence + 1 : 1;
        snprintf(seq, sizeof seq, "%lld", (long long)s);
        const struct sigil_db_param p[] = {SIGIL_DB_TEXT(k->td), SIGIL_DB_TEXT(k->own ? "t" : "f"),
                                           SIGIL_DB_TEXT(k->doc), SIGIL_DB_TEXT(seq)};
        if ((r = sigil_db_exec(c,
                               "INSERT INTO bundles (trust_domain, own, document, sequence) "
                               "VALUES ($1, $2::bool, $3::jsonb, $4::bigint) ON CONFLICT "
                               "(trust_domain) DO UPDATE SET document = EXCLUDED.document, "
                               "sequence = EXCLUDED.sequence, updated_at = now()",
                               p, 4, NULL)) != 0) {
            r = store_db_fail(c, r, k->err);
            goto out;
        }
        if ((r = sigil_store_bundle_get(c, k->td, &after, k->err)) != 0)
            goto out;
    }
    if ((existed && (jb = bundle_audit_json(&before)) == NULL) ||
        (!k->del && (ja = bundle_audit_json(&after)) == NULL)) {
        store_err(k->err, "internal", "out of memory");
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    r = store_audit(c, k->actor, k->del ? "bundle.delete" : "bundle.set", "bundle", k->td, jb, ja,
                    k->err);
out:
    json_decref(jb);
    json_decref(ja);
    if (existed)
        sigil_store_bundle_free(&before);
    sigil_store_bundle_free(&after);
    return r;
}

static int
bundle_run(struct sigil_db_conn *c, struct bundle_call *k)
{
    const char *why = NULL;
    int r;

    if (k->err != NULL)
        memset(k->err, 0, sizeof *k->err);
    if ((r = store_actor_check(k->actor, k->err)) != 0)
        return r;
    if (k->td == NULL || sigil_trust_domain_check(k->td, strlen(k->td), &why) != 0) {
        store_err(k->err, "bundle.trust_domain", "not a trust domain name: %s",
                  why != NULL ? why : "missing");
        return SIGIL_ERR_INVALID;
    }
    if (!k->del) {
        struct sigil_bundle *b = NULL;
        uint64_t seq;
        size_t len = k->doc != NULL ? strnlen(k->doc, SIGIL_BUNDLE_JSON_MAX + 1) : 0;
        if (len == 0 || len > SIGIL_BUNDLE_JSON_MAX ||
            (r = sigil_bundle_decode(k->td, k->doc, len, &b, &why)) != 0) {
            store_err(k->err, "bundle.invalid", "not a SPIFFE bundle: %s",
                      why != NULL ? why : "empty or over 1 MiB");
            return SIGIL_ERR_INVALID;
        }
        if (!k->own && sigil_bundle_sequence(b, &seq)) {
            k->has_seq = seq <= INT64_MAX;
            k->seq = (int64_t)seq;
        }
        sigil_bundle_free(b);
    }
    if ((r = sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, TX_ATTEMPTS, bundle_body, k)) != 0)
        return store_db_fail(c, r, k->err);
    return 0;
}

int
sigil_store_bundle_set_own(struct sigil_db_conn *c, const char *actor, const char *td,
                           const char *document, int64_t sequence, struct sigil_store_err *err)
{
    struct bundle_call k = {.actor = actor,
                            .td = td,
                            .doc = document,
                            .own = true,
                            .has_seq = true,
                            .seq = sequence,
                            .err = err};

    if (sequence < 0) {
        store_err(err, "bundle.sequence", "a bundle's sequence is never negative");
        return SIGIL_ERR_INVALID;
    }
    return bundle_run(c, &k);
}

int
sigil_store_bundle_set_federated(struct sigil_db_conn *c, const char *actor, const char *td,
                                 const char *document, struct sigil_store_err *err)
{
    struct bundle_call k = {.actor = actor, .td = td, .doc = document, .err = err};

    return bundle_run(c, &k);
}

int
sigil_store_bundle_delete(struct sigil_db_conn *c, const char *actor, const char *td,
                          struct sigil_store_err *err)
{
    struct bundle_call k = {.actor = actor, .td = td, .del = true, .err = err};

    return bundle_run(c, &k);
}

int
sigil_store_bundles_list(struct sigil_db_conn *c, struct sigil_store_bundle_list *out,
                         struct sigil_store_err *err)
{
    struct sigil_db_res *res = NULL;
    size_t n;
    int r;

    memset(out, 0, sizeof *out);
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = sigil_db_exec(c,
                           "SELECT " BUNDLE_COLS " FROM bundles WHERE NOT own "
                           "ORDER BY trust_domain",
                           NULL, 0, &res)) != 0)
        return store_db_fail(c, r, err);
    n = sigil_db_res_rows(res);
    if (n > 0 && (out->items = calloc(n, sizeof *out->items)) == NULL)
        r = SIGIL_ERR_NOMEM;
    for (size_t i = 0; r == 0 && i < n; i++)
        if ((r = bundle_from_row(res, i, &out->items[i])) == 0)
            out->count++;
    sigil_db_res_free(res);
    if (r != 0) {
        store_err(err, "internal", "out of memory");
        sigil_store_bundle_list_free(out);
    }
    return r;
}

void
sigil_store_federation_free(struct sigil_store_federation *f)
{
    if (f == NULL)
        return;
    free(f->trust_domain);
    free(f->bundle_endpoint_url);
    free(f->profile);
    free(f->endpoint_spiffe_id);
    memset(f, 0, sizeof *f);
}

void
sigil_store_federation_list_free(struct sigil_store_federation_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->count; i++)
        sigil_store_federation_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

/* Checks a relationship as the table's constraints would, with messages for people. */
static int
federation_check(const struct sigil_store_federation *f, struct sigil_store_err *err)
{
    struct sigil_spiffeid id;
    const char *why = NULL;
    size_t n;

    if (f->trust_domain == NULL ||
        sigil_trust_domain_check(f->trust_domain, strlen(f->trust_domain), &why) != 0) {
        store_err(err, "federation.trust_domain", "trust_domain is not a trust domain name: %s",
                  why != NULL ? why : "missing");
        return SIGIL_ERR_INVALID;
    }
    if (f->bundle_endpoint_url == NULL || strncmp(f->bundle_endpoint_url, "https://", 8) != 0 ||
        (n = strnlen(f->bundle_endpoint_url, URL_MAX + 1)) <= 8 || n > URL_MAX) {
        store_err(err, "federation.url", "bundle_endpoint_url must be an https:// URL");
        return SIGIL_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)f->bundle_endpoint_url[i];
        if (ch <= 0x20 || ch >= 0x7f) {
            store_err(err, "federation.url", "bundle_endpoint_url has a space or control byte");
            return SIGIL_ERR_INVALID;
        }
    }
    if (f->profile == NULL ||
        (strcmp(f->profile, "https_web") != 0 && strcmp(f->profile, "https_spiffe") != 0)) {
        store_err(err, "federation.profile", "profile must be https_web or https_spiffe");
        return SIGIL_ERR_INVALID;
    }
    if (strcmp(f->profile, "https_spiffe") == 0) {
        if (f->endpoint_spiffe_id == NULL ||
            sigil_spiffeid_parse(f->endpoint_spiffe_id, strlen(f->endpoint_spiffe_id), &id, &why) !=
                0) {
            store_err(err, "federation.endpoint_spiffe_id",
                      "https_spiffe needs endpoint_spiffe_id, the bundle server's SPIFFE ID: %s",
                      why != NULL ? why : "missing");
            return SIGIL_ERR_INVALID;
        }
    } else if (f->endpoint_spiffe_id != NULL) {
        store_err(err, "federation.endpoint_spiffe_id",
                  "endpoint_spiffe_id goes only with profile https_spiffe");
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

int
sigil_store_federation_from_json(const json_t *j, struct sigil_store_federation *out,
                                 struct sigil_store_err *err)
{
    static const char *const allowed[] = {"trust_domain", "bundle_endpoint_url", "profile",
                                          "endpoint_spiffe_id", NULL};
    static const char *const req[] = {"trust_domain", "bundle_endpoint_url", "profile"};
    char **dst[] = {&out->trust_domain, &out->bundle_endpoint_url, &out->profile,
                    &out->endpoint_spiffe_id};
    const char *s;
    int r;

    memset(out, 0, sizeof *out);
    if ((r = store_json_only(j, allowed, "federation", err)) != 0)
        return r;
    for (size_t i = 0; i < 3; i++)
        if (json_object_get(j, req[i]) == NULL) {
            store_err(err, "request.invalid", "federation: %s is required", req[i]);
            return SIGIL_ERR_INVALID;
        }
    for (size_t i = 0; i < 4; i++) {
        if ((r = store_json_str(j, allowed[i], URL_MAX, &s, err)) != 0)
            goto out;
        if (s != NULL && (*dst[i] = strdup(s)) == NULL) {
            r = SIGIL_ERR_NOMEM;
            store_err(err, "internal", "out of memory");
            goto out;
        }
    }
    r = federation_check(out, err);
out:
    if (r != 0)
        sigil_store_federation_free(out);
    return r;
}

int
sigil_store_federation_to_json(const struct sigil_store_federation *f, json_t **out)
{
    json_t *o = json_object();

    *out = NULL;
    if (o == NULL || store_json_set_str(o, "trust_domain", f->trust_domain) != 0 ||
        store_json_set_str(o, "bundle_endpoint_url", f->bundle_endpoint_url) != 0 ||
        store_json_set_str(o, "profile", f->profile) != 0 ||
        store_json_set_str(o, "endpoint_spiffe_id", f->endpoint_spiffe_id) != 0) {
        json_decref(o);
        return SIGIL_ERR_NOMEM;
    }
    *out = o;
    return 0;
}

struct fed_call {
    const char *actor;
    const struct sigil_store_federation *f; /* create */
    const char *td;                         /* delete */
    struct sigil_store_err *err;
};

static int
fed_create_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct fed_call *k = arg;
    const struct sigil_store_federation *f = k->f;
    struct sigil_db_res *res = NULL;
    json_t *after = NULL;
    int r;

    (void)attempt;
    const struct sigil_db_param p[] = {
        SIGIL_DB_TEXT(f->trust_domain), SIGIL_DB_TEXT(f->bundle_endpoint_url),
        SIGIL_DB_TEXT(f->profile),
        f->endpoint_spiffe_id ? SIGIL_DB_TEXT(f->endpoint_spiffe_id) : SIGIL_DB_NULL};
    if ((r = sigil_db_exec(c,
                           "INSERT INTO federation_relationships (trust_domain, "
                           "bundle_endpoint_url, profile, endpoint_spiffe_id) VALUES "
                           "($1, $2, $3, $4) ON CONFLICT (trust_domain) DO NOTHING "
                           "RETURNING trust_domain",
                           p, 4, &res)) != 0) {
        r = store_db_fail(c, r, k->err);
        goto out;
    }
    if (sigil_db_res_rows(res) == 0) {
        store_err(k->err, "federation.exists",
                  "a federation relationship with %.255s exists: delete it first", f->trust_domain);
        r = SIGIL_ERR_EXISTS;
        goto out;
    }
    if ((r = sigil_store_federation_to_json(f, &after)) != 0) {
        store_err(k->err, "internal", "out of memory");
        goto out;
    }
    r = store_audit(c, k->actor, "federation.create", "federation", f->trust_domain, NULL, after,
                    k->err);
out:
    json_decref(after);
    sigil_db_res_free(res);
    return r;
}

int
sigil_store_federation_create(struct sigil_db_conn *c, const char *actor,
                              const struct sigil_store_federation *f, struct sigil_store_err *err)
{
    struct fed_call k = {.actor = actor, .f = f, .err = err};
    int r;

    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = store_actor_check(actor, err)) != 0 || (r = federation_check(f, err)) != 0)
        return r;
    if ((r = sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, TX_ATTEMPTS, fed_create_body, &k)) != 0)
        return store_db_fail(c, r, err);
    return 0;
}

#define FED_COLS "trust_domain, bundle_endpoint_url, profile, endpoint_spiffe_id"

static int
fed_from_row(const struct sigil_db_res *res, size_t i, struct sigil_store_federation *f)
{
    int r = 0;

    f->trust_domain = store_res_dup(res, i, 0, &r);
    f->bundle_endpoint_url = store_res_dup(res, i, 1, &r);
    f->profile = store_res_dup(res, i, 2, &r);
    f->endpoint_spiffe_id = store_res_dup(res, i, 3, &r);
    if (r != 0)
        sigil_store_federation_free(f);
    return r;
}

int
sigil_store_federations_list(struct sigil_db_conn *c, struct sigil_store_federation_list *out,
                             struct sigil_store_err *err)
{
    struct sigil_db_res *res = NULL;
    size_t n;
    int r;

    memset(out, 0, sizeof *out);
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = sigil_db_exec(c,
                           "SELECT " FED_COLS " FROM federation_relationships "
                           "ORDER BY trust_domain",
                           NULL, 0, &res)) != 0)
        return store_db_fail(c, r, err);
    n = sigil_db_res_rows(res);
    if (n > 0 && (out->items = calloc(n, sizeof *out->items)) == NULL)
        r = SIGIL_ERR_NOMEM;
    for (size_t i = 0; r == 0 && i < n; i++)
        if ((r = fed_from_row(res, i, &out->items[i])) == 0)
            out->count++;
    sigil_db_res_free(res);
    if (r != 0) {
        store_err(err, "internal", "out of memory");
        sigil_store_federation_list_free(out);
    }
    return r;
}

static int
fed_delete_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct fed_call *k = arg;
    struct sigil_db_res *res = NULL;
    struct sigil_store_federation f;
    json_t *before = NULL;
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(k->td)};
    int r;

    (void)attempt;
    memset(&f, 0, sizeof f);
    if ((r = sigil_db_exec(c,
                           "DELETE FROM federation_relationships WHERE trust_domain = $1 "
                           "RETURNING " FED_COLS,
                           p, 1, &res)) != 0) {
        r = store_db_fail(c, r, k->err);
        goto out;
    }
    if (sigil_db_res_rows(res) == 0) {
        store_err(k->err, "federation.not_found", "no federation relationship with %.255s", k->td);
        r = SIGIL_ERR_NOTFOUND;
        goto out;
    }
    if ((r = fed_from_row(res, 0, &f)) != 0 ||
        (r = sigil_store_federation_to_json(&f, &before)) != 0) {
        store_err(k->err, "internal", "out of memory");
        goto out;
    }
    r = store_audit(c, k->actor, "federation.delete", "federation", k->td, before, NULL, k->err);
out:
    json_decref(before);
    sigil_store_federation_free(&f);
    sigil_db_res_free(res);
    return r;
}

int
sigil_store_federation_delete(struct sigil_db_conn *c, const char *actor, const char *td,
                              struct sigil_store_err *err)
{
    struct fed_call k = {.actor = actor, .td = td, .err = err};
    int r;

    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = store_actor_check(actor, err)) != 0)
        return r;
    if (td == NULL || strnlen(td, 256) > 255) {
        store_err(err, "federation.trust_domain", "not a trust domain name");
        return SIGIL_ERR_INVALID;
    }
    if ((r = sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, TX_ATTEMPTS, fed_delete_body, &k)) != 0)
        return store_db_fail(c, r, err);
    return 0;
}

void
sigil_store_audit_list_free(struct sigil_store_audit_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->count; i++) {
        struct sigil_store_audit *a = &l->items[i];
        free(a->actor);
        free(a->action);
        free(a->object_type);
        free(a->object_id);
        free(a->before);
        free(a->after);
    }
    free(l->items);
    free(l->next_page_token);
    memset(l, 0, sizeof *l);
}

int
sigil_store_audit_list(struct sigil_db_conn *c, const struct sigil_store_audit_filter *f,
                       struct sigil_store_audit_list *out, struct sigil_store_err *err)
{
    struct sigil_db_res *res = NULL;
    char *before = NULL, lim[24], last[24];
    int64_t id;
    size_t page, n;
    int r;

    memset(out, 0, sizeof *out);
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = store_page_size(f->page_size, &page, err)) != 0)
        return r;
    if (f->page_token != NULL && f->page_token[0] != '\0') {
        if ((r = store_token_decode(f->page_token, &before, err)) != 0)
            return r;
        if (sigil_db_parse_int64(before, &id) != 0 || id < 1) {
            store_err(err, "page_token.invalid",
                      "page_token is not one this server gave out: start again without it");
            r = SIGIL_ERR_INVALID;
            goto out;
        }
    }
    snprintf(lim, sizeof lim, "%zu", page + 1);
    const struct sigil_db_param p[] = {
        before ? SIGIL_DB_TEXT(before) : SIGIL_DB_NULL,
        f->object_type ? SIGIL_DB_TEXT(f->object_type) : SIGIL_DB_NULL,
        f->object_id ? SIGIL_DB_TEXT(f->object_id) : SIGIL_DB_NULL,
        f->actor ? SIGIL_DB_TEXT(f->actor) : SIGIL_DB_NULL, SIGIL_DB_TEXT(lim)};
    if ((r = sigil_db_exec(c,
                           "SELECT id, floor(extract(epoch FROM at))::bigint, actor, action, "
                           "object_type, object_id, before::text, after::text, revision "
                           "FROM audit_log WHERE ($1::bigint IS NULL OR id < $1::bigint) AND "
                           "($2::text IS NULL OR object_type = $2::text) AND "
                           "($3::text IS NULL OR object_id = $3::text) AND "
                           "($4::text IS NULL OR actor = $4::text) "
                           "ORDER BY id DESC LIMIT $5::bigint",
                           p, 5, &res)) != 0) {
        r = store_db_fail(c, r, err);
        goto out;
    }
    n = sigil_db_res_rows(res);
    if (n > page)
        n = page;
    if (n > 0 && (out->items = calloc(n, sizeof *out->items)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n && r == 0; i++) {
        struct sigil_store_audit *a = &out->items[i];
        a->id = store_res_i64(res, i, 0);
        a->at = store_res_i64(res, i, 1);
        a->actor = store_res_dup(res, i, 2, &r);
        a->action = store_res_dup(res, i, 3, &r);
        a->object_type = store_res_dup(res, i, 4, &r);
        a->object_id = store_res_dup(res, i, 5, &r);
        a->before = store_res_dup(res, i, 6, &r);
        a->after = store_res_dup(res, i, 7, &r);
        a->revision = store_res_i64(res, i, 8);
        out->count++;
    }
    if (r == 0 && sigil_db_res_rows(res) > page) {
        snprintf(last, sizeof last, "%lld", (long long)out->items[page - 1].id);
        if ((out->next_page_token = store_token_encode(last)) == NULL)
            r = SIGIL_ERR_NOMEM;
    }
out:
    if (r == SIGIL_ERR_NOMEM)
        store_err(err, "internal", "out of memory");
    if (r != 0)
        sigil_store_audit_list_free(out);
    sigil_db_res_free(res);
    free(before);
    return r;
}

int
sigil_store_audit_to_json(const struct sigil_store_audit *a, json_t **out)
{
    json_t *o = json_object(), *b = NULL, *af = NULL;
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    /* the texts came out of jsonb columns: they parse; NULL stays absent */
    if (a->before != NULL && (b = json_loads(a->before, 0, NULL)) == NULL)
        goto out;
    if (a->after != NULL && (af = json_loads(a->after, 0, NULL)) == NULL)
        goto out;
    if (o == NULL || json_object_set_new(o, "id", json_integer(a->id)) != 0 ||
        store_json_set_time(o, "at", a->at) != 0 || store_json_set_str(o, "actor", a->actor) != 0 ||
        store_json_set_str(o, "action", a->action) != 0 ||
        store_json_set_str(o, "object_type", a->object_type) != 0 ||
        store_json_set_str(o, "object_id", a->object_id) != 0 ||
        (b != NULL && json_object_set(o, "before", b) != 0) ||
        (af != NULL && json_object_set(o, "after", af) != 0) ||
        json_object_set_new(o, "revision", json_integer(a->revision)) != 0)
        goto out;
    *out = o;
    o = NULL;
    r = 0;
out:
    json_decref(o);
    json_decref(b);
    json_decref(af);
    return r;
}
