/* Schema-driven YAML config files: a daemon declares each key once in a static table
 * (type, bounds, default, offset into its struct, one line of doc) and gets strict loading
 * with errors that name file, line and key, plus a documented example file for free. */
#ifndef SIGIL_CONFIG_H
#define SIGIL_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Largest config file or string accepted, in bytes. */
#define SIGIL_CONFIG_MAX_SIZE (1024 * 1024)

enum sigil_config_type {
    SIGIL_CFG_SECTION,  /* no value: documents the section named by key (optional) */
    SIGIL_CFG_STRING,   /* char * (owned by the struct), any scalar without a NUL byte */
    SIGIL_CFG_BOOL,     /* bool: true or false */
    SIGIL_CFG_INT64,    /* int64_t, decimal, within min..max */
    SIGIL_CFG_DURATION, /* int64_t milliseconds from "1h30m" (sigil/duration.h), min..max */
    SIGIL_CFG_ENUM,     /* int: index of the value in choices */
    SIGIL_CFG_STRLIST,  /* struct sigil_config_strlist: a YAML sequence of strings */
    SIGIL_CFG_MODE,     /* mode_t from octal with a leading 0 ("0640"), at most 0777 */
    SIGIL_CFG_SIZE,     /* uint64_t bytes from "4MiB" (B KiB MiB GiB TiB kB MB GB TB), min..max */
};

/* A list of strings; items and the array are owned by the struct holding it. */
struct sigil_config_strlist {
    char **items;
    size_t n;
};

/* One key of a schema. A schema is an array of these ending with SIGIL_CONFIG_END. */
struct sigil_config_field {
    const char *key; /* dotted path, "server.bind_port"; parents are sections */
    enum sigil_config_type type;
    size_t offset;              /* offsetof(struct yours, member) */
    bool required;              /* missing is an error (no default then) */
    const char *def;            /* default as YAML text ("1h", "[a, b]"); NULL: zero/empty */
    int64_t min, max;           /* INT64, DURATION, SIZE bounds; both 0: no bounds */
    const char *const *choices; /* ENUM: NULL-terminated names */
    const char *doc;            /* one line for people */
};

#define SIGIL_CONFIG_END                                                                           \
    {                                                                                              \
        .key = NULL                                                                                \
    }

/* A load failure for people: text is "file:line: key \"k\": what went wrong". */
struct sigil_config_error {
    int line;       /* 1-based; 0 when there is no line (e.g. file unreadable) */
    char key[160];  /* the dotted key concerned, "" if none */
    char text[512]; /* the whole message, NUL-terminated */
};

/* Reads path (at most SIGIL_CONFIG_MAX_SIZE) and fills out per schema. On success returns 0
 * and out's fields own their strings (free with sigil_config_free). On failure returns a
 * negative SIGIL_ERR_*, fills *err with the first error and leaves out's fields zeroed. */
int sigil_config_load_file(const struct sigil_config_field *schema, const char *path, void *out,
                           struct sigil_config_error *err);
/* Like sigil_config_load_file over len bytes of YAML; name stands for the file in errors. */
int sigil_config_load_string(const struct sigil_config_field *schema, const char *name,
                             const char *yaml, size_t len, void *out,
                             struct sigil_config_error *err);
/* Frees every string and list field of out that schema names and zeroes them. */
void sigil_config_free(const struct sigil_config_field *schema, void *out);
/* Checks a schema for mistakes (bad or duplicate keys, a key both section and value,
 * non-contiguous sections, bad defaults); returns 0 or SIGIL_ERR_INVALID with err set. */
int sigil_config_check_schema(const struct sigil_config_field *schema,
                              struct sigil_config_error *err);
/* Writes the schema as a commented example YAML file: every key, its type, bounds,
 * default and doc. Returns 0 or SIGIL_ERR_IO. */
int sigil_config_print_doc(const struct sigil_config_field *schema, FILE *fp);

#endif
