/* Base64, base64url (no padding) and hex, strict in what they accept. */
#ifndef SIGIL_ENCODING_H
#define SIGIL_ENCODING_H

#include <stddef.h>
#include <stdint.h>

/* Encodes n bytes as base64url without padding; returns a NUL-terminated string the
 * caller frees, or NULL on allocation failure. */
char *sigil_b64url_encode(const uint8_t *p, size_t n);
/* Encodes n bytes as standard base64 with padding; caller frees; NULL on failure. */
char *sigil_b64_encode(const uint8_t *p, size_t n);
/* Decodes unpadded base64url of length slen; any other character, padding or trailing
 * bits is SIGIL_ERR_INVALID. *out (caller frees) and *outlen are set on success. */
int sigil_b64url_decode(const char *s, size_t slen, uint8_t **out, size_t *outlen);
/* Decodes padded standard base64 (no whitespace); same contract as sigil_b64url_decode. */
int sigil_b64_decode(const char *s, size_t slen, uint8_t **out, size_t *outlen);
/* Writes 2n lowercase hex digits and a NUL into out (2n+1 bytes). */
void sigil_hex_encode(const uint8_t *p, size_t n, char *out);

#endif
