/* Unit tests of gRPC reflection (lib/rpc_reflection.c): the embedded descriptor sets pass the
 * check; truncated, duplicated, malformed, too deep and incomplete sets fail it; answers to
 * list_services, symbols (services, methods, fields, nested types, enums and their values,
 * extensions), files with their imports, extension numbers, and NOT_FOUND / INVALID_ARGUMENT
 * error_responses, decoded with protobuf-c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reflection.pb-c.h"
#include "sigil/buf.h"
#include "sigil/err.h"
#include "sigil/rpc_reflection.h"
#include "sigil_fdsets.h"

typedef Grpc__Reflection__V1__ServerReflectionRequest Req;
typedef Grpc__Reflection__V1__ServerReflectionResponse Resp;

/* ---- building descriptor bytes by hand ---- */

static void
put_varint(struct sigil_buf *b, uint64_t v)
{
    uint8_t c;

    do {
        c = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v != 0)
            c |= 0x80;
        assert_int_equal(sigil_buf_append(b, &c, 1), 0);
    } while (v != 0);
}

static void
put_bytes(struct sigil_buf *b, uint32_t field, const void *p, size_t n)
{
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    if (n > 0)
        assert_int_equal(sigil_buf_append(b, p, n), 0);
}

static void
put_str(struct sigil_buf *b, uint32_t field, const char *s)
{
    put_bytes(b, field, s, strlen(s));
}

static void
put_msg(struct sigil_buf *b, uint32_t field, struct sigil_buf *m)
{
    put_bytes(b, field, m->data, m->len);
    sigil_buf_free(m);
}

static int
check_set(const struct sigil_buf *set, const char *const *services, const char **why)
{
    struct sigil_rpc_reflection r = {set->data, set->len, services};

    return sigil_rpc_reflection_check(&r, why);
}

/* A file "e.proto", package p: message M { int32 f = 1; enum E { A = 0; } }, an extension
 * `ext` = 100 of p.M, a service S { rpc Do }, and imports (NULL-ended) as given. */
static void
put_ext_file(struct sigil_buf *set, const char *name, const char *const *imports)
{
    struct sigil_buf file = {0}, msg = {0}, fld = {0}, en = {0}, val = {0}, ext = {0}, svc = {0},
                     mth = {0};

    put_str(&file, 1, name);
    put_str(&file, 2, "p");
    for (; imports != NULL && *imports != NULL; imports++)
        put_str(&file, 3, *imports);
    put_str(&msg, 1, "M");
    put_str(&fld, 1, "f");
    put_msg(&msg, 2, &fld);
    put_str(&en, 1, "E");
    put_str(&val, 1, "A");
    put_msg(&en, 2, &val);
    put_msg(&msg, 4, &en);
    put_msg(&file, 4, &msg);
    put_str(&svc, 1, "S");
    put_str(&mth, 1, "Do");
    put_msg(&svc, 2, &mth);
    put_msg(&file, 6, &svc);
    put_str(&ext, 1, "ext");
    put_str(&ext, 2, ".p.M");
    put_varint(&ext, 3 << 3 | 0);
    put_varint(&ext, 100);
    put_msg(&file, 7, &ext);
    put_msg(set, 1, &file);
}

/* ---- asking ---- */

static Resp *
ask(const struct sigil_rpc_reflection *r, Req *req)
{
    struct sigil_buf in = {0}, out = {0};
    Resp *resp;

    assert_int_equal(
        sigil_buf_reserve(&in,
                          grpc__reflection__v1__server_reflection_request__get_packed_size(req)),
        0);
    in.len = grpc__reflection__v1__server_reflection_request__pack(req, in.data);
    assert_int_equal(sigil_rpc_reflection_answer(r, in.data, in.len, &out), 0);
    resp = grpc__reflection__v1__server_reflection_response__unpack(NULL, out.len, out.data);
    assert_non_null(resp);
    sigil_buf_free(&in);
    sigil_buf_free(&out);
    return resp;
}

static Resp *
ask_symbol(const struct sigil_rpc_reflection *r, const char *symbol)
{
    Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;

    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
    req.file_containing_symbol = (char *)symbol;
    return ask(r, &req);
}

/* The name (field 1) of the i-th file of a file_descriptor_response, as a C string. */
static char *
file_name(const Resp *resp, size_t i)
{
    const ProtobufCBinaryData *b;

    assert_int_equal(
        resp->message_response_case,
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
    assert_true(i < resp->file_descriptor_response->n_file_descriptor_proto);
    b = &resp->file_descriptor_response->file_descriptor_proto[i];
    /* protoc writes the name first: tag 0x0a, a one-byte length */
    assert_true(b->len > 2 && b->data[0] == 0x0a && b->data[1] < 0x80 && b->data[1] + 2u <= b->len);
    return strndup((const char *)b->data + 2, b->data[1]);
}

static void
assert_files(const Resp *resp, const char *const *names)
{
    size_t i;

    for (i = 0; names[i] != NULL; i++) {
        char *n = file_name(resp, i);

        assert_string_equal(n, names[i]);
        free(n);
    }
    assert_int_equal(resp->file_descriptor_response->n_file_descriptor_proto, i);
}

static void
assert_error(const Resp *resp, int code)
{
    assert_int_equal(
        resp->message_response_case,
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
    assert_int_equal(resp->error_response->error_code, code);
}

/* ---- tests ---- */

static void
test_embedded_sets_pass(void **state)
{
    const char *why;

    (void)state;
    assert_int_equal(sigil_rpc_reflection_check(&sigil_reflection_workload, &why), 0);
    assert_int_equal(sigil_rpc_reflection_check(&sigil_reflection_node, &why), 0);
}

/* Every prefix of the workload set: only the ones ending after workload.proto's file (its
 * service is there, struct.proto before it) can pass; none crashes or reads past its end. */
static void
test_truncated(void **state)
{
    const struct sigil_rpc_reflection *w = &sigil_reflection_workload;
    size_t n, ok = 0;
    const char *why;

    (void)state;
    for (n = 0; n < w->len; n++) {
        uint8_t *copy = malloc(n + 1); /* exact size: ASan sees any overread */
        struct sigil_rpc_reflection r = {copy, n, w->services};

        assert_non_null(copy);
        memcpy(copy, w->fdset, n);
        if (sigil_rpc_reflection_check(&r, &why) == 0)
            ok++;
        else
            assert_non_null(why);
        free(copy);
    }
    assert_int_equal(ok, 1); /* struct.proto + workload.proto, without reflection.proto */
}

static void
test_malformed_sets(void **state)
{
    static const char *const m_svc[] = {"p.S", NULL};
    static const char *const none[] = {NULL};
    static const char *const missing_import[] = {"missing.proto", NULL};
    struct sigil_buf set = {0}, file = {0}, msg = {0}, inner = {0};
    const char *why;
    size_t i;

    (void)state;
    /* the hand-made file passes, listing its service */
    put_ext_file(&set, "e.proto", NULL);
    assert_int_equal(check_set(&set, m_svc, &why), 0);
    /* a listed service that is not there */
    assert_int_equal(check_set(&set, (const char *const[]){"p.T", NULL}, &why), SIGIL_ERR_INVALID);
    /* the same file twice */
    put_ext_file(&set, "e.proto", NULL);
    assert_int_equal(check_set(&set, none, &why), SIGIL_ERR_INVALID);
    sigil_buf_free(&set);
    /* an import that is not in the set */
    put_ext_file(&set, "e.proto", missing_import);
    assert_int_equal(check_set(&set, none, &why), SIGIL_ERR_INVALID);
    assert_non_null(strstr(why, "import"));
    sigil_buf_free(&set);
    /* a file without a name, and one with a bad package */
    put_str(&file, 2, "p");
    put_msg(&set, 1, &file);
    assert_int_equal(check_set(&set, none, &why), SIGIL_ERR_INVALID);
    sigil_buf_free(&set);
    put_str(&file, 1, "x.proto");
    put_str(&file, 2, "a..b");
    put_msg(&set, 1, &file);
    assert_int_equal(check_set(&set, none, &why), SIGIL_ERR_INVALID);
    sigil_buf_free(&set);
    /* a message named "1x" */
    put_str(&file, 1, "x.proto");
    put_str(&msg, 1, "1x");
    put_msg(&file, 4, &msg);
    put_msg(&set, 1, &file);
    assert_int_equal(check_set(&set, none, &why), SIGIL_ERR_INVALID);
    sigil_buf_free(&set);
    /* nesting: 31 levels pass, 33 do not */
    for (size_t depth = 31; depth <= 33; depth += 2) {
        for (i = 0; i < depth; i++) {
            struct sigil_buf outer = {0};

            put_str(&outer, 1, "N");
            if (inner.len > 0)
                put_msg(&outer, 3, &inner);
            inner = outer;
        }
        put_str(&file, 1, "x.proto");
        put_msg(&file, 4, &inner);
        put_msg(&set, 1, &file);
        assert_int_equal(check_set(&set, none, &why), depth == 31 ? 0 : SIGIL_ERR_INVALID);
        sigil_buf_free(&set);
    }
    /* wire format: a group, an 11-byte varint, a length past the end, field number 0 */
    static const uint8_t group[] = {0x0b, 0x0c}, longvar[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                                              0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
                         past[] = {0x0a, 0x05, 0x0a}, zero[] = {0x02, 0x00};
    const struct {
        const uint8_t *p;
        size_t n;
    } bad[] = {
        {group, sizeof group}, {longvar, sizeof longvar}, {past, sizeof past}, {zero, sizeof zero}};
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sigil_rpc_reflection r = {bad[i].p, bad[i].n, NULL};

        assert_int_equal(sigil_rpc_reflection_check(&r, &why), SIGIL_ERR_INVALID);
    }
    /* empty and oversized sets */
    struct sigil_rpc_reflection empty = {(const uint8_t *)"", 0, NULL};
    assert_int_equal(sigil_rpc_reflection_check(&empty, &why), SIGIL_ERR_INVALID);
    struct sigil_rpc_reflection big = {sigil_reflection_workload.fdset,
                                       SIGIL_RPC_REFLECTION_MAX_SET + 1, NULL};
    assert_int_equal(sigil_rpc_reflection_check(&big, &why), SIGIL_ERR_RANGE);
}

static void
test_list_services(void **state)
{
    Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    Resp *resp;

    (void)state;
    req.host = "h";
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = "*";
    resp = ask(&sigil_reflection_workload, &req);
    assert_int_equal(
        resp->message_response_case,
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
    assert_int_equal(resp->list_services_response->n_service, 2);
    assert_string_equal(resp->list_services_response->service[0]->name, "SpiffeWorkloadAPI");
    assert_string_equal(resp->list_services_response->service[1]->name,
                        "grpc.reflection.v1.ServerReflection");
    assert_string_equal(resp->valid_host, "h");
    assert_non_null(resp->original_request);
    assert_string_equal(resp->original_request->list_services, "*");
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);

    resp = ask(&sigil_reflection_node, &req);
    assert_int_equal(resp->list_services_response->n_service, 2);
    assert_string_equal(resp->list_services_response->service[0]->name, "sigil.node.v1.Node");
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

static void
test_symbols(void **state)
{
    static const char *const workload[] = {"workload.proto", "google/protobuf/struct.proto", NULL};
    static const char *const strct[] = {"google/protobuf/struct.proto", NULL};
    static const char *const refl[] = {"reflection.proto", NULL};
    static const char *const found[] = {
        "SpiffeWorkloadAPI",
        "SpiffeWorkloadAPI.FetchX509SVID",
        "X509SVID",
        "X509SVID.spiffe_id",
        "X509SVIDResponse.FederatedBundlesEntry",
        "X509SVIDResponse.FederatedBundlesEntry.key",
    };
    static const char *const missing[] = {
        "",
        "NoSuch",
        "SpiffeWorkloadAPI.NoSuch",
        "X509SVID.",
        ".X509SVID",
        "spiffeworkloadapi",
        "google.protobuf",
        "google.protobuf.NullValue.NULL_VALUE",
        "SpiffeWorkloadAPIx",
    };
    Resp *resp;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof found / sizeof found[0]; i++) {
        resp = ask_symbol(&sigil_reflection_workload, found[i]);
        assert_files(resp, workload);
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    }
    /* enums and their values (beside the enum, as protobuf scopes them) */
    const char *in_struct[] = {"google.protobuf.Struct", "google.protobuf.NullValue",
                               "google.protobuf.NULL_VALUE", "google.protobuf.Value.kind",
                               "google.protobuf.Struct.FieldsEntry"};
    for (i = 0; i < sizeof in_struct / sizeof in_struct[0]; i++) {
        resp = ask_symbol(&sigil_reflection_workload, in_struct[i]);
        assert_files(resp, strct);
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    }
    resp = ask_symbol(&sigil_reflection_workload, "grpc.reflection.v1.ServerReflection");
    assert_files(resp, refl);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    for (i = 0; i < sizeof missing / sizeof missing[0]; i++) {
        resp = ask_symbol(&sigil_reflection_workload, missing[i]);
        assert_error(resp, 5);
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    }
}

static void
test_files(void **state)
{
    static const char *const workload[] = {"workload.proto", "google/protobuf/struct.proto", NULL};
    Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    Resp *resp;

    (void)state;
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    req.file_by_filename = "workload.proto";
    resp = ask(&sigil_reflection_workload, &req);
    assert_files(resp, workload);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    req.file_by_filename = "node.proto"; /* in the server's set, not the agent's */
    resp = ask(&sigil_reflection_workload, &req);
    assert_error(resp, 5);
    assert_non_null(strstr(resp->error_response->error_message, "node.proto"));
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

/* A chain of imports a -> b -> c, and a -> c: each file once, the one asked for first. */
static void
test_import_closure(void **state)
{
    static const char *const a_imports[] = {"b.proto", "c.proto", NULL};
    static const char *const b_imports[] = {"c.proto", NULL};
    static const char *const svc[] = {"p.S", NULL};
    static const char *const want[] = {"a.proto", "b.proto", "c.proto", NULL};
    struct sigil_buf set = {0}, file = {0};
    Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    const char *why;
    Resp *resp;

    (void)state;
    put_str(&file, 1, "c.proto");
    put_msg(&set, 1, &file);
    put_str(&file, 1, "b.proto");
    for (size_t i = 0; b_imports[i] != NULL; i++)
        put_str(&file, 3, b_imports[i]);
    put_msg(&set, 1, &file);
    put_ext_file(&set, "a.proto", a_imports);
    struct sigil_rpc_reflection r = {set.data, set.len, svc};
    assert_int_equal(sigil_rpc_reflection_check(&r, &why), 0);
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
    req.file_by_filename = "a.proto";
    resp = ask(&r, &req);
    assert_files(resp, want);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    sigil_buf_free(&set);
}

static void
test_extensions(void **state)
{
    static const char *const svc[] = {"p.S", NULL};
    static const char *const e[] = {"e.proto", NULL};
    struct sigil_buf set = {0};
    Grpc__Reflection__V1__ExtensionRequest er = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
    Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    Resp *resp;

    (void)state;
    put_ext_file(&set, "e.proto", NULL);
    struct sigil_rpc_reflection r = {set.data, set.len, svc};
    /* p.S is listed; the set has no reflection service, so it does not list itself */
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = "";
    resp = ask(&r, &req);
    assert_int_equal(resp->list_services_response->n_service, 1);
    assert_string_equal(resp->list_services_response->service[0]->name, "p.S");
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);

    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
    req.all_extension_numbers_of_type = "p.M";
    resp = ask(&r, &req);
    assert_int_equal(
        resp->message_response_case,
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE);
    assert_string_equal(resp->all_extension_numbers_response->base_type_name, "p.M");
    assert_int_equal(resp->all_extension_numbers_response->n_extension_number, 1);
    assert_int_equal(resp->all_extension_numbers_response->extension_number[0], 100);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    req.all_extension_numbers_of_type = "p.E"; /* an enum, not a message */
    resp = ask(&r, &req);
    assert_error(resp, 5);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);

    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
    req.file_containing_extension = &er;
    er.containing_type = "p.M";
    er.extension_number = 100;
    resp = ask(&r, &req);
    assert_files(resp, e);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    er.extension_number = 101;
    resp = ask(&r, &req);
    assert_error(resp, 5);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);

    const char *syms[] = {"p.ext", "p.M.f", "p.M.E", "p.M.A", "p.S.Do"};
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        resp = ask_symbol(&r, syms[i]);
        assert_files(resp, e);
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    }
    sigil_buf_free(&set);
}

static void
test_bad_requests(void **state)
{
    static const uint8_t garbage[] = {0xff, 0xff, 0xff};
    Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    struct sigil_buf out = {0};
    Resp *resp;

    (void)state;
    assert_int_equal(
        sigil_rpc_reflection_answer(&sigil_reflection_workload, garbage, sizeof garbage, &out),
        SIGIL_ERR_INVALID);
    assert_int_equal(out.len, 0);
    /* an unknown field numbered 0 (protobuf-c keeps it): the echo leaves it out, and the
     * answer decodes (found by the fuzzer) */
    static const uint8_t field0[] = {0x80, 0x00, 0x00};
    assert_int_equal(
        sigil_rpc_reflection_answer(&sigil_reflection_workload, field0, sizeof field0, &out), 0);
    resp = grpc__reflection__v1__server_reflection_response__unpack(NULL, out.len, out.data);
    assert_non_null(resp);
    assert_error(resp, 3);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    sigil_buf_free(&out);
    /* no question at all */
    resp = ask(&sigil_reflection_workload, &req);
    assert_error(resp, 3);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    /* a very long unknown name: the error message stays short */
    char *longname = malloc(100000);
    assert_non_null(longname);
    memset(longname, 'a', 99999);
    longname[99999] = '\0';
    resp = ask_symbol(&sigil_reflection_workload, longname);
    assert_error(resp, 5);
    assert_true(strlen(resp->error_response->error_message) < 300);
    grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    free(longname);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedded_sets_pass),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_malformed_sets),
        cmocka_unit_test(test_list_services),
        cmocka_unit_test(test_symbols),
        cmocka_unit_test(test_files),
        cmocka_unit_test(test_import_closure),
        cmocka_unit_test(test_extensions),
        cmocka_unit_test(test_bad_requests),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
