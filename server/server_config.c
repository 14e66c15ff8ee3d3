/* sigil-server's configuration: one static schema (every key with its doc line, so the
 * example file is printed from it), then the checks that need parsing or several keys, and
 * the registration policy built from the policy.* keys through sigil/policy.h's setters. */
#include "server_config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sigil/err.h"
#include "sigil/log.h"

#define F(m) offsetof(struct sigil_server_config, m)
#define MS_DAY (24LL * 3600 * 1000)

static const char *const role_names[] = {"upstream", "downstream", NULL};
static const char *const tier_names[] = {"strict", "relaxed", "off", NULL};

const struct sigil_config_field sigil_server_config_schema[] = {
    {.key = "trust_domain",
     .type = SIGIL_CFG_STRING,
     .offset = F(trust_domain),
     .required = true,
     .doc = "Trust domain this server is the root of (\"example.org\" or "
            "\"spiffe://example.org\"); the database refuses another one later."},
    {.key = "role",
     .type = SIGIL_CFG_ENUM,
     .offset = F(role),
     .def = "upstream",
     .choices = role_names,
     .doc = "upstream holds the root CA and the database; downstream (not yet built) serves "
            "one platform."},
    {.key = "instance_id",
     .type = SIGIL_CFG_STRING,
     .offset = F(instance_id),
     .doc = "Name of this server instance in the CA journal (its intermediate CA); unset: "
            "<hostname>:<admin.socket_path>."},
    {.key = "database", .type = SIGIL_CFG_SECTION, .doc = "The PostgreSQL database."},
    {.key = "database.conninfo",
     .type = SIGIL_CFG_STRING,
     .offset = F(db_conninfo),
     .doc = "libpq connection string (\"host=/run/postgresql dbname=sigil user=sigil\"); "
            "unset: $SIGIL_DATABASE."},
    {.key = "database.pool_size",
     .type = SIGIL_CFG_INT64,
     .offset = F(db_pool_size),
     .def = "4",
     .min = 1,
     .max = 64,
     .doc = "Database connections (worker threads) of the pool."},
    {.key = "admin", .type = SIGIL_CFG_SECTION, .doc = "The admin API."},
    {.key = "admin.socket_path",
     .type = SIGIL_CFG_STRING,
     .offset = F(admin_socket_path),
     .doc = "Local admin Unix socket (at most 96 bytes); whoever may connect is a platform "
            "admin. Unset: $SIGIL_ADMIN_SOCKET, else " SIGIL_SERVER_ADMIN_SOCKET_DEFAULT "."},
    {.key = "admin.socket_mode",
     .type = SIGIL_CFG_MODE,
     .offset = F(admin_socket_mode),
     .def = "0600",
     .doc = "Permissions of the admin socket."},
    {.key = "admin.listen",
     .type = SIGIL_CFG_STRING,
     .offset = F(admin_listen),
     .doc = "TCP address of the admin API over mutual TLS, \"host:port\" with a numeric "
            "address ([::1]:8443 for IPv6; port 0: any free port, logged); unset: Unix socket "
            "only."},
    {.key = "admin.tls_cert",
     .type = SIGIL_CFG_STRING,
     .offset = F(admin_tls_cert),
     .doc = "PEM certificate chain of the admin TLS listener (required with admin.listen)."},
    {.key = "admin.tls_key",
     .type = SIGIL_CFG_STRING,
     .offset = F(admin_tls_key),
     .doc = "PEM private key of the admin TLS listener (required with admin.listen)."},
    {.key = "admin.platform_admins",
     .type = SIGIL_CFG_STRLIST,
     .offset = F(platform_admins),
     .def = "[]",
     .doc = "SPIFFE IDs that are platform admins over mutual TLS."},
    {.key = "admin.viewers",
     .type = SIGIL_CFG_STRLIST,
     .offset = F(viewers),
     .def = "[]",
     .doc = "SPIFFE IDs that may read but not write over mutual TLS."},
    {.key = "node_api", .type = SIGIL_CFG_SECTION, .doc = "The node API (agents)."},
    {.key = "node_api.listen",
     .type = SIGIL_CFG_STRING,
     .offset = F(node_api_listen),
     .doc = "TCP address of the node API (gRPC, TLS 1.3), \"host:port\" with a numeric address "
            "(port 0: any free port, logged), e.g. 0.0.0.0:8081; unset: not served."},
    {.key = "node_api.agent_svid_ttl",
     .type = SIGIL_CFG_DURATION,
     .offset = F(node_api_agent_ttl_ms),
     .def = "1h",
     .min = 60 * 1000,
     .max = 30 * MS_DAY,
     .doc = "Lifetime of an agent's X.509-SVID (agents renew at half of it)."},
    {.key = "node_attestors", .type = SIGIL_CFG_SECTION, .doc = "Node attestation of agents."},
    {.key = "node_attestors.join_token.enabled",
     .type = SIGIL_CFG_BOOL,
     .offset = F(join_token_enabled),
     .def = "true",
     .doc = "Accept single-use join tokens (sigil-server token generate)."},
    {.key = "node_attestors.x509pop.ca_bundle",
     .type = SIGIL_CFG_STRING,
     .offset = F(x509pop_ca_bundle),
     .doc = "PEM file of the CAs that issue node certificates for x509pop (proof of possession "
            "of the node key); unset: x509pop is off."},
    {.key = "bundle_endpoint",
     .type = SIGIL_CFG_SECTION,
     .doc = "The SPIFFE bundle endpoint for other trust domains."},
    {.key = "bundle_endpoint.listen",
     .type = SIGIL_CFG_STRING,
     .offset = F(bundle_endpoint_listen),
     .doc = "TCP address of the SPIFFE bundle endpoint (profile https_web: GET / answers our "
            "bundle over public TLS, HTTP/1.1), \"host:port\" with a numeric address (port 0: any "
            "free port, logged); unset: not served."},
    {.key = "bundle_endpoint.tls_cert",
     .type = SIGIL_CFG_STRING,
     .offset = F(bundle_endpoint_tls_cert),
     .doc = "PEM certificate chain (Web PKI) of the bundle endpoint (required with its listen)."},
    {.key = "bundle_endpoint.tls_key",
     .type = SIGIL_CFG_STRING,
     .offset = F(bundle_endpoint_tls_key),
     .doc = "PEM private key of the bundle endpoint (required with its listen)."},
    {.key = "ca", .type = SIGIL_CFG_SECTION, .doc = "The certificate authority."},
    {.key = "ca.key_dir",
     .type = SIGIL_CFG_STRING,
     .offset = F(ca_key_dir),
     .def = "/var/lib/sigil-server/keys",
     .doc = "Directory of the CA key files (made 0700; refused if group or others may enter); "
            "replicas of one trust domain share it."},
    {.key = "ca.root_ttl",
     .type = SIGIL_CFG_DURATION,
     .offset = F(ca_root_ttl_ms),
     .def = "8760h",
     .min = 3600 * 1000,
     .max = 36500 * MS_DAY,
     .doc = "Lifetime of a root CA."},
    {.key = "ca.intermediate_ttl",
     .type = SIGIL_CFG_DURATION,
     .offset = F(ca_intermediate_ttl_ms),
     .def = "720h",
     .min = 600 * 1000,
     .max = 3650 * MS_DAY,
     .doc = "Lifetime of a server instance's intermediate CA (shorter than ca.root_ttl)."},
    {.key = "ca.jwt_key_ttl",
     .type = SIGIL_CFG_DURATION,
     .offset = F(ca_jwt_key_ttl_ms),
     .def = "720h",
     .min = 600 * 1000,
     .max = 3650 * MS_DAY,
     .doc = "Lifetime of a JWT signing key."},
    {.key = "ca.bundle_refresh_hint",
     .type = SIGIL_CFG_DURATION,
     .offset = F(ca_refresh_hint_ms),
     .def = "5m",
     .min = 1000,
     .max = 7 * MS_DAY,
     .doc = "spiffe_refresh_hint of the published bundle (whole seconds)."},
    {.key = "ca.check_interval",
     .type = SIGIL_CFG_DURATION,
     .offset = F(ca_check_interval_ms),
     .def = "1m",
     .min = 1000,
     .max = MS_DAY,
     .doc = "How often a running server re-reads the CA journal: renews its intermediate at half "
            "its life, replaces an expired JWT key, follows rotations made elsewhere."},
    {.key = "ca.subject", .type = SIGIL_CFG_SECTION, .doc = "Subject of the CA certificates."},
    {.key = "ca.subject.country",
     .type = SIGIL_CFG_STRING,
     .offset = F(ca_subject_country),
     .doc = "C: two letters; unset: left out."},
    {.key = "ca.subject.organization",
     .type = SIGIL_CFG_STRING,
     .offset = F(ca_subject_organization),
     .def = "Sigil",
     .doc = "O of the CA certificates."},
    {.key = "ca.subject.common_name",
     .type = SIGIL_CFG_STRING,
     .offset = F(ca_subject_common_name),
     .doc = "CN of the root; unset: \"Sigil root CA <trust domain>\"."},
    {.key = "policy", .type = SIGIL_CFG_SECTION, .doc = "The registration policy."},
    {.key = "policy.tier",
     .type = SIGIL_CFG_ENUM,
     .offset = F(policy_tier),
     .def = "strict",
     .choices = tier_names,
     .doc = "strict: discouraged selectors refused or warned as listed; relaxed: only warned; "
            "off: not looked at."},
    {.key = "policy.enforce_scheme",
     .type = SIGIL_CFG_BOOL,
     .offset = F(policy_enforce_scheme),
     .def = "true",
     .doc = "Check entry SPIFFE IDs against the scheme below."},
    {.key = "policy.scheme",
     .type = SIGIL_CFG_STRLIST,
     .offset = F(policy_scheme),
     .def = "[environment, platform, team, workload]",
     .doc = "Segment names of spiffe://<td>/<segment>/... (1 to 16)."},
    {.key = "policy.segment_values",
     .type = SIGIL_CFG_STRLIST,
     .offset = F(policy_segment_values),
     .def = "[environment=prod staging dev, platform=gcp azure aws onprem]",
     .doc = "Allowed values of a segment, \"segment=value value ...\"; a segment not listed "
            "takes any value matching its pattern."},
    {.key = "policy.segment_patterns",
     .type = SIGIL_CFG_STRLIST,
     .offset = F(policy_segment_patterns),
     .def = "[]",
     .doc = "Pattern of a segment, \"segment=[a-z][a-z0-9-]{0,30}\"; unlisted segments use "
            "[a-z0-9][a-z0-9-]{0,62}."},
    {.key = "policy.exempt_prefixes",
     .type = SIGIL_CFG_STRLIST,
     .offset = F(policy_exempt_prefixes),
     .def = "[/sigil]",
     .doc = "SPIFFE ID prefixes that skip the scheme (a path is under this trust domain)."},
    {.key = "policy.discouraged",
     .type = SIGIL_CFG_STRLIST,
     .offset = F(policy_discouraged),
     .def = "[k8s:pod-name=refuse, k8s:pod-uid=refuse, k8s:node-name=refuse, unix:pid=refuse]",
     .doc = "Discouraged selector keys, \"type:key=refuse\" or \"type:key=warn\"."},
    {.key = "policy.x509_ttl",
     .type = SIGIL_CFG_SECTION,
     .doc = "Bounds of an entry's X.509-SVID TTL (whole seconds)."},
    {.key = "policy.x509_ttl.min",
     .type = SIGIL_CFG_DURATION,
     .offset = F(policy_x509_ttl.min_ms),
     .def = "1m",
     .min = 1000,
     .max = 24855 * MS_DAY,
     .doc = "Shortest X.509-SVID TTL an entry may ask for."},
    {.key = "policy.x509_ttl.max",
     .type = SIGIL_CFG_DURATION,
     .offset = F(policy_x509_ttl.max_ms),
     .def = "24h",
     .min = 1000,
     .max = 24855 * MS_DAY,
     .doc = "Longest X.509-SVID TTL an entry may ask for."},
    {.key = "policy.x509_ttl.default",
     .type = SIGIL_CFG_DURATION,
     .offset = F(policy_x509_ttl.default_ms),
     .def = "1h",
     .min = 1000,
     .max = 24855 * MS_DAY,
     .doc = "X.509-SVID TTL of an entry that gives none."},
    {.key = "policy.jwt_ttl",
     .type = SIGIL_CFG_SECTION,
     .doc = "Bounds of an entry's JWT-SVID TTL."},
    {.key = "policy.jwt_ttl.min",
     .type = SIGIL_CFG_DURATION,
     .offset = F(policy_jwt_ttl.min_ms),
     .def = "30s",
     .min = 1000,
     .max = 24855 * MS_DAY,
     .doc = "Shortest JWT-SVID TTL an entry may ask for."},
    {.key = "policy.jwt_ttl.max",
     .type = SIGIL_CFG_DURATION,
     .offset = F(policy_jwt_ttl.max_ms),
     .def = "1h",
     .min = 1000,
     .max = 24855 * MS_DAY,
     .doc = "Longest JWT-SVID TTL an entry may ask for."},
    {.key = "policy.jwt_ttl.default",
     .type = SIGIL_CFG_DURATION,
     .offset = F(policy_jwt_ttl.default_ms),
     .def = "5m",
     .min = 1000,
     .max = 24855 * MS_DAY,
     .doc = "JWT-SVID TTL of an entry that gives none."},
    {.key = "log", .type = SIGIL_CFG_SECTION, .doc = "Logging (to stderr)."},
    {.key = "log.level",
     .type = SIGIL_CFG_ENUM,
     .offset = F(log_level),
     .def = "info",
     .choices = sigil_log_level_names,
     .doc = "Lowest level written."},
    {.key = "log.format",
     .type = SIGIL_CFG_ENUM,
     .offset = F(log_format),
     .def = "human",
     .choices = sigil_log_format_names,
     .doc = "human: one readable line per event; json: one JSON object per line."},
    SIGIL_CONFIG_END,
};

static int cross_fail(struct sigil_config_error *err, const char *name, const char *key, int code,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* An error of a check across keys: no line to name, the loader's text shape otherwise. */
static int
cross_fail(struct sigil_config_error *err, const char *name, const char *key, int code,
           const char *fmt, ...)
{
    char msg[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err->line = 0;
    snprintf(err->key, sizeof err->key, "%s", key);
    snprintf(err->text, sizeof err->text, "%s: key \"%s\": %s", name, key, msg);
    return code;
}

int
sigil_server_config_split_hostport(const char *s, char host[64], uint16_t *port, bool allow_zero,
                                   const char **why)
{
    const char *colon, *h = s, *p;
    size_t hlen;
    unsigned long v = 0;

    if (s == NULL || s[0] == '\0') {
        *why = "address is empty (want host:port)";
        return SIGIL_ERR_INVALID;
    }
    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL || close[1] != ':') {
            *why = "IPv6 address needs the form [addr]:port";
            return SIGIL_ERR_INVALID;
        }
        h = s + 1;
        hlen = (size_t)(close - h);
        p = close + 2;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL) {
            *why = "want host:port (an IPv6 address goes in brackets)";
            return SIGIL_ERR_INVALID;
        }
        hlen = (size_t)(colon - s);
        p = colon + 1;
    }
    if (hlen == 0 || hlen > 63) {
        *why = "host part is empty or over 63 bytes";
        return SIGIL_ERR_INVALID;
    }
    if (p[0] == '\0' || strlen(p) > 5) {
        *why = "port must be a number 1..65535";
        return SIGIL_ERR_INVALID;
    }
    for (const char *q = p; *q != '\0'; q++) {
        if (*q < '0' || *q > '9') {
            *why = "port must be a number 1..65535";
            return SIGIL_ERR_INVALID;
        }
        v = v * 10 + (unsigned long)(*q - '0');
    }
    if (v > 65535 || (v == 0 && !allow_zero) || (p[0] == '0' && p[1] != '\0')) {
        *why = "port must be a number 1..65535 without leading zeros";
        return SIGIL_ERR_INVALID;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (uint16_t)v;
    return 0;
}

static int
check_listen(const char *name, const char *key, const char *value, bool allow_zero,
             struct sigil_config_error *err)
{
    char host[64];
    uint16_t port;
    const char *why;

    if (value == NULL)
        return 0;
    if (sigil_server_config_split_hostport(value, host, &port, allow_zero, &why) != 0)
        return cross_fail(err, name, key, SIGIL_ERR_INVALID, "%s", why);
    return 0;
}

static int
check_ids(const char *name, const char *key, const struct sigil_config_strlist *l,
          struct sigil_config_error *err)
{
    struct sigil_spiffeid id;
    const char *why;

    for (size_t i = 0; i < l->n; i++) {
        if (sigil_spiffeid_parse(l->items[i], strlen(l->items[i]), &id, &why) != 0)
            return cross_fail(err, name, key, SIGIL_ERR_INVALID, "item %zu is not a SPIFFE ID: %s",
                              i + 1, why);
    }
    return 0;
}

/* Splits "name=rest" of a policy list item: name into out (NUL-terminated); returns rest. */
static const char *
split_item(const char *item, char *out, size_t cap)
{
    const char *eq = strchr(item, '=');
    size_t n;

    if (eq == NULL || eq == item || (n = (size_t)(eq - item)) >= cap)
        return NULL;
    memcpy(out, item, n);
    out[n] = '\0';
    return eq + 1;
}

static int
policy_segment_values(struct sigil_policy *p, const char *item, const char **why)
{
    char seg[SIGIL_POLICY_NAME_MAX + 1], *copy = NULL, *save = NULL;
    const char *rest = split_item(item, seg, sizeof seg);
    const char *vals[SIGIL_POLICY_VALUES_MAX];
    size_t n = 0;
    int r;

    if (rest == NULL) {
        *why = "want \"segment=value value ...\"";
        return SIGIL_ERR_INVALID;
    }
    if ((copy = strdup(rest)) == NULL)
        return SIGIL_ERR_NOMEM;
    for (char *t = strtok_r(copy, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
        if (n == SIGIL_POLICY_VALUES_MAX) {
            free(copy);
            *why = "more than 256 values for one segment";
            return SIGIL_ERR_RANGE;
        }
        vals[n++] = t;
    }
    if (n == 0) {
        free(copy);
        *why = "no values after '=' (leave the segment out to allow any)";
        return SIGIL_ERR_INVALID;
    }
    r = sigil_policy_set_allowed(p, seg, vals, n, why);
    free(copy);
    return r;
}

static int
policy_segment_pattern(struct sigil_policy *p, const char *item, const char **why)
{
    char seg[SIGIL_POLICY_NAME_MAX + 1];
    const char *rest = split_item(item, seg, sizeof seg);

    if (rest == NULL) {
        *why = "want \"segment=pattern\"";
        return SIGIL_ERR_INVALID;
    }
    return sigil_policy_set_pattern(p, seg, rest, why);
}

static int
policy_exempt(struct sigil_policy *p, const char *item, const char **why)
{
    char id[SIGIL_SPIFFEID_MAX + 1];

    if (item[0] != '/')
        return sigil_policy_add_exempt_prefix(p, item, why);
    /* a bare path is under our own trust domain */
    if ((size_t)snprintf(id, sizeof id, "spiffe://%s%s", p->trust_domain, item) >= sizeof id) {
        *why = "prefix is too long (ID-7)";
        return SIGIL_ERR_RANGE;
    }
    return sigil_policy_add_exempt_prefix(p, id, why);
}

static int
policy_discouraged(struct sigil_policy *p, const char *item, const char **why)
{
    char tk[2 * 33 + 2];
    const char *action = split_item(item, tk, sizeof tk);

    if (action == NULL) {
        *why = "want \"type:key=refuse\" or \"type:key=warn\"";
        return SIGIL_ERR_INVALID;
    }
    return sigil_policy_add_discouraged(p, tk, action, why);
}

static int
policy_ttl(struct sigil_policy *p, const char *kind, const struct sigil_server_ttl *t,
           const char **why)
{
    if (t->min_ms % 1000 != 0 || t->max_ms % 1000 != 0 || t->default_ms % 1000 != 0) {
        *why = "TTLs are whole seconds";
        return SIGIL_ERR_INVALID;
    }
    return sigil_policy_set_ttl(p, kind, t->min_ms / 1000, t->max_ms / 1000, t->default_ms / 1000,
                                why);
}

int
sigil_server_config_policy(const struct sigil_server_config *cfg, const char *name,
                           struct sigil_policy *p, struct sigil_config_error *err)
{
    const char *why = NULL, *key = "trust_domain";
    int r;

    if ((r = sigil_policy_init_defaults(p, cfg->trust_domain, &why)) != 0)
        return cross_fail(err, name, key, r, "%s", why ? why : sigil_strerror(r));
    sigil_policy_set_enforce_scheme(p, cfg->policy_enforce_scheme);
    key = "policy.scheme";
    if ((r = sigil_policy_set_scheme(p, (const char *const *)cfg->policy_scheme.items,
                                     cfg->policy_scheme.n, &why)) != 0)
        goto out;
    key = "policy.segment_values";
    for (size_t i = 0; i < cfg->policy_segment_values.n; i++) {
        if ((r = policy_segment_values(p, cfg->policy_segment_values.items[i], &why)) != 0)
            goto out;
    }
    key = "policy.segment_patterns";
    for (size_t i = 0; i < cfg->policy_segment_patterns.n; i++) {
        if ((r = policy_segment_pattern(p, cfg->policy_segment_patterns.items[i], &why)) != 0)
            goto out;
    }
    key = "policy.exempt_prefixes";
    sigil_policy_clear_exempt_prefixes(p);
    for (size_t i = 0; i < cfg->policy_exempt_prefixes.n; i++) {
        if ((r = policy_exempt(p, cfg->policy_exempt_prefixes.items[i], &why)) != 0)
            goto out;
    }
    key = "policy.discouraged";
    sigil_policy_clear_discouraged(p);
    for (size_t i = 0; i < cfg->policy_discouraged.n; i++) {
        if ((r = policy_discouraged(p, cfg->policy_discouraged.items[i], &why)) != 0)
            goto out;
    }
    key = "policy.tier";
    if ((r = sigil_policy_set_tier(p, tier_names[cfg->policy_tier], &why)) != 0)
        goto out;
    key = "policy.x509_ttl";
    if ((r = policy_ttl(p, "x509", &cfg->policy_x509_ttl, &why)) != 0)
        goto out;
    key = "policy.jwt_ttl";
    r = policy_ttl(p, "jwt", &cfg->policy_jwt_ttl, &why);
out:
    if (r != 0) {
        sigil_policy_free(p);
        return cross_fail(err, name, key, r, "%s", why ? why : sigil_strerror(r));
    }
    return 0;
}

/* Fills the defaults that depend on other values and runs the checks across keys. */
static int
finish(const char *name, struct sigil_server_config *cfg, struct sigil_config_error *err)
{
    char td[SIGIL_TRUST_DOMAIN_MAX + 1], host[256];
    struct sigil_policy policy;
    const char *why, *env;
    int r;

    if (sigil_trust_domain_parse(cfg->trust_domain, strlen(cfg->trust_domain), td, &why) != 0)
        return cross_fail(err, name, "trust_domain", SIGIL_ERR_INVALID, "%s", why);
    free(cfg->trust_domain);
    if ((cfg->trust_domain = strdup(td)) == NULL)
        return SIGIL_ERR_NOMEM;
    if (cfg->db_conninfo == NULL && (env = getenv("SIGIL_DATABASE")) != NULL && env[0] != '\0' &&
        (cfg->db_conninfo = strdup(env)) == NULL)
        return SIGIL_ERR_NOMEM;
    if (cfg->admin_socket_path == NULL) {
        env = getenv("SIGIL_ADMIN_SOCKET");
        if ((cfg->admin_socket_path = strdup(
                 env != NULL && env[0] != '\0' ? env : SIGIL_SERVER_ADMIN_SOCKET_DEFAULT)) == NULL)
            return SIGIL_ERR_NOMEM;
    }
    if (strlen(cfg->admin_socket_path) > 96 || cfg->admin_socket_path[0] == '\0')
        return cross_fail(err, name, "admin.socket_path", SIGIL_ERR_RANGE,
                          "must be 1 to 96 bytes (a Unix socket path)");
    /* the admin and bundle endpoint ports may be 0 (any free port, logged at start) */
    if ((r = check_listen(name, "admin.listen", cfg->admin_listen, true, err)) != 0 ||
        (r = check_listen(name, "node_api.listen", cfg->node_api_listen, true, err)) != 0 ||
        (r = check_listen(name, "bundle_endpoint.listen", cfg->bundle_endpoint_listen, true,
                          err)) != 0)
        return r;
    if (cfg->bundle_endpoint_listen != NULL &&
        (cfg->bundle_endpoint_tls_cert == NULL || cfg->bundle_endpoint_tls_key == NULL))
        return cross_fail(err, name,
                          cfg->bundle_endpoint_tls_cert == NULL ? "bundle_endpoint.tls_cert"
                                                                : "bundle_endpoint.tls_key",
                          SIGIL_ERR_INVALID, "required when bundle_endpoint.listen is set");
    if (cfg->admin_listen != NULL && (cfg->admin_tls_cert == NULL || cfg->admin_tls_key == NULL))
        return cross_fail(err, name,
                          cfg->admin_tls_cert == NULL ? "admin.tls_cert" : "admin.tls_key",
                          SIGIL_ERR_INVALID, "required when admin.listen is set");
    if ((r = check_ids(name, "admin.platform_admins", &cfg->platform_admins, err)) != 0 ||
        (r = check_ids(name, "admin.viewers", &cfg->viewers, err)) != 0)
        return r;
    if (cfg->ca_key_dir[0] != '/')
        return cross_fail(err, name, "ca.key_dir", SIGIL_ERR_INVALID, "must be an absolute path");
    if (cfg->ca_intermediate_ttl_ms >= cfg->ca_root_ttl_ms)
        return cross_fail(err, name, "ca.intermediate_ttl", SIGIL_ERR_INVALID,
                          "must be shorter than ca.root_ttl");
    if (cfg->ca_refresh_hint_ms % 1000 != 0)
        return cross_fail(err, name, "ca.bundle_refresh_hint", SIGIL_ERR_INVALID,
                          "must be whole seconds");
    if (cfg->ca_subject_country != NULL && strlen(cfg->ca_subject_country) != 2)
        return cross_fail(err, name, "ca.subject.country", SIGIL_ERR_INVALID,
                          "must be two letters");
    if (cfg->instance_id == NULL) {
        if (gethostname(host, sizeof host) != 0)
            snprintf(host, sizeof host, "localhost");
        host[sizeof host - 1] = '\0';
        if (asprintf(&cfg->instance_id, "%s:%s", host, cfg->admin_socket_path) < 0) {
            cfg->instance_id = NULL;
            return SIGIL_ERR_NOMEM;
        }
    }
    /* the policy is built again by whoever uses it; here it is only checked */
    if ((r = sigil_server_config_policy(cfg, name, &policy, err)) != 0)
        return r;
    sigil_policy_free(&policy);
    return 0;
}

int
sigil_server_config_load_string(const char *name, const char *yaml, size_t len,
                                struct sigil_server_config *cfg, struct sigil_config_error *err)
{
    int r;

    memset(cfg, 0, sizeof *cfg);
    if ((r = sigil_config_load_string(sigil_server_config_schema, name, yaml, len, cfg, err)) != 0)
        return r;
    if ((r = finish(name, cfg, err)) != 0) {
        if (r == SIGIL_ERR_NOMEM)
            cross_fail(err, name, "", r, "out of memory");
        sigil_server_config_free(cfg);
    }
    return r;
}

int
sigil_server_config_load(const char *path, struct sigil_server_config *cfg,
                         struct sigil_config_error *err)
{
    int r;

    memset(cfg, 0, sizeof *cfg);
    if ((r = sigil_config_load_file(sigil_server_config_schema, path, cfg, err)) != 0)
        return r;
    if ((r = finish(path, cfg, err)) != 0) {
        if (r == SIGIL_ERR_NOMEM)
            cross_fail(err, path, "", r, "out of memory");
        sigil_server_config_free(cfg);
    }
    return r;
}

void
sigil_server_config_free(struct sigil_server_config *cfg)
{
    if (cfg == NULL)
        return;
    /* the conninfo may hold a password */
    if (cfg->db_conninfo != NULL)
        explicit_bzero(cfg->db_conninfo, strlen(cfg->db_conninfo));
    sigil_config_free(sigil_server_config_schema, cfg);
    memset(cfg, 0, sizeof *cfg);
}

int
sigil_server_config_print_doc(FILE *fp)
{
    fprintf(fp, "# sigil-server configuration (sigil-server run --config FILE).\n"
                "# Every key with its type, default and meaning; commented keys show the "
                "default.\n");
    return sigil_config_print_doc(sigil_server_config_schema, fp);
}
