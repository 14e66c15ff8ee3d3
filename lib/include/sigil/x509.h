/* X.509-SVIDs over OpenSSL 3: P-256 keys and key files, CSRs, minting root CAs,
 * intermediates and leaf SVIDs, parsing PEM/DER chains and key files, the SPIFFE leaf and
 * signing-certificate checks (rules) and RFC 5280 chain verification. */
#ifndef SIGIL_X509_H
#define SIGIL_X509_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "sigil/buf.h"
#include "sigil/spiffeid.h"

#define SIGIL_X509_INPUT_MAX (1024 * 1024) /* bytes of PEM/DER/key file we read at most */
#define SIGIL_X509_CSR_MAX (64 * 1024)     /* bytes of a CSR, PEM or DER */
#define SIGIL_X509_CHAIN_MAX 16            /* certificates in one chain or bundle */
#define SIGIL_X509_DNS_MAX 32              /* DNS SANs on one leaf */

/* ---- keys ---- */

/* Generates a fresh ECDSA P-256 key into *out (caller frees with EVP_PKEY_free).
 * Returns 0 or SIGIL_ERR_CRYPTO. */
int sigil_x509_key_generate(EVP_PKEY **out);

/* Checks that key is one we accept for an SVID or a CA: EC P-256/P-384/P-521 or RSA of at
 * least 2048 bits. Returns 0 or SIGIL_ERR_UNSUPPORTED with *why set. */
int sigil_x509_key_check(const EVP_PKEY *key, const char **why);

/* Writes key as unencrypted PKCS#8 PEM to path, atomically: a new 0600 file next to it
 * (mkstemp, so never through a symlink), fsync, then rename over path (a symlink at path
 * is replaced, not followed). Returns 0, SIGIL_ERR_IO or SIGIL_ERR_CRYPTO. */
int sigil_x509_key_write_file(const char *path, const EVP_PKEY *key);

/* Reads a PKCS#8 PEM private key file (a regular file of at most SIGIL_X509_INPUT_MAX
 * bytes; a symlink is followed, as mounted secrets are symlinks) into *out (caller frees).
 * The bytes read are wiped. Returns 0 or SIGIL_ERR_IO /
 * SIGIL_ERR_RANGE / SIGIL_ERR_INVALID / SIGIL_ERR_UNSUPPORTED with *why set. */
int sigil_x509_key_read_file(const char *path, EVP_PKEY **out, const char **why);

/* Parses exactly one unencrypted PKCS#8 "PRIVATE KEY" PEM block (EC or RSA, see
 * sigil_x509_key_check) into *out (caller frees). Returns 0 or an error with *why set. */
int sigil_x509_key_parse_pem(const uint8_t *p, size_t n, EVP_PKEY **out, const char **why);

/* Parses an unencrypted PKCS#8 PrivateKeyInfo in DER (all n bytes) into *out (caller
 * frees). Returns 0 or an error with *why set. */
int sigil_x509_key_parse_der(const uint8_t *p, size_t n, EVP_PKEY **out, const char **why);

/* Appends key as unencrypted PKCS#8 DER (the Workload API's x509_svid_key) to out, which
 * must be empty so no copy of the secret is left behind by a realloc. The caller wipes it
 * with sigil_buf_freezero. Returns 0, SIGIL_ERR_STATE, SIGIL_ERR_NOMEM or SIGIL_ERR_CRYPTO. */
int sigil_x509_key_to_pkcs8_der(const EVP_PKEY *key, struct sigil_buf *out);

/* Appends key as unencrypted PKCS#8 PEM to out (must be empty; caller wipes it with
 * sigil_buf_freezero). Returns 0 or an error as sigil_x509_key_to_pkcs8_der. */
int sigil_x509_key_to_pkcs8_pem(const EVP_PKEY *key, struct sigil_buf *out);

/* Appends the public half of key as DER SubjectPublicKeyInfo to out.
 * Returns 0, SIGIL_ERR_NOMEM or SIGIL_ERR_CRYPTO. */
int sigil_x509_pubkey_to_der(const EVP_PKEY *key, struct sigil_buf *out);

/* True if key (private or public) has the same public key as cert. */
bool sigil_x509_key_matches_cert(const EVP_PKEY *key, const X509 *cert);

/* ---- CSRs ---- */

/* Creates a CSR signed by key (SHA-256), with an empty subject and, if id is not NULL, a
 * requested critical URI SAN holding id. Appends the DER to out. Returns 0 or an error. */
int sigil_x509_csr_create(EVP_PKEY *key, const struct sigil_spiffeid *id, struct sigil_buf *out);

/* Parses a CSR, DER if it starts with a SEQUENCE byte (0x30) else one PEM
 * "CERTIFICATE REQUEST" block, of at most SIGIL_X509_CSR_MAX bytes, and verifies its
 * self-signature. *out is the CSR (caller frees with X509_REQ_free). Returns 0,
 * SIGIL_ERR_INVALID / SIGIL_ERR_RANGE / SIGIL_ERR_UNSUPPORTED or SIGIL_ERR_VERIFY + *why. */
int sigil_x509_csr_parse(const uint8_t *p, size_t n, X509_REQ **out, const char **why);

/* Sets *out to the CSR's public key (caller frees). Returns 0 or SIGIL_ERR_INVALID. */
int sigil_x509_csr_pubkey(X509_REQ *req, EVP_PKEY **out);

/* Extracts the SPIFFE ID the CSR requests (its one URI SAN). Returns 0,
 * SIGIL_ERR_NOTFOUND if it requests none, or SIGIL_ERR_INVALID with *why set. */
int sigil_x509_csr_spiffeid(X509_REQ *req, struct sigil_spiffeid *out, const char **why);

/* ---- minting ---- */

/* The subject of a minted certificate: each part NULL to leave it out. */
struct sigil_x509_subject {
    const char *country;      /* C, two letters */
    const char *organization; /* O */
    const char *common_name;  /* CN */
};

/* What a CA certificate (root or intermediate) says. */
struct sigil_x509_ca_params {
    const char *trust_domain; /* bare name, "example.org"; the URI SAN is spiffe://<td> */
    struct sigil_x509_subject subject;
    time_t not_before, not_after;
    int path_len; /* pathLenConstraint, or -1 for none */
};

/* What a leaf X.509-SVID says. */
struct sigil_x509_leaf_params {
    const struct sigil_spiffeid *id;   /* the one URI SAN; must have a non-root path */
    const char *const *dns_names;      /* optional DNS SANs (letters, digits, '-', '.', a */
    size_t n_dns;                      /* leading "*." allowed), at most SIGIL_X509_DNS_MAX */
    struct sigil_x509_subject subject; /* all NULL: empty subject, SAN marked critical */
    time_t not_before, not_after;
};

/* Mints a self-signed root CA for key: cA=true (critical), keyUsage critical keyCertSign +
 * cRLSign, URI SAN spiffe://<td> (X-3), subject/authority key identifiers, a random
 * positive 16-byte serial, SHA-256 signature. *out is the certificate (caller frees).
 * Returns 0 or SIGIL_ERR_INVALID / SIGIL_ERR_UNSUPPORTED / SIGIL_ERR_CRYPTO + *why. */
int sigil_x509_mint_root(const struct sigil_x509_ca_params *params, EVP_PKEY *key, X509 **out,
                         const char **why);

/* Mints an intermediate CA for the public key pub, signed by parent/parent_key: as a root,
 * plus URI name constraints permitting only host <td> (so only spiffe://<td>/... leaves
 * validate below it, X-7; a trust domain starting with '.' is refused since '.' means
 * "subdomains" there). notAfter is clamped to the parent's notAfter; if that leaves no
 * validity the call fails with SIGIL_ERR_EXPIRED. The parent must pass
 * sigil_x509_svid_check_ca and, if it has a SPIFFE ID, be of the same trust domain.
 * *out is the certificate (caller frees). Returns 0 or an error + *why. */
int sigil_x509_mint_intermediate(const struct sigil_x509_ca_params *params, EVP_PKEY *pub,
                                 X509 *parent, EVP_PKEY *parent_key, X509 **out, const char **why);

/* Mints a leaf X.509-SVID for the public key pub, signed by issuer/issuer_key: cA=false
 * (critical), keyUsage critical digitalSignature only (keyEncipherment and keyAgreement
 * are allowed by X-5 but ECDSA keys have no use for them), EKU serverAuth + clientAuth,
 * exactly one URI SAN (params->id) and the DNS SANs, key identifiers, random serial,
 * SHA-256. notAfter is clamped to the issuer's notAfter. Refuses (SIGIL_ERR_INVALID) an ID
 * without a path, an ID outside the issuer's trust domain, and bad DNS names.
 * *out is the certificate (caller frees). Returns 0 or an error + *why. */
int sigil_x509_mint_leaf(const struct sigil_x509_leaf_params *params, EVP_PKEY *pub, X509 *issuer,
                         EVP_PKEY *issuer_key, X509 **out, const char **why);

/* Mints a leaf for the key of a parsed (so self-signature verified) CSR. If the CSR requests
 * a SPIFFE ID it must equal params->id (else SIGIL_ERR_DENIED); the CSR's subject and other
 * requested extensions are ignored. Otherwise as sigil_x509_mint_leaf. */
int sigil_x509_mint_leaf_csr(const struct sigil_x509_leaf_params *params, X509_REQ *csr,
                             X509 *issuer, EVP_PKEY *issuer_key, X509 **out, const char **why);

/* True if s is a DNS SAN we write: LDH labels of 1..63 bytes, at most 253 in all, an
 * optional leading "*." label. */
bool sigil_x509_dns_name_ok(const char *s);

/* ---- the prepared minter (the node API's hot path) ---- */

/* The parts of a DER CSR with a P-256 key signed with ECDSA/SHA-256, read by a strict DER
 * reader (pointers into the input). */
struct sigil_x509_csr_frame {
    const uint8_t *tbs; /* certificationRequestInfo, the signed bytes */
    size_t tbs_len;
    const uint8_t *subject; /* the subject Name element */
    size_t subject_len;
    const uint8_t *point; /* the uncompressed point, 65 bytes */
    const uint8_t *attrs; /* the attributes' contents (may be empty) */
    size_t attrs_len;
    const uint8_t *sig; /* the ECDSA-Sig-Value */
    size_t sig_len;
};

/* Splits a CSR into *out. Checks only the frame (no signature, no Name or attribute
 * contents). Returns 0, or SIGIL_ERR_UNSUPPORTED for anything else (PEM, another key or
 * algorithm, BER, trailing bytes): sigil_x509_csr_parse decides those. */
int sigil_x509_csr_frame(const uint8_t *p, size_t n, struct sigil_x509_csr_frame *out);
/* The SPIFFE ID a framed CSR requests, deciding as sigil_x509_csr_spiffeid does on the parsed
 * CSR: 0, SIGIL_ERR_NOTFOUND, SIGIL_ERR_INVALID + *why, or SIGIL_ERR_UNSUPPORTED if its
 * subject or attributes do not parse (the whole CSR would not either). */
int sigil_x509_csr_frame_spiffeid(const struct sigil_x509_csr_frame *f, struct sigil_spiffeid *out,
                                  const char **why);

/* A minter bound to one issuer: read-only once made, so threads may share it. */
struct sigil_x509_minter;

/* What sigil_x509_minter_leaf_csr made besides the DER. */
struct sigil_x509_minted {
    char serial[41];  /* lowercase hex, as sigil_ca_serial_hex */
    time_t not_after; /* after clamping to the issuer's */
    bool fast;        /* made on the fast path (for tests and metrics) */
};

/* Makes a minter for issuer/issuer_key (both up-referenced), checking them once as
 * sigil_x509_mint_leaf does on every call. Returns 0 and *out (free with
 * sigil_x509_minter_free), or SIGIL_ERR_INVALID / SIGIL_ERR_UNSUPPORTED / SIGIL_ERR_NOMEM /
 * SIGIL_ERR_CRYPTO + *why. */
int sigil_x509_minter_new(X509 *issuer, EVP_PKEY *issuer_key, struct sigil_x509_minter **out,
                          const char **why);
/* Frees m; NULL is allowed. */
void sigil_x509_minter_free(struct sigil_x509_minter *m);
/* The issuer certificate m signs with (owned by m). */
X509 *sigil_x509_minter_issuer(const struct sigil_x509_minter *m);
/* Parses and verifies a CSR (DER or PEM) and appends the DER of a leaf for its key to out,
 * exactly as sigil_x509_csr_parse + sigil_x509_mint_leaf_csr would (same certificate content,
 * same errors): a DER P-256 CSR with an empty-subject leaf is written directly as DER without
 * OpenSSL's per-key decoder and encoder setup; anything else takes that general path. Safe to
 * call from several threads at once on one m. Returns 0 and *info, or an error + *why. */
int sigil_x509_minter_leaf_csr(const struct sigil_x509_minter *m,
                               const struct sigil_x509_leaf_params *params, const uint8_t *csr,
                               size_t csr_len, struct sigil_buf *out,
                               struct sigil_x509_minted *info, const char **why);
/* Appends the issuer certificate's DER to out (the rest of a leaf's chain). Returns 0 or
 * SIGIL_ERR_NOMEM. */
int sigil_x509_minter_chain_tail(const struct sigil_x509_minter *m, struct sigil_buf *out);

/* ---- parsing ---- */

/* Parses a sequence of PEM "CERTIFICATE" blocks (text outside blocks is skipped, as PEM
 * allows; any other block type, a PEM header or bad base64/DER is an error) into *out
 * (caller frees with sk_X509_pop_free(.., X509_free)). No certificate, more than
 * SIGIL_X509_CHAIN_MAX, or more than SIGIL_X509_INPUT_MAX bytes is an error.
 * Returns 0 or SIGIL_ERR_INVALID / SIGIL_ERR_RANGE / SIGIL_ERR_NOMEM with *why set. */
int sigil_x509_chain_parse_pem(const uint8_t *p, size_t n, STACK_OF(X509) **out, const char **why);

/* Parses concatenated DER certificates (the Workload API's x509_svid and bundle fields)
 * into *out (caller frees); same caps and errors as sigil_x509_chain_parse_pem. */
int sigil_x509_chain_parse_der(const uint8_t *p, size_t n, STACK_OF(X509) **out, const char **why);

/* Parses PEM holding one or more "CERTIFICATE" blocks and exactly one PKCS#8
 * "PRIVATE KEY" block, in any order, into *certs (in file order) and *key (both caller
 * frees). Decoded key bytes are wiped. Returns 0 or an error with *why set. */
int sigil_x509_pem_parse_certs_and_key(const uint8_t *p, size_t n, STACK_OF(X509) **certs,
                                       EVP_PKEY **key, const char **why);

/* Reads a regular file of at most SIGIL_X509_INPUT_MAX bytes into out (appended). For
 * certificate and bundle files; keys go through sigil_x509_key_read_file. Returns 0,
 * SIGIL_ERR_IO, SIGIL_ERR_RANGE or SIGIL_ERR_NOMEM with *why set. */
int sigil_x509_file_read(const char *path, struct sigil_buf *out, const char **why);

/* ---- encoding ---- */

/* Appends cert as DER to out. Returns 0, SIGIL_ERR_NOMEM or SIGIL_ERR_CRYPTO. */
int sigil_x509_cert_to_der(X509 *cert, struct sigil_buf *out);

/* Appends cert as one PEM "CERTIFICATE" block to out. Returns 0 or an error. */
int sigil_x509_cert_to_pem(X509 *cert, struct sigil_buf *out);

/* Appends every certificate of chain as DER, back to back (leaf first if chain is).
 * Returns 0 or an error. */
int sigil_x509_chain_to_der(STACK_OF(X509) *chain, struct sigil_buf *out);

/* Appends every certificate of chain as PEM blocks. Returns 0 or an error. */
int sigil_x509_chain_to_pem(STACK_OF(X509) *chain, struct sigil_buf *out);

/* ---- SVID checks and verification ---- */

/* Extracts the SPIFFE ID of cert: its URI SANs must be exactly one valid SPIFFE ID.
 * Returns 0, SIGIL_ERR_NOTFOUND (no URI SAN) or SIGIL_ERR_INVALID with *why set. */
int sigil_x509_cert_spiffeid(X509 *cert, struct sigil_spiffeid *out, const char **why);

/* Sets *out to cert's notAfter as a time_t. Returns 0 or SIGIL_ERR_INVALID. */
int sigil_x509_cert_not_after(const X509 *cert, time_t *out);

/* Sets *out to cert's notBefore as a time_t. Returns 0 or SIGIL_ERR_INVALID. */
int sigil_x509_cert_not_before(const X509 *cert, time_t *out);

/* Checks cert as a leaf X.509-SVID (no signature or time check): v3 with well-formed,
 * non-duplicated extensions and no unknown critical one; exactly one URI SAN, a SPIFFE ID
 * with a non-root path; a critical URI SAN if the subject is empty;
 * cA=false; keyUsage present and critical with digitalSignature and without
 * keyCertSign/cRLSign; if extendedKeyUsage is present, both serverAuth and
 * clientAuth (X-6; go-spiffe skips this, we don't). Returns 0 or SIGIL_ERR_INVALID + *why. */
int sigil_x509_svid_check_leaf(X509 *cert, const char **why);

/* Checks cert as a signing certificate: v3, well-formed extensions, basicConstraints
 * cA=true, keyUsage present and critical with keyCertSign, and its SPIFFE
 * URI SAN, if any, a single path-less SPIFFE ID (X-3; other URI SANs are ignored).
 * Returns 0 or SIGIL_ERR_INVALID + *why. */
int sigil_x509_svid_check_ca(X509 *cert, const char **why);

/* Verifies an X.509-SVID chain (leaf first, then intermediates, at most
 * SIGIL_X509_CHAIN_MAX) against roots, the X.509 authorities (at most 4 *
 * SIGIL_X509_CHAIN_MAX) of the bundle of the leaf's own trust domain (the caller picks it
 * from the leaf's ID, X-8, W-11; sigil_x509_cert_spiffeid reads it): leaf checks, CA
 * checks on every intermediate, then RFC 5280 path validation by OpenSSL with
 * X509_V_FLAG_X509_STRICT, security level 2 and the time pinned to `at` (0 = now). Every
 * bundle certificate is a trust anchor even if not self-signed (X509_V_FLAG_PARTIAL_CHAIN:
 * a chain must end on a bundle certificate, never on one it brought itself). On success
 * *id_out (if not NULL) is the leaf's SPIFFE ID. Returns 0, SIGIL_ERR_INVALID (malformed
 * or a failed SVID check), SIGIL_ERR_EXPIRED (outside a validity period), SIGIL_ERR_VERIFY
 * (no path to the bundle, bad signature, name constraints) or SIGIL_ERR_RANGE, with *why.
 * An intermediate's trust domain is not compared with the leaf's (X-3 says SHOULD); the
 * name constraints our intermediates carry enforce it during path validation. */
int sigil_x509_svid_verify(STACK_OF(X509) *chain, STACK_OF(X509) *roots, time_t at,
                           struct sigil_spiffeid *id_out, const char **why);

#endif
