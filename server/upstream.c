/* The upstream server's run command: the startup sequence (logs, schema, trust root) done
 * blocking before the loop starts, then one libuv loop serving the admin socket (health,
 * metrics, the admin API) over the database pool, and a graceful stop on a signal. */
#include "upstream.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "admin.h"
#include "ca.h"
#include "migrate.h"
#include "nodeapi.h"
#include "sigil/db.h"
#include "sigil/err.h"
#include "sigil/http.h"
#include "sigil/log.h"
#include "sigil/metrics.h"

#define COMPONENT "server"

enum {
    RUN_OK = 0,
    RUN_FAIL = 1,
    RUN_CONFIG = 3,
    RUN_REFUSED = 4,
};

struct app {
    const struct sigil_server_config *cfg;
    uv_loop_t loop;
    struct sigil_ca *ca;
    struct sigil_ca_params ca_params;
    uv_timer_t ca_timer; /* re-reads the CA journal every ca.check_interval */
    bool ca_timer_open;
    bool ca_checking; /* a check is queued or running */
    struct sigil_policy policy;
    bool have_policy;
    struct sigil_admin *admin;
    struct sigil_nodeapi *nodeapi;
    STACK_OF(X509) *roots; /* our bundle's X.509 authorities, for mTLS callers */
    struct sigil_db *db;
    struct sigil_http_server *srv;
    struct sigil_http_server *bundle_srv; /* the public bundle endpoint: its own routes */
    struct sigil_metrics *metrics;
    struct sigil_counter *requests;
    struct sigil_gauge *bundle_seq;
    uv_signal_t sigterm, sigint;
    bool signals_open;
};

/* One /ready probe waiting for the database. */
struct ready_probe {
    struct app *app;
    struct sigil_http_req *req;
    struct sigil_db_error err;
};

/* The exit code for a failure of the startup sequence. */
static int
refusal_code(int r)
{
    switch (r) {
    case SIGIL_ERR_STATE:
    case SIGIL_ERR_VERIFY:
    case SIGIL_ERR_UNSUPPORTED:
        return RUN_REFUSED;
    case SIGIL_ERR_DENIED:
    case SIGIL_ERR_INVALID:
        return RUN_CONFIG;
    default:
        return RUN_FAIL;
    }
}

static void
on_http_log(void *arg, const char *msg)
{
    (void)arg;
    sigil_log(SIGIL_LOG_WARN, "http", "%s", msg);
}

static void
count(struct app *app, const char *route)
{
    sigil_counter_inc_with(app->requests, route, NULL);
}

/* An mTLS admin caller: an X.509-SVID of our trust domain that chains to our bundle. */
static int
admin_verify(void *arg, STACK_OF(X509) *chain, char id[SIGIL_HTTP_ID_MAX + 1], const char **why)
{
    struct app *app = arg;
    struct sigil_spiffeid sid;
    int r;

    if ((r = sigil_x509_svid_verify(chain, app->roots, 0, &sid, why)) != 0)
        return r;
    if (!sigil_spiffeid_member_of(&sid, app->cfg->trust_domain)) {
        *why = "X-8: the caller's SPIFFE ID is not of our trust domain";
        return SIGIL_ERR_VERIFY;
    }
    snprintf(id, SIGIL_HTTP_ID_MAX + 1, "%s", sid.str);
    return 0;
}

/* Copies the X.509 authorities of ca's bundle into a new stack (*out, caller frees). */
static int
build_roots(const struct sigil_ca *ca, STACK_OF(X509) **out)
{
    const struct sigil_bundle *b = sigil_ca_bundle(ca);
    STACK_OF(X509) *roots = sk_X509_new_null();

    if (roots == NULL)
        return SIGIL_ERR_NOMEM;
    for (size_t i = 0; i < sigil_bundle_x509_count(b); i++) {
        X509 *c = sigil_bundle_x509_get(b, i);

        if (X509_up_ref(c) != 1) {
            sk_X509_pop_free(roots, X509_free);
            return SIGIL_ERR_NOMEM;
        }
        if (sk_X509_push(roots, c) <= 0) {
            X509_free(c);
            sk_X509_pop_free(roots, X509_free);
            return SIGIL_ERR_NOMEM;
        }
    }
    *out = roots;
    return 0;
}

static int
load_roots(struct app *app)
{
    return build_roots(app->ca, &app->roots);
}

/* The admin API on TCP with mutual TLS (admin.listen), if configured. */
static int
listen_admin_tcp(struct app *app)
{
    const struct sigil_server_config *cfg = app->cfg;
    struct sigil_http_tls tls = {
        .cert_file = cfg->admin_tls_cert,
        .key_file = cfg->admin_tls_key,
        .verify = admin_verify,
        .verify_arg = app,
    };
    const char *why = NULL;
    char host[64], port_s[8];
    uint16_t port = 0, bound = 0;
    int r;

    if (cfg->admin_listen == NULL)
        return 0;
    if ((r = sigil_server_config_split_hostport(cfg->admin_listen, host, &port, true, &why)) != 0 ||
        (r = load_roots(app)) != 0 ||
        (r = sigil_http_listen_tcp(app->srv, host, port, &tls, &bound, &why)) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMPONENT, "cannot listen for the admin API (mTLS)", "listen",
                     cfg->admin_listen, "error", why ? why : sigil_strerror(r), NULL);
        return r;
    }
    snprintf(port_s, sizeof port_s, "%u", (unsigned)bound);
    sigil_log_kv(SIGIL_LOG_INFO, COMPONENT, "admin API listening (mTLS)", "host", host, "port",
                 port_s, NULL);
    return 0;
}

/* The bundle endpoint (https_web): our bundle as the CA last read it from the journal. */
static void
h_bundle_endpoint(struct sigil_http_req *req, void *arg)
{
    struct app *app = arg;
    char *doc = NULL;
    size_t len;

    if (sigil_bundle_encode(sigil_ca_bundle(app->ca), &doc, &len) != 0) {
        sigil_http_respond_error(req, 500, "cannot encode the bundle");
        return;
    }
    sigil_http_respond(req, 200, "application/json", doc, len);
    free(doc);
}

/* The bundle endpoint on public TLS (no client certificate, HTTP/1.1 only), if configured. */
static int
listen_bundle_endpoint(struct app *app)
{
    const struct sigil_server_config *cfg = app->cfg;
    struct sigil_http_tls tls = {
        .cert_file = cfg->bundle_endpoint_tls_cert,
        .key_file = cfg->bundle_endpoint_tls_key,
    };
    const char *why = NULL;
    char host[64], port_s[8];
    uint16_t port = 0, bound = 0;
    int r;

    if (cfg->bundle_endpoint_listen == NULL)
        return 0;
    if ((r = sigil_server_config_split_hostport(cfg->bundle_endpoint_listen, host, &port, true,
                                                &why)) != 0 ||
        (r = sigil_http_server_new(&app->loop, &app->bundle_srv, &why)) != 0)
        goto fail;
    sigil_http_server_set_log(app->bundle_srv, on_http_log, app);
    if ((r = sigil_http_route(app->bundle_srv, "GET", "/", false, h_bundle_endpoint, app)) != 0 ||
        (r = sigil_http_listen_tcp(app->bundle_srv, host, port, &tls, &bound, &why)) != 0)
        goto fail;
    snprintf(port_s, sizeof port_s, "%u", (unsigned)bound);
    sigil_log_kv(SIGIL_LOG_INFO, COMPONENT, "bundle endpoint listening (https_web)", "host", host,
                 "port", port_s, NULL);
    return 0;
fail:
    sigil_log_kv(SIGIL_LOG_ERROR, COMPONENT, "cannot serve the bundle endpoint", "listen",
                 cfg->bundle_endpoint_listen, "error", why ? why : sigil_strerror(r), NULL);
    return r;
}

static void
h_live(struct sigil_http_req *req, void *arg)
{
    count(arg, "/live");
    sigil_http_respond_json(req, 200, json_pack("{s:s}", "status", "live"));
}

static void
ready_done(void *arg, int status)
{
    struct ready_probe *p = arg;

    if (status == 0 && sigil_ca_root(p->app->ca) != NULL) {
        sigil_http_respond_json(p->req, 200, json_pack("{s:s}", "status", "ready"));
    } else {
        char msg[SIGIL_DB_ERRMSG_MAX + 64];

        snprintf(msg, sizeof msg, "database unreachable: %s",
                 p->err.message[0] != '\0' ? p->err.message : sigil_strerror(status));
        sigil_http_respond_json(
            p->req, 503,
            json_pack("{s:{s:s,s:s}}", "error", "code", "not_ready.database", "message", msg));
    }
    free(p);
}

static void
h_ready(struct sigil_http_req *req, void *arg)
{
    struct app *app = arg;
    struct ready_probe *p;
    int r;

    count(app, "/ready");
    if ((p = calloc(1, sizeof *p)) == NULL) {
        sigil_http_respond_error(req, 500, "out of memory");
        return;
    }
    p->app = app;
    p->req = req;
    if (sigil_http_req_defer(req) != 0) {
        free(p); /* answered (503) by the server */
        return;
    }
    if ((r = sigil_db_ping(app->db, &p->err, ready_done, p)) != 0) {
        sigil_http_respond_json(req, 503,
                                json_pack("{s:{s:s,s:s}}", "error", "code", "not_ready.database",
                                          "message", sigil_strerror(r)));
        free(p);
    }
}

static void
h_metrics(struct sigil_http_req *req, void *arg)
{
    struct app *app = arg;
    struct sigil_buf b = {0};

    count(app, "/metrics");
    if (sigil_metrics_render(app->metrics, &b) != 0) {
        sigil_buf_free(&b);
        sigil_http_respond_error(req, 500, "cannot render metrics");
        return;
    }
    sigil_http_respond(req, 200, SIGIL_METRICS_CONTENT_TYPE, b.data, b.len);
    sigil_buf_free(&b);
}

static void
on_db_closed(void *arg)
{
    struct app *app = arg;

    app->db = NULL;
    if (app->signals_open) {
        uv_close((uv_handle_t *)&app->sigterm, NULL);
        uv_close((uv_handle_t *)&app->sigint, NULL);
        app->signals_open = false;
    }
    if (app->ca_timer_open) {
        uv_close((uv_handle_t *)&app->ca_timer, NULL);
        app->ca_timer_open = false;
    }
}

static void
on_http_stopped(void *arg)
{
    struct app *app = arg;

    app->srv = NULL;
    sigil_db_close(app->db, on_db_closed, app);
}

static void
on_bundle_srv_stopped(void *arg)
{
    struct app *app = arg;

    app->bundle_srv = NULL;
    if (app->srv != NULL)
        sigil_http_server_stop(app->srv, on_http_stopped, app);
    else
        on_http_stopped(app);
}

static void stop(struct app *app);

static void
on_nodeapi_stopped(void *arg)
{
    stop(arg);
}

/* Stops in order: the node API (its streams end, its database jobs finish), the bundle
 * endpoint, the HTTP server (answers what is in flight, removes the socket), then the
 * database pool, then the timer and signal handles; the loop then runs out of work. */
static void
stop(struct app *app)
{
    if (app->signals_open) {
        uv_signal_stop(&app->sigterm);
        uv_signal_stop(&app->sigint);
    }
    if (app->ca_timer_open)
        uv_timer_stop(&app->ca_timer);
    if (app->nodeapi != NULL) {
        struct sigil_nodeapi *n = app->nodeapi;

        app->nodeapi = NULL;
        sigil_nodeapi_stop(n, on_nodeapi_stopped, app);
        return;
    }
    if (app->bundle_srv != NULL)
        sigil_http_server_stop(app->bundle_srv, on_bundle_srv_stopped, app);
    else if (app->srv != NULL)
        sigil_http_server_stop(app->srv, on_http_stopped, app);
    else if (app->db != NULL)
        sigil_db_close(app->db, on_db_closed, app);
    else
        on_db_closed(app);
}

static void
on_signal(uv_signal_t *h, int sig)
{
    struct app *app = h->data;

    sigil_log(SIGIL_LOG_INFO, COMPONENT, "%s: stopping gracefully", strsignal(sig));
    stop(app);
}

/* One periodic CA check: a fresh sigil_ca opened on a database worker (which renews what is
 * due, under the CA lock), swapped in on the loop. */
struct ca_check {
    struct app *app;
    struct sigil_ca *ca;
    struct sigil_ca_report rep;
    struct sigil_db_error dberr;
    char err[SIGIL_CA_ERR_MAX];
};

static int
ca_check_work(struct sigil_db_conn *c, void *arg)
{
    struct ca_check *k = arg;

    /* the parameters point into the config, which nobody changes while we run */
    return sigil_ca_open(c, &k->app->ca_params, &k->ca, &k->rep, k->err, sizeof k->err);
}

static void log_cert(const char *what, X509 *cert, bool made);

static void
ca_check_done(void *arg, int status)
{
    struct ca_check *k = arg;
    struct app *app = k->app;
    STACK_OF(X509) *roots = NULL;
    uint64_t before = 0, after = 0;

    app->ca_checking = false;
    if (status != 0 || k->ca == NULL) {
        sigil_log_kv(SIGIL_LOG_WARN, COMPONENT, "CA check failed (keeping the loaded CA)", "error",
                     k->err[0] ? k->err : k->dberr.message, NULL);
        goto out;
    }
    if (app->roots != NULL && build_roots(k->ca, &roots) != 0) {
        sigil_log(SIGIL_LOG_WARN, COMPONENT, "CA check: out of memory (keeping the loaded CA)");
        goto out;
    }
    sigil_bundle_sequence(sigil_ca_bundle(app->ca), &before);
    sigil_bundle_sequence(sigil_ca_bundle(k->ca), &after);
    sigil_ca_free(app->ca);
    app->ca = k->ca;
    k->ca = NULL;
    if (roots != NULL) {
        sk_X509_pop_free(app->roots, X509_free);
        app->roots = roots;
    }
    sigil_gauge_set(app->bundle_seq, (double)after);
    if (k->rep.made_intermediate)
        log_cert("intermediate CA renewed", sigil_ca_intermediate(app->ca), true);
    if (k->rep.made_jwt_key)
        sigil_log_kv(SIGIL_LOG_INFO, COMPONENT, "JWT signing key replaced", "kid",
                     sigil_ca_jwt_kid(app->ca), NULL);
    if (after != before)
        sigil_log(SIGIL_LOG_INFO, COMPONENT, "bundle sequence %llu (was %llu)",
                  (unsigned long long)after, (unsigned long long)before);
out:
    sigil_ca_free(k->ca);
    free(k);
}

static void
on_ca_timer(uv_timer_t *t)
{
    struct app *app = t->data;
    struct ca_check *k;

    if (app->ca_checking || app->db == NULL || (k = calloc(1, sizeof *k)) == NULL)
        return;
    k->app = app;
    if (sigil_db_submit(app->db, ca_check_work, ca_check_done, k, &k->dberr) != 0) {
        free(k);
        return;
    }
    app->ca_checking = true;
}

static int
setup_metrics(struct app *app)
{
    static const char *const route_label[] = {"route", NULL};
    struct sigil_gauge *up = NULL, *started = NULL;
    uint64_t seq = 0;
    int r;

    if ((r = sigil_metrics_new(&app->metrics)) != 0 ||
        (r = sigil_metrics_gauge(app->metrics, "sigil_server_up", "1 while the server runs.", NULL,
                                 &up)) != 0 ||
        (r = sigil_metrics_gauge(app->metrics, "sigil_server_start_time_seconds",
                                 "Unix time the server started.", NULL, &started)) != 0 ||
        (r = sigil_metrics_gauge(app->metrics, "sigil_bundle_sequence",
                                 "spiffe_sequence of our own bundle.", NULL, &app->bundle_seq)) !=
            0 ||
        (r = sigil_metrics_counter(app->metrics, "sigil_admin_requests_total",
                                   "Requests to the admin API by route.", route_label,
                                   &app->requests)) != 0)
        return r;
    sigil_bundle_sequence(sigil_ca_bundle(app->ca), &seq);
    sigil_gauge_set(up, 1);
    sigil_gauge_set(started, (double)time(NULL));
    sigil_gauge_set(app->bundle_seq, (double)seq);
    return 0;
}

static void
log_cert(const char *what, X509 *cert, bool made)
{
    char serial[41], na[32] = "?";
    time_t t;
    struct tm tm;

    sigil_ca_serial_hex(cert, serial);
    if (sigil_x509_cert_not_after(cert, &t) == 0 && gmtime_r(&t, &tm) != NULL)
        strftime(na, sizeof na, "%Y-%m-%dT%H:%M:%SZ", &tm);
    sigil_log_kv(SIGIL_LOG_INFO, COMPONENT, what, "serial", serial, "not_after", na, "new",
                 made ? "true" : "false", NULL);
}

/* Migrates the schema and opens the trust root over one blocking connection. */
static int
startup_db(struct app *app)
{
    const struct sigil_server_config *cfg = app->cfg;
    struct sigil_ca_params *cp = &app->ca_params;
    struct sigil_migrate_report mrep;
    struct sigil_ca_report crep;
    struct sigil_db_error dberr;
    struct sigil_db_conn *conn = NULL;
    char err[SIGIL_CA_ERR_MAX], *desc = sigil_db_conninfo_describe(cfg->db_conninfo);
    const char *dir = getenv("SIGIL_MIGRATIONS_DIR");
    uint64_t seq = 0;
    int r;

    *cp = (struct sigil_ca_params){
        .trust_domain = cfg->trust_domain,
        .key_dir = cfg->ca_key_dir,
        .instance_id = cfg->instance_id,
        .root_ttl_s = cfg->ca_root_ttl_ms / 1000,
        .intermediate_ttl_s = cfg->ca_intermediate_ttl_ms / 1000,
        .jwt_key_ttl_s = cfg->ca_jwt_key_ttl_ms / 1000,
        .refresh_hint_s = cfg->ca_refresh_hint_ms / 1000,
        .subject = {cfg->ca_subject_country, cfg->ca_subject_organization,
                    cfg->ca_subject_common_name},
    };
    sigil_log_kv(SIGIL_LOG_INFO, COMPONENT, "connecting to the database", "database",
                 desc ? desc : "?", NULL);
    free(desc);
    if ((r = sigil_db_connect(cfg->db_conninfo, &conn, &dberr)) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMPONENT, "cannot connect to the database", "error",
                     dberr.message, NULL);
        return RUN_FAIL;
    }
    if (dir == NULL || dir[0] == '\0')
        dir = SIGIL_MIGRATIONS_DEFAULT_DIR;
    memset(&mrep, 0, sizeof mrep);
    if ((r = sigil_migrate_run(conn, dir, NULL, NULL, &mrep)) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMPONENT, "schema migration failed", "error", mrep.error,
                     NULL);
        r = (r == SIGIL_ERR_VERIFY || r == SIGIL_ERR_UNSUPPORTED) ? RUN_REFUSED : RUN_FAIL;
        goto out;
    }
    sigil_log(SIGIL_LOG_INFO, COMPONENT, "schema at version %d (this start applied %zu)",
              mrep.to_version, mrep.applied);
    if ((r = sigil_ca_open(conn, cp, &app->ca, &crep, err, sizeof err)) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMPONENT, "cannot load the trust root", "error", err, NULL);
        r = refusal_code(r);
        goto out;
    }
    log_cert("root CA", sigil_ca_root(app->ca), crep.made_root);
    log_cert("intermediate CA", sigil_ca_intermediate(app->ca), crep.made_intermediate);
    sigil_log_kv(SIGIL_LOG_INFO, COMPONENT, "JWT signing key", "kid", sigil_ca_jwt_kid(app->ca),
                 "new", crep.made_jwt_key ? "true" : "false", NULL);
    sigil_bundle_sequence(sigil_ca_bundle(app->ca), &seq);
    sigil_log(SIGIL_LOG_INFO, COMPONENT, "bundle sequence %llu%s", (unsigned long long)seq,
              crep.bumped_bundle ? " (written by this start)" : "");
    r = RUN_OK;
out:
    sigil_db_disconnect(conn);
    return r;
}

/* The node API (node_api.listen), if configured, with the x509pop CA bundle if one is. */
static int
listen_node_api(struct app *app)
{
    const struct sigil_server_config *cfg = app->cfg;
    struct sigil_buf pem = {0};
    STACK_OF(X509) *pop_roots = NULL;
    const char *why = NULL;
    char host[64], port_s[8];
    uint16_t port = 0;
    int r;

    if (cfg->node_api_listen == NULL)
        return RUN_OK;
    if ((r = sigil_server_config_split_hostport(cfg->node_api_listen, host, &port, true, &why)) !=
        0)
        goto fail;
    if (cfg->x509pop_ca_bundle != NULL &&
        ((r = sigil_x509_file_read(cfg->x509pop_ca_bundle, &pem, &why)) != 0 ||
         (r = sigil_x509_chain_parse_pem(pem.data, pem.len, &pop_roots, &why)) != 0)) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMPONENT, "cannot read node_attestors.x509pop.ca_bundle",
                     "path", cfg->x509pop_ca_bundle, "error", why, NULL);
        sigil_buf_free(&pem);
        return RUN_CONFIG;
    }
    sigil_buf_free(&pem);
    struct sigil_nodeapi_opts o = {
        .loop = &app->loop,
        .db = app->db,
        .conninfo = cfg->db_conninfo,
        .ca = &app->ca,
        .trust_domain = cfg->trust_domain,
        .host = host,
        .port = port,
        .x509pop_roots = pop_roots,
        .join_token_enabled = cfg->join_token_enabled,
        .agent_ttl_s = cfg->node_api_agent_ttl_ms / 1000,
        .metrics = app->metrics,
    };
    r = sigil_nodeapi_start(&o, &app->nodeapi, &why);
    sk_X509_pop_free(pop_roots, X509_free);
    if (r != 0)
        goto fail;
    snprintf(port_s, sizeof port_s, "%d", sigil_nodeapi_port(app->nodeapi));
    sigil_log_kv(SIGIL_LOG_INFO, COMPONENT, "node API listening (TLS)", "host", host, "port",
                 port_s, "x509pop", cfg->x509pop_ca_bundle ? "on" : "off", "join_token",
                 cfg->join_token_enabled ? "on" : "off", NULL);
    return RUN_OK;
fail:
    sigil_log_kv(SIGIL_LOG_ERROR, COMPONENT, "cannot serve the node API", "listen",
                 cfg->node_api_listen, "error", why ? why : sigil_strerror(r), NULL);
    return RUN_FAIL;
}

static int
serve(struct app *app)
{
    const struct sigil_server_config *cfg = app->cfg;
    struct sigil_admin_roles roles = {
        .platform_admins = (const char *const *)cfg->platform_admins.items,
        .n_platform_admins = cfg->platform_admins.n,
        .viewers = (const char *const *)cfg->viewers.items,
        .n_viewers = cfg->viewers.n,
    };
    const char *why = NULL;
    char mode[8];
    int r;

    if ((r = sigil_db_open(&app->loop, cfg->db_conninfo, (unsigned)cfg->db_pool_size, &app->db)) !=
        0) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT, "database pool: %s", sigil_strerror(r));
        return RUN_FAIL;
    }
    if ((r = sigil_http_server_new(&app->loop, &app->srv, &why)) != 0) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT, "HTTP server: %s", why ? why : sigil_strerror(r));
        return RUN_FAIL;
    }
    sigil_http_server_set_log(app->srv, on_http_log, app);
    if ((r = sigil_admin_new(app->db, &app->policy, &roles, &app->admin)) != 0) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT, "admin API: %s", sigil_strerror(r));
        return RUN_FAIL;
    }
    sigil_admin_set_ca(app->admin, &app->ca_params, cfg->policy_jwt_ttl.max_ms / 1000);
    if ((r = sigil_http_route(app->srv, "GET", "/live", false, h_live, app)) != 0 ||
        (r = sigil_http_route(app->srv, "GET", "/ready", false, h_ready, app)) != 0 ||
        (r = sigil_http_route(app->srv, "GET", "/metrics", false, h_metrics, app)) != 0 ||
        (r = sigil_admin_routes(app->admin, app->srv)) != 0) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT, "routes: %s", sigil_strerror(r));
        return RUN_FAIL;
    }
    if ((r = sigil_http_listen_unix(app->srv, cfg->admin_socket_path, cfg->admin_socket_mode,
                                    &why)) != 0) {
        sigil_log_kv(SIGIL_LOG_ERROR, COMPONENT, "cannot listen on the admin socket", "path",
                     cfg->admin_socket_path, "error", why ? why : sigil_strerror(r), NULL);
        return RUN_FAIL;
    }
    snprintf(mode, sizeof mode, "%04o", (unsigned)cfg->admin_socket_mode);
    sigil_log_kv(SIGIL_LOG_INFO, COMPONENT, "admin API listening", "socket", cfg->admin_socket_path,
                 "mode", mode, NULL);
    if (listen_admin_tcp(app) != 0 || listen_bundle_endpoint(app) != 0)
        return RUN_FAIL;
    return listen_node_api(app);
}

int
sigil_upstream_run(const struct sigil_server_config *cfg)
{
    struct app app = {.cfg = cfg};
    struct sigil_config_error err;
    int code;

    sigil_log_set_level((enum sigil_log_level)cfg->log_level);
    sigil_log_set_format((enum sigil_log_format)cfg->log_format);
    if (cfg->role != SIGIL_SERVER_UPSTREAM) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT, "role downstream is not available yet");
        return RUN_CONFIG;
    }
    if (cfg->db_conninfo == NULL) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT,
                  "no database: set database.conninfo or $SIGIL_DATABASE");
        return RUN_CONFIG;
    }
    if (sigil_server_config_policy(cfg, "config", &app.policy, &err) != 0) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT, "%s", err.text);
        return RUN_CONFIG;
    }
    app.have_policy = true;
    /* libuv writes with write(2): a client leaving early must not kill us */
    signal(SIGPIPE, SIG_IGN);
    sigil_log_kv(SIGIL_LOG_INFO, COMPONENT, "sigil-server starting", "role", "upstream",
                 "trust_domain", cfg->trust_domain, "instance", cfg->instance_id, NULL);
    if ((code = startup_db(&app)) != RUN_OK)
        goto out;
    if (uv_loop_init(&app.loop) != 0) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT, "cannot start the event loop");
        code = RUN_FAIL;
        goto out;
    }
    if ((code = setup_metrics(&app)) != 0) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT, "metrics: %s", sigil_strerror(code));
        code = RUN_FAIL;
    } else {
        code = serve(&app);
    }
    if (code == RUN_OK) {
        uv_signal_init(&app.loop, &app.sigterm);
        uv_signal_init(&app.loop, &app.sigint);
        app.sigterm.data = app.sigint.data = &app;
        app.signals_open = true;
        uv_signal_start(&app.sigterm, on_signal, SIGTERM);
        uv_signal_start(&app.sigint, on_signal, SIGINT);
        uv_timer_init(&app.loop, &app.ca_timer);
        app.ca_timer.data = &app;
        app.ca_timer_open = true;
        uv_timer_start(&app.ca_timer, on_ca_timer, (uint64_t)cfg->ca_check_interval_ms,
                       (uint64_t)cfg->ca_check_interval_ms);
        sigil_log(SIGIL_LOG_INFO, COMPONENT, "ready");
    } else {
        stop(&app);
    }
    uv_run(&app.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&app.loop) != 0) {
        sigil_log(SIGIL_LOG_ERROR, COMPONENT, "event loop still has handles at exit");
        code = code == RUN_OK ? RUN_FAIL : code;
    }
    if (code == RUN_OK)
        sigil_log(SIGIL_LOG_INFO, COMPONENT, "stopped");
out:
    /* the HTTP server has stopped (the loop ran out): no request holds the admin API */
    sigil_admin_free(app.admin);
    sk_X509_pop_free(app.roots, X509_free);
    if (app.have_policy)
        sigil_policy_free(&app.policy);
    sigil_metrics_free(app.metrics);
    sigil_ca_free(app.ca);
    return code;
}
