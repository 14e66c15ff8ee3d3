/* Keys, key files, CSRs, chain parsing and encoding: round trips, and the malformed,
 * oversized and hostile inputs each parser must refuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "sigil/err.h"
#include "sigil/spiffeid.h"
#include "sigil/x509.h"

static void
assert_why(const char *why, const char *want)
{
    assert_non_null(why);
    if (strstr(why, want) == NULL)
        fail_msg("why is \"%s\", expected it to contain \"%s\"", why, want);
}

static struct sigil_spiffeid
mkid(const char *s)
{
    struct sigil_spiffeid id;

    assert_int_equal(sigil_spiffeid_parse(s, strlen(s), &id, NULL), 0);
    return id;
}

/* A temp directory per test, removed with its files at the end. */
static int
mkdir_setup(void **state)
{
    char *dir = strdup("/tmp/sigil-x509-test-XXXXXX");

    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    *state = dir;
    return 0;
}

static int
mkdir_teardown(void **state)
{
    char cmd[256];

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", (char *)*state);
    assert_int_equal(system(cmd), 0);
    free(*state);
    return 0;
}

static char *
path_in(const char *dir, const char *name)
{
    char *p = NULL;

    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static X509 *
a_root(EVP_PKEY *key)
{
    struct sigil_x509_ca_params p = {
        .trust_domain = "example.org",
        .subject = {.common_name = "root"},
        .not_before = time(NULL) - 60,
        .not_after = time(NULL) + 3600,
        .path_len = -1,
    };
    X509 *x = NULL;

    assert_int_equal(sigil_x509_mint_root(&p, key, &x, NULL), 0);
    return x;
}

/* ---- keys ---- */

static void
test_key_generate_is_p256(void **state)
{
    (void)state;
    EVP_PKEY *k = NULL;
    char group[32];
    size_t n = 0;

    assert_int_equal(sigil_x509_key_generate(&k), 0);
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_group_name(k, group, sizeof group, &n), 1);
    assert_string_equal(group, "prime256v1");
    assert_int_equal(sigil_x509_key_check(k, NULL), 0);
    EVP_PKEY_free(k);
}

static void
test_key_pkcs8_roundtrip(void **state)
{
    (void)state;
    struct sigil_buf der = {0}, pem = {0}, spki = {0}, spki2 = {0};
    EVP_PKEY *k = NULL, *a = NULL, *b = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_x509_key_generate(&k), 0);
    assert_int_equal(sigil_x509_key_to_pkcs8_der(k, &der), 0);
    assert_int_equal(der.data[0], 0x30);
    assert_int_equal(sigil_x509_key_parse_der(der.data, der.len, &a, &why), 0);
    assert_int_equal(EVP_PKEY_eq(k, a), 1);
    assert_int_equal(sigil_x509_key_to_pkcs8_pem(k, &pem), 0);
    assert_non_null(memmem(pem.data, pem.len, "-----BEGIN PRIVATE KEY-----", 27));
    assert_int_equal(sigil_x509_key_parse_pem(pem.data, pem.len, &b, &why), 0);
    assert_int_equal(EVP_PKEY_eq(k, b), 1);
    /* the same PrivateKeyInfo as OpenSSL's own encoder writes */
    unsigned char *ref = NULL;
    PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(k);
    int reflen = i2d_PKCS8_PRIV_KEY_INFO(p8, &ref);
    assert_int_equal((size_t)reflen, der.len);
    assert_memory_equal(ref, der.data, der.len);
    OPENSSL_clear_free(ref, (size_t)reflen);
    PKCS8_PRIV_KEY_INFO_free(p8);
    /* output buffers must start empty (no realloc copies of a secret) */
    assert_int_equal(sigil_x509_key_to_pkcs8_der(k, &der), SIGIL_ERR_STATE);
    assert_int_equal(sigil_x509_key_to_pkcs8_pem(k, &pem), SIGIL_ERR_STATE);
    /* public halves */
    assert_int_equal(sigil_x509_pubkey_to_der(k, &spki), 0);
    assert_int_equal(sigil_x509_pubkey_to_der(a, &spki2), 0);
    assert_int_equal(spki.len, 91); /* P-256 SubjectPublicKeyInfo, uncompressed point */
    assert_memory_equal(spki.data, spki2.data, spki.len);
    sigil_buf_freezero(&der);
    sigil_buf_freezero(&pem);
    sigil_buf_free(&spki);
    sigil_buf_free(&spki2);
    EVP_PKEY_free(k);
    EVP_PKEY_free(a);
    EVP_PKEY_free(b);
}

static void
test_key_parse_malformed(void **state)
{
    (void)state;
    struct sigil_buf der = {0}, pem = {0};
    EVP_PKEY *k = NULL, *out = (EVP_PKEY *)1;
    const char *why = NULL;

    assert_int_equal(sigil_x509_key_generate(&k), 0);
    assert_int_equal(sigil_x509_key_to_pkcs8_der(k, &der), 0);
    /* trailing byte, truncation, empty */
    assert_int_equal(sigil_buf_append(&der, "\0", 1), 0);
    assert_int_equal(sigil_x509_key_parse_der(der.data, der.len, &out, &why), SIGIL_ERR_INVALID);
    assert_null(out);
    assert_int_equal(sigil_x509_key_parse_der(der.data, der.len - 10, &out, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_x509_key_parse_der(der.data, 0, &out, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_x509_key_parse_der((const uint8_t *)"garbage", 7, &out, &why),
                     SIGIL_ERR_INVALID);
    /* PEM: two keys, a wrong block type, an encrypted-PEM header, no block */
    assert_int_equal(sigil_x509_key_to_pkcs8_pem(k, &pem), 0);
    struct sigil_buf two = {0};
    assert_int_equal(sigil_buf_append(&two, pem.data, pem.len), 0);
    assert_int_equal(sigil_buf_append(&two, pem.data, pem.len), 0);
    assert_int_equal(sigil_x509_key_parse_pem(two.data, two.len, &out, &why), SIGIL_ERR_INVALID);
    assert_why(why, "more than one private key");
    sigil_buf_freezero(&two);
    const char *ec_legacy = "-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n";
    assert_int_equal(
        sigil_x509_key_parse_pem((const uint8_t *)ec_legacy, strlen(ec_legacy), &out, &why),
        SIGIL_ERR_INVALID);
    assert_why(why, "PKCS#8");
    const char *enc = "-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n"
                      "DEK-Info: AES-128-CBC,00000000000000000000000000000000\n\n"
                      "MAA=\n-----END PRIVATE KEY-----\n";
    assert_int_equal(sigil_x509_key_parse_pem((const uint8_t *)enc, strlen(enc), &out, &why),
                     SIGIL_ERR_INVALID);
    assert_null(out);
    assert_why(why, "headers");
    assert_int_equal(sigil_x509_key_parse_pem((const uint8_t *)"hello\n", 6, &out, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "no private key");
    /* an unfinished block */
    assert_int_equal(sigil_x509_key_parse_pem(pem.data, pem.len - 10, &out, &why),
                     SIGIL_ERR_INVALID);
    sigil_buf_freezero(&der);
    sigil_buf_freezero(&pem);
    EVP_PKEY_free(k);
}

static void
test_key_check_refuses_weak_or_odd(void **state)
{
    (void)state;
    EVP_PKEY *p224 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-224");
    EVP_PKEY *rsa1024 = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    struct sigil_buf der = {0};
    EVP_PKEY *out = NULL;
    const char *why = NULL;

    assert_non_null(p224);
    assert_non_null(rsa1024);
    assert_non_null(ed);
    assert_non_null(p384);
    assert_int_equal(sigil_x509_key_check(p224, &why), SIGIL_ERR_UNSUPPORTED);
    assert_int_equal(sigil_x509_key_check(rsa1024, &why), SIGIL_ERR_UNSUPPORTED);
    assert_int_equal(sigil_x509_key_check(ed, &why), SIGIL_ERR_UNSUPPORTED);
    assert_int_equal(sigil_x509_key_check(p384, &why), 0);
    /* and the parsers apply it */
    assert_int_equal(sigil_x509_key_to_pkcs8_der(p224, &der), 0);
    assert_int_equal(sigil_x509_key_parse_der(der.data, der.len, &out, &why),
                     SIGIL_ERR_UNSUPPORTED);
    assert_null(out);
    sigil_buf_freezero(&der);
    EVP_PKEY_free(p224);
    EVP_PKEY_free(rsa1024);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(p384);
}

static void
test_key_file_0600_roundtrip(void **state)
{
    const char *dir = *state;
    char *path = path_in(dir, "key.pem");
    EVP_PKEY *k = NULL, *back = NULL, *k2 = NULL;
    const char *why = NULL;
    struct stat st;

    assert_int_equal(sigil_x509_key_generate(&k), 0);
    assert_int_equal(sigil_x509_key_write_file(path, k), 0);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(sigil_x509_key_read_file(path, &back, &why), 0);
    assert_int_equal(EVP_PKEY_eq(k, back), 1);
    /* rewriting replaces it atomically, still 0600 */
    assert_int_equal(sigil_x509_key_generate(&k2), 0);
    assert_int_equal(sigil_x509_key_write_file(path, k2), 0);
    EVP_PKEY_free(back);
    assert_int_equal(sigil_x509_key_read_file(path, &back, &why), 0);
    assert_int_equal(EVP_PKEY_eq(k2, back), 1);
    assert_int_equal(lstat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    /* no temp file is left behind */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
    EVP_PKEY_free(k);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(back);
    free(path);
}

/* A symlink at the key path is replaced, never written through. */
static void
test_key_file_never_follows_symlink(void **state)
{
    const char *dir = *state;
    char *path = path_in(dir, "key.pem"), *target = path_in(dir, "victim");
    EVP_PKEY *k = NULL;
    struct sigil_buf b = {0};
    const char *why = NULL;
    struct stat st;
    FILE *f;

    f = fopen(target, "w");
    assert_non_null(f);
    fputs("precious\n", f);
    fclose(f);
    assert_int_equal(symlink(target, path), 0);
    assert_int_equal(sigil_x509_key_generate(&k), 0);
    assert_int_equal(sigil_x509_key_write_file(path, k), 0);
    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(sigil_x509_file_read(target, &b, &why), 0);
    assert_int_equal(b.len, 9);
    assert_memory_equal(b.data, "precious\n", 9);
    /* a directory that does not exist: an I/O error, nothing written */
    char *nodir = path_in(dir, "no/such/key.pem");
    assert_int_equal(sigil_x509_key_write_file(nodir, k), SIGIL_ERR_IO);
    free(nodir);
    sigil_buf_free(&b);
    EVP_PKEY_free(k);
    free(path);
    free(target);
}

static void
test_file_read_caps(void **state)
{
    const char *dir = *state;
    char *big = path_in(dir, "big"), *missing = path_in(dir, "missing");
    struct sigil_buf b = {0};
    EVP_PKEY *k = NULL;
    const char *why = NULL;

    assert_int_equal(truncate(big, 0), -1); /* does not exist yet */
    FILE *f = fopen(big, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(truncate(big, SIGIL_X509_INPUT_MAX + 1), 0);
    assert_int_equal(sigil_x509_file_read(big, &b, &why), SIGIL_ERR_RANGE);
    assert_int_equal(sigil_x509_key_read_file(big, &k, &why), SIGIL_ERR_RANGE);
    assert_null(k);
    assert_int_equal(truncate(big, SIGIL_X509_INPUT_MAX), 0);
    assert_int_equal(sigil_x509_file_read(big, &b, &why), 0);
    assert_int_equal(b.len, SIGIL_X509_INPUT_MAX);
    assert_int_equal(sigil_x509_file_read(missing, &b, &why), SIGIL_ERR_NOTFOUND);
    assert_int_equal(sigil_x509_file_read(dir, &b, &why), SIGIL_ERR_IO);
    assert_why(why, "not a regular file");
    sigil_buf_free(&b);
    free(big);
    free(missing);
}

/* ---- CSRs ---- */

static void
test_csr_roundtrip(void **state)
{
    (void)state;
    struct sigil_spiffeid id = mkid("spiffe://example.org/ns/a"), got;
    struct sigil_buf der = {0};
    X509_REQ *req = NULL, *req2 = NULL;
    EVP_PKEY *k = NULL, *pub = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_x509_key_generate(&k), 0);
    assert_int_equal(sigil_x509_csr_create(k, &id, &der), 0);
    assert_int_equal(sigil_x509_csr_parse(der.data, der.len, &req, &why), 0);
    assert_int_equal(sigil_x509_csr_pubkey(req, &pub), 0);
    assert_int_equal(EVP_PKEY_eq(k, pub), 1);
    assert_int_equal(sigil_x509_csr_spiffeid(req, &got, &why), 0);
    assert_string_equal(got.str, id.str);
    assert_int_equal(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 0);
    /* the same CSR as PEM */
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
    char *pem = NULL;
    long pemlen = BIO_get_mem_data(bio, &pem);
    assert_int_equal(sigil_x509_csr_parse((const uint8_t *)pem, (size_t)pemlen, &req2, &why), 0);
    assert_int_equal(sigil_x509_csr_spiffeid(req2, &got, &why), 0);
    assert_string_equal(got.str, id.str);
    BIO_free(bio);
    X509_REQ_free(req2);
    X509_REQ_free(req);
    EVP_PKEY_free(pub);
    sigil_buf_free(&der);
    /* without an ID */
    assert_int_equal(sigil_x509_csr_create(k, NULL, &der), 0);
    assert_int_equal(sigil_x509_csr_parse(der.data, der.len, &req, &why), 0);
    assert_int_equal(sigil_x509_csr_spiffeid(req, &got, &why), SIGIL_ERR_NOTFOUND);
    X509_REQ_free(req);
    sigil_buf_free(&der);
    EVP_PKEY_free(k);
}

static void
test_csr_malformed(void **state)
{
    (void)state;
    struct sigil_spiffeid id = mkid("spiffe://example.org/ns/a");
    struct sigil_buf der = {0}, big = {0};
    X509_REQ *req = NULL;
    EVP_PKEY *k = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_x509_key_generate(&k), 0);
    assert_int_equal(sigil_x509_csr_create(k, &id, &der), 0);
    /* a flipped bit in the signature: parses, does not verify */
    der.data[der.len - 1] ^= 0x01;
    assert_int_equal(sigil_x509_csr_parse(der.data, der.len, &req, &why), SIGIL_ERR_VERIFY);
    assert_null(req);
    der.data[der.len - 1] ^= 0x01;
    /* a changed requested ID (inside the signed part) */
    uint8_t *at = memmem(der.data, der.len, "ns/a", 4);
    assert_non_null(at);
    at[3] = 'b';
    assert_int_equal(sigil_x509_csr_parse(der.data, der.len, &req, &why), SIGIL_ERR_VERIFY);
    assert_why(why, "self-signature");
    at[3] = 'a';
    assert_int_equal(sigil_x509_csr_parse(der.data, der.len - 1, &req, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_buf_append(&der, "\0", 1), 0);
    assert_int_equal(sigil_x509_csr_parse(der.data, der.len, &req, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_x509_csr_parse(der.data, 0, &req, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_x509_csr_parse((const uint8_t *)"hello", 5, &req, &why),
                     SIGIL_ERR_INVALID);
    const char *cert_pem = "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
    assert_int_equal(sigil_x509_csr_parse((const uint8_t *)cert_pem, strlen(cert_pem), &req, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "not a CERTIFICATE REQUEST");
    assert_int_equal(sigil_buf_reserve(&big, SIGIL_X509_CSR_MAX + 1), 0);
    memset(big.data, 'A', SIGIL_X509_CSR_MAX + 1);
    big.len = SIGIL_X509_CSR_MAX + 1;
    assert_int_equal(sigil_x509_csr_parse(big.data, big.len, &req, &why), SIGIL_ERR_RANGE);
    assert_null(req);
    sigil_buf_free(&big);
    sigil_buf_free(&der);
    EVP_PKEY_free(k);
}

/* A CSR with two URI SANs (made with OpenSSL) is refused by sigil_x509_csr_spiffeid. */
static void
test_csr_two_uris(void **state)
{
    (void)state;
    X509_REQ *req = X509_REQ_new(), *parsed = NULL;
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *ext;
    struct sigil_spiffeid got;
    unsigned char *der = NULL;
    EVP_PKEY *k = NULL;
    const char *why = NULL;
    int len;

    assert_int_equal(sigil_x509_key_generate(&k), 0);
    assert_int_equal(X509_REQ_set_pubkey(req, k), 1);
    ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
                              "URI:spiffe://example.org/a,URI:spiffe://example.org/b");
    assert_non_null(ext);
    assert_true(sk_X509_EXTENSION_push(exts, ext) > 0);
    assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
    assert_true(X509_REQ_sign(req, k, EVP_sha256()) > 0);
    assert_true((len = i2d_X509_REQ(req, &der)) > 0);
    assert_int_equal(sigil_x509_csr_parse(der, (size_t)len, &parsed, &why), 0);
    assert_int_equal(sigil_x509_csr_spiffeid(parsed, &got, &why), SIGIL_ERR_INVALID);
    assert_why(why, "X-1");
    OPENSSL_free(der);
    X509_REQ_free(parsed);
    X509_REQ_free(req);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    EVP_PKEY_free(k);
}

/* ---- chains ---- */

static void
test_chain_parse_malformed(void **state)
{
    (void)state;
    struct sigil_buf der = {0}, pem = {0}, b = {0};
    STACK_OF(X509) *out = NULL;
    EVP_PKEY *k = NULL;
    const char *why = NULL;

    assert_int_equal(sigil_x509_key_generate(&k), 0);
    X509 *x = a_root(k);
    assert_int_equal(sigil_x509_cert_to_der(x, &der), 0);
    assert_int_equal(sigil_x509_cert_to_pem(x, &pem), 0);

    /* DER: exactly 16 is fine, 17 is too many; trailing junk and truncation are errors */
    for (int i = 0; i < SIGIL_X509_CHAIN_MAX; i++)
        assert_int_equal(sigil_buf_append(&b, der.data, der.len), 0);
    assert_int_equal(sigil_x509_chain_parse_der(b.data, b.len, &out, &why), 0);
    assert_int_equal(sk_X509_num(out), SIGIL_X509_CHAIN_MAX);
    sk_X509_pop_free(out, X509_free);
    assert_int_equal(sigil_buf_append(&b, der.data, der.len), 0);
    assert_int_equal(sigil_x509_chain_parse_der(b.data, b.len, &out, &why), SIGIL_ERR_RANGE);
    assert_null(out);
    b.len = 0;
    assert_int_equal(sigil_buf_append(&b, der.data, der.len), 0);
    assert_int_equal(sigil_buf_append(&b, "\x30\x00", 2), 0);
    assert_int_equal(sigil_x509_chain_parse_der(b.data, b.len, &out, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_x509_chain_parse_der(der.data, der.len - 1, &out, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_x509_chain_parse_der(der.data, 0, &out, &why), SIGIL_ERR_INVALID);

    /* PEM: 17 blocks, a foreign block, a header, bad base64, oversize */
    b.len = 0;
    for (int i = 0; i <= SIGIL_X509_CHAIN_MAX; i++)
        assert_int_equal(sigil_buf_append(&b, pem.data, pem.len), 0);
    assert_int_equal(sigil_x509_chain_parse_pem(b.data, b.len, &out, &why), SIGIL_ERR_RANGE);
    b.len = 0;
    assert_int_equal(sigil_buf_append(&b, pem.data, pem.len), 0);
    assert_int_equal(
        sigil_buf_append_str(&b, "-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n"), 0);
    assert_int_equal(sigil_x509_chain_parse_pem(b.data, b.len, &out, &why), SIGIL_ERR_INVALID);
    assert_why(why, "CERTIFICATE blocks only");
    b.len = 0;
    assert_int_equal(sigil_buf_append_str(&b, "-----BEGIN CERTIFICATE-----\nX-Header: 1\n\n"), 0);
    assert_int_equal(sigil_buf_append(&b, pem.data + 28, pem.len - 28), 0);
    assert_int_equal(sigil_x509_chain_parse_pem(b.data, b.len, &out, &why), SIGIL_ERR_INVALID);
    assert_why(why, "headers");
    b.len = 0;
    assert_int_equal(
        sigil_buf_append_str(&b, "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
        0);
    assert_int_equal(sigil_x509_chain_parse_pem(b.data, b.len, &out, &why), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_x509_chain_parse_pem(pem.data, pem.len - 5, &out, &why),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_x509_chain_parse_pem(pem.data, SIGIL_X509_INPUT_MAX + 1, &out, &why),
                     SIGIL_ERR_RANGE);
    /* text around blocks is skipped (RFC 7468 §2), as openssl's own output has */
    b.len = 0;
    assert_int_equal(sigil_buf_append_str(&b, "subject=CN = root\n"), 0);
    assert_int_equal(sigil_buf_append(&b, pem.data, pem.len), 0);
    assert_int_equal(sigil_buf_append_str(&b, "trailing words\n"), 0);
    assert_int_equal(sigil_x509_chain_parse_pem(b.data, b.len, &out, &why), 0);
    assert_int_equal(sk_X509_num(out), 1);
    sk_X509_pop_free(out, X509_free);
    out = NULL;

    /* certs and key: no key, two keys */
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *certs = NULL;
    struct sigil_buf kp = {0};
    assert_int_equal(sigil_x509_pem_parse_certs_and_key(pem.data, pem.len, &certs, &key, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "no private key");
    assert_int_equal(sigil_x509_key_to_pkcs8_pem(k, &kp), 0);
    b.len = 0;
    assert_int_equal(sigil_buf_append(&b, kp.data, kp.len), 0);
    assert_int_equal(sigil_buf_append(&b, pem.data, pem.len), 0);
    assert_int_equal(sigil_x509_pem_parse_certs_and_key(b.data, b.len, &certs, &key, &why), 0);
    assert_true(sigil_x509_key_matches_cert(key, sk_X509_value(certs, 0)));
    sk_X509_pop_free(certs, X509_free);
    EVP_PKEY_free(key);
    assert_int_equal(sigil_buf_append(&b, kp.data, kp.len), 0);
    assert_int_equal(sigil_x509_pem_parse_certs_and_key(b.data, b.len, &certs, &key, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "more than one private key");
    assert_null(certs);
    assert_null(key);
    assert_int_equal(sigil_x509_pem_parse_certs_and_key(kp.data, kp.len, &certs, &key, &why),
                     SIGIL_ERR_INVALID);
    assert_why(why, "no certificate");

    sigil_buf_freezero(&kp);
    sigil_buf_freezero(&b);
    sigil_buf_free(&der);
    sigil_buf_free(&pem);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void
test_cert_times_and_id(void **state)
{
    (void)state;
    EVP_PKEY *k = NULL;
    struct sigil_x509_ca_params p = {
        .trust_domain = "example.org",
        .subject = {.common_name = "r"},
        .not_before = 1700000000,
        .not_after = 2600000000, /* after 2050: GeneralizedTime */
        .path_len = -1,
    };
    struct sigil_spiffeid id;
    const char *why = NULL;
    X509 *x = NULL;
    time_t t;

    assert_int_equal(sigil_x509_key_generate(&k), 0);
    assert_int_equal(sigil_x509_mint_root(&p, k, &x, &why), 0);
    assert_int_equal(sigil_x509_cert_not_before(x, &t), 0);
    assert_int_equal(t, 1700000000);
    assert_int_equal(sigil_x509_cert_not_after(x, &t), 0);
    assert_int_equal(t, 2600000000);
    assert_int_equal(ASN1_STRING_type(X509_get0_notAfter(x)), V_ASN1_GENERALIZEDTIME);
    assert_int_equal(ASN1_STRING_type(X509_get0_notBefore(x)), V_ASN1_UTCTIME);
    assert_int_equal(sigil_x509_cert_spiffeid(x, &id, &why), 0);
    assert_string_equal(id.str, "spiffe://example.org");
    assert_false(sigil_spiffeid_has_path(&id));
    X509_free(x);
    EVP_PKEY_free(k);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_generate_is_p256),
        cmocka_unit_test(test_key_pkcs8_roundtrip),
        cmocka_unit_test(test_key_parse_malformed),
        cmocka_unit_test(test_key_check_refuses_weak_or_odd),
        cmocka_unit_test_setup_teardown(test_key_file_0600_roundtrip, mkdir_setup, mkdir_teardown),
        cmocka_unit_test_setup_teardown(test_key_file_never_follows_symlink, mkdir_setup,
                                        mkdir_teardown),
        cmocka_unit_test_setup_teardown(test_file_read_caps, mkdir_setup, mkdir_teardown),
        cmocka_unit_test(test_csr_roundtrip),
        cmocka_unit_test(test_csr_malformed),
        cmocka_unit_test(test_csr_two_uris),
        cmocka_unit_test(test_chain_parse_malformed),
        cmocka_unit_test(test_cert_times_and_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
