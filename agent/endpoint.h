/* The Workload API address a client uses (checklist E-4): --socket, else
 * SPIFFE_ENDPOINT_SOCKET as an RFC 3986 URI ("unix:///abs/path" or "tcp://IP:port"), else the
 * agent's default socket. We serve Unix sockets only, so a valid tcp address is refused with a
 * clear message rather than silently misused. */
#ifndef SIGIL_AGENT_ENDPOINT_H
#define SIGIL_AGENT_ENDPOINT_H

#include <stdbool.h>
#include <stddef.h>

#define SIGIL_ENDPOINT_DEFAULT "/run/sigil/agent/public/api.sock"
#define SIGIL_ENDPOINT_PATH_MAX 107 /* bytes of a Unix socket path (sun_path less its NUL) */
#define SIGIL_ENDPOINT_URI_MAX 4096 /* bytes of an endpoint URI we parse */

/* A parsed endpoint address. */
struct sigil_endpoint {
    bool is_unix;
    char path[SIGIL_ENDPOINT_PATH_MAX + 1]; /* unix: the absolute socket path */
    char host[64];                          /* tcp: the IP literal (IPv6 without brackets) */
    int port;                               /* tcp: 1..65535 */
};

/* Parses len bytes of s as a Workload API endpoint URI (E-4): "unix:" with no authority (or
 * an empty one, "unix:///p") and an absolute path, nothing else (no query, fragment,
 * percent-encoding, control or non-ASCII bytes); or "tcp://" with an IP address and a port,
 * nothing else. Returns 0, SIGIL_ERR_INVALID / SIGIL_ERR_RANGE with *why naming the rule. */
int sigil_endpoint_parse(const char *s, size_t len, struct sigil_endpoint *out, const char **why);

/* Picks the socket path a client uses: flag (a path, or a URI as above) if not NULL, else env
 * (the value of SPIFFE_ENDPOINT_SOCKET) if not NULL, else SIGIL_ENDPOINT_DEFAULT. A tcp
 * address is SIGIL_ERR_UNSUPPORTED (we serve Unix sockets only). Writes the path into out.
 * Returns 0 or an error with *why. */
int sigil_endpoint_pick(const char *flag, const char *env, char out[SIGIL_ENDPOINT_PATH_MAX + 1],
                        const char **why);

#endif
