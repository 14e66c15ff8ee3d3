/* server_ca_tool: drives server/ca.c against a real database for test_server_ca.sh, as the
 * admin API and CLI will later. Opens the CA (making the root on a fresh database), then runs
 * one step and prints the result as "key value" lines:
 *
 *   server_ca_tool CONNINFO KEY_DIR TRUST_DOMAIN INSTANCE open|prepare|activate|retire [JWT_MAX_S]
 *
 * Prints root_serial, intermediate_serial, kid, sequence, x509 <n>, jwt <n> after the step
 * (retire also "retired <n>"). Exit 0 done, 1 failed (reason on stderr), 2 usage, 3 refused
 * (EXISTS for prepare, NOTFOUND for activate). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../server/ca.h"
#include "sigil/err.h"

static void
print_state(struct sigil_ca *ca)
{
    const struct sigil_bundle *b = sigil_ca_bundle(ca);
    char serial[41];
    uint64_t seq = 0;

    sigil_ca_serial_hex(sigil_ca_root(ca), serial);
    printf("root_serial %s\n", serial);
    sigil_ca_serial_hex(sigil_ca_intermediate(ca), serial);
    printf("intermediate_serial %s\n", serial);
    printf("kid %s\n", sigil_ca_jwt_kid(ca));
    sigil_bundle_sequence(b, &seq);
    printf("sequence %llu\n", (unsigned long long)seq);
    printf("x509 %zu\njwt %zu\n", sigil_bundle_x509_count(b), sigil_bundle_jwt_count(b));
    printf("intermediate_signed_by_root %s\n",
           X509_verify(sigil_ca_intermediate(ca), X509_get0_pubkey(sigil_ca_root(ca))) == 1 ? "yes"
                                                                                            : "no");
}

int
main(int argc, char **argv)
{
    struct sigil_ca_params p = {
        .root_ttl_s = 48 * 3600,
        .intermediate_ttl_s = 12 * 3600,
        .jwt_key_ttl_s = 24 * 3600,
        .refresh_hint_s = 60,
    };
    struct sigil_ca_report rep;
    struct sigil_db_error dberr;
    struct sigil_db_conn *c = NULL;
    struct sigil_ca *ca = NULL;
    char err[SIGIL_CA_ERR_MAX];
    const char *step;
    size_t retired = 0;
    int r, code = 1;

    if (argc < 6 || argc > 7) {
        fprintf(stderr, "usage: server_ca_tool CONNINFO KEY_DIR TRUST_DOMAIN INSTANCE "
                        "open|prepare|activate|retire [JWT_MAX_S]\n");
        return 2;
    }
    p.key_dir = argv[2];
    p.trust_domain = argv[3];
    p.instance_id = argv[4];
    step = argv[5];
    if (sigil_db_connect(argv[1], &c, &dberr) != 0) {
        fprintf(stderr, "connect: %s\n", dberr.message);
        return 1;
    }
    if ((r = sigil_ca_open(c, &p, &ca, &rep, err, sizeof err)) != 0) {
        fprintf(stderr, "open: %s: %s\n", sigil_strerror(r), err);
        goto out;
    }
    printf("made_root %d\nmade_intermediate %d\n", rep.made_root, rep.made_intermediate);
    if (strcmp(step, "open") == 0)
        r = 0;
    else if (strcmp(step, "prepare") == 0)
        r = sigil_ca_prepare(ca, c, err, sizeof err);
    else if (strcmp(step, "activate") == 0)
        r = sigil_ca_activate(ca, c, err, sizeof err);
    else if (strcmp(step, "retire") == 0)
        r = sigil_ca_retire(ca, c, argc == 7 ? atoll(argv[6]) : 3600, &retired, err, sizeof err);
    else {
        fprintf(stderr, "unknown step %s\n", step);
        code = 2;
        goto out;
    }
    if (r != 0) {
        fprintf(stderr, "%s: %s: %s\n", step, sigil_strerror(r), err);
        code = (r == SIGIL_ERR_EXISTS || r == SIGIL_ERR_NOTFOUND) ? 3 : 1;
        /* a refused step leaves the loaded CA as it was */
        if (sigil_ca_root(ca) == NULL || sigil_ca_intermediate(ca) == NULL)
            code = 1;
        else
            print_state(ca);
        goto out;
    }
    if (strcmp(step, "retire") == 0)
        printf("retired %zu\n", retired);
    print_state(ca);
    code = 0;
out:
    sigil_ca_free(ca);
    sigil_db_disconnect(c);
    return code;
}
