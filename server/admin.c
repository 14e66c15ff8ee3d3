/* The admin API: each handler checks the caller and reads the request on the loop thread,
 * then hands one job to the database pool; the worker reads JSON bodies strictly (the store's
 * readers, JSON_STRICT unpacking), runs the registration policy on entry writes (read-only,
 * so workers share it; a single create is judged on the loop before queueing), calls the
 * datastore and posts the answer itself. Errors follow the contract:
 * {"error": {"code": "...", "message": "..."}}. */
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
#define FEDBUNDLES_PREFIX "/v1/federated-bundles/"
#define FEDERATIONS "/v1/federation-relationships"
#define FEDERATIONS_PREFIX FEDERATIONS "/"

struct sigil_admin {
    struct sigil_db *db;
    const struct sigil_policy *policy;
    struct sigil_admin_roles roles;
    const struct sigil_ca_params *ca; /* NULL: no CA rotation here */
    int64_t jwt_max_ttl_s;
};

/* A caller's role; a team admin's prefixes are read from the database by the worker. */
enum role {
    ROLE_PLATFORM,
    ROLE_VIEWER,
    ROLE_TEAM,
};

/* Join tokens live this long unless the request says otherwise (the contract's default). */
#define TOKEN_TTL_DEFAULT 600

enum op {
    OP_ENTRY_CREATE,
    OP_ENTRY_GET,
    OP_ENTRY_DELETE,
    OP_ENTRY_LIST,
    OP_ENTRY_PATCH,
    OP_ENTRY_BATCH_CREATE,
    OP_ENTRY_BATCH_DELETE,
    OP_AGENT_LIST,
    OP_AGENT_GET,
    OP_AGENT_BAN,
    OP_AGENT_EVICT,
    OP_TOKEN_CREATE,
    OP_AUDIT_LIST,
    OP_BUNDLE_GET,
    OP_FEDBUNDLE_LIST,
    OP_FEDBUNDLE_GET,
    OP_FEDBUNDLE_PUT,
    OP_FEDBUNDLE_DELETE,
    OP_FEDERATION_LIST,
    OP_FEDERATION_CREATE,
    OP_FEDERATION_DELETE,
    OP_CA_SHOW,
    OP_CA_PREPARE,
    OP_CA_ACTIVATE,
    OP_CA_RETIRE,
};

/* One request handed to a worker. */
struct job {
    enum op op;
    struct sigil_http_req *req;
    char actor[SIGIL_HTTP_ID_MAX + 1];
    enum role role;
    char **prefixes; /* ROLE_TEAM: the SPIFFE ID prefixes its teams own */
    size_t n_prefixes;
    bool answered; /* set by the worker once it posted the answer */
    struct sigil_db_error dberr;
    struct sigil_store_err serr;
    struct sigil_store_entry entry;             /* create */
    char id[SIGIL_STORE_UUID_LEN + 1];          /* get, delete */
    char *spiffe_id, *parent_id, *team, *token; /* list */
    struct sigil_selector_set selectors;        /* list */
    enum sigil_selector_match match;
    size_t page_size;
    const struct sigil_policy *policy;            /* read-only, so workers may use it */
    json_t *body;                                 /* the request's JSON, read on the worker */
    char *agent_id, *attestation_type;            /* agents */
    int banned;                                   /* agents list: -1 any, 0, 1 */
    char *object_type, *object_id, *actor_filter; /* audit */
    char td[SIGIL_TRUST_DOMAIN_MAX + 1];          /* federated bundles, federation */
    char *text;                                   /* PUT bundle: the body, NUL-terminated */
    const struct sigil_ca_params *ca;             /* CA steps */
    int64_t jwt_max_ttl_s;                        /* CA retire */
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
    json_decref(j->body);
    free(j->agent_id);
    free(j->attestation_type);
    free(j->object_type);
    free(j->object_id);
    free(j->actor_filter);
    free(j->text);
    for (size_t i = 0; i < j->n_prefixes; i++)
        free(j->prefixes[i]);
    free(j->prefixes);
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

/* A list page as the contract shapes it: {"<key>": arr, "next_page_token": ...}, the token
 * only when another page follows. Takes arr (may be NULL after a failure); NULL on failure. */
static json_t *
page_body(const char *key, json_t *arr, const char *next_page_token)
{
    json_t *body;

    if (arr == NULL || (body = json_pack("{s:o}", key, arr)) == NULL)
        return NULL;
    if (next_page_token != NULL)
        json_object_set_new(body, "next_page_token", json_string(next_page_token));
    return body;
}

/* Whether an entry with this parent is a node alias: its parent is this trust domain's
 * server ID, spiffe://<td>/sigil/server (what the node API's index matches node selectors
 * against). */
static bool
is_node_alias(const char *trust_domain, const char *parent_id)
{
    size_t n = strlen(trust_domain);

    return parent_id != NULL && strncmp(parent_id, "spiffe://", 9) == 0 &&
           strncmp(parent_id + 9, trust_domain, n) == 0 &&
           strcmp(parent_id + 9 + n, "/sigil/server") == 0;
}

/* An entry's JSON with the read-only node_alias the admin API derives from its parent. */
static int
entry_json(const struct job *j, const struct sigil_store_entry *e, json_t **out)
{
    int r;

    if ((r = sigil_store_entry_to_json(e, out)) != 0)
        return r;
    if (json_object_set_new(*out, "node_alias",
                            json_boolean(is_node_alias(j->policy->trust_domain, e->parent_id))) !=
        0) {
        json_decref(*out);
        *out = NULL;
        return SIGIL_ERR_NOMEM;
    }
    return 0;
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
        if (entry_json(j, &l.items[i], &e) != 0 || json_array_append_new(arr, e) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    body = page_body("entries", arr, l.next_page_token);
    /* a NULL body (out of memory) is answered 500 by the HTTP layer */
    post_json(j, 200, body);
    sigil_store_entry_list_free(&l);
    return 0;
}

/* True if a team admin may write an entry with this SPIFFE ID (another role always may). */
static bool
may_write(const struct job *j, const char *spiffe_id)
{
    struct sigil_spiffeid id;

    if (j->role != ROLE_TEAM)
        return true;
    return spiffe_id != NULL &&
           sigil_spiffeid_parse(spiffe_id, strlen(spiffe_id), &id, NULL) == 0 &&
           sigil_policy_may_write((const char *const *)j->prefixes, j->n_prefixes, &id);
}

static void
post_outside(struct job *j, const char *spiffe_id)
{
    char msg[SIGIL_SPIFFEID_MAX + 128];

    snprintf(msg, sizeof msg,
             "%s is outside your teams' prefixes: a team admin writes only under them",
             spiffe_id ? spiffe_id : "the entry");
    post_json(j, 403, error_json("auth.outside_prefix", msg));
}

/* Reads a team admin's prefixes; a caller with none is no admin at all (403). Returns true
 * when the job may go on. */
static bool
load_prefixes(struct sigil_db_conn *c, struct job *j)
{
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(j->actor)};
    struct sigil_db_res *res = NULL;
    size_t n;
    int r;

    if ((r = sigil_db_exec(c,
                           "SELECT p.prefix FROM team_admins a JOIN team_prefixes p"
                           " ON p.team = a.team WHERE a.spiffe_id = $1 ORDER BY p.prefix",
                           p, 1, &res)) != 0) {
        snprintf(j->serr.code, sizeof j->serr.code, "database.error");
        snprintf(j->serr.message, sizeof j->serr.message, "%s", sigil_db_conn_error(c)->message);
        post_store_error(j, r);
        return false;
    }
    n = sigil_db_res_rows(res);
    if (n > 0 && (j->prefixes = calloc(n, sizeof *j->prefixes)) != NULL) {
        for (size_t i = 0; i < n; i++) {
            if ((j->prefixes[i] = strdup(sigil_db_res_text(res, i, 0))) == NULL)
                break;
            j->n_prefixes++;
        }
    }
    sigil_db_res_free(res);
    if (j->n_prefixes == n && n > 0)
        return true;
    if (n > 0)
        post_json(j, 500, error_json("internal", "out of memory"));
    else
        post_json(j, 403,
                  error_json("auth.forbidden",
                             "your SPIFFE ID is not a platform admin, a viewer or a team "
                             "admin of this server"));
    return false;
}

/* Runs the registration policy on e. On success sets the effective TTLs and *team (the ID's
 * team segment, NULL if none; caller frees) and returns 0; on a refusal returns 400 with the
 * rule as serr's code (500 for a failure of the check itself). Read-only on the policy, so a
 * worker may run it. */
static int
policy_check(const struct sigil_policy *p, const struct sigil_store_entry *e, int32_t *x509,
             int32_t *jwt, char **team, struct sigil_store_err *serr)
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
    int st = 500;

    *team = NULL;
    if (e->spiffe_id == NULL || e->parent_id == NULL ||
        sigil_spiffeid_parse(e->spiffe_id, strlen(e->spiffe_id), &id, &why) != 0 ||
        sigil_spiffeid_parse(e->parent_id, strlen(e->parent_id), &parent, &why) != 0) {
        snprintf(serr->code, sizeof serr->code, "entry.invalid");
        snprintf(serr->message, sizeof serr->message, "%s", why ? why : "bad SPIFFE ID");
        return 400;
    }
    /* SPIRE's rule: an entry parented to the server applies to nodes. Judged on every write
     * of the whole entry (create, and PATCH on the merged result), so a changed parent
     * re-decides. */
    pe.node_alias = is_node_alias(p->trust_domain, e->parent_id);
    if (sigil_policy_check_entry(p, &pe, &res) != 0) {
        snprintf(serr->code, sizeof serr->code, "internal");
        snprintf(serr->message, sizeof serr->message, "the policy check failed");
        goto out;
    }
    for (size_t i = 0; i < res.n_warnings; i++)
        sigil_log_kv(SIGIL_LOG_WARN, COMPONENT, "policy warning", "rule", res.warnings[i].rule,
                     "spiffe_id", e->spiffe_id, "message", res.warnings[i].message, NULL);
    if (!res.ok) {
        snprintf(serr->code, sizeof serr->code, "%s", res.rule);
        snprintf(serr->message, sizeof serr->message, "%s", res.message);
        st = 400;
        goto out;
    }
    *x509 = (int32_t)res.x509_svid_ttl;
    *jwt = (int32_t)res.jwt_svid_ttl;
    if (sigil_policy_id_team(p, &id, &seg, &len) == 0 && (*team = strndup(seg, len)) == NULL) {
        snprintf(serr->code, sizeof serr->code, "internal");
        snprintf(serr->message, sizeof serr->message, "out of memory");
        goto out;
    }
    st = 0;
out:
    sigil_policy_result_free(&res);
    return st;
}

/* policy_check for a new entry, writing the TTLs and team into it. */
static int
policy_apply(const struct sigil_policy *p, struct sigil_store_entry *e,
             struct sigil_store_err *serr)
{
    int32_t x509 = 0, jwt = 0;
    char *team = NULL;
    int st = policy_check(p, e, &x509, &jwt, &team, serr);

    if (st == 0) {
        e->x509_ttl = x509;
        e->jwt_ttl = jwt;
        free(e->team);
        e->team = team;
    }
    return st;
}

/* Posts a 400 for a request body that does not unpack. */
static int
post_bad_body(struct job *j, const json_error_t *jerr)
{
    post_json(j, 400, error_json("request.invalid", jerr->text));
    return 0;
}

/* What the PATCH hook needs and keeps: the team it computed lives here until the write. */
struct patch_check {
    struct job *j;
    unsigned fields; /* of the patch */
    char *team;
};

/* Runs inside the update's transaction on the locked row: the caller must be allowed to write
 * both the entry as it is and as it would be, and the policy judges the merged result, so a
 * concurrent PATCH can neither be lost nor slip a combination past the policy. */
static int
patch_hook(void *arg, const struct sigil_store_entry *before, struct sigil_store_entry *m,
           struct sigil_store_err *serr)
{
    struct patch_check *pc = arg;
    struct job *j = pc->j;
    const char *outside = NULL;
    int32_t x509 = 0, jwt = 0;
    int st;

    /* a retried transaction runs the hook again */
    free(pc->team);
    pc->team = NULL;
    if (!may_write(j, before->spiffe_id))
        outside = before->spiffe_id;
    else if ((pc->fields & SIGIL_STORE_F_SPIFFE_ID) && !may_write(j, m->spiffe_id))
        outside = m->spiffe_id;
    if (outside != NULL) {
        /* a long ID is cut to leave room for the advice */
        snprintf(serr->code, sizeof serr->code, "auth.outside_prefix");
        snprintf(serr->message, sizeof serr->message,
                 "%.300s is outside your teams' prefixes: a team admin writes only under them",
                 outside);
        return SIGIL_ERR_DENIED;
    }
    if ((st = policy_check(j->policy, m, &x509, &jwt, &pc->team, serr)) != 0)
        return st == 400 ? SIGIL_ERR_INVALID : SIGIL_ERR_INTERNAL;
    if (pc->fields & SIGIL_STORE_F_X509_TTL)
        m->x509_ttl = x509;
    if (pc->fields & SIGIL_STORE_F_JWT_TTL)
        m->jwt_ttl = jwt;
    /* the team follows the ID; an unchanged ID keeps the stored team */
    if (pc->fields & SIGIL_STORE_F_SPIFFE_ID)
        m->team = pc->team;
    return 0;
}

/* PATCH: read (locked), authorization, policy on the merged result and write are one
 * transaction in the store, with patch_hook judging in between. */
static int
work_patch(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_entry patch = {0}, out = {0};
    struct patch_check pc = {.j = j};
    json_t *body = NULL;
    int r;

    if ((r = sigil_store_entry_from_json(j->body, SIGIL_STORE_JSON_PATCH, &patch, &j->serr)) != 0) {
        post_store_error(j, r);
        goto out;
    }
    pc.fields = patch.fields;
    if ((r = sigil_store_entry_update_checked(c, j->actor, j->id, &patch, patch_hook, &pc, &out,
                                              &j->serr)) != 0) {
        post_store_error(j, r);
        goto out;
    }
    entry_json(j, &out, &body);
    post_json(j, 200, body);
out:
    free(pc.team);
    sigil_store_entry_free(&patch);
    sigil_store_entry_free(&out);
    return 0;
}

/* The CA's answer for a failed step: a refusal of the journal's state is 409 with a code. */
static void
post_ca_error(struct job *j, int r, const char *err)
{
    const char *msg = err[0] != '\0' ? err : sigil_strerror(r);

    switch (r) {
    case SIGIL_ERR_EXISTS:
        post_json(j, 409, error_json("ca.prepared_already", msg));
        break;
    case SIGIL_ERR_NOTFOUND:
        post_json(
            j, j->op == OP_CA_SHOW ? 404 : 409,
            error_json(j->op == OP_CA_SHOW ? "ca.no_trust_root" : "ca.nothing_prepared", msg));
        break;
    case SIGIL_ERR_STATE:
    case SIGIL_ERR_VERIFY:
        post_json(j, 409, error_json("ca.journal_state", msg));
        break;
    case SIGIL_ERR_IO:
        post_json(j, 503, error_json("database.unavailable", msg));
        break;
    default:
        post_json(j, 500, error_json("internal", msg));
        break;
    }
}

/* GET /v1/ca and the rotation steps: a step opens the CA as no instance (it mints no
 * intermediate; the running servers follow through their journal re-read), runs in one
 * transaction that also writes the audit record, and answers the journal as it then is. */
static int
work_ca(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_ca_params p;
    struct sigil_ca *ca = NULL;
    char err[SIGIL_CA_ERR_MAX] = "";
    const char *serial, *until;
    json_t *shown = NULL;
    size_t retired = 0;
    int r = 0;

    if (j->ca == NULL) {
        post_json(j, 503, error_json("ca.unavailable", "this server does not rotate its CA"));
        return 0;
    }
    if (j->op != OP_CA_SHOW) {
        p = *j->ca;
        p.instance_id = NULL;
        if ((r = sigil_ca_open(c, &p, &ca, NULL, err, sizeof err)) != 0 ||
            (r = sigil_ca_set_actor(ca, j->actor)) != 0)
            goto fail;
        r = j->op == OP_CA_PREPARE ? sigil_ca_prepare(ca, c, err, sizeof err)
            : j->op == OP_CA_ACTIVATE
                ? sigil_ca_activate(ca, c, err, sizeof err)
                : sigil_ca_retire(ca, c, j->jwt_max_ttl_s, &retired, err, sizeof err);
        if (r != 0)
            goto fail;
    }
    if ((r = sigil_ca_show(c, &shown, err, sizeof err)) != 0)
        goto fail;
    if (j->op == OP_CA_RETIRE && retired == 0 && sigil_ca_retire_blocker(shown, &serial, &until)) {
        snprintf(err, sizeof err,
                 "old root %s still signs an unexpired intermediate CA, so SVIDs under it can be "
                 "valid until %s (retire again after that)",
                 serial, until);
        post_json(j, 409, error_json("ca.root_in_use", err));
        goto out;
    }
    if (j->op == OP_CA_RETIRE)
        json_object_set_new(shown, "retired", json_integer((json_int_t)retired));
    post_json(j, 200, shown);
    shown = NULL;
    goto out;
fail:
    post_ca_error(j, r, err);
out:
    json_decref(shown);
    sigil_ca_free(ca);
    return 0;
}

/* The HTTP status of one batch item. */
static int
item_status(int r)
{
    return r == SIGIL_ERR_CANCELLED ? 424 : http_status(r);
}

static json_t *
item_error_json(int status, const struct sigil_store_item *it)
{
    json_t *o = json_pack("{s:i,s:{s:s,s:s}}", "status", status, "error", "code",
                          it->err.code[0] ? it->err.code : "internal", "message",
                          it->err.message[0] ? it->err.message : sigil_strerror(it->status));

    if (o != NULL && it->id[0] != '\0')
        json_object_set_new(o, "id", json_string(it->id));
    return o;
}

/* batchCreate: every item is read and judged by the policy here; the good ones go to the
 * store in one transaction. With atomic, one bad item means nothing is written. */
static int
work_batch_create(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_entry *e = NULL, *good = NULL;
    struct sigil_store_item *res = NULL, *gres = NULL;
    size_t n, ngood = 0, *map = NULL, bad = (size_t)-1;
    json_t *arr = NULL, *results = NULL, *o;
    json_error_t jerr;
    int atomic = 0, r;

    if (json_unpack_ex(j->body, &jerr, JSON_STRICT, "{s:o,s?b}", "entries", &arr, "atomic",
                       &atomic) != 0)
        return post_bad_body(j, &jerr);
    if (!json_is_array(arr) || (n = json_array_size(arr)) > SIGIL_STORE_BATCH_MAX) {
        post_json(j, 400, error_json("batch.range", "entries must be an array of at most 10000"));
        return 0;
    }
    e = calloc(n ? n : 1, sizeof *e);
    good = calloc(n ? n : 1, sizeof *good);
    res = calloc(n ? n : 1, sizeof *res);
    gres = calloc(n ? n : 1, sizeof *gres);
    map = calloc(n ? n : 1, sizeof *map);
    if ((results = json_array()) == NULL || e == NULL || good == NULL || res == NULL ||
        gres == NULL || map == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        int st;

        if ((r = sigil_store_entry_from_json(json_array_get(arr, i), SIGIL_STORE_JSON_INPUT, &e[i],
                                             &res[i].err)) != 0 ||
            (r = sigil_store_entry_check(&e[i], &res[i].err)) != 0) {
            res[i].status = r;
        } else if ((st = policy_apply(j->policy, &e[i], &res[i].err)) != 0) {
            res[i].status = st == 400 ? SIGIL_ERR_INVALID : SIGIL_ERR_INTERNAL;
        } else if (!may_write(j, e[i].spiffe_id)) {
            res[i].status = SIGIL_ERR_DENIED;
            snprintf(res[i].err.code, sizeof res[i].err.code, "auth.outside_prefix");
            snprintf(res[i].err.message, sizeof res[i].err.message,
                     "outside your teams' prefixes: a team admin writes only under them");
        } else {
            map[ngood] = i;
            good[ngood++] = e[i]; /* moved: good[] owns it until moved back */
            memset(&e[i], 0, sizeof e[i]);
        }
        if (res[i].status != 0 && bad == (size_t)-1)
            bad = i;
    }
    if (atomic && bad != (size_t)-1) {
        for (size_t k = 0; k < ngood; k++) {
            res[map[k]].status = SIGIL_ERR_CANCELLED;
            snprintf(res[map[k]].err.code, sizeof res[map[k]].err.code, "batch.aborted");
            snprintf(res[map[k]].err.message, sizeof res[map[k]].err.message,
                     "not written: item %zu failed and the batch is atomic", bad);
        }
    } else if (ngood > 0 && (r = sigil_store_entries_create_batch(
                                 c, j->actor, good, ngood, atomic != 0, gres, &j->serr)) != 0) {
        post_store_error(j, r);
        goto out;
    } else {
        for (size_t k = 0; k < ngood; k++)
            res[map[k]] = gres[k];
    }
    for (size_t k = 0; k < ngood; k++) {
        e[map[k]] = good[k];
        memset(&good[k], 0, sizeof good[k]);
    }
    for (size_t i = 0; i < n; i++) {
        json_t *ej = NULL;

        if (res[i].status == 0) {
            if (entry_json(j, &e[i], &ej) != 0 ||
                (o = json_pack("{s:i,s:o}", "status", 201, "entry", ej)) == NULL)
                goto nomem;
        } else if ((o = item_error_json(item_status(res[i].status), &res[i])) == NULL) {
            goto nomem;
        }
        if (json_array_append_new(results, o) != 0)
            goto nomem;
    }
    post_json(j, 200, json_pack("{s:O}", "results", results));
    goto out;
nomem:
    post_json(j, 500, error_json("internal", "out of memory"));
out:
    for (size_t i = 0; e != NULL && good != NULL && i < n; i++) {
        sigil_store_entry_free(&e[i]);
        sigil_store_entry_free(&good[i]);
    }
    json_decref(results);
    free(e);
    free(good);
    free(res);
    free(gres);
    free(map);
    return 0;
}

static int
work_batch_delete(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_item *res = NULL;
    const char **ids = NULL;
    json_t *arr = NULL, *results = NULL, *o;
    json_error_t jerr;
    size_t n;
    int r;

    if (json_unpack_ex(j->body, &jerr, JSON_STRICT, "{s:o}", "ids", &arr) != 0)
        return post_bad_body(j, &jerr);
    if (j->role == ROLE_TEAM) {
        post_json(j, 403,
                  error_json("auth.forbidden",
                             "batch delete is for platform admins; a team admin deletes "
                             "entries one at a time"));
        return 0;
    }
    if (!json_is_array(arr) || (n = json_array_size(arr)) > SIGIL_STORE_BATCH_MAX) {
        post_json(j, 400, error_json("batch.range", "ids must be an array of at most 10000"));
        return 0;
    }
    ids = calloc(n ? n : 1, sizeof *ids);
    res = calloc(n ? n : 1, sizeof *res);
    if (ids == NULL || res == NULL || (results = json_array()) == NULL)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        if ((ids[i] = json_string_value(json_array_get(arr, i))) == NULL) {
            post_json(j, 400, error_json("request.invalid", "ids must be strings"));
            goto out;
        }
    }
    if (n > 0 && (r = sigil_store_entries_delete_batch(c, j->actor, ids, n, res, &j->serr)) != 0) {
        post_store_error(j, r);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (res[i].status == 0)
            o = json_pack("{s:i,s:s}", "status", 204, "id", ids[i]);
        else if ((o = item_error_json(item_status(res[i].status), &res[i])) != NULL &&
                 res[i].id[0] == '\0')
            json_object_set_new(o, "id", json_string(ids[i]));
        if (o == NULL || json_array_append_new(results, o) != 0)
            goto nomem;
    }
    post_json(j, 200, json_pack("{s:O}", "results", results));
    goto out;
nomem:
    post_json(j, 500, error_json("internal", "out of memory"));
out:
    json_decref(results);
    free(ids);
    free(res);
    return 0;
}

static int
work_agents(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_agent_filter f = {
        .banned = j->banned,
        .attestation_type = j->attestation_type,
        .page_size = j->page_size,
        .page_token = j->token,
    };
    struct sigil_store_agent_list l = {0};
    json_t *arr = json_array(), *body = NULL, *a;
    int r;

    if ((r = sigil_store_agents_list(c, &f, &l, &j->serr)) != 0) {
        json_decref(arr);
        post_store_error(j, r);
        return 0;
    }
    for (size_t i = 0; arr != NULL && i < l.count; i++) {
        if (sigil_store_agent_to_json(&l.items[i], &a) != 0 || json_array_append_new(arr, a) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    body = page_body("agents", arr, l.next_page_token);
    post_json(j, 200, body);
    sigil_store_agent_list_free(&l);
    return 0;
}

/* get, ban, evict: the agent's SPIFFE ID is in the query (get) or the body (ban, evict). */
static int
work_agent(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_agent a = {0};
    const char *id = j->agent_id;
    json_error_t jerr;
    json_t *body = NULL;
    int r;

    if (j->op != OP_AGENT_GET &&
        json_unpack_ex(j->body, &jerr, JSON_STRICT, "{s:s}", "spiffe_id", &id) != 0)
        return post_bad_body(j, &jerr);
    switch (j->op) {
    case OP_AGENT_GET:
        r = sigil_store_agent_get(c, id, &a, &j->serr);
        break;
    case OP_AGENT_BAN:
        r = sigil_store_agent_ban(c, j->actor, id, &a, &j->serr);
        break;
    default:
        if ((r = sigil_store_agent_evict(c, j->actor, id, &j->serr)) == 0) {
            sigil_http_post(j->req, 204, "application/json", "", 0);
            j->answered = true;
            return 0;
        }
        break;
    }
    if (r != 0) {
        post_store_error(j, r);
    } else {
        sigil_store_agent_to_json(&a, &body);
        post_json(j, 200, body);
    }
    sigil_store_agent_free(&a);
    return 0;
}

/* A join token is shown once, in this answer; our copy is wiped. */
static int
work_token(struct sigil_db_conn *c, struct job *j)
{
    char token[SIGIL_STORE_TOKEN_LEN + 1] = "", at[32], agent_id[SIGIL_SPIFFEID_MAX + 1];
    json_int_t ttl = TOKEN_TTL_DEFAULT;
    const char *path = NULL;
    json_error_t jerr;
    json_t *body;
    int64_t expires = 0;
    int r;

    if (json_unpack_ex(j->body, &jerr, JSON_STRICT, "{s?I,s?s}", "ttl_seconds", &ttl, "agent_path",
                       &path) != 0)
        return post_bad_body(j, &jerr);
    if ((r = sigil_store_join_token_create(c, j->actor, (int64_t)ttl, path, token, &expires,
                                           &j->serr)) != 0) {
        post_store_error(j, r);
        return 0;
    }
    sigil_store_time_format(expires, at);
    body = json_pack("{s:s,s:s}", "token", token, "expires_at", at);
    if (body != NULL && path != NULL) {
        snprintf(agent_id, sizeof agent_id, "spiffe://%s%s", j->policy->trust_domain, path);
        json_object_set_new(body, "agent_id", json_string(agent_id));
    }
    post_json(j, 201, body);
    explicit_bzero(token, sizeof token);
    return 0;
}

static int
work_audit(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_audit_filter f = {
        .object_type = j->object_type,
        .object_id = j->object_id,
        .actor = j->actor_filter,
        .page_size = j->page_size,
        .page_token = j->token,
    };
    struct sigil_store_audit_list l = {0};
    json_t *arr = json_array(), *body = NULL, *a;
    int r;

    if ((r = sigil_store_audit_list(c, &f, &l, &j->serr)) != 0) {
        json_decref(arr);
        post_store_error(j, r);
        return 0;
    }
    for (size_t i = 0; arr != NULL && i < l.count; i++) {
        if (sigil_store_audit_to_json(&l.items[i], &a) != 0 || json_array_append_new(arr, a) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    body = page_body("records", arr, l.next_page_token);
    post_json(j, 200, body);
    sigil_store_audit_list_free(&l);
    return 0;
}

/* Re-encodes a stored bundle canonically and posts it (jsonb reorders members). */
static void
post_bundle(struct job *j, int status, const struct sigil_store_bundle *b)
{
    struct sigil_bundle *sb = NULL;
    const char *why = NULL;
    char *doc = NULL;
    size_t len;

    if (sigil_bundle_decode(b->trust_domain, b->document, strlen(b->document), &sb, &why) != 0 ||
        sigil_bundle_encode(sb, &doc, &len) != 0) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT, "the stored bundle of %s does not decode: %s",
                  b->trust_domain, why ? why : "encoding failed");
        post_json(j, 500, error_json("bundle.corrupt", "the stored bundle does not decode"));
    } else {
        sigil_http_post(j->req, status, "application/json", doc, len);
        j->answered = true;
    }
    free(doc);
    sigil_bundle_free(sb);
}

/* Our own bundle as stored. */
static int
work_bundle(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_bundle b = {0};
    int r;

    if ((r = sigil_store_bundle_get(c, NULL, &b, &j->serr)) != 0)
        post_store_error(j, r);
    else
        post_bundle(j, 200, &b);
    sigil_store_bundle_free(&b);
    return 0;
}

/* Every federated bundle as a bundle map (B-7: no refresh hints in a map). */
static int
work_fed_bundles(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_bundle_list l = {0};
    struct sigil_bundle_set *set = NULL;
    const char *why = NULL;
    char *doc = NULL;
    size_t len;
    int r;

    if ((r = sigil_store_bundles_list(c, &l, &j->serr)) != 0) {
        post_store_error(j, r);
        return 0;
    }
    if ((r = sigil_bundle_set_new(&set)) != 0)
        goto fail;
    for (size_t i = 0; i < l.count; i++) {
        struct sigil_bundle *b = NULL;

        if ((r = sigil_bundle_decode(l.items[i].trust_domain, l.items[i].document,
                                     strlen(l.items[i].document), &b, &why)) != 0 ||
            (r = sigil_bundle_set_put(set, b)) != 0)
            goto fail;
    }
    if ((r = sigil_bundle_map_encode(set, &doc, &len)) != 0)
        goto fail;
    sigil_http_post(j->req, 200, "application/json", doc, len);
    j->answered = true;
    goto out;
fail:
    post_json(j, 500, error_json("bundle.corrupt", why ? why : sigil_strerror(r)));
out:
    free(doc);
    sigil_bundle_set_free(set);
    sigil_store_bundle_list_free(&l);
    return 0;
}

/* GET, PUT, DELETE /v1/federated-bundles/{td}. */
static int
work_fed_bundle(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_bundle b = {0};
    int r = 0;

    if (j->op == OP_FEDBUNDLE_DELETE) {
        if ((r = sigil_store_bundle_delete(c, j->actor, j->td, &j->serr)) == 0) {
            sigil_http_post(j->req, 204, "application/json", "", 0);
            j->answered = true;
            return 0;
        }
    } else if (j->op == OP_FEDBUNDLE_PUT &&
               (r = sigil_store_bundle_set_federated(c, j->actor, j->td, j->text, &j->serr)) != 0) {
        /* refused before reading back */
    } else {
        r = sigil_store_bundle_get(c, j->td, &b, &j->serr);
        if (r == 0 && b.own) {
            r = SIGIL_ERR_NOTFOUND;
            snprintf(j->serr.code, sizeof j->serr.code, "bundle.not_found");
            snprintf(j->serr.message, sizeof j->serr.message,
                     "%s is our own trust domain: its bundle is at /v1/bundle", j->td);
        }
    }
    if (r != 0)
        post_store_error(j, r);
    else
        post_bundle(j, 200, &b);
    sigil_store_bundle_free(&b);
    return 0;
}

static int
work_federations(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_federation_list l = {0};
    json_t *arr = json_array(), *o;
    int r;

    if ((r = sigil_store_federations_list(c, &l, &j->serr)) != 0) {
        json_decref(arr);
        post_store_error(j, r);
        return 0;
    }
    for (size_t i = 0; arr != NULL && i < l.count; i++) {
        if (sigil_store_federation_to_json(&l.items[i], &o) != 0 ||
            json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    post_json(j, 200, arr != NULL ? json_pack("{s:o}", "relationships", arr) : NULL);
    sigil_store_federation_list_free(&l);
    return 0;
}

static int
work_federation(struct sigil_db_conn *c, struct job *j)
{
    struct sigil_store_federation f = {0};
    json_t *body = NULL;
    int r;

    if (j->op == OP_FEDERATION_DELETE) {
        if ((r = sigil_store_federation_delete(c, j->actor, j->td, &j->serr)) == 0) {
            sigil_http_post(j->req, 204, "application/json", "", 0);
            j->answered = true;
            return 0;
        }
    } else if ((r = sigil_store_federation_from_json(j->body, &f, &j->serr)) == 0 &&
               (r = sigil_store_federation_create(c, j->actor, &f, &j->serr)) == 0) {
        sigil_store_federation_to_json(&f, &body);
        post_json(j, 201, body);
    }
    if (r != 0)
        post_store_error(j, r);
    sigil_store_federation_free(&f);
    return 0;
}

static int
work(struct sigil_db_conn *c, void *arg)
{
    struct job *j = arg;
    struct sigil_store_entry got = {0};
    json_t *body = NULL;
    int r;

    if (j->role == ROLE_TEAM && !load_prefixes(c, j))
        return 0;
    switch (j->op) {
    case OP_ENTRY_CREATE:
        if (!may_write(j, j->entry.spiffe_id)) {
            post_outside(j, j->entry.spiffe_id);
            return 0;
        }
        if ((r = sigil_store_entry_create(c, j->actor, &j->entry, &j->serr)) != 0)
            break;
        entry_json(j, &j->entry, &body);
        post_json(j, 201, body);
        return 0;
    case OP_ENTRY_GET:
        if ((r = sigil_store_entry_get(c, j->id, &got, &j->serr)) != 0)
            break;
        entry_json(j, &got, &body);
        sigil_store_entry_free(&got);
        post_json(j, 200, body);
        return 0;
    case OP_ENTRY_DELETE:
        if (j->role == ROLE_TEAM) {
            if ((r = sigil_store_entry_get(c, j->id, &got, &j->serr)) != 0)
                break;
            if (!may_write(j, got.spiffe_id)) {
                post_outside(j, got.spiffe_id);
                sigil_store_entry_free(&got);
                return 0;
            }
            sigil_store_entry_free(&got);
        }
        if ((r = sigil_store_entry_delete(c, j->actor, j->id, &j->serr)) != 0)
            break;
        sigil_http_post(j->req, 204, "application/json", "", 0);
        j->answered = true;
        return 0;
    case OP_ENTRY_LIST:
        return work_list(c, j);
    case OP_BUNDLE_GET:
        return work_bundle(c, j);
    case OP_ENTRY_PATCH:
        return work_patch(c, j);
    case OP_ENTRY_BATCH_CREATE:
        return work_batch_create(c, j);
    case OP_ENTRY_BATCH_DELETE:
        return work_batch_delete(c, j);
    case OP_AGENT_LIST:
        return work_agents(c, j);
    case OP_AGENT_GET:
    case OP_AGENT_BAN:
    case OP_AGENT_EVICT:
        return work_agent(c, j);
    case OP_TOKEN_CREATE:
        return work_token(c, j);
    case OP_AUDIT_LIST:
        return work_audit(c, j);
    case OP_FEDBUNDLE_LIST:
        return work_fed_bundles(c, j);
    case OP_FEDBUNDLE_GET:
    case OP_FEDBUNDLE_PUT:
    case OP_FEDBUNDLE_DELETE:
        return work_fed_bundle(c, j);
    case OP_FEDERATION_LIST:
        return work_federations(c, j);
    case OP_FEDERATION_CREATE:
    case OP_FEDERATION_DELETE:
        return work_federation(c, j);
    case OP_CA_SHOW:
    case OP_CA_PREPARE:
    case OP_CA_ACTIVATE:
    case OP_CA_RETIRE:
        return work_ca(c, j);
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

/* True for the operations that change something. */
static bool
is_write(enum op op)
{
    switch (op) {
    case OP_ENTRY_GET:
    case OP_ENTRY_LIST:
    case OP_AGENT_LIST:
    case OP_AGENT_GET:
    case OP_AUDIT_LIST:
    case OP_BUNDLE_GET:
    case OP_FEDBUNDLE_LIST:
    case OP_FEDBUNDLE_GET:
    case OP_FEDERATION_LIST:
    case OP_CA_SHOW:
        return false;
    default:
        return true;
    }
}

/* What a team admin may ask for at all: entries (writes checked against its prefixes by the
 * worker) and our bundle. */
static bool
team_op(enum op op)
{
    switch (op) {
    case OP_ENTRY_CREATE:
    case OP_ENTRY_GET:
    case OP_ENTRY_DELETE:
    case OP_ENTRY_LIST:
    case OP_ENTRY_PATCH:
    case OP_ENTRY_BATCH_CREATE:
    case OP_ENTRY_BATCH_DELETE:
    case OP_BUNDLE_GET:
        return true;
    default:
        return false;
    }
}

static bool
listed(const char *const *ids, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ids[i], id) == 0)
            return true;
    }
    return false;
}

/* Who may do what: callers on the local socket are platform admins (its file mode decides who
 * connects); over mTLS the caller's SPIFFE ID decides (struct sigil_admin_roles). Fills the
 * actor of the audit log; answers 403 itself when the role cannot do op at all. */
static bool
authorize(struct sigil_admin *a, struct sigil_http_req *req, struct job *j)
{
    const struct sigil_http_peer *p = sigil_http_req_peer(req);

    if (p->kind == SIGIL_HTTP_PEER_UNIX) {
        snprintf(j->actor, sizeof j->actor, "uid:%u", (unsigned)p->uid);
        j->role = ROLE_PLATFORM;
        return true;
    }
    if (p->kind != SIGIL_HTTP_PEER_MTLS || p->id == NULL) {
        respond_error(req, 401, "auth.unauthenticated", "present an X.509-SVID (mutual TLS)");
        return false;
    }
    snprintf(j->actor, sizeof j->actor, "%s", p->id);
    if (listed(a->roles.platform_admins, a->roles.n_platform_admins, p->id)) {
        j->role = ROLE_PLATFORM;
    } else if (listed(a->roles.viewers, a->roles.n_viewers, p->id)) {
        j->role = ROLE_VIEWER;
        if (is_write(j->op)) {
            respond_error(req, 403, "auth.forbidden", "viewers may only read");
            return false;
        }
    } else {
        j->role = ROLE_TEAM;
        if (!team_op(j->op)) {
            respond_error(req, 403, "auth.forbidden",
                          "only platform admins may do this (team admins manage entries "
                          "under their prefixes)");
            return false;
        }
    }
    return true;
}

static struct job *
job_new(struct sigil_admin *a, struct sigil_http_req *req, enum op op)
{
    struct job *j = calloc(1, sizeof *j);

    if (j == NULL) {
        respond_error(req, 500, "internal", "out of memory");
        return NULL;
    }
    j->op = op;
    j->req = req;
    j->policy = a->policy;
    j->banned = -1;
    if (!authorize(a, req, j)) {
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

/* Reads the request body as one JSON object (parsed strictly later, on the worker). */
static bool
read_body(struct sigil_http_req *req, struct job *j)
{
    const char *why = NULL;

    if (sigil_http_req_body_json(req, &j->body, &why) == 0)
        return true;
    respond_error(req, 400, "request.invalid_json", why ? why : "bad JSON");
    return false;
}

static void
h_entry_create(struct sigil_http_req *req, void *arg)
{
    struct sigil_admin *a = arg;
    json_t *body = NULL;
    const char *why = NULL;
    struct job *j;
    int st;

    if ((j = job_new(a, req, OP_ENTRY_CREATE)) == NULL)
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
    if ((st = policy_apply(a->policy, &j->entry, &j->serr)) != 0) {
        respond_error(req, st, j->serr.code, j->serr.message);
        goto fail;
    }
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

/* Reads page_size (1..SIGIL_STORE_PAGE_MAX) and page_token. */
static bool
page_query(struct sigil_http_req *req, struct job *j)
{
    char *size = NULL, *end;
    unsigned long v;

    if (!query_param(req, "page_token", &j->token) || !query_param(req, "page_size", &size))
        return false;
    if (size == NULL)
        return true;
    v = strtoul(size, &end, 10);
    if (size[0] < '1' || size[0] > '9' || *end != '\0' || v > SIGIL_STORE_PAGE_MAX) {
        free(size);
        respond_error(req, 400, "request.page_size", "page_size must be 1..1000");
        return false;
    }
    free(size);
    j->page_size = v;
    return true;
}

/* Reads every selector=type:value of the query into j->selectors (the contract repeats the
 * parameter for several, so sigil_http_query_param, which refuses repeats, gets one pair at a
 * time to decode). */
static bool
selectors_query(struct sigil_http_req *req, struct job *j)
{
    static const char name[] = "selector=";
    const char *q = sigil_http_req_query(req), *why = NULL;

    for (const char *p = q; p != NULL && *p != '\0';) {
        const char *amp = strchr(p, '&');
        size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);
        struct sigil_buf b = {0};
        int r = 0;

        if (len >= sizeof name - 1 && memcmp(p, name, sizeof name - 1) == 0) {
            if ((r = sigil_http_query_param(p, len, "selector", &b, &why)) == 0)
                r = sigil_selector_set_add_str(&j->selectors, (const char *)b.data, b.len, &why);
            sigil_buf_free(&b);
            if (r != 0) {
                respond_error(req, 400, "request.selector", why ? why : sigil_strerror(r));
                return false;
            }
        }
        p = amp != NULL ? amp + 1 : p + len;
    }
    return true;
}

static bool
parse_list_query(struct sigil_http_req *req, struct job *j)
{
    static const char *const matches[] = {"exact", "subset", "superset", "any"};
    char *match = NULL;
    bool ok = false;

    if (!query_param(req, "spiffe_id", &j->spiffe_id) ||
        !query_param(req, "parent_id", &j->parent_id) || !query_param(req, "team", &j->team) ||
        !page_query(req, j) || !selectors_query(req, j) || !query_param(req, "match", &match))
        goto out;
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
    ok = true;
out:
    free(match);
    return ok;
}

static void
h_entry_list(struct sigil_http_req *req, void *arg)
{
    struct job *j;

    if ((j = job_new(arg, req, OP_ENTRY_LIST)) == NULL)
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
    const char *method = sigil_http_req_method(req);
    enum op op = strcmp(method, "DELETE") == 0  ? OP_ENTRY_DELETE
                 : strcmp(method, "PATCH") == 0 ? OP_ENTRY_PATCH
                                                : OP_ENTRY_GET;
    struct job *j;

    if ((j = job_new(arg, req, op)) == NULL)
        return;
    if (op == OP_ENTRY_PATCH && !read_body(req, j)) {
        job_free(j);
        return;
    }
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

    if ((j = job_new(arg, req, OP_BUNDLE_GET)) != NULL)
        submit(arg, j);
}

/* GET /v1/ca and POST /v1/ca:prepare|activate|retire (no body). */
static void
ca_job(struct sigil_http_req *req, void *arg, enum op op)
{
    struct sigil_admin *a = arg;
    struct job *j;

    if ((j = job_new(arg, req, op)) == NULL)
        return;
    j->ca = a->ca;
    j->jwt_max_ttl_s = a->jwt_max_ttl_s;
    submit(arg, j);
}

static void
h_ca_show(struct sigil_http_req *req, void *arg)
{
    ca_job(req, arg, OP_CA_SHOW);
}

static void
h_ca_prepare(struct sigil_http_req *req, void *arg)
{
    ca_job(req, arg, OP_CA_PREPARE);
}

static void
h_ca_activate(struct sigil_http_req *req, void *arg)
{
    ca_job(req, arg, OP_CA_ACTIVATE);
}

static void
h_ca_retire(struct sigil_http_req *req, void *arg)
{
    ca_job(req, arg, OP_CA_RETIRE);
}

/* The handlers whose whole request is a JSON body. */
static void
body_job(struct sigil_http_req *req, void *arg, enum op op)
{
    struct job *j;

    if ((j = job_new(arg, req, op)) == NULL)
        return;
    if (!read_body(req, j)) {
        job_free(j);
        return;
    }
    submit(arg, j);
}

static void
h_batch_create(struct sigil_http_req *req, void *arg)
{
    body_job(req, arg, OP_ENTRY_BATCH_CREATE);
}

static void
h_batch_delete(struct sigil_http_req *req, void *arg)
{
    body_job(req, arg, OP_ENTRY_BATCH_DELETE);
}

static void
h_agent_ban(struct sigil_http_req *req, void *arg)
{
    body_job(req, arg, OP_AGENT_BAN);
}

static void
h_agent_evict(struct sigil_http_req *req, void *arg)
{
    body_job(req, arg, OP_AGENT_EVICT);
}

static void
h_token(struct sigil_http_req *req, void *arg)
{
    body_job(req, arg, OP_TOKEN_CREATE);
}

static void
h_agents(struct sigil_http_req *req, void *arg)
{
    char *banned = NULL;
    struct job *j;

    if ((j = job_new(arg, req, OP_AGENT_LIST)) == NULL)
        return;
    if (!query_param(req, "attestation_type", &j->attestation_type) || !page_query(req, j) ||
        !query_param(req, "banned", &banned))
        goto fail;
    if (banned != NULL) {
        if (strcmp(banned, "true") != 0 && strcmp(banned, "false") != 0) {
            respond_error(req, 400, "request.banned", "banned must be true or false");
            goto fail;
        }
        j->banned = strcmp(banned, "true") == 0;
    }
    free(banned);
    submit(arg, j);
    return;
fail:
    free(banned);
    job_free(j);
}

static void
h_agent(struct sigil_http_req *req, void *arg)
{
    struct job *j;

    if ((j = job_new(arg, req, OP_AGENT_GET)) == NULL)
        return;
    if (!query_param(req, "spiffe_id", &j->agent_id)) {
        job_free(j);
        return;
    }
    if (j->agent_id == NULL) {
        respond_error(req, 400, "request.spiffe_id", "give the agent's SPIFFE ID: ?spiffe_id=");
        job_free(j);
        return;
    }
    submit(arg, j);
}

static void
h_audit(struct sigil_http_req *req, void *arg)
{
    struct job *j;

    if ((j = job_new(arg, req, OP_AUDIT_LIST)) == NULL)
        return;
    if (!query_param(req, "object_type", &j->object_type) ||
        !query_param(req, "object_id", &j->object_id) ||
        !query_param(req, "actor", &j->actor_filter) || !page_query(req, j)) {
        job_free(j);
        return;
    }
    submit(arg, j);
}

/* Reads the trust domain at the end of the path (after prefix) into j->td; answers 404 for
 * one that cannot be a trust domain. */
static bool
path_td(struct sigil_http_req *req, const char *prefix, struct job *j)
{
    const char *td = sigil_http_req_path(req) + strlen(prefix), *why = NULL;
    size_t n = strlen(td);

    if (sigil_trust_domain_check(td, n, &why) != 0) {
        respond_error(req, 404, "trust_domain.invalid", why ? why : "bad trust domain");
        return false;
    }
    memcpy(j->td, td, n + 1);
    return true;
}

static void
h_fed_bundles(struct sigil_http_req *req, void *arg)
{
    struct job *j;

    if ((j = job_new(arg, req, OP_FEDBUNDLE_LIST)) != NULL)
        submit(arg, j);
}

static void
h_fed_bundle(struct sigil_http_req *req, void *arg)
{
    const char *method = sigil_http_req_method(req);
    enum op op = strcmp(method, "PUT") == 0      ? OP_FEDBUNDLE_PUT
                 : strcmp(method, "DELETE") == 0 ? OP_FEDBUNDLE_DELETE
                                                 : OP_FEDBUNDLE_GET;
    const uint8_t *body;
    size_t len;
    struct job *j;

    if ((j = job_new(arg, req, op)) == NULL)
        return;
    if (!path_td(req, FEDBUNDLES_PREFIX, j))
        goto fail;
    if (op == OP_FEDBUNDLE_PUT) {
        body = sigil_http_req_body(req, &len);
        if (memchr(body, '\0', len) != NULL ||
            (j->text = strndup((const char *)body, len)) == NULL) {
            respond_error(req, 400, "bundle.invalid", "the body must be a SPIFFE bundle (JSON)");
            goto fail;
        }
    }
    submit(arg, j);
    return;
fail:
    job_free(j);
}

static void
h_federations(struct sigil_http_req *req, void *arg)
{
    bool create = strcmp(sigil_http_req_method(req), "POST") == 0;
    struct job *j;

    if ((j = job_new(arg, req, create ? OP_FEDERATION_CREATE : OP_FEDERATION_LIST)) == NULL)
        return;
    if (create && !read_body(req, j)) {
        job_free(j);
        return;
    }
    submit(arg, j);
}

static void
h_federation(struct sigil_http_req *req, void *arg)
{
    struct job *j;

    if ((j = job_new(arg, req, OP_FEDERATION_DELETE)) == NULL)
        return;
    if (!path_td(req, FEDERATIONS_PREFIX, j)) {
        job_free(j);
        return;
    }
    submit(arg, j);
}

int
sigil_admin_new(struct sigil_db *db, const struct sigil_policy *policy,
                const struct sigil_admin_roles *roles, struct sigil_admin **out)
{
    struct sigil_admin *a = calloc(1, sizeof *a);

    if (a == NULL)
        return SIGIL_ERR_NOMEM;
    a->db = db;
    a->policy = policy;
    if (roles != NULL)
        a->roles = *roles;
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
        (r = sigil_http_route(srv, "PATCH", ENTRIES_PREFIX, true, h_entry_one, a)) != 0 ||
        (r = sigil_http_route(srv, "POST", "/v1/entries:batchCreate", false, h_batch_create, a)) !=
            0 ||
        (r = sigil_http_route(srv, "POST", "/v1/entries:batchDelete", false, h_batch_delete, a)) !=
            0 ||
        (r = sigil_http_route(srv, "GET", "/v1/agents", false, h_agents, a)) != 0 ||
        (r = sigil_http_route(srv, "GET", "/v1/agent", false, h_agent, a)) != 0 ||
        (r = sigil_http_route(srv, "POST", "/v1/agents:ban", false, h_agent_ban, a)) != 0 ||
        (r = sigil_http_route(srv, "POST", "/v1/agents:evict", false, h_agent_evict, a)) != 0 ||
        (r = sigil_http_route(srv, "POST", "/v1/join-tokens", false, h_token, a)) != 0 ||
        (r = sigil_http_route(srv, "GET", "/v1/audit", false, h_audit, a)) != 0 ||
        (r = sigil_http_route(srv, "GET", "/v1/bundle", false, h_bundle, a)) != 0 ||
        (r = sigil_http_route(srv, "GET", "/v1/federated-bundles", false, h_fed_bundles, a)) != 0 ||
        (r = sigil_http_route(srv, "GET", FEDBUNDLES_PREFIX, true, h_fed_bundle, a)) != 0 ||
        (r = sigil_http_route(srv, "PUT", FEDBUNDLES_PREFIX, true, h_fed_bundle, a)) != 0 ||
        (r = sigil_http_route(srv, "DELETE", FEDBUNDLES_PREFIX, true, h_fed_bundle, a)) != 0 ||
        (r = sigil_http_route(srv, "GET", FEDERATIONS, false, h_federations, a)) != 0 ||
        (r = sigil_http_route(srv, "POST", FEDERATIONS, false, h_federations, a)) != 0 ||
        (r = sigil_http_route(srv, "DELETE", FEDERATIONS_PREFIX, true, h_federation, a)) != 0 ||
        (r = sigil_http_route(srv, "GET", "/v1/ca", false, h_ca_show, a)) != 0 ||
        (r = sigil_http_route(srv, "POST", "/v1/ca:prepare", false, h_ca_prepare, a)) != 0 ||
        (r = sigil_http_route(srv, "POST", "/v1/ca:activate", false, h_ca_activate, a)) != 0 ||
        (r = sigil_http_route(srv, "POST", "/v1/ca:retire", false, h_ca_retire, a)) != 0)
        return r;
    return 0;
}

void
sigil_admin_set_ca(struct sigil_admin *a, const struct sigil_ca_params *p, int64_t jwt_max_ttl_s)
{
    a->ca = p;
    a->jwt_max_ttl_s = jwt_max_ttl_s;
}

void
sigil_admin_free(struct sigil_admin *a)
{
    free(a);
}
