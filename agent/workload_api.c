/* The Workload API server: one request object per call, attested before anything is read
 * from the cache, refcounted because attestation, JWT minting and the rpc layer's cancel can
 * each outlive the others. Responses carry the whole state (W-3); a stream resends only when
 * its packed bytes changed, and ends with PermissionDenied once the caller has no identity. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "google/protobuf/struct.pb-c.h"
#include "sigil_fdsets.h"
#include "workload.pb-c.h"
#include "workload_api.h"

#include "sigil/err.h"
#include "sigil/jwtsvid.h"
#include "sigil/log.h"
#include "sigil/rpc.h"
#include "sigil/rpc_reflection.h"
#include "sigil/x509.h"

#define MAX_IDENTITIES 256 /* SVIDs in one response */
#define MAX_AUDIENCES 32
#define STRUCT_DEPTH_MAX 32

enum method {
    M_X509_SVID,
    M_X509_BUNDLES,
    M_JWT_SVID,
    M_JWT_BUNDLES,
    M_VALIDATE,
};

struct sigil_wapi {
    uv_loop_t *loop;
    struct sigil_cache *cache;
    struct sigil_rpc_server *srv;
    struct sigil_wapi_opts opts;
    struct sigil_wapi_stats stats;
    char *path;
    void (*done)(void *);
    void *done_arg;
};

struct req {
    struct sigil_wapi *w;
    pid_t pid; /* the caller, for log lines */
    uid_t uid;
    struct sigil_rpc_call *call; /* NULL once finished or cancelled */
    enum method method;
    unsigned refs;
    struct sigil_attest_job *job;
    struct sigil_selector_set sels;
    struct sigil_cache_sub *sub;
    struct sigil_buf last; /* the last stream message sent (holds keys: wiped) */
    bool streaming;
    /* FetchJWTSVID */
    JWTSVIDRequest *jreq;
    JWTSVID *jsvids;
    size_t n_jsvids, pending;
    int jwt_err;
    const char *jwt_why;
};

struct mint {
    struct req *q;
    size_t idx;
};

static void
req_unref(struct req *q)
{
    size_t i;

    if (--q->refs > 0)
        return;
    sigil_selector_set_free(&q->sels);
    sigil_buf_freezero(&q->last);
    if (q->jreq != NULL)
        jwtsvidrequest__free_unpacked(q->jreq, NULL);
    for (i = 0; i < q->n_jsvids; i++) {
        free(q->jsvids[i].spiffe_id);
        free(q->jsvids[i].hint);
        sigil_jwtsvid_token_free(q->jsvids[i].svid);
    }
    free(q->jsvids);
    free(q);
}

/* Lets go of everything tied to the call (which is gone or finished). */
static void
req_detach(struct req *q)
{
    q->call = NULL;
    sigil_attest_cancel(q->job);
    q->job = NULL;
    if (q->sub != NULL) {
        sigil_cache_unsubscribe(q->w->cache, q->sub);
        q->sub = NULL;
    }
    if (q->streaming) {
        q->streaming = false;
        q->w->stats.streams_open--;
    }
}

static void
req_finish(struct req *q, int code, const char *msg)
{
    struct sigil_rpc_call *call = q->call;

    if (call == NULL)
        return;
    if (code == SIGIL_RPC_PERMISSION_DENIED) {
        static const char *const names[] = {"FetchX509SVID", "FetchX509Bundles", "FetchJWTSVID",
                                            "FetchJWTBundles", "ValidateJWTSVID"};
        char pid[24], uid[24], n[24];

        q->w->stats.denied++;
        /* What an operator needs to find the workload and the entry it lacks. */
        snprintf(pid, sizeof pid, "%ld", (long)q->pid);
        snprintf(uid, sizeof uid, "%lu", (unsigned long)q->uid);
        snprintf(n, sizeof n, "%zu", q->sels.count);
        sigil_log_kv(SIGIL_LOG_INFO, "workload_api", "permission denied", "method",
                     names[q->method], "pid", pid, "uid", uid, "selectors", n, "why", msg, NULL);
    }
    req_detach(q);
    sigil_rpc_call_finish(call, code, msg, NULL, 0);
    req_unref(q); /* the call's reference */
}

static void
on_cancel(struct sigil_rpc_call *call, void *ud)
{
    struct req *q = ud;

    (void)call;
    if (q->call == NULL)
        return;
    req_detach(q);
    req_unref(q);
}

/* ---- building responses ---- */

/* Concatenated DER of the X.509 authorities of td's bundle, or an empty buffer. */
static int
bundle_der(const struct sigil_cache *c, const char *td, struct sigil_buf *out)
{
    const struct sigil_bundle *b = sigil_bundle_set_find(sigil_cache_bundles(c), td);

    return b != NULL ? sigil_bundle_x509_der(b, out) : 0;
}

/* The caller's identities; returns how many (capped at cap). */
static size_t
identities(const struct req *q, const struct sigil_cache_entry **out, size_t cap)
{
    size_t n = sigil_cache_match(q->w->cache, &q->sels, out, cap);

    return n < cap ? n : cap;
}

static bool
seen_td(char *const *list, size_t n, const char *td)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (strcmp(list[i], td) == 0)
            return true;
    return false;
}

/* Packs the full X509SVIDResponse for the caller into out (emptied first). *n_ids is the
 * number of identities (0: nothing packed). Returns 0 or an error with *why. */
static int
build_x509_svid(struct req *q, struct sigil_buf *out, size_t *n_ids, const char **why)
{
    const struct sigil_cache_entry *ents[MAX_IDENTITIES];
    X509SVIDResponse resp = X509_SVIDRESPONSE__INIT;
    X509SVID svids[MAX_IDENTITIES], *psvids[MAX_IDENTITIES];
    X509SVIDResponse__FederatedBundlesEntry fed[MAX_IDENTITIES], *pfed[MAX_IDENTITIES];
    struct sigil_buf own = {0}, fedder[MAX_IDENTITIES];
    char *fedtd[MAX_IDENTITIES], *fedkey[MAX_IDENTITIES];
    const char *td = sigil_cache_trust_domain(q->w->cache);
    size_t i, j, n, nfed = 0;
    int r = SIGIL_ERR_NOMEM;

    sigil_buf_freezero(out);
    memset(fedder, 0, sizeof fedder);
    memset(fedkey, 0, sizeof fedkey);
    n = identities(q, ents, MAX_IDENTITIES);
    *n_ids = n;
    if (n == 0)
        return 0;
    if (sigil_bundle_set_find(sigil_cache_bundles(q->w->cache), td) == NULL) {
        *why = "the agent has no bundle of its trust domain yet";
        r = SIGIL_ERR_STATE;
        goto out;
    }
    if ((r = bundle_der(q->w->cache, td, &own)) != 0)
        goto out;
    for (i = 0; i < n; i++) {
        const struct sigil_cache_entry *e = ents[i];

        x509_svid__init(&svids[i]);
        psvids[i] = &svids[i];
        svids[i].spiffe_id = (char *)e->spiffe_id.str;
        svids[i].x509_svid.data = e->chain_der.data;
        svids[i].x509_svid.len = e->chain_der.len;
        svids[i].x509_svid_key.data = e->key_der.data;
        svids[i].x509_svid_key.len = e->key_der.len;
        svids[i].bundle.data = own.data;
        svids[i].bundle.len = own.len;
        svids[i].hint = e->hint;
        for (j = 0; j < e->n_federates_with && nfed < MAX_IDENTITIES; j++) {
            const char *f = e->federates_with[j];

            if (strcmp(f, td) == 0 || seen_td(fedtd, nfed, f) ||
                sigil_bundle_set_find(sigil_cache_bundles(q->w->cache), f) == NULL)
                continue;
            fedtd[nfed] = (char *)f;
            x509_svidresponse__federated_bundles_entry__init(&fed[nfed]);
            pfed[nfed] = &fed[nfed];
            if (asprintf(&fedkey[nfed], "spiffe://%s", f) < 0) {
                fedkey[nfed] = NULL;
                r = SIGIL_ERR_NOMEM;
                goto out;
            }
            if ((r = bundle_der(q->w->cache, f, &fedder[nfed])) != 0) {
                nfed++;
                goto out;
            }
            fed[nfed].key = fedkey[nfed];
            fed[nfed].value.data = fedder[nfed].data;
            fed[nfed].value.len = fedder[nfed].len;
            nfed++;
        }
    }
    resp.n_svids = n;
    resp.svids = psvids;
    resp.n_federated_bundles = nfed;
    resp.federated_bundles = nfed > 0 ? pfed : NULL;
    if ((r = sigil_buf_reserve(out, x509_svidresponse__get_packed_size(&resp))) != 0)
        goto out;
    out->len = x509_svidresponse__pack(&resp, out->data);
    r = 0;
out:
    for (i = 0; i < MAX_IDENTITIES; i++) {
        sigil_buf_free(&fedder[i]);
        free(fedkey[i]);
    }
    sigil_buf_free(&own);
    if (r != 0 && *why == NULL)
        *why = sigil_strerror(r);
    return r;
}

/* Packs X509BundlesResponse (W-7) or JWTBundlesResponse (W-9) with every bundle held. */
static int
build_bundles(struct req *q, bool jwt, struct sigil_buf *out, const char **why)
{
    const struct sigil_bundle_set *set = sigil_cache_bundles(q->w->cache);
    size_t i, n = sigil_bundle_set_count(set);
    X509BundlesResponse xr = X509_BUNDLES_RESPONSE__INIT;
    JWTBundlesResponse jr = JWTBUNDLES_RESPONSE__INIT;
    X509BundlesResponse__BundlesEntry *xe = NULL, **pxe = NULL;
    JWTBundlesResponse__BundlesEntry *je = NULL, **pje = NULL;
    struct sigil_buf *vals = NULL;
    char **keys = NULL;
    int r = SIGIL_ERR_NOMEM;

    sigil_buf_free(out);
    if (sigil_bundle_set_find(set, sigil_cache_trust_domain(q->w->cache)) == NULL) {
        *why = "the agent has no bundle of its trust domain yet";
        return SIGIL_ERR_STATE;
    }
    if ((vals = calloc(n, sizeof *vals)) == NULL || (keys = calloc(n, sizeof *keys)) == NULL ||
        (xe = calloc(n, sizeof *xe)) == NULL || (pxe = calloc(n, sizeof *pxe)) == NULL ||
        (je = calloc(n, sizeof *je)) == NULL || (pje = calloc(n, sizeof *pje)) == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        const struct sigil_bundle *b = sigil_bundle_set_at(set, i);

        if (asprintf(&keys[i], "spiffe://%s", sigil_bundle_trust_domain(b)) < 0) {
            keys[i] = NULL;
            goto out;
        }
        if (jwt) {
            char *json;
            size_t len;

            if ((r = sigil_bundle_encode_jwks(b, &json, &len)) != 0)
                goto out;
            r = sigil_buf_append(&vals[i], json, len);
            free(json);
            if (r != 0)
                goto out;
            jwtbundles_response__bundles_entry__init(&je[i]);
            je[i].key = keys[i];
            je[i].value.data = vals[i].data;
            je[i].value.len = vals[i].len;
            pje[i] = &je[i];
        } else {
            if ((r = sigil_bundle_x509_der(b, &vals[i])) != 0)
                goto out;
            x509_bundles_response__bundles_entry__init(&xe[i]);
            xe[i].key = keys[i];
            xe[i].value.data = vals[i].data;
            xe[i].value.len = vals[i].len;
            pxe[i] = &xe[i];
        }
    }
    if (jwt) {
        jr.n_bundles = n;
        jr.bundles = pje;
        if ((r = sigil_buf_reserve(out, jwtbundles_response__get_packed_size(&jr))) != 0)
            goto out;
        out->len = jwtbundles_response__pack(&jr, out->data);
    } else {
        xr.n_bundles = n;
        xr.bundles = pxe;
        if ((r = sigil_buf_reserve(out, x509_bundles_response__get_packed_size(&xr))) != 0)
            goto out;
        out->len = x509_bundles_response__pack(&xr, out->data);
    }
    r = 0;
out:
    for (i = 0; i < n && vals != NULL && keys != NULL; i++) {
        sigil_buf_free(&vals[i]);
        free(keys[i]);
    }
    free(vals);
    free(keys);
    free(xe);
    free(pxe);
    free(je);
    free(pje);
    if (r != 0 && *why == NULL)
        *why = sigil_strerror(r);
    return r;
}

/* ---- google.protobuf.Struct from JSON (ValidateJWTSVID claims, W-10) ---- */

static void value_free(Google__Protobuf__Value *v);

static void
struct_free(Google__Protobuf__Struct *s)
{
    size_t i;

    if (s == NULL)
        return;
    for (i = 0; i < s->n_fields; i++) {
        value_free(s->fields[i]->value);
        free(s->fields[i]);
    }
    free(s->fields);
    free(s);
}

static void
value_free(Google__Protobuf__Value *v)
{
    size_t i;

    if (v == NULL)
        return;
    if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE)
        struct_free(v->struct_value);
    else if (v->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE && v->list_value != NULL) {
        for (i = 0; i < v->list_value->n_values; i++)
            value_free(v->list_value->values[i]);
        free(v->list_value->values);
        free(v->list_value);
    }
    free(v);
}

static Google__Protobuf__Struct *to_struct(const json_t *obj, unsigned depth);

/* Strings point into the json value, which outlives the packed message. */
static Google__Protobuf__Value *
to_value(const json_t *j, unsigned depth)
{
    Google__Protobuf__Value *v;
    size_t i, n;

    if (depth > STRUCT_DEPTH_MAX || (v = malloc(sizeof *v)) == NULL)
        return NULL;
    google__protobuf__value__init(v);
    switch (json_typeof(j)) {
    case JSON_NULL:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
        v->null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
        v->bool_value = json_is_true(j);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
        v->number_value = json_number_value(j);
        break;
    case JSON_STRING:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
        v->string_value = (char *)json_string_value(j);
        break;
    case JSON_OBJECT:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
        if ((v->struct_value = to_struct(j, depth + 1)) == NULL)
            goto fail;
        break;
    case JSON_ARRAY:
        v->kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
        if ((v->list_value = malloc(sizeof *v->list_value)) == NULL)
            goto fail;
        google__protobuf__list_value__init(v->list_value);
        n = json_array_size(j);
        if (n > 0 && (v->list_value->values = calloc(n, sizeof(void *))) == NULL)
            goto fail;
        for (i = 0; i < n; i++) {
            if ((v->list_value->values[i] = to_value(json_array_get(j, i), depth + 1)) == NULL)
                goto fail;
            v->list_value->n_values++;
        }
        break;
    }
    return v;
fail:
    value_free(v);
    return NULL;
}

static Google__Protobuf__Struct *
to_struct(const json_t *obj, unsigned depth)
{
    Google__Protobuf__Struct *s;
    const char *key;
    json_t *val;
    size_t n = json_object_size(obj);

    if (depth > STRUCT_DEPTH_MAX || (s = malloc(sizeof *s)) == NULL)
        return NULL;
    google__protobuf__struct__init(s);
    if (n > 0 && (s->fields = calloc(n, sizeof *s->fields)) == NULL)
        goto fail;
    json_object_foreach((json_t *)obj, key, val)
    {
        Google__Protobuf__Struct__FieldsEntry *f = malloc(sizeof *f);

        if (f == NULL)
            goto fail;
        google__protobuf__struct__fields_entry__init(f);
        f->key = (char *)key;
        s->fields[s->n_fields++] = f;
        if ((f->value = to_value(val, depth + 1)) == NULL)
            goto fail;
    }
    return s;
fail:
    struct_free(s);
    return NULL;
}

int
sigil_wapi_json_to_struct(const json_t *object, struct sigil_buf *out)
{
    Google__Protobuf__Struct *s;
    int r;

    if (!json_is_object(object))
        return SIGIL_ERR_INVALID;
    if ((s = to_struct(object, 0)) == NULL)
        return SIGIL_ERR_INVALID; /* too deep or no memory */
    r = sigil_buf_reserve(out, google__protobuf__struct__get_packed_size(s));
    if (r == 0)
        out->len += google__protobuf__struct__pack(s, out->data + out->len);
    struct_free(s);
    return r;
}

/* ---- streams ---- */

/* Builds the caller's current state and sends it if it differs from the last one sent. A
 * caller without identity is answered PermissionDenied (W-6, E-5) and the stream ends. */
static void
stream_push(struct req *q, bool first)
{
    struct sigil_buf msg = {0};
    const struct sigil_cache_entry *ents[1];
    const char *why = NULL;
    size_t n_ids = 0;
    int r;

    if (q->call == NULL)
        return;
    q->refs++;
    if (q->method == M_X509_SVID) {
        r = build_x509_svid(q, &msg, &n_ids, &why);
    } else {
        n_ids = identities(q, ents, 1);
        r = n_ids > 0 ? build_bundles(q, q->method == M_JWT_BUNDLES, &msg, &why) : 0;
    }
    if (r == 0 && n_ids == 0) {
        req_finish(q, SIGIL_RPC_PERMISSION_DENIED, "no identity issued");
        goto out;
    }
    if (r != 0) {
        req_finish(q, r == SIGIL_ERR_STATE ? SIGIL_RPC_UNAVAILABLE : SIGIL_RPC_INTERNAL, why);
        goto out;
    }
    if (!first && msg.len == q->last.len && memcmp(msg.data, q->last.data, msg.len) == 0)
        goto out;
    r = sigil_rpc_call_send(q->call, msg.data, msg.len);
    if (r == SIGIL_ERR_RANGE) {
        req_finish(q, SIGIL_RPC_RESOURCE_EXHAUSTED, "the client is not reading its stream");
        goto out;
    }
    if (r != 0)
        goto out; /* gone: on_cancel cleans up */
    if (!first)
        q->w->stats.stream_pushes++;
    sigil_buf_freezero(&q->last);
    q->last = msg;
    msg = (struct sigil_buf){0};
out:
    sigil_buf_freezero(&msg);
    req_unref(q);
}

static void
stream_changed(void *ud)
{
    stream_push(ud, false);
}

static void
start_stream(struct req *q)
{
    if (sigil_cache_subscribe(q->w->cache, stream_changed, q, &q->sub) != 0) {
        req_finish(q, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    q->streaming = true;
    q->w->stats.streams_open++;
    stream_push(q, true);
}

/* ---- FetchJWTSVID (W-8) ---- */

static void
jwt_complete(struct req *q)
{
    JWTSVIDResponse resp = JWTSVIDRESPONSE__INIT;
    JWTSVID **ps = NULL;
    struct sigil_buf msg = {0};
    size_t i;

    if (q->call == NULL)
        return;
    if (q->jwt_err != 0) {
        req_finish(q, SIGIL_RPC_UNAVAILABLE, q->jwt_why != NULL ? q->jwt_why : "minting failed");
        return;
    }
    if ((ps = calloc(q->n_jsvids, sizeof *ps)) == NULL) {
        req_finish(q, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (i = 0; i < q->n_jsvids; i++)
        ps[i] = &q->jsvids[i];
    resp.n_svids = q->n_jsvids;
    resp.svids = ps;
    if (sigil_buf_reserve(&msg, jwtsvidresponse__get_packed_size(&resp)) != 0) {
        free(ps);
        req_finish(q, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    msg.len = jwtsvidresponse__pack(&resp, msg.data);
    free(ps);
    sigil_rpc_call_send(q->call, msg.data, msg.len);
    sigil_buf_freezero(&msg);
    req_finish(q, SIGIL_RPC_OK, NULL);
}

static void
jwt_minted(void *ud, int err, const char *token, const char *why)
{
    struct mint *m = ud;
    struct req *q = m->q;

    if (err != 0 || token == NULL) {
        if (q->jwt_err == 0) {
            q->jwt_err = err != 0 ? err : SIGIL_ERR_INTERNAL;
            q->jwt_why = why;
        }
    } else if ((q->jsvids[m->idx].svid = strdup(token)) == NULL && q->jwt_err == 0) {
        q->jwt_err = SIGIL_ERR_NOMEM;
    }
    free(m);
    if (--q->pending == 0)
        jwt_complete(q);
    req_unref(q);
}

static void
jwt_start(struct req *q)
{
    const struct sigil_cache_entry *ents[MAX_IDENTITIES];
    struct sigil_spiffeid want;
    const char *why = NULL;
    size_t i, n = identities(q, ents, MAX_IDENTITIES);
    bool one = q->jreq->spiffe_id[0] != '\0';

    if (n == 0) {
        req_finish(q, SIGIL_RPC_PERMISSION_DENIED, "no identity issued");
        return;
    }
    if (one) {
        /* Parsed when the call came in; cannot fail here. */
        sigil_spiffeid_parse(q->jreq->spiffe_id, strlen(q->jreq->spiffe_id), &want, &why);
        for (i = 0; i < n; i++)
            if (sigil_spiffeid_equal(&ents[i]->spiffe_id, &want))
                break;
        if (i == n) {
            req_finish(q, SIGIL_RPC_PERMISSION_DENIED,
                       "no identity issued for the requested SPIFFE ID (W-8)");
            return;
        }
        ents[0] = ents[i];
        n = 1;
    }
    if ((q->jsvids = calloc(n, sizeof *q->jsvids)) == NULL) {
        req_finish(q, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    for (i = 0; i < n; i++) {
        jwtsvid__init(&q->jsvids[i]);
        q->jsvids[i].svid = NULL;
        q->jsvids[i].hint = strdup(ents[i]->hint);
        q->jsvids[i].spiffe_id = strdup(ents[i]->spiffe_id.str);
        q->n_jsvids++;
        if (q->jsvids[i].spiffe_id == NULL || q->jsvids[i].hint == NULL) {
            req_finish(q, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
            return;
        }
    }
    /* A guard so that minters answering at once do not complete the call mid-loop. */
    q->pending = 1;
    q->refs++;
    for (i = 0; i < n && q->jwt_err == 0; i++) {
        struct mint *m = malloc(sizeof *m);
        int r;

        if (m == NULL) {
            q->jwt_err = SIGIL_ERR_NOMEM;
            break;
        }
        m->q = q;
        m->idx = i;
        q->pending++;
        q->refs++;
        r = sigil_cache_mint_jwt(q->w->cache, &ents[i]->spiffe_id,
                                 (const char *const *)q->jreq->audience, q->jreq->n_audience,
                                 jwt_minted, m);
        if (r != 0) {
            free(m);
            q->pending--;
            q->refs--;
            q->jwt_err = r;
            q->jwt_why = r == SIGIL_ERR_UNSUPPORTED ? "JWT-SVIDs are not available" : NULL;
        }
    }
    if (--q->pending == 0)
        jwt_complete(q);
    req_unref(q);
}

/* ---- ValidateJWTSVID (W-10): no identity needed, nothing secret is handed out ---- */

static void
validate(struct req *q)
{
    ValidateJWTSVIDRequest *vreq = NULL;
    ValidateJWTSVIDResponse resp = VALIDATE_JWTSVIDRESPONSE__INIT;
    Google__Protobuf__Struct *claims = NULL;
    struct sigil_jwtsvid svid = {0};
    struct sigil_buf msg = {0};
    const uint8_t *p;
    const char *why = NULL;
    size_t len;
    int r;

    p = sigil_rpc_call_request(q->call, &len);
    if ((vreq = validate_jwtsvidrequest__unpack(NULL, len, p)) == NULL) {
        req_finish(q, SIGIL_RPC_INVALID_ARGUMENT, "malformed ValidateJWTSVIDRequest");
        goto out;
    }
    if (vreq->audience[0] == '\0') {
        req_finish(q, SIGIL_RPC_INVALID_ARGUMENT, "audience must be specified (W-10)");
        goto out;
    }
    if (vreq->svid[0] == '\0') {
        req_finish(q, SIGIL_RPC_INVALID_ARGUMENT, "svid must be specified (W-10)");
        goto out;
    }
    r = sigil_jwtsvid_validate(vreq->svid, strlen(vreq->svid), vreq->audience,
                               sigil_cache_bundles(q->w->cache), time(NULL),
                               q->w->opts.jwt_leeway_s, &svid, &why);
    if (r != 0) {
        req_finish(q, SIGIL_RPC_INVALID_ARGUMENT, why);
        goto out;
    }
    if ((claims = to_struct(svid.claims, 0)) == NULL) {
        req_finish(q, SIGIL_RPC_INVALID_ARGUMENT, "claims nested too deeply or out of memory");
        goto out;
    }
    resp.spiffe_id = svid.id.str;
    resp.claims = claims;
    if (sigil_buf_reserve(&msg, validate_jwtsvidresponse__get_packed_size(&resp)) != 0) {
        req_finish(q, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    msg.len = validate_jwtsvidresponse__pack(&resp, msg.data);
    sigil_rpc_call_send(q->call, msg.data, msg.len);
    req_finish(q, SIGIL_RPC_OK, NULL);
out:
    struct_free(claims);
    sigil_buf_free(&msg);
    sigil_jwtsvid_clear(&svid);
    if (vreq != NULL) {
        /* The request holds a bearer token. */
        if (vreq->svid != NULL)
            OPENSSL_cleanse(vreq->svid, strlen(vreq->svid));
        validate_jwtsvidrequest__free_unpacked(vreq, NULL);
    }
}

/* ---- calls ---- */

static void
attested(void *ud, int err, const struct sigil_selector_set *sels, const char *why)
{
    struct req *q = ud;

    q->job = NULL;
    if (q->call == NULL) /* cannot happen: cancel stops the callback; kept for safety */
        return;
    if (err != 0) {
        req_finish(q, SIGIL_RPC_PERMISSION_DENIED,
                   why != NULL ? why : "workload attestation failed");
        return;
    }
    if (sigil_selector_set_copy(&q->sels, sels) != 0) {
        req_finish(q, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (q->method == M_JWT_SVID)
        jwt_start(q);
    else
        start_stream(q);
}

/* Checks the request message of a method whose request is empty or checked later. */
static bool
check_request(struct req *q)
{
    const uint8_t *p;
    size_t len, i;

    p = sigil_rpc_call_request(q->call, &len);
    if (q->method != M_JWT_SVID) {
        /* X509SVIDRequest and the bundle requests have no fields, but must still parse. */
        ProtobufCMessage *m = NULL;

        if (q->method == M_X509_SVID)
            m = (ProtobufCMessage *)x509_svidrequest__unpack(NULL, len, p);
        else if (q->method == M_X509_BUNDLES)
            m = (ProtobufCMessage *)x509_bundles_request__unpack(NULL, len, p);
        else
            m = (ProtobufCMessage *)jwtbundles_request__unpack(NULL, len, p);
        if (m == NULL) {
            req_finish(q, SIGIL_RPC_INVALID_ARGUMENT, "malformed request message");
            return false;
        }
        protobuf_c_message_free_unpacked(m, NULL);
        return true;
    }
    if ((q->jreq = jwtsvidrequest__unpack(NULL, len, p)) == NULL) {
        req_finish(q, SIGIL_RPC_INVALID_ARGUMENT, "malformed JWTSVIDRequest");
        return false;
    }
    if (q->jreq->n_audience == 0) {
        req_finish(q, SIGIL_RPC_INVALID_ARGUMENT, "audience must be specified (W-8)");
        return false;
    }
    if (q->jreq->n_audience > MAX_AUDIENCES) {
        req_finish(q, SIGIL_RPC_INVALID_ARGUMENT, "too many audiences");
        return false;
    }
    for (i = 0; i < q->jreq->n_audience; i++) {
        if (q->jreq->audience[i][0] == '\0') {
            req_finish(q, SIGIL_RPC_INVALID_ARGUMENT, "audience must not be empty (W-8)");
            return false;
        }
    }
    if (q->jreq->spiffe_id[0] != '\0') {
        struct sigil_spiffeid id;
        const char *why = NULL;

        if (sigil_spiffeid_parse(q->jreq->spiffe_id, strlen(q->jreq->spiffe_id), &id, &why) != 0) {
            req_finish(q, SIGIL_RPC_INVALID_ARGUMENT, why);
            return false;
        }
    }
    return true;
}

static void
handle(struct sigil_rpc_call *call, struct sigil_wapi *w, enum method method)
{
    static const struct sigil_rpc_call_cbs cbs = {.on_cancel = on_cancel};
    const struct sigil_rpc_peer *peer = sigil_rpc_call_peer(call);
    struct sigil_attest_proc proc;
    struct req *q;

    w->stats.calls++;
    if ((q = calloc(1, sizeof *q)) == NULL) {
        sigil_rpc_call_finish(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
        return;
    }
    q->w = w;
    q->call = call;
    q->method = method;
    q->refs = 2; /* the call's and ours, for the span of this function */
    sigil_rpc_call_set_cbs(call, &cbs, q);
    if (method == M_VALIDATE) {
        validate(q);
        goto out;
    }
    if (!check_request(q))
        goto out;
    if (peer == NULL || peer->kind != SIGIL_RPC_PEER_UNIX || !peer->has_cred) {
        req_finish(q, SIGIL_RPC_PERMISSION_DENIED, "the caller cannot be attested");
        goto out;
    }
    q->pid = peer->pid;
    q->uid = peer->uid;
    proc.pid = peer->pid;
    proc.uid = peer->uid;
    proc.gid = peer->gid;
    proc.pidfd = peer->pidfd;
    if (sigil_attest_start(w->loop, &w->opts.attest, &proc, attested, q, &q->job) != 0)
        req_finish(q, SIGIL_RPC_UNAVAILABLE, "cannot start workload attestation");
out:
    req_unref(q);
}

static void
h_x509_svid(struct sigil_rpc_call *call, void *arg)
{
    handle(call, arg, M_X509_SVID);
}

static void
h_x509_bundles(struct sigil_rpc_call *call, void *arg)
{
    handle(call, arg, M_X509_BUNDLES);
}

static void
h_jwt_svid(struct sigil_rpc_call *call, void *arg)
{
    handle(call, arg, M_JWT_SVID);
}

static void
h_jwt_bundles(struct sigil_rpc_call *call, void *arg)
{
    handle(call, arg, M_JWT_BUNDLES);
}

static void
h_validate(struct sigil_rpc_call *call, void *arg)
{
    handle(call, arg, M_VALIDATE);
}

int
sigil_wapi_start(uv_loop_t *loop, struct sigil_cache *cache, const struct sigil_wapi_opts *o,
                 struct sigil_wapi **out, const char **why)
{
    static const struct {
        const char *path;
        enum sigil_rpc_kind kind;
        sigil_rpc_handler_fn fn;
    } methods[] = {
        {"/SpiffeWorkloadAPI/FetchX509SVID", SIGIL_RPC_SERVER_STREAM, h_x509_svid},
        {"/SpiffeWorkloadAPI/FetchX509Bundles", SIGIL_RPC_SERVER_STREAM, h_x509_bundles},
        {"/SpiffeWorkloadAPI/FetchJWTSVID", SIGIL_RPC_UNARY, h_jwt_svid},
        {"/SpiffeWorkloadAPI/FetchJWTBundles", SIGIL_RPC_SERVER_STREAM, h_jwt_bundles},
        {"/SpiffeWorkloadAPI/ValidateJWTSVID", SIGIL_RPC_UNARY, h_validate},
    };
    struct sigil_rpc_unix_opts uo = {0};
    struct sigil_wapi *w;
    size_t i;
    int r;

    *out = NULL;
    *why = NULL;
    if (o->socket_path == NULL || o->socket_path[0] != '/') {
        *why = "the Workload API socket path must be absolute";
        return SIGIL_ERR_INVALID;
    }
    if ((w = calloc(1, sizeof *w)) == NULL || (w->path = strdup(o->socket_path)) == NULL) {
        free(w);
        *why = "out of memory";
        return SIGIL_ERR_NOMEM;
    }
    w->loop = loop;
    w->cache = cache;
    w->opts = *o;
    w->opts.socket_path = w->path;
    if (w->opts.jwt_leeway_s == 0)
        w->opts.jwt_leeway_s = SIGIL_WAPI_JWT_LEEWAY_DEFAULT;
    if ((r = sigil_rpc_server_new(loop, NULL, &w->srv)) != 0) {
        free(w->path);
        free(w);
        *why = "out of memory";
        return r;
    }
    for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        struct sigil_rpc_method m = {
            .path = methods[i].path,
            .kind = methods[i].kind,
            .handler = methods[i].fn,
            .arg = w,
            .required_header = "workload.spiffe.io",
            .required_value = "true",
        };

        if ((r = sigil_rpc_server_add(w->srv, &m)) != 0) {
            *why = "cannot register a Workload API method";
            goto fail;
        }
    }
    /* gRPC reflection (E-6), without the security header: like SPIRE's check, the header rule
     * covers /SpiffeWorkloadAPI/ methods; reflection only describes the public schema. */
    if ((r = sigil_rpc_reflection_add(w->srv, &sigil_reflection_workload, why)) != 0)
        goto fail;
    uo.path = w->path;
    uo.mode = o->mode != 0 ? o->mode : 0666;
    uo.set_gid = o->set_gid;
    uo.gid = o->gid;
    if ((r = sigil_rpc_server_listen_unix(w->srv, &uo, why)) != 0)
        goto fail;
    if (o->set_uid && chown(w->path, o->uid, (gid_t)-1) != 0) {
        *why = "cannot chown the Workload API socket";
        r = SIGIL_ERR_IO;
        goto fail;
    }
    *out = w;
    return 0;
fail:
    /* The server frees itself and w's path stays ours. */
    sigil_rpc_server_shutdown(w->srv, 0, NULL, NULL);
    free(w->path);
    free(w);
    return r;
}

static void
shutdown_done(void *arg)
{
    struct sigil_wapi *w = arg;

    if (w->done != NULL)
        w->done(w->done_arg);
    free(w->path);
    free(w);
}

void
sigil_wapi_shutdown(struct sigil_wapi *w, uint64_t grace_ms, void (*done)(void *arg), void *arg)
{
    w->done = done;
    w->done_arg = arg;
    sigil_rpc_server_shutdown(w->srv, grace_ms, shutdown_done, w);
}

void
sigil_wapi_stats(const struct sigil_wapi *w, struct sigil_wapi_stats *out)
{
    *out = w->stats;
}
