/* Duration texts ("1h30m", "500ms") to milliseconds and back. One spelling per value is
 * the aim: units from largest to smallest, each once, integers only, so a typo such as
 * "30m1h" or "1.5h" is an error a person sees instead of a silently different lifetime. */
#include "sigil/duration.h"
#include "sigil/err.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct unit {
    const char *name;
    size_t len;
    int64_t ms;
};

/* Largest first: the order a duration must be written in. */
static const struct unit units[] = {
    {"d", 1, 86400000}, {"h", 1, 3600000}, {"m", 1, 60000}, {"s", 1, 1000}, {"ms", 2, 1},
};
#define NUNITS (sizeof units / sizeof units[0])

static bool
is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Returns the index into units[] of the unit at s (longest match), or -1. */
static int
match_unit(const char *s, size_t left)
{
    int best = -1;
    size_t best_len = 0;

    for (size_t i = 0; i < NUNITS; i++) {
        if (units[i].len <= left && units[i].len > best_len &&
            memcmp(s, units[i].name, units[i].len) == 0) {
            best = (int)i;
            best_len = units[i].len;
        }
    }
    return best;
}

int
sigil_duration_parsen(const char *s, size_t len, int64_t *ms, const char **why)
{
    int64_t total = 0;
    size_t pos = 0;
    int last_unit = -1;

    *ms = 0;
    if (len == 0) {
        *why = "duration: empty (write e.g. 90s, 30m or 1h30m)";
        return SIGIL_ERR_INVALID;
    }
    if (len > SIGIL_DURATION_MAX_LEN) {
        *why = "duration: longer than 64 characters";
        return SIGIL_ERR_RANGE;
    }
    if (len == 1 && s[0] == '0')
        return 0;
    while (pos < len) {
        int64_t n = 0;
        size_t start = pos;

        if (s[pos] == '-') {
            *why = "duration: negative durations are not allowed";
            return SIGIL_ERR_INVALID;
        }
        while (pos < len && is_digit(s[pos])) {
            if (__builtin_mul_overflow(n, 10, &n) ||
                __builtin_add_overflow(n, (int64_t)(s[pos] - '0'), &n)) {
                *why = "duration: too large";
                return SIGIL_ERR_RANGE;
            }
            pos++;
        }
        if (pos == start) {
            *why = "duration: expected a number before each unit (e.g. 1h30m)";
            return SIGIL_ERR_INVALID;
        }
        if (pos == len) {
            *why = "duration: a unit (ms, s, m, h or d) must follow the number";
            return SIGIL_ERR_INVALID;
        }
        if (s[pos] == '.' || s[pos] == ',') {
            *why = "duration: decimals are not allowed (write 1h30m, not 1.5h)";
            return SIGIL_ERR_INVALID;
        }
        int u = match_unit(s + pos, len - pos);
        if (u < 0) {
            *why = "duration: unknown unit (use ms, s, m, h or d)";
            return SIGIL_ERR_INVALID;
        }
        if (u <= last_unit) {
            *why = "duration: units must go from largest to smallest, each once (1h30m)";
            return SIGIL_ERR_INVALID;
        }
        last_unit = u;
        pos += units[u].len;
        if (__builtin_mul_overflow(n, units[u].ms, &n) ||
            __builtin_add_overflow(total, n, &total)) {
            *why = "duration: too large";
            return SIGIL_ERR_RANGE;
        }
    }
    *ms = total;
    return 0;
}

int
sigil_duration_parse(const char *s, int64_t *ms, const char **why)
{
    /* strnlen keeps an over-long argument from being scanned to its end. */
    size_t len = strnlen(s, SIGIL_DURATION_MAX_LEN + 1);

    return sigil_duration_parsen(s, len, ms, why);
}

char *
sigil_duration_format(int64_t ms, char *buf, size_t n)
{
    size_t off = 0;

    if (n == 0)
        return buf;
    buf[0] = '\0';
    if (ms < 0)
        return buf;
    if (ms == 0) {
        snprintf(buf, n, "0");
        return buf;
    }
    for (size_t i = 0; i < NUNITS && off < n; i++) {
        int64_t q = ms / units[i].ms;

        if (q == 0)
            continue;
        ms -= q * units[i].ms;
        int w = snprintf(buf + off, n - off, "%lld%s", (long long)q, units[i].name);
        if (w < 0 || (size_t)w >= n - off) {
            buf[0] = '\0';
            return buf;
        }
        off += (size_t)w;
    }
    return buf;
}
