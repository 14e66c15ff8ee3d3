/* x509pop node attestation, agent side: the payload is the node certificate chain (DER,
 * leaf first); the server answers with a nonce, and we prove we hold the leaf's key by
 * signing "sigil x509pop v1" || 0x00 || nonce || sha256(csr), which binds the proof to this
 * attestation's CSR so it cannot be replayed for another agent key. */
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "nodeattest.h"
#include "sigil/err.h"
#include "sigil/x509.h"

struct pop {
    STACK_OF(X509) *chain;
    EVP_PKEY *key;
};

int
sigil_x509pop_message(const uint8_t *nonce, size_t n, const uint8_t *csr, size_t csr_len,
                      struct sigil_buf *out)
{
    uint8_t h[SHA256_DIGEST_LENGTH];
    int r;

    if (n == 0 || n > SIGIL_NODEATTEST_CHALLENGE_MAX)
        return SIGIL_ERR_RANGE;
    SHA256(csr, csr_len, h);
    if ((r = sigil_buf_append(out, SIGIL_X509POP_CONTEXT, sizeof SIGIL_X509POP_CONTEXT)) != 0 ||
        (r = sigil_buf_append(out, nonce, n)) != 0 || (r = sigil_buf_append(out, h, sizeof h)) != 0)
        return r;
    return 0;
}

int
sigil_x509pop_sign(EVP_PKEY *key, const uint8_t *nonce, size_t n, const uint8_t *csr,
                   size_t csr_len, struct sigil_buf *out, const char **why)
{
    struct sigil_buf msg = {0};
    EVP_MD_CTX *md = NULL;
    size_t siglen = 0;
    int r;

    if ((r = sigil_x509pop_message(nonce, n, csr, csr_len, &msg)) != 0) {
        *why = "x509pop challenge is empty or longer than 1024 bytes";
        goto out;
    }
    r = SIGIL_ERR_CRYPTO;
    *why = "cannot sign the x509pop challenge";
    if ((md = EVP_MD_CTX_new()) == NULL ||
        EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, NULL, &siglen, msg.data, msg.len) != 1)
        goto out;
    if (sigil_buf_reserve(out, siglen) != 0) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    if (EVP_DigestSign(md, out->data + out->len, &siglen, msg.data, msg.len) != 1)
        goto out;
    out->len += siglen;
    r = 0;
out:
    EVP_MD_CTX_free(md);
    sigil_buf_free(&msg);
    return r;
}

static void
pop_free(void *state)
{
    struct pop *p = state;

    if (p == NULL)
        return;
    sk_X509_pop_free(p->chain, X509_free);
    EVP_PKEY_free(p->key);
    free(p);
}

static int
pop_load(const struct sigil_nodeattest_opts *o, void **state, const char **why)
{
    struct sigil_buf pem = {0};
    struct pop *p = NULL;
    int r;

    *state = NULL;
    if (o->x509pop_cert_path == NULL || o->x509pop_key_path == NULL) {
        *why = "x509pop needs cert_path and key_path";
        return SIGIL_ERR_INVALID;
    }
    if ((p = calloc(1, sizeof *p)) == NULL)
        return SIGIL_ERR_NOMEM;
    if ((r = sigil_x509_file_read(o->x509pop_cert_path, &pem, why)) != 0 ||
        (r = sigil_x509_chain_parse_pem(pem.data, pem.len, &p->chain, why)) != 0 ||
        (r = sigil_x509_key_read_file(o->x509pop_key_path, &p->key, why)) != 0)
        goto out;
    if (!sigil_x509_key_matches_cert(p->key, sk_X509_value(p->chain, 0))) {
        *why = "x509pop key does not match the node certificate";
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    *state = p;
    p = NULL;
out:
    sigil_buf_free(&pem);
    pop_free(p);
    return r;
}

static int
pop_payload(void *state, struct sigil_buf *out, const char **why)
{
    struct pop *p = state;
    int r;

    if ((r = sigil_x509_chain_to_der(p->chain, out)) != 0)
        *why = "cannot encode the node certificate chain";
    return r;
}

static int
pop_answer(void *state, const uint8_t *challenge, size_t n, const uint8_t *csr, size_t csr_len,
           struct sigil_buf *out, const char **why)
{
    struct pop *p = state;

    if (csr == NULL) {
        *why = "x509pop answers need the attestation's CSR";
        return SIGIL_ERR_INVALID;
    }
    return sigil_x509pop_sign(p->key, challenge, n, csr, csr_len, out, why);
}

const struct sigil_nodeattest sigil_nodeattest_x509pop = {
    .name = "x509pop",
    .load = pop_load,
    .payload = pop_payload,
    .answer = pop_answer,
    .free_state = pop_free,
};
