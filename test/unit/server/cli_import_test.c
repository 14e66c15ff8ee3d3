/* Unit tests of `entry import` input (server/cli_import.c): JSON lines with blank, CRLF,
 * malformed and refused lines (each with its line number), SPIRE registration files (field
 * conversions, line numbers found by the scanner, refusals), and the caps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The CLI is compiled into sigil-server, not sigil_server_core: the test compiles it in. */
#include "../../../server/cli_req.c"

#include "../../../server/cli_import.c"

#define GOOD(id)                                                                                   \
    "{\"spiffe_id\":\"spiffe://td/" id "\",\"parent_id\":\"spiffe://td/n\","                       \
    "\"selectors\":[\"unix:uid:1\"]}"

struct want {
    size_t line;
    const char *json; /* the EntryInput (sorted keys), or NULL */
    const char *err;  /* a part of the refusal, or NULL */
};

static void
expect_items(const char *data, enum sigil_cli_import_format fmt, const struct want *w, size_t n)
{
    struct sigil_cli_import *imp = NULL;
    struct sigil_cli_import_item it = {0};
    char err[256];
    size_t i = 0;
    int r;

    assert_int_equal(sigil_cli_import_open(data, strlen(data), &imp, err, sizeof err), 0);
    assert_int_equal(sigil_cli_import_format(imp), fmt);
    assert_int_equal(sigil_cli_import_count(imp), n);
    while ((r = sigil_cli_import_next(imp, &it)) == 1) {
        assert_true(i < n);
        assert_int_equal(it.index, i + 1);
        if (it.line != w[i].line)
            fail_msg("item %zu: line %zu, want %zu", i + 1, it.line, w[i].line);
        if (w[i].json != NULL) {
            char *s;

            if (it.input == NULL)
                fail_msg("item %zu refused: %s", i + 1, it.err);
            s = json_dumps(it.input, JSON_COMPACT | JSON_SORT_KEYS);
            assert_string_equal(s, w[i].json);
            free(s);
        } else {
            assert_null(it.input);
            if (strstr(it.err, w[i].err) == NULL)
                fail_msg("item %zu: error \"%s\" lacks \"%s\"", i + 1, it.err, w[i].err);
        }
        i++;
    }
    assert_int_equal(r, 0);
    assert_int_equal(i, n);
    assert_int_equal(sigil_cli_import_next(imp, &it), 0); /* stays at the end */
    sigil_cli_import_item_clear(&it);
    sigil_cli_import_free(imp);
}

#define OUT(id)                                                                                    \
    "{\"parent_id\":\"spiffe://td/n\",\"selectors\":[\"unix:uid:1\"],\"spiffe_id\":"               \
    "\"spiffe://td/" id "\"}"

static void
test_jsonl(void **state)
{
    const struct want w[] = {
        {1, OUT("a"), NULL},
        {3, OUT("b"), NULL},
        {4, NULL, "not JSON"},
        {5, NULL, "an entry must be a JSON object"},
        {6, NULL, "unknown field \"ttl\""},
        {7, NULL, "selector \"uid\""},
        {9, NULL, "not JSON"}, /* duplicate key */
        {10, OUT("c"), NULL},
    };

    (void)state;
    expect_items(GOOD("a") "\n"
                           "   \t\n" GOOD("b") "\r\n"
                                               "{\"spiffe_id\": \n"
                                               "[1,2]\n"
                                               "{\"spiffe_id\":\"spiffe://td/x\",\"parent_id\":"
                                               "\"spiffe://td/n\",\"selectors\":[\"a:b\"],"
                                               "\"ttl\":5}\n"
                                               "{\"spiffe_id\":\"spiffe://td/x\",\"parent_id\":"
                                               "\"spiffe://td/n\",\"selectors\":[\"uid\"]}\n"
                                               "\n"
                                               "{\"hint\":\"a\",\"hint\":\"b\"}\n" GOOD("c"),
                 SIGIL_CLI_IMPORT_JSONL, w, 8);
}

static void
test_jsonl_edges(void **state)
{
    const struct want one[] = {{1, OUT("a"), NULL}};
    struct sigil_cli_import *imp = NULL;
    struct sigil_cli_import_item it = {0};
    char err[256], *big;
    size_t n = SIGIL_CLI_IMPORT_LINE_MAX + 10;

    (void)state;
    expect_items("", SIGIL_CLI_IMPORT_JSONL, NULL, 0);
    expect_items("\n\n  \n", SIGIL_CLI_IMPORT_JSONL, NULL, 0);
    expect_items(GOOD("a"), SIGIL_CLI_IMPORT_JSONL, one, 1);
    expect_items(GOOD("a") "\n", SIGIL_CLI_IMPORT_JSONL, one, 1);
    /* a line over the cap is refused without being parsed */
    big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    assert_int_equal(sigil_cli_import_open(big, n, &imp, err, sizeof err), 0);
    assert_int_equal(sigil_cli_import_next(imp, &it), 1);
    assert_null(it.input);
    assert_non_null(strstr(it.err, "longer than"));
    sigil_cli_import_item_clear(&it);
    sigil_cli_import_free(imp);
    free(big);
    /* the whole input is capped before anything is read */
    assert_int_equal(
        sigil_cli_import_open("", (size_t)SIGIL_CLI_IMPORT_MAX + 1, &imp, err, sizeof err),
        SIGIL_ERR_RANGE);
    assert_null(imp);
}

static void
test_spire(void **state)
{
    static const char file[] =
        "{\n"
        "  \"version\": \"entries\", \"x\": [\"entries\", {\"entries\": [1]}],\n"
        "  \"entries\": [\n"
        "    {\n"
        "      \"selectors\": [{\"type\": \"unix\", \"value\": \"uid:1111\"}, \"k8s:ns:a\"],\n"
        "      \"spiffe_id\": \"spiffe://example.org/Blog\",\n"
        "      \"parent_id\": \"spiffe://example.org/spire/agent/join_token/T\",\n"
        "      \"ttl\": 200, \"admin\": true, \"entry_id\": \"e1\", \"revision_number\": \"4\",\n"
        "      \"created_at\": \"1700000000\", \"store_svid\": false\n"
        "    },\n"
        "    {\"spiffe_id\": {\"trust_domain\": \"example.org\", \"path\": \"/db\"},\n"
        "     \"parent_id\": {\"trust_domain\": \"example.org\"},\n"
        "     \"selectors\": [{\"type\": \"unix\", \"value\": \"uid:1\"}],\n"
        "     \"x509_svid_ttl\": \"300\", \"jwt_svid_ttl\": 30, \"ttl\": 300,\n"
        "     \"federates_with\": [\"spiffe://b.org\", \"c.org\"], \"dns_names\": [\"db\"],\n"
        "     \"entryExpiry\": 1900000000, \"downstream\": true, \"hint\": \"h\"},\n"
        "    {\"spiffe_id\": \"spiffe://example.org/x\", \"parent_id\": "
        "\"spiffe://example.org/y\",\n"
        "     \"selectors\": [{\"type\": \"unix\", \"value\": \"uid:1\"}], \"store_svid\": true},\n"
        "    {\"spiffe_id\": \"spiffe://example.org/x\", \"parent_id\": "
        "\"spiffe://example.org/y\",\n"
        "     \"selectors\": [{\"type\": \"unix\"}]},\n"
        "    {\"spiffe_id\": \"spiffe://example.org/x\", \"parent_id\": "
        "\"spiffe://example.org/y\",\n"
        "     \"selectors\": [{\"type\": \"unix\", \"value\": \"uid:1\"}], \"ttl\": 1,\n"
        "     \"x509_svid_ttl\": 2},\n"
        "    {\"spiffe_id\": \"spiffe://example.org/x\", \"parent_id\": "
        "\"spiffe://example.org/y\",\n"
        "     \"selectors\": [{\"type\": \"unix\", \"value\": \"uid:1\"}], \"color\": \"red\"},\n"
        "    {\"spiffe_id\": {\"trust_domain\": \"example.org\", \"path\": \"/a\", \"x\": 1},\n"
        "     \"parent_id\": \"spiffe://example.org/y\", \"selectors\": [\"a:b\"]},\n"
        "    {\"spiffe_id\": \"spiffe://example.org/x\", \"parent_id\": "
        "\"spiffe://example.org/y\",\n"
        "     \"selectors\": [\"a:b\"], \"federates_with\": [\"spiffe://b.org/path\"]},\n"
        "    {\"spiffe_id\": \"spiffe://example.org/x\", \"parent_id\": "
        "\"spiffe://example.org/y\",\n"
        "     \"selectors\": [\"a:b\"], \"expires_at\": \"soon\"},\n"
        "    \"not an entry\"\n"
        "  ]\n"
        "}\n";
    const struct want w[] = {
        {4,
         "{\"admin\":true,\"parent_id\":\"spiffe://example.org/spire/agent/join_token/T\","
         "\"selectors\":[\"unix:uid:1111\",\"k8s:ns:a\"],\"spiffe_id\":"
         "\"spiffe://example.org/Blog\",\"x509_svid_ttl\":200}",
         NULL},
        {11,
         "{\"dns_names\":[\"db\"],\"downstream\":true,\"expires_at\":\"2030-03-17T17:46:40Z\","
         "\"federates_with\":[\"b.org\",\"c.org\"],\"hint\":\"h\",\"jwt_svid_ttl\":30,"
         "\"parent_id\":\"spiffe://example.org\",\"selectors\":[\"unix:uid:1\"],"
         "\"spiffe_id\":\"spiffe://example.org/db\",\"x509_svid_ttl\":300}",
         NULL},
        {17, NULL, "store_svid"},
        {19, NULL, "selectors[0]: must be {\"type\",\"value\"}"},
        {21, NULL, "the same as ttl"},
        {24, NULL, "unknown field \"color\""},
        {26, NULL, "spiffe_id: a string, or {\"trust_domain\",\"path\"}"},
        {28, NULL, "federates_with[0]"},
        {30, NULL, "expires_at: unix seconds"},
        {32, NULL, "an entry must be a JSON object"},
    };

    (void)state;
    expect_items(file, SIGIL_CLI_IMPORT_SPIRE, w, sizeof w / sizeof w[0]);
}

static void
test_spire_edges(void **state)
{
    const struct want escaped[] = {{0, OUT("a"), NULL}};
    const struct want one_line[] = {{1, OUT("a"), NULL}, {1, OUT("b"), NULL}};
    struct sigil_cli_import *imp = NULL;
    char err[256];

    (void)state;
    /* a key spelled with an escape: jansson reads "entries", the scanner does not, so items
     * are reported by number (line 0) rather than at a wrong line */
    expect_items("{\"entr\\u0069es\": [" GOOD("a") "]}", SIGIL_CLI_IMPORT_SPIRE, escaped, 1);
    expect_items("{\"entries\": [" GOOD("a") ", " GOOD("b") "]}", SIGIL_CLI_IMPORT_SPIRE, one_line,
                 2);
    expect_items("{\"entries\": []}", SIGIL_CLI_IMPORT_SPIRE, NULL, 0);
    assert_int_equal(sigil_cli_import_open("{\"entries\": {}}", 15, &imp, err, sizeof err),
                     SIGIL_ERR_INVALID);
    assert_null(imp);
    assert_non_null(strstr(err, "must be a list"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonl),
        cmocka_unit_test(test_jsonl_edges),
        cmocka_unit_test(test_spire),
        cmocka_unit_test(test_spire_edges),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
