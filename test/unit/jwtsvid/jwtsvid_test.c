/* Unit tests of JWT-SVIDs: sign -> validate round trips, one refusal per J-rule (each `why`
 * must name its rule), and RS256/PS256/ES384/ES512 tokens made here with OpenSSL directly so
 * that every verification path runs against a signer that is not ours. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "sigil/bundle.h"
#include "sigil/encoding.h"
#include "sigil/err.h"
#include "sigil/jwtsvid.h"

#define NOW ((time_t)1700000000)
#define SUB "spiffe://example.org/ns/web"

static EVP_PKEY *ec256, *ec384, *ec521, *rsa, *other256;
static struct sigil_bundle_set *bundles;

static int
setup(void **state)
{
    struct sigil_bundle *b = NULL, *o = NULL;
    const char *why;

    (void)state;
    ec256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    ec384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    ec521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    other256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    if (ec256 == NULL || ec384 == NULL || ec521 == NULL || other256 == NULL || rsa == NULL)
        return -1;
    if (sigil_bundle_set_new(&bundles) != 0 || sigil_bundle_new("example.org", &b, &why) != 0 ||
        sigil_bundle_jwt_add(b, "ec256", ec256, &why) != 0 ||
        sigil_bundle_jwt_add(b, "ec384", ec384, &why) != 0 ||
        sigil_bundle_jwt_add(b, "ec521", ec521, &why) != 0 ||
        sigil_bundle_jwt_add(b, "rsa", rsa, &why) != 0 || sigil_bundle_set_put(bundles, b) != 0)
        return -1;
    /* other.org uses the same kid for a different key: J-10 must pick the right bundle. */
    if (sigil_bundle_new("other.org", &o, &why) != 0 ||
        sigil_bundle_jwt_add(o, "ec256", other256, &why) != 0 ||
        sigil_bundle_set_put(bundles, o) != 0)
        return -1;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    sigil_bundle_set_free(bundles);
    EVP_PKEY_free(ec256);
    EVP_PKEY_free(ec384);
    EVP_PKEY_free(ec521);
    EVP_PKEY_free(other256);
    EVP_PKEY_free(rsa);
    return 0;
}

static char *
b64url(const void *p, size_t n)
{
    char *s = sigil_b64url_encode(p, n);

    assert_non_null(s);
    return s;
}

/* Signs input with key per sign_alg ("ES256".."PS512") into JOSE signature bytes. */
static size_t
jose_sign(const char *sign_alg, EVP_PKEY *key, const char *input, uint8_t *out, size_t cap)
{
    const char *md = strstr(sign_alg, "384")   ? "SHA384"
                     : strstr(sign_alg, "512") ? "SHA512"
                                               : "SHA256";
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    unsigned char der[4096];
    size_t derlen = sizeof der;

    assert_non_null(ctx);
    assert_int_equal(EVP_DigestSignInit_ex(ctx, &pctx, md, NULL, NULL, key, NULL), 1);
    if (sign_alg[0] == 'P') {
        assert_true(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0);
        assert_true(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0);
    }
    assert_int_equal(EVP_DigestSign(ctx, der, &derlen, (const unsigned char *)input, strlen(input)),
                     1);
    EVP_MD_CTX_free(ctx);
    if (sign_alg[0] != 'E' || strcmp(sign_alg, "ESDER") == 0) {
        /* RSA signatures are used as they are; "ESDER" keeps OpenSSL's DER on purpose. */
        assert_true(derlen <= cap);
        memcpy(out, der, derlen);
        return derlen;
    } else {
        size_t half = strstr(sign_alg, "256") ? 32 : strstr(sign_alg, "384") ? 48 : 66;
        const unsigned char *p = der;
        ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen);
        const BIGNUM *r, *s;

        assert_non_null(sig);
        assert_true(2 * half <= cap);
        ECDSA_SIG_get0(sig, &r, &s);
        assert_int_equal(BN_bn2binpad(r, out, (int)half), (int)half);
        assert_int_equal(BN_bn2binpad(s, out + half, (int)half), (int)half);
        ECDSA_SIG_free(sig);
        return 2 * half;
    }
}

/* A token of exactly this header and payload JSON, signed with key per sign_alg (which
 * need not match the header), or with a dummy signature when key is NULL. Caller frees. */
static char *
forge(const char *header, const char *payload, EVP_PKEY *key, const char *sign_alg)
{
    char *h = b64url(header, strlen(header)), *p = b64url(payload, strlen(payload));
    char *input = malloc(strlen(h) + strlen(p) + 2), *sig, *tok;
    uint8_t raw[1024];
    size_t n = 3;

    assert_non_null(input);
    sprintf(input, "%s.%s", h, p);
    if (key != NULL)
        n = jose_sign(sign_alg, key, input, raw, sizeof raw);
    else
        memcpy(raw, "sig", 3);
    sig = b64url(raw, n);
    tok = malloc(strlen(input) + strlen(sig) + 2);
    assert_non_null(tok);
    sprintf(tok, "%s.%s", input, sig);
    free(h);
    free(p);
    free(input);
    free(sig);
    return tok;
}

/* A standard payload for sub/aud JSON/exp, with extra members appended (may be ""). */
static char *
payload(const char *sub, const char *aud, long long exp, const char *extra)
{
    char *s = malloc(4096);

    assert_non_null(s);
    snprintf(s, 4096, "{\"sub\":\"%s\",\"aud\":%s,\"exp\":%lld%s}", sub, aud, exp, extra);
    return s;
}

static char *
good_es256(const char *aud_json)
{
    char *p = payload(SUB, aud_json, (long long)NOW + 300, "");
    char *t = forge("{\"alg\":\"ES256\",\"kid\":\"ec256\",\"typ\":\"JWT\"}", p, ec256, "ES256");

    free(p);
    return t;
}

/* Validating token must fail with err and a why naming rule; *out left cleared. */
static void
expect_fail(const char *token, size_t len, const char *aud, unsigned leeway, int err,
            const char *rule)
{
    struct sigil_jwtsvid out;
    const char *why = NULL;
    int r;

    memset(&out, 0x5a, sizeof out);
    r = sigil_jwtsvid_validate(token, len, aud, bundles, NOW, leeway, &out, &why);
    if (r != err)
        fail_msg("%.120s: got %d (%s), want %d", token, r, why ? why : "-", err);
    assert_non_null(why);
    if (strstr(why, rule) == NULL)
        fail_msg("%.120s: why \"%s\" does not name %s", token, why, rule);
    assert_null(out.claims);
    assert_int_equal(out.id.len, 0);
}

static void
fail_tok(const char *token, int err, const char *rule)
{
    expect_fail(token, strlen(token), "svc-a", 0, err, rule);
}

/* Frees token after checking that it fails as described. */
static void
fail_forged(char *token, int err, const char *rule)
{
    fail_tok(token, err, rule);
    free(token);
}

static void
expect_ok(const char *token, const char *aud, unsigned leeway)
{
    struct sigil_jwtsvid out;
    const char *why = NULL;
    int r = sigil_jwtsvid_validate(token, strlen(token), aud, bundles, NOW, leeway, &out, &why);

    if (r != 0)
        fail_msg("%.120s: rejected: %s", token, why);
    sigil_jwtsvid_clear(&out);
}

static void
test_sign_validate(void **state)
{
    const char *aud[] = {"svc-a"};
    struct sigil_jwtsvid_params p = {ec256, "ec256", SUB, aud, 1, NOW - 5, NOW + 300, NULL};
    struct sigil_jwtsvid out, ins;
    char *tok = NULL, *dot1, *dot2;
    uint8_t *raw;
    size_t n;
    const char *why = NULL;

    (void)state;
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), 0);
    /* The header is exactly this (J-2, J-3), and aud a string for one audience. */
    dot1 = strchr(tok, '.');
    dot2 = strchr(dot1 + 1, '.');
    assert_non_null(dot2);
    assert_null(strchr(dot2 + 1, '.'));
    assert_int_equal(sigil_b64url_decode(tok, (size_t)(dot1 - tok), &raw, &n), 0);
    assert_int_equal(n, strlen("{\"alg\":\"ES256\",\"kid\":\"ec256\",\"typ\":\"JWT\"}"));
    assert_memory_equal(raw, "{\"alg\":\"ES256\",\"kid\":\"ec256\",\"typ\":\"JWT\"}", n);
    free(raw);
    assert_int_equal(sigil_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &raw, &n), 0);
    assert_int_equal(n, strlen("{\"sub\":\"" SUB "\",\"aud\":\"svc-a\",\"exp\":1700000300,"
                               "\"iat\":1699999995}"));
    assert_memory_equal(raw,
                        "{\"sub\":\"" SUB "\",\"aud\":\"svc-a\",\"exp\":1700000300,"
                        "\"iat\":1699999995}",
                        n);
    free(raw);
    /* ES256 in JOSE form: raw r||s, 64 bytes, not DER. */
    assert_int_equal(sigil_b64url_decode(dot2 + 1, strlen(dot2 + 1), &raw, &n), 0);
    assert_int_equal(n, 64);
    free(raw);

    assert_int_equal(sigil_jwtsvid_validate(tok, strlen(tok), "svc-a", bundles, NOW, 0, &out, &why),
                     0);
    assert_string_equal(out.id.str, SUB);
    assert_string_equal(out.id.td, "example.org");
    assert_string_equal(out.kid, "ec256");
    assert_string_equal(out.alg, "ES256");
    assert_int_equal(out.exp, NOW + 300);
    assert_string_equal(json_string_value(json_object_get(out.claims, "aud")), "svc-a");
    assert_int_equal(json_integer_value(json_object_get(out.claims, "iat")), NOW - 5);
    assert_true(sigil_jwtsvid_has_audience(&out, "svc-a"));
    assert_false(sigil_jwtsvid_has_audience(&out, "svc-b"));
    sigil_jwtsvid_clear(&out);
    assert_null(out.claims);
    sigil_jwtsvid_clear(&out); /* twice is fine */

    expect_fail(tok, strlen(tok), "svc-b", 0, SIGIL_ERR_DENIED, "J-5");
    /* Past its exp at a later time. */
    assert_int_equal(
        sigil_jwtsvid_validate(tok, strlen(tok), "svc-a", bundles, NOW + 301, 0, &out, &why),
        SIGIL_ERR_EXPIRED);
    /* The insecure parse reads it without any bundle. */
    assert_int_equal(sigil_jwtsvid_parse_insecure(tok, strlen(tok), &ins, &why), 0);
    assert_string_equal(ins.id.str, SUB);
    assert_int_equal(ins.exp, NOW + 300);
    sigil_jwtsvid_clear(&ins);
    sigil_jwtsvid_token_free(tok);
    sigil_jwtsvid_token_free(NULL);
}

static void
test_sign_options(void **state)
{
    const char *aud[] = {"svc-a", "svc-b"};
    json_t *extra = json_pack("{s:s,s:{s:i}}", "jti", "abc", "ext", "n", 1);
    struct sigil_jwtsvid_params p = {ec256, "ec256", SUB, aud, 2, NOW, NOW + 60, extra};
    struct sigil_jwtsvid out;
    char *tok = NULL;
    const char *why;

    (void)state;
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), 0);
    expect_ok(tok, "svc-a", 0);
    expect_ok(tok, "svc-b", 0);
    assert_int_equal(sigil_jwtsvid_validate(tok, strlen(tok), "svc-b", bundles, NOW, 0, &out, &why),
                     0);
    assert_true(json_is_array(json_object_get(out.claims, "aud")));
    assert_int_equal(json_array_size(json_object_get(out.claims, "aud")), 2);
    assert_string_equal(json_string_value(json_object_get(out.claims, "jti")), "abc");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(out.claims, "ext"), "n")),
                     1);
    sigil_jwtsvid_clear(&out);
    sigil_jwtsvid_token_free(tok);
    json_decref(extra);

    /* Refused parameters, each naming its rule. */
    tok = NULL;
    extra = json_pack("{s:s}", "sub", "spiffe://example.org/evil");
    p.extra = extra;
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "J-7"));
    json_decref(extra);
    extra = json_pack("[s]", "x");
    p.extra = extra;
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), SIGIL_ERR_INVALID);
    json_decref(extra);
    p.extra = NULL;
    p.key = ec384;
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), SIGIL_ERR_UNSUPPORTED);
    assert_non_null(strstr(why, "J-2"));
    p.key = rsa;
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), SIGIL_ERR_UNSUPPORTED);
    p.key = ec256;
    p.sub = "spiffe://example.org";
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "J-4"));
    p.sub = "spiffe://Example.org/x";
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), SIGIL_ERR_INVALID);
    p.sub = SUB;
    p.naud = 0;
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "J-5"));
    p.naud = 1;
    aud[0] = "";
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), SIGIL_ERR_INVALID);
    aud[0] = "svc-a";
    p.exp = p.iat;
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "J-6"));
    p.exp = (time_t)1 << 54;
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "J-6"));
    p.exp = NOW + 60;
    p.kid = "";
    assert_int_equal(sigil_jwtsvid_sign(&p, &tok, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "J-9"));
    assert_null(tok);
}

static void
test_alg(void **state)
{
    char *p = payload(SUB, "\"svc-a\"", (long long)NOW + 300, "");

    (void)state;
    /* J-2: anything but RS/ES/PS 256/384/512 is refused, first. */
    fail_forged(forge("{\"alg\":\"none\",\"kid\":\"ec256\"}", p, NULL, NULL), SIGIL_ERR_INVALID,
                "J-2: alg none");
    {
        /* "none" with an empty signature part is still a J-2 refusal. */
        char *t = forge("{\"alg\":\"none\",\"kid\":\"ec256\"}", p, NULL, NULL);

        strrchr(t, '.')[1] = '\0';
        fail_forged(t, SIGIL_ERR_INVALID, "J-2: alg none");
    }
    fail_forged(forge("{\"alg\":\"HS256\",\"kid\":\"ec256\"}", p, NULL, NULL), SIGIL_ERR_INVALID,
                "J-2: HMAC");
    fail_forged(forge("{\"alg\":\"HS512\",\"kid\":\"rsa\"}", p, NULL, NULL), SIGIL_ERR_INVALID,
                "J-2: HMAC");
    fail_forged(forge("{\"alg\":\"EdDSA\",\"kid\":\"ec256\"}", p, NULL, NULL), SIGIL_ERR_INVALID,
                "J-2: EdDSA");
    fail_forged(forge("{\"kid\":\"ec256\"}", p, ec256, "ES256"), SIGIL_ERR_INVALID,
                "J-2: alg header is missing");
    fail_forged(forge("{\"alg\":256,\"kid\":\"ec256\"}", p, ec256, "ES256"), SIGIL_ERR_INVALID,
                "J-2");
    fail_forged(forge("{\"alg\":\"es256\",\"kid\":\"ec256\"}", p, ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-2");
    fail_forged(forge("{\"alg\":\"ES256K\",\"kid\":\"ec256\"}", p, ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-2");
    /* alg is looked at before the other header parameters. */
    fail_forged(forge("{\"alg\":\"none\",\"crit\":[\"x\"]}", p, NULL, NULL), SIGIL_ERR_INVALID,
                "J-2");
    free(p);
}

static void
test_alg_key_mismatch(void **state)
{
    char *p = payload(SUB, "\"svc-a\"", (long long)NOW + 300, "");

    (void)state;
    /* An ES256 token must not verify with an RSA key, nor RS/PS with an EC key. */
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"rsa\"}", p, ec256, "ES256"), SIGIL_ERR_VERIFY,
                "J-2");
    fail_forged(forge("{\"alg\":\"RS256\",\"kid\":\"ec256\"}", p, rsa, "RS256"), SIGIL_ERR_VERIFY,
                "J-2");
    fail_forged(forge("{\"alg\":\"PS256\",\"kid\":\"ec256\"}", p, rsa, "PS256"), SIGIL_ERR_VERIFY,
                "J-2");
    /* The curve must be the one alg names. */
    fail_forged(forge("{\"alg\":\"ES384\",\"kid\":\"ec256\"}", p, ec256, "ES256"), SIGIL_ERR_VERIFY,
                "J-2");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec384\"}", p, ec384, "ES384"), SIGIL_ERR_VERIFY,
                "J-2");
    /* PKCS#1 v1.5 and PSS are not interchangeable. */
    fail_forged(forge("{\"alg\":\"PS256\",\"kid\":\"rsa\"}", p, rsa, "RS256"), SIGIL_ERR_VERIFY,
                "J-7");
    fail_forged(forge("{\"alg\":\"RS256\",\"kid\":\"rsa\"}", p, rsa, "PS256"), SIGIL_ERR_VERIFY,
                "J-7");
    /* The hash is the one alg names. */
    fail_forged(forge("{\"alg\":\"RS384\",\"kid\":\"rsa\"}", p, rsa, "RS256"), SIGIL_ERR_VERIFY,
                "J-7");
    free(p);
}

static void
test_other_algs(void **state)
{
    static const struct {
        const char *alg, *kid;
        EVP_PKEY **key;
    } cases[] = {
        {"RS256", "rsa", &rsa},     {"RS384", "rsa", &rsa},     {"RS512", "rsa", &rsa},
        {"PS256", "rsa", &rsa},     {"PS384", "rsa", &rsa},     {"PS512", "rsa", &rsa},
        {"ES384", "ec384", &ec384}, {"ES512", "ec521", &ec521}, {"ES256", "ec256", &ec256},
    };
    char *p = payload(SUB, "[\"svc-x\",\"svc-a\"]", (long long)NOW + 300, ",\"iat\":1699999990");
    char header[128];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *t;

        snprintf(header, sizeof header, "{\"alg\":\"%s\",\"kid\":\"%s\",\"typ\":\"JOSE\"}",
                 cases[i].alg, cases[i].kid);
        t = forge(header, p, *cases[i].key, cases[i].alg);
        expect_ok(t, "svc-a", 0);
        free(t);
    }
    free(p);
}

static void
test_kid(void **state)
{
    char *p = payload(SUB, "\"svc-a\"", (long long)NOW + 300, "");

    (void)state;
    fail_forged(forge("{\"alg\":\"ES256\"}", p, ec256, "ES256"), SIGIL_ERR_INVALID, "J-9");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"\"}", p, ec256, "ES256"), SIGIL_ERR_INVALID,
                "J-9");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":7}", p, ec256, "ES256"), SIGIL_ERR_INVALID,
                "J-9");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"nope\"}", p, ec256, "ES256"),
                SIGIL_ERR_NOTFOUND, "J-9");
    free(p);
}

static void
test_header_params(void **state)
{
    char *p = payload(SUB, "\"svc-a\"", (long long)NOW + 300, "");
    char *t;

    (void)state;
    t = forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", p, ec256, "ES256"); /* typ optional */
    expect_ok(t, "svc-a", 0);
    free(t);
    fail_forged(
        forge("{\"alg\":\"ES256\",\"kid\":\"ec256\",\"typ\":\"at+jwt\"}", p, ec256, "ES256"),
        SIGIL_ERR_INVALID, "J-3: typ");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\",\"typ\":\"jwt\"}", p, ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-3: typ");
    fail_forged(
        forge("{\"alg\":\"ES256\",\"kid\":\"ec256\",\"jku\":\"https://x\"}", p, ec256, "ES256"),
        SIGIL_ERR_INVALID, "J-3");
    fail_forged(
        forge("{\"alg\":\"ES256\",\"kid\":\"ec256\",\"crit\":[\"exp\"]}", p, ec256, "ES256"),
        SIGIL_ERR_INVALID, "J-3: crit");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\",\"kid\":\"rsa\"}", p, ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-1: header");
    fail_forged(forge("[\"ES256\"]", p, ec256, "ES256"), SIGIL_ERR_INVALID, "J-1: header");
    t = forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"} ", p, ec256, "ES256"); /* JSON whitespace */
    expect_ok(t, "svc-a", 0);
    free(t);
    free(p);
}

static void
test_sub(void **state)
{
    static const char *subs[] = {
        "web",
        "spiffe://example.org",
        "spiffe://Example.org/x",
        "spiffe://example.org/a//b",
        "https://example.org/x",
    };
    char *p;

    (void)state;
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        p = payload(subs[i], "\"svc-a\"", (long long)NOW + 300, "");
        fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", p, ec256, "ES256"),
                    SIGIL_ERR_INVALID, "J-4");
        free(p);
    }
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}",
                      "{\"aud\":\"svc-a\",\"exp\":1700000300}", ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-4");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}",
                      "{\"sub\":5,\"aud\":\"svc-a\",\"exp\":1700000300}", ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-4");
}

static void
test_trust_domain(void **state)
{
    char *p;

    (void)state;
    /* J-10: no bundle for sub's trust domain: untrusted, whatever signed it. */
    p = payload("spiffe://nobundle.org/x", "\"svc-a\"", (long long)NOW + 300, "");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", p, ec256, "ES256"),
                SIGIL_ERR_NOTFOUND, "J-10");
    free(p);
    /* example.org's key claiming an other.org identity: other.org's "ec256" is another key. */
    p = payload("spiffe://other.org/x", "\"svc-a\"", (long long)NOW + 300, "");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", p, ec256, "ES256"), SIGIL_ERR_VERIFY,
                "J-7");
    free(p);
    /* ...while other.org's own key is good for it. */
    p = payload("spiffe://other.org/x", "\"svc-a\"", (long long)NOW + 300, "");
    {
        char *t = forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", p, other256, "ES256");

        expect_ok(t, "svc-a", 0);
        free(t);
    }
    /* ...and not under example.org. */
    free(p);
    p = payload(SUB, "\"svc-a\"", (long long)NOW + 300, "");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", p, other256, "ES256"),
                SIGIL_ERR_VERIFY, "J-7");
    /* No bundles at all: nothing is trusted. */
    {
        char *t = forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", p, ec256, "ES256");
        struct sigil_jwtsvid out;
        const char *why = NULL;

        assert_int_equal(sigil_jwtsvid_validate(t, strlen(t), "svc-a", NULL, NOW, 0, &out, &why),
                         SIGIL_ERR_NOTFOUND);
        assert_non_null(strstr(why, "J-10"));
        assert_null(out.claims);
        free(t);
    }
    free(p);
}

static void
test_aud(void **state)
{
    static const char *hdr = "{\"alg\":\"ES256\",\"kid\":\"ec256\"}";
    char *t;

    (void)state;
    fail_forged(forge(hdr, "{\"sub\":\"" SUB "\",\"exp\":1700000300}", ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-5: aud is missing");
    t = good_es256("\"svc-b\"");
    fail_forged(t, SIGIL_ERR_DENIED, "J-5");
    t = good_es256("[]");
    fail_forged(t, SIGIL_ERR_INVALID, "J-5: aud is an empty array");
    t = good_es256("[\"svc-a\",3]");
    fail_forged(t, SIGIL_ERR_INVALID, "J-5");
    t = good_es256("\"\"");
    fail_forged(t, SIGIL_ERR_INVALID, "J-5");
    t = good_es256("{\"a\":\"svc-a\"}");
    fail_forged(t, SIGIL_ERR_INVALID, "J-5");
    t = good_es256("[\"svc-b\",\"svc-c\"]");
    fail_forged(t, SIGIL_ERR_DENIED, "J-5");
    t = good_es256("[\"svc-b\",\"svc-a\"]");
    expect_ok(t, "svc-a", 0);
    /* Our own audience must be set: an empty one never matches. */
    expect_fail(t, strlen(t), "", 0, SIGIL_ERR_INVALID, "J-5");
    expect_fail(t, strlen(t), NULL, 0, SIGIL_ERR_INVALID, "J-5");
    free(t);
    /* Prefixes do not match. */
    t = good_es256("\"svc-ab\"");
    fail_forged(t, SIGIL_ERR_DENIED, "J-5");
}

static void
test_times(void **state)
{
    static const char *hdr = "{\"alg\":\"ES256\",\"kid\":\"ec256\"}";
    char *p, *t;

    (void)state;
    fail_forged(forge(hdr, "{\"sub\":\"" SUB "\",\"aud\":\"svc-a\"}", ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-6: exp is missing");
    fail_forged(forge(hdr, "{\"sub\":\"" SUB "\",\"aud\":\"svc-a\",\"exp\":\"1700000300\"}", ec256,
                      "ES256"),
                SIGIL_ERR_INVALID, "J-6");
    fail_forged(forge(hdr, "{\"sub\":\"" SUB "\",\"aud\":\"svc-a\",\"exp\":null}", ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-6");
    fail_forged(forge(hdr, "{\"sub\":\"" SUB "\",\"aud\":\"svc-a\",\"exp\":1e300}", ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-6");

    /* Expired 10 s ago: fine with 30 s of leeway, refused with 5 s or none. */
    p = payload(SUB, "\"svc-a\"", (long long)NOW - 10, "");
    t = forge(hdr, p, ec256, "ES256");
    expect_ok(t, "svc-a", 30);
    expect_ok(t, "svc-a", 10);
    expect_fail(t, strlen(t), "svc-a", 5, SIGIL_ERR_EXPIRED, "J-6: token has expired");
    expect_fail(t, strlen(t), "svc-a", 0, SIGIL_ERR_EXPIRED, "J-6");
    free(t);
    free(p);
    /* exp exactly now is still valid; fractional exp is rounded down. */
    p = payload(SUB, "\"svc-a\"", (long long)NOW, "");
    t = forge(hdr, p, ec256, "ES256");
    expect_ok(t, "svc-a", 0);
    free(t);
    free(p);
    t = forge(hdr, "{\"sub\":\"" SUB "\",\"aud\":\"svc-a\",\"exp\":1699999999.9}", ec256, "ES256");
    expect_fail(t, strlen(t), "svc-a", 0, SIGIL_ERR_EXPIRED, "J-6");
    free(t);

    /* nbf and iat in the future beyond the leeway are refused. */
    p = payload(SUB, "\"svc-a\"", (long long)NOW + 300, ",\"nbf\":1700000100");
    t = forge(hdr, p, ec256, "ES256");
    expect_fail(t, strlen(t), "svc-a", 30, SIGIL_ERR_EXPIRED, "nbf");
    expect_ok(t, "svc-a", 120);
    free(t);
    free(p);
    p = payload(SUB, "\"svc-a\"", (long long)NOW + 300, ",\"iat\":1700000100");
    t = forge(hdr, p, ec256, "ES256");
    expect_fail(t, strlen(t), "svc-a", 30, SIGIL_ERR_EXPIRED, "iat");
    free(t);
    free(p);
    p = payload(SUB, "\"svc-a\"", (long long)NOW + 300, ",\"nbf\":\"soon\"");
    fail_forged(forge(hdr, p, ec256, "ES256"), SIGIL_ERR_INVALID, "nbf");
    free(p);
    p = payload(SUB, "\"svc-a\"", (long long)NOW + 300, ",\"iat\":[1]");
    fail_forged(forge(hdr, p, ec256, "ES256"), SIGIL_ERR_INVALID, "iat");
    free(p);
    p = payload(SUB, "\"svc-a\"", (long long)NOW + 300, ",\"nbf\":1699999000,\"iat\":1699999000");
    t = forge(hdr, p, ec256, "ES256");
    expect_ok(t, "svc-a", 0);
    free(t);
    free(p);
}

static void
test_bad_signature(void **state)
{
    char *t = good_es256("\"svc-a\""), *t2, *dot;
    char *p, *q, orig;

    (void)state;
    expect_ok(t, "svc-a", 0);
    /* Flip one byte of the signature: the first character carries the top bits of r. */
    dot = strrchr(t, '.');
    orig = dot[1];
    dot[1] = orig == 'A' ? 'B' : 'A';
    fail_tok(t, SIGIL_ERR_VERIFY, "J-7: signature does not verify");
    dot[1] = orig;
    expect_ok(t, "svc-a", 0);
    /* Flip a byte of the last coordinate (s). */
    t[strlen(t) - 2] = t[strlen(t) - 2] == 'A' ? 'B' : 'A';
    fail_tok(t, SIGIL_ERR_VERIFY, "J-7");
    free(t);

    /* Another payload under the signature of the first. */
    t = good_es256("\"svc-a\"");
    t2 = good_es256("[\"svc-a\",\"svc-z\"]");
    q = strrchr(t2, '.');
    p = malloc(strlen(t) + strlen(t2));
    assert_non_null(p);
    memcpy(p, t2, (size_t)(q - t2));
    strcpy(p + (q - t2), strrchr(t, '.'));
    fail_tok(p, SIGIL_ERR_VERIFY, "J-7");
    free(p);
    free(t);
    free(t2);

    /* OpenSSL's DER signature is not the JOSE form. */
    p = payload(SUB, "\"svc-a\"", (long long)NOW + 300, "");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", p, ec256, "ESDER"), SIGIL_ERR_VERIFY,
                "J-7");
    /* A signature of the wrong length, and one that is not base64url. */
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", p, NULL, NULL), SIGIL_ERR_VERIFY,
                "J-7");
    t = good_es256("\"svc-a\"");
    t2 = malloc(strlen(t) + 2);
    strcpy(t2, t);
    strrchr(t2, '.')[3] = '+';
    fail_tok(t2, SIGIL_ERR_INVALID, "J-1: signature is not base64url");
    free(t2);
    free(t);
    free(p);
}

static void
test_form(void **state)
{
    char *t = good_es256("\"svc-a\""), *buf;
    size_t n = strlen(t);
    char *dot;

    (void)state;
    buf = malloc(SIGIL_JWTSVID_MAX + 2);
    assert_non_null(buf);
    /* J-1: JSON serialization. */
    fail_tok("{\"payload\":\"e30\",\"signatures\":[{\"protected\":\"e30\",\"signature\":\"AA\"}]}",
             SIGIL_ERR_INVALID, "J-1: JWS JSON serialization");
    /* Two and four parts. */
    dot = strrchr(t, '.');
    memcpy(buf, t, (size_t)(dot - t));
    buf[dot - t] = '\0';
    fail_tok(buf, SIGIL_ERR_INVALID, "J-1: a JWS compact token has exactly three parts");
    snprintf(buf, SIGIL_JWTSVID_MAX, "%s.AAAA", t);
    fail_tok(buf, SIGIL_ERR_INVALID, "J-1: a JWS compact token has exactly three parts");
    snprintf(buf, SIGIL_JWTSVID_MAX, "%s.", t);
    fail_tok(buf, SIGIL_ERR_INVALID, "J-1");
    fail_tok("abc", SIGIL_ERR_INVALID, "J-1");
    fail_tok("..", SIGIL_ERR_INVALID, "J-1");
    fail_tok("", SIGIL_ERR_INVALID, "J-1");
    /* Trailing garbage, leading whitespace, an embedded NUL. */
    snprintf(buf, SIGIL_JWTSVID_MAX, "%s x", t);
    fail_tok(buf, SIGIL_ERR_INVALID, "J-1");
    snprintf(buf, SIGIL_JWTSVID_MAX, "%s\n", t);
    fail_tok(buf, SIGIL_ERR_INVALID, "J-1");
    snprintf(buf, SIGIL_JWTSVID_MAX, " %s", t);
    fail_tok(buf, SIGIL_ERR_INVALID, "J-1");
    memcpy(buf, t, n + 1);
    buf[n] = '\0';
    expect_fail(buf, n + 1, "svc-a", 0, SIGIL_ERR_INVALID, "J-1");
    /* Base64 that is not base64url, and payloads that are not JSON objects. */
    memcpy(buf, t, n + 1);
    buf[1] = '+';
    fail_tok(buf, SIGIL_ERR_INVALID, "J-1: header is not base64url");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", "[1]", ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-1: payload");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", "not json", ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-1: payload");
    fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}",
                      "{\"sub\":\"" SUB
                      "\",\"aud\":\"svc-a\",\"aud\":\"svc-b\",\"exp\":1700000300}",
                      ec256, "ES256"),
                SIGIL_ERR_INVALID, "J-1: payload");
    /* A deeply nested claim is refused before jansson sees it. */
    {
        char deep[256];
        size_t k = (size_t)snprintf(deep, sizeof deep,
                                    "{\"sub\":\"" SUB "\",\"aud\":\"svc-a\",\"exp\":1700000300,"
                                    "\"x\":");

        for (int i = 0; i < 20; i++)
            deep[k++] = '[';
        for (int i = 0; i < 20; i++)
            deep[k++] = ']';
        deep[k++] = '}';
        deep[k] = '\0';
        fail_forged(forge("{\"alg\":\"ES256\",\"kid\":\"ec256\"}", deep, ec256, "ES256"),
                    SIGIL_ERR_RANGE, "nested");
    }
    /* Over 16 KiB. */
    memset(buf, 'A', SIGIL_JWTSVID_MAX + 1);
    buf[10] = '.';
    buf[20] = '.';
    expect_fail(buf, SIGIL_JWTSVID_MAX + 1, "svc-a", 0, SIGIL_ERR_RANGE, "J-1: token over 16 KiB");
    free(buf);
    free(t);
}

static void
test_parse_insecure(void **state)
{
    struct sigil_jwtsvid out;
    const char *why;
    char *p, *t;

    (void)state;
    /* Expired, from a trust domain we have no bundle for, wrong signature: still readable. */
    p = payload("spiffe://nobundle.org/x", "[\"a\",\"b\"]", (long long)NOW - 1000, "");
    t = forge("{\"alg\":\"ES256\",\"kid\":\"who\"}", p, ec256, "ES256");
    t[strlen(t) - 3] = t[strlen(t) - 3] == 'A' ? 'B' : 'A';
    assert_int_equal(sigil_jwtsvid_parse_insecure(t, strlen(t), &out, &why), 0);
    assert_string_equal(out.id.str, "spiffe://nobundle.org/x");
    assert_int_equal(out.exp, NOW - 1000);
    assert_string_equal(out.kid, "who");
    assert_true(sigil_jwtsvid_has_audience(&out, "b"));
    assert_false(sigil_jwtsvid_has_audience(&out, "c"));
    sigil_jwtsvid_clear(&out);
    free(t);
    free(p);
    /* Structure is still checked. */
    assert_int_equal(sigil_jwtsvid_parse_insecure("a.b", 3, &out, &why), SIGIL_ERR_INVALID);
    assert_null(out.claims);
    p = payload(SUB, "\"svc-a\"", (long long)NOW, "");
    t = forge("{\"alg\":\"none\",\"kid\":\"ec256\"}", p, NULL, NULL);
    assert_int_equal(sigil_jwtsvid_parse_insecure(t, strlen(t), &out, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "J-2"));
    free(t);
    free(p);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sign_validate), cmocka_unit_test(test_sign_options),
        cmocka_unit_test(test_alg),           cmocka_unit_test(test_alg_key_mismatch),
        cmocka_unit_test(test_other_algs),    cmocka_unit_test(test_kid),
        cmocka_unit_test(test_header_params), cmocka_unit_test(test_sub),
        cmocka_unit_test(test_trust_domain),  cmocka_unit_test(test_aud),
        cmocka_unit_test(test_times),         cmocka_unit_test(test_bad_signature),
        cmocka_unit_test(test_form),          cmocka_unit_test(test_parse_insecure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
