/* gRPC server reflection over an embedded FileDescriptorSet. The set is never decoded into
 * structures: each answer walks its wire format again (a few KiB; cheaper than keeping an
 * index alive for as long as the server, which has no hook to free one). Every read is bounds
 * checked; names, nesting and file counts are capped. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reflection.pb-c.h"
#include "sigil/err.h"
#include "sigil/rpc_reflection.h"

#define NAME_MAX_LEN 1024 /* longest file or fully-qualified symbol name */
#define DEPTH_MAX 32      /* message nesting */
#define REFLECTION_V1 "grpc.reflection.v1.ServerReflection"

/* ---- the wire format ---- */

struct slice {
    const uint8_t *p;
    size_t n;
};

struct rd {
    const uint8_t *p, *end;
};

struct field {
    uint32_t num;
    unsigned wt;
    uint64_t v;       /* varint value */
    struct slice len; /* length-delimited bytes */
};

static void
rd_init(struct rd *r, struct slice s)
{
    r->p = s.p;
    r->end = s.p + s.n;
}

static int
rd_varint(struct rd *r, uint64_t *v)
{
    uint64_t x = 0;
    unsigned shift;

    for (shift = 0; shift < 64 && r->p < r->end; shift += 7) {
        uint8_t b = *r->p++;

        x |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *v = x;
            return 0;
        }
    }
    return SIGIL_ERR_INVALID;
}

/* Reads the next field: 1, 0 at the end, or SIGIL_ERR_INVALID (groups are refused: no
 * descriptor uses them). */
static int
rd_field(struct rd *r, struct field *f)
{
    uint64_t tag, n;

    if (r->p == r->end)
        return 0;
    if (rd_varint(r, &tag) != 0 || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff)
        return SIGIL_ERR_INVALID;
    f->num = (uint32_t)(tag >> 3);
    f->wt = (unsigned)(tag & 7);
    f->v = 0;
    f->len.p = NULL;
    f->len.n = 0;
    switch (f->wt) {
    case 0:
        return rd_varint(r, &f->v) == 0 ? 1 : SIGIL_ERR_INVALID;
    case 1:
    case 5:
        n = f->wt == 1 ? 8 : 4;
        break;
    case 2:
        if (rd_varint(r, &n) != 0)
            return SIGIL_ERR_INVALID;
        break;
    default:
        return SIGIL_ERR_INVALID;
    }
    if (n > (uint64_t)(r->end - r->p))
        return SIGIL_ERR_INVALID;
    if (f->wt == 2) {
        f->len.p = r->p;
        f->len.n = (size_t)n;
    }
    r->p += n;
    return 1;
}

/* Finds string field num (the last one, as protobuf merges) in a message; 0 or an error. */
static int
msg_string(struct slice msg, uint32_t num, struct slice *out)
{
    struct rd r;
    struct field f;
    int k;

    out->p = NULL;
    out->n = 0;
    rd_init(&r, msg);
    while ((k = rd_field(&r, &f)) == 1) {
        if (f.num != num)
            continue;
        if (f.wt != 2)
            return SIGIL_ERR_INVALID;
        *out = f.len;
    }
    return k;
}

static bool
slice_eq(struct slice s, const char *str, size_t n)
{
    return s.n == n && (n == 0 || memcmp(s.p, str, n) == 0);
}

/* ---- files ---- */

struct file {
    struct slice raw, name, pkg;
};

struct fileset {
    struct file f[SIGIL_RPC_REFLECTION_MAX_FILES];
    size_t n;
};

static bool
is_ident(struct slice s)
{
    size_t i;

    if (s.n == 0 || s.n > NAME_MAX_LEN || (s.p[0] >= '0' && s.p[0] <= '9'))
        return false;
    for (i = 0; i < s.n; i++) {
        uint8_t c = s.p[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_'))
            return false;
    }
    return true;
}

/* A package: identifiers joined by dots, or nothing. */
static bool
is_package(struct slice s)
{
    size_t i, start = 0;

    if (s.n == 0)
        return true;
    if (s.n > NAME_MAX_LEN)
        return false;
    for (i = 0; i <= s.n; i++) {
        if (i == s.n || s.p[i] == '.') {
            struct slice part = {s.p + start, i - start};

            if (!is_ident(part))
                return false;
            start = i + 1;
        }
    }
    return true;
}

/* A file name: printable ASCII, no NUL, not empty. */
static bool
is_file_name(struct slice s)
{
    size_t i;

    if (s.n == 0 || s.n > NAME_MAX_LEN)
        return false;
    for (i = 0; i < s.n; i++)
        if (s.p[i] < 0x21 || s.p[i] > 0x7e)
            return false;
    return true;
}

static int
fileset_parse(struct fileset *fs, const struct sigil_rpc_reflection *r, const char **why)
{
    struct slice all = {r->fdset, r->len};
    struct rd rd;
    struct field f;
    int k;

    fs->n = 0;
    if (r->fdset == NULL || r->len == 0) {
        *why = "empty descriptor set";
        return SIGIL_ERR_INVALID;
    }
    if (r->len > SIGIL_RPC_REFLECTION_MAX_SET) {
        *why = "descriptor set over 1 MiB";
        return SIGIL_ERR_RANGE;
    }
    rd_init(&rd, all);
    while ((k = rd_field(&rd, &f)) == 1) {
        struct file *fl;

        if (f.num != 1)
            continue;
        if (f.wt != 2) {
            *why = "descriptor set: a file is not length-delimited";
            return SIGIL_ERR_INVALID;
        }
        if (fs->n == SIGIL_RPC_REFLECTION_MAX_FILES) {
            *why = "descriptor set: over 256 files";
            return SIGIL_ERR_RANGE;
        }
        fl = &fs->f[fs->n++];
        fl->raw = f.len;
        if (msg_string(fl->raw, 1, &fl->name) != 0 || msg_string(fl->raw, 2, &fl->pkg) != 0) {
            *why = "descriptor set: a malformed file";
            return SIGIL_ERR_INVALID;
        }
        if (!is_file_name(fl->name)) {
            *why = "descriptor set: a file without a valid name";
            return SIGIL_ERR_INVALID;
        }
        if (!is_package(fl->pkg)) {
            *why = "descriptor set: a file with an invalid package";
            return SIGIL_ERR_INVALID;
        }
    }
    if (k != 0) {
        *why = "descriptor set: malformed wire format";
        return SIGIL_ERR_INVALID;
    }
    if (fs->n == 0) {
        *why = "descriptor set without files";
        return SIGIL_ERR_INVALID;
    }
    return 0;
}

/* The index of the file named name, or -1. */
static int
fileset_find(const struct fileset *fs, const char *name, size_t n)
{
    size_t i;

    for (i = 0; i < fs->n; i++)
        if (slice_eq(fs->f[i].name, name, n))
            return (int)i;
    return -1;
}

/* ---- symbols: every name a file defines, fully qualified ---- */

enum sym_kind { SYM_MESSAGE, SYM_ENUM, SYM_SERVICE, SYM_EXTENSION, SYM_OTHER };

struct sym {
    enum sym_kind kind;
    const char *name; /* NUL-terminated, valid during the callback */
    size_t n;
    struct slice extendee; /* extensions: the extended type, without its leading dot */
    int32_t number;        /* extensions: the field number */
};

/* Returns 0 to go on, 1 to stop the walk (found). */
typedef int (*sym_fn)(void *ud, const struct sym *s);

struct walk {
    char name[NAME_MAX_LEN + 1]; /* the current scope, then ".<symbol>" while reporting */
    size_t n;
    sym_fn fn;
    void *ud;
};

/* Appends ".part" (or "part" at the top) to the scope; 0 or SIGIL_ERR_INVALID. */
static int
scope_push(struct walk *w, struct slice part)
{
    size_t need = part.n + (w->n > 0 ? 1 : 0);

    if (!is_ident(part) || need > NAME_MAX_LEN - w->n)
        return SIGIL_ERR_INVALID;
    if (w->n > 0)
        w->name[w->n++] = '.';
    memcpy(w->name + w->n, part.p, part.n);
    w->n += part.n;
    w->name[w->n] = '\0';
    return 0;
}

static void
scope_pop(struct walk *w, size_t n)
{
    w->n = n;
    w->name[n] = '\0';
}

/* Reports scope.name (the "name" field 1 of msg) as a symbol of kind k. */
static int
report(struct walk *w, struct slice msg, enum sym_kind k)
{
    struct sym s = {.kind = k};
    struct slice name;
    size_t save = w->n;
    int r;

    if ((r = msg_string(msg, 1, &name)) != 0 || (r = scope_push(w, name)) != 0)
        return r;
    s.name = w->name;
    s.n = w->n;
    r = w->fn(w->ud, &s);
    scope_pop(w, save);
    return r;
}

/* An extension (FieldDescriptorProto with an extendee). */
static int
walk_extension(struct walk *w, struct slice fd)
{
    struct sym s = {.kind = SYM_EXTENSION};
    struct slice name;
    struct rd rd;
    struct field f;
    size_t save = w->n;
    int k;

    if ((k = msg_string(fd, 1, &name)) != 0 || (k = msg_string(fd, 2, &s.extendee)) != 0)
        return k;
    rd_init(&rd, fd);
    while ((k = rd_field(&rd, &f)) == 1)
        if (f.num == 3 && f.wt == 0)
            s.number = (int32_t)(uint32_t)f.v;
    if (k != 0)
        return k;
    if (s.extendee.n > 0 && s.extendee.p[0] == '.') {
        s.extendee.p++;
        s.extendee.n--;
    }
    if ((k = scope_push(w, name)) != 0)
        return k;
    s.name = w->name;
    s.n = w->n;
    k = w->fn(w->ud, &s);
    scope_pop(w, save);
    return k;
}

/* An enum: its name in the scope, its values beside it (protobuf's C++ scoping). */
static int
walk_enum(struct walk *w, struct slice ed)
{
    struct rd rd;
    struct field f;
    int k;

    if ((k = report(w, ed, SYM_ENUM)) != 0)
        return k;
    rd_init(&rd, ed);
    while ((k = rd_field(&rd, &f)) == 1)
        if (f.num == 2 && (f.wt != 2 || (k = report(w, f.len, SYM_OTHER)) != 0))
            return f.wt != 2 ? SIGIL_ERR_INVALID : k;
    return k;
}

/* A service and its methods. */
static int
walk_service(struct walk *w, struct slice sd)
{
    struct slice name;
    struct rd rd;
    struct field f;
    size_t save = w->n;
    int k;

    if ((k = report(w, sd, SYM_SERVICE)) != 0)
        return k;
    if ((k = msg_string(sd, 1, &name)) != 0 || (k = scope_push(w, name)) != 0)
        return k;
    rd_init(&rd, sd);
    while ((k = rd_field(&rd, &f)) == 1)
        if (f.num == 2 && (f.wt != 2 || (k = report(w, f.len, SYM_OTHER)) != 0))
            break;
    if (k == 1 && f.wt != 2)
        k = SIGIL_ERR_INVALID;
    scope_pop(w, save);
    return k;
}

/* A message: its name, then its fields, oneofs, nested messages, enums and extensions. */
static int
walk_message(struct walk *w, struct slice md, unsigned depth)
{
    struct slice name;
    struct rd rd;
    struct field f;
    size_t save = w->n;
    int k;

    if (depth >= DEPTH_MAX)
        return SIGIL_ERR_INVALID;
    if ((k = report(w, md, SYM_MESSAGE)) != 0)
        return k;
    if ((k = msg_string(md, 1, &name)) != 0 || (k = scope_push(w, name)) != 0)
        return k;
    rd_init(&rd, md);
    while ((k = rd_field(&rd, &f)) == 1) {
        if (f.num != 2 && f.num != 3 && f.num != 4 && f.num != 6 && f.num != 8)
            continue;
        if (f.wt != 2) {
            k = SIGIL_ERR_INVALID;
            break;
        }
        if (f.num == 2 || f.num == 8) /* field, oneof */
            k = report(w, f.len, SYM_OTHER);
        else if (f.num == 3)
            k = walk_message(w, f.len, depth + 1);
        else if (f.num == 4)
            k = walk_enum(w, f.len);
        else
            k = walk_extension(w, f.len);
        if (k != 0)
            break;
    }
    scope_pop(w, save);
    return k;
}

/* Reports every symbol of a file; 0, 1 if fn stopped the walk, or SIGIL_ERR_INVALID. */
static int
walk_file(const struct file *fl, sym_fn fn, void *ud)
{
    struct walk w = {.fn = fn, .ud = ud};
    struct rd rd;
    struct field f;
    int k;

    memcpy(w.name, fl->pkg.p == NULL ? (const uint8_t *)"" : fl->pkg.p, fl->pkg.n);
    w.n = fl->pkg.n;
    w.name[w.n] = '\0';
    rd_init(&rd, fl->raw);
    while ((k = rd_field(&rd, &f)) == 1) {
        if (f.num < 4 || f.num > 7)
            continue;
        if (f.wt != 2)
            return SIGIL_ERR_INVALID;
        if (f.num == 4)
            k = walk_message(&w, f.len, 0);
        else if (f.num == 5)
            k = walk_enum(&w, f.len);
        else if (f.num == 6)
            k = walk_service(&w, f.len);
        else
            k = walk_extension(&w, f.len);
        if (k != 0)
            return k;
    }
    return k;
}

/* ---- lookups ---- */

struct want {
    enum sym_kind kind; /* SYM_OTHER: any kind */
    const char *name;
    size_t n;
    int32_t number; /* SYM_EXTENSION: name is the extendee */
    /* all_extension_numbers_of_type: collects numbers instead of stopping */
    bool collect;
    bool type_seen;
    int32_t *numbers;
    size_t nnumbers, cap;
    bool nomem;
};

static int
want_fn(void *ud, const struct sym *s)
{
    struct want *q = ud;

    if (q->collect) {
        if (s->kind == SYM_MESSAGE && s->n == q->n && memcmp(s->name, q->name, q->n) == 0)
            q->type_seen = true;
        if (s->kind == SYM_EXTENSION && slice_eq(s->extendee, q->name, q->n)) {
            if (q->nnumbers == q->cap) {
                size_t cap = q->cap == 0 ? 8 : q->cap * 2;
                int32_t *v = realloc(q->numbers, cap * sizeof *v);

                if (v == NULL) {
                    q->nomem = true;
                    return 1;
                }
                q->numbers = v;
                q->cap = cap;
            }
            q->numbers[q->nnumbers++] = s->number;
        }
        return 0;
    }
    if (q->kind == SYM_EXTENSION)
        return s->kind == SYM_EXTENSION && s->number == q->number &&
               slice_eq(s->extendee, q->name, q->n);
    if (q->kind != SYM_OTHER && s->kind != q->kind)
        return 0;
    return s->n == q->n && memcmp(s->name, q->name, q->n) == 0;
}

/* Finds the file defining what q asks for: 0 and *idx, SIGIL_ERR_NOTFOUND, SIGIL_ERR_INVALID
 * or SIGIL_ERR_NOMEM. With q->collect, walks every file and returns 0. */
static int
fileset_lookup(const struct fileset *fs, struct want *q, size_t *idx)
{
    size_t i;
    int k;

    for (i = 0; i < fs->n; i++) {
        if ((k = walk_file(&fs->f[i], want_fn, q)) < 0)
            return k;
        if (q->nomem)
            return SIGIL_ERR_NOMEM;
        if (k == 1) {
            *idx = i;
            return 0;
        }
    }
    return q->collect ? 0 : SIGIL_ERR_NOTFOUND;
}

static int
noop_fn(void *ud, const struct sym *s)
{
    (void)ud;
    (void)s;
    return 0;
}

/* Each file's imports (field 3), resolved: calls dep(ud, index) for each. */
static int
file_deps(const struct fileset *fs, size_t i, int (*dep)(void *ud, int j), void *ud)
{
    struct rd rd;
    struct field f;
    int k, j;

    rd_init(&rd, fs->f[i].raw);
    while ((k = rd_field(&rd, &f)) == 1) {
        if (f.num != 3)
            continue;
        if (f.wt != 2)
            return SIGIL_ERR_INVALID;
        if ((j = fileset_find(fs, (const char *)f.len.p, f.len.n)) < 0)
            return SIGIL_ERR_NOTFOUND;
        if ((k = dep(ud, j)) != 0)
            return k;
    }
    return k;
}

static int
noop_dep(void *ud, int j)
{
    (void)ud;
    (void)j;
    return 0;
}

int
sigil_rpc_reflection_check(const struct sigil_rpc_reflection *r, const char **why)
{
    struct fileset *fs;
    size_t i, j;
    int k = 0;

    *why = NULL;
    if ((fs = malloc(sizeof *fs)) == NULL) {
        *why = "out of memory";
        return SIGIL_ERR_NOMEM;
    }
    if ((k = fileset_parse(fs, r, why)) != 0)
        goto out;
    for (i = 0; i < fs->n; i++) {
        for (j = 0; j < i; j++)
            if (slice_eq(fs->f[i].name, (const char *)fs->f[j].name.p, fs->f[j].name.n)) {
                *why = "descriptor set: a file appears twice";
                k = SIGIL_ERR_INVALID;
                goto out;
            }
        if ((k = walk_file(&fs->f[i], noop_fn, NULL)) != 0) {
            *why = "descriptor set: a malformed file or an invalid name";
            k = SIGIL_ERR_INVALID;
            goto out;
        }
        if ((k = file_deps(fs, i, noop_dep, NULL)) != 0) {
            *why = k == SIGIL_ERR_NOTFOUND ? "descriptor set: an import is missing (build it "
                                             "with --include_imports)"
                                           : "descriptor set: a malformed file";
            k = SIGIL_ERR_INVALID;
            goto out;
        }
    }
    for (i = 0; r->services != NULL && r->services[i] != NULL; i++) {
        struct want q = {.kind = SYM_SERVICE, .name = r->services[i], .n = strlen(r->services[i])};
        size_t idx;

        if ((k = fileset_lookup(fs, &q, &idx)) != 0) {
            if (k == SIGIL_ERR_NOTFOUND) {
                *why = "a listed service is not in the descriptor set";
                k = SIGIL_ERR_INVALID;
            }
            goto out;
        }
    }
out:
    if (k < 0 && *why == NULL)
        *why = sigil_strerror(k);
    free(fs);
    return k;
}

/* ---- answers ---- */

typedef Grpc__Reflection__V1__ServerReflectionRequest Req;
typedef Grpc__Reflection__V1__ServerReflectionResponse Resp;

/* The files of an answer: the one asked for, then its imports, depth first, each once. */
struct closure {
    const struct fileset *fs;
    bool in[SIGIL_RPC_REFLECTION_MAX_FILES];
    ProtobufCBinaryData out[SIGIL_RPC_REFLECTION_MAX_FILES];
    size_t n;
};

static int
closure_add(void *ud, int j)
{
    struct closure *c = ud;

    if (c->in[j])
        return 0;
    c->in[j] = true;
    c->out[c->n].data = (uint8_t *)(uintptr_t)c->fs->f[j].raw.p; /* packed, never written */
    c->out[c->n].len = c->fs->f[j].raw.n;
    c->n++;
    /* Recursion depth is bounded by the file count (each file enters once). */
    return file_deps(c->fs, (size_t)j, closure_add, c);
}

static int
pack(const Resp *resp, struct sigil_buf *out)
{
    size_t n = grpc__reflection__v1__server_reflection_response__get_packed_size(resp);
    int r;

    if ((r = sigil_buf_reserve(out, n)) != 0)
        return r;
    out->len += grpc__reflection__v1__server_reflection_response__pack(resp, out->data + out->len);
    return 0;
}

static int
answer_error(Resp *resp, int code, const char *what, const char *name, struct sigil_buf *out)
{
    Grpc__Reflection__V1__ErrorResponse err = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
    struct sigil_buf msg = {0};
    int r;

    /* The name is the client's own; clamp it so a long one cannot grow the answer. */
    if ((r = sigil_buf_appendf(&msg, "%s: %.200s", what, name != NULL ? name : "")) != 0 ||
        (r = sigil_buf_append(&msg, "", 1)) != 0)
        goto out;
    err.error_code = code;
    err.error_message = (char *)msg.data;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    resp->error_response = &err;
    r = pack(resp, out);
out:
    sigil_buf_free(&msg);
    return r;
}

static int
answer_files(Resp *resp, const struct fileset *fs, size_t idx, struct sigil_buf *out)
{
    Grpc__Reflection__V1__FileDescriptorResponse fdr =
        GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
    struct closure *c;
    int r;

    if ((c = calloc(1, sizeof *c)) == NULL)
        return SIGIL_ERR_NOMEM;
    c->fs = fs;
    if ((r = closure_add(c, (int)idx)) != 0) {
        r = r == SIGIL_ERR_NOMEM ? r : SIGIL_ERR_INTERNAL; /* the set passed the check */
        goto out;
    }
    fdr.n_file_descriptor_proto = c->n;
    fdr.file_descriptor_proto = c->out;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    resp->file_descriptor_response = &fdr;
    r = pack(resp, out);
out:
    free(c);
    return r;
}

static int
answer_list(Resp *resp, const struct sigil_rpc_reflection *rf, const struct fileset *fs,
            struct sigil_buf *out)
{
    Grpc__Reflection__V1__ListServiceResponse ls =
        GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
    Grpc__Reflection__V1__ServiceResponse *items = NULL, **ptrs = NULL;
    struct want q = {.kind = SYM_SERVICE, .name = REFLECTION_V1, .n = strlen(REFLECTION_V1)};
    size_t n = 0, i, idx;
    bool listed = false, add_self = false;
    int r;

    while (rf->services != NULL && rf->services[n] != NULL) {
        if (strcmp(rf->services[n], REFLECTION_V1) == 0)
            listed = true;
        n++;
    }
    /* The reflection service lists itself when the set can describe it. */
    if (!listed) {
        if ((r = fileset_lookup(fs, &q, &idx)) != 0 && r != SIGIL_ERR_NOTFOUND)
            return r;
        add_self = r == 0;
    }
    if ((items = calloc(n + 1, sizeof *items)) == NULL ||
        (ptrs = calloc(n + 1, sizeof *ptrs)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    for (i = 0; i < n + (add_self ? 1 : 0); i++) {
        grpc__reflection__v1__service_response__init(&items[i]);
        items[i].name = (char *)(uintptr_t)(i < n ? rf->services[i] : REFLECTION_V1);
        ptrs[i] = &items[i];
    }
    ls.n_service = i;
    ls.service = ptrs;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
    resp->list_services_response = &ls;
    r = pack(resp, out);
out:
    free(items);
    free(ptrs);
    return r;
}

static int
answer_ext_numbers(Resp *resp, const struct fileset *fs, const char *type, struct sigil_buf *out)
{
    Grpc__Reflection__V1__ExtensionNumberResponse en =
        GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
    struct want q = {.collect = true, .name = type, .n = strlen(type)};
    size_t idx;
    int r;

    if ((r = fileset_lookup(fs, &q, &idx)) != 0)
        goto out;
    if (!q.type_seen) {
        r = answer_error(resp, SIGIL_RPC_NOT_FOUND, "type not found", type, out);
        goto out;
    }
    en.base_type_name = (char *)(uintptr_t)type;
    en.n_extension_number = q.nnumbers;
    en.extension_number = q.numbers;
    resp->message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
    resp->all_extension_numbers_response = &en;
    r = pack(resp, out);
out:
    free(q.numbers);
    return r;
}

int
sigil_rpc_reflection_answer(const struct sigil_rpc_reflection *rf, const uint8_t *reqb, size_t len,
                            struct sigil_buf *out)
{
    Resp resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
    Req echo = GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
    Grpc__Reflection__V1__ExtensionRequest echo_ext = GRPC__REFLECTION__V1__EXTENSION_REQUEST__INIT;
    struct fileset *fs = NULL;
    struct want q = {.kind = SYM_OTHER};
    const char *why, *name = NULL, *what = NULL;
    Req *req;
    size_t idx = 0;
    int r;

    if ((req = grpc__reflection__v1__server_reflection_request__unpack(NULL, len, reqb)) == NULL)
        return SIGIL_ERR_INVALID;
    if ((fs = malloc(sizeof *fs)) == NULL) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    if ((r = fileset_parse(fs, rf, &why)) != 0) {
        r = SIGIL_ERR_INTERNAL; /* the set passed the check */
        goto out;
    }
    /* The echo carries the known fields only: protobuf-c keeps unknown ones, even malformed
     * (field number 0), and they must not be sent back. */
    echo.host = req->host;
    echo.message_request_case = req->message_request_case;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        echo.file_by_filename = req->file_by_filename;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        echo.file_containing_symbol = req->file_containing_symbol;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        echo_ext.containing_type = req->file_containing_extension->containing_type;
        echo_ext.extension_number = req->file_containing_extension->extension_number;
        echo.file_containing_extension = &echo_ext;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        echo.all_extension_numbers_of_type = req->all_extension_numbers_of_type;
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        echo.list_services = req->list_services;
        break;
    default:
        echo.message_request_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET;
        break;
    }
    resp.valid_host = req->host;
    resp.original_request = &echo;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
        r = answer_list(&resp, rf, fs, out);
        goto out;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
        r = answer_ext_numbers(&resp, fs, req->all_extension_numbers_of_type, out);
        goto out;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        name = req->file_by_filename;
        what = "file not found";
        r = fileset_find(fs, name, strlen(name));
        if (r >= 0) {
            idx = (size_t)r;
            r = 0;
        } else {
            r = SIGIL_ERR_NOTFOUND;
        }
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        name = req->file_containing_symbol;
        what = "symbol not found";
        q.name = name;
        q.n = strlen(name);
        r = fileset_lookup(fs, &q, &idx);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
        name = req->file_containing_extension->containing_type;
        what = "extension not found";
        q.kind = SYM_EXTENSION;
        q.name = name;
        q.n = strlen(name);
        q.number = req->file_containing_extension->extension_number;
        r = fileset_lookup(fs, &q, &idx);
        break;
    default:
        r = answer_error(&resp, SIGIL_RPC_INVALID_ARGUMENT, "no question in the request", NULL,
                         out);
        goto out;
    }
    if (r == SIGIL_ERR_NOTFOUND)
        r = answer_error(&resp, SIGIL_RPC_NOT_FOUND, what, name, out);
    else if (r == 0)
        r = answer_files(&resp, fs, idx, out);
    else if (r != SIGIL_ERR_NOMEM)
        r = SIGIL_ERR_INTERNAL;
out:
    free(fs);
    grpc__reflection__v1__server_reflection_request__free_unpacked(req, NULL);
    return r;
}

/* ---- the service ---- */

static void
on_message(struct sigil_rpc_call *call, void *ud, const uint8_t *msg, size_t len)
{
    struct sigil_buf out = {0};
    int r;

    if ((r = sigil_rpc_reflection_answer(ud, msg, len, &out)) != 0) {
        sigil_rpc_call_finish(
            call, r == SIGIL_ERR_INVALID ? SIGIL_RPC_INVALID_ARGUMENT : SIGIL_RPC_INTERNAL,
            r == SIGIL_ERR_INVALID ? "malformed ServerReflectionRequest" : sigil_strerror(r), NULL,
            0);
    } else if ((r = sigil_rpc_call_send(call, out.data, out.len)) == SIGIL_ERR_RANGE) {
        /* The client asks faster than it reads. */
        sigil_rpc_call_finish(call, SIGIL_RPC_RESOURCE_EXHAUSTED, "too many unread answers", NULL,
                              0);
    }
    sigil_buf_free(&out);
}

static void
on_half_close(struct sigil_rpc_call *call, void *ud)
{
    (void)ud;
    sigil_rpc_call_finish(call, SIGIL_RPC_OK, NULL, NULL, 0);
}

static void
on_cancel(struct sigil_rpc_call *call, void *ud)
{
    /* Nothing is held per call. */
    (void)call;
    (void)ud;
}

static void
h_info(struct sigil_rpc_call *call, void *arg)
{
    struct sigil_rpc_call_cbs cbs = {
        .on_message = on_message,
        .on_half_close = on_half_close,
        .on_cancel = on_cancel,
    };

    sigil_rpc_call_set_cbs(call, &cbs, arg);
}

int
sigil_rpc_reflection_add(struct sigil_rpc_server *srv, const struct sigil_rpc_reflection *r,
                         const char **why)
{
    static const char *const paths[] = {
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    };
    size_t i;
    int k;

    if ((k = sigil_rpc_reflection_check(r, why)) != 0)
        return k;
    for (i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        struct sigil_rpc_method m = {
            .path = paths[i],
            .kind = SIGIL_RPC_BIDI,
            .handler = h_info,
            .arg = (void *)(uintptr_t)r, /* read only */
        };

        if ((k = sigil_rpc_server_add(srv, &m)) != 0) {
            *why = "cannot register the reflection service";
            return k;
        }
    }
    return 0;
}
