/* `sigil-server run` in role upstream: migrate the database, load (or make) the trust root,
 * serve the admin socket (/live, /ready, /metrics) on one libuv loop, stop gracefully on
 * SIGTERM or SIGINT. */
#ifndef SIGIL_SERVER_UPSTREAM_H
#define SIGIL_SERVER_UPSTREAM_H

#include "server_config.h"

/* Runs the server with cfg until SIGTERM or SIGINT. Returns the process exit code: 0 after a
 * graceful stop, 1 on a runtime failure (database unreachable, socket in use), 3 for a
 * configuration the server cannot run with, 4 when the database's state refuses us (edited
 * migration, newer schema, another trust domain, a CA key that does not match). */
int sigil_upstream_run(const struct sigil_server_config *cfg);

#endif
