/* Fuzzes gRPC reflection (lib/rpc_reflection.c). The first byte picks the mode:
 *   even: the rest is a descriptor set; if it passes the check, a fixed series of questions
 *         (list, files, symbols, extensions) must each get an answer that decodes;
 *   odd:  the rest is a ServerReflectionRequest asked of the agent's embedded set; the answer
 *         is SIGIL_ERR_INVALID (not a request) or a response that decodes.
 * Any other outcome aborts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reflection.pb-c.h"
#include "sigil/buf.h"
#include "sigil/err.h"
#include "sigil/rpc_reflection.h"
#include "sigil_fdsets.h"

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            abort();                                                                               \
    } while (0)

typedef Grpc__Reflection__V1__ServerReflectionRequest Req;

static void
answer_decodes(const struct sigil_rpc_reflection *r, const uint8_t *p, size_t n, bool must)
{
    struct sigil_buf out = {0};
    Grpc__Reflection__V1__ServerReflectionResponse *resp;
    int k = sigil_rpc_reflection_answer(r, p, n, &out);

    CHECK(k == 0 || (k == SIGIL_ERR_INVALID && !must));
    if (k == 0) {
        resp = grpc__reflection__v1__server_reflection_response__unpack(NULL, out.len, out.data);
        CHECK(resp != NULL);
        CHECK(resp->message_response_case !=
              GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET);
        grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
    }
    sigil_buf_free(&out);
}

static void
ask(const struct sigil_rpc_reflection *r, Req *req)
{
    uint8_t buf[512];
    size_t n = grpc__reflection__v1__server_reflection_request__get_packed_size(req);

    CHECK(n <= sizeof buf);
    n = grpc__reflection__v1__server_reflection_request__pack(req, buf);
    answer_decodes(r, buf, n, true);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const services[] = {NULL};
    static const char *const symbols[] = {"SpiffeWorkloadAPI",      "p.M", "p.M.f",
                                          "google.protobuf.Struct", "a",   "a.b.c"};
    static const char *const files[] = {"workload.proto", "e.proto", "a.proto", "x"};
    Grpc__Reflection__V1__ExtensionRequest er = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
    Req req = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    const char *why;
    size_t i;

    if (size == 0)
        return 0;
    if (data[0] & 1) {
        answer_decodes(&sigil_reflection_workload, data + 1, size - 1, false);
        return 0;
    }
    /* exact-size copy: ASan catches any read past the set */
    uint8_t *copy = malloc(size - 1 + 1);
    CHECK(copy != NULL);
    memcpy(copy, data + 1, size - 1);
    struct sigil_rpc_reflection r = {copy, size - 1, services};
    if (sigil_rpc_reflection_check(&r, &why) != 0) {
        CHECK(why != NULL);
        free(copy);
        return 0;
    }
    req.message_request_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
    req.list_services = "";
    ask(&r, &req);
    for (i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        req.message_request_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
        req.file_containing_symbol = (char *)symbols[i];
        ask(&r, &req);
        req.message_request_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE;
        req.all_extension_numbers_of_type = (char *)symbols[i];
        ask(&r, &req);
        req.message_request_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION;
        req.file_containing_extension = &er;
        er.containing_type = (char *)symbols[i];
        er.extension_number = 100;
        ask(&r, &req);
    }
    for (i = 0; i < sizeof files / sizeof files[0]; i++) {
        req.message_request_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
        req.file_by_filename = (char *)files[i];
        ask(&r, &req);
    }
    free(copy);
    return 0;
}
