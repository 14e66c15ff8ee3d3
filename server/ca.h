/* The trust root of an upstream server: the root CA, this instance's intermediate CA and the
 * JWT signing key, recorded in the database's CA journal with their keys in files (0600) under
 * one directory, and our own SPIFFE bundle, whose sequence bumps with every change. Root
 * rotation is prepare (published before use), activate, retire. Everything that changes the
 * journal runs in one transaction under an advisory lock, so replicas starting together make
 * one root. These calls block: run them at startup or on a database worker. */
#ifndef SIGIL_SERVER_CA_H
#define SIGIL_SERVER_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sigil/bundle.h"
#include "sigil/db.h"
#include "sigil/x509.h"

/* The advisory lock of every CA journal change (the migrator's is 7345001). */
#define SIGIL_CA_LOCK_KEY 7345002
/* Room for an error text of this module. */
#define SIGIL_CA_ERR_MAX 512
/* Bytes of randomness in a JWT key's kid (base64url: 22 characters). */
#define SIGIL_CA_KID_BYTES 16

/* What the CA is made with; strings are copied by sigil_ca_open. */
struct sigil_ca_params {
    const char *trust_domain; /* bare name */
    const char *key_dir;     /* absolute; made 0700 if missing, refused if group/others may enter */
    const char *instance_id; /* issued_to of this instance's intermediate; NULL for an
                              * operator's tool, which signs nothing and makes none */
    int64_t root_ttl_s;
    int64_t intermediate_ttl_s;
    int64_t jwt_key_ttl_s;
    int64_t refresh_hint_s;            /* spiffe_refresh_hint of our bundle */
    struct sigil_x509_subject subject; /* common_name NULL: "Sigil root CA <td>" */
};

/* The loaded trust root of one instance. */
struct sigil_ca;

/* What sigil_ca_open found or made, for the startup log. */
struct sigil_ca_report {
    bool made_root;         /* this call created the trust domain's first root */
    bool made_intermediate; /* this call minted a new intermediate for this instance */
    bool made_jwt_key;      /* this call created a JWT signing key */
    bool bumped_bundle;     /* this call wrote a new bundle sequence */
};

/* Opens the CA over c (blocking): records the trust domain (SIGIL_ERR_STATE if the database
 * holds another one), makes the root, JWT key and own bundle on first start, mints this
 * instance's intermediate when it has none under the active root or it is past half its life,
 * and reads every key back, checking it against the journal's public key (SIGIL_ERR_VERIFY).
 * Returns 0 and *out (free with sigil_ca_free), or a negative SIGIL_ERR_* with err set. */
int sigil_ca_open(struct sigil_db_conn *c, const struct sigil_ca_params *p, struct sigil_ca **out,
                  struct sigil_ca_report *rep, char *err, size_t errlen);
/* Frees ca and its keys; NULL is allowed. */
void sigil_ca_free(struct sigil_ca *ca);

/* Returns the active root certificate (owned by ca). */
X509 *sigil_ca_root(const struct sigil_ca *ca);
/* Returns this instance's intermediate certificate (owned by ca). */
X509 *sigil_ca_intermediate(const struct sigil_ca *ca);
/* Returns the intermediate's private key (owned by ca; never log or copy it out). */
EVP_PKEY *sigil_ca_intermediate_key(const struct sigil_ca *ca);
/* Returns the kid of the active JWT signing key (owned by ca). */
const char *sigil_ca_jwt_kid(const struct sigil_ca *ca);
/* Returns the active JWT signing key (owned by ca; never log or copy it out). */
EVP_PKEY *sigil_ca_jwt_key(const struct sigil_ca *ca);
/* Returns our own bundle as last read or written (owned by ca). */
const struct sigil_bundle *sigil_ca_bundle(const struct sigil_ca *ca);
/* Writes the hex serial of cert (at most 40 digits, NUL-terminated) into hex. */
void sigil_ca_serial_hex(X509 *cert, char hex[41]);

/* The file a CA journal key_ref names: a bare file name is resolved in key_dir; a relative
 * name with '/' or ".." (or an empty one) is refused with SIGIL_ERR_INVALID; an absolute path
 * (rows from earlier versions) is kept, or, if that file is missing and key_dir holds one of
 * the same name, replaced by it with *moved set. SIGIL_ERR_RANGE when out is too small. */
int sigil_ca_key_path(const char *key_dir, const char *key_ref, char *out, size_t outlen,
                      bool *moved);

/* For `ca show --config`: checks the key file of every journal row that is not retired (roots,
 * JWT keys, the unexpired intermediates of instance_id, or of all instances when NULL): it
 * resolves, exists, is a regular file of mode 0600 or narrower, reads, and matches the
 * journal's public key. One line per key goes to out (only the failed ones when failed_only);
 * *all_ok is false when a key that is
 * active or prepared fails. Nonzero (with err) only when the journal cannot be read. */
int sigil_ca_check_keys(struct sigil_db_conn *c, const char *key_dir, const char *instance_id,
                        bool failed_only, FILE *out, bool *all_ok, char *err, size_t errlen);

/* Rotation, step 1: makes a new root (and JWT key) in state "prepared" and publishes both in
 * the bundle before anything is signed with them (F-8). Returns 0, SIGIL_ERR_EXISTS if one is
 * prepared already, or another SIGIL_ERR_* with err set. */
int sigil_ca_prepare(struct sigil_ca *ca, struct sigil_db_conn *c, char *err, size_t errlen);
/* Rotation, step 2: the prepared root and JWT key become active, the previous ones "old" (still
 * in the bundle); this instance mints its intermediate under the new root. Returns 0,
 * SIGIL_ERR_NOTFOUND if nothing is prepared, or another SIGIL_ERR_* with err set. */
int sigil_ca_activate(struct sigil_ca *ca, struct sigil_db_conn *c, char *err, size_t errlen);
/* Rotation, step 3: retires every old root no unexpired intermediate of the journal chains to,
 * and every old JWT key replaced more than jwt_max_ttl_s ago, removing them from the bundle.
 * *retired (may be NULL) counts them. Returns 0 (also when none could go) or SIGIL_ERR_* with
 * err set. */
int sigil_ca_retire(struct sigil_ca *ca, struct sigil_db_conn *c, int64_t jwt_max_ttl_s,
                    size_t *retired, char *err, size_t errlen);

/* Names the actor (e.g. "uid:1000") the rotation steps below record in the audit log, in
 * their own transaction; NULL (the default) records nothing. Returns 0 or SIGIL_ERR_NOMEM. */
int sigil_ca_set_actor(struct sigil_ca *ca, const char *actor);

/* Reads the CA journal without changing it, in one snapshot: {"trust_domain",
 * "bundle_sequence", "authorities": [{"kind", "state", "serial" or "kid", "not_before",
 * "not_after", "activated_at", "retired_at", roots: "signs_unexpired_intermediates_until",
 * intermediates: "issued_to"}]} (roots and JWT keys in every state, unexpired intermediates).
 * Returns 0 and *out (caller json_decref()s), SIGIL_ERR_NOTFOUND on a database without a trust
 * root, or another SIGIL_ERR_* with err set. */
int sigil_ca_show(struct sigil_db_conn *c, json_t **out, char *err, size_t errlen);
/* Finds in a sigil_ca_show document the old root that keeps retire from removing it (an
 * unexpired intermediate chains to it). Returns true and sets *serial and *until (borrowed
 * from shown), or false if no old root is kept. */
bool sigil_ca_retire_blocker(const json_t *shown, const char **serial, const char **until);

#endif
