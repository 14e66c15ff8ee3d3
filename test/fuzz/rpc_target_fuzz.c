/* Fuzzes the rpc client's host:port parser (sigil_rpc_hostport_parse, which also checks the
 * agent's server_address): what parses has a port 1-65535, a host that is an address of the
 * family it claims or a DNS name of allowed characters, and formats back ("host:port",
 * "[v6]:port") to a text that parses to the same; what fails says why and leaves no host. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/socket.h>

#include "sigil/err.h"
#include "sigil/rpc.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigil_rpc_hostport hp, again;
    unsigned char ip[16];
    char text[SIGIL_RPC_HOST_MAX + 16];
    const char *why = NULL;
    size_t n;
    int r;

    r = sigil_rpc_hostport_parse((const char *)data, size, &hp, &why);
    if (r != 0) {
        CHECK(r == SIGIL_ERR_INVALID);
        CHECK(why != NULL && why[0] != '\0');
        CHECK(hp.host[0] == '\0');
        return 0;
    }
    CHECK(hp.port >= 1);
    n = strlen(hp.host);
    CHECK(n > 0 && n <= SIGIL_RPC_HOST_MAX);
    if (hp.family == AF_INET6) {
        CHECK(inet_pton(AF_INET6, hp.host, ip) == 1);
        snprintf(text, sizeof text, "[%s]:%u", hp.host, (unsigned)hp.port);
    } else {
        if (hp.family == AF_INET)
            CHECK(inet_pton(AF_INET, hp.host, ip) == 1);
        else
            CHECK(hp.family == 0 && strspn(hp.host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS"
                                                    "TUVWXYZ0123456789-.") == n);
        snprintf(text, sizeof text, "%s:%u", hp.host, (unsigned)hp.port);
    }
    CHECK(sigil_rpc_hostport_parse(text, strlen(text), &again, &why) == 0);
    CHECK(strcmp(again.host, hp.host) == 0 && again.port == hp.port && again.family == hp.family);
    return 0;
}
