/* Growable buffers and bounds-checked readers: every untrusted byte goes through these. */
#include "sigil/buf.h"
#include "sigil/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

int
sigil_buf_reserve(struct sigil_buf *b, size_t n)
{
    if (n <= b->cap - b->len)
        return 0;
    if (n > SIZE_MAX / 2 - b->len)
        return SIGIL_ERR_NOMEM;
    size_t want = b->len + n;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < want)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL)
        return SIGIL_ERR_NOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int
sigil_buf_append(struct sigil_buf *b, const void *p, size_t n)
{
    int r;

    if (n == 0)
        return 0;
    if ((r = sigil_buf_reserve(b, n)) != 0)
        return r;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int
sigil_buf_append_str(struct sigil_buf *b, const char *s)
{
    return sigil_buf_append(b, s, strlen(s));
}

int
sigil_buf_appendf(struct sigil_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n, r;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return SIGIL_ERR_INVALID;
    if ((r = sigil_buf_reserve(b, (size_t)n + 1)) != 0)
        return r;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void
sigil_buf_consume(struct sigil_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

char *
sigil_buf_strdup(const struct sigil_buf *b)
{
    char *s = malloc(b->len + 1);

    if (s == NULL)
        return NULL;
    if (b->len)
        memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    return s;
}

void
sigil_buf_free(struct sigil_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void
sigil_buf_freezero(struct sigil_buf *b)
{
    if (b->data != NULL)
        sodium_memzero(b->data, b->cap);
    sigil_buf_free(b);
}

bool
sigil_reader_bytes(struct sigil_reader *r, void *out, size_t n)
{
    if (n > r->left)
        return false;
    if (n)
        memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
    return true;
}

bool
sigil_reader_u32be(struct sigil_reader *r, uint32_t *out)
{
    uint8_t b[4];

    if (!sigil_reader_bytes(r, b, 4))
        return false;
    *out = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return true;
}

bool
sigil_reader_u8(struct sigil_reader *r, uint8_t *out)
{
    return sigil_reader_bytes(r, out, 1);
}
