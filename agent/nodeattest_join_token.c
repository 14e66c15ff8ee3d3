/* join_token node attestation, agent side: the payload is the token itself (single use,
 * checked and burnt by the server); there are no challenges. The token is wiped on free. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "nodeattest.h"
#include "sigil/err.h"

#define TOKEN_MAX 1024

static int
jt_load(const struct sigil_nodeattest_opts *o, void **state, const char **why)
{
    size_t n;

    *state = NULL;
    if (o->join_token == NULL || o->join_token[0] == '\0') {
        *why = "no join token configured (join_token or --join-token)";
        return SIGIL_ERR_INVALID;
    }
    if ((n = strlen(o->join_token)) > TOKEN_MAX) {
        *why = "join token longer than 1024 bytes";
        return SIGIL_ERR_RANGE;
    }
    if ((*state = strdup(o->join_token)) == NULL)
        return SIGIL_ERR_NOMEM;
    return 0;
}

static int
jt_payload(void *state, struct sigil_buf *out, const char **why)
{
    (void)why;
    return sigil_buf_append_str(out, state);
}

static int
jt_answer(void *state, const uint8_t *challenge, size_t n, const uint8_t *csr, size_t csr_len,
          struct sigil_buf *out, const char **why)
{
    (void)state, (void)challenge, (void)n, (void)csr, (void)csr_len, (void)out;
    *why = "the server sent a challenge to a join_token attestation";
    return SIGIL_ERR_PROTOCOL;
}

static void
jt_free(void *state)
{
    if (state == NULL)
        return;
    OPENSSL_cleanse(state, strlen(state));
    free(state);
}

const struct sigil_nodeattest sigil_nodeattest_join_token = {
    .name = "join_token",
    .load = jt_load,
    .payload = jt_payload,
    .answer = jt_answer,
    .free_state = jt_free,
};

const struct sigil_nodeattest *
sigil_nodeattest_pick(const struct sigil_nodeattest_opts *o)
{
    if (o->x509pop_cert_path != NULL && o->x509pop_key_path != NULL)
        return &sigil_nodeattest_x509pop;
    if (o->join_token != NULL && o->join_token[0] != '\0')
        return &sigil_nodeattest_join_token;
    return NULL;
}
