/* Attested agents (attestation upsert, ban, evict, two-step SVID renewal) and single-use join
 * tokens (stored as SHA-256 only, consumed by one atomic DELETE ... RETURNING). */
#include "store.h"
#include "store_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "sigil/encoding.h"
#include "sigil/err.h"
#include "sigil/spiffeid.h"

#define TX_ATTEMPTS 5
#define SERIAL_MAX 128 /* hex digits of an SVID serial */
#define ATTESTATION_TYPE_MAX 64

#define AGENT_COLS                                                                                 \
    "a.spiffe_id, a.attestation_type, a.serial, a.new_serial, "                                    \
    "floor(extract(epoch FROM a.expires_at))::bigint, "                                            \
    "floor(extract(epoch FROM a.new_expires_at))::bigint, a.banned, a.can_reattest, "              \
    "(SELECT string_agg(s.type || ':' || s.value, E'\\n') FROM agent_selectors s "                 \
    "WHERE s.agent_id = a.spiffe_id), floor(extract(epoch FROM a.created_at))::bigint, "           \
    "floor(extract(epoch FROM a.updated_at))::bigint, a.revision"

void
sigil_store_agent_free(struct sigil_store_agent *a)
{
    if (a == NULL)
        return;
    free(a->spiffe_id);
    free(a->attestation_type);
    free(a->serial);
    free(a->new_serial);
    sigil_selector_set_free(&a->selectors);
    memset(a, 0, sizeof *a);
}

void
sigil_store_agent_list_free(struct sigil_store_agent_list *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->count; i++)
        sigil_store_agent_free(&l->items[i]);
    free(l->items);
    free(l->next_page_token);
    memset(l, 0, sizeof *l);
}

static int
agent_from_row(const struct sigil_db_res *res, size_t i, struct sigil_store_agent *a)
{
    const char *s;
    int r = 0;

    memset(a, 0, sizeof *a);
    a->spiffe_id = store_res_dup(res, i, 0, &r);
    a->attestation_type = store_res_dup(res, i, 1, &r);
    a->serial = store_res_dup(res, i, 2, &r);
    a->new_serial = store_res_dup(res, i, 3, &r);
    a->expires_at = store_res_i64(res, i, 4);
    a->new_expires_at = store_res_i64(res, i, 5);
    a->banned = store_res_bool(res, i, 6);
    a->can_reattest = store_res_bool(res, i, 7);
    s = sigil_db_res_text(res, i, 8);
    if (r == 0 && s != NULL &&
        (r = sigil_selector_set_parse(s, strlen(s), &a->selectors, NULL)) != 0)
        r = r == SIGIL_ERR_NOMEM ? r : SIGIL_ERR_INTERNAL;
    a->created_at = store_res_i64(res, i, 9);
    a->updated_at = store_res_i64(res, i, 10);
    a->revision = store_res_i64(res, i, 11);
    if (r != 0)
        sigil_store_agent_free(a);
    return r;
}

int
sigil_store_agent_to_json(const struct sigil_store_agent *a, json_t **out)
{
    json_t *o = json_object();
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    if (o == NULL)
        return r;
    if (store_json_set_str(o, "spiffe_id", a->spiffe_id) != 0 ||
        store_json_set_str(o, "attestation_type", a->attestation_type) != 0 ||
        store_json_set_str(o, "serial", a->serial) != 0 ||
        store_json_set_time(o, "expires_at", a->expires_at) != 0 ||
        json_object_set_new(o, "banned", json_boolean(a->banned)) != 0 ||
        json_object_set_new(o, "can_reattest", json_boolean(a->can_reattest)) != 0 ||
        json_object_set_new(o, "selectors", store_selectors_json(&a->selectors)) != 0)
        goto out;
    *out = o;
    o = NULL;
    r = 0;
out:
    json_decref(o);
    return r;
}

static int
load_agent(struct sigil_db_conn *c, const char *id, bool lock, struct sigil_store_agent *out,
           struct sigil_store_err *err)
{
    struct sigil_db_res *res = NULL;
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(id)};
    int r;

    memset(out, 0, sizeof *out);
    r = sigil_db_exec(c,
                      lock ? "SELECT " AGENT_COLS " FROM agents a WHERE a.spiffe_id = $1 "
                             "FOR UPDATE OF a"
                           : "SELECT " AGENT_COLS " FROM agents a WHERE a.spiffe_id = $1",
                      p, 1, &res);
    if (r != 0) {
        r = store_db_fail(c, r, err);
    } else if (sigil_db_res_rows(res) == 0) {
        store_err(err, "agent.not_found", "no attested agent %.300s", id);
        r = SIGIL_ERR_NOTFOUND;
    } else if ((r = agent_from_row(res, 0, out)) != 0) {
        store_err(err, "internal", "cannot read agent: %s", sigil_strerror(r));
    }
    sigil_db_res_free(res);
    return r;
}

static int
audit_agent(struct sigil_db_conn *c, const char *actor, const char *action, const char *id,
            const struct sigil_store_agent *before, const struct sigil_store_agent *after,
            struct sigil_store_err *err)
{
    json_t *b = NULL, *a = NULL;
    int r;

    if ((before != NULL && sigil_store_agent_to_json(before, &b) != 0) ||
        (after != NULL && sigil_store_agent_to_json(after, &a) != 0)) {
        store_err(err, "internal", "out of memory");
        r = SIGIL_ERR_NOMEM;
    } else {
        r = store_audit(c, actor, action, "agent", id, b, a, err);
    }
    json_decref(b);
    json_decref(a);
    return r;
}

static bool
serial_valid(const char *s)
{
    size_t n;

    if (s == NULL || (n = strnlen(s, SERIAL_MAX + 1)) == 0 || n > SERIAL_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
              (s[i] >= 'A' && s[i] <= 'F')))
            return false;
    return true;
}

static int
agent_id_check(const char *id, struct sigil_store_err *err)
{
    struct sigil_spiffeid sid;
    const char *why = NULL;

    if (id == NULL || sigil_spiffeid_parse(id, strlen(id), &sid, &why) != 0 ||
        !sigil_spiffeid_has_path(&sid)) {
        store_err(err, "agent.spiffe_id", "an agent's ID is a SPIFFE ID with a path: %s",
                  why != NULL ? why : "no path");
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

/* The agent operations, one transaction body. */
enum agent_op { OP_ATTEST, OP_BAN, OP_EVICT, OP_RENEW, OP_USE };

struct agent_call {
    enum agent_op op;
    const char *actor;
    const char *id;
    const struct sigil_store_agent *in; /* attest */
    const char *serial;                 /* renew: new serial; use: presented serial */
    int64_t expires_at;                 /* renew */
    struct sigil_store_agent *out;
    struct sigil_store_err *err;
};

static int
agent_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct agent_call *k = arg;
    struct sigil_store_agent before, after;
    struct store_arr ty = {0}, va = {0};
    const struct sigil_db_param pid[] = {SIGIL_DB_TEXT(k->id)};
    const char *action = NULL, *lt, *lv;
    char t1[24];
    bool existed = true;
    int r;

    (void)attempt;
    memset(&after, 0, sizeof after);
    if ((r = load_agent(c, k->id, true, &before, k->err)) == SIGIL_ERR_NOTFOUND &&
        k->op == OP_ATTEST) {
        existed = false;
        r = 0;
        if (k->err != NULL)
            memset(k->err, 0, sizeof *k->err);
    }
    if (r != 0)
        goto out;
    if (existed && before.banned && k->op != OP_BAN && k->op != OP_EVICT) {
        store_err(k->err, "agent.banned",
                  "agent %.300s is banned: evict it before it may attest again", k->id);
        r = SIGIL_ERR_DENIED;
        goto out;
    }
    switch (k->op) {
    case OP_ATTEST: {
        action = "agent.attest";
        snprintf(t1, sizeof t1, "%lld", (long long)k->in->expires_at);
        const struct sigil_db_param p[] = {SIGIL_DB_TEXT(k->id),
                                           SIGIL_DB_TEXT(k->in->attestation_type),
                                           SIGIL_DB_TEXT(k->in->serial), SIGIL_DB_TEXT(t1),
                                           SIGIL_DB_TEXT(k->in->can_reattest ? "t" : "f")};
        if ((r = sigil_db_exec(c,
                               "INSERT INTO agents (spiffe_id, attestation_type, serial, "
                               "expires_at, can_reattest) VALUES ($1, $2, $3, "
                               "to_timestamp($4::bigint), $5::bool) ON CONFLICT (spiffe_id) DO "
                               "UPDATE SET attestation_type = EXCLUDED.attestation_type, "
                               "serial = EXCLUDED.serial, expires_at = EXCLUDED.expires_at, "
                               "new_serial = NULL, new_expires_at = NULL, "
                               "can_reattest = EXCLUDED.can_reattest, updated_at = now()",
                               p, 5, NULL)) != 0 ||
            (r = sigil_db_exec(c, "DELETE FROM agent_selectors WHERE agent_id = $1", pid, 1,
                               NULL)) != 0)
            goto fail;
        for (size_t i = 0; i < k->in->selectors.count; i++) {
            store_arr_add(&ty, k->in->selectors.items[i].type);
            store_arr_add(&va, k->in->selectors.items[i].value);
        }
        if (ty.n > 0) {
            if ((lt = store_arr_end(&ty)) == NULL || (lv = store_arr_end(&va)) == NULL) {
                r = SIGIL_ERR_NOMEM;
                goto out;
            }
            const struct sigil_db_param q[] = {SIGIL_DB_TEXT(k->id), SIGIL_DB_TEXT(lt),
                                               SIGIL_DB_TEXT(lv)};
            if ((r = sigil_db_exec(c,
                                   "INSERT INTO agent_selectors (agent_id, type, value) "
                                   "SELECT $1, * FROM unnest($2::text[], $3::text[])",
                                   q, 3, NULL)) != 0)
                goto fail;
        }
        break;
    }
    case OP_BAN:
        action = "agent.ban";
        if ((r = sigil_db_exec(c,
                               "UPDATE agents SET banned = true, updated_at = now() "
                               "WHERE spiffe_id = $1",
                               pid, 1, NULL)) != 0)
            goto fail;
        break;
    case OP_EVICT:
        action = "agent.evict";
        if ((r = sigil_db_exec(c, "DELETE FROM agents WHERE spiffe_id = $1", pid, 1, NULL)) != 0)
            goto fail;
        break;
    case OP_RENEW: {
        action = "agent.renew";
        snprintf(t1, sizeof t1, "%lld", (long long)k->expires_at);
        const struct sigil_db_param p[] = {SIGIL_DB_TEXT(k->id), SIGIL_DB_TEXT(k->serial),
                                           SIGIL_DB_TEXT(t1)};
        if ((r = sigil_db_exec(c,
                               "UPDATE agents SET new_serial = $2, new_expires_at = "
                               "to_timestamp($3::bigint), updated_at = now() WHERE spiffe_id = $1",
                               p, 3, NULL)) != 0)
            goto fail;
        break;
    }
    case OP_USE:
        if (strcmp(before.serial, k->serial) == 0)
            goto out; /* the current SVID: nothing changes */
        if (before.new_serial == NULL || strcmp(before.new_serial, k->serial) != 0) {
            store_err(k->err, "agent.serial",
                      "agent %.300s presented an SVID that is not its current one: it must "
                      "attest again",
                      k->id);
            r = SIGIL_ERR_DENIED;
            goto out;
        }
        action = "agent.renew_activate";
        if ((r = sigil_db_exec(c,
                               "UPDATE agents SET serial = new_serial, expires_at = "
                               "new_expires_at, new_serial = NULL, new_expires_at = NULL, "
                               "updated_at = now() WHERE spiffe_id = $1",
                               pid, 1, NULL)) != 0)
            goto fail;
        break;
    }
    if (k->op != OP_EVICT && (r = load_agent(c, k->id, false, &after, k->err)) != 0)
        goto out;
    r = audit_agent(c, k->actor, action, k->id, existed ? &before : NULL,
                    k->op != OP_EVICT ? &after : NULL, k->err);
    if (r == 0 && k->out != NULL) {
        sigil_store_agent_free(k->out);
        *k->out = after;
        memset(&after, 0, sizeof after);
    }
    goto out;
fail:
    r = store_db_fail(c, r, k->err);
out:
    if (r == SIGIL_ERR_NOMEM)
        store_err(k->err, "internal", "out of memory");
    store_arr_free(&ty);
    store_arr_free(&va);
    sigil_store_agent_free(&before);
    sigil_store_agent_free(&after);
    return r;
}

static int
agent_run(struct sigil_db_conn *c, struct agent_call *k)
{
    int r;

    if (k->out != NULL)
        memset(k->out, 0, sizeof *k->out);
    if (k->err != NULL)
        memset(k->err, 0, sizeof *k->err);
    if ((r = store_actor_check(k->actor, k->err)) != 0 || (r = agent_id_check(k->id, k->err)) != 0)
        return r;
    if ((r = sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, TX_ATTEMPTS, agent_body, k)) != 0)
        return store_db_fail(c, r, k->err);
    return 0;
}

int
sigil_store_agent_attest(struct sigil_db_conn *c, const char *actor,
                         const struct sigil_store_agent *a, struct sigil_store_agent *out,
                         struct sigil_store_err *err)
{
    struct agent_call k = {
        .op = OP_ATTEST, .actor = actor, .id = a->spiffe_id, .in = a, .out = out, .err = err};
    size_t n;

    if (a->attestation_type == NULL ||
        (n = strnlen(a->attestation_type, ATTESTATION_TYPE_MAX + 1)) == 0 ||
        n > ATTESTATION_TYPE_MAX) {
        store_err(err, "agent.attestation_type", "attestation_type must be 1..%d bytes",
                  ATTESTATION_TYPE_MAX);
        return SIGIL_ERR_INVALID;
    }
    if (!serial_valid(a->serial) || a->expires_at <= 0 || a->expires_at > SIGIL_STORE_TIME_MAX) {
        store_err(err, "agent.serial", "an agent needs its SVID's hex serial and expiry");
        return SIGIL_ERR_INVALID;
    }
    return agent_run(c, &k);
}

int
sigil_store_agent_get(struct sigil_db_conn *c, const char *spiffe_id, struct sigil_store_agent *out,
                      struct sigil_store_err *err)
{
    int r;

    memset(out, 0, sizeof *out);
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = agent_id_check(spiffe_id, err)) != 0)
        return r;
    return load_agent(c, spiffe_id, false, out, err);
}

int
sigil_store_agent_ban(struct sigil_db_conn *c, const char *actor, const char *spiffe_id,
                      struct sigil_store_agent *out, struct sigil_store_err *err)
{
    struct agent_call k = {.op = OP_BAN, .actor = actor, .id = spiffe_id, .out = out, .err = err};

    return agent_run(c, &k);
}

int
sigil_store_agent_evict(struct sigil_db_conn *c, const char *actor, const char *spiffe_id,
                        struct sigil_store_err *err)
{
    struct agent_call k = {.op = OP_EVICT, .actor = actor, .id = spiffe_id, .err = err};

    return agent_run(c, &k);
}

int
sigil_store_agent_renew(struct sigil_db_conn *c, const char *actor, const char *spiffe_id,
                        const char *new_serial, int64_t new_expires_at, struct sigil_store_err *err)
{
    struct agent_call k = {.op = OP_RENEW,
                           .actor = actor,
                           .id = spiffe_id,
                           .serial = new_serial,
                           .expires_at = new_expires_at,
                           .err = err};

    if (!serial_valid(new_serial) || new_expires_at <= 0 || new_expires_at > SIGIL_STORE_TIME_MAX) {
        store_err(err, "agent.serial", "a renewal needs the new SVID's hex serial and expiry");
        return SIGIL_ERR_INVALID;
    }
    return agent_run(c, &k);
}

int
sigil_store_agent_use_serial(struct sigil_db_conn *c, const char *spiffe_id, const char *serial,
                             struct sigil_store_err *err)
{
    struct agent_call k = {
        .op = OP_USE, .actor = spiffe_id, .id = spiffe_id, .serial = serial, .err = err};

    if (!serial_valid(serial)) {
        store_err(err, "agent.serial", "not an SVID serial");
        return SIGIL_ERR_DENIED;
    }
    return agent_run(c, &k);
}

int
sigil_store_agents_list(struct sigil_db_conn *c, const struct sigil_store_agent_filter *f,
                        struct sigil_store_agent_list *out, struct sigil_store_err *err)
{
    struct sigil_db_res *res = NULL;
    char *after = NULL, lim[24];
    size_t page, n;
    int r;

    memset(out, 0, sizeof *out);
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = store_page_size(f->page_size, &page, err)) != 0)
        return r;
    if (f->page_token != NULL && f->page_token[0] != '\0' &&
        (r = store_token_decode(f->page_token, &after, err)) != 0)
        return r;
    snprintf(lim, sizeof lim, "%zu", page + 1);
    const struct sigil_db_param p[] = {
        after ? SIGIL_DB_TEXT(after) : SIGIL_DB_NULL,
        f->banned < 0 ? SIGIL_DB_NULL : SIGIL_DB_TEXT(f->banned ? "t" : "f"),
        f->attestation_type ? SIGIL_DB_TEXT(f->attestation_type) : SIGIL_DB_NULL,
        SIGIL_DB_TEXT(lim)};
    if ((r = sigil_db_exec(c,
                           "SELECT " AGENT_COLS " FROM agents a WHERE "
                           "($1::text IS NULL OR a.spiffe_id > $1::text) AND "
                           "($2::bool IS NULL OR a.banned = $2::bool) AND "
                           "($3::text IS NULL OR a.attestation_type = $3::text) "
                           "ORDER BY a.spiffe_id LIMIT $4::bigint",
                           p, 4, &res)) != 0) {
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
    for (size_t i = 0; i < n; i++) {
        if ((r = agent_from_row(res, i, &out->items[i])) != 0)
            goto out;
        out->count++;
    }
    if (sigil_db_res_rows(res) > page &&
        (out->next_page_token = store_token_encode(out->items[page - 1].spiffe_id)) == NULL)
        r = SIGIL_ERR_NOMEM;
out:
    if (r == SIGIL_ERR_NOMEM)
        store_err(err, "internal", "out of memory");
    if (r != 0)
        sigil_store_agent_list_free(out);
    sigil_db_res_free(res);
    free(after);
    return r;
}

/* The digest a join token is stored and looked up by: SHA-256 of its text. */
static void
token_digest(const char *token, size_t len, uint8_t out[crypto_hash_sha256_BYTES])
{
    crypto_hash_sha256(out, (const uint8_t *)token, len);
}

struct token_call {
    const char *actor;
    const uint8_t *digest;
    const char *agent_path;
    char *ttl;
    int64_t expires_at;
    char **path_out;
    struct sigil_store_err *err;
};

/* The audit object id of a token: the first 8 bytes of its digest in hex (never the token). */
static void
token_ref(const uint8_t *digest, char out[17])
{
    sigil_hex_encode(digest, 8, out);
}

static int
token_create_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct token_call *k = arg;
    struct sigil_db_res *res = NULL;
    json_t *after = NULL;
    char ref[17];
    int r;

    (void)attempt;
    const struct sigil_db_param p[] = {
        SIGIL_DB_BINARY(k->digest, crypto_hash_sha256_BYTES), SIGIL_DB_TEXT(k->ttl),
        k->agent_path ? SIGIL_DB_TEXT(k->agent_path) : SIGIL_DB_NULL, SIGIL_DB_TEXT(k->actor)};
    if ((r = sigil_db_exec(c,
                           "INSERT INTO join_tokens (token_sha256, expires_at, agent_path, "
                           "created_by) VALUES ($1, now() + make_interval(secs => $2::int), $3, "
                           "$4) RETURNING floor(extract(epoch FROM expires_at))::bigint",
                           p, 4, &res)) != 0) {
        r = store_db_fail(c, r, k->err);
        goto out;
    }
    k->expires_at = store_res_i64(res, 0, 0);
    token_ref(k->digest, ref);
    if ((after = json_object()) == NULL ||
        store_json_set_time(after, "expires_at", k->expires_at) ||
        store_json_set_str(after, "agent_path", k->agent_path) != 0) {
        r = SIGIL_ERR_NOMEM;
        store_err(k->err, "internal", "out of memory");
        goto out;
    }
    r = store_audit(c, k->actor, "token.create", "join_token", ref, NULL, after, k->err);
out:
    json_decref(after);
    sigil_db_res_free(res);
    return r;
}

int
sigil_store_join_token_create(struct sigil_db_conn *c, const char *actor, int64_t ttl_seconds,
                              const char *agent_path, char token[SIGIL_STORE_TOKEN_LEN + 1],
                              int64_t *expires_at, struct sigil_store_err *err)
{
    uint8_t raw[32], digest[crypto_hash_sha256_BYTES];
    char ttl[24], *t = NULL;
    const char *why = NULL;
    struct token_call k = {
        .actor = actor, .digest = digest, .agent_path = agent_path, .ttl = ttl, .err = err};
    int r;

    token[0] = '\0';
    *expires_at = 0;
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = store_actor_check(actor, err)) != 0)
        return r;
    if (ttl_seconds < 1 || ttl_seconds > SIGIL_STORE_TOKEN_TTL_MAX) {
        store_err(err, "token.ttl", "ttl_seconds must be 1..%d", SIGIL_STORE_TOKEN_TTL_MAX);
        return SIGIL_ERR_RANGE;
    }
    if (agent_path != NULL &&
        (agent_path[0] == '\0' ||
         sigil_spiffeid_path_check(agent_path, strlen(agent_path), &why) != 0)) {
        store_err(err, "token.agent_path", "agent_path must be an ID path like /node/a: %s",
                  why != NULL ? why : "empty");
        return SIGIL_ERR_INVALID;
    }
    if (sodium_init() < 0) {
        store_err(err, "internal", "libsodium did not start");
        return SIGIL_ERR_CRYPTO;
    }
    snprintf(ttl, sizeof ttl, "%lld", (long long)ttl_seconds);
    randombytes_buf(raw, sizeof raw);
    if ((t = sigil_b64url_encode(raw, sizeof raw)) == NULL || strlen(t) != SIGIL_STORE_TOKEN_LEN) {
        r = SIGIL_ERR_NOMEM;
        store_err(err, "internal", "out of memory");
        goto out;
    }
    token_digest(t, SIGIL_STORE_TOKEN_LEN, digest);
    if ((r = sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, TX_ATTEMPTS, token_create_body, &k)) != 0) {
        r = store_db_fail(c, r, err);
        goto out;
    }
    memcpy(token, t, SIGIL_STORE_TOKEN_LEN + 1);
    *expires_at = k.expires_at;
out:
    if (t != NULL) {
        sodium_memzero(t, strlen(t));
        free(t);
    }
    sodium_memzero(raw, sizeof raw);
    sodium_memzero(digest, sizeof digest);
    return r;
}

static int
token_consume_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct token_call *k = arg;
    struct sigil_db_res *res = NULL;
    json_t *before = NULL;
    char ref[17];
    int r;

    (void)attempt;
    const struct sigil_db_param p[] = {SIGIL_DB_BINARY(k->digest, crypto_hash_sha256_BYTES)};
    /* one statement decides: of two callers racing, the second finds the row gone */
    if ((r = sigil_db_exec(c,
                           "DELETE FROM join_tokens WHERE token_sha256 = $1 AND "
                           "expires_at > now() RETURNING agent_path, "
                           "floor(extract(epoch FROM expires_at))::bigint",
                           p, 1, &res)) != 0) {
        r = store_db_fail(c, r, k->err);
        goto out;
    }
    if (sigil_db_res_rows(res) != 1) {
        store_err(k->err, "token.invalid", "invalid or expired join token");
        r = SIGIL_ERR_DENIED;
        goto out;
    }
    free(*k->path_out);
    *k->path_out = store_res_dup(res, 0, 0, &r);
    token_ref(k->digest, ref);
    if (r != 0 || (before = json_object()) == NULL ||
        store_json_set_time(before, "expires_at", store_res_i64(res, 0, 1)) != 0 ||
        store_json_set_str(before, "agent_path", *k->path_out) != 0) {
        r = SIGIL_ERR_NOMEM;
        store_err(k->err, "internal", "out of memory");
        goto out;
    }
    r = store_audit(c, k->actor, "token.consume", "join_token", ref, before, NULL, k->err);
out:
    json_decref(before);
    sigil_db_res_free(res);
    return r;
}

int
sigil_store_join_token_consume(struct sigil_db_conn *c, const char *actor, const char *token,
                               char **agent_path, struct sigil_store_err *err)
{
    uint8_t digest[crypto_hash_sha256_BYTES], *raw = NULL;
    size_t rawlen = 0, len;
    char *path = NULL;
    struct token_call k = {.actor = actor, .digest = digest, .path_out = &path, .err = err};
    int r;

    if (agent_path != NULL)
        *agent_path = NULL;
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = store_actor_check(actor, err)) != 0)
        return r;
    /* a token of the wrong shape gets the same answer as an unknown one */
    len = token != NULL ? strnlen(token, SIGIL_STORE_TOKEN_LEN + 1) : 0;
    if (len != SIGIL_STORE_TOKEN_LEN || sigil_b64url_decode(token, len, &raw, &rawlen) != 0 ||
        rawlen != 32) {
        if (raw != NULL)
            sodium_memzero(raw, rawlen);
        free(raw);
        store_err(err, "token.invalid", "invalid or expired join token");
        return SIGIL_ERR_DENIED;
    }
    sodium_memzero(raw, rawlen);
    free(raw);
    token_digest(token, len, digest);
    if ((r = sigil_db_tx(c, SIGIL_DB_READ_COMMITTED, TX_ATTEMPTS, token_consume_body, &k)) != 0) {
        free(path);
        path = NULL;
        r = store_db_fail(c, r, err);
    }
    sodium_memzero(digest, sizeof digest);
    if (agent_path != NULL)
        *agent_path = path;
    else
        free(path);
    return r;
}

int
sigil_store_join_tokens_prune(struct sigil_db_conn *c, int64_t *removed,
                              struct sigil_store_err *err)
{
    struct sigil_db_res *res = NULL;
    int r;

    if (removed != NULL)
        *removed = 0;
    if (err != NULL)
        memset(err, 0, sizeof *err);
    if ((r = sigil_db_exec(c, "DELETE FROM join_tokens WHERE expires_at <= now()", NULL, 0,
                           &res)) != 0)
        return store_db_fail(c, r, err);
    if (removed != NULL)
        *removed = sigil_db_res_affected(res);
    sigil_db_res_free(res);
    return 0;
}
