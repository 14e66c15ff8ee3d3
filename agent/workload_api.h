/* The SPIFFE Workload API (checklist E-1..E-6, W-1..W-11) on a Unix socket: every call needs
 * the `workload.spiffe.io: true` header, every caller is attested by the kernel's word
 * (SO_PEERCRED + pidfd, agent/attestor.h) and gets what the identity cache (agent/cache.h)
 * holds for its selectors; streams push the full state again whenever it changes. */
#ifndef SIGIL_AGENT_WORKLOAD_API_H
#define SIGIL_AGENT_WORKLOAD_API_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <uv.h>

#include "attestor.h"
#include "cache.h"
#include "sigil/buf.h"

#define SIGIL_WAPI_JWT_LEEWAY_DEFAULT 30 /* seconds of clock skew ValidateJWTSVID allows */

/* Where and how to serve. */
struct sigil_wapi_opts {
    const char *socket_path; /* absolute path of the Unix socket */
    unsigned mode;           /* socket file mode [0666: attestation, not the file, gates] */
    bool set_uid;            /* chown the socket to uid */
    uid_t uid;
    bool set_gid; /* chown the socket to gid */
    gid_t gid;
    unsigned jwt_leeway_s; /* [SIGIL_WAPI_JWT_LEEWAY_DEFAULT if 0] */
    struct sigil_attest_opts attest;
};

struct sigil_wapi;

/* Starts serving the Workload API from cache (which must outlive the server) on loop.
 * Returns 0 and *out, or SIGIL_ERR_* with *why (socket in use, bad path, no memory). */
int sigil_wapi_start(uv_loop_t *loop, struct sigil_cache *cache, const struct sigil_wapi_opts *o,
                     struct sigil_wapi **out, const char **why);

/* Stops: refuses new calls, lets open calls finish for grace_ms, cancels the rest, removes
 * the socket file; done(arg) runs once everything is closed and w is freed. */
void sigil_wapi_shutdown(struct sigil_wapi *w, uint64_t grace_ms, void (*done)(void *arg),
                         void *arg);

/* Call counters, for tests and metrics. */
struct sigil_wapi_stats {
    uint64_t calls;         /* handlers started */
    uint64_t denied;        /* PERMISSION_DENIED answers (no identity, attestation refused) */
    uint64_t stream_pushes; /* stream responses sent after the first */
    uint64_t streams_open;
};

/* Copies the counters into *out. */
void sigil_wapi_stats(const struct sigil_wapi *w, struct sigil_wapi_stats *out);

/* Converts a JSON object to a google.protobuf.Struct (ValidateJWTSVID's claims), packed into
 * out (appended). Returns 0, SIGIL_ERR_INVALID (not an object, or nesting over 32 levels) or
 * SIGIL_ERR_NOMEM. */
int sigil_wapi_json_to_struct(const json_t *object, struct sigil_buf *out);

#endif
