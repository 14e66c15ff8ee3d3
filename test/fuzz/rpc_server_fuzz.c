/* Fuzzes the gRPC server from the wire: the input (after the HTTP/2 client preface, added
 * when missing) is the whole client side of one connection, fed through
 * sigil_rpc_server_feed_raw into the real server code (nghttp2 session, gRPC checks, handlers)
 * with small caps so the limits are reached. Sanitizers catch the rest. */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "sigil/err.h"
#include "sigil/rpc.h"

static uv_loop_t *loop;
static struct sigil_rpc_server *srv;

static void
h_echo(struct sigil_rpc_call *call, void *arg)
{
    const uint8_t *p;
    size_t len;

    (void)arg;
    p = sigil_rpc_call_request(call, &len);
    if (p == NULL)
        abort();
    sigil_rpc_call_send(call, p, len);
    sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
}

static void
h_stream(struct sigil_rpc_call *call, void *arg)
{
    const uint8_t *p;
    size_t len;

    (void)arg;
    p = sigil_rpc_call_request(call, &len);
    for (int i = 0; i < 3; i++)
        sigil_rpc_call_send(call, p, len);
    sigil_rpc_call_finish(call, SIGIL_RPC_ABORTED, "100% \xff done", NULL, 0);
}

static void
on_message(struct sigil_rpc_call *call, void *ud, const uint8_t *msg, size_t len)
{
    (void)ud;
    sigil_rpc_call_send(call, msg, len);
}

static void
on_half_close(struct sigil_rpc_call *call, void *ud)
{
    (void)ud;
    sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
}

static void
on_cancel(struct sigil_rpc_call *call, void *ud)
{
    (void)call;
    (void)ud;
}

static void
h_bidi(struct sigil_rpc_call *call, void *arg)
{
    static const struct sigil_rpc_call_cbs cbs = {
        .on_message = on_message, .on_half_close = on_half_close, .on_cancel = on_cancel};

    (void)arg;
    sigil_rpc_call_set_cbs(call, &cbs, NULL);
}

static void
setup(void)
{
    static const struct sigil_rpc_method methods[] = {
        {.path = "/a.B/Unary", .kind = SIGIL_RPC_UNARY, .handler = h_echo},
        {.path = "/a.B/Stream", .kind = SIGIL_RPC_SERVER_STREAM, .handler = h_stream},
        {.path = "/a.B/Bidi", .kind = SIGIL_RPC_BIDI, .handler = h_bidi},
        {.path = "/a.B/Client", .kind = SIGIL_RPC_CLIENT_STREAM, .handler = h_bidi},
        {.path = "/SpiffeWorkloadAPI/FetchJWTSVID",
         .kind = SIGIL_RPC_UNARY,
         .handler = h_echo,
         .required_header = "workload.spiffe.io",
         .required_value = "true"},
    };
    struct sigil_rpc_server_opts o = {
        .max_message = 1024,
        .max_outbound = 4096,
        .max_concurrent_streams = 8,
        .max_header_list = 2048,
        .rst_limit = 10,
    };

    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    if (sigil_rpc_server_new(loop, &o, &srv) != 0)
        abort();
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (sigil_rpc_server_add(srv, &methods[i]) != 0)
            abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const size_t pl = sizeof preface - 1;
    uint8_t *buf;

    if (srv == NULL)
        setup();
    if (size > (1u << 20))
        return 0;
    if (size >= pl && memcmp(data, preface, pl) == 0) {
        sigil_rpc_server_feed_raw(srv, data, size);
    } else {
        if ((buf = malloc(pl + size)) == NULL)
            return 0;
        memcpy(buf, preface, pl);
        if (size > 0)
            memcpy(buf + pl, data, size);
        sigil_rpc_server_feed_raw(srv, buf, pl + size);
        free(buf);
    }
    /* let the connection's handles close */
    uv_run(loop, UV_RUN_NOWAIT);
    uv_run(loop, UV_RUN_NOWAIT);
    return 0;
}
