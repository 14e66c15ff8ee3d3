/* The agent side of node attestation: one file per attestor (nodeattest_<name>.c) filling
 * a struct sigil_nodeattest, so adding one is a single file here and one on the server. The
 * run loop sends AttestParams{attestation_type = name, payload, csr} and hands each server
 * challenge to answer(). */
#ifndef SIGIL_AGENT_NODEATTEST_H
#define SIGIL_AGENT_NODEATTEST_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "sigil/buf.h"

#define SIGIL_NODEATTEST_CHALLENGE_MAX 1024 /* bytes of a server challenge we answer */
#define SIGIL_X509POP_CONTEXT "sigil x509pop v1"

/* Where an attestor finds its evidence (strings borrowed from the configuration). */
struct sigil_nodeattest_opts {
    const char *join_token;
    const char *x509pop_cert_path;
    const char *x509pop_key_path;
};

/* One node attestor. */
struct sigil_nodeattest {
    const char *name; /* attestation_type on the wire */
    /* Reads the evidence into *state (freed with free_state). Returns 0 or SIGIL_ERR_* + *why. */
    int (*load)(const struct sigil_nodeattest_opts *o, void **state, const char **why);
    /* Appends AttestParams.payload to out. Returns 0 or SIGIL_ERR_* + *why. */
    int (*payload)(void *state, struct sigil_buf *out, const char **why);
    /* Appends the answer to one challenge; csr is the DER CSR sent in AttestParams (NULL for
     * attestors that never get challenges). Returns 0 or SIGIL_ERR_* + *why. */
    int (*answer)(void *state, const uint8_t *challenge, size_t n, const uint8_t *csr,
                  size_t csr_len, struct sigil_buf *out, const char **why);
    /* Wipes and frees state (NULL is ignored). */
    void (*free_state)(void *state);
};

extern const struct sigil_nodeattest sigil_nodeattest_join_token;
extern const struct sigil_nodeattest sigil_nodeattest_x509pop;

/* Returns the attestor the options select (x509pop if its paths are set, else join_token if
 * a token is set), or NULL when none is configured. */
const struct sigil_nodeattest *sigil_nodeattest_pick(const struct sigil_nodeattest_opts *o);

/* The message an x509pop answer signs: "sigil x509pop v1" || 0x00 || nonce || sha256(csr).
 * Appends it to out; returns 0, SIGIL_ERR_RANGE (nonce over the cap) or SIGIL_ERR_NOMEM. */
int sigil_x509pop_message(const uint8_t *nonce, size_t n, const uint8_t *csr, size_t csr_len,
                          struct sigil_buf *out);
/* Signs the x509pop message with key (ECDSA or RSA-PKCS#1 v1.5, SHA-256) into out (appended,
 * DER signature for ECDSA). Returns 0 or SIGIL_ERR_* + *why. */
int sigil_x509pop_sign(EVP_PKEY *key, const uint8_t *nonce, size_t n, const uint8_t *csr,
                       size_t csr_len, struct sigil_buf *out, const char **why);

#endif
