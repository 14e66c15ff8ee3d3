/* join_token node attestation, server side: the payload is the token; it is consumed in one
 * statement (single use, expiry; only its SHA-256 is stored). The agent's ID is the token's
 * fixed agent_path, else spiffe://<td>/sigil/agent/join_token/<16 hex of sha256(token)>, never
 * the token; its one selector join_token:<those 16 hex> names the token it used. Not
 * reattestable: the token is gone. */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "nodeattest.h"
#include "sigil/encoding.h"
#include "sigil/err.h"
#include "sigil/spiffeid.h"
#include "store.h"

#define JOIN_TOKEN_AGENT_PREFIX "/sigil/agent/join_token/"

void
sigil_nodeattest_join_token_suffix(const char *token, size_t n, char out[17])
{
    uint8_t h[SHA256_DIGEST_LENGTH];

    SHA256((const uint8_t *)token, n, h);
    sigil_hex_encode(h, 8, out);
    OPENSSL_cleanse(h, sizeof h);
}

/* Tokens are base64url (SIGIL_STORE_TOKEN_LEN characters when we make them); anything else is
 * refused before it reaches SQL or a log. */
static bool
token_valid(const uint8_t *p, size_t n)
{
    if (n == 0 || n > SIGIL_NODEATTEST_JOIN_TOKEN_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];

        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

static int
jt_start(const struct sigil_nodeattest_cfg *cfg, struct sigil_db_conn *c, const uint8_t *payload,
         size_t n, const uint8_t *csr, size_t csr_len, void **state, struct sigil_buf *challenge,
         struct sigil_nodeattest_result *res, const char **why)
{
    struct sigil_store_err serr;
    struct sigil_spiffeid id;
    char token[SIGIL_NODEATTEST_JOIN_TOKEN_MAX + 1], suffix[17], sel[32], path[128];
    char *agent_path = NULL;
    int r;

    (void)csr, (void)csr_len, (void)challenge;
    *state = NULL;
    memset(res, 0, sizeof *res);
    if (!cfg->join_token_enabled) {
        *why = "join_token attestation is not enabled on this server";
        return SIGIL_ERR_UNSUPPORTED;
    }
    if (!token_valid(payload, n)) {
        *why = "join token malformed: 1 to 128 base64url characters expected";
        return SIGIL_ERR_INVALID;
    }
    memcpy(token, payload, n);
    token[n] = '\0';
    sigil_nodeattest_join_token_suffix(token, n, suffix);
    if ((r = sigil_store_join_token_consume(c, "node-attestation:join_token", token, &agent_path,
                                            &serr)) != 0) {
        *why = r == SIGIL_ERR_DENIED ? "join token is unknown, used or expired"
                                     : "cannot check the join token (database)";
        goto out;
    }
    if (agent_path == NULL)
        snprintf(path, sizeof path, "%s%s", JOIN_TOKEN_AGENT_PREFIX, suffix);
    if ((r = sigil_spiffeid_from_parts(cfg->trust_domain, agent_path ? agent_path : path, &id,
                                       why)) != 0)
        goto out;
    snprintf(sel, sizeof sel, "join_token:%s", suffix);
    if ((res->spiffe_id = strdup(id.str)) == NULL ||
        sigil_selector_set_add_str(&res->selectors, sel, strlen(sel), why) != 0) {
        r = SIGIL_ERR_NOMEM;
        *why = "out of memory";
        goto out;
    }
    res->reattestable = false;
    r = 0;
out:
    if (r != 0)
        sigil_nodeattest_result_free(res);
    OPENSSL_cleanse(token, sizeof token);
    free(agent_path);
    return r;
}

const struct sigil_nodeattest sigil_nodeattest_join_token = {
    .name = "join_token",
    .start = jt_start,
    .answer = NULL,
    .free_state = NULL,
};
