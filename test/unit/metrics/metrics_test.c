/* Unit tests of the Prometheus registry: exact exposition text, escaping, cumulative
 * histogram buckets, refused names, label arity, the series cap and concurrent updates. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <pthread.h>

#include <cmocka.h>

#include "sigil/buf.h"
#include "sigil/err.h"
#include "sigil/metrics.h"

static char *
render(struct sigil_metrics *m)
{
    struct sigil_buf b = {0};
    char *s;

    assert_int_equal(sigil_metrics_render(m, &b), 0);
    s = sigil_buf_strdup(&b);
    assert_non_null(s);
    sigil_buf_free(&b);
    return s;
}

static void
test_exact_text(void **state)
{
    (void)state;
    static const char *const result[] = {"result", NULL};
    static const double bounds[] = {0.005, 0.25, 1, 2.5};
    struct sigil_metrics *m;
    struct sigil_counter *issued, *up;
    struct sigil_gauge *entries;
    struct sigil_histogram *sign;
    char *text;

    assert_int_equal(sigil_metrics_new(&m), 0);
    assert_int_equal(sigil_metrics_counter(m, "sigil_svids_issued_total", "X.509-SVIDs issued.",
                                           result, &issued),
                     0);
    assert_int_equal(sigil_metrics_counter(m, "sigil_restarts_total", "Restarts.", NULL, &up), 0);
    assert_int_equal(
        sigil_metrics_gauge(m, "sigil_entries", "Registration entries cached.", NULL, &entries), 0);
    assert_int_equal(sigil_metrics_histogram(m, "sigil_sign_seconds", "Time to sign an SVID.", NULL,
                                             bounds, 4, &sign),
                     0);

    /* before any update: labelled families show no samples, unlabelled ones show 0 */
    text = render(m);
    assert_string_equal(text, "# HELP sigil_svids_issued_total X.509-SVIDs issued.\n"
                              "# TYPE sigil_svids_issued_total counter\n"
                              "# HELP sigil_restarts_total Restarts.\n"
                              "# TYPE sigil_restarts_total counter\n"
                              "sigil_restarts_total 0\n"
                              "# HELP sigil_entries Registration entries cached.\n"
                              "# TYPE sigil_entries gauge\n"
                              "sigil_entries 0\n"
                              "# HELP sigil_sign_seconds Time to sign an SVID.\n"
                              "# TYPE sigil_sign_seconds histogram\n"
                              "sigil_sign_seconds_bucket{le=\"0.005\"} 0\n"
                              "sigil_sign_seconds_bucket{le=\"0.25\"} 0\n"
                              "sigil_sign_seconds_bucket{le=\"1\"} 0\n"
                              "sigil_sign_seconds_bucket{le=\"2.5\"} 0\n"
                              "sigil_sign_seconds_bucket{le=\"+Inf\"} 0\n"
                              "sigil_sign_seconds_sum 0\n"
                              "sigil_sign_seconds_count 0\n");
    free(text);

    assert_int_equal(sigil_counter_inc_with(issued, "ok", NULL), 0);
    assert_int_equal(sigil_counter_add_with(issued, 2, "denied", NULL), 0);
    assert_int_equal(sigil_counter_inc_with(issued, "ok", NULL), 0);
    assert_int_equal(sigil_counter_inc(up), 0);
    assert_int_equal(sigil_counter_add(up, 41), 0);
    assert_int_equal(sigil_gauge_set(entries, 100), 0);
    assert_int_equal(sigil_gauge_add(entries, -0.5), 0);
    /* 2^-10 lands in the first bucket; 0.25 sits exactly on a bound, which counts as "le" */
    assert_int_equal(sigil_histogram_observe(sign, 0.0009765625), 0);
    assert_int_equal(sigil_histogram_observe(sign, 0.25), 0);
    assert_int_equal(sigil_histogram_observe(sign, 2), 0);
    assert_int_equal(sigil_histogram_observe(sign, 10), 0);
    text = render(m);
    assert_string_equal(text, "# HELP sigil_svids_issued_total X.509-SVIDs issued.\n"
                              "# TYPE sigil_svids_issued_total counter\n"
                              "sigil_svids_issued_total{result=\"ok\"} 2\n"
                              "sigil_svids_issued_total{result=\"denied\"} 2\n"
                              "# HELP sigil_restarts_total Restarts.\n"
                              "# TYPE sigil_restarts_total counter\n"
                              "sigil_restarts_total 42\n"
                              "# HELP sigil_entries Registration entries cached.\n"
                              "# TYPE sigil_entries gauge\n"
                              "sigil_entries 99.5\n"
                              "# HELP sigil_sign_seconds Time to sign an SVID.\n"
                              "# TYPE sigil_sign_seconds histogram\n"
                              "sigil_sign_seconds_bucket{le=\"0.005\"} 1\n"
                              "sigil_sign_seconds_bucket{le=\"0.25\"} 2\n"
                              "sigil_sign_seconds_bucket{le=\"1\"} 2\n"
                              "sigil_sign_seconds_bucket{le=\"2.5\"} 3\n"
                              "sigil_sign_seconds_bucket{le=\"+Inf\"} 4\n"
                              "sigil_sign_seconds_sum 12.2509765625\n"
                              "sigil_sign_seconds_count 4\n");
    free(text);
    sigil_metrics_free(m);
}

static void
test_labelled_histogram_and_escaping(void **state)
{
    (void)state;
    static const char *const labels[] = {"method", "path", NULL};
    static const double bounds[] = {0.1, 1};
    struct sigil_metrics *m;
    struct sigil_histogram *h;
    struct sigil_gauge *g;
    char *text;

    assert_int_equal(sigil_metrics_new(&m), 0);
    assert_int_equal(sigil_metrics_histogram(m, "http_seconds",
                                             "Latency \\ by \"route\"\nper path.", labels, bounds,
                                             2, &h),
                     0);
    assert_int_equal(sigil_metrics_gauge(m, "odd:values", "Specials.", labels + 1, &g), 0);
    assert_int_equal(sigil_histogram_observe_with(h, 0.5, "GET", "/a\\b\"c\nd", NULL), 0);
    assert_int_equal(sigil_histogram_observe_with(h, 0.05, "GET", "/a\\b\"c\nd", NULL), 0);
    assert_int_equal(sigil_histogram_observe_with(h, 3, "POST", "/x", NULL), 0);
    assert_int_equal(sigil_gauge_set_with(g, INFINITY, "inf", NULL), 0);
    assert_int_equal(sigil_gauge_set_with(g, -INFINITY, "-inf", NULL), 0);
    assert_int_equal(sigil_gauge_set_with(g, 1e21, "big", NULL), 0);
    assert_int_equal(sigil_gauge_add_with(g, 0.1, "tenth", NULL), 0);
    assert_int_equal(sigil_gauge_set_with(g, 1, "bad\xff\xc0utf8", NULL), 0);
    assert_int_equal(sigil_gauge_set_with(g, 123456, "6 digits", NULL), 0);
    assert_int_equal(sigil_gauge_set_with(g, 1234567, "7 digits", NULL), 0);
    assert_int_equal(sigil_gauge_set_with(g, 0.00001, "small", NULL), 0);
    assert_int_equal(sigil_gauge_set_with(g, -0.0001, "negative", NULL), 0);
    text = render(m);
    assert_string_equal(
        text, "# HELP http_seconds Latency \\\\ by \"route\"\\nper path.\n"
              "# TYPE http_seconds histogram\n"
              "http_seconds_bucket{method=\"GET\",path=\"/a\\\\b\\\"c\\nd\",le=\"0.1\"} 1\n"
              "http_seconds_bucket{method=\"GET\",path=\"/a\\\\b\\\"c\\nd\",le=\"1\"} 2\n"
              "http_seconds_bucket{method=\"GET\",path=\"/a\\\\b\\\"c\\nd\",le=\"+Inf\"} 2\n"
              "http_seconds_sum{method=\"GET\",path=\"/a\\\\b\\\"c\\nd\"} 0.55\n"
              "http_seconds_count{method=\"GET\",path=\"/a\\\\b\\\"c\\nd\"} 2\n"
              "http_seconds_bucket{method=\"POST\",path=\"/x\",le=\"0.1\"} 0\n"
              "http_seconds_bucket{method=\"POST\",path=\"/x\",le=\"1\"} 0\n"
              "http_seconds_bucket{method=\"POST\",path=\"/x\",le=\"+Inf\"} 1\n"
              "http_seconds_sum{method=\"POST\",path=\"/x\"} 3\n"
              "http_seconds_count{method=\"POST\",path=\"/x\"} 1\n"
              "# HELP odd:values Specials.\n"
              "# TYPE odd:values gauge\n"
              "odd:values{path=\"inf\"} +Inf\n"
              "odd:values{path=\"-inf\"} -Inf\n"
              "odd:values{path=\"big\"} 1e+21\n"
              "odd:values{path=\"tenth\"} 0.1\n"
              "odd:values{path=\"bad\xef\xbf\xbd\xef\xbf\xbdutf8\"} 1\n"
              "odd:values{path=\"6 digits\"} 123456\n"
              "odd:values{path=\"7 digits\"} 1.234567e+06\n"
              "odd:values{path=\"small\"} 1e-05\n"
              "odd:values{path=\"negative\"} -0.0001\n");
    free(text);
    sigil_metrics_free(m);
}

static void
test_invalid_names(void **state)
{
    (void)state;
    static const double bounds[] = {1, 2};
    static const double unsorted[] = {2, 1};
    static const double nan_bound[] = {1, NAN};
    struct sigil_metrics *m;
    struct sigil_counter *c;
    struct sigil_gauge *g;
    struct sigil_histogram *h;
    const char *bad_names[] = {"", "1abc", "a-b", "a b", "é", "a\n", NULL};

    assert_int_equal(sigil_metrics_new(&m), 0);
    for (size_t i = 0; bad_names[i] != NULL; i++) {
        assert_int_equal(sigil_metrics_counter(m, bad_names[i], "h", NULL, &c), SIGIL_ERR_INVALID);
        assert_null(c);
    }
    char longname[202];
    memset(longname, 'a', 201);
    longname[201] = '\0';
    assert_int_equal(sigil_metrics_counter(m, longname, "h", NULL, &c), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_metrics_counter(m, "ok", NULL, NULL, &c), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_metrics_counter(m, "ok", "h", (const char *[]){"a:b", NULL}, &c),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_metrics_counter(m, "ok", "h", (const char *[]){"__name", NULL}, &c),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_metrics_counter(m, "ok", "h", (const char *[]){"9a", NULL}, &c),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_metrics_counter(m, "ok", "h", (const char *[]){"a", "a", NULL}, &c),
                     SIGIL_ERR_INVALID);
    assert_int_equal(
        sigil_metrics_counter(
            m, "ok", "h", (const char *[]){"a", "b", "c", "d", "e", "f", "g", "h", "i", NULL}, &c),
        SIGIL_ERR_INVALID);
    assert_int_equal(
        sigil_metrics_histogram(m, "hh", "h", (const char *[]){"le", NULL}, bounds, 2, &h),
        SIGIL_ERR_INVALID);
    assert_int_equal(sigil_metrics_histogram(m, "hh", "h", NULL, unsorted, 2, &h),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_metrics_histogram(m, "hh", "h", NULL, nan_bound, 2, &h),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_metrics_histogram(m, "hh", "h", NULL, bounds, 0, &h), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_metrics_histogram(m, "hh", "h", NULL, (const double[]){1, 1}, 2, &h),
                     SIGIL_ERR_INVALID);
    /* "le" is only reserved for histograms */
    assert_int_equal(sigil_metrics_gauge(m, "g", "h", (const char *[]){"le", NULL}, &g), 0);

    /* taken names, including a histogram's _bucket/_sum/_count, either way round */
    assert_int_equal(sigil_metrics_counter(m, "ok", "h", NULL, &c), 0);
    assert_int_equal(sigil_metrics_gauge(m, "ok", "h", NULL, &g), SIGIL_ERR_EXISTS);
    assert_null(g);
    assert_int_equal(sigil_metrics_histogram(m, "hh", "h", NULL, bounds, 2, &h), 0);
    assert_int_equal(sigil_metrics_counter(m, "hh_count", "h", NULL, &c), SIGIL_ERR_EXISTS);
    assert_int_equal(sigil_metrics_counter(m, "x_sum", "h", NULL, &c), 0);
    assert_int_equal(sigil_metrics_histogram(m, "x", "h", NULL, bounds, 2, &h), SIGIL_ERR_EXISTS);
    assert_int_equal(sigil_metrics_counter(m, "hh_counts", "h", NULL, &c), 0);
    sigil_metrics_free(m);
}

static void
test_label_arity_and_caps(void **state)
{
    (void)state;
    struct sigil_metrics *m;
    struct sigil_counter *c, *plain;
    struct sigil_gauge *g;
    char v[16], *text;

    assert_int_equal(sigil_metrics_new(&m), 0);
    assert_int_equal(sigil_metrics_counter(m, "c", "h", (const char *[]){"a", NULL}, &c), 0);
    assert_int_equal(sigil_metrics_counter(m, "p", "h", NULL, &plain), 0);
    assert_int_equal(sigil_metrics_gauge(m, "g", "h", NULL, &g), 0);
    assert_int_equal(sigil_counter_inc(c), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_counter_inc_with(c, NULL), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_counter_inc_with(c, "x", "y", NULL), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_counter_inc_with(plain, "x", NULL), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_counter_inc_with(plain, NULL), 0);
    assert_int_equal(sigil_gauge_set(g, NAN), SIGIL_ERR_INVALID);

    char *long_value = malloc(SIGIL_METRICS_MAX_VALUE_LEN + 2);
    assert_non_null(long_value);
    memset(long_value, 'v', SIGIL_METRICS_MAX_VALUE_LEN + 1);
    long_value[SIGIL_METRICS_MAX_VALUE_LEN + 1] = '\0';
    assert_int_equal(sigil_counter_inc_with(c, long_value, NULL), SIGIL_ERR_RANGE);
    long_value[SIGIL_METRICS_MAX_VALUE_LEN] = '\0';
    assert_int_equal(sigil_counter_inc_with(c, long_value, NULL), 0);
    free(long_value);

    for (int i = 1; i < SIGIL_METRICS_MAX_SERIES; i++) {
        snprintf(v, sizeof v, "%d", i);
        assert_int_equal(sigil_counter_inc_with(c, v, NULL), 0);
    }
    assert_int_equal(sigil_counter_inc_with(c, "one too many", NULL), SIGIL_ERR_RANGE);
    assert_int_equal(sigil_counter_inc_with(c, "7", NULL), 0); /* known series still count */
    text = render(m);
    assert_non_null(strstr(text, "\nc{a=\"7\"} 2\n"));
    assert_null(strstr(text, "one too many"));
    assert_non_null(strstr(text, "\np 1\n"));
    free(text);
    sigil_metrics_free(m);
    sigil_metrics_free(NULL);
}

#define THREADS 8
#define ROUNDS 5000

struct shared {
    struct sigil_counter *c;
    struct sigil_histogram *h;
    struct sigil_gauge *g;
};

static void *
hammer(void *arg)
{
    struct shared *s = arg;

    for (int i = 0; i < ROUNDS; i++) {
        sigil_counter_inc_with(s->c, i % 2 ? "odd" : "even", NULL);
        sigil_histogram_observe(s->h, (double)(i % 4));
        sigil_gauge_add(s->g, 1);
    }
    return NULL;
}

static void
test_threads(void **state)
{
    (void)state;
    static const double bounds[] = {0, 1, 2};
    struct sigil_metrics *m;
    struct shared s;
    pthread_t t[THREADS];
    char *text;

    assert_int_equal(sigil_metrics_new(&m), 0);
    assert_int_equal(sigil_metrics_counter(m, "c", "h", (const char *[]){"k", NULL}, &s.c), 0);
    assert_int_equal(sigil_metrics_histogram(m, "h", "h", NULL, bounds, 3, &s.h), 0);
    assert_int_equal(sigil_metrics_gauge(m, "g", "h", NULL, &s.g), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, hammer, &s), 0);
    free(render(m)); /* rendering while updates run must be safe */
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    text = render(m);
    assert_string_equal(text, "# HELP c h\n# TYPE c counter\n"
                              "c{k=\"even\"} 20000\n"
                              "c{k=\"odd\"} 20000\n"
                              "# HELP h h\n# TYPE h histogram\n"
                              "h_bucket{le=\"0\"} 10000\n"
                              "h_bucket{le=\"1\"} 20000\n"
                              "h_bucket{le=\"2\"} 30000\n"
                              "h_bucket{le=\"+Inf\"} 40000\n"
                              "h_sum 60000\n"
                              "h_count 40000\n"
                              "# HELP g h\n# TYPE g gauge\n"
                              "g 40000\n");
    free(text);
    sigil_metrics_free(m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_text),
        cmocka_unit_test(test_labelled_histogram_and_escaping),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_label_arity_and_caps),
        cmocka_unit_test(test_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
