/* Prometheus metrics: counters, gauges and fixed-bucket histograms, optionally labelled,
 * kept in a registry that renders them as the text exposition format 0.0.4. Updates are
 * thread-safe; a registry owns its metrics and frees them with itself. */
#ifndef SIGIL_METRICS_H
#define SIGIL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "sigil/buf.h"

/* The Content-Type of a rendered registry. */
#define SIGIL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
/* At most this many label names per metric, buckets per histogram, label value sets per
 * metric (a guard against unbounded label values), and bytes per label value. */
#define SIGIL_METRICS_MAX_LABELS 8
#define SIGIL_METRICS_MAX_BUCKETS 64
#define SIGIL_METRICS_MAX_SERIES 1000
#define SIGIL_METRICS_MAX_VALUE_LEN 1024

struct sigil_metrics;
struct sigil_counter;
struct sigil_gauge;
struct sigil_histogram;

/* Creates an empty registry in *out; returns 0 or SIGIL_ERR_NOMEM. Free with
 * sigil_metrics_free. */
int sigil_metrics_new(struct sigil_metrics **out);
/* Frees the registry and every metric in it (their handles die with it); NULL is fine. */
void sigil_metrics_free(struct sigil_metrics *m);

/* Registers a counter (name [a-zA-Z_:][a-zA-Z0-9_:]*, help text, label names ending in NULL
 * or labels NULL for none). Returns 0 with *out set (owned by m), SIGIL_ERR_INVALID for a
 * bad name or label, SIGIL_ERR_EXISTS if the name is taken, or SIGIL_ERR_NOMEM. */
int sigil_metrics_counter(struct sigil_metrics *m, const char *name, const char *help,
                          const char *const *labels, struct sigil_counter **out);
/* Registers a gauge; same contract as sigil_metrics_counter. */
int sigil_metrics_gauge(struct sigil_metrics *m, const char *name, const char *help,
                        const char *const *labels, struct sigil_gauge **out);
/* Registers a histogram with nbounds finite, strictly increasing upper bounds (+Inf is
 * implied); the label "le" is reserved. Same contract as sigil_metrics_counter. */
int sigil_metrics_histogram(struct sigil_metrics *m, const char *name, const char *help,
                            const char *const *labels, const double *bounds, size_t nbounds,
                            struct sigil_histogram **out);

/* The update functions below return 0, SIGIL_ERR_INVALID when the number of label values
 * differs from the metric's label names (or a value is NaN), SIGIL_ERR_RANGE when a label
 * value is too long or the metric already has SIGIL_METRICS_MAX_SERIES value sets, or
 * SIGIL_ERR_NOMEM. The "_with" forms take one label value per label name, then NULL. */

/* Adds 1 to an unlabelled counter. */
int sigil_counter_inc(struct sigil_counter *c);
/* Adds n to an unlabelled counter. */
int sigil_counter_add(struct sigil_counter *c, uint64_t n);
/* Adds 1 to the counter of these label values: sigil_counter_inc_with(c, "ok", NULL). */
int sigil_counter_inc_with(struct sigil_counter *c, ...) __attribute__((sentinel));
/* Adds n to the counter of these label values. */
int sigil_counter_add_with(struct sigil_counter *c, uint64_t n, ...) __attribute__((sentinel));
/* Sets an unlabelled gauge. */
int sigil_gauge_set(struct sigil_gauge *g, double v);
/* Adds d (may be negative) to an unlabelled gauge. */
int sigil_gauge_add(struct sigil_gauge *g, double d);
/* Sets the gauge of these label values. */
int sigil_gauge_set_with(struct sigil_gauge *g, double v, ...) __attribute__((sentinel));
/* Adds d to the gauge of these label values. */
int sigil_gauge_add_with(struct sigil_gauge *g, double d, ...) __attribute__((sentinel));
/* Records one observation in an unlabelled histogram. */
int sigil_histogram_observe(struct sigil_histogram *h, double v);
/* Records one observation in the histogram of these label values. */
int sigil_histogram_observe_with(struct sigil_histogram *h, double v, ...)
    __attribute__((sentinel));

/* Appends the whole registry to out as Prometheus text format 0.0.4 (metrics in the order
 * registered, value sets in the order first seen). Returns 0 or SIGIL_ERR_NOMEM; the caller
 * owns and frees out. */
int sigil_metrics_render(struct sigil_metrics *m, struct sigil_buf *out);

#endif
