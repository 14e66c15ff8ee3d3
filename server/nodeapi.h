/* The node API (proto/node.proto) of the upstream server: gRPC over TLS 1.3 with the server's
 * own X.509-SVID (spiffe://<td>/sigil/server, renewed at half life), node attestation, agent
 * SVID renewal, workload SVID signing for authorized entries, and bundle and entry streams fed
 * by the in-memory index, which follows the database's sigil_events notifications. */
#ifndef SIGIL_SERVER_NODEAPI_H
#define SIGIL_SERVER_NODEAPI_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/x509.h>
#include <uv.h>

#include "ca.h"
#include "sigil/db.h"
#include "sigil/metrics.h"

/* Defaults. */
#define SIGIL_NODEAPI_AGENT_TTL_DEFAULT 3600 /* seconds an agent SVID lives */
#define SIGIL_NODEAPI_PAGE_DEFAULT 500       /* entries per SyncEntries page */
#define SIGIL_NODEAPI_PAGE_MAX 5000
#define SIGIL_NODEAPI_BATCH_MAX 1000 /* CSRs per BatchSignX509SVID */

/* What the node API runs with (borrowed for its lifetime unless said otherwise). */
struct sigil_nodeapi_opts {
    uv_loop_t *loop;
    struct sigil_db *db;
    const char *conninfo;          /* for the blocking first load of the index */
    struct sigil_ca *const *ca;    /* the server's current CA (the run command swaps it) */
    const char *trust_domain;      /* bare name */
    const char *host;              /* listen address */
    int port;                      /* 0: any free port */
    STACK_OF(X509) *x509pop_roots; /* NULL: x509pop off (copied by reference: up-ref'd) */
    bool join_token_enabled;
    int64_t agent_ttl_s;           /* 0: SIGIL_NODEAPI_AGENT_TTL_DEFAULT */
    struct sigil_metrics *metrics; /* the node API registers its metrics here */
};

/* The running node API (opaque). */
struct sigil_nodeapi;

/* Mints the server SVID, loads every entry into the index (blocking: call it at startup),
 * starts listening and following sigil_events. Returns 0 and *out, or SIGIL_ERR_* with
 * *why. */
int sigil_nodeapi_start(const struct sigil_nodeapi_opts *o, struct sigil_nodeapi **out,
                        const char **why);
/* Returns the TCP port the node API listens on. */
int sigil_nodeapi_port(const struct sigil_nodeapi *n);
/* Stops listening, ends open streams and frees n once its handles are closed; done(arg) then
 * runs. Call before the database pool closes. */
void sigil_nodeapi_stop(struct sigil_nodeapi *n, void (*done)(void *arg), void *arg);

#endif
