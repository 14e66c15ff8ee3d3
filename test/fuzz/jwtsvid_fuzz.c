/* Fuzzes JWT-SVID validation against a fixed bundle set (one P-256 key, kid "fuzz", trust
 * domain example.org) and the insecure parse: a failure must say why and leave nothing
 * behind; a token that validates must parse insecurely to the same subject and expiry, and
 * must belong to the one trust domain we hold a bundle for (J-10). Any mismatch aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "sigil/bundle.h"
#include "sigil/err.h"
#include "sigil/jwtsvid.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

#define NOW ((time_t)1700000000)

/* A test key, public by design: the seeds in corpus/jwtsvid_fuzz are signed with it. */
static const char key_pem[] = "-----BEGIN PRIVATE KEY-----\n"
                              "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgt6lR6p78v1utq3Y8\n"
                              "3/3PQGy/nSn5pF9vWyVV3D7vr82hRANCAAQoO0W7xdW3hEQCoz6mLjo/OcSe39Ko\n"
                              "QAJshTF1QgYva55qg80mXM3gqLMOawP81sW3ZKxncHklxZKxevYeMzYB\n"
                              "-----END PRIVATE KEY-----\n";

static struct sigil_bundle_set *bundles;

static void
init(void)
{
    BIO *bio = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    struct sigil_bundle *b = NULL;
    const char *why;

    CHECK(key != NULL);
    CHECK(sigil_bundle_set_new(&bundles) == 0);
    CHECK(sigil_bundle_new("example.org", &b, &why) == 0);
    CHECK(sigil_bundle_jwt_add(b, "fuzz", key, &why) == 0);
    CHECK(sigil_bundle_set_put(bundles, b) == 0);
    EVP_PKEY_free(key);
    BIO_free(bio);
}

static void
check_failure(int r, const char *why, const struct sigil_jwtsvid *s)
{
    CHECK(r < 0 && r != SIGIL_ERR_INTERNAL);
    CHECK(why != NULL && why[0] != '\0');
    CHECK(s->claims == NULL && s->id.len == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sigil_jwtsvid v, p; /* 3.4 KiB each: off the stack */
    const char *tok = (const char *)data, *why = NULL;
    int rv, rp;

    if (bundles == NULL)
        init();
    rv = sigil_jwtsvid_validate(tok, size, "fuzz-aud", bundles, NOW, 60, &v, &why);
    if (rv != 0)
        check_failure(rv, why, &v);
    why = NULL;
    rp = sigil_jwtsvid_parse_insecure(tok, size, &p, &why);
    if (rp != 0)
        check_failure(rp, why, &p);
    if (rv == 0) {
        CHECK(rp == 0);
        CHECK(strcmp(v.id.str, p.id.str) == 0 && v.exp == p.exp);
        CHECK(strcmp(v.id.td, "example.org") == 0 && strcmp(v.kid, "fuzz") == 0);
        CHECK(sigil_jwtsvid_has_audience(&v, "fuzz-aud"));
        CHECK(v.exp >= NOW - 60);
    }
    sigil_jwtsvid_clear(&v);
    sigil_jwtsvid_clear(&p);
    return 0;
}
