/* sigil-agent run's configuration: the schema with one doc line per key, then the checks
 * that need parsing or look at several keys at once. */
#include "agent_config.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "sigil/err.h"
#include "sigil/log.h"
#include "sigil/rpc.h"

#define F(m) offsetof(struct sigil_agent_config, m)

const struct sigil_config_field sigil_agent_config_schema[] = {
    {.key = "trust_domain",
     .type = SIGIL_CFG_STRING,
     .offset = F(trust_domain),
     .required = true,
     .doc = "Trust domain of the server (\"example.org\" or \"spiffe://example.org\")."},
    {.key = "server_address",
     .type = SIGIL_CFG_STRING,
     .offset = F(server_address),
     .required = true,
     .doc = "Node API address of sigil-server: \"host:port\" (a DNS name, resolved at each "
            "connection and every address tried), \"ip:port\" or \"[ipv6]:port\"."},
    {.key = "trust_bundle_path",
     .type = SIGIL_CFG_STRING,
     .offset = F(trust_bundle_path),
     .doc = "PEM of the server's root CA, trusted for the first connection only (later the "
            "bundle the server sends, kept in data_dir, is used). Required until the agent "
            "has attested."},
    {.key = "data_dir",
     .type = SIGIL_CFG_STRING,
     .offset = F(data_dir),
     .required = true,
     .doc = "Directory of the agent's state (created 0700): its SVID, key (0600) and the "
            "trust bundle. A restart with a valid SVID there does not attest again."},
    {.key = "join_token",
     .type = SIGIL_CFG_STRING,
     .offset = F(join_token),
     .doc = "Single-use join token (sigil-server token generate) for join_token node "
            "attestation; --join-token overrides it. Exactly one of join_token and x509pop."},
    {.key = "x509pop", .type = SIGIL_CFG_SECTION, .doc = "x509pop node attestation."},
    {.key = "x509pop.cert_path",
     .type = SIGIL_CFG_STRING,
     .offset = F(x509pop_cert_path),
     .doc = "PEM chain (leaf first) of the node certificate the server's x509pop CA issued."},
    {.key = "x509pop.key_path",
     .type = SIGIL_CFG_STRING,
     .offset = F(x509pop_key_path),
     .doc = "PKCS#8 PEM private key of the node certificate (signs the server's nonce)."},
    {.key = "workload_api", .type = SIGIL_CFG_SECTION, .doc = "The SPIFFE Workload API."},
    {.key = "workload_api.socket_path",
     .type = SIGIL_CFG_STRING,
     .offset = F(wapi_socket_path),
     .def = SIGIL_ENDPOINT_DEFAULT,
     .doc = "Absolute path of the Workload API Unix socket (at most 107 bytes)."},
    {.key = "workload_api.socket_mode",
     .type = SIGIL_CFG_MODE,
     .offset = F(wapi_socket_mode),
     .def = "0666",
     .doc = "Permissions of the socket (workload attestation, not the file mode, decides "
            "who gets an identity)."},
    {.key = "workload_attestors",
     .type = SIGIL_CFG_STRLIST,
     .offset = F(workload_attestors),
     .def = "[unix, systemd]",
     .doc = "Workload attestors to run: unix (always on), systemd."},
    {.key = "log", .type = SIGIL_CFG_SECTION, .doc = "Logging (to standard error)."},
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
     .doc = "Line format."},
    {.key = "retry", .type = SIGIL_CFG_SECTION, .doc = "Reconnecting to an unreachable server."},
    {.key = "retry.initial",
     .type = SIGIL_CFG_DURATION,
     .offset = F(retry_initial_ms),
     .def = "1s",
     .min = 100,
     .max = 3600 * 1000,
     .doc = "First wait after a failure; doubled on each further failure."},
    {.key = "retry.max",
     .type = SIGIL_CFG_DURATION,
     .offset = F(retry_max_ms),
     .def = "30s",
     .min = 100,
     .max = 3600 * 1000,
     .doc = "Longest wait between two attempts."},
    {.key = "rotation", .type = SIGIL_CFG_SECTION, .doc = "SVID rotation (tests may tune)."},
    {.key = "rotation.jitter_percent",
     .type = SIGIL_CFG_INT64,
     .offset = F(jitter_percent),
     .def = "10",
     .min = 0,
     .max = 40,
     .doc = "SVIDs are renewed at half their life, plus or minus this share of the half "
            "life, so a fleet does not renew at one instant."},
    {.key = "rotation.sign_batch_size",
     .type = SIGIL_CFG_INT64,
     .offset = F(sign_batch_size),
     .def = "100",
     .min = 1,
     .max = 1000,
     .doc = "CSRs per BatchSignX509SVID call."},
    {.key = "sync", .type = SIGIL_CFG_SECTION, .doc = "Entry sync with the server."},
    {.key = "sync.page_size",
     .type = SIGIL_CFG_INT64,
     .offset = F(sync_page_size),
     .def = "0",
     .min = 0,
     .max = 100000,
     .doc = "Entries per SyncEntries page (0: the server's default)."},
    {.key = "sync.rpc_timeout",
     .type = SIGIL_CFG_DURATION,
     .offset = F(rpc_timeout_ms),
     .def = "30s",
     .min = 100,
     .max = 600 * 1000,
     .doc = "Time limit of one unary node API call (attest, renew, sign)."},
    SIGIL_CONFIG_END,
};

/* An error of a check across keys: no line to name, the loader's text shape otherwise. */
/* The 1-based line where a top-level key (no dot) is set in block style ("key:" at the
 * start of a line), or 0 if the text does not show it that way. */
static int
key_line(const char *text, size_t len, const char *key)
{
    size_t kl = strlen(key), i = 0;
    int line = 1;

    if (text == NULL || strchr(key, '.') != NULL)
        return 0;
    while (i < len) {
        size_t j = i + kl;

        if (len - i > kl && memcmp(text + i, key, kl) == 0) {
            while (j < len && text[j] == ' ')
                j++;
            if (j < len && text[j] == ':')
                return line;
        }
        while (i < len && text[i] != '\n')
            i++;
        i++;
        line++;
    }
    return 0;
}

/* A refusal of the checks below: "file:line: key "k": what" (no line where the key is not
 * found at the start of a line of text). */
static int
cross_fail(struct sigil_config_error *err, const char *name, const char *text, size_t len,
           const char *key, int code, const char *fmt, ...)
{
    char msg[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err->line = key_line(text, len, key);
    snprintf(err->key, sizeof err->key, "%s", key);
    if (err->line > 0)
        snprintf(err->text, sizeof err->text, "%s:%d: key \"%s\": %s", name, err->line, key, msg);
    else
        snprintf(err->text, sizeof err->text, "%s: key \"%s\": %s", name, key, msg);
    return code;
}

static int
finish(const char *name, const char *text, size_t len, struct sigil_agent_config *cfg,
       struct sigil_config_error *err)
{
    struct sigil_rpc_hostport hp;
    const char *why = NULL;
    size_t i;

    if (sigil_trust_domain_parse(cfg->trust_domain, strlen(cfg->trust_domain), cfg->td, &why) != 0)
        return cross_fail(err, name, text, len, "trust_domain", SIGIL_ERR_INVALID, "%s", why);
    if (sigil_rpc_hostport_parse(cfg->server_address, strlen(cfg->server_address), &hp, &why) != 0)
        return cross_fail(err, name, text, len, "server_address", SIGIL_ERR_INVALID,
                          "%s (want host:port, ip:port or [ipv6]:port)", why);
    if (cfg->data_dir[0] != '/')
        return cross_fail(err, name, text, len, "data_dir", SIGIL_ERR_INVALID,
                          "must be an absolute path");
    if (strlen(cfg->data_dir) > 3000)
        return cross_fail(err, name, text, len, "data_dir", SIGIL_ERR_RANGE,
                          "longer than 3000 bytes");
    if (cfg->wapi_socket_path[0] != '/' || strlen(cfg->wapi_socket_path) > SIGIL_ENDPOINT_PATH_MAX)
        return cross_fail(err, name, text, len, "workload_api.socket_path", SIGIL_ERR_INVALID,
                          "must be an absolute path of at most %d bytes", SIGIL_ENDPOINT_PATH_MAX);
    if ((cfg->x509pop_cert_path == NULL) != (cfg->x509pop_key_path == NULL))
        return cross_fail(err, name, text, len,
                          cfg->x509pop_cert_path == NULL ? "x509pop.cert_path" : "x509pop.key_path",
                          SIGIL_ERR_INVALID, "x509pop needs both cert_path and key_path");
    if (cfg->join_token != NULL && cfg->x509pop_cert_path != NULL)
        return cross_fail(err, name, text, len, "join_token", SIGIL_ERR_INVALID,
                          "set join_token or x509pop, not both");
    if (cfg->retry_initial_ms > cfg->retry_max_ms)
        return cross_fail(err, name, text, len, "retry.initial", SIGIL_ERR_INVALID,
                          "longer than retry.max");
    cfg->no_systemd = true;
    for (i = 0; i < cfg->workload_attestors.n; i++) {
        const char *a = cfg->workload_attestors.items[i];

        if (strcmp(a, "systemd") == 0)
            cfg->no_systemd = false;
        else if (strcmp(a, "unix") != 0)
            return cross_fail(err, name, text, len, "workload_attestors", SIGIL_ERR_INVALID,
                              "unknown workload attestor \"%.64s\" (known: unix, systemd)", a);
    }
    return 0;
}

int
sigil_agent_config_load_string(const char *name, const char *yaml, size_t len,
                               struct sigil_agent_config *cfg, struct sigil_config_error *err)
{
    int r;

    memset(cfg, 0, sizeof *cfg);
    if ((r = sigil_config_load_string(sigil_agent_config_schema, name, yaml, len, cfg, err)) != 0)
        return r;
    if ((r = finish(name, yaml, len, cfg, err)) != 0)
        sigil_agent_config_free(cfg);
    return r;
}

/* The file's text (at most SIGIL_CONFIG_MAX_SIZE bytes), or NULL. */
static char *
read_text(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "re");
    char *buf = NULL;

    *len = 0;
    if (fp == NULL)
        return NULL;
    if ((buf = malloc(SIGIL_CONFIG_MAX_SIZE)) != NULL)
        *len = fread(buf, 1, SIGIL_CONFIG_MAX_SIZE, fp);
    fclose(fp);
    return buf;
}

int
sigil_agent_config_load(const char *path, struct sigil_agent_config *cfg,
                        struct sigil_config_error *err)
{
    size_t len;
    char *text;
    int r;

    memset(cfg, 0, sizeof *cfg);
    if ((r = sigil_config_load_file(sigil_agent_config_schema, path, cfg, err)) != 0)
        return r;
    text = read_text(path, &len); /* only to say on which line a refused key is */
    if ((r = finish(path, text, len, cfg, err)) != 0)
        sigil_agent_config_free(cfg);
    free(text);
    return r;
}

void
sigil_agent_config_free(struct sigil_agent_config *cfg)
{
    if (cfg == NULL)
        return;
    if (cfg->join_token != NULL)
        explicit_bzero(cfg->join_token, strlen(cfg->join_token));
    sigil_config_free(sigil_agent_config_schema, cfg);
    memset(cfg, 0, sizeof *cfg);
}

int
sigil_agent_config_print_doc(FILE *fp)
{
    fprintf(fp, "# sigil-agent configuration (sigil-agent run --config FILE).\n"
                "# Every key with its type, default and meaning; commented keys show the "
                "default.\n");
    return sigil_config_print_doc(sigil_agent_config_schema, fp);
}
