/* Unit tests of the TLS engine: two engines handshake through memory (no sockets) with mTLS,
 * name checks, the verify hook, ALPN "h2" enforcement and TLS 1.3 only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/ssl.h>

#include "sigil/err.h"
#include "sigil/tls.h"

#include "rpc_pki.h"

static struct pki K;

struct side {
    struct sigil_tls_conn *c;
    struct sigil_buf plain;
    int r;
    const char *why;
};

/* Moves ciphertext both ways until neither side has anything more to say. */
static void
pump(struct side *a, struct side *b)
{
    for (int round = 0; round < 50; round++) {
        struct side *s[2] = {a, b};
        bool moved = false;
        for (int i = 0; i < 2; i++) {
            struct sigil_buf out = {0};
            if (s[i]->r == 0)
                s[i]->r = sigil_tls_conn_read(s[i]->c, &s[i]->plain, &s[i]->why);
            assert_int_equal(sigil_tls_conn_take(s[i]->c, &out), 0);
            if (out.len > 0) {
                moved = true;
                assert_int_equal(sigil_tls_conn_feed(s[1 - i]->c, out.data, out.len), 0);
            }
            sigil_buf_free(&out);
        }
        if (!moved && round > 0)
            return;
    }
    fail_msg("TLS pump did not settle");
}

static struct sigil_tls_ctx *
server_ctx(bool require_client, sigil_tls_verify_fn hook, void *arg)
{
    struct sigil_tls_opts o = {
        .cert = K.server,
        .key = K.server_key,
        .ca_certs = K.roots,
        .require_client_cert = require_client,
        .verify = hook,
        .verify_arg = arg,
    };
    struct sigil_tls_ctx *ctx = NULL;
    const char *why = NULL;

    if (sigil_tls_ctx_new_server(&o, &ctx, &why) != 0)
        fail_msg("server ctx: %s", why);
    return ctx;
}

static struct sigil_tls_ctx *
client_ctx(bool with_cert, STACK_OF(X509) *cas)
{
    struct sigil_tls_opts o = {.ca_certs = cas};
    struct sigil_tls_ctx *ctx = NULL;
    const char *why = NULL;

    if (with_cert) {
        o.cert = K.client;
        o.key = K.client_key;
    }
    if (sigil_tls_ctx_new_client(&o, &ctx, &why) != 0)
        fail_msg("client ctx: %s", why);
    return ctx;
}

static void
side_free(struct side *s)
{
    sigil_tls_conn_free(s->c);
    sigil_buf_free(&s->plain);
}

static void
handshake(struct sigil_tls_ctx *sctx, struct sigil_tls_ctx *cctx, const char *name,
          struct side *srv, struct side *cli)
{
    memset(srv, 0, sizeof *srv);
    memset(cli, 0, sizeof *cli);
    assert_int_equal(sigil_tls_conn_new(sctx, NULL, &srv->c), 0);
    assert_int_equal(sigil_tls_conn_new(cctx, name, &cli->c), 0);
    pump(cli, srv);
}

static void
test_mtls_ok(void **state)
{
    struct sigil_tls_ctx *sctx = server_ctx(true, NULL, NULL), *cctx = client_ctx(true, K.roots);
    struct side srv, cli;

    (void)state;
    handshake(sctx, cctx, "localhost", &srv, &cli);
    assert_int_equal(srv.r, 0);
    assert_int_equal(cli.r, 0);
    assert_true(sigil_tls_conn_ready(srv.c));
    assert_true(sigil_tls_conn_ready(cli.c));
    /* both see the verified chain, leaf first, ending at the root */
    STACK_OF(X509) *pc = sigil_tls_conn_peer_chain(srv.c);
    assert_non_null(pc);
    assert_int_equal(X509_cmp(sk_X509_value(pc, 0), K.client), 0);
    assert_int_equal(X509_cmp(sk_X509_value(pc, sk_X509_num(pc) - 1), K.root), 0);
    pc = sigil_tls_conn_peer_chain(cli.c);
    assert_non_null(pc);
    assert_int_equal(X509_cmp(sk_X509_value(pc, 0), K.server), 0);

    /* application data both ways */
    assert_int_equal(sigil_tls_conn_write(cli.c, (const uint8_t *)"ping", 4), 0);
    assert_int_equal(sigil_tls_conn_write(srv.c, (const uint8_t *)"pong!", 5), 0);
    pump(&cli, &srv);
    assert_int_equal(srv.plain.len, 4);
    assert_memory_equal(srv.plain.data, "ping", 4);
    assert_int_equal(cli.plain.len, 5);
    assert_memory_equal(cli.plain.data, "pong!", 5);

    /* close_notify reaches the other side as CANCELLED */
    sigil_tls_conn_shutdown(cli.c);
    pump(&cli, &srv);
    assert_int_equal(srv.r, SIGIL_ERR_CANCELLED);

    side_free(&srv);
    side_free(&cli);
    sigil_tls_ctx_free(sctx);
    sigil_tls_ctx_free(cctx);
}

static void
test_client_cert_required(void **state)
{
    struct sigil_tls_ctx *sctx = server_ctx(true, NULL, NULL), *cctx = client_ctx(false, K.roots);
    struct side srv, cli;

    (void)state;
    handshake(sctx, cctx, "localhost", &srv, &cli);
    assert_true(srv.r < 0);
    assert_false(sigil_tls_conn_ready(srv.c));
    /* the client learns it from the server's alert */
    assert_true(cli.r < 0);
    side_free(&srv);
    side_free(&cli);
    sigil_tls_ctx_free(sctx);

    /* optional client certificate: no certificate is fine, and no chain is reported */
    sctx = server_ctx(false, NULL, NULL);
    handshake(sctx, cctx, "localhost", &srv, &cli);
    assert_int_equal(srv.r, 0);
    assert_true(sigil_tls_conn_ready(srv.c));
    assert_null(sigil_tls_conn_peer_chain(srv.c));
    side_free(&srv);
    side_free(&cli);
    sigil_tls_ctx_free(sctx);
    sigil_tls_ctx_free(cctx);
}

static void
test_wrong_name_or_ca(void **state)
{
    struct sigil_tls_ctx *sctx = server_ctx(false, NULL, NULL), *cctx = client_ctx(true, K.roots);
    STACK_OF(X509) *other = sk_X509_new_null();
    struct side srv, cli;

    (void)state;
    handshake(sctx, cctx, "example.com", &srv, &cli);
    assert_int_equal(cli.r, SIGIL_ERR_VERIFY);
    assert_non_null(cli.why);
    assert_false(sigil_tls_conn_ready(cli.c));
    side_free(&srv);
    side_free(&cli);
    sigil_tls_ctx_free(cctx);

    /* a CA that did not sign the server */
    assert_true(sk_X509_push(other, K.other_root) > 0);
    cctx = client_ctx(false, other);
    handshake(sctx, cctx, "localhost", &srv, &cli);
    assert_int_equal(cli.r, SIGIL_ERR_VERIFY);
    assert_non_null(strstr(cli.why, "did not verify"));
    side_free(&srv);
    side_free(&cli);
    sigil_tls_ctx_free(cctx);
    sk_X509_free(other);

    /* CAs without a name to check would accept any certificate they signed */
    cctx = client_ctx(false, K.roots);
    assert_int_equal(sigil_tls_conn_new(cctx, NULL, &cli.c), SIGIL_ERR_INVALID);
    sigil_tls_ctx_free(cctx);
    sigil_tls_ctx_free(sctx);
}

static int hook_calls;

static int
refuse_hook(void *arg, STACK_OF(X509) *chain, const char **why)
{
    (void)arg;
    hook_calls++;
    assert_true(sk_X509_num(chain) >= 1);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), K.client), 0);
    *why = "test hook: not this client";
    return SIGIL_ERR_DENIED;
}

static void
test_verify_hook(void **state)
{
    struct sigil_tls_ctx *sctx = server_ctx(true, refuse_hook, NULL);
    struct sigil_tls_ctx *cctx = client_ctx(true, K.roots);
    struct side srv, cli;

    (void)state;
    hook_calls = 0;
    handshake(sctx, cctx, "localhost", &srv, &cli);
    assert_int_equal(hook_calls, 1);
    assert_int_equal(srv.r, SIGIL_ERR_VERIFY);
    assert_string_equal(srv.why, "test hook: not this client");
    side_free(&srv);
    side_free(&cli);
    sigil_tls_ctx_free(sctx);
    sigil_tls_ctx_free(cctx);
}

/* A plain OpenSSL client offering some ALPN list (or none) against our server. */
static int
raw_client(struct sigil_tls_ctx *sctx, const unsigned char *alpn, unsigned alpn_len, int max_ver,
           const char **why)
{
    SSL_CTX *cx = SSL_CTX_new(TLS_client_method());
    SSL *ssl;
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    struct side srv = {0};
    int r = 0;

    assert_non_null(cx);
    SSL_CTX_set_verify(cx, SSL_VERIFY_NONE, NULL);
    if (max_ver != 0)
        SSL_CTX_set_max_proto_version(cx, max_ver);
    if (alpn != NULL)
        assert_int_equal(SSL_CTX_set_alpn_protos(cx, alpn, alpn_len), 0);
    ssl = SSL_new(cx);
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(ssl, rb, wb);
    SSL_set_connect_state(ssl);
    assert_int_equal(sigil_tls_conn_new(sctx, NULL, &srv.c), 0);
    for (int round = 0; round < 20 && srv.r == 0 && !sigil_tls_conn_ready(srv.c); round++) {
        struct sigil_buf out = {0};
        uint8_t tmp[16384];
        int n;
        SSL_do_handshake(ssl);
        while ((n = BIO_read(wb, tmp, sizeof tmp)) > 0)
            assert_int_equal(sigil_tls_conn_feed(srv.c, tmp, (size_t)n), 0);
        srv.r = sigil_tls_conn_read(srv.c, &srv.plain, &srv.why);
        assert_int_equal(sigil_tls_conn_take(srv.c, &out), 0);
        if (out.len > 0)
            BIO_write(rb, out.data, (int)out.len);
        sigil_buf_free(&out);
    }
    r = srv.r;
    *why = srv.why;
    if (r == 0 && !sigil_tls_conn_ready(srv.c))
        r = 1;
    side_free(&srv);
    SSL_free(ssl);
    SSL_CTX_free(cx);
    return r;
}

static void
test_alpn_and_version(void **state)
{
    struct sigil_tls_ctx *sctx = server_ctx(false, NULL, NULL);
    static const unsigned char h2[] = {2, 'h', '2'};
    static const unsigned char h1[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    static const unsigned char both[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1', 2, 'h', '2'};
    const char *why = NULL;

    (void)state;
    assert_int_equal(raw_client(sctx, h2, sizeof h2, 0, &why), 0);
    assert_int_equal(raw_client(sctx, both, sizeof both, 0, &why), 0);
    assert_true(raw_client(sctx, h1, sizeof h1, 0, &why) < 0);
    /* no ALPN at all: the handshake completes, then the engine refuses */
    assert_int_equal(raw_client(sctx, NULL, 0, 0, &why), SIGIL_ERR_PROTOCOL);
    assert_non_null(strstr(why, "h2"));
    /* TLS 1.2 is refused */
    assert_true(raw_client(sctx, h2, sizeof h2, TLS1_2_VERSION, &why) < 0);
    sigil_tls_ctx_free(sctx);
}

static void
test_ctx_refusals(void **state)
{
    struct sigil_tls_opts o = {0};
    struct sigil_tls_ctx *ctx = NULL;
    const char *why = NULL;

    (void)state;
    assert_int_equal(sigil_tls_ctx_new_server(&o, &ctx, &why), SIGIL_ERR_INVALID);
    assert_null(ctx);
    assert_int_equal(sigil_tls_ctx_new_client(&o, &ctx, &why), SIGIL_ERR_INVALID);
    o.cert = K.server;
    assert_int_equal(sigil_tls_ctx_new_server(&o, &ctx, &why), SIGIL_ERR_INVALID);
    o.key = K.client_key; /* not the server's key */
    assert_int_equal(sigil_tls_ctx_new_server(&o, &ctx, &why), SIGIL_ERR_CRYPTO);
    o.key = K.server_key;
    o.require_client_cert = true; /* ...with nothing to verify clients against */
    assert_int_equal(sigil_tls_ctx_new_server(&o, &ctx, &why), SIGIL_ERR_INVALID);
    o.cert_file = "/nonexistent/cert.pem";
    o.cert = NULL;
    o.key = NULL;
    o.key_file = "/nonexistent/key.pem";
    o.require_client_cert = false;
    assert_int_equal(sigil_tls_ctx_new_server(&o, &ctx, &why), SIGIL_ERR_IO);
    assert_non_null(why);
}

static int
setup(void **state)
{
    (void)state;
    pki_make(&K);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    pki_free(&K);
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mtls_ok),          cmocka_unit_test(test_client_cert_required),
        cmocka_unit_test(test_wrong_name_or_ca), cmocka_unit_test(test_verify_hook),
        cmocka_unit_test(test_alpn_and_version), cmocka_unit_test(test_ctx_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
