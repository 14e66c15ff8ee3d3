/* The upstream's trust root over the CA journal (ca_journal), the own bundle row (bundles) and
 * key files. One function, ensure_all, brings the database to "a root, a JWT key, a bundle that
 * lists them, an intermediate for this instance" and loads it; opening, activating and retiring
 * all end with it, in the same transaction under SIGIL_CA_LOCK_KEY. A transaction that fails
 * after writing a key file leaves that file behind unreferenced: harmless, never reused. */
#include "ca.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include <jansson.h>

#include "sigil/encoding.h"
#include "sigil/err.h"
#include "sigil/log.h"
#include "sigil/spiffeid.h"

#define COMPONENT "ca"
#define STR_(x) #x
#define STR(x) STR_(x)
#define LOCK_SQL "SELECT pg_advisory_xact_lock(" STR(SIGIL_CA_LOCK_KEY) ")"
#define TX_ATTEMPTS 5
/* Certificates start a minute early: clocks of the parties differ a little. */
#define BACKDATE_S 60
#define PATH_MAX_CA 4096

struct sigil_ca {
    char td[SIGIL_TRUST_DOMAIN_MAX + 1];
    char *key_dir, *instance_id, *country, *organization, *common_name;
    char *actor; /* set: rotation steps write an audit row naming it */
    int64_t root_ttl_s, intermediate_ttl_s, jwt_key_ttl_s, refresh_hint_s;

    X509 *root;
    EVP_PKEY *root_key;
    X509 *inter;
    EVP_PKEY *inter_key;
    char kid[SIGIL_BUNDLE_KID_MAX + 1];
    EVP_PKEY *jwt_key;
    struct sigil_bundle *bundle;
};

/* One call's state: the connection, where errors go, what was done. */
struct ctx {
    struct sigil_ca *ca;
    struct sigil_db_conn *c;
    struct sigil_ca_report rep;
    char *err;
    size_t errlen;
    int64_t jwt_max_ttl_s; /* retire only */
    size_t retired;        /* retire only */
};

static int set_err(struct ctx *x, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
set_err(struct ctx *x, int code, const char *fmt, ...)
{
    va_list ap;

    if (x->err != NULL && x->errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(x->err, x->errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int
q(struct ctx *x, const char *what, const char *sql, const struct sigil_db_param *p, size_t n,
  struct sigil_db_res **res)
{
    int r = sigil_db_exec(x->c, sql, p, n, res);

    if (r != 0)
        set_err(x, r, "CA journal: %s: %s", what, sigil_db_conn_error(x->c)->message);
    return r;
}

static void
unload(struct sigil_ca *ca)
{
    X509_free(ca->root);
    EVP_PKEY_free(ca->root_key);
    X509_free(ca->inter);
    EVP_PKEY_free(ca->inter_key);
    EVP_PKEY_free(ca->jwt_key);
    sigil_bundle_free(ca->bundle);
    ca->root = ca->inter = NULL;
    ca->root_key = ca->inter_key = ca->jwt_key = NULL;
    ca->bundle = NULL;
    ca->kid[0] = '\0';
}

void
sigil_ca_serial_hex(X509 *cert, char hex[41])
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    char *s = bn != NULL ? BN_bn2hex(bn) : NULL;

    snprintf(hex, 41, "%s", s != NULL ? s : "?");
    for (char *p = hex; *p != '\0'; p++) {
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    }
    OPENSSL_free(s);
    BN_free(bn);
}

/* The key directory must exist (made here if missing) and be ours alone: keys are 0600 files
 * in it, and a directory others may write to would let them swap a key file. */
static int
check_key_dir(struct ctx *x)
{
    struct stat st;

    if (mkdir(x->ca->key_dir, 0700) != 0 && errno != EEXIST)
        return set_err(x, SIGIL_ERR_IO, "ca.key_dir %s: cannot create: %s", x->ca->key_dir,
                       strerror(errno));
    if (stat(x->ca->key_dir, &st) != 0)
        return set_err(x, SIGIL_ERR_IO, "ca.key_dir %s: %s", x->ca->key_dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return set_err(x, SIGIL_ERR_IO, "ca.key_dir %s: not a directory", x->ca->key_dir);
    if ((st.st_mode & 077) != 0 || st.st_uid != geteuid())
        return set_err(x, SIGIL_ERR_DENIED,
                       "ca.key_dir %s: must be owned by this user with mode 0700 (it is %04o; "
                       "chmod 700 it)",
                       x->ca->key_dir, (unsigned)(st.st_mode & 07777));
    return 0;
}

static int
pub_der(EVP_PKEY *key, struct sigil_buf *out)
{
    return sigil_x509_pubkey_to_der(key, out);
}

/* Where a journal key_ref points. A bare file name (what this version records) is a file in
 * key_dir; a name with '/' or "..", or an empty one, is refused, so no journal row reaches
 * outside key_dir. An absolute path (written by earlier versions) is used as is, unless that
 * file is gone and key_dir holds one of the same name: then *moved is set and that one is used
 * (the key directory was moved or restored elsewhere). */
int
sigil_ca_key_path(const char *key_dir, const char *key_ref, char *out, size_t outlen, bool *moved)
{
    const char *base;

    *moved = false;
    if (key_dir == NULL || key_ref == NULL || key_ref[0] == '\0')
        return SIGIL_ERR_INVALID;
    if (key_ref[0] == '/') {
        if ((size_t)snprintf(out, outlen, "%s", key_ref) >= outlen)
            return SIGIL_ERR_RANGE;
        if (access(key_ref, F_OK) == 0 || errno != ENOENT)
            return 0;
        base = strrchr(key_ref, '/') + 1;
        if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
            return 0;
        if ((size_t)snprintf(out, outlen, "%s/%s", key_dir, base) >= outlen ||
            access(out, F_OK) != 0) {
            snprintf(out, outlen, "%s", key_ref);
            return 0;
        }
        *moved = true;
        return 0;
    }
    if (strchr(key_ref, '/') != NULL || strstr(key_ref, "..") != NULL || strcmp(key_ref, ".") == 0)
        return SIGIL_ERR_INVALID;
    if ((size_t)snprintf(out, outlen, "%s/%s", key_dir, key_ref) >= outlen)
        return SIGIL_ERR_RANGE;
    return 0;
}

/* Said once a process: the journal still names keys by an old absolute path. */
static atomic_flag said_moved = ATOMIC_FLAG_INIT;

/* Reads the key a journal row names (key_ref) and checks it against the public key the
 * journal recorded. */
static int
read_key(struct ctx *x, const char *key_ref, const uint8_t *want, size_t wantlen, EVP_PKEY **out)
{
    struct sigil_buf have = {0};
    EVP_PKEY *key = NULL;
    const char *why = NULL;
    char path[PATH_MAX_CA];
    bool moved;
    int r;

    if ((r = sigil_ca_key_path(x->ca->key_dir, key_ref, path, sizeof path, &moved)) != 0)
        return set_err(x, r,
                       "CA journal: key_ref \"%s\" is refused (a bare file name in ca.key_dir "
                       "or an absolute path is allowed)",
                       key_ref ? key_ref : "");
    if (moved && !atomic_flag_test_and_set(&said_moved))
        sigil_log(SIGIL_LOG_WARN, COMPONENT,
                  "the CA journal holds an old absolute key path (%s); using %s in ca.key_dir",
                  key_ref, path);
    if ((r = sigil_x509_key_read_file(path, &key, &why)) != 0) {
        set_err(x, r, "CA key %s: %s", path, why ? why : sigil_strerror(r));
        goto out;
    }
    if ((r = pub_der(key, &have)) != 0) {
        set_err(x, r, "CA key %s: %s", path, sigil_strerror(r));
        goto out;
    }
    if (have.len != wantlen || memcmp(have.data, want, wantlen) != 0) {
        r = set_err(x, SIGIL_ERR_VERIFY,
                    "CA key %s does not match the public key in the CA journal (restore the "
                    "right file; never make a new key for a recorded CA)",
                    path);
        goto out;
    }
    *out = key;
    key = NULL;
out:
    EVP_PKEY_free(key);
    sigil_buf_free(&have);
    return r;
}

static int
der_to_cert(const uint8_t *p, size_t n, X509 **out)
{
    const unsigned char *q = p;

    *out = d2i_X509(NULL, &q, (long)n);
    if (*out == NULL || q != p + n) {
        X509_free(*out);
        *out = NULL;
        ERR_clear_error();
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

static int
der_to_pub(const uint8_t *p, size_t n, EVP_PKEY **out)
{
    const unsigned char *q = p;

    *out = d2i_PUBKEY(NULL, &q, (long)n);
    if (*out == NULL || q != p + n) {
        EVP_PKEY_free(*out);
        *out = NULL;
        ERR_clear_error();
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

/* Writes key to <key_dir>/<prefix>-<name>.key (0600, atomically) and puts the file's name,
 * which the journal records as key_ref (relative to ca.key_dir), into ref. */
static int
write_key(struct ctx *x, EVP_PKEY *key, const char *prefix, const char *name, char ref[PATH_MAX_CA])
{
    char path[PATH_MAX_CA];
    int r;

    if ((size_t)snprintf(ref, PATH_MAX_CA, "%s-%s.key", prefix, name) >= PATH_MAX_CA ||
        strchr(ref, '/') != NULL ||
        (size_t)snprintf(path, PATH_MAX_CA, "%s/%s", x->ca->key_dir, ref) >= PATH_MAX_CA)
        return set_err(x, SIGIL_ERR_RANGE, "ca.key_dir: path too long");
    if ((r = sigil_x509_key_write_file(path, key)) != 0)
        return set_err(x, r, "CA key %s: cannot write: %s", path, sigil_strerror(r));
    return 0;
}

/* Inserts a journal row; cert may be NULL (JWT key), kid NULL (certificates). */
static int
insert_row(struct ctx *x, const char *kind, const char *state, const char *issued_to,
           const char *kid, X509 *cert, EVP_PKEY *key, const char *key_ref, time_t nb, time_t na)
{
    struct sigil_buf cder = {0}, pder = {0};
    char snb[32], sna[32];
    int r;

    snprintf(snb, sizeof snb, "%lld", (long long)nb);
    snprintf(sna, sizeof sna, "%lld", (long long)na);
    if ((cert != NULL && (r = sigil_x509_cert_to_der(cert, &cder)) != 0) ||
        (r = pub_der(key, &pder)) != 0) {
        set_err(x, r, "CA journal: encoding %s: %s", kind, sigil_strerror(r));
        goto out;
    }
    {
        const struct sigil_db_param p[] = {
            SIGIL_DB_TEXT(kind),
            SIGIL_DB_TEXT(state),
            issued_to ? SIGIL_DB_TEXT(issued_to) : SIGIL_DB_NULL,
            kid ? SIGIL_DB_TEXT(kid) : SIGIL_DB_NULL,
            cert ? SIGIL_DB_BINARY(cder.data, cder.len) : SIGIL_DB_NULL,
            SIGIL_DB_BINARY(pder.data, pder.len),
            SIGIL_DB_TEXT(key_ref),
            SIGIL_DB_TEXT(snb),
            SIGIL_DB_TEXT(sna),
        };
        r = q(x, "recording a CA",
              "INSERT INTO ca_journal (kind, state, issued_to, kid, cert_der, public_key_der,"
              " key_ref, not_before, not_after, activated_at) VALUES ($1, $2, $3, $4, $5::bytea,"
              " $6::bytea, $7, to_timestamp($8::double precision),"
              " to_timestamp($9::double precision),"
              " CASE WHEN $2 = 'active' THEN now() END)",
              p, sizeof p / sizeof p[0], NULL);
    }
out:
    sigil_buf_free(&cder);
    sigil_buf_free(&pder);
    return r;
}

/* Records the trust domain on first start; refuses a database that belongs to another one. */
static int
trust_domain(struct ctx *x)
{
    struct sigil_db_res *res = NULL;
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(x->ca->td)};
    const char *have;
    int r;

    if ((r = q(x, "reading the trust domain", "SELECT name FROM trust_domain", NULL, 0, &res)) != 0)
        return r;
    if (sigil_db_res_rows(res) == 0) {
        sigil_db_res_free(res);
        return q(x, "recording the trust domain", "INSERT INTO trust_domain (name) VALUES ($1)", p,
                 1, NULL);
    }
    have = sigil_db_res_text(res, 0, 0);
    if (have == NULL || strcmp(have, x->ca->td) != 0)
        r = set_err(x, SIGIL_ERR_STATE,
                    "this database belongs to trust domain \"%s\", the configuration says \"%s\" "
                    "(a trust domain cannot be renamed: fix trust_domain or database.conninfo)",
                    have ? have : "", x->ca->td);
    sigil_db_res_free(res);
    return r;
}

/* Mints a root (new key) and records it in state; on success *cert and *key are set. */
static int
make_root(struct ctx *x, const char *state, X509 **cert, EVP_PKEY **key)
{
    char cn[SIGIL_TRUST_DOMAIN_MAX + 32], serial[41], path[PATH_MAX_CA];
    struct sigil_x509_ca_params cp = {0};
    time_t now = time(NULL);
    const char *why = NULL;
    int r;

    *cert = NULL;
    if ((r = sigil_x509_key_generate(key)) != 0)
        return set_err(x, r, "root CA: cannot make a key");
    snprintf(cn, sizeof cn, "Sigil root CA %s", x->ca->td);
    cp.trust_domain = x->ca->td;
    cp.subject.country = x->ca->country;
    cp.subject.organization = x->ca->organization;
    cp.subject.common_name = x->ca->common_name ? x->ca->common_name : cn;
    cp.not_before = now - BACKDATE_S;
    cp.not_after = now + (time_t)x->ca->root_ttl_s;
    cp.path_len = -1;
    if ((r = sigil_x509_mint_root(&cp, *key, cert, &why)) != 0) {
        set_err(x, r, "root CA: %s", why ? why : sigil_strerror(r));
        goto out;
    }
    sigil_ca_serial_hex(*cert, serial);
    if ((r = write_key(x, *key, "root", serial, path)) != 0 ||
        (r = insert_row(x, "x509_root", state, NULL, NULL, *cert, *key, path, cp.not_before,
                        cp.not_after)) != 0)
        goto out;
out:
    if (r != 0) {
        X509_free(*cert);
        EVP_PKEY_free(*key);
        *cert = NULL;
        *key = NULL;
    }
    return r;
}

/* Makes a JWT signing key with a random kid and records it in state. */
static int
make_jwt_key(struct ctx *x, const char *state, char kid[SIGIL_BUNDLE_KID_MAX + 1], EVP_PKEY **key)
{
    uint8_t rnd[SIGIL_CA_KID_BYTES];
    char path[PATH_MAX_CA], *k = NULL;
    time_t now = time(NULL);
    int r;

    if ((r = sigil_x509_key_generate(key)) != 0)
        return set_err(x, r, "JWT key: cannot make a key");
    if (RAND_bytes(rnd, sizeof rnd) != 1 || (k = sigil_b64url_encode(rnd, sizeof rnd)) == NULL) {
        r = set_err(x, SIGIL_ERR_CRYPTO, "JWT key: cannot make a kid");
        goto out;
    }
    snprintf(kid, SIGIL_BUNDLE_KID_MAX + 1, "%s", k);
    if ((r = write_key(x, *key, "jwt", kid, path)) != 0 ||
        (r = insert_row(x, "jwt_key", state, NULL, kid, NULL, *key, path, now - BACKDATE_S,
                        now + (time_t)x->ca->jwt_key_ttl_s)) != 0)
        goto out;
out:
    free(k);
    if (r != 0) {
        EVP_PKEY_free(*key);
        *key = NULL;
    }
    return r;
}

/* Loads the active root (making the first one when there is none). */
static int
ensure_root(struct ctx *x)
{
    struct sigil_db_res *res = NULL;
    uint8_t *cder = NULL, *pder = NULL;
    size_t clen = 0, plen = 0;
    int r;

    if ((r = q(x, "reading the active root",
               "SELECT cert_der, public_key_der, key_ref FROM ca_journal"
               " WHERE kind = 'x509_root' AND state = 'active' ORDER BY id DESC",
               NULL, 0, &res)) != 0)
        return r;
    if (sigil_db_res_rows(res) > 1) {
        r = set_err(x, SIGIL_ERR_INTERNAL, "CA journal: more than one active root");
        goto out;
    }
    if (sigil_db_res_rows(res) == 0) {
        if ((r = make_root(x, "active", &x->ca->root, &x->ca->root_key)) == 0)
            x->rep.made_root = true;
        goto out;
    }
    if (sigil_db_res_bytea(res, 0, 0, &cder, &clen) != 0 ||
        sigil_db_res_bytea(res, 0, 1, &pder, &plen) != 0 ||
        der_to_cert(cder, clen, &x->ca->root) != 0) {
        r = set_err(x, SIGIL_ERR_INVALID, "CA journal: the active root does not parse");
        goto out;
    }
    if ((r = read_key(x, sigil_db_res_text(res, 0, 2), pder, plen, &x->ca->root_key)) != 0)
        goto out;
    if (!sigil_x509_key_matches_cert(x->ca->root_key, x->ca->root))
        r = set_err(x, SIGIL_ERR_VERIFY, "CA journal: the active root's key is not its cert's");
out:
    free(cder);
    free(pder);
    sigil_db_res_free(res);
    return r;
}

/* Loads the active JWT key (making one when there is none, or when it expired). */
static int
ensure_jwt_key(struct ctx *x)
{
    struct sigil_db_res *res = NULL;
    uint8_t *pder = NULL;
    size_t plen = 0;
    int r;

    if ((r = q(x, "reading the JWT key",
               "SELECT kid, public_key_der, key_ref FROM ca_journal WHERE kind = 'jwt_key'"
               " AND state = 'active' AND not_after > now() ORDER BY id DESC LIMIT 1",
               NULL, 0, &res)) != 0)
        return r;
    if (sigil_db_res_rows(res) == 0) {
        /* an expired active key steps aside; it stays published until retired */
        if ((r = q(
                 x, "retiring an expired JWT key",
                 "UPDATE ca_journal SET state = 'old' WHERE kind = 'jwt_key' AND state = 'active'",
                 NULL, 0, NULL)) == 0 &&
            (r = make_jwt_key(x, "active", x->ca->kid, &x->ca->jwt_key)) == 0)
            x->rep.made_jwt_key = true;
        goto out;
    }
    snprintf(x->ca->kid, sizeof x->ca->kid, "%s", sigil_db_res_text(res, 0, 0));
    if (sigil_db_res_bytea(res, 0, 1, &pder, &plen) != 0) {
        r = set_err(x, SIGIL_ERR_INVALID, "CA journal: the JWT key's public key does not parse");
        goto out;
    }
    r = read_key(x, sigil_db_res_text(res, 0, 2), pder, plen, &x->ca->jwt_key);
out:
    free(pder);
    sigil_db_res_free(res);
    return r;
}

/* The bundle the journal says we publish: roots and JWT keys prepared, active or old. */
static int
journal_bundle(struct ctx *x, struct sigil_bundle **out)
{
    struct sigil_db_res *res = NULL;
    struct sigil_bundle *b = NULL;
    const char *why = NULL;
    int r;

    if ((r = sigil_bundle_new(x->ca->td, &b, &why)) != 0)
        return set_err(x, r, "bundle: %s", why ? why : sigil_strerror(r));
    if ((r = q(x, "reading the published authorities",
               "SELECT kind, kid, cert_der, public_key_der FROM ca_journal"
               " WHERE kind IN ('x509_root', 'jwt_key')"
               " AND state IN ('prepared', 'active', 'old') ORDER BY id",
               NULL, 0, &res)) != 0)
        goto out;
    for (size_t i = 0; i < sigil_db_res_rows(res); i++) {
        const char *kind = sigil_db_res_text(res, i, 0);
        bool root = kind != NULL && strcmp(kind, "x509_root") == 0;
        uint8_t *der = NULL;
        size_t len = 0;
        X509 *cert = NULL;
        EVP_PKEY *pub = NULL;

        if (sigil_db_res_bytea(res, i, root ? 2 : 3, &der, &len) != 0 ||
            (root ? der_to_cert(der, len, &cert) : der_to_pub(der, len, &pub)) != 0) {
            free(der);
            r = set_err(x, SIGIL_ERR_INVALID, "CA journal: row %zu does not parse", i);
            goto out;
        }
        free(der);
        r = root ? sigil_bundle_x509_add(b, cert, &why)
                 : sigil_bundle_jwt_add(b, sigil_db_res_text(res, i, 1), pub, &why);
        X509_free(cert);
        EVP_PKEY_free(pub);
        if (r != 0 && r != SIGIL_ERR_EXISTS) {
            set_err(x, r, "bundle: %s", why ? why : sigil_strerror(r));
            goto out;
        }
        r = 0;
    }
    if ((r = sigil_bundle_set_refresh_hint(b, x->ca->refresh_hint_s)) != 0) {
        set_err(x, r, "bundle: bad refresh hint");
        goto out;
    }
    *out = b;
    b = NULL;
out:
    sigil_bundle_free(b);
    sigil_db_res_free(res);
    return r;
}

/* Writes our own bundle row from the journal: sequence 1 the first time, the stored sequence
 * plus one whenever the contents (or the refresh hint) changed, untouched otherwise. */
static int
sync_bundle(struct ctx *x)
{
    struct sigil_db_res *res = NULL;
    struct sigil_bundle *want = NULL, *have = NULL;
    const char *doc, *why = NULL;
    char *json = NULL, sseq[32], shint[32];
    size_t jlen;
    int64_t seq = 0;
    int r;

    if ((r = journal_bundle(x, &want)) != 0)
        return r;
    if ((r = q(x, "reading our bundle",
               "SELECT document::text, sequence FROM bundles WHERE own FOR UPDATE", NULL, 0,
               &res)) != 0)
        goto out;
    if (sigil_db_res_rows(res) > 0) {
        doc = sigil_db_res_text(res, 0, 0);
        if (doc == NULL || sigil_db_res_int64(res, 0, 1, &seq) != 0 ||
            sigil_bundle_decode(x->ca->td, doc, strlen(doc), &have, &why) != 0) {
            r = set_err(x, SIGIL_ERR_INVALID, "our bundle row does not decode: %s",
                        why ? why : "bad row");
            goto out;
        }
        if ((r = sigil_bundle_set_sequence(want, (uint64_t)seq)) != 0)
            goto out;
        if (sigil_bundle_equal(want, have))
            goto keep;
    }
    if ((r = sigil_bundle_set_sequence(want, (uint64_t)seq + 1)) != 0 ||
        (r = sigil_bundle_encode(want, &json, &jlen)) != 0) {
        set_err(x, r, "bundle: cannot encode: %s", sigil_strerror(r));
        goto out;
    }
    snprintf(sseq, sizeof sseq, "%lld", (long long)seq + 1);
    snprintf(shint, sizeof shint, "%lld", (long long)x->ca->refresh_hint_s);
    {
        const struct sigil_db_param p[] = {SIGIL_DB_TEXT(x->ca->td), SIGIL_DB_TEXT(json),
                                           SIGIL_DB_TEXT(sseq), SIGIL_DB_TEXT(shint)};
        r = seq == 0 ? q(x, "writing our bundle",
                         "INSERT INTO bundles (trust_domain, own, document, sequence,"
                         " refresh_hint_seconds) VALUES ($1, true, $2::jsonb, $3::bigint,"
                         " $4::integer)",
                         p, 4, NULL)
                     : q(x, "updating our bundle",
                         "UPDATE bundles SET document = $2::jsonb, sequence = $3::bigint,"
                         " refresh_hint_seconds = $4::integer, updated_at = now()"
                         " WHERE own AND trust_domain = $1",
                         p, 4, NULL);
    }
    if (r != 0)
        goto out;
    x->rep.bumped_bundle = true;
keep:
    sigil_bundle_free(x->ca->bundle);
    x->ca->bundle = want;
    want = NULL;
out:
    free(json);
    sigil_bundle_free(want);
    sigil_bundle_free(have);
    sigil_db_res_free(res);
    return r;
}

/* Reuses this instance's intermediate if the active root signed it and it is not past half its
 * life (and its key file matches); else mints a new one and marks the previous "old". */
static int
ensure_intermediate(struct ctx *x)
{
    const struct sigil_db_param p[] = {SIGIL_DB_TEXT(x->ca->instance_id)};
    struct sigil_x509_ca_params cp = {0};
    struct sigil_db_res *res = NULL;
    EVP_PKEY *root_pub = X509_get0_pubkey(x->ca->root);
    char serial[41], path[PATH_MAX_CA];
    time_t now = time(NULL);
    const char *why = NULL;
    int r;

    if ((r = q(x, "reading this instance's intermediate",
               "SELECT cert_der, public_key_der, key_ref FROM ca_journal"
               " WHERE kind = 'x509_intermediate' AND state = 'active' AND issued_to = $1"
               " AND not_after > now() ORDER BY id DESC",
               p, 1, &res)) != 0)
        return r;
    for (size_t i = 0; i < sigil_db_res_rows(res) && x->ca->inter == NULL; i++) {
        uint8_t *cder = NULL, *pder = NULL;
        size_t clen = 0, plen = 0;
        time_t nb, na;
        X509 *cert = NULL;

        if (sigil_db_res_bytea(res, i, 0, &cder, &clen) == 0 &&
            sigil_db_res_bytea(res, i, 1, &pder, &plen) == 0 &&
            der_to_cert(cder, clen, &cert) == 0 && X509_verify(cert, root_pub) == 1 &&
            sigil_x509_cert_not_before(cert, &nb) == 0 &&
            sigil_x509_cert_not_after(cert, &na) == 0 && now < nb + (na - nb) / 2) {
            r = read_key(x, sigil_db_res_text(res, i, 2), pder, plen, &x->ca->inter_key);
            if (r == 0) {
                x->ca->inter = cert;
                cert = NULL;
            }
        }
        ERR_clear_error();
        X509_free(cert);
        free(cder);
        free(pder);
        if (r != 0)
            goto out;
    }
    if (x->ca->inter != NULL)
        goto out;
    if ((r = sigil_x509_key_generate(&x->ca->inter_key)) != 0) {
        set_err(x, r, "intermediate CA: cannot make a key");
        goto out;
    }
    cp.trust_domain = x->ca->td;
    cp.subject.country = x->ca->country;
    cp.subject.organization = x->ca->organization;
    cp.subject.common_name = "Sigil server CA";
    cp.not_before = now - BACKDATE_S;
    cp.not_after = now + (time_t)x->ca->intermediate_ttl_s;
    cp.path_len = 0;
    if ((r = sigil_x509_mint_intermediate(&cp, x->ca->inter_key, x->ca->root, x->ca->root_key,
                                          &x->ca->inter, &why)) != 0) {
        set_err(x, r, "intermediate CA: %s", why ? why : sigil_strerror(r));
        goto out;
    }
    sigil_ca_serial_hex(x->ca->inter, serial);
    if ((r = sigil_x509_cert_not_after(x->ca->inter, &cp.not_after)) != 0 ||
        (r = write_key(x, x->ca->inter_key, "intermediate", serial, path)) != 0 ||
        (r = q(x, "retiring this instance's previous intermediate",
               "UPDATE ca_journal SET state = 'old' WHERE kind = 'x509_intermediate'"
               " AND state = 'active' AND issued_to = $1",
               p, 1, NULL)) != 0 ||
        (r = insert_row(x, "x509_intermediate", "active", x->ca->instance_id, NULL, x->ca->inter,
                        x->ca->inter_key, path, cp.not_before, cp.not_after)) != 0)
        goto out;
    x->rep.made_intermediate = true;
out:
    sigil_db_res_free(res);
    return r;
}

/* Brings the journal to a complete trust root and loads it (under the lock, in a tx). */
static int
ensure_all(struct ctx *x)
{
    int r;

    unload(x->ca);
    if ((r = q(x, "taking the CA lock", LOCK_SQL, NULL, 0, NULL)) != 0 ||
        (r = trust_domain(x)) != 0 || (r = ensure_root(x)) != 0 || (r = ensure_jwt_key(x)) != 0 ||
        (r = sync_bundle(x)) != 0 ||
        /* an operator's tool signs nothing: it needs no intermediate of its own */
        (x->ca->instance_id != NULL && (r = ensure_intermediate(x)) != 0))
        unload(x->ca);
    return r;
}

static int
open_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct ctx *x = arg;

    (void)c;
    (void)attempt;
    memset(&x->rep, 0, sizeof x->rep);
    return ensure_all(x);
}

static int
run_tx(struct ctx *x, sigil_db_tx_fn body)
{
    int r = sigil_db_tx(x->c, SIGIL_DB_READ_COMMITTED, TX_ATTEMPTS, body, x);

    /* a failed COMMIT has no text of ours yet */
    if (r != 0 && x->err != NULL && x->errlen > 0 && x->err[0] == '\0')
        set_err(x, r, "CA journal: %s", sigil_db_conn_error(x->c)->message);
    if (r != 0)
        unload(x->ca);
    return r;
}

static char *
dup_or_null(const char *s, bool *oom)
{
    char *d;

    if (s == NULL)
        return NULL;
    if ((d = strdup(s)) == NULL)
        *oom = true;
    return d;
}

int
sigil_ca_open(struct sigil_db_conn *c, const struct sigil_ca_params *p, struct sigil_ca **out,
              struct sigil_ca_report *rep, char *err, size_t errlen)
{
    struct ctx x = {.c = c, .err = err, .errlen = errlen};
    struct sigil_ca *ca = NULL;
    const char *why = NULL;
    bool oom = false;
    int r;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    *out = NULL;
    if (p == NULL || p->trust_domain == NULL || p->key_dir == NULL || p->root_ttl_s <= 0 ||
        p->intermediate_ttl_s <= 0 || p->jwt_key_ttl_s <= 0 || p->refresh_hint_s <= 0)
        return set_err(&x, SIGIL_ERR_INVALID, "CA: incomplete parameters");
    if ((ca = calloc(1, sizeof *ca)) == NULL)
        return set_err(&x, SIGIL_ERR_NOMEM, "CA: out of memory");
    x.ca = ca;
    if ((r = sigil_trust_domain_check(p->trust_domain, strlen(p->trust_domain), &why)) != 0) {
        set_err(&x, r, "CA: trust domain: %s", why);
        goto out;
    }
    snprintf(ca->td, sizeof ca->td, "%s", p->trust_domain);
    ca->key_dir = dup_or_null(p->key_dir, &oom);
    ca->instance_id = dup_or_null(p->instance_id, &oom);
    ca->country = dup_or_null(p->subject.country, &oom);
    ca->organization = dup_or_null(p->subject.organization, &oom);
    ca->common_name = dup_or_null(p->subject.common_name, &oom);
    ca->root_ttl_s = p->root_ttl_s;
    ca->intermediate_ttl_s = p->intermediate_ttl_s;
    ca->jwt_key_ttl_s = p->jwt_key_ttl_s;
    ca->refresh_hint_s = p->refresh_hint_s;
    if (oom) {
        r = set_err(&x, SIGIL_ERR_NOMEM, "CA: out of memory");
        goto out;
    }
    if ((r = check_key_dir(&x)) != 0 || (r = run_tx(&x, open_body)) != 0)
        goto out;
    if (rep != NULL)
        *rep = x.rep;
    *out = ca;
    ca = NULL;
out:
    sigil_ca_free(ca);
    return r;
}

void
sigil_ca_free(struct sigil_ca *ca)
{
    if (ca == NULL)
        return;
    unload(ca);
    free(ca->key_dir);
    free(ca->instance_id);
    free(ca->country);
    free(ca->organization);
    free(ca->common_name);
    free(ca->actor);
    free(ca);
}

int
sigil_ca_set_actor(struct sigil_ca *ca, const char *actor)
{
    char *d = NULL;

    if (actor != NULL && (d = strdup(actor)) == NULL)
        return SIGIL_ERR_NOMEM;
    free(ca->actor);
    ca->actor = d;
    return 0;
}

/* Records a rotation step in the audit log, in the step's transaction, with the state it left:
 * the active root, the JWT key, the bundle sequence (and what retire retired). */
static int
audit_step(struct ctx *x, const char *action, bool with_retired)
{
    json_t *after = NULL;
    char serial[41], *txt = NULL;
    uint64_t seq = 0;
    int r = SIGIL_ERR_NOMEM;

    if (x->ca->actor == NULL)
        return 0;
    sigil_ca_serial_hex(x->ca->root, serial);
    sigil_bundle_sequence(x->ca->bundle, &seq);
    if ((after = json_pack("{s:s,s:s,s:I}", "active_root_serial", serial, "jwt_kid", x->ca->kid,
                           "bundle_sequence", (json_int_t)seq)) == NULL ||
        (with_retired &&
         json_object_set_new(after, "retired", json_integer((json_int_t)x->retired)) != 0) ||
        (txt = json_dumps(after, JSON_COMPACT | JSON_SORT_KEYS)) == NULL) {
        set_err(x, r, "CA: out of memory");
        goto out;
    }
    {
        const struct sigil_db_param p[] = {SIGIL_DB_TEXT(x->ca->actor), SIGIL_DB_TEXT(action),
                                           SIGIL_DB_TEXT(x->ca->td), SIGIL_DB_TEXT(txt)};
        r = q(x, "writing the audit record",
              "INSERT INTO audit_log (actor, action, object_type, object_id, after)"
              " VALUES ($1, $2, 'ca', $3, $4::jsonb)",
              p, 4, NULL);
    }
out:
    free(txt);
    json_decref(after);
    return r;
}

static int
count_rows(struct ctx *x, const char *sql, int64_t *n)
{
    struct sigil_db_res *res = NULL;
    int r;

    if ((r = q(x, "counting", sql, NULL, 0, &res)) == 0 && sigil_db_res_int64(res, 0, 0, n) != 0)
        r = set_err(x, SIGIL_ERR_INTERNAL, "CA journal: bad count");
    sigil_db_res_free(res);
    return r;
}

/* Runs a rotation step on a scratch copy of ca, so a refused or failed step leaves the loaded
 * trust root as it was; on success the freshly loaded one replaces it. */
static int
run_on_copy(struct ctx *x, struct sigil_ca *ca, sigil_db_tx_fn body)
{
    struct sigil_ca tmp = *ca;
    int r;

    if (x->err != NULL && x->errlen > 0)
        x->err[0] = '\0';
    /* the copy shares the parameter strings and owns none of the loaded objects yet */
    tmp.root = tmp.inter = NULL;
    tmp.root_key = tmp.inter_key = tmp.jwt_key = NULL;
    tmp.bundle = NULL;
    tmp.kid[0] = '\0';
    x->ca = &tmp;
    if ((r = run_tx(x, body)) == 0) {
        unload(ca);
        ca->root = tmp.root;
        ca->root_key = tmp.root_key;
        ca->inter = tmp.inter;
        ca->inter_key = tmp.inter_key;
        ca->jwt_key = tmp.jwt_key;
        ca->bundle = tmp.bundle;
        memcpy(ca->kid, tmp.kid, sizeof ca->kid);
    }
    x->ca = ca;
    return r;
}

static int
prepare_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct ctx *x = arg;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL, *jkey = NULL;
    char kid[SIGIL_BUNDLE_KID_MAX + 1];
    int64_t n = 0;
    int r;

    (void)c;
    (void)attempt;
    if ((r = q(x, "taking the CA lock", LOCK_SQL, NULL, 0, NULL)) != 0 ||
        (r = count_rows(x,
                        "SELECT count(*) FROM ca_journal WHERE kind = 'x509_root'"
                        " AND state = 'prepared'",
                        &n)) != 0)
        return r;
    if (n > 0)
        return set_err(x, SIGIL_ERR_EXISTS,
                       "a root CA is prepared already (activate it, or wait for it)");
    if ((r = make_root(x, "prepared", &cert, &key)) != 0 ||
        (r = make_jwt_key(x, "prepared", kid, &jkey)) != 0 || (r = ensure_all(x)) != 0)
        goto out;
    r = audit_step(x, "ca.prepare", false);
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    EVP_PKEY_free(jkey);
    return r;
}

int
sigil_ca_prepare(struct sigil_ca *ca, struct sigil_db_conn *c, char *err, size_t errlen)
{
    struct ctx x = {.c = c, .err = err, .errlen = errlen};

    return run_on_copy(&x, ca, prepare_body);
}

static int
activate_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct ctx *x = arg;
    int64_t n = 0;
    int r;

    (void)c;
    (void)attempt;
    if ((r = q(x, "taking the CA lock", LOCK_SQL, NULL, 0, NULL)) != 0 ||
        (r = count_rows(x,
                        "SELECT count(*) FROM ca_journal WHERE kind = 'x509_root'"
                        " AND state = 'prepared'",
                        &n)) != 0)
        return r;
    if (n == 0)
        return set_err(x, SIGIL_ERR_NOTFOUND, "no root CA is prepared (prepare one first)");
    /* a kind with nothing prepared keeps its active one */
    if ((r = q(x, "activating the prepared root and JWT key",
               "WITH kinds AS (SELECT DISTINCT kind FROM ca_journal WHERE state = 'prepared'"
               " AND kind IN ('x509_root', 'jwt_key')),"
               " demoted AS (UPDATE ca_journal SET state = 'old' WHERE state = 'active'"
               " AND kind IN (SELECT kind FROM kinds))"
               " UPDATE ca_journal SET state = 'active', activated_at = now()"
               " WHERE state = 'prepared' AND kind IN (SELECT kind FROM kinds)",
               NULL, 0, NULL)) != 0 ||
        (r = ensure_all(x)) != 0)
        return r;
    return audit_step(x, "ca.activate", false);
}

int
sigil_ca_activate(struct sigil_ca *ca, struct sigil_db_conn *c, char *err, size_t errlen)
{
    struct ctx x = {.c = c, .err = err, .errlen = errlen};

    return run_on_copy(&x, ca, activate_body);
}

/* True if an unexpired intermediate of the journal was signed by pub (so chains under the root
 * of pub can still be valid). */
static int
root_in_use(struct ctx *x, struct sigil_db_res *inters, EVP_PKEY *pub, bool *in_use)
{
    *in_use = false;
    for (size_t i = 0; i < sigil_db_res_rows(inters) && !*in_use; i++) {
        uint8_t *der = NULL;
        size_t len = 0;
        X509 *cert = NULL;

        if (sigil_db_res_bytea(inters, i, 0, &der, &len) != 0 ||
            der_to_cert(der, len, &cert) != 0) {
            free(der);
            return set_err(x, SIGIL_ERR_INVALID, "CA journal: an intermediate does not parse");
        }
        *in_use = X509_verify(cert, pub) == 1;
        ERR_clear_error();
        X509_free(cert);
        free(der);
    }
    return 0;
}

static int
retire_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct ctx *x = arg;
    struct sigil_db_res *roots = NULL, *inters = NULL, *jwt = NULL;
    char secs[32];
    const struct sigil_db_param jp[] = {SIGIL_DB_TEXT(secs)};
    int64_t n;
    int r;

    (void)c;
    (void)attempt;
    x->retired = 0;
    snprintf(secs, sizeof secs, "%lld", (long long)x->jwt_max_ttl_s);
    if ((r = q(x, "taking the CA lock", LOCK_SQL, NULL, 0, NULL)) != 0 ||
        (r = q(x, "reading old roots",
               "SELECT id, public_key_der FROM ca_journal WHERE kind = 'x509_root'"
               " AND state = 'old' ORDER BY id",
               NULL, 0, &roots)) != 0 ||
        (r = q(x, "reading unexpired intermediates",
               "SELECT cert_der FROM ca_journal WHERE kind = 'x509_intermediate'"
               " AND not_after > now()",
               NULL, 0, &inters)) != 0)
        goto out;
    for (size_t i = 0; i < sigil_db_res_rows(roots); i++) {
        const struct sigil_db_param p[] = {SIGIL_DB_TEXT(sigil_db_res_text(roots, i, 0))};
        uint8_t *der = NULL;
        size_t len = 0;
        EVP_PKEY *pub = NULL;
        bool in_use = true;

        if (sigil_db_res_bytea(roots, i, 1, &der, &len) != 0 || der_to_pub(der, len, &pub) != 0) {
            free(der);
            r = set_err(x, SIGIL_ERR_INVALID, "CA journal: an old root does not parse");
            goto out;
        }
        free(der);
        r = root_in_use(x, inters, pub, &in_use);
        EVP_PKEY_free(pub);
        if (r != 0)
            goto out;
        if (in_use)
            continue;
        if ((r = q(x, "retiring a root",
                   "UPDATE ca_journal SET state = 'retired', retired_at = now()"
                   " WHERE id = $1::bigint",
                   p, 1, NULL)) != 0)
            goto out;
        x->retired++;
    }
    /* a JWT-SVID lives at most jwt_max_ttl_s: once the successor has been active that long,
     * nothing signed by an old key is still valid */
    if ((r = q(x, "retiring old JWT keys",
               "UPDATE ca_journal SET state = 'retired', retired_at = now()"
               " WHERE kind = 'jwt_key' AND state = 'old' AND EXISTS (SELECT 1 FROM ca_journal a"
               " WHERE a.kind = 'jwt_key' AND a.state = 'active'"
               " AND a.activated_at < now() - make_interval(secs => $1::double precision))",
               jp, 1, &jwt)) != 0)
        goto out;
    if ((n = sigil_db_res_affected(jwt)) > 0)
        x->retired += (size_t)n;
    /* a retire that retired nothing changed nothing: no audit record */
    if ((r = ensure_all(x)) == 0 && x->retired > 0)
        r = audit_step(x, "ca.retire", true);
out:
    sigil_db_res_free(roots);
    sigil_db_res_free(inters);
    sigil_db_res_free(jwt);
    return r;
}

int
sigil_ca_retire(struct sigil_ca *ca, struct sigil_db_conn *c, int64_t jwt_max_ttl_s,
                size_t *retired, char *err, size_t errlen)
{
    struct ctx x = {.c = c, .err = err, .errlen = errlen, .jwt_max_ttl_s = jwt_max_ttl_s};
    int r;

    if (jwt_max_ttl_s <= 0)
        return set_err(&x, SIGIL_ERR_INVALID, "retire: the JWT TTL bound must be positive");
    r = run_on_copy(&x, ca, retire_body);
    if (retired != NULL)
        *retired = r == 0 ? x.retired : 0;
    return r;
}

X509 *
sigil_ca_root(const struct sigil_ca *ca)
{
    return ca->root;
}

X509 *
sigil_ca_intermediate(const struct sigil_ca *ca)
{
    return ca->inter;
}

EVP_PKEY *
sigil_ca_intermediate_key(const struct sigil_ca *ca)
{
    return ca->inter_key;
}

const char *
sigil_ca_jwt_kid(const struct sigil_ca *ca)
{
    return ca->kid;
}

EVP_PKEY *
sigil_ca_jwt_key(const struct sigil_ca *ca)
{
    return ca->jwt_key;
}

const struct sigil_bundle *
sigil_ca_bundle(const struct sigil_ca *ca)
{
    return ca->bundle;
}

/* "YYYY-MM-DDTHH:MM:SSZ" of a timestamptz column (NULL stays NULL). */
#define UTC(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"

struct show {
    struct ctx x;
    json_t *out;
};

/* Sets key to the text at (row, col), or JSON null for SQL NULL. Returns 0 or NOMEM. */
static int
set_text(json_t *o, const char *key, const struct sigil_db_res *res, size_t row, size_t col)
{
    json_t *v = sigil_db_res_is_null(res, row, col) ? json_null()
                                                    : json_string(sigil_db_res_text(res, row, col));

    return v != NULL && json_object_set_new(o, key, v) == 0 ? 0 : SIGIL_ERR_NOMEM;
}

/* One journal row as JSON; a root also says until when an unexpired intermediate it signed
 * lives (inters is ordered by not_after, latest first), that is how long SVIDs under it can
 * still be valid and retire must keep it. */
static int
show_row(struct ctx *x, const struct sigil_db_res *res, size_t i, const struct sigil_db_res *inters,
         json_t *arr)
{
    const char *kind = sigil_db_res_text(res, i, 0);
    bool cert_row = kind != NULL && strcmp(kind, "jwt_key") != 0;
    uint8_t *der = NULL;
    size_t len = 0;
    X509 *cert = NULL, *ic = NULL;
    char serial[41];
    json_t *o = json_object();
    int r = SIGIL_ERR_NOMEM;

    if (o == NULL || json_array_append_new(arr, o) != 0)
        goto out;
    if ((r = set_text(o, "kind", res, i, 0)) != 0 || (r = set_text(o, "state", res, i, 1)) != 0 ||
        (r = set_text(o, "not_before", res, i, 5)) != 0 ||
        (r = set_text(o, "not_after", res, i, 6)) != 0 ||
        (r = set_text(o, "activated_at", res, i, 7)) != 0 ||
        (r = set_text(o, "retired_at", res, i, 8)) != 0)
        goto out;
    if (!cert_row) {
        r = set_text(o, "kid", res, i, 2);
        goto out;
    }
    if (sigil_db_res_bytea(res, i, 3, &der, &len) != 0 || der_to_cert(der, len, &cert) != 0) {
        r = set_err(x, SIGIL_ERR_INVALID, "CA journal: row %zu does not parse", i);
        goto out;
    }
    sigil_ca_serial_hex(cert, serial);
    r = SIGIL_ERR_NOMEM;
    if (json_object_set_new(o, "serial", json_string(serial)) != 0)
        goto out;
    if (strcmp(kind, "x509_intermediate") == 0) {
        r = set_text(o, "issued_to", res, i, 4);
        goto out;
    }
    json_t *until = json_null();
    for (size_t k = 0; k < sigil_db_res_rows(inters) && json_is_null(until); k++) {
        uint8_t *idr = NULL;
        size_t ilen = 0;

        if (sigil_db_res_bytea(inters, k, 0, &idr, &ilen) == 0 &&
            der_to_cert(idr, ilen, &ic) == 0 && X509_verify(ic, X509_get0_pubkey(cert)) == 1)
            until = json_string(sigil_db_res_text(inters, k, 1));
        ERR_clear_error();
        X509_free(ic);
        ic = NULL;
        free(idr);
    }
    if (until == NULL || json_object_set_new(o, "signs_unexpired_intermediates_until", until) != 0)
        goto out;
    r = 0;
out:
    X509_free(cert);
    free(der);
    return r;
}

static int
show_body(struct sigil_db_conn *c, void *arg, int attempt)
{
    struct show *s = arg;
    struct ctx *x = &s->x;
    struct sigil_db_res *res = NULL, *inters = NULL, *bun = NULL, *td = NULL;
    json_t *arr = json_array();
    int64_t seq = 0;
    int r;

    (void)c;
    (void)attempt;
    json_decref(s->out);
    s->out = NULL;
    if (arr == NULL)
        return set_err(x, SIGIL_ERR_NOMEM, "CA: out of memory");
    if ((r = q(x, "reading the trust domain", "SELECT name FROM trust_domain", NULL, 0, &td)) !=
            0 ||
        (r = q(x, "reading the own bundle", "SELECT sequence FROM bundles WHERE own", NULL, 0,
               &bun)) != 0 ||
        (r = q(x, "reading the CA journal",
               "SELECT kind, state, kid, cert_der, issued_to, " UTC("not_before") ", " UTC(
                   "not_after") ", " UTC("activated_at") ", " UTC("retired_at") " FROM ca_journal"
                                                                                " WHERE kind IN "
                                                                                "('x509_root', "
                                                                                "'jwt_key') OR "
                                                                                "not_after > now() "
                                                                                "ORDER BY kind, id",
               NULL, 0, &res)) != 0 ||
        (r = q(x, "reading unexpired intermediates",
               "SELECT cert_der, " UTC("not_after") " FROM ca_journal"
                                                    " WHERE kind = 'x509_intermediate' AND "
                                                    "not_after > now() ORDER BY not_after DESC",
               NULL, 0, &inters)) != 0)
        goto out;
    if (sigil_db_res_rows(td) == 0) {
        r = set_err(x, SIGIL_ERR_NOTFOUND,
                    "this database has no trust root yet (start the server once, or run "
                    "sigil-server ca prepare)");
        goto out;
    }
    if (sigil_db_res_rows(bun) > 0 && sigil_db_res_int64(bun, 0, 0, &seq) != 0) {
        r = set_err(x, SIGIL_ERR_INTERNAL, "CA journal: bad bundle sequence");
        goto out;
    }
    for (size_t i = 0; i < sigil_db_res_rows(res); i++) {
        if ((r = show_row(x, res, i, inters, arr)) != 0) {
            if (r == SIGIL_ERR_NOMEM)
                set_err(x, r, "CA: out of memory");
            goto out;
        }
    }
    if ((s->out = json_pack("{s:s,s:I,s:O}", "trust_domain", sigil_db_res_text(td, 0, 0),
                            "bundle_sequence", (json_int_t)seq, "authorities", arr)) == NULL)
        r = set_err(x, SIGIL_ERR_NOMEM, "CA: out of memory");
out:
    json_decref(arr);
    sigil_db_res_free(res);
    sigil_db_res_free(inters);
    sigil_db_res_free(bun);
    sigil_db_res_free(td);
    return r;
}

/* One journal row's key: where it resolves, whether it is there, ours alone, and the journal's. */
static bool
check_one_key(const char *key_dir, const char *kind, const char *state, const char *name,
              const char *key_ref, const uint8_t *pder, size_t plen, bool needed, bool failed_only,
              FILE *out)
{
    struct sigil_ca ca = {.key_dir = (char *)key_dir};
    char err[PATH_MAX_CA + SIGIL_CA_ERR_MAX] = "", path[PATH_MAX_CA];
    struct ctx x = {.ca = &ca, .err = err, .errlen = sizeof err};
    EVP_PKEY *key = NULL;
    struct stat st;
    bool moved, ok = false;

    if (sigil_ca_key_path(key_dir, key_ref, path, sizeof path, &moved) != 0)
        snprintf(err, sizeof err, "key_ref \"%s\" is refused (not a bare file name)",
                 key_ref ? key_ref : "");
    else if (stat(path, &st) != 0)
        snprintf(err, sizeof err, "missing: %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        snprintf(err, sizeof err, "%s is not a regular file", path);
    else if ((st.st_mode & 0177) != 0)
        snprintf(err, sizeof err, "%s has mode %04o, wider than 0600", path,
                 (unsigned)(st.st_mode & 07777));
    else if (read_key(&x, key_ref, pder, plen, &key) == 0)
        ok = true;
    EVP_PKEY_free(key);
    if (failed_only && ok)
        return true;
    fprintf(out, "key %-17s %-8s %s%s%s: %s%s%s%s\n", kind, state, name, name[0] ? " " : "",
            key_ref ? key_ref : "", ok ? "ok" : "FAILED", ok ? "" : " (", ok ? "" : err,
            ok       ? ""
            : needed ? ")"
                     : "; not needed to run)");
    if (ok && moved)
        fprintf(out, "    (the journal holds the old absolute path %s; found in ca.key_dir)\n",
                key_ref);
    return ok || !needed;
}

/* Checks the key file of every journal row that is not retired: roots, JWT keys, and the
 * intermediates of instance_id (all instances' when NULL). Prints one line per key to out.
 * *all_ok is false when a key a server needs (active or prepared; an old one only signs
 * nothing) is missing, refused, wider than 0600 or not the journal's. */
int
sigil_ca_check_keys(struct sigil_db_conn *c, const char *key_dir, const char *instance_id,
                    bool failed_only, FILE *out, bool *all_ok, char *err, size_t errlen)
{
    const struct sigil_db_param p[] = {instance_id ? SIGIL_DB_TEXT(instance_id) : SIGIL_DB_NULL};
    struct sigil_db_res *res = NULL;
    int r;

    *all_ok = true;
    if ((r = sigil_db_exec(
             c,
             "SELECT kind, state, coalesce(kid, issued_to, ''), key_ref, public_key_der,"
             " coalesce(encode(cert_der, 'hex'), '') FROM ca_journal"
             " WHERE state <> 'retired' AND key_ref IS NOT NULL"
             " AND (kind <> 'x509_intermediate' OR (not_after > now()"
             " AND ($1::text IS NULL OR issued_to = $1)))"
             " ORDER BY kind DESC, id",
             p, 1, &res)) != 0) {
        snprintf(err, errlen, "CA journal: reading key references: %s",
                 sigil_db_conn_error(c)->message);
        return r;
    }
    if (sigil_db_res_rows(res) == 0 && !failed_only)
        fprintf(out, "no keys in the CA journal (a server makes them on first start)\n");
    for (size_t i = 0; i < sigil_db_res_rows(res); i++) {
        const char *kind = sigil_db_res_text(res, i, 0), *state = sigil_db_res_text(res, i, 1);
        const char *who = sigil_db_res_text(res, i, 2);
        uint8_t *pder = NULL;
        size_t plen = 0;
        bool needed = strcmp(state, "active") == 0 || strcmp(state, "prepared") == 0;

        if (sigil_db_res_bytea(res, i, 4, &pder, &plen) != 0) {
            fprintf(out, "key %-17s %-8s %s: FAILED (the journal's public key is unreadable)\n",
                    kind, state, who);
            *all_ok = *all_ok && !needed;
            continue;
        }
        if (!check_one_key(key_dir, kind, state, who, sigil_db_res_text(res, i, 3), pder, plen,
                           needed, failed_only, out))
            *all_ok = false;
        free(pder);
    }
    sigil_db_res_free(res);
    return 0;
}

int
sigil_ca_show(struct sigil_db_conn *c, json_t **out, char *err, size_t errlen)
{
    struct show s = {.x = {.c = c, .err = err, .errlen = errlen}};
    int r;

    *out = NULL;
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    /* one snapshot: the rows and the bundle sequence agree */
    r = sigil_db_tx(c, SIGIL_DB_REPEATABLE_READ, TX_ATTEMPTS, show_body, &s);
    if (r != 0) {
        if (err != NULL && errlen > 0 && err[0] == '\0')
            set_err(&s.x, r, "CA journal: %s", sigil_db_conn_error(c)->message);
        json_decref(s.out);
        return r;
    }
    *out = s.out;
    return 0;
}

bool
sigil_ca_retire_blocker(const json_t *shown, const char **serial, const char **until)
{
    const json_t *a;
    size_t i;

    json_array_foreach(json_object_get(shown, "authorities"), i, a)
    {
        const char *kind = json_string_value(json_object_get(a, "kind"));
        const char *state = json_string_value(json_object_get(a, "state"));
        const json_t *u = json_object_get(a, "signs_unexpired_intermediates_until");

        if (kind != NULL && strcmp(kind, "x509_root") == 0 && state != NULL &&
            strcmp(state, "old") == 0 && json_is_string(u)) {
            *serial = json_string_value(json_object_get(a, "serial"));
            *until = json_string_value(u);
            if (*serial == NULL)
                *serial = "?";
            return true;
        }
    }
    return false;
}
