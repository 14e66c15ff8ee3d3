/* Strict UTF-8 decoding: the one decoder every escaper and validator of ours uses. */
#ifndef SIGIL_UTF8_H
#define SIGIL_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Decodes one UTF-8 sequence at s (n > 0 bytes available). Returns its length (1..4) and
 * sets *cp, or returns 0 if the bytes are not UTF-8: a bad lead or continuation byte, a
 * truncated sequence, an overlong form, a surrogate, or a value past U+10FFFF. */
size_t sigil_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

#endif
