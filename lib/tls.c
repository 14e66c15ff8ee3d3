/* TLS 1.3 with OpenSSL 3 over memory BIOs: the configuration (identity, CAs, ALPN "h2",
 * client-certificate policy, a verify hook that sees the peer's chain) and a per-connection
 * engine fed by whoever owns the socket. Resumption is off so every handshake runs the
 * peer verification (and the hook) in full. */
#include "sigil/tls.h"
#include "sigil/err.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct sigil_tls_ctx {
    SSL_CTX *ssl;
    int refs;
    bool server;
    bool has_ca;
    bool require_client_cert;
    sigil_tls_verify_fn verify;
    void *verify_arg;
};

struct sigil_tls_conn {
    struct sigil_tls_ctx *ctx;
    SSL *ssl;
    BIO *rbio; /* owned by ssl */
    BIO *wbio; /* owned by ssl */
    bool handshake_done;
    bool ready;
    bool failed;
    const char *why;      /* why the handshake failed, when we know better than OpenSSL */
    STACK_OF(X509) *peer; /* the verified peer chain, leaf first */
};

static const unsigned char alpn_h2[] = {2, 'h', '2'};

static void
chain_free(STACK_OF(X509) *chain)
{
    sk_X509_pop_free(chain, X509_free);
}

/* Server side: choose "h2" if offered, otherwise refuse the handshake with an alert. */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
            unsigned int inlen, void *arg)
{
    unsigned int i = 0;

    (void)ssl;
    (void)arg;
    while (i < inlen) {
        unsigned int l = in[i];
        if (l > inlen - i - 1)
            break;
        if (l == 2 && in[i + 1] == 'h' && in[i + 2] == '2') {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* The peer's chain, leaf first: OpenSSL passes the leaf alone plus the presented certificates
 * (which normally start with the leaf again) as "untrusted". */
static STACK_OF(X509) *
presented_chain(X509_STORE_CTX *xs)
{
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    STACK_OF(X509) *untrusted = X509_STORE_CTX_get0_untrusted(xs);
    STACK_OF(X509) *chain = sk_X509_new_null();

    if (chain == NULL || leaf == NULL || !X509_up_ref(leaf))
        goto fail;
    if (!sk_X509_push(chain, leaf)) {
        X509_free(leaf);
        goto fail;
    }
    for (int i = 0; untrusted != NULL && i < sk_X509_num(untrusted); i++) {
        X509 *x = sk_X509_value(untrusted, i);
        if (X509_cmp(x, leaf) == 0)
            continue;
        if (!X509_up_ref(x))
            goto fail;
        if (!sk_X509_push(chain, x)) {
            X509_free(x);
            goto fail;
        }
    }
    return chain;
fail:
    chain_free(chain);
    return NULL;
}

/* Replaces OpenSSL's verification step so the hook always runs and the chain is kept. */
static int
verify_peer(X509_STORE_CTX *xs, void *arg)
{
    struct sigil_tls_ctx *ctx = arg;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    struct sigil_tls_conn *c = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    STACK_OF(X509) *chain = NULL;
    const char *why = NULL;

    if (c == NULL)
        return 0;
    if (ctx->has_ca) {
        if (X509_verify_cert(xs) != 1) {
            c->why = "TLS: the peer's certificate chain did not verify against the CAs";
            return 0;
        }
        chain = X509_chain_up_ref(X509_STORE_CTX_get0_chain(xs));
    } else {
        chain = presented_chain(xs);
    }
    if (chain == NULL) {
        c->why = "TLS: out of memory keeping the peer chain";
        X509_STORE_CTX_set_error(xs, X509_V_ERR_OUT_OF_MEM);
        return 0;
    }
    if (ctx->verify != NULL && ctx->verify(ctx->verify_arg, chain, &why) != 0) {
        c->why = why != NULL ? why : "TLS: the verify hook refused the peer";
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        chain_free(chain);
        return 0;
    }
    chain_free(c->peer);
    c->peer = chain;
    return 1;
}

static int
load_identity(SSL_CTX *ssl, const struct sigil_tls_opts *o, const char **why)
{
    if (o->cert != NULL || o->key != NULL) {
        if (o->cert == NULL || o->key == NULL) {
            *why = "TLS: an in-memory certificate needs its key and the other way round";
            return SIGIL_ERR_INVALID;
        }
        if (SSL_CTX_use_cert_and_key(ssl, o->cert, o->key, o->chain, 1) != 1) {
            *why = "TLS: the certificate and key do not match or are unusable";
            return SIGIL_ERR_CRYPTO;
        }
        return 0;
    }
    if (o->cert_file == NULL && o->key_file == NULL)
        return 0;
    if (o->cert_file == NULL || o->key_file == NULL) {
        *why = "TLS: cert_file needs key_file and the other way round";
        return SIGIL_ERR_INVALID;
    }
    if (SSL_CTX_use_certificate_chain_file(ssl, o->cert_file) != 1) {
        *why = "TLS: cannot load the certificate chain file (PEM, leaf first)";
        return SIGIL_ERR_IO;
    }
    if (SSL_CTX_use_PrivateKey_file(ssl, o->key_file, SSL_FILETYPE_PEM) != 1) {
        *why = "TLS: cannot load the private key file (PEM)";
        return SIGIL_ERR_IO;
    }
    if (SSL_CTX_check_private_key(ssl) != 1) {
        *why = "TLS: the private key does not match the certificate";
        return SIGIL_ERR_CRYPTO;
    }
    return 0;
}

static int
load_cas(SSL_CTX *ssl, const struct sigil_tls_opts *o, bool *has_ca, const char **why)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ssl);

    *has_ca = false;
    if (o->ca_file != NULL) {
        if (SSL_CTX_load_verify_file(ssl, o->ca_file) != 1) {
            *why = "TLS: cannot load the CA file (PEM)";
            return SIGIL_ERR_IO;
        }
        *has_ca = true;
    }
    for (int i = 0; o->ca_certs != NULL && i < sk_X509_num(o->ca_certs); i++) {
        if (X509_STORE_add_cert(store, sk_X509_value(o->ca_certs, i)) != 1) {
            *why = "TLS: cannot add an in-memory CA certificate";
            return SIGIL_ERR_CRYPTO;
        }
        *has_ca = true;
    }
    return 0;
}

static int
ctx_new(bool server, const struct sigil_tls_opts *o, struct sigil_tls_ctx **out, const char **why)
{
    struct sigil_tls_ctx *ctx = NULL;
    int r = SIGIL_ERR_NOMEM, mode;

    *out = NULL;
    *why = "TLS: out of memory";
    if ((ctx = calloc(1, sizeof *ctx)) == NULL)
        goto out;
    ctx->refs = 1;
    ctx->server = server;
    ctx->require_client_cert = o->require_client_cert;
    ctx->verify = o->verify;
    ctx->verify_arg = o->verify_arg;
    if ((ctx->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method())) == NULL)
        goto out;
    r = SIGIL_ERR_CRYPTO;
    *why = "TLS: cannot restrict the context to TLS 1.3";
    if (SSL_CTX_set_min_proto_version(ctx->ssl, TLS1_3_VERSION) != 1)
        goto out;
    SSL_CTX_set_options(ctx->ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
    /* No resumption: a resumed session would skip verify_peer and the hook. */
    SSL_CTX_set_session_cache_mode(ctx->ssl, SSL_SESS_CACHE_OFF);
    if ((r = load_identity(ctx->ssl, o, why)) != 0 ||
        (r = load_cas(ctx->ssl, o, &ctx->has_ca, why)) != 0)
        goto out;
    SSL_CTX_set_cert_verify_callback(ctx->ssl, verify_peer, ctx);
    if (server) {
        r = SIGIL_ERR_INVALID;
        if (o->cert == NULL && o->cert_file == NULL) {
            *why = "TLS: a server needs a certificate and key";
            goto out;
        }
        if (o->require_client_cert && !ctx->has_ca && o->verify == NULL) {
            *why = "TLS: requiring client certificates needs CAs or a verify hook";
            goto out;
        }
        SSL_CTX_set_num_tickets(ctx->ssl, 0);
        SSL_CTX_set_alpn_select_cb(ctx->ssl, alpn_select, NULL);
        mode = SSL_VERIFY_NONE;
        if (ctx->has_ca || o->verify != NULL)
            mode = SSL_VERIFY_PEER;
        if (o->require_client_cert)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(ctx->ssl, mode, NULL);
    } else {
        r = SIGIL_ERR_INVALID;
        if (!ctx->has_ca && o->verify == NULL) {
            *why = "TLS: a client needs CAs or a verify hook to check the server";
            goto out;
        }
        r = SIGIL_ERR_CRYPTO;
        *why = "TLS: cannot set ALPN";
        /* SSL_CTX_set_alpn_protos returns 0 on success */
        if (SSL_CTX_set_alpn_protos(ctx->ssl, alpn_h2, sizeof alpn_h2) != 0)
            goto out;
        SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, NULL);
    }
    *out = ctx;
    ctx = NULL;
    *why = NULL;
    r = 0;
out:
    sigil_tls_ctx_free(ctx);
    return r;
}

int
sigil_tls_ctx_new_server(const struct sigil_tls_opts *o, struct sigil_tls_ctx **out,
                         const char **why)
{
    return ctx_new(true, o, out, why);
}

int
sigil_tls_ctx_new_client(const struct sigil_tls_opts *o, struct sigil_tls_ctx **out,
                         const char **why)
{
    return ctx_new(false, o, out, why);
}

int
sigil_tls_ctx_set_identity(struct sigil_tls_ctx *ctx, X509 *cert, STACK_OF(X509) *chain,
                           EVP_PKEY *key, const char **why)
{
    if (cert == NULL || key == NULL ||
        SSL_CTX_use_cert_and_key(ctx->ssl, cert, key, chain, 1) != 1) {
        *why = "TLS: the new certificate and key do not match or are unusable";
        return SIGIL_ERR_CRYPTO;
    }
    return 0;
}

void
sigil_tls_ctx_ref(struct sigil_tls_ctx *ctx)
{
    ctx->refs++;
}

void
sigil_tls_ctx_free(struct sigil_tls_ctx *ctx)
{
    if (ctx == NULL || --ctx->refs > 0)
        return;
    SSL_CTX_free(ctx->ssl);
    free(ctx);
}

int
sigil_tls_conn_new(struct sigil_tls_ctx *ctx, const char *server_name, struct sigil_tls_conn **out)
{
    struct sigil_tls_conn *c = NULL;
    unsigned char ip[16];
    int r = SIGIL_ERR_NOMEM;

    *out = NULL;
    if ((c = calloc(1, sizeof *c)) == NULL)
        goto out;
    c->ctx = ctx;
    sigil_tls_ctx_ref(ctx);
    if ((c->ssl = SSL_new(ctx->ssl)) == NULL)
        goto out;
    if ((c->rbio = BIO_new(BIO_s_mem())) == NULL)
        goto out;
    if ((c->wbio = BIO_new(BIO_s_mem())) == NULL) {
        BIO_free(c->rbio);
        c->rbio = NULL;
        goto out;
    }
    /* An empty read BIO means "want more", not end of file. */
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_app_data(c->ssl, c);
    r = SIGIL_ERR_CRYPTO;
    if (ctx->server) {
        SSL_set_accept_state(c->ssl);
    } else {
        SSL_set_connect_state(c->ssl);
        if (server_name != NULL && server_name[0] != '\0') {
            if (inet_pton(AF_INET, server_name, ip) == 1 ||
                inet_pton(AF_INET6, server_name, ip) == 1) {
                if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), server_name) != 1)
                    goto out;
            } else if (SSL_set_tlsext_host_name(c->ssl, server_name) != 1 ||
                       SSL_set1_host(c->ssl, server_name) != 1) {
                goto out;
            }
        } else if (ctx->has_ca && ctx->verify == NULL) {
            /* CAs alone would accept any certificate they signed, for any name. */
            r = SIGIL_ERR_INVALID;
            goto out;
        }
    }
    *out = c;
    c = NULL;
    r = 0;
out:
    sigil_tls_conn_free(c);
    return r;
}

void
sigil_tls_conn_free(struct sigil_tls_conn *c)
{
    if (c == NULL)
        return;
    SSL_free(c->ssl);
    chain_free(c->peer);
    sigil_tls_ctx_free(c->ctx);
    free(c);
}

int
sigil_tls_conn_feed(struct sigil_tls_conn *c, const uint8_t *p, size_t n)
{
    size_t done = 0;

    while (done < n) {
        size_t w;
        if (BIO_write_ex(c->rbio, p + done, n - done, &w) != 1)
            return SIGIL_ERR_NOMEM;
        done += w;
    }
    return 0;
}

static int
fail(struct sigil_tls_conn *c, const char *why, const char **whyp, int r)
{
    const char *reason = ERR_reason_error_string(ERR_peek_last_error());

    c->failed = true;
    if (c->why == NULL)
        c->why = why;
    /* OpenSSL's reason texts are static; they say more than ours when we have nothing. */
    if (c->why == NULL)
        c->why = reason != NULL ? reason : "TLS: handshake failed";
    *whyp = c->why;
    ERR_clear_error();
    return r;
}

static int
finish_handshake(struct sigil_tls_conn *c, const char **why)
{
    const unsigned char *proto = NULL;
    unsigned int len = 0;

    SSL_get0_alpn_selected(c->ssl, &proto, &len);
    if (len != 2 || proto[0] != 'h' || proto[1] != '2')
        return fail(c, "TLS: the peer did not negotiate ALPN \"h2\"", why, SIGIL_ERR_PROTOCOL);
    if (c->ctx->server && c->ctx->require_client_cert && c->peer == NULL)
        return fail(c, "TLS: a verified client certificate is required", why, SIGIL_ERR_VERIFY);
    if (!c->ctx->server && c->peer == NULL)
        return fail(c, "TLS: the server's certificate was not verified", why, SIGIL_ERR_VERIFY);
    c->ready = true;
    return 0;
}

int
sigil_tls_conn_read(struct sigil_tls_conn *c, struct sigil_buf *plain, const char **why)
{
    int r, e;

    if (c->failed) {
        *why = c->why;
        return SIGIL_ERR_STATE;
    }
    ERR_clear_error();
    if (!c->handshake_done) {
        r = SSL_do_handshake(c->ssl);
        if (r != 1) {
            e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return 0;
            return fail(c, NULL, why, c->why != NULL ? SIGIL_ERR_VERIFY : SIGIL_ERR_CRYPTO);
        }
        c->handshake_done = true;
        if ((r = finish_handshake(c, why)) != 0)
            return r;
    }
    for (;;) {
        size_t got = 0;
        if ((r = sigil_buf_reserve(plain, 16384)) != 0)
            return r;
        r = SSL_read_ex(c->ssl, plain->data + plain->len, 16384, &got);
        if (r == 1) {
            plain->len += got;
            continue;
        }
        e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            return 0;
        if (e == SSL_ERROR_ZERO_RETURN) {
            *why = "TLS: the peer closed the session";
            return SIGIL_ERR_CANCELLED;
        }
        return fail(c, NULL, why, SIGIL_ERR_CRYPTO);
    }
}

int
sigil_tls_conn_write(struct sigil_tls_conn *c, const uint8_t *p, size_t n)
{
    size_t w;

    if (!c->ready || c->failed)
        return SIGIL_ERR_STATE;
    ERR_clear_error();
    while (n > 0) {
        if (SSL_write_ex(c->ssl, p, n, &w) != 1) {
            ERR_clear_error();
            return SIGIL_ERR_CRYPTO;
        }
        p += w;
        n -= w;
    }
    return 0;
}

int
sigil_tls_conn_take(struct sigil_tls_conn *c, struct sigil_buf *out)
{
    size_t n = BIO_ctrl_pending(c->wbio), got = 0;
    int r;

    if (n == 0)
        return 0;
    if ((r = sigil_buf_reserve(out, n)) != 0)
        return r;
    if (BIO_read_ex(c->wbio, out->data + out->len, n, &got) != 1)
        return SIGIL_ERR_INTERNAL;
    out->len += got;
    return 0;
}

void
sigil_tls_conn_shutdown(struct sigil_tls_conn *c)
{
    if (c->handshake_done && !c->failed) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
}

bool
sigil_tls_conn_ready(const struct sigil_tls_conn *c)
{
    return c->ready && !c->failed;
}

STACK_OF(X509) *
sigil_tls_conn_peer_chain(const struct sigil_tls_conn *c)
{
    return c->peer;
}
