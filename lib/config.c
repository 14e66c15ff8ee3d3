/* Loads YAML config files against a static schema. libfyaml builds the tree; everything
 * after that is ours: scalars are read as text by strict per-type parsers (no YAML 1.1
 * "yes"/"on" booleans, no implicit octal), unknown, duplicate and missing keys are errors
 * naming file, line and key, and nothing of the file is trusted to be printable. */
#include "sigil/config.h"
#include "sigil/utf8.h"
#include "sigil/duration.h"
#include "sigil/err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <libfyaml.h>

/* A key in a file longer than this cannot be in any schema. */
#define MAX_YAML_KEY 64
/* Schema keys (dotted) are at most this long, so prefix + "." + key always fits. */
#define MAX_SCHEMA_KEY 128
#define PATH_BUF (MAX_SCHEMA_KEY + 1 + MAX_YAML_KEY + 1)
/* How much of an offending value an error message quotes. */
#define SHOW_MAX 48

/* A problem found while reading one value: the caller adds file and key. */
struct problem {
    int line; /* 1-based line of the offending node, 0: use the key's line */
    char msg[320];
};

/* Storage for any one value, used when checking defaults without a caller's struct. */
union scratch {
    char *str;
    bool b;
    int64_t i64;
    uint64_t u64;
    int e;
    mode_t mode;
    struct sigil_config_strlist list;
};

/* A key met in one mapping, to catch duplicates and say where the first one was. */
struct seen_key {
    const char *p;
    size_t n;
    int line;
};

struct loader {
    const struct sigil_config_field *schema;
    size_t nfields;
    const char *name;
    char *out;
    bool *set; /* per field: given by the file */
    struct sigil_config_error *err;
};

/* --- messages ------------------------------------------------------------------------- */

/* Copies untrusted bytes for display: printable ASCII as is, quotes and backslashes
 * escaped, everything else as \xNN, cut after SHOW_MAX bytes, so an error message can
 * neither break a terminal nor hide what the file really says. */
static void
show(char *dst, size_t dstlen, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (dstlen == 0)
        return;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char tmp[5];
        size_t tn;

        if (i == SHOW_MAX) {
            if (o + 3 < dstlen) {
                memcpy(dst + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (c == '"' || c == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)c;
            tn = 2;
        } else if (c >= 0x20 && c < 0x7f) {
            tmp[0] = (char)c;
            tn = 1;
        } else {
            tmp[0] = '\\';
            tmp[1] = 'x';
            tmp[2] = hex[c >> 4];
            tmp[3] = hex[c & 15];
            tn = 4;
        }
        if (o + tn >= dstlen)
            break;
        memcpy(dst + o, tmp, tn);
        o += tn;
    }
    dst[o] = '\0';
}

static void problem_set(struct problem *pb, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
problem_set(struct problem *pb, int line, const char *fmt, ...)
{
    va_list ap;

    pb->line = line;
    va_start(ap, fmt);
    vsnprintf(pb->msg, sizeof pb->msg, fmt, ap);
    va_end(ap);
}

/* Fills *err as "name:line: key \"key\": msg"; key is already display-safe. */
static int fail(struct sigil_config_error *err, const char *name, int line, const char *key,
                int code, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int
fail(struct sigil_config_error *err, const char *name, int line, const char *key, int code,
     const char *fmt, ...)
{
    char msg[384], where[96];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err->line = line;
    snprintf(err->key, sizeof err->key, "%s", key ? key : "");
    if (line > 0)
        snprintf(where, sizeof where, "%s:%d", name, line);
    else
        snprintf(where, sizeof where, "%s", name);
    if (key != NULL && key[0] != '\0')
        snprintf(err->text, sizeof err->text, "%s: key \"%s\": %s", where, key, msg);
    else
        snprintf(err->text, sizeof err->text, "%s: %s", where, msg);
    return code;
}

/* --- small parsers over untrusted text ------------------------------------------------ */

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool
text_eq(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

/* Decimal int64: optional '-', no '+', no leading zeros, no spaces. */
static bool
parse_int64(const char *s, size_t n, int64_t *out)
{
    bool neg = false;
    int64_t v = 0;
    size_t i = 0;

    if (n > 0 && s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == n || n - i > 19 || (s[i] == '0' && n - i > 1))
        return false;
    for (; i < n; i++) {
        if (!is_digit(s[i]))
            return false;
        /* accumulate negatively so INT64_MIN is reachable */
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_sub_overflow(v, s[i] - '0', &v))
            return false;
    }
    if (!neg) {
        if (v == INT64_MIN)
            return false;
        v = -v;
    }
    *out = v;
    return true;
}

struct size_unit {
    const char *name;
    uint64_t mult;
};

static const struct size_unit size_units[] = {
    {"B", 1},
    {"KiB", 1ULL << 10},
    {"MiB", 1ULL << 20},
    {"GiB", 1ULL << 30},
    {"TiB", 1ULL << 40},
    {"kB", 1000ULL},
    {"MB", 1000000ULL},
    {"GB", 1000000000ULL},
    {"TB", 1000000000000ULL},
};

/* "4MiB", "512kB", "1024" (bytes); one number, at most one unit, no spaces. */
static bool
parse_size(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;

    while (i < n && is_digit(s[i])) {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, s[i] - '0', &v))
            return false;
        i++;
    }
    if (i == 0 || (s[0] == '0' && i > 1))
        return false;
    if (i < n) {
        bool found = false;

        for (size_t u = 0; u < sizeof size_units / sizeof size_units[0]; u++) {
            if (text_eq(s + i, n - i, size_units[u].name)) {
                if (__builtin_mul_overflow(v, size_units[u].mult, &v))
                    return false;
                found = true;
                break;
            }
        }
        if (!found)
            return false;
    }
    if (v > INT64_MAX)
        return false;
    *out = v;
    return true;
}

/* Octal with a leading zero ("0640", "0o640"), at most 0777. */
static bool
parse_mode(const char *s, size_t n, mode_t *out)
{
    unsigned v = 0;
    size_t i = 1;

    if (n < 1 || n > 6 || s[0] != '0')
        return false;
    if (n > 1 && s[1] == 'o') {
        i = 2;
        if (n == 2)
            return false;
    }
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '7')
            return false;
        v = v * 8 + (unsigned)(s[i] - '0');
    }
    if (v > 0777)
        return false;
    *out = (mode_t)v;
    return true;
}

/* Writes a byte count the way the schema author would: "4MiB" when exact, else bytes. */
static void
size_format(uint64_t v, char *buf, size_t n)
{
    static const struct size_unit bin[] = {
        {"TiB", 1ULL << 40}, {"GiB", 1ULL << 30}, {"MiB", 1ULL << 20}, {"KiB", 1ULL << 10}};

    for (size_t i = 0; i < sizeof bin / sizeof bin[0]; i++) {
        if (v != 0 && v % bin[i].mult == 0) {
            snprintf(buf, n, "%llu%s", (unsigned long long)(v / bin[i].mult), bin[i].name);
            return;
        }
    }
    snprintf(buf, n, "%llu", (unsigned long long)v);
}

/* --- field storage -------------------------------------------------------------------- */

static size_t
field_size(enum sigil_config_type t)
{
    switch (t) {
    case SIGIL_CFG_SECTION:
        return 0;
    case SIGIL_CFG_STRING:
        return sizeof(char *);
    case SIGIL_CFG_BOOL:
        return sizeof(bool);
    case SIGIL_CFG_INT64:
    case SIGIL_CFG_DURATION:
        return sizeof(int64_t);
    case SIGIL_CFG_ENUM:
        return sizeof(int);
    case SIGIL_CFG_STRLIST:
        return sizeof(struct sigil_config_strlist);
    case SIGIL_CFG_MODE:
        return sizeof(mode_t);
    case SIGIL_CFG_SIZE:
        return sizeof(uint64_t);
    }
    return 0;
}

static void
free_value(enum sigil_config_type t, void *dst)
{
    if (t == SIGIL_CFG_STRING) {
        char **s = dst;

        free(*s);
        *s = NULL;
    } else if (t == SIGIL_CFG_STRLIST) {
        struct sigil_config_strlist *l = dst;

        for (size_t i = 0; i < l->n; i++)
            free(l->items[i]);
        free(l->items);
        l->items = NULL;
        l->n = 0;
    }
}

static size_t
count_fields(const struct sigil_config_field *schema)
{
    size_t n = 0;

    while (schema[n].key != NULL)
        n++;
    return n;
}

static void
zero_fields(const struct sigil_config_field *schema, size_t nfields, char *out)
{
    for (size_t i = 0; i < nfields; i++)
        memset(out + schema[i].offset, 0, field_size(schema[i].type));
}

void
sigil_config_free(const struct sigil_config_field *schema, void *out)
{
    size_t n = count_fields(schema);

    for (size_t i = 0; i < n; i++)
        free_value(schema[i].type, (char *)out + schema[i].offset);
    zero_fields(schema, n, out);
}

/* --- libfyaml glue -------------------------------------------------------------------- */

/* 1-based line where a node starts, found through its first scalar; 0 if none. */
static int
node_line(struct fy_node *n)
{
    for (int depth = 0; n != NULL && depth < 256; depth++) {
        void *it = NULL;

        switch (fy_node_get_type(n)) {
        case FYNT_SCALAR: {
            struct fy_token *t = fy_node_get_scalar_token(n);
            const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;

            return m ? m->line + 1 : 0;
        }
        case FYNT_SEQUENCE:
            n = fy_node_sequence_iterate(n, &it);
            break;
        case FYNT_MAPPING: {
            struct fy_node_pair *p = fy_node_mapping_iterate(n, &it);

            n = p ? fy_node_pair_key(p) : NULL;
            break;
        }
        }
    }
    return 0;
}

static void
diag_discard(struct fy_diag *diag, void *user, const char *buf, size_t len)
{
    (void)diag;
    (void)user;
    (void)buf;
    (void)len;
}

struct yaml {
    struct fy_diag *diag;
    struct fy_parser *parser;
    struct fy_document *doc; /* NULL for an empty stream */
};

static void
yaml_close(struct yaml *y)
{
    if (y->doc != NULL)
        fy_parse_document_destroy(y->parser, y->doc);
    if (y->parser != NULL)
        fy_parser_destroy(y->parser);
    if (y->diag != NULL)
        fy_diag_destroy(y->diag);
    memset(y, 0, sizeof *y);
}

/* Reports libfyaml's first collected error as "name:line: invalid YAML: ...". */
static int
yaml_fail(struct yaml *y, const char *name, struct sigil_config_error *err)
{
    void *it = NULL;
    struct fy_diag_error *e = fy_diag_errors_iterate(y->diag, &it);
    char msg[200];

    if (e == NULL)
        return fail(err, name, 0, NULL, SIGIL_ERR_INVALID, "invalid YAML");
    show(msg, sizeof msg, e->msg ? e->msg : "", e->msg ? strlen(e->msg) : 0);
    return fail(err, name, e->line >= 0 ? e->line + 1 : 0, NULL, SIGIL_ERR_INVALID,
                "invalid YAML: %s", msg);
}

/* Checks the raw text before libfyaml sees it: strict UTF-8, only YAML's printable
 * characters (no C0/C1 controls but tab and line breaks, no U+FFFE/U+FFFF), and no
 * directive lines ("%YAML", "%TAG"), which a config file never needs. Debian's libfyaml
 * 0.7.12 loops forever or reads out of bounds on bad UTF-8 in directives and scalars
 * (upstream issues #101, #175, #318, #370), so those inputs stop here with a line. */
static int
precheck(const char *text, size_t len, const char *name, struct sigil_config_error *err)
{
    const unsigned char *p = (const unsigned char *)text;
    bool line_start = true;
    int line = 1;
    size_t i = 0;

    if (len >= 3 && p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf)
        i = 3; /* a byte order mark may open the file */
    while (i < len) {
        uint32_t cp;
        size_t n;

        if (line_start && p[i] == '%')
            return fail(err, name, line, NULL, SIGIL_ERR_INVALID,
                        "YAML directives (%%...) are not supported in config files");
        line_start = false;
        if (p[i] == '\n' || p[i] == '\r') {
            if (p[i] == '\n' || i + 1 == len || p[i + 1] != '\n')
                line++;
            line_start = true;
            i++;
            continue;
        }
        if ((n = sigil_utf8_decode(p + i, len - i, &cp)) == 0)
            return fail(err, name, line, NULL, SIGIL_ERR_INVALID, "not valid UTF-8 (byte 0x%02x)",
                        p[i]);
        if ((cp < 0x20 && cp != '\t') || (cp >= 0x7f && cp <= 0x9f && cp != 0x85) || cp == 0xfffe ||
            cp == 0xffff)
            return fail(err, name, line, NULL, SIGIL_ERR_INVALID,
                        "control character U+%04X is not allowed", (unsigned)cp);
        i += n;
    }
    return 0;
}

/* Parses exactly one YAML document (or none) from text. Duplicate keys are let through
 * here so that the walk can report them with their key and both lines. */
static int
yaml_open(struct yaml *y, const char *text, size_t len, const char *name,
          struct sigil_config_error *err)
{
    struct fy_diag_cfg dcfg;
    struct fy_parse_cfg pcfg;
    struct fy_document *extra;
    int r;

    memset(y, 0, sizeof *y);
    if ((r = precheck(text, len, name, err)) != 0)
        return r;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = diag_discard;
    dcfg.colorize = false;
    if ((y->diag = fy_diag_create(&dcfg)) == NULL)
        return fail(err, name, 0, NULL, SIGIL_ERR_NOMEM, "out of memory");
    fy_diag_set_collect_errors(y->diag, true);
    memset(&pcfg, 0, sizeof pcfg);
    pcfg.flags = FYPCF_QUIET | FYPCF_ALLOW_DUPLICATE_KEYS | FYPCF_JSON_NONE;
    pcfg.diag = y->diag;
    if ((y->parser = fy_parser_create(&pcfg)) == NULL) {
        r = fail(err, name, 0, NULL, SIGIL_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (fy_parser_set_string(y->parser, text, len) != 0) {
        r = fail(err, name, 0, NULL, SIGIL_ERR_NOMEM, "out of memory");
        goto out;
    }
    y->doc = fy_parse_load_document(y->parser);
    if (fy_diag_got_error(y->diag)) {
        r = yaml_fail(y, name, err);
        goto out;
    }
    if (y->doc != NULL && (extra = fy_parse_load_document(y->parser)) != NULL) {
        int line = node_line(fy_document_root(extra));

        fy_parse_document_destroy(y->parser, extra);
        r = fail(err, name, line, NULL, SIGIL_ERR_INVALID,
                 "more than one YAML document (a config file is one document)");
        goto out;
    }
    if (fy_diag_got_error(y->diag)) {
        r = yaml_fail(y, name, err);
        goto out;
    }
    r = 0;
out:
    if (r != 0)
        yaml_close(y);
    return r;
}

/* Aliases and tags have no place in a config file; say so instead of guessing. */
static bool
node_plain_ok(struct fy_node *n, struct problem *pb, int line)
{
    size_t tlen;

    if (fy_node_is_alias(n)) {
        problem_set(pb, line, "aliases (*name) are not supported in config files");
        return false;
    }
    if (fy_node_get_tag(n, &tlen) != NULL) {
        problem_set(pb, line, "tags (!name) are not supported in config files");
        return false;
    }
    return true;
}

/* A plain empty, "~" or "null" scalar: YAML's way of writing "no value". */
static bool
is_null(struct fy_node *n)
{
    size_t len;
    const char *s;

    if (fy_node_get_type(n) != FYNT_SCALAR || fy_node_get_style(n) != FYNS_PLAIN)
        return false;
    s = fy_node_get_scalar(n, &len);
    return s == NULL || len == 0 || text_eq(s, len, "~") || text_eq(s, len, "null") ||
           text_eq(s, len, "Null") || text_eq(s, len, "NULL");
}

static const char *
kind_name(struct fy_node *n)
{
    switch (fy_node_get_type(n)) {
    case FYNT_SEQUENCE:
        return "a list";
    case FYNT_MAPPING:
        return "a section (mapping)";
    case FYNT_SCALAR:
        break;
    }
    return "a value";
}

/* --- values --------------------------------------------------------------------------- */

/* What a field expects, for error messages and the printed documentation. */
static void
describe(const struct sigil_config_field *f, char *buf, size_t n)
{
    char lo[SIGIL_DURATION_FMT_LEN], hi[SIGIL_DURATION_FMT_LEN];
    bool bounded = f->min != 0 || f->max != 0;

    switch (f->type) {
    case SIGIL_CFG_SECTION:
        snprintf(buf, n, "a section");
        break;
    case SIGIL_CFG_STRING:
        snprintf(buf, n, "a string");
        break;
    case SIGIL_CFG_BOOL:
        snprintf(buf, n, "true or false");
        break;
    case SIGIL_CFG_INT64:
        if (bounded)
            snprintf(buf, n, "an integer %lld..%lld", (long long)f->min, (long long)f->max);
        else
            snprintf(buf, n, "an integer");
        break;
    case SIGIL_CFG_DURATION:
        if (bounded)
            snprintf(buf, n, "a duration %s..%s", sigil_duration_format(f->min, lo, sizeof lo),
                     sigil_duration_format(f->max, hi, sizeof hi));
        else
            snprintf(buf, n, "a duration like 90s, 30m or 1h30m");
        break;
    case SIGIL_CFG_ENUM: {
        size_t o = (size_t)snprintf(buf, n, "one of ");

        for (size_t i = 0; f->choices != NULL && f->choices[i] != NULL && o < n; i++)
            o += (size_t)snprintf(buf + o, n - o, "%s\"%s\"", i ? ", " : "", f->choices[i]);
        break;
    }
    case SIGIL_CFG_STRLIST:
        snprintf(buf, n, "a list of strings");
        break;
    case SIGIL_CFG_MODE:
        snprintf(buf, n, "an octal file mode like 0640 (at most 0777)");
        break;
    case SIGIL_CFG_SIZE:
        if (bounded) {
            size_format((uint64_t)f->min, lo, sizeof lo);
            size_format((uint64_t)f->max, hi, sizeof hi);
            snprintf(buf, n, "a size %s..%s", lo, hi);
        } else {
            snprintf(buf, n, "a size like 512KiB or 4MiB");
        }
        break;
    }
}

/* Copies a scalar into a new string; refuses a NUL inside (C strings would cut it). */
static int
dup_scalar(const char *s, size_t len, char **out)
{
    if (memchr(s, '\0', len) != NULL)
        return SIGIL_ERR_INVALID;
    if ((*out = strndup(s, len)) == NULL)
        return SIGIL_ERR_NOMEM;
    return 0;
}

static int
parse_list(struct fy_node *v, struct sigil_config_strlist *l, struct problem *pb)
{
    void *it = NULL;
    struct fy_node *item;
    int items = fy_node_sequence_item_count(v);
    size_t count = items > 0 ? (size_t)items : 0, i = 0;
    int r;

    l->items = NULL;
    l->n = 0;
    if (count == 0)
        return 0;
    if ((l->items = calloc(count, sizeof *l->items)) == NULL) {
        problem_set(pb, 0, "out of memory");
        return SIGIL_ERR_NOMEM;
    }
    while ((item = fy_node_sequence_iterate(v, &it)) != NULL && i < count) {
        int line = node_line(item);
        size_t len;
        const char *s;

        if (!node_plain_ok(item, pb, line))
            return SIGIL_ERR_INVALID;
        if (fy_node_get_type(item) != FYNT_SCALAR) {
            problem_set(pb, line, "item %zu: expected a string, got %s", i + 1, kind_name(item));
            return SIGIL_ERR_INVALID;
        }
        if (is_null(item)) {
            problem_set(pb, line, "item %zu: expected a string, got an empty value", i + 1);
            return SIGIL_ERR_INVALID;
        }
        s = fy_node_get_scalar(item, &len);
        if ((r = dup_scalar(s ? s : "", s ? len : 0, &l->items[i])) != 0) {
            problem_set(pb, line, "item %zu: %s", i + 1,
                        r == SIGIL_ERR_NOMEM ? "out of memory" : "contains a NUL byte");
            return r;
        }
        l->n = ++i;
    }
    return 0;
}

/* Reads node v as field f's type into dst. On failure sets *pb and leaves dst holding
 * nothing that needs freeing beyond what free_value releases. */
static int
parse_value(const struct sigil_config_field *f, struct fy_node *v, void *dst, struct problem *pb)
{
    char want[256], got[SHOW_MAX * 4 + 8];
    const char *s;
    size_t len;
    int r;

    describe(f, want, sizeof want);
    if (!node_plain_ok(v, pb, 0))
        return SIGIL_ERR_INVALID;
    if (f->type == SIGIL_CFG_STRLIST) {
        if (fy_node_get_type(v) != FYNT_SEQUENCE) {
            problem_set(pb, 0, "expected a list of strings, got %s",
                        is_null(v)                           ? "an empty value"
                        : fy_node_get_type(v) == FYNT_SCALAR ? "a single value (use [a, b] "
                                                               "or one \"- item\" per line)"
                                                             : kind_name(v));
            return SIGIL_ERR_INVALID;
        }
        return parse_list(v, dst, pb);
    }
    if (fy_node_get_type(v) != FYNT_SCALAR) {
        problem_set(pb, 0, "expected %s, got %s", want, kind_name(v));
        return SIGIL_ERR_INVALID;
    }
    if (is_null(v)) {
        problem_set(pb, 0, "expected %s, got an empty value", want);
        return SIGIL_ERR_INVALID;
    }
    s = fy_node_get_scalar(v, &len);
    if (s == NULL) {
        s = "";
        len = 0;
    }
    show(got, sizeof got, s, len);
    switch (f->type) {
    case SIGIL_CFG_SECTION:
        problem_set(pb, 0, "a section has no value");
        return SIGIL_ERR_INTERNAL;
    case SIGIL_CFG_STRING:
        if ((r = dup_scalar(s, len, (char **)dst)) != 0) {
            problem_set(pb, 0, "%s",
                        r == SIGIL_ERR_NOMEM ? "out of memory" : "contains a NUL byte");
            return r;
        }
        return 0;
    case SIGIL_CFG_BOOL:
        if (text_eq(s, len, "true"))
            *(bool *)dst = true;
        else if (text_eq(s, len, "false"))
            *(bool *)dst = false;
        else
            break;
        return 0;
    case SIGIL_CFG_INT64: {
        int64_t i;

        if (!parse_int64(s, len, &i) ||
            ((f->min != 0 || f->max != 0) && (i < f->min || i > f->max)))
            break;
        *(int64_t *)dst = i;
        return 0;
    }
    case SIGIL_CFG_DURATION: {
        const char *why;
        int64_t ms;

        if (sigil_duration_parsen(s, len, &ms, &why) != 0) {
            if (strncmp(why, "duration: ", 10) == 0)
                why += 10;
            problem_set(pb, 0, "expected %s, got \"%s\": %s", want, got, why);
            return SIGIL_ERR_INVALID;
        }
        if ((f->min != 0 || f->max != 0) && (ms < f->min || ms > f->max))
            break;
        *(int64_t *)dst = ms;
        return 0;
    }
    case SIGIL_CFG_ENUM:
        for (int i = 0; f->choices != NULL && f->choices[i] != NULL; i++) {
            if (text_eq(s, len, f->choices[i])) {
                *(int *)dst = i;
                return 0;
            }
        }
        break;
    case SIGIL_CFG_MODE: {
        mode_t m;

        if (!parse_mode(s, len, &m))
            break;
        *(mode_t *)dst = m;
        return 0;
    }
    case SIGIL_CFG_SIZE: {
        uint64_t z;

        if (!parse_size(s, len, &z) ||
            ((f->min != 0 || f->max != 0) && (z < (uint64_t)f->min || z > (uint64_t)f->max)))
            break;
        *(uint64_t *)dst = z;
        return 0;
    }
    case SIGIL_CFG_STRLIST:
        break;
    }
    problem_set(pb, 0, "expected %s, got \"%s\"", want, got);
    return SIGIL_ERR_INVALID;
}

/* Parses a schema default (YAML text) into dst; a failure is a bug in the schema. */
static int
parse_default(const struct sigil_config_field *f, void *dst, struct sigil_config_error *err)
{
    struct yaml y;
    struct problem pb = {0};
    int r;

    if ((r = yaml_open(&y, f->def, strlen(f->def), "schema", err)) != 0)
        return r == SIGIL_ERR_NOMEM ? r : SIGIL_ERR_INVALID;
    if (y.doc == NULL || fy_document_root(y.doc) == NULL) {
        r = fail(err, "schema", 0, f->key, SIGIL_ERR_INVALID, "default is empty");
        goto out;
    }
    if ((r = parse_value(f, fy_document_root(y.doc), dst, &pb)) != 0) {
        free_value(f->type, dst);
        r = fail(err, "schema", 0, f->key, r == SIGIL_ERR_NOMEM ? r : SIGIL_ERR_INVALID,
                 "bad default: %s", pb.msg);
        goto out;
    }
    r = 0;
out:
    yaml_close(&y);
    return r;
}

/* --- schema --------------------------------------------------------------------------- */

/* True if key lies inside section sec ("a.b.c" in "a.b"); seclen 0 is the top level. */
static bool
under(const char *key, const char *sec, size_t seclen)
{
    return seclen == 0 || (strncmp(key, sec, seclen) == 0 && key[seclen] == '.');
}

static bool
key_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '_' || c == '-';
}

static bool
schema_key_ok(const char *k)
{
    size_t n = strlen(k), seg = 0;

    if (n == 0 || n > MAX_SCHEMA_KEY)
        return false;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || k[i] == '.') {
            if (seg == 0 || seg > MAX_YAML_KEY)
                return false;
            seg = 0;
        } else if (!key_char_ok(k[i])) {
            return false;
        } else {
            seg++;
        }
    }
    return true;
}

/* The structural rules the loader and the printer rely on. */
static int
check_structure(const struct sigil_config_field *schema, size_t n, struct sigil_config_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const struct sigil_config_field *f = &schema[i];

        if (!schema_key_ok(f->key))
            return fail(err, "schema", 0, f->key, SIGIL_ERR_INVALID,
                        "keys are dotted words of [A-Za-z0-9_-], at most 128 bytes");
        if (f->type < SIGIL_CFG_SECTION || f->type > SIGIL_CFG_SIZE)
            return fail(err, "schema", 0, f->key, SIGIL_ERR_INVALID, "unknown type");
        if (f->type == SIGIL_CFG_SECTION && (f->required || f->def != NULL))
            return fail(err, "schema", 0, f->key, SIGIL_ERR_INVALID,
                        "a section has neither default nor required flag");
        if (f->required && f->def != NULL)
            return fail(err, "schema", 0, f->key, SIGIL_ERR_INVALID,
                        "a required key has no default");
        if (f->type == SIGIL_CFG_ENUM && (f->choices == NULL || f->choices[0] == NULL))
            return fail(err, "schema", 0, f->key, SIGIL_ERR_INVALID, "an enum needs choices");
        if (f->min > f->max)
            return fail(err, "schema", 0, f->key, SIGIL_ERR_INVALID, "min is above max");
        if ((f->type == SIGIL_CFG_SIZE || f->type == SIGIL_CFG_DURATION) && f->min < 0)
            return fail(err, "schema", 0, f->key, SIGIL_ERR_INVALID, "min is negative");
        for (size_t j = 0; j < n; j++) {
            const struct sigil_config_field *g = &schema[j];
            size_t flen = strlen(f->key);

            if (j == i)
                continue;
            if (j > i && strcmp(f->key, g->key) == 0)
                return fail(err, "schema", 0, f->key, SIGIL_ERR_INVALID, "key declared twice");
            if (f->type != SIGIL_CFG_SECTION && under(g->key, f->key, flen))
                return fail(err, "schema", 0, f->key, SIGIL_ERR_INVALID,
                            "key is both a value and a section");
            /* A section's doc entry comes before what it holds. */
            if (f->type == SIGIL_CFG_SECTION && j < i && under(g->key, f->key, flen))
                return fail(err, "schema", 0, f->key, SIGIL_ERR_INVALID,
                            "section entry must come before its keys");
        }
        /* Every section holding f must be one contiguous run, or the printed example
         * would open the same section twice. */
        for (size_t sl = 0; f->key[sl] != '\0'; sl++) {
            bool left = false;

            if (f->key[sl] != '.')
                continue;
            for (size_t j = i + 1; j < n; j++) {
                bool in = under(schema[j].key, f->key, sl) ||
                          (strlen(schema[j].key) == sl && strncmp(schema[j].key, f->key, sl) == 0);

                if (!in)
                    left = true;
                else if (left)
                    return fail(err, "schema", 0, schema[j].key, SIGIL_ERR_INVALID,
                                "keys of one section must be declared together");
            }
        }
    }
    return 0;
}

int
sigil_config_check_schema(const struct sigil_config_field *schema, struct sigil_config_error *err)
{
    size_t n = count_fields(schema);
    int r;

    memset(err, 0, sizeof *err);
    if ((r = check_structure(schema, n, err)) != 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        union scratch tmp;

        if (schema[i].def == NULL)
            continue;
        memset(&tmp, 0, sizeof tmp);
        if ((r = parse_default(&schema[i], &tmp, err)) != 0)
            return r;
        free_value(schema[i].type, &tmp);
    }
    return 0;
}

/* --- the walk ------------------------------------------------------------------------- */

/* Levenshtein distance, both strings at most MAX_YAML_KEY bytes. */
static size_t
edit_distance(const char *a, size_t an, const char *b, size_t bn)
{
    size_t row[MAX_YAML_KEY + 1];

    for (size_t j = 0; j <= bn; j++)
        row[j] = j;
    for (size_t i = 1; i <= an; i++) {
        size_t diag = row[0];

        row[0] = i;
        for (size_t j = 1; j <= bn; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);

            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[bn];
}

/* Suggests a known key for an unknown one: a close sibling by edit distance, else a key
 * of the same name in another section. Writes "" if nothing is close. */
static void
suggest(const struct loader *l, const char *prefix, const char *k, size_t kn, char *buf, size_t n)
{
    size_t plen = strlen(prefix), best = SIZE_MAX;
    size_t limit = kn <= 3 ? 1 : kn <= 8 ? 2 : 3;

    buf[0] = '\0';
    for (size_t i = 0; i < l->nfields; i++) {
        const char *key = l->schema[i].key, *seg;
        size_t segn, d;

        if (!under(key, prefix, plen))
            continue;
        seg = plen ? key + plen + 1 : key;
        segn = strcspn(seg, ".");
        if (segn > MAX_YAML_KEY)
            continue;
        d = edit_distance(k, kn, seg, segn);
        if (d <= limit && d < best) {
            best = d;
            snprintf(buf, n, "%.*s", (int)(seg - key + (ptrdiff_t)segn), key);
        }
    }
    if (buf[0] != '\0')
        return;
    for (size_t i = 0; i < l->nfields; i++) {
        const char *key = l->schema[i].key, *dot = strrchr(key, '.');
        const char *last = dot ? dot + 1 : key;

        if (text_eq(k, kn, last)) {
            snprintf(buf, n, "%s", key);
            return;
        }
    }
}

static int walk_mapping(struct loader *l, struct fy_node *map, const char *prefix, int section_line,
                        int depth);

/* Handles one "key: value" pair of the mapping at prefix. */
static int
walk_pair(struct loader *l, struct fy_node_pair *pair, const char *prefix, int section_line,
          struct seen_key *seen, size_t *nseen, int depth)
{
    struct fy_node *kn = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
    char disp[SHOW_MAX * 4 + 8], path[MAX_SCHEMA_KEY + 2 + sizeof disp], hint[PATH_BUF];
    struct problem pb = {0};
    size_t klen = 0, plen = strlen(prefix);
    const char *k = NULL;
    int line, r;

    line = kn ? node_line(kn) : 0;
    if (line == 0)
        line = section_line;
    if (kn == NULL || fy_node_get_type(kn) != FYNT_SCALAR || fy_node_is_alias(kn) ||
        (k = fy_node_get_scalar(kn, &klen)) == NULL || is_null(kn))
        return fail(l->err, l->name, line, prefix, SIGIL_ERR_INVALID,
                    "keys must be plain words (found %s as a key)",
                    kn == NULL || fy_node_get_type(kn) == FYNT_SCALAR ? "an empty or alias key"
                                                                      : kind_name(kn));
    show(disp, sizeof disp, k, klen);
    if (plen > 0)
        snprintf(path, sizeof path, "%s.%s", prefix, disp);
    else
        snprintf(path, sizeof path, "%s", disp);
    if (klen > MAX_YAML_KEY || memchr(k, '.', klen) != NULL || memchr(k, '\0', klen) != NULL ||
        klen == 0) {
        if (klen > 0 && klen <= MAX_YAML_KEY && memchr(k, '.', klen) != NULL)
            return fail(l->err, l->name, line, path, SIGIL_ERR_INVALID,
                        "dotted keys are not read as paths; nest the parts as sections");
        return fail(l->err, l->name, line, path, SIGIL_ERR_INVALID, "unknown key");
    }
    if (v == NULL) /* libfyaml gives "key:" a null scalar; be safe if it ever does not */
        return fail(l->err, l->name, line, path, SIGIL_ERR_INVALID, "has no value");
    for (size_t i = 0; i < *nseen; i++) {
        if (seen[i].n == klen && memcmp(seen[i].p, k, klen) == 0)
            return fail(l->err, l->name, line, path, SIGIL_ERR_INVALID,
                        "duplicate key (first set on line %d)", seen[i].line);
    }
    /* Schema keys are plain words, so a key that matches one below was shown unescaped
     * and path is its exact dotted name; odd bytes never match and end as unknown. */
    for (size_t i = 0; i < l->nfields; i++) {
        const struct sigil_config_field *f = &l->schema[i];
        size_t flen = strlen(f->key);

        if (f->type == SIGIL_CFG_SECTION || flen != plen + (plen ? 1 : 0) + klen ||
            !under(f->key, prefix, plen) || memcmp(f->key + flen - klen, k, klen) != 0)
            continue;
        seen[*nseen] = (struct seen_key){k, klen, line};
        (*nseen)++;
        if ((r = parse_value(f, v, l->out + f->offset, &pb)) != 0) {
            free_value(f->type, l->out + f->offset);
            return fail(l->err, l->name, pb.line ? pb.line : line, path, r, "%s", pb.msg);
        }
        l->set[i] = true;
        return 0;
    }
    for (size_t i = 0; i < l->nfields; i++) {
        const char *fk = l->schema[i].key;

        if (!under(fk, prefix, plen) || strncmp(fk + plen + (plen ? 1 : 0), k, klen) != 0 ||
            fk[plen + (plen ? 1 : 0) + klen] != '.')
            continue;
        seen[*nseen] = (struct seen_key){k, klen, line};
        (*nseen)++;
        if (is_null(v)) /* "section:" with every key commented out */
            return walk_mapping(l, NULL, path, line, depth + 1);
        if (!node_plain_ok(v, &pb, 0))
            return fail(l->err, l->name, line, path, SIGIL_ERR_INVALID, "%s", pb.msg);
        if (fy_node_get_type(v) != FYNT_MAPPING)
            return fail(l->err, l->name, line, path, SIGIL_ERR_INVALID,
                        "expected a section of keys, got %s",
                        fy_node_get_type(v) == FYNT_SCALAR ? "a single value" : kind_name(v));
        return walk_mapping(l, v, path, line, depth + 1);
    }
    suggest(l, prefix, k, klen, hint, sizeof hint);
    if (hint[0] != '\0')
        return fail(l->err, l->name, line, path, SIGIL_ERR_INVALID,
                    "unknown key (did you mean \"%s\"?)", hint);
    return fail(l->err, l->name, line, path, SIGIL_ERR_INVALID, "unknown key");
}

/* Walks one mapping (NULL: an empty section), then reports the first required key of this
 * section that is still missing; missing keys of present subsections were reported
 * while walking them. */
static int
walk_mapping(struct loader *l, struct fy_node *map, const char *prefix, int section_line, int depth)
{
    struct seen_key *seen = NULL;
    size_t nseen = 0, plen = strlen(prefix);
    int r = 0;

    if (depth > 32)
        return fail(l->err, l->name, section_line, prefix, SIGIL_ERR_INVALID,
                    "sections nested too deeply");
    if (map != NULL) {
        struct fy_node_pair *pair;
        void *it = NULL;

        if ((seen = calloc(l->nfields + 1, sizeof *seen)) == NULL)
            return fail(l->err, l->name, 0, NULL, SIGIL_ERR_NOMEM, "out of memory");
        while ((pair = fy_node_mapping_iterate(map, &it)) != NULL) {
            if ((r = walk_pair(l, pair, prefix, section_line, seen, &nseen, depth)) != 0)
                goto out;
        }
    }
    for (size_t i = 0; i < l->nfields; i++) {
        const struct sigil_config_field *f = &l->schema[i];

        if (!f->required || l->set[i] || !under(f->key, prefix, plen))
            continue;
        if (plen > 0)
            r = fail(l->err, l->name, section_line, f->key, SIGIL_ERR_INVALID,
                     "required but missing from section \"%s\"", prefix);
        else
            r = fail(l->err, l->name, section_line, f->key, SIGIL_ERR_INVALID,
                     "required but missing");
        goto out;
    }
out:
    free(seen);
    return r;
}

int
sigil_config_load_string(const struct sigil_config_field *schema, const char *name,
                         const char *yaml, size_t len, void *out, struct sigil_config_error *err)
{
    struct loader l = {.schema = schema, .name = name, .out = out, .err = err};
    struct yaml y = {0};
    struct fy_node *root;
    int r;

    memset(err, 0, sizeof *err);
    l.nfields = count_fields(schema);
    zero_fields(schema, l.nfields, out);
    if ((r = check_structure(schema, l.nfields, err)) != 0)
        return r;
    if (len > SIGIL_CONFIG_MAX_SIZE)
        return fail(err, name, 0, NULL, SIGIL_ERR_RANGE, "larger than %d bytes",
                    SIGIL_CONFIG_MAX_SIZE);
    if ((l.set = calloc(l.nfields + 1, sizeof *l.set)) == NULL)
        return fail(err, name, 0, NULL, SIGIL_ERR_NOMEM, "out of memory");
    if ((r = yaml_open(&y, yaml, len, name, err)) != 0)
        goto out;
    root = y.doc ? fy_document_root(y.doc) : NULL;
    if (root != NULL && is_null(root))
        root = NULL;
    if (root != NULL) {
        struct problem pb;

        if (!node_plain_ok(root, &pb, 0)) {
            r = fail(err, name, node_line(root), NULL, SIGIL_ERR_INVALID, "%s", pb.msg);
            goto out;
        }
        if (fy_node_get_type(root) != FYNT_MAPPING) {
            r = fail(err, name, node_line(root), NULL, SIGIL_ERR_INVALID,
                     "expected keys (a mapping) at the top level, got %s",
                     fy_node_get_type(root) == FYNT_SCALAR ? "a single value" : kind_name(root));
            goto out;
        }
    }
    if ((r = walk_mapping(&l, root, "", 1, 0)) != 0)
        goto out;
    for (size_t i = 0; i < l.nfields; i++) {
        if (l.set[i] || schema[i].def == NULL)
            continue;
        if ((r = parse_default(&schema[i], l.out + schema[i].offset, err)) != 0)
            goto out;
    }
    r = 0;
out:
    yaml_close(&y);
    free(l.set);
    if (r != 0)
        sigil_config_free(schema, out);
    return r;
}

/* Reads a regular file of at most SIGIL_CONFIG_MAX_SIZE bytes into *out (caller frees). */
static int
read_capped(const char *path, char **out, size_t *outlen, struct sigil_config_error *err)
{
    char ebuf[128], *buf = NULL;
    size_t len = 0;
    struct stat st;
    int fd, r;

    *out = NULL;
    /* O_NONBLOCK: a FIFO put where the config should be must not hang the daemon. */
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0)
        return fail(err, path, 0, NULL, SIGIL_ERR_IO, "cannot open: %s",
                    strerror_r(errno, ebuf, sizeof ebuf));
    if (fstat(fd, &st) != 0) {
        r = fail(err, path, 0, NULL, SIGIL_ERR_IO, "cannot stat: %s",
                 strerror_r(errno, ebuf, sizeof ebuf));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        r = fail(err, path, 0, NULL, SIGIL_ERR_IO, "not a regular file");
        goto out;
    }
    if ((buf = malloc(SIGIL_CONFIG_MAX_SIZE + 1)) == NULL) {
        r = fail(err, path, 0, NULL, SIGIL_ERR_NOMEM, "out of memory");
        goto out;
    }
    /* Read one byte past the cap: the size in fstat may change under us. */
    while (len < SIGIL_CONFIG_MAX_SIZE + 1) {
        ssize_t got = read(fd, buf + len, SIGIL_CONFIG_MAX_SIZE + 1 - len);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            r = fail(err, path, 0, NULL, SIGIL_ERR_IO, "cannot read: %s",
                     strerror_r(errno, ebuf, sizeof ebuf));
            goto out;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    if (len > SIGIL_CONFIG_MAX_SIZE) {
        r = fail(err, path, 0, NULL, SIGIL_ERR_RANGE, "larger than %d bytes",
                 SIGIL_CONFIG_MAX_SIZE);
        goto out;
    }
    *out = buf;
    *outlen = len;
    buf = NULL;
    r = 0;
out:
    free(buf);
    close(fd);
    return r;
}

int
sigil_config_load_file(const struct sigil_config_field *schema, const char *path, void *out,
                       struct sigil_config_error *err)
{
    char *text = NULL;
    size_t len = 0;
    int r;

    memset(err, 0, sizeof *err);
    zero_fields(schema, count_fields(schema), out);
    if ((r = read_capped(path, &text, &len, err)) != 0)
        return r;
    r = sigil_config_load_string(schema, path, text, len, out, err);
    free(text);
    return r;
}

/* --- documentation -------------------------------------------------------------------- */

static void
print_indent(FILE *fp, size_t depth)
{
    for (size_t i = 0; i < depth; i++)
        fputs("  ", fp);
}

/* Prints a comment, one "# " line per line of text. */
static void
print_comment(FILE *fp, size_t depth, const char *text)
{
    while (text != NULL && *text != '\0') {
        size_t n = strcspn(text, "\n");

        print_indent(fp, depth);
        fprintf(fp, "# %.*s\n", (int)n, text);
        text += n;
        if (*text == '\n')
            text++;
    }
}

/* Number of dots in the first n bytes of key: the depth of a key ending there. */
static size_t
depth_of(const char *key, size_t n)
{
    size_t d = 0;

    for (size_t i = 0; i < n; i++)
        d += key[i] == '.';
    return d;
}

/* Length of the longest run of whole sections a and b share ("a.b" and "a.c": 1). */
static size_t
common_sections(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t common = 0;

    for (size_t i = 1; i <= alen && i <= blen; i++) {
        if (a[i - 1] != b[i - 1])
            break;
        if ((i == alen || a[i] == '.') && (i == blen || b[i] == '.'))
            common = i;
    }
    return common;
}

int
sigil_config_print_doc(const struct sigil_config_field *schema, FILE *fp)
{
    struct sigil_config_error err;
    size_t n = count_fields(schema);
    const char *cur = ""; /* the innermost open section, as the start of some key */
    size_t curlen = 0;

    if (check_structure(schema, n, &err) != 0) {
        fprintf(fp, "# invalid schema: %s\n", err.text);
        return SIGIL_ERR_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        const struct sigil_config_field *f = &schema[i];
        const char *last = strrchr(f->key, '.');
        const char *name = last ? last + 1 : f->key;
        size_t klen = strlen(f->key), d = depth_of(f->key, klen);
        size_t target = f->type == SIGIL_CFG_SECTION ? klen : last ? (size_t)(last - f->key) : 0;
        size_t keep = common_sections(cur, curlen, f->key, target);
        char want[256];

        /* Open every section between the shared part and this key's section. */
        for (size_t e = keep + (keep ? 1 : 0); e <= target && target > 0; e++) {
            size_t s = e;

            if (e < target && f->key[e] != '.')
                continue;
            while (s > 0 && f->key[s - 1] != '.')
                s--;
            if (s == e)
                continue;
            fputc('\n', fp);
            if (e == klen && f->type == SIGIL_CFG_SECTION)
                print_comment(fp, depth_of(f->key, s), f->doc);
            print_indent(fp, depth_of(f->key, s));
            fprintf(fp, "%.*s:\n", (int)(e - s), f->key + s);
        }
        cur = f->key;
        curlen = target;
        if (f->type == SIGIL_CFG_SECTION)
            continue;
        describe(f, want, sizeof want);
        print_comment(fp, d, f->doc);
        print_indent(fp, d);
        if (f->required) {
            fprintf(fp, "# %s; required.\n", want);
            print_indent(fp, d);
            fprintf(fp, "%s:\n", name);
        } else if (f->def != NULL) {
            fprintf(fp, "# %s; default %s.\n", want, f->def);
            print_indent(fp, d);
            fprintf(fp, "#%s: %s\n", name, f->def);
        } else {
            fprintf(fp, "# %s; optional, unset by default.\n", want);
            print_indent(fp, d);
            fprintf(fp, "#%s:\n", name);
        }
    }
    return ferror(fp) ? SIGIL_ERR_IO : 0;
}
