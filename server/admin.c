/* The admin API: each handler checks the caller and the request on the loop thread (JSON
 * strictly read by the store's readers, the registration policy on entry writes), then hands
 * one job to the database pool; the worker calls the datastore and posts the answer itself.
 * Errors follow the contract: {"error": {"code": "...", "message": "..."}}. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigil/bundle.h"
#include "sigil/err.h"
#include "sigil/log.h"
#include "sigil/selectors.h"
#include "sigil/spiffeid.h"
#include "store.h"

#define COMPONENT "admin"
#define ENTRIES_PREFIX "/v1/entries/"

struct sigil_admin {
    struct sigil_db *db;
    const struct sigil_policy *policy;
};

enum op {
    OP_ENTRY_CREATE,
    OP_ENTRY_GET,
    OP_ENTRY_DELETE,
    OP_ENTRY_LIST,
    OP_BUNDLE_GET,
};

/* One request handed to a worker. */
struct job {
    enum op op;
    struct sigil_http_req *req;
    char actor[64];
    bool answered; /* set by the worker once it posted the answer */
    struct sigil_db_error dberr;
    struct sigil_store_err serr;
    struct sigil_store_entry entry;             /* create */
    char id[SIGIL_STORE_UUID_LEN + 1];          /* get, delete */
    char *spiffe_id, *parent_id, *team, *token; /* list */
    struct sigil_selector_set selectors;        /* list */
    enum sigil_selector_match match;
    size_t page_size;
};

static void
job_free(struct job *j)
{
    sigil_store_entry_free(&j->entry);
    free(j->spiffe_id);
    free(j->parent_id);
    free(j->team);
    free(j->token);
    sigil_selector_set_free(&j->selectors);
    free(j);
}

static json_t *
error_json(const char *code, const char *message)
{
    return json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message);
}

/* Answers on the loop thread (while the handler runs or from done). */
static void
respond_error(struct sigil_http_req *req, int status, const char *code, const char *message)
{
    sigil_http_respond_json(req, status, error_json(code, message));
}

/* The HTTP status of a datastore result. */
static int
http_status(int r)
{
    switch (r) {
    case SIGIL_ERR_INVALID:
    case SIGIL_ERR_RANGE:
        return 400;
    case SIGIL_ERR_DENIED:
        return 403;
    case SIGIL_ERR_NOTFOUND:
        return 404;
    case SIGIL_ERR_EXISTS:
        return 409;
    case SIGIL_ERR_IO:
    case SIGIL_ERR_TIMEOUT:
    case SIGIL_ERR_CANCELLED:
        return 503;
    default:
        return 500;
    }
}

/* Posts a datastore failure from the worker. */
static void
post_store_error(struct job *j, int r)
{
    const char *code = j->serr.code[0] != '\0' ? j->serr.code : "internal";
    const char *msg = j->serr.message[0] != '\0' ? j->serr.message : sigil_strerror(r);

    sigil_http_post_json(j->req, http_status(r), error_json(code, msg));
    j->answered = true;
}

static void
post_json(struct job *j, int status, json_t *body)
{
    sigil_http_post_json(j->req, status, body);
    j->answered = true;
}

static int
work_list(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_entry_filter f = {
        .spiffe_id = j->spiffe_id,
        .parent_id = j->parent_id,
        .team = j->team,
        .selectors = sigil_selector_set_count(&j->selectors) > 0 ? &j->selectors : NULL,
        .match = j->match,
        .page_size = j->page_size,
        .page_token = j->token,
    };
    struct sigil_store_entry_list l = {0};
    json_t *arr = json_array(), *body = NULL, *e;
    int r;

    if ((r = sigil_store_entries_list(c, &f, &l, &j->serr)) != 0) {
        json_decref(arr);
        post_store_error(j, r);
        return 0;
    }
    for (size_t i = 0; arr != NULL && i < l.count; i++) {
        if (sigil_store_entry_to_json(&l.items[i], &e) != 0 || json_array_append_new(arr, e) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    if (arr != NULL && (body = json_pack("{s:o}", "entries", arr)) != NULL &&
        l.next_page_token != NULL)
        json_object_set_new(body, "next_page_token", json_string(l.next_page_token));
    /* a NULL body (out of memory) is answered 500 by the HTTP layer */
    post_json(j, 200, body);
    sigil_store_entry_list_free(&l);
    return 0;
}

/* Our bundle as stored, re-encoded canonically (jsonb reorders members). */
static int
work_bundle(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_bundle b = {0};
    struct sigil_bundle *sb = NULL;
    const char *why = NULL;
    char *doc = NULL;
    size_t len;
    int r;

    if ((r = sigil_store_bundle_get(c, NULL, &b, &j->serr)) != 0) {
        post_store_error(j, r);
        return 0;
    }
    if (sigil_bundle_decode(b.trust_domain, b.document, strlen(b.document), &sb, &why) != 0 ||
        sigil_bundle_encode(sb, &doc, &len) != 0) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT, "our stored bundle does not decode: %s",
                  why ? why : "encoding failed");
        post_json(j, 500, error_json("bundle.corrupt", "our stored bundle does not decode"));
    } else {
        sigil_http_post(j->req, 200, "application/json", doc, len);
        j->answered = true;
    }
    free(doc);
    sigil_bundle_free(sb);
    sigil_store_bundle_free(&b);
    return 0;
}

static int
work(struct sigil_db_conn *c, void *arg)
{
    struct job *j = arg;
    struct sigil_store_entry got = {0};
    json_t *body = NULL;
    int r;

    switch (j->op) {
    case OP_ENTRY_CREATE:
        if ((r = sigil_store_entry_create(c, j->actor, &j->entry, &j->serr)) != 0)
            break;
        sigil_store_entry_to_json(&j->entry, &body);
        post_json(j, 201, body);
        return 0;
    case OP_ENTRY_GET:
        if ((r = sigil_store_entry_get(c, j->id, &got, &j->serr)) != 0)
            break;
        sigil_store_entry_to_json(&got, &body);
        sigil_store_entry_free(&got);
        post_json(j, 200, body);
        return 0;
    case OP_ENTRY_DELETE:
        if ((r = sigil_store_entry_delete(c, j->actor, j->id, &j->serr)) != 0)
            break;
        sigil_http_post(j->req, 204, "application/json", "", 0);
        j->answered = true;
        return 0;
    case OP_ENTRY_LIST:
        return work_list(c, j);
    case OP_BUNDLE_GET:
        return work_bundle(c, j);
    default:
        r = SIGIL_ERR_INTERNAL;
        break;
    }
    post_store_error(j, r);
    return 0;
}

/* On the loop: answers a job the pool never ran (no database, pool closing), then frees it. */
static void
done(void *arg, int status)
{
    struct job *j = arg;

    if (!j->answered)
        respond_error(j->req, 503, "database.unavailable",
                      j->dberr.message[0] != '\0' ? j->dberr.message : sigil_strerror(status));
    job_free(j);
}

/* Who may do what: the local socket's callers are platform admins (its file mode decides who
 * connects); the mTLS roles come with the TCP listener. Fills the actor of the audit log. */
static bool
authorize(struct sigil_http_req *req, struct job *j)
{
    const struct sigil_http_peer *p = sigil_http_req_peer(req);

    if (p->kind == SIGIL_HTTP_PEER_UNIX) {
        snprintf(j->actor, sizeof j->actor, "uid:%u", (unsigned)p->uid);
        return true;
    }
    respond_error(req, 403, "auth.forbidden",
                  "this listener has no admin roles yet: use the local admin socket");
    return false;
}

static struct job *
job_new(struct sigil_http_req *req, enum op op)
{
    struct job *j = calloc(1, sizeof *j);

    if (j == NULL) {
        respond_error(req, 500, "internal", "out of memory");
        return NULL;
    }
    j->op = op;
    j->req = req;
    if (!authorize(req, j)) {
        job_free(j);
        return NULL;
    }
    return j;
}

/* Defers req and queues j; on failure answers and frees j. */
static void
submit(struct sigil_admin *a, struct job *j)
{
    int r;

    if (sigil_http_req_defer(j->req) != 0) {
        job_free(j); /* answered 503 by the HTTP layer */
        return;
    }
    if ((r = sigil_db_submit(a->db, work, done, j, &j->dberr)) != 0) {
        respond_error(j->req, 503, "server.busy",
                      r == SIGIL_ERR_RANGE ? "too many requests queued; try again"
                                           : "the server is stopping");
        job_free(j);
    }
}

/* Runs the registration policy on a new entry: refusals are 400 with the rule as the code;
 * the effective TTLs and the team (from the ID's team segment) are filled in. */
static bool
apply_policy(struct sigil_admin *a, struct sigil_http_req *req, struct sigil_store_entry *e)
{
    struct sigil_spiffeid id, parent;
    struct sigil_policy_result res;
    struct sigil_policy_entry pe = {
        .spiffe_id = &id,
        .parent_id = &parent,
        .selectors = &e->selectors,
        .x509_svid_ttl = e->x509_ttl,
        .jwt_svid_ttl = e->jwt_ttl,
        .admin = e->admin,
        .downstream = e->downstream,
    };
    const char *why = NULL, *seg;
    size_t len;
    bool ok = false;

    if (sigil_spiffeid_parse(e->spiffe_id, strlen(e->spiffe_id), &id, &why) != 0 ||
        sigil_spiffeid_parse(e->parent_id, strlen(e->parent_id), &parent, &why) != 0) {
        respond_error(req, 400, "entry.invalid", why ? why : "bad SPIFFE ID");
        return false;
    }
    if (sigil_policy_check_entry(a->policy, &pe, &res) != 0) {
        respond_error(req, 500, "internal", "the policy check failed");
        goto out;
    }
    for (size_t i = 0; i < res.n_warnings; i++)
        sigil_log_kv(SIGIL_LOG_WARN, COMPONENT, "policy warning", "rule", res.warnings[i].rule,
                     "spiffe_id", e->spiffe_id, "message", res.warnings[i].message, NULL);
    if (!res.ok) {
        respond_error(req, 400, res.rule, res.message);
        goto out;
    }
    e->x509_ttl = (int32_t)res.x509_svid_ttl;
    e->jwt_ttl = (int32_t)res.jwt_svid_ttl;
    free(e->team);
    e->team = NULL;
    if (sigil_policy_id_team(a->policy, &id, &seg, &len) == 0 &&
        (e->team = strndup(seg, len)) == NULL) {
        respond_error(req, 500, "internal", "out of memory");
        goto out;
    }
    ok = true;
out:
    sigil_policy_result_free(&res);
    return ok;
}

static void
h_entry_create(struct sigil_http_req *req, void *arg)
{
    struct sigil_admin *a = arg;
    json_t *body = NULL;
    const char *why = NULL;
    struct job *j;

    if ((j = job_new(req, OP_ENTRY_CREATE)) == NULL)
        return;
    if (sigil_http_req_body_json(req, &body, &why) != 0) {
        respond_error(req, 400, "request.invalid_json", why);
        goto fail;
    }
    if (sigil_store_entry_from_json(body, SIGIL_STORE_JSON_INPUT, &j->entry, &j->serr) != 0 ||
        sigil_store_entry_check(&j->entry, &j->serr) != 0) {
        respond_error(req, 400, j->serr.code[0] ? j->serr.code : "entry.invalid", j->serr.message);
        goto fail;
    }
    if (!apply_policy(a, req, &j->entry))
        goto fail;
    json_decref(body);
    submit(a, j);
    return;
fail:
    json_decref(body);
    job_free(j);
}

/* Reads query parameter name into *out (NULL when absent). Answers 400 and returns false on a
 * bad one. */
static bool
query_param(struct sigil_http_req *req, const char *name, char **out)
{
    const char *q = sigil_http_req_query(req), *why = NULL;
    struct sigil_buf b = {0};
    int r;

    *out = NULL;
    if (q == NULL)
        return true;
    if ((r = sigil_http_query_param(q, strlen(q), name, &b, &why)) == SIGIL_ERR_NOTFOUND)
        return true;
    if (r == 0 && (*out = sigil_buf_strdup(&b)) == NULL)
        why = "out of memory";
    sigil_buf_free(&b);
    if (*out != NULL)
        return true;
    respond_error(req, r == SIGIL_ERR_NOMEM || r == 0 ? 500 : 400, "request.invalid_query", why);
    return false;
}

static bool
parse_list_query(struct sigil_http_req *req, struct job *j)
{
    static const char *const matches[] = {"exact", "subset", "superset", "any"};
    char *size = NULL, *sel = NULL, *match = NULL;
    const char *why = NULL;
    bool ok = false;

    if (!query_param(req, "spiffe_id", &j->spiffe_id) ||
        !query_param(req, "parent_id", &j->parent_id) || !query_param(req, "team", &j->team) ||
        !query_param(req, "page_token", &j->token) || !query_param(req, "page_size", &size) ||
        !query_param(req, "selector", &sel) || !query_param(req, "match", &match))
        goto out;
    if (size != NULL) {
        char *end;
        unsigned long v = strtoul(size, &end, 10);

        if (size[0] < '1' || size[0] > '9' || *end != '\0' || v > SIGIL_STORE_PAGE_MAX) {
            respond_error(req, 400, "request.page_size", "page_size must be 1..1000");
            goto out;
        }
        j->page_size = v;
    }
    j->match = SIGIL_SELECTOR_MATCH_SUPERSET;
    if (match != NULL) {
        size_t i;

        for (i = 0; i < 4 && strcmp(match, matches[i]) != 0; i++)
            ;
        if (i == 4) {
            respond_error(req, 400, "request.match",
                          "match must be exact, subset, superset or any");
            goto out;
        }
        j->match = (enum sigil_selector_match)i;
    }
    if (sel != NULL && sigil_selector_set_add_str(&j->selectors, sel, strlen(sel), &why) != 0) {
        respond_error(req, 400, "request.selector", why ? why : "bad selector");
        goto out;
    }
    ok = true;
out:
    free(size);
    free(sel);
    free(match);
    return ok;
}

static void
h_entry_list(struct sigil_http_req *req, void *arg)
{
    struct job *j;

    if ((j = job_new(req, OP_ENTRY_LIST)) == NULL)
        return;
    if (!parse_list_query(req, j)) {
        job_free(j);
        return;
    }
    submit(arg, j);
}

/* GET and DELETE /v1/entries/{id}: the id is the rest of the path (a UUID; the store checks). */
static void
h_entry_one(struct sigil_http_req *req, void *arg)
{
    const char *id = sigil_http_req_path(req) + strlen(ENTRIES_PREFIX);
    bool del = strcmp(sigil_http_req_method(req), "DELETE") == 0;
    struct job *j;

    if ((j = job_new(req, del ? OP_ENTRY_DELETE : OP_ENTRY_GET)) == NULL)
        return;
    if (strlen(id) != SIGIL_STORE_UUID_LEN) {
        respond_error(req, 404, "entry.not_found", "no entry with this id (ids are UUIDs)");
        job_free(j);
        return;
    }
    memcpy(j->id, id, SIGIL_STORE_UUID_LEN + 1);
    submit(arg, j);
}

static void
h_bundle(struct sigil_http_req *req, void *arg)
{
    struct job *j;

    if ((j = job_new(req, OP_BUNDLE_GET)) != NULL)
        submit(arg, j);
}

int
sigil_admin_new(struct sigil_db *db, const struct sigil_policy *policy, struct sigil_admin **out)
{
    struct sigil_admin *a = calloc(1, sizeof *a);

    if (a == NULL)
        return SIGIL_ERR_NOMEM;
    a->db = db;
    a->policy = policy;
    *out = a;
    return 0;
}

int
sigil_admin_routes(struct sigil_admin *a, struct sigil_http_server *srv)
{
    int r;

    if ((r = sigil_http_route(srv, "POST", "/v1/entries", false, h_entry_create, a)) != 0 ||
        (r = sigil_http_route(srv, "GET", "/v1/entries", false, h_entry_list, a)) != 0 ||
        (r = sigil_http_route(srv, "GET", ENTRIES_PREFIX, true, h_entry_one, a)) != 0 ||
        (r = sigil_http_route(srv, "DELETE", ENTRIES_PREFIX, true, h_entry_one, a)) != 0 ||
        (r = sigil_http_route(srv, "GET", "/v1/bundle", false, h_bundle, a)) != 0)
        return r;
    return 0;
}

void
sigil_admin_free(struct sigil_admin *a)
{
    free(a);
}
