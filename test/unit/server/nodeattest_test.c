/* Unit tests of the server's node attestors: lookup by name; join_token (disabled, malformed
 * tokens, single use through a stand-in for the datastore's consume, the ID never holding the
 * token, a fixed agent path); x509pop (a good chain and proof, a wrong proof, a proof for
 * another CSR, a foreign CA, an expired node certificate, malformed payloads and responses).
 * The attestors are linked from sigil_server_core; the datastore's consume is played here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/x509v3.h>

#include "nodeattest.h"
#include "sigil/encoding.h"
#include "sigil/err.h"
#include "sigil/x509.h"
#include "store.h"

#define TD "example.org"

/* The datastore's consume, played by a table of tokens: each can be used once. */
static struct {
    const char *token;
    const char *agent_path;
    bool used;
} tokens[] = {
    {"goodtoken_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", NULL, false},
    {"pathtoken-BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", "/sigil/agent/node-1", false},
};

int
sigil_store_join_token_consume(struct sigil_db_conn *c, const char *actor, const char *token,
                               char **agent_path, struct sigil_store_err *err)
{
    (void)c, (void)actor, (void)err;
    *agent_path = NULL;
    for (size_t i = 0; i < sizeof tokens / sizeof tokens[0]; i++) {
        if (strcmp(tokens[i].token, token) != 0 || tokens[i].used)
            continue;
        tokens[i].used = true;
        if (tokens[i].agent_path != NULL)
            *agent_path = strdup(tokens[i].agent_path);
        return 0;
    }
    return SIGIL_ERR_DENIED;
}

static const uint8_t csr[] = {0x30, 0x03, 0x02, 0x01, 0x01}; /* only hashed by the attestor */
static const uint8_t csr2[] = {0x30, 0x03, 0x02, 0x01, 0x02};

static int
jt(const struct sigil_nodeattest_cfg *cfg, const char *payload, size_t n,
   struct sigil_nodeattest_result *res)
{
    struct sigil_buf ch = {0};
    void *state = NULL;
    const char *why = NULL;
    int r = sigil_nodeattest_join_token.start(cfg, NULL, (const uint8_t *)payload, n, csr,
                                              sizeof csr, &state, &ch, res, &why);

    assert_null(state);
    assert_int_equal(ch.len, 0);
    if (r != 0)
        assert_non_null(why);
    sigil_buf_free(&ch);
    return r;
}

static void
test_find(void **state)
{
    (void)state;
    assert_ptr_equal(sigil_nodeattest_find("join_token", 10), &sigil_nodeattest_join_token);
    assert_ptr_equal(sigil_nodeattest_find("x509pop", 7), &sigil_nodeattest_x509pop);
    assert_null(sigil_nodeattest_find("x509po", 6));
    assert_null(sigil_nodeattest_find("x509popx", 8));
    assert_null(sigil_nodeattest_find("", 0));
}

static void
test_join_token(void **state)
{
    struct sigil_nodeattest_cfg cfg = {.trust_domain = TD, .join_token_enabled = true};
    struct sigil_nodeattest_result res;
    const char *good = tokens[0].token;
    char suffix[17], want[128], big[200];

    (void)state;
    sigil_nodeattest_join_token_suffix(good, strlen(good), suffix);
    assert_int_equal(strlen(suffix), 16);

    cfg.join_token_enabled = false;
    assert_int_equal(jt(&cfg, good, strlen(good), &res), SIGIL_ERR_UNSUPPORTED);
    cfg.join_token_enabled = true;
    /* malformed: nothing reaches the datastore */
    assert_int_equal(jt(&cfg, "", 0, &res), SIGIL_ERR_INVALID);
    assert_int_equal(jt(&cfg, "a b", 3, &res), SIGIL_ERR_INVALID);
    assert_int_equal(jt(&cfg, "ab\0c", 4, &res), SIGIL_ERR_INVALID);
    assert_int_equal(jt(&cfg, "tok\n", 4, &res), SIGIL_ERR_INVALID);
    assert_int_equal(jt(&cfg, "t\xc3\xa9", 3, &res), SIGIL_ERR_INVALID);
    memset(big, 'a', sizeof big);
    assert_int_equal(jt(&cfg, big, SIGIL_NODEATTEST_JOIN_TOKEN_MAX + 1, &res), SIGIL_ERR_INVALID);
    assert_int_equal(jt(&cfg, "unknown", 7, &res), SIGIL_ERR_DENIED);
    assert_false(tokens[0].used);

    /* once */
    assert_int_equal(jt(&cfg, good, strlen(good), &res), 0);
    snprintf(want, sizeof want, "spiffe://" TD "/sigil/agent/join_token/%s", suffix);
    assert_string_equal(res.spiffe_id, want);
    assert_null(strstr(res.spiffe_id, good));
    assert_false(res.reattestable);
    assert_int_equal(sigil_selector_set_count(&res.selectors), 1);
    {
        char *s = sigil_selector_set_to_string(&res.selectors);

        snprintf(want, sizeof want, "join_token:%s", suffix);
        assert_string_equal(s, want);
        free(s);
    }
    sigil_nodeattest_result_free(&res);
    /* and never again */
    assert_int_equal(jt(&cfg, good, strlen(good), &res), SIGIL_ERR_DENIED);
    assert_null(res.spiffe_id);

    /* a token with a fixed agent path */
    assert_int_equal(jt(&cfg, tokens[1].token, strlen(tokens[1].token), &res), 0);
    assert_string_equal(res.spiffe_id, "spiffe://" TD "/sigil/agent/node-1");
    sigil_nodeattest_result_free(&res);
}

/* ---- x509pop ---- */

static EVP_PKEY *
make_key(void)
{
    EVP_PKEY *k = NULL;

    assert_int_equal(sigil_x509_key_generate(&k), 0);
    return k;
}

/* A certificate for key signed by issuer/ikey (self-signed when issuer is NULL). */
static X509 *
make_cert(const char *cn, EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, bool ca, long serial,
          long nb_off, long na_off)
{
    X509 *c = X509_new();
    X509_NAME *n = X509_NAME_new();
    X509V3_CTX v3;
    X509_EXTENSION *ext;

    assert_non_null(c);
    assert_int_equal(X509_set_version(c, 2), 1);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_subject_name(c, n);
    X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : n);
    X509_time_adj_ex(X509_getm_notBefore(c), 0, nb_off, NULL);
    X509_time_adj_ex(X509_getm_notAfter(c), 0, na_off, NULL);
    X509_set_pubkey(c, key);
    X509V3_set_ctx(&v3, issuer ? issuer : c, c, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
                              ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_key_usage,
                              ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_key_identifier, "hash");
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    if (issuer != NULL) {
        ext = X509V3_EXT_conf_nid(NULL, &v3, NID_authority_key_identifier, "keyid:always");
        X509_add_ext(c, ext, -1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(c, issuer ? ikey : key, EVP_sha256()) > 0);
    X509_NAME_free(n);
    return c;
}

struct pki {
    EVP_PKEY *ca_key, *leaf_key, *other_key;
    X509 *ca, *foreign_ca, *leaf, *foreign_leaf, *expired_leaf;
    STACK_OF(X509) *roots;
};

static void
pki_make(struct pki *p)
{
    memset(p, 0, sizeof *p);
    p->ca_key = make_key();
    p->leaf_key = make_key();
    p->other_key = make_key();
    p->ca = make_cert("Node CA", p->ca_key, NULL, NULL, true, 1, -3600, 86400);
    p->foreign_ca = make_cert("Node CA", p->other_key, NULL, NULL, true, 1, -3600, 86400);
    p->leaf =
        make_cert("node1.example.org", p->leaf_key, p->ca, p->ca_key, false, 0x1a2b, -60, 3600);
    p->foreign_leaf = make_cert("node1.example.org", p->leaf_key, p->foreign_ca, p->other_key,
                                false, 7, -60, 3600);
    p->expired_leaf =
        make_cert("node1.example.org", p->leaf_key, p->ca, p->ca_key, false, 8, -7200, -3600);
    assert_non_null(p->roots = sk_X509_new_null());
    assert_int_equal(X509_up_ref(p->ca), 1);
    assert_true(sk_X509_push(p->roots, p->ca) > 0);
}

static void
pki_free(struct pki *p)
{
    EVP_PKEY_free(p->ca_key);
    EVP_PKEY_free(p->leaf_key);
    EVP_PKEY_free(p->other_key);
    X509_free(p->ca);
    X509_free(p->foreign_ca);
    X509_free(p->leaf);
    X509_free(p->foreign_leaf);
    X509_free(p->expired_leaf);
    sk_X509_pop_free(p->roots, X509_free);
}

static void
der(X509 *c, struct sigil_buf *out)
{
    assert_int_equal(sigil_x509_cert_to_der(c, out), 0);
}

static void
sign(EVP_PKEY *key, const struct sigil_buf *nonce, const uint8_t *c, size_t clen,
     struct sigil_buf *sig)
{
    struct sigil_buf msg = {0};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    size_t n = 0;

    assert_int_equal(sigil_nodeattest_x509pop_message(nonce->data, nonce->len, c, clen, &msg), 0);
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
    assert_int_equal(EVP_DigestSign(md, NULL, &n, msg.data, msg.len), 1);
    assert_int_equal(sigil_buf_reserve(sig, n), 0);
    assert_int_equal(EVP_DigestSign(md, sig->data + sig->len, &n, msg.data, msg.len), 1);
    sig->len += n;
    EVP_MD_CTX_free(md);
    sigil_buf_free(&msg);
}

/* Runs start (and answer, with a proof by key over the_csr) for payload; returns the first
 * error or 0 with *res filled. */
static int
pop(struct pki *p, const struct sigil_buf *payload, EVP_PKEY *key, const uint8_t *the_csr,
    size_t the_csr_len, struct sigil_nodeattest_result *res)
{
    struct sigil_nodeattest_cfg cfg = {
        .trust_domain = TD, .x509pop_roots = p->roots, .now = (int64_t)time(NULL)};
    struct sigil_buf ch = {0}, sig = {0};
    void *st = NULL;
    const char *why = NULL;
    int r;

    r = sigil_nodeattest_x509pop.start(&cfg, NULL, payload->data, payload->len, csr, sizeof csr,
                                       &st, &ch, res, &why);
    if (r != 0) {
        assert_non_null(why);
        assert_null(st);
        goto out;
    }
    assert_non_null(st);
    assert_int_equal(ch.len, SIGIL_NODEATTEST_NONCE_LEN);
    assert_null(res->spiffe_id);
    sign(key, &ch, the_csr, the_csr_len, &sig);
    r = sigil_nodeattest_x509pop.answer(st, sig.data, sig.len, res, &why);
    if (r != 0)
        assert_non_null(why);
out:
    sigil_nodeattest_x509pop.free_state(st);
    sigil_buf_free(&ch);
    sigil_buf_free(&sig);
    return r;
}

static void
test_x509pop_good(void **state)
{
    struct pki p;
    struct sigil_buf payload = {0}, leafder = {0};
    struct sigil_nodeattest_result res;
    uint8_t md[SHA_DIGEST_LENGTH];
    char hex[2 * SHA_DIGEST_LENGTH + 1], want[256];
    unsigned len = 0;
    char *sels;

    (void)state;
    pki_make(&p);
    der(p.leaf, &payload);
    assert_int_equal(pop(&p, &payload, p.leaf_key, csr, sizeof csr, &res), 0);
    der(p.leaf, &leafder);
    SHA1(leafder.data, leafder.len, md);
    sigil_hex_encode(md, sizeof md, hex);
    snprintf(want, sizeof want, "spiffe://" TD "/sigil/agent/x509pop/%s", hex);
    assert_string_equal(res.spiffe_id, want);
    assert_true(res.reattestable);
    assert_int_equal(X509_digest(p.ca, EVP_sha1(), md, &len), 1);
    sigil_hex_encode(md, sizeof md, hex);
    snprintf(want, sizeof want,
             "x509pop:ca:fingerprint:%s\nx509pop:serialnumber:1a2b\n"
             "x509pop:subject:cn:node1.example.org",
             hex);
    sels = sigil_selector_set_to_string(&res.selectors);
    assert_string_equal(sels, want);
    free(sels);
    sigil_nodeattest_result_free(&res);
    sigil_buf_free(&leafder);

    /* the chain may carry the CA too */
    der(p.ca, &payload);
    assert_int_equal(pop(&p, &payload, p.leaf_key, csr, sizeof csr, &res), 0);
    sigil_nodeattest_result_free(&res);
    sigil_buf_free(&payload);
    pki_free(&p);
}

static void
test_x509pop_refused(void **state)
{
    struct pki p;
    struct sigil_buf payload = {0}, foreign = {0}, expired = {0};
    struct sigil_nodeattest_result res;

    (void)state;
    pki_make(&p);
    der(p.leaf, &payload);
    /* a proof by another key, or for another CSR */
    assert_int_equal(pop(&p, &payload, p.other_key, csr, sizeof csr, &res), SIGIL_ERR_DENIED);
    assert_null(res.spiffe_id);
    assert_int_equal(pop(&p, &payload, p.leaf_key, csr2, sizeof csr2, &res), SIGIL_ERR_DENIED);
    /* a node certificate of another CA, even with that CA in the chain */
    der(p.foreign_leaf, &foreign);
    assert_int_equal(pop(&p, &foreign, p.leaf_key, csr, sizeof csr, &res), SIGIL_ERR_DENIED);
    der(p.foreign_ca, &foreign);
    assert_int_equal(pop(&p, &foreign, p.leaf_key, csr, sizeof csr, &res), SIGIL_ERR_DENIED);
    /* expired */
    der(p.expired_leaf, &expired);
    assert_int_equal(pop(&p, &expired, p.leaf_key, csr, sizeof csr, &res), SIGIL_ERR_EXPIRED);
    sigil_buf_free(&payload);
    sigil_buf_free(&foreign);
    sigil_buf_free(&expired);
    pki_free(&p);
}

static void
test_x509pop_malformed(void **state)
{
    struct pki p;
    struct sigil_nodeattest_cfg cfg = {.trust_domain = TD, .now = (int64_t)time(NULL)};
    struct sigil_buf payload = {0}, ch = {0};
    struct sigil_nodeattest_result res;
    static uint8_t big[SIGIL_NODEATTEST_PAYLOAD_MAX + 1];
    void *st = NULL;
    const char *why = NULL;

    (void)state;
    pki_make(&p);
    der(p.leaf, &payload);
    /* off */
    assert_int_equal(sigil_nodeattest_x509pop.start(&cfg, NULL, payload.data, payload.len, csr,
                                                    sizeof csr, &st, &ch, &res, &why),
                     SIGIL_ERR_UNSUPPORTED);
    cfg.x509pop_roots = p.roots;
    /* no CSR */
    assert_int_equal(sigil_nodeattest_x509pop.start(&cfg, NULL, payload.data, payload.len, NULL, 0,
                                                    &st, &ch, &res, &why),
                     SIGIL_ERR_INVALID);
    /* empty, garbage, truncated, trailing bytes, oversize */
    assert_int_equal(sigil_nodeattest_x509pop.start(&cfg, NULL, payload.data, 0, csr, sizeof csr,
                                                    &st, &ch, &res, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_nodeattest_x509pop.start(&cfg, NULL, (const uint8_t *)"hello", 5, csr,
                                                    sizeof csr, &st, &ch, &res, &why),
                     SIGIL_ERR_INVALID);
    assert_int_not_equal(sigil_nodeattest_x509pop.start(&cfg, NULL, payload.data, payload.len - 1,
                                                        csr, sizeof csr, &st, &ch, &res, &why),
                         0);
    assert_int_equal(sigil_buf_append(&payload, "\x30", 1), 0);
    assert_int_not_equal(sigil_nodeattest_x509pop.start(&cfg, NULL, payload.data, payload.len, csr,
                                                        sizeof csr, &st, &ch, &res, &why),
                         0);
    assert_int_equal(sigil_nodeattest_x509pop.start(&cfg, NULL, big, sizeof big, csr, sizeof csr,
                                                    &st, &ch, &res, &why),
                     SIGIL_ERR_RANGE);
    assert_null(st);
    assert_int_equal(ch.len, 0);

    /* responses: empty and oversize */
    payload.len--;
    assert_int_equal(sigil_nodeattest_x509pop.start(&cfg, NULL, payload.data, payload.len, csr,
                                                    sizeof csr, &st, &ch, &res, &why),
                     0);
    assert_int_equal(sigil_nodeattest_x509pop.answer(st, big, 0, &res, &why), SIGIL_ERR_INVALID);
    assert_int_equal(
        sigil_nodeattest_x509pop.answer(st, big, SIGIL_NODEATTEST_RESPONSE_MAX + 1, &res, &why),
        SIGIL_ERR_INVALID);
    assert_int_equal(sigil_nodeattest_x509pop.answer(st, big, 70, &res, &why), SIGIL_ERR_DENIED);
    sigil_nodeattest_x509pop.free_state(st);
    sigil_buf_free(&ch);
    sigil_buf_free(&payload);
    pki_free(&p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_find),
        cmocka_unit_test(test_join_token),
        cmocka_unit_test(test_x509pop_good),
        cmocka_unit_test(test_x509pop_refused),
        cmocka_unit_test(test_x509pop_malformed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
