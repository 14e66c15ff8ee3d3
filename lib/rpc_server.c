/* The gRPC server's sockets: Unix listeners (mode, group, safe replacement of a stale socket
 * file, SO_PEERCRED and a pidfd taken at accept), TCP listeners with TLS 1.3, per-listener
 * connection caps, graceful shutdown, and a socketless entry for fuzzing. Calls themselves
 * live in rpc_call.c. */
#include "rpc_srv.h"
#include "sigil/err.h"
#include "sigil/unixsock.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/rand.h>

static void check_done(struct sigil_rpc_server *srv);

static void
tracker_drained(struct rpc_tracker *tr)
{
    struct sigil_rpc_server *srv =
        (struct sigil_rpc_server *)((char *)tr - offsetof(struct sigil_rpc_server, tr));

    check_done(srv);
}

int
sigil_rpc_server_new(uv_loop_t *loop, const struct sigil_rpc_server_opts *o,
                     struct sigil_rpc_server **out)
{
    struct sigil_rpc_server *srv = calloc(1, sizeof *srv);

    *out = NULL;
    if (srv == NULL)
        return SIGIL_ERR_NOMEM;
    srv->loop = loop;
    if (o != NULL)
        srv->o = *o;
    if (srv->o.max_message == 0)
        srv->o.max_message = SIGIL_RPC_DEFAULT_MAX_MESSAGE;
    if (srv->o.max_outbound == 0)
        srv->o.max_outbound = srv->o.max_message + 65536;
    if (srv->o.max_conn_outbound == 0)
        srv->o.max_conn_outbound = 4 * srv->o.max_outbound;
    if (srv->o.max_conn_inbound == 0)
        srv->o.max_conn_inbound = 4 * srv->o.max_message;
    if (srv->o.max_concurrent_streams == 0)
        srv->o.max_concurrent_streams = 100;
    if (srv->o.max_header_list == 0)
        srv->o.max_header_list = 16384;
    if (srv->o.max_connections == 0)
        srv->o.max_connections = 1024;
    if (srv->o.rst_limit == 0)
        srv->o.rst_limit = 100;
    if (srv->o.rst_limit > 100000)
        srv->o.rst_limit = 100000;
    if (srv->o.rst_window_ms == 0)
        srv->o.rst_window_ms = 1000;
    if (srv->o.handshake_timeout_ms == 0)
        srv->o.handshake_timeout_ms = 10000;
    srv->tr.drained = tracker_drained;
    srv->port = -1;
    *out = srv;
    return 0;
}

static void
method_free(struct rpc_method *m)
{
    if (m == NULL)
        return;
    free(m->path);
    free(m->req_header);
    free(m->req_value);
    free(m->req_why);
    free(m);
}

static char *
dup_or_null(const char *s, bool *fail)
{
    char *d;

    if (s == NULL)
        return NULL;
    if ((d = strdup(s)) == NULL)
        *fail = true;
    return d;
}

/* "/service/method": one leading slash, two non-empty printable parts. */
static bool
path_ok(const char *p)
{
    const char *slash;

    if (p == NULL || p[0] != '/' || (slash = strchr(p + 1, '/')) == NULL || slash == p + 1 ||
        slash[1] == '\0' || strchr(slash + 1, '/') != NULL || strlen(p) > 1024)
        return false;
    for (const char *c = p; *c != '\0'; c++)
        if (*c <= 0x20 || *c >= 0x7f)
            return false;
    return true;
}

int
sigil_rpc_server_add(struct sigil_rpc_server *srv, const struct sigil_rpc_method *m)
{
    struct rpc_method *nm = NULL;
    bool fail = false;

    if (!path_ok(m->path) || m->handler == NULL ||
        (m->required_header == NULL) != (m->required_value == NULL) || m->kind < SIGIL_RPC_UNARY ||
        m->kind > SIGIL_RPC_BIDI)
        return SIGIL_ERR_INVALID;
    for (size_t i = 0; i < srv->nmethods; i++)
        if (strcmp(srv->methods[i]->path, m->path) == 0)
            return SIGIL_ERR_EXISTS;
    if (srv->nmethods == srv->capmethods) {
        size_t cap = srv->capmethods ? srv->capmethods * 2 : 8;
        struct rpc_method **v = realloc(srv->methods, cap * sizeof *v);
        if (v == NULL)
            return SIGIL_ERR_NOMEM;
        srv->methods = v;
        srv->capmethods = cap;
    }
    if ((nm = calloc(1, sizeof *nm)) == NULL)
        return SIGIL_ERR_NOMEM;
    nm->kind = m->kind;
    nm->handler = m->handler;
    nm->arg = m->arg;
    nm->path = dup_or_null(m->path, &fail);
    nm->req_header = dup_or_null(m->required_header, &fail);
    nm->req_value = dup_or_null(m->required_value, &fail);
    if (m->required_header != NULL)
        nm->req_why = dup_or_null(m->required_why != NULL ? m->required_why
                                                          : "security header missing from request",
                                  &fail);
    if (fail) {
        method_free(nm);
        return SIGIL_ERR_NOMEM;
    }
    srv->methods[srv->nmethods++] = nm;
    return 0;
}

/* ---- connections ---- */

static int
conn_ready(struct rpc_conn *c)
{
    struct srv_conn *sc = (struct srv_conn *)c;
    struct sigil_rpc_server *srv = sc->srv;
    struct h2_settings set = {
        .max_concurrent_streams = srv->o.max_concurrent_streams,
        .max_header_list_size = srv->o.max_header_list,
        .initial_window_size = RPC_STREAM_WINDOW,
        .connection_window_size = RPC_CONN_WINDOW,
    };

    if (c->tls != NULL) {
        sc->peer.kind = SIGIL_RPC_PEER_TLS;
        sc->peer.chain = sigil_tls_conn_peer_chain(c->tls);
    }
    return h2_session_new(true, &set, &rpc_srv_h2_callbacks, sc, &c->h2);
}

static void
conn_closing(struct rpc_conn *c)
{
    struct srv_conn *sc = (struct srv_conn *)c;

    if (c->proto_error)
        sc->srv->stats.protocol_errors++;
    rpc_srv_conn_drop_calls(sc);
    sc->peer.chain = NULL; /* owned by the TLS engine, freed next */
}

static void listener_release(struct rpc_listener *l);

static void
conn_freed(struct rpc_conn *c)
{
    struct srv_conn *sc = (struct srv_conn *)c;
    struct sigil_rpc_server *srv = sc->srv;
    struct rpc_listener *l;

    if (sc->prev != NULL)
        sc->prev->next = sc->next;
    else
        srv->conns = sc->next;
    if (sc->next != NULL)
        sc->next->prev = sc->prev;
    if (sc->peer.pidfd >= 0)
        close(sc->peer.pidfd);
    l = sc->l;
    srv->stats.conns_open--;
    sigil_buf_free(&c->wbuf);
    sigil_buf_free(&c->in);
    sigil_buf_free(&c->out);
    free(sc->rst_times);
    free(sc);
    if (l != NULL) {
        l->nconns--;
        listener_release(l);
    }
    check_done(srv);
}

static const struct rpc_conn_ops srv_conn_ops = {
    .ready = conn_ready,
    .closing = conn_closing,
    .freed = conn_freed,
};

static struct srv_conn *
conn_new(struct sigil_rpc_server *srv, struct rpc_listener *l)
{
    struct srv_conn *sc = calloc(1, sizeof *sc);

    if (sc == NULL)
        return NULL;
    if ((sc->rst_times = calloc(srv->o.rst_limit, sizeof *sc->rst_times)) == NULL ||
        rpc_conn_init(&sc->c, srv->loop, &srv_conn_ops, &srv->tr) != 0) {
        free(sc->rst_times);
        free(sc);
        return NULL;
    }
    sc->srv = srv;
    sc->l = l;
    sc->peer.pidfd = -1;
    sc->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = sc;
    srv->conns = sc;
    if (l != NULL)
        l->nconns++;
    srv->stats.conns_open++;
    return sc;
}

/* The kernel's word on who connected, pinned with a pidfd against PID reuse. */
static void
unix_peer(struct srv_conn *sc)
{
    struct ucred cred;
    socklen_t cl = sizeof cred;
    uv_os_fd_t fd;

    sc->peer.kind = SIGIL_RPC_PEER_UNIX;
    if (uv_fileno(&sc->c.io.h, &fd) != 0 ||
        getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 || cl != sizeof cred)
        return;
    sc->peer.has_cred = true;
    sc->peer.uid = cred.uid;
    sc->peer.gid = cred.gid;
    sc->peer.pid = cred.pid;
    if (cred.pid > 0)
        sc->peer.pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
}

static void
on_connection(uv_stream_t *s, int status)
{
    struct rpc_listener *l = s->data;
    struct sigil_rpc_server *srv = l->srv;
    struct srv_conn *sc;
    int r;

    if (status < 0 || (sc = conn_new(srv, l)) == NULL)
        return;
    r = l->tls != NULL ? uv_tcp_init(srv->loop, &sc->c.io.tcp)
                       : uv_pipe_init(srv->loop, &sc->c.io.pipe, 0);
    if (r != 0) {
        rpc_conn_close(&sc->c, "cannot initialise the connection handle");
        return;
    }
    rpc_conn_adopt_io(&sc->c);
    if (uv_accept(s, &sc->c.io.s) != 0) {
        rpc_conn_close(&sc->c, "accept failed");
        return;
    }
    /* accepted, then closed at once: a refused client learns it immediately */
    if (srv->shutting_down || l->nconns > srv->o.max_connections) {
        srv->stats.conns_refused++;
        rpc_conn_close(&sc->c, "connection limit reached");
        return;
    }
    srv->stats.conns_accepted++;
    if (l->tls == NULL)
        unix_peer(sc);
    else
        uv_tcp_nodelay(&sc->c.io.tcp, 1);
    if (rpc_conn_start(&sc->c, l->tls, NULL, srv->o.handshake_timeout_ms) != 0)
        rpc_conn_close(&sc->c, "cannot start the connection");
}

/* ---- listeners ---- */

static void
listener_free(struct rpc_listener *l)
{
    struct sigil_rpc_server *srv = l->srv;
    struct rpc_listener **pp;

    for (pp = &srv->listeners; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == l) {
            *pp = l->next;
            break;
        }
    }
    sigil_tls_ctx_free(l->tls);
    free(l->path);
    free(l);
}

/* Frees a closed listener once its last connection is gone (the caller then runs
 * check_done: the server may be finished). */
static void
listener_release(struct rpc_listener *l)
{
    if (l->handle_closed && l->nconns == 0)
        listener_free(l);
}

static void
listener_handle_closed(uv_handle_t *h)
{
    struct rpc_listener *l = h->data;
    struct sigil_rpc_server *srv = l->srv;

    l->handle_closed = true;
    listener_release(l);
    check_done(srv);
}

static void
listener_close(struct rpc_listener *l)
{
    struct stat st;

    if (!l->open)
        return;
    l->open = false;
    /* the socket file goes only if it is still the one we made */
    if (l->path != NULL && lstat(l->path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == l->dev && st.st_ino == l->ino)
        unlink(l->path);
    uv_close(&l->u.h, listener_handle_closed);
}

static struct rpc_listener *
listener_new(struct sigil_rpc_server *srv)
{
    struct rpc_listener *l = calloc(1, sizeof *l);

    if (l == NULL)
        return NULL;
    l->srv = srv;
    l->u.h.data = l;
    l->next = srv->listeners;
    srv->listeners = l;
    return l;
}

int
sigil_rpc_server_listen_unix(struct sigil_rpc_server *srv, const struct sigil_rpc_unix_opts *o,
                             const char **why)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct rpc_listener *l = NULL;
    struct stat st;
    uint8_t rnd[4];
    int fd = -1, r;
    bool bound = false;

    *why = NULL;
    if (srv->shutting_down) {
        *why = "rpc: the server is shutting down";
        return SIGIL_ERR_STATE;
    }
    /* room for the temporary name's ".~xxxxxxxx" */
    if (o->path == NULL || o->path[0] != '/' || strlen(o->path) + 11 > sizeof sa.sun_path) {
        *why = "rpc: the socket path must be absolute and at most 96 bytes";
        return SIGIL_ERR_RANGE;
    }
    if ((r = sigil_unixsock_replaceable(o->path, why)) != 0)
        return r;
    if (RAND_bytes(rnd, sizeof rnd) != 1) {
        *why = "rpc: no randomness for the temporary socket name";
        return SIGIL_ERR_CRYPTO;
    }
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s.~%02x%02x%02x%02x", o->path, rnd[0], rnd[1],
             rnd[2], rnd[3]);
    r = SIGIL_ERR_IO;
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
        *why = "rpc: socket() failed";
        goto out;
    }
    /* Bound under a temporary name, given its mode and group, then renamed into place: no
     * one can connect while the umask's permissions apply. */
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        *why = "rpc: cannot bind the socket (directory missing or not writable?)";
        goto out;
    }
    bound = true;
    if (chmod(sa.sun_path, o->mode != 0 ? o->mode : 0600) != 0 ||
        (o->set_gid && chown(sa.sun_path, (uid_t)-1, o->gid) != 0)) {
        *why = "rpc: cannot set the socket's mode or group";
        goto out;
    }
    if (rename(sa.sun_path, o->path) != 0 || lstat(o->path, &st) != 0) {
        *why = "rpc: cannot move the socket into place";
        goto out;
    }
    bound = false;
    r = SIGIL_ERR_NOMEM;
    if ((l = listener_new(srv)) == NULL || (l->path = strdup(o->path)) == NULL) {
        unlink(o->path);
        *why = "rpc: out of memory";
        if (l != NULL) {
            srv->listeners = l->next;
            free(l);
        }
        goto out;
    }
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    r = SIGIL_ERR_IO;
    if (uv_pipe_init(srv->loop, &l->u.pipe, 0) != 0) {
        unlink(o->path);
        srv->listeners = l->next;
        free(l->path);
        free(l);
        *why = "rpc: uv_pipe_init failed";
        goto out;
    }
    l->open = true;
    if (uv_pipe_open(&l->u.pipe, fd) != 0) {
        listener_close(l);
        *why = "rpc: uv_pipe_open failed";
        goto out;
    }
    fd = -1; /* the pipe owns it */
    if (uv_listen(&l->u.s, o->backlog > 0 ? o->backlog : 128, on_connection) != 0) {
        listener_close(l);
        *why = "rpc: listen() on the Unix socket failed";
        goto out;
    }
    r = 0;
out:
    if (bound)
        unlink(sa.sun_path);
    if (fd >= 0)
        close(fd);
    return r;
}

int
sigil_rpc_server_listen_tcp(struct sigil_rpc_server *srv, const char *host, int port,
                            struct sigil_tls_ctx *tls, int backlog, const char **why)
{
    struct sockaddr_storage ss;
    struct rpc_listener *l;
    int len = sizeof ss;

    *why = NULL;
    if (srv->shutting_down) {
        *why = "rpc: the server is shutting down";
        return SIGIL_ERR_STATE;
    }
    if (tls == NULL) {
        *why = "rpc: TCP listeners need TLS";
        return SIGIL_ERR_INVALID;
    }
    if (host == NULL || strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (port < 0 || port > 65535 ||
        (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) != 0 &&
         uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) != 0)) {
        *why = "rpc: the listen address must be an IP literal or localhost, port 0-65535";
        return SIGIL_ERR_INVALID;
    }
    if ((l = listener_new(srv)) == NULL) {
        *why = "rpc: out of memory";
        return SIGIL_ERR_NOMEM;
    }
    if (uv_tcp_init(srv->loop, &l->u.tcp) != 0) {
        srv->listeners = l->next;
        free(l);
        *why = "rpc: uv_tcp_init failed";
        return SIGIL_ERR_IO;
    }
    l->open = true;
    l->tls = tls;
    sigil_tls_ctx_ref(tls);
    if (uv_tcp_bind(&l->u.tcp, (struct sockaddr *)&ss, 0) != 0 ||
        uv_listen(&l->u.s, backlog > 0 ? backlog : 128, on_connection) != 0) {
        listener_close(l);
        *why = "rpc: cannot bind or listen on the TCP address (in use?)";
        return SIGIL_ERR_IO;
    }
    if (uv_tcp_getsockname(&l->u.tcp, (struct sockaddr *)&ss, &len) == 0)
        srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                   : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

int
sigil_rpc_server_port(const struct sigil_rpc_server *srv)
{
    return srv->port;
}

void
sigil_rpc_server_stats(const struct sigil_rpc_server *srv, struct sigil_rpc_server_stats *out)
{
    *out = srv->stats;
}

int
sigil_rpc_server_feed_raw(struct sigil_rpc_server *srv, const uint8_t *p, size_t n)
{
    struct srv_conn *sc;

    if (srv->shutting_down)
        return SIGIL_ERR_STATE;
    if ((sc = conn_new(srv, NULL)) == NULL)
        return SIGIL_ERR_NOMEM;
    if (rpc_conn_start(&sc->c, NULL, NULL, 0) == 0)
        rpc_conn_feed_plain(&sc->c, p, n);
    rpc_conn_close(&sc->c, "end of input");
    return 0;
}

/* ---- shutdown ---- */

static void
grace_expired(void *arg)
{
    struct sigil_rpc_server *srv = arg;

    srv->grace = NULL;
    for (struct srv_conn *sc = srv->conns; sc != NULL; sc = sc->next)
        rpc_conn_close(&sc->c, "server shutdown: grace period over");
}

void
sigil_rpc_server_shutdown(struct sigil_rpc_server *srv, uint64_t grace_ms, void (*done)(void *arg),
                          void *arg)
{
    if (srv->shutting_down)
        return;
    srv->shutting_down = true;
    srv->done = done;
    srv->done_arg = arg;
    for (struct rpc_listener *l = srv->listeners; l != NULL; l = l->next)
        listener_close(l);
    for (struct srv_conn *sc = srv->conns; sc != NULL; sc = sc->next) {
        if (sc->c.h2 == NULL) {
            rpc_conn_close(&sc->c, "server shutdown");
            continue;
        }
        /* no new streams; open ones may finish within the grace period */
        h2_goaway(sc->c.h2, H2_NO_ERROR);
        rpc_conn_kick(&sc->c);
    }
    srv->grace = rpc_timer_start(srv->loop, &srv->tr, grace_ms, grace_expired, srv);
    if (srv->grace == NULL)
        grace_expired(srv);
    check_done(srv);
}

static void
check_done(struct sigil_rpc_server *srv)
{
    if (!srv->shutting_down || srv->freed || srv->conns != NULL || srv->listeners != NULL)
        return;
    if (srv->grace != NULL) {
        /* everything closed early: the grace timer's close brings us back here */
        struct rpc_timer *t = srv->grace;
        srv->grace = NULL;
        rpc_timer_stop(t);
        return;
    }
    if (srv->tr.open > 0)
        return;
    srv->freed = true;
    for (size_t i = 0; i < srv->nmethods; i++)
        method_free(srv->methods[i]);
    free(srv->methods);
    if (srv->done != NULL)
        srv->done(srv->done_arg);
    free(srv);
}
