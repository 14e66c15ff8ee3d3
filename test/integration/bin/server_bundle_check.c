/* server_bundle_check TRUST_DOMAIN < bundle.json: decodes a SPIFFE bundle with our decoder
 * (sigil/bundle.h) and prints what it holds, one "key value" line each, for the server's
 * integration tests to compare: x509 <n>, jwt <n>, sequence <n|none>, refresh_hint <n|none>,
 * then "jwt_kid <kid>" per JWT authority. Exit 0 decoded, 1 refused (reason on stderr),
 * 2 usage. */
#include <stdio.h>
#include <stdlib.h>

#include "sigil/bundle.h"
#include "sigil/err.h"

int
main(int argc, char **argv)
{
    static char json[SIGIL_BUNDLE_JSON_MAX + 1];
    struct sigil_bundle *b = NULL;
    const char *why = "";
    uint64_t seq;
    int64_t hint;
    size_t n;
    int r;

    if (argc != 2) {
        fprintf(stderr, "usage: server_bundle_check TRUST_DOMAIN < bundle.json\n");
        return 2;
    }
    n = fread(json, 1, sizeof json, stdin);
    if (n > SIGIL_BUNDLE_JSON_MAX) {
        fprintf(stderr, "bundle over %d bytes\n", SIGIL_BUNDLE_JSON_MAX);
        return 1;
    }
    if ((r = sigil_bundle_decode(argv[1], json, n, &b, &why)) != 0) {
        fprintf(stderr, "refused: %s: %s\n", sigil_strerror(r), why);
        return 1;
    }
    printf("x509 %zu\njwt %zu\n", sigil_bundle_x509_count(b), sigil_bundle_jwt_count(b));
    if (sigil_bundle_sequence(b, &seq))
        printf("sequence %llu\n", (unsigned long long)seq);
    else
        printf("sequence none\n");
    if (sigil_bundle_refresh_hint(b, &hint))
        printf("refresh_hint %lld\n", (long long)hint);
    else
        printf("refresh_hint none\n");
    for (size_t i = 0; i < sigil_bundle_jwt_count(b); i++)
        printf("jwt_kid %s\n", sigil_bundle_jwt_kid(b, i));
    sigil_bundle_free(b);
    return 0;
}
