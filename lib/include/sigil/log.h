/* Process-wide logging: one line per event, human-readable or JSON, written with a single
 * write(2) so threads never interleave within a line. Never log secrets: log a key's kid
 * or a hash, a token's jti, never the key or token itself. Every text a caller passes is
 * escaped, so a value holding "\n" or bad UTF-8 cannot forge a second log line. */
#ifndef SIGIL_LOG_H
#define SIGIL_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum sigil_log_level {
    SIGIL_LOG_DEBUG,
    SIGIL_LOG_INFO,
    SIGIL_LOG_WARN,
    SIGIL_LOG_ERROR,
};

enum sigil_log_format {
    SIGIL_LOG_HUMAN, /* 2026-11-24T03:31:16.123Z INFO  agent: attested node spiffe_id=... */
    SIGIL_LOG_JSON,  /* {"ts":"...","level":"info","component":"agent","msg":"...",...} */
};

/* One key=value pair of a structured log line; both borrowed for the call only. */
struct sigil_log_field {
    const char *key;
    const char *value;
};

/* Level names in enum order, NULL-terminated: "debug", "info", "warn", "error" (usable as
 * the choices of a SIGIL_CFG_ENUM config key). */
extern const char *const sigil_log_level_names[];
/* Format names in enum order, NULL-terminated: "human", "json". */
extern const char *const sigil_log_format_names[];

/* Sets the lowest level written (default SIGIL_LOG_INFO). Thread-safe. */
void sigil_log_set_level(enum sigil_log_level level);
/* Sets the line format (default SIGIL_LOG_HUMAN). Thread-safe. */
void sigil_log_set_format(enum sigil_log_format format);
/* Sets the file descriptor lines go to (default 2, stderr); the caller keeps owning it.
 * Lines up to PIPE_BUF bytes stay whole on a pipe; open a file with O_APPEND. */
void sigil_log_set_fd(int fd);
/* Returns true if a line at level would be written (to skip costly formatting). */
bool sigil_log_enabled(enum sigil_log_level level);
/* Parses a level name ("debug".."error"); returns 0 or SIGIL_ERR_INVALID with *why set. */
int sigil_log_level_parse(const char *s, enum sigil_log_level *out, const char **why);
/* Parses a format name ("human", "json"); returns 0 or SIGIL_ERR_INVALID with *why set. */
int sigil_log_format_parse(const char *s, enum sigil_log_format *out, const char **why);

/* Logs a printf-formatted message for component (e.g. "agent"; may be NULL). */
void sigil_log(enum sigil_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Logs msg with key/value string pairs ending in NULL:
 * sigil_log_kv(SIGIL_LOG_INFO, "agent", "attested node", "spiffe_id", id, NULL).
 * A NULL value is written as an empty string; at most 32 pairs are written. */
void sigil_log_kv(enum sigil_log_level level, const char *component, const char *msg, ...)
    __attribute__((sentinel));
/* Logs a printf-formatted message with n fields: the general form of the two above. */
void sigil_log_fields(enum sigil_log_level level, const char *component,
                      const struct sigil_log_field *fields, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

#endif
