/* x509pop node attestation, server side: the payload is the node's certificate chain (DER,
 * leaf first), verified against the configured CA bundle now; the challenge is 32 random
 * bytes, and the answer a signature by the leaf's key (SHA-256; ECDSA or RSA PKCS#1 v1.5) over
 * "sigil x509pop v1" || 0x00 || nonce || sha256(csr), so a proof cannot be replayed for
 * another agent key. Agent ID spiffe://<td>/sigil/agent/x509pop/<sha1 of the leaf DER>;
 * reattestable (the node keeps its certificate). */
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509_vfy.h>

#include "nodeattest.h"
#include "sigil/encoding.h"
#include "sigil/err.h"
#include "sigil/spiffeid.h"
#include "sigil/x509.h"

#define X509POP_AGENT_PREFIX "/sigil/agent/x509pop/"
#define CN_MAX 256

/* Between the challenge and its answer: the leaf's public key, the message it must sign and
 * the result to give if it does. */
struct pop {
    EVP_PKEY *pub;
    struct sigil_buf msg;
    struct sigil_nodeattest_result res;
};

int
sigil_nodeattest_x509pop_message(const uint8_t *nonce, size_t n, const uint8_t *csr, size_t csr_len,
                                 struct sigil_buf *out)
{
    uint8_t h[SHA256_DIGEST_LENGTH];
    int r;

    SHA256(csr, csr_len, h);
    if ((r = sigil_buf_append(out, SIGIL_NODEATTEST_X509POP_CONTEXT,
                              sizeof SIGIL_NODEATTEST_X509POP_CONTEXT)) != 0 ||
        (r = sigil_buf_append(out, nonce, n)) != 0 || (r = sigil_buf_append(out, h, sizeof h)) != 0)
        return r;
    return 0;
}

static void
pop_free(void *state)
{
    struct pop *p = state;

    if (p == NULL)
        return;
    EVP_PKEY_free(p->pub);
    sigil_buf_free(&p->msg);
    sigil_nodeattest_result_free(&p->res);
    free(p);
}

/* Verifies chain (leaf first) up to one of roots at now; *issuer (borrowed from chain or
 * roots, valid while they live) is the certificate that signed the leaf. */
static int
verify_chain(STACK_OF(X509) *chain, STACK_OF(X509) *roots, int64_t now, X509 **issuer,
             const char **why)
{
    X509_STORE *st = NULL;
    X509_STORE_CTX *ctx = NULL;
    STACK_OF(X509) *untrusted = NULL, *verified;
    int r = SIGIL_ERR_NOMEM;

    *why = "out of memory";
    if ((st = X509_STORE_new()) == NULL || (ctx = X509_STORE_CTX_new()) == NULL ||
        (untrusted = sk_X509_new_null()) == NULL)
        goto out;
    for (int i = 0; i < sk_X509_num(roots); i++)
        if (X509_STORE_add_cert(st, sk_X509_value(roots, i)) != 1)
            goto out;
    for (int i = 1; i < sk_X509_num(chain); i++)
        if (sk_X509_push(untrusted, sk_X509_value(chain, i)) <= 0)
            goto out;
    if (X509_STORE_CTX_init(ctx, st, sk_X509_value(chain, 0), untrusted) != 1)
        goto out;
    X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx), (time_t)now);
    if (X509_verify_cert(ctx) != 1) {
        int e = X509_STORE_CTX_get_error(ctx);

        r = e == X509_V_ERR_CERT_HAS_EXPIRED || e == X509_V_ERR_CERT_NOT_YET_VALID
                ? SIGIL_ERR_EXPIRED
                : SIGIL_ERR_DENIED;
        *why = e == X509_V_ERR_CERT_HAS_EXPIRED     ? "node certificate has expired"
               : e == X509_V_ERR_CERT_NOT_YET_VALID ? "node certificate is not valid yet"
                                                    : "node certificate does not chain to the "
                                                      "x509pop CA bundle";
        goto out;
    }
    verified = X509_STORE_CTX_get0_chain(ctx);
    /* a leaf that is itself a trusted root signed itself */
    *issuer = sk_X509_num(verified) > 1 ? sk_X509_value(verified, 1) : sk_X509_value(chain, 0);
    /* the verified chain's certificates are ours or the roots': *issuer outlives ctx */
    r = 0;
out:
    sk_X509_free(untrusted);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    return r;
}

static int
add_sel(struct sigil_selector_set *s, const char *prefix, const char *value, const char **why)
{
    char buf[CN_MAX + 64];
    int n = snprintf(buf, sizeof buf, "%s%s", prefix, value);

    if (n < 0 || (size_t)n >= sizeof buf) {
        *why = "node certificate value too long for a selector";
        return SIGIL_ERR_RANGE;
    }
    return sigil_selector_set_add_str(s, buf, (size_t)n, why);
}

static int
sha1_hex(X509 *cert, char out[2 * SHA_DIGEST_LENGTH + 1])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned len = 0;

    if (X509_digest(cert, EVP_sha1(), md, &len) != 1 || len != SHA_DIGEST_LENGTH)
        return SIGIL_ERR_CRYPTO;
    sigil_hex_encode(md, len, out);
    return 0;
}

/* The agent's ID and selectors for a verified leaf. */
static int
make_result(const char *td, X509 *leaf, X509 *issuer, struct sigil_nodeattest_result *res,
            const char **why)
{
    char fp[2 * SHA_DIGEST_LENGTH + 1], path[128];
    struct sigil_spiffeid id;
    X509_NAME *subj = X509_get_subject_name(leaf);
    BIGNUM *bn = NULL;
    char *serial = NULL;
    int r, idx;

    memset(res, 0, sizeof *res);
    if ((r = sha1_hex(leaf, fp)) != 0) {
        *why = "cannot hash the node certificate";
        goto out;
    }
    snprintf(path, sizeof path, "%s%s", X509POP_AGENT_PREFIX, fp);
    if ((r = sigil_spiffeid_from_parts(td, path, &id, why)) != 0)
        goto out;
    r = SIGIL_ERR_NOMEM;
    *why = "out of memory";
    if ((res->spiffe_id = strdup(id.str)) == NULL)
        goto out;
    if ((idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1)) >= 0) {
        unsigned char *cn = NULL;
        int n = ASN1_STRING_to_UTF8(&cn, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));

        if (n < 0 || n > CN_MAX || memchr(cn, '\0', (size_t)n) != NULL) {
            OPENSSL_free(cn);
            r = SIGIL_ERR_INVALID;
            *why = "node certificate common name is not usable as a selector";
            goto out;
        }
        r = add_sel(&res->selectors, "x509pop:subject:cn:", (const char *)cn, why);
        OPENSSL_free(cn);
        if (r != 0)
            goto out;
    }
    if ((r = sha1_hex(issuer, fp)) != 0) {
        *why = "cannot hash the issuing CA";
        goto out;
    }
    if ((r = add_sel(&res->selectors, "x509pop:ca:fingerprint:", fp, why)) != 0)
        goto out;
    r = SIGIL_ERR_NOMEM;
    *why = "out of memory";
    if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(leaf), NULL)) == NULL ||
        (serial = BN_bn2hex(bn)) == NULL)
        goto out;
    for (char *s = serial; *s != '\0'; s++) /* BN_bn2hex writes upper case; selectors lower */
        if (*s >= 'A' && *s <= 'F')
            *s = (char)(*s - 'A' + 'a');
    if ((r = add_sel(&res->selectors, "x509pop:serialnumber:", serial, why)) != 0)
        goto out;
    res->reattestable = true;
    r = 0;
out:
    if (r != 0)
        sigil_nodeattest_result_free(res);
    OPENSSL_free(serial);
    BN_free(bn);
    return r;
}

static int
pop_start(const struct sigil_nodeattest_cfg *cfg, struct sigil_db_conn *c, const uint8_t *payload,
          size_t n, const uint8_t *csr, size_t csr_len, void **state, struct sigil_buf *challenge,
          struct sigil_nodeattest_result *res, const char **why)
{
    STACK_OF(X509) *chain = NULL;
    struct pop *p = NULL;
    uint8_t nonce[SIGIL_NODEATTEST_NONCE_LEN];
    X509 *leaf, *issuer = NULL;
    int r;

    (void)c;
    *state = NULL;
    memset(res, 0, sizeof *res);
    if (cfg->x509pop_roots == NULL) {
        *why = "x509pop attestation is not enabled on this server";
        return SIGIL_ERR_UNSUPPORTED;
    }
    if (n > SIGIL_NODEATTEST_PAYLOAD_MAX) {
        *why = "x509pop payload over 64 KiB";
        return SIGIL_ERR_RANGE;
    }
    if (csr == NULL || csr_len == 0) {
        *why = "x509pop needs the attestation's CSR";
        return SIGIL_ERR_INVALID;
    }
    if ((r = sigil_x509_chain_parse_der(payload, n, &chain, why)) != 0)
        goto out;
    leaf = sk_X509_value(chain, 0);
    if ((r = verify_chain(chain, cfg->x509pop_roots, cfg->now, &issuer, why)) != 0)
        goto out;
    if ((p = calloc(1, sizeof *p)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        *why = "out of memory";
        goto out;
    }
    if ((r = make_result(cfg->trust_domain, leaf, issuer, &p->res, why)) != 0)
        goto out;
    if ((p->pub = X509_get_pubkey(leaf)) == NULL) {
        r = SIGIL_ERR_INVALID;
        *why = "node certificate has no usable public key";
        goto out;
    }
    if (RAND_bytes(nonce, sizeof nonce) != 1) {
        r = SIGIL_ERR_CRYPTO;
        *why = "no randomness for the challenge";
        goto out;
    }
    if ((r = sigil_nodeattest_x509pop_message(nonce, sizeof nonce, csr, csr_len, &p->msg)) != 0 ||
        (r = sigil_buf_append(challenge, nonce, sizeof nonce)) != 0) {
        *why = "out of memory";
        goto out;
    }
    *state = p;
    p = NULL;
out:
    pop_free(p);
    sk_X509_pop_free(chain, X509_free);
    return r;
}

static int
pop_answer(void *state, const uint8_t *resp, size_t n, struct sigil_nodeattest_result *res,
           const char **why)
{
    struct pop *p = state;
    EVP_MD_CTX *md = NULL;
    int r;

    memset(res, 0, sizeof *res);
    if (n == 0 || n > SIGIL_NODEATTEST_RESPONSE_MAX) {
        *why = "x509pop challenge response empty or over 1024 bytes";
        return SIGIL_ERR_INVALID;
    }
    if ((md = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, p->pub) != 1) {
        r = SIGIL_ERR_UNSUPPORTED;
        *why = "node certificate key type cannot sign x509pop proofs (ECDSA or RSA expected)";
        goto out;
    }
    if (EVP_DigestVerify(md, resp, n, p->msg.data, p->msg.len) != 1) {
        r = SIGIL_ERR_DENIED;
        *why = "x509pop proof of possession does not verify";
        goto out;
    }
    *res = p->res;
    memset(&p->res, 0, sizeof p->res);
    r = 0;
out:
    EVP_MD_CTX_free(md);
    return r;
}

const struct sigil_nodeattest sigil_nodeattest_x509pop = {
    .name = "x509pop",
    .start = pop_start,
    .answer = pop_answer,
    .free_state = pop_free,
};
