/* A gRPC test client on lib/rpc for test_rpc_grpcio_client.py: one call of any kind against
 * --target (unix:///path or host:port with TLS: --ca, optional --cert/--key, --server-name).
 * Prints "HEADERS" when response headers arrive, "MSG <text>" per response message (hex if
 * not printable ASCII) and finally "STATUS <code> <NAME> <message>"; exit 0 once the call
 * ended (whatever its status), 2 for usage or setup errors.
 *
 *   --method PATH --kind unary|server|client|bidi [--data TEXT]... [--timeout MS]
 *   [--md name=value]... [--cancel-after N] [--sync] [--max-message N] */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "sigil/err.h"
#include "sigil/rpc.h"
#include "sigil/tls.h"

#define MAX_ITEMS 64

static struct sigil_rpc_client *cli;
static unsigned long cancel_after, received;

static void
print_msg(const char *tag, const uint8_t *p, size_t n)
{
    bool text = true;

    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7e)
            text = false;
    printf("%s ", tag);
    if (text) {
        fwrite(p, 1, n, stdout);
    } else {
        printf("hex:");
        for (size_t i = 0; i < n; i++)
            printf("%02x", p[i]);
    }
    printf("\n");
    fflush(stdout);
}

static void
print_status(int code, const char *message)
{
    const char *name = sigil_rpc_code_name(code);

    printf("STATUS %d %s %s\n", code, name != NULL ? name : "?", message != NULL ? message : "");
    fflush(stdout);
}

static void
on_headers(struct sigil_rpc_ccall *call, void *ud)
{
    (void)call;
    (void)ud;
    printf("HEADERS\n");
}

static void
on_message(struct sigil_rpc_ccall *call, void *ud, const uint8_t *msg, size_t len)
{
    (void)ud;
    print_msg("MSG", msg, len);
    if (cancel_after > 0 && ++received == cancel_after)
        sigil_rpc_ccall_cancel(call);
}

static void
on_end(struct sigil_rpc_ccall *call, void *ud, int code, const char *message)
{
    (void)call;
    (void)ud;
    print_status(code, message);
    sigil_rpc_client_free(cli);
}

static void
unary_done(void *ud, int code, const char *message, const uint8_t *resp, size_t len)
{
    (void)ud;
    if (resp != NULL)
        print_msg("MSG", resp, len);
    print_status(code, message);
    sigil_rpc_client_free(cli);
}

static int
usage(void)
{
    fprintf(stderr, "usage: rpc_test_client --target T --method PATH --kind "
                    "unary|server|client|bidi [--data TEXT]... [--timeout MS] [--md k=v]... "
                    "[--ca PEM [--cert PEM --key PEM] [--server-name NAME]] [--cancel-after N] "
                    "[--sync] [--max-message N]\n");
    return 2;
}

int
main(int argc, char **argv)
{
    static const struct sigil_rpc_ccall_cbs cbs = {
        .on_headers = on_headers, .on_message = on_message, .on_end = on_end};
    struct sigil_rpc_client_opts o = {0};
    struct sigil_tls_opts to = {0};
    struct sigil_rpc_md md[MAX_ITEMS];
    const char *data[MAX_ITEMS], *method = NULL, *kind = "unary", *why = NULL;
    size_t nmd = 0, ndata = 0;
    unsigned long timeout = 0;
    bool sync = false;
    struct sigil_rpc_ccall *call = NULL;
    uv_loop_t *loop;
    int r;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--sync") == 0) {
            sync = true;
            continue;
        }
        if (v == NULL)
            return usage();
        i++;
        if (strcmp(a, "--target") == 0) {
            o.target = v;
        } else if (strcmp(a, "--method") == 0) {
            method = v;
        } else if (strcmp(a, "--kind") == 0) {
            kind = v;
        } else if (strcmp(a, "--data") == 0 && ndata < MAX_ITEMS) {
            data[ndata++] = v;
        } else if (strcmp(a, "--timeout") == 0) {
            timeout = strtoul(v, NULL, 10);
        } else if (strcmp(a, "--md") == 0 && nmd < MAX_ITEMS) {
            char *eq = strchr(v, '=');
            if (eq == NULL)
                return usage();
            *eq = '\0';
            md[nmd++] = (struct sigil_rpc_md){v, (const uint8_t *)(eq + 1), strlen(eq + 1)};
        } else if (strcmp(a, "--ca") == 0) {
            to.ca_file = v;
        } else if (strcmp(a, "--cert") == 0) {
            to.cert_file = v;
        } else if (strcmp(a, "--key") == 0) {
            to.key_file = v;
        } else if (strcmp(a, "--server-name") == 0) {
            o.server_name = v;
        } else if (strcmp(a, "--cancel-after") == 0) {
            cancel_after = strtoul(v, NULL, 10);
        } else if (strcmp(a, "--max-message") == 0) {
            o.max_message = strtoul(v, NULL, 10);
        } else {
            return usage();
        }
    }
    if (o.target == NULL || method == NULL)
        return usage();
    signal(SIGPIPE, SIG_IGN);
    if (to.ca_file != NULL && (r = sigil_tls_ctx_new_client(&to, &o.tls, &why)) != 0) {
        fprintf(stderr, "rpc_test_client: %s\n", why);
        return 2;
    }
    if (sync) {
        struct sigil_rpc_result res;
        const char *req = ndata > 0 ? data[0] : "";
        r = sigil_rpc_unary_sync(&o, method, md, nmd, req, strlen(req), timeout, &res, &why);
        sigil_tls_ctx_free(o.tls);
        if (r != 0) {
            fprintf(stderr, "rpc_test_client: %s\n", why);
            return 2;
        }
        if (res.code == SIGIL_RPC_OK)
            print_msg("MSG", res.response.data, res.response.len);
        print_status(res.code, res.message);
        sigil_rpc_result_free(&res);
        return 0;
    }
    loop = uv_default_loop();
    if ((r = sigil_rpc_client_new(loop, &o, &cli, &why)) != 0) {
        fprintf(stderr, "rpc_test_client: %s\n", why);
        sigil_tls_ctx_free(o.tls);
        return 2;
    }
    sigil_tls_ctx_free(o.tls); /* the client holds its own reference */
    if (strcmp(kind, "unary") == 0) {
        const char *req = ndata > 0 ? data[0] : "";
        r = sigil_rpc_client_unary(cli, method, md, nmd, req, strlen(req), timeout, unary_done,
                                   NULL);
    } else if (strcmp(kind, "server") == 0) {
        const char *req = ndata > 0 ? data[0] : "";
        r = sigil_rpc_client_server_stream(cli, method, md, nmd, req, strlen(req), timeout, &cbs,
                                           NULL, &call);
    } else if (strcmp(kind, "client") == 0 || strcmp(kind, "bidi") == 0) {
        if ((r = sigil_rpc_client_call(cli, method, md, nmd, timeout, &cbs, NULL, &call)) == 0) {
            for (size_t i = 0; i < ndata && r == 0; i++)
                r = sigil_rpc_ccall_send(call, data[i], strlen(data[i]));
            if (r == 0)
                r = sigil_rpc_ccall_close_send(call);
        }
    } else {
        sigil_rpc_client_free(cli);
        uv_run(loop, UV_RUN_DEFAULT);
        return usage();
    }
    if (r != 0) {
        fprintf(stderr, "rpc_test_client: cannot start the call: %s\n", sigil_strerror(r));
        sigil_rpc_client_free(cli);
        uv_run(loop, UV_RUN_DEFAULT);
        return 2;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    if (uv_loop_close(loop) != 0) {
        fprintf(stderr, "rpc_test_client: handles left open at exit\n");
        return 3;
    }
    return 0;
}
