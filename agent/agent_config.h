/* sigil-agent run's configuration: one static schema (every key documented, so the example
 * file is printed from it) and the checks that span keys or need parsing (trust domain,
 * host:port, exactly one node attestor, known workload attestors). */
#ifndef SIGIL_AGENT_CONFIG_H
#define SIGIL_AGENT_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "sigil/config.h"
#include "sigil/spiffeid.h"

/* The loaded configuration; strings are owned (free with sigil_agent_config_free). */
struct sigil_agent_config {
    char *trust_domain; /* as written; td below is the bare name */
    char *server_address;
    char *trust_bundle_path;
    char *data_dir;
    char *join_token;
    char *x509pop_cert_path;
    char *x509pop_key_path;
    char *wapi_socket_path;
    mode_t wapi_socket_mode;
    struct sigil_config_strlist workload_attestors;
    int log_level;  /* enum sigil_log_level */
    int log_format; /* enum sigil_log_format */
    int64_t retry_initial_ms;
    int64_t retry_max_ms;
    int64_t jitter_percent;
    int64_t sync_page_size;
    int64_t sign_batch_size;
    int64_t rpc_timeout_ms;
    /* derived by the checks */
    char td[SIGIL_TRUST_DOMAIN_MAX + 1];
    bool no_systemd;
};

/* The schema (SIGIL_CONFIG_END-terminated). */
extern const struct sigil_config_field sigil_agent_config_schema[];

/* Loads path into *cfg and runs the checks; on failure returns SIGIL_ERR_* with *err
 * ("file:line: key \"k\": ...") and *cfg zeroed. */
int sigil_agent_config_load(const char *path, struct sigil_agent_config *cfg,
                            struct sigil_config_error *err);
/* As sigil_agent_config_load over len bytes of YAML; name stands for the file in errors. */
int sigil_agent_config_load_string(const char *name, const char *yaml, size_t len,
                                   struct sigil_agent_config *cfg, struct sigil_config_error *err);
/* Frees every string of cfg (the join token wiped first) and zeroes it. NULL is ignored. */
void sigil_agent_config_free(struct sigil_agent_config *cfg);
/* Prints the commented example configuration; returns 0 or SIGIL_ERR_IO. */
int sigil_agent_config_print_doc(FILE *fp);

#endif
