/* A growable byte buffer with hard caps, and a bounds-checked reader for untrusted bytes. */
#ifndef SIGIL_BUF_H
#define SIGIL_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sigil_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
};

/* Appends n bytes; returns 0 or SIGIL_ERR_NOMEM. The buffer owns its memory. */
int sigil_buf_append(struct sigil_buf *b, const void *p, size_t n);
/* Appends a NUL-terminated string without its NUL; returns 0 or SIGIL_ERR_NOMEM. */
int sigil_buf_append_str(struct sigil_buf *b, const char *s);
/* Appends printf-formatted text; returns 0 or SIGIL_ERR_NOMEM. */
int sigil_buf_appendf(struct sigil_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Ensures room for n more bytes; returns 0 or SIGIL_ERR_NOMEM. */
int sigil_buf_reserve(struct sigil_buf *b, size_t n);
/* Drops the first n bytes (n <= len). */
void sigil_buf_consume(struct sigil_buf *b, size_t n);
/* Returns a NUL-terminated copy of the contents (caller frees) or NULL. */
char *sigil_buf_strdup(const struct sigil_buf *b);
/* Frees the memory; the buffer is empty and reusable afterwards. */
void sigil_buf_free(struct sigil_buf *b);
/* Wipes the bytes (they may be secret), then frees them. */
void sigil_buf_freezero(struct sigil_buf *b);

/* A read cursor over bytes it does not own; every read is bounds-checked. */
struct sigil_reader {
    const uint8_t *p;
    size_t left;
};

/* Reads n bytes into out; returns false (and reads nothing) if fewer remain. */
bool sigil_reader_bytes(struct sigil_reader *r, void *out, size_t n);
/* Reads a big-endian uint32; returns false if fewer than 4 bytes remain. */
bool sigil_reader_u32be(struct sigil_reader *r, uint32_t *out);
/* Reads one byte; returns false if none remains. */
bool sigil_reader_u8(struct sigil_reader *r, uint8_t *out);

#endif
