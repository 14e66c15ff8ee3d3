/* A Prometheus registry. Each metric holds a list of series (one per label value set) under
 * its own mutex; rendering walks the registry under the registry's mutex. Label values may
 * come from peers, so their count per metric is capped and they are escaped (and made
 * valid UTF-8) on the way out; names come from code and are validated on registration. */
#include "sigil/metrics.h"
#include "sigil/utf8.h"
#include "sigil/err.h"

#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME_MAX_LEN 200

enum kind { COUNTER, GAUGE, HISTOGRAM };

struct series {
    struct series *next;
    char **values;     /* one per label name */
    uint64_t count;    /* counter value, or number of observations */
    double value;      /* gauge value, or sum of observations */
    uint64_t *buckets; /* histogram: nbounds + 1 per-bucket (not cumulative) counts */
};

struct metric {
    struct metric *next;
    enum kind kind;
    char *name, *help;
    char **labels;
    size_t nlabels;
    double *bounds;
    size_t nbounds;
    pthread_mutex_t lock;
    struct series *series, **tail;
    size_t nseries;
};

/* The public handle types are the metric itself, told apart only for the compiler. */
struct sigil_counter {
    struct metric m;
};
struct sigil_gauge {
    struct metric m;
};
struct sigil_histogram {
    struct metric m;
};

struct sigil_metrics {
    pthread_mutex_t lock;
    struct metric *head, **tail;
};

/* --- registration --------------------------------------------------------------------- */

static bool
name_ok(const char *s, bool colons)
{
    size_t n = strlen(s);

    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colons && c == ':') || (i > 0 && c >= '0' && c <= '9');

        if (!ok)
            return false;
    }
    return true;
}

static void
series_free(struct series *s, size_t nlabels)
{
    if (s == NULL)
        return;
    for (size_t i = 0; s->values != NULL && i < nlabels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->buckets);
    free(s);
}

static void
metric_free(struct metric *m)
{
    struct series *s, *next;

    if (m == NULL)
        return;
    for (s = m->series; s != NULL; s = next) {
        next = s->next;
        series_free(s, m->nlabels);
    }
    for (size_t i = 0; m->labels != NULL && i < m->nlabels; i++)
        free(m->labels[i]);
    free(m->labels);
    free(m->bounds);
    free(m->name);
    free(m->help);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int
sigil_metrics_new(struct sigil_metrics **out)
{
    struct sigil_metrics *m;

    *out = NULL;
    if ((m = calloc(1, sizeof *m)) == NULL)
        return SIGIL_ERR_NOMEM;
    pthread_mutex_init(&m->lock, NULL);
    m->tail = &m->head;
    *out = m;
    return 0;
}

void
sigil_metrics_free(struct sigil_metrics *m)
{
    struct metric *x, *next;

    if (m == NULL)
        return;
    for (x = m->head; x != NULL; x = next) {
        next = x->next;
        metric_free(x);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* The names a metric shows in the exposition: a histogram also owns _bucket, _sum and
 * _count, so a counter called "x_count" next to a histogram "x" would collide. */
static bool
exposes(const struct metric *m, const char *name)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    size_t n = strlen(m->name);

    if (strcmp(m->name, name) == 0)
        return true;
    if (m->kind != HISTOGRAM || strncmp(m->name, name, n) != 0)
        return false;
    for (size_t i = 0; i < 3; i++) {
        if (strcmp(name + n, suffixes[i]) == 0)
            return true;
    }
    return false;
}

static bool
name_taken(const struct sigil_metrics *r, const char *name, enum kind kind)
{
    static const char *const suffixes[] = {"", "_bucket", "_sum", "_count"};
    char probe[NAME_MAX_LEN + 8];

    for (const struct metric *m = r->head; m != NULL; m = m->next) {
        for (size_t i = 0; i < (kind == HISTOGRAM ? 4u : 1u); i++) {
            snprintf(probe, sizeof probe, "%s%s", name, suffixes[i]);
            if (exposes(m, probe))
                return true;
        }
    }
    return false;
}

static struct series *
series_new(const struct metric *m)
{
    struct series *s = calloc(1, sizeof *s);

    if (s == NULL)
        return NULL;
    if (m->nlabels > 0 && (s->values = calloc(m->nlabels, sizeof *s->values)) == NULL)
        goto fail;
    if (m->kind == HISTOGRAM && (s->buckets = calloc(m->nbounds + 1, sizeof *s->buckets)) == NULL)
        goto fail;
    return s;
fail:
    series_free(s, m->nlabels);
    return NULL;
}

static int
reg(struct sigil_metrics *r, enum kind kind, const char *name, const char *help,
    const char *const *labels, const double *bounds, size_t nbounds, struct metric **out)
{
    struct metric *m = NULL;
    size_t nlabels = 0;
    int ret;

    *out = NULL;
    if (name == NULL || !name_ok(name, true) || help == NULL)
        return SIGIL_ERR_INVALID;
    for (; labels != NULL && labels[nlabels] != NULL; nlabels++) {
        const char *l = labels[nlabels];

        if (nlabels == SIGIL_METRICS_MAX_LABELS || !name_ok(l, false) || strncmp(l, "__", 2) == 0 ||
            (kind == HISTOGRAM && strcmp(l, "le") == 0))
            return SIGIL_ERR_INVALID;
        for (size_t j = 0; j < nlabels; j++) {
            if (strcmp(labels[j], l) == 0)
                return SIGIL_ERR_INVALID;
        }
    }
    if (kind == HISTOGRAM) {
        if (bounds == NULL || nbounds == 0 || nbounds > SIGIL_METRICS_MAX_BUCKETS)
            return SIGIL_ERR_INVALID;
        for (size_t i = 0; i < nbounds; i++) {
            if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
                return SIGIL_ERR_INVALID;
        }
    }
    if ((m = calloc(1, sizeof *m)) == NULL)
        return SIGIL_ERR_NOMEM;
    pthread_mutex_init(&m->lock, NULL);
    m->kind = kind;
    m->tail = &m->series;
    if ((m->name = strdup(name)) == NULL || (m->help = strdup(help)) == NULL)
        goto nomem;
    if (nlabels > 0) {
        if ((m->labels = calloc(nlabels, sizeof *m->labels)) == NULL)
            goto nomem;
        m->nlabels = nlabels;
        for (size_t i = 0; i < nlabels; i++) {
            if ((m->labels[i] = strdup(labels[i])) == NULL)
                goto nomem;
        }
    }
    if (kind == HISTOGRAM) {
        if ((m->bounds = malloc(nbounds * sizeof *m->bounds)) == NULL)
            goto nomem;
        memcpy(m->bounds, bounds, nbounds * sizeof *m->bounds);
        m->nbounds = nbounds;
    }
    /* Without labels the one series exists from the start, so it renders as 0. */
    if (nlabels == 0) {
        if ((m->series = series_new(m)) == NULL)
            goto nomem;
        m->tail = &m->series->next;
        m->nseries = 1;
    }
    pthread_mutex_lock(&r->lock);
    if (name_taken(r, name, kind)) {
        ret = SIGIL_ERR_EXISTS;
    } else {
        *r->tail = m;
        r->tail = &m->next;
        *out = m;
        m = NULL;
        ret = 0;
    }
    pthread_mutex_unlock(&r->lock);
    metric_free(m);
    return ret;
nomem:
    metric_free(m);
    return SIGIL_ERR_NOMEM;
}

int
sigil_metrics_counter(struct sigil_metrics *m, const char *name, const char *help,
                      const char *const *labels, struct sigil_counter **out)
{
    struct metric *x;
    int r = reg(m, COUNTER, name, help, labels, NULL, 0, &x);

    *out = (struct sigil_counter *)x;
    return r;
}

int
sigil_metrics_gauge(struct sigil_metrics *m, const char *name, const char *help,
                    const char *const *labels, struct sigil_gauge **out)
{
    struct metric *x;
    int r = reg(m, GAUGE, name, help, labels, NULL, 0, &x);

    *out = (struct sigil_gauge *)x;
    return r;
}

int
sigil_metrics_histogram(struct sigil_metrics *m, const char *name, const char *help,
                        const char *const *labels, const double *bounds, size_t nbounds,
                        struct sigil_histogram **out)
{
    struct metric *x;
    int r = reg(m, HISTOGRAM, name, help, labels, bounds, nbounds, &x);

    *out = (struct sigil_histogram *)x;
    return r;
}

/* --- updates -------------------------------------------------------------------------- */

/* Collects the NULL-terminated label values of a call; returns how many, or
 * SIGIL_ERR_INVALID if there are more than the metric has names for. */
static int
collect(const struct metric *m, va_list ap, const char **vals)
{
    size_t n = 0;

    for (;;) {
        const char *v = va_arg(ap, const char *);

        if (v == NULL)
            break;
        if (n == m->nlabels)
            return SIGIL_ERR_INVALID;
        vals[n++] = v;
    }
    return n == m->nlabels ? 0 : SIGIL_ERR_INVALID;
}

/* Finds or creates the series of vals; call with m->lock held. */
static int
series_get(struct metric *m, const char *const *vals, struct series **out)
{
    struct series *s;

    for (s = m->series; s != NULL; s = s->next) {
        size_t i = 0;

        while (i < m->nlabels && strcmp(s->values[i], vals[i]) == 0)
            i++;
        if (i == m->nlabels) {
            *out = s;
            return 0;
        }
    }
    if (m->nseries >= SIGIL_METRICS_MAX_SERIES)
        return SIGIL_ERR_RANGE;
    for (size_t i = 0; i < m->nlabels; i++) {
        if (strnlen(vals[i], SIGIL_METRICS_MAX_VALUE_LEN + 1) > SIGIL_METRICS_MAX_VALUE_LEN)
            return SIGIL_ERR_RANGE;
    }
    if ((s = series_new(m)) == NULL)
        return SIGIL_ERR_NOMEM;
    for (size_t i = 0; i < m->nlabels; i++) {
        if ((s->values[i] = strdup(vals[i])) == NULL) {
            series_free(s, m->nlabels);
            return SIGIL_ERR_NOMEM;
        }
    }
    *m->tail = s;
    m->tail = &s->next;
    m->nseries++;
    *out = s;
    return 0;
}

enum op { OP_ADD_COUNT, OP_SET, OP_ADD, OP_OBSERVE };

static int
update(struct metric *m, const char *const *vals, enum op op, uint64_t n, double v)
{
    struct series *s;
    int r;

    if ((op == OP_SET || op == OP_ADD || op == OP_OBSERVE) && isnan(v))
        return SIGIL_ERR_INVALID;
    pthread_mutex_lock(&m->lock);
    if ((r = series_get(m, vals, &s)) == 0) {
        switch (op) {
        case OP_ADD_COUNT:
            s->count += n;
            break;
        case OP_SET:
            s->value = v;
            break;
        case OP_ADD:
            s->value += v;
            break;
        case OP_OBSERVE: {
            size_t b = 0;

            while (b < m->nbounds && v > m->bounds[b])
                b++;
            s->buckets[b]++;
            s->count++;
            s->value += v;
            break;
        }
        }
    }
    pthread_mutex_unlock(&m->lock);
    return r;
}

static int
update_unlabelled(struct metric *m, enum op op, uint64_t n, double v)
{
    if (m->nlabels != 0)
        return SIGIL_ERR_INVALID;
    return update(m, NULL, op, n, v);
}

int
sigil_counter_inc(struct sigil_counter *c)
{
    return update_unlabelled(&c->m, OP_ADD_COUNT, 1, 0);
}

int
sigil_counter_add(struct sigil_counter *c, uint64_t n)
{
    return update_unlabelled(&c->m, OP_ADD_COUNT, n, 0);
}

int
sigil_gauge_set(struct sigil_gauge *g, double v)
{
    return update_unlabelled(&g->m, OP_SET, 0, v);
}

int
sigil_gauge_add(struct sigil_gauge *g, double d)
{
    return update_unlabelled(&g->m, OP_ADD, 0, d);
}

int
sigil_histogram_observe(struct sigil_histogram *h, double v)
{
    return update_unlabelled(&h->m, OP_OBSERVE, 0, v);
}

/* The "_with" forms: gather the label values, then update. */
#define WITH(metric, last, op, n, v)                                                               \
    do {                                                                                           \
        const char *vals[SIGIL_METRICS_MAX_LABELS];                                                \
        va_list ap;                                                                                \
        int r;                                                                                     \
                                                                                                   \
        va_start(ap, last);                                                                        \
        r = collect((metric), ap, vals);                                                           \
        va_end(ap);                                                                                \
        if (r != 0)                                                                                \
            return r;                                                                              \
        return update((metric), vals, (op), (n), (v));                                             \
    } while (0)

int
sigil_counter_inc_with(struct sigil_counter *c, ...)
{
    WITH(&c->m, c, OP_ADD_COUNT, 1, 0);
}

int
sigil_counter_add_with(struct sigil_counter *c, uint64_t n, ...)
{
    WITH(&c->m, n, OP_ADD_COUNT, n, 0);
}

int
sigil_gauge_set_with(struct sigil_gauge *g, double v, ...)
{
    WITH(&g->m, v, OP_SET, 0, v);
}

int
sigil_gauge_add_with(struct sigil_gauge *g, double d, ...)
{
    WITH(&g->m, d, OP_ADD, 0, d);
}

int
sigil_histogram_observe_with(struct sigil_histogram *h, double v, ...)
{
    WITH(&h->m, v, OP_OBSERVE, 0, v);
}

/* --- rendering ------------------------------------------------------------------------ */

static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;
static locale_t c_locale;

static void
c_locale_init(void)
{
    c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
}

/* The shortest text that reads back as v, spelled the way Prometheus' own Go clients
 * spell it (strconv 'g', -1): plain digits for exponents -4..5 ("0.005", "60000"), else
 * "1e+06"; "+Inf", "-Inf", "NaN" for the specials. The caller switched to the C locale. */
static void
fmt_double(double v, char *buf, size_t n)
{
    int digits, exp;

    if (isnan(v)) {
        snprintf(buf, n, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, n, "%s", v > 0 ? "+Inf" : "-Inf");
        return;
    }
    for (digits = 1; digits < 17; digits++) {
        snprintf(buf, n, "%.*e", digits - 1, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    snprintf(buf, n, "%.*e", digits - 1, v);
    exp = atoi(strchr(buf, 'e') + 1);
    if (exp >= -4 && exp < 6) /* %g stays in plain notation while exp < precision */
        snprintf(buf, n, "%.*g", digits > 6 ? digits : 6, v);
}

/* Escapes \ and newline (and " inside label values); bytes that are not UTF-8 become
 * U+FFFD, since the format is UTF-8 and a scraper may reject the whole page otherwise. */
static int
put_escaped(struct sigil_buf *b, const char *s, bool label_value)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    int r = 0;

    for (size_t i = 0; i < len && r == 0;) {
        uint32_t cp;
        size_t n = sigil_utf8_decode(p + i, len - i, &cp);

        if (n == 0) {
            r = sigil_buf_append(b, "\xef\xbf\xbd", 3);
            n = 1;
        } else if (p[i] == '\\') {
            r = sigil_buf_append(b, "\\\\", 2);
        } else if (p[i] == '\n') {
            r = sigil_buf_append(b, "\\n", 2);
        } else if (p[i] == '"' && label_value) {
            r = sigil_buf_append(b, "\\\"", 2);
        } else {
            r = sigil_buf_append(b, p + i, n);
        }
        i += n;
    }
    return r;
}

/* Writes "{a="x",b="y"" (+ ",le=..." and the closing brace by the caller) or nothing. */
static int
put_labels(struct sigil_buf *b, const struct metric *m, const struct series *s, const char *le)
{
    int r = 0;

    if (m->nlabels == 0 && le == NULL)
        return 0;
    r = sigil_buf_append(b, "{", 1);
    for (size_t i = 0; i < m->nlabels && r == 0; i++) {
        r = sigil_buf_appendf(b, "%s%s=\"", i ? "," : "", m->labels[i]);
        if (r == 0)
            r = put_escaped(b, s->values[i], true);
        if (r == 0)
            r = sigil_buf_append(b, "\"", 1);
    }
    if (r == 0 && le != NULL)
        r = sigil_buf_appendf(b, "%sle=\"%s\"", m->nlabels ? "," : "", le);
    if (r == 0)
        r = sigil_buf_append(b, "}", 1);
    return r;
}

static int
render_metric(struct sigil_buf *b, const struct metric *m)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    char num[64], le[64];
    int r;

    r = sigil_buf_appendf(b, "# HELP %s ", m->name);
    if (r == 0)
        r = put_escaped(b, m->help, false);
    if (r == 0)
        r = sigil_buf_appendf(b, "\n# TYPE %s %s\n", m->name, types[m->kind]);
    for (const struct series *s = m->series; s != NULL && r == 0; s = s->next) {
        if (m->kind == COUNTER) {
            if ((r = sigil_buf_append_str(b, m->name)) == 0 && (r = put_labels(b, m, s, NULL)) == 0)
                r = sigil_buf_appendf(b, " %llu\n", (unsigned long long)s->count);
        } else if (m->kind == GAUGE) {
            fmt_double(s->value, num, sizeof num);
            if ((r = sigil_buf_append_str(b, m->name)) == 0 && (r = put_labels(b, m, s, NULL)) == 0)
                r = sigil_buf_appendf(b, " %s\n", num);
        } else {
            uint64_t cum = 0;

            for (size_t i = 0; i <= m->nbounds && r == 0; i++) {
                cum += s->buckets[i];
                if (i < m->nbounds)
                    fmt_double(m->bounds[i], le, sizeof le);
                else
                    snprintf(le, sizeof le, "+Inf");
                if ((r = sigil_buf_appendf(b, "%s_bucket", m->name)) == 0 &&
                    (r = put_labels(b, m, s, le)) == 0)
                    r = sigil_buf_appendf(b, " %llu\n", (unsigned long long)cum);
            }
            fmt_double(s->value, num, sizeof num);
            if (r == 0 && (r = sigil_buf_appendf(b, "%s_sum", m->name)) == 0 &&
                (r = put_labels(b, m, s, NULL)) == 0)
                r = sigil_buf_appendf(b, " %s\n", num);
            if (r == 0 && (r = sigil_buf_appendf(b, "%s_count", m->name)) == 0 &&
                (r = put_labels(b, m, s, NULL)) == 0)
                r = sigil_buf_appendf(b, " %llu\n", (unsigned long long)s->count);
        }
    }
    return r;
}

int
sigil_metrics_render(struct sigil_metrics *m, struct sigil_buf *out)
{
    locale_t old = (locale_t)0;
    int r = 0;

    /* printf and strtod follow LC_NUMERIC; a daemon that set a locale with a decimal
     * comma must still render "0.5". uselocale only affects this thread. */
    pthread_once(&c_locale_once, c_locale_init);
    if (c_locale != (locale_t)0)
        old = uselocale(c_locale);
    pthread_mutex_lock(&m->lock);
    for (struct metric *x = m->head; x != NULL && r == 0; x = x->next) {
        pthread_mutex_lock(&x->lock);
        r = render_metric(out, x);
        pthread_mutex_unlock(&x->lock);
    }
    pthread_mutex_unlock(&m->lock);
    if (old != (locale_t)0)
        uselocale(old);
    return r;
}
