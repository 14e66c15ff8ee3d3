/* The agent's on-disk state: every file is written to a 0600 temporary file in data_dir,
 * synced and renamed over the old one, so a crash leaves either the old or the new state.
 * Anything unreadable on load is reported as such and the agent attests again. */
#include "svidstore.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "sigil/buf.h"
#include "sigil/err.h"
#include "sigil/x509.h"

#define PATH_CAP 4096

int
sigil_svidstore_prepare(const char *dir, const char **why)
{
    struct stat st;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        *why = "cannot create data_dir";
        return SIGIL_ERR_IO;
    }
    if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        *why = "data_dir is not a directory";
        return SIGIL_ERR_IO;
    }
    if (st.st_uid != geteuid()) {
        *why = "data_dir is owned by another user";
        return SIGIL_ERR_DENIED;
    }
    if ((st.st_mode & 077) != 0) {
        *why = "data_dir is open to group or others (want 0700: it holds the agent's key)";
        return SIGIL_ERR_DENIED;
    }
    return 0;
}

/* Writes all of p to fd; returns 0 or -1. */
static int
write_all(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int
sigil_svidstore_write_file(const char *dir, const char *name, const void *p, size_t len,
                           const char **why)
{
    char tmp[PATH_CAP], dst[PATH_CAP];
    int fd = -1, dfd = -1, r = SIGIL_ERR_IO;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", dir, name) >= sizeof tmp ||
        (size_t)snprintf(dst, sizeof dst, "%s/%s", dir, name) >= sizeof dst) {
        *why = "path too long";
        return SIGIL_ERR_RANGE;
    }
    /* mkstemp makes the file 0600 and never follows a symlink */
    if ((fd = mkstemp(tmp)) < 0) {
        *why = "cannot create a temporary file in data_dir";
        return SIGIL_ERR_IO;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, p, len) != 0 || fsync(fd) != 0) {
        *why = "cannot write a temporary file in data_dir";
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        *why = "cannot write a temporary file in data_dir";
        goto out;
    }
    fd = -1;
    if (rename(tmp, dst) != 0) {
        *why = "cannot rename a file in data_dir";
        goto out;
    }
    tmp[0] = '\0'; /* renamed: nothing to remove */
    /* the rename itself is durable only once the directory is synced */
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0)
        (void)fsync(dfd);
    r = 0;
out:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    if (r != 0 && tmp[0] != '\0')
        unlink(tmp);
    return r;
}

/* Reads dir/name (a regular 0600-or-stricter file, no symlink) into out. Returns 0,
 * SIGIL_ERR_NOTFOUND, SIGIL_ERR_INVALID or SIGIL_ERR_NOMEM with *why. */
static int
read_state(const char *dir, const char *name, struct sigil_buf *out, const char **why)
{
    char path[PATH_CAP];
    struct stat st;
    uint8_t chunk[4096];
    int fd, r = SIGIL_ERR_INVALID;
    ssize_t n;

    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) {
        *why = "path too long";
        return SIGIL_ERR_RANGE;
    }
    if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        *why = errno == ENOENT ? "no saved state" : "cannot open the saved state";
        return errno == ENOENT ? SIGIL_ERR_NOTFOUND : SIGIL_ERR_INVALID;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        *why = "saved state is not a regular file";
        goto out;
    }
    if ((st.st_mode & 077) != 0 || st.st_uid != geteuid()) {
        *why = "saved state is not a 0600 file of ours";
        goto out;
    }
    if (st.st_size > SIGIL_X509_INPUT_MAX) {
        *why = "saved state is too large";
        goto out;
    }
    /* one allocation up front: a realloc would leave copies of the key behind */
    if (sigil_buf_reserve(out, (size_t)st.st_size + 1) != 0) {
        r = SIGIL_ERR_NOMEM;
        goto out;
    }
    while ((n = read(fd, chunk, sizeof chunk)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *why = "cannot read the saved state";
            goto out;
        }
        if (out->len + (size_t)n > SIGIL_X509_INPUT_MAX) {
            *why = "saved state is too large";
            goto out;
        }
        if (sigil_buf_append(out, chunk, (size_t)n) != 0) {
            r = SIGIL_ERR_NOMEM;
            goto out;
        }
    }
    r = 0;
out:
    OPENSSL_cleanse(chunk, sizeof chunk);
    close(fd);
    return r;
}

int
sigil_svidstore_save_agent(const char *dir, STACK_OF(X509) *chain, const EVP_PKEY *key,
                           const char **why)
{
    struct sigil_buf pem = {0}, keypem = {0};
    int r;

    /* the chain goes first: any realloc happens before the key's bytes are in pem */
    if ((r = sigil_x509_chain_to_pem(chain, &pem)) != 0 ||
        (r = sigil_x509_key_to_pkcs8_pem(key, &keypem)) != 0 ||
        (r = sigil_buf_reserve(&pem, keypem.len)) != 0 ||
        (r = sigil_buf_append(&pem, keypem.data, keypem.len)) != 0) {
        *why = "cannot encode the agent SVID";
        goto out;
    }
    r = sigil_svidstore_write_file(dir, SIGIL_SVIDSTORE_AGENT_FILE, pem.data, pem.len, why);
out:
    sigil_buf_freezero(&pem);
    sigil_buf_freezero(&keypem);
    return r;
}

int
sigil_svidstore_load_agent(const char *dir, STACK_OF(X509) **chain, EVP_PKEY **key,
                           const char **why)
{
    struct sigil_buf pem = {0};
    struct sigil_spiffeid id;
    int r;

    *chain = NULL;
    *key = NULL;
    if ((r = read_state(dir, SIGIL_SVIDSTORE_AGENT_FILE, &pem, why)) != 0)
        goto out;
    if (sigil_x509_pem_parse_certs_and_key(pem.data, pem.len, chain, key, why) != 0) {
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    if (!sigil_x509_key_matches_cert(*key, sk_X509_value(*chain, 0))) {
        *why = "saved key does not match the saved SVID";
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    if (sigil_x509_cert_spiffeid(sk_X509_value(*chain, 0), &id, why) != 0) {
        r = SIGIL_ERR_INVALID;
        goto out;
    }
    r = 0;
out:
    sigil_buf_freezero(&pem);
    if (r != 0) {
        sk_X509_pop_free(*chain, X509_free);
        EVP_PKEY_free(*key);
        *chain = NULL;
        *key = NULL;
    }
    return r;
}

int
sigil_svidstore_save_bundle(const char *dir, const struct sigil_bundle *b, const char **why)
{
    char *json = NULL;
    size_t len = 0;
    int r;

    if ((r = sigil_bundle_encode(b, &json, &len)) != 0) {
        *why = "cannot encode the bundle";
        return r;
    }
    r = sigil_svidstore_write_file(dir, SIGIL_SVIDSTORE_BUNDLE_FILE, json, len, why);
    free(json);
    return r;
}

int
sigil_svidstore_load_bundle(const char *dir, const char *td, struct sigil_bundle **out,
                            const char **why)
{
    struct sigil_buf json = {0};
    int r;

    *out = NULL;
    if ((r = read_state(dir, SIGIL_SVIDSTORE_BUNDLE_FILE, &json, why)) != 0)
        goto out;
    if (sigil_bundle_decode(td, (const char *)json.data, json.len, out, why) != 0)
        r = SIGIL_ERR_INVALID;
out:
    sigil_buf_free(&json);
    return r;
}
