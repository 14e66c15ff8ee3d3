/* Test helper shared by the rpc unit tests: a throwaway SPIFFE PKI minted in memory (a root,
 * a server SVID with DNS SAN "localhost", a client SVID, and an unrelated root). */
#ifndef SIGIL_TEST_RPC_PKI_H
#define SIGIL_TEST_RPC_PKI_H

#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sigil/spiffeid.h"
#include "sigil/x509.h"

struct pki {
    EVP_PKEY *root_key, *server_key, *client_key, *other_key;
    X509 *root, *server, *client, *other_root;
    STACK_OF(X509) *roots;
};

static X509 *
pki_root(const char *td, EVP_PKEY *key, time_t now)
{
    struct sigil_x509_ca_params p = {
        .trust_domain = td,
        .subject = {.organization = "Sigil tests", .common_name = "rpc test root"},
        .not_before = now - 3600,
        .not_after = now + 86400,
        .path_len = -1,
    };
    const char *why = NULL;
    X509 *x = NULL;

    if (sigil_x509_mint_root(&p, key, &x, &why) != 0)
        fail_msg("mint root: %s", why);
    return x;
}

static X509 *
pki_leaf(const char *id, EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, time_t now)
{
    static const char *const dns[] = {"localhost"};
    struct sigil_spiffeid sid;
    struct sigil_x509_leaf_params p = {
        .id = &sid,
        .dns_names = dns,
        .n_dns = 1,
        .not_before = now - 60,
        .not_after = now + 3600,
    };
    const char *why = NULL;
    X509 *x = NULL;

    if (sigil_spiffeid_parse(id, strlen(id), &sid, &why) != 0)
        fail_msg("spiffe id: %s", why);
    if (sigil_x509_mint_leaf(&p, key, issuer, issuer_key, &x, &why) != 0)
        fail_msg("mint leaf: %s", why);
    return x;
}

static void
pki_make(struct pki *k)
{
    time_t now = time(NULL);

    memset(k, 0, sizeof *k);
    if (sigil_x509_key_generate(&k->root_key) != 0 ||
        sigil_x509_key_generate(&k->server_key) != 0 ||
        sigil_x509_key_generate(&k->client_key) != 0 || sigil_x509_key_generate(&k->other_key) != 0)
        fail_msg("key generation failed");
    k->root = pki_root("example.org", k->root_key, now);
    k->other_root = pki_root("other.org", k->other_key, now);
    k->server = pki_leaf("spiffe://example.org/server", k->server_key, k->root, k->root_key, now);
    k->client = pki_leaf("spiffe://example.org/client", k->client_key, k->root, k->root_key, now);
    k->roots = sk_X509_new_null();
    if (k->roots == NULL || sk_X509_push(k->roots, k->root) <= 0)
        fail_msg("out of memory");
}

static void
pki_free(struct pki *k)
{
    sk_X509_free(k->roots);
    X509_free(k->root);
    X509_free(k->other_root);
    X509_free(k->server);
    X509_free(k->client);
    EVP_PKEY_free(k->root_key);
    EVP_PKEY_free(k->server_key);
    EVP_PKEY_free(k->client_key);
    EVP_PKEY_free(k->other_key);
}

#endif
