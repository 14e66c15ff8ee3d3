/* Test helper: mints a root -> intermediate -> leaf X.509-SVID chain with libsigil and
 * writes it as PEM (and the Workload API's DER forms) into a directory, so that tools we
 * did not write (openssl verify) can judge what we mint.
 * Usage: x509_mint <outdir> [trust-domain [spiffe-id-path]]. Exit 0 on success, 1 on error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sigil/err.h"
#include "sigil/spiffeid.h"
#include "sigil/x509.h"

static int
write_buf(const char *dir, const char *name, const struct sigil_buf *b)
{
    char path[4096];
    FILE *f;
    int ok;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    if ((f = fopen(path, "wb")) == NULL)
        return -1;
    ok = fwrite(b->data, 1, b->len, f) == b->len;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : -1;
}

static int
write_pem(const char *dir, const char *name, X509 *cert)
{
    struct sigil_buf b = {0};
    int r = sigil_x509_cert_to_pem(cert, &b);

    if (r == 0)
        r = write_buf(dir, name, &b);
    sigil_buf_free(&b);
    return r;
}

int
main(int argc, char **argv)
{
    const char *dir, *td, *path, *why = "";
    EVP_PKEY *root_key = NULL, *inter_key = NULL, *leaf_key = NULL;
    X509 *root = NULL, *inter = NULL, *leaf = NULL;
    STACK_OF(X509) *chain = NULL;
    struct sigil_buf chain_der = {0}, chain_pem = {0}, root_der = {0}, csr = {0};
    struct sigil_spiffeid id;
    char key_path[4096], inter_key_path[4096];
    time_t now = time(NULL);
    int r = -1;

    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: x509_mint <outdir> [trust-domain [path]]\n");
        return 1;
    }
    dir = argv[1];
    td = argc > 2 ? argv[2] : "example.org";
    path = argc > 3 ? argv[3] : "/ns/prod/sa/web";
    if (sigil_spiffeid_from_parts(td, path, &id, &why) != 0)
        goto out;

    struct sigil_x509_ca_params rp = {
        .trust_domain = td,
        .subject = {.country = "US", .organization = "Sigil", .common_name = "Sigil test root"},
        .not_before = now - 300,
        .not_after = now + 7 * 24 * 3600,
        .path_len = 1,
    };
    struct sigil_x509_ca_params ip = {
        .trust_domain = td,
        .subject = {.organization = "Sigil", .common_name = "Sigil test intermediate"},
        .not_before = now - 300,
        .not_after = now + 24 * 3600,
        .path_len = 0,
    };
    const char *dns[] = {"web.example.org"};
    struct sigil_x509_leaf_params lp = {
        .id = &id,
        .dns_names = dns,
        .n_dns = 1,
        .not_before = now - 60,
        .not_after = now + 3600,
    };
    if ((r = sigil_x509_key_generate(&root_key)) != 0 ||
        (r = sigil_x509_key_generate(&inter_key)) != 0 ||
        (r = sigil_x509_key_generate(&leaf_key)) != 0 ||
        (r = sigil_x509_mint_root(&rp, root_key, &root, &why)) != 0 ||
        (r = sigil_x509_mint_intermediate(&ip, inter_key, root, root_key, &inter, &why)) != 0 ||
        (r = sigil_x509_mint_leaf(&lp, leaf_key, inter, inter_key, &leaf, &why)) != 0)
        goto out;
    if ((chain = sk_X509_new_null()) == NULL || sk_X509_push(chain, leaf) <= 0 ||
        sk_X509_push(chain, inter) <= 0) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    snprintf(key_path, sizeof key_path, "%s/leaf-key.pem", dir);
    /* the intermediate's key too, so the test can sign leaves by hand under it */
    snprintf(inter_key_path, sizeof inter_key_path, "%s/inter-key.pem", dir);
    if ((r = write_pem(dir, "root.pem", root)) != 0 ||
        (r = write_pem(dir, "inter.pem", inter)) != 0 ||
        (r = write_pem(dir, "leaf.pem", leaf)) != 0 ||
        (r = sigil_x509_key_write_file(key_path, leaf_key)) != 0 ||
        (r = sigil_x509_key_write_file(inter_key_path, inter_key)) != 0 ||
        (r = sigil_x509_chain_to_der(chain, &chain_der)) != 0 ||
        (r = sigil_x509_chain_to_pem(chain, &chain_pem)) != 0 ||
        (r = sigil_x509_cert_to_der(root, &root_der)) != 0 ||
        (r = sigil_x509_csr_create(leaf_key, &id, &csr)) != 0 ||
        (r = write_buf(dir, "chain.der", &chain_der)) != 0 ||
        (r = write_buf(dir, "chain.pem", &chain_pem)) != 0 ||
        (r = write_buf(dir, "bundle.der", &root_der)) != 0 ||
        (r = write_buf(dir, "csr.der", &csr)) != 0)
        goto out;
    r = 0;
out:
    if (r != 0)
        fprintf(stderr, "x509_mint: %s (%s)\n", sigil_strerror(r), why);
    sk_X509_free(chain);
    X509_free(root);
    X509_free(inter);
    X509_free(leaf);
    EVP_PKEY_free(root_key);
    EVP_PKEY_free(inter_key);
    EVP_PKEY_free(leaf_key);
    sigil_buf_free(&chain_der);
    sigil_buf_free(&chain_pem);
    sigil_buf_free(&root_der);
    sigil_buf_free(&csr);
    return r == 0 ? 0 : 1;
}
