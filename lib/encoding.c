/* Base64 flavours over libsodium's constant-time codecs: strict, no whitespace, no
 * lenient padding, so that one input has exactly one accepted spelling. */
#include "sigil/encoding.h"
#include "sigil/err.h"

#include <stdlib.h>

#include <sodium.h>

static char *
encode(const uint8_t *p, size_t n, int variant)
{
    size_t len = sodium_base64_encoded_len(n, variant);
    char *s = malloc(len);

    if (s == NULL)
        return NULL;
    sodium_bin2base64(s, len, p, n, variant);
    return s;
}

static int
decode(const char *s, size_t slen, uint8_t **out, size_t *outlen, int variant)
{
    size_t cap = slen / 4 * 3 + 3, n = 0;
    const char *end = NULL;
    uint8_t *p;

    *out = NULL;
    *outlen = 0;
    if ((p = malloc(cap ? cap : 1)) == NULL)
        return SIGIL_ERR_NOMEM;
    if (sodium_base642bin(p, cap, s, slen, NULL, &n, &end, variant) != 0 || end != s + slen) {
        free(p);
        return SIGIL_ERR_INVALID;
    }
    *out = p;
    *outlen = n;
    return 0;
}

char *
sigil_b64url_encode(const uint8_t *p, size_t n)
{
    return encode(p, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

char *
sigil_b64_encode(const uint8_t *p, size_t n)
{
    return encode(p, n, sodium_base64_VARIANT_ORIGINAL);
}

int
sigil_b64url_decode(const char *s, size_t slen, uint8_t **out, size_t *outlen)
{
    return decode(s, slen, out, outlen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

int
sigil_b64_decode(const char *s, size_t slen, uint8_t **out, size_t *outlen)
{
    return decode(s, slen, out, outlen, sodium_base64_VARIANT_ORIGINAL);
}

void
sigil_hex_encode(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}
