/* Unit tests of the CLI's request side (server/cli_req.c): `entry` command lines parsed into
 * arguments, the EntryInput / EntryPatch bodies and list targets built from them, and the
 * local checks every EntryInput passes (good and malformed input, caps, the rule named). */
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

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static struct sigil_cli_entry_args args;
static char err[SIGIL_CLI_ERR_MAX];

/* Serialises j with sorted keys, so tests compare against one fixed text. */
static char *
dump(const json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

    assert_non_null(s);
    return s;
}

static void
expect_usage(char **argv, int argc, const char *cmd, const char *want)
{
    err[0] = '\0';
    assert_int_equal(sigil_cli_entry_args_parse(cmd, argc, argv, &args, err, sizeof err),
                     SIGIL_ERR_INVALID);
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err, want);
}

static void
test_create_body(void **state)
{
    char *argv[] = {"create",
                    "--spiffe-id",
                    "spiffe://example.org/prod/web/team/app",
                    "--parent-id=spiffe://example.org/sigil/agent/n1",
                    "--selector",
                    "unix:uid:1000",
                    "--selector",
                    "unix:path:/usr/bin/app",
                    "--x509-ttl",
                    "1h30m",
                    "--jwt-ttl",
                    "0",
                    "--dns",
                    "web.example.org",
                    "--dns",
                    "*.web.example.org",
                    "--federates-with",
                    "spiffe://other.org",
                    "--federates-with",
                    "third.org",
                    "--admin",
                    "--downstream",
                    "--hint",
                    "blue",
                    "--admin-socket",
                    "/tmp/s.sock",
                    "--output",
                    "json"};
    json_t *body = NULL;
    char *s;

    (void)state;
    assert_int_equal(sigil_cli_entry_args_parse("create", ARGC(argv), argv, &args, err, sizeof err),
                     0);
    assert_string_equal(args.common.admin_socket, "/tmp/s.sock");
    assert_int_equal(args.common.output, SIGIL_CLI_OUTPUT_JSON);
    assert_int_equal(args.x509_ttl, 5400);
    assert_int_equal(args.jwt_ttl, 0);
    assert_int_equal(sigil_cli_entry_input_build(&args, &body, err, sizeof err), 0);
    s = dump(body);
    assert_string_equal(
        s, "{\"admin\":true,\"dns_names\":[\"web.example.org\",\"*.web.example.org\"],"
           "\"downstream\":true,\"federates_with\":[\"other.org\",\"third.org\"],\"hint\":\"blue\","
           "\"jwt_svid_ttl\":0,\"parent_id\":\"spiffe://example.org/sigil/agent/n1\","
           "\"selectors\":[\"unix:uid:1000\",\"unix:path:/usr/bin/app\"],"
           "\"spiffe_id\":\"spiffe://example.org/prod/web/team/app\",\"x509_svid_ttl\":5400}");
    free(s);
    json_decref(body);
}

static void
test_create_minimal_and_refusals(void **state)
{
    char *ok[] = {"create",      "--spiffe-id", "spiffe://td/a", "--parent-id",
                  "spiffe://td", "--selector",  "k8s:ns:prod"};
    char *root[] = {"create",        "--spiffe-id", "spiffe://td", "--parent-id",
                    "spiffe://td/n", "--selector",  "k8s:ns:prod"};
    char *bad_sel[] = {"create",     "--spiffe-id", "spiffe://td/a", "--parent-id", "spiffe://td/n",
                       "--selector", "k8s"};
    char *dup_sel[] = {"create",     "--spiffe-id", "spiffe://td/a", "--parent-id", "spiffe://td/n",
                       "--selector", "k8s:ns:a",    "--selector",    "k8s:ns:a"};
    char *bad_td[] = {"create",      "--spiffe-id",      "spiffe://td/a",
                      "--parent-id", "spiffe://td/n",    "--selector",
                      "k8s:ns:a",    "--federates-with", "spiffe://td/path"};
    char *bad_dns[] = {"create",     "--spiffe-id", "spiffe://td/a", "--parent-id", "spiffe://td/n",
                       "--selector", "k8s:ns:a",    "--dns",         "-bad.example"};
    char *missing[] = {"create", "--spiffe-id", "spiffe://td/a"};
    char *bad_utf8[] = {"create",      "--spiffe-id",   "spiffe://td/a",
                        "--parent-id", "spiffe://td/n", "--selector",
                        "k8s:ns:a",    "--hint",        "\xc3("};
    json_t *body = NULL;
    char *s;

    (void)state;
    assert_int_equal(sigil_cli_entry_args_parse("create", ARGC(ok), ok, &args, err, sizeof err), 0);
    assert_int_equal(sigil_cli_entry_input_build(&args, &body, err, sizeof err), 0);
    s = dump(body);
    assert_string_equal(s, "{\"parent_id\":\"spiffe://td\",\"selectors\":[\"k8s:ns:prod\"],"
                           "\"spiffe_id\":\"spiffe://td/a\"}");
    free(s);
    json_decref(body);

    assert_int_equal(sigil_cli_entry_args_parse("create", ARGC(root), root, &args, err, sizeof err),
                     0);
    assert_int_equal(sigil_cli_entry_input_build(&args, &body, err, sizeof err), SIGIL_ERR_INVALID);
    assert_null(body);
    assert_non_null(strstr(err, "X-2"));

    assert_int_equal(
        sigil_cli_entry_args_parse("create", ARGC(bad_sel), bad_sel, &args, err, sizeof err), 0);
    assert_int_equal(sigil_cli_entry_input_build(&args, &body, err, sizeof err), SIGIL_ERR_INVALID);
    assert_non_null(strstr(err, "selector \"k8s\": selector:"));

    assert_int_equal(
        sigil_cli_entry_args_parse("create", ARGC(dup_sel), dup_sel, &args, err, sizeof err), 0);
    assert_int_equal(sigil_cli_entry_input_build(&args, &body, err, sizeof err), SIGIL_ERR_INVALID);
    assert_non_null(strstr(err, "given twice"));

    assert_int_equal(
        sigil_cli_entry_args_parse("create", ARGC(bad_td), bad_td, &args, err, sizeof err), 0);
    assert_int_equal(sigil_cli_entry_input_build(&args, &body, err, sizeof err), SIGIL_ERR_INVALID);
    assert_non_null(strstr(err, "--federates-with"));

    assert_int_equal(
        sigil_cli_entry_args_parse("create", ARGC(bad_dns), bad_dns, &args, err, sizeof err), 0);
    assert_int_equal(sigil_cli_entry_input_build(&args, &body, err, sizeof err), SIGIL_ERR_INVALID);
    assert_non_null(strstr(err, "not a DNS name"));

    assert_int_equal(
        sigil_cli_entry_args_parse("create", ARGC(bad_utf8), bad_utf8, &args, err, sizeof err), 0);
    assert_int_equal(sigil_cli_entry_input_build(&args, &body, err, sizeof err), SIGIL_ERR_INVALID);
    assert_string_equal(err, "--hint: not valid UTF-8");

    assert_int_equal(
        sigil_cli_entry_args_parse("create", ARGC(missing), missing, &args, err, sizeof err), 0);
    assert_int_equal(sigil_cli_entry_input_build(&args, &body, err, sizeof err), SIGIL_ERR_INVALID);
    assert_non_null(strstr(err, "--parent-id"));
}

static void
test_update_patch(void **state)
{
    char *argv[] = {"update",
                    "--id",
                    "6f1c2a4e-0b7d-4c55-9a0e-1d2c3b4a5f60",
                    "--no-admin",
                    "--clear-dns",
                    "--clear-federates-with",
                    "--hint",
                    "",
                    "--jwt-ttl",
                    "90s"};
    char *empty[] = {"update", "--id", "6f1c2a4e-0b7d-4c55-9a0e-1d2c3b4a5f60"};
    json_t *body = NULL;
    char *s;

    (void)state;
    assert_int_equal(sigil_cli_entry_args_parse("update", ARGC(argv), argv, &args, err, sizeof err),
                     0);
    assert_int_equal(sigil_cli_entry_patch_build(&args, &body, err, sizeof err), 0);
    s = dump(body);
    assert_string_equal(s, "{\"admin\":false,\"dns_names\":[],\"federates_with\":[],\"hint\":\"\","
                           "\"jwt_svid_ttl\":90}");
    free(s);
    json_decref(body);

    assert_int_equal(
        sigil_cli_entry_args_parse("update", ARGC(empty), empty, &args, err, sizeof err), 0);
    assert_int_equal(sigil_cli_entry_patch_build(&args, &body, err, sizeof err), SIGIL_ERR_INVALID);
    assert_null(body);
    assert_non_null(strstr(err, "nothing to update"));
}

static void
test_usage_errors(void **state)
{
    char *unknown[] = {"create", "--spife-id", "x"};
    char *novalue[] = {"create", "--spiffe-id"};
    char *foreign[] = {"show", "--x509-ttl", "1h"};
    char *match[] = {"show", "--match", "any"};
    char *badmatch[] = {"show", "--selector", "a:b", "--match", "some"};
    char *badid[] = {"show", "--id", "6f1c2a4e-0b7d-4c55-9a0e-1d2c3b4a5f6"};
    char *idfilter[] = {"show", "--id", "6f1c2a4e-0b7d-4c55-9a0e-1d2c3b4a5f60", "--team", "t"};
    char *noid[] = {"delete"};
    char *page0[] = {"show", "--page-size", "0"};
    char *page_big[] = {"show", "--page-size", "1001"};
    char *page_lead[] = {"show", "--page-size", "010"};
    char *ttl[] = {"create", "--x509-ttl", "1500ms"};
    char *ttl_unit[] = {"create", "--x509-ttl", "30m1h"};
    char *output[] = {"show", "--output", "yaml"};
    char *two_files[] = {"import", "a", "b"};
    char *positional[] = {"show", "extra"};
    char *batch[] = {"import", "--batch-size", "10001"};
    char *dns_both[] = {"update", "--id", "6f1c2a4e-0b7d-4c55-9a0e-1d2c3b4a5f60",
                        "--dns",  "a.b",  "--clear-dns"};

    (void)state;
    expect_usage(unknown, ARGC(unknown), "create", "unknown option --spife-id");
    expect_usage(novalue, ARGC(novalue), "create", "needs a value");
    expect_usage(foreign, ARGC(foreign), "show", "does not take --x509-ttl");
    expect_usage(match, ARGC(match), "show", "--match needs --selector");
    expect_usage(badmatch, ARGC(badmatch), "show", "exact, subset, superset or any");
    expect_usage(badid, ARGC(badid), "show", "not an entry id");
    expect_usage(idfilter, ARGC(idfilter), "show", "no filters");
    expect_usage(noid, ARGC(noid), "delete", "needs --id");
    expect_usage(page0, ARGC(page0), "show", "--page-size");
    expect_usage(page_big, ARGC(page_big), "show", "--page-size");
    expect_usage(page_lead, ARGC(page_lead), "show", "--page-size");
    expect_usage(ttl, ARGC(ttl), "create", "whole seconds");
    expect_usage(ttl_unit, ARGC(ttl_unit), "create", "--x509-ttl: duration");
    expect_usage(output, ARGC(output), "show", "json or text");
    expect_usage(two_files, ARGC(two_files), "import", "unexpected argument");
    expect_usage(positional, ARGC(positional), "show", "unexpected argument \"extra\"");
    expect_usage(batch, ARGC(batch), "import", "--batch-size");
    expect_usage(dns_both, ARGC(dns_both), "update", "give one");
    expect_usage(noid, ARGC(noid), "frobnicate", "unknown command");
}

static void
test_help_and_import_args(void **state)
{
    char *help[] = {"show", "--help"};
    char *imp[] = {"import", "--batch-size", "250", "-"};
    char *imp_file[] = {"import", "entries.jsonl", "--admin-socket", "/s"};

    (void)state;
    assert_int_equal(sigil_cli_entry_args_parse("show", ARGC(help), help, &args, err, sizeof err),
                     0);
    assert_true(args.common.help);
    assert_int_equal(sigil_cli_entry_args_parse("import", ARGC(imp), imp, &args, err, sizeof err),
                     0);
    assert_int_equal(args.batch_size, 250);
    assert_string_equal(args.file, "-");
    assert_int_equal(
        sigil_cli_entry_args_parse("import", ARGC(imp_file), imp_file, &args, err, sizeof err), 0);
    assert_int_equal(args.batch_size, 1000);
    assert_string_equal(args.file, "entries.jsonl");
    assert_string_equal(args.common.admin_socket, "/s");
}

static void
check_input(const char *json, bool patch, int want, const char *why)
{
    json_error_t e;
    json_t *j = json_loads(json, JSON_REJECT_DUPLICATES, &e);

    if (j == NULL)
        fail_msg("test JSON does not parse: %s: %s", json, e.text);
    err[0] = '\0';
    if (sigil_cli_entry_input_check(j, patch, err, sizeof err) != want)
        fail_msg("%s: want %d, got error \"%s\"", json, want, err);
    if (want != 0 && strstr(err, why) == NULL)
        fail_msg("%s: error \"%s\" lacks \"%s\"", json, err, why);
    json_decref(j);
}

#define BASE "\"spiffe_id\":\"spiffe://td/a\",\"parent_id\":\"spiffe://td/n\""
#define SEL "\"selectors\":[\"unix:uid:1\"]"

static void
test_input_check(void **state)
{
    char big[8000];
    size_t n;

    (void)state;
    check_input("{" BASE "," SEL "}", false, 0, "");
    check_input("{" BASE "," SEL ",\"x509_svid_ttl\":0,\"jwt_svid_ttl\":2147483647,\"admin\":false,"
                "\"downstream\":true,\"hint\":\"\",\"dns_names\":[],\"federates_with\":[\"b.org\"],"
                "\"expires_at\":\"2027-01-31T12:00:00Z\"}",
                false, 0, "");
    check_input("{" BASE "," SEL ",\"expires_at\":\"2027-01-31T12:00:00.5+01:00\"}", false, 0, "");
    check_input("[]", false, SIGIL_ERR_INVALID, "must be a JSON object");
    check_input("{" BASE "," SEL ",\"ttl\":5}", false, SIGIL_ERR_INVALID, "unknown field \"ttl\"");
    check_input("{" BASE "}", false, SIGIL_ERR_INVALID, "selectors: required");
    check_input("{\"parent_id\":\"spiffe://td/n\"," SEL "}", false, SIGIL_ERR_INVALID,
                "spiffe_id: required");
    check_input("{\"spiffe_id\":\"spiffe://td/a\"," SEL "}", false, SIGIL_ERR_INVALID,
                "parent_id: required");
    check_input("{\"spiffe_id\":\"spiffe://td\",\"parent_id\":\"spiffe://td/n\"," SEL "}", false,
                SIGIL_ERR_INVALID, "X-2");
    check_input("{\"spiffe_id\":\"http://td/a\",\"parent_id\":\"spiffe://td/n\"," SEL "}", false,
                SIGIL_ERR_INVALID, "spiffe_id: ID-");
    check_input("{\"spiffe_id\":7,\"parent_id\":\"spiffe://td/n\"," SEL "}", false,
                SIGIL_ERR_INVALID, "spiffe_id: must be a string");
    check_input("{" BASE ",\"selectors\":[]}", false, SIGIL_ERR_INVALID, "at least one");
    check_input("{" BASE ",\"selectors\":\"unix:uid:1\"}", false, SIGIL_ERR_INVALID,
                "at least one");
    check_input("{" BASE ",\"selectors\":[1]}", false, SIGIL_ERR_INVALID, "selectors[0]");
    check_input("{" BASE ",\"selectors\":[\"UNIX:uid:1\"]}", false, SIGIL_ERR_INVALID,
                "selector \"UNIX:uid:1\"");
    check_input("{" BASE ",\"selectors\":[\"unix:uid:1\",\"unix:uid:1\"]}", false,
                SIGIL_ERR_INVALID, "given twice");
    check_input("{" BASE "," SEL ",\"x509_svid_ttl\":-1}", false, SIGIL_ERR_INVALID,
                "x509_svid_ttl");
    check_input("{" BASE "," SEL ",\"jwt_svid_ttl\":2147483648}", false, SIGIL_ERR_INVALID,
                "jwt_svid_ttl");
    check_input("{" BASE "," SEL ",\"jwt_svid_ttl\":1.5}", false, SIGIL_ERR_INVALID,
                "jwt_svid_ttl");
    check_input("{" BASE "," SEL ",\"dns_names\":[\"a..b\"]}", false, SIGIL_ERR_INVALID,
                "not a DNS name");
    check_input("{" BASE "," SEL ",\"dns_names\":[\"a.b-\"]}", false, SIGIL_ERR_INVALID,
                "not a DNS name");
    check_input("{" BASE "," SEL ",\"dns_names\":[\"*\"]}", false, SIGIL_ERR_INVALID,
                "not a DNS name");
    check_input("{" BASE "," SEL ",\"dns_names\":\"a.b\"}", false, SIGIL_ERR_INVALID,
                "dns_names: must be a list");
    check_input("{" BASE "," SEL ",\"federates_with\":[\"spiffe://b.org\"]}", false,
                SIGIL_ERR_INVALID, "federates_with: \"spiffe://b.org\"");
    check_input("{" BASE "," SEL ",\"admin\":\"yes\"}", false, SIGIL_ERR_INVALID,
                "admin: must be true or false");
    check_input("{" BASE "," SEL ",\"expires_at\":\"1700000000\"}", false, SIGIL_ERR_INVALID,
                "RFC 3339");
    check_input("{" BASE "," SEL ",\"expires_at\":\"2027-01-31\"}", false, SIGIL_ERR_INVALID,
                "RFC 3339");
    /* a hint of 1,025 bytes */
    n = (size_t)snprintf(big, sizeof big, "{" BASE "," SEL ",\"hint\":\"");
    memset(big + n, 'h', 1025);
    snprintf(big + n + 1025, sizeof big - n - 1025, "\"}");
    check_input(big, false, SIGIL_ERR_INVALID, "hint: a string of at most 1024 bytes");
    big[n + 1024] = '"';
    big[n + 1025] = '}';
    big[n + 1026] = '\0';
    check_input(big, false, 0, "");
    /* 257 selectors */
    n = (size_t)snprintf(big, sizeof big, "{" BASE ",\"selectors\":[");
    for (int i = 0; i < 257; i++)
        n += (size_t)snprintf(big + n, sizeof big - n, "%s\"u:%d\"", i ? "," : "", i);
    snprintf(big + n, sizeof big - n, "]}");
    check_input(big, false, SIGIL_ERR_INVALID, "more than 256");
    /* patches: nothing required, no expires_at */
    check_input("{\"hint\":\"x\"}", true, 0, "");
    check_input("{}", true, 0, "");
    check_input("{\"expires_at\":\"2027-01-31T12:00:00Z\"}", true, SIGIL_ERR_INVALID,
                "unknown field \"expires_at\"");
    check_input("{\"selectors\":[]}", true, SIGIL_ERR_INVALID, "at least one");
}

static void
test_list_target(void **state)
{
    char *argv[] = {"show",       "--spiffe-id", "spiffe://td/a", "--selector",
                    "k8s:ns:a b", "--selector",  "unix:uid:1",    "--match",
                    "exact",      "--team",      "pay/ments",     "--page-size",
                    "50"};
    char *plain[] = {"show"};
    char *bad[] = {"show", "--selector", "nocolon"};
    char *badid[] = {"show", "--parent-id", "spiffe://TD/a"};
    char *t = NULL;

    (void)state;
    assert_int_equal(sigil_cli_entry_args_parse("show", ARGC(argv), argv, &args, err, sizeof err),
                     0);
    assert_int_equal(sigil_cli_entry_list_target(&args, "tok+/=", &t, err, sizeof err), 0);
    assert_string_equal(t, "/v1/entries?spiffe_id=spiffe%3A%2F%2Ftd%2Fa&selector=k8s%3Ans%3Aa%20b"
                           "&selector=unix%3Auid%3A1&match=exact&team=pay%2Fments&page_size=50"
                           "&page_token=tok%2B%2F%3D");
    free(t);
    assert_int_equal(sigil_cli_entry_args_parse("show", ARGC(plain), plain, &args, err, sizeof err),
                     0);
    assert_int_equal(sigil_cli_entry_list_target(&args, NULL, &t, err, sizeof err), 0);
    assert_string_equal(t, "/v1/entries");
    free(t);
    assert_int_equal(sigil_cli_entry_args_parse("show", ARGC(bad), bad, &args, err, sizeof err), 0);
    assert_int_equal(sigil_cli_entry_list_target(&args, NULL, &t, err, sizeof err),
                     SIGIL_ERR_INVALID);
    assert_null(t);
    assert_non_null(strstr(err, "--selector \"nocolon\""));
    assert_int_equal(sigil_cli_entry_args_parse("show", ARGC(badid), badid, &args, err, sizeof err),
                     0);
    assert_int_equal(sigil_cli_entry_list_target(&args, NULL, &t, err, sizeof err),
                     SIGIL_ERR_INVALID);
    assert_non_null(strstr(err, "--parent-id: ID-"));
}

static void
test_small_parsers(void **state)
{
    struct sigil_buf b = {0};
    long long v = -1;

    (void)state;
    assert_int_equal(sigil_cli_int_parse("0", 0, 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(sigil_cli_int_parse("1000", 1, 1000, &v), 0);
    assert_int_equal(v, 1000);
    assert_int_equal(sigil_cli_int_parse("1001", 1, 1000, &v), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_cli_int_parse("", 0, 10, &v), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_cli_int_parse("-1", -5, 10, &v), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_cli_int_parse("01", 0, 10, &v), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_cli_int_parse("1 ", 0, 10, &v), SIGIL_ERR_INVALID);
    assert_int_equal(sigil_cli_int_parse("9999999999999999999", 0, INT64_MAX, &v),
                     SIGIL_ERR_INVALID);
    assert_int_equal(sigil_cli_ttl_parse("1h", &v, err, sizeof err), 0);
    assert_int_equal(v, 3600);
    assert_int_equal(sigil_cli_ttl_parse("0", &v, err, sizeof err), 0);
    assert_int_equal(v, 0);
    assert_int_equal(sigil_cli_ttl_parse("24856d", &v, err, sizeof err), SIGIL_ERR_RANGE);
    assert_int_equal(sigil_cli_ttl_parse("3600", &v, err, sizeof err), SIGIL_ERR_INVALID);
    assert_true(sigil_cli_uuid_valid("6f1c2a4e-0b7d-4c55-9a0e-1d2c3b4a5f60"));
    assert_true(sigil_cli_uuid_valid("6F1C2A4E-0B7D-4C55-9A0E-1D2C3B4A5F60"));
    assert_false(sigil_cli_uuid_valid("6f1c2a4e-0b7d-4c55-9a0e-1d2c3b4a5f60a"));
    assert_false(sigil_cli_uuid_valid("6f1c2a4e0b7d-4c55-9a0e-1d2c3b4a5f60a"));
    assert_false(sigil_cli_uuid_valid("6f1c2a4e-0b7d-4c55-9a0e-1d2c3b4a5f6g"));
    assert_false(sigil_cli_uuid_valid("../../v1/bundle"));
    assert_false(sigil_cli_uuid_valid(""));
    assert_int_equal(sigil_cli_urlenc_append(&b, "aZ09-._~ /?&=%\xc3\xa9"), 0);
    assert_int_equal(sigil_buf_append(&b, "", 1), 0);
    assert_string_equal((char *)b.data, "aZ09-._~%20%2F%3F%26%3D%25%C3%A9");
    sigil_buf_free(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_body),
        cmocka_unit_test(test_create_minimal_and_refusals),
        cmocka_unit_test(test_update_patch),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_help_and_import_args),
        cmocka_unit_test(test_input_check),
        cmocka_unit_test(test_list_target),
        cmocka_unit_test(test_small_parsers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
