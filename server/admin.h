/* The admin API (schema/admin-api.yaml) on the server's HTTP server: request parsing on the
 * loop thread, the registration policy and the datastore (server/store.h) on the database
 * pool's workers (one create's policy check runs on the loop), answers as the contract's JSON.
 * Served: entries (create, batch create, get, list, patch, delete, batch delete), agents
 * (list, get, ban, evict), join tokens, the audit log, federation relationships, federated
 * bundles, our own bundle and root CA rotation (/v1/ca); callers on the local admin socket are
 * platform admins, callers over mutual TLS get the role their SPIFFE ID has (struct
 * sigil_admin_roles). */
#ifndef SIGIL_SERVER_ADMIN_H
#define SIGIL_SERVER_ADMIN_H

#include "ca.h"
#include "sigil/db.h"
#include "sigil/http.h"
#include "sigil/policy.h"

/* The admin API's state: borrowed database pool, policy and roles, which must outlive it. */
struct sigil_admin;

/* Who may do what over mutual TLS (callers on the Unix socket are platform admins): the
 * SPIFFE IDs of platform admins and of viewers (read only); any other caller is a team admin
 * if the database's team_admins names it, and writes entries only under its teams' prefixes. */
struct sigil_admin_roles {
    const char *const *platform_admins;
    size_t n_platform_admins;
    const char *const *viewers;
    size_t n_viewers;
};

/* Creates the admin API over db, policy and roles (all borrowed) into *out (free with
 * sigil_admin_free once the HTTP server has stopped). Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_admin_new(struct sigil_db *db, const struct sigil_policy *policy,
                    const struct sigil_admin_roles *roles, struct sigil_admin **out);
/* Lets the admin API rotate the root CA (GET /v1/ca, POST /v1/ca:prepare|activate|retire,
 * platform admins only): p (borrowed, must outlive a) says how the CA is made; the steps open
 * it as no instance and the running server follows through its journal re-read. Old JWT keys
 * retire once replaced jwt_max_ttl_s ago. Without this call those routes answer 503. */
void sigil_admin_set_ca(struct sigil_admin *a, const struct sigil_ca_params *p,
                        int64_t jwt_max_ttl_s);
/* Adds the admin API's routes to srv. Returns 0 or the first sigil_http_route error. */
int sigil_admin_routes(struct sigil_admin *a, struct sigil_http_server *srv);
/* Frees a; NULL is allowed. Call after the HTTP server stopped (no request in flight). */
void sigil_admin_free(struct sigil_admin *a);

#endif
