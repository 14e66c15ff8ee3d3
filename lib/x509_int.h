/* Internal to lib/x509*.c: what minting needs of an issuer, read in one place. */
#ifndef SIGIL_X509_INT_H
#define SIGIL_X509_INT_H

#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sigil/spiffeid.h"

/* Checks an issuer: a valid signing CA certificate whose key is issuer_key. Sets its trust
 * domain into td (empty if it has no SPIFFE ID) and its notAfter into *not_after.
 * Returns 0, or an error with *why set (X-3 for an ambiguous SPIFFE ID). */
int sigil_x509_issuer_read(X509 *issuer, EVP_PKEY *issuer_key, char td[SIGIL_TRUST_DOMAIN_MAX + 1],
                           time_t *not_after, const char **why);

#endif
