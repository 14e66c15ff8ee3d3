/* A prepared X.509-SVID minter for one issuer, for the node API's hot path. OpenSSL 3.0 builds
 * a decoder or encoder chain (a walk over every provider's algorithms under locks) each time a
 * public key goes into or out of an X509/X509_REQ object; that, not ECDSA, was most of the
 * cost of an SVID. So the common case (a DER CSR with a P-256 key signed with ECDSA/SHA-256,
 * an EC P-256 issuer, an empty subject) is done here on bytes: the CSR's frame is read by a
 * strict DER reader, its key imported once, its signature checked, and the certificate
 * written as DER and signed. Everything else goes through sigil_x509_csr_parse and
 * sigil_x509_mint_leaf_csr, which are also the reference the unit tests compare us with. */
#include "sigil/err.h"
#include "sigil/spiffeid.h"
#include "sigil/x509.h"
#include "x509_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define KEYID_LEN 20 /* as x509_mint.c: leftmost 160 bits of SHA-256(subjectPublicKey) */
#define P256_POINT_LEN 65

struct sigil_x509_minter {
    X509 *issuer;         /* up-referenced */
    EVP_PKEY *issuer_key; /* up-referenced; read-only from here on, so shared by threads */
    EVP_PKEY *pub_tmpl;   /* a public P-256 key whose copies take a CSR's point */
    EVP_MD *sha256;       /* fetched once */
    uint8_t *issuer_der;  /* the issuer certificate, for the chain */
    size_t issuer_der_len;
    uint8_t *name_der; /* the issuer's subject, the leaves' issuer */
    size_t name_der_len;
    uint8_t aki[64]; /* authorityKeyIdentifier keyIdentifier contents */
    size_t aki_len;
    time_t issuer_not_after;
    char td[SIGIL_TRUST_DOMAIN_MAX + 1]; /* the issuer's trust domain, "" if it has no ID */
    bool fast;                           /* the issuer key is EC P-256 */
};

static int
fail(const char **why, int err, const char *text)
{
    if (why != NULL)
        *why = text;
    return err;
}

/* ---- strict DER reading (the CSR's frame) ---- */

struct der {
    const uint8_t *p, *end;
};

/* Reads one element with tag: definite minimal lengths of at most two bytes (a CSR is at most
 * 64 KiB), nothing past d->end. Sets *v, *vlen to its contents and *t, *tlen (may be NULL) to the
 * whole element. */
static bool
der_get(struct der *d, uint8_t tag, const uint8_t **v, size_t *vlen, const uint8_t **t,
        size_t *tlen)
{
    const uint8_t *s = d->p, *p = d->p;
    size_t left = (size_t)(d->end - p), len;

    if (left < 2 || p[0] != tag)
        return false;
    if (p[1] < 0x80) {
        len = p[1];
        p += 2;
    } else if (p[1] == 0x81) {
        if (left < 3 || p[2] < 0x80)
            return false;
        len = p[2];
        p += 3;
    } else if (p[1] == 0x82) {
        if (left < 4 || p[2] == 0)
            return false;
        len = (size_t)p[2] << 8 | p[3];
        p += 4;
    } else {
        return false;
    }
    if (len > (size_t)(d->end - p))
        return false;
    *v = p;
    *vlen = len;
    d->p = p + len;
    if (t != NULL) {
        *t = s;
        *tlen = (size_t)(d->p - s);
    }
    return true;
}

static const uint8_t P256_ALG[] = {0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
                                   0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const uint8_t ECDSA_SHA256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                       0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

int
sigil_x509_csr_frame(const uint8_t *p, size_t n, struct sigil_x509_csr_frame *out)
{
    struct der d = {p, p + n}, in, cri, spki;
    const uint8_t *v, *t;
    size_t vlen, tlen;

    memset(out, 0, sizeof *out);
    if (!der_get(&d, 0x30, &v, &vlen, NULL, NULL) || d.p != d.end)
        return SIGIL_ERR_UNSUPPORTED;
    in = (struct der){v, v + vlen};
    if (!der_get(&in, 0x30, &v, &vlen, &out->tbs, &out->tbs_len))
        return SIGIL_ERR_UNSUPPORTED;
    cri = (struct der){v, v + vlen};
    /* version 1 (0), then the subject, which we only need to be a Name OpenSSL reads */
    if (!der_get(&cri, 0x02, &v, &vlen, NULL, NULL) || vlen != 1 || v[0] != 0 ||
        !der_get(&cri, 0x30, &v, &vlen, &out->subject, &out->subject_len))
        return SIGIL_ERR_UNSUPPORTED;
    if (!der_get(&cri, 0x30, &v, &vlen, NULL, NULL))
        return SIGIL_ERR_UNSUPPORTED;
    spki = (struct der){v, v + vlen};
    if (!der_get(&spki, 0x30, &v, &vlen, &t, &tlen) || tlen != sizeof P256_ALG ||
        memcmp(t, P256_ALG, tlen) != 0 || !der_get(&spki, 0x03, &v, &vlen, NULL, NULL) ||
        spki.p != spki.end || vlen != P256_POINT_LEN + 1 || v[0] != 0 || v[1] != 0x04)
        return SIGIL_ERR_UNSUPPORTED;
    out->point = v + 1;
    /* [0] IMPLICIT SET OF Attribute: required (PKCS#10), usually empty */
    if (!der_get(&cri, 0xa0, &out->attrs, &out->attrs_len, NULL, NULL) || cri.p != cri.end)
        return SIGIL_ERR_UNSUPPORTED;
    if (!der_get(&in, 0x30, &v, &vlen, &t, &tlen) || tlen != sizeof ECDSA_SHA256 ||
        memcmp(t, ECDSA_SHA256, tlen) != 0 || !der_get(&in, 0x03, &v, &vlen, NULL, NULL) ||
        in.p != in.end || vlen < 2 || v[0] != 0)
        return SIGIL_ERR_UNSUPPORTED;
    out->sig = v + 1;
    out->sig_len = vlen - 1;
    return 0;
}

/* The SPIFFE ID a CSR requests in the one shape sigil_x509_csr_create (the agent) writes: one
 * extensionRequest attribute with one value, well-formed extensions, one subjectAltName
 * holding one URI. Returns 0 (id set), SIGIL_ERR_NOTFOUND without attributes, or
 * SIGIL_ERR_UNSUPPORTED for any other shape (frame_spiffeid then reads it with OpenSSL). */
static int
requested_id(const struct sigil_x509_csr_frame *f, struct sigil_spiffeid *id)
{
    static const uint8_t ext_req[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e};
    static const uint8_t san[] = {0x55, 0x1d, 0x11};
    struct der d = {f->attrs, f->attrs + f->attrs_len}, a, set, exts;
    const uint8_t *v, *uri = NULL;
    size_t vlen, urilen = 0;
    const char *why = NULL;

    if (f->attrs_len == 0)
        return SIGIL_ERR_NOTFOUND;
    if (!der_get(&d, 0x30, &v, &vlen, NULL, NULL) || d.p != d.end)
        return SIGIL_ERR_UNSUPPORTED;
    a = (struct der){v, v + vlen};
    if (!der_get(&a, 0x06, &v, &vlen, NULL, NULL) || vlen != sizeof ext_req ||
        memcmp(v, ext_req, vlen) != 0 || !der_get(&a, 0x31, &v, &vlen, NULL, NULL) || a.p != a.end)
        return SIGIL_ERR_UNSUPPORTED;
    set = (struct der){v, v + vlen};
    if (!der_get(&set, 0x30, &v, &vlen, NULL, NULL) || set.p != set.end)
        return SIGIL_ERR_UNSUPPORTED;
    exts = (struct der){v, v + vlen};
    while (exts.p != exts.end) {
        struct der e, names;
        const uint8_t *oid, *val;
        size_t oidlen, vallen;

        if (!der_get(&exts, 0x30, &v, &vlen, NULL, NULL))
            return SIGIL_ERR_UNSUPPORTED;
        e = (struct der){v, v + vlen};
        /* an OID of whole subidentifiers, an optional TRUE, the value */
        if (!der_get(&e, 0x06, &oid, &oidlen, NULL, NULL) || oidlen == 0 ||
            (oid[oidlen - 1] & 0x80) != 0 || oid[0] == 0x80)
            return SIGIL_ERR_UNSUPPORTED;
        for (size_t i = 1; i < oidlen; i++)
            if (oid[i] == 0x80 && (oid[i - 1] & 0x80) == 0)
                return SIGIL_ERR_UNSUPPORTED;
        if (e.end - e.p >= 3 && e.p[0] == 0x01) {
            if (e.p[1] != 1 || e.p[2] != 0xff)
                return SIGIL_ERR_UNSUPPORTED;
            e.p += 3;
        }
        if (!der_get(&e, 0x04, &val, &vallen, NULL, NULL) || e.p != e.end)
            return SIGIL_ERR_UNSUPPORTED;
        if (oidlen != sizeof san || memcmp(oid, san, oidlen) != 0)
            continue;
        if (uri != NULL) /* two SAN extensions */
            return SIGIL_ERR_UNSUPPORTED;
        e = (struct der){val, val + vallen};
        if (!der_get(&e, 0x30, &v, &vlen, NULL, NULL) || e.p != e.end)
            return SIGIL_ERR_UNSUPPORTED;
        names = (struct der){v, v + vlen};
        if (!der_get(&names, 0x86, &uri, &urilen, NULL, NULL) || names.p != names.end ||
            urilen == 0)
            return SIGIL_ERR_UNSUPPORTED;
    }
    if (uri == NULL || sigil_spiffeid_parse((const char *)uri, urilen, id, &why) != 0)
        return SIGIL_ERR_UNSUPPORTED;
    return 0;
}

/* The SPIFFE ID the CSR requests, read from its attributes the way sigil_x509_csr_spiffeid
 * reads a parsed request's, so both paths decide alike. Returns as that function, or
 * SIGIL_ERR_UNSUPPORTED if an attribute or the subject does not parse. */
static int
frame_spiffeid(const struct sigil_x509_csr_frame *f, struct sigil_spiffeid *out, const char **why)
{
    struct der d = {f->attrs, f->attrs + f->attrs_len};
    const unsigned char *q = f->subject;
    X509_NAME *name = NULL;
    X509_REQ *req = NULL;
    int r = SIGIL_ERR_UNSUPPORTED;

    /* OpenSSL reads the subject when it parses the CSR; an empty one needs no reading */
    if (f->subject_len != 2) {
        if ((name = d2i_X509_NAME(NULL, &q, (long)f->subject_len)) == NULL ||
            q != f->subject + f->subject_len)
            goto out;
    }
    if (f->attrs_len == 0) {
        r = fail(why, SIGIL_ERR_NOTFOUND, "CSR: requests no SPIFFE ID");
        goto out;
    }
    if ((req = X509_REQ_new()) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    while (d.p != d.end) {
        const uint8_t *v, *t;
        size_t vlen, tlen;
        X509_ATTRIBUTE *a;
        int ok;

        if (!der_get(&d, 0x30, &v, &vlen, &t, &tlen))
            goto out;
        q = t;
        if ((a = d2i_X509_ATTRIBUTE(NULL, &q, (long)tlen)) == NULL)
            goto out;
        ok = q == t + tlen && X509_REQ_add1_attr(req, a) == 1;
        X509_ATTRIBUTE_free(a);
        if (!ok)
            goto out;
    }
    r = sigil_x509_csr_spiffeid(req, out, why);
out:
    ERR_clear_error();
    X509_NAME_free(name);
    X509_REQ_free(req);
    return r;
}

int
sigil_x509_csr_frame_spiffeid(const struct sigil_x509_csr_frame *f, struct sigil_spiffeid *out,
                              const char **why)
{
    int r;

    /* frame_spiffeid reads a non-empty subject too, as parsing the whole CSR would */
    if (f->subject_len == 2 && (r = requested_id(f, out)) != SIGIL_ERR_UNSUPPORTED)
        return r == 0 ? 0 : fail(why, r, "CSR: requests no SPIFFE ID");
    return frame_spiffeid(f, out, why);
}

/* ---- per-thread state ---- */

/* What a thread keeps between SVIDs, since making each anew walks OpenSSL's whole name map
 * (EVP_PKEY_dup, EVP_PKEY_CTX_new_from_pkey): a public P-256 key that takes each CSR's point
 * in turn and its verify context; a signing context for the last issuer key used; and random
 * bytes for serials fetched in bulk (each RAND_bytes call locks the DRBG and checks for a
 * fork). */
struct tstate {
    EVP_PKEY *pub;
    EVP_PKEY_CTX *verify;
    EVP_PKEY *signer; /* up-referenced: its address names it */
    EVP_PKEY_CTX *sign;
    uint8_t rnd[512];
    size_t rnd_left;
};

static pthread_key_t tkey;
static pthread_once_t tonce = PTHREAD_ONCE_INIT;
static bool tkey_ok;

static void
tstate_free(void *p)
{
    struct tstate *t = p;

    EVP_PKEY_CTX_free(t->sign);
    EVP_PKEY_free(t->signer);
    EVP_PKEY_CTX_free(t->verify);
    EVP_PKEY_free(t->pub);
    OPENSSL_cleanse(t->rnd, sizeof t->rnd);
    free(t);
}

/* A forked child must not hand out its parent's serials. */
static void
tstate_forked(void)
{
    struct tstate *t = tkey_ok ? pthread_getspecific(tkey) : NULL;

    if (t != NULL)
        t->rnd_left = 0;
}

static void
tkey_init(void)
{
    tkey_ok = pthread_key_create(&tkey, tstate_free) == 0 &&
              pthread_atfork(NULL, NULL, tstate_forked) == 0;
}

/* This thread's state, made on first use from tmpl. NULL on failure. */
static struct tstate *
tstate_get(EVP_PKEY *tmpl)
{
    struct tstate *t;

    if (pthread_once(&tonce, tkey_init) != 0 || !tkey_ok)
        return NULL;
    if ((t = pthread_getspecific(tkey)) != NULL)
        return t;
    if ((t = calloc(1, sizeof *t)) == NULL)
        return NULL;
    if ((t->pub = EVP_PKEY_dup(tmpl)) == NULL ||
        (t->verify = EVP_PKEY_CTX_new_from_pkey(NULL, t->pub, NULL)) == NULL ||
        pthread_setspecific(tkey, t) != 0) {
        tstate_free(t);
        return NULL;
    }
    return t;
}

/* This thread's signing context for key, initialized. NULL on failure. */
static EVP_PKEY_CTX *
tstate_signer(struct tstate *t, EVP_PKEY *key)
{
    if (t->signer == key)
        return t->sign;
    EVP_PKEY_CTX_free(t->sign);
    EVP_PKEY_free(t->signer);
    t->sign = NULL;
    t->signer = NULL;
    if ((t->sign = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL)) == NULL ||
        EVP_PKEY_sign_init(t->sign) != 1) {
        EVP_PKEY_CTX_free(t->sign);
        t->sign = NULL;
        return NULL;
    }
    EVP_PKEY_up_ref(key);
    t->signer = key;
    return t->sign;
}

/* 16 random bytes for a serial from the thread's pool. */
static bool
serial_bytes(struct tstate *t, uint8_t out[16])
{
    if (t->rnd_left < 16) {
        if (RAND_bytes(t->rnd, sizeof t->rnd) != 1)
            return false;
        t->rnd_left = sizeof t->rnd;
    }
    t->rnd_left -= 16;
    memcpy(out, t->rnd + t->rnd_left, 16);
    OPENSSL_cleanse(t->rnd + t->rnd_left, 16);
    return true;
}

/* ---- the minter ---- */

void
sigil_x509_minter_free(struct sigil_x509_minter *m)
{
    if (m == NULL)
        return;
    X509_free(m->issuer);
    EVP_PKEY_free(m->issuer_key);
    EVP_PKEY_free(m->pub_tmpl);
    EVP_MD_free(m->sha256);
    OPENSSL_free(m->issuer_der);
    OPENSSL_free(m->name_der);
    free(m);
}

static bool
is_p256(const EVP_PKEY *k)
{
    char group[64];
    size_t glen = 0;

    if (EVP_PKEY_get_base_id(k) != EVP_PKEY_EC ||
        EVP_PKEY_get_group_name(k, group, sizeof group, &glen) != 1) {
        ERR_clear_error();
        return false;
    }
    return OBJ_txt2nid(group) == NID_X9_62_prime256v1;
}

/* A public-only P-256 key to copy (EVP_PKEY_dup) for each CSR's point. */
static EVP_PKEY *
pub_template(EVP_PKEY *issuer_key)
{
    uint8_t pt[P256_POINT_LEN];
    size_t len = 0;
    char group[] = "prime256v1";
    OSSL_PARAM ps[3];
    EVP_PKEY_CTX *c = NULL;
    EVP_PKEY *k = NULL;

    if (EVP_PKEY_get_octet_string_param(issuer_key, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt, &len) !=
            1 ||
        len != sizeof pt)
        goto out;
    ps[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    ps[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, len);
    ps[2] = OSSL_PARAM_construct_end();
    if ((c = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL)) == NULL ||
        EVP_PKEY_fromdata_init(c) != 1 || EVP_PKEY_fromdata(c, &k, EVP_PKEY_PUBLIC_KEY, ps) != 1)
        k = NULL;
out:
    EVP_PKEY_CTX_free(c);
    return k;
}

int
sigil_x509_minter_new(X509 *issuer, EVP_PKEY *issuer_key, struct sigil_x509_minter **out,
                      const char **why)
{
    struct sigil_x509_minter *m;
    const ASN1_OCTET_STRING *iski;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int r, len;

    *out = NULL;
    if ((m = calloc(1, sizeof *m)) == NULL)
        return fail(why, SIGIL_ERR_NOMEM, "out of memory");
    /* what sigil_x509_mint_leaf checks of its issuer on every call, once */
    if ((r = sigil_x509_issuer_read(issuer, issuer_key, m->td, &m->issuer_not_after, why)) != 0)
        goto out;
    X509_up_ref(issuer);
    m->issuer = issuer;
    EVP_PKEY_up_ref(issuer_key);
    m->issuer_key = issuer_key;
    r = fail(why, SIGIL_ERR_CRYPTO, "mint: cannot prepare the issuer");
    if ((len = i2d_X509(issuer, &m->issuer_der)) <= 0)
        goto out;
    m->issuer_der_len = (size_t)len;
    if ((len = i2d_X509_NAME(X509_get_subject_name(issuer), &m->name_der)) <= 0)
        goto out;
    m->name_der_len = (size_t)len;
    /* the AKI as x509_mint.c writes it: the issuer's SKI, else the hash of its key */
    if ((iski = X509_get0_subject_key_id(issuer)) != NULL) {
        if ((size_t)ASN1_STRING_length(iski) > sizeof m->aki)
            goto out;
        m->aki_len = (size_t)ASN1_STRING_length(iski);
        memcpy(m->aki, ASN1_STRING_get0_data(iski), m->aki_len);
    } else {
        if (X509_pubkey_digest(issuer, EVP_sha256(), md, &mdlen) != 1 || mdlen < KEYID_LEN)
            goto out;
        memcpy(m->aki, md, KEYID_LEN);
        m->aki_len = KEYID_LEN;
    }
    m->fast = is_p256(issuer_key);
    if (m->fast && ((m->pub_tmpl = pub_template(issuer_key)) == NULL ||
                    (m->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL))
        goto out;
    *out = m;
    m = NULL;
    r = 0;
out:
    ERR_clear_error();
    sigil_x509_minter_free(m);
    return r;
}

X509 *
sigil_x509_minter_issuer(const struct sigil_x509_minter *m)
{
    return m->issuer;
}

/* ---- writing the certificate ---- */

/* A bounded DER writer: lengths up to 65535 (an SVID is far smaller). */
struct w {
    uint8_t *p;
    size_t len, cap;
};

static void
put(struct w *w, const void *b, size_t n)
{
    if (w->len + n <= w->cap)
        memcpy(w->p + w->len, b, n);
    w->len += n;
}

static void
put_hdr(struct w *w, uint8_t tag, size_t len)
{
    uint8_t h[4] = {tag};
    size_t n;

    if (len < 0x80) {
        h[1] = (uint8_t)len;
        n = 2;
    } else if (len < 0x100) {
        h[1] = 0x81;
        h[2] = (uint8_t)len;
        n = 3;
    } else {
        h[1] = 0x82;
        h[2] = (uint8_t)(len >> 8);
        h[3] = (uint8_t)len;
        n = 4;
    }
    put(w, h, n);
}

static size_t
hdr_len(size_t len)
{
    return len < 0x80 ? 2 : len < 0x100 ? 3 : 4;
}

static void
digits(char *s, int v, int n)
{
    while (n-- > 0) {
        s[n] = (char)('0' + v % 10);
        v /= 10;
    }
}

/* UTCTime for 1950-2049, else GeneralizedTime, as ASN1_TIME_set (RFC 5280 §4.1.2.5). */
static bool
put_time(struct w *w, time_t t)
{
    struct tm tm;
    char s[16];
    int year, n = 0;

    if (gmtime_r(&t, &tm) == NULL)
        return false;
    year = tm.tm_year + 1900;
    if (year >= 1950 && year < 2050) {
        digits(s, year % 100, 2);
        n = 2;
    } else if (year >= 0 && year <= 9999) {
        digits(s, year, 4);
        n = 4;
    } else {
        return false;
    }
    digits(s + n, tm.tm_mon + 1, 2);
    digits(s + n + 2, tm.tm_mday, 2);
    digits(s + n + 4, tm.tm_hour, 2);
    digits(s + n + 6, tm.tm_min, 2);
    digits(s + n + 8, tm.tm_sec, 2);
    s[n + 10] = 'Z';
    n += 11;
    put_hdr(w, n == 13 ? 0x17 : 0x18, (size_t)n);
    put(w, s, (size_t)n);
    return true;
}

static const uint8_t EXT_BC_KU_EKU[] = {
    /* basicConstraints, critical, cA FALSE (the default, so absent) */
    0x30, 0x0c, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04, 0x02, 0x30, 0x00,
    /* keyUsage, critical, digitalSignature */
    0x30, 0x0e, 0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x07, 0x80,
    /* extKeyUsage serverAuth, clientAuth */
    0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d, 0x25, 0x04, 0x16, 0x30, 0x14, 0x06, 0x08, 0x2b, 0x06, 0x01,
    0x05, 0x05, 0x07, 0x03, 0x01, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02};

/* The SAN extension: critical (the subject is empty, X-2), the URI then the DNS names. */
static void
put_san(struct w *w, const char *uri, const char *const *dns, size_t ndns)
{
    static const uint8_t oid_crit[] = {0x06, 0x03, 0x55, 0x1d, 0x11, 0x01, 0x01, 0xff};
    size_t names = hdr_len(strlen(uri)) + strlen(uri), seq, oct;

    for (size_t i = 0; i < ndns; i++)
        names += hdr_len(strlen(dns[i])) + strlen(dns[i]);
    seq = hdr_len(names) + names;
    oct = hdr_len(seq) + seq;
    put_hdr(w, 0x30, sizeof oid_crit + oct);
    put(w, oid_crit, sizeof oid_crit);
    put_hdr(w, 0x04, seq);
    put_hdr(w, 0x30, names);
    put_hdr(w, 0x86, strlen(uri));
    put(w, uri, strlen(uri));
    for (size_t i = 0; i < ndns; i++) {
        put_hdr(w, 0x82, strlen(dns[i]));
        put(w, dns[i], strlen(dns[i]));
    }
}

/* The TBSCertificate of a leaf; w->len is its size (written only if it fits). */
static bool
put_tbs(struct w *w, const struct sigil_x509_minter *m, const uint8_t serial[16], time_t not_before,
        time_t not_after, const uint8_t point[P256_POINT_LEN], const uint8_t ski[KEYID_LEN],
        const char *uri, const char *const *dns, size_t ndns)
{
    static const uint8_t version[] = {0xa0, 0x03, 0x02, 0x01, 0x02};
    static const uint8_t oid_ski[] = {0x06, 0x03, 0x55, 0x1d, 0x0e};
    static const uint8_t oid_aki[] = {0x06, 0x03, 0x55, 0x1d, 0x23};
    struct w probe = {NULL, 0, 0};
    size_t body, exts, aki_seq;

    /* the extensions' size first (a dry run), then everything */
    aki_seq = 2 + m->aki_len + 2; /* [0] keyIdentifier inside a SEQUENCE (aki_len < 128) */
    put(&probe, EXT_BC_KU_EKU, sizeof EXT_BC_KU_EKU);
    put_san(&probe, uri, dns, ndns);
    exts = probe.len + 2 + sizeof oid_ski + 2 + 2 + KEYID_LEN +
           hdr_len(sizeof oid_aki + 2 + aki_seq) + sizeof oid_aki + 2 + aki_seq;
    body = sizeof version + 2 + 16 + sizeof ECDSA_SHA256 + m->name_der_len;
    probe.len = 0;
    if (!put_time(&probe, not_before) || !put_time(&probe, not_after))
        return false;
    body += hdr_len(probe.len) + probe.len;
    body += 2 + 2 + sizeof P256_ALG + 3 + P256_POINT_LEN; /* empty subject, SPKI */
    body += hdr_len(hdr_len(exts) + exts) + hdr_len(exts) + exts;
    put_hdr(w, 0x30, body);
    put(w, version, sizeof version);
    put_hdr(w, 0x02, 16);
    put(w, serial, 16);
    put(w, ECDSA_SHA256, sizeof ECDSA_SHA256);
    put(w, m->name_der, m->name_der_len);
    put_hdr(w, 0x30, probe.len);
    (void)put_time(w, not_before);
    (void)put_time(w, not_after);
    put_hdr(w, 0x30, 0); /* empty subject */
    put_hdr(w, 0x30, sizeof P256_ALG + 3 + P256_POINT_LEN);
    put(w, P256_ALG, sizeof P256_ALG);
    put_hdr(w, 0x03, P256_POINT_LEN + 1);
    put(w, "", 1);
    put(w, point, P256_POINT_LEN);
    put_hdr(w, 0xa3, hdr_len(exts) + exts);
    put_hdr(w, 0x30, exts);
    put(w, EXT_BC_KU_EKU, sizeof EXT_BC_KU_EKU);
    put_san(w, uri, dns, ndns);
    put_hdr(w, 0x30, sizeof oid_ski + 2 + 2 + KEYID_LEN);
    put(w, oid_ski, sizeof oid_ski);
    put_hdr(w, 0x04, 2 + KEYID_LEN);
    put_hdr(w, 0x04, KEYID_LEN);
    put(w, ski, KEYID_LEN);
    put_hdr(w, 0x30, sizeof oid_aki + 2 + aki_seq);
    put(w, oid_aki, sizeof oid_aki);
    put_hdr(w, 0x04, aki_seq);
    put_hdr(w, 0x30, aki_seq - 2);
    put_hdr(w, 0x80, m->aki_len);
    put(w, m->aki, m->aki_len);
    return true;
}

static void
serial_hex(const uint8_t *b, size_t n, char hex[41])
{
    static const char digits[] = "0123456789abcdef";
    size_t i = 0, o = 0;

    while (i + 1 < n && b[i] == 0) /* BN_bn2hex drops leading zero bytes */
        i++;
    for (; i < n && o + 2 < 41; i++) {
        hex[o++] = digits[b[i] >> 4];
        hex[o++] = digits[b[i] & 15];
    }
    hex[o] = '\0';
}

/* The fast path; SIGIL_ERR_UNSUPPORTED (or any failure) sends the caller to the general one,
 * which then gives the precise error. */
static int
fast_mint(const struct sigil_x509_minter *m, const struct sigil_x509_leaf_params *lp,
          const uint8_t *csr, size_t csr_len, struct sigil_buf *out, struct sigil_x509_minted *info)
{
    struct sigil_x509_csr_frame f;
    struct sigil_spiffeid id, want;
    const char *idwhy = NULL;
    uint8_t serial[16], ski[EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE], sig[80];
    uint8_t *tbs = NULL;
    unsigned int mdlen = 0, skilen = 0;
    size_t siglen = sizeof sig, start = out->len, cert_body;
    time_t not_after = lp->not_after;
    struct tstate *ts;
    EVP_PKEY_CTX *c = NULL;
    struct w w = {NULL, 0, 0}, o;
    int r = SIGIL_ERR_UNSUPPORTED;

    if (!m->fast || lp->subject.country != NULL || lp->subject.organization != NULL ||
        lp->subject.common_name != NULL || lp->n_dns > SIGIL_X509_DNS_MAX ||
        (lp->n_dns > 0 && lp->dns_names == NULL) || sigil_x509_csr_frame(csr, csr_len, &f) != 0)
        return SIGIL_ERR_UNSUPPORTED;
    /* the leaf's checks (sigil_x509_mint_leaf) */
    if (sigil_spiffeid_parse(lp->id->str, strnlen(lp->id->str, sizeof lp->id->str), &id, &idwhy) !=
            0 ||
        !sigil_spiffeid_has_path(&id) || (m->td[0] != '\0' && strcmp(m->td, id.td) != 0))
        return SIGIL_ERR_UNSUPPORTED;
    for (size_t i = 0; i < lp->n_dns; i++)
        if (lp->dns_names[i] == NULL || !sigil_x509_dns_name_ok(lp->dns_names[i]))
            return SIGIL_ERR_UNSUPPORTED;
    if (not_after > m->issuer_not_after)
        not_after = m->issuer_not_after;
    if (lp->not_before <= 0 || lp->not_after <= lp->not_before || not_after <= lp->not_before)
        return SIGIL_ERR_UNSUPPORTED;
    /* the CSR: what it asks for, then its proof of possession */
    r = sigil_x509_csr_frame_spiffeid(&f, &want, NULL);
    if ((r == 0 && strcmp(want.str, id.str) != 0) || (r != 0 && r != SIGIL_ERR_NOTFOUND))
        return SIGIL_ERR_UNSUPPORTED;
    r = SIGIL_ERR_UNSUPPORTED;
    if ((ts = tstate_get(m->pub_tmpl)) == NULL ||
        EVP_PKEY_set1_encoded_public_key(ts->pub, f.point, P256_POINT_LEN) != 1 ||
        EVP_Digest(f.tbs, f.tbs_len, md, &mdlen, m->sha256, NULL) != 1 ||
        /* initialized anew: the operation binds the key as it is now */
        EVP_PKEY_verify_init(ts->verify) != 1 ||
        EVP_PKEY_verify(ts->verify, f.sig, f.sig_len, md, mdlen) != 1)
        goto out;
    /* the certificate */
    if (EVP_Digest(f.point, P256_POINT_LEN, ski, &skilen, m->sha256, NULL) != 1 ||
        skilen < KEYID_LEN || !serial_bytes(ts, serial))
        goto out;
    serial[0] &= 0x7f; /* positive and never zero, as x509_mint.c */
    if (serial[0] == 0)
        serial[0] = 0x40;
    if (!put_tbs(&w, m, serial, lp->not_before, not_after, f.point, ski, id.str, lp->dns_names,
                 lp->n_dns) ||
        w.len > 60000 || (tbs = malloc(w.len)) == NULL)
        goto out;
    w = (struct w){tbs, 0, w.len};
    (void)put_tbs(&w, m, serial, lp->not_before, not_after, f.point, ski, id.str, lp->dns_names,
                  lp->n_dns);
    if (EVP_Digest(tbs, w.len, md, &mdlen, m->sha256, NULL) != 1 ||
        (c = tstate_signer(ts, m->issuer_key)) == NULL ||
        EVP_PKEY_sign(c, sig, &siglen, md, mdlen) != 1)
        goto out;
    cert_body = w.len + sizeof ECDSA_SHA256 + hdr_len(siglen + 1) + siglen + 1;
    if ((r = sigil_buf_reserve(out, 4 + cert_body)) != 0)
        goto out;
    o = (struct w){out->data + out->len, 0, 4 + cert_body};
    put_hdr(&o, 0x30, cert_body);
    put(&o, tbs, w.len);
    put(&o, ECDSA_SHA256, sizeof ECDSA_SHA256);
    put_hdr(&o, 0x03, siglen + 1);
    put(&o, "", 1);
    put(&o, sig, siglen);
    out->len += o.len;
    serial_hex(serial, sizeof serial, info->serial);
    info->not_after = not_after;
    r = 0;
out:
    if (r != 0)
        out->len = start;
    ERR_clear_error();
    free(tbs);
    return r;
}

/* The general path: OpenSSL objects, every check of x509_mint.c. */
static int
slow_mint(const struct sigil_x509_minter *m, const struct sigil_x509_leaf_params *lp,
          const uint8_t *csr, size_t csr_len, struct sigil_buf *out, struct sigil_x509_minted *info,
          const char **why)
{
    X509_REQ *req = NULL;
    X509 *cert = NULL;
    BIGNUM *bn = NULL;
    uint8_t sb[41];
    int r, n;

    if ((r = sigil_x509_csr_parse(csr, csr_len, &req, why)) != 0 ||
        (r = sigil_x509_mint_leaf_csr(lp, req, m->issuer, m->issuer_key, &cert, why)) != 0)
        goto out;
    if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL)) == NULL ||
        (n = BN_num_bytes(bn)) > 20 || BN_bn2bin(bn, sb) != n ||
        sigil_x509_cert_not_after(cert, &info->not_after) != 0) {
        r = fail(why, SIGIL_ERR_CRYPTO, "cannot read the minted SVID");
        goto out;
    }
    serial_hex(sb, (size_t)n, info->serial);
    if ((r = sigil_x509_cert_to_der(cert, out)) != 0)
        *why = "cannot encode the SVID";
out:
    ERR_clear_error();
    BN_free(bn);
    X509_free(cert);
    X509_REQ_free(req);
    return r;
}

int
sigil_x509_minter_leaf_csr(const struct sigil_x509_minter *m,
                           const struct sigil_x509_leaf_params *params, const uint8_t *csr,
                           size_t csr_len, struct sigil_buf *out, struct sigil_x509_minted *info,
                           const char **why)
{
    if (params == NULL || params->id == NULL || csr == NULL)
        return fail(why, SIGIL_ERR_INVALID, "mint: no CSR or SPIFFE ID");
    if (csr_len > SIGIL_X509_CSR_MAX)
        return fail(why, SIGIL_ERR_RANGE, "CSR: over 64 KiB");
    info->fast = fast_mint(m, params, csr, csr_len, out, info) == 0;
    if (info->fast)
        return 0;
    return slow_mint(m, params, csr, csr_len, out, info, why);
}

int
sigil_x509_minter_chain_tail(const struct sigil_x509_minter *m, struct sigil_buf *out)
{
    return sigil_buf_append(out, m->issuer_der, m->issuer_der_len);
}
