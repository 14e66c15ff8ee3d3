/* gRPC server reflection (grpc.reflection.v1 and the older v1alpha name, one implementation):
 * tells clients such as grpcurl which services a server runs and hands out the descriptors of
 * their .proto files, taken from an encoded google.protobuf.FileDescriptorSet that the build
 * embeds (protoc --include_imports --descriptor_set_out). Nothing is read from disk at run time.
 * The descriptor set is walked in its wire format with bounds checks and caps; nothing of it is
 * copied or kept besides the caller's pointers. */
#ifndef SIGIL_RPC_REFLECTION_H
#define SIGIL_RPC_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

#include "sigil/buf.h"
#include "sigil/rpc.h"

/* Largest descriptor set accepted: every answer must fit in one 4 MiB gRPC message. */
#define SIGIL_RPC_REFLECTION_MAX_SET (1u << 20)
/* Most files in a set. */
#define SIGIL_RPC_REFLECTION_MAX_FILES 256

/* What a reflection service describes. The struct, the bytes and the names are the caller's
 * and must outlive the server (static data: the build generates one per embedded set). */
struct sigil_rpc_reflection {
    const uint8_t *fdset; /* an encoded FileDescriptorSet, imports included */
    size_t len;
    const char *const *services; /* fully-qualified names of the services served, NULL-ended */
};

/* Checks a set: well-formed files and names, unique file names, every import present, every
 * listed service defined. Returns 0, or SIGIL_ERR_INVALID / SIGIL_ERR_RANGE with *why. */
int sigil_rpc_reflection_check(const struct sigil_rpc_reflection *r, const char **why);

/* Checks r, then registers /grpc.reflection.v1.ServerReflection/ServerReflectionInfo and
 * /grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo on srv (no metadata needed).
 * Lists r->services plus grpc.reflection.v1.ServerReflection if the set defines it. Returns 0,
 * or SIGIL_ERR_* with *why (SIGIL_ERR_EXISTS if already registered). */
int sigil_rpc_reflection_add(struct sigil_rpc_server *srv, const struct sigil_rpc_reflection *r,
                             const char **why);

/* Answers one encoded ServerReflectionRequest, appending the encoded ServerReflectionResponse
 * to out: a question without an answer (unknown file or symbol) is an error_response with
 * NOT_FOUND, one without a question INVALID_ARGUMENT. r must have passed the check. Returns
 * 0, SIGIL_ERR_INVALID for bytes that are not a request, or SIGIL_ERR_NOMEM. */
int sigil_rpc_reflection_answer(const struct sigil_rpc_reflection *r, const uint8_t *req,
                                size_t len, struct sigil_buf *out);

#endif
