/* TLS 1.3 (OpenSSL 3) for Sigil's TCP transports: a context holds the configuration (our
 * certificate and key, the CAs, client-certificate policy, ALPN "h2", a verify hook that sees
 * the peer's chain); a connection is a memory-BIO engine that the owner of a libuv stream
 * feeds with received ciphertext and drains of ciphertext to write. No sockets in here. */
#ifndef SIGIL_TLS_H
#define SIGIL_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sigil/buf.h"

struct sigil_tls_ctx;
struct sigil_tls_conn;

/* Called once per handshake with the peer's chain, leaf first. When the context has CAs the
 * chain was already verified against them (and the expected name); without CAs the hook is
 * the whole verification. Return 0 to accept, or a negative SIGIL_ERR_* and set *why. The
 * chain is borrowed: up-ref what you keep. */
typedef int (*sigil_tls_verify_fn)(void *arg, STACK_OF(X509) *chain, const char **why);

/* Our identity and what we trust. Files or in-memory objects (up-ref'd, never taken over). */
struct sigil_tls_opts {
    const char *cert_file;      /* PEM chain, leaf first (or use cert + chain) */
    const char *key_file;       /* PEM private key (or use key) */
    X509 *cert;                 /* leaf certificate */
    STACK_OF(X509) *chain;      /* intermediates after the leaf; may be NULL */
    EVP_PKEY *key;              /* private key of cert */
    const char *ca_file;        /* PEM CAs to verify the peer with (or ca_certs) */
    STACK_OF(X509) *ca_certs;   /* in-memory CAs */
    bool require_client_cert;   /* server: refuse clients without a verified certificate */
    sigil_tls_verify_fn verify; /* optional extra (or, without CAs, the only) peer check */
    void *verify_arg;
};

/* Creates a server context (TLS 1.3 only, ALPN must select "h2"); needs a certificate and
 * key. Returns 0 and *out (free with sigil_tls_ctx_free), or SIGIL_ERR_* with *why set. */
int sigil_tls_ctx_new_server(const struct sigil_tls_opts *o, struct sigil_tls_ctx **out,
                             const char **why);
/* Creates a client context (TLS 1.3 only, offers ALPN "h2"); needs CAs or a verify hook, a
 * client certificate is optional. Returns 0 and *out, or SIGIL_ERR_* with *why set. */
int sigil_tls_ctx_new_client(const struct sigil_tls_opts *o, struct sigil_tls_ctx **out,
                             const char **why);
/* Replaces our certificate, chain and key for handshakes that start later (SVID rotation);
 * returns 0 or SIGIL_ERR_CRYPTO with *why set. */
int sigil_tls_ctx_set_identity(struct sigil_tls_ctx *ctx, X509 *cert, STACK_OF(X509) *chain,
                               EVP_PKEY *key, const char **why);
/* Takes one more reference (connections and servers hold one each). */
void sigil_tls_ctx_ref(struct sigil_tls_ctx *ctx);
/* Drops a reference; the context is freed with the last one. NULL is ignored. */
void sigil_tls_ctx_free(struct sigil_tls_ctx *ctx);

/* Starts a connection engine. server_name (clients) is the DNS name or IP address the server
 * certificate must carry (checked when the context has CAs) and the SNI; may be NULL.
 * Returns 0 and *out (free with sigil_tls_conn_free) or SIGIL_ERR_NOMEM/SIGIL_ERR_CRYPTO. */
int sigil_tls_conn_new(struct sigil_tls_ctx *ctx, const char *server_name,
                       struct sigil_tls_conn **out);
/* Frees the engine and its peer chain. NULL is ignored. */
void sigil_tls_conn_free(struct sigil_tls_conn *c);
/* Hands over ciphertext received from the peer; returns 0 or SIGIL_ERR_NOMEM. */
int sigil_tls_conn_feed(struct sigil_tls_conn *c, const uint8_t *p, size_t n);
/* Advances the handshake and appends any decrypted bytes to plain. Returns 0 (call again after
 * more ciphertext), SIGIL_ERR_CANCELLED when the peer closed the TLS session, or another
 * SIGIL_ERR_* with *why (handshake or verification failure, no ALPN "h2"). Always drain
 * sigil_tls_conn_take afterwards: the handshake and alerts produce output. */
int sigil_tls_conn_read(struct sigil_tls_conn *c, struct sigil_buf *plain, const char **why);
/* Encrypts plaintext for the peer (only once the handshake is done); 0 or SIGIL_ERR_*. */
int sigil_tls_conn_write(struct sigil_tls_conn *c, const uint8_t *p, size_t n);
/* Appends all pending ciphertext to out; returns 0 or SIGIL_ERR_NOMEM. */
int sigil_tls_conn_take(struct sigil_tls_conn *c, struct sigil_buf *out);
/* Queues a close_notify alert (drain it with sigil_tls_conn_take). */
void sigil_tls_conn_shutdown(struct sigil_tls_conn *c);
/* True once the handshake completed, the peer was verified and ALPN chose "h2". */
bool sigil_tls_conn_ready(const struct sigil_tls_conn *c);
/* The peer's chain as verified, leaf first, or NULL when the peer sent no certificate;
 * owned by the connection. */
STACK_OF(X509) *sigil_tls_conn_peer_chain(const struct sigil_tls_conn *c);

#endif
