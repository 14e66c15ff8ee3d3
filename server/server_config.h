/* sigil-server's configuration file: the schema of every key (with its doc line), loading
 * with file:line:key errors, the checks that need more than one key, and the registration
 * policy built from the policy.* keys. */
#ifndef SIGIL_SERVER_CONFIG_H
#define SIGIL_SERVER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "sigil/config.h"
#include "sigil/policy.h"
#include "sigil/spiffeid.h"

/* The admin socket when neither the file nor $SIGIL_ADMIN_SOCKET names one. */
#define SIGIL_SERVER_ADMIN_SOCKET_DEFAULT "/run/sigil/server/admin.sock"

enum sigil_server_role {
    SIGIL_SERVER_UPSTREAM = 0,
    SIGIL_SERVER_DOWNSTREAM,
};

/* A TTL range of the policy: durations in milliseconds (whole seconds). */
struct sigil_server_ttl {
    int64_t min_ms, max_ms, default_ms;
};

/* The loaded file. Strings and lists are owned (free with sigil_server_config_free). */
struct sigil_server_config {
    char *trust_domain; /* bare name after loading ("spiffe://" form accepted in the file) */
    int role;           /* enum sigil_server_role */
    char *instance_id;  /* NULL in the file: "<hostname>:<admin.socket_path>" after loading */
    char *db_conninfo;  /* NULL in the file: $SIGIL_DATABASE after loading (may stay NULL) */
    int64_t db_pool_size;
    char *admin_socket_path; /* unset in the file: $SIGIL_ADMIN_SOCKET, else the default */
    mode_t admin_socket_mode;
    char *admin_listen; /* host:port or NULL */
    char *admin_tls_cert;
    char *admin_tls_key;
    struct sigil_config_strlist platform_admins;
    struct sigil_config_strlist viewers;
    char *node_api_listen; /* NULL: the node API is not served */
    int64_t node_api_agent_ttl_ms;
    bool join_token_enabled;
    char *x509pop_ca_bundle; /* PEM file; NULL: x509pop is off */
    char *bundle_endpoint_listen;
    char *bundle_endpoint_tls_cert;
    char *bundle_endpoint_tls_key;
    char *ca_key_dir;
    int64_t ca_root_ttl_ms;
    int64_t ca_intermediate_ttl_ms;
    int64_t ca_jwt_key_ttl_ms;
    int64_t ca_refresh_hint_ms;
    int64_t ca_check_interval_ms;
    char *ca_subject_country;
    char *ca_subject_organization;
    char *ca_subject_common_name;
    int policy_tier; /* index into "strict", "relaxed", "off" */
    bool policy_enforce_scheme;
    struct sigil_config_strlist policy_scheme;
    struct sigil_config_strlist policy_segment_values;
    struct sigil_config_strlist policy_segment_patterns;
    struct sigil_config_strlist policy_exempt_prefixes;
    struct sigil_config_strlist policy_discouraged;
    struct sigil_server_ttl policy_x509_ttl;
    struct sigil_server_ttl policy_jwt_ttl;
    int log_level;  /* enum sigil_log_level */
    int log_format; /* enum sigil_log_format */
};

/* The schema of the file (SIGIL_CONFIG_END-terminated, static). */
extern const struct sigil_config_field sigil_server_config_schema[];

/* Loads path into *cfg (overwritten) and checks what the schema alone cannot (trust domain,
 * listen addresses, SPIFFE IDs, TLS files with admin.listen, the policy keys); fills the
 * defaults that depend on other values. Returns 0, or a negative SIGIL_ERR_* with *err set
 * ("file:line: key \"k\": what"; line 0 for checks across keys) and *cfg empty. */
int sigil_server_config_load(const char *path, struct sigil_server_config *cfg,
                             struct sigil_config_error *err);
/* As sigil_server_config_load over len bytes of YAML named name in errors. */
int sigil_server_config_load_string(const char *name, const char *yaml, size_t len,
                                    struct sigil_server_config *cfg,
                                    struct sigil_config_error *err);
/* Frees what cfg owns; cfg is then zeroed. */
void sigil_server_config_free(struct sigil_server_config *cfg);
/* Writes the commented example file (every key, its default and doc) to fp. Returns 0 or
 * SIGIL_ERR_IO. */
int sigil_server_config_print_doc(FILE *fp);
/* Builds the registration policy of cfg into *p (free with sigil_policy_free). Returns 0 or a
 * negative SIGIL_ERR_* with err naming the key (line 0) and *p empty. */
int sigil_server_config_policy(const struct sigil_server_config *cfg, const char *name,
                               struct sigil_policy *p, struct sigil_config_error *err);
/* Splits "host:port" or "[v6]:port" into host (NUL-terminated, at most 63 bytes) and port
 * (1..65535; 0 allowed if allow_zero). Returns 0 or SIGIL_ERR_INVALID with *why set. */
int sigil_server_config_split_hostport(const char *s, char host[64], uint16_t *port,
                                       bool allow_zero, const char **why);

#endif
