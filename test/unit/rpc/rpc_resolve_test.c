/* The rpc client's host names: the host:port parser (good and malformed targets), a call to
 * "localhost" and to a made-up name that getaddrinfo resolves (a hosts file bind-mounted over
 * /etc/hosts in a mount namespace of this process only), each address tried in turn, the
 * server checked by its SPIFFE ID through a verify hook as the agent does (not by the name),
 * an address that does not answer given up at its share of the call's deadline,
 * a name that does not resolve failing fast with the host in the message, and dials cancelled
 * or the client freed while the lookup runs (ASan sees any leak). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <uv.h>

#include "sigil/err.h"
#include "sigil/rpc.h"
#include "sigil/tls.h"

#include "rpc_pki.h"

#define NAME "sigil-server.made-up.test"

static struct pki K;
static char hosts_why[160]; /* why the made-up name could not be set up, or "" */
static char hosts_file[64];

static struct {
    uv_loop_t loop;
    struct sigil_rpc_server *srv;
    struct sigil_rpc_client *cli;
    int port;
    bool srv_done;
    uv_timer_t guard;
} T;

/* ---- the parser ---- */

static void
test_parse(void **state)
{
    static const struct {
        const char *in, *host;
        unsigned port;
        int family;
    } good[] = {
        {"localhost:8081", "localhost", 8081, 0},
        {"sigil-server.sigil.svc:8081", "sigil-server.sigil.svc", 8081, 0},
        {"sigil-server.sigil.svc.cluster.local.:1", "sigil-server.sigil.svc.cluster.local.", 1, 0},
        {"a-1.B2:65535", "a-1.B2", 65535, 0},
        {"10.96.100.81:8081", "10.96.100.81", 8081, AF_INET},
        {"[::1]:8081", "::1", 8081, AF_INET6},
        {"[2001:db8::5]:443", "2001:db8::5", 443, AF_INET6},
        {"x.1a:9", "x.1a", 9, 0},
    };
    static const char *const bad[] = {
        "",
        ":",
        "localhost",
        "localhost:",
        ":8081",
        "localhost:0",
        "localhost:65536",
        "localhost:99999999",
        "localhost:80a",
        "localhost:+80",
        "localhost:-1",
        "::1:8081",
        "[::1]",
        "[::1:8081",
        "::1]:8081",
        "[]:8081",
        "[zz::1]:8081",
        "[127.0.0.1]:8081",
        "[fe80::1%eth0]:8081",
        "-a.example:1",
        "a-.example:1",
        "a..b:1",
        ".a:1",
        "a b:1",
        "a_b:1",
        "1.2.3:1",
        "999.1.1.1:1",
        "8081:8081",
        "host/x:1",
        "hôte:1",
        "a:1:2",
        "a..:1",
        "a.-b:1",
    };
    struct sigil_rpc_hostport hp;
    const char *why;
    char longname[300];

    (void)state;
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        why = NULL;
        if (sigil_rpc_hostport_parse(good[i].in, strlen(good[i].in), &hp, &why) != 0)
            fail_msg("%s refused: %s", good[i].in, why);
        assert_string_equal(hp.host, good[i].host);
        assert_int_equal(hp.port, good[i].port);
        assert_int_equal(hp.family, good[i].family);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        if (sigil_rpc_hostport_parse(bad[i], strlen(bad[i]), &hp, &why) != SIGIL_ERR_INVALID)
            fail_msg("\"%s\" accepted", bad[i]);
        assert_non_null(why);
        assert_string_equal(hp.host, "");
    }
    /* a NUL inside, brackets longer than the host buffer (found by rpc_target_fuzz), a label
     * of 64, a name of 254 + ":1" */
    assert_int_equal(sigil_rpc_hostport_parse("a\0b:1", 5, &hp, &why), SIGIL_ERR_INVALID);
    longname[0] = '[';
    memset(longname + 1, ':', 280);
    memcpy(longname + 281, "]:1", 4);
    assert_int_equal(sigil_rpc_hostport_parse(longname, strlen(longname), &hp, &why),
                     SIGIL_ERR_INVALID);
    memset(longname, 'a', 64);
    memcpy(longname + 64, ":1", 3);
    assert_int_equal(sigil_rpc_hostport_parse(longname, strlen(longname), &hp, &why),
                     SIGIL_ERR_INVALID);
    for (size_t i = 0; i < 254; i++)
        longname[i] = i % 2 == 0 ? 'a' : '.';
    memcpy(longname + 253, "b:1", 4); /* 254 characters of host: too long */
    assert_int_equal(sigil_rpc_hostport_parse(longname, strlen(longname), &hp, &why),
                     SIGIL_ERR_INVALID);
    memcpy(longname + 252, ":1", 3); /* 252 characters ending in "a.a": accepted */
    longname[251] = 'a';
    assert_int_equal(sigil_rpc_hostport_parse(longname, strlen(longname), &hp, &why), 0);
}

/* ---- a server on 127.0.0.1 and a client that checks its SPIFFE ID ---- */

static void
h_echo(struct sigil_rpc_call *call, void *arg)
{
    const uint8_t *p;
    size_t len;

    (void)arg;
    p = sigil_rpc_call_request(call, &len);
    assert_int_equal(sigil_rpc_call_send(call, p, len), 0);
    assert_int_equal(sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0), 0);
}

/* The agent's check: the leaf's SPIFFE ID is the one expected (arg), whatever the host. */
static int
verify_id(void *arg, STACK_OF(X509) *chain, const char **why)
{
    struct sigil_spiffeid id;

    if (sigil_x509_cert_spiffeid(sk_X509_value(chain, 0), &id, why) != 0)
        return SIGIL_ERR_VERIFY;
    if (strcmp(id.str, arg) != 0) {
        *why = "not the expected server";
        return SIGIL_ERR_VERIFY;
    }
    return 0;
}

static void
guard_fired(uv_timer_t *t)
{
    (void)t;
    fail_msg("the loop did not finish in time");
}

static void
run_until(const bool *flag)
{
    uv_timer_start(&T.guard, guard_fired, 20000, 0);
    while (!*flag)
        uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&T.guard);
}

static void
server_done(void *arg)
{
    (void)arg;
    T.srv_done = true;
}

static int
setup(void **state)
{
    static const struct sigil_rpc_method m = {
        .path = "/sigil.test.Echo/Unary", .kind = SIGIL_RPC_UNARY, .handler = h_echo};
    struct sigil_tls_opts so = {.cert = K.server, .key = K.server_key};
    struct sigil_tls_ctx *sctx;
    const char *why = NULL;

    (void)state;
    memset(&T, 0, sizeof T);
    assert_int_equal(uv_loop_init(&T.loop), 0);
    uv_timer_init(&T.loop, &T.guard);
    uv_unref((uv_handle_t *)&T.guard);
    assert_int_equal(sigil_tls_ctx_new_server(&so, &sctx, &why), 0);
    assert_int_equal(sigil_rpc_server_new(&T.loop, NULL, &T.srv), 0);
    assert_int_equal(sigil_rpc_server_add(T.srv, &m), 0);
    assert_int_equal(sigil_rpc_server_listen_tcp(T.srv, "127.0.0.1", 0, sctx, 0, &why), 0);
    sigil_tls_ctx_free(sctx);
    T.port = sigil_rpc_server_port(T.srv);
    assert_true(T.port > 0);
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    if (T.cli != NULL)
        sigil_rpc_client_free(T.cli);
    T.cli = NULL;
    sigil_rpc_server_shutdown(T.srv, 1000, server_done, NULL);
    run_until(&T.srv_done);
    uv_close((uv_handle_t *)&T.guard, NULL);
    uv_run(&T.loop, UV_RUN_DEFAULT);
    /* every handle and request (lookups included) is done */
    assert_int_equal(uv_loop_close(&T.loop), 0);
    return 0;
}

static void
client(const char *host, const char *want_id)
{
    struct sigil_tls_opts co = {.verify = verify_id, .verify_arg = (void *)want_id};
    struct sigil_rpc_client_opts o = {0};
    struct sigil_tls_ctx *cctx;
    char target[300];
    const char *why = NULL;

    snprintf(target, sizeof target, "%s:%d", host, T.port);
    assert_int_equal(sigil_tls_ctx_new_client(&co, &cctx, &why), 0);
    o.target = target;
    o.tls = cctx;
    if (sigil_rpc_client_new(&T.loop, &o, &T.cli, &why) != 0)
        fail_msg("%s: %s", target, why);
    sigil_tls_ctx_free(cctx);
}

struct result {
    bool done;
    int code;
    char msg[512];
    uint64_t ms;
};

static void
unary_done(void *ud, int code, const char *message, const uint8_t *resp, size_t len)
{
    struct result *r = ud;

    r->done = true;
    r->code = code;
    snprintf(r->msg, sizeof r->msg, "%s", message);
    if (code == SIGIL_RPC_OK)
        assert_true(len == 2 && memcmp(resp, "hi", 2) == 0);
}

static void
call(uint64_t timeout_ms, struct result *r)
{
    uint64_t t0 = uv_hrtime();

    memset(r, 0, sizeof *r);
    assert_int_equal(sigil_rpc_client_unary(T.cli, "/sigil.test.Echo/Unary", NULL, 0, "hi", 2,
                                            timeout_ms, unary_done, r),
                     0);
    run_until(&r->done);
    r->ms = (uv_hrtime() - t0) / 1000000;
}

/* ---- tests ---- */

static void
test_localhost(void **state)
{
    struct result r;

    (void)state;
    client("localhost", "spiffe://example.org/server");
    call(5000, &r);
    if (r.code != SIGIL_RPC_OK)
        fail_msg("localhost: %d %s", r.code, r.msg);
    /* an IP literal still works (no lookup) */
    sigil_rpc_client_free(T.cli);
    client("127.0.0.1", "spiffe://example.org/server");
    call(5000, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
}

static void
test_made_up_name(void **state)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    struct result r;

    (void)state;
    if (hosts_why[0] != '\0') {
        print_message("skipped: %s\n", hosts_why);
        skip();
    }
    /* what the resolver gives: ::1 first (it refuses: the server is on 127.0.0.1 only), so the
     * call below goes through only if the client moves on to the next address */
    assert_int_equal(getaddrinfo(NAME, NULL, &hints, &res), 0);
    assert_int_equal(res->ai_family, AF_INET6);
    freeaddrinfo(res);
    client(NAME, "spiffe://example.org/server");
    call(5000, &r);
    if (r.code != SIGIL_RPC_OK)
        fail_msg(NAME ": %d %s", r.code, r.msg);
    /* a second call on the same connection */
    call(5000, &r);
    assert_int_equal(r.code, SIGIL_RPC_OK);
    sigil_rpc_client_free(T.cli);

    /* the peer is checked by its SPIFFE ID, not by the name: another ID is refused */
    client(NAME, "spiffe://example.org/not-the-server");
    call(5000, &r);
    assert_int_equal(r.code, SIGIL_RPC_UNAVAILABLE);
    assert_non_null(strstr(r.msg, "not the expected server"));
}

/* "localhost.:PORT" (the hosts file has the dotted name): the name checked against the
 * certificate (DNS SAN "localhost", CAs and no hook) has no final dot; given with one, the
 * check fails. */
static void
test_final_dot(void **state)
{
    struct sigil_tls_opts co = {.ca_certs = K.roots};
    struct sigil_rpc_client_opts o = {0};
    struct sigil_tls_ctx *cctx;
    char target[64];
    const char *why = NULL;
    struct result r;

    (void)state;
    if (hosts_why[0] != '\0') {
        print_message("skipped: %s\n", hosts_why);
        skip();
    }
    snprintf(target, sizeof target, "localhost.:%d", T.port);
    assert_int_equal(sigil_tls_ctx_new_client(&co, &cctx, &why), 0);
    o.target = target;
    o.tls = cctx;
    assert_int_equal(sigil_rpc_client_new(&T.loop, &o, &T.cli, &why), 0);
    call(5000, &r);
    if (r.code != SIGIL_RPC_OK)
        fail_msg("%s: %d %s", target, r.code, r.msg);
    sigil_rpc_client_free(T.cli);
    o.server_name = "localhost.";
    assert_int_equal(sigil_rpc_client_new(&T.loop, &o, &T.cli, &why), 0);
    sigil_tls_ctx_free(cctx);
    call(5000, &r);
    assert_int_equal(r.code, SIGIL_RPC_UNAVAILABLE);
}

/* ::1 at the server's port accepts no connection (a listener with a full backlog: the SYN is
 * dropped and the connect hangs); the attempt's limit, half of the 3 s deadline for the first
 * of two addresses, moves on to 127.0.0.1 in time. Without the limit the call would meet its
 * deadline still connecting. */
static void
test_attempt_timeout(void **state)
{
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    struct result r;
    int lfd, filler;

    (void)state;
    if (hosts_why[0] != '\0') {
        print_message("skipped: %s\n", hosts_why);
        skip();
    }
    sin6.sin6_port = htons((uint16_t)T.port);
    assert_true((lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
    assert_true((filler = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
    if (bind(lfd, (struct sockaddr *)&sin6, sizeof sin6) != 0) {
        print_message("skipped: cannot bind [::1]:%d: %s\n", T.port, strerror(errno));
        close(lfd);
        close(filler);
        skip();
    }
    assert_int_equal(listen(lfd, 0), 0);
    assert_int_equal(connect(filler, (struct sockaddr *)&sin6, sizeof sin6), 0);
    client(NAME, "spiffe://example.org/server");
    call(3000, &r);
    close(filler);
    close(lfd);
    if (r.code != SIGIL_RPC_OK)
        fail_msg("%d %s after %llu ms", r.code, r.msg, (unsigned long long)r.ms);
    print_message("[::1] hanging, then 127.0.0.1: OK after %llu ms\n", (unsigned long long)r.ms);
    assert_true(r.ms >= 1400 && r.ms < 3000);
}

static void
test_unresolvable(void **state)
{
    struct result r;

    (void)state;
    client("nonexistent.invalid", "spiffe://example.org/server");
    call(10000, &r);
    assert_int_equal(r.code, SIGIL_RPC_UNAVAILABLE);
    if (strstr(r.msg, "cannot resolve host \"nonexistent.invalid\"") == NULL)
        fail_msg("message: %s", r.msg);
    assert_true(r.ms < 5000);
    print_message("nonexistent.invalid: \"%s\" after %llu ms\n", r.msg, (unsigned long long)r.ms);
    /* the next call tries again (a new connection, a new lookup) */
    call(10000, &r);
    assert_int_equal(r.code, SIGIL_RPC_UNAVAILABLE);
    assert_non_null(strstr(r.msg, "nonexistent.invalid"));
}

/* A port of 127.0.0.1 nobody listens on (bound, then closed). */
static int
free_port(void)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sin;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    port = ntohs(sin.sin_port);
    close(fd);
    return port;
}

static void
test_refused_names_host(void **state)
{
    struct result r;

    (void)state;
    T.port = free_port();
    client("localhost", "spiffe://example.org/server");
    call(5000, &r);
    assert_int_equal(r.code, SIGIL_RPC_UNAVAILABLE);
    if (strstr(r.msg, "cannot connect: localhost") == NULL || strstr(r.msg, "refused") == NULL)
        fail_msg("message: %s", r.msg);
    print_message("localhost: \"%s\"\n", r.msg);
    sigil_rpc_client_free(T.cli);
    client("127.0.0.1", "spiffe://example.org/server");
    call(5000, &r);
    assert_int_equal(r.code, SIGIL_RPC_UNAVAILABLE);
    if (strstr(r.msg, "127.0.0.1 port") == NULL || strstr(r.msg, "refused") == NULL)
        fail_msg("message: %s", r.msg);
}

static bool cancelled_end;

static void
on_end_cancelled(struct sigil_rpc_ccall *c, void *ud, int code, const char *message)
{
    (void)c;
    (void)ud;
    (void)message;
    assert_int_equal(code, SIGIL_RPC_CANCELLED);
    cancelled_end = true;
}

/* A call cancelled while its connection's name is being looked up, then the client freed
 * with the lookup still running, then a client freed with a call waiting for a lookup: the
 * loop closes with nothing left (teardown) and ASan sees no leak. */
static void
test_cancel_during_resolution(void **state)
{
    struct sigil_rpc_ccall_cbs cbs = {.on_end = on_end_cancelled};
    struct sigil_rpc_ccall *c = NULL;
    struct result r;

    (void)state;
    client("nonexistent.invalid", "spiffe://example.org/server");
    cancelled_end = false;
    assert_int_equal(
        sigil_rpc_client_call(T.cli, "/sigil.test.Echo/Unary", NULL, 0, 5000, &cbs, NULL, &c), 0);
    sigil_rpc_ccall_cancel(c);
    assert_true(cancelled_end);
    sigil_rpc_client_free(T.cli); /* the lookup is still in a thread */
    T.cli = NULL;

    client("localhost", "spiffe://example.org/server");
    memset(&r, 0, sizeof r);
    assert_int_equal(sigil_rpc_client_unary(T.cli, "/sigil.test.Echo/Unary", NULL, 0, "hi", 2, 5000,
                                            unary_done, &r),
                     0);
    sigil_rpc_client_free(T.cli); /* the call ends CANCELLED now, the lookup finishes later */
    T.cli = NULL;
    assert_true(r.done);
    assert_int_equal(r.code, SIGIL_RPC_CANCELLED);
}

/* ---- the made-up name: a hosts file of our own, in a mount namespace of our own ---- */

static bool
write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    bool ok;

    if (fd < 0)
        return false;
    ok = write(fd, text, strlen(text)) == (ssize_t)strlen(text);
    close(fd);
    return ok;
}

/* Before any thread exists (unshare(CLONE_NEWNS) needs that): a new mount namespace (as root,
 * else inside a new user namespace), / made private so nothing propagates out, and a hosts
 * file naming NAME bind-mounted on /etc/hosts. Nothing outside this process changes. */
static void
hosts_setup(void)
{
    const char *text = "::1 " NAME "\n127.0.0.1 " NAME "\n127.0.0.1 localhost\n"
                       "127.0.0.1 localhost.\n";
    char map[64];
    uid_t uid = getuid();
    gid_t gid = getgid();
    int fd;

    snprintf(hosts_file, sizeof hosts_file, "/tmp/sigil-hosts-XXXXXX");
    if ((fd = mkstemp(hosts_file)) < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text)) {
        snprintf(hosts_why, sizeof hosts_why, "cannot write a hosts file: %s", strerror(errno));
        return;
    }
    close(fd);
    if (unshare(CLONE_NEWNS) != 0) {
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) {
            snprintf(hosts_why, sizeof hosts_why, "no mount namespace: %s", strerror(errno));
            return;
        }
        snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
        (void)write_file("/proc/self/setgroups", "deny");
        if (!write_file("/proc/self/uid_map", map)) {
            snprintf(hosts_why, sizeof hosts_why, "cannot map the uid");
            return;
        }
        snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
        (void)write_file("/proc/self/gid_map", map);
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount(hosts_file, "/etc/hosts", NULL, MS_BIND, NULL) != 0)
        snprintf(hosts_why, sizeof hosts_why, "cannot bind-mount a hosts file: %s",
                 strerror(errno));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test_setup_teardown(test_localhost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_made_up_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_final_dot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempt_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unresolvable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_names_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_during_resolution, setup, teardown),
    };
    int r;

    signal(SIGPIPE, SIG_IGN);
    hosts_setup();
    pki_make(&K);
    r = cmocka_run_group_tests(tests, NULL, NULL);
    pki_free(&K);
    if (hosts_file[0] != '\0')
        unlink(hosts_file);
    return r;
}
