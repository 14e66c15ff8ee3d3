/* The Workload API in one process: server and our gRPC client on one loop over a temporary
 * Unix socket. Checks what the integration tests cannot see from outside: UNAVAILABLE before
 * the own bundle exists, the counters (denied, pushes), JWT without a minter, a token of a
 * trust domain without bundle (J-10), and the Struct conversion of claims. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "google/protobuf/struct.pb-c.h"
#include "workload.pb-c.h"
#include "workload_api.h"

#include "sigil/err.h"
#include "sigil/jwtsvid.h"
#include "sigil/rpc.h"
#include "sigil/x509.h"

#define TD "example.org"

static struct {
    uv_loop_t loop;
    struct sigil_cache *cache;
    struct sigil_wapi *wapi;
    struct sigil_rpc_client *cli;
    char dir[64], sock[96], target[128];
    EVP_PKEY *root_key, *jwt_key;
    X509 *root;
} T;

static const struct sigil_rpc_md hdr = {"workload.spiffe.io", (const uint8_t *)"true", 4};

static void
add_bundle(void)
{
    struct sigil_bundle *b = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_bundle_new(TD, &b, &why), 0);
    assert_int_equal(sigil_bundle_x509_add(b, T.root, &why), 0);
    assert_int_equal(sigil_bundle_jwt_add(b, "k1", T.jwt_key, &why), 0);
    assert_int_equal(sigil_cache_set_bundle(T.cache, b), 0);
}

/* An entry for selectors (comma-free: one selector) with a fresh SVID. */
static void
add_entry(const char *id, const char *spiffe_id, const char *selector)
{
    struct sigil_selector_set s = SIGIL_SELECTOR_SET_INIT;
    struct sigil_spiffeid sid;
    struct sigil_x509_leaf_params lp = {.id = &sid};
    STACK_OF(X509) *chain = sk_X509_new_null();
    EVP_PKEY *key = NULL;
    X509 *leaf = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_spiffeid_parse(spiffe_id, strlen(spiffe_id), &sid, &why), 0);
    assert_int_equal(sigil_selector_set_add_str(&s, selector, strlen(selector), &why), 0);
    assert_int_equal(sigil_cache_put_entry(T.cache, id, &sid, &s, NULL, NULL, 0, &why), 0);
    lp.not_before = time(NULL) - 60;
    lp.not_after = time(NULL) + 600;
    assert_int_equal(sigil_x509_key_generate(&key), 0);
    assert_int_equal(sigil_x509_mint_leaf(&lp, key, T.root, T.root_key, &leaf, &why), 0);
    sk_X509_push(chain, leaf);
    assert_int_equal(sigil_cache_set_svid(T.cache, id, chain, key, &why), 0);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
    sigil_selector_set_free(&s);
}

static int
setup(void **state)
{
    struct sigil_x509_ca_params ca = {.trust_domain = TD, .path_len = -1};
    struct sigil_wapi_opts wo = {0};
    struct sigil_rpc_client_opts co = {0};
    const char *why = NULL;

    (void)state;
    ca.subject.common_name = "workload api test root";
    memset(&T, 0, sizeof T);
    strcpy(T.dir, "/tmp/wapi_test.XXXXXX");
    assert_non_null(mkdtemp(T.dir));
    snprintf(T.sock, sizeof T.sock, "%s/api.sock", T.dir);
    snprintf(T.target, sizeof T.target, "unix://%s", T.sock);
    ca.not_before = time(NULL) - 60;
    ca.not_after = time(NULL) + 3600;
    assert_int_equal(sigil_x509_key_generate(&T.root_key), 0);
    assert_int_equal(sigil_x509_key_generate(&T.jwt_key), 0);
    assert_int_equal(sigil_x509_mint_root(&ca, T.root_key, &T.root, &why), 0);
    uv_loop_init(&T.loop);
    assert_int_equal(sigil_cache_new(&T.loop, TD, &T.cache, &why), 0);
    wo.socket_path = T.sock;
    wo.attest.no_sha256 = true;
    assert_int_equal(sigil_wapi_start(&T.loop, T.cache, &wo, &T.wapi, &why), 0);
    co.target = T.target;
    assert_int_equal(sigil_rpc_client_new(&T.loop, &co, &T.cli, &why), 0);
    return 0;
}

/* The cache outlives the server: freed once the server is down. */
static void
down(void *arg)
{
    *(bool *)arg = true;
    sigil_cache_free(T.cache);
}

static int
teardown(void **state)
{
    bool done = false;

    (void)state;
    sigil_rpc_client_free(T.cli);
    sigil_wapi_shutdown(T.wapi, 0, down, &done);
    uv_run(&T.loop, UV_RUN_DEFAULT);
    assert_true(done);
    assert_int_equal(uv_loop_close(&T.loop), 0);
    X509_free(T.root);
    EVP_PKEY_free(T.root_key);
    EVP_PKEY_free(T.jwt_key);
    rmdir(T.dir);
    return 0;
}

/* ---- a call driven to its end ---- */

struct outcome {
    bool ended;
    int code;
    char message[256];
    unsigned messages;
    struct sigil_buf last;
    unsigned stop_after; /* cancel the stream after this many messages (0: never) */
};

static void
o_message(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    struct outcome *o = ud;

    o->messages++;
    sigil_buf_freezero(&o->last);
    assert_int_equal(sigil_buf_append(&o->last, msg, len), 0);
    if (o->stop_after != 0 && o->messages == o->stop_after)
        sigil_rpc_ccall_cancel(call);
}

static void
o_end(struct sigil_rpc_ccall *call, void *ud, int code, const char *message)
{
    struct outcome *o = ud;

    (void)call;
    o->ended = true;
    o->code = code;
    snprintf(o->message, sizeof o->message, "%s", message);
}

static const struct sigil_rpc_ccall_cbs o_cbs = {.on_message = o_message, .on_end = o_end};

static struct sigil_rpc_ccall *
start(const char *method, const void *req, size_t len, struct outcome *o)
{
    struct sigil_rpc_ccall *call = NULL;
    char path[128];

    memset(o, 0, sizeof *o);
    snprintf(path, sizeof path, "/SpiffeWorkloadAPI/%s", method);
    assert_int_equal(
        sigil_rpc_client_server_stream(T.cli, path, &hdr, 1, req, len, 5000, &o_cbs, o, &call), 0);
    return call;
}

static void
wait_for(bool *flag, unsigned *count, unsigned want)
{
    for (int i = 0; i < 2000 && !*flag && (count == NULL || *count < want); i++)
        uv_run(&T.loop, UV_RUN_ONCE);
}

static void
fetch_x509(void **state)
{
    struct sigil_wapi_stats st;
    struct outcome o;
    X509SVIDResponse *r;
    char uid_sel[32];

    (void)state;
    snprintf(uid_sel, sizeof uid_sel, "unix:uid:%lu", (unsigned long)getuid());

    /* No entry: PERMISSION_DENIED, counted. */
    start("FetchX509SVID", "", 0, &o);
    wait_for(&o.ended, NULL, 0);
    assert_int_equal(o.code, SIGIL_RPC_PERMISSION_DENIED);
    sigil_wapi_stats(T.wapi, &st);
    assert_int_equal(st.denied, 1);

    /* An entry but no bundle of the own trust domain yet: UNAVAILABLE (E-5). */
    add_entry("e1", "spiffe://" TD "/one", uid_sel);
    start("FetchX509SVID", "", 0, &o);
    wait_for(&o.ended, NULL, 0);
    assert_int_equal(o.code, SIGIL_RPC_UNAVAILABLE);

    /* With the bundle: the first response at once, a push on a new SVID, none on an
     * unrelated entry, PERMISSION_DENIED when the entry goes. */
    add_bundle();
    start("FetchX509SVID", "", 0, &o);
    wait_for(&o.ended, &o.messages, 1);
    assert_int_equal(o.messages, 1);
    r = x509_svidresponse__unpack(NULL, o.last.len, o.last.data);
    assert_non_null(r);
    assert_int_equal(r->n_svids, 1);
    assert_string_equal(r->svids[0]->spiffe_id, "spiffe://" TD "/one");
    assert_true(r->svids[0]->x509_svid_key.len > 0 && r->svids[0]->bundle.len > 0);
    x509_svidresponse__free_unpacked(r, NULL);
    add_entry("e2", "spiffe://" TD "/unrelated", "unix:uid:4294967294");
    for (int i = 0; i < 20; i++)
        uv_run(&T.loop, UV_RUN_NOWAIT);
    assert_int_equal(o.messages, 1);
    add_entry("e1", "spiffe://" TD "/one", uid_sel); /* a new SVID for e1 */
    wait_for(&o.ended, &o.messages, 2);
    assert_int_equal(o.messages, 2);
    sigil_wapi_stats(T.wapi, &st);
    assert_int_equal(st.stream_pushes, 1);
    assert_int_equal(st.streams_open, 1);
    assert_int_equal(sigil_cache_remove_entry(T.cache, "e1"), 0);
    wait_for(&o.ended, NULL, 0);
    assert_int_equal(o.code, SIGIL_RPC_PERMISSION_DENIED);
    sigil_wapi_stats(T.wapi, &st);
    assert_int_equal(st.streams_open, 0);
    sigil_buf_freezero(&o.last);

    /* A client cancelling its stream releases it. */
    add_entry("e1", "spiffe://" TD "/one", uid_sel);
    start("FetchX509Bundles", "", 0, &o);
    o.stop_after = 1;
    wait_for(&o.ended, NULL, 0);
    assert_int_equal(o.code, SIGIL_RPC_CANCELLED);
    for (int i = 0; i < 20; i++)
        uv_run(&T.loop, UV_RUN_NOWAIT);
    sigil_wapi_stats(T.wapi, &st);
    assert_int_equal(st.streams_open, 0);
    sigil_buf_free(&o.last);
}

static void
jwt(void **state)
{
    JWTSVIDRequest req = JWTSVIDREQUEST__INIT;
    ValidateJWTSVIDRequest vreq = VALIDATE_JWTSVIDREQUEST__INIT;
    struct sigil_jwtsvid_params p = {0};
    const char *aud[] = {"a"}, *why = NULL;
    char *audv[] = {"a"}, uid_sel[32], *token = NULL;
    uint8_t buf[4096];
    struct outcome o;
    size_t len;

    (void)state;
    snprintf(uid_sel, sizeof uid_sel, "unix:uid:%lu", (unsigned long)getuid());
    add_bundle();
    add_entry("e1", "spiffe://" TD "/one", uid_sel);
    req.n_audience = 1;
    req.audience = audv;
    len = jwtsvidrequest__pack(&req, buf);
    start("FetchJWTSVID", buf, len, &o);
    wait_for(&o.ended, NULL, 0);
    assert_int_equal(o.code, SIGIL_RPC_UNAVAILABLE); /* no minting hook */
    assert_non_null(strstr(o.message, "not available"));

    /* A token of a trust domain the agent has no bundle for is untrusted (J-10). */
    p.key = T.jwt_key;
    p.kid = "k1";
    p.sub = "spiffe://elsewhere.org/x";
    p.aud = aud;
    p.naud = 1;
    p.iat = time(NULL);
    p.exp = p.iat + 60;
    assert_int_equal(sigil_jwtsvid_sign(&p, &token, &why), 0);
    vreq.audience = "a";
    vreq.svid = token;
    len = validate_jwtsvidrequest__pack(&vreq, buf);
    start("ValidateJWTSVID", buf, len, &o);
    wait_for(&o.ended, NULL, 0);
    assert_int_equal(o.code, SIGIL_RPC_INVALID_ARGUMENT);
    sigil_jwtsvid_token_free(token);

    /* The same key signing for our own trust domain validates. */
    p.sub = "spiffe://" TD "/one";
    assert_int_equal(sigil_jwtsvid_sign(&p, &token, &why), 0);
    vreq.svid = token;
    len = validate_jwtsvidrequest__pack(&vreq, buf);
    start("ValidateJWTSVID", buf, len, &o);
    wait_for(&o.ended, NULL, 0);
    assert_int_equal(o.code, SIGIL_RPC_OK);
    {
        ValidateJWTSVIDResponse *r =
            validate_jwtsvidresponse__unpack(NULL, o.last.len, o.last.data);

        assert_non_null(r);
        assert_string_equal(r->spiffe_id, "spiffe://" TD "/one");
        assert_non_null(r->claims);
        assert_int_equal(r->claims->n_fields, 4); /* sub aud exp iat */
        validate_jwtsvidresponse__free_unpacked(r, NULL);
    }
    sigil_jwtsvid_token_free(token);
    sigil_buf_free(&o.last);
}

static void
claims_struct(void **state)
{
    const char *text = "{\"s\":\"x\",\"n\":1.5,\"t\":true,\"z\":null,\"a\":[1,\"b\",[{}]],"
                       "\"o\":{\"k\":{\"k\":\"v\"}}}";
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, NULL), *deep, *cur;
    Google__Protobuf__Struct *s;
    struct sigil_buf out = {0};
    size_t i;

    (void)state;
    assert_non_null(j);
    assert_int_equal(sigil_wapi_json_to_struct(j, &out), 0);
    s = google__protobuf__struct__unpack(NULL, out.len, out.data);
    assert_non_null(s);
    assert_int_equal(s->n_fields, 6);
    for (i = 0; i < s->n_fields; i++) {
        const Google__Protobuf__Value *v = s->fields[i]->value;

        if (strcmp(s->fields[i]->key, "n") == 0) {
            assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE);
            assert_true(v->number_value == 1.5);
        } else if (strcmp(s->fields[i]->key, "a") == 0) {
            assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE);
            assert_int_equal(v->list_value->n_values, 3);
        } else if (strcmp(s->fields[i]->key, "z") == 0) {
            assert_int_equal(v->kind_case, GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE);
        }
    }
    google__protobuf__struct__free_unpacked(s, NULL);
    sigil_buf_free(&out);
    /* Not an object; nested over the cap. */
    assert_int_equal(sigil_wapi_json_to_struct(json_object_get(j, "s"), &out), SIGIL_ERR_INVALID);
    deep = json_object();
    cur = deep;
    for (i = 0; i < 40; i++) {
        json_t *next = json_object();

        json_object_set_new(cur, "k", next);
        cur = next;
    }
    assert_int_equal(sigil_wapi_json_to_struct(deep, &out), SIGIL_ERR_INVALID);
    json_decref(deep);
    json_decref(j);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(fetch_x509, setup, teardown),
        cmocka_unit_test_setup_teardown(jwt, setup, teardown),
        cmocka_unit_test(claims_struct),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
