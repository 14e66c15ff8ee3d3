/* Unit tests of the CLI's output side (server/cli_fmt.c): API answers to aligned text, the
 * escaping of hostile strings (controls, bidi overrides, broken UTF-8), error objects, and
 * bundles to PEM; wrong-typed members are skipped, never trusted. */
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

/* The CLI is compiled into sigil-server, not sigil_server_core: the test compiles it in. */
#include "../../../server/cli_fmt.c"

static json_t *
load(const char *s)
{
    json_error_t e;
    json_t *j = json_loads(s, JSON_REJECT_DUPLICATES, &e);

    if (j == NULL)
        fail_msg("test JSON does not parse: %s", e.text);
    return j;
}

/* Runs fn over the JSON text and compares the output with want. */
static void
expect_text(int (*fn)(struct sigil_buf *, const json_t *), const char *json, const char *want)
{
    struct sigil_buf b = {0};
    json_t *j = load(json);

    assert_int_equal(fn(&b, j), 0);
    assert_int_equal(sigil_buf_append(&b, "", 1), 0);
    assert_string_equal((char *)b.data, want);
    sigil_buf_free(&b);
    json_decref(j);
}

static void
expect_safe(const char *in, size_t len, const char *want)
{
    struct sigil_buf b = {0};

    assert_int_equal(sigil_cli_fmt_safe(&b, in, len), 0);
    assert_int_equal(sigil_buf_append(&b, "", 1), 0);
    assert_string_equal((char *)b.data, want);
    sigil_buf_free(&b);
}

static void
test_safe(void **state)
{
    (void)state;
    expect_safe("plain text: unix:uid:1000", 25, "plain text: unix:uid:1000");
    expect_safe("caf\xc3\xa9 \xe2\x9c\x93", 9, "caf\xc3\xa9 \xe2\x9c\x93");
    expect_safe("a\x1b[2Jb", 6, "a\\x1B[2Jb");
    expect_safe("tab\there\nnl\r", 12, "tab\\x09here\\x0Anl\\x0D");
    expect_safe("del\x7f", 4, "del\\x7F");
    expect_safe("c1\xc2\x85", 4, "c1\\x85");
    expect_safe("rlo\xe2\x80\xae!", 7, "rlo\\u{202E}!");
    expect_safe("lri\xe2\x81\xa6", 6, "lri\\u{2066}");
    expect_safe("bad\xff\xc3", 5, "bad\\xFF\\xC3");
    expect_safe("overlong\xc0\xaf", 10, "overlong\\xC0\\xAF");
    expect_safe("back\\slash", 10, "back\\\\slash");
    expect_safe("nul\0x", 5, "nul\\x00x");
    expect_safe("", 0, "");
}

static void
test_entry(void **state)
{
    (void)state;
    expect_text(sigil_cli_fmt_entry,
                "{\"id\":\"6f1c2a4e-0b7d-4c55-9a0e-1d2c3b4a5f60\",\"spiffe_id\":\"spiffe://td/a\","
                "\"parent_id\":\"spiffe://td/n\",\"revision\":7,\"team\":\"payments\","
                "\"x509_svid_ttl\":5400,\"jwt_svid_ttl\":0,\"selectors\":[\"unix:uid:1\","
                "\"unix:gid:2\"],\"federates_with\":[\"b.org\"],\"dns_names\":[\"a.td\"],"
                "\"admin\":true,\"downstream\":false,\"hint\":\"h\",\"expires_at\":"
                "\"2027-01-01T00:00:00Z\",\"created_at\":\"c\",\"updated_at\":\"u\"}",
                "Entry ID           : 6f1c2a4e-0b7d-4c55-9a0e-1d2c3b4a5f60\n"
                "SPIFFE ID          : spiffe://td/a\n"
                "Parent ID          : spiffe://td/n\n"
                "Revision           : 7\n"
                "Team               : payments\n"
                "X509-SVID TTL      : 1h30m\n"
                "JWT-SVID TTL       : default\n"
                "Expires at         : 2027-01-01T00:00:00Z\n"
                "Selector           : unix:uid:1\n"
                "Selector           : unix:gid:2\n"
                "FederatesWith      : b.org\n"
                "DNS name           : a.td\n"
                "Admin              : true\n"
                "Hint               : h\n"
                "Created at         : c\n"
                "Updated at         : u\n");
    /* wrong types are skipped; a missing TTL is the default; strings are escaped */
    expect_text(sigil_cli_fmt_entry,
                "{\"id\":5,\"spiffe_id\":\"spiffe://td/\\u001b\",\"revision\":\"7\","
                "\"selectors\":\"unix:uid:1\",\"dns_names\":[1,\"ok\"],\"admin\":\"true\","
                "\"x509_svid_ttl\":-5,\"hint\":\"\"}",
                "SPIFFE ID          : spiffe://td/\\x1B\n"
                "X509-SVID TTL      : invalid\n"
                "JWT-SVID TTL       : default\n"
                "DNS name           : ok\n");
}

static void
test_lists(void **state)
{
    (void)state;
    expect_text(sigil_cli_fmt_entries, "[]", "Found 0 entries\n\n");
    expect_text(sigil_cli_fmt_entries, "{}", "Found 0 entries\n\n");
    expect_text(sigil_cli_fmt_entries, "[{\"id\":\"x\"}, 3]",
                "Found 2 entries\n\n"
                "Entry ID           : x\n"
                "X509-SVID TTL      : default\n"
                "JWT-SVID TTL       : default\n\n");
    expect_text(sigil_cli_fmt_agents,
                "[{\"spiffe_id\":\"spiffe://td/sigil/agent/n\",\"attestation_type\":\"join_token\","
                "\"serial\":\"0a\",\"expires_at\":\"e\",\"banned\":false,\"can_reattest\":true,"
                "\"selectors\":[\"join_token:n\"]}]",
                "Found 1 attested agent:\n\n"
                "SPIFFE ID          : spiffe://td/sigil/agent/n\n"
                "Attestation type   : join_token\n"
                "Serial number      : 0a\n"
                "Expires at         : e\n"
                "Banned             : false\n"
                "Can re-attest      : true\n"
                "Selector           : join_token:n\n\n");
    expect_text(sigil_cli_fmt_token,
                "{\"token\":\"t0k\",\"expires_at\":\"e\",\"agent_id\":\"spiffe://td/a\"}",
                "Token              : t0k\n"
                "Expires at         : e\n"
                "Agent ID           : spiffe://td/a\n");
    expect_text(sigil_cli_fmt_federations,
                "[{\"trust_domain\":\"b.org\",\"bundle_endpoint_url\":\"https://b.org/x\","
                "\"profile\":\"https_web\"},{\"trust_domain\":\"c.org\",\"bundle_endpoint_url\":"
                "\"https://c.org\",\"profile\":\"https_spiffe\",\"endpoint_spiffe_id\":"
                "\"spiffe://c.org/s\"}]",
                "Found 2 federation relationships:\n\n"
                "Trust domain       : b.org\n"
                "Bundle endpoint    : https://b.org/x\n"
                "Profile            : https_web\n\n"
                "Trust domain       : c.org\n"
                "Bundle endpoint    : https://c.org\n"
                "Profile            : https_spiffe\n"
                "Endpoint SPIFFE ID : spiffe://c.org/s\n\n");
    expect_text(sigil_cli_fmt_audit,
                "[{\"id\":3,\"at\":\"t\",\"actor\":\"uid:0\",\"action\":\"entry.update\","
                "\"object_type\":\"entry\",\"object_id\":\"x\",\"revision\":2,\"before\":"
                "{\"hint\":\"\\u202e\"},\"after\":null}]",
                "Found 1 audit record\n\n"
                "Record ID          : 3\n"
                "At                 : t\n"
                "Actor              : uid:0\n"
                "Action             : entry.update\n"
                "Object type        : entry\n"
                "Object ID          : x\n"
                "Revision           : 2\n"
                "Before             : {\"hint\":\"\\\\u202E\"}\n"
                "After              : null\n\n");
}

static void
expect_error(const char *body, long status, const char *want_code, const char *want_msg)
{
    char code[64], msg[256];

    sigil_cli_fmt_error(body, strlen(body), status, code, sizeof code, msg, sizeof msg);
    assert_string_equal(code, want_code);
    assert_string_equal(msg, want_msg);
}

static void
test_error(void **state)
{
    char big[600];

    (void)state;
    expect_error("{\"error\":{\"code\":\"policy.ttl\",\"message\":\"ttl: at most 1h\"}}", 400,
                 "policy.ttl", "ttl: at most 1h");
    expect_error("{\"error\":{\"message\":\"no code\"}}", 400, "", "no code");
    expect_error("{\"error\":{\"code\":\"x\",\"message\":\"a\\u001b[1mb\"}}", 400, "x",
                 "a\\x1B[1mb");
    expect_error("{\"error\":{\"code\":\"x\"}}", 403, "",
                 "the server answered HTTP 403: "
                 "{\"error\":{\"code\":\"x\"}}");
    expect_error("{\"error\":1,\"error\":2}", 500, "",
                 "the server answered HTTP 500: {\"error\":1,\"error\":2}");
    expect_error("", 502, "", "the server answered HTTP 502");
    expect_error("{\"error\":\"not found\"}", 404, "", "not found (HTTP 404)");
    expect_error("{\"error\":\"a\\nb\"}", 404, "", "a\\x0Ab (HTTP 404)");
    expect_error("bad\x1b gateway", 502, "", "the server answered HTTP 502: bad\\x1B gateway");
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    {
        char code[64], msg[256];

        sigil_cli_fmt_error(big, strlen(big), 500, code, sizeof code, msg, sizeof msg);
        assert_non_null(strstr(msg, "xxx..."));
        assert_int_equal(strlen(msg), strlen("the server answered HTTP 500: ") + 160 + 3);
    }
    /* a message longer than the room is cut, still NUL-terminated */
    {
        char code[4], msg[8];

        const char *body = "{\"error\":{\"code\":\"abcdef\",\"message\":\"0123456789\"}}";

        sigil_cli_fmt_error(body, strlen(body), 400, code, sizeof code, msg, sizeof msg);
        assert_string_equal(code, "abc");
        assert_string_equal(msg, "0123456");
    }
}

/* A self-signed P-256 certificate, as base64 DER and as PEM. */
static void
make_cert(char **b64, char **pem)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    unsigned char *der = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    char *p;
    long n;
    int len;

    assert_non_null(key);
    assert_non_null(x);
    assert_non_null(bio);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"test CA", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, key);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    len = i2d_X509(x, &der);
    assert_true(len > 0);
    *b64 = sigil_b64_encode(der, (size_t)len);
    assert_non_null(*b64);
    assert_int_equal(PEM_write_bio_X509(bio, x), 1);
    n = BIO_get_mem_data(bio, &p);
    *pem = strndup(p, (size_t)n);
    OPENSSL_free(der);
    BIO_free(bio);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void
test_bundle_pem(void **state)
{
    struct sigil_buf b = {0};
    char *b64, *pem, doc[4096], want[8192];
    json_t *j;

    (void)state;
    make_cert(&b64, &pem);
    snprintf(doc, sizeof doc,
             "{\"keys\":[{\"use\":\"jwt-svid\",\"kid\":\"k\",\"x5c\":[\"%s\"]},"
             "{\"use\":\"x509-svid\",\"x5c\":[\"%s\"]},{\"use\":\"x509-svid\"},\"junk\"],"
             "\"spiffe_sequence\":9}",
             b64, b64);
    expect_text(sigil_cli_fmt_bundle_pem, doc, pem);
    snprintf(want, sizeof want, "Found 1 federated bundle\n\n* b.org\nSequence           : 9\n%s\n",
             pem);
    {
        char map[4200];

        snprintf(map, sizeof map, "{\"trust_domains\":{\"b.org\":%s}}", doc);
        expect_text(sigil_cli_fmt_bundle_map, map, want);
    }
    /* a certificate that is not base64 DER X.509, or has bytes after it, is refused */
    j = load("{\"keys\":[{\"use\":\"x509-svid\",\"x5c\":[\"bm90IGEgY2VydA==\"]}]}");
    assert_int_equal(sigil_cli_fmt_bundle_pem(&b, j), SIGIL_ERR_INVALID);
    json_decref(j);
    j = load("{\"keys\":[{\"use\":\"x509-svid\",\"x5c\":[\"%%%\"]}]}");
    assert_int_equal(sigil_cli_fmt_bundle_pem(&b, j), SIGIL_ERR_INVALID);
    json_decref(j);
    j = load("{\"keys\":{}}");
    assert_int_equal(sigil_cli_fmt_bundle_pem(&b, j), SIGIL_ERR_INVALID);
    json_decref(j);
    j = load("{\"trust_domains\":[]}");
    assert_int_equal(sigil_cli_fmt_bundle_map(&b, j), SIGIL_ERR_INVALID);
    json_decref(j);
    assert_int_equal(b.len, 0);
    sigil_buf_free(&b);
    free(b64);
    free(pem);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safe),       cmocka_unit_test(test_entry),
        cmocka_unit_test(test_lists),      cmocka_unit_test(test_error),
        cmocka_unit_test(test_bundle_pem),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
