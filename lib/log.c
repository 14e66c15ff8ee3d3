/* Log lines, human or JSON. A line is built whole in memory and handed to one write(2)
 * under a lock, which keeps threads from interleaving inside a line. Every caller text
 * goes through an escaper that decodes UTF-8 strictly, so no field can end a line early,
 * forge another one, smuggle terminal controls, or make a JSON line invalid. */
#include "sigil/log.h"
#include "sigil/utf8.h"
#include "sigil/buf.h"
#include "sigil/err.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Caps on what one line carries: the message, each value, keys and the field count. */
#define MSG_MAX 4096
#define VALUE_MAX 4096
#define KEY_MAX 64
#define FIELDS_MAX 32

const char *const sigil_log_level_names[] = {"debug", "info", "warn", "error", NULL};
const char *const sigil_log_format_names[] = {"human", "json", NULL};

static const char *const human_levels[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

static _Atomic int g_level = SIGIL_LOG_INFO;
static _Atomic int g_format = SIGIL_LOG_HUMAN;
static _Atomic int g_fd = 2;
/* One write(2) per line keeps pipes whole; the lock also keeps lines whole in a file
 * opened without O_APPEND and across the rare short write. */
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

void
sigil_log_set_level(enum sigil_log_level level)
{
    atomic_store(&g_level, (int)level);
}

void
sigil_log_set_format(enum sigil_log_format format)
{
    atomic_store(&g_format, (int)format);
}

void
sigil_log_set_fd(int fd)
{
    atomic_store(&g_fd, fd);
}

static int
clamp_level(enum sigil_log_level level)
{
    int l = (int)level;

    return l < SIGIL_LOG_DEBUG ? SIGIL_LOG_DEBUG : l > SIGIL_LOG_ERROR ? SIGIL_LOG_ERROR : l;
}

bool
sigil_log_enabled(enum sigil_log_level level)
{
    return clamp_level(level) >= atomic_load(&g_level);
}

int
sigil_log_level_parse(const char *s, enum sigil_log_level *out, const char **why)
{
    for (int i = 0; sigil_log_level_names[i] != NULL; i++) {
        if (strcmp(s, sigil_log_level_names[i]) == 0) {
            *out = (enum sigil_log_level)i;
            return 0;
        }
    }
    *why = "log level: expected debug, info, warn or error";
    return SIGIL_ERR_INVALID;
}

int
sigil_log_format_parse(const char *s, enum sigil_log_format *out, const char **why)
{
    for (int i = 0; sigil_log_format_names[i] != NULL; i++) {
        if (strcmp(s, sigil_log_format_names[i]) == 0) {
            *out = (enum sigil_log_format)i;
            return 0;
        }
    }
    *why = "log format: expected human or json";
    return SIGIL_ERR_INVALID;
}

/* --- escaping ------------------------------------------------------------------------- */

#define BAD_UTF8 UINT32_MAX

/* One code point at s: its length, or 1 with *cp = BAD_UTF8 for a byte that starts
 * nothing valid (the escapers replace it and go on). */
static size_t
utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    size_t k = sigil_utf8_decode(s, n, cp);

    if (k == 0) {
        *cp = BAD_UTF8;
        return 1;
    }
    return k;
}

/* Code points that some viewer takes as a line break or that reorder what is shown:
 * C1 controls (U+0085 is a newline to some), line/paragraph separators, bidi controls. */
static bool
is_deceptive(uint32_t cp)
{
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029 ||
           (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff;
}

/* Backs a cut at n off to the start of a UTF-8 sequence, so a cap never splits one. */
static size_t
cut_at(const char *s, size_t len, size_t cap)
{
    size_t n = len;

    if (n <= cap)
        return n;
    n = cap;
    for (int i = 0; i < 3 && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80; i++)
        n--;
    return n;
}

/* Appends s as the inside of a JSON string (RFC 8259), bad bytes as U+FFFD. */
static int
json_escape(struct sigil_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    int r = 0;

    while (i < len && r == 0) {
        uint32_t cp;
        size_t n = utf8_next(p + i, len - i, &cp);
        char e[8];

        if (cp == '"')
            r = sigil_buf_append(b, "\\\"", 2);
        else if (cp == '\\')
            r = sigil_buf_append(b, "\\\\", 2);
        else if (cp == '\n')
            r = sigil_buf_append(b, "\\n", 2);
        else if (cp == '\r')
            r = sigil_buf_append(b, "\\r", 2);
        else if (cp == '\t')
            r = sigil_buf_append(b, "\\t", 2);
        else if (cp == BAD_UTF8)
            r = sigil_buf_append(b, "\\ufffd", 6);
        else if (cp < 0x20 || cp == 0x7f || is_deceptive(cp)) {
            e[0] = '\\';
            e[1] = 'u';
            e[2] = hex[(cp >> 12) & 15];
            e[3] = hex[(cp >> 8) & 15];
            e[4] = hex[(cp >> 4) & 15];
            e[5] = hex[cp & 15];
            r = sigil_buf_append(b, e, 6);
        } else
            r = sigil_buf_append(b, p + i, n);
        i += n;
    }
    return r;
}

/* True if s must be quoted in a human line: empty, or with a space, quote, '=', or
 * anything the escaper rewrites. */
static bool
human_needs_quotes(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;

    if (len == 0)
        return true;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_next(p + i, len - i, &cp);

        if (cp == BAD_UTF8 || cp <= 0x20 || cp == 0x7f || cp == '"' || cp == '=' || cp == '\\' ||
            is_deceptive(cp))
            return true;
        i += n;
    }
    return false;
}

/* Appends s for a human line: controls as \n, \t, \xNN; bad bytes as \xNN; deceptive
 * code points as \u{XXXX}; quotes escaped when the text sits inside quotes. */
static int
human_escape(struct sigil_buf *b, const char *s, size_t len, bool quoted)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    int r = 0;

    while (i < len && r == 0) {
        uint32_t cp;
        size_t n = utf8_next(p + i, len - i, &cp);

        if (cp == '\n')
            r = sigil_buf_append(b, "\\n", 2);
        else if (cp == '\r')
            r = sigil_buf_append(b, "\\r", 2);
        else if (cp == '\t')
            r = sigil_buf_append(b, "\\t", 2);
        else if (cp == '\\')
            r = sigil_buf_append(b, "\\\\", 2);
        else if (cp == '"' && quoted)
            r = sigil_buf_append(b, "\\\"", 2);
        else if (cp == BAD_UTF8 || cp < 0x20 || cp == 0x7f)
            r = sigil_buf_appendf(b, "\\x%02x", p[i]);
        else if (is_deceptive(cp))
            r = sigil_buf_appendf(b, "\\u{%04x}", (unsigned)cp);
        else
            r = sigil_buf_append(b, p + i, n);
        i += n;
    }
    return r;
}

/* Appends caller text capped at cap bytes ("..." marks a cut), escaped for the format. */
static int
put_text(struct sigil_buf *b, const char *s, size_t cap, bool json, bool quoted)
{
    size_t len = strnlen(s, cap + 1), n = cut_at(s, len, cap);
    int r;

    r = json ? json_escape(b, s, n) : human_escape(b, s, n, quoted);
    if (r == 0 && n < len)
        r = sigil_buf_append(b, "...", 3);
    return r;
}

/* Keys and the component come from code, but are still reduced to [A-Za-z0-9_.-] so
 * that they need no escaping in either format. */
static void
clean_name(char *dst, size_t dstlen, const char *s)
{
    size_t o = 0;

    for (; s != NULL && s[o] != '\0' && o + 1 < dstlen; o++) {
        char c = s[o];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';

        dst[o] = ok ? c : '_';
    }
    if (o == 0 && dstlen > 1)
        dst[o++] = '_';
    dst[o] = '\0';
}

/* --- lines ---------------------------------------------------------------------------- */

static void
timestamp(char *buf, size_t n)
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    /* every field is bounded, but gcc cannot see it through struct tm: go through strftime */
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    if (k == 0 || n - k < 6) {
        buf[0] = '\0';
        return;
    }
    unsigned ms = (unsigned)(ts.tv_nsec / 1000000) % 1000u;
    buf[k++] = '.';
    buf[k++] = (char)('0' + ms / 100);
    buf[k++] = (char)('0' + ms / 10 % 10);
    buf[k++] = (char)('0' + ms % 10);
    buf[k++] = 'Z';
    buf[k] = '\0';
}

static void
write_all(int fd, const char *p, size_t n)
{
    pthread_mutex_lock(&write_lock);
    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* nowhere to report a failing log; drop the line */
        p += w;
        n -= (size_t)w;
    }
    pthread_mutex_unlock(&write_lock);
}

/* Field keys renamed so that a JSON line never holds one name twice: a key equal to a
 * built-in one (ts, level, component, msg) or to an earlier key gets a '_' prefix. */
static void
unique_keys(const struct sigil_log_field *fields, size_t n, char keys[][KEY_MAX + 1])
{
    static const char *const builtin[] = {"ts", "level", "component", "msg"};

    for (size_t i = 0; i < n; i++) {
        bool clash = true;

        clean_name(keys[i], KEY_MAX + 1, fields[i].key);
        while (clash) {
            clash = false;
            for (size_t j = 0; j < 4 && !clash; j++)
                clash = strcmp(keys[i], builtin[j]) == 0;
            for (size_t j = 0; j < i && !clash; j++)
                clash = strcmp(keys[i], keys[j]) == 0;
            if (clash) {
                size_t len = strlen(keys[i]);

                if (len == KEY_MAX) /* no room to grow: make it differ in its last byte */
                    len--;
                memmove(keys[i] + 1, keys[i], len);
                keys[i][0] = '_';
                keys[i][len + 1] = '\0';
            }
        }
    }
}

static int
build_line(struct sigil_buf *b, int level, const char *component,
           const struct sigil_log_field *fields, size_t n, const char *msg)
{
    char ts[40], comp[KEY_MAX + 1], keys[FIELDS_MAX][KEY_MAX + 1];
    bool json = atomic_load(&g_format) == SIGIL_LOG_JSON;
    int r = 0;

    timestamp(ts, sizeof ts);
    if (component != NULL)
        clean_name(comp, sizeof comp, component);
    unique_keys(fields, n, keys);
    if (json) {
        r = sigil_buf_appendf(b, "{\"ts\":\"%s\",\"level\":\"%s\"", ts,
                              sigil_log_level_names[level]);
        if (r == 0 && component != NULL)
            r = sigil_buf_appendf(b, ",\"component\":\"%s\"", comp);
        if (r == 0)
            r = sigil_buf_append_str(b, ",\"msg\":\"");
        if (r == 0)
            r = put_text(b, msg, MSG_MAX, true, true);
        if (r == 0)
            r = sigil_buf_append(b, "\"", 1);
        for (size_t i = 0; i < n && r == 0; i++) {
            r = sigil_buf_appendf(b, ",\"%s\":\"", keys[i]);
            if (r == 0)
                r = put_text(b, fields[i].value ? fields[i].value : "", VALUE_MAX, true, true);
            if (r == 0)
                r = sigil_buf_append(b, "\"", 1);
        }
        if (r == 0)
            r = sigil_buf_append(b, "}\n", 2);
        return r;
    }
    r = sigil_buf_appendf(b, "%s %s ", ts, human_levels[level]);
    if (r == 0 && component != NULL)
        r = sigil_buf_appendf(b, "%s: ", comp);
    if (r == 0)
        r = put_text(b, msg, MSG_MAX, false, false);
    for (size_t i = 0; i < n && r == 0; i++) {
        const char *v = fields[i].value ? fields[i].value : "";
        bool q = human_needs_quotes(v, strnlen(v, VALUE_MAX + 1));

        r = sigil_buf_appendf(b, " %s=%s", keys[i], q ? "\"" : "");
        if (r == 0)
            r = put_text(b, v, VALUE_MAX, false, q);
        if (r == 0 && q)
            r = sigil_buf_append(b, "\"", 1);
    }
    if (r == 0)
        r = sigil_buf_append(b, "\n", 1);
    return r;
}

static void
emit(enum sigil_log_level level, const char *component, const struct sigil_log_field *fields,
     size_t n, const char *msg)
{
    struct sigil_buf b = {0};
    int lvl = clamp_level(level);

    if (n > FIELDS_MAX)
        n = FIELDS_MAX;
    if (build_line(&b, lvl, component, fields, n, msg) == 0) {
        write_all(atomic_load(&g_fd), (const char *)b.data, b.len);
    } else {
        static const char oom[] = "sigil: log line dropped: out of memory\n";

        write_all(atomic_load(&g_fd), oom, sizeof oom - 1);
    }
    sigil_buf_free(&b);
}

void
sigil_log_fields(enum sigil_log_level level, const char *component,
                 const struct sigil_log_field *fields, size_t n, const char *fmt, ...)
{
    char msg[MSG_MAX + 2]; /* one byte over the cap, so put_text sees and marks a cut */
    va_list ap;

    if (!sigil_log_enabled(level))
        return;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof msg, fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    emit(level, component, fields, n, msg);
}

void
sigil_log(enum sigil_log_level level, const char *component, const char *fmt, ...)
{
    char msg[MSG_MAX + 2]; /* one byte over the cap, so put_text sees and marks a cut */
    va_list ap;

    if (!sigil_log_enabled(level))
        return;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof msg, fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    emit(level, component, NULL, 0, msg);
}

void
sigil_log_kv(enum sigil_log_level level, const char *component, const char *msg, ...)
{
    struct sigil_log_field fields[FIELDS_MAX];
    size_t n = 0;
    va_list ap;

    if (!sigil_log_enabled(level))
        return;
    va_start(ap, msg);
    while (n < FIELDS_MAX) {
        const char *k = va_arg(ap, const char *);

        if (k == NULL)
            break;
        fields[n].key = k;
        fields[n].value = va_arg(ap, const char *);
        n++;
    }
    va_end(ap);
    emit(level, component, fields, n, msg ? msg : "");
}
