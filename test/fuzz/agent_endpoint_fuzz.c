/* Fuzzes SPIFFE_ENDPOINT_SOCKET parsing (E-4): a unix result is an absolute path of printable
 * ASCII that fits a socket address and appears verbatim in the input; a tcp result has a port in
 * range and a host that is a valid IP literal; every refusal says why. Any mismatch aborts. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "sigil/err.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigil_endpoint ep;
    const char *why = NULL;
    unsigned char addr[16];
    size_t n, i;
    int r;

    r = sigil_endpoint_parse((const char *)data, size, &ep, &why);
    if (r != 0) {
        CHECK(r == SIGIL_ERR_INVALID || r == SIGIL_ERR_RANGE);
        CHECK(why != NULL);
        return 0;
    }
    if (ep.is_unix) {
        n = strlen(ep.path);
        CHECK(n > 0 && n <= SIGIL_ENDPOINT_PATH_MAX && ep.path[0] == '/');
        for (i = 0; i < n; i++)
            CHECK(ep.path[i] > 0x20 && ep.path[i] < 0x7f && ep.path[i] != '?' &&
                  ep.path[i] != '#' && ep.path[i] != '%');
        CHECK(size >= 5 + n && memcmp(data + size - n, ep.path, n) == 0);
    } else {
        CHECK(ep.port >= 1 && ep.port <= 65535);
        CHECK(inet_pton(AF_INET, ep.host, addr) == 1 || inet_pton(AF_INET6, ep.host, addr) == 1);
    }
    return 0;
}
