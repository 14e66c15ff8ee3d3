/* Fuzzes sigil-server's config loading end to end: lib/config's YAML reader, then the checks
 * across keys, host:port parsing and the policy list items ("segment=values",
 * "type:key=action", exempt prefixes). A load either succeeds with every required field set
 * or fails with a message that names the file; anything else aborts. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/server_config.h"
#include "sigil/err.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sigil_server_config cfg;
    struct sigil_config_error err;
    struct sigil_policy p;
    char host[64];
    uint16_t port;
    const char *why = NULL;
    char *s;
    int r;

    if (size > 64 * 1024)
        return 0;
    r = sigil_server_config_load_string("fuzz.yaml", (const char *)data, size, &cfg, &err);
    if (r == 0) {
        CHECK(cfg.trust_domain != NULL && cfg.admin_socket_path != NULL &&
              cfg.instance_id != NULL && cfg.ca_key_dir != NULL);
        CHECK(sigil_server_config_policy(&cfg, "fuzz.yaml", &p, &err) == 0);
        sigil_policy_free(&p);
        sigil_server_config_free(&cfg);
    } else {
        CHECK(r < 0 && strncmp(err.text, "fuzz.yaml", 9) == 0);
    }
    /* the host:port splitter on the raw bytes */
    if ((s = malloc(size + 1)) == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    r = sigil_server_config_split_hostport(s, host, &port, true, &why);
    if (r == 0)
        CHECK(strlen(host) >= 1 && strlen(host) <= 63);
    else
        CHECK(r == SIGIL_ERR_INVALID && why != NULL);
    free(s);
    return 0;
}
