/* Durations as people write them in config files and on command lines ("1h30m", "90s",
 * "500ms"), parsed strictly into milliseconds, and formatted back the same way. */
#ifndef SIGIL_DURATION_H
#define SIGIL_DURATION_H

#include <stddef.h>
#include <stdint.h>

/* Longest duration text accepted, in bytes. */
#define SIGIL_DURATION_MAX_LEN 64
/* Room sigil_duration_format needs for any value, NUL included. */
#define SIGIL_DURATION_FMT_LEN 40

/* Parses a NUL-terminated duration: one or more <digits><unit> groups with units d, h, m,
 * s, ms, each used once and from largest to smallest ("1h30m"), or a bare "0". Sets *ms and
 * returns 0, or returns SIGIL_ERR_INVALID / SIGIL_ERR_RANGE with *why set (static text). */
int sigil_duration_parse(const char *s, int64_t *ms, const char **why);
/* Like sigil_duration_parse over len bytes that need not be NUL-terminated (a NUL inside
 * is refused). */
int sigil_duration_parsen(const char *s, size_t len, int64_t *ms, const char **why);
/* Writes ms (>= 0) as the shortest text sigil_duration_parse reads back to the same value,
 * e.g. 5400000 -> "1h30m", 0 -> "0"; buf needs SIGIL_DURATION_FMT_LEN bytes. Returns buf,
 * or "" (in buf) for a negative ms. */
char *sigil_duration_format(int64_t ms, char *buf, size_t n);

#endif
