/* X.509 plumbing for SVIDs: P-256 keys and 0600 key files, PKCS#8 import/export, parsing
 * PEM and concatenated-DER chains and "certificates + key" PEM files with hard caps, and
 * DER/PEM encoding. Key bytes we decode or encode are wiped before they are freed. */
#include "sigil/err.h"
#include "sigil/x509.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

static int
fail(const char **why, int err, const char *text)
{
    if (why != NULL)
        *why = text;
    return err;
}

/* ---- keys ---- */

int
sigil_x509_key_generate(EVP_PKEY **out)
{
    *out = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (*out == NULL) {
        ERR_clear_error();
        return SIGIL_ERR_CRYPTO;
    }
    return 0;
}

int
sigil_x509_key_check(const EVP_PKEY *key, const char **why)
{
    char group[64];
    size_t glen = 0;
    int nid;

    if (key == NULL)
        return fail(why, SIGIL_ERR_INVALID, "no key");
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC:
        /* a named curve only: explicit parameters are refused like RFC 5480 does */
        if (EVP_PKEY_get_group_name(key, group, sizeof group, &glen) != 1) {
            ERR_clear_error();
            return fail(why, SIGIL_ERR_UNSUPPORTED, "key: EC key without a named curve");
        }
        nid = OBJ_txt2nid(group);
        if (nid != NID_X9_62_prime256v1 && nid != NID_secp384r1 && nid != NID_secp521r1)
            return fail(why, SIGIL_ERR_UNSUPPORTED, "key: EC curve is not P-256, P-384 or P-521");
        return 0;
    case EVP_PKEY_RSA:
        if (EVP_PKEY_get_bits(key) < 2048 || EVP_PKEY_get_bits(key) > 8192)
            return fail(why, SIGIL_ERR_UNSUPPORTED, "key: RSA key is not 2048 to 8192 bits");
        return 0;
    default:
        return fail(why, SIGIL_ERR_UNSUPPORTED, "key: only EC and RSA keys are supported");
    }
}

int
sigil_x509_key_parse_der(const uint8_t *p, size_t n, EVP_PKEY **out, const char **why)
{
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    const unsigned char *q = p;
    EVP_PKEY *key = NULL;
    int r;

    *out = NULL;
    if (n == 0 || n > SIGIL_X509_INPUT_MAX) {
        r = fail(why, n ? SIGIL_ERR_RANGE : SIGIL_ERR_INVALID, "key: empty or oversized key");
        goto out;
    }
    p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &q, (long)n);
    if (p8 == NULL || q != p + n) {
        r = fail(why, SIGIL_ERR_INVALID, "key: not an unencrypted PKCS#8 PrivateKeyInfo");
        goto out;
    }
    if ((key = EVP_PKCS82PKEY(p8)) == NULL) {
        r = fail(why, SIGIL_ERR_INVALID, "key: PKCS#8 holds no usable private key");
        goto out;
    }
    if ((r = sigil_x509_key_check(key, why)) != 0)
        goto out;
    *out = key;
    key = NULL;
    r = 0;
out:
    if (r != 0)
        ERR_clear_error();
    EVP_PKEY_free(key);
    PKCS8_PRIV_KEY_INFO_free(p8); /* wipes the key octets (OpenSSL's free callback) */
    return r;
}

/* ---- PEM blocks ---- */

/* One PEM block; the bytes live in OpenSSL's secure heap because a block may be a key. */
struct pem_block {
    char *name;
    char *header;
    unsigned char *data;
    long len;
};

static void
pem_block_clear(struct pem_block *b)
{
    if (b->data != NULL)
        OPENSSL_secure_clear_free(b->data, (size_t)b->len);
    OPENSSL_secure_free(b->name);
    OPENSSL_secure_free(b->header);
    memset(b, 0, sizeof *b);
}

/* Reads the next block: 1 = got one, 0 = no more, <0 = error. Text before a block is
 * skipped (RFC 7468 lets parsers do so); headers (encrypted PEM) are refused. */
static int
pem_next(BIO *bio, struct pem_block *b, const char **why)
{
    unsigned long e;

    pem_block_clear(b);
    ERR_clear_error();
    if (PEM_read_bio_ex(bio, &b->name, &b->header, &b->data, &b->len,
                        PEM_FLAG_SECURE | PEM_FLAG_ONLY_B64) == 1) {
        if (b->header != NULL && b->header[0] != '\0')
            return fail(why, SIGIL_ERR_INVALID, "PEM: headers (encrypted PEM) are not accepted");
        return 1;
    }
    e = ERR_peek_last_error();
    ERR_clear_error();
    if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
        return 0;
    return fail(why, SIGIL_ERR_INVALID, "PEM: malformed block (bad base64 or end line)");
}

static int
pem_bio(const uint8_t *p, size_t n, BIO **bio, const char **why)
{
    *bio = NULL;
    if (n > SIGIL_X509_INPUT_MAX)
        return fail(why, SIGIL_ERR_RANGE, "PEM: input over 1 MiB");
    if (n == 0)
        return fail(why, SIGIL_ERR_INVALID, "PEM: empty input");
    if ((*bio = BIO_new_mem_buf(p, (int)n)) == NULL)
        return fail(why, SIGIL_ERR_NOMEM, "out of memory");
    return 0;
}

/* Decodes exactly one DER certificate. */
static int
der_cert(const unsigned char *p, long len, X509 **out, const char **why)
{
    const unsigned char *q = p;

    *out = d2i_X509(NULL, &q, len);
    if (*out == NULL || q != p + len) {
        X509_free(*out);
        *out = NULL;
        ERR_clear_error();
        return fail(why, SIGIL_ERR_INVALID, "X.509: malformed DER certificate");
    }
    return 0;
}

static int
push_cert(STACK_OF(X509) *sk, X509 *cert, const char **why)
{
    if (sk_X509_num(sk) >= SIGIL_X509_CHAIN_MAX) {
        X509_free(cert);
        return fail(why, SIGIL_ERR_RANGE, "X.509: more than 16 certificates");
    }
    if (sk_X509_push(sk, cert) <= 0) {
        X509_free(cert);
        return fail(why, SIGIL_ERR_NOMEM, "out of memory");
    }
    return 0;
}

/* The common walk: certificates into *certs; one PRIVATE KEY into *key if key != NULL,
 * else a key block is an error. */
static int
pem_walk(const uint8_t *p, size_t n, STACK_OF(X509) **certs, EVP_PKEY **key, const char **why)
{
    struct pem_block b = {0};
    STACK_OF(X509) *sk = NULL;
    EVP_PKEY *k = NULL;
    BIO *bio = NULL;
    X509 *cert;
    int r;

    *certs = NULL;
    if (key != NULL)
        *key = NULL;
    if ((r = pem_bio(p, n, &bio, why)) != 0)
        goto out;
    if ((sk = sk_X509_new_null()) == NULL) {
        r = fail(why, SIGIL_ERR_NOMEM, "out of memory");
        goto out;
    }
    while ((r = pem_next(bio, &b, why)) == 1) {
        if (strcmp(b.name, PEM_STRING_X509) == 0) {
            if ((r = der_cert(b.data, b.len, &cert, why)) != 0 ||
                (r = push_cert(sk, cert, why)) != 0)
                goto out;
        } else if (key != NULL && strcmp(b.name, PEM_STRING_PKCS8INF) == 0) {
            if (k != NULL) {
                r = fail(why, SIGIL_ERR_INVALID, "PEM: more than one private key");
                goto out;
            }
            if ((r = sigil_x509_key_parse_der(b.data, (size_t)b.len, &k, why)) != 0)
                goto out;
        } else {
            r = fail(why, SIGIL_ERR_INVALID,
                     key != NULL ? "PEM: expected CERTIFICATE or PRIVATE KEY blocks only"
                                 : "PEM: expected CERTIFICATE blocks only");
            goto out;
        }
    }
    if (r < 0)
        goto out;
    if (sk_X509_num(sk) == 0) {
        r = fail(why, SIGIL_ERR_INVALID, "PEM: no certificate");
        goto out;
    }
    if (key != NULL && k == NULL) {
        r = fail(why, SIGIL_ERR_INVALID, "PEM: no private key");
        goto out;
    }
    *certs = sk;
    sk = NULL;
    if (key != NULL) {
        *key = k;
        k = NULL;
    }
    r = 0;
out:
    pem_block_clear(&b);
    BIO_free(bio);
    EVP_PKEY_free(k);
    sk_X509_pop_free(sk, X509_free);
    return r;
}

int
sigil_x509_chain_parse_pem(const uint8_t *p, size_t n, STACK_OF(X509) **out, const char **why)
{
    return pem_walk(p, n, out, NULL, why);
}

int
sigil_x509_pem_parse_certs_and_key(const uint8_t *p, size_t n, STACK_OF(X509) **certs,
                                   EVP_PKEY **key, const char **why)
{
    return pem_walk(p, n, certs, key, why);
}

int
sigil_x509_chain_parse_der(const uint8_t *p, size_t n, STACK_OF(X509) **out, const char **why)
{
    STACK_OF(X509) *sk = NULL;
    const unsigned char *q = p;
    X509 *cert;
    size_t left = n;
    int r;

    *out = NULL;
    if (n > SIGIL_X509_INPUT_MAX)
        return fail(why, SIGIL_ERR_RANGE, "DER: input over 1 MiB");
    if (n == 0)
        return fail(why, SIGIL_ERR_INVALID, "DER: empty input (no certificate)");
    if ((sk = sk_X509_new_null()) == NULL)
        return fail(why, SIGIL_ERR_NOMEM, "out of memory");
    while (left > 0) {
        const unsigned char *start = q;
        if ((cert = d2i_X509(NULL, &q, (long)left)) == NULL) {
            ERR_clear_error();
            r = fail(why, SIGIL_ERR_INVALID, "X.509: malformed DER certificate");
            goto out;
        }
        left -= (size_t)(q - start);
        if ((r = push_cert(sk, cert, why)) != 0)
            goto out;
    }
    *out = sk;
    sk = NULL;
    r = 0;
out:
    sk_X509_pop_free(sk, X509_free);
    return r;
}

int
sigil_x509_key_parse_pem(const uint8_t *p, size_t n, EVP_PKEY **out, const char **why)
{
    struct pem_block b = {0};
    EVP_PKEY *k = NULL;
    BIO *bio = NULL;
    int r;

    *out = NULL;
    if ((r = pem_bio(p, n, &bio, why)) != 0)
        goto out;
    while ((r = pem_next(bio, &b, why)) == 1) {
        if (strcmp(b.name, PEM_STRING_PKCS8INF) != 0) {
            r = fail(why, SIGIL_ERR_INVALID, "PEM: expected one PRIVATE KEY block (PKCS#8)");
            goto out;
        }
        if (k != NULL) {
            r = fail(why, SIGIL_ERR_INVALID, "PEM: more than one private key");
            goto out;
        }
        if ((r = sigil_x509_key_parse_der(b.data, (size_t)b.len, &k, why)) != 0)
            goto out;
    }
    if (r < 0)
        goto out;
    if (k == NULL) {
        r = fail(why, SIGIL_ERR_INVALID, "PEM: no private key");
        goto out;
    }
    *out = k;
    k = NULL;
    r = 0;
out:
    pem_block_clear(&b);
    BIO_free(bio);
    EVP_PKEY_free(k);
    return r;
}

/* ---- files ---- */

/* Reads a whole regular file into one exact-size allocation (so a secret is never copied
 * by a realloc); *p is wiped and freed by the caller. */
static int
read_all(const char *path, uint8_t **p, size_t *n, const char **why)
{
    struct stat st;
    uint8_t *buf = NULL;
    size_t got = 0, size = 0;
    ssize_t k;
    char extra;
    int fd, r;

    *p = NULL;
    *n = 0;
    /* O_NONBLOCK so that a FIFO planted at path cannot hang us before the S_ISREG check */
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
        return fail(why, errno == ENOENT ? SIGIL_ERR_NOTFOUND : SIGIL_ERR_IO, "file: cannot open");
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        r = fail(why, SIGIL_ERR_IO, "file: not a regular file");
        goto out;
    }
    if (st.st_size < 0 || (uintmax_t)st.st_size > SIGIL_X509_INPUT_MAX) {
        r = fail(why, SIGIL_ERR_RANGE, "file: over 1 MiB");
        goto out;
    }
    size = (size_t)st.st_size;
    if ((buf = malloc(size ? size : 1)) == NULL) {
        r = fail(why, SIGIL_ERR_NOMEM, "out of memory");
        goto out;
    }
    while (got < size) {
        k = read(fd, buf + got, size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            r = fail(why, SIGIL_ERR_IO, "file: read failed");
            goto out;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    while ((k = read(fd, &extra, 1)) < 0 && errno == EINTR)
        ;
    if (k > 0) {
        r = fail(why, SIGIL_ERR_RANGE, "file: grew while being read");
        goto out;
    }
    *p = buf;
    *n = got;
    buf = NULL;
    r = 0;
out:
    OPENSSL_cleanse(&extra, sizeof extra);
    if (buf != NULL) {
        OPENSSL_cleanse(buf, size);
        free(buf);
    }
    close(fd);
    return r;
}

int
sigil_x509_file_read(const char *path, struct sigil_buf *out, const char **why)
{
    uint8_t *p = NULL;
    size_t n = 0;
    int r;

    if ((r = read_all(path, &p, &n, why)) != 0)
        return r;
    if ((r = sigil_buf_append(out, p, n)) != 0)
        fail(why, r, "out of memory");
    free(p);
    return r;
}

int
sigil_x509_key_read_file(const char *path, EVP_PKEY **out, const char **why)
{
    uint8_t *p = NULL;
    size_t n = 0;
    int r;

    *out = NULL;
    if ((r = read_all(path, &p, &n, why)) != 0)
        return r;
    r = sigil_x509_key_parse_pem(p, n, out, why);
    OPENSSL_cleanse(p, n);
    free(p);
    return r;
}

static int
write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return SIGIL_ERR_IO;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Makes the rename durable: fsync the directory that holds path. */
static int
sync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    int fd, r = 0;

    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == path)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return SIGIL_ERR_IO;
    if (fsync(fd) != 0)
        r = SIGIL_ERR_IO;
    close(fd);
    return r;
}

int
sigil_x509_key_write_file(const char *path, const EVP_PKEY *key)
{
    struct sigil_buf pem = {0};
    char tmp[PATH_MAX];
    int fd = -1, r;

    tmp[0] = '\0';
    if (strlen(path) + sizeof ".XXXXXX" > sizeof tmp)
        return SIGIL_ERR_IO;
    if ((r = sigil_x509_key_to_pkcs8_pem(key, &pem)) != 0)
        goto out;
    snprintf(tmp, sizeof tmp, "%s.XXXXXX", path);
    /* mkostemp opens with O_CREAT|O_EXCL and mode 0600: a fresh file, never a symlink */
    if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
        tmp[0] = '\0';
        r = SIGIL_ERR_IO;
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || (r = write_all(fd, pem.data, pem.len)) != 0 || fsync(fd) != 0) {
        r = SIGIL_ERR_IO;
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        r = SIGIL_ERR_IO;
        goto out;
    }
    fd = -1;
    /* rename replaces a symlink at path rather than writing through it */
    if (rename(tmp, path) != 0) {
        r = SIGIL_ERR_IO;
        goto out;
    }
    tmp[0] = '\0';
    r = sync_parent(path);
out:
    if (fd >= 0)
        close(fd);
    if (tmp[0] != '\0' && r != 0)
        unlink(tmp);
    sigil_buf_freezero(&pem);
    return r;
}

/* ---- encoding ---- */

int
sigil_x509_key_to_pkcs8_der(const EVP_PKEY *key, struct sigil_buf *out)
{
    PKCS8_PRIV_KEY_INFO *p8 = NULL;
    unsigned char *q;
    int len, r;

    if (out->len != 0)
        return SIGIL_ERR_STATE;
    if ((p8 = EVP_PKEY2PKCS8(key)) == NULL || (len = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL)) <= 0) {
        r = SIGIL_ERR_CRYPTO;
        goto out;
    }
    if ((r = sigil_buf_reserve(out, (size_t)len)) != 0)
        goto out;
    q = out->data;
    if (i2d_PKCS8_PRIV_KEY_INFO(p8, &q) != len) {
        OPENSSL_cleanse(out->data, (size_t)len);
        r = SIGIL_ERR_CRYPTO;
        goto out;
    }
    out->len = (size_t)len;
    r = 0;
out:
    if (r != 0)
        ERR_clear_error();
    PKCS8_PRIV_KEY_INFO_free(p8);
    return r;
}

/* Moves what a memory BIO holds into out (reserved once), wiping the BIO's copy. */
static int
bio_to_buf(BIO *bio, struct sigil_buf *out)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    int r;

    if (len <= 0 || data == NULL)
        return SIGIL_ERR_CRYPTO;
    r = sigil_buf_append(out, data, (size_t)len);
    OPENSSL_cleanse(data, (size_t)len);
    return r;
}

int
sigil_x509_key_to_pkcs8_pem(const EVP_PKEY *key, struct sigil_buf *out)
{
    BIO *bio = NULL;
    int r;

    if (out->len != 0)
        return SIGIL_ERR_STATE;
    if ((bio = BIO_new(BIO_s_secmem())) == NULL)
        return SIGIL_ERR_NOMEM;
    if (PEM_write_bio_PKCS8PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) != 1) {
        ERR_clear_error();
        r = SIGIL_ERR_CRYPTO;
        goto out;
    }
    r = bio_to_buf(bio, out);
out:
    BIO_free(bio);
    return r;
}

int
sigil_x509_pubkey_to_der(const EVP_PKEY *key, struct sigil_buf *out)
{
    unsigned char *q;
    int len, r;

    if ((len = i2d_PUBKEY(key, NULL)) <= 0) {
        ERR_clear_error();
        return SIGIL_ERR_CRYPTO;
    }
    if ((r = sigil_buf_reserve(out, (size_t)len)) != 0)
        return r;
    q = out->data + out->len;
    if (i2d_PUBKEY(key, &q) != len) {
        ERR_clear_error();
        return SIGIL_ERR_CRYPTO;
    }
    out->len += (size_t)len;
    return 0;
}

bool
sigil_x509_key_matches_cert(const EVP_PKEY *key, const X509 *cert)
{
    const EVP_PKEY *pub = X509_get0_pubkey(cert);
    bool ok = key != NULL && pub != NULL && EVP_PKEY_eq(key, pub) == 1;

    ERR_clear_error();
    return ok;
}

int
sigil_x509_cert_to_der(X509 *cert, struct sigil_buf *out)
{
    unsigned char *q;
    int len, r;

    if ((len = i2d_X509(cert, NULL)) <= 0) {
        ERR_clear_error();
        return SIGIL_ERR_CRYPTO;
    }
    if ((r = sigil_buf_reserve(out, (size_t)len)) != 0)
        return r;
    q = out->data + out->len;
    if (i2d_X509(cert, &q) != len) {
        ERR_clear_error();
        return SIGIL_ERR_CRYPTO;
    }
    out->len += (size_t)len;
    return 0;
}

int
sigil_x509_cert_to_pem(X509 *cert, struct sigil_buf *out)
{
    BIO *bio;
    int r;

    if ((bio = BIO_new(BIO_s_mem())) == NULL)
        return SIGIL_ERR_NOMEM;
    if (PEM_write_bio_X509(bio, cert) != 1) {
        ERR_clear_error();
        r = SIGIL_ERR_CRYPTO;
        goto out;
    }
    r = bio_to_buf(bio, out);
out:
    BIO_free(bio);
    return r;
}

int
sigil_x509_chain_to_der(STACK_OF(X509) *chain, struct sigil_buf *out)
{
    int r;

    for (int i = 0; i < sk_X509_num(chain); i++)
        if ((r = sigil_x509_cert_to_der(sk_X509_value(chain, i), out)) != 0)
            return r;
    return 0;
}

int
sigil_x509_chain_to_pem(STACK_OF(X509) *chain, struct sigil_buf *out)
{
    int r;

    for (int i = 0; i < sk_X509_num(chain); i++)
        if ((r = sigil_x509_cert_to_pem(sk_X509_value(chain, i), out)) != 0)
            return r;
    return 0;
}
