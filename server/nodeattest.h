/* The server side of node attestation: one file per attestor (nodeattest_<name>.c) filling a
 * struct sigil_nodeattest, listed in sigil_nodeattestors[]. An attestation is start(payload)
 * giving either a result or a challenge, then answer(challenge_response) for each challenge.
 * Both run on a database worker (they may query, verify signatures, block): never the loop. */
#ifndef SIGIL_SERVER_NODEATTEST_H
#define SIGIL_SERVER_NODEATTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "sigil/buf.h"
#include "sigil/db.h"
#include "sigil/selectors.h"

/* Hard caps on what an agent sends. */
#define SIGIL_NODEATTEST_PAYLOAD_MAX (64u * 1024) /* bytes of AttestParams.payload */
#define SIGIL_NODEATTEST_RESPONSE_MAX 1024        /* bytes of one challenge_response */
#define SIGIL_NODEATTEST_JOIN_TOKEN_MAX 128       /* bytes of a join token */
#define SIGIL_NODEATTEST_NONCE_LEN 32             /* bytes of an x509pop challenge */
/* The context of an x509pop proof, its NUL included: see proto/node.proto. */
#define SIGIL_NODEATTEST_X509POP_CONTEXT "sigil x509pop v1"

/* What every attestor may use (borrowed from the server for the attestation). */
struct sigil_nodeattest_cfg {
    const char *trust_domain;      /* bare name */
    bool join_token_enabled;       /* node_attestors.join_token.enabled */
    STACK_OF(X509) *x509pop_roots; /* node_attestors.x509pop.ca_bundle; NULL: x509pop is off */
    int64_t now;                   /* Unix seconds, for expiry and chain validity */
};

/* An attested node (owned: free with sigil_nodeattest_result_free). */
struct sigil_nodeattest_result {
    char *spiffe_id;                     /* the agent's SPIFFE ID, spiffe://<td>/... */
    struct sigil_selector_set selectors; /* node selectors, for node-alias entries */
    bool reattestable;                   /* the same evidence may attest again */
};

/* One node attestor. *why texts are static and safe to send to the agent (they never hold the
 * evidence). */
struct sigil_nodeattest {
    const char *name; /* AttestParams.attestation_type */
    /* Checks the payload (csr: the attestation's DER CSR). Returns 0 with either *res filled
     * (done) or a challenge appended to challenge and *state set (free with free_state; then
     * answer follows), SIGIL_ERR_DENIED (evidence refused), INVALID/RANGE (malformed),
     * UNSUPPORTED (this attestor is off) or another SIGIL_ERR_*, each with *why. c may be
     * NULL for attestors that need no database. */
    int (*start)(const struct sigil_nodeattest_cfg *cfg, struct sigil_db_conn *c,
                 const uint8_t *payload, size_t n, const uint8_t *csr, size_t csr_len, void **state,
                 struct sigil_buf *challenge, struct sigil_nodeattest_result *res,
                 const char **why);
    /* Checks one challenge response. Returns 0 with *res filled, or SIGIL_ERR_* with *why
     * (DENIED for a wrong proof). NULL for attestors that never challenge. */
    int (*answer)(void *state, const uint8_t *resp, size_t n, struct sigil_nodeattest_result *res,
                  const char **why);
    /* Frees a start()'s state; NULL is ignored. */
    void (*free_state)(void *state);
};

extern const struct sigil_nodeattest sigil_nodeattest_join_token;
extern const struct sigil_nodeattest sigil_nodeattest_x509pop;

/* Returns the attestor named name (n bytes), or NULL if there is none. */
const struct sigil_nodeattest *sigil_nodeattest_find(const char *name, size_t n);
/* Frees what r owns and zeroes it; NULL is allowed. */
void sigil_nodeattest_result_free(struct sigil_nodeattest_result *r);
/* Appends the x509pop message: SIGIL_NODEATTEST_X509POP_CONTEXT || 0x00 || nonce ||
 * sha256(csr). Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_nodeattest_x509pop_message(const uint8_t *nonce, size_t n, const uint8_t *csr,
                                     size_t csr_len, struct sigil_buf *out);
/* Writes the join_token attestor's ID suffix for token (the first 16 hex digits of its
 * SHA-256, NUL-terminated) into out. */
void sigil_nodeattest_join_token_suffix(const char *token, size_t n, char out[17]);

#endif
