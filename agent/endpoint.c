/* SPIFFE_ENDPOINT_SOCKET parsing (E-4), strict: what the spec allows and nothing it does not,
 * each refusal naming what was wrong. H-4: "unix://host/path" is refused (go-spiffe accepts
 * it, the spec does not). */
#include <arpa/inet.h>
#include <string.h>

#include "endpoint.h"
#include "sigil/err.h"

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int
parse_unix(const char *p, size_t n, struct sigil_endpoint *out, const char **why)
{
    size_t i;

    /* p is what follows "unix:". "//" starts an authority, which must be empty. */
    if (n >= 2 && p[0] == '/' && p[1] == '/') {
        p += 2;
        n -= 2;
        if (n == 0 || p[0] != '/') {
            *why = "E-4: a unix endpoint URI must not have an authority (unix:///path)";
            return SIGIL_ERR_INVALID;
        }
    }
    if (n == 0) {
        *why = "E-4: a unix endpoint URI needs a path";
        return SIGIL_ERR_INVALID;
    }
    if (p[0] != '/') {
        *why = "E-4: a unix endpoint URI needs an absolute path (unix:///path)";
        return SIGIL_ERR_INVALID;
    }
    for (i = 0; i < n; i++) {
        if (p[i] == '?') {
            *why = "E-4: a unix endpoint URI must not have a query";
            return SIGIL_ERR_INVALID;
        }
        if (p[i] == '#') {
            *why = "E-4: a unix endpoint URI must not have a fragment";
            return SIGIL_ERR_INVALID;
        }
        if (p[i] == '%') {
            *why = "E-4: percent-encoded socket paths are not supported";
            return SIGIL_ERR_INVALID;
        }
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f) {
            *why = "E-4: the socket path holds a space, control or non-ASCII byte";
            return SIGIL_ERR_INVALID;
        }
    }
    if (n > SIGIL_ENDPOINT_PATH_MAX) {
        *why = "the socket path is longer than a Unix socket address allows (107 bytes)";
        return SIGIL_ERR_RANGE;
    }
    out->is_unix = true;
    memcpy(out->path, p, n);
    out->path[n] = '\0';
    return 0;
}

static int
parse_tcp(const char *p, size_t n, struct sigil_endpoint *out, const char **why)
{
    const char *host, *colon;
    size_t hlen, i;
    unsigned char addr[16];
    long port = 0;

    if (n < 2 || p[0] != '/' || p[1] != '/') {
        *why = "E-4: a tcp endpoint URI is tcp://IP:port";
        return SIGIL_ERR_INVALID;
    }
    p += 2;
    n -= 2;
    if (memchr(p, '@', n) != NULL) {
        *why = "E-4: a tcp endpoint URI must not have user info";
        return SIGIL_ERR_INVALID;
    }
    if (n > 0 && p[0] == '[') {
        const char *close = memchr(p, ']', n);

        if (close == NULL) {
            *why = "E-4: unterminated IPv6 literal";
            return SIGIL_ERR_INVALID;
        }
        host = p + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
        if (colon >= p + n || *colon != ':') {
            *why = "E-4: a tcp endpoint URI needs a port";
            return SIGIL_ERR_INVALID;
        }
    } else {
        colon = memchr(p, ':', n);
        if (colon == NULL) {
            *why = "E-4: a tcp endpoint URI needs a port";
            return SIGIL_ERR_INVALID;
        }
        host = p;
        hlen = (size_t)(colon - p);
    }
    if (hlen == 0 || hlen >= sizeof out->host) {
        *why = "E-4: a tcp endpoint URI needs an IP address";
        return SIGIL_ERR_INVALID;
    }
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (inet_pton(host == p ? AF_INET : AF_INET6, out->host, addr) != 1) {
        *why = "E-4: the tcp endpoint host must be an IP address (no DNS names)";
        return SIGIL_ERR_INVALID;
    }
    for (i = (size_t)(colon + 1 - p); i < n; i++) {
        if (!is_digit(p[i])) {
            *why = "E-4: a tcp endpoint URI is IP and port only (no path, query or fragment)";
            return SIGIL_ERR_INVALID;
        }
        port = port * 10 + (p[i] - '0');
        if (port > 65535)
            break;
    }
    if ((size_t)(colon + 1 - p) == n || port < 1 || port > 65535) {
        *why = "E-4: the tcp endpoint port must be 1..65535";
        return SIGIL_ERR_INVALID;
    }
    out->is_unix = false;
    out->port = (int)port;
    return 0;
}

int
sigil_endpoint_parse(const char *s, size_t len, struct sigil_endpoint *out, const char **why)
{
    memset(out, 0, sizeof *out);
    *why = NULL;
    if (len > SIGIL_ENDPOINT_URI_MAX) {
        *why = "the endpoint URI is too long";
        return SIGIL_ERR_RANGE;
    }
    if (memchr(s, '\0', len) != NULL) {
        *why = "E-4: the endpoint URI holds a NUL byte";
        return SIGIL_ERR_INVALID;
    }
    if (len >= 5 && memcmp(s, "unix:", 5) == 0)
        return parse_unix(s + 5, len - 5, out, why);
    if (len >= 4 && memcmp(s, "tcp:", 4) == 0)
        return parse_tcp(s + 4, len - 4, out, why);
    *why = "E-4: the endpoint URI scheme must be unix or tcp";
    return SIGIL_ERR_INVALID;
}

int
sigil_endpoint_pick(const char *flag, const char *env, char out[SIGIL_ENDPOINT_PATH_MAX + 1],
                    const char **why)
{
    struct sigil_endpoint ep;
    const char *uri = NULL;
    int r;

    *why = NULL;
    if (flag != NULL && flag[0] == '/') {
        if (strlen(flag) > SIGIL_ENDPOINT_PATH_MAX) {
            *why = "the socket path is longer than a Unix socket address allows (107 bytes)";
            return SIGIL_ERR_RANGE;
        }
        strcpy(out, flag);
        return 0;
    }
    if (flag != NULL)
        uri = flag;
    else if (env != NULL)
        uri = env;
    if (uri == NULL) {
        strcpy(out, SIGIL_ENDPOINT_DEFAULT);
        return 0;
    }
    if ((r = sigil_endpoint_parse(uri, strlen(uri), &ep, why)) != 0)
        return r;
    if (!ep.is_unix) {
        *why = "tcp endpoints are not supported: the Sigil agent serves the Workload API on a "
               "Unix socket only (E-1); use unix:///path";
        return SIGIL_ERR_UNSUPPORTED;
    }
    strcpy(out, ep.path);
    return 0;
}
