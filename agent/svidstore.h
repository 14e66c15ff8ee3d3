/* The agent's state on disk, in data_dir (0700): agent.pem (its X.509-SVID chain and private
 * key in one 0600 file, so the pair is replaced in one atomic rename and can never be seen
 * half-written or mismatched) and bundle.json (the trust domain's SPIFFE bundle). */
#ifndef SIGIL_AGENT_SVIDSTORE_H
#define SIGIL_AGENT_SVIDSTORE_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sigil/bundle.h"

#define SIGIL_SVIDSTORE_AGENT_FILE "agent.pem"
#define SIGIL_SVIDSTORE_BUNDLE_FILE "bundle.json"

/* Creates dir (0700) if missing, and refuses one that is not a directory or that group or
 * others may access (it holds a private key). Returns 0 or SIGIL_ERR_IO/SIGIL_ERR_DENIED
 * with *why. */
int sigil_svidstore_prepare(const char *dir, const char **why);

/* Writes len bytes to dir/name atomically: a 0600 temporary file in dir, fsync, rename over
 * name, fsync of dir. The temporary file is wiped-by-unlink on failure. Returns 0 or
 * SIGIL_ERR_IO/SIGIL_ERR_RANGE with *why. */
int sigil_svidstore_write_file(const char *dir, const char *name, const void *p, size_t len,
                               const char **why);

/* Saves the agent SVID (chain leaf first) and key as dir/agent.pem. Returns 0 or SIGIL_ERR_*
 * with *why. */
int sigil_svidstore_save_agent(const char *dir, STACK_OF(X509) *chain, const EVP_PKEY *key,
                               const char **why);
/* Loads dir/agent.pem into *chain and *key (caller frees both). Returns 0, SIGIL_ERR_NOTFOUND
 * (no file: attest), or SIGIL_ERR_INVALID with *why for a file that is corrupt, not 0600,
 * holds a key not matching the leaf, or a leaf without a SPIFFE ID (the caller attests
 * again). */
int sigil_svidstore_load_agent(const char *dir, STACK_OF(X509) **chain, EVP_PKEY **key,
                               const char **why);

/* Saves bundle b as dir/bundle.json. Returns 0 or SIGIL_ERR_* with *why. */
int sigil_svidstore_save_bundle(const char *dir, const struct sigil_bundle *b, const char **why);
/* Loads dir/bundle.json as the bundle of td into *out (caller frees). Returns 0,
 * SIGIL_ERR_NOTFOUND or SIGIL_ERR_INVALID with *why. */
int sigil_svidstore_load_bundle(const char *dir, const char *td, struct sigil_bundle **out,
                                const char **why);

#endif
